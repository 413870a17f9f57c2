r"""Wake-sleep and reweighted wake-sleep, vectorized over particles.

A Helmholtz machine pairs a generative model :math:`p_\theta(x, h)` with a recognition
model :math:`q_\phi(h \mid x)` whose latent sites may be discrete. **Wake-sleep** [1]
alternates two phases. The *wake* phase draws :math:`h \sim q_\phi(h \mid x)` for the data
and follows :math:`\nabla_\theta \log p_\theta(x, h)`; the *sleep* phase draws a dream
:math:`(h, x) \sim p_\theta` and follows :math:`\nabla_\phi \log q_\phi(h \mid x)`:

.. math::

    \Delta\theta \propto \mathbb E_{q_\phi(h \mid x)}\big[\nabla_\theta
        \log p_\theta(x, h)\big], \qquad
    \Delta\phi \propto \mathbb E_{p_\theta(h, x)}\big[\nabla_\phi \log q_\phi(h \mid x)\big]
        = -\nabla_\phi\, \mathbb E_{p_\theta(x)} \mathrm{KL}\big(p_\theta(h \mid x)
        \,\|\, q_\phi(h \mid x)\big).

**Reweighted wake-sleep** [2] draws :math:`K` particles :math:`h_k \sim q_\phi(h \mid x)`
with weights :math:`w_k = p_\theta(x, h_k) / q_\phi(h_k \mid x)` and normalised weights
:math:`\tilde w_k = w_k / \sum_j w_j`. Its *wake-p* update ascends the importance-weighted
bound, its *wake-q* update is a self-normalised estimate of the gradient of
:math:`-\mathrm{KL}(p_\theta(h \mid x) \,\|\, q_\phi(h \mid x))` (biased for finite
:math:`K`, consistent as :math:`K \to \infty`), and *sleep-q* is the sleep phase above:

.. math::

    \Delta\theta \propto \nabla_\theta \log \frac1K \sum_k w_k
        = \sum_k \tilde w_k \nabla_\theta \log p_\theta(x, h_k), \qquad
    \Delta\phi_{\text{wake}} \propto \sum_k \tilde w_k \nabla_\phi \log q_\phi(h_k \mid x).

The guide's update is ``insomnia * wake-q + (1 - insomnia) * sleep-q`` as in Pyro's
``ReweightedWakeSleep`` [3]; ``WakeSleep`` is ``K = 1`` with sleep-q only.

*What the loss number is.* ``loss`` / ``loss_and_grads`` / ``differentiable_loss`` report
:math:`-\sum_n \mathrm{scale}_n \log \frac1K \sum_k w_{n,k}`, the negative :math:`K`-sample
bound in nats summed over the batch (for ``WakeSleep``, :math:`K = 1`: the negative
single-sample ELBO). The surrogate returned by ``differentiable_loss`` has that value and
the gradient of the wake-p, wake-q and sleep-q objectives above, each for its own
parameters (the samples of the wake phase and the dreams are detached).

*Batches.* Plates shared by every sample site (the ``"data"`` plate) get one importance
weight per element, so the bound is a sum over examples and a subsampling scale
:math:`N / B` multiplies each example's log-mean-weight (outside the log-mean-exp). Pyro's
``ReweightedWakeSleep`` weights the whole batch jointly instead (one weight per particle for
all examples together, the scale inside the log-mean-exp); the two agree exactly, sample for
sample, where there is one weight per particle: a batch of one, or a model without a plate
shared by all its sites.

*Sleep phase inputs.* The dream :math:`x` must reach the guide. Three ways, tried in order:
``sleep_inputs(dreams, args, kwargs) -> (args, kwargs)`` if given; Pyro's convention, a
keyword ``observations={name: value}`` if the guide's signature accepts it; else each
argument that holds the model's observed value (the same tensor, an equal one, or, under a
subsampled plate, the full data set that the model indexes) is replaced by the dream (the
full data set by a copy with the subsampled rows replaced). The guide is replayed on the
dream's subsample indices, so a subsampled guide sees the dreamed rows.

**References**

[1] The "Wake-Sleep" Algorithm for Unsupervised Neural Networks. Geoffrey E. Hinton, Peter
    Dayan, Brendan J. Frey, Radford M. Neal. 1995.

[2] Reweighted Wake-Sleep. Jörg Bornschein, Yoshua Bengio. 2015.

[3] Revisiting Reweighted Wake-Sleep for Models with Stochastic Control Flow. Tuan Anh Le,
    Adam R. Kosiorek, N. Siddharth, Yee Whye Teh, Frank Wood. 2019.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.util import is_validation_enabled
from pyro.util import check_model_guide_match, warn_if_nan

from pyrogen.infer._weights import (
    LogWeights,
    StructureChecks,
    _sum_log_probs,
    guess_max_plate_nesting,
    plate_nesting_arg,
    run_guide,
    run_model,
    site_log_probs,
)


def check_num_particles(num_particles, minimum: int = 1, name: str = "num_particles") -> int:
    """``num_particles`` as an int, or a ValueError naming the argument."""
    if isinstance(num_particles, bool) or not isinstance(num_particles, int | float):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {num_particles!r}")
    if int(num_particles) != num_particles or num_particles < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {num_particles!r}")
    return int(num_particles)


def is_one(scale) -> bool:
    return isinstance(scale, float | int) and scale == 1


@dataclass
class SiteTerms:
    r"""Per-site log-densities of one vectorized run, reduced like the importance weights.

    Every tensor has shape ``(K,) + plate_shape`` (plates shared by all sites kept, others
    summed). ``model`` holds :math:`\log p` of the observed sites and of the model's latent
    sites that the guide proposes; ``guide`` holds :math:`\log q` of the guide's latent
    sites, in the guide's order. ``weights`` carries the totals and the common ``scale``
    (to apply per example, after any log-mean-exp); where sites have different scales each
    term already carries its own and ``scale`` is 1.
    """

    model: dict[str, torch.Tensor]
    guide: dict[str, torch.Tensor]
    weights: LogWeights


def site_terms(
    model_sites: dict,
    guide_sites: dict,
    max_plate_nesting: int,
    checks: StructureChecks | None = None,
    per_site: bool = True,
) -> SiteTerms:
    """Log-densities of model and guide per site (``per_site``) and in total.

    Like :func:`pyrogen.infer._weights.compute_log_weights`, but the guide's latent sites
    may be discrete (not reparameterizable), and the terms can be kept per site. With
    Pyro's validation on, ``check_model_guide_match`` and ``check_site_shape`` run once per
    step signature (``checks``) and the values are checked by the distributions every step.
    """
    terms = site_log_probs(model_sites, guide_sites, max_plate_nesting, checks, False)
    if terms is None:
        raise ValueError("the model and guide have no sample sites to weight")
    ndim, particle_dim = terms.ndim, -terms.ndim
    p_sites, q_sites, lps, keep = terms.p_sites, terms.q_sites, terms.lps, terms.keep
    kept_dims, per_scale = terms.kept_dims, terms.per_site_scale
    n_p = len(p_sites)

    def reduce(group, group_lps):
        return {
            site["name"]: _sum_log_probs([site], [lp], keep, ndim, per_scale)
            for site, lp in zip(group, group_lps)
        }

    if per_site:
        p_terms = reduce(p_sites, lps[:n_p])
        q_terms = reduce(q_sites, lps[n_p:])
        log_p = sum(p_terms.values()) if p_terms else None
        log_q = sum(q_terms.values()) if q_terms else None
    else:
        p_terms, q_terms = {}, {}
        log_p = _sum_log_probs(p_sites, lps[:n_p], keep, ndim, per_scale)
        log_q = _sum_log_probs(q_sites, lps[n_p:], keep, ndim, per_scale)
    ref = log_p if log_p is not None else log_q
    full = (
        ref.shape
        if log_q is None or log_p is None
        else torch.broadcast_shapes(log_p.shape, log_q.shape)
    )
    for t in list(p_terms.values()) + list(q_terms.values()):
        full = torch.broadcast_shapes(full, t.shape)
    shape = [full[particle_dim]] + [full[d] for d in kept_dims]

    def lay(t):
        if t is None:
            return ref.new_zeros(shape)
        return torch.broadcast_to(t, full).reshape(shape)

    p_terms = {k: lay(v) for k, v in p_terms.items()}
    q_terms = {k: lay(v) for k, v in q_terms.items()}
    weights = LogWeights(
        log_p=lay(log_p),
        log_q=lay(log_q),
        scale=terms.scale,
        per_site_scale=per_scale,
        kept_dims=kept_dims,
        ndim=ndim,
    )
    return SiteTerms(model=p_terms, guide=q_terms, weights=weights)


def scaled_sum(t: torch.Tensor, scale) -> torch.Tensor:
    """``sum(scale * t)`` (``t`` per example, ``scale`` the common subsampling scale)."""
    return t.sum() if is_one(scale) else (t * scale).sum()


# ---------------------------------------------------------------------------- sleep phase


def _accepts_observations(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "observations" in params


def _replace_input(arg, site, trace):
    """The guide input ``arg`` with the model's observed value replaced by the dream, or
    None if ``arg`` does not hold that value."""
    if not isinstance(arg, torch.Tensor):
        return None
    obs, dream = site["infer"]["obs"], site["value"]
    if arg is obs:
        return dream
    if arg.shape == obs.shape:
        return dream if torch.equal(arg, obs) else None
    # a subsampled plate: the model observes arg indexed by the plate's subsample indices
    if arg.dim() != obs.dim():
        return None
    event_dim = site["fn"].event_dim
    for frame in site["cond_indep_stack"]:
        if frame.dim is None or frame.name not in trace.nodes:
            continue
        d = obs.dim() + frame.dim - event_dim
        idx = trace.nodes[frame.name]["value"]
        if d < 0 or not isinstance(idx, torch.Tensor) or idx.dim() != 1:
            continue
        if obs.shape[d] != idx.numel() or arg.shape[d] <= int(idx.max()):
            continue
        if torch.equal(arg.index_select(d, idx), obs):
            return arg.detach().clone().index_copy_(d, idx, dream.expand_as(obs))
    return None


def dream_inputs(guide, trace, observed: list[dict], args, kwargs, sleep_inputs=None):
    """The guide's ``(args, kwargs)`` with the dreamed observations in place of the data."""
    dreams = {site["name"]: site["value"] for site in observed}
    if sleep_inputs is not None:
        return sleep_inputs(dreams, args, kwargs)
    if _accepts_observations(guide):
        return args, dict(kwargs, observations=dreams)
    args, kwargs = list(args), dict(kwargs)
    for site in observed:
        found = False
        for i, a in enumerate(args):
            new = _replace_input(a, site, trace)
            if new is not None:
                args[i], found = new, True
                break
        if not found:
            for key, a in kwargs.items():
                new = _replace_input(a, site, trace)
                if new is not None:
                    kwargs[key], found = new, True
                    break
        if not found:
            raise ValueError(
                f"sleep phase: cannot tell which argument of the guide holds the observed "
                f"site {site['name']!r}; give the guide an 'observations' keyword (Pyro's "
                "convention) or pass sleep_inputs=(dreams, args, kwargs) -> (args, kwargs)"
            )
    return tuple(args), kwargs


def sleep_log_q(model, guide, args, kwargs, sleep_inputs=None) -> torch.Tensor:
    r""":math:`\sum_n \mathrm{scale}_n \log q_\phi(h_n \mid x_n)` on one dream
    :math:`(h, x) \sim p_\theta` per example (the dream detached)."""
    trace = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
    trace.detach_()
    observed = [
        site
        for site in trace.nodes.values()
        if site["type"] == "sample" and site["infer"].get("was_observed")
    ]
    if not observed:
        raise ValueError("sleep phase: the model has no observed sample site to dream")
    g_args, g_kwargs = dream_inputs(guide, trace, observed, args, kwargs, sleep_inputs)
    guide_trace = poutine.trace(poutine.replay(guide, trace=trace)).get_trace(*g_args, **g_kwargs)
    if is_validation_enabled():
        for site in observed:
            site["is_observed"] = True
        check_model_guide_match(trace, guide_trace)
    total = None
    for site in guide_trace.nodes.values():
        if site["type"] != "sample" or site["is_observed"] or site["name"] not in trace.nodes:
            continue
        if site["infer"].get("_do_not_score") or site["name"] == "_INPUT":
            continue
        if site["value"] is not None and isinstance(site["fn"], torch.distributions.Distribution):
            lp = site["fn"].log_prob(site["value"])
            mask = site["mask"]
            if mask is not None and mask is not True:
                lp = torch.where(torch.as_tensor(mask), lp, lp.new_zeros(()))
            lp = lp.sum() if is_one(site["scale"]) else (lp * site["scale"]).sum()
            total = lp if total is None else total + lp
    if total is None:
        raise ValueError("sleep phase: the guide has no latent site in common with the model")
    return total


# ---------------------------------------------------------------------------- the losses


class ReweightedWakeSleep(ELBO):
    r"""Reweighted wake-sleep [2] as a Pyro loss, vectorized over particles (module docs).

    Drop-in for ``pyro.infer.ReweightedWakeSleep`` under ``SVI`` and for
    :class:`pyrogen.train.SVILearner`; one run of the guide and one of the model for all
    :math:`K` particles, Pyro's structural checks once per step signature (as
    :class:`~pyrogen.infer.IWAE`). Unlike Pyro's, every method returns a single number:
    the negative :math:`K`-sample bound (see module docs), and the importance weights are
    per example.

    :param int num_particles: :math:`K`; at least 2 when ``insomnia > 0`` (self-normalised
        weights need two particles), at least 1 otherwise.
    :param float insomnia: weight of wake-q in the guide's update, in :math:`[0, 1]`;
        ``1`` (Pyro's default) wake-q only, ``0`` sleep-q only, ``0.5`` both as in [2].
    :param int num_sleep_particles: dreams per example for sleep-q (averaged).
    :param sleep_inputs: optional ``(dreams, args, kwargs) -> (args, kwargs)`` that puts the
        dreamed observations (``{site name: value}``) into the guide's inputs.
    :param int max_plate_nesting: plate dims of the model (not counting the particle
        plate); guessed from one run of model and guide when ``None``.
    """

    def __init__(
        self,
        num_particles: int = 5,
        *,
        insomnia: float = 1.0,
        num_sleep_particles: int = 1,
        sleep_inputs=None,
        max_plate_nesting: int | None = None,
    ) -> None:
        if isinstance(insomnia, bool) or not isinstance(insomnia, int | float):
            raise ValueError(f"insomnia must be a number in [0, 1], got {insomnia!r}")
        if not 0 <= insomnia <= 1:
            raise ValueError(f"insomnia must be in [0, 1], got {insomnia!r}")
        k = check_num_particles(num_particles, 2 if insomnia > 0 else 1)
        super().__init__(num_particles=k, vectorize_particles=True)
        self.insomnia = float(insomnia)
        self.num_sleep_particles = check_num_particles(
            num_sleep_particles, 1, "num_sleep_particles"
        )
        self.sleep_inputs = sleep_inputs
        self.model_plate_nesting = plate_nesting_arg(max_plate_nesting)
        self.structure_checks = StructureChecks()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_particles={self.num_particles}, insomnia={self.insomnia})"
        )

    def _nesting(self, model, guide, args, kwargs) -> int:
        if self.model_plate_nesting is None:
            self.model_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        return self.model_plate_nesting

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not produce Pyro traces")

    def _wake(self, model, guide, args, kwargs):
        nesting = self._nesting(model, guide, args, kwargs)
        k = self.num_particles
        guide_sites = run_guide(guide, args, kwargs, k, nesting)
        for site in guide_sites.values():  # the wake phase's samples are detached
            value = site["value"]
            if not site["is_observed"] and isinstance(value, torch.Tensor) and value.requires_grad:
                site["value"] = value.detach()
        model_sites = run_model(model, guide_sites, args, kwargs, k, nesting)
        return site_terms(model_sites, guide_sites, nesting, self.structure_checks, False).weights

    def _surrogate(self, model, guide, args, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """:returns: ``(surrogate, loss value)``."""
        lw = self._wake(model, guide, args, kwargs)
        scale = lw.scale
        log_q = lw.log_q
        log_w = lw.log_p - log_q.detach()
        bound = torch.logsumexp(log_w, dim=0)
        if self.num_particles > 1:
            bound = bound - torch.log(bound.new_tensor(float(self.num_particles)))
        theta = -scaled_sum(bound, scale)
        value = theta.detach()
        surrogate = theta
        if self.insomnia > 0 and log_q.requires_grad:
            with torch.no_grad():
                w = torch.softmax(log_w, dim=0)
            wake_q = -scaled_sum((w * log_q).sum(0), scale)
            surrogate = surrogate + self.insomnia * (wake_q - wake_q.detach())
        if self.insomnia < 1:
            sleep = 0.0
            for _ in range(self.num_sleep_particles):
                sleep = sleep - sleep_log_q(model, guide, args, kwargs, self.sleep_inputs)
            sleep = sleep / self.num_sleep_particles
            if isinstance(sleep, torch.Tensor) and sleep.requires_grad:
                surrogate = surrogate + (1.0 - self.insomnia) * (sleep - sleep.detach())
        return surrogate, value

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """The negative :math:`K`-sample bound, summed over the batch, as a float (the sleep
        phase is not run)."""
        lw = self._wake(model, guide, args, kwargs)
        loss = -scaled_sum(lw.log_mean_weight(), lw.scale).item()
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """A scalar whose value is the negative :math:`K`-sample bound and whose gradient
        is that of the wake-p, wake-q and sleep-q losses (module docs)."""
        surrogate, value = self._surrogate(model, guide, args, kwargs)
        return surrogate - surrogate.detach() + value

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate the wake-p, wake-q and sleep-q gradients.

        :returns: the negative :math:`K`-sample bound (a float).
        """
        surrogate, value = self._surrogate(model, guide, args, kwargs)
        if surrogate.requires_grad:
            surrogate.backward()
        loss = value.item()
        warn_if_nan(loss, "loss")
        return loss


class WakeSleep(ReweightedWakeSleep):
    r"""Classic wake-sleep [1]: one sample of the guide per example for the wake phase
    (:math:`\nabla_\theta \log p_\theta(x, h)`), one dream per example for the sleep phase
    (:math:`\nabla_\phi \log q_\phi(h \mid x)` at :math:`(h, x) \sim p_\theta`).

    The same as ``ReweightedWakeSleep(num_particles=1, insomnia=0)``. The loss number is the
    negative single-sample ELBO :math:`-\sum_n \mathrm{scale}_n (\log p_\theta(x_n, h_n) -
    \log q_\phi(h_n \mid x_n))`, summed over the batch.

    :param int num_sleep_particles: dreams per example (averaged).
    :param sleep_inputs: see :class:`ReweightedWakeSleep`.
    :param int max_plate_nesting: plate dims of the model; guessed when ``None``.
    """

    def __init__(
        self,
        *,
        num_sleep_particles: int = 1,
        sleep_inputs=None,
        max_plate_nesting: int | None = None,
    ) -> None:
        super().__init__(
            1,
            insomnia=0.0,
            num_sleep_particles=num_sleep_particles,
            sleep_inputs=sleep_inputs,
            max_plate_nesting=max_plate_nesting,
        )

    def __repr__(self) -> str:
        return "WakeSleep()"
