r"""Helmholtz machines: sigmoid belief nets with a recognition network, as a Pyro model/guide.

The generative model (the sigmoid belief net of [1, 5]) has :math:`L` layers of binary
latent units above binary data :math:`x \in \{0, 1\}^D`,

.. math::

    p_\theta(x, h_{1:L}) = p_\theta(h_L)\,\prod_{l=1}^{L-1} p_\theta(h_l \mid h_{l+1})\;
        p_\theta(x \mid h_1),

and the recognition model (the guide) runs the other way,

.. math::

    q_\phi(h_{1:L} \mid x) = q_\phi(h_1 \mid x)\,\prod_{l=1}^{L-1} q_\phi(h_{l+1} \mid h_l).

Every conditional :math:`p(y \mid c)` (and :math:`q(y \mid c)`) is one of

* ``conditional="sigmoid"`` (the sigmoid belief net layer of [1, 3]): factorial Bernoulli
  units with logits an affine function of the layer it is conditioned on,

  .. math:: p(y \mid c) = \prod_j \mathrm{Bernoulli}\big(y_j \mid \sigma(b_j + W_{j:} c)\big),

  or, with ``hidden=H``, of a deterministic tanh layer of :math:`H` units in between
  (:math:`\sigma(b + W \tanh(a + U c))`, the "non-linear" SBN layers of [3]); the top
  prior :math:`p(h_L) = \prod_j \mathrm{Bernoulli}(\sigma(b_j))` has learned logits;
* ``conditional="nade"``: an autoregressive layer (NADE [6] whose biases depend on the
  layer it is conditioned on; the NADE layers of [2], in the spirit of DARN [4]),

  .. math::

      p(y \mid c) = \prod_{k} \mathrm{Bernoulli}\big(y_k \mid \sigma(b_k + E^o_{k:} c
          + V_{k:}\, \mathrm{sigm}(a + E^h c + W_{:, <k}\, y_{<k}))\big),

  so the units of one layer are no longer independent given the layer above: a more
  powerful posterior approximation and prior ([2] reports much better likelihoods with it).
  Its parameters are a :class:`~pyrogen.nn.NADENet` whose class-context tables
  (``context_hidden`` :math:`E^h`, ``context_output`` :math:`E^o`) take the conditioning
  layer as a real-valued "one-hot" context, i.e. as a linear map of :math:`c`.

Sample sites (stable names): ``"h1"``, ..., ``"hL"`` (``"h1"`` nearest the data) and the
observed ``"x"``, all inside ``pyro.plate("data")``. Model and guide accept
``subsample_size`` (then ``x`` is the whole data set and the plate draws the minibatch, with
Pyro's scale ``N / B``), so plain Pyro ``SVI`` with ``TraceGraph_ELBO``, Pyro's
``ReweightedWakeSleep`` (whose sleep phase calls the guide with ``observations={"x":
dream}``) and pyrogen's learning rules (:mod:`pyrogen.infer`: wake-sleep, reweighted
wake-sleep, NVIL, VIMCO) run on it unchanged.

**Log-likelihood.** :meth:`HelmholtzMachine.log_prob` is exact, by enumerating every latent
layer (one layer at a time: the marginal :math:`p(h_l)` is propagated down the chain, so the
cost is :math:`\sum_l 2^{H_l + H_{l+1}}` plus :math:`2^{H_1}` evaluations of
:math:`p(x \mid h_1)` per example); it is offered while the latent layers hold at most
:data:`MAX_EXACT_LATENT_UNITS` units in all. :meth:`HelmholtzMachine.log_likelihood`
uses it then, and otherwise the importance-sampling evaluator with the recognition model as
proposal (:math:`K = 5000`, with effective sample sizes and PSIS :math:`\hat k`).

**References**

[1] The Helmholtz Machine. Peter Dayan, Geoffrey E. Hinton, Radford M. Neal, Richard S.
    Zemel. Neural Computation 1995; and The "Wake-Sleep" Algorithm for Unsupervised Neural
    Networks. Geoffrey E. Hinton, Peter Dayan, Brendan J. Frey, Radford M. Neal. Science 1995.

[2] Reweighted Wake-Sleep. Jörg Bornschein, Yoshua Bengio. ICLR 2015 (arXiv:1406.2751).

[3] Neural Variational Inference and Learning in Belief Networks. Andriy Mnih, Karol Gregor.
    ICML 2014.

[4] Deep AutoRegressive Networks. Karol Gregor, Ivo Danihelka, Andriy Mnih, Charles
    Blundell, Daan Wierstra. ICML 2014.

[5] Connectionist Learning of Belief Networks. Radford M. Neal. Artificial Intelligence 1992.

[6] The Neural Autoregressive Distribution Estimator. Hugo Larochelle, Iain Murray.
    AISTATS 2011.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import torch
from pyro.nn import pyro_method
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyrogen.distributions import NADE, IndependentBernoulli, bernoulli_log_prob
from pyrogen.evaluate.exact import exact_log_likelihood
from pyrogen.models.base import GenerativeModel, logit_of_mean
from pyrogen.nn import MLP, NADENet

__all__ = [
    "MAX_EXACT_LATENT_UNITS",
    "HelmholtzMachine",
    "NADEConditional",
    "SigmoidConditional",
]

#: exact enumeration (:meth:`HelmholtzMachine.log_prob`) is offered up to this many latent
#: units in all layers together
MAX_EXACT_LATENT_UNITS = 20

#: default hidden units of a NADE conditional (``conditional="nade"``, ``hidden=None``)
DEFAULT_NADE_HIDDEN = 50

_CONDITIONALS = ("sigmoid", "nade")


def _floating(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == like.dtype else t.to(like.dtype)


def all_states(num_units: int, like: torch.Tensor) -> torch.Tensor:
    """Every binary vector of ``num_units`` units, ``(2**num_units, num_units)``, made like
    ``like`` (row ``i`` holds the bits of ``i``, most significant first)."""
    codes = torch.arange(2**num_units, device=like.device)
    shifts = torch.arange(num_units - 1, -1, -1, device=like.device)
    return ((codes.unsqueeze(-1) >> shifts) & 1).to(like.dtype)


def enumerated_log_prob(
    x: torch.Tensor,
    log_top: torch.Tensor,
    conditionals: Sequence[nn.Module],
    latent_sizes: Sequence[int],
) -> torch.Tensor:
    r"""Exact :math:`\log p(x)` per example, ``(N,)``, of a directed chain
    :math:`p(h_K) \prod_{l=1}^{K-1} p(h_l \mid h_{l+1})\, p(x \mid h_1)` over binary latent
    layers, by enumeration one layer at a time: the top marginal is carried down,

    .. math::

        \log p(h_l) = \log \sum_{h_{l+1}} p(h_{l+1})\, p(h_l \mid h_{l+1}), \qquad
        \log p(x) = \log \sum_{h_1} p(h_1)\, p(x \mid h_1),

    at a cost of :math:`\sum_l 2^{H_l + H_{l+1}}` conditional evaluations plus
    :math:`2^{H_1}` per example. Shared by :meth:`HelmholtzMachine.log_prob` (a factorial
    or NADE top prior) and :meth:`~pyrogen.models.dbn.DeepBeliefNetwork.log_prob` (the top
    RBM's marginal).

    :param x: the data, ``(N, D)``, of the conditionals' dtype.
    :param log_top: :math:`\log p(h_K)` of every state of the top latent layer, in the order
        of :func:`all_states`, ``(2^{H_K},)``.
    :param conditionals: ``conditionals[l]`` gives :math:`\log p(h_l \mid h_{l+1})` (layer 0
        is :math:`x`) by ``log_prob(value, context)``; :math:`K` of them.
    :param latent_sizes: :math:`(H_1, \dots, H_K)`.
    """
    like = x
    states = all_states(latent_sizes[-1], like)
    log_marginal = log_top
    for l in range(len(latent_sizes) - 1, 0, -1):
        here = all_states(latent_sizes[l - 1], like)
        a, b = states.shape[0], here.shape[0]
        cond = conditionals[l].log_prob(
            here.unsqueeze(0).expand(a, b, -1), states.unsqueeze(1).expand(a, b, -1)
        )  # log p(h_l = here_b | h_{l+1} = states_a), (a, b)
        log_marginal = torch.logsumexp(log_marginal.unsqueeze(1) + cond, dim=0)
        states = here
    s = states.shape[0]
    chunk = max(1, (1 << 22) // (s * x.shape[-1]))
    out = []
    for xb in x.split(chunk):
        n = xb.shape[0]
        lp = conditionals[0].log_prob(
            xb.unsqueeze(0).expand(s, n, -1), states.unsqueeze(1).expand(s, n, -1)
        )  # (s, n)
        out.append(torch.logsumexp(log_marginal.unsqueeze(1) + lp, dim=0))
    return torch.cat(out)


class SigmoidConditional(nn.Module):
    r"""A sigmoid belief net layer :math:`p(y \mid c) = \prod_j \mathrm{Bernoulli}(y_j \mid
    \sigma(f(c)_j))` with :math:`f` affine, or an MLP with one tanh hidden layer; without an
    input (``in_features=None``) a factorial prior with learned logits.

    :param in_features: width of the conditioning layer :math:`c` (``None``: a prior).
    :param int out_features: width of :math:`y`.
    :param int hidden: units of the deterministic hidden layer inside :math:`f` (``None`` or
        0: none).
    """

    def __init__(self, in_features: int | None, out_features: int, hidden: int | None = None):
        super().__init__()
        self.in_features = in_features
        self.out_features = int(out_features)
        if in_features is None:
            self.net = None
            self.logits = nn.Parameter(torch.zeros(self.out_features))
        else:
            self.net = MLP(in_features, (hidden,) if hidden else (), out_features, "tanh")

    @property
    def output_bias(self) -> torch.Tensor:
        """The bias of the output logits (the prior's logits for a top layer)."""
        return self.logits if self.net is None else self.net.output_layer.bias

    def init_output_bias(self, mean: torch.Tensor) -> None:
        """Set the output bias to the log-odds of ``mean``."""
        with torch.no_grad():
            self.output_bias.copy_(logit_of_mean(mean, self.output_bias))

    def logits_for(self, context: torch.Tensor | None) -> torch.Tensor:
        """Logits of :math:`y`, ``context.shape[:-1] + (out_features,)`` (``(out_features,)``
        for a prior)."""
        if self.net is None:
            return self.logits
        return self.net(_floating(context, self.output_bias))

    def distribution(self, context: torch.Tensor | None) -> IndependentBernoulli:
        """:math:`p(y \\mid c)` as a distribution with event shape ``(out_features,)``."""
        return IndependentBernoulli(self.logits_for(context))

    def log_prob(self, value: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """:math:`\\log p(y \\mid c)`, ``value.shape[:-1]`` (``value`` and ``context`` have
        the same batch shape)."""
        logits = self.logits_for(context)
        return bernoulli_log_prob(logits.expand(value.shape), value)


class NADEConditional(nn.Module):
    r"""An autoregressive layer :math:`p(y \mid c) = \prod_k p(y_k \mid y_{<k}, c)`: a
    :class:`~pyrogen.nn.NADENet` over :math:`y` whose hidden and output biases are linear
    in :math:`c` (its class-context tables, fed :math:`c` as a real-valued context); without
    an input (``in_features=None``) an unconditional NADE prior.

    :param in_features: width of :math:`c` (``None``: a prior).
    :param int out_features: width of :math:`y`.
    :param int hidden: NADE's hidden units.
    """

    def __init__(self, in_features: int | None, out_features: int, hidden: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = int(out_features)
        self.net = NADENet(out_features, hidden, num_classes=in_features, context_to="both")
        if in_features is not None:  # small random context weights (NADENet starts at 0)
            with torch.no_grad():
                for table in (self.net.context_hidden, self.net.context_output):
                    bound = math.sqrt(6.0 / (in_features + table.shape[1]))
                    table.uniform_(-bound, bound)

    @property
    def output_bias(self) -> torch.Tensor:
        return self.net.output_bias

    def init_output_bias(self, mean: torch.Tensor) -> None:
        self.net.init_output_bias(mean)

    def distribution(self, context: torch.Tensor | None) -> NADE:
        """:math:`p(y \\mid c)` as a :class:`~pyrogen.distributions.NADE`."""
        if context is not None:
            context = _floating(context, self.output_bias)
        return NADE(self.net, context=context)

    def log_prob(self, value: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return self.distribution(context).log_prob(value)


class HelmholtzMachine(GenerativeModel):
    r"""A Helmholtz machine: a sigmoid belief net (or NADE-layered) generative model with
    its recognition model as the guide (see module docs for the maths).

    :param layer_sizes: ``(D, H1, ..., HL)``: the data width, then the latent layers from
        the data upwards (``(784, 200, 200)`` is the SBN 200-200 of [2, 3]).
    :param int hidden: for ``conditional="sigmoid"``, the units of a deterministic tanh layer
        inside every conditional (``None``: plain sigmoid layers); for ``"nade"``, the hidden
        units of every NADE conditional (default :data:`DEFAULT_NADE_HIDDEN`).
    :param str conditional: ``"sigmoid"`` or ``"nade"`` (see module docs), for generative
        and recognition layers alike.
    :param image_shape: ``(H, W)`` with ``H * W == D``; default a square when ``D`` is one.
    :param pixel_mean: optional ``(D,)`` training-set pixel means: the output bias of
        :math:`p(x \mid h_1)` starts at their log-odds.
    :param int baseline_hidden: if set, the machine also owns ``baseline``, an
        input-dependent baseline network :math:`b_\psi(x)` (one tanh hidden layer of this
        many units, [3]) for score-function learning rules such as NVIL; it is part of the
        module, so optimizers over ``parameters()`` train it and checkpoints keep it.
    :param str name: Pyro name prefix of the parameters (default a fresh ``"helmholtz<N>"``).

    Attributes: ``generative`` (``ModuleList``: ``[p(x|h1), p(h1|h2), ..., p(hL)]``),
    ``recognition`` (``[q(h1|x), q(h2|h1), ..., q(hL|h_{L-1})]``), ``baseline`` (or None).
    """

    name_prefix = "helmholtz"

    def __init__(
        self,
        layer_sizes: Sequence[int] = (784, 200, 200),
        *,
        hidden: int | None = None,
        conditional: str = "sigmoid",
        image_shape: Sequence[int] | None = None,
        pixel_mean: torch.Tensor | None = None,
        baseline_hidden: int | None = None,
        name: str | None = None,
    ) -> None:
        sizes = tuple(layer_sizes)
        if len(sizes) < 2:
            raise ValueError(
                "layer_sizes must hold the data width and at least one latent layer, e.g. "
                f"(784, 200, 200); got {sizes}"
            )
        for i, s in enumerate(sizes):
            if int(s) != s or s < 1:
                what = "the data width" if i == 0 else f"latent layer h{i}"
                raise ValueError(
                    f"layer_sizes[{i}] ({what}) must be a positive integer, got {s!r}: every "
                    "layer needs at least one unit"
                )
        sizes = tuple(int(s) for s in sizes)
        if conditional not in _CONDITIONALS:
            raise ValueError(f"conditional must be one of {_CONDITIONALS}, got {conditional!r}")
        if hidden is not None and (int(hidden) != hidden or hidden < 0):
            raise ValueError(f"hidden must be a non-negative integer or None, got {hidden!r}")
        super().__init__(sizes[0], image_shape, name)
        self.layer_sizes = sizes
        self.latent_sizes = sizes[1:]
        self.conditional = conditional
        self.has_mean_samples = conditional == "sigmoid"
        if conditional == "nade":
            self.hidden = int(hidden) if hidden else DEFAULT_NADE_HIDDEN

            def make(c, y):
                return NADEConditional(c, y, self.hidden)
        else:
            self.hidden = int(hidden) if hidden else None

            def make(c, y):
                return SigmoidConditional(c, y, self.hidden)

        L = len(self.latent_sizes)
        # generative[l]: p(layer l | layer l + 1) with layer 0 = x; generative[L]: p(h_L)
        self.generative = nn.ModuleList(
            [make(sizes[l + 1], sizes[l]) for l in range(L)] + [make(None, sizes[L])]
        )
        # recognition[l]: q(h_{l+1} | layer l)
        self.recognition = nn.ModuleList(make(sizes[l], sizes[l + 1]) for l in range(L))
        self.baseline = None
        if baseline_hidden:
            self.baseline = _Baseline(sizes[0], int(baseline_hidden))
        if pixel_mean is not None:
            self.init_output_bias(pixel_mean)

    @property
    def num_layers(self) -> int:
        """:math:`L`, the number of latent layers."""
        return len(self.latent_sizes)

    @property
    def num_latent_units(self) -> int:
        return sum(self.latent_sizes)

    @property
    def site_names(self) -> tuple[str, ...]:
        """Latent site names from the data upwards: ``("h1", ..., "hL")``."""
        return tuple(f"h{l + 1}" for l in range(self.num_layers))

    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        r"""Set the output bias of :math:`p(x \mid h_1)` to :math:`\log\frac{m}{1-m}` of the
        pixel means ``m`` (clamped to ``[eps, 1 - eps]``)."""
        bias = self.generative[0].output_bias
        with torch.no_grad():
            bias.copy_(logit_of_mean(pixel_mean, bias, eps))

    # ---- Pyro model and guide ----------------------------------------------------------

    def _plate(self, size: int, subsample_size: int | None):
        # a fresh plate each call: its subsample statement is what Pyro's model/guide
        # structure checks read (a cached plate, as pyrogen._effects.data_plate keeps, would
        # issue it only once)
        return pyro.plate("data", size, subsample_size=subsample_size)

    @pyro_method
    def model(
        self,
        x: torch.Tensor | None = None,
        *,
        num_samples: int | None = None,
        subsample_size: int | None = None,
        observations: dict | None = None,
    ):
        r"""The generative model :math:`p_\theta(h_L) \prod_l p_\theta(h_l \mid h_{l+1})\,
        p_\theta(x \mid h_1)`.

        :param x: binary data, ``(N, D)`` or image-shaped; ``None`` to sample (dream).
        :param int num_samples: batch size when ``x`` is ``None``.
        :param int subsample_size: draw a minibatch of this size from ``x`` in the plate
            (log-densities scaled by ``N / subsample_size``).
        :param observations: ignored (accepted for Pyro's ``ReweightedWakeSleep``).
        :returns: the distribution :math:`p(x \mid h_1)` of the batch.
        """
        gen = self._observed("generative")
        if x is None:
            if num_samples is None:
                raise ValueError("model(x=None) needs num_samples")
            if subsample_size is not None:
                raise ValueError("subsample_size needs data x to draw the minibatch from")
            size = int(num_samples)
        else:
            x = self._binary_input(x)
            size = x.shape[0]
        L = self.num_layers
        with self._plate(size, subsample_size) as index:
            if x is not None and subsample_size is not None:
                x = x[index]
            h = pyro.sample(f"h{L}", gen[L].distribution(None))
            for l in range(L - 1, 0, -1):
                h = pyro.sample(f"h{l}", gen[l].distribution(h))
            px = gen[0].distribution(h)
            pyro.sample("x", px, obs=x)
        return px

    @pyro_method
    def guide(
        self,
        x: torch.Tensor | None = None,
        *,
        num_samples: int | None = None,
        subsample_size: int | None = None,
        observations: dict | None = None,
    ):
        r"""The recognition model :math:`q_\phi(h_1 \mid x) \prod_l q_\phi(h_{l+1} \mid
        h_l)`; returns the top layer's sample.

        :param x: binary data as for :meth:`model`.
        :param observations: ``{"x": dreamed data}`` from the sleep phase of Pyro's
            ``ReweightedWakeSleep``: then the guide reads the dream instead of ``x`` (it is
            already the minibatch, with any sleep-particle dims in front).
        """
        rec = self._observed("recognition")
        dream = None if observations is None else observations.get("x")
        if dream is not None:
            if dream.shape[-1] != self.num_features:
                dream = self._flatten(dream, "observations['x']")
            h, size, subsample_size = dream, dream.shape[-2], None
        else:
            if x is None:
                raise ValueError("guide needs the data x")
            h = self._binary_input(x)
            size = h.shape[0]
        with self._plate(size, subsample_size) as index:
            if subsample_size is not None:
                h = h[index]
            for l, q in enumerate(rec):
                h = pyro.sample(f"h{l + 1}", q.distribution(h))
        return h

    # ---- user-facing helpers -----------------------------------------------------------

    @torch.no_grad()
    def dream(self, num_samples: int) -> dict[str, torch.Tensor]:
        """One ancestral draw of every layer, ``{"hL": ..., ..., "h1": ..., "x": ...}``
        (each ``(num_samples, width)``): the "fantasies" of the sleep phase."""
        with pyro.poutine.block(), pyro.poutine.trace() as tr:
            self.model(None, num_samples=int(num_samples))
        return {
            name: site["value"]
            for name, site in tr.trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)
        }

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, context: torch.Tensor | None = None, mean: bool = False
    ) -> torch.Tensor:
        r"""``(num_samples, D)`` draws of :math:`x` from :math:`p(x)` (ancestral sampling),
        or with ``mean=True`` (sigmoid conditionals only) the pixel probabilities of
        :math:`p(x \mid h_1)` at the drawn :math:`h_1`."""
        self._check_context(context)
        if mean and not self.has_mean_samples:
            raise ValueError(
                "mean=True: a NADE conditional p(x | h1) has no factorial mean; draw samples"
            )
        with pyro.poutine.block(), pyro.poutine.trace() as tr:
            px = self.model(None, num_samples=int(num_samples))
        return px.mean if mean else tr.trace.nodes["x"]["value"]

    def _check_exact(self) -> None:
        if self.num_latent_units > MAX_EXACT_LATENT_UNITS:
            raise ValueError(
                f"exact log p(x) enumerates the latent layers: offered up to "
                f"{MAX_EXACT_LATENT_UNITS} latent units in all, this machine has "
                f"{self.num_latent_units} ({self.latent_sizes}); use log_likelihood() "
                "(importance sampling)"
            )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`\log p(x)` per example, ``(N,)``, by enumerating the latent layers
        (see module docs; at most :data:`MAX_EXACT_LATENT_UNITS` latent units in all, else a
        ValueError). Differentiable in the generative parameters."""
        self._check_exact()
        x = self._binary_input(x)
        gen = self.generative
        like = gen[0].output_bias
        x = _floating(x, like)
        L = self.num_layers
        log_top = gen[L].log_prob(all_states(self.latent_sizes[-1], like), None)  # log p(h_L)
        return enumerated_log_prob(x, log_top, gen, self.latent_sizes)

    def log_likelihood(
        self,
        data,
        *,
        estimator: str = "auto",
        num_samples: int = 5000,
        batch_size: int = 100,
        particle_batch_size: int | None = None,
        max_elements: int = 2**25,
        device: str | torch.device | None = None,
        diagnostics: bool = True,
        progress: bool = True,
        seed: int | None = None,
    ):
        """The mean test log-likelihood of ``data`` as a
        :class:`~pyrogen.evaluate.LogLikelihood`.

        :param str estimator: ``"exact"`` (enumeration, :meth:`log_prob`), ``"importance"``
            (importance sampling with the recognition model as proposal, ESS and PSIS
            :math:`\\hat k`), or ``"auto"``: exact while the latent layers hold at most
            :data:`MAX_EXACT_LATENT_UNITS` units, importance sampling otherwise.
        :param int num_samples: importance samples per example (the protocol's 5000; unused
            when exact).
        :param batch_size: examples per batch. The other options (``seed`` among them:
            unused when exact) are those of
            :func:`~pyrogen.evaluate.importance_log_likelihood`.
        """
        if estimator not in ("auto", "exact", "importance"):
            raise ValueError(
                f"estimator must be 'auto', 'exact' or 'importance', got {estimator!r}"
            )
        exact = estimator == "exact" or (
            estimator == "auto" and self.num_latent_units <= MAX_EXACT_LATENT_UNITS
        )
        if exact:
            self._check_exact()
            return exact_log_likelihood(
                self, data, batch_size=batch_size, progress=progress, device=device
            )
        return self.guide_importance_log_likelihood(
            data,
            num_samples=num_samples,
            batch_size=batch_size,
            particle_batch_size=particle_batch_size,
            max_elements=max_elements,
            device=device,
            diagnostics=diagnostics,
            progress=progress,
            seed=seed,
        )

    def log_weights(self, x: torch.Tensor, num_particles: int) -> torch.Tensor:
        r"""Log importance weights :math:`\log p(x, h^{(k)}) - \log q(h^{(k)} \mid x)` for
        :math:`K` draws :math:`h^{(k)} \sim q(h \mid x)` per example, ``(K, N)``
        (differentiable in the parameters, not through the discrete draws)."""
        x = self._binary_input(x)
        like = self.generative[0].output_bias
        x = _floating(x, like)
        k = int(num_particles)
        h = x.expand(k, *x.shape)
        layers, log_q = [], 0.0
        for q in self.recognition:
            d = q.distribution(h)
            h = d.sample()
            log_q = log_q + d.log_prob(h)
            layers.append(h)
        gen, L = self.generative, self.num_layers
        log_p = gen[L].log_prob(layers[-1], None)
        for l in range(L - 1, 0, -1):
            log_p = log_p + gen[l].log_prob(layers[l - 1], layers[l])
        log_p = log_p + gen[0].log_prob(x.expand(k, *x.shape), layers[0])
        return log_p - log_q


class _Baseline(nn.Module):
    r"""Input-dependent baseline :math:`b_\psi(x)` of NVIL [3]: an MLP ``D -> H (tanh) -> 1``
    returning ``(N,)`` (any leading dims of ``x`` are kept)."""

    def __init__(self, num_features: int, hidden: int) -> None:
        super().__init__()
        self.net = MLP(num_features, (hidden,), 1, "tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.net.output_layer.weight
        return self.net(_floating(x, p)).squeeze(-1)
