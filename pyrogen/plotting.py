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
    """Tile ``images`` (``(N, H*W)`` or ``(N, H, W)``, values in [0, 1]) into one array.

    :param int nrow: images per row (default: a square grid).
    :param int pad: pixels of blank (0, no ink) space between images.
    """
    images = torch.as_tensor(images).detach().float().cpu()
    h, w = (int(s) for s in image_shape)
    if images.dim() == 1:
        images = images.unsqueeze(0)
    if images[0].numel() != h * w:
        raise ValueError(
            f"images: each must hold {h}x{w}={h * w} pixels, got shape {tuple(images.shape)}"
        )
    images = images.reshape(-1, h, w).clamp(0, 1).numpy()
    n = images.shape[0]
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = np.zeros((ncol * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    image_shape: Sequence[int],
    nrow: int | None = None,
    title: str | None = None,
    scale: float = 0.25,
) -> str:
    """Write ``images`` as a grid to ``path`` (PNG), black ink on white like the papers'
    figures; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    grid = image_grid(images, image_shape, nrow)
    height, width = grid.shape
    fig, ax = plt.subplots(figsize=(max(2.0, width * scale / 10), max(2.0, height * scale / 10)))
    ax.imshow(1.0 - grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.2)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
