r"""DRAW's differentiable Gaussian attention: filterbanks, read and write [1].

An :math:`N \times N` grid of Gaussian filters is laid over an image of width :math:`A` and
height :math:`B` (``width`` and ``height`` here). A linear map of a recurrent state
:math:`h` gives five numbers,

.. math::

    (\tilde g_X, \tilde g_Y, \log\sigma^2, \log\tilde\delta, \log\gamma) = W h + b,

scaled to the canvas so that :math:`\tilde g = 0` is its centre and :math:`\tilde\delta = 1`
spreads the grid over the whole canvas,

.. math::

    g_X = \tfrac{A + 1}{2}(\tilde g_X + 1), \qquad g_Y = \tfrac{B + 1}{2}(\tilde g_Y + 1),
    \qquad \delta = \frac{\max(A, B) - 1}{N - 1}\,\tilde\delta,

with pixel coordinates :math:`a = 1, \dots, A` and :math:`b = 1, \dots, B` (1-based, so
that :math:`g_X = (A + 1)/2` is the exact centre). Filter :math:`i = 1, \dots, N` has mean
:math:`\mu_X^i = g_X + (i - N/2 - 1/2)\,\delta` (likewise :math:`\mu_Y^j`) and variance
:math:`\sigma^2`, and the filterbanks are

.. math::

    F_X[i, a] = \frac{1}{Z_X^i}\exp\Big(-\frac{(a - \mu_X^i)^2}{2\sigma^2}\Big), \qquad
    F_Y[j, b] = \frac{1}{Z_Y^j}\exp\Big(-\frac{(b - \mu_Y^j)^2}{2\sigma^2}\Big),

each row normalised to sum to one. The normalisation is computed in the log domain (a
softmax over pixels), which is the same function but cannot underflow: a sharp filter
centred off the canvas, whose unnormalised row is zero in floating point (and gives 0/0 in
a direct implementation), still has a row that sums to one, all its mass on the nearest
edge pixel.

*Read* applies the filterbanks to the image and to the error image and scales by the
intensity; *write* maps a patch :math:`w` (:math:`N \times N`, emitted by another linear map
of :math:`h`) back onto the canvas with the transposed filterbanks of its own attention
parameters:

.. math::

    \mathrm{read}(x, \hat x, h) = \gamma\,[F_Y x F_X^\top,\; F_Y \hat x F_X^\top], \qquad
    \mathrm{write}(h) = \frac{1}{\hat\gamma}\,\hat F_Y^\top w\, \hat F_X.

*Initialisation.* The linear map starts with the weights of :class:`torch.nn.Linear` and
biases chosen so that, whatever :math:`h`, the grid tiles the canvas: centre
:math:`\tilde g = 0`, stride :math:`\delta_0 = \max(A, B) / N` (each filter owns a cell of
:math:`\delta_0` pixels) and standard deviation :math:`\sigma_0 = \delta_0 / 2` (each filter
averages its cell), :math:`\gamma = 1` for reading and :math:`\hat\gamma = N^2 / (A B)`
for writing, so that a patch of ones writes a canvas update of mean exactly one (every row
of :math:`F` sums to one, so the update's total is :math:`\sum w / \hat\gamma`). With the
biases at zero instead, :math:`\delta = (\max(A, B) - 1)/(N - 1)` puts the outer filters
on the canvas edges and :math:`\sigma = 1` makes them a pixel wide: a :math:`2 \times 2`
read then sees only the four corner pixels (empty on MNIST, so no gradient moves the
window) and a :math:`5 \times 5` write changes 25 small blobs by :math:`w / 6`, about
:math:`1/30` of what a linear write does per pixel, and DRAW stays at the pixel marginal
with its KL collapsing to zero. The tiled start reads a blurred image and writes a smooth
update over the whole canvas; training then narrows and moves the windows.

Images have any number of channels :math:`C`; one filterbank serves every channel, as in
[1] for colour images. Every function broadcasts over leading batch dimensions (particles,
examples). The modules without attention (:class:`FullRead`, :class:`FullWrite`) have the
same call signatures: read returns the concatenated images, write a linear map of
:math:`h`.

**References**

[1] DRAW: A Recurrent Neural Network For Image Generation. Karol Gregor, Ivo Danihelka,
    Alex Graves, Danilo Jimenez Rezende, Daan Wierstra. ICML 2015 (arXiv:1502.04623).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "AttentionWindow",
    "FullRead",
    "FullWrite",
    "GaussianAttention",
    "GaussianRead",
    "GaussianWrite",
    "gaussian_filterbank",
]


def _positive_int(value, name: str) -> int:
    if int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def gaussian_filterbank(
    center: torch.Tensor,
    log_variance: torch.Tensor,
    stride: torch.Tensor,
    grid_size: int,
    size: int,
) -> torch.Tensor:
    r"""The row-normalised filterbank :math:`F[i, a]` of one axis (see module docs).

    :param center: :math:`g`, the grid centre in 1-based pixel coordinates, shape ``(...)``.
    :param log_variance: :math:`\log\sigma^2`, shape ``(...)``.
    :param stride: :math:`\delta`, the distance between neighbouring filters in pixels,
        shape ``(...)``.
    :param int grid_size: :math:`N`, filters along this axis.
    :param int size: pixels along this axis (:math:`A` or :math:`B`).
    :returns: ``(..., grid_size, size)``, every row summing to one.
    """
    grid_size = _positive_int(grid_size, "grid_size")
    size = _positive_int(size, "size")
    i = torch.arange(1, grid_size + 1, dtype=center.dtype, device=center.device)
    mu = center.unsqueeze(-1) + (i - grid_size / 2 - 0.5) * stride.unsqueeze(-1)  # (..., N)
    a = torch.arange(1, size + 1, dtype=center.dtype, device=center.device)
    sq = (a - mu.unsqueeze(-1)) ** 2  # (..., N, size)
    return torch.softmax(-0.5 * sq * torch.exp(-log_variance)[..., None, None], dim=-1)


class AttentionWindow(NamedTuple):
    """The attention parameters in pixel units (1-based coordinates), each ``(...)``:
    grid centre ``center_x`` / ``center_y``, ``stride`` :math:`\\delta`, ``log_variance``
    :math:`\\log\\sigma^2` and ``intensity`` :math:`\\gamma`."""

    center_x: torch.Tensor
    center_y: torch.Tensor
    stride: torch.Tensor
    log_variance: torch.Tensor
    intensity: torch.Tensor


class _Canvas(nn.Module):
    """What every read and write module knows of its canvas."""

    height: int
    width: int
    channels: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)``."""
        return (self.channels, self.height, self.width)

    def _check_image(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 3 or tuple(x.shape[-3:]) != self.image_shape:
            raise ValueError(
                f"{name}: expected images of shape (..., {self.channels}, {self.height}, "
                f"{self.width}) (channels, height, width), got {tuple(x.shape)}"
            )


class GaussianAttention(_Canvas):
    r"""The attention parameters of one read or write head, as a linear map of ``h``
    (see module docs), and the filterbanks they define.

    :param int hidden_size: width of the state :math:`h` (the decoder's, in DRAW).
    :param int height: :math:`B`, canvas rows.
    :param int width: :math:`A`, canvas columns.
    :param int grid_size: :math:`N`, filters per axis.
    :param int channels: :math:`C`, image channels (one filterbank serves all).
    """

    def __init__(
        self, hidden_size: int, height: int, width: int, grid_size: int, channels: int = 1
    ) -> None:
        super().__init__()
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.height = _positive_int(height, "height")
        self.width = _positive_int(width, "width")
        self.grid_size = _positive_int(grid_size, "grid_size")
        self.channels = _positive_int(channels, "channels")
        #: :math:`h \mapsto (\tilde g_X, \tilde g_Y, \log\sigma^2, \log\tilde\delta, \log\gamma)`
        self.params = nn.Linear(self.hidden_size, 5)
        with torch.no_grad():
            self.params.bias.copy_(self.initial_bias())

    def initial_bias(self) -> torch.Tensor:
        r"""The initial bias of :attr:`params`: the tiled window of the module docs,
        :math:`(0, 0, \log\sigma_0^2, \log\tilde\delta_0, \log\gamma_0)` with
        :math:`\gamma_0 = 1`."""
        A, B, N = self.width, self.height, self.grid_size
        stride = max(A, B) / N
        # delta = (max(A, B) - 1) / max(N - 1, 1) * delta~  (see window_of)
        delta_tilde = stride * max(N - 1, 1) / max(max(A, B) - 1, 1)
        return torch.tensor(
            [0.0, 0.0, 2 * math.log(stride / 2), math.log(delta_tilde), self._initial_log_gamma()]
        )

    def _initial_log_gamma(self) -> float:
        return 0.0

    def window(self, h: torch.Tensor) -> AttentionWindow:
        """The attention parameters for state ``h`` ``(..., hidden_size)``, in pixels."""
        return self.window_of(self.params(h))

    def window_of(self, raw: torch.Tensor) -> AttentionWindow:
        r"""The attention parameters in pixels from the raw ``(..., 5)`` output
        :math:`(\tilde g_X, \tilde g_Y, \log\sigma^2, \log\tilde\delta, \log\gamma)` of
        :attr:`params` (see module docs for the scaling)."""
        gx, gy, log_var, log_delta, log_gamma = raw.unbind(-1)
        A, B, N = self.width, self.height, self.grid_size
        return AttentionWindow(
            center_x=(A + 1) / 2 * (gx + 1),
            center_y=(B + 1) / 2 * (gy + 1),
            stride=(max(A, B) - 1) / max(N - 1, 1) * torch.exp(log_delta),
            log_variance=log_var,
            intensity=torch.exp(log_gamma),
        )

    def filterbanks(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(F_X, F_Y, gamma)``: ``(..., N, width)``, ``(..., N, height)`` and ``(...)``."""
        w = self.window(h)
        return self.filterbanks_of(w)

    def filterbanks_of(self, w: AttentionWindow) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The filterbanks of a given :class:`AttentionWindow` (as :meth:`filterbanks`)."""
        N = self.grid_size
        fx = gaussian_filterbank(w.center_x, w.log_variance, w.stride, N, self.width)
        fy = gaussian_filterbank(w.center_y, w.log_variance, w.stride, N, self.height)
        return fx, fy, w.intensity


class GaussianRead(GaussianAttention):
    r"""DRAW's attentive read :math:`\gamma\,[F_Y x F_X^\top, F_Y \hat x F_X^\top]`.

    Arguments as :class:`GaussianAttention`; :attr:`output_size` is
    :math:`2 C N^2`.
    """

    @property
    def output_size(self) -> int:
        return 2 * self.channels * self.grid_size**2

    @staticmethod
    def apply_filterbanks(
        image: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor
    ) -> torch.Tensor:
        r""":math:`\gamma F_Y x F_X^\top`: ``(..., C, N, N)`` from an image ``(..., C, B, A)``
        and filterbanks ``(..., N, A)``, ``(..., N, B)``."""
        glimpse = fy.unsqueeze(-3) @ image @ fx.unsqueeze(-3).transpose(-1, -2)
        return glimpse * gamma[..., None, None, None]

    def glimpse(self, image: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One glimpse ``(..., C, N, N)`` of ``image`` ``(..., C, height, width)``."""
        self._check_image(image, "image")
        return self.apply_filterbanks(image, *self.filterbanks(h))

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Glimpses of the image ``x`` and the error image ``x_hat`` (both
        ``(..., C, height, width)``) at the window given by ``h``, flattened and
        concatenated: ``(..., 2 C N^2)``."""
        self._check_image(x, "x")
        self._check_image(x_hat, "x_hat")
        fx, fy, gamma = self.filterbanks(h)
        a = self.apply_filterbanks(x, fx, fy, gamma).flatten(-3)
        b = self.apply_filterbanks(x_hat, fx, fy, gamma).flatten(-3)
        a, b = torch.broadcast_tensors(a, b)
        return torch.cat([a, b], dim=-1)


class GaussianWrite(GaussianAttention):
    r"""DRAW's attentive write :math:`\frac{1}{\hat\gamma}\hat F_Y^\top w \hat F_X`, the
    patch :math:`w` (:math:`C \times N \times N`) a linear map of ``h``.

    Arguments as :class:`GaussianAttention`.
    """

    def __init__(
        self, hidden_size: int, height: int, width: int, grid_size: int, channels: int = 1
    ) -> None:
        super().__init__(hidden_size, height, width, grid_size, channels)
        self.patch = nn.Linear(self.hidden_size, self.channels * self.grid_size**2)

    def _initial_log_gamma(self) -> float:
        # 1 / gamma^ = A B / N^2: a patch of ones writes an update of mean one (module docs)
        return math.log(self.grid_size**2 / (self.width * self.height))

    @staticmethod
    def apply_filterbanks(
        patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor
    ) -> torch.Tensor:
        r""":math:`\frac{1}{\gamma} F_Y^\top w F_X`: ``(..., C, B, A)`` from a patch
        ``(..., C, N, N)`` and filterbanks ``(..., N, A)``, ``(..., N, B)``."""
        canvas = fy.unsqueeze(-3).transpose(-1, -2) @ patch @ fx.unsqueeze(-3)
        return canvas / gamma[..., None, None, None]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The canvas update ``(..., C, height, width)`` for state ``h``."""
        N = self.grid_size
        w = self.patch(h).unflatten(-1, (self.channels, N, N))
        return self.apply_filterbanks(w, *self.filterbanks(h))


class FullRead(_Canvas):
    """Reading without attention: the image and the error image, flattened and
    concatenated (``h`` is ignored), :attr:`output_size` :math:`2 C B A`.

    :param int height: canvas rows.
    :param int width: canvas columns.
    :param int channels: image channels.
    """

    def __init__(self, height: int, width: int, channels: int = 1) -> None:
        super().__init__()
        self.height = _positive_int(height, "height")
        self.width = _positive_int(width, "width")
        self.channels = _positive_int(channels, "channels")

    @property
    def output_size(self) -> int:
        return 2 * self.channels * self.height * self.width

    def forward(
        self, x: torch.Tensor, x_hat: torch.Tensor, h: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[x, x_hat]`` flattened, ``(..., 2 C B A)``."""
        self._check_image(x, "x")
        self._check_image(x_hat, "x_hat")
        a, b = torch.broadcast_tensors(x.flatten(-3), x_hat.flatten(-3))
        return torch.cat([a, b], dim=-1)


class FullWrite(_Canvas):
    """Writing without attention: a linear map of ``h`` onto the whole canvas.

    :param int hidden_size: width of ``h``.
    :param int height: canvas rows.
    :param int width: canvas columns.
    :param int channels: image channels.
    """

    def __init__(self, hidden_size: int, height: int, width: int, channels: int = 1) -> None:
        super().__init__()
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.height = _positive_int(height, "height")
        self.width = _positive_int(width, "width")
        self.channels = _positive_int(channels, "channels")
        self.linear = nn.Linear(self.hidden_size, self.channels * self.height * self.width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The canvas update ``(..., C, height, width)``."""
        return self.linear(h).unflatten(-1, self.image_shape)
