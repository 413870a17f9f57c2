r"""Base class of pyrogen's energy-based distributions (RBMs, DBMs).

An energy-based distribution over visible units :math:`v` is given by an unnormalized
log-density :math:`\log \tilde p(v) = -F(v)` (minus the *free energy*, hidden units summed
out) and a partition function :math:`Z = \sum_v \tilde p(v)`:

.. math:: \log p(v) = -F(v) - \log Z.

:math:`\log Z` is computed exactly by enumeration when the model is small enough (the
:meth:`~EnergyBasedDistribution.log_partition` result then has ``stderr == 0``), and
estimated by annealed importance sampling otherwise (:mod:`pyrogen.distributions.annealing`);
:meth:`~EnergyBasedDistribution.log_prob` is then an *estimate* and says so in
:attr:`~pyrogen.distributions.annealing.LogPartition.method`. Results are cached and
recomputed when a parameter changes (in-place optimizer updates bump tensor versions).

What every energy-based distribution shares lives here once: the parameter checks
(:meth:`~EnergyBasedDistribution.check_parameters`), :meth:`~EnergyBasedDistribution.expand`,
the cached :meth:`~EnergyBasedDistribution.log_partition`, ``log_prob`` with torch's batch
broadcasting, block-Gibbs :meth:`~EnergyBasedDistribution.sample`, and the
contrastive-divergence surrogate (:meth:`~EnergyBasedDistribution.contrastive_divergence`)
that :class:`~pyrogen.infer.ContrastiveDivergence` calls. RBMs with one hidden layer also
share :class:`RBMBase` and, with binary hidden units, the base-rate annealing path
:class:`BaseRateAnnealingPath`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import Distribution, constraints

from pyrogen import _rng
from pyrogen.distributions.annealing import (
    AnnealingPath,
    LogPartition,
    ais_log_partition,
)

__all__ = [
    "AnnealingPath",
    "BaseRateAnnealingPath",
    "EnergyBasedDistribution",
    "LogPartition",
    "RBMBase",
    "affine",
    "base_rates",
    "bernoulli_sample",
    "binary_states",
    "enumerate_logsumexp",
    "fair_coins",
]

#: most rows of enumerated states processed at once
_ENUM_CHUNK = 1 << 14
#: elements of the largest temporary of an enumeration chunk
_ENUM_BUDGET = 1 << 22


def bernoulli_sample(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Binary samples with ``P(1) = probs``, as ``uniform < probs`` (several times faster on
    CPU than ``torch.bernoulli``, whose kernel draws one number at a time); written into
    ``out`` (any floating dtype, the shape of ``probs``) when given."""
    if out is None:
        out = torch.empty_like(probs)
    return torch.lt(_rng.rand_like(probs), probs, out=out)


def fair_coins(shape, like: torch.Tensor) -> torch.Tensor:
    """Independent fair coins (0/1) of ``shape``, of ``like``'s dtype and device."""
    half = torch.full(tuple(shape), 0.5, dtype=like.dtype, device=like.device)
    return bernoulli_sample(half)


def binary_states(n: int, dtype=torch.float32, device=None, chunk: int | None = None):
    """All :math:`2^n` binary vectors of length ``n`` (rows), optionally in chunks."""
    if n > 30:
        raise ValueError(f"cannot enumerate 2^{n} binary states")
    total = 1 << n
    chunk = chunk or total
    bits = torch.arange(n, device=device)
    for start in range(0, total, chunk):
        idx = torch.arange(start, min(start + chunk, total), device=device)
        yield ((idx.unsqueeze(-1) >> bits) & 1).to(dtype)


def enumerate_logsumexp(
    n: int, fn: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor, per_state: int = 1
) -> torch.Tensor:
    """``logsumexp`` over all :math:`2^n` binary states ``s`` (rows) of ``fn(s)``, whose last
    dim indexes the states; in chunks whose temporaries hold about ``2^22`` elements when
    ``fn`` makes ``per_state`` numbers per state. Differentiable."""
    chunk = max(1, min(_ENUM_CHUNK, _ENUM_BUDGET // max(1, per_state)))
    parts = [
        torch.logsumexp(fn(states), -1)
        for states in binary_states(n, like.dtype, like.device, chunk)
    ]
    return torch.logsumexp(torch.stack(parts, -1), -1)


#: how a constraint reads in an error message
_CONSTRAINT_TEXT = {
    id(constraints.real): "real (not NaN)",
    id(constraints.positive): "positive",
}


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """``x @ weight + bias`` over any leading dims of ``x`` (one ``addmm`` when 2-D)."""
    if x.dim() == 2:
        return torch.mm(x, weight) if bias is None else torch.addmm(bias, x, weight)
    out = torch.matmul(x, weight)
    return out if bias is None else out + bias


def base_rates(
    data: torch.Tensor | None, like: torch.Tensor, smoothing: float = 0.05
) -> torch.Tensor:
    r"""Log-odds of the smoothed marginals of binary ``data`` (``(..., V)``),
    :math:`\mathrm{logit}((\sum_n x_n + s) / (N + 2s))`, or zeros like ``like`` (``(V,)``)
    when ``data`` is ``None``: the visible biases of a base-rate model for AIS."""
    with torch.no_grad():
        if data is None:
            return torch.zeros_like(like)
        data = data.reshape(-1, like.shape[-1]).to(like)
        return torch.logit((data.sum(0) + smoothing) / (data.shape[0] + 2 * smoothing))


def _shape_text(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


class EnergyBasedDistribution(TorchDistribution):
    """Common machinery of energy-based distributions (see module docs).

    Subclasses implement :meth:`unnormalized_log_prob`, :meth:`can_enumerate`,
    :meth:`_exact_log_partition` and :meth:`gibbs_step` (and :meth:`init_chains` unless the
    visible units are binary), name their parameters in ``arg_constraints`` (which
    :meth:`parameter_tensors` reads; checked with a message naming the first bad entry when
    validation is on), and may add an :meth:`annealing_path` (AIS) and a faster
    :meth:`contrastive_divergence`.

    :param event_shape: the visible units' shape.
    :param int gibbs_steps: block-Gibbs sweeps of :meth:`sample`.
    """

    #: default number of block-Gibbs sweeps of :meth:`sample`
    default_gibbs_steps = 1000
    #: largest layer size that :meth:`log_partition` enumerates
    max_enumeration = 20
    has_rsample = False

    def __init__(
        self, event_shape, *, gibbs_steps: int = 1000, validate_args: bool | None = None
    ) -> None:
        self.default_gibbs_steps = int(gibbs_steps)
        validate = Distribution._validate_args if validate_args is None else bool(validate_args)
        if validate:
            self._check_constraints()
        super().__init__(torch.Size(), torch.Size(event_shape), validate_args=False)
        self._validate_args = validate

    def _check_constraints(self) -> None:
        """Every parameter satisfies its ``arg_constraints`` entry, or a ``ValueError`` names
        the parameter, the constraint and the first offending value with its index."""
        for name, constraint in self.arg_constraints.items():
            value = getattr(self, name)
            base = getattr(constraint, "base_constraint", constraint)
            bad = ~base.check(value)
            if bool(bad.any()):
                index = tuple(bad.nonzero()[0].tolist())
                index = index[0] if len(index) == 1 else index
                wanted = _CONSTRAINT_TEXT.get(id(base), repr(base))
                raise ValueError(
                    f"{name} must be {wanted}; found {value[bad][0].item()} at index {index}"
                )

    # ---- to implement -------------------------------------------------------------

    @abstractmethod
    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\tilde p(v) = -F(v)`, shape ``value.shape[:-1]``."""

    @abstractmethod
    def can_enumerate(self) -> bool:
        """Whether :meth:`log_partition` can be exact (a small enough layer)."""

    @abstractmethod
    def _exact_log_partition(self) -> torch.Tensor:
        """:math:`\\log Z` by enumeration (differentiable)."""

    def init_chains(self, num_chains: int):
        """A random initial Gibbs state for ``num_chains`` chains: independent fair coins
        for the visible units (models with other visible units override this)."""
        return (fair_coins((num_chains,) + self.event_shape, self.parameter_tensors()[0]),)

    @abstractmethod
    def gibbs_step(self, state):
        """One block-Gibbs sweep; returns the new state (visible units first)."""

    def annealing_path(self, data: torch.Tensor | None = None) -> AnnealingPath:
        """The AIS path of :meth:`log_partition` ``("ais")``, from a base model fitted to
        ``data`` when given."""
        raise NotImplementedError(f"{type(self).__name__} does not define an annealing path")

    # ---- parameters -----------------------------------------------------------------

    def parameter_tensors(self) -> tuple[torch.Tensor, ...]:
        """The parameter tensors, in the order of ``arg_constraints`` (what the cache of
        :meth:`log_partition` watches and what contrastive divergence differentiates)."""
        return tuple(getattr(self, name) for name in self.arg_constraints)

    @staticmethod
    def check_parameters(
        specs: Iterable[tuple[str, torch.Tensor, tuple]], same_dtype: bool = True
    ) -> dict[str, int]:
        """Check named parameter tensors against symbolic shapes and return the sizes found.

        ``specs`` lists ``(argument name, tensor, dims)``; a dim is an ``int`` or a size's
        name, bound by its first occurrence (e.g. ``("weight", W, ("num_visible",
        "num_hidden"))`` then ``("visible_bias", b, ("num_visible",))``). A mismatch is a
        ``ValueError`` naming the argument, the expected and the found shape, and where the
        expected size comes from. With ``same_dtype``, all must be floating tensors of one
        dtype on one device.
        """
        sizes: dict[str, int] = {}
        source: dict[str, tuple[str, torch.Tensor]] = {}
        first = None
        for name, t, dims in specs:
            symbolic = "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"
            if not isinstance(t, torch.Tensor) or t.dim() != len(dims):
                raise ValueError(
                    f"{name} must be a {len(dims)}-D tensor of shape {symbolic}, got "
                    f"{_shape_text(t)}"
                )
            expected = tuple(
                sizes.get(d, n) if isinstance(d, str) else d for d, n in zip(dims, t.shape)
            )
            if tuple(t.shape) != expected:
                why = "; ".join(
                    f"{d} = {sizes[d]} from {source[d][0]} of shape {tuple(source[d][1].shape)}"
                    for d in dims
                    if isinstance(d, str) and d in source
                )
                raise ValueError(
                    f"{name} must have shape {symbolic} = {expected}, got {tuple(t.shape)}"
                    + (f" ({why})" if why else "")
                )
            for d, n in zip(dims, t.shape):
                if isinstance(d, str) and d not in sizes:
                    sizes[d], source[d] = int(n), (name, t)
            if same_dtype:
                if first is None:
                    first = (name, t)
                ref = first[1]
                if not t.dtype.is_floating_point or t.dtype != ref.dtype or t.device != ref.device:
                    raise ValueError(
                        "all parameters must be floating tensors of one dtype and device; "
                        f"{first[0]} is {ref.dtype} on {ref.device}, {name} is {t.dtype} on "
                        f"{t.device}"
                    )
        return sizes

    def expand(self, batch_shape, _instance=None):
        """The same model broadcast to ``batch_shape`` (what ``pyro.plate`` does): the
        parameters are shared, the :math:`\\log Z` cache starts empty, and ``validate_args``
        is kept."""
        new = self._get_checked_instance(type(self), _instance)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_log_partition_cache"})
        TorchDistribution.__init__(
            new, torch.Size(batch_shape), self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    # ---- densities --------------------------------------------------------------------

    def free_energy(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`F(v) = -\\log \\tilde p(v)`."""
        return -self.unnormalized_log_prob(value)

    def unnormalized_log_prob_or_bound(
        self, value: torch.Tensor, *, mean_field_iters: int = 100
    ) -> tuple[torch.Tensor, bool]:
        """Per example, :math:`\\log \\tilde p(v)` when the hidden units sum out, else a lower
        bound on it (a deep Boltzmann machine's mean-field bound after ``mean_field_iters``
        sweeps); returns ``(values, is_bound)``. What test log-likelihoods are made of."""
        return self.unnormalized_log_prob(value), False

    def _sum_over_states(self, n: int, fn, per_state: int = 1) -> torch.Tensor:
        """:func:`enumerate_logsumexp` over :math:`2^n` binary states, in the parameters'
        dtype and device."""
        return enumerate_logsumexp(n, fn, self.parameter_tensors()[0], per_state)

    @staticmethod
    def _scaled(value: torch.Tensor, scale) -> torch.Tensor:
        """``value * scale``, skipping the product for a scale of exactly 1.0."""
        return value if isinstance(scale, float) and scale == 1.0 else value * scale

    def _cache_key(self, method, kwargs):
        params = tuple(
            (p.data_ptr(), p._version, tuple(p.shape), p.dtype) for p in self.parameter_tensors()
        )
        return (
            params,
            method,
            tuple(
                sorted((k, id(v) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items())
            ),
        )

    def _store_log_partition(self, key, result: LogPartition) -> None:
        """Cache ``result`` under ``key``, dropping the values of other parameter values."""
        cache = self.__dict__.setdefault("_log_partition_cache", {})
        for old in [k for k in cache if k[0] != key[0]]:
            del cache[old]
        cache[key] = result

    #: which examples share a partition function: ``None`` (all of them), or the names
    #: (singular, plural) of what selects it, e.g. ``("document length", "lengths")``
    partition_group: tuple[str, str] | None = None

    def log_partition_groups(self, value: torch.Tensor, method: str = "auto", **kwargs):
        """The partition functions that the rows of ``value`` are normalised by, as
        ``[(LogPartition, rows)]`` with ``rows`` the indices of the rows sharing it (``None``:
        every row); keyword arguments as for :meth:`log_partition`. One :math:`\\log Z` for
        most models; models with one per :attr:`partition_group` return one per group."""
        return [(self.log_partition(method, **kwargs), None)]

    def log_partition(self, method: str = "auto", **kwargs) -> LogPartition:
        """:math:`\\log Z`: ``"exact"`` (enumeration over the smaller layer, when it has at
        most :attr:`max_enumeration` units), ``"ais"`` (annealed importance sampling;
        ``data`` goes to :meth:`annealing_path`, other keyword arguments to
        :func:`pyrogen.distributions.annealing.ais`) or ``"auto"``.

        Cached per parameter values. Exact values are differentiable.
        """
        return self._cached_log_partition(method, kwargs)

    def _cached_log_partition(self, method: str, kwargs: dict, variant=None) -> LogPartition:
        """:meth:`log_partition` of the distribution selected by ``variant`` (keyword
        arguments of :meth:`_exact_log_partition` and :meth:`_ais_log_partition`, e.g. a
        document length), with AIS options ``kwargs``."""
        variant = variant or {}
        if method == "auto":
            method = "exact" if self.can_enumerate() else "ais"
        if method not in ("exact", "ais"):
            raise ValueError(f"method must be 'auto', 'exact' or 'ais', got {method!r}")
        key = self._cache_key(method, {**kwargs, **variant} if method == "ais" else variant)
        cache = self.__dict__.setdefault("_log_partition_cache", {})
        differentiable = torch.is_grad_enabled() and any(
            p.requires_grad for p in self.parameter_tensors()
        )
        # an exact value under autograd is recomputed: its graph may have been freed
        if key in cache and (method != "exact" or not differentiable):
            return cache[key]
        if method == "exact":
            if not self.can_enumerate():
                raise ValueError(
                    f"exact log Z needs a layer of at most {self.max_enumeration} units to "
                    "enumerate; use method='ais'"
                )
            result = LogPartition.exact(self._exact_log_partition(**variant))
        else:
            result = self._ais_log_partition(**kwargs, **variant)
        self._store_log_partition(key, result)
        return result

    def _ais_log_partition(self, **kwargs) -> LogPartition:
        return ais_log_partition(self, **kwargs)

    def _log_normalizer(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log Z` of each example of ``value`` (one number, unless the model has a
        partition function per example, e.g. per document length)."""
        return self.log_partition().log_z

    def _broadcast_batch(self, result: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``result`` (shape ``value``'s batch dims) broadcast to
        ``broadcast_shapes(value batch dims, batch_shape)``, torch's rule for ``log_prob``."""
        if not self.batch_shape or result.shape == self.batch_shape:
            return result
        try:
            shape = torch.broadcast_shapes(result.shape, self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"value: batch shape {tuple(result.shape)} does not broadcast with the "
                f"distribution's batch_shape {tuple(self.batch_shape)}"
            ) from None
        return result if shape == result.shape else result.expand(shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(v) = -F(v) - \\log Z`, shape ``broadcast(value batch dims,
        batch_shape)``. With more than :attr:`max_enumeration` units in every layer,
        :math:`\\log Z` is an AIS *estimate* (see :meth:`log_partition`), and so is this."""
        if self._validate_args:
            self._validate_sample(value)
        result = self.unnormalized_log_prob(value) - self._log_normalizer(value)
        return self._broadcast_batch(result, value)

    # ---- sampling -----------------------------------------------------------------------

    def gibbs_chain(self, state, num_steps: int):
        """``num_steps`` block-Gibbs sweeps from ``state`` (a Gibbs state tuple), without
        gradients; returns the last state."""
        with torch.no_grad():
            for _ in range(num_steps):
                state = self.gibbs_step(state)
        return state

    def sample(self, sample_shape=(), num_steps: int | None = None, init=None) -> torch.Tensor:
        """Visible samples of shape ``sample_shape + batch_shape + event_shape`` after
        ``num_steps`` block-Gibbs sweeps (default :attr:`default_gibbs_steps`) from ``init``
        (a Gibbs state, or visible values with one row per sample) or from
        :meth:`init_chains`. Approximate: exact only as ``num_steps`` grows."""
        shape = torch.Size(sample_shape) + self.batch_shape
        if init is None:
            state = self.init_chains(max(1, shape.numel()))
        elif isinstance(init, torch.Tensor):
            state = (init.reshape((-1,) + self.event_shape),)
        else:
            state = tuple(init)
        steps = self.default_gibbs_steps if num_steps is None else int(num_steps)
        return self.gibbs_chain(state, steps)[0].reshape(shape + self.event_shape)

    # ---- learning -----------------------------------------------------------------------

    def contrastive_divergence(
        self,
        x: torch.Tensor,
        chains: tuple,
        num_steps: int,
        *,
        accumulate: bool = False,
        scale=1.0,
        mean_field_iters: int = 10,
    ) -> tuple[torch.Tensor, tuple, bool]:
        r"""One contrastive-divergence estimate for the data rows ``x`` (``(n, V)``).

        The chains (a Gibbs state whose first entry has :math:`m` rows: the data for CD-k,
        the persistent chains for PCD-k) advance by ``num_steps`` block-Gibbs sweeps to
        samples :math:`\bar v_1, \dots, \bar v_m`, and the surrogate is

        .. math::

            \mathcal S(\theta) = \sum_{i=1}^n F_\theta(x_i)
                - \frac{n}{m} \sum_{j=1}^m F_\theta(\bar v_j)

        with the samples held fixed (detached), so that :math:`\nabla \mathcal S` is minus
        the CD estimate of the log-likelihood gradient of the batch (unbiased with exact
        samples from :math:`p_\theta`); times ``scale`` (a Pyro site's scale).

        :param bool accumulate: allow writing the gradient of ``scale * S`` straight into the
            parameters' ``.grad`` instead of returning a differentiable surrogate (subclasses
            that can, such as :class:`~pyrogen.distributions.BernoulliRBM`, do it when the
            parameters are plain leaves).
        :param int mean_field_iters: mean-field sweeps of the positive phase, for models
            whose hidden units do not sum out (:class:`~pyrogen.distributions.DBM`).
        :returns: ``(scale * S, new chains, grads_written)``: the surrogate (detached when
            ``grads_written``), the chains' new state (detached; to persist for PCD) and
            whether the gradient was already added to ``.grad``.
        """
        state = tuple(t.detach() for t in self.gibbs_chain(tuple(chains), num_steps))
        negatives = state[0]
        n, m = x.shape[0], negatives.shape[0]
        surrogate = self.free_energy(x).sum() - (n / m) * self.free_energy(negatives).sum()
        return self._scaled(surrogate, scale), state, False


class RBMBase(EnergyBasedDistribution):
    """What restricted Boltzmann machines with one hidden layer share: ``weight``
    :math:`W` of shape ``(num_visible, num_hidden)``, ``visible_bias`` :math:`b` and
    ``hidden_bias`` :math:`c`, checked once with any other parameter named in
    :attr:`parameter_dims` (which a subclass sets before calling this constructor); one
    model whose ``batch_shape`` only broadcasts it.

    :param torch.Tensor weight: :math:`W`, shape ``(num_visible, num_hidden)``.
    :param torch.Tensor visible_bias: :math:`b`, shape ``(num_visible,)``.
    :param torch.Tensor hidden_bias: :math:`c`, shape ``(num_hidden,)``.
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).
    """

    arg_constraints = {
        "weight": constraints.independent(constraints.real, 2),
        "visible_bias": constraints.independent(constraints.real, 1),
        "hidden_bias": constraints.independent(constraints.real, 1),
    }
    #: the symbolic shape of each parameter (see :meth:`check_parameters`)
    parameter_dims: dict[str, tuple[str, ...]] = {
        "weight": ("num_visible", "num_hidden"),
        "visible_bias": ("num_visible",),
        "hidden_bias": ("num_hidden",),
    }

    def __init__(
        self,
        weight: torch.Tensor,
        visible_bias: torch.Tensor,
        hidden_bias: torch.Tensor,
        *,
        gibbs_steps: int = 1000,
        validate_args: bool | None = None,
    ) -> None:
        self.weight, self.visible_bias, self.hidden_bias = weight, visible_bias, hidden_bias
        dims = self.parameter_dims  # subclasses set their other parameters before this
        self.check_parameters((name, getattr(self, name), dims[name]) for name in dims)
        super().__init__(weight.shape[:1], gibbs_steps=gibbs_steps, validate_args=validate_args)

    @property
    def num_visible(self) -> int:
        return self.weight.shape[0]

    @property
    def num_hidden(self) -> int:
        return self.weight.shape[1]

    def hidden_given_visible(self, v: torch.Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(h \\mid v)`, a factorized Bernoulli (one batch entry per hidden unit)."""
        return torch.distributions.Bernoulli(logits=self.hidden_logits(v), validate_args=False)


class BaseRateAnnealingPath(AnnealingPath):
    r"""Salakhutdinov & Murray's geometric AIS path for an RBM with binary hidden units,
    from a base model :math:`A` with no weights (its visible units independent, with
    parameters :attr:`base` fitted to data, and :math:`H` hidden fair coins):

    .. math::

        \log f_\beta(v) = (1-\beta)\, a(v) + \beta\, b(v)
            + \sum_j \mathrm{softplus}\big(\beta\, \mathrm{pre}_j(v)\big),

    with :math:`a(v) = \log \tilde p_A(v)`, :math:`-F(v) = b(v) + \sum_j
    \mathrm{softplus}(\mathrm{pre}_j(v))` and :math:`\mathrm{pre}(v)` the hidden log-odds.
    Block Gibbs at inverse temperature :math:`\beta`:
    :math:`h_j \sim \sigma(\beta\, \mathrm{pre}_j(v))`, then the visible units from
    :meth:`sample_visible` with parameters interpolated between the base's and the model's,
    :math:`(1 - \beta)\, \text{base} + \beta\, \text{visible\_params}(h)` (biases or log-odds,
    or means, that enter the energy linearly).

    Subclasses set :attr:`model`, :attr:`base`, :attr:`log_z_base`, implement
    :meth:`sample_visible` and override the terms whose defaults do not fit.
    """

    model: EnergyBasedDistribution
    base: torch.Tensor

    def base_term(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`a(v)`; by default :math:`\text{base}^\top v` (base log-odds or logits)."""
        return v @ self.base

    def model_term(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`b(v)`: :math:`-F(v)` without the softplus terms; by default
        :math:`b^\top v` with :math:`b` the model's visible bias."""
        return v @ self.model.visible_bias

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        return self.model.hidden_logits(v)

    def visible_params(self, h: torch.Tensor) -> torch.Tensor:
        """The model's visible parameters given :math:`h`, in the base's parameterization;
        by default the visible log-odds or logits :math:`b + W h`."""
        return self.model.visible_logits(h)

    def sample_visible(self, params: torch.Tensor) -> torch.Tensor:
        """Visible states from parameters of the form of :attr:`base` (one row per chain)."""
        raise NotImplementedError

    def sample_base(self, num_chains: int):
        return (self.sample_visible(self.base.expand(num_chains, -1)),)

    def prepare(self, state):
        v = state[0]
        return self.base_term(v), self.model_term(v), self.hidden_logits(v)

    def log_f(self, state, cache, beta: float) -> torch.Tensor:
        a, b, pre = cache
        return (1 - beta) * a + beta * b + F.softplus(beta * pre).sum(-1)

    def transition(self, state, cache, beta: float):
        h = bernoulli_sample(torch.sigmoid(beta * cache[2]))
        return (self.sample_visible(torch.lerp(self.base, self.visible_params(h), beta)),)
