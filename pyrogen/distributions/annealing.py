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

A distribution supports AIS by returning an :class:`AnnealingPath` from
``annealing_path(data=None)``; each path lives beside its distribution (e.g.
:class:`~pyrogen.distributions.rbm.RBMAnnealingPath`). This module knows no model: the
distributions use it for ``log_partition("ais")``, and :mod:`pyrogen.infer.ais` re-exports
its public names.

**References**

[1] Annealed Importance Sampling. Radford M. Neal. 2001.

[2] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

__all__ = ["AnnealingPath", "LogPartition", "ais", "ais_log_partition", "default_betas"]


@dataclass
class LogPartition:
    """A value of :math:`\\log Z` with its uncertainty.

    :ivar log_z: the value (exact, or the AIS estimate :math:`\\log \\hat Z`).
    :ivar stderr: standard error of ``log_z`` (0 when exact).
    :ivar method: ``"exact"`` or ``"ais"``.
    :ivar lower, upper: a sandwich around :math:`\\log Z` (equal to ``log_z`` when exact).
    :ivar log_weights: per-chain AIS log-weights (``None`` when exact), for diagnostics.
    :ivar info: how it was obtained (``num_chains``, ``num_betas`` for AIS).
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
    parts = [
        torch.linspace(0.0, 0.5, n1 + 1, dtype=dtype, device=device)[:-1],
        torch.linspace(0.5, 0.9, n2 + 1, dtype=dtype, device=device)[:-1],
        torch.linspace(0.9, 1.0, n3, dtype=dtype, device=device),
    ]
    return torch.cat(parts)


def ais(
    path: AnnealingPath,
    num_chains: int = 100,
    betas: torch.Tensor | int | None = None,
    progress: bool = False,
) -> LogPartition:
    """Run AIS along ``path``; :returns: :class:`LogPartition` with ``log_z``, ``stderr``,
    the ±3 s.e. sandwich and the per-chain ``log_weights``."""
    if num_chains < 2:
        raise ValueError(f"num_chains must be at least 2, got {num_chains}")
    if betas is None or isinstance(betas, int):
        betas = default_betas(betas or 14500)
    betas = [float(b) for b in betas]
    if betas[0] != 0.0 or betas[-1] != 1.0 or any(b1 < b0 for b0, b1 in zip(betas, betas[1:])):
        raise ValueError("betas must increase from 0 to 1")
    iterator = range(1, len(betas))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="AIS", unit="beta")
    with torch.no_grad():
        state = path.sample_base(num_chains)
        log_w = None
        for k in iterator:
            cache = path.prepare(state)
            step = path.log_f(state, cache, betas[k]) - path.log_f(state, cache, betas[k - 1])
            log_w = step if log_w is None else log_w + step
            if k < len(betas) - 1:
                state = path.transition(state, cache, betas[k])
    return ais_estimate(log_w, path.log_z_base, len(betas))


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
    :func:`ais`."""
    annealing_path = getattr(dist, "annealing_path", None)
    if annealing_path is None:
        raise NotImplementedError(f"{type(dist).__name__} does not define an annealing path")
    return ais(annealing_path(data=data), **kwargs)
