r"""RAISE: conservative test log-likelihoods of RBMs and DBMs by reverse annealing.

AIS (:func:`~pyrogen.evaluate.energy_log_likelihood`) estimates :math:`Z` without bias, so
:math:`\log \hat Z` is too small in expectation and :math:`-F(v) - \log \hat Z` too *large*:
an optimistic estimate of :math:`\log p(v)`, and a badly optimistic one when a few chains
carry the weights. The reverse AIS estimator (RAISE) of Burda, Grosse & Salakhutdinov [1]
errs the other way.

Take the forward AIS chain as a generative model, the *annealing model*

.. math::

    p_{\mathrm{ann}}(x_0, \dots, x_K) = p_0(x_0) \prod_{k=1}^K T_k(x_k \mid x_{k-1}),

the base-rate model :math:`p_0` followed by the block-Gibbs transitions :math:`T_k` at the
path's inverse temperatures :math:`0 = \beta_0 < \dots < \beta_K = 1`; its last state
approximates the model, exactly as :math:`K \to \infty`. Its marginal
:math:`p_{\mathrm{ann}}(v)` is estimated by importance sampling with the *reverse* chain as
proposal: start at a test example, :math:`x_K = v`, and run :math:`x_{k-1} \sim T_k(x_k,
\cdot)` down to :math:`\beta = 0` (the first sweep draws :math:`h \sim p(h \mid v)` at
:math:`\beta = 1`). Each :math:`T_k` is reversible with respect to the intermediate
:math:`f_k`, so the weight is

.. math::

    w = \frac{f_K(x_K)}{Z_0} \prod_{k=0}^{K-1} \frac{f_k(x_k)}{f_{k+1}(x_k)},
    \qquad \mathbb E[w] = p_{\mathrm{ann}}(v)

(:func:`~pyrogen.distributions.annealing.reverse_ais`), and with :math:`M` reverse chains per
example

.. math:: \log \hat p(v) = \log \frac1M \sum_{m=1}^M w_m, \qquad
    \mathbb E[\log \hat p(v)] \le \log p_{\mathrm{ann}}(v)

by Jensen's inequality: a stochastic lower bound on the annealing model's log-likelihood,
which needs no :math:`Z`. The annealing model is itself an approximation of the RBM; for
data drawn from the RBM, :math:`\mathbb E_v[\log p_{\mathrm{ann}}(v)] \le \mathbb E_v[\log
p(v)]` (the gap is :math:`\mathrm{KL}(p \,\|\, p_{\mathrm{ann}})`), and on real test data
the annealing model, a short-run approximation of the RBM, is in practice the worse
model [1]. So RAISE is *conservative*, AIS *optimistic*, and the two **bracket** the test
log-likelihood (:func:`log_likelihood_bracket`); they meet as the schedule lengthens, and a
wide gap says that neither number can be trusted yet.

A Gaussian RBM (real-valued visible units, binary hidden ones) has the same path over
:math:`v` with :math:`h` summed out, from a factorised Gaussian base
(:class:`~pyrogen.distributions.gaussian_rbm.GaussianRBMAnnealingPath`), so its reverse
chain is the binary RBM's and the estimate a stochastic lower bound on the log-*density* of
the annealing model.

For a deep Boltzmann machine the path runs over the even layers :math:`(v, h^{(2)})` with
the odd ones summed out (:class:`~pyrogen.distributions.dbm.DBMAnnealingPath`), so the
reverse chain also needs a starting :math:`h^{(2)}`: it is drawn from the factorised
mean-field posterior :math:`q(h^{(2)} \mid v)` (mixed with 0.1% of fair coins so that
every state has mass) and the weight divided by :math:`q(h^{(2)} \mid v)`, which keeps
:math:`\mathbb E[w] = \sum_{h^{(2)}} p_{\mathrm{ann}}(v, h^{(2)}) = p_{\mathrm{ann}}(v)` [1,
Sec. 4]. No mean-field bound on :math:`-F(v)` is involved.

The base-rate model should be fitted to *training* data (``base_data``): fitted to the test
examples it would carry information about them into the annealing model (with a short
schedule, enough to make RAISE optimistic); without it the base is uniform.

**Cost**: :math:`N \times M` chains of :math:`K` block-Gibbs sweeps, against :math:`M`
chains for AIS's single :math:`\log \hat Z`; the paper used the same schedules for both.
Several processes share the batches of examples (batch :math:`i` seeded with ``(seed, i)``,
run by rank :math:`i \bmod R`), as the other evaluators do.

**References**

[1] Accurate and Conservative Estimates of MRF Log-likelihood using Reverse Annealing.
    Yuri Burda, Roger B. Grosse, Ruslan Salakhutdinov. AISTATS 2015.

[2] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.

[3] Annealed Importance Sampling. Radford M. Neal. 2001.
"""

from __future__ import annotations

import math

import torch

from pyrogen import distributed
from pyrogen._checks import check_binary, check_finite
from pyrogen._rng import preserved_rng
from pyrogen.accelerate import full_precision
from pyrogen.distributions.annealing import (
    effective_sample_size,
    inverse_temperatures,
    reverse_ais,
)
from pyrogen.distributions.dbm import DBM
from pyrogen.distributions.gaussian_rbm import GaussianRBM
from pyrogen.distributions.rbm import BernoulliRBM
from pyrogen.evaluate.energy import energy_log_likelihood
from pyrogen.evaluate.importance import batch_seed
from pyrogen.evaluate.result import LogLikelihood, LogLikelihoodBracket

__all__ = ["log_likelihood_bracket", "raise_log_likelihood", "reverse_start"]

#: distributions whose annealing path's state is the visible layer alone (hidden summed out)
_VISIBLE_STATE = (BernoulliRBM, GaussianRBM)
_SUPPORTED = "BernoulliRBM, GaussianRBM and DBM"

#: share of fair coins mixed into the mean-field proposal of a DBM's :math:`h^{(2)}`
PROPOSAL_COINS = 1e-3


def reverse_start(dist, v: torch.Tensor, mean_field_iters: int = 100):
    r"""The state at :math:`\beta = 1` from which RAISE's reverse chain leaves a test
    example, and the log-density of the part of it that was sampled:
    ``(state, log_q)``.

    * :class:`~pyrogen.distributions.BernoulliRBM` and
      :class:`~pyrogen.distributions.GaussianRBM`: the path's state is :math:`v` itself
      (the hidden units are summed out), ``log_q = 0``.
    * :class:`~pyrogen.distributions.DBM`: :math:`(v, h^{(2)})` with :math:`h^{(2)} \sim
      q = (1 - \epsilon)\,\mathrm{Bernoulli}(\mu^{(2)}) + \epsilon\,\mathrm{Bernoulli}(1/2)`
      per unit, :math:`\mu^{(2)}` the mean-field posterior after ``mean_field_iters`` sweeps
      and :math:`\epsilon` = :data:`PROPOSAL_COINS`.
    """
    if isinstance(dist, _VISIBLE_STATE):
        return (v,), torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    if isinstance(dist, DBM):
        mus = dist.mean_field(v, num_iters=mean_field_iters)
        probs = torch.lerp(mus[1], torch.full_like(mus[1], 0.5), PROPOSAL_COINS)
        h2 = torch.lt(torch.rand_like(probs), probs).to(probs.dtype)
        log_q = torch.where(h2 > 0, probs.log(), torch.log1p(-probs)).sum(-1)
        return (v, h2), log_q.double()
    raise ValueError(f"dist: RAISE is implemented for {_SUPPORTED}, got {type(dist).__name__}")


def _check(dist, data, num_samples, batch_size):
    if hasattr(data, "tensor") and callable(data.tensor):
        data = data.tensor()
    if not isinstance(dist, (*_VISIBLE_STATE, DBM)):
        raise ValueError(f"dist: RAISE is implemented for {_SUPPORTED}, got {type(dist).__name__}")
    width = dist.event_shape[-1]
    if not isinstance(data, torch.Tensor) or data.dim() != 2 or data.shape[-1] != width:
        raise ValueError(
            f"data: expected an (N, {width}) tensor, got {getattr(data, 'shape', type(data))}"
        )
    if data.shape[0] == 0:
        raise ValueError("data: no examples to score")
    if isinstance(dist, GaussianRBM):
        check_finite(data, "data")
    else:
        check_binary(data, "data")
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    ref = dist.parameter_tensors()[0]
    return data.to(device=ref.device, dtype=ref.dtype)


@full_precision
def raise_log_likelihood(
    dist,
    data,
    num_samples: int = 10,
    betas: int | torch.Tensor = 14500,
    base_data: torch.Tensor | None = None,
    batch_size: int = 100,
    progress: bool = True,
    seed: int | None = None,
    mean_field_iters: int = 100,
) -> LogLikelihood:
    r"""Mean RAISE estimate of :math:`\log p(v)` over ``data``: a stochastic lower bound on
    the annealing model's log-likelihood, the conservative side of the AIS bracket (see the
    module docs).

    :param dist: a :class:`~pyrogen.distributions.BernoulliRBM`,
        :class:`~pyrogen.distributions.GaussianRBM` or :class:`~pyrogen.distributions.DBM`.
    :param data: ``(N, V)`` test examples (or a pyrogen dataset): binary, or real-valued for
        a Gaussian RBM (whose estimate is then of a log-density).
    :param int num_samples: :math:`M`, reverse chains per example (their weights are
        averaged inside the log; more chains tighten the bound).
    :param betas: the path's inverse temperatures (a count for
        :func:`~pyrogen.distributions.annealing.default_betas`, or a schedule from 0 to 1).
    :param base_data: *training* data whose marginals give the base-rate model (``None``:
        a uniform base); see the module docs.
    :param int batch_size: examples per batch (``batch_size * num_samples`` chains at once).
    :param int seed: seed batch :math:`i` with ``(seed, i)`` and leave the global random
        streams as they were (the result then does not depend on the number of processes);
        ``None``: the global stream as it is.
    :param int mean_field_iters: mean-field sweeps of a DBM's proposal for :math:`h^{(2)}`.
    :returns: a :class:`~pyrogen.evaluate.LogLikelihood` with ``bound=True`` (a stochastic
        lower bound), ``num_samples`` :math:`M`, the ESS of each example's :math:`M`
        weights, the median and largest standard deviation of an example's :math:`M`
        log-weights (``diagnostics["log_weight_std_median"]``, ``"log_weight_std_max"``),
        and ``mc_stderr`` the delta-method Monte Carlo error of the mean
        (:math:`\mathrm{Var}[\log \hat p] \approx 1/\mathrm{ESS} - 1/M` per example; NaN when
        :math:`M = 1`).
    """
    data = _check(dist, data, num_samples, batch_size)
    M = int(num_samples)
    schedule = inverse_temperatures(betas)
    path = dist.annealing_path(data=None if base_data is None else base_data.to(data))
    world = distributed.world()
    starts = range(0, data.shape[0], int(batch_size))
    parts = {}
    with torch.no_grad():
        for j in range(world.rank, len(starts), world.size):
            v = data[starts[j] : starts[j] + int(batch_size)].repeat_interleave(M, 0)
            with preserved_rng():
                if seed is not None:
                    torch.manual_seed(batch_seed(seed, j))
                state, log_q = reverse_start(dist, v, mean_field_iters)
                show = progress and world.is_main and j == world.rank
                log_w = reverse_ais(path, state, schedule, progress=show) - log_q
            parts[j] = log_w.view(-1, M).cpu()
    if world.size > 1:
        log_w = torch.cat(distributed.gather_in_order(parts, len(starts), world))
    else:
        log_w = torch.cat(list(parts.values()))
    per_example = torch.logsumexp(log_w, -1) - math.log(M)
    spread = log_w.std(-1) if M > 1 else torch.zeros(log_w.shape[0], dtype=log_w.dtype)
    ess = effective_sample_size(log_w)
    if M > 1:
        variance = (1.0 / ess - 1.0 / M).clamp_min(0.0)
        mc_stderr = variance.sum().sqrt().item() / log_w.shape[0]
    else:
        mc_stderr = float("nan")
    base = "uniform base" if base_data is None else "base rates of base_data"
    proposal = "; h2 from the mean-field posterior" if isinstance(dist, DBM) else ""
    return LogLikelihood.from_per_example(
        per_example,
        f"RAISE, stochastic lower bound ({M} reverse chains per example, {len(schedule)} "
        f"temperatures, {base}{proposal})",
        mc_stderr=mc_stderr,
        bound=True,
        num_samples=M,
        ess=ess,
        diagnostics={
            "num_betas": len(schedule),
            "stochastic_lower_bound": True,
            "base": "uniform" if base_data is None else "base_data",
            # the spread of each example's M log-weights (0 for M = 1): a few chains carrying
            # an example show as a large spread, as for AIS's log Z
            "log_weight_std_median": float(spread.median()),
            "log_weight_std_max": float(spread.max()),
        },
    )


def log_likelihood_bracket(
    dist,
    data,
    *,
    num_chains: int = 100,
    betas: int | torch.Tensor = 14500,
    num_samples: int = 10,
    raise_betas: int | torch.Tensor | None = None,
    base_data: torch.Tensor | None = None,
    seed: int | None = None,
    progress: bool = True,
    min_ess: float | None = None,
    batch_size: int = 100,
    mean_field_iters: int = 100,
    force_ais: bool = False,
) -> LogLikelihoodBracket:
    r"""AIS (optimistic) and RAISE (conservative) estimates of the mean test log-likelihood
    of the same examples, side by side: a
    :class:`~pyrogen.evaluate.result.LogLikelihoodBracket`.

    :param num_chains, betas, min_ess: AIS's chains, schedule and target ESS
        (:func:`~pyrogen.evaluate.energy_log_likelihood`).
    :param num_samples: RAISE's reverse chains per example.
    :param raise_betas: RAISE's schedule (default: AIS's ``betas``).
    :param base_data: training data for the base rates of both (``None``: AIS fits them to
        ``data``, RAISE uses a uniform base; see the module docs).
    :param seed: seeds both estimators (each as its own function does).
    :param bool force_ais: the optimistic end by AIS even where :math:`\log Z` can be
        enumerated (to show the bracket on a model whose exact value is known).
    """
    ais_result = energy_log_likelihood(
        dist,
        data,
        num_chains=num_chains,
        betas=betas,
        base_data=base_data,
        progress=progress,
        mean_field_iters=mean_field_iters,
        seed=seed,
        min_ess=min_ess,
        force_ais=force_ais,
    )
    raise_result = raise_log_likelihood(
        dist,
        data,
        num_samples=num_samples,
        betas=betas if raise_betas is None else raise_betas,
        base_data=base_data,
        batch_size=batch_size,
        progress=progress,
        seed=seed,
        mean_field_iters=mean_field_iters,
    )
    return LogLikelihoodBracket(optimistic=ais_result, conservative=raise_result)
