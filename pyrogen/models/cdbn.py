r"""Convolutional deep belief networks (Lee, Grosse, Ranganath & Ng 2009): a stack of
convolutional RBMs with probabilistic max-pooling, trained greedily, layer by layer.

Layer :math:`l` is a :class:`ConvRBMLayer`, a convolutional RBM
(:class:`~pyrogen.distributions.conv_rbm.ConvolutionalRBM`, or
:class:`~pyrogen.distributions.conv_rbm.GaussianConvolutionalRBM` for real-valued input such
as whitened natural images) whose visible maps are the **pooling units** of layer
:math:`l - 1`: its :meth:`~ConvRBMLayer.up` pass gives
:math:`p(p^k_\alpha = 1 \mid v) = 1 - 1 / (1 + \sum_{(i,j) \in B_\alpha} e^{I(h^k_{ij})})`
(or a sample of the pooling units), a ``(K, N_h / P, N_w / P)`` map per example, which is
what the next layer is trained on [1]. :meth:`ConvolutionalDBN.stages` builds those stages
with pyrogen's one stacking mechanism, :func:`pyrogen.models.greedy.greedy_stages`, for
:class:`pyrogen.train.StagedLearner`; each layer trains with
:class:`~pyrogen.infer.ContrastiveDivergence` (optionally with the sparsity regulariser of
[2]).

Higher-layer units are shown as in [1], as weighted combinations of the filters below
(:meth:`ConvolutionalDBN.filters_in_input_space`).

**References**

[1] Convolutional Deep Belief Networks for Scalable Unsupervised Learning of Hierarchical
    Representations. Honglak Lee, Roger Grosse, Rajesh Ranganath, Andrew Y. Ng. 2009.

[2] Sparse Deep Belief Net Model for Visual Area V2. Honglak Lee, Chaitanya Ekanadham,
    Andrew Y. Ng. 2008.

[3] Greedy Layer-Wise Training of Deep Networks. Yoshua Bengio, Pascal Lamblin, Dan
    Popovici, Hugo Larochelle. 2007.

[4] Sparse Coding with an Overcomplete Basis Set: A Strategy Employed by V1? Bruno A.
    Olshausen, David J. Field. 1997.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pyro.infer.util import is_validation_enabled
from torch import nn

from pyrogen._checks import check_finite
from pyrogen.distributions.conv_rbm import ConvolutionalRBM, GaussianConvolutionalRBM
from pyrogen.models.energy import EnergyModel
from pyrogen.models.greedy import UNIT_TYPES, greedy_stages, propagate

__all__ = [
    "ConvRBMLayer",
    "ConvRBMLearner",
    "ConvolutionalDBN",
    "filter_images",
    "whiten_one_over_f",
    "whitened_patches",
]


class ConvRBMLayer(EnergyModel):
    r"""One convolutional RBM with probabilistic max-pooling, with trainable parameters, as a
    Pyro model (``pyro.sample("v", ConvolutionalRBM(...), obs=x)``; see
    :class:`~pyrogen.models.energy.EnergyModel`).

    :param input_shape: ``(C, H, W)`` of the visible maps (the data are flattened rows).
    :param int filters: :math:`K`, the filters (hidden groups).
    :param int filter_size: :math:`F`, the side of the square filters.
    :param int pooling: :math:`P`, the side of the pooling blocks (must divide
        :math:`H - F + 1` and :math:`W - F + 1`).
    :param str visible_units: ``"binary"`` (data in :math:`[0, 1]`: binary, or the pooling
        probabilities of a layer below) or ``"gaussian"`` (unit variance; standardize or
        whiten the data).
    :param float sparsity_target: :math:`\rho` of the sparsity regulariser (with
        ``sparsity_cost``, see
        :meth:`~pyrogen.distributions.conv_rbm.ConvolutionalRBMBase.sparsity_penalty`).
    :param float sparsity_cost: :math:`\lambda` (0: no regulariser).
    :param float init_scale: standard deviation of the initial filters.
    :param float init_hidden_bias: initial value of every hidden bias :math:`c_k`; a
        negative value (Lee et al. start at :math:`-0.1 / \sigma^2`) makes the hidden units
        sparse from the first step, so that the filters specialise instead of all growing
        along the data's leading principal directions.
    """

    name_prefix = "crbm"

    def __init__(
        self,
        input_shape: Sequence[int],
        filters: int,
        filter_size: int,
        pooling: int = 2,
        *,
        visible_units: str = "binary",
        sparsity_target: float = 0.0,
        sparsity_cost: float = 0.0,
        init_scale: float = 0.01,
        init_hidden_bias: float = 0.0,
        name: str | None = None,
    ) -> None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}")
        if visible_units not in UNIT_TYPES:
            raise ValueError(f"visible_units must be one of {UNIT_TYPES}, got {visible_units!r}")
        c, h, w = shape
        super().__init__(c * h * w, (c * h, w), name)
        self.input_shape, self.visible_units = shape, visible_units
        self.pooling, self.sparsity_target, self.sparsity_cost = (
            int(pooling),
            float(sparsity_target),
            float(sparsity_cost),
        )
        if int(filters) < 1 or int(filter_size) < 1:
            raise ValueError(
                f"filters and filter_size must be positive, got {filters}, {filter_size}"
            )
        self.weight = nn.Parameter(
            init_scale * torch.randn(int(filters), c, int(filter_size), int(filter_size))
        )
        self.visible_bias = nn.Parameter(torch.zeros(c))
        if not math.isfinite(init_hidden_bias):
            raise ValueError(f"init_hidden_bias must be finite, got {init_hidden_bias!r}")
        self.hidden_bias = nn.Parameter(torch.full((int(filters),), float(init_hidden_bias)))
        self.hidden = int(filters)
        self.distribution(validate_args=False)  # checks pooling, sizes and the options now

    def distribution(self, **kwargs):
        """The convolutional RBM with the current parameters."""
        cls = GaussianConvolutionalRBM if self.visible_units == "gaussian" else ConvolutionalRBM
        kwargs.setdefault("sparsity_target", self.sparsity_target)
        kwargs.setdefault("sparsity_cost", self.sparsity_cost)
        return cls(
            *self._distribution_parameters(),
            image_shape=self.input_shape[1:],
            pooling=self.pooling,
            **kwargs,
        )

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(K, N_h / P, N_w / P)``: the pooling units, the next layer's input maps."""
        return self.distribution(validate_args=False).pooled_shape

    def _prepare(self, x, name: str = "x") -> torch.Tensor:
        """``x`` flattened and checked finite (grey levels in :math:`[0, 1]`, such as the
        pooling probabilities of a layer below, are accepted by binary units, as in
        :class:`~pyrogen.models.greedy.StackRBM`)."""
        x = self._flatten(x, name)
        if is_validation_enabled():
            check_finite(x, name)
        return x

    def _flatten(self, x, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() >= 2 and x.shape[-1] == self.num_features:
            return x.reshape(-1, self.num_features)
        if x.dim() >= 4 and tuple(x.shape[-3:]) == self.input_shape:
            return x.reshape(-1, self.num_features)
        raise ValueError(
            f"{name}: expected shape (batch, {self.num_features}) or (batch, "
            f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
        )

    def _visible_mean(self, dist, state) -> torch.Tensor:
        inputs = dist.visible_inputs(state[1])
        return torch.sigmoid(inputs) if self.visible_units == "binary" else inputs

    @torch.no_grad()
    def init_visible_bias(self, x: torch.Tensor) -> ConvRBMLayer:
        r"""Set the visible biases from data ``x`` (Hinton's practical guide): per channel
        :math:`b_c = \log(m_c / (1 - m_c))` for binary units, so that a layer whose hidden
        units are off reconstructs the mean :math:`m_c` of channel :math:`c` (clamped to
        :math:`[10^{-4}, 1 - 10^{-4}]`), and :math:`b_c = m_c` for Gaussian units. For layers
        above the first, whose inputs are sparse pooling probabilities (means near 0.01),
        a zero bias would reconstruct 0.5 everywhere at the start and the first CD steps
        would push every filter negative alike. Returns the layer."""
        x = self._prepare(x, "x").reshape(-1, *self.input_shape)
        m = x.mean((0, 2, 3))
        if self.visible_units == "binary":
            m = m.clamp(1e-4, 1 - 1e-4)
            m = torch.log(m) - torch.log1p(-m)
        self.visible_bias.copy_(m.to(self.visible_bias))
        return self

    @torch.no_grad()
    def up(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        r"""The pooling units given ``x``, flattened ``(n, K N_h N_w / P^2)``: their
        probabilities :math:`p(p^k_\alpha = 1 \mid v)`, or with ``sample`` a draw of them
        (from a draw of the hidden blocks); the data of the next layer."""
        dist = self.distribution(validate_args=False)
        x = self._flatten(x)
        if sample:
            pooled = dist.pooling_units(dist.sample_hidden(x))
        else:
            pooled = dist.hidden_probs(x)[1]
        return pooled.reshape(x.shape[0], -1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """One mean-field up-down pass: the mean of :math:`p(v \\mid h)` at
        :math:`h = \\mathbb E[h \\mid x]`."""
        dist = self.distribution(validate_args=False)
        inputs = dist.visible_inputs(dist.hidden_probs(self._flatten(x))[0])
        return torch.sigmoid(inputs) if self.visible_units == "binary" else inputs


class ConvRBMLearner:
    r"""Lee et al.'s learning rule for one :class:`ConvRBMLayer`, as a learner of
    :mod:`pyrogen.train` (``step`` / ``evaluate`` / ``state_dict``): CD-:math:`k` with
    mean-field reconstructions, gradients averaged over the batch **and over the hidden
    positions**, and the sparsity rule applied to the hidden biases only [1, 2].

    For a batch :math:`v^{(1..n)}`, :math:`h \sim p(h \mid v)` and the reconstruction
    :math:`\bar v = \mathbb E[v \mid h]` (``k`` times), the parameters take an SGD step
    (with momentum) along

    .. math::

        g_\theta = \frac{1}{n N_h N_w} \sum_l \big(\nabla_\theta F(v^{(l)})
            - \nabla_\theta F(\bar v^{(l)})\big)
            + \beta\, W\, [\theta = W]
            + \lambda (q_k - \rho)\, [\theta = c_k],

    with :math:`q_k` the mean activation of group :math:`k` on the batch
    (:meth:`~pyrogen.distributions.conv_rbm.ConvolutionalRBMBase.group_activations`),
    target :math:`\rho` and cost :math:`\lambda`. Dividing by the number of hidden positions
    :math:`N_h N_w` makes one learning rate fit any image size (the summed surrogate of
    :class:`~pyrogen.infer.ContrastiveDivergence` grows with the image). The sparsity term
    is Lee et al.'s direct update of the hidden biases, not the gradient of
    :meth:`~pyrogen.distributions.conv_rbm.ConvolutionalRBMBase.sparsity_penalty`: that
    gradient carries a factor :math:`q_k \approx \rho` and is too weak to hold a group near
    a target of 0.003 while its filter grows.

    **Gaussian visible units.** The unit-variance Gaussian CRBM has nothing to learn from
    data of unit variance that are whitened: :math:`\mathcal N(b, I)` already has the data's
    covariance, the CD gradient is pure noise, and the sparsity rule then drives every
    filter to zero. Lee et al. use a visible noise smaller than the data's spread
    (:math:`\sigma < 1`); with unit-variance units the same model is obtained by scaling the
    data to a standard deviation :math:`1 / \sigma` (``3`` in pyrogen's recipes).

    :param ConvRBMLayer layer: the layer to train.
    :param float lr: learning rate (of the batch- and position-averaged gradient).
    :param float momentum: momentum after ``warmup_steps`` (0.5 before, as in Hinton's
        practical guide).
    :param float weight_decay: :math:`\beta`, on the filters only.
    :param float sparsity_cost: :math:`\lambda` (default: the layer's ``sparsity_cost``).
    :param int k: Gibbs half-steps of the negative phase (CD-:math:`k`).
    :param int warmup_steps: steps with momentum 0.5.
    :param float anneal_from: with ``anneal_steps``, Lee et al.'s annealing of the visible
        noise [1] for Gaussian units: step :math:`t` trains on the batch times
        :math:`s_t = a^{1 - \min(t, T) / T}` (``a = anneal_from`` in :math:`(0, 1]`,
        :math:`T` = ``anneal_steps``), so the data's spread grows geometrically from
        :math:`a` times its own to its own; with unit-variance units that is a visible noise
        :math:`\sigma` falling from :math:`1 / a` times its final value. A large
        :math:`\sigma` first fits the coarse structure, and the filters sharpen into
        localized edges as it falls (pyrogen's natural-image recipe: ``a = 0.5`` over the
        whole run). ``evaluate`` scores the unscaled data.
    :param int anneal_steps: :math:`T` (0: no annealing).
    """

    def __init__(
        self,
        layer: ConvRBMLayer,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.01,
        sparsity_cost: float | None = None,
        k: int = 1,
        warmup_steps: int = 300,
        anneal_from: float = 1.0,
        anneal_steps: int = 0,
    ) -> None:
        if not isinstance(layer, ConvRBMLayer):
            raise TypeError(f"layer must be a ConvRBMLayer, got {type(layer).__name__}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be positive and finite, got {lr!r}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be non-negative and finite, got {weight_decay!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if int(k) != k or k < 1 or int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(
                f"k must be a positive and warmup_steps a non-negative integer, got {k!r}, "
                f"{warmup_steps!r}"
            )
        if not (math.isfinite(anneal_from) and 0.0 < anneal_from <= 1.0):
            raise ValueError(f"anneal_from must be in (0, 1], got {anneal_from!r}")
        if int(anneal_steps) != anneal_steps or anneal_steps < 0:
            raise ValueError(f"anneal_steps must be a non-negative integer, got {anneal_steps!r}")
        self.anneal_from, self.anneal_steps = float(anneal_from), int(anneal_steps)
        cost = layer.sparsity_cost if sparsity_cost is None else float(sparsity_cost)
        if not cost >= 0:
            raise ValueError(f"sparsity_cost must be non-negative, got {sparsity_cost!r}")
        self.module, self.layer = layer, layer
        self.sparsity_cost, self.k = cost, int(k)
        self.momentum, self.warmup_steps, self.steps = float(momentum), int(warmup_steps), 0
        self.optimizer = torch.optim.SGD(
            [
                {"params": [layer.weight], "weight_decay": float(weight_decay)},
                {"params": [layer.visible_bias, layer.hidden_bias], "weight_decay": 0.0},
            ],
            lr=float(lr),
            momentum=0.5,
        )

    def to(self, device: torch.device) -> ConvRBMLearner:
        self.layer.to(device)  # the same Parameter objects: the optimizer follows
        return self

    def input_scale(self, step: int | None = None) -> float:
        """:math:`s_t` of the annealing (``anneal_from``) at ``step`` (default: the next)."""
        t = self.steps if step is None else int(step)
        if self.anneal_steps == 0 or t >= self.anneal_steps:
            return 1.0
        return self.anneal_from ** (1.0 - t / self.anneal_steps)

    def step(self, batch: torch.Tensor) -> dict[str, Any]:
        layer = self.layer
        v = layer._prepare(batch, "batch")
        scale = self.input_scale()
        if scale != 1.0:
            v = v * scale
        for group in self.optimizer.param_groups:
            group["momentum"] = 0.5 if self.steps < self.warmup_steps else self.momentum
        self.optimizer.zero_grad(set_to_none=True)
        dist = layer.distribution(validate_args=False)
        with torch.no_grad():
            negative = v
            for _ in range(self.k):
                h = dist.sample_hidden(negative)
                negative = layer._visible_mean(dist, (None, h))
        positions = math.prod(dist.hidden_shape[1:])
        surrogate = (dist.free_energy(v).sum() - dist.free_energy(negative).sum()) / (
            v.shape[0] * positions
        )
        surrogate.backward()
        with torch.no_grad():
            q = dist.group_activations(v)
            if self.sparsity_cost > 0:
                layer.hidden_bias.grad += self.sparsity_cost * (q - layer.sparsity_target)
        self.optimizer.step()
        self.steps += 1
        return {
            "recon_error": (negative - v).square().mean().detach(),
            "activation": q.mean().detach(),
        }

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]:
        """Mean squared error of the one-step mean-field reconstruction (per pixel) and the
        mean hidden activation."""
        v = self.layer._prepare(batch, "batch")
        dist = self.layer.distribution(validate_args=False)
        return {
            "recon_error": (self.layer.reconstruct(v) - v).square().mean(),
            "activation": dist.group_activations(v).mean(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.layer.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.layer.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])


class ConvolutionalDBN(nn.Module):
    r"""A stack of :class:`ConvRBMLayer`, each on the pooling units of the one below (see
    module docs).

    :param input_shape: ``(C, H, W)`` of the data.
    :param layers: one dict per layer with the keyword arguments of :class:`ConvRBMLayer`
        other than ``input_shape`` (``filters``, ``filter_size``, ``pooling``,
        ``visible_units``, ``sparsity_target``, ...); layers above the first default to
        binary visible units.
    """

    def __init__(self, input_shape: Sequence[int], layers: Sequence[dict]) -> None:
        super().__init__()
        if not layers:
            raise ValueError("layers must list at least one layer")
        parts, shape = [], tuple(input_shape)
        for k, spec in enumerate(layers):
            spec = dict(spec)
            if k > 0 and spec.get("visible_units", "binary") != "binary":
                raise ValueError(
                    f"layers[{k}]: visible_units must be 'binary' (the pooling units below "
                    f"are binary), got {spec['visible_units']!r}"
                )
            try:
                layer = ConvRBMLayer(shape, **spec)
            except ValueError as e:
                raise ValueError(f"layers[{k}] (input shape {shape}): {e}") from None
            parts.append(layer)
            shape = layer.output_shape
        self.layers = nn.ModuleList(parts)

    def stages(
        self, learner_for: Callable[[int, ConvRBMLayer], object], epochs: int, sample=False
    ) -> list[tuple]:
        """Greedy layer-wise training: the stages of :func:`~pyrogen.models.greedy.
        greedy_stages` (``"layer1"``, ``"layer2"``, ...) for
        :class:`~pyrogen.train.StagedLearner`, layer ``k`` trained by
        ``learner_for(k, layer)`` for ``epochs`` epochs on the pooling units of the layers
        below (their probabilities, or samples with ``sample``)."""
        return greedy_stages(list(self.layers), learner_for, epochs, sample=sample)

    @torch.no_grad()
    def up(self, x: torch.Tensor, num_layers: int | None = None) -> torch.Tensor:
        """The pooling probabilities of layer ``num_layers`` (default: the top one)."""
        return propagate(list(self.layers)[:num_layers], x)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooling probabilities of every layer, concatenated per example (features for
        a classifier, as in [1])."""
        out = []
        for layer in self.layers:
            x = layer.up(x)
            out.append(x)
        return torch.cat(out, -1)

    @torch.no_grad()
    def filters_in_input_space(self, layer: int) -> torch.Tensor:
        r"""The filters of layer ``layer`` (0-based) drawn in the input space, as in [1]: a
        layer-:math:`l` filter is the combination of the layer-:math:`(l-1)` filters (in
        input space) weighted by its weights, filter :math:`k'` of the layer below placed
        at offset :math:`(r s_{l-1}, c\, s_{l-1})` for weight :math:`W^{k}_{k', r, c}`, with
        :math:`s_{l-1}` the product of the poolings below (each pooling unit put at the
        top-left unit of its block). Shape ``(K_l, C, S_l, S_l)``,
        :math:`S_l = S_{l-1} + (F_l - 1) s_{l-1}`."""
        if not 0 <= layer < len(self.layers):
            raise ValueError(f"layer must be in 0..{len(self.layers) - 1}, got {layer}")
        below = self.layers[0].weight.detach()
        stride = 1
        for part, lower in zip(self.layers[1 : layer + 1], self.layers[:layer]):
            stride *= lower.pooling
            W = part.weight.detach()  # (K, K_below, F, F)
            k, _, f, _ = W.shape
            size = below.shape[-1] + (f - 1) * stride
            out = below.new_zeros((k, below.shape[1], size, size))
            for r in range(f):
                for c in range(f):
                    rows = slice(r * stride, r * stride + below.shape[-1])
                    cols = slice(c * stride, c * stride + below.shape[-1])
                    out[:, :, rows, cols] += torch.einsum("kj,jcxy->kcxy", W[:, :, r, c], below)
            below = out
        return below

    @torch.no_grad()
    def top_patches(
        self,
        x: torch.Tensor,
        layer: int,
        num: int = 20,
        images: torch.Tensor | None = None,
        batch_size: int = 50,
    ) -> torch.Tensor:
        r"""What each group of layer ``layer`` (0-based) responds to, from data: for every
        filter :math:`k`, the mean of the ``num`` input windows at the hidden units of group
        :math:`k` with the largest :math:`\mathbb E[h^k_{ij} \mid x]` over all examples
        and positions, each window the unit's field in the input space (the
        :math:`S_l \times S_l` square of :meth:`filters_in_input_space`, at stride
        :math:`s_{l-1}`, the product of the poolings below). The windows are cut from
        ``images`` (the same geometry as ``x``: e.g. the faces before whitening, to see the
        parts) or from ``x``. Shape ``(K_l, C, S_l, S_l)``; a complement to the filter
        pictures, which show the weights, not the data that drive them.

        :raises ValueError: a bad ``layer`` or ``num``, or ``images`` of another shape.
        """
        if not 0 <= layer < len(self.layers):
            raise ValueError(f"layer must be in 0..{len(self.layers) - 1}, got {layer}")
        if int(num) != num or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        first = self.layers[0]
        x = first._flatten(x)
        crops = x if images is None else first._flatten(images, "images")
        if crops.shape != x.shape:
            raise ValueError(
                f"images must have the shape of x, {tuple(x.shape)}, got {tuple(crops.shape)}"
            )
        crops = crops.reshape(-1, *first.input_shape)
        part = self.layers[layer]
        dist = part.distribution(validate_args=False)
        probs = torch.cat(
            [
                dist.hidden_probs(self.up(chunk, layer) if layer > 0 else chunk)[0]
                for chunk in x.split(batch_size)
            ]
        )  # (n, K, N_h, N_w)
        n, k, nh, nw = probs.shape
        size = self.filters_in_input_space(layer).shape[-1]
        stride = math.prod(lower.pooling for lower in self.layers[:layer])
        top = probs.permute(1, 0, 2, 3).reshape(k, -1).topk(min(int(num), n * nh * nw), -1)
        out = crops.new_zeros((k, crops.shape[1], size, size))
        for group, flat in enumerate(top.indices):
            i, rest = flat // (nh * nw), flat % (nh * nw)
            rows, cols = (rest // nw) * stride, (rest % nw) * stride
            for a, r, c in zip(i.tolist(), rows.tolist(), cols.tolist()):
                window = crops[a, :, r : r + size, c : c + size]
                out[group, :, : window.shape[1], : window.shape[2]] += window
            out[group] /= len(flat)
        return out


def filter_images(filters: torch.Tensor) -> torch.Tensor:
    r"""Filters ``(K, C, S, S)`` (or ``(K, S, S)``) as grey images in :math:`[0, 1]` for
    :func:`pyrogen.plotting.save_image_grid`, one scale per filter:
    :math:`\frac12 + \frac12 w / \max |w|` (0.5 is a zero weight), shape ``(K, C S S)``."""
    w = filters.detach().reshape(filters.shape[0], -1).float()
    peak = w.abs().amax(1, keepdim=True).clamp_min(1e-12)
    return 0.5 + 0.5 * w / peak


def whiten_one_over_f(image: torch.Tensor, cutoff: float = 0.2) -> torch.Tensor:
    r"""Whiten a whole grey image ``(H, W)`` (or a batch ``(n, H, W)``) with the filter of
    Olshausen & Field [4], before cutting patches: in the Fourier domain, with the radial
    frequency :math:`f` in cycles per pixel,

    .. math:: R(f) = f\, e^{-(f / f_0)^4},

    which flattens the :math:`1/f` amplitude spectrum of natural images (the ramp) and
    removes the highest frequencies, where noise and aliasing dominate (the cut-off
    :math:`f_0`, ``cutoff``); Lee et al. whiten their images so before training the first
    CRBM layer [1]. Unlike ZCA on small patches, the result does not depend on the patch
    size and has no border effects inside the patches. The output has zero mean and unit
    variance per image (float32).

    :param torch.Tensor image: ``(H, W)`` or ``(n, H, W)`` grey levels.
    :param float cutoff: :math:`f_0` in cycles per pixel, in :math:`(0, 0.5]`
        (0.2: [4]'s :math:`0.4 \times` Nyquist).
    """
    if not isinstance(image, torch.Tensor) or image.dim() not in (2, 3):
        raise ValueError(f"image must be a (H, W) or (n, H, W) tensor, got {image!r:.60}")
    if not 0.0 < cutoff <= 0.5:
        raise ValueError(f"cutoff must be in (0, 0.5] cycles per pixel, got {cutoff!r}")
    x = image.to(torch.float64)
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = (fx.square() + fy.square()).sqrt()
    ramp = f * torch.exp(-((f / cutoff) ** 4))
    x = x - x.mean((-2, -1), keepdim=True)
    out = torch.fft.irfftn(torch.fft.rfftn(x, dim=(-2, -1)) * ramp, s=(h, w), dim=(-2, -1))
    out = out - out.mean((-2, -1), keepdim=True)
    return (out / out.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)).to(torch.float32)


def whitened_patches(
    images: Sequence[torch.Tensor],
    num: int | None,
    size: int,
    *,
    downsample: int = 1,
    std: float = 3.0,
    cutoff: float = 0.2,
    seed: int = 0,
) -> torch.Tensor:
    r"""Whitened square patches for a Gaussian first CRBM layer, as ``(n, size * size)``
    float32 rows: each grey image ``(H, W)`` of ``images`` is area-averaged over
    ``downsample`` x ``downsample`` blocks, whitened whole by :func:`whiten_one_over_f`
    (``cutoff``), then ``num`` patches are cut at seeded random positions (a uniformly
    chosen image, a uniform position in it); with ``num=None`` every image gives its
    top-left ``size`` x ``size`` crop instead (aligned data such as faces). Every patch is
    centred and the whole set scaled to standard deviation ``std`` (with unit-variance
    Gaussian units, a visible noise of :math:`1 / \text{std}` of the data's spread, see
    :class:`ConvRBMLearner`).

    Downsampling by 2 before whitening is pyrogen's natural-image recipe: at full
    resolution the whitened Hyvärinen images are dominated by texture blobs a few pixels
    wide and 10x10 filters learn blobs; at half resolution they learn oriented edges.

    :raises ValueError: an image smaller than ``size`` after downsampling, or bad sizes.
    """
    if int(size) != size or size < 1 or int(downsample) != downsample or downsample < 1:
        raise ValueError(
            f"size and downsample must be positive integers, got {size!r}, {downsample!r}"
        )
    if num is not None and (int(num) != num or num < 1):
        raise ValueError(f"num must be a positive integer or None, got {num!r}")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be positive and finite, got {std!r}")
    white = []
    for i, im in enumerate(images):
        im = torch.as_tensor(im, dtype=torch.float32)
        if im.dim() != 2:
            raise ValueError(
                f"images[{i}] must be a grey (H, W) image, got shape {tuple(im.shape)}"
            )
        if downsample > 1:
            im = torch.nn.functional.avg_pool2d(im[None, None], int(downsample))[0, 0]
        if min(im.shape) < size:
            raise ValueError(
                f"images[{i}] is {tuple(im.shape)} after downsampling by {downsample}, smaller "
                f"than the {size}x{size} patches"
            )
        white.append(whiten_one_over_f(im, cutoff=cutoff))
    if not white:
        raise ValueError("images is empty")
    size = int(size)
    if num is None:
        out = torch.stack([w[:size, :size].reshape(-1) for w in white])
    else:
        gen = torch.Generator().manual_seed(int(seed))
        out = torch.empty(int(num), size * size)
        for i in range(int(num)):
            w = white[int(torch.randint(len(white), (1,), generator=gen))]
            r = int(torch.randint(w.shape[0] - size + 1, (1,), generator=gen))
            c = int(torch.randint(w.shape[1] - size + 1, (1,), generator=gen))
            out[i] = w[r : r + size, c : c + size].reshape(-1)
    out = out - out.mean(1, keepdim=True)
    return out * (float(std) / out.std().clamp_min(1e-12))
