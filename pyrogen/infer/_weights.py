r"""Per-particle importance log-weights of a Pyro model/guide pair, vectorized over particles.

This is the one place where pyrogen turns a model and a guide into
:math:`\log w = \log p(x, z) - \log q(z \mid x)`; the IWAE loss and the importance-sampling
evaluator both call it, so the two can never disagree about a sign or a scale.

The guide runs once inside an outermost ``pyro.plate`` of particles and the model is
replayed against its samples. Recording and replaying is done by one light messenger
(:class:`ParticleRecorder`) rather than ``poutine.trace`` + ``poutine.replay``: it keeps the
sample-site messages and nothing else, which matters when a training step is a few
milliseconds. It ignores ``pyro.param`` statements, which lets modules skip registering
their parameters when nothing else on the effect stack could observe them (see
:func:`pyrogen._effects.params_observed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from pyro.util import check_model_guide_match, check_site_shape

from pyrogen._rng import preserved_rng

PARTICLE_PLATE = "num_particles_vectorized"


class ParticleRecorder(Messenger):
    """Records sample-site messages; optionally replays latent values first.

    :param dict replay: name -> value of latent sites to replay (the guide's sample).
    """

    ignores_params = True

    def __init__(self, replay: dict | None = None) -> None:
        super().__init__()
        self.replay = replay
        self.sites: dict[str, dict] = {}

    def _pyro_sample(self, msg) -> None:
        if self.replay is not None and not msg["is_observed"]:
            value = self.replay.get(msg["name"])
            if value is not None:
                msg["value"] = value
                msg["done"] = True

    def _pyro_post_sample(self, msg) -> None:
        if site_is_subsample(msg):
            return
        name = msg["name"]
        if name in self.sites:
            raise ValueError(f"sample site {name!r} appears twice in one run")
        self.sites[name] = msg


class ParticlePlates:
    """Caches the particle plate of each ``(num_particles, dim)`` (building a plate issues a
    subsample statement, so re-entering one is cheaper)."""

    def __init__(self) -> None:
        self._plates: dict[tuple[int, int], object] = {}

    def __call__(self, num_particles: int, max_plate_nesting: int):
        key = (int(num_particles), -(max_plate_nesting + 1))
        plate = self._plates.get(key)
        if plate is None:
            plate = self._plates[key] = pyro.plate(PARTICLE_PLATE, key[0], dim=key[1])
        return plate


_PLATES = ParticlePlates()


def guess_max_plate_nesting(model, guide, args, kwargs) -> int:
    """Run ``guide`` and ``model`` once (no particles) and return the deepest plate nesting.

    The global random streams are left untouched, so a loss's first call draws the same
    samples as it would with ``max_plate_nesting`` given.
    """
    with poutine.block(), preserved_rng():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        frame.dim
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims) if dims else 0


def run_guide(guide, args, kwargs, num_particles: int, max_plate_nesting: int, replay=None):
    """Run ``guide`` in the particle plate; :returns: its sample sites (name -> message)."""
    with ParticleRecorder(replay) as rec, _PLATES(num_particles, max_plate_nesting):
        guide(*args, **kwargs)
    return rec.sites


def run_model(model, guide_sites, args, kwargs, num_particles: int, max_plate_nesting: int):
    """Run ``model`` in the particle plate, replaying the guide's latent values."""
    replay = {n: s["value"] for n, s in guide_sites.items() if not s["is_observed"]}
    with ParticleRecorder(replay) as rec, _PLATES(num_particles, max_plate_nesting):
        model(*args, **kwargs)
    return rec.sites


def run_particles(model, guide, args, kwargs, num_particles: int, max_plate_nesting: int):
    """:returns: ``(model_sites, guide_sites)`` of one vectorized run."""
    guide_sites = run_guide(guide, args, kwargs, num_particles, max_plate_nesting)
    model_sites = run_model(model, guide_sites, args, kwargs, num_particles, max_plate_nesting)
    return model_sites, guide_sites


def latent_sites(guide_sites: dict) -> list[dict]:
    """The guide's latent sample sites, checked to be reparameterizable."""
    sites = []
    for site in guide_sites.values():
        if site["is_observed"]:
            continue
        if not getattr(site["fn"], "has_rsample", False):
            raise ValueError(
                f"guide site {site['name']!r} ({type(site['fn']).__name__}) is not "
                "reparameterizable: importance-weighted objectives here need rsample(); use "
                "pyro.infer.ReweightedWakeSleep for discrete latents"
            )
        sites.append(site)
    return sites


@dataclass
class LogWeights:
    r"""Log importance weights and how to reduce them.

    ``log_weights = log_p - log_q`` has shape ``(num_particles,) + plate_shape`` where
    ``plate_shape`` keeps the plates that every sample site shares (typically the ``"data"``
    plate: one weight per particle and example); other plates are summed into the weights.
    ``scale`` is the common subsampling scale, to apply *after* averaging the weights.
    """

    log_p: torch.Tensor
    log_q: torch.Tensor
    scale: float | torch.Tensor
    per_site_scale: bool
    kept_dims: tuple[int, ...]
    ndim: int

    @property
    def log_weights(self) -> torch.Tensor:
        return self.log_p - self.log_q

    def log_mean_weight(self) -> torch.Tensor:
        r""":math:`\log \frac1K \sum_k w_k` per kept plate element."""
        lw = self.log_weights
        return torch.logsumexp(lw, dim=0) - math.log(lw.shape[0])

    def to_batch_layout(self, t: torch.Tensor, event_dim: int = 0) -> torch.Tensor:
        """Reshape ``t`` of shape ``(K,) + plate_shape`` so that it broadcasts against a
        site value of ``ndim`` batch dims (particle plate leftmost) and ``event_dim``
        event dims."""
        shape = [1] * self.ndim
        shape[0] = t.shape[0]
        for size, d in zip(t.shape[1:], self.kept_dims):
            shape[self.ndim + d] = size
        return t.reshape(shape + [1] * event_dim)


def _site_log_prob(site) -> torch.Tensor:
    lp = site["fn"].log_prob(site["value"])
    mask = site["mask"]
    if mask is None or mask is True:
        return lp
    if mask is False:
        return torch.zeros_like(lp)
    return torch.where(mask, lp, lp.new_zeros(()))


def _sum_sites(sites, keep: set, ndim: int, per_site_scale: bool, validate: bool):
    """Sum the sites' log-densities over every batch dim not in ``keep``."""
    total = None
    for site in sites:
        lp = _site_log_prob(site)
        if validate:
            check_site_shape(dict(site, log_prob=lp), ndim)
        if per_site_scale:
            lp = lp * site["scale"]
        if lp.dim() < ndim:
            lp = lp.reshape((1,) * (ndim - lp.dim()) + lp.shape)
        dims = [d for d in range(-lp.dim(), 0) if (d < -ndim or d not in keep) and lp.shape[d] != 1]
        if dims:
            lp = lp.sum(dims, keepdim=True)
        if lp.dim() > ndim:
            lp = lp.reshape(lp.shape[-ndim:])
        total = lp if total is None else total + lp
    return total


def _is_same_scale(a, b) -> bool:
    if a is b:
        return True
    return isinstance(a, float | int) and isinstance(b, float | int) and a == b


def _as_trace(sites: dict) -> Trace:
    trace = Trace()
    for name, site in sites.items():
        trace.add_node(name, **site)
    return trace


def compute_log_weights(model_sites: dict, guide_sites: dict, max_plate_nesting: int) -> LogWeights:
    r"""Return :math:`\log p(x, z)` and :math:`\log q(z)` per particle and shared plate element.

    Latent sites that the model samples itself (absent from the guide) are proposed from
    the prior, so their :math:`p / q` cancels and they are left out.
    """
    ndim = max_plate_nesting + 1
    particle_dim = -ndim
    validate = is_validation_enabled()
    q_sites = latent_sites(guide_sites)
    p_sites = [
        site for site in model_sites.values() if site["is_observed"] or site["name"] in guide_sites
    ]
    if validate:
        check_model_guide_match(_as_trace(model_sites), _as_trace(guide_sites), ndim)
    sites = p_sites + q_sites
    if not sites:
        raise ValueError("the model and guide have no sample sites to weight")

    # Plates shared by every site keep their own weights; the rest are summed over.
    common = None
    for site in sites:
        frames = {f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE}
        common = frames if common is None else common & frames
    kept_dims = tuple(sorted(f.dim for f in common))
    keep = set(kept_dims)
    keep.add(particle_dim)

    # A subsampling scale common to all sites is applied after the log-mean-exp.
    first = sites[0]["scale"]
    per_site = not all(_is_same_scale(site["scale"], first) for site in sites)
    log_p = _sum_sites(p_sites, keep, ndim, per_site, validate)
    log_q = _sum_sites(q_sites, keep, ndim, per_site, validate)
    if log_p is None:
        log_p = torch.zeros_like(log_q)
    elif log_q is None:
        log_q = torch.zeros_like(log_p)
    if log_p.shape != log_q.shape:
        log_p, log_q = torch.broadcast_tensors(log_p, log_q)
    shape = [log_p.shape[particle_dim]] + [log_p.shape[d] for d in kept_dims]
    return LogWeights(
        log_p=log_p.reshape(shape),
        log_q=log_q.reshape(shape),
        scale=1.0 if per_site else first,
        per_site_scale=per_site,
        kept_dims=kept_dims,
        ndim=ndim,
    )


def guide_log_prob(guide_sites: dict, like: LogWeights) -> torch.Tensor:
    r""":math:`\log q` of another run of the guide, reduced like ``like.log_q``."""
    keep = set(like.kept_dims) | {-like.ndim}
    lq = _sum_sites(latent_sites(guide_sites), keep, like.ndim, like.per_site_scale, False)
    lq = torch.broadcast_to(lq, like.to_batch_layout(like.log_q).shape)
    return lq.reshape(like.log_q.shape)
