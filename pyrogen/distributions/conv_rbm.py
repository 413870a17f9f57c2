r"""Convolutional RBMs with probabilistic max-pooling (Lee, Grosse, Ranganath & Ng 2009).

The visible units are :math:`C` maps of :math:`H \times W` pixels, binary
(:class:`ConvolutionalRBM`) or real-valued with unit variance
(:class:`GaussianConvolutionalRBM`). :math:`K` filters :math:`W^k` of shape
:math:`C \times F_h \times F_w` are shared across positions: the hidden units form :math:`K`
maps ("groups") of :math:`N_h \times N_w = (H - F_h + 1) \times (W - F_w + 1)` binary units
(valid convolution), and each map is cut into non-overlapping :math:`P \times P` pooling
blocks :math:`B_\alpha` in which **at most one** hidden unit is on. The pooling unit of a
block is :math:`p^k_\alpha = \max_{(i,j) \in B_\alpha} h^k_{ij}`, 1 when any unit of the
block is on. With the bottom-up input of hidden unit :math:`(k, i, j)`,

.. math::

    I(h^k_{ij}) = c_k + (W^k \star v)_{ij}
        = c_k + \sum_{c=1}^C \sum_{r, s} W^k_{c, r, s}\, v_{c,\, i + r,\, j + s}

(a valid cross-correlation, which is Lee et al.'s convolution with the flipped filter
:math:`\tilde W^k`), the energy of the binary model [1, eq. for the probabilistic max-pooling
CRBM] is

.. math::

    E(v, h) = -\sum_{k,i,j} h^k_{ij}\, I(h^k_{ij}) - \sum_{c} b_c \sum_{i,j} v_{c,ij}
    \quad \text{subject to} \quad \sum_{(i,j) \in B_\alpha} h^k_{ij} \le 1
    \ \text{for all } k, \alpha,

with one hidden bias :math:`c_k` per group and one visible bias :math:`b_c` per channel
(:math:`E = +\infty` for configurations that break the constraint). The Gaussian model
replaces the visible term by :math:`\frac12 \sum_{c,i,j} (v_{c,ij} - b_c)^2` (Lee et al.
write :math:`\frac12 \sum v^2 - b \sum v`, which differs by a constant and defines the same
distribution).

**Conditionals.** Given :math:`v`, the blocks are independent, and each is one categorical
variable over its :math:`P^2` units and the "all off" state:

.. math::

    p(h^k_{ij} = 1 \mid v) = \frac{e^{I(h^k_{ij})}}{1 + \sum_{(i',j') \in B_\alpha}
        e^{I(h^k_{i'j'})}}, \qquad
    p(p^k_\alpha = 0 \mid v) = \frac{1}{1 + \sum_{(i',j') \in B_\alpha} e^{I(h^k_{i'j'})}},

a softmax over the block's inputs with an extra zero logit (sampled for all blocks at
once). Given :math:`h`, the visible units are independent, with the top-down input from a
full (transposed) convolution, :math:`u = \sum_k W^k * h^k`:
:math:`p(v_{c,ij} = 1 \mid h) = \sigma(b_c + u_{c,ij})` (binary) or
:math:`v_{c,ij} \mid h \sim \mathcal N(b_c + u_{c,ij}, 1)` (Gaussian).

**Free energy.** Summing the blocks out one at a time,

.. math::

    F(v) = -\sum_c b_c \sum_{i,j} v_{c,ij}
        - \sum_{k, \alpha} \log\Big(1 + \sum_{(i,j) \in B_\alpha} e^{I(h^k_{ij})}\Big)

(with :math:`\frac12 \sum (v - b)^2` as the first term for Gaussian visible units). With
:math:`P = 1` this is the plain convolutional RBM, every hidden unit independent.

**Partition function.** Summing :math:`v` out instead,
:math:`\log \tilde p(h) = \sum_k c_k \sum_{ij} h^k_{ij}
+ \sum_{c,ij} \operatorname{softplus}(b_c + u_{c,ij})` (binary) or
:math:`\sum_k c_k \sum_{ij} h^k_{ij} + \sum_{c,ij} (b_c u_{c,ij} + u_{c,ij}^2 / 2)
+ \frac{CHW}{2} \log 2\pi` (Gaussian), over the :math:`(P^2 + 1)^{K N_h N_w / P^2}` hidden
configurations that satisfy the constraint. :meth:`~ConvolutionalRBMBase.log_partition` is
exact when either side is small enough: the :math:`2^{CHW}` visible states of a binary
model, or the allowed hidden configurations (at most :math:`2^{20}` of each).

**Learning.** Contrastive divergence through
:class:`~pyrogen.infer.ContrastiveDivergence` (the surrogate of
:meth:`~pyrogen.distributions.energy.EnergyBasedDistribution.contrastive_divergence`),
optionally with the sparsity regulariser of Lee et al. [2]
(:meth:`~ConvolutionalRBMBase.sparsity_penalty`), which pulls the mean activation of each
group towards a small target.

The visible maps are flattened: the ``event_shape`` is ``(C * H * W,)``, in ``(C, H, W)``
order (``x.reshape(n, -1)`` of a batch of images), as for every pyrogen energy-based
distribution, so that losses and evaluators that treat the last dim as the event work
unchanged; :attr:`~ConvolutionalRBMBase.visible_shape` is ``(C, H, W)``. The parameters
describe one model; ``batch_shape`` only broadcasts it (as ``pyro.plate`` does through
:meth:`~pyrogen.distributions.energy.EnergyBasedDistribution.expand`).

**References**

[1] Convolutional Deep Belief Networks for Scalable Unsupervised Learning of Hierarchical
    Representations. Honglak Lee, Roger Grosse, Rajesh Ranganath, Andrew Y. Ng. 2009.

[2] Sparse Deep Belief Net Model for Visual Area V2. Honglak Lee, Chaitanya Ekanadham,
    Andrew Y. Ng. 2008.

[3] Training Products of Experts by Minimizing Contrastive Divergence. Geoffrey E. Hinton.
    2002.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyrogen._checks import check_binary, check_finite
from pyrogen.distributions._values import check_event
from pyrogen.distributions.energy import EnergyBasedDistribution, bernoulli_sample

__all__ = ["ConvolutionalRBM", "ConvolutionalRBMBase", "GaussianConvolutionalRBM"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: most hidden configurations processed at once by the enumeration
_HIDDEN_CHUNK = 1 << 12


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class ConvolutionalRBMBase(EnergyBasedDistribution):
    r"""What the binary and Gaussian convolutional RBMs with probabilistic max-pooling share
    (see module docs); subclasses define the visible units.

    :param torch.Tensor weight: the filters :math:`W`, shape ``(K, C, F_h, F_w)``.
    :param torch.Tensor visible_bias: :math:`b`, one per channel, shape ``(C,)``.
    :param torch.Tensor hidden_bias: :math:`c`, one per group (filter), shape ``(K,)``.
    :param image_shape: ``(H, W)`` of the visible maps, at least the filter's size.
    :param int pooling: :math:`P`, the side of the pooling blocks; it must divide both sides
        of the hidden maps. 1: no pooling (a plain convolutional RBM).
    :param float sparsity_target: the target mean activation of each group for the
        sparsity regulariser of :meth:`contrastive_divergence` (with ``sparsity_cost``).
    :param float sparsity_cost: :math:`\lambda` of the regulariser (0: none).
    :param int gibbs_steps: block-Gibbs sweeps of :meth:`sample` (default 1000).
    """

    arg_constraints = {
        "weight": constraints.independent(constraints.real, 4),
        "visible_bias": constraints.independent(constraints.real, 1),
        "hidden_bias": constraints.independent(constraints.real, 1),
    }
    #: largest :math:`\log_2` of the number of allowed hidden configurations enumerated
    max_hidden_enumeration = 20

    def __init__(
        self,
        weight: torch.Tensor,
        visible_bias: torch.Tensor,
        hidden_bias: torch.Tensor,
        *,
        image_shape: Sequence[int],
        pooling: int = 1,
        sparsity_target: float = 0.0,
        sparsity_cost: float = 0.0,
        gibbs_steps: int = 1000,
        validate_args: bool | None = None,
    ) -> None:
        self.weight, self.visible_bias, self.hidden_bias = weight, visible_bias, hidden_bias
        self.check_parameters(
            [
                ("weight", weight, ("num_filters", "channels", "filter_height", "filter_width")),
                ("visible_bias", visible_bias, ("channels",)),
                ("hidden_bias", hidden_bias, ("num_filters",)),
            ]
        )
        try:
            shape = tuple(image_shape)
        except TypeError:
            shape = ()
        if len(shape) != 2:
            raise ValueError(f"image_shape must be (height, width), got {image_shape!r}")
        height, width = (_positive_int(s, "image_shape") for s in shape)
        fh, fw = weight.shape[2:]
        if height < fh or width < fw:
            raise ValueError(
                f"image_shape {(height, width)} is smaller than the filters {(fh, fw)} (weight "
                f"of shape {tuple(weight.shape)}); a valid convolution needs images at least "
                "as large as the filters"
            )
        self.pooling = _positive_int(pooling, "pooling")
        hidden = (height - fh + 1, width - fw + 1)
        if hidden[0] % self.pooling or hidden[1] % self.pooling:
            raise ValueError(
                f"pooling {self.pooling} must divide the hidden maps of size {hidden} "
                f"(image {(height, width)} minus filter {(fh, fw)} plus 1); choose a pooling "
                "size that divides both sides, or change image_shape or the filter size"
            )
        self.image_shape = (height, width)
        if not 0.0 <= sparsity_target <= 1.0:
            raise ValueError(f"sparsity_target must be in [0, 1], got {sparsity_target!r}")
        if not sparsity_cost >= 0.0:
            raise ValueError(f"sparsity_cost must be non-negative, got {sparsity_cost!r}")
        self.sparsity_target, self.sparsity_cost = float(sparsity_target), float(sparsity_cost)
        super().__init__((self.num_visible,), gibbs_steps=gibbs_steps, validate_args=validate_args)

    # ---- sizes --------------------------------------------------------------------------

    @property
    def channels(self) -> int:
        """:math:`C`, the visible maps."""
        return self.weight.shape[1]

    @property
    def num_filters(self) -> int:
        """:math:`K`, the filters (hidden groups)."""
        return self.weight.shape[0]

    @property
    def visible_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the visible maps (the event is their flattening)."""
        return (self.channels, *self.image_shape)

    @property
    def num_visible(self) -> int:
        """:math:`CHW`."""
        return math.prod(self.visible_shape)

    @property
    def hidden_shape(self) -> tuple[int, int, int]:
        """``(K, N_h, N_w)`` of the hidden maps."""
        fh, fw = self.weight.shape[2:]
        return (self.num_filters, self.image_shape[0] - fh + 1, self.image_shape[1] - fw + 1)

    @property
    def pooled_shape(self) -> tuple[int, int, int]:
        """``(K, N_h / P, N_w / P)`` of the pooling units (one per block)."""
        k, nh, nw = self.hidden_shape
        return (k, nh // self.pooling, nw // self.pooling)

    @property
    def block_size(self) -> int:
        """:math:`P^2`, the hidden units of a block."""
        return self.pooling**2

    @property
    def num_blocks(self) -> int:
        """The pooling blocks of all groups, :math:`K N_h N_w / P^2`."""
        return math.prod(self.pooled_shape)

    def log2_num_hidden_states(self) -> float:
        r""":math:`\log_2` of the number of allowed hidden configurations,
        :math:`(P^2 + 1)^{K N_h N_w / P^2}`."""
        return self.num_blocks * math.log2(self.block_size + 1)

    # ---- reshaping ----------------------------------------------------------------------

    def _visible_maps(self, value: torch.Tensor, name: str = "value"):
        """``value`` (``(..., CHW)``) as ``(N, C, H, W)`` maps in the parameters' dtype, and
        its batch shape."""
        check_event(value, self.num_visible, name, f" for {self._image_text()}")
        batch = value.shape[:-1]
        maps = value.to(self.weight.dtype).reshape((-1,) + self.visible_shape)
        return maps, batch

    def _hidden_maps(self, h: torch.Tensor, name: str = "h"):
        """``h`` (``(..., K, N_h, N_w)``) as ``(N, K, N_h, N_w)`` and its batch shape."""
        if not isinstance(h, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(h).__name__}")
        if h.dim() < 3 or tuple(h.shape[-3:]) != self.hidden_shape:
            dims = ", ".join(map(str, self.hidden_shape))
            raise ValueError(
                f"{name}: expected hidden maps of shape (..., {dims}) for "
                f"{self._image_text()}, found {tuple(h.shape)}"
            )
        return h.to(self.weight.dtype).reshape((-1,) + self.hidden_shape), h.shape[:-3]

    def _image_text(self) -> str:
        c, h, w = self.visible_shape
        return f"a convolutional RBM over {c}x{h}x{w} images (flattened to {self.num_visible})"

    def to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden maps ``(..., K, N_h, N_w)`` as blocks ``(..., K, N_h / P, N_w / P, P^2)``
        (the units of each block, row by row, on the last dim)."""
        k, nh, nw = self.hidden_shape
        p = self.pooling
        x = x.reshape(x.shape[:-3] + (k, nh // p, p, nw // p, p)).transpose(-3, -2)
        return x.reshape(x.shape[:-2] + (p * p,))

    def from_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_blocks`."""
        k, nh, nw = self.hidden_shape
        p = self.pooling
        x = x.reshape(x.shape[:-1] + (p, p)).transpose(-3, -2)
        return x.reshape(x.shape[:-5] + (k, nh, nw))

    # ---- conditionals ---------------------------------------------------------------------

    def hidden_inputs(self, v: torch.Tensor) -> torch.Tensor:
        r"""The bottom-up inputs :math:`I(h^k_{ij}) = c_k + (W^k \star v)_{ij}`, shape
        ``v.shape[:-1] + (K, N_h, N_w)``; ``v`` may be states or mean-field means."""
        maps, batch = self._visible_maps(v, "v")
        pre = F.conv2d(maps, self.weight) + self.hidden_bias[:, None, None]
        return pre.reshape(batch + pre.shape[1:])

    def block_logits(self, v: torch.Tensor) -> torch.Tensor:
        r"""Logits of each block's categorical variable given :math:`v`, shape
        ``v.shape[:-1] + (K, N_h / P, N_w / P, P^2 + 1)``: the :math:`P^2` units' inputs
        :math:`I` then 0 for the "all off" state (last)."""
        return F.pad(self.to_blocks(self.hidden_inputs(v)), (0, 1))

    def hidden_given_visible(self, v: torch.Tensor) -> torch.distributions.Categorical:
        r""":math:`p(h \mid v)` as one categorical per pooling block over its :math:`P^2`
        units and the "all off" state (index :math:`P^2`), batch shape
        ``v.shape[:-1] + (K, N_h / P, N_w / P)``."""
        return torch.distributions.Categorical(logits=self.block_logits(v), validate_args=False)

    def hidden_probs(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`\mathbb E[h \mid v]` (shape ``v.shape[:-1] + (K, N_h, N_w)``) and the
        pooling units' :math:`p(p^k_\alpha = 1 \mid v) = 1 - p(\text{all off} \mid v)` (shape
        ``v.shape[:-1] + (K, N_h / P, N_w / P)``), exact (the blocks are independent given
        :math:`v`)."""
        probs = torch.softmax(self.block_logits(v), -1)
        return self.from_blocks(probs[..., :-1]), 1.0 - probs[..., -1]

    def _sample_blocks(self, logits: torch.Tensor) -> torch.Tensor:
        """One categorical draw per block from ``(..., P^2 + 1)`` logits, as hidden maps
        (one-hot, all zeros for the off state), by inverting each block's CDF with one
        uniform number."""
        cdf = torch.softmax(logits, -1).cumsum_(-1)
        u = torch.rand(cdf.shape[:-1] + (1,), dtype=cdf.dtype, device=cdf.device)
        index = (cdf < u).sum(-1).clamp_(max=self.block_size)  # rounding: off
        onehot = F.one_hot(index, self.block_size + 1)[..., : self.block_size]
        return self.from_blocks(onehot.to(logits.dtype))

    def sample_hidden(self, v: torch.Tensor) -> torch.Tensor:
        r"""A draw of :math:`h \sim p(h \mid v)`, hidden maps of shape
        ``v.shape[:-1] + (K, N_h, N_w)`` with at most one unit on per block."""
        return self._sample_blocks(self.block_logits(v))

    def pooling_units(self, h: torch.Tensor) -> torch.Tensor:
        r"""The pooling units :math:`p^k_\alpha = \max_{(i,j) \in B_\alpha} h^k_{ij}` of hidden
        maps ``h`` (the block sums, for configurations that satisfy the constraint)."""
        return self.to_blocks(h).amax(-1)

    def visible_inputs(self, h: torch.Tensor) -> torch.Tensor:
        r"""The top-down inputs :math:`b_c + (\sum_k W^k * h^k)_c` (a full, transposed
        convolution), flattened: shape ``h.shape[:-3] + (CHW,)``."""
        maps, batch = self._hidden_maps(h)
        out = F.conv_transpose2d(maps, self.weight) + self.visible_bias[:, None, None]
        return out.reshape(batch + (self.num_visible,))

    def _top_down(self, h: torch.Tensor) -> torch.Tensor:
        """:math:`u = \\sum_k W^k * h^k`, flattened (no bias)."""
        maps, batch = self._hidden_maps(h)
        return F.conv_transpose2d(maps, self.weight).reshape(batch + (self.num_visible,))

    def _channel_bias(self) -> torch.Tensor:
        """:math:`b` repeated over each channel's pixels, shape ``(CHW,)``."""
        return self.visible_bias.repeat_interleave(math.prod(self.image_shape))

    # ---- densities ------------------------------------------------------------------------

    def _block_terms(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_{k, \alpha} \log(1 + \sum_{B_\alpha} e^{I})` per example."""
        return torch.logsumexp(self.block_logits(value), -1).sum((-3, -2, -1))

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`-F(v)`, the hidden blocks summed out (see module docs)."""
        return self._visible_term(value.to(self.weight.dtype)) + self._block_terms(value)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        r""":math:`E(v, h)` for visible values ``(..., CHW)`` and hidden maps
        ``(..., K, N_h, N_w)`` (leading dims broadcast); :math:`+\infty` where a block has
        more than one unit on."""
        v = v.to(self.weight.dtype)
        h = h.to(self.weight.dtype)
        interaction = (h * self.hidden_inputs(v)).sum((-3, -2, -1))
        energy = -interaction - self._visible_term(v)
        violated = (self.to_blocks(h).sum(-1) > 1).any(-1).any(-1).any(-1)
        return energy.masked_fill(violated, math.inf)

    def hidden_configurations(self, chunk: int = _HIDDEN_CHUNK) -> Iterator[torch.Tensor]:
        r"""Every hidden configuration that satisfies the block constraint, as hidden maps
        ``(n, K, N_h, N_w)`` in chunks of at most ``chunk`` (each block in turn takes each of
        its :math:`P^2 + 1` states: mixed-radix counting)."""
        if self.log2_num_hidden_states() > 30:
            raise ValueError(
                f"cannot enumerate 2^{self.log2_num_hidden_states():.1f} hidden configurations"
            )
        like = self.weight
        base, n = self.block_size + 1, self.num_blocks
        total = base**n
        powers = base ** torch.arange(n, device=like.device)
        for start in range(0, total, chunk):
            idx = torch.arange(start, min(start + chunk, total), device=like.device)
            digits = (idx[:, None] // powers) % base  # digit P^2 is "all off"
            onehot = F.one_hot(digits, base)[..., : self.block_size].to(like.dtype)
            yield self.from_blocks(onehot.reshape((-1,) + self.pooled_shape + (base - 1,)))

    def can_enumerate(self) -> bool:
        return self._can_enumerate_visible() or (
            self.log2_num_hidden_states() <= self.max_hidden_enumeration
        )

    def _can_enumerate_visible(self) -> bool:
        return False

    def _exact_log_partition(self) -> torch.Tensor:
        hidden_ok = self.log2_num_hidden_states() <= self.max_hidden_enumeration
        if self._can_enumerate_visible() and (
            not hidden_ok or self.num_visible <= self.log2_num_hidden_states()
        ):
            return self._sum_over_states(
                self.num_visible, self.unnormalized_log_prob, math.prod(self.hidden_shape)
            )
        return self._log_partition_over_hidden()

    def _log_partition_over_hidden(self) -> torch.Tensor:
        r""":math:`\log Z = \operatorname{logsumexp}_h \log \tilde p(h)` over the allowed
        hidden configurations (differentiable)."""
        parts = [
            torch.logsumexp(self.unnormalized_log_prob_hidden(h), 0)
            for h in self.hidden_configurations()
        ]
        return torch.logsumexp(torch.stack(parts), 0)

    # ---- Gibbs sampling and inference ---------------------------------------------------------

    def gibbs_step(self, state):
        r""":math:`h \sim p(h \mid v)` (one categorical per block), then
        :math:`v \sim p(v \mid h)`; state ``(v, h)`` with ``v`` flattened and ``h`` hidden
        maps."""
        h = self.sample_hidden(state[0])
        return (self.sample_visible(h), h)

    def mean_field(
        self, v: torch.Tensor, mask: torch.Tensor | None = None, num_iters: int = 20
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Mean-field inference: a factorized :math:`q(v_{\text{missing}})\, \prod_{k,\alpha}
        q(\text{block}^k_\alpha)` (each block a categorical over its units and "off") for the
        visible units where ``mask`` is False, given the others.

        The updates alternate the exact coordinate-ascent steps of the variational bound
        :math:`\mathbb E_q[-E(v, h)] + \mathbb H[q] \le \log \sum_{v_{\text{missing}}}
        \tilde p(v)`: every block's
        :math:`q = \operatorname{softmax}(I(\mu_v), 0)` given the visible means
        :math:`\mu_v`, then the missing visible means from the top-down input
        (:math:`\sigma(b + u)` or :math:`b + u`), so that the bound never decreases. With no
        ``mask`` (everything observed) one step gives the exact posterior.

        :param v: visible values ``(..., CHW)`` (entries where ``mask`` is False are ignored).
        :param mask: boolean ``(..., CHW)``, True where :math:`v` is observed; ``None``: all.
        :param int num_iters: sweeps (ignored without a ``mask``).
        :returns: ``(mu_v, mu_h, pooling)``: visible means (``v`` where observed), hidden
            means ``(..., K, N_h, N_w)``, pooling-unit probabilities
            ``(..., K, N_h / P, N_w / P)``.
        """
        v = v.to(self.weight.dtype)
        if mask is None:
            return (v, *self.hidden_probs(v))
        if mask.shape != v.shape:
            raise ValueError(
                f"mask must have the shape of v {tuple(v.shape)}, got {tuple(mask.shape)}"
            )
        mask = mask.to(torch.bool)
        mu_v = torch.where(mask, v, self._initial_mean().expand_as(v))
        mu_h, pooling = self.hidden_probs(mu_v)
        for _ in range(_positive_int(num_iters, "num_iters")):
            mu_h, pooling = self.hidden_probs(mu_v)
            mu_v = torch.where(mask, v, self._visible_mean(self.visible_inputs(mu_h)))
        return mu_v, mu_h, pooling

    # ---- the sparsity regulariser --------------------------------------------------------------

    def group_activations(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`q_k`, the mean of :math:`\mathbb E[h^k_{ij} \mid v]` over the rows of ``v``
        (``(n, CHW)``) and the positions :math:`(i, j)`; shape ``(K,)``."""
        return self._group_activations(v, self.weight)

    def _group_activations(self, v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        maps, _ = self._visible_maps(v, "v")
        pre = F.conv2d(maps, weight) + self.hidden_bias[:, None, None]
        probs = torch.softmax(F.pad(self.to_blocks(pre), (0, 1)), -1)[..., :-1]
        return probs.sum(-1).mean((-2, -1)).mean(0) / self.block_size

    def _sparsity_options(self, target, cost) -> tuple[float, float]:
        target = self.sparsity_target if target is None else float(target)
        cost = self.sparsity_cost if cost is None else float(cost)
        return target, cost

    def sparsity_penalty(
        self, v: torch.Tensor, target: float | None = None, cost: float | None = None
    ) -> torch.Tensor:
        r"""The sparsity regulariser of Lee et al. [2] for a batch of ``n`` rows ``v``,

        .. math:: R = n \lambda \sum_k (\rho - q_k)^2, \qquad
            q_k = \frac{1}{n N_h N_w} \sum_{l, i, j} \mathbb E[h^k_{ij} \mid v^{(l)}],

        with target :math:`\rho` and cost :math:`\lambda` (default: the distribution's
        ``sparsity_target`` and ``sparsity_cost``). The factor :math:`n` makes
        :math:`\lambda` a per-example weight beside the summed free energies of
        :meth:`contrastive_divergence`. Differentiable in every parameter; Lee et al. apply
        only its hidden-bias gradient, :meth:`sparsity_hidden_bias_grad`, which is what
        :meth:`contrastive_divergence` adds."""
        return self._sparsity_penalty(v, self.weight, *self._sparsity_options(target, cost))

    def _sparsity_penalty(self, v, weight, target: float, cost: float) -> torch.Tensor:
        n = v.reshape(-1, v.shape[-1]).shape[0]
        return n * cost * (target - self._group_activations(v, weight)).square().sum()

    def sparsity_hidden_bias_grad(
        self, v: torch.Tensor, target: float | None = None, cost: float | None = None
    ) -> torch.Tensor:
        r""":math:`\partial R / \partial c_k` of :meth:`sparsity_penalty` in closed form,

        .. math:: \frac{\partial R}{\partial c_k} = -2 n \lambda (\rho - q_k)
            \frac{1}{n N_h N_w} \sum_{l, i, j} \mathbb E[h^k_{ij} \mid v^{(l)}]\,
            p(\text{block of } (i,j) \text{ off} \mid v^{(l)}),

        since :math:`c_k` shifts every input of the group's blocks, and a softmax with an
        extra zero logit has :math:`\partial P_{ij} / \partial c = P_{ij}
        P_{\text{off}}`; shape ``(K,)``. A descent step on it raises the biases of groups
        less active than :math:`\rho` and lowers the others."""
        target, cost = self._sparsity_options(target, cost)
        with torch.no_grad():
            probs = torch.softmax(self.block_logits(v), -1)
            slope = (probs[..., :-1] * probs[..., -1:]).sum(-1)  # (..., K, blocks)
            slope = slope.sum((-2, -1)).reshape(-1, self.num_filters)
            n = slope.shape[0]
            slope = slope.sum(0) / (n * math.prod(self.hidden_shape[1:]))
            return -2.0 * n * cost * (target - self.group_activations(v)) * slope

    # ---- learning ------------------------------------------------------------------------

    def contrastive_divergence(
        self, x, chains, num_steps, *, accumulate=False, scale=1.0, mean_field_iters=10
    ):
        r"""The surrogate of
        :meth:`~pyrogen.distributions.energy.EnergyBasedDistribution.contrastive_divergence`,
        :math:`\sum_i F(x_i) - \frac{n}{m} \sum_j F(\bar v_j)`, plus, with a positive
        ``sparsity_cost``, :meth:`sparsity_penalty` computed with the filters held fixed
        (detached), so that its gradient reaches the hidden biases only, as in Lee et al.
        [2] (exactly :meth:`sparsity_hidden_bias_grad`). Checks the data (``x``) when
        validation is on."""
        check_event(x, self.num_visible, "x", f" for {self._image_text()}")
        if self._validate_args:
            self._check_data(x, "x")
        surrogate, state, done = super().contrastive_divergence(
            x, chains, num_steps, accumulate=accumulate, scale=1.0
        )
        if self.sparsity_cost > 0:
            surrogate = surrogate + self._sparsity_penalty(
                x, self.weight.detach(), self.sparsity_target, self.sparsity_cost
            )
        return self._scaled(surrogate, scale), state, done

    # ---- the visible units (subclasses) --------------------------------------------------------

    def _visible_term(self, v: torch.Tensor) -> torch.Tensor:
        """The visible units' part of :math:`-E` (per example)."""
        raise NotImplementedError

    def unnormalized_log_prob_hidden(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \tilde p(h)`, the visible units summed or integrated out."""
        raise NotImplementedError

    def _visible_mean(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _initial_mean(self) -> torch.Tensor:
        raise NotImplementedError

    def sample_visible(self, h: torch.Tensor) -> torch.Tensor:
        r"""A draw of :math:`v \sim p(v \mid h)`, flattened."""
        raise NotImplementedError

    def _check_data(self, x: torch.Tensor, name: str) -> None:
        raise NotImplementedError

    def _validate_sample(self, value: torch.Tensor) -> None:
        check_event(value, self.num_visible, "value", f" for {self._image_text()}")
        self._check_data(value, "value")
        super()._validate_sample(value)


class ConvolutionalRBM(ConvolutionalRBMBase):
    r"""Convolutional RBM with probabilistic max-pooling and binary visible maps
    :math:`v \in \{0, 1\}^{C \times H \times W}` (see module docs) [1].

    :param torch.Tensor weight: the filters :math:`W`, shape ``(K, C, F_h, F_w)``.
    :param torch.Tensor visible_bias: :math:`b`, one per channel, shape ``(C,)``.
    :param torch.Tensor hidden_bias: :math:`c`, one per group, shape ``(K,)``.
    :param image_shape: ``(H, W)`` of the visible maps.
    :param int pooling: :math:`P`, the side of the pooling blocks (1: no pooling).
    :param float sparsity_target: :math:`\rho` of :meth:`sparsity_penalty`.
    :param float sparsity_cost: :math:`\lambda` of :meth:`sparsity_penalty` (0: off).
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).

    The partition function is exact by enumeration over the :math:`2^{CHW}` visible states
    (at most :math:`2^{20}`) or over the allowed hidden configurations, whichever are fewer.
    """

    support = constraints.independent(constraints.boolean, 1)

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        r"""Log-odds of :math:`p(v = 1 \mid h)`: :math:`b_c + (\sum_k W^k * h^k)_c`."""
        return self.visible_inputs(h)

    def visible_given_hidden(self, h: torch.Tensor) -> torch.distributions.Bernoulli:
        r""":math:`p(v \mid h)`, a factorized Bernoulli (one batch entry per visible unit)."""
        return torch.distributions.Bernoulli(logits=self.visible_logits(h), validate_args=False)

    def sample_visible(self, h: torch.Tensor) -> torch.Tensor:
        return bernoulli_sample(torch.sigmoid(self.visible_logits(h)))

    def _visible_mean(self, inputs):
        return torch.sigmoid(inputs)

    def _initial_mean(self):
        return torch.sigmoid(self._channel_bias())

    def _visible_term(self, v):
        return v @ self._channel_bias()

    def unnormalized_log_prob_hidden(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \tilde p(h) = \sum_k c_k \sum_{ij} h^k_{ij}
        + \sum_{c,ij} \operatorname{softplus}(b_c + u_{c,ij})` (for allowed :math:`h`)."""
        h = h.to(self.weight.dtype)
        hidden = (h.sum((-2, -1)) * self.hidden_bias).sum(-1)
        return hidden + F.softplus(self.visible_inputs(h)).sum(-1)

    def _can_enumerate_visible(self) -> bool:
        return self.num_visible <= self.max_enumeration

    def _check_data(self, x, name):
        check_binary(x, name)


class GaussianConvolutionalRBM(ConvolutionalRBMBase):
    r"""Convolutional RBM with probabilistic max-pooling and real-valued visible maps of unit
    variance, :math:`v_{c,ij} \mid h \sim \mathcal N(b_c + u_{c,ij}, 1)` (see module docs)
    [1]; for whitened or standardized images.

    :param torch.Tensor weight: the filters :math:`W`, shape ``(K, C, F_h, F_w)``.
    :param torch.Tensor visible_bias: :math:`b`, one per channel, shape ``(C,)``.
    :param torch.Tensor hidden_bias: :math:`c`, one per group, shape ``(K,)``.
    :param image_shape: ``(H, W)`` of the visible maps.
    :param int pooling: :math:`P`, the side of the pooling blocks (1: no pooling).
    :param float sparsity_target: :math:`\rho` of :meth:`sparsity_penalty`.
    :param float sparsity_cost: :math:`\lambda` of :meth:`sparsity_penalty` (0: off).
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).

    The partition function is exact by enumeration over the allowed hidden configurations
    (Gaussian integrals over :math:`v`) when there are at most :math:`2^{20}` of them.
    """

    support = constraints.independent(constraints.real, 1)

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        r"""Mean of :math:`p(v \mid h)`: :math:`b_c + (\sum_k W^k * h^k)_c`."""
        return self.visible_inputs(h)

    def visible_given_hidden(self, h: torch.Tensor) -> torch.distributions.Normal:
        r""":math:`p(v \mid h) = \mathcal N(b + u, I)`, factorized."""
        mean = self.visible_mean(h)
        return torch.distributions.Normal(mean, torch.ones_like(mean), validate_args=False)

    def sample_visible(self, h: torch.Tensor) -> torch.Tensor:
        mean = self.visible_mean(h)
        return mean + torch.randn_like(mean)

    def _visible_mean(self, inputs):
        return inputs

    def _initial_mean(self):
        return self._channel_bias()

    def _visible_term(self, v):
        return -0.5 * (v - self._channel_bias()).square().sum(-1)

    def unnormalized_log_prob_hidden(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \tilde p(h) = \log \int e^{-E(v, h)}\, dv = \sum_k c_k \sum_{ij}
        h^k_{ij} + \sum_{c,ij} (b_c u_{c,ij} + u_{c,ij}^2 / 2) + \frac{CHW}{2} \log 2\pi`."""
        h = h.to(self.weight.dtype)
        hidden = (h.sum((-2, -1)) * self.hidden_bias).sum(-1)
        u = self._top_down(h)
        return (
            hidden
            + u @ self._channel_bias()
            + 0.5 * u.square().sum(-1)
            + self.num_visible * _HALF_LOG_2PI
        )

    def init_chains(self, num_chains: int):
        r"""Chains started from :math:`\mathcal N(b, I)`."""
        b = self._channel_bias().detach()
        return (b + torch.randn((num_chains, self.num_visible), dtype=b.dtype, device=b.device),)

    def _check_data(self, x, name):
        check_finite(x, name)
