r"""Greedy layer-wise training: one RBM (or one-layer autoencoder) per layer, each trained on
the data passed up through the layers below it.

This is the one place where pyrogen builds such stacks; deep Boltzmann machine pre-training
(:meth:`pyrogen.models.dbm.DeepBoltzmannMachine.pretraining_stack`) and the deep
autoencoder's RBM pre-training (:meth:`pyrogen.models.autoencoder.Autoencoder.rbm_stack`)
both use :class:`StackRBM`, :func:`propagate` and :func:`greedy_stages`.

A :class:`StackRBM` is an RBM whose visible and hidden units are each binary or Gaussian
(not both Gaussian), optionally with tied copies of its visible (``up = 2``) or hidden
(``down = 2``) units, Salakhutdinov & Hinton's doubling for DBM pre-training [2]:

* binary / binary: a :class:`~pyrogen.distributions.BernoulliRBM` over the tiled units
  (with ``up = 2`` both visible copies observe the same datum and share :math:`W` and
  :math:`b`, so :math:`p(h \mid v) = \sigma(c + 2 W^\top v)`; with ``down = 2``,
  :math:`p(v \mid h, h') = \sigma(b + W h + W h')`);
* Gaussian visible units of standard deviation :math:`s`: a
  :class:`~pyrogen.distributions.GaussianRBM` (the first RBM of a deep autoencoder on
  real-valued data [1]);
* Gaussian (linear) hidden units: a :class:`~pyrogen.distributions.GaussianHiddenRBM` (the
  code layer of a deep autoencoder [1]).

Each trains with :class:`~pyrogen.infer.ContrastiveDivergence`; :meth:`StackRBM.up` gives
:math:`\mathbb E[h \mid v]` (or a sample of binary hidden units), what the next RBM of the
stack is trained on.

**References**

[1] Reducing the Dimensionality of Data with Neural Networks. Geoffrey E. Hinton, Ruslan R.
    Salakhutdinov. 2006.

[2] Deep Boltzmann Machines. Ruslan Salakhutdinov, Geoffrey Hinton. 2009.

[3] Greedy Layer-Wise Training of Deep Networks. Yoshua Bengio, Pascal Lamblin, Dan
    Popovici, Hugo Larochelle. 2007.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.infer.util import is_validation_enabled

from pyrogen._checks import check_finite
from pyrogen.distributions import BernoulliRBM, GaussianHiddenRBM, GaussianRBM
from pyrogen.distributions.energy import bernoulli_sample
from pyrogen.models.base import logit_of_mean
from pyrogen.models.energy import EnergyModel

__all__ = ["UNIT_TYPES", "StackRBM", "greedy_stages", "propagate"]

UNIT_TYPES = ("binary", "gaussian")


class StackRBM(EnergyModel):
    """One RBM of a greedy stack (see module docs).

    :param int num_features: visible units (the width of the layer below).
    :param int hidden: hidden units.
    :param str visible_units: ``"binary"`` or ``"gaussian"``.
    :param str hidden_units: ``"binary"`` or ``"gaussian"`` (linear units of unit variance).
    :param float visible_scale: :math:`s`, the standard deviation of Gaussian visible units
        (1 for binary ones).
    :param int up: tied copies of the visible units (1 or 2; binary units only).
    :param int down: tied copies of the hidden units (1 or 2; binary units only).
    :param float init_scale: standard deviation of the initial weights.
    :param pixel_mean: training means of the visible units: their bias starts at the means'
        log-odds (binary) or the means (Gaussian).
    """

    name_prefix = "stack_rbm"

    def __init__(
        self,
        num_features: int,
        hidden: int,
        *,
        visible_units: str = "binary",
        hidden_units: str = "binary",
        visible_scale: float = 1.0,
        up: int = 1,
        down: int = 1,
        init_scale: float = 0.01,
        pixel_mean: torch.Tensor | None = None,
        name: str | None = None,
    ) -> None:
        for label, kind in (("visible_units", visible_units), ("hidden_units", hidden_units)):
            if kind not in UNIT_TYPES:
                raise ValueError(f"{label} must be one of {UNIT_TYPES}, got {kind!r}")
        if visible_units == hidden_units == "gaussian":
            raise ValueError(
                "visible and hidden units cannot both be Gaussian: such an RBM has no "
                "normalisable distribution"
            )
        if up not in (1, 2) or down not in (1, 2):
            raise ValueError(f"up and down must be 1 or 2, got {up}, {down}")
        if (up, down) != (1, 1) and "gaussian" in (visible_units, hidden_units):
            raise ValueError("tied copies (up or down = 2) need binary visible and hidden units")
        if not visible_scale > 0 or (visible_units == "binary" and visible_scale != 1):
            raise ValueError(
                "visible_scale must be positive, and 1 for binary visible units; got "
                f"{visible_scale} for {visible_units} units"
            )
        super().__init__(num_features, (1, int(num_features)), name)
        self._init_layer_parameters(hidden, init_scale)
        self.visible_units, self.hidden_units = visible_units, hidden_units
        self.visible_scale = float(visible_scale)
        self.up_copies, self.down_copies = int(up), int(down)
        if pixel_mean is not None:
            with torch.no_grad():
                if visible_units == "binary":
                    self.visible_bias.copy_(logit_of_mean(pixel_mean, self.visible_bias))
                else:
                    self.visible_bias.copy_(torch.as_tensor(pixel_mean).reshape(-1))

    # ---- the distribution ------------------------------------------------------------

    def distribution(self, **kwargs):
        """The RBM over the (tiled) units, what contrastive divergence trains."""
        W, b, c = self._distribution_parameters()
        kwargs.setdefault("validate_args", False)
        if self.visible_units == "gaussian":
            return GaussianRBM(W, b, c, torch.full_like(b, self.visible_scale), **kwargs)
        if self.hidden_units == "gaussian":
            return GaussianHiddenRBM(W, b, c, **kwargs)
        if self.up_copies > 1:
            W, b = torch.cat([W] * self.up_copies, 0), torch.cat([b] * self.up_copies)
        if self.down_copies > 1:
            W, c = torch.cat([W] * self.down_copies, 1), torch.cat([c] * self.down_copies)
        return BernoulliRBM(W, b, c, **kwargs)

    def rbm(self) -> BernoulliRBM:
        """The untiled binary RBM (weights as trained), as
        :meth:`pyrogen.distributions.DBM.from_rbms` expects."""
        return BernoulliRBM(self.weight, self.visible_bias, self.hidden_bias)

    def _prepare(self, x, name: str = "x") -> torch.Tensor:
        """``x`` flattened and checked finite (grey-level data, such as the hidden
        probabilities of a layer below, are accepted), tiled ``up`` times."""
        x = self._flatten(x, name)
        if is_validation_enabled():
            check_finite(x, name)
        return x if self.up_copies == 1 else torch.cat([x] * self.up_copies, -1)

    def _visible_mean(self, dist, state) -> torch.Tensor:
        return self.down(state[1][..., : self.hidden])

    # ---- passing data through ------------------------------------------------------------

    def encoder_weight(self) -> torch.Tensor:
        r"""The weight of :math:`h`'s pre-activation, :math:`u W / s` (``(V, H)``): :math:`u`
        tied visible copies, :math:`s` the Gaussian visible units' standard deviation."""
        return self.weight * self.up_copies / self.visible_scale

    def decoder_weight(self) -> torch.Tensor:
        r"""The weight of :math:`\mathbb E[v \mid h]`, :math:`d\, s\, W` (``(V, H)``)."""
        return self.weight * self.down_copies * self.visible_scale

    @torch.no_grad()
    def up(self, v: torch.Tensor, sample: bool = False) -> torch.Tensor:
        r""":math:`\mathbb E[h \mid v]`: :math:`\sigma(c + u (W/s)^\top v)` for binary hidden
        units, :math:`c + W^\top v / s` for linear ones; with ``sample``, binary hidden
        units are drawn from those probabilities instead (the data of the next RBM are then
        binary, like the visible states of its contrastive-divergence chains)."""
        pre = torch.addmm(self.hidden_bias, v.reshape(-1, self.num_features), self.encoder_weight())
        if self.hidden_units == "gaussian":
            return pre
        probs = torch.sigmoid(pre)
        return bernoulli_sample(probs) if sample else probs

    @torch.no_grad()
    def down(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbb E[v \mid h]`: :math:`\sigma(b + d W h)` or :math:`b + s W h`."""
        pre = torch.addmm(self.visible_bias, h.reshape(-1, self.hidden), self.decoder_weight().T)
        return torch.sigmoid(pre) if self.visible_units == "binary" else pre

    @torch.no_grad()
    def reconstruct(self, v: torch.Tensor) -> torch.Tensor:
        """One mean-field up-down pass, :meth:`down` of :meth:`up`."""
        return self.down(self.up(v))


def propagate(parts: Sequence, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
    """``x`` passed up through ``parts`` (each with ``up(x, sample)``: a :class:`StackRBM`,
    or a one-layer autoencoder), without gradients: the data of the next stage."""
    with torch.no_grad():
        for part in parts:
            x = part.up(x, sample=sample)
    return x


def greedy_stages(
    parts: Sequence,
    learner_for: Callable[[int, object], object],
    epochs: int,
    *,
    sample: bool = False,
    prefix: str = "layer",
) -> list[tuple]:
    """The stages of greedy layer-wise training, for :class:`pyrogen.train.StagedLearner`:
    stage ``k`` (named ``f"{prefix}{k + 1}"``) trains ``parts[k]`` with
    ``learner_for(k, parts[k])`` for ``epochs`` epochs on the data passed up through
    ``parts[:k]`` (:func:`propagate`, with ``sample``)."""
    stages = []
    for k, part in enumerate(parts):
        below = list(parts[:k])
        prepare = (lambda x, below=below: propagate(below, x, sample)) if below else None
        stages.append((f"{prefix}{k + 1}", learner_for(k, part), epochs, prepare))
    return stages
