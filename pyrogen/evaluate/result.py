r"""The one result type of every log-likelihood estimator: :class:`LogLikelihood`.

Whatever the estimator (exact, importance sampling, annealed importance sampling, a
variational bound with an estimated partition function), a test log-likelihood is reported
the same way: the mean of :math:`\log \hat p(x_n)` over the examples, in nats per example,
with two standard errors that answer different questions:

* ``stderr``: the spread of :math:`\log p(x)` over examples divided by :math:`\sqrt N`, how
  much another test set of the same size would move the mean (the number to quote beside a
  test log-likelihood);
* ``mc_stderr``: the Monte Carlo error of the estimator for *these* examples, how much a
  rerun with other random numbers would move it (0 for an exact log-likelihood).

Diagnostics that only some estimators have (effective sample sizes, PSIS :math:`\hat k`,
:math:`\log Z` and its sandwich) are NaN or absent where they do not apply.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["KHAT_THRESHOLD", "LogLikelihood", "LogLikelihoodBracket", "ReconstructionScore"]

#: PSIS :math:`\hat k` above which an importance-sampling estimate is unreliable [Vehtari et al.]
KHAT_THRESHOLD = 0.7

#: the AIS diagnostics of an energy-based log-likelihood (``LogLikelihood.diagnostics``)
_AIS_KEYS = (
    "log_z_ess",
    "num_chains",
    "num_betas",
    "ess_threshold",
    "log_weight_std",
    "log_weight_range",
    "reliable",
)


def _nan(n: int) -> torch.Tensor:
    return torch.full((n,), float("nan"), dtype=torch.float64)


@dataclass
class LogLikelihood:
    r"""An estimate of the mean test log-likelihood, in nats per example.

    :ivar float mean: mean of :math:`\log \hat p(x_n)` over the examples.
    :ivar float stderr: standard error of ``mean`` over examples (see module docs).
    :ivar float mc_stderr: Monte Carlo standard error of ``mean`` (0 when exact).
    :ivar torch.Tensor per_example: ``(N,)`` float64 values of :math:`\log \hat p(x_n)`.
    :ivar str estimator: how the values were obtained, e.g. ``"exact"``,
        ``"importance sampling"``, ``"AIS (100 chains, 14500 temperatures)"``.
    :ivar int num_samples: importance samples per example, AIS chains, or orderings in an
        ensemble (0 when no sampling is involved).
    :ivar torch.Tensor ess: ``(N,)`` effective sample sizes (NaN where not applicable).
    :ivar torch.Tensor khat: ``(N,)`` PSIS Pareto :math:`\hat k` (NaN where not computed).
    :ivar dict diagnostics: estimator-specific numbers (e.g. ``log_z``, ``log_z_stderr`` and
        the sandwich ``log_likelihood_lower`` / ``log_likelihood_upper`` of AIS).
    :ivar bool bound: the per-example values are lower bounds on :math:`\\log p(x)` (e.g. a
        DBM's mean-field bound), not estimates of it.
    """

    mean: float
    stderr: float
    mc_stderr: float
    per_example: torch.Tensor
    estimator: str
    num_samples: int = 0
    ess: torch.Tensor | None = None
    khat: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    bound: bool = False

    def __post_init__(self) -> None:
        n = int(self.per_example.numel())
        if self.ess is None:
            self.ess = _nan(n)
        if self.khat is None:
            self.khat = _nan(n)

    @classmethod
    def from_per_example(
        cls, per_example: torch.Tensor, estimator: str, *, mc_stderr: float = 0.0, **fields
    ) -> LogLikelihood:
        """The result for ``(N,)`` per-example values: their mean and its standard error over
        examples (NaN for a single example); other fields as given."""
        per_example = per_example.detach().double().cpu().reshape(-1)
        n = per_example.numel()
        if n == 0:
            raise ValueError("per_example: no examples were scored")
        return cls(
            mean=per_example.mean().item(),
            stderr=per_example.std().item() / math.sqrt(n) if n > 1 else float("nan"),
            mc_stderr=float(mc_stderr),
            per_example=per_example,
            estimator=estimator,
            **fields,
        )

    # ---- derived numbers --------------------------------------------------------------

    @property
    def nll(self) -> float:
        """Negative log-likelihood in nats per example (``-mean``)."""
        return -self.mean

    @property
    def num_examples(self) -> int:
        return int(self.per_example.numel())

    @property
    def is_exact(self) -> bool:
        """An exact log-likelihood: no Monte Carlo error and not a bound."""
        return self.mc_stderr == 0 and not self.bound

    @property
    def khat_share(self) -> float:
        r"""Share of examples with :math:`\hat k > 0.7` (NaN when none was computed)."""
        k = self.khat[~torch.isnan(self.khat)]
        return float((k > KHAT_THRESHOLD).float().mean()) if k.numel() else float("nan")

    @property
    def method(self) -> str:
        """Deprecated alias of :attr:`estimator` (removed in the next release)."""
        warnings.warn(
            "LogLikelihood.method is deprecated; use LogLikelihood.estimator",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.estimator

    @property
    def extra(self) -> dict[str, Any]:
        """Deprecated alias of :attr:`diagnostics` (removed in the next release)."""
        warnings.warn(
            "LogLikelihood.extra is deprecated; use LogLikelihood.diagnostics",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.diagnostics

    # ---- reporting --------------------------------------------------------------------

    def _headline(self, with_k: bool) -> str:
        k = f", K={self.num_samples}" if with_k else ""
        return (
            f"test log-likelihood: {self.mean:.2f} ± {self.stderr:.2f} nats/example "
            f"(NLL {self.nll:.2f}; {self.estimator}{k}, N={self.num_examples})"
        )

    def summary(self) -> str:
        """A few lines for people: the estimate with its standard error, then the
        diagnostics of its estimator."""
        d = self.diagnostics
        if "log_z" in d:  # an energy-based model: one log Z shared by all examples
            lines = [
                self._headline(False),
                f"  log Z = {d['log_z']:.3f} ± {d['log_z_stderr']:.3f}; sandwich on the mean "
                f"log-likelihood [{d['log_likelihood_lower']:.2f}, "
                f"{d['log_likelihood_upper']:.2f}]",
            ]
            lines += self._ais_lines()
            return "\n".join(lines)
        if self.is_exact and bool(torch.isnan(self.ess).all()):
            return self._headline(False)
        lines = [
            self._headline(True),
            f"  Monte Carlo std. error of the mean: {self.mc_stderr:.3f}",
        ]
        if self.bound and self.mc_stderr > 0:
            lines.append("  a stochastic lower bound (in expectation) on the log-likelihood")
        lines += self._ais_lines()
        ess = self.ess[~torch.isnan(self.ess)]
        if ess.numel():
            lines.append(
                f"  ESS per example: median {ess.median().item():.1f}, "
                f"min {ess.min().item():.1f} (of {self.num_samples})"
            )
        k = self.khat[~torch.isnan(self.khat)]
        if k.numel():
            lines.append(
                f"  PSIS k-hat: median {k.median().item():.2f}, max {k.max().item():.2f}, "
                f"{100 * self.khat_share:.1f}% of examples above {KHAT_THRESHOLD}"
            )
        return "\n".join(lines)

    def _ais_lines(self) -> list[str]:
        """The AIS diagnostics of the summary: the ESS of the chains' weights, the spread of
        their log-weights, and a line that cannot be missed when the estimate is
        unreliable (ESS below ``ess_threshold``: 10% of the chains, at least 2)."""
        d = self.diagnostics
        prefix = "worst_" if "worst_log_z_ess" in d else ""
        if prefix + "log_z_ess" not in d:  # older results: the ESS alone, if any
            ess = self.ess[~torch.isnan(self.ess)]
            if "log_z" in d and ess.numel():
                return [
                    f"  AIS effective sample size {ess[0].item():.1f} of {self.num_samples} chains"
                ]
            return []
        g = {k: d[prefix + k] for k in _AIS_KEYS}
        which = "smallest of the partition functions: " if prefix else ""
        lines = [
            f"  AIS effective sample size {which}{g['log_z_ess']:.1f} of {g['num_chains']} "
            f"chains, {g['num_betas']} temperatures (unreliable below "
            f"{g['ess_threshold']:g}); log-weights std {g['log_weight_std']:.2f}, max-min "
            f"{g['log_weight_range']:.2f} nats"
        ]
        if "chain_rounds" in d:
            rounds = ", ".join(f"{n} chains: ESS {e:.1f}" for n, e in d["chain_rounds"])
            lines.append(f"  AIS chains for min_ess {d['min_ess']:g}: {rounds}")
        if not g["reliable"]:
            lines.append(
                "  UNRELIABLE: a few chains carry the AIS estimate; log Z is most likely "
                "underestimated and this log-likelihood overstated (more chains or "
                "temperatures; compare with RAISE)"
            )
        return lines

    __str__ = summary

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers (JSON-serialisable): what ``eval.json`` of a run holds."""
        k = self.khat[~torch.isnan(self.khat)]
        ess = self.ess[~torch.isnan(self.ess)]
        return {
            "log_likelihood": self.mean,
            "nll": self.nll,
            "stderr": self.stderr,
            "mc_stderr": self.mc_stderr,
            "num_examples": self.num_examples,
            "num_samples": self.num_samples,
            "estimator": self.estimator,
            "bound": self.bound,
            "ess_median": float(ess.median()) if ess.numel() else None,
            "ess_min": float(ess.min()) if ess.numel() else None,
            "khat_median": float(k.median()) if k.numel() else None,
            "khat_max": float(k.max()) if k.numel() else None,
            "khat_share_above_0.7": self.khat_share if k.numel() else None,
            **self.diagnostics,
        }


@dataclass
class LogLikelihoodBracket:
    r"""Two estimates of the same examples' mean test log-likelihood that err in opposite
    directions: AIS (``optimistic``, too high in expectation because
    :math:`\mathbb E[\log \hat Z] \le \log Z`) and RAISE (``conservative``, a stochastic
    lower bound; :mod:`pyrogen.evaluate.reverse_ais`). What
    :func:`~pyrogen.evaluate.reverse_ais.log_likelihood_bracket` returns, and what a
    benchmark row prints side by side.

    :ivar LogLikelihood optimistic: the AIS estimate.
    :ivar LogLikelihood conservative: the RAISE estimate.
    """

    optimistic: LogLikelihood
    conservative: LogLikelihood

    def __post_init__(self) -> None:
        if self.optimistic.num_examples != self.conservative.num_examples:
            raise ValueError(
                "optimistic and conservative must score the same examples, got "
                f"{self.optimistic.num_examples} and {self.conservative.num_examples}"
            )

    @property
    def upper(self) -> float:
        """The optimistic (AIS) mean, nats per example."""
        return self.optimistic.mean

    @property
    def lower(self) -> float:
        """The conservative (RAISE) mean, nats per example."""
        return self.conservative.mean

    @property
    def gap(self) -> float:
        """``upper - lower``: how far apart the two are (near 0, within their Monte Carlo
        errors, when both are accurate; negative only by Monte Carlo error)."""
        return self.upper - self.lower

    def contains(self, value: float, num_stderr: float = 0.0) -> bool:
        """Whether ``value`` lies in ``[lower, upper]`` widened by ``num_stderr`` Monte Carlo
        standard errors of each end."""
        lo = self.lower - num_stderr * _finite(self.conservative.mc_stderr)
        hi = self.upper + num_stderr * _finite(self.optimistic.mc_stderr)
        return lo <= value <= hi

    def row(self) -> dict[str, str]:
        """Table cells: ``AIS``, ``RAISE`` (mean ± Monte Carlo error), ``gap`` and ``ESS``
        (of the AIS chains)."""
        d = self.optimistic.diagnostics
        ess = d.get("log_z_ess")
        return {
            "AIS": f"{self.upper:.2f} ± {self.optimistic.mc_stderr:.2f}",
            "RAISE": f"{self.lower:.2f} ± {self.conservative.mc_stderr:.2f}",
            "gap": f"{self.gap:.2f}",
            "ESS": "-" if ess is None else f"{ess:.1f}/{d['num_chains']}",
        }

    def summary(self) -> str:
        cells = self.row()
        return "\n".join(
            [
                f"log-likelihood bracket on {self.optimistic.num_examples} examples: RAISE "
                f"(conservative) {cells['RAISE']} <= AIS (optimistic) {cells['AIS']} nats/"
                f"example, gap {cells['gap']}; AIS ESS {cells['ESS']}",
                "AIS:   " + self.optimistic.summary().replace("\n", "\n       "),
                "RAISE: " + self.conservative.summary().replace("\n", "\n       "),
            ]
        )

    __str__ = summary

    def to_dict(self) -> dict[str, Any]:
        """Both results' plain numbers and the bracket's ends."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "gap": self.gap,
            "ais": self.optimistic.to_dict(),
            "raise": self.conservative.to_dict(),
        }


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


@dataclass
class ReconstructionScore:
    """Test reconstruction of a deterministic model (an autoencoder has no density, so no
    :class:`LogLikelihood`): what ``pyrogen evaluate`` reports for one.

    :ivar float squared_error: mean :math:`\\lVert x - \\hat x \\rVert^2` per example.
    :ivar float reconstruction_error: mean training loss per example (cross-entropy for a
        Bernoulli output, half the scaled squared error for a Gaussian one).
    :ivar int num_examples: examples scored.
    :ivar str loss: the name of ``reconstruction_error``.
    """

    squared_error: float
    reconstruction_error: float
    num_examples: int
    loss: str

    def summary(self) -> str:
        return (
            f"reconstruction on {self.num_examples} examples: squared error "
            f"{self.squared_error:.4f} per example, {self.loss} {self.reconstruction_error:.4f} "
            "(a deterministic model has no log-likelihood)"
        )

    __str__ = summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "squared_error": self.squared_error,
            "reconstruction_error": self.reconstruction_error,
            "num_examples": self.num_examples,
            "loss": self.loss,
        }
