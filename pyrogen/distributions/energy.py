r"""Base class of pyrogen's energy-based distributions (RBMs, DBMs).

An energy-based distribution over visible units :math:`v` is given by an unnormalized
log-density :math:`\log \tilde p(v) = -F(v)` (minus the *free energy*, hidden units summed
out) and a partition function :math:`Z = \sum_v \tilde p(v)`:

.. math:: \log p(v) = -F(v) - \log Z.

:math:`\log Z` is computed exactly by enumeration when the model is small enough (the
:meth:`log_partition` result then has ``stderr == 0``), and estimated by annealed importance
sampling otherwise (:mod:`pyrogen.infer.ais`); :meth:`log_prob` is then an *estimate* and
says so in :attr:`LogPartition.method`. Results are cached and recomputed when a parameter
changes (in-place optimizer updates bump tensor versions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from pyro.distributions import TorchDistribution


@dataclass
class LogPartition:
    """A value of :math:`\\log Z` with its uncertainty.

    :ivar log_z: the value (exact, or the AIS estimate :math:`\\log \\hat Z`).
    :ivar stderr: standard error of ``log_z`` (0 when exact).
    :ivar method: ``"exact"`` or ``"ais"``.
    :ivar lower, upper: a sandwich around :math:`\\log Z` (equal to ``log_z`` when exact).
    :ivar log_weights: per-chain AIS log-weights (``None`` when exact), for diagnostics.
    """

    log_z: torch.Tensor
    stderr: torch.Tensor
    method: str = "exact"
    lower: torch.Tensor | None = None
    upper: torch.Tensor | None = None
    log_weights: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.lower is None:
            self.lower = self.log_z - 3 * self.stderr
        if self.upper is None:
            self.upper = self.log_z + 3 * self.stderr

    @property
    def is_exact(self) -> bool:
        return self.method == "exact"

    @property
    def ess(self) -> torch.Tensor | None:
        """Effective sample size of the AIS weights (``None`` when exact)."""
        if self.log_weights is None:
            return None
        lw = self.log_weights
        return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))

    def __repr__(self) -> str:
        if self.is_exact:
            return f"LogPartition(log_z={self.log_z.tolist()}, exact)"
        return (
            f"LogPartition(log_z={self.log_z.tolist()} ± {self.stderr.tolist()}, {self.method}, "
            f"sandwich [{self.lower.tolist()}, {self.upper.tolist()}])"
        )


class AnnealingPath(ABC):
    """The ingredients of annealed importance sampling for one model (see
    :mod:`pyrogen.infer.ais`); returned by a distribution's ``annealing_path(data=None)``."""

    #: :math:`\\log Z_A` of the base distribution
    log_z_base: torch.Tensor

    @abstractmethod
    def sample_base(self, num_chains: int):
        """Exact samples (a state tuple) from the base distribution :math:`p_A`."""

    @abstractmethod
    def prepare(self, state):
        """Anything of ``state`` shared by :meth:`log_f` and :meth:`transition` at every
        temperature (e.g. the hidden pre-activation); returned as an opaque object."""

    @abstractmethod
    def log_f(self, state, cache, beta: float) -> torch.Tensor:
        """:math:`\\log f_\\beta(x)` per chain."""

    @abstractmethod
    def transition(self, state, cache, beta: float):
        """A sample of :math:`T_\\beta(x, \\cdot)` (a new state)."""


def bernoulli_sample(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Binary samples with ``P(1) = probs``, as ``uniform < probs`` (several times faster on
    CPU than ``torch.bernoulli``, whose kernel draws one number at a time); written into
    ``out`` (any floating dtype, the shape of ``probs``) when given."""
    if out is None:
        out = torch.empty_like(probs)
    return torch.lt(torch.rand_like(probs), probs, out=out)


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


class EnergyBasedDistribution(TorchDistribution):
    """Common machinery of energy-based distributions (see module docs).

    Subclasses implement :meth:`unnormalized_log_prob`, :meth:`_exact_log_partition`,
    :meth:`can_enumerate`, :meth:`_parameters`, :meth:`init_chains` and :meth:`gibbs_step`.
    """

    #: default number of block-Gibbs sweeps of :meth:`sample`
    default_gibbs_steps = 1000
    #: largest layer size that :meth:`log_partition` enumerates
    max_enumeration = 20

    # ---- to implement -------------------------------------------------------------

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def can_enumerate(self) -> bool:
        raise NotImplementedError

    def _exact_log_partition(self) -> torch.Tensor:
        raise NotImplementedError

    def _ais_log_partition(self, **kwargs) -> LogPartition:
        from pyrogen.infer.ais import ais_log_partition

        return ais_log_partition(self, **kwargs)

    def _parameters(self) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def init_chains(self, num_chains: int):
        """A random initial Gibbs state for ``num_chains`` chains."""
        raise NotImplementedError

    def gibbs_step(self, state):
        """One block-Gibbs sweep; returns the new state (visible units first)."""
        raise NotImplementedError

    # ---- shared ---------------------------------------------------------------------

    def free_energy(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`F(v) = -\\log \\tilde p(v)`."""
        return -self.unnormalized_log_prob(value)

    def _cache_key(self, method, kwargs):
        params = tuple(
            (p.data_ptr(), p._version, tuple(p.shape), p.dtype) for p in self._parameters()
        )
        return (
            params,
            method,
            tuple(
                sorted((k, id(v) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items())
            ),
        )

    def log_partition(self, method: str = "auto", **kwargs) -> LogPartition:
        """:math:`\\log Z`: ``"exact"`` (enumeration over the smaller layer, when it has at
        most :attr:`max_enumeration` units), ``"ais"`` (annealed importance sampling; keyword
        arguments go to :func:`pyrogen.infer.ais.ais_log_partition`) or ``"auto"``.

        Cached per parameter values. Exact values are differentiable.
        """
        if method == "auto":
            method = "exact" if self.can_enumerate() else "ais"
        if method not in ("exact", "ais"):
            raise ValueError(f"method must be 'auto', 'exact' or 'ais', got {method!r}")
        key = self._cache_key(method, kwargs)
        cache = self.__dict__.setdefault("_log_partition_cache", {})
        differentiable = torch.is_grad_enabled() and any(
            p.requires_grad for p in self._parameters()
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
            log_z = self._exact_log_partition()
            result = LogPartition(log_z, torch.zeros_like(log_z), "exact", log_z, log_z)
        else:
            result = self._ais_log_partition(**kwargs)
        cache.clear()
        cache[key] = result
        return result

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(v) = -F(v) - \\log Z`. With more than :attr:`max_enumeration`
        units in every layer, :math:`\\log Z` is an AIS *estimate* (see
        :meth:`log_partition`), and so is this."""
        if self._validate_args:
            self._validate_sample(value)
        return self.unnormalized_log_prob(value) - self.log_partition().log_z

    def sample(self, sample_shape=(), num_steps: int | None = None, init=None) -> torch.Tensor:
        """Visible samples after ``num_steps`` block-Gibbs sweeps (default
        :attr:`default_gibbs_steps`) from ``init`` (a Gibbs state or visible tensor) or a
        random start. Approximate: exact only as ``num_steps`` grows."""
        shape = torch.Size(sample_shape)
        n = max(1, int((shape + self.batch_shape).numel()))
        state = self.init_chains(n) if init is None else init
        if isinstance(state, torch.Tensor):
            state = (state,)
        steps = self.default_gibbs_steps if num_steps is None else int(num_steps)
        with torch.no_grad():
            for _ in range(steps):
                state = self.gibbs_step(state)
        return state[0].reshape(shape + self.batch_shape + self.event_shape)
