r"""Masked and shifted convolutions for autoregressive image models, and the PixelCNN nets.

An autoregressive image model factorises the joint distribution of the pixels in raster
order (rows top to bottom, each row left to right) and, within a pixel, over its ``C``
colour channels in order (R, then G given R, then B given R and G):

.. math::

    p(x) = \prod_{i=1}^{H} \prod_{j=1}^{W} \prod_{c=1}^{C}
        p\big(x_{c,i,j} \mid x_{<(i,j)},\ x_{<c,i,j}\big).

A network reads the image and returns, at every position, the parameters of every
conditional at once; the masks below make sure the output for :math:`x_{c,i,j}` never sees
:math:`x_{c,i,j}` itself or anything after it [1].

**Mask convention.** A :class:`MaskedConv2d` kernel of size :math:`k_h \times k_w` is centred
on the output pixel. Taps in the rows above the centre and to the left of it in the centre
row are open; taps to the right of the centre and below are closed. The centre tap is open
between channel *groups*: hidden channel :math:`k` belongs to colour group :math:`k \bmod C`
(groups are interleaved, so any block of a multiple of :math:`C` consecutive channels, e.g.
each half of a gated unit's pre-activation, holds every group equally), and input
channel :math:`c` of the image is colour :math:`c`. Type ``"A"`` (first layer) connects
output group :math:`g` to input groups :math:`< g` at the centre, so the centre pixel's own
value is excluded; type ``"B"`` (every later layer) connects groups :math:`\le g`. With one
channel, the centre tap of a type-A mask is closed and that of a type-B mask open.

**Blind spot.** Stacking masked :math:`3 \times 3` convolutions leaves a triangle of pixels
above and to the right of the output that no number of layers can see [2]. The gated
PixelCNN [2] removes it with two stacks: a *vertical* stack that sees only the rows above
(here a convolution over the rows above, made causal by shifting down and padding at the
top, so no weight is wasted on masked taps) and a *horizontal* stack that sees the pixels
to the left in the current row (a :math:`1 \times (\lfloor k/2 \rfloor + 1)` convolution
padded on the left); the vertical stack feeds the horizontal one through a
:math:`1 \times 1` convolution at every layer. Units are gated,

.. math::

    y = \tanh(W_f * x + V_f^\top h) \odot \sigma(W_g * x + V_g^\top h),

with an optional class-conditional bias :math:`V^\top h` (:math:`h` a one-hot class
label), and the horizontal stack is residual.

**References**

[1] Pixel Recurrent Neural Networks. Aaron van den Oord, Nal Kalchbrenner, Koray
    Kavukcuoglu. 2016.

[2] Conditional Image Generation with PixelCNN Decoders. Aaron van den Oord, Nal
    Kalchbrenner, Oriol Vinyals, Lasse Espeholt, Alex Graves, Koray Kavukcuoglu. 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

OUTPUTS = ("bernoulli", "categorical")


# ----------------------------------------------------------------------------- masks


def colour_mask(out_channels: int, in_channels: int, colors: int, mask_type: str) -> torch.Tensor:
    """``(out_channels, in_channels)`` 0/1 mask of the centre tap between colour groups.

    Channel :math:`k` belongs to group :math:`k \\bmod` ``colors``; type ``"A"`` connects
    output group :math:`g` to input groups :math:`< g`, type ``"B"`` to groups :math:`\\le g`.
    """
    _check_mask_type(mask_type)
    out_group = torch.arange(out_channels) % colors
    in_group = torch.arange(in_channels) % colors
    if mask_type == "A":
        allowed = in_group[None, :] < out_group[:, None]
    else:
        allowed = in_group[None, :] <= out_group[:, None]
    return allowed.float()


def causal_mask(
    out_channels: int,
    in_channels: int,
    kernel_size: int | Sequence[int],
    mask_type: str,
    colors: int = 1,
) -> torch.Tensor:
    """``(out, in, kh, kw)`` 0/1 mask of a centred kernel (see the module docs)."""
    kh, kw = _pair(kernel_size)
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    mask[:, :, : kh // 2, :] = 1.0  # rows above
    mask[:, :, kh // 2, : kw // 2] = 1.0  # left in the centre row
    mask[:, :, kh // 2, kw // 2] = colour_mask(out_channels, in_channels, colors, mask_type)
    return mask


def _pair(kernel_size) -> tuple[int, int]:
    if isinstance(kernel_size, int):
        return int(kernel_size), int(kernel_size)
    kh, kw = (int(k) for k in kernel_size)
    return kh, kw


def _check_mask_type(mask_type: str) -> None:
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")


def _check_groups(colors: int, **channels: int) -> None:
    if int(colors) != colors or colors < 1:
        raise ValueError(f"colors must be a positive integer, got {colors!r}")
    for name, value in channels.items():
        if value < 1 or value % colors:
            raise ValueError(
                f"{name} must be a positive multiple of colors={colors} (one group of "
                f"channels per colour), got {value}"
            )


# ----------------------------------------------------------------------------- convolutions


class _FixedMaskConv2d(nn.Conv2d):
    """A convolution whose weight is multiplied by a fixed 0/1 ``mask`` buffer, after an
    explicit padding ``(left, right, top, bottom)``."""

    def __init__(self, in_channels, out_channels, kernel_size, mask, pad, bias=True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)
        self.register_buffer("mask", mask, persistent=False)
        self.pad = tuple(int(p) for p in pad)
        with torch.no_grad():
            self.weight.mul_(self.mask)  # masked weights start (and stay, in effect) at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return F.conv2d(x, self.weight * self.mask, self.bias)


class MaskedConv2d(_FixedMaskConv2d):
    """A ``kernel_size`` convolution (odd sizes, stride 1, zero "same" padding) masked so that
    each output sees only the pixels before it in raster order (see the module docs).

    :param int in_channels: input channels (a multiple of ``colors``).
    :param int out_channels: output channels (a multiple of ``colors``).
    :param kernel_size: an odd int or a pair of odd ints ``(kh, kw)``.
    :param str mask_type: ``"A"`` (first layer: the centre pixel is excluded) or ``"B"``
        (later layers: the centre is included, between allowed colour groups).
    :param int colors: colour channels of the image (channel groups).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        mask_type: str = "B",
        colors: int = 1,
        bias: bool = True,
    ) -> None:
        kh, kw = _pair(kernel_size)
        if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {(kh, kw)}")
        _check_mask_type(mask_type)
        _check_groups(colors, in_channels=in_channels, out_channels=out_channels)
        mask = causal_mask(out_channels, in_channels, (kh, kw), mask_type, colors)
        super().__init__(
            in_channels, out_channels, (kh, kw), mask, (kw // 2, kw // 2, kh // 2, kh // 2), bias
        )
        self.mask_type = mask_type
        self.colors = colors

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_type={self.mask_type}, colors={self.colors}"

    def last_row(self, x: torch.Tensor) -> torch.Tensor:
        r"""The output row of the last input row, given ``x`` holding exactly that row and the
        :math:`\lfloor k_h/2 \rfloor` rows above it (zeros above the image): ``(B, out, 1,
        W)``. The kernel rows below the centre are masked, so nothing else is needed."""
        kh, kw = self.kernel_size
        weight = (self.weight * self.mask)[:, :, : kh // 2 + 1]
        return F.conv2d(F.pad(x, (kw // 2, kw // 2, 0, 0)), weight, self.bias)


class VerticalConv2d(nn.Conv2d):
    """The vertical stack's convolution: output row :math:`i` sees only rows above it.

    ``first=True`` (reading the image): a :math:`\\lfloor k/2 \\rfloor \\times k` kernel over
    rows :math:`i - \\lfloor k/2 \\rfloor, \\dots, i - 1` (the image shifted down one row,
    padded at the top). ``first=False`` (reading a vertical-stack feature map, whose row
    :math:`i` already depends only on rows :math:`< i`): a
    :math:`(\\lfloor k/2 \\rfloor + 1) \\times k` kernel over rows
    :math:`i - \\lfloor k/2 \\rfloor, \\dots, i`. Columns are centred (``k`` odd).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, first: bool):
        k = int(kernel_size)
        if k < 3 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        rows = k // 2 if first else k // 2 + 1
        super().__init__(in_channels, out_channels, (rows, k))
        self.first = bool(first)
        self.reach = k // 2  # rows above that one layer adds to the receptive field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reach
        if self.first:
            x = x[..., :-1, :]  # shift down: row i of the output must not see row i
        return super().forward(F.pad(x, (r, r, r, 0)))


class HorizontalConv2d(_FixedMaskConv2d):
    """The horizontal stack's convolution: a :math:`1 \\times (\\lfloor k/2 \\rfloor + 1)`
    kernel over pixels :math:`j - \\lfloor k/2 \\rfloor, \\dots, j` of the current row
    (padded on the left). The tap on pixel :math:`j` itself carries the colour mask of
    ``mask_type`` (type ``"A"`` with one colour closes it)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        mask_type: str = "B",
        colors: int = 1,
    ) -> None:
        k = int(kernel_size)
        if k < 3 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        _check_mask_type(mask_type)
        _check_groups(colors, in_channels=in_channels, out_channels=out_channels)
        width = k // 2 + 1
        mask = torch.ones(out_channels, in_channels, 1, width)
        mask[:, :, 0, -1] = colour_mask(out_channels, in_channels, colors, mask_type)
        super().__init__(in_channels, out_channels, (1, width), mask, (width - 1, 0, 0, 0))
        self.mask_type = mask_type


def gate(x: torch.Tensor) -> torch.Tensor:
    """Gated activation :math:`\\tanh(a) \\odot \\sigma(b)` of the two channel halves."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """One layer of the gated PixelCNN [2]: vertical and horizontal stacks.

    .. math::

        \\tilde v &= W_v * v, \\qquad
        v' = \\mathrm{gate}(\\tilde v + V_v^\\top y), \\\\
        \\tilde h &= W_h * h + W_{vh}\\,\\tilde v, \\qquad
        h' = h + W_o\\,\\mathrm{gate}(\\tilde h + V_h^\\top y)

    with :class:`VerticalConv2d` :math:`W_v`, :class:`HorizontalConv2d` :math:`W_h`,
    :math:`1 \\times 1` convolutions :math:`W_{vh}` (the vertical-to-horizontal link; safe
    because :math:`\\tilde v` at row :math:`i` depends only on rows :math:`< i`) and
    :math:`W_o` (type-B masked), and the class embedding :math:`y` when ``num_classes`` is
    given. The first block reads the image (``first=True``: type-A horizontal mask, no
    residual).

    :param int in_channels: channels of ``v`` and ``h`` on input.
    :param int channels: channels of ``v'`` and ``h'`` (:math:`p`; the pre-activations
        have :math:`2p`).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        *,
        first: bool = False,
        colors: int = 1,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        _check_groups(colors, channels=channels)
        self.v_conv = VerticalConv2d(in_channels, 2 * channels, kernel_size, first=first)
        self.h_conv = HorizontalConv2d(
            in_channels, 2 * channels, kernel_size, "A" if first else "B", colors
        )
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = MaskedConv2d(channels, channels, 1, "B", colors)
        self.residual = not first and in_channels == channels
        self.num_classes = num_classes
        if num_classes is not None:
            self.v_class = nn.Embedding(num_classes, 2 * channels)
            self.h_class = nn.Embedding(num_classes, 2 * channels)
            nn.init.zeros_(self.v_class.weight)
            nn.init.zeros_(self.h_class.weight)

    def vertical(self, v: torch.Tensor, context: torch.Tensor | None = None):
        """``(v', link)``: the new vertical stack and its contribution to the horizontal one."""
        pre = self.v_conv(v)
        link = self.link(pre)
        if context is not None:
            pre = pre + self.v_class(context)[:, :, None, None]
        return gate(pre), link

    def horizontal(
        self, h: torch.Tensor, link: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The new horizontal stack from ``h`` and the vertical stack's ``link``."""
        pre = self.h_conv(h) + link
        if context is not None:
            pre = pre + self.h_class(context)[:, :, None, None]
        out = self.h_out(gate(pre))
        return h + out if self.residual else out

    def forward(self, v: torch.Tensor, h: torch.Tensor, context: torch.Tensor | None = None):
        v_new, link = self.vertical(v, context)
        return v_new, self.horizontal(h, link, context)


class ResidualBlock(nn.Module):
    """The residual block of the (plain) PixelCNN [1]: ReLU, :math:`1 \\times 1`
    (:math:`2h \\to h`), ReLU, :math:`k \\times k` type-B masked, ReLU, :math:`1 \\times 1`
    (:math:`h \\to 2h`), added to the input; all masks type B. ``num_classes`` adds a class
    bias after the masked convolution."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        colors: int = 1,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if channels % (2 * colors):
            raise ValueError(
                f"hidden must be a multiple of 2 * colors = {2 * colors} (bottleneck of half "
                f"the channels, one group per colour), got {channels}"
            )
        half = channels // 2
        self.reduce = MaskedConv2d(channels, half, 1, "B", colors)
        self.conv = MaskedConv2d(half, half, kernel_size, "B", colors)
        self.expand = MaskedConv2d(half, channels, 1, "B", colors)
        self.reach = _pair(kernel_size)[0] // 2
        if num_classes is not None:
            self.class_bias = nn.Embedding(num_classes, half)
            nn.init.zeros_(self.class_bias.weight)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """The masked convolution's input."""
        return F.relu(self.reduce(F.relu(x)))

    def post(
        self, x: torch.Tensor, y: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The block's output from its input ``x`` and the masked convolution's output ``y``."""
        if context is not None:
            y = y + self.class_bias(context)[:, :, None, None]
        return x + self.expand(F.relu(y))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.post(x, self.conv(self.pre(x)), context)


class OutputHead(nn.Sequential):
    """ReLU, :math:`1 \\times 1` type-B, ReLU, :math:`1 \\times 1` type-B: features to the
    parameters of every conditional."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, colors: int = 1):
        super().__init__(
            nn.ReLU(),
            MaskedConv2d(in_channels, hidden, 1, "B", colors),
            nn.ReLU(),
            MaskedConv2d(hidden, out_channels, 1, "B", colors),
        )


# ----------------------------------------------------------------------------- nets


class AutoregressiveImageNet(nn.Module):
    """Base of the networks read by :class:`~pyrogen.distributions.pixelcnn.PixelCNN` and
    :class:`~pyrogen.distributions.pixelcnn.PixelRNN`.

    ``forward(x, context)`` maps images ``(B, C, H, W)`` with values in the support (0/1 for
    ``"bernoulli"``, integers ``0..levels-1`` for ``"categorical"``) to the parameters of
    every conditional: logits ``(B, C, H, W)`` (Bernoulli) or ``(B, levels, C, H, W)``
    (categorical). Subclasses implement ``_features(x, context)`` (on the embedded input,
    returning the head's output) and ``sampler(context)``.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        in_channels: int,
        output: str,
        levels: int,
        num_classes: int | None,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"image_shape must be (height, width), got {tuple(image_shape)}")
        if int(in_channels) != in_channels or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if output == "categorical" and (int(levels) != levels or levels < 2):
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
        self.image_shape = shape
        self.in_channels = int(in_channels)
        self.output = output
        self.levels = int(levels) if output == "categorical" else 2
        self.num_classes = None if num_classes is None else int(num_classes)
        self.out_channels = self.in_channels * (self.levels if output == "categorical" else 1)

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """Values in the support to the network's input (categorical levels to [-1, 1])."""
        ref = next(self.parameters())
        x = x.to(dtype=ref.dtype)
        if self.output == "categorical":
            x = x * (2.0 / (self.levels - 1)) - 1.0
        return x

    def to_logits(self, out: torch.Tensor) -> torch.Tensor:
        """The head's output channels (channel ``l * C + c`` is level ``l`` of colour ``c``,
        so that it lies in colour group ``c``) to logits as documented in the class."""
        if self.output == "categorical":
            return out.unflatten(1, (self.levels, self.in_channels))
        return out

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.to_logits(self._features(self.embed_input(x), context))

    def _features(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def sampler(self, context: torch.Tensor | None = None):
        """An object with ``begin_row(x, i)`` (rows ``< i`` of ``x`` are final) and
        ``logits(x, i, j)`` (the logits of pixel ``(i, j)``, shape ``(B, C)`` or
        ``(B, levels, C)``, exact given rows ``< i``, pixels ``< j`` of row ``i`` and, for
        colour ``c``, colours ``< c`` of pixel ``(i, j)``) that computes no more of the
        network than it must."""
        raise NotImplementedError


class PixelCNNNet(AutoregressiveImageNet):
    """PixelCNN [1] or gated PixelCNN [2] network.

    Plain (``gated=False``): a type-A ``first_kernel`` :math:`\\times` ``first_kernel``
    convolution to ``hidden`` channels, ``layers`` :class:`ResidualBlock` s with type-B
    ``kernel`` :math:`\\times` ``kernel`` convolutions, and an :class:`OutputHead`. It has the
    blind spot of stacked masked convolutions.

    Gated (``gated=True``): a first :class:`GatedBlock` reading the image with
    ``first_kernel``-wide stacks, ``layers`` more with ``kernel``-wide ones (``hidden``
    channels per stack), and an :class:`OutputHead` on the horizontal stack. No blind spot:
    with enough layers every earlier pixel within the receptive field is seen.

    :param image_shape: ``(height, width)`` of the images (the distribution's event is
        ``(in_channels, height, width)``).
    :param int in_channels: colour channels :math:`C` (generated in order within a pixel).
    :param int hidden: channels of the residual stream (plain; the blocks' bottleneck has
        half) or of each stack (gated).
    :param int layers: layers after the first.
    :param int kernel: odd kernel size of those layers.
    :param int first_kernel: odd kernel size of the first layer.
    :param bool gated: gated PixelCNN instead of the plain one.
    :param str output: ``"bernoulli"`` (binary pixels) or ``"categorical"`` (``levels``-way
        softmax per channel; 256 for 8-bit images).
    :param int levels: categorical levels.
    :param int num_classes: class-conditional net: a learned bias per class in every layer
        (the distribution then needs ``context`` labels in ``0..num_classes-1``).
    :param int head_hidden: channels of the output head (default ``hidden``).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28),
        in_channels: int = 1,
        hidden: int = 64,
        layers: int = 5,
        kernel: int = 3,
        first_kernel: int = 7,
        gated: bool = False,
        output: str = "bernoulli",
        levels: int = 256,
        num_classes: int | None = None,
        head_hidden: int | None = None,
    ) -> None:
        super().__init__(image_shape, in_channels, output, levels, num_classes)
        if int(layers) != layers or layers < 0:
            raise ValueError(f"layers must be a non-negative integer, got {layers!r}")
        for name, k in (("kernel", kernel), ("first_kernel", first_kernel)):
            if int(k) != k or k < 3 or k % 2 == 0:
                raise ValueError(f"{name} must be an odd integer >= 3, got {k!r}")
        colors = self.in_channels
        _check_groups(colors, hidden=hidden)
        self.hidden = int(hidden)
        self.gated = bool(gated)
        self.kernel = int(kernel)
        self.first_kernel = int(first_kernel)
        if self.gated:
            self.first = GatedBlock(
                colors, hidden, first_kernel, first=True, colors=colors, num_classes=num_classes
            )
            self.blocks = nn.ModuleList(
                GatedBlock(hidden, hidden, kernel, colors=colors, num_classes=num_classes)
                for _ in range(layers)
            )
        else:
            self.first = MaskedConv2d(colors, hidden, first_kernel, "A", colors)
            self.blocks = nn.ModuleList(
                ResidualBlock(hidden, kernel, colors, num_classes) for _ in range(layers)
            )
        self.head = OutputHead(hidden, head_hidden or hidden, self.out_channels, colors)
        #: rows above an output that can influence it
        self.receptive_rows = first_kernel // 2 + layers * (kernel // 2)

    def _features(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if self.gated:
            v, h = self.first(x, x, context)
            for block in self.blocks:
                v, h = block(v, h, context)
            return self.head(h)
        h = self.first(x)
        for block in self.blocks:
            h = block(h, context)
        return self.head(h)

    def sampler(self, context: torch.Tensor | None = None):
        if self.gated:
            return _GatedSampler(self, context)
        return _RowCacheSampler(self, context)


class _RowCacheSampler:
    r"""Plain PixelCNN: every layer's activations at rows above the current one are final
    once those rows are sampled, so each masked convolution keeps the rows above that it
    reads (its input at the :math:`\lfloor k/2 \rfloor` rows above) and a pixel costs one
    row of every layer; finished rows are pushed into the caches once."""

    def __init__(self, net: PixelCNNNet, context: torch.Tensor | None) -> None:
        self.net = net
        self.context = context
        self.above: list[torch.Tensor | None] = [None] * len(net.blocks)

    @staticmethod
    def _stack(above: torch.Tensor | None, row: torch.Tensor, rows: int) -> torch.Tensor:
        """``row`` under the cached rows ``above`` (zeros above the image): ``rows`` rows."""
        stack = row if above is None else torch.cat([above, row], dim=2)
        return F.pad(stack, (0, 0, rows - stack.shape[2], 0))

    def _row(self, x: torch.Tensor, i: int, update: bool) -> torch.Tensor:
        net = self.net
        m = net.first_kernel // 2
        lo = max(0, i - m)
        window = F.pad(net.embed_input(x[:, :, lo : i + 1]), (0, 0, m - (i - lo), 0))
        h = net.first.last_row(window)
        for k, block in enumerate(net.blocks):
            rows = block.conv.kernel_size[0] // 2 + 1
            stack = self._stack(self.above[k], block.pre(h), rows)
            if update:
                self.above[k] = stack[:, :, 1:]
            h = block.post(h, block.conv.last_row(stack), self.context)
        return h

    def begin_row(self, x: torch.Tensor, i: int) -> None:
        if i > 0:  # row i - 1 is complete: push it into the caches
            self._row(x, i - 1, update=True)

    def logits(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        h = self._row(x, i, update=False)
        return self.net.to_logits(self.net.head(h))[..., 0, j]


class _GatedSampler:
    """Gated PixelCNN: the vertical stack of row ``i`` depends only on rows ``< i`` and is
    computed once per row (on a window of rows); each pixel then only runs the horizontal
    stack on the pixels ``0..j`` of its row."""

    def __init__(self, net: PixelCNNNet, context: torch.Tensor | None) -> None:
        self.net = net
        self.context = context
        self.links: list[torch.Tensor] = []

    def begin_row(self, x: torch.Tensor, i: int) -> None:
        net = self.net
        lo = max(0, i - net.receptive_rows)
        v = net.embed_input(x[:, :, lo : i + 1])
        self.links = []
        for block in (net.first, *net.blocks):
            v, link = block.vertical(v, self.context)
            self.links.append(link[..., -1:, :])

    def logits(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        net = self.net
        h = net.embed_input(x[:, :, i : i + 1, : j + 1])
        for block, link in zip((net.first, *net.blocks), self.links):
            h = block.horizontal(h, link[..., : j + 1], self.context)
        return net.to_logits(net.head(h))[..., 0, j]
