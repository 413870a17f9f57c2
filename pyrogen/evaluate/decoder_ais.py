r"""Log-likelihoods of decoder-based models (GAN and GMMN generators, VAE decoders) by
annealed importance sampling with Hamiltonian Monte Carlo, after Wu et al. [1].

A decoder :math:`G` becomes a density model once it is given an observation model,

.. math::

    z \sim \mathcal N(0, I_d), \qquad
    x \mid z \sim \mathcal N\big(G(z), \sigma^2 I_D\big)
    \quad\text{or}\quad x \mid z \sim \mathrm{Bernoulli}\big(\mathrm{sigmoid}\,G(z)\big),

and :math:`\log p(x) = \log \int p(z)\, p(x \mid z)\, dz` is estimated per example by AIS [2]
from a base distribution :math:`q(z)` (the prior, or an encoder's :math:`q(z \mid x)`) to
the posterior along the geometric path

.. math::

    f_\beta(z) = q(z)\, \Big(\frac{p(z)\, p(x \mid z)}{q(z)}\Big)^{\beta},
    \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

(with the prior as base, :math:`f_\beta(z) = p(z)\, p(x \mid z)^\beta`: the likelihood is
tempered). A chain starts at :math:`z_0 \sim q`; at each temperature it adds
:math:`(\beta_t - \beta_{t-1})\, g(z_{t-1})` to its log-weight, with
:math:`g = \log p(z) + \log p(x \mid z) - \log q(z)`, then moves by HMC transitions that leave
:math:`f_{\beta_t}` invariant (:class:`HMC`). The step size of each example and temperature
is tuned towards an acceptance rate of 0.65 [1] by a pilot run of a few adapting chains and
then frozen, so that the kernels of the chains that are weighted do not depend on their own
past (which would bias the weights). Each weight :math:`w_k` is an unbiased estimate
of :math:`p(x)`; :math:`K` chains run in parallel as one batch and give

.. math::

    \log \hat p(x) = \log \frac1K \sum_{k=1}^K w_k,

a stochastic lower bound (:math:`\mathbb E \log \hat p(x) \le \log p(x)`, by Jensen). Its
Monte Carlo standard error is the delta-method one,
:math:`\widehat{\mathrm{sd}}(w) / (\sqrt K\, \bar w)`, per example.

**Bidirectional Monte Carlo** [3]: on data simulated from the model, :math:`(z^\star, x)
\sim p(z, x)`, :math:`z^\star` is an exact posterior sample, so AIS can also run in reverse,
from the posterior to the base; its weights estimate :math:`1/p(x)` without bias, and
:math:`-\log \frac1K\sum_k w^{\mathrm{rev}}_k` is a stochastic *upper* bound. The gap
between the two bounds bounds the error of the forward estimate on such data
(:func:`bidirectional_monte_carlo`).

The Parzen-window estimator (:func:`parzen_log_likelihood`) is here only to compare with
older tables; it is badly biased in high dimension [1, 4] and warns so.

**References**

[1] On the Quantitative Analysis of Decoder-Based Generative Models. Yuhuai Wu, Yuri Burda,
    Ruslan Salakhutdinov, Roger Grosse. ICLR 2017.

[2] Annealed Importance Sampling. Radford M. Neal. Statistics and Computing 11, 2001.

[3] Sandwiching the marginal likelihood using bidirectional Monte Carlo. Roger B. Grosse,
    Zoubin Ghahramani, Ryan P. Adams. 2015.

[4] A note on the evaluation of generative models. Lucas Theis, Aäron van den Oord,
    Matthias Bethge. ICLR 2016.

[5] MCMC using Hamiltonian dynamics. Radford M. Neal. Handbook of Markov Chain Monte Carlo,
    2011.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pyrogen._checks import check_binary, warn_user
from pyrogen._rng import preserved_rng
from pyrogen.evaluate.importance import batch_seed
from pyrogen.evaluate.result import LogLikelihood

__all__ = [
    "HMC",
    "BDMCResult",
    "HMCStep",
    "ParzenWarning",
    "annealing_schedule",
    "bidirectional_monte_carlo",
    "decoder_log_likelihood",
    "parzen_log_likelihood",
]

LIKELIHOODS = ("gaussian", "bernoulli")
SCHEDULES = ("sigmoid", "geometric", "linear")

Potential = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


# ----------------------------------------------------------------------------- HMC


class HMCStep(NamedTuple):
    """One :meth:`HMC.step` of a batch of chains.

    :ivar torch.Tensor z: ``(B, d)`` states after the step.
    :ivar tuple values: what the potential returned at those states (``U``, ``grad U``,
        extras), so the next step need not recompute them.
    :ivar torch.Tensor accept_prob: ``(B,)`` Metropolis acceptance probabilities.
    :ivar torch.Tensor accepted: ``(B,)`` booleans.
    :ivar torch.Tensor step_size: ``(B,)`` step sizes for the next step (adapted).
    """

    z: torch.Tensor
    values: tuple[torch.Tensor, ...]
    accept_prob: torch.Tensor
    accepted: torch.Tensor
    step_size: torch.Tensor


class HMC:
    r"""Hamiltonian Monte Carlo transitions [5] for a batch of independent chains, each with
    its own step size, adapted towards a target acceptance rate.

    For a target density :math:`\pi(z) \propto e^{-U(z)}` the state is extended by a momentum
    :math:`p \sim \mathcal N(0, I)` and the Hamiltonian
    :math:`H(z, p) = U(z) + \tfrac12 \lVert p \rVert^2`. The leapfrog integrator with step
    :math:`\epsilon`,

    .. math::

        p_{1/2} = p - \tfrac\epsilon2 \nabla U(z), \qquad
        z' = z + \epsilon\, p_{1/2}, \qquad
        p' = p_{1/2} - \tfrac\epsilon2 \nabla U(z'),

    applied :math:`L` times is volume-preserving and reversible, so accepting the end point
    with probability

    .. math::

        \alpha = \min\big(1,\; \exp\{H(z, p) - H(z', p')\}\big)

    (and keeping :math:`z` otherwise) leaves :math:`\pi` invariant for every fixed
    :math:`\epsilon` and :math:`L`. A non-finite :math:`H(z', p')` is rejected.

    After each step the step size of each chain is multiplied by ``adapt_factor`` when its
    :math:`\alpha` exceeded ``target_acceptance`` and divided by it otherwise (kept within
    ``[min_step_size, max_step_size]``), which drives the acceptance rate towards the
    target (0.65 as in [1]). An adapted kernel depends on the chain's own past, and a
    mixture of invariant kernels chosen by the past need not be invariant: AIS with such
    chains is biased (on probabilistic PCA, reverse AIS fell 0.15 to 0.37 nats *below* the
    exact log-likelihood it should bound from above). :func:`decoder_log_likelihood`
    therefore adapts only in a pilot run and freezes the step sizes it found (``adapt=False``)
    for the chains whose weights it uses.

    :param int num_leapfrog: :math:`L`, leapfrog steps per transition.
    :param float target_acceptance: the acceptance rate the step size is adapted towards.
    :param bool adapt: adapt the step sizes.
    :param float adapt_factor: the multiplicative adaptation step (> 1).
    :param float min_step_size: lower clamp of the step sizes.
    :param float max_step_size: upper clamp of the step sizes.
    """

    def __init__(
        self,
        num_leapfrog: int = 10,
        target_acceptance: float = 0.65,
        *,
        adapt: bool = True,
        adapt_factor: float = 1.02,
        min_step_size: float = 1e-4,
        max_step_size: float = 1.0,
    ) -> None:
        if int(num_leapfrog) < 1:
            raise ValueError(f"num_leapfrog must be >= 1, got {num_leapfrog}")
        if not 0 < target_acceptance < 1:
            raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")
        if not adapt_factor > 1:
            raise ValueError(f"adapt_factor must be > 1, got {adapt_factor}")
        if not 0 < min_step_size <= max_step_size:
            raise ValueError(
                f"need 0 < min_step_size <= max_step_size, got {min_step_size} and {max_step_size}"
            )
        self.num_leapfrog = int(num_leapfrog)
        self.target_acceptance = float(target_acceptance)
        self.adapt = bool(adapt)
        self.adapt_factor = float(adapt_factor)
        self.min_step_size, self.max_step_size = float(min_step_size), float(max_step_size)

    def step(
        self,
        z: torch.Tensor,
        potential: Potential,
        step_size: torch.Tensor,
        current: tuple[torch.Tensor, ...] | None = None,
    ) -> HMCStep:
        r"""One transition of every chain.

        :param torch.Tensor z: ``(B, d)`` current states.
        :param potential: ``z -> (U, grad U, *extras)`` with ``U`` of shape ``(B,)``,
            ``grad U`` of shape ``(B, d)`` and extras with leading dimension ``B`` (carried
            along with the accepted states, e.g. the log-likelihood of each state).
        :param torch.Tensor step_size: ``(B,)`` (or scalar) step sizes :math:`\epsilon`.
        :param current: ``potential(z)`` when already known.
        :returns: :class:`HMCStep`.
        """
        if current is None:
            current = potential(z)
        step_size = torch.as_tensor(step_size, dtype=z.dtype, device=z.device).expand(z.shape[0])
        eps = step_size.unsqueeze(-1)
        u0, grad = current[0], current[1]
        p0 = torch.randn_like(z)
        p = p0 - 0.5 * eps * grad
        new_z, values = z, current
        for i in range(self.num_leapfrog):
            new_z = new_z + eps * p
            values = potential(new_z)
            if i < self.num_leapfrog - 1:
                p = p - eps * values[1]
        p = p - 0.5 * eps * values[1]
        h0 = u0 + 0.5 * (p0 * p0).sum(-1)
        h1 = values[0] + 0.5 * (p * p).sum(-1)
        log_alpha = (h0 - h1).clamp(max=0.0)
        log_alpha = torch.where(torch.isfinite(log_alpha), log_alpha, -math.inf)
        accept_prob = log_alpha.exp()
        accepted = torch.rand_like(accept_prob).log() < log_alpha
        keep = accepted.unsqueeze(-1)
        z_out = torch.where(keep, new_z, z)
        values_out = tuple(
            torch.where(accepted.reshape(-1, *([1] * (new.dim() - 1))), new, old)
            for new, old in zip(values, current)
        )
        if self.adapt:
            factor = torch.where(
                accept_prob > self.target_acceptance,
                step_size.new_tensor(self.adapt_factor),
                step_size.new_tensor(1.0 / self.adapt_factor),
            )
            step_size = (step_size * factor).clamp(self.min_step_size, self.max_step_size)
        return HMCStep(z_out, values_out, accept_prob, accepted, step_size)


# ----------------------------------------------------------------------------- schedules


def annealing_schedule(
    num_temperatures: int,
    schedule: str = "sigmoid",
    *,
    delta: float = 4.0,
    geometric_start: float = 1e-4,
) -> torch.Tensor:
    r"""Inverse temperatures :math:`0 = \beta_0 < \dots < \beta_T = 1` (``T + 1`` float64
    values) for :math:`T` = ``num_temperatures`` transitions.

    * ``"sigmoid"`` (Grosse et al. [3]): :math:`\tilde\beta_t = \mathrm{sigmoid}(\delta(2t/T -
      1))` rescaled to run from 0 to 1: dense at both ends;
    * ``"geometric"``: :math:`\beta_t` log-spaced from ``geometric_start`` to 1 (and
      :math:`\beta_0 = 0`): dense near 0, where a tempered likelihood changes fastest;
    * ``"linear"``: evenly spaced.

    :param int num_temperatures: :math:`T \ge 1`.
    :param str schedule: one of the above.
    :param float delta: steepness of the sigmoid schedule.
    :param float geometric_start: :math:`\beta_1` of the geometric schedule.
    """
    T = int(num_temperatures)
    if T < 1:
        raise ValueError(f"num_temperatures must be >= 1, got {num_temperatures}")
    if schedule == "sigmoid":
        s = torch.sigmoid(delta * (2 * torch.arange(T + 1, dtype=torch.float64) / T - 1))
        return (s - s[0]) / (s[-1] - s[0])
    if schedule == "geometric":
        if not 0 < geometric_start < 1:
            raise ValueError(f"geometric_start must be in (0, 1), got {geometric_start}")
        betas = torch.logspace(math.log10(geometric_start), 0.0, T, dtype=torch.float64)
        return torch.cat([betas.new_zeros(1), betas])
    if schedule == "linear":
        return torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64)
    raise ValueError(f"schedule must be one of {SCHEDULES} or a tensor of betas, got {schedule!r}")


def _betas(num_temperatures: int, schedule) -> torch.Tensor:
    if isinstance(schedule, str):
        return annealing_schedule(num_temperatures, schedule)
    betas = torch.as_tensor(schedule, dtype=torch.float64).reshape(-1)
    if betas.numel() < 2 or betas[0] != 0 or betas[-1] != 1 or bool((betas.diff() < 0).any()):
        raise ValueError("schedule: a tensor of betas must increase from 0 to 1")
    return betas


# ----------------------------------------------------------------------------- the model


def _check_sigma(likelihood: str, sigma) -> float | None:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if likelihood == "gaussian":
        if sigma is None:
            raise ValueError("sigma: a Gaussian observation model needs sigma > 0, got None")
        sigma = float(sigma)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be positive and finite, got {sigma}")
        return sigma
    if sigma is not None:
        raise ValueError("sigma: a Bernoulli observation model takes no sigma")
    return None


def _flat_data(data, name: str = "data") -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(data).__name__}")
    if data.dim() < 2 or data.shape[0] == 0:
        raise ValueError(
            f"{name}: expected (num_examples, ...) with at least one example, got "
            f"shape {tuple(data.shape)}"
        )
    data = data.reshape(data.shape[0], -1)
    bad = torch.isnan(data)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains NaN (first at index {index}); clean the data first")
    if not bool(torch.isfinite(data).all()):
        raise ValueError(f"{name} contains infinite values")
    return data


def _reference(decoder) -> torch.Tensor | None:
    if isinstance(decoder, torch.nn.Module):
        return next(decoder.parameters(), None)
    return None


class _Eval:
    """Put a module decoder (and encoder) in eval mode for the duration (batch norm)."""

    def __init__(self, *modules) -> None:
        self.modules = [m for m in modules if isinstance(m, torch.nn.Module)]

    def __enter__(self):
        self.was = [m.training for m in self.modules]
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc):
        for m, was in zip(self.modules, self.was):
            m.train(was)


@dataclass
class _Observation:
    """:math:`\\log p(x \\mid z)` for the decoder's output."""

    decoder: Callable[[torch.Tensor], torch.Tensor]
    likelihood: str
    sigma: float | None

    def params(self, z: torch.Tensor, width: int) -> torch.Tensor:
        out = self.decoder(z)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"decoder must return a tensor, got {type(out).__name__}")
        out = out.reshape(z.shape[0], -1)
        if out.shape[1] != width:
            raise ValueError(
                f"data: wrong width for this decoder: the data have {width} values per "
                f"example, the decoder outputs {out.shape[1]}"
            )
        return out

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        s = self.sigma
        d = x.shape[-1]
        return -0.5 * ((x - out) / s).pow(2).sum(-1) - d * (
            math.log(s) + 0.5 * math.log(2 * math.pi)
        )

    def sample(self, out: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(out))
        return out + self.sigma * torch.randn_like(out)


def _std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class _Target:
    r"""The annealing path for a batch of chains: base :math:`q` (prior or Gaussian
    :math:`q(z \mid x)`) and :math:`g(z) = \log p(z) + \log p(x \mid z) - \log q(z)`."""

    def __init__(self, obs: _Observation, x: torch.Tensor, loc=None, scale=None) -> None:
        self.obs, self.x = obs, x
        self.loc, self.scale = loc, scale  # None: the prior is the base

    def base_log_prob_and_grad(self, z):
        if self.loc is None:
            return _std_normal_log_prob(z), -z
        u = (z - self.loc) / self.scale
        lp = (
            -0.5 * (u * u).sum(-1)
            - self.scale.log().sum(-1)
            - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        )
        return lp, -u / self.scale

    def sample_base(self) -> torch.Tensor:
        if self.loc is None:
            raise RuntimeError("sample_base needs the reference shape")  # pragma: no cover
        return self.loc + self.scale * torch.randn_like(self.loc)

    def g_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            g = self.obs.log_prob(self.x, self.obs.params(z, self.x.shape[-1]))
            if self.loc is not None:
                u = (z - self.loc) / self.scale
                g = g + _std_normal_log_prob(z) + 0.5 * (u * u).sum(-1) + self.scale.log().sum(-1)
                g = g + 0.5 * z.shape[-1] * math.log(2 * math.pi)
            (grad,) = torch.autograd.grad(g.sum(), z)
        return g.detach(), grad.detach()

    def potential(self, beta: float) -> Potential:
        def fn(z):
            g, dg = self.g_and_grad(z)
            lq, dlq = self.base_log_prob_and_grad(z)
            return -(lq + beta * g), -(dlq + beta * dg), g, dg

        return fn

    def values_at(self, z, beta: float, g, dg):
        lq, dlq = self.base_log_prob_and_grad(z)
        return -(lq + beta * g), -(dlq + beta * dg), g, dg


def _anneal(
    target: _Target,
    z: torch.Tensor,
    betas: torch.Tensor,
    kernel: HMC,
    step_size: float | torch.Tensor,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run AIS along ``betas`` from states ``z`` (``(B, d)``): the float64 log-weights
    ``(B,)`` and statistics of the transitions. ``step_size``: the initial step size of an
    adapting ``kernel``, or a ``(T, B)`` tensor of step sizes per transition (the kernel
    must then not adapt). The step sizes used are returned as ``stats["step_sizes"]``."""
    T = len(betas) - 1
    log_w = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
    fixed = isinstance(step_size, torch.Tensor)
    eps = None if fixed else z.new_full((z.shape[0],), float(step_size))
    used = z.new_empty(T, z.shape[0])
    g, dg = target.g_and_grad(z)
    accept_sum = torch.zeros_like(log_w)
    betas = betas.tolist()
    for t in range(1, T + 1):
        log_w += (betas[t] - betas[t - 1]) * g.double()
        if fixed:
            eps = step_size[t - 1]
        used[t - 1] = eps
        current = target.values_at(z, betas[t], g, dg)
        out = kernel.step(z, target.potential(betas[t]), eps, current)
        z, eps = out.z, out.step_size
        g, dg = out.values[2], out.values[3]
        accept_sum += out.accept_prob.double()
    return log_w, {"acceptance": accept_sum / max(T, 1), "step_sizes": used}


def _summarise(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(K, N)`` log-weights -> per-example log-mean-exp, its delta-method Monte Carlo
    standard error and the effective sample size."""
    K = log_w.shape[0]
    estimate = torch.logsumexp(log_w, 0) - math.log(K)
    w = (log_w - log_w.max(0).values).exp()
    mean = w.mean(0)
    se = w.std(0) / (math.sqrt(K) * mean) if K > 1 else torch.full_like(mean, math.nan)
    ess = w.sum(0) ** 2 / (w * w).sum(0)
    return estimate, se, ess


def _check_common(latent_dim, num_chains, num_temperatures, step_size, batch_size) -> None:
    for name, value in (
        ("latent_dim", latent_dim),
        ("num_chains", num_chains),
        ("num_temperatures", num_temperatures),
        ("batch_size", batch_size),
    ):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size}")


def _run_ais(
    obs: _Observation,
    x: torch.Tensor,
    latent_dim: int,
    num_chains: int,
    betas: torch.Tensor,
    kernel: HMC,
    step_size: float,
    encoder,
    start: torch.Tensor | None = None,
    pilot_chains: int = 0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """AIS for one batch ``x`` (``(N, D)``) with ``num_chains`` chains each: ``(K, N)``
    log-weights and the mean acceptance rate per chain. ``start`` (``(N, d)``): run in
    reverse from these exact posterior states. With ``pilot_chains``, a pilot run of that
    many adapting chains per example fixes the step size of every (example, temperature)
    (the geometric mean over its pilot chains) for the main run, whose chains then do not
    adapt: their kernels do not depend on their own past, so the weights stay unbiased."""
    N, D = x.shape
    loc = scale = None
    if encoder is not None:
        loc, scale = encoder(x)
        loc, scale = loc.detach().reshape(N, latent_dim), scale.detach().reshape(N, latent_dim)
        if not bool((scale > 0).all()):
            raise ValueError("encoder: the scales of q(z | x) must be positive")
    if start is not None:
        betas = betas.flip(0)

    def replicate(t: torch.Tensor, K: int) -> torch.Tensor:
        return t.expand(K, *t.shape).reshape(K * t.shape[0], *t.shape[1:])

    def run(K: int, run_kernel: HMC, eps):
        target = _Target(
            obs,
            replicate(x, K),
            None if loc is None else replicate(loc, K),
            None if scale is None else replicate(scale, K),
        )
        if start is not None:
            z = replicate(start.reshape(N, latent_dim).to(x.dtype), K)
        elif loc is not None:
            z = target.sample_base()
        else:
            z = x.new_empty(K * N, latent_dim).normal_()
        return _anneal(target, z, betas, run_kernel, eps)

    if pilot_chains:
        _, pilot = run(pilot_chains, kernel, step_size)
        T = len(betas) - 1
        log_eps = pilot["step_sizes"].log().reshape(T, pilot_chains, N).mean(1)
        fixed = log_eps.exp().unsqueeze(1).expand(T, num_chains, N).reshape(T, -1)
        frozen = HMC(kernel.num_leapfrog, kernel.target_acceptance, adapt=False)
        log_w, stats = run(num_chains, frozen, fixed)
    else:
        frozen = HMC(kernel.num_leapfrog, kernel.target_acceptance, adapt=False)
        log_w, stats = run(num_chains, frozen, step_size)
    return log_w.reshape(num_chains, N), {
        "acceptance": stats["acceptance"].reshape(num_chains, N),
        "step_size": stats["step_sizes"][-1].reshape(num_chains, N),
    }


def _estimator_name(kind: str, num_chains, betas, kernel, base: str) -> str:
    return (
        f"{kind} ({num_chains} chains, {len(betas) - 1} temperatures, HMC with "
        f"{kernel.num_leapfrog} leapfrog steps, from the {base})"
    )


def decoder_log_likelihood(
    decoder: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    *,
    latent_dim: int,
    likelihood: str = "gaussian",
    sigma: float | None = None,
    num_chains: int = 16,
    num_temperatures: int = 1000,
    schedule: str | Sequence[float] | torch.Tensor = "sigmoid",
    num_leapfrog: int = 10,
    step_size: float = 0.05,
    target_acceptance: float = 0.65,
    pilot_chains: int = 4,
    encoder: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    batch_size: int = 100,
    progress: bool = True,
    seed: int | None = None,
) -> LogLikelihood:
    r"""AIS estimate of the mean test log-likelihood of a decoder-based model (module docs).

    :param decoder: ``z -> params``: ``(B, d)`` latents to the ``(B, D)`` (or image-shaped)
        mean :math:`G(z)` of a Gaussian observation model, or the logits of a Bernoulli one
        (e.g. a GAN generator, or ``vae.decoder``). A module is put in eval mode meanwhile.
    :param torch.Tensor data: ``(N, D)`` or image-shaped examples; NaN is a ValueError, and
        so is a width other than the decoder's output.
    :param int latent_dim: :math:`d`; the prior is :math:`\mathcal N(0, I_d)`.
    :param str likelihood: ``"gaussian"`` (:math:`\mathcal N(G(z), \sigma^2 I)`, for
        continuous data) or ``"bernoulli"`` (binary data; ``sigma`` must be ``None``).
    :param float sigma: :math:`\sigma > 0` of the Gaussian observation model (Wu et al.
        choose it on validation data; values of about 0.01 to 0.1 for pixels in [0, 1]).
    :param int num_chains: :math:`K` chains per example (16 in Wu et al.).
    :param int num_temperatures: :math:`T` intermediate distributions.
    :param schedule: ``"sigmoid"``, ``"geometric"``, ``"linear"``
        (:func:`annealing_schedule`) or an increasing tensor of betas from 0 to 1.
    :param int num_leapfrog: leapfrog steps per HMC transition (10 in Wu et al.).
    :param float step_size: initial HMC step size of every chain.
    :param float target_acceptance: the acceptance rate the step sizes are adapted towards.
    :param int pilot_chains: adapting chains per example in the pilot run that fixes the
        step size of each (example, temperature) as the geometric mean of theirs; 0 keeps
        ``step_size`` throughout (no adaptation).
    :param encoder: optional ``x -> (loc, scale)`` of a Gaussian :math:`q(z \mid x)` (e.g.
        ``vae.encoders[0]`` of a one-layer :class:`~pyrogen.models.VAE`) to start the chains
        from instead of the prior.
    :param int batch_size: examples per batch (each runs ``num_chains`` chains).
    :param bool progress: show a progress bar over batches.
    :param int seed: draw batch :math:`i`'s chains from the global torch stream seeded with
        ``(seed, i)`` (leaving the global streams as they were): a reproducible estimate
        (``None``: the global stream as it is).
    :returns: :class:`~pyrogen.evaluate.LogLikelihood` with ``mc_stderr``, per-example
        AIS effective sample sizes and ``diagnostics`` (mean acceptance rate, median final
        step size, the schedule).
    """
    sigma = _check_sigma(likelihood, sigma)
    _check_common(latent_dim, num_chains, num_temperatures, step_size, batch_size)
    if int(pilot_chains) < 0:
        raise ValueError(f"pilot_chains must be >= 0, got {pilot_chains}")
    kernel = HMC(num_leapfrog, target_acceptance)
    betas = _betas(num_temperatures, schedule)
    x_all = _flat_data(data)
    ref = _reference(decoder)
    if ref is not None:
        x_all = x_all.to(device=ref.device, dtype=ref.dtype)
    if likelihood == "bernoulli":
        check_binary(x_all, "data")
    obs = _Observation(decoder, likelihood, sigma)
    estimates, ses, esss, accept, steps = [], [], [], [], []
    batches = range(0, x_all.shape[0], int(batch_size))
    with _Eval(decoder, encoder), torch.no_grad():
        for j, i in enumerate(
            tqdm(batches, desc=f"AIS log p(x), K={num_chains}", disable=not progress)
        ):
            x = x_all[i : i + int(batch_size)]
            with preserved_rng() if seed is not None else nullcontext():
                if seed is not None:
                    torch.manual_seed(batch_seed(seed, j))
                log_w, stats = _run_ais(
                    obs,
                    x,
                    int(latent_dim),
                    int(num_chains),
                    betas,
                    kernel,
                    step_size,
                    encoder,
                    pilot_chains=int(pilot_chains),
                )
            est, se, ess = _summarise(log_w)
            estimates.append(est.cpu())
            ses.append(se.cpu())
            esss.append(ess.cpu())
            accept.append(stats["acceptance"].mean().cpu())
            steps.append(stats["step_size"].reshape(-1).cpu())
    per_example = torch.cat(estimates)
    se = torch.cat(ses)
    n = per_example.numel()
    base = "encoder" if encoder is not None else "prior"
    return LogLikelihood.from_per_example(
        per_example,
        _estimator_name("AIS", num_chains, betas, kernel, base),
        mc_stderr=float(se.pow(2).sum().sqrt() / n),
        num_samples=int(num_chains),
        ess=torch.cat(esss),
        diagnostics={
            "num_temperatures": len(betas) - 1,
            "num_leapfrog": kernel.num_leapfrog,
            "schedule": schedule if isinstance(schedule, str) else "custom",
            "likelihood": likelihood,
            "sigma": sigma,
            "pilot_chains": int(pilot_chains),
            "acceptance_rate": float(torch.stack(accept).mean()),
            "final_step_size_median": float(torch.cat(steps).median()),
        },
    )


@dataclass
class BDMCResult:
    """Bidirectional Monte Carlo on simulated data (:func:`bidirectional_monte_carlo`).

    :ivar forward: forward AIS, a stochastic lower bound on :math:`\\log p(x)`.
    :ivar reverse: reverse AIS from the exact latents, a stochastic upper bound.
    :ivar torch.Tensor data: ``(N, D)`` the simulated examples.
    :ivar torch.Tensor latents: ``(N, d)`` the latents they were simulated from.
    """

    forward: LogLikelihood
    reverse: LogLikelihood
    data: torch.Tensor
    latents: torch.Tensor

    @property
    def gap(self) -> float:
        """Mean upper minus mean lower bound, in nats per example: an upper bound (in
        expectation) on the error of forward AIS on these data."""
        return self.reverse.mean - self.forward.mean

    def summary(self) -> str:
        return (
            f"BDMC on {self.forward.num_examples} simulated examples: forward AIS "
            f"{self.forward.mean:.2f} <= log p(x) <= reverse AIS {self.reverse.mean:.2f} "
            f"(gap {self.gap:.3f} nats; {self.forward.estimator})"
        )

    __str__ = summary


def bidirectional_monte_carlo(
    decoder: Callable[[torch.Tensor], torch.Tensor],
    *,
    latent_dim: int,
    num_examples: int = 100,
    latents: torch.Tensor | None = None,
    likelihood: str = "gaussian",
    sigma: float | None = None,
    num_chains: int = 16,
    num_temperatures: int = 1000,
    schedule: str | Sequence[float] | torch.Tensor = "sigmoid",
    num_leapfrog: int = 10,
    step_size: float = 0.05,
    target_acceptance: float = 0.65,
    pilot_chains: int = 4,
    encoder: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    batch_size: int = 100,
    progress: bool = True,
) -> BDMCResult:
    r"""Sandwich :math:`\log p(x)` on data simulated from the model [3], as Wu et al. [1]
    validate their AIS estimates.

    Draws :math:`z^\star \sim \mathcal N(0, I)` (or takes ``latents``) and
    :math:`x \sim p(x \mid z^\star)`, then runs forward AIS (prior, or encoder, to
    posterior: a stochastic lower bound) and reverse AIS (from :math:`z^\star`, an exact
    posterior sample, back to the base: its weights estimate :math:`1/p(x)`, so
    :math:`-\log\frac1K\sum_k w^{\mathrm{rev}}_k` is a stochastic upper bound). All chains of
    an example start reverse AIS at its :math:`z^\star`. Options as in
    :func:`decoder_log_likelihood`.

    :param int num_examples: examples to simulate (ignored when ``latents`` are given).
    :param torch.Tensor latents: ``(N, d)`` latents to simulate from.
    :returns: :class:`BDMCResult` (``forward``, ``reverse``, ``gap``).
    """
    sigma = _check_sigma(likelihood, sigma)
    _check_common(latent_dim, num_chains, num_temperatures, step_size, batch_size)
    if int(pilot_chains) < 0:
        raise ValueError(f"pilot_chains must be >= 0, got {pilot_chains}")
    kernel = HMC(num_leapfrog, target_acceptance)
    betas = _betas(num_temperatures, schedule)
    ref = _reference(decoder)
    obs = _Observation(decoder, likelihood, sigma)
    with _Eval(decoder, encoder), torch.no_grad():
        if latents is None:
            if int(num_examples) < 1:
                raise ValueError(f"num_examples must be >= 1, got {num_examples}")
            like = ref if ref is not None else torch.empty(())
            latents = like.new_empty(int(num_examples), int(latent_dim)).normal_()
        latents = _flat_data(latents, "latents")
        if latents.shape[1] != int(latent_dim):
            raise ValueError(
                f"latents: expected (N, {latent_dim}), got shape {tuple(latents.shape)}"
            )
        out = decoder(latents)
        data = obs.sample(out.reshape(latents.shape[0], -1))
        lower, upper, se_lo, se_up, ess_lo, ess_up = [], [], [], [], [], []
        batches = range(0, data.shape[0], int(batch_size))
        for i in tqdm(batches, desc=f"BDMC, K={num_chains}", disable=not progress):
            x, z_star = data[i : i + int(batch_size)], latents[i : i + int(batch_size)]
            args = (obs, x, int(latent_dim), int(num_chains), betas, kernel, step_size, encoder)
            log_w, _ = _run_ais(*args, pilot_chains=int(pilot_chains))
            est, se, ess = _summarise(log_w)
            lower.append(est.cpu())
            se_lo.append(se.cpu())
            ess_lo.append(ess.cpu())
            log_w, _ = _run_ais(*args, start=z_star, pilot_chains=int(pilot_chains))
            est, se, ess = _summarise(log_w)  # estimates log(1 / p(x))
            upper.append(-est.cpu())
            se_up.append(se.cpu())
            ess_up.append(ess.cpu())
    n = data.shape[0]
    base = "encoder" if encoder is not None else "prior"

    def result(values, ses, esss, kind):
        return LogLikelihood.from_per_example(
            torch.cat(values),
            _estimator_name(kind, num_chains, betas, kernel, base),
            mc_stderr=float(torch.cat(ses).pow(2).sum().sqrt() / n),
            num_samples=int(num_chains),
            ess=torch.cat(esss),
            diagnostics={"bdmc": kind},
        )

    return BDMCResult(
        forward=result(lower, se_lo, ess_lo, "forward AIS (stochastic lower bound)"),
        reverse=result(upper, se_up, ess_up, "reverse AIS (stochastic upper bound)"),
        data=data,
        latents=latents,
    )


# ----------------------------------------------------------------------------- Parzen


class ParzenWarning(UserWarning):
    """The Parzen-window estimate is not a reliable log-likelihood."""


def _parzen_values(samples: torch.Tensor, x: torch.Tensor, h: float, batch_size: int):
    M, D = samples.shape
    const = math.log(M) + 0.5 * D * math.log(2 * math.pi * h * h)
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size]
        sq = (xb * xb).sum(-1, keepdim=True) + (samples * samples).sum(-1) - 2 * xb @ samples.T
        out.append(torch.logsumexp(-sq.clamp_min(0) / (2 * h * h), -1) - const)
    return torch.cat(out)


def parzen_log_likelihood(
    samples: torch.Tensor,
    data: torch.Tensor,
    bandwidth: float | None = None,
    *,
    validation: torch.Tensor | None = None,
    bandwidths: Sequence[float] | None = None,
    batch_size: int = 100,
) -> LogLikelihood:
    r"""The Parzen-window (Gaussian kernel density) estimate of Goodfellow et al. (2014),
    only to compare with older tables:

    .. math::

        \log \hat p(x) = \log \frac1M \sum_{m=1}^M \mathcal N(x;\, s_m,\, h^2 I),

    with :math:`s_{1:M}` samples of the model and :math:`h` chosen on validation data. It
    measures how close test points are to samples, not the model's density; in high
    dimension it is far from :math:`\log p(x)` (even its ranking of models can be wrong
    [1, 4]). Always issues a :class:`ParzenWarning`.

    :param torch.Tensor samples: ``(M, D)`` (or image-shaped) samples of the model.
    :param torch.Tensor data: ``(N, D)`` test examples.
    :param float bandwidth: :math:`h`; if ``None``, the value of ``bandwidths`` with the
        highest mean log-likelihood on ``validation``.
    :param torch.Tensor validation: validation examples (needed without ``bandwidth``).
    :param bandwidths: grid to choose from (default 20 values log-spaced from 0.01 to 1).
    :param int batch_size: test examples per kernel-matrix block.
    """
    warn_user(
        "the Parzen-window estimate is biased and can rank models wrongly in high dimension "
        "(Theis et al. 2016; Wu et al. 2017); use it only to compare with older tables and "
        "report AIS (decoder_log_likelihood) as the log-likelihood",
        ParzenWarning,
    )
    samples = _flat_data(samples, "samples")
    x = _flat_data(data).to(samples.dtype)
    if x.shape[1] != samples.shape[1]:
        raise ValueError(
            f"data: expected {samples.shape[1]} values per example (as the samples), got "
            f"{x.shape[1]}"
        )
    batch_size = int(batch_size)
    if bandwidth is None:
        if validation is None:
            raise ValueError("parzen_log_likelihood: give a bandwidth or validation data")
        val = _flat_data(validation, "validation").to(samples.dtype)
        grid = [
            float(h)
            for h in (bandwidths if bandwidths is not None else torch.logspace(-2, 0, 20).tolist())
        ]
        if min(grid) <= 0:
            raise ValueError(f"bandwidths must be positive, got {grid}")
        scores = [_parzen_values(samples, val, h, batch_size).mean().item() for h in grid]
        bandwidth = grid[max(range(len(grid)), key=scores.__getitem__)]
    elif not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    with torch.no_grad():
        values = _parzen_values(samples, x, float(bandwidth), batch_size)
    return LogLikelihood.from_per_example(
        values,
        f"Parzen window (h={bandwidth:.4g}, {samples.shape[0]} samples; biased)",
        num_samples=samples.shape[0],
        diagnostics={"bandwidth": float(bandwidth)},
    )
