r"""Test log-likelihood of energy-based models: :math:`\log p(v) = -F(v) - \log Z`.

:math:`\log Z` is exact when the model can be enumerated and an AIS estimate otherwise
(Salakhutdinov & Murray 2008); it is shared by every example, so its standard error is the
Monte Carlo error of the mean, and the AIS sandwich :math:`[\log \hat Z - 3\,\mathrm{se},
\log \hat Z + 3\,\mathrm{se}]` turns into a sandwich on the mean test log-likelihood.

Models with one partition function per group of examples (a replicated-softmax RBM has one
per document length, :math:`Z_D`) score each example under its own group's
(:meth:`~pyrogen.distributions.energy.EnergyBasedDistribution.log_partition_groups`), and the
Monte Carlo error combines the groups' errors,
:math:`\mathrm{se}^2 = \sum_g (N_g / N)^2\, \mathrm{se}(\log \hat Z_g)^2`.

**Several processes** (``torchrun``). The :math:`M` AIS chains are run in ``chain_groups``
groups (chain group :math:`g` seeded with ``(seed, g)`` when a ``seed`` is given), group
:math:`g` by rank :math:`g \bmod R`, and their log-weights gathered into one estimate; the
free energies are computed in batches shared out the same way. The result, the same on every
rank, is the single-process one for the same ``seed`` and ``chain_groups``. Models with one
partition function per group of examples compute them on rank 0 and send them to the others.
"""

from __future__ import annotations

import torch

from pyrogen import distributed
from pyrogen._rng import preserved_rng
from pyrogen.accelerate import full_precision
from pyrogen.distributions.annealing import ais, ais_estimate, default_betas
from pyrogen.distributions.energy import EnergyBasedDistribution
from pyrogen.evaluate.importance import batch_seed
from pyrogen.evaluate.result import LogLikelihood


def _grouped_ais(dist, base, num_chains, betas, chain_groups, seed, world, progress):
    r"""One AIS :math:`\log Z` from ``chain_groups`` runs of :func:`ais` on the same path,
    shared among the ranks and seeded per group."""
    sizes = [len(c) for c in torch.arange(int(num_chains)).tensor_split(int(chain_groups))]
    if min(sizes) < 2:
        raise ValueError(
            f"chain_groups: each of the {chain_groups} groups needs at least 2 of the "
            f"{num_chains} chains"
        )
    if betas is None or isinstance(betas, int):
        betas = default_betas(betas or 14500)
    path = dist.annealing_path(data=base)
    held = {}
    for g in range(world.rank, len(sizes), world.size):
        with preserved_rng():
            if seed is not None:
                torch.manual_seed(batch_seed(seed, g))
            run = ais(path, num_chains=sizes[g], betas=betas, progress=progress and g == 0)
        held[g] = run.log_weights.cpu()
    log_w = torch.cat(distributed.gather_in_order(held, len(sizes), world))
    return ais_estimate(log_w, path.log_z_base, len(betas))


@full_precision
def energy_log_likelihood(
    dist,
    data,
    num_chains: int = 100,
    betas: int | torch.Tensor = 14500,
    base_data: torch.Tensor | None = None,
    batch_size: int = 1000,
    progress: bool = True,
    mean_field_iters: int = 100,
    seed: int | None = None,
    chain_groups: int = 1,
) -> LogLikelihood:
    """Mean :math:`\\log p(v)` of ``data`` under an energy-based distribution.

    :param dist: e.g. a :class:`~pyrogen.distributions.BernoulliRBM`.
    :param data: ``(N, V)`` tensor (or a pyrogen dataset).
    :param int num_chains: AIS chains (when :math:`Z` is not enumerable).
    :param betas: AIS temperatures (count or schedule; 14,500 as in the paper).
    :param base_data: data whose marginals define AIS's base-rate model (default ``data``).
    :param int mean_field_iters: for models whose :math:`-F(v)` is intractable (deep
        Boltzmann machines with large layers), :math:`-F` is replaced by its mean-field lower
        bound (Salakhutdinov & Hinton 2009), so the result is a variational lower bound on
        the log-likelihood (with an estimated :math:`\\log Z`).
    :param int seed: seed chain group :math:`g` with ``(seed, g)`` (and leave the global
        random streams as they were): the estimate then does not depend on the number of
        processes. ``None``: the global stream as it is.
    :param int chain_groups: run the chains in this many groups (what several processes
        share out; see the module docs).
    """
    if hasattr(data, "tensor") and callable(data.tensor):
        data = data.tensor()
    if not isinstance(data, torch.Tensor) or data.dim() != 2:
        raise ValueError(
            f"data: expected an (N, V) tensor, got {getattr(data, 'shape', type(data))}"
        )
    ref = dist.parameter_tensors()[0]
    data = data.to(device=ref.device, dtype=ref.dtype)
    exact = dist.can_enumerate()
    world = distributed.world()
    progress = progress and world.is_main
    grouped = (
        dist.partition_group is None
        and type(dist)._ais_log_partition is EnergyBasedDistribution._ais_log_partition
        and (seed is not None or chain_groups > 1 or world.size > 1)
    )
    with torch.no_grad():
        if exact:
            groups = dist.log_partition_groups(data, "exact")
        elif grouped:
            base = data if base_data is None else base_data.to(data)
            log_z = _grouped_ais(dist, base, num_chains, betas, chain_groups, seed, world, progress)
            groups = [(log_z, None)]
        else:
            base = data if base_data is None else base_data.to(data)
            groups = None
            if world.is_main:
                with preserved_rng():
                    if seed is not None:
                        torch.manual_seed(int(seed))
                    groups = dist.log_partition_groups(
                        data,
                        "ais",
                        data=base,
                        num_chains=num_chains,
                        betas=betas,
                        progress=progress,
                    )
            groups = world.broadcast(groups)
        starts = range(0, len(data), batch_size)
        mine = range(world.rank, len(starts), world.size)
        parts = {}
        for j in mine:
            i = starts[j]
            values, is_bound = dist.unnormalized_log_prob_or_bound(
                data[i : i + batch_size], mean_field_iters=mean_field_iters
            )
            parts[j] = (values.double().cpu(), bool(is_bound))
        if world.size > 1:
            parts = distributed.gather_in_order(parts, len(starts), world)
        else:
            parts = list(parts.values())
        bound = any(b for _, b in parts)
        unnorm = torch.cat([v for v, _ in parts])
    n = unnorm.numel()
    log_z = torch.empty(n, dtype=torch.float64)
    ess = torch.empty(n, dtype=torch.float64)
    variance, stderrs = 0.0, []
    for lp, rows in groups:
        index = slice(None) if rows is None else rows.cpu()
        log_z[index] = float(lp.log_z)
        ess[index] = float(lp.ess) if lp.ess is not None else float("nan")
        share = 1.0 if rows is None else rows.numel() / n
        variance += (share * float(lp.stderr)) ** 2
        stderrs.append(float(lp.stderr))
    first = groups[0][0]
    if exact:
        method = "exact log Z"
        detail = "" if dist.partition_group else " (enumeration)"
    else:
        method = "AIS"
        detail = f" ({first.info['num_chains']} chains, {first.info['num_betas']} temperatures)"
    per_example = unnorm - log_z
    mean = per_example.mean().item()
    if dist.partition_group is None:  # one log Z: its value and the sandwich it gives
        estimator = method + detail
        diagnostics = {
            "log_z": float(first.log_z),
            "log_z_stderr": float(first.stderr),
            "log_z_lower": float(first.lower),
            "log_z_upper": float(first.upper),
            "log_likelihood_lower": mean - (float(first.upper) - float(first.log_z)),
            "log_likelihood_upper": mean + (float(first.log_z) - float(first.lower)),
        }
    else:
        singular, plural = dist.partition_group
        estimator = f"{method} per {singular}{detail}, {len(groups)} {plural}"
        diagnostics = {f"num_{plural}": len(groups), "log_z_stderr_max": max(stderrs)}
    if bound:
        estimator = f"mean-field bound (at most {mean_field_iters} sweeps), " + estimator
    return LogLikelihood.from_per_example(
        per_example,
        estimator,
        mc_stderr=variance**0.5,
        bound=bound,
        num_samples=int(first.info.get("num_chains", 0)),
        ess=ess,
        diagnostics=diagnostics,
    )
