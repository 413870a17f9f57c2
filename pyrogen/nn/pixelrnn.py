r"""Row LSTM layer and a small PixelRNN network (van den Oord et al. 2016).

The Row LSTM [1] processes an image one row at a time, top to bottom, computing the
features of a whole row at once. Its gates come from two one-dimensional convolutions
along the row: an *input-to-state* convolution :math:`K^{is}` (a :math:`1 \times k` kernel
with a type-B mask, so pixel :math:`j` sees input features at pixels :math:`\le j` of its
row), precomputed for the whole image as one masked convolution, and a *state-to-state*
convolution :math:`K^{ss}` (a :math:`1 \times k` kernel) over the previous row's hidden
state:

.. math::

    [o_i, f_i, \iota_i, g_i] &= \sigma\big(K^{ss} \circledast h_{i-1}
        + K^{is} \circledast x_i\big)\quad(\tanh \text{ for } g_i), \\
    c_i &= f_i \odot c_{i-1} + \iota_i \odot g_i, \qquad h_i = o_i \odot \tanh(c_i).

:math:`h_{i-1}` depends only on rows :math:`< i`, so the state-to-state convolution needs no
mask; the receptive field is a triangle above the pixel plus the pixels to its left.

**References**

[1] Pixel Recurrent Neural Networks. Aaron van den Oord, Nal Kalchbrenner, Koray
    Kavukcuoglu. 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrogen.nn.masked import AutoregressiveImageNet, MaskedConv2d, OutputHead, _check_groups


class RowLSTM(nn.Module):
    """One Row LSTM layer (see the module docs).

    :param int in_channels: input feature channels (a multiple of ``colors``).
    :param int hidden: hidden state channels (a multiple of ``colors``; channel :math:`k`
        belongs to colour group :math:`k \\bmod C`).
    :param int kernel_size: odd width :math:`k` of both one-dimensional convolutions.
    :param int colors: colour channels of the image (the input-to-state mask's groups).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, colors: int = 1):
        super().__init__()
        k = int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        _check_groups(colors, in_channels=in_channels, hidden=hidden)
        self.hidden = int(hidden)
        self.input_to_state = MaskedConv2d(in_channels, 4 * hidden, (1, k), "B", colors)
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, k, padding=k // 2)
        with torch.no_grad():  # forget gate bias 1: remember by default
            self.state_to_state.bias[hidden : 2 * hidden].fill_(1.0)

    def step(
        self, gates: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One row: ``gates`` is the input-to-state part ``(B, 4 * hidden, W)``; ``state`` the
        previous row's ``(h, c)`` (zeros when ``None``). Returns the row's ``(h, c)``."""
        if state is None:
            zero = gates.new_zeros(gates.shape[0], self.hidden, gates.shape[-1])
            state = (zero, zero)
        h, c = state
        o, f, i, g = (gates + self.state_to_state(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states of every row, ``(B, hidden, H, W)``, for input ``(B, in, H, W)``."""
        gates = self.input_to_state(x)
        state = None
        rows = []
        for i in range(x.shape[-2]):
            state = self.step(gates[:, :, i], state)
            rows.append(state[0])
        return torch.stack(rows, dim=-2)


class PixelRNNNet(AutoregressiveImageNet):
    """A PixelRNN with Row LSTM layers [1]: a type-A ``first_kernel`` :math:`\\times`
    ``first_kernel`` masked convolution to ``hidden`` channels, ``layers`` :class:`RowLSTM`
    layers with residual connections (:math:`x \\leftarrow x + \\mathrm{RowLSTM}(x)`), and
    an :class:`~pyrogen.nn.masked.OutputHead` (two type-B :math:`1 \\times 1` convolutions).

    Arguments as :class:`~pyrogen.nn.masked.PixelCNNNet`; ``kernel`` is the width of the
    Row LSTM's one-dimensional convolutions. Class conditioning is not supported.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28),
        in_channels: int = 1,
        hidden: int = 32,
        layers: int = 1,
        kernel: int = 3,
        first_kernel: int = 7,
        output: str = "bernoulli",
        levels: int = 256,
        head_hidden: int | None = None,
    ) -> None:
        super().__init__(image_shape, in_channels, output, levels, None)
        if int(layers) != layers or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        if int(first_kernel) != first_kernel or first_kernel < 3 or first_kernel % 2 == 0:
            raise ValueError(f"first_kernel must be an odd integer >= 3, got {first_kernel!r}")
        colors = self.in_channels
        _check_groups(colors, hidden=hidden)
        self.hidden = int(hidden)
        self.first_kernel = int(first_kernel)
        self.first = MaskedConv2d(colors, hidden, first_kernel, "A", colors)
        self.rows = nn.ModuleList(RowLSTM(hidden, hidden, kernel, colors) for _ in range(layers))
        self.head = OutputHead(hidden, head_hidden or hidden, self.out_channels, colors)

    def _features(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if context is not None:
            raise ValueError("PixelRNNNet is not class-conditional: context must be None")
        h = self.first(x)
        for layer in self.rows:
            h = h + layer(h)
        return self.head(h)

    def sampler(self, context: torch.Tensor | None = None):
        if context is not None:
            raise ValueError("PixelRNNNet is not class-conditional: context must be None")
        return _RowLSTMSampler(self)


class _RowLSTMSampler:
    """Carries each layer's ``(h, c)`` from row to row, so every row's recurrence is run
    once; a pixel costs the first convolution on a few rows and one row step per layer."""

    def __init__(self, net: PixelRNNNet) -> None:
        self.net = net
        self.states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(net.rows)

    def _row(self, x: torch.Tensor, i: int, update: bool) -> torch.Tensor:
        net = self.net
        lo = max(0, i - net.first_kernel // 2)
        h = net.first(net.embed_input(x[:, :, lo : i + 1]))[:, :, -1:]
        for k, layer in enumerate(net.rows):
            state = layer.step(layer.input_to_state(h)[:, :, 0], self.states[k])
            if update:
                self.states[k] = state
            h = h + state[0].unsqueeze(-2)
        return h

    def begin_row(self, x: torch.Tensor, i: int) -> None:
        if i > 0:  # row i - 1 is complete: advance the recurrence through it once
            self._row(x, i - 1, update=True)

    def logits(self, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        h = self._row(x, i, update=False)
        return self.net.to_logits(self.net.head(h))[..., 0, j]
