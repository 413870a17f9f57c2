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

import numpy as np
import torch
from tqdm import tqdm

from pyrogen import distributed
from pyrogen._checks import warn_user
from pyrogen._rng import preserved_rng
from pyrogen.accelerate import full_precision
from pyrogen.evaluate.result import KHAT_THRESHOLD, LogLikelihood
from pyrogen.infer._weights import (
    compute_log_weights,
    guess_max_plate_nesting,
    plate_nesting_arg,
    run_particles,
)


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
        lw = compute_log_weights(model_sites, guide_sites, max_plate_nesting, require_rsample=False)
        if lw.log_weights.dim() != 2 or lw.log_weights.shape[1] != x.shape[0]:
            raise ValueError(
                "per-example importance sampling needs every latent variable inside the "
                "data plate (one weight per particle and example); got log-weights of shape "
                f"{tuple(lw.log_weights.shape)} for a batch of {x.shape[0]}"
            )
        chunks.append(lw.log_weights.double())
        remaining -= k
    return torch.cat(chunks, dim=0)


@full_precision
def importance_log_likelihood(
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
    seed: int | None = None,
) -> LogLikelihood:
    r"""Estimate the mean test log-likelihood :math:`\frac1N\sum_n \log p(x_n)` by
    importance sampling with the guide as proposal (see module docs).

    Under ``torchrun`` (an initialised process group of :math:`R` ranks) the batches are
    shared out, batch :math:`i` to rank :math:`i \bmod R`, and the per-example results
    gathered in order, so that every rank returns the same result; with a ``seed`` it is
    the single-process result for that seed.

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
    :param int seed: draw batch :math:`i`'s samples from the global torch stream seeded with
        ``(seed, i)`` (and leave the global streams as they were), so that the estimate does
        not depend on how the batches are shared among processes; ``None``: draw from the
        global stream as it is.
    :returns: :class:`LogLikelihood`.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = torch.device(device) if device is not None else _module_device(model)
    batches, num_batches = _as_batches(data, batch_size)
    world = distributed.world()
    if world.size > 1:  # this rank's share of the batches, by index
        batches = list(batches)
        first = batches[0][0] if isinstance(batches[0], list | tuple) else batches[0]
        if particle_batch_size is None:  # as the single process chooses it (first batch)
            width = max(1, first[0].numel())
            particle_batch_size = int(
                max(1, min(num_samples, max_elements // (width * first.shape[0])))
            )
        mine = list(range(world.rank, num_batches, world.size))
        batches = [batches[i] for i in mine]
        progress = progress and world.is_main
    else:
        mine = range(num_batches)
    per_example, ess, khat, mc_var = [], [], [], []
    nesting = plate_nesting_arg(max_plate_nesting)
    bar = tqdm(batches, total=len(mine), desc=f"log p(x), K={num_samples}", disable=not progress)
    for index, x in zip(mine, bar):
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
        if seed is None:
            lw = example_log_weights(model, guide, x, num_samples, particle_batch_size, nesting)
        else:
            with preserved_rng():
                torch.manual_seed(batch_seed(seed, index))
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
    if world.size > 1:
        held = dict(zip(mine, zip(per_example, ess, khat, mc_var)))
        per_example, ess, khat, mc_var = map(
            list, zip(*distributed.gather_in_order(held, num_batches, world))
        )
    result = LogLikelihood.from_per_example(
        torch.cat(per_example),
        "importance sampling",
        mc_stderr=math.sqrt(torch.cat(mc_var).sum().item()) / sum(len(v) for v in mc_var),
        num_samples=int(num_samples),
        ess=torch.cat(ess).double(),
        khat=torch.cat(khat),
    )
    share = result.khat_share
    if share == share and share > 0.05 and world.is_main:
        warn_user(
            f"PSIS k-hat > {KHAT_THRESHOLD} for {100 * share:.1f}% of the examples: the "
            "importance weights are heavy-tailed there and their log p(x) estimates are "
            "unreliable (biased low). Use more samples or a better-fitted guide.",
        )
    return result


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index`` of an evaluation seeded with ``seed`` (the same in one
    process or several).

    :param int seed: the evaluation's seed.
    :param int index: the batch's position in the data.
    """
    return (int(seed) * 1_000_003 + int(index)) % (2**63 - 1)


@torch.no_grad()
@full_precision
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
    nesting = plate_nesting_arg(max_plate_nesting)
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
