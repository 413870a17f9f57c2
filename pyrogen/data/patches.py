r"""Random patches of natural images, for sparse coding and other models of image statistics.

:func:`natural_image_patches` cuts ``n`` square patches at uniformly random positions out of
the 13 grayscale natural images of Hyvärinen, Hurri & Hoyer [1] (8-bit TIFFs in
``natural_images/hyvarinen/`` under ``root``, ``$PYROGEN_DATA`` or the cache folder, see
:func:`pyrogen.data.data_roots`). When no such folder exists it falls back to the grayscale
images that ship with scikit-image (``camera``, ``moon``, ``text``, ``coins``, ``page``,
``grass``, ``gravel``, ``brick``), if scikit-image is importable, and otherwise raises
:class:`~pyrogen.data.DatasetNotFoundError` saying how to fix it.

Pre-processing, in this order:

1. pixels are scaled to :math:`[0, 1]` and each patch's mean (its DC component) is removed;
2. optional whitening with the patch covariance :math:`C = U \Lambda U^\top` (over the
   patches drawn):

   * ``"zca"`` (zero-phase, Bell & Sejnowski [2]):
     :math:`x \mapsto U (\Lambda + \epsilon I)^{-1/2} U^\top x`, which keeps patches
     looking like images (whitened patches are "edge-enhanced");
   * ``"pca"``: :math:`x \mapsto (\Lambda + \epsilon I)^{-1/2} U^\top x` (rotated into the
     principal axes; coordinates sorted by decreasing variance).

   The regulariser is relative: :math:`\epsilon = \text{eps} \cdot \operatorname{tr}(C) / d`
   (``eps`` times the mean eigenvalue, default ``1e-2``). It damps the high-frequency
   directions whose variance is below :math:`\epsilon` (mostly pixel noise and aliasing)
   instead of amplifying them, so the whitened covariance is
   :math:`U \Lambda (\Lambda + \epsilon I)^{-1} U^\top`: the identity on the directions
   that carry signal and smaller below. The constant direction removed in step 1 stays 0.

The result is a float32 tensor ``(n, size * size)`` (row-major patches) and is the same for
the same ``seed`` and arguments.

**References**

[1] Natural Image Statistics: A Probabilistic Approach to Early Computational Vision.
    Aapo Hyvärinen, Jarmo Hurri, Patrik O. Hoyer. 2009.

[2] The "independent components" of natural scenes are edge filters. Anthony J. Bell,
    Terrence J. Sejnowski. 1997.

[3] Online Learning for Matrix Factorization and Sparse Coding. Julien Mairal, Francis Bach,
    Jean Ponce, Guillermo Sapiro. 2010.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .download import data_roots
from .errors import DatasetNotFoundError

__all__ = ["NATURAL_IMAGES_DIR", "load_natural_images", "natural_image_patches", "whitening"]

#: Folder of the images below a data root.
NATURAL_IMAGES_DIR = "natural_images/hyvarinen"
_SKIMAGE_IMAGES = ("camera", "moon", "text", "coins", "page", "grass", "gravel", "brick")
WHITENINGS = (None, False, "zca", "pca")


def _read_gray(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        import imageio.v3 as iio

        img = np.asarray(iio.imread(path))
    else:
        with Image.open(path) as im:
            img = np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "F") else im)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    scale = 255.0 if img.dtype == np.uint8 else (65535.0 if img.dtype == np.uint16 else 1.0)
    return img.astype(np.float64) / scale


def load_natural_images(root: str | os.PathLike | None = None) -> tuple[list[np.ndarray], str]:
    """The grayscale images as float64 arrays in :math:`[0, 1]`, and where they came from.

    Looks for ``natural_images/hyvarinen/*.tif[f]`` in each of :func:`pyrogen.data.data_roots`
    (``root`` alone when given); falls back to scikit-image's shipped images when none is found
    and ``root`` was not given explicitly.
    """
    roots = data_roots(root)
    for base in roots:
        folder = base / NATURAL_IMAGES_DIR
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
            if files:
                return [_read_gray(p) for p in files], str(folder)
    if root is None:
        try:
            import skimage.data as skdata
        except ImportError:
            pass
        else:
            images = []
            for name in _SKIMAGE_IMAGES:
                img = np.asarray(getattr(skdata, name)())
                if img.ndim == 3:
                    img = img[..., :3].mean(-1)
                images.append(img.astype(np.float64) / (255.0 if img.max() > 1 else 1.0))
            return images, "scikit-image shipped images"
    looked = ", ".join(str(r / NATURAL_IMAGES_DIR) for r in roots)
    raise DatasetNotFoundError(
        f"natural images: no *.tif/*.tiff files found in {looked}"
        + ("" if root is not None else " and scikit-image is not installed")
        + ". Fix: set PYROGEN_DATA (or pass root=...) to a folder holding "
        f"{NATURAL_IMAGES_DIR}/ with the 13 images of Hyvarinen, Hurri & Hoyer, or "
        "`pip install scikit-image` to use its shipped images."
    )


def whitening(
    x: torch.Tensor, kind: str = "zca", eps: float = 1e-2
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Whitening matrix :math:`W` (apply as ``x @ W.T``) of the rows of ``x`` and the mean.

    ``kind="zca"``: :math:`W = U (\Lambda + \epsilon)^{-1/2} U^\top`; ``"pca"``:
    :math:`W = (\Lambda + \epsilon)^{-1/2} U^\top` with eigenvalues in decreasing order;
    :math:`\epsilon = \text{eps} \cdot \operatorname{tr}(C)/d` (see module docs).
    Computed in float64 and returned in ``x``'s dtype.
    """
    if kind not in ("zca", "pca"):
        raise ValueError(f"whiten: expected one of {WHITENINGS}, got {kind!r}")
    if not eps >= 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps}")
    x64 = x.to(torch.float64)
    mean = x64.mean(0)
    xc = x64 - mean
    cov = xc.T @ xc / max(x.shape[0] - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    reg = eps * float(evals.sum()) / x.shape[1]
    scale = (evals + reg).rsqrt()
    scale = torch.where(evals + reg > 0, scale, torch.zeros_like(scale))
    w = scale[:, None] * evecs.T
    if kind == "zca":
        w = evecs @ w
    return w.to(x.dtype), mean.to(x.dtype)


def natural_image_patches(
    n: int,
    size: int = 12,
    seed: int = 0,
    whiten: bool | str | None = False,
    root: str | os.PathLike | None = None,
    eps: float = 1e-2,
    normalize: bool = False,
) -> torch.Tensor:
    """``n`` random ``size x size`` patches of natural images, float32 ``(n, size * size)``.

    :param int n: number of patches (drawn with replacement among all positions).
    :param int size: side of the square patches.
    :param int seed: NumPy seed of the positions; same seed and arguments, same patches.
    :param whiten: ``False``/``None`` (only the per-patch mean is removed), ``"zca"`` (or
        ``True``) or ``"pca"``, computed on these ``n`` patches (see module docs).
    :param root: data folder (see :func:`pyrogen.data.data_roots`).
    :param float eps: whitening regulariser, relative to the mean eigenvalue.
    :param bool normalize: scale each patch to unit Euclidean norm (last step).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if int(size) != size or size < 1:
        raise ValueError(f"size: expected a positive integer, got {size!r}")
    if whiten is True:
        whiten = "zca"
    if whiten not in WHITENINGS:
        raise ValueError(f"whiten: expected one of {WHITENINGS} or True, got {whiten!r}")
    n, size = int(n), int(size)
    images, source = load_natural_images(root)
    images = [img for img in images if min(img.shape) >= size]
    if not images:
        raise ValueError(f"size: every image in {source} is smaller than {size} pixels")
    rng = np.random.default_rng(seed)
    # pick images in proportion to their number of patch positions
    counts = np.array([(h - size + 1) * (w - size + 1) for h, w in (i.shape for i in images)])
    which = rng.choice(len(images), size=n, p=counts / counts.sum())
    out = np.empty((n, size, size), dtype=np.float64)
    for i, img in enumerate(images):
        idx = np.flatnonzero(which == i)
        if idx.size == 0:
            continue
        rows = rng.integers(0, img.shape[0] - size + 1, size=idx.size)
        cols = rng.integers(0, img.shape[1] - size + 1, size=idx.size)
        windows = np.lib.stride_tricks.sliding_window_view(img, (size, size))
        out[idx] = windows[rows, cols]
    x = torch.from_numpy(out.reshape(n, size * size))
    x = x - x.mean(1, keepdim=True)
    if whiten:
        w, mean = whitening(x, whiten, eps)
        x = (x - mean) @ w.T
    if normalize:
        norm = x.norm(dim=1, keepdim=True)
        x = torch.where(norm > 1e-8, x / norm.clamp_min(1e-8), torch.zeros_like(x))
    return x.to(torch.float32)
