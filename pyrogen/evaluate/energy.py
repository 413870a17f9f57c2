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

**Reliability.** Every AIS :math:`\log \hat Z` comes with the effective sample size of its
chains' weights and the spread of their log-weights (in ``diagnostics`` and
:meth:`~pyrogen.evaluate.LogLikelihood.summary`), and an estimate whose ESS is below
:func:`~pyrogen.distributions.annealing.ess_threshold` (10% of the chains, and never below
2) raises an :class:`~pyrogen.distributions.annealing.UnreliableEstimateWarning`. With
``min_ess``, more chains are run (the number doubles, up to ``max_chains``) until the ESS
reaches it; the chains of all rounds are pooled into one estimate (they are independent
runs of the same path, so the pooled :math:`\hat Z` is still unbiased), and each round is
seeded as further chain groups, so the result still does not depend on the number of
processes. AIS is optimistic about the log-likelihood in expectation; the conservative
counterpart is RAISE (:mod:`pyrogen.evaluate.reverse_ais`).
"""

from __future__ import annotations

import warnings

import torch

from pyrogen import distributed
from pyrogen._checks import warn_user
from pyrogen._rng import preserved_rng
from pyrogen.accelerate import full_precision
from pyrogen.distributions.annealing import (
    UnreliableEstimateWarning,
    ais,
    ais_estimate,
    default_betas,
    describe_model,
)
from pyrogen.distributions.energy import EnergyBasedDistribution
from pyrogen.evaluate.importance import batch_seed
from pyrogen.evaluate.result import LogLikelihood


def _chain_groups(num_chains: int, chain_groups: int) -> list[int]:
    """The sizes of ``chain_groups`` near-equal groups of ``num_chains`` chains."""
    sizes = [len(c) for c in torch.arange(int(num_chains)).tensor_split(int(chain_groups))]
    if min(sizes) < 2:
        raise ValueError(
            f"chain_groups: each of the {chain_groups} groups needs at least 2 of the "
            f"{num_chains} chains"
        )
    return sizes


def _run_groups(path, sizes, first, betas, seed, world, progress):
    r"""Log-weights of chain groups ``first, first + 1, ...`` (sizes ``sizes``) of AIS on
    ``path``, group :math:`g` seeded with ``(seed, g)`` and run by rank :math:`g \bmod R`;
    gathered in order on every rank."""
    held = {}
    for i in range(world.rank, len(sizes), world.size):
        with preserved_rng():
            if seed is not None:
                torch.manual_seed(batch_seed(seed, first + i))
            run = ais(path, num_chains=sizes[i], betas=betas, progress=progress and i == 0)
        held[i] = run.log_weights.cpu()
    return torch.cat(distributed.gather_in_order(held, len(sizes), world))


def _grouped_ais(
    dist, base, num_chains, betas, chain_groups, seed, world, progress, min_ess, max_chains
):
    r"""One AIS :math:`\log Z` from ``chain_groups`` runs of :func:`ais` on the same path,
    shared among the ranks and seeded per group; with ``min_ess``, further rounds of chains
    (doubling the total, at most ``max_chains``) until the pooled ESS reaches it. Returns
    the estimate and what the rounds did (``[(chains, ESS)]`` after each round)."""
    sizes = _chain_groups(num_chains, chain_groups)
    if betas is None or isinstance(betas, int):
        betas = default_betas(betas or 14500)
    path = dist.annealing_path(data=base)
    log_w = _run_groups(path, sizes, 0, betas, seed, world, progress)
    result = ais_estimate(log_w, path.log_z_base, len(betas))
    rounds = [(log_w.numel(), float(result.ess))]
    next_group = len(sizes)
    while min_ess is not None and rounds[-1][1] < min_ess and log_w.numel() < max_chains:
        more = min(log_w.numel(), max_chains - log_w.numel())
        sizes = _chain_groups(more, min(chain_groups, more // 2))
        log_w = torch.cat([log_w, _run_groups(path, sizes, next_group, betas, seed, world, False)])
        next_group += len(sizes)
        result = ais_estimate(log_w, path.log_z_base, len(betas))
        rounds.append((log_w.numel(), float(result.ess)))
    return result, rounds


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
    min_ess: float | None = None,
    max_chains: int | None = None,
    force_ais: bool = False,
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
    :param float min_ess: run more AIS chains, doubling their number up to ``max_chains``,
        until the effective sample size of the weights is at least this (a number of
        chains, e.g. 50); says what it did on the standard output when ``progress``, and in
        ``diagnostics["chain_rounds"]``. ``None``: ``num_chains`` chains, once. Only for
        models with one partition function.
    :param int max_chains: the most chains ``min_ess`` may run (default
        ``16 * num_chains``).
    :param bool force_ais: estimate :math:`\\log Z` by AIS even where it can be enumerated
        (to check AIS against the exact value on the same model).

    An AIS :math:`\\log \\hat Z` whose ESS stays below
    :func:`~pyrogen.distributions.annealing.ess_threshold` (10% of the chains, at least 2)
    raises an :class:`~pyrogen.distributions.annealing.UnreliableEstimateWarning`; the ESS
    and the spread of the log-weights are in ``diagnostics`` and in the summary.
    """
    if hasattr(data, "tensor") and callable(data.tensor):
        data = data.tensor()
    if not isinstance(data, torch.Tensor) or data.dim() != 2:
        raise ValueError(
            f"data: expected an (N, V) tensor, got {getattr(data, 'shape', type(data))}"
        )
    ref = dist.parameter_tensors()[0]
    data = data.to(device=ref.device, dtype=ref.dtype)
    exact = dist.can_enumerate() and not force_ais
    world = distributed.world()
    progress = progress and world.is_main
    one_path = (
        dist.partition_group is None
        and type(dist)._ais_log_partition is EnergyBasedDistribution._ais_log_partition
    )
    max_chains = _check_min_ess(dist, min_ess, max_chains, num_chains, one_path or exact)
    grouped = one_path and (
        seed is not None or chain_groups > 1 or world.size > 1 or min_ess is not None
    )
    rounds = None
    with torch.no_grad():
        if exact:
            groups = dist.log_partition_groups(data, "exact")
        elif grouped:
            base = data if base_data is None else base_data.to(data)
            log_z, rounds = _grouped_ais(
                dist, base, num_chains, betas, chain_groups, seed, world, progress, min_ess,
                max_chains,
            )  # fmt: skip
            groups = [(log_z, None)]
            if progress and len(rounds) > 1:
                print(_rounds_text(dist, rounds, min_ess, max_chains))
        else:
            base = data if base_data is None else base_data.to(data)
            groups = None
            if world.is_main:
                with preserved_rng(), warnings.catch_warnings():
                    # warned about below, once per call (log_partition's own warning would
                    # fire only when it is computed, not when it comes from the cache)
                    warnings.simplefilter("ignore", UnreliableEstimateWarning)
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
    if not exact and world.is_main:
        _warn_unreliable(dist, groups, rounds, min_ess)
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
        if not exact:
            diagnostics.update(_ais_diagnostics(first))
    else:
        singular, plural = dist.partition_group
        estimator = f"{method} per {singular}{detail}, {len(groups)} {plural}"
        diagnostics = {f"num_{plural}": len(groups), "log_z_stderr_max": max(stderrs)}
        if not exact:
            worst = min((lp for lp, _ in groups), key=lambda lp: float(lp.ess))
            diagnostics.update({"worst_" + k: v for k, v in _ais_diagnostics(worst).items()})
    if rounds is not None and min_ess is not None:
        diagnostics["chain_rounds"] = [list(r) for r in rounds]
        diagnostics["min_ess"] = float(min_ess)
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


def _check_min_ess(dist, min_ess, max_chains, num_chains, supported) -> int | None:
    """``max_chains`` (default ``16 * num_chains``) after checking ``min_ess`` and it."""
    if min_ess is None:
        if max_chains is not None:
            raise ValueError("max_chains: only used with min_ess; pass min_ess as well")
        return None
    if not min_ess > 0:
        raise ValueError(f"min_ess must be a positive number of chains, got {min_ess}")
    if not supported:
        raise ValueError(
            f"min_ess: adaptive chains need one partition function shared by all examples; "
            f"{type(dist).__name__} has its own AIS (one log Z per "
            f"{(dist.partition_group or ('group',))[0]}); raise num_chains instead"
        )
    max_chains = 16 * int(num_chains) if max_chains is None else int(max_chains)
    if max_chains < num_chains:
        raise ValueError(f"max_chains ({max_chains}) must be at least num_chains ({num_chains})")
    if min_ess > max_chains:
        raise ValueError(
            f"min_ess ({min_ess}) cannot be reached with at most max_chains = {max_chains} "
            "chains (the ESS is at most the number of chains)"
        )
    return max_chains


def _rounds_text(dist, rounds, min_ess, max_chains) -> str:
    steps = ", ".join(f"{n} chains: ESS {e:.1f}" for n, e in rounds)
    reached = rounds[-1][1] >= min_ess
    end = "reached" if reached else f"not reached at max_chains = {max_chains}"
    return f"AIS for {describe_model(dist)}, min_ess {min_ess:g} {end}: {steps}"


def _warn_unreliable(dist, groups, rounds, min_ess) -> None:
    """One :class:`UnreliableEstimateWarning` per unreliable :math:`\\log \\hat Z` (and one
    when ``min_ess`` was not reached within ``max_chains``)."""
    for lp, _ in groups:
        lp.warn_if_unreliable(dist)
    if rounds is not None and min_ess is not None and rounds[-1][1] < min_ess:
        warn_user(
            f"AIS for {describe_model(dist)} did not reach min_ess = {min_ess:g}: ESS "
            f"{rounds[-1][1]:.1f} with {rounds[-1][0]} chains (max_chains); rounds "
            f"{[list(r) for r in rounds]}. Lengthen the schedule (betas=) rather than adding "
            "chains: the ESS share of the chains does not grow with their number.",
            UnreliableEstimateWarning,
        )


def _ais_diagnostics(lp) -> dict:
    """The AIS diagnostics of one :math:`\\log \\hat Z` for ``LogLikelihood.diagnostics``."""
    d = lp.diagnostics()
    return {
        "log_z_ess": d["ess"],
        "num_chains": d["num_chains"],
        "num_betas": d["num_betas"],
        "ess_threshold": d["ess_threshold"],
        "log_weight_std": d["log_weight_std"],
        "log_weight_range": d["log_weight_range"],
        "reliable": d["reliable"],
    }
