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
"""

from __future__ import annotations

import torch

from pyrogen.accelerate import full_precision
from pyrogen.evaluate.result import LogLikelihood


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
    with torch.no_grad():
        if exact:
            groups = dist.log_partition_groups(data, "exact")
        else:
            base = data if base_data is None else base_data.to(data)
            groups = dist.log_partition_groups(
                data, "ais", data=base, num_chains=num_chains, betas=betas, progress=progress
            )
        parts, bound = [], False
        for i in range(0, len(data), batch_size):
            values, is_bound = dist.unnormalized_log_prob_or_bound(
                data[i : i + batch_size], mean_field_iters=mean_field_iters
            )
            parts.append(values)
            bound = bound or is_bound
        unnorm = torch.cat(parts).double().cpu()
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
