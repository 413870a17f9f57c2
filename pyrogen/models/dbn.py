r"""Deep belief networks: a greedy stack of RBMs read as a generative model with an undirected
top and directed layers below, as a Pyro model with the recognition weights as its guide.

A DBN with layer sizes :math:`(D, H_1, \dots, H_L)` (layer 0 is the data
:math:`x = h_0`) is learned as a stack of :math:`L` binary RBMs [1]: RBM :math:`k` (weights
:math:`W_k`, visible bias :math:`b_k`, hidden bias :math:`c_k`) is trained by contrastive
divergence on the data passed up through the RBMs below it
(:func:`~pyrogen.models.greedy.greedy_stages`, the package's one stacking mechanism). The
stack is then read as a generative model: the top RBM is an undirected associative memory
over the last two layers, and every lower RBM gives a top-down sigmoid belief layer,

.. math::

    p(x, h_1, \dots, h_{L-1}) = p_{\text{top}}(h_{L-1}) \prod_{l=0}^{L-2}
        p(h_l \mid h_{l+1}), \qquad
    p(h_l \mid h_{l+1}) = \prod_j \mathrm{Bernoulli}\big(\sigma(b_l + W_l h_{l+1})_j\big),

with :math:`p_{\text{top}}(h_{L-1}) = \sum_{h_L} e^{-E_{\text{top}}(h_{L-1}, h_L)} / Z =
e^{-F(h_{L-1})} / Z` the top RBM's marginal over its visible layer (the top layer
:math:`h_L` is summed out analytically, so it is not a sample site). The recognition model
runs the other way with the transposed weights,
:math:`q(h_{l+1} \mid h_l) = \prod_j \mathrm{Bernoulli}(\sigma(c_l + W_l^\top h_l)_j)`.
After greedy learning the two are *untied* (:meth:`DeepBeliefNetwork.untie`): generative
and recognition weights start equal to the RBM weights and are fine-tuned separately.

**As a Pyro program.** Sample sites (stable names), all inside ``pyro.plate("data")``:

* ``"h{L-1}"``, the top site: its distribution is the top RBM as an energy-based
  distribution over :math:`h_{L-1}` (a :class:`~pyrogen.distributions.BernoulliRBM`;
  ``log_prob`` is :math:`-F(h_{L-1}) - \log Z`, with :math:`\log Z` exact when a layer of
  the top RBM has at most 20 units and otherwise the distribution's AIS estimate, or a
  value given as ``top_log_z``; ``sample`` is block Gibbs sampling for
  :attr:`DeepBeliefNetwork.sample_steps` sweeps);
* ``"h{L-2}"``, ..., ``"h1"``: the sigmoid belief layers
  (:class:`~pyrogen.models.helmholtz.SigmoidConditional`, the Helmholtz machine's layers);
* ``"x"``: observed.

The guide samples ``"h1"``, ..., ``"h{L-1}"`` from the recognition layers. A one-layer DBN
(``layer_sizes = (D, H)``) is its RBM: one observed site ``"x"`` with the RBM as its
distribution and an empty guide.

**Sampling** runs Gibbs sweeps in the top RBM, then one top-down pass through the sigmoid
belief layers (:meth:`DeepBeliefNetwork.sample`).

**Fine-tuning** (:class:`UpDownLearner`) is the up-down algorithm of [1], a contrastive
version of wake-sleep [2]: a stochastic up pass with the recognition weights; the wake rule
(:math:`\nabla \log p(h_l \mid h_{l+1})` for the generative weights); CD-:math:`k` on the
top RBM started at the up pass's top state; a stochastic down pass from the top RBM's state
after those Gibbs sweeps, and the sleep rule (:math:`\nabla \log q(h_{l+1} \mid h_l)` on it
for the recognition weights). Starting the sleep phase at the wake phase's top state rather
than at an independent dream is what makes it the up-down algorithm; the DBN's model and
guide are also valid for :class:`~pyrogen.infer.WakeSleep` and
:class:`~pyrogen.infer.ReweightedWakeSleep` when the top RBM's :math:`\log Z` is exact.

**Log-likelihood** (Salakhutdinov & Murray [3]): importance sampling through the directed
layers with the recognition model as proposal, and the top RBM's unnormalised marginal
with its :math:`\log Z`,

.. math::

    \log \hat p(x) = \log \frac1K \sum_{k=1}^K
        \frac{e^{-F(h^{(k)}_{L-1})} \prod_{l=0}^{L-2} p(h^{(k)}_l \mid h^{(k)}_{l+1})}
             {q(h^{(k)}_{1:L-1} \mid x)} - \log \hat Z,
    \qquad h^{(k)} \sim q(h \mid x),

with :math:`\log \hat Z` exact when enumerable and an AIS estimate otherwise; in
expectation it is a lower bound (:math:`K = 1`: the variational bound of [1, 3]) that
tightens as :math:`K` grows. Small models are scored exactly
(:meth:`DeepBeliefNetwork.log_prob`, enumerating every hidden layer).

**References**

[1] A Fast Learning Algorithm for Deep Belief Nets. Geoffrey E. Hinton, Simon Osindero,
    Yee-Whye Teh. Neural Computation 2006.

[2] The "Wake-Sleep" Algorithm for Unsupervised Neural Networks. Geoffrey E. Hinton, Peter
    Dayan, Brendan J. Frey, Radford M. Neal. Science 1995.

[3] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain
    Murray. ICML 2008.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch
from pyro.nn import pyro_method
from torch import nn

from pyrogen._rng import preserved_rng
from pyrogen.distributions.energy import bernoulli_sample
from pyrogen.distributions.rbm import BernoulliRBM
from pyrogen.evaluate.exact import exact_log_likelihood
from pyrogen.evaluate.importance import example_log_weights, importance_log_likelihood
from pyrogen.evaluate.result import LogLikelihood
from pyrogen.models.base import GenerativeModel
from pyrogen.models.greedy import StackRBM, greedy_stages
from pyrogen.models.helmholtz import (
    MAX_EXACT_LATENT_UNITS,
    SigmoidConditional,
    all_states,
    enumerated_log_prob,
)

__all__ = ["DeepBeliefNetwork", "UpDownLearner"]

_ESTIMATORS = ("auto", "exact", "importance")


class _TopRBM(BernoulliRBM):
    """The top RBM as the distribution of the top site; ``given_log_z`` (when not None)
    replaces :math:`\\log Z` in ``log_prob`` (the importance-sampling evaluation passes 0
    and subtracts its own estimate afterwards)."""

    given_log_z: float | torch.Tensor | None = None

    def _log_normalizer(self, value: torch.Tensor) -> torch.Tensor:
        if self.given_log_z is None:
            return super()._log_normalizer(value)
        return torch.as_tensor(self.given_log_z, dtype=self.weight.dtype, device=value.device)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class DeepBeliefNetwork(GenerativeModel):
    r"""A deep belief network (see module docs for the model, its sites and its learning).

    :param layer_sizes: ``(D, H1, ..., HL)``: the data width, then the hidden layers from
        the data upwards; ``L`` RBMs, the top one between ``H(L-1)`` and ``HL``
        (``(784, 500, 500, 2000)`` is the network of [1]; ``(D, H)`` is one RBM).
    :param pixel_mean: optional ``(D,)`` training pixel means: the bottom RBM's visible bias
        (and the bottom generative layer's bias) starts at their log-odds.
    :param image_shape: ``(H, W)`` of one example (default a square when ``D`` is one).
    :param float init_scale: standard deviation of the RBMs' initial weights.
    :param int sample_steps: Gibbs sweeps in the top RBM of :meth:`sample` and of the top
        site's ``sample`` (what the model draws when dreaming).
    :param str name: Pyro name prefix (default a fresh ``"dbn<N>"``).

    Attributes: ``stack`` (``ModuleList`` of :class:`~pyrogen.models.greedy.StackRBM`, bottom
    first; ``stack[-1]`` is the top RBM, :attr:`top`), ``generative``
    (``[p(x | h1), ..., p(h_{L-2} | h_{L-1})]``) and ``recognition``
    (``[q(h1 | x), ..., q(h_{L-1} | h_{L-2})]``), both
    :class:`~pyrogen.models.helmholtz.SigmoidConditional` layers, tied to the stack at
    construction and by :meth:`untie`.
    """

    name_prefix = "dbn"
    has_mean_samples = True

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        pixel_mean: torch.Tensor | None = None,
        image_shape: Sequence[int] | None = None,
        init_scale: float = 0.01,
        sample_steps: int = 1000,
        name: str | None = None,
    ) -> None:
        if isinstance(layer_sizes, str | int) or not isinstance(layer_sizes, Sequence):
            raise ValueError(
                "layer_sizes must be a sequence (D, H1, ..., HL) of the data width and at "
                f"least one hidden layer, got {layer_sizes!r}"
            )
        sizes = tuple(layer_sizes)
        if len(sizes) < 2:
            raise ValueError(
                "layer_sizes must hold the data width and at least one hidden layer, e.g. "
                f"(784, 500, 500, 2000); got {sizes}"
            )
        sizes = tuple(_positive_int(s, f"layer_sizes[{i}]") for i, s in enumerate(sizes))
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale!r}")
        super().__init__(sizes[0], image_shape, name)
        self.layer_sizes = sizes
        self.sample_steps = _positive_int(sample_steps, "sample_steps")
        L = len(sizes) - 1
        self.stack = nn.ModuleList(
            StackRBM(
                sizes[k],
                sizes[k + 1],
                init_scale=init_scale,
                pixel_mean=pixel_mean if k == 0 else None,
            )
            for k in range(L)
        )
        # generative[l]: p(h_l | h_{l+1}) with h_0 = x; recognition[l]: q(h_{l+1} | h_l)
        self.generative = nn.ModuleList(
            SigmoidConditional(sizes[k + 1], sizes[k]) for k in range(L - 1)
        )
        self.recognition = nn.ModuleList(
            SigmoidConditional(sizes[k], sizes[k + 1]) for k in range(L - 1)
        )
        self.untie()

    # ---- structure -----------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        """:math:`L`, the hidden layers (the RBMs of the stack)."""
        return len(self.layer_sizes) - 1

    @property
    def top(self) -> StackRBM:
        """The top RBM (between :math:`h_{L-1}` and :math:`h_L`), ``stack[-1]``."""
        return self.stack[-1]

    @property
    def site_names(self) -> tuple[str, ...]:
        """The latent sites from the data upwards, ``("h1", ..., "h{L-1}")`` (none for a
        one-layer DBN)."""
        return tuple(f"h{l + 1}" for l in range(self.num_layers - 1))

    @torch.no_grad()
    def untie(self, layer: int | None = None) -> None:
        r"""Copy RBM ``layer`` of the stack (all but the top one when ``None``) into the
        directed layers: :math:`p(h_l \mid h_{l+1})` gets :math:`(W_l, b_l)` and
        :math:`q(h_{l+1} \mid h_l)` gets :math:`(W_l^\top, c_l)`. Greedy training
        (:meth:`stages`) calls it for each RBM once it is trained; after it, generative
        and recognition weights are separate parameters (fine-tuned by
        :class:`UpDownLearner`)."""
        layers = range(self.num_layers - 1) if layer is None else [int(layer)]
        for k in layers:
            if not 0 <= k < self.num_layers - 1:
                raise ValueError(
                    f"layer must be in 0..{self.num_layers - 2} (the RBMs below the top one), "
                    f"got {layer}"
                )
            rbm = self.stack[k]
            gen = self.generative[k].net.output_layer
            rec = self.recognition[k].net.output_layer
            gen.weight.copy_(rbm.weight)
            gen.bias.copy_(rbm.visible_bias)
            rec.weight.copy_(rbm.weight.T)
            rec.bias.copy_(rbm.hidden_bias)

    def stages(
        self,
        learner_for: Callable[[int, StackRBM], Any],
        epochs: float,
        *,
        sample: bool = False,
        prefix: str = "layer",
    ) -> list:
        """Greedy layer-wise training as :class:`~pyrogen.train.Stage` objects for
        :class:`~pyrogen.train.StagedLearner`: stage ``k`` trains ``stack[k]`` with
        ``learner_for(k, stack[k])`` for ``epochs`` epochs on the data passed up through the
        RBMs below (:func:`~pyrogen.models.greedy.greedy_stages`; their hidden
        probabilities, or samples with ``sample``), and on entering it copies the RBM just
        below into the directed layers (:meth:`untie`). The top RBM trains in place. Append
        an :class:`UpDownLearner` stage to fine-tune."""
        from pyrogen.train import Stage

        out = []
        for k, (name, learner, n, prepare) in enumerate(
            greedy_stages(list(self.stack), learner_for, epochs, sample=sample, prefix=prefix)
        ):
            enter = None if k == 0 else functools.partial(self.untie, k - 1)
            out.append(Stage(name, learner, n, prepare, on_enter=enter))
        return out

    @torch.no_grad()
    def up(self, x: torch.Tensor, num_layers: int | None = None, sample: bool = False):
        r"""``x`` passed up ``num_layers`` recognition layers (default all, to
        :math:`h_{L-1}`): probabilities :math:`\sigma(c + W^\top h)` of each layer given the
        probabilities below, or with ``sample`` a stochastic up pass."""
        h = self._binary_input(x).to(self.top.weight.dtype)
        for q in list(self.recognition)[:num_layers]:
            probs = torch.sigmoid(q.logits_for(h))
            h = bernoulli_sample(probs) if sample else probs
        return h

    # ---- distributions -----------------------------------------------------------------

    def top_distribution(self, log_z=None) -> BernoulliRBM:
        r"""The top RBM as a distribution over :math:`h_{L-1}` (the top site's, or for a
        one-layer DBN the data's), sampling by :attr:`sample_steps` Gibbs sweeps; with
        ``log_z``, that value stands for :math:`\log Z` in ``log_prob``."""
        top = self._observed("stack")[-1]
        dist = _TopRBM(
            *top._distribution_parameters(), gibbs_steps=self.sample_steps, validate_args=False
        )
        dist.given_log_z = log_z
        return dist

    # ---- Pyro model and guide ----------------------------------------------------------

    @pyro_method
    def model(
        self,
        x: torch.Tensor | None = None,
        *,
        num_samples: int | None = None,
        observations: dict | None = None,
        top_log_z=None,
    ):
        r"""The generative model :math:`p_{\text{top}}(h_{L-1}) \prod_l p(h_l \mid h_{l+1})`
        (module docs).

        :param x: binary data ``(N, D)`` or image-shaped; ``None`` to sample (dream).
        :param int num_samples: batch size when ``x`` is ``None``.
        :param observations: ignored (accepted for the sleep phase of wake-sleep losses).
        :param top_log_z: a value to use for the top RBM's :math:`\log Z` instead of its own
            (exact or AIS) one.
        :returns: the distribution of ``"x"`` given the layer above.
        """
        if x is None:
            if num_samples is None:
                raise ValueError("model(x=None) needs num_samples")
            size = _positive_int(num_samples, "num_samples")
        else:
            x = self._binary_input(x)
            size = x.shape[0]
        L = self.num_layers
        top = self.top_distribution(top_log_z)
        with pyro.plate("data", size):
            if L == 1:
                pyro.sample("x", top, obs=x)
                return top
            gen = self._observed("generative")
            h = pyro.sample(f"h{L - 1}", top)
            for l in range(L - 2, 0, -1):
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
        observations: dict | None = None,
        top_log_z=None,
    ):
        r"""The recognition model :math:`\prod_l q(h_{l+1} \mid h_l)`; returns the top
        latent layer's sample (``x`` for a one-layer DBN, which has no latent site).

        :param observations: ``{"x": dream}`` from a sleep phase: the guide reads the dream
            instead of ``x``.
        """
        dream = None if observations is None else observations.get("x")
        if dream is not None:
            h = dream
            if h.shape[-1] != self.num_features:
                h = self._flatten(dream, "observations['x']")
        elif x is None:
            raise ValueError("guide needs the data x")
        else:
            h = self._binary_input(x)
        if self.num_layers == 1:
            return h
        rec = self._observed("recognition")
        with pyro.plate("data", h.shape[-2]):
            for l, q in enumerate(rec):
                h = pyro.sample(f"h{l + 1}", q.distribution(h))
        return h

    # ---- sampling ---------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        context: torch.Tensor | None = None,
        num_steps: int | None = None,
        mean: bool = False,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""``(num_samples, D)`` samples: ``num_steps`` (default :attr:`sample_steps`) block
        Gibbs sweeps in the top RBM from random states (or from ``init``, states of
        :math:`h_{L-1}`), then one stochastic top-down pass; with ``mean=True`` the
        probabilities of :math:`p(x \mid h_1)` at the end of it. Approximate: exact only as
        ``num_steps`` grows (the directed pass is exact)."""
        self._check_context(context)
        n = _positive_int(num_samples, "num_samples")
        steps = self.sample_steps if num_steps is None else int(num_steps)
        if steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {num_steps!r}")
        top = self.top_distribution()
        if init is None:
            state = top.init_chains(n)
        else:
            width = self.layer_sizes[-2]
            if init.shape != (n, width):
                raise ValueError(
                    f"init: expected states of h{self.num_layers - 1} of shape ({n}, {width}), "
                    f"got {tuple(init.shape)}"
                )
            state = (init.to(top.weight.dtype),)
        state = top.gibbs_chain(state, steps)
        if self.num_layers == 1:
            if not mean:
                return state[0]
            hidden = (
                state[1]
                if len(state) > 1
                else bernoulli_sample(torch.sigmoid(top.hidden_logits(state[0])))
            )
            return torch.sigmoid(top.visible_logits(hidden))
        h = state[0]
        for l in range(self.num_layers - 2, 0, -1):
            h = bernoulli_sample(torch.sigmoid(self.generative[l].logits_for(h)))
        probs = torch.sigmoid(self.generative[0].logits_for(h))
        return probs if mean else bernoulli_sample(probs)

    # ---- scoring ----------------------------------------------------------------------

    def can_enumerate(self) -> bool:
        """Whether :meth:`log_prob` is offered: the directed latent layers hold at most
        :data:`~pyrogen.models.helmholtz.MAX_EXACT_LATENT_UNITS` units in all and the top
        RBM's :math:`Z` is exact."""
        latent = sum(self.layer_sizes[1:-1])
        return latent <= MAX_EXACT_LATENT_UNITS and self.top.distribution().can_enumerate()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`\log p(x)` per example, ``(N,)``: the top RBM's exact marginal
        :math:`\log p_{\text{top}}(h_{L-1})` over all :math:`2^{H_{L-1}}` states, carried
        down the directed layers one at a time (:math:`p(h_l) = \sum_{h_{l+1}}
        p(h_{l+1})\, p(h_l \mid h_{l+1})`), then :math:`\log \sum_{h_1} p(h_1)\,
        p(x \mid h_1)`. Only for small networks (:meth:`can_enumerate`; a ValueError
        otherwise). Differentiable in the generative parameters."""
        if not self.can_enumerate():
            raise ValueError(
                "exact log p(x) enumerates every hidden layer below the top one and the top "
                f"RBM's partition function: offered up to {MAX_EXACT_LATENT_UNITS} directed "
                f"latent units and a top RBM with a layer of at most "
                f"{BernoulliRBM.max_enumeration} units; layer_sizes are {self.layer_sizes}. "
                "Use log_likelihood(estimator='importance')"
            )
        x = self._binary_input(x)
        top = self.top_distribution()
        like = top.weight
        x = x.to(like.dtype)
        log_z = top.log_partition("exact").log_z
        if self.num_layers == 1:
            return top.unnormalized_log_prob(x) - log_z
        log_top = top.unnormalized_log_prob(all_states(self.layer_sizes[-2], like)) - log_z
        return enumerated_log_prob(x, log_top, self.generative, self.layer_sizes[1:-1])

    def log_weights(self, x: torch.Tensor, num_particles: int, *, top_log_z=None) -> torch.Tensor:
        r"""Log importance weights :math:`\log p(x, h^{(k)}) - \log q(h^{(k)} \mid x)`,
        ``(K, N)`` float64, for :math:`K` draws from the guide per example, by the
        package's importance-sampling machinery on :meth:`model` and :meth:`guide` (no
        gradients). ``top_log_z`` as for :meth:`model` (0: the weights of the unnormalised
        model, :math:`\log Z` left out)."""
        k = _positive_int(num_particles, "num_particles")
        if self.num_layers == 1:
            raise ValueError("log_weights: a one-layer DBN has no latent site to sample")
        x = self._binary_input(x)
        model = functools.partial(self.model, top_log_z=top_log_z)
        return example_log_weights(model, self.guide, x, k, k, 1)

    def top_log_partition(
        self,
        method: str = "auto",
        *,
        data: torch.Tensor | None = None,
        num_chains: int = 100,
        betas: int | torch.Tensor = 14500,
        seed: int | None = None,
        progress: bool = False,
    ):
        r""":math:`\log Z` of the top RBM as a
        :class:`~pyrogen.distributions.annealing.LogPartition`: ``"exact"``, ``"ais"``
        (Salakhutdinov & Murray's AIS from a base-rate model fitted to ``data`` passed up to
        :math:`h_{L-1}` by :meth:`up`, ``num_chains`` chains, ``betas`` temperatures; with
        ``seed``, drawn from the global stream seeded with it and left as it was), or
        ``"auto"`` (exact when a layer of the top RBM is small enough)."""
        if method not in ("auto", "exact", "ais"):
            raise ValueError(f"method must be 'auto', 'exact' or 'ais', got {method!r}")
        top = self.top_distribution()
        if method == "auto":
            method = "exact" if top.can_enumerate() else "ais"
        if method == "exact":
            with torch.no_grad():
                return top.log_partition("exact")
        base = None if data is None else self.up(data)
        with torch.no_grad(), preserved_rng():
            if seed is not None:
                torch.manual_seed(int(seed))
            return top.log_partition(
                "ais", data=base, num_chains=int(num_chains), betas=betas, progress=progress
            )

    def log_likelihood(
        self,
        data,
        *,
        estimator: str = "auto",
        num_samples: int = 5000,
        log_z: str = "auto",
        num_chains: int = 100,
        betas: int | torch.Tensor = 14500,
        base_data: torch.Tensor | None = None,
        batch_size: int = 100,
        device: str | torch.device | None = None,
        diagnostics: bool = True,
        progress: bool = True,
        seed: int | None = None,
    ) -> LogLikelihood:
        r"""The mean test log-likelihood of ``data`` as a
        :class:`~pyrogen.evaluate.LogLikelihood`.

        :param str estimator: ``"exact"`` (:meth:`log_prob`), ``"importance"``
            (Salakhutdinov & Murray's estimator, module docs: importance sampling with the
            recognition model as proposal, ESS and PSIS :math:`\hat k` per example, and the
            top RBM's :math:`\log Z`), or ``"auto"`` (exact when :meth:`can_enumerate`).
            A one-layer DBN is scored as its RBM
            (:func:`~pyrogen.evaluate.energy_log_likelihood`: exact :math:`\log Z` when
            enumerable, AIS otherwise; ``log_z`` is not used).
        :param int num_samples: importance samples per example (the protocol's 5000).
        :param str log_z: the top RBM's :math:`\log Z`: ``"exact"``, ``"ais"`` or
            ``"auto"`` (exact when enumerable); see :meth:`top_log_partition`.
        :param int num_chains: AIS chains.
        :param betas: AIS temperatures (count or schedule).
        :param base_data: data whose up pass fits AIS's base-rate model (default ``data``).
        :param int seed: seeds the importance samples (per batch) and the AIS chains, and
            leaves the global streams as they were.

        The Monte Carlo standard error combines the importance sampling's and that of
        :math:`\log \hat Z` (shared by every example); ``diagnostics`` holds the top RBM's
        ``top_log_z``, ``top_log_z_stderr``, ``top_log_z_method``, its sandwich
        ``top_log_z_lower`` / ``top_log_z_upper`` and, for AIS, ``top_log_z_ess``,
        ``top_log_z_num_chains``, ``top_log_z_num_betas``, ``top_log_z_log_weight_std``,
        ... (the names of :meth:`~pyrogen.distributions.annealing.LogPartition.diagnostics`);
        ``ess`` and ``khat`` are the importance sampling's, per example. An AIS estimate
        with too small an ESS warns
        (:class:`~pyrogen.distributions.annealing.UnreliableEstimateWarning`).
        """
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
        if log_z not in ("auto", "exact", "ais"):
            raise ValueError(f"log_z must be 'auto', 'exact' or 'ais', got {log_z!r}")
        if hasattr(data, "tensor") and callable(data.tensor):
            data = data.tensor()
        exact = estimator == "exact" or (estimator == "auto" and self.can_enumerate())
        if exact:
            return exact_log_likelihood(
                self, data, batch_size=batch_size, progress=progress, device=device
            )
        if not isinstance(data, torch.Tensor) or data.dim() < 2 or data.shape[0] == 0:
            found = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
            raise ValueError(f"data: expected a non-empty (N, D) tensor of examples, got {found}")
        if self.num_layers == 1:
            from pyrogen.evaluate.energy import energy_log_likelihood

            return energy_log_likelihood(
                self.top_distribution(),
                self._binary_input(data, "data"),
                num_chains=num_chains,
                betas=betas,
                base_data=base_data,
                progress=progress,
                seed=seed,
            )
        base = data if base_data is None else base_data
        lz = self.top_log_partition(
            log_z, data=base, num_chains=num_chains, betas=betas, seed=seed, progress=progress
        )
        was_training = self.training
        self.eval()
        try:
            result = importance_log_likelihood(
                functools.partial(self.model, top_log_z=0.0),
                self.guide,
                data,
                num_samples=num_samples,
                batch_size=batch_size,
                max_plate_nesting=1,
                device=device if device is not None else self.top.weight.device,
                diagnostics=diagnostics,
                progress=progress,
                seed=seed,
            )
        finally:
            self.train(was_training)
        value, stderr = float(lz.log_z), float(lz.stderr)
        if lz.is_exact:
            how = "exact log Z"
        else:
            chains, temps = lz.info.get("num_chains"), lz.info.get("num_betas")
            how = f"AIS log Z ({chains} chains, {temps} temperatures)"
            lz.warn_if_unreliable(self.top_distribution())
        extra = {
            "top_log_z": value,
            "top_log_z_stderr": stderr,
            "top_log_z_method": lz.method,
            "top_log_z_lower": float(lz.lower),
            "top_log_z_upper": float(lz.upper),
        }
        if not lz.is_exact:
            extra.update({f"top_log_z_{k}": v for k, v in lz.diagnostics().items()})
        return LogLikelihood.from_per_example(
            result.per_example - value,
            f"importance sampling through the directed layers (K={num_samples}) + {how} "
            "of the top RBM",
            mc_stderr=math.sqrt(result.mc_stderr**2 + stderr**2),
            num_samples=result.num_samples,
            ess=result.ess,
            khat=result.khat,
            diagnostics=extra,
        )


class UpDownLearner:
    r"""Fine-tuning of a :class:`DeepBeliefNetwork` by the up-down algorithm of Hinton et al.
    (2006), a contrastive version of wake-sleep; a learner for :func:`pyrogen.train.train`
    (e.g. the last stage after :meth:`DeepBeliefNetwork.stages`).

    One step on a batch :math:`x` (module docs):

    1. up pass: :math:`h_{l+1} \sim q(h_{l+1} \mid h_l)` from :math:`h_0 = x`;
    2. wake: ascend :math:`\sum_{l=0}^{L-2} \log p(h_l \mid h_{l+1})` in the generative
       layers;
    3. top RBM: contrastive divergence with ``cd_k`` Gibbs sweeps started at
       :math:`h_{L-1}` (the RBM's
       :meth:`~pyrogen.distributions.BernoulliRBM.contrastive_divergence`), ending in a
       state :math:`\bar h_{L-1}`;
    4. down pass from :math:`\bar h_{L-1}`: :math:`\bar h_l \sim p(h_l \mid \bar h_{l+1})`
       down to :math:`\bar x`;
    5. sleep: ascend :math:`\sum_{l=0}^{L-2} \log q(\bar h_{l+1} \mid \bar h_l)` in the
       recognition layers.

    The objectives are summed over the batch (as every pyrogen learner's) and minimised
    together by one optimizer; the samples are held fixed. Reported numbers, per example:
    ``wake`` (:math:`-\sum_l \log p(h_l \mid h_{l+1})`), ``sleep``
    (:math:`-\sum_l \log q(\bar h_{l+1} \mid \bar h_l)`) and ``loss``, their sum.

    :param DeepBeliefNetwork dbn: the network (at least two layers).
    :param int cd_k: Gibbs sweeps of the top RBM per step.
    :param float lr: learning rate of the default optimizer, SGD with ``momentum``.
    :param float momentum: its momentum.
    :param optimizer: a ``torch.optim`` optimizer over the parameters of ``dbn.generative``,
        ``dbn.recognition`` and ``dbn.top`` instead of the default.
    """

    def __init__(
        self,
        dbn: DeepBeliefNetwork,
        *,
        cd_k: int = 1,
        lr: float = 1e-3,
        momentum: float = 0.0,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        if not isinstance(dbn, DeepBeliefNetwork):
            raise TypeError(f"dbn must be a DeepBeliefNetwork, got {type(dbn).__name__}")
        if dbn.num_layers < 2:
            raise ValueError(
                "dbn: up-down fine-tuning needs at least two layers (a one-layer DBN is an "
                "RBM; train it by contrastive divergence)"
            )
        self.cd_k = _positive_int(cd_k, "cd_k")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.module = dbn
        if optimizer is None:
            params = [
                *dbn.generative.parameters(),
                *dbn.recognition.parameters(),
                *dbn.top.parameters(),
            ]
            optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
        self.optimizer = optimizer

    def step(self, batch: torch.Tensor) -> dict[str, Any]:
        dbn = self.module
        dbn.train()
        x = dbn._binary_input(batch).to(dbn.top.weight.dtype)
        n = x.shape[0]
        gen, rec, L = dbn.generative, dbn.recognition, dbn.num_layers
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # 1. the stochastic up pass
            up = [x]
            for q in rec:
                up.append(bernoulli_sample(torch.sigmoid(q.logits_for(up[-1]))))
        wake = sum(gen[l].log_prob(up[l], up[l + 1]).sum() for l in range(L - 1))  # 2.
        top = BernoulliRBM(dbn.top.weight, dbn.top.visible_bias, dbn.top.hidden_bias)
        cd, chains, _ = top.contrastive_divergence(up[-1], (up[-1],), self.cd_k)  # 3.
        with torch.no_grad():  # 4. the stochastic down pass from the top RBM's state
            down = [chains[0]]
            for l in range(L - 2, -1, -1):
                down.insert(0, bernoulli_sample(torch.sigmoid(gen[l].logits_for(down[0]))))
        sleep = sum(rec[l].log_prob(down[l + 1], down[l]).sum() for l in range(L - 1))  # 5.
        (cd - wake - sleep).backward()
        self.optimizer.step()
        wake, sleep = -wake.detach() / n, -sleep.detach() / n
        return {"loss": wake + sleep, "wake": wake, "sleep": sleep}

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]:
        r"""``neg_unnormalized_elbo``: :math:`-\mathbb E_q[\log \tilde p(x, h) - \log q(h
        \mid x)]` per example from one draw of the guide, :math:`\tilde p` the model with
        the top RBM unnormalised (no :math:`\log Z`, which changes with the top RBM)."""
        dbn = self.module
        dbn.eval()
        lw = dbn.log_weights(batch, 1, top_log_z=0.0)
        return {"neg_unnormalized_elbo": -lw.mean()}

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def to(self, device) -> UpDownLearner:
        self.module.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
