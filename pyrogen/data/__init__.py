"""pyrogen's data sets: registry, download with checksum, cache, parse, binarize, split.

>>> from pyrogen.data import load
>>> train = load("binarized_mnist", "train")            # doctest: +SKIP
>>> train.data.shape, train.binarization                 # doctest: +SKIP
(torch.Size([50000, 784]), 'fixed')

Where files are looked for (:func:`data_roots`), in order:

1. the ``root`` argument, when given (then only it);
2. otherwise ``$PYROGEN_DATA`` when set (offline machines point it at a folder laid out like the
   project's ``shared/data``), then
3. the cache folder ``$XDG_CACHE_HOME/pyrogen`` (``~/.cache/pyrogen`` by default).

Files found are checked against their SHA-256 (:class:`ChecksumError` on a mismatch); missing
ones are downloaded from their canonical public address into the first writable folder, unless
``PYROGEN_NO_DOWNLOAD=1`` or ``download=False`` (then :class:`DatasetNotFoundError`).
scikit-learn's ``digits`` needs no file at all.
"""

from .dataset import ImageDataset, clear_cache, describe, format_table, load
from .download import cache_dir, data_roots, file_sha256, find_file, locate_file, verify_file
from .errors import ChecksumError, DatasetNotFoundError
from .parsers import omniglot_zip_to_npz, parse_amat, parse_idx, read_amat, read_idx
from .registry import (
    BINARIZATIONS,
    DATASETS,
    DatasetSpec,
    RemoteFile,
    default_binarization,
    get_spec,
)

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "ChecksumError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "ImageDataset",
    "RemoteFile",
    "cache_dir",
    "clear_cache",
    "data_roots",
    "default_binarization",
    "describe",
    "file_sha256",
    "find_file",
    "format_table",
    "get_spec",
    "load",
    "locate_file",
    "omniglot_zip_to_npz",
    "parse_amat",
    "parse_idx",
    "read_amat",
    "read_idx",
    "verify_file",
]

from .text import CountDataset, load_20news  # noqa: E402

__all__ += ["CountDataset", "load_20news"]

from .faces import AugmentedFaces, augment_faces, lfw_patches, olivetti_faces  # noqa: E402

__all__ += ["AugmentedFaces", "augment_faces", "lfw_patches", "olivetti_faces"]

from .patches import natural_image_patches  # noqa: E402

__all__ += ["natural_image_patches"]

from .captions import CaptionDataset, load_mnist_captions  # noqa: E402

__all__ += ["CaptionDataset", "load_mnist_captions"]
