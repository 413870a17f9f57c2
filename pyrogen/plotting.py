"""Image grids for samples, reconstructions and filters."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch


def image_grid(
    images: torch.Tensor, image_shape: Sequence[int], nrow: int | None = None, pad: int = 1
) -> np.ndarray:
    """Tile ``images`` (values in [0, 1]) into one array: grey images (``image_shape``
    ``(H, W)``; ``images`` ``(N, H*W)`` or ``(N, H, W)``) into an ``(rows, cols)`` array,
    colour images (``image_shape`` ``(C, H, W)``, channels first as in PyTorch; ``images``
    ``(N, C*H*W)`` or ``(N, C, H, W)``) into an ``(rows, cols, C)`` array for ``imshow``.

    :param int nrow: images per row (default: a square grid).
    :param int pad: pixels of blank (0, no ink) space between images.
    """
    images = torch.as_tensor(images).detach().float().cpu()
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"image_shape: expected (H, W) or (C, H, W), got {shape}")
    channels = shape[0] if len(shape) == 3 else None
    h, w = shape[-2:]
    size = math.prod(shape)
    if images.dim() == 1:
        images = images.unsqueeze(0)
    if images[0].numel() != size:
        raise ValueError(
            f"images: each must hold {'x'.join(map(str, shape))}={size} values, got shape "
            f"{tuple(images.shape)}"
        )
    if channels is None:
        images = images.reshape(-1, h, w, 1)
    else:
        images = images.reshape(-1, channels, h, w).permute(0, 2, 3, 1)
    images = images.clamp(0, 1).numpy()
    n, depth = images.shape[0], images.shape[-1]
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = np.zeros((ncol * (h + pad) + pad, nrow * (w + pad) + pad, depth), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid[..., 0] if channels is None else grid


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    image_shape: Sequence[int],
    nrow: int | None = None,
    title: str | None = None,
    scale: float = 0.25,
) -> str:
    """Write ``images`` as a grid to ``path`` (PNG), grey images as black ink on white like
    the papers' figures, colour images (``image_shape`` ``(C, H, W)``) as they are (three
    channels as RGB, one as grey); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    grid = image_grid(images, image_shape, nrow)
    height, width = grid.shape[:2]
    fig, ax = plt.subplots(figsize=(max(2.0, width * scale / 10), max(2.0, height * scale / 10)))
    if grid.ndim == 3 and grid.shape[2] == 3:
        ax.imshow(grid, interpolation="nearest")
    else:
        grey = grid if grid.ndim == 2 else grid.mean(2)
        ax.imshow(1.0 - grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
