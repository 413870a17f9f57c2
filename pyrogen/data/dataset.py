"""Loading the registered image data sets as :class:`ImageDataset` objects.

:func:`load` finds the files of a set (see :mod:`pyrogen.data.download` for the search order:
``root``, else ``$PYROGEN_DATA`` then ``~/.cache/pyrogen``), verifies their SHA-256, downloads
what is missing, parses them, and applies the requested binarization:

* ``None``: as stored: binary (``"fixed"``) for ``binarized_mnist``, ``caltech101_silhouettes``
  and ``digits``; grey levels in ``[0, 1]`` for ``mnist`` and ``omniglot``.
* ``"dynamic"``: grey levels are kept and every fetch draws a fresh Bernoulli sample with torch's
  global RNG (a new binarization each epoch; reproducible through ``torch.manual_seed`` and
  resumable by saving torch's RNG state).
* ``"stochastic"``: one Bernoulli sample drawn at load time with a local generator seeded by
  ``seed`` (identical to ``load(..., binarize="dynamic").tensor(seed)``).
* ``"threshold"``: pixel > 0.5.

:func:`describe` and :func:`format_table` list the sets and where their files were found.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .download import find_file, locate_file
from .parsers import area_resize, read_amat, read_idx, read_omniglot_npz
from .registry import BINARIZATIONS, DATASETS, GENERATED, DatasetSpec, get_spec

__all__ = ["ImageDataset", "clear_cache", "describe", "format_table", "load"]

_BINARY_KINDS = ("fixed", "stochastic", "threshold")


class ImageDataset(Dataset):
    """A split of an image data set as one in-memory tensor of flattened images.

    :param data: float32 tensor ``(N, D)`` with values in ``[0, 1]``; grey levels when
        ``binarization`` is ``None`` or ``"dynamic"``, exactly ``{0, 1}`` otherwise.
    :param labels: int64 tensor ``(N,)`` or ``None``.
    :param image_shape: ``(H, W)`` with ``H * W == D``; images are row-major.
    :param name: data set name.
    :param split: split name.
    :param binarization: ``"fixed"`` (shipped binary), ``"dynamic"`` (a fresh Bernoulli sample
        at every fetch, global RNG), ``"stochastic"`` (one sample fixed by a seed),
        ``"threshold"`` (> 0.5), or ``None`` (grey levels).
    :param note: a caveat shown in ``repr`` (e.g. how this Omniglot differs from others').
    :param class_names: names of the label values, when known.

    ``dataset[i]`` is a ``(D,)`` tensor; ``dataset.__getitems__(indices)`` a ``(n, D)`` tensor
    (torch's :class:`~torch.utils.data.DataLoader` uses it to fetch a batch at once; give the
    loader ``collate_fn=ImageDataset.collate``, or use :meth:`loader`). Labels are not returned
    by indexing; use :attr:`labels`.
    """

    def __init__(
        self,
        data: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        image_shape: tuple[int, int],
        name: str = "",
        split: str = "",
        binarization: str | None = None,
        note: str = "",
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(data, torch.Tensor) or data.dim() != 2:
            raise ValueError(
                f"data: expected a 2-D tensor (N, D), found "
                f"{tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__}"
            )
        if data.dtype != torch.float32:
            raise ValueError(f"data: expected dtype float32, found {data.dtype}")
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 2 or image_shape[0] * image_shape[1] != data.shape[1]:
            raise ValueError(
                f"image_shape: expected (H, W) with H * W == D = {data.shape[1]}, "
                f"found {image_shape}"
            )
        if binarization is not None and binarization not in BINARIZATIONS:
            raise ValueError(
                f"binarization: expected one of {', '.join(BINARIZATIONS)} or None, "
                f"found {binarization!r}"
            )
        if data.numel():
            lo, hi = float(data.min()), float(data.max())
            if not (0.0 <= lo and hi <= 1.0):
                raise ValueError(f"data: expected values in [0, 1], found [{lo}, {hi}]")
        if binarization in _BINARY_KINDS and not bool(((data == 0) | (data == 1)).all()):
            raise ValueError(
                f"data: binarization={binarization!r} requires values in {{0, 1}}, "
                "found other values"
            )
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape != (data.shape[0],):
                raise ValueError(
                    f"labels: expected an int64 tensor of shape ({data.shape[0]},), found "
                    f"{getattr(labels, 'shape', type(labels).__name__)}"
                )
            labels = labels.long()
        self.data = data
        self.labels = labels
        self.image_shape: tuple[int, int] = image_shape  # type: ignore[assignment]
        self.name = name
        self.split = split
        self.binarization = binarization
        self.note = note
        self.class_names = tuple(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: Any) -> torch.Tensor:
        x = self.data[index]
        if self.binarization == "dynamic":
            return torch.bernoulli(x)
        return x

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        """The examples at ``indices`` as one ``(n, D)`` tensor (one gather, one Bernoulli draw
        for ``"dynamic"``).

        torch's :class:`~torch.utils.data.DataLoader` calls this for each batch and hands the
        result to its ``collate_fn``; torch's *default* collate expects a list and fails on a
        tensor, so pass ``collate_fn=ImageDataset.collate`` or use :meth:`loader`.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.data.index_select(0, idx)
        if self.binarization == "dynamic":
            return torch.bernoulli(x)
        return x

    @staticmethod
    def collate(batch: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """``collate_fn`` for a :class:`~torch.utils.data.DataLoader` over an
        :class:`ImageDataset`: passes the ``(n, D)`` tensor of :meth:`__getitems__` through
        (stacks a list of ``(D,)`` tensors)."""
        if isinstance(batch, torch.Tensor):
            return batch
        return torch.stack(list(batch))

    def loader(
        self, batch_size: int, shuffle: bool = False, **kwargs: Any
    ) -> torch.utils.data.DataLoader:
        """A :class:`~torch.utils.data.DataLoader` over this data set that fetches each batch
        with one :meth:`__getitems__` call; ``kwargs`` go to the DataLoader."""
        kwargs.setdefault("collate_fn", ImageDataset.collate)
        return torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=shuffle, **kwargs)

    @property
    def num_features(self) -> int:
        """Values per example (pixels), ``D = H * W``."""
        return self.data.shape[1]

    @property
    def num_pixels(self) -> int:
        """Deprecated alias of :attr:`num_features` (removed in the next release)."""
        warnings.warn(
            "ImageDataset.num_pixels is deprecated; use num_features",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.data.shape[1]

    @property
    def is_binary(self) -> bool:
        """Whether the examples returned by indexing are in ``{0, 1}`` (every binarization)."""
        return self.binarization is not None

    def tensor(self, seed: int = 0) -> torch.Tensor:
        """The ``(N, D)`` data as used for evaluation.

        For ``binarization == "dynamic"``: one Bernoulli sample of the grey levels drawn with a
        local :class:`torch.Generator` seeded by ``seed`` (deterministic, leaves torch's global
        RNG untouched). Otherwise :attr:`data` itself.
        """
        if self.binarization != "dynamic":
            return self.data
        return _bernoulli(self.data, seed)

    def images(self) -> torch.Tensor:
        """:attr:`data` viewed as ``(N, H, W)``."""
        return self.data.view(-1, *self.image_shape)

    def __repr__(self) -> str:
        note = f", note={self.note!r}" if self.note else ""
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, N={len(self)}, "
            f"image_shape={self.image_shape}, binarization={self.binarization!r}{note})"
        )


def _bernoulli(probs: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=probs.device).manual_seed(int(seed))
    return torch.bernoulli(probs, generator=gen)


# ---------------------------------------------------------------------------------------------
# per-set loaders: (spec, split, root, download) -> _Loaded


class _Loaded(NamedTuple):
    """One parsed split: ``data / scale`` are the pixel values in [0, 1] (``data`` is kept in
    its compact stored dtype, uint8 where possible)."""

    data: np.ndarray  # (N, D)
    labels: np.ndarray | None  # (N,) int64
    class_names: tuple[str, ...] | None
    scale: float = 1.0


_CACHE: OrderedDict[tuple, _Loaded] = OrderedDict()
_CACHE_SIZE = 6


def clear_cache() -> None:
    """Forget the parsed splits that :func:`load` keeps in memory (a few hundred MB at most)."""
    _CACHE.clear()


def _cached(key_paths: Sequence[Path], tag: str, fn: Callable[[], _Loaded]) -> _Loaded:
    """Memoize a parsed split per (tag, files, sizes, mtimes) within the process."""
    key: tuple = (tag,)
    for p in key_paths:
        st = p.stat()
        key += (str(p.absolute()), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = fn()
    for arr in (value.data, value.labels):
        if arr is not None:
            arr.flags.writeable = False
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _load_binarized_mnist(spec: DatasetSpec, split: str, root, download: bool) -> _Loaded:
    path = find_file(spec.file(f"binarized_mnist_{split}.amat"), root, download, dataset=spec.name)
    return _cached([path], "amat", lambda: _Loaded(read_amat(path, spec.num_pixels), None, None))


def _load_mnist(spec: DatasetSpec, split: str, root, download: bool) -> _Loaded:
    prefix = "train" if split == "train" else "t10k"
    img_path = find_file(
        spec.file(f"{prefix}-images-idx3-ubyte.gz"), root, download, dataset=spec.name
    )
    lab_path = find_file(
        spec.file(f"{prefix}-labels-idx1-ubyte.gz"), root, download, dataset=spec.name
    )

    def parse() -> _Loaded:
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError(
                f"{img_path}, {lab_path}: expected images (N, 28, 28) and labels (N,), found "
                f"{images.shape} and {labels.shape}"
            )
        data = images.reshape(len(images), -1)  # uint8 grey levels, / 255 in load()
        return _Loaded(data, labels.astype(np.int64), tuple(str(d) for d in range(10)), 255.0)

    return _cached([img_path, lab_path], "mnist", parse)


def _load_omniglot(spec: DatasetSpec, split: str, root, download: bool) -> _Loaded:
    which = "background" if split == "train" else "evaluation"
    path = find_file(spec.file(f"images_{which}.npz"), root, download, dataset=spec.name)

    def parse() -> _Loaded:
        images, labels = read_omniglot_npz(path)
        flat = images.reshape(-1, *images.shape[2:])
        # Stored True = white background (as read from the PNGs); ink must be 1.
        ink = area_resize(flat, spec.image_shape, invert=True)
        return _Loaded(ink.reshape(len(ink), -1), labels.reshape(-1).astype(np.int64), None)

    return _cached([path], "omniglot", parse)


def _load_caltech(spec: DatasetSpec, split: str, root, download: bool) -> _Loaded:
    from scipy.io import loadmat

    path = find_file(spec.files[0], root, download, dataset=spec.name)
    key = {"train": "train", "valid": "val", "test": "test"}[split]

    def parse() -> _Loaded:
        mat = loadmat(path)
        missing = [k for k in (f"{key}_data", f"{key}_labels") if k not in mat]
        if missing:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise ValueError(f"{path}: missing {missing}; found {found}")
        flat = np.asarray(mat[f"{key}_data"], dtype=np.uint8)
        h, w = spec.image_shape
        # Rows are MATLAB column-major images: transpose so that row-major (H, W) is upright.
        data = flat.reshape(-1, w, h).transpose(0, 2, 1).reshape(len(flat), h * w)
        labels = np.asarray(mat[f"{key}_labels"]).reshape(-1).astype(np.int64) - 1
        names = None
        if "classnames" in mat:
            names = tuple(str(np.ravel(c)[0]) for c in np.ravel(mat["classnames"]))
        return _Loaded(np.ascontiguousarray(data), labels, names)

    return _cached([path], f"caltech-{key}", parse)


def _digits_split_indices(split: str) -> np.ndarray:
    perm = np.random.RandomState(0).permutation(1797)
    bounds = {"train": (0, 1257), "valid": (1257, 1437), "test": (1437, 1797)}
    lo, hi = bounds[split]
    return np.sort(perm[lo:hi])


def _load_digits(spec: DatasetSpec, split: str, root, download: bool) -> _Loaded:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    idx = _digits_split_indices(split)
    data = (np.asarray(bunch.data)[idx] >= 8).astype(np.uint8)
    labels = np.asarray(bunch.target)[idx].astype(np.int64)
    return _Loaded(data, labels, tuple(str(d) for d in range(10)))


_LOADERS: dict[str, Callable[[DatasetSpec, str, Any, bool], _Loaded]] = {
    "binarized_mnist": _load_binarized_mnist,
    "mnist": _load_mnist,
    "omniglot": _load_omniglot,
    "caltech101_silhouettes": _load_caltech,
    "digits": _load_digits,
}

_NOTES = {
    "omniglot": (
        "NOT the 28x28 split of Burda et al. (2015) (chardata.mat, 24,345/8,070): a 28x28 "
        "area-average resize of the official background/evaluation sets"
    ),
}


def _check_split(spec: DatasetSpec, split: str) -> None:
    if split in spec.splits:
        return
    valid = ", ".join(repr(s) for s in spec.splits)
    extra = ""
    if "valid" not in spec.splits:
        extra = f" {spec.name} has no validation split; hold out part of 'train' if you need one."
    raise ValueError(
        f"split: unknown split {split!r} for {spec.name}; valid splits: {valid}.{extra}"
    )


def load(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    binarize: str | None = None,
    *,
    download: bool = True,
    seed: int = 0,
    **options: Any,
) -> ImageDataset:
    """Load one split of a registered data set (see :data:`pyrogen.data.DATASETS`), or
    build one of the generated sets (``"mnist_captions"``, ``"mnist_captions_colour"``:
    :data:`pyrogen.data.registry.GENERATED`, a :class:`~pyrogen.data.captions.CaptionDataset`
    built from the registered MNIST files; ``seed`` seeds the generator).

    :param name: data set name, e.g. ``"binarized_mnist"``, ``"mnist"``, ``"omniglot"``,
        ``"caltech101_silhouettes"``, ``"digits"``.
    :param split: ``"train"``, ``"valid"``, ``"test"`` (as the set provides), or
        ``"train+valid"`` for sets with a validation split.
    :param root: search only this folder; default ``$PYROGEN_DATA`` then ``~/.cache/pyrogen``.
    :param binarize: ``None`` (as stored), ``"fixed"`` (only for sets shipped binary),
        ``"dynamic"``, ``"stochastic"`` or ``"threshold"`` (grey-level sets only).
    :param download: download missing files (also disabled by ``PYROGEN_NO_DOWNLOAD=1``).
    :param seed: seed of the single Bernoulli sample of ``binarize="stochastic"``.
    :param options: options of a generated set's builder (e.g. ``size=`` of
        :func:`~pyrogen.data.captions.load_mnist_captions`); stored sets take none.
    :raises ValueError: unknown name, split or binarization, or options for a stored set.
    :raises DatasetNotFoundError: a file is missing and cannot be downloaded.
    :raises ChecksumError: a file does not match its SHA-256.

    Omniglot here is NOT the 28x28 split of Burda et al. (2015) (their ``chardata.mat``,
    24,345 / 8,070 images) but an area-average resize to 28x28 of the official
    background ("train") / evaluation ("test") sets.
    """
    if isinstance(name, str) and name in GENERATED:  # built from registered files
        return GENERATED[name].build(
            split, root=root, binarize=binarize, download=download, seed=seed, **options
        )
    if options:
        raise ValueError(
            f"{name!r} is a stored data set and takes no generator options; got {sorted(options)}"
        )
    spec = get_spec(name)
    _check_split(spec, split)
    allowed = (None, *BINARIZATIONS)
    if binarize not in allowed:
        raise ValueError(
            f"binarize: expected one of None, {', '.join(repr(b) for b in BINARIZATIONS)}; "
            f"found {binarize!r}"
        )
    if spec.binarization == "fixed" and binarize not in (None, "fixed"):
        raise ValueError(
            f"binarize: {spec.name} is already binary (fixed binarization), so binarize must be "
            f"None or 'fixed'; found {binarize!r}"
        )
    if spec.binarization is None and binarize == "fixed":
        raise ValueError(
            f"binarize: 'fixed' is only for sets shipped binary; {spec.name} has grey levels: "
            "use 'dynamic', 'stochastic' or 'threshold'"
        )

    loader = _LOADERS[spec.name]
    parts = ("train", "valid") if split == "train+valid" else (split,)
    loaded = [loader(spec, s, root, download) for s in parts]
    for s, part in zip(parts, loaded, strict=True):
        arr = part.data
        if arr.shape != (spec.splits[s], spec.num_pixels):
            raise ValueError(
                f"{spec.name} {s}: the files hold {arr.shape[0]} examples of {arr.shape[1]} "
                f"pixels, expected {spec.splits[s]} of {spec.num_pixels}; they are not the "
                "registered files"
            )
    # np.concatenate copies, so the cached (read-only) arrays are never shared with the tensor.
    data = torch.from_numpy(np.concatenate([p.data for p in loaded]).astype(np.float32))
    if loaded[0].scale != 1.0:
        data /= loaded[0].scale
    label_arrays = [p.labels for p in loaded]
    labels = None
    if all(lab is not None for lab in label_arrays):
        labels = torch.from_numpy(np.concatenate(label_arrays).astype(np.int64))
    class_names = loaded[0].class_names

    binarization = spec.binarization
    if binarize == "dynamic":
        binarization = "dynamic"
    elif binarize == "stochastic":
        data, binarization = _bernoulli(data, seed), "stochastic"
    elif binarize == "threshold":
        data, binarization = (data > 0.5).to(torch.float32), "threshold"

    return ImageDataset(
        data,
        labels,
        image_shape=spec.image_shape,
        name=spec.name,
        split=split,
        binarization=binarization,
        note=_NOTES.get(spec.name, ""),
        class_names=class_names,
    )


# ---------------------------------------------------------------------------------------------
# listing


def describe(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per registered data set: ``name``, ``splits`` (split -> size), ``image_shape``,
    ``binarization`` (as stored), ``location`` (folder where its files were found, ``"missing"``,
    ``"partial: ..."``, or ``"shipped with scikit-learn"``) and ``urls`` (download addresses).

    Files are only looked for, not verified (see :func:`pyrogen.data.find_file`).
    """
    rows = []
    for spec in DATASETS.values():
        if not spec.needs_download:
            location = "shipped with scikit-learn"
        else:
            found = {f.filename: locate_file(f, root) for f in spec.files}
            present = [p for p in found.values() if p is not None]
            if not present:
                location = "missing"
            else:
                folders = sorted({str(p.parent) for p in present})
                location = ", ".join(folders)
                if len(present) < len(found):
                    absent = [k for k, p in found.items() if p is None]
                    location = f"partial: {location} (missing: {', '.join(absent)})"
        rows.append(
            {
                "name": spec.name,
                "splits": dict(spec.splits),
                "image_shape": spec.image_shape,
                "binarization": spec.binarization or "none (grey levels)",
                "location": location,
                "urls": [f.url for f in spec.files if f.url],
            }
        )
    return rows


def _brace(strings: Sequence[str]) -> str:
    """``["a/x.gz", "a/y.gz"]`` -> ``"a/{x,y}.gz"``."""
    if not strings:
        return "-"
    if len(strings) == 1:
        return strings[0]
    prefix = os.path.commonprefix(list(strings))
    while prefix and prefix[-1].isalnum():  # cut at a separator ('/', '_', '-', '.')
        prefix = prefix[:-1]
    suffix = os.path.commonprefix([s[len(prefix) :][::-1] for s in strings])[::-1]
    while suffix and suffix[0].isalnum():
        suffix = suffix[1:]
    middles = [s[len(prefix) : len(s) - len(suffix)] for s in strings]
    return f"{prefix}{{{','.join(middles)}}}{suffix}"


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return "x".join(str(v) for v in value)
    if isinstance(value, (list, tuple)):
        return _brace([str(v) for v in value])
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain text table of ``rows`` (e.g. from :func:`describe`), columns aligned.

    Dicts print as ``key value, ...``, integer tuples as ``28x28``, lists of strings with their
    common prefix and suffix factored out (``http://host/{a,b}.gz``).
    """
    if not rows:
        return "(no rows)"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)
