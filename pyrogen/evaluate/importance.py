r"""Test log-likelihood by importance sampling, with reliability diagnostics.

For each example :math:`x` the guide is the proposal,

.. math::

    \log \hat p(x) = \log \frac1K \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)},
    \qquad z_k \sim q(z \mid x),

a consistent estimator of :math:`\log p(x)` (biased downward by Jensen's inequality, by an
amount that vanishes as :math:`K \to \infty`; in expectation it is the IWAE bound
:math:`\mathcal L_K`). ``K = 5000`` is the protocol of Burda et al. (2015).

Diagnostics per example:

* effective sample size :math:`\mathrm{ESS} = (\sum_k w_k)^2 / \sum_k w_k^2` (Kish);
* the Pareto shape :math:`\hat k` of the upper tail of the weights (PSIS, computed with
  ArviZ): :math:`\hat k > 0.7` means the variance of the weights is effectively infinite
  and the estimate cannot be trusted [2];
* the Monte Carlo standard error of :math:`\log \hat p(x)` by the delta method,
  :math:`\mathrm{Var}[\log \hat p] \approx 1/\mathrm{ESS} - 1/K`.

**References**

[1] Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. 2015.

[2] Pareto Smoothed Importance Sampling. Aki Vehtari, Daniel Simpson, Andrew Gelman,
    Yuling Yao, Jonah Gabry. 2015 (JMLR 2024).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from pyrogen.infer._weights import compute_log_weights, guess_max_plate_nesting, run_particles

KHAT_THRESHOLD = 0.7


@dataclass
class LogLikelihood:
    """An estimate of the mean test log-likelihood, in nats per example.

    :ivar mean: mean of :math:`\\log \\hat p(x_n)` over the examples.
    :ivar stderr: standard error of ``mean`` as an estimate of the population mean (spread
        of :math:`\\log p(x)` over examples divided by :math:`\\sqrt N`); the number to quote
        next to a test log-likelihood.
    :ivar mc_stderr: Monte Carlo standard error of ``mean`` for these examples (how much a
        rerun with other samples would move it).
    :ivar per_example: ``(N,)`` tensor of :math:`\\log \\hat p(x_n)`.
    :ivar ess: ``(N,)`` effective sample sizes of the importance weights.
    :ivar khat: ``(N,)`` PSIS Pareto :math:`\\hat k` (NaN where not computed).
    """

    mean: float
    stderr: float
    mc_stderr: float
    per_example: torch.Tensor
    ess: torch.Tensor
    khat: torch.Tensor
    num_samples: int
    method: str = "importance sampling"
    extra: dict = field(default_factory=dict)

    @property
    def nll(self) -> float:
        """Negative log-likelihood in nats per example (``-mean``)."""
        return -self.mean

    @property
    def num_examples(self) -> int:
        return int(self.per_example.numel())

    @property
    def khat_share(self) -> float:
        """Share of examples with :math:`\\hat k > 0.7`."""
        k = self.khat[~torch.isnan(self.khat)]
        return float((k > KHAT_THRESHOLD).float().mean()) if k.numel() else float("nan")

    def summary(self) -> str:
        if "log_z" in self.extra:  # an energy-based model: log Z shared by all examples
            e = self.extra
            lines = [
                f"test log-likelihood: {self.mean:.2f} ± {self.stderr:.2f} nats/example "
                f"(NLL {self.nll:.2f}; {self.method}, N={self.num_examples})",
                f"  log Z = {e['log_z']:.3f} ± {e['log_z_stderr']:.3f}; sandwich on the mean "
                f"log-likelihood [{e['log_likelihood_lower']:.2f}, "
                f"{e['log_likelihood_upper']:.2f}]",
            ]
            if not torch.isnan(self.ess[0]):
                lines.append(f"  AIS effective sample size {self.ess[0].item():.1f} chains")
            return "\n".join(lines)
        if self.mc_stderr == 0 and bool(torch.isnan(self.ess).all()):  # exact log p(x)
            return (
                f"test log-likelihood: {self.mean:.2f} ± {self.stderr:.2f} nats/example "
                f"(NLL {self.nll:.2f}; {self.method}, N={self.num_examples})"
            )
        k = self.khat[~torch.isnan(self.khat)]
        lines = [
            f"test log-likelihood: {self.mean:.2f} ± {self.stderr:.2f} nats/example "
            f"(NLL {self.nll:.2f}; {self.method}, K={self.num_samples}, N={self.num_examples})",
            f"  Monte Carlo std. error of the mean: {self.mc_stderr:.3f}",
            f"  ESS per example: median {self.ess.median().item():.1f}, "
            f"min {self.ess.min().item():.1f} (of {self.num_samples})",
        ]
        if k.numel():
            lines.append(
                f"  PSIS k-hat: median {k.median().item():.2f}, max {k.max().item():.2f}, "
                f"{100 * self.khat_share:.1f}% of examples above {KHAT_THRESHOLD}"
            )
        return "\n".join(lines)

    __str__ = summary

    def to_dict(self) -> dict:
        k = self.khat[~torch.isnan(self.khat)]
        ess = self.ess[~torch.isnan(self.ess)]
        return {
            "log_likelihood": self.mean,
            "nll": self.nll,
            "stderr": self.stderr,
            "mc_stderr": self.mc_stderr,
            "num_examples": self.num_examples,
            "num_samples": self.num_samples,
            "method": self.method,
            "ess_median": float(ess.median()) if ess.numel() else None,
            "ess_min": float(ess.min()) if ess.numel() else None,
            "khat_median": float(k.median()) if k.numel() else None,
            "khat_max": float(k.max()) if k.numel() else None,
            "khat_share_above_0.7": self.khat_share if k.numel() else None,
            **self.extra,
        }


def psis_khat(log_weights: np.ndarray) -> np.ndarray:
    """PSIS Pareto :math:`\\hat k` per row of ``log_weights`` (shape ``(N, K)``), by ArviZ
    (0 for rows of equal weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz's notice about its refactor
        import arviz as az  # imported lazily: arviz pulls in xarray and pandas

    log_weights = np.asarray(log_weights, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz warns itself about large k-hat; we do it once
        _, khat = az.psislw(log_weights)
    khat = np.asarray(khat, dtype=np.float64)
    # Equal weights (the proposal is the posterior) have no tail to fit; they are as
    # reliable as importance sampling gets, so report k-hat = 0 rather than ArviZ's inf.
    spread = log_weights.max(-1) - log_weights.min(-1)
    khat[spread < 1e-9 * np.maximum(1.0, np.abs(log_weights).max(-1))] = 0.0
    return khat


def _as_batches(data, batch_size: int) -> tuple[Iterable[torch.Tensor], int]:
    if hasattr(data, "tensor") and callable(data.tensor):  # pyrogen ImageDataset
        data = data.tensor()
    if isinstance(data, torch.Tensor):
        if data.dim() == 0 or data.shape[0] == 0:
            raise ValueError(
                f"data: expected a non-empty batch of examples, got {tuple(data.shape)}"
            )
        n = data.shape[0]
        return (data[i : i + batch_size] for i in range(0, n, batch_size)), math.ceil(
            n / batch_size
        )
    if isinstance(data, torch.utils.data.Dataset):
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        return iter(loader), len(loader)
    if isinstance(data, Iterable):
        batches = list(data)
        return iter(batches), len(batches)
    raise TypeError(f"data must be a tensor, a Dataset or an iterable of batches, got {type(data)}")


def _module_device(fn) -> torch.device | None:
    owner = getattr(fn, "__self__", fn)
    if isinstance(owner, torch.nn.Module):
        for p in owner.parameters():
            return p.device
    return None


@torch.no_grad()
def example_log_weights(
    model,
    guide,
    x: torch.Tensor,
    num_samples: int,
    particle_batch_size: int,
    max_plate_nesting: int,
    *args,
    **kwargs,
) -> torch.Tensor:
    """``(num_samples, batch)`` log importance weights for the examples in ``x``, drawn
    ``particle_batch_size`` particles at a time."""
    chunks = []
    remaining = num_samples
    while remaining > 0:
        k = min(particle_batch_size, remaining)
        model_sites, guide_sites = run_particles(
            model, guide, (x, *args), kwargs, k, max_plate_nesting
        )
        lw = compute_log_weights(model_sites, guide_sites, max_plate_nesting)
        if lw.log_weights.dim() != 2 or lw.log_weights.shape[1] != x.shape[0]:
            raise ValueError(
                "per-example importance sampling needs every latent variable inside the "
                "data plate (one weight per particle and example); got log-weights of shape "
                f"{tuple(lw.log_weights.shape)} for a batch of {x.shape[0]}"
            )
        chunks.append(lw.log_weights.double())
        remaining -= k
    return torch.cat(chunks, dim=0)


def log_likelihood(
    model,
    guide,
    data,
    num_samples: int = 5000,
    batch_size: int = 100,
    particle_batch_size: int | None = None,
    max_elements: int = 2**25,
    max_plate_nesting: int | None = None,
    device: str | torch.device | None = None,
    diagnostics: bool = True,
    progress: bool = True,
) -> LogLikelihood:
    r"""Estimate the mean test log-likelihood :math:`\frac1N\sum_n \log p(x_n)` by
    importance sampling with the guide as proposal (see module docs).

    :param model: Pyro model taking a batch ``x`` as first argument, every latent inside
        ``pyro.plate("data")``.
    :param guide: its guide (the proposal).
    :param data: a tensor of examples, a ``Dataset`` or an iterable of batches (pyrogen
        datasets with dynamic binarization are evaluated on one fixed binarization).
    :param int num_samples: :math:`K` importance samples per example (5000 in the paper).
    :param int batch_size: examples per batch.
    :param int particle_batch_size: particles drawn at once; by default as many as fit in
        ``max_elements`` values of the widest per-particle tensor (memory bound).
    :param device: where to run; defaults to the device of the module owning ``model``.
    :param bool diagnostics: compute PSIS :math:`\hat k` with ArviZ (ESS is always computed).
    :returns: :class:`LogLikelihood`.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = torch.device(device) if device is not None else _module_device(model)
    batches, num_batches = _as_batches(data, batch_size)
    per_example, ess, khat, mc_var = [], [], [], []
    nesting = max_plate_nesting
    bar = tqdm(batches, total=num_batches, desc=f"log p(x), K={num_samples}", disable=not progress)
    for x in bar:
        if isinstance(x, list | tuple):
            x = x[0]
        if device is not None:
            x = x.to(device)
        if nesting is None:
            with torch.no_grad():
                nesting = guess_max_plate_nesting(model, guide, (x,), {})
        if particle_batch_size is None:
            width = max(1, x[0].numel())
            particle_batch_size = int(
                max(1, min(num_samples, max_elements // (width * x.shape[0])))
            )
        lw = example_log_weights(model, guide, x, num_samples, particle_batch_size, nesting)
        lse = torch.logsumexp(lw, dim=0)
        per_example.append((lse - math.log(num_samples)).cpu())
        # Kish ESS from normalised weights, in the log domain.
        b = torch.exp(2 * lse - torch.logsumexp(2 * lw, dim=0))
        ess.append(b.cpu())
        mc_var.append((1.0 / b - 1.0 / num_samples).clamp(min=0).cpu())
        if diagnostics and num_samples >= 5:
            khat.append(torch.from_numpy(psis_khat(lw.T.cpu().numpy())))
        else:
            khat.append(torch.full((x.shape[0],), float("nan"), dtype=torch.float64))
        done = torch.cat(per_example)
        bar.set_postfix(logpx=f"{done.mean().item():.2f}")
    per_example_t = torch.cat(per_example)
    n = per_example_t.numel()
    mean = per_example_t.mean().item()
    stderr = per_example_t.std().item() / math.sqrt(n) if n > 1 else float("nan")
    mc_stderr = math.sqrt(torch.cat(mc_var).sum().item()) / n
    result = LogLikelihood(
        mean=mean,
        stderr=stderr,
        mc_stderr=mc_stderr,
        per_example=per_example_t,
        ess=torch.cat(ess),
        khat=torch.cat(khat),
        num_samples=int(num_samples),
    )
    share = result.khat_share
    if share == share and share > 0.05:
        warnings.warn(
            f"PSIS k-hat > {KHAT_THRESHOLD} for {100 * share:.1f}% of the examples: the "
            "importance weights are heavy-tailed there and their log p(x) estimates are "
            "unreliable (biased low). Use more samples or a better-fitted guide.",
            stacklevel=2,
        )
    return result


@torch.no_grad()
def importance_bound(
    model,
    guide,
    data: torch.Tensor,
    num_particles: int,
    num_replicates: int = 1,
    max_plate_nesting: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Monte Carlo estimate of the IWAE bound :math:`\mathcal L_K(x)` per example.

    Averages ``num_replicates`` independent :math:`K`-sample estimates of
    :math:`\log\frac1K\sum_k w_k`. ``K = 1`` is the ELBO.

    :returns: ``(mean, stderr)``, each of shape ``(N,)``.
    """
    nesting = max_plate_nesting
    if nesting is None:
        nesting = guess_max_plate_nesting(model, guide, (data,), {})
    lw = example_log_weights(
        model, guide, data, num_particles * num_replicates, num_particles * num_replicates, nesting
    )
    lw = lw.reshape(num_replicates, num_particles, -1)
    bounds = torch.logsumexp(lw, dim=1) - math.log(num_particles)
    stderr = (
        bounds.std(0) / math.sqrt(num_replicates)
        if num_replicates > 1
        else torch.full_like(bounds[0], float("nan"))
    )
    return bounds.mean(0), stderr
