r"""Test log-likelihood of energy-based models: :math:`\log p(v) = -F(v) - \log Z`.

:math:`\log Z` is exact when the model can be enumerated and an AIS estimate otherwise
(Salakhutdinov & Murray 2008); it is shared by every example, so its standard error is the
Monte Carlo error of the mean, and the AIS sandwich :math:`[\log \hat Z - 3\,\mathrm{se},
\log \hat Z + 3\,\mathrm{se}]` turns into a sandwich on the mean test log-likelihood.
"""

from __future__ import annotations

import torch

from pyrogen.evaluate.result import LogLikelihood


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
    with torch.no_grad():
        if dist.can_enumerate():
            lp = dist.log_partition("exact")
            method = "exact log Z (enumeration)"
        else:
            base = data if base_data is None else base_data.to(data)
            lp = dist.log_partition(
                "ais", data=base, num_chains=num_chains, betas=betas, progress=progress
            )
            method = f"AIS ({lp.info['num_chains']} chains, {lp.info['num_betas']} temperatures)"
        parts, bound = [], False
        for i in range(0, len(data), batch_size):
            values, is_bound = dist.unnormalized_log_prob_or_bound(
                data[i : i + batch_size], mean_field_iters=mean_field_iters
            )
            parts.append(values)
            bound = bound or is_bound
        unnorm = torch.cat(parts).double()
        if bound:
            method = f"mean-field bound (at most {mean_field_iters} sweeps), " + method
    log_z = float(lp.log_z)
    per_example = (unnorm - log_z).cpu()
    mean = per_example.mean().item()
    ess = lp.ess
    ess_value = float(ess) if ess is not None else float("nan")
    return LogLikelihood.from_per_example(
        per_example,
        method,
        mc_stderr=float(lp.stderr),
        bound=bound,
        num_samples=int(lp.info.get("num_chains", 0)),
        ess=torch.full((per_example.numel(),), ess_value, dtype=torch.float64),
        diagnostics={
            "log_z": log_z,
            "log_z_stderr": float(lp.stderr),
            "log_z_lower": float(lp.lower),
            "log_z_upper": float(lp.upper),
            "log_likelihood_lower": mean - (float(lp.upper) - log_z),
            "log_likelihood_upper": mean + (log_z - float(lp.lower)),
        },
    )
