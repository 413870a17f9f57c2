r"""Annealed importance sampling (AIS) for partition functions of energy-based models.

AIS [1] moves :math:`M` chains through distributions
:math:`f_0, f_1, \dots, f_K` from a tractable base :math:`f_0 = p_A Z_A` to the target
:math:`f_K = \tilde p_B`, with :math:`T_k` a Markov kernel leaving :math:`f_k` invariant:

.. math::

    x_0 \sim p_A, \quad
    \log w = \sum_{k=1}^{K} \big[\log f_k(x_{k-1}) - \log f_{k-1}(x_{k-1})\big],
    \quad x_k \sim T_k(x_{k-1}, \cdot),

and :math:`\hat Z_B = Z_A \cdot \frac1M \sum_m w^{(m)}` is unbiased for :math:`Z_B`, so
:math:`\log \hat Z_B` is a stochastic *lower* bound in expectation. For RBMs [2] the path
is geometric, :math:`f_\beta(v) = \tilde p_A(v)^{1-\beta}\, \tilde p_B(v)^\beta` with the
hidden units summed out, from a base-rate model :math:`p_A` (no weights, visible biases
fitted to the data marginals), and :math:`T_\beta` is block Gibbs sampling at inverse
temperature :math:`\beta`. The default schedule is the paper's 14,500 temperatures: 500
uniform in :math:`[0, 0.5]`, 4,000 in :math:`[0.5, 0.9]`, 10,000 in :math:`[0.9, 1]`.

The reported standard error is the delta-method one,
:math:`\mathrm{se}(\log \hat Z) \approx \mathrm{sd}(w) / (\sqrt M\, \bar w)`, and the sandwich
is :math:`\log \hat Z \pm 3\,\mathrm{se}` as in [2].

**Diagnostics.** Both numbers come from the chains' weights, so they are only as good as the
weights are even: when one chain carries most of the mass the standard error is itself
wrong, and :math:`\log \hat Z` most likely *under*\ estimates :math:`\log Z` (a log-likelihood
computed with it is then too high). Every AIS :class:`LogPartition` therefore carries the
effective sample size of its weights,

.. math:: \mathrm{ESS} = \frac{\big(\sum_m w_m\big)^2}{\sum_m w_m^2} \in [1, M],

and the spread of the log-weights (their standard deviation and :math:`\max - \min`). An
estimate whose ESS is below :func:`ess_threshold` (:data:`ESS_WARNING_FRACTION` = 10% of the
chains, and never less than :data:`ESS_WARNING_MIN` = 2) is *unreliable*:
:meth:`LogPartition.warn_if_unreliable` then issues an :class:`UnreliableEstimateWarning`
naming the model, the chains, the temperatures and what to do.

**Reverse annealing** (RAISE [3]). :func:`reverse_ais` runs the same path backwards, from
states of the target (test examples) to the base model; its weights estimate, without bias,
the density of the *annealing model* (the base model followed by the forward transitions),
so that its log is a stochastic lower bound on that model's log-likelihood (see
:mod:`pyrogen.evaluate.reverse_ais`).

A distribution supports AIS by returning an :class:`AnnealingPath` from
``annealing_path(data=None)``; each path lives beside its distribution (e.g.
:class:`~pyrogen.distributions.rbm.RBMAnnealingPath`). This module knows no model: the
distributions use it for ``log_partition("ais")``, and :mod:`pyrogen.infer.ais` re-exports
its public names.

**References**

[1] Annealed Importance Sampling. Radford M. Neal. 2001.

[2] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.

[3] Accurate and Conservative Estimates of MRF Log-likelihood using Reverse Annealing.
    Yuri Burda, Roger B. Grosse, Ruslan Salakhutdinov. 2015.

[4] Monte Carlo Strategies in Scientific Computing (Sec. 2.5.3, the effective sample size).
    Jun S. Liu. 2001.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from pyrogen._checks import warn_user

__all__ = [
    "ESS_WARNING_FRACTION",
    "ESS_WARNING_MIN",
    "AnnealingPath",
    "LogPartition",
    "UnreliableEstimateWarning",
    "ais",
    "ais_estimate",
    "ais_log_partition",
    "default_betas",
    "describe_model",
    "effective_sample_size",
    "ess_threshold",
    "inverse_temperatures",
    "reverse_ais",
]

#: an AIS estimate is unreliable when its ESS is below this share of its chains ...
ESS_WARNING_FRACTION = 0.1
#: ... or below this many chains, whatever their number
ESS_WARNING_MIN = 2.0


class UnreliableEstimateWarning(UserWarning):
    """An AIS estimate whose weights are so uneven that its value and its standard error
    cannot be trusted (see :func:`ess_threshold`)."""


def ess_threshold(num_chains: int) -> float:
    r"""The effective sample size below which an estimate from ``num_chains`` weighted chains
    is reported as unreliable: :math:`\max(2, 0.1 M)` (:data:`ESS_WARNING_MIN`,
    :data:`ESS_WARNING_FRACTION`)."""
    return max(ESS_WARNING_MIN, ESS_WARNING_FRACTION * int(num_chains))


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Kish's effective sample size :math:`(\sum_m w_m)^2 / \sum_m w_m^2` over the last dim,
    from log-weights (in the log domain, float64)."""
    lw = log_weights.double()
    return torch.exp(2 * torch.logsumexp(lw, -1) - torch.logsumexp(2 * lw, -1))


def describe_model(model) -> str:
    """A short name of an energy-based distribution for messages, e.g.
    ``"BernoulliRBM (784 visible, 500 hidden)"`` or ``"DBM (layers 784-500-1000)"``."""
    name = type(model).__name__
    sizes = getattr(model, "layer_sizes", None)
    if sizes is not None:
        return f"{name} (layers {'-'.join(str(int(s)) for s in sizes)})"
    try:
        return f"{name} ({int(model.num_visible)} visible, {int(model.num_hidden)} hidden)"
    except (AttributeError, TypeError):
        return name


@dataclass
class LogPartition:
    """A value of :math:`\\log Z` with its uncertainty.

    :ivar log_z: the value (exact, or the AIS estimate :math:`\\log \\hat Z`).
    :ivar stderr: standard error of ``log_z`` (0 when exact).
    :ivar method: ``"exact"`` or ``"ais"``.
    :ivar lower, upper: a sandwich around :math:`\\log Z` (equal to ``log_z`` when exact).
    :ivar log_weights: per-chain AIS log-weights (``None`` when exact), for diagnostics.
    :ivar info: how it was obtained (``num_chains``, ``num_betas`` for AIS).

    The AIS diagnostics (see the module docs) are :attr:`ess`, :attr:`log_weight_std`,
    :attr:`log_weight_range` and :attr:`is_reliable`; :meth:`diagnostics` returns them as
    plain numbers and :meth:`warn_if_unreliable` warns when the estimate is unreliable.
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

    @classmethod
    def exact(cls, log_z: torch.Tensor) -> LogPartition:
        """An exact value (no standard error, the sandwich collapsed onto it)."""
        return cls(log_z, torch.zeros_like(log_z), "exact", log_z, log_z)

    @property
    def is_exact(self) -> bool:
        return self.method == "exact"

    @property
    def ess(self) -> torch.Tensor | None:
        """Effective sample size of the AIS weights (``None`` when exact)."""
        if self.log_weights is None:
            return None
        return effective_sample_size(self.log_weights)

    @property
    def num_chains(self) -> int:
        """The AIS chains (0 when exact)."""
        return 0 if self.log_weights is None else int(self.log_weights.shape[0])

    @property
    def log_weight_std(self) -> float:
        """Standard deviation of the chains' log-weights, in nats (NaN when exact)."""
        if self.log_weights is None or self.num_chains < 2:
            return float("nan")
        return float(self.log_weights.double().std())

    @property
    def log_weight_range(self) -> float:
        r""":math:`\max_m \log w_m - \min_m \log w_m`, in nats (NaN when exact)."""
        if self.log_weights is None:
            return float("nan")
        lw = self.log_weights.double()
        return float(lw.max() - lw.min())

    @property
    def is_reliable(self) -> bool:
        """Exact, or an ESS of at least :func:`ess_threshold` of the chains."""
        if self.log_weights is None:
            return True
        return float(self.ess) >= ess_threshold(self.num_chains)

    def diagnostics(self) -> dict:
        """The AIS diagnostics as plain numbers: ``ess``, ``num_chains``, ``num_betas``,
        ``ess_threshold``, ``log_weight_std``, ``log_weight_range``, ``reliable`` (an exact
        value has ``ess`` NaN and ``reliable`` True)."""
        exact = self.log_weights is None
        return {
            "ess": float("nan") if exact else float(self.ess),
            "num_chains": self.num_chains,
            "num_betas": int(self.info.get("num_betas", 0)),
            "ess_threshold": float("nan") if exact else ess_threshold(self.num_chains),
            "log_weight_std": self.log_weight_std,
            "log_weight_range": self.log_weight_range,
            "reliable": self.is_reliable,
        }

    def unreliable_message(self, model=None) -> str | None:
        """What :meth:`warn_if_unreliable` says, or ``None`` when the estimate is reliable."""
        if self.is_reliable:
            return None
        what = describe_model(model) if model is not None else "the model"
        d = self.diagnostics()
        return (
            f"unreliable AIS estimate of log Z for {what}: effective sample size "
            f"{d['ess']:.1f} of {d['num_chains']} chains (unreliable below max(2, 10% of the "
            f"chains) = {d['ess_threshold']:g}) with {d['num_betas']} temperatures; the "
            f"log-weights spread over {d['log_weight_range']:.1f} nats (std "
            f"{d['log_weight_std']:.2f}), so a few chains carry the estimate, its standard "
            "error is not to be trusted, and log Z is most likely underestimated (the "
            "log-likelihood overstated). Run more chains (num_chains=, or min_ess= in "
            "energy_log_likelihood), more temperatures (betas=), base rates fitted to the "
            "training data (data= / base_data=), and compare with the conservative RAISE "
            "estimate (pyrogen.evaluate.reverse_ais.raise_log_likelihood)."
        )

    def warn_if_unreliable(self, model=None) -> bool:
        """Issue an :class:`UnreliableEstimateWarning` (naming ``model``, the chains, the
        temperatures and what to do; attributed to the caller's line outside pyrogen) when
        the ESS is below :func:`ess_threshold`; returns whether it warned."""
        message = self.unreliable_message(model)
        if message is not None:
            warn_user(message, UnreliableEstimateWarning)
        return message is not None

    def __repr__(self) -> str:
        if self.is_exact:
            return f"LogPartition(log_z={self.log_z.tolist()}, exact)"
        ess = "" if self.log_weights is None else f", ESS {float(self.ess):.1f}/{self.num_chains}"
        return (
            f"LogPartition(log_z={self.log_z.tolist()} ± {self.stderr.tolist()}, {self.method}, "
            f"sandwich [{self.lower.tolist()}, {self.upper.tolist()}]{ess})"
        )


class AnnealingPath(ABC):
    """The ingredients of annealed importance sampling for one model (see module docs);
    returned by a distribution's ``annealing_path(data=None)``."""

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


def default_betas(num_betas: int = 14500, dtype=torch.float64, device=None) -> torch.Tensor:
    """The inverse temperatures of Salakhutdinov & Murray (2008), rescaled to ``num_betas``:
    500/14,500 of them in [0, 0.5], 4,000/14,500 in [0.5, 0.9], the rest in [0.9, 1]."""
    if num_betas < 3:
        raise ValueError(f"num_betas must be at least 3, got {num_betas}")
    n1 = max(1, round(num_betas * 500 / 14500))
    n2 = max(1, round(num_betas * 4000 / 14500))
    n3 = num_betas - n1 - n2
    if n3 < 2:  # too few to split in three: evenly spaced, still from 0 to 1
        return torch.linspace(0.0, 1.0, num_betas, dtype=dtype, device=device)
    parts = [
        torch.linspace(0.0, 0.5, n1 + 1, dtype=dtype, device=device)[:-1],
        torch.linspace(0.5, 0.9, n2 + 1, dtype=dtype, device=device)[:-1],
        torch.linspace(0.9, 1.0, n3, dtype=dtype, device=device),
    ]
    return torch.cat(parts)


def inverse_temperatures(betas) -> list[float]:
    """The inverse temperatures as floats: a count (or ``None``: 14,500) gives
    :func:`default_betas`; a schedule must increase from 0 to 1."""
    if betas is None or isinstance(betas, int):
        betas = default_betas(betas or 14500)
    betas = [float(b) for b in betas]
    if (
        len(betas) < 2
        or betas[0] != 0.0
        or betas[-1] != 1.0
        or any(b1 < b0 for b0, b1 in zip(betas, betas[1:]))
    ):
        raise ValueError("betas must increase from 0 to 1")
    return betas


def _steps(num: int, progress: bool, desc: str):
    if not progress:
        return range(num)
    from tqdm import tqdm

    return tqdm(range(num), desc=desc, unit="beta")


def ais(
    path: AnnealingPath,
    num_chains: int = 100,
    betas: torch.Tensor | int | None = None,
    progress: bool = False,
) -> LogPartition:
    """Run AIS along ``path``; :returns: :class:`LogPartition` with ``log_z``, ``stderr``,
    the ±3 s.e. sandwich, the per-chain ``log_weights`` and the diagnostics computed from
    them (:attr:`LogPartition.ess`, ...). It does not warn; the callers that know the model
    do (:meth:`LogPartition.warn_if_unreliable`)."""
    if num_chains < 2:
        raise ValueError(f"num_chains must be at least 2, got {num_chains}")
    betas = inverse_temperatures(betas)
    with torch.no_grad():
        state = path.sample_base(num_chains)
        log_w = None
        for i in _steps(len(betas) - 1, progress, "AIS"):
            k = i + 1
            cache = path.prepare(state)
            step = path.log_f(state, cache, betas[k]) - path.log_f(state, cache, betas[k - 1])
            log_w = step if log_w is None else log_w + step
            if k < len(betas) - 1:
                state = path.transition(state, cache, betas[k])
    return ais_estimate(log_w, path.log_z_base, len(betas))


def reverse_ais(
    path: AnnealingPath,
    state,
    betas: torch.Tensor | int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""Reverse annealing along ``path`` from target states ``state`` (RAISE [3]): one
    log-weight per chain whose exponential is an unbiased estimate of the density at
    ``state`` of the *annealing model*

    .. math::

        p_{\mathrm{ann}}(x_0, \dots, x_K) = p_0(x_0) \prod_{k=1}^K T_k(x_k \mid x_{k-1}),

    the base model followed by the forward transitions (whose last state :math:`x_K`
    approximates the target, better as the schedule lengthens). With :math:`x_K` the given
    state and :math:`x_{k-1} \sim T_k(x_k, \cdot)` for :math:`k = K, \dots, 1` (each
    :math:`T_k` reversible with respect to :math:`f_k`, as block-Gibbs sweeps of two
    blocks are, so the reverse kernel is :math:`T_k` itself),

    .. math::

        \log w = \log f_K(x_K) - \log Z_0
            - \sum_{k=0}^{K-1} \big[\log f_{k+1}(x_k) - \log f_k(x_k)\big],

    and :math:`\mathbb E[w] = p_{\mathrm{ann}}(x_K)` (the ratio of the forward to the reverse
    chain's density, in which each :math:`T_k` cancels against its reversal
    :math:`T_k(x_{k-1} \mid x_k)\, f_k(x_k) / f_k(x_{k-1})`). So :math:`\log w` (and the log
    of a mean of several weights) is a stochastic lower bound on
    :math:`\log p_{\mathrm{ann}}(x_K)`. The first reverse sweep is at :math:`\beta = 1`: for
    an RBM it draws :math:`h \sim p(h \mid v)` from the test example and then a new
    :math:`v`.

    :param path: an :class:`AnnealingPath` whose transitions are reversible.
    :param state: the target states (a state tuple of the path, one row per chain).
    :param betas: the schedule (a count or increasing values from 0 to 1), as for :func:`ais`.
    :returns: ``(num_chains,)`` float64 log-weights.
    """
    betas = inverse_temperatures(betas)
    K = len(betas) - 1
    with torch.no_grad():
        cache = path.prepare(state)
        log_w = path.log_f(state, cache, betas[K]).double()
        for i in _steps(K, progress, "RAISE"):
            k = K - i  # x_{k-1} ~ T_k(x_k, .), then log f_{k-1}(x_{k-1}) - log f_k(x_{k-1})
            state = path.transition(state, cache, betas[k])
            cache = path.prepare(state)
            step = path.log_f(state, cache, betas[k - 1]) - path.log_f(state, cache, betas[k])
            log_w = log_w + step.double()
        log_z0 = torch.as_tensor(path.log_z_base, device=log_w.device).double()
    return log_w - log_z0


def ais_estimate(log_weights: torch.Tensor, log_z_base, num_betas: int) -> LogPartition:
    r""":math:`\log \hat Z = \log Z_0 + \log \frac1M \sum_m w_m` and its delta-method
    standard error from the :math:`M` chains' AIS log-weights (e.g. gathered from several
    runs of :func:`ais` on the same path).

    :param log_weights: ``(M,)`` per-chain log-weights :math:`\log w_m`.
    :param log_z_base: :math:`\log Z_0` of the path's base model.
    :param int num_betas: the temperatures of the runs (reported in ``info``).
    """
    with torch.no_grad():
        log_w = log_weights.double()
        num_chains = log_w.shape[0]
        log_mean = torch.logsumexp(log_w, 0) - math.log(num_chains)
        # delta method: Var(log mean w) ~ Var(w) / (M mean(w)^2), in the log domain
        log_var_w = torch.logsumexp(2 * log_w, 0) - math.log(num_chains)
        rel_var = torch.clamp(torch.exp(log_var_w - 2 * log_mean) - 1.0, min=0.0)
        stderr = torch.sqrt(rel_var / num_chains)
        log_z = torch.as_tensor(log_z_base, device=log_w.device).double() + log_mean
    return LogPartition(
        log_z=log_z,
        stderr=stderr,
        method="ais",
        log_weights=log_w,
        info={"num_chains": num_chains, "num_betas": int(num_betas)},
    )


def ais_log_partition(dist, data: torch.Tensor | None = None, **kwargs) -> LogPartition:
    """AIS estimate of ``dist``'s :math:`\\log Z` along ``dist.annealing_path(data=data)``
    (from a base-rate model fitted to ``data`` when given); keyword arguments go to
    :func:`ais`. Issues an :class:`UnreliableEstimateWarning` when the estimate's ESS is
    below :func:`ess_threshold`."""
    annealing_path = getattr(dist, "annealing_path", None)
    if annealing_path is None:
        raise NotImplementedError(f"{type(dist).__name__} does not define an annealing path")
    result = ais(annealing_path(data=data), **kwargs)
    result.warn_if_unreliable(dist)
    return result
