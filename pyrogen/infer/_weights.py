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

Site log-densities of ``Bernoulli`` and ``Normal`` distributions made independent with
``.to_event`` (what users write with Pyro's own distributions) are computed by fused kernels
(:func:`site_log_prob`): the same density, summed over the event dims in fewer passes, with
the value checked as ``log_prob`` checks it. Pyro's structural checks can be remembered per
step signature by a :class:`StructureChecks` the caller keeps (the IWAE loss does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from pyro.poutine.broadcast_messenger import BroadcastMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.subsample_messenger import SubsampleMessenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from pyro.util import check_model_guide_match, check_site_shape

from pyrogen._rng import preserved_rng
from pyrogen.distributions.bernoulli import IndependentBernoulli, bernoulli_log_prob

PARTICLE_PLATE = "num_particles_vectorized"


class ParticleRecorder(Messenger):
    """Records sample-site messages; optionally replays latent values first.

    :param dict replay: name -> value of latent sites to replay (the guide's sample).
    """

    ignores_params = True

    def __init__(self, replay: dict | None = None) -> None:
        super().__init__()
        self.replay = replay
        self.sites = Sites()

    # Messenger dispatches on "_pyro_" + type for every message (param statements of the
    # user's modules included); answering sample messages directly is a measurable saving.
    def _process_message(self, msg) -> None:
        if msg["type"] == "sample":
            self._pyro_sample(msg)

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample":
            self._pyro_post_sample(msg)

    def _pyro_sample(self, msg) -> None:
        _replay(self.replay, msg)

    def _pyro_post_sample(self, msg) -> None:
        _record(self.sites, msg)


class Sites(dict):
    """The sample sites of one run (name -> message), and in :attr:`subsamples` the indices
    that its subsampled plates drew (plate name -> index tensor).

    Subsample statements are not sample sites of the model: they carry no log-density and
    are left out of the dict, but a model scored against a guide's latent values must see
    the guide's minibatch, so :func:`run_model` replays them (as ``poutine.replay`` does for
    Pyro's own losses).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.subsamples: dict[str, torch.Tensor] = {}

    def replay_values(self) -> dict:
        """name -> value of what a replay of this run fixes: its latent sites' values and
        its plates' subsample indices."""
        values = dict(self.subsamples)
        values.update((n, s["value"]) for n, s in self.items() if not s["is_observed"])
        return values


def _replay(replay: dict | None, msg) -> None:
    """Put the replayed value of a latent sample site (or a plate's subsample indices) in
    place (what a recorder does before the site samples)."""
    if replay is not None and not msg["is_observed"]:
        value = replay.get(msg["name"])
        if value is not None:
            msg["value"] = value
            msg["done"] = True


def _record(sites: Sites, msg) -> None:
    """Keep a sample site's message (subsample statements: their indices, in
    ``sites.subsamples``); a name seen twice in one run is an error."""
    if site_is_subsample(msg):
        sites.subsamples[msg["name"]] = msg["value"]
        return
    name = msg["name"]
    if name in sites:
        raise ValueError(f"sample site {name!r} appears twice in one run")
    sites[name] = msg


_BROADCAST = BroadcastMessenger._pyro_sample
# the same function without its decorator, which only matters under torch.jit tracing
_BROADCAST_PLAIN = getattr(_BROADCAST, "__wrapped__", _BROADCAST)


class _ParticleRun(PlateMessenger):
    """The plate of the particles and the recorder of one run, in one messenger.

    As ``pyro.plate`` it annotates and broadcasts every sample statement inside it; as a
    :class:`ParticleRecorder` below that plate it then replays the given latent values and
    keeps the sample-site messages. One stack frame instead of two matters: every statement
    of the user's model passes through it, ``pyro.param`` ones included. For a
    ``pyro.param`` without ``event_dim`` a full (not subsampled) plate adds nothing but a
    stack frame nobody reads and a scale factor of one, so those pass untouched.

    Built once per ``(num_particles, dim)`` (building a plate issues a subsample statement);
    :meth:`start` and :meth:`take` bracket each run.
    """

    ignores_params = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.replay: dict | None = None
        self.sites = Sites()
        self.in_use = False

    def start(self, replay: dict | None = None) -> _ParticleRun:
        self.replay = replay
        self.sites = Sites()
        self.in_use = True
        return self

    def take(self) -> Sites:
        """The recorded sites; forgets them (and the replayed values) here."""
        sites, self.sites, self.replay, self.in_use = self.sites, Sites(), None, False
        return sites

    def _process_message(self, msg) -> None:
        kind = msg["type"]
        if kind == "param" and msg["kwargs"].get("event_dim") is None:
            return
        SubsampleMessenger._process_message(self, msg)
        if kind != "sample":
            return
        if not msg["done"]:
            if torch._C._get_tracing_state():
                _BROADCAST(msg)
            else:
                _BROADCAST_PLAIN(msg)
        _replay(self.replay, msg)

    def _postprocess_message(self, msg) -> None:
        kind = msg["type"]
        if kind == "sample":
            _record(self.sites, msg)
        elif kind != "param" or msg["kwargs"].get("event_dim") is not None:
            SubsampleMessenger._postprocess_message(self, msg)


class ParticlePlates:
    """Caches the particle run (plate and recorder) of each ``(num_particles, dim)``."""

    def __init__(self) -> None:
        self._plates: dict[tuple[int, int], _ParticleRun] = {}

    def __call__(self, num_particles: int, max_plate_nesting: int) -> _ParticleRun:
        key = (int(num_particles), -(max_plate_nesting + 1))
        plate = self._plates.get(key)
        if plate is None or plate.in_use:  # a run inside a run gets a plate of its own
            plate = _ParticleRun(PARTICLE_PLATE, key[0], dim=key[1])
            self._plates.setdefault(key, plate)
        return plate


_PLATES = ParticlePlates()


def plate_nesting_arg(value) -> int | None:
    """Check a ``max_plate_nesting`` argument: a non-negative integer, or ``None`` /
    ``float("inf")`` (Pyro's default for its ELBOs), both meaning "guess it from one run of
    the model and the guide" (:func:`guess_max_plate_nesting`).

    :raises ValueError: for anything else (a negative, fractional or NaN value).
    """
    if value is None or (isinstance(value, float | int) and value == math.inf):
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise ValueError(f"max_plate_nesting must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"max_plate_nesting must be a non-negative integer, got {value!r}")
    return int(value)


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


def _run(fn, args, kwargs, num_particles: int, max_plate_nesting: int, replay) -> dict:
    run = _PLATES(num_particles, max_plate_nesting).start(replay)
    try:
        with run:
            fn(*args, **kwargs)
    finally:
        sites = run.take()
    return sites


def run_guide(guide, args, kwargs, num_particles: int, max_plate_nesting: int, replay=None):
    """Run ``guide`` in the particle plate; :returns: its sample sites (:class:`Sites`).

    :param dict replay: name -> value of latent sites (and plate name -> subsample indices)
        to fix instead of sampling them; pass ``sites.replay_values()`` of an earlier run to
        rerun the guide on the same minibatch.
    """
    return _run(guide, args, kwargs, num_particles, max_plate_nesting, replay)


def run_model(model, guide_sites, args, kwargs, num_particles: int, max_plate_nesting: int):
    """Run ``model`` in the particle plate, replaying the guide's latent values and the
    subsample indices of the guide's plates (so that a subsampled model scores the
    minibatch the guide sampled for)."""
    if isinstance(guide_sites, Sites):
        replay = guide_sites.replay_values()
    else:
        replay = {n: s["value"] for n, s in guide_sites.items() if not s["is_observed"]}
    return _run(model, args, kwargs, num_particles, max_plate_nesting, replay)


def run_particles(model, guide, args, kwargs, num_particles: int, max_plate_nesting: int):
    """:returns: ``(model_sites, guide_sites)`` of one vectorized run."""
    guide_sites = run_guide(guide, args, kwargs, num_particles, max_plate_nesting)
    model_sites = run_model(model, guide_sites, args, kwargs, num_particles, max_plate_nesting)
    return model_sites, guide_sites


def latent_sites(guide_sites: dict, require_rsample: bool = True) -> list[dict]:
    """The guide's latent sample sites, checked to be reparameterizable unless
    ``require_rsample`` is False (estimating :math:`p(x)` needs no gradient through the
    samples, so the evaluators accept discrete latents)."""
    sites = []
    for site in guide_sites.values():
        if site["is_observed"]:
            continue
        if require_rsample and not getattr(site["fn"], "has_rsample", False):
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


def _shape_ok(d, value: torch.Tensor) -> bool:
    """The shape part of ``Distribution._validate_sample``: ``value`` ends in the event shape
    and broadcasts with ``batch_shape + event_shape``."""
    event, shape = d._event_shape, value.shape
    if shape[len(shape) - len(event) :] != event:
        return False
    for i, j in zip(reversed(shape), reversed(d._batch_shape + event)):
        if i != 1 and j != 1 and i != j:
            return False
    return True


def _is_binary(value: torch.Tensor) -> bool:
    # x - x * x is 0 exactly for x in {0, 1} and nonzero (or NaN) for every other float,
    # one pass instead of the three of (x == 0) | (x == 1)
    value = value.detach()
    return not bool(torch.addcmul(value, value, value, value=-1).any())


def _has_no_nan(value: torch.Tensor) -> bool:
    # a NaN makes the sum NaN; a NaN sum without one (inf - inf) goes to the full check
    return not bool(value.detach().sum().isnan())


def _validate_value(d, value, support_ok) -> None:
    """``d._validate_sample(value)`` with a one-pass support test; torch's own check (and its
    error message) runs whenever the fast test does not pass."""
    if not (
        isinstance(value, torch.Tensor)
        and value.dtype.is_floating_point
        and _shape_ok(d, value)
        and support_ok(value)
    ):
        d._validate_sample(value)


def _full(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is bfloat16 / float16 (a network's output under autocast):
    log-densities and log-weights are never accumulated in reduced precision."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _bernoulli_log_prob(base, value, n: int):
    if n < 1:
        return None
    if base._validate_args:
        _validate_value(base, value, _is_binary)
    lp = bernoulli_log_prob(_full(base.logits), value)  # the one fused Bernoulli kernel
    return lp.sum(tuple(range(-n + 1, 0))) if n > 1 else lp


def _normal_log_prob(base, value, n: int):
    if n < 1:
        return None
    if base._validate_args:
        _validate_value(base, value, _has_no_nan)
    scale = _full(base.scale)
    t = (_full(value) - _full(base.loc)) / scale
    # -t^2 / 2 - log(scale) elementwise in one op, summed over the event dims
    lp = torch.addcmul(scale.log().neg_(), t, t, value=-0.5)
    size = math.prod(lp.shape[-n:])
    return lp.sum(tuple(range(-n, 0))).sub_(size * _HALF_LOG_TWO_PI)


_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)

#: exact distribution type -> fused ``(base, value, reinterpreted dims) -> summed log-density``
#: (or None to fall back to ``fn.log_prob``); subclasses are not matched, since they may
#: override ``log_prob``
_FUSED = {
    torch.distributions.Bernoulli: _bernoulli_log_prob,
    dist.Bernoulli: _bernoulli_log_prob,
    torch.distributions.Normal: _normal_log_prob,
    dist.Normal: _normal_log_prob,
}
_INDEPENDENT = (torch.distributions.Independent, dist.Independent)


def site_log_prob(fn, value) -> torch.Tensor:
    """``fn.log_prob(value)``, by a fused kernel where ``fn`` is ``Bernoulli`` or ``Normal``
    made independent over its rightmost dims (``.to_event(n)``, ``n >= 1``), or pyrogen's
    :class:`~pyrogen.distributions.IndependentBernoulli`.

    The kernels compute the same density (summed over the event dims before anything is
    negated or broadcast, with one temporary of the size of the value instead of several),
    and check the value as ``log_prob`` does (its shape, and its support in one pass with
    ``_validate_sample`` as the fallback that raises) when the distribution validates its
    arguments.
    """
    if type(fn) is IndependentBernoulli:
        return _bernoulli_log_prob(fn, value, 1)
    if type(fn) in _INDEPENDENT:
        kernel = _FUSED.get(type(fn.base_dist))
        if kernel is not None:
            lp = kernel(fn.base_dist, value, fn.reinterpreted_batch_ndims)
            if lp is not None:
                return lp
    return _full(fn.log_prob(value))


def _site_log_prob(site) -> torch.Tensor:
    lp = site_log_prob(site["fn"], site["value"])
    mask = site["mask"]
    if mask is None or mask is True:
        return lp
    if mask is False:
        return torch.zeros_like(lp)
    return torch.where(mask, lp, lp.new_zeros(()))


def _sum_log_probs(sites, lps, keep: set, ndim: int, per_site_scale: bool):
    """Sum the sites' log-densities ``lps`` over every batch dim not in ``keep``."""
    total = None
    for site, lp in zip(sites, lps):
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


def _sum_sites(sites, keep: set, ndim: int, per_site_scale: bool, validate: bool):
    """Sum the sites' log-densities over every batch dim not in ``keep``."""
    lps = []
    for site in sites:
        lp = _site_log_prob(site)
        if validate:
            check_site_shape(dict(site, log_prob=lp), ndim)
        lps.append(lp)
    return _sum_log_probs(sites, lps, keep, ndim, per_site_scale)


def _is_same_scale(a, b) -> bool:
    if a is b:
        return True
    return isinstance(a, float | int) and isinstance(b, float | int) and a == b


def _as_trace(sites: dict) -> Trace:
    trace = Trace()
    for name, site in sites.items():
        trace.add_node(name, **site)
    return trace


def _site_key(site) -> tuple | None:
    """What Pyro's structural checks read of one site, or None if that is not known from
    shapes alone (a distribution without ``batch_shape``, arguments to ``fn.shape``)."""
    fn, value, infer = site["fn"], site["value"], site["infer"]
    if site["args"] or site["kwargs"] or not isinstance(value, torch.Tensor):
        return None
    try:
        batch_shape, event_shape = fn.batch_shape, fn.event_shape
    except AttributeError:
        return None
    aux = infer.get("is_auxiliary")
    return (
        site["name"],
        site["is_observed"],
        type(fn),
        batch_shape,
        event_shape,
        value.shape,
        value.dtype,
        tuple((f.name, f.dim, f.size, f.counter) for f in site["cond_indep_stack"]),
        aux,
        "has_rsample" in vars(fn) if aux else None,
        infer.get("_enumerate_dim"),
        infer.get("enumerate"),
    )


class StructureChecks:
    """Pyro's structural checks of a step, run once per step signature.

    With validation on, :func:`compute_log_weights` runs ``check_model_guide_match`` and
    ``check_site_shape``. Their outcome depends only on the *signature* of the step: for
    every sample site of model and guide its name, whether it is observed, the type, batch
    shape and event shape of its distribution, the shape and dtype of its value, its plates
    (name, dim, size) and the ``infer`` flags the checks read; and ``max_plate_nesting``.
    This object remembers the signatures whose checks passed (with the shapes of their
    log-densities) and lets a step with a remembered signature skip them; a step whose
    log-densities come out in other shapes than last time is checked again. A failed check
    raises and is not remembered, so it fails again on the next call; a warning of
    ``check_model_guide_match`` is issued on the first step of its signature.

    :param int maxsize: signatures remembered (forgotten all at once beyond that).
    """

    def __init__(self, maxsize: int = 64) -> None:
        self.maxsize = int(maxsize)
        self.runs = 0  #: how many times the checks have actually run
        self._passed: dict[tuple, tuple] = {}

    @staticmethod
    def signature(model_sites: dict, guide_sites: dict, max_plate_nesting: int) -> tuple | None:
        """The signature of a step, or None where it cannot be told from shapes."""
        keys: list = [max_plate_nesting]
        for sites in (model_sites, guide_sites):
            keys.append(len(sites))
            for site in sites.values():
                key = _site_key(site)
                if key is None:
                    return None
                keys.append(key)
        return tuple(keys)

    def lookup(self, signature: tuple | None) -> tuple | None:
        """The log-density shapes remembered for ``signature``, or None (check it)."""
        return None if signature is None else self._passed.get(signature)

    def remember(self, signature: tuple | None, shapes: tuple) -> None:
        if signature is None:
            return
        if len(self._passed) >= self.maxsize:
            self._passed.clear()
        self._passed[signature] = shapes

    def clear(self) -> None:
        self._passed.clear()


@dataclass
class SiteLogProbs:
    """The checked log-densities of one run of model and guide (see
    :func:`site_log_probs`): ``lps`` holds those of ``p_sites`` then ``q_sites``;
    ``kept_dims`` are the plate dims every site shares, ``keep`` those plus the particle
    dim; ``scale`` is the subsampling scale common to all sites (1 when ``per_site_scale``,
    where each site's own scale is applied to its term)."""

    p_sites: list
    q_sites: list
    lps: list
    kept_dims: tuple[int, ...]
    keep: set
    ndim: int
    per_site_scale: bool
    scale: float | torch.Tensor

    def sum(self, which: str) -> torch.Tensor | None:
        """The model's (``"p"``) or the guide's (``"q"``) log-densities summed over every
        batch dim not kept."""
        n_p = len(self.p_sites)
        sites, lps = (
            (self.p_sites, self.lps[:n_p]) if which == "p" else (self.q_sites, self.lps[n_p:])
        )
        return _sum_log_probs(sites, lps, self.keep, self.ndim, self.per_site_scale)


def site_log_probs(
    model_sites: dict,
    guide_sites: dict,
    max_plate_nesting: int,
    checks: StructureChecks | None = None,
    require_rsample: bool = True,
) -> SiteLogProbs | None:
    """The log-density of every site that enters an importance weight, checked: the
    observed sites and the model's sites that the guide proposes, then the guide's latent
    sites (reparameterizable unless ``require_rsample`` is False); None when there are none.

    Latent sites that the model samples itself (absent from the guide) are proposed from
    the prior, so their :math:`p / q` cancels and they are left out. With Pyro's validation
    on, the structural checks (``check_model_guide_match``, ``check_site_shape``) run on
    every call, or once per step signature when ``checks`` (a :class:`StructureChecks` kept
    by the caller across steps) is given. Value checks (the support of each value, by the
    distributions' own ``validate_args``) run on every call.
    """
    ndim = max_plate_nesting + 1
    particle_dim = -ndim
    validate = is_validation_enabled()
    q_sites = latent_sites(guide_sites, require_rsample)
    p_sites = [
        site for site in model_sites.values() if site["is_observed"] or site["name"] in guide_sites
    ]
    signature = known_shapes = None
    if validate:
        if checks is not None:
            signature = checks.signature(model_sites, guide_sites, ndim)
            known_shapes = checks.lookup(signature)
        if known_shapes is None:
            if checks is not None:
                checks.runs += 1
            check_model_guide_match(_as_trace(model_sites), _as_trace(guide_sites), ndim)
    sites = p_sites + q_sites
    if not sites:
        return None

    # Plates shared by every site keep their own weights; the rest are summed over.
    common = None
    for site in sites:
        frames = {
            (f.name, f.dim, f.size, f.counter)
            for f in site["cond_indep_stack"]
            if f.dim is not None and f.name != PARTICLE_PLATE
        }
        common = frames if common is None else common & frames
    kept_dims = tuple(sorted(f[1] for f in common))
    keep = set(kept_dims)
    keep.add(particle_dim)

    lps = []
    for site in sites:
        lp = _site_log_prob(site)
        if validate and known_shapes is None:
            check_site_shape(dict(site, log_prob=lp), ndim)
        lps.append(lp)
    if validate:
        shapes = tuple(lp.shape for lp in lps)
        if known_shapes is None:
            if checks is not None:
                checks.remember(signature, shapes)
        elif shapes != known_shapes:  # a log_prob shaped otherwise than last time
            for site, lp in zip(sites, lps):
                check_site_shape(dict(site, log_prob=lp), ndim)

    # A subsampling scale common to all sites is applied after the log-mean-exp.
    first = sites[0]["scale"]
    per_site = not all(_is_same_scale(site["scale"], first) for site in sites)
    return SiteLogProbs(
        p_sites, q_sites, lps, kept_dims, keep, ndim, per_site, 1.0 if per_site else first
    )


def compute_log_weights(
    model_sites: dict,
    guide_sites: dict,
    max_plate_nesting: int,
    checks: StructureChecks | None = None,
    require_rsample: bool = True,
) -> LogWeights:
    r"""Return :math:`\log p(x, z)` and :math:`\log q(z)` per particle and shared plate element.

    The sites and their checks are those of :func:`site_log_probs`. Guide sites must be
    reparameterizable (the gradient estimators of the callers need it) unless
    ``require_rsample`` is False, as for estimating :math:`\log p(x)`.
    """
    terms = site_log_probs(model_sites, guide_sites, max_plate_nesting, checks, require_rsample)
    ndim = max_plate_nesting + 1
    if terms is None:
        # No sample site (only parameters): p / q = 1, log w = 0, a bound of 0 as Pyro's
        # losses return for such a pair.
        zero = torch.zeros(1)
        return LogWeights(zero, zero, 1.0, False, (), ndim)
    log_p, log_q = terms.sum("p"), terms.sum("q")
    if log_p is None:
        log_p = torch.zeros_like(log_q)
    elif log_q is None:
        log_q = torch.zeros_like(log_p)
    if log_p.shape != log_q.shape:
        log_p, log_q = torch.broadcast_tensors(log_p, log_q)
    shape = [log_p.shape[-ndim]] + [log_p.shape[d] for d in terms.kept_dims]
    return LogWeights(
        log_p=log_p.reshape(shape),
        log_q=log_q.reshape(shape),
        scale=terms.scale,
        per_site_scale=terms.per_site_scale,
        kept_dims=terms.kept_dims,
        ndim=ndim,
    )


def guide_log_prob(guide_sites: dict, like: LogWeights) -> torch.Tensor:
    r""":math:`\log q` of another run of the guide, reduced like ``like.log_q``."""
    keep = set(like.kept_dims) | {-like.ndim}
    lq = _sum_sites(latent_sites(guide_sites), keep, like.ndim, like.per_site_scale, False)
    lq = torch.broadcast_to(lq, like.to_batch_layout(like.log_q).shape)
    return lq.reshape(like.log_q.shape)
