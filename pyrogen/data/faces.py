r"""Face images: the Olivetti faces (Samaria & Harter [1]) and scikit-image's LFW patches.

:func:`olivetti_faces` reads ``olivetti/olivettifaces.mat`` (Roweis' copy: one array
``faces`` of shape ``(4096, 400)``, uint8, each column a 64x64 image stored column-major as
MATLAB does, so every image is transposed after reshaping) under ``root``, else
``$PYROGEN_DATA``, else the cache folder (:func:`pyrogen.data.data_roots`). The 400 images
are 10 consecutive images of each of 40 people; the person is the label.

Pre-processing, in this order:

1. pixels are scaled to :math:`[0, 1]` (divided by 255; not standardized: a model that wants
   zero-mean, unit-variance pixels standardizes with the *training* statistics itself);
2. optional random geometric copies (``augment`` of them per image), made on the 64x64
   originals: a rotation by an angle uniform in ``[-rotation, rotation]`` degrees, a zoom
   uniform in ``zoom`` (the 64x64 picture is magnified by that factor, i.e. a centred crop
   of side :math:`64/\text{zoom}` is kept), a shift of up to ``shift`` pixels (of the
   output) in each direction and a left-right flip with probability 1/2. Hinton &
   Salakhutdinov [2] built their 25x25 face set the same way (rotations of up to 90
   degrees, scaling by 1.4 to 2.0, cropping, subsampling). Each copy is sampled bilinearly
   at twice the output size and then area-averaged down (anti-aliasing);
3. resizing to ``size`` x ``size`` by area averaging
   (:func:`torch.nn.functional.adaptive_avg_pool2d`: each output pixel is the mean of the
   input pixels under it).

The split is by person, so no test person is ever seen in training: the first
``num_train_people`` people train and the rest test (Hinton & Salakhutdinov's split: 30 and
10) when ``seed`` is ``None``; otherwise the people are permuted by a generator seeded by
``seed`` first. Augmented copies are drawn with their own generator seeded by
``augment_seed``, so a loader call always returns the same images.

:func:`lfw_patches` returns the 200 25x25 patches of ``skimage.data.lfw_subset()`` (100
faces from Labeled Faces in the Wild, then 100 non-face patches), when scikit-image is
installed.

**References**

[1] Parameterisation of a Stochastic Model for Human Face Identification. Ferdinando S.
    Samaria, Andy C. Harter. 1994.

[2] Reducing the Dimensionality of Data with Neural Networks. Geoffrey E. Hinton, Ruslan R.
    Salakhutdinov. 2006.

[3] Labeled Faces in the Wild: A Database for Studying Face Recognition in Unconstrained
    Environments. Gary B. Huang, Manu Ramesh, Tamara Berg, Erik Learned-Miller. 2007.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset
from .download import data_roots
from .errors import DatasetNotFoundError

__all__ = ["OLIVETTI_FILE", "AugmentedFaces", "augment_faces", "lfw_patches", "olivetti_faces"]

#: Path of the Olivetti file below a data root.
OLIVETTI_FILE = "olivetti/olivettifaces.mat"
_NUM_PEOPLE, _PER_PERSON, _SIDE = 40, 10, 64
SPLITS = ("train", "test", "all")


def _find_olivetti(root) -> Path:
    roots = data_roots(root)
    for folder in roots:
        path = folder / OLIVETTI_FILE
        if path.is_file():
            return path
    searched = ", ".join(str(r) for r in roots)
    raise DatasetNotFoundError(
        f"Olivetti faces: {OLIVETTI_FILE} was not found under {searched}. Put Sam Roweis' "
        "olivettifaces.mat (array 'faces', 4096x400 uint8) there, or point PYROGEN_DATA (or "
        "root=) at a folder that holds olivetti/olivettifaces.mat"
    )


def _read_olivetti(root) -> np.ndarray:
    """The 400 images as ``(400, 64, 64)`` float32 in ``[0, 1]``, upright."""
    from scipy.io import loadmat

    path = _find_olivetti(root)
    mat = loadmat(path)
    if "faces" not in mat:
        raise ValueError(f"{path}: expected an array named 'faces', found {sorted(mat)}")
    faces = np.asarray(mat["faces"])
    if faces.shape != (_SIDE * _SIDE, _NUM_PEOPLE * _PER_PERSON):
        raise ValueError(
            f"{path}: expected 'faces' of shape (4096, 400), found {faces.shape}; the file is "
            "not Roweis' olivettifaces.mat"
        )
    # columns are column-major 64x64 images: reshape then transpose each one
    images = faces.T.reshape(-1, _SIDE, _SIDE).transpose(0, 2, 1)
    return np.ascontiguousarray(images, dtype=np.float32) / 255.0


def _people(num_train_people: int, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    if not 1 <= num_train_people < _NUM_PEOPLE:
        raise ValueError(
            f"num_train_people must be between 1 and {_NUM_PEOPLE - 1}, got {num_train_people}"
        )
    if seed is None:
        order = torch.arange(_NUM_PEOPLE)
    else:
        order = torch.randperm(_NUM_PEOPLE, generator=torch.Generator().manual_seed(int(seed)))
    return order[:num_train_people].sort().values, order[num_train_people:].sort().values


def augment_faces(
    images: torch.Tensor,
    copies: int,
    *,
    size: int | None = None,
    rotation: float = 90.0,
    zoom: tuple[float, float] = (1.4, 2.0),
    shift: float = 1.0,
    flip: bool = True,
    seed: int | None = 0,
) -> torch.Tensor:
    """``copies`` random geometric variants of each of ``images`` (``(N, H, W)``), as
    ``(N * copies, size, size)`` (copies of image 0 first). See the module docs for the
    transformations; ``size`` defaults to ``W``. The transformations are drawn with a
    generator seeded by ``seed``, or with torch's global RNG when ``seed`` is ``None``."""
    if images.dim() != 3:
        raise ValueError(f"images: expected shape (N, H, W), found {tuple(images.shape)}")
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    lo, hi = (float(z) for z in zoom)
    if not 0 < lo <= hi:
        raise ValueError(f"zoom must be an interval (lo, hi) with 0 < lo <= hi, got {zoom}")
    size = int(size or images.shape[-1])
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    n = images.shape[0] * copies
    src = images.repeat_interleave(copies, 0).unsqueeze(1).to(torch.float32)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(rotation)
    scale = 1.0 / (lo + (hi - lo) * torch.rand(n, generator=gen))  # fraction of the image kept
    mirror = torch.ones(n)
    if flip:
        mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    offset = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * shift / size)  # grid units
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, offset[:, 0]], -1),
            torch.stack([sin * mirror, cos, offset[:, 1]], -1),
        ],
        1,
    )
    fine = 2 * size
    grid = F.affine_grid(theta, [n, 1, fine, fine], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.adaptive_avg_pool2d(out, (size, size)).squeeze(1)


def olivetti_faces(
    split: str = "train",
    size: int = 25,
    root: str | os.PathLike | None = None,
    *,
    num_train_people: int = 30,
    seed: int | None = None,
    augment: int = 0,
    augment_seed: int = 0,
    **augment_options,
) -> ImageDataset:
    """The Olivetti faces of ``split`` (``"train"``, ``"test"`` or ``"all"``) as an
    :class:`~pyrogen.data.ImageDataset` of ``size * size`` pixels in ``[0, 1]``, labels the
    person (0-39). See the module docs for the file, the pre-processing and the split.

    :param int size: side of the output images (area-averaged from 64).
    :param int num_train_people: people in the training split (the rest test).
    :param seed: ``None``: the first people train (Hinton & Salakhutdinov's split);
        an integer: a seeded random choice of people.
    :param int augment: random geometric copies per image (0: the 400 originals only).
        With ``augment > 0`` only the copies are returned (``N * augment`` images).
    :param augment_options: ``rotation``, ``zoom``, ``shift``, ``flip`` of
        :func:`augment_faces`.
    :raises DatasetNotFoundError: when the file is in no data folder.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if int(size) != size or not 1 <= size <= _SIDE:
        raise ValueError(f"size must be an integer between 1 and {_SIDE}, got {size!r}")
    size = int(size)
    images = torch.from_numpy(_read_olivetti(root))
    labels = torch.arange(_NUM_PEOPLE).repeat_interleave(_PER_PERSON)
    train_people, test_people = _people(num_train_people, seed)
    if split != "all":
        people = train_people if split == "train" else test_people
        keep = torch.isin(labels, people)
        images, labels = images[keep], labels[keep]
    if augment:
        unknown = set(augment_options) - {"rotation", "zoom", "shift", "flip"}
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {sorted(unknown)}")
        images = augment_faces(
            images, int(augment), size=size, seed=augment_seed, **augment_options
        )
        labels = labels.repeat_interleave(int(augment))
        note = f"{augment} random rotated/zoomed/shifted/flipped copies per face"
    else:
        if augment_options:
            raise ValueError("augmentation options need augment > 0")
        images = F.adaptive_avg_pool2d(images.unsqueeze(1), (size, size)).squeeze(1)
        note = "originals, area-averaged from 64x64"
    data = images.reshape(images.shape[0], size * size).clamp(0, 1).contiguous()
    return ImageDataset(
        data,
        labels,
        image_shape=(size, size),
        name="olivetti",
        split=split,
        binarization=None,
        note=f"{note}; split by person ({num_train_people} train / "
        f"{_NUM_PEOPLE - num_train_people} test people)",
    )


class AugmentedFaces(torch.utils.data.Dataset):
    """Olivetti faces of a split with fresh random geometric variants at every fetch: item
    ``i`` is a new random transformation (see the module docs) of face ``i mod N`` of the
    split, drawn with torch's global RNG (so a run is reproducible through
    ``torch.manual_seed`` and resumable by saving torch's RNG state, as
    :func:`pyrogen.train.train` does). One epoch is ``copies`` passes over the ``N`` faces.
    Training on it never shows the same image twice, like the very large transformed face
    set of Hinton & Salakhutdinov; a fixed set (``olivetti_faces(..., augment=k)``) lets
    a large network memorise the poses it holds.

    :param transform: applied to every ``(n, size * size)`` batch (e.g. standardization).
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 25,
        copies: int = 40,
        root: str | os.PathLike | None = None,
        *,
        num_train_people: int = 30,
        seed: int | None = None,
        transform=None,
        **augment_options,
    ) -> None:
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        unknown = set(augment_options) - {"rotation", "zoom", "shift", "flip"}
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {sorted(unknown)}")
        faces = olivetti_faces(split, _SIDE, root, num_train_people=num_train_people, seed=seed)
        self.originals = faces.data.reshape(-1, _SIDE, _SIDE)
        self.labels = faces.labels
        self.size, self.copies = int(size), int(copies)
        self.image_shape = (self.size, self.size)
        self.transform = transform
        self.augment_options = augment_options

    def __len__(self) -> int:
        return self.originals.shape[0] * self.copies

    def __getitems__(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long) % self.originals.shape[0]
        images = augment_faces(
            self.originals[idx], 1, size=self.size, seed=None, **self.augment_options
        )
        x = images.reshape(len(idx), self.size * self.size).clamp(0, 1)
        return self.transform(x) if self.transform is not None else x

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def sample(self, copies: int, seed: int = 0) -> torch.Tensor:
        """A fixed ``(N * copies, size * size)`` set of variants (``copies`` of each face,
        face-major within each copy) drawn with generators seeded from ``seed``, e.g. to
        fit a baseline on the same distribution; not transformed. Made one copy at a time
        to keep memory low."""
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        parts = [
            augment_faces(
                self.originals,
                1,
                size=self.size,
                seed=int(seed) * 1_000_003 + c,
                **self.augment_options,
            )
            for c in range(int(copies))
        ]
        return torch.cat(parts).reshape(-1, self.size * self.size).clamp(0, 1)


def lfw_patches(faces_only: bool = False) -> ImageDataset:
    """The 25x25 patches of ``skimage.data.lfw_subset()`` (float32 in ``[0, 1]``; labels
    1 for the 100 faces, 0 for the 100 non-faces), or only the faces.

    :raises ImportError: when scikit-image is not installed (says how to install it).
    """
    try:
        from skimage.data import lfw_subset
    except ImportError as error:
        raise ImportError(
            "lfw_patches needs scikit-image (skimage.data.lfw_subset); install it with "
            "`pip install scikit-image`, or use olivetti_faces() instead"
        ) from error
    patches = np.asarray(lfw_subset(), dtype=np.float32)
    if patches.ndim != 3:
        raise ValueError(f"lfw_subset: expected (N, H, W) patches, found {patches.shape}")
    if patches.max() > 1.0:
        patches = patches / 255.0
    n, h, w = patches.shape
    labels = (torch.arange(n) < n // 2).long()
    data = torch.from_numpy(patches.reshape(n, h * w).copy())
    if faces_only:
        data, labels = data[: n // 2], labels[: n // 2]
    return ImageDataset(
        data,
        labels,
        image_shape=(h, w),
        name="lfw_subset",
        split="all",
        binarization=None,
        note="scikit-image's LFW subset: faces (label 1) then non-faces (label 0)",
    )
