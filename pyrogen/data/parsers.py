"""Readers for the raw file formats of the registered data sets, and the Omniglot conversion.

* ``.amat`` (binarized MNIST): whitespace-separated ``0``/``1`` text, one image per line. Parsed
  with :func:`numpy.frombuffer` over the bytes (about 100x faster than :func:`numpy.loadtxt`).
* IDX (MNIST): big-endian header (magic ``0 0 <dtype> <ndim>``, then ``ndim`` uint32 sizes)
  followed by the array.
* Omniglot: the official zips of 105x105 PNGs (``images_background/<alphabet>/<character>/
  <drawer>.png``, ink black) converted into the ``.npz`` layout of ``shared/data``: ``images``
  (bool, ``(characters, drawers, 105, 105)``, ``True`` = white background, as read from the
  PNGs) and ``labels`` (int64 character index, ``(characters, drawers)``).

All readers accept plain or gzip-compressed files (decided by a ``.gz`` suffix).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import torch

__all__ = [
    "area_resize",
    "omniglot_zip_to_npz",
    "parse_amat",
    "parse_idx",
    "read_amat",
    "read_bytes",
    "read_idx",
    "read_omniglot_npz",
]

_ZERO, _ONE = ord("0"), ord("1")
_WHITESPACE = tuple(ord(c) for c in " \t\r\n")


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, decompressed when its name ends in ``.gz``."""
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def parse_amat(data: bytes, num_pixels: int = 784) -> np.ndarray:
    """Parse the text of a binary ``.amat`` file into a ``uint8`` array ``(N, num_pixels)``.

    The file holds one image per line, pixels as ``0``/``1`` separated by whitespace. The usual
    layout (each value followed by exactly one space or newline) is read by a strided view of the
    bytes; anything else (``\\r\\n`` line ends, repeated spaces) falls back to a per-line parse.
    Any character other than ``0``, ``1`` and whitespace, a multi-character token, or a line
    with a number of values other than ``num_pixels`` raises ``ValueError``.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ValueError("empty .amat data: expected lines of 0/1 pixel values")
    row_bytes = 2 * num_pixels
    if buf.size % row_bytes == 0:
        rows = buf.reshape(-1, row_bytes)
        values, seps = rows[:, 0::2], rows[:, 1::2]
        if (
            np.all(seps[:, :-1] == ord(" "))
            and np.all(seps[:, -1] == ord("\n"))
            and np.all((values == _ZERO) | (values == _ONE))
        ):
            return values - np.uint8(_ZERO)
    return _parse_amat_lines(data, num_pixels)


def _parse_amat_lines(data: bytes, num_pixels: int) -> np.ndarray:
    out = []
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        arr = np.frombuffer(line, dtype=np.uint8)
        is_digit = (arr == _ZERO) | (arr == _ONE)
        is_space = np.isin(arr, _WHITESPACE)
        if not np.all(is_digit | is_space):
            bad = int(np.argmin(is_digit | is_space))
            raise ValueError(
                f".amat line {lineno}: unexpected character {chr(arr[bad])!r}; expected only "
                "'0', '1' and whitespace (binary pixels)"
            )
        if np.any(is_digit[1:] & is_digit[:-1]):
            raise ValueError(
                f".amat line {lineno}: a value has more than one character; expected single "
                "'0'/'1' values separated by whitespace"
            )
        n = int(is_digit.sum())
        if n == 0:
            continue  # blank line (e.g. the end of the file)
        if n != num_pixels:
            raise ValueError(f".amat line {lineno}: expected {num_pixels} values, found {n}")
        out.append(arr[is_digit] - np.uint8(_ZERO))
    if not out:
        raise ValueError("no .amat rows found: expected lines of 0/1 pixel values")
    return np.stack(out)


def read_amat(path: str | os.PathLike, num_pixels: int = 784) -> np.ndarray:
    """Read a binary ``.amat`` or ``.amat.gz`` file (see :func:`parse_amat`)."""
    try:
        return parse_amat(read_bytes(path), num_pixels)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes) -> np.ndarray:
    """Parse IDX bytes (the MNIST format) into an array in native byte order.

    Header: two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, then one
    big-endian uint32 per dimension.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"not an IDX file: magic bytes {bytes(data[:4])!r}, expected 00 00 tt nn")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"IDX: unknown type code 0x{code:02x}")
    dtype = _IDX_DTYPES[code]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX: truncated header ({len(data)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"IDX: {len(data)} bytes for shape {dims}, expected {expected}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, plain or gzip-compressed (see :func:`parse_idx`)."""
    try:
        return parse_idx(read_bytes(path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def omniglot_zip_to_npz(zip_path: str | os.PathLike, npz_path: str | os.PathLike) -> None:
    """Convert an official Omniglot zip of PNGs into the ``.npz`` layout of ``shared/data``.

    The zip holds ``<set>/<alphabet>/<character>/<drawer>.png`` (105x105, ink black).
    Characters are numbered in sorted (alphabet, character) order and drawers in sorted file
    name order. The ``.npz`` gets ``images`` (bool ``(characters, drawers, H, W)``, ``True`` =
    white background, i.e. a PNG pixel >= 128), ``labels`` (int64 character index,
    ``(characters, drawers)``), and the names ``alphabets`` / ``characters`` (one per
    character). ``npz_path`` may be any name (it is written through a file object, so numpy
    does not append ``.npz``).
    """
    from PIL import Image  # pillow comes with matplotlib

    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            if not name.lower().endswith(".png"):
                continue
            parts = PurePosixPath(name).parts
            if len(parts) < 3:
                raise ValueError(f"{zip_path}: {name!r} is not <alphabet>/<character>/<drawer>.png")
            groups[(parts[-3], parts[-2])].append(name)
        if not groups:
            raise ValueError(f"{zip_path}: no PNG images found")
        keys = sorted(groups)
        counts = {len(groups[k]) for k in keys}
        if len(counts) != 1:
            raise ValueError(
                f"{zip_path}: characters have different numbers of drawers {sorted(counts)}"
            )
        drawers = counts.pop()
        images = None
        for c, key in enumerate(keys):
            for d, name in enumerate(sorted(groups[key])):
                with zf.open(name) as fh:
                    img = Image.open(io.BytesIO(fh.read()))
                    arr = np.asarray(img.convert("L")) >= 128
                if images is None:
                    images = np.empty((len(keys), drawers, *arr.shape), dtype=bool)
                if arr.shape != images.shape[2:]:
                    raise ValueError(
                        f"{zip_path}: {name!r} is {arr.shape}, expected {images.shape[2:]}"
                    )
                images[c, d] = arr
    labels = np.repeat(np.arange(len(keys), dtype=np.int64)[:, None], drawers, axis=1)
    with open(npz_path, "wb") as f:
        np.savez_compressed(
            f,
            images=images,
            labels=labels,
            alphabets=np.array([a for a, _ in keys]),
            characters=np.array([ch for _, ch in keys]),
        )


def read_omniglot_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an Omniglot ``.npz``: ``images`` (bool ``(C, drawers, H, W)``, ``True`` =
    background) and ``labels`` (int64 ``(C, drawers)``)."""
    with np.load(path, allow_pickle=False) as z:
        if "images" not in z.files or "labels" not in z.files:
            raise ValueError(f"{path}: expected arrays 'images' and 'labels', found {z.files}")
        images, labels = z["images"], z["labels"]
    if images.ndim != 4 or labels.shape != images.shape[:2]:
        raise ValueError(
            f"{path}: expected images (C, drawers, H, W) and labels (C, drawers), found "
            f"{images.shape} and {labels.shape}"
        )
    return images, labels


def area_resize(
    images: np.ndarray, size: tuple[int, int], *, invert: bool = False, chunk: int = 2048
) -> np.ndarray:
    """Resize ``(N, H, W)`` images to ``(N, *size)`` by area averaging (float32).

    Uses :func:`torch.nn.functional.adaptive_avg_pool2d`, i.e. each output pixel is the mean of
    the input pixels its area covers (windows overlap by one pixel where ``H / h`` is not an
    integer). With ``invert`` (bool images only) each image is negated first (``~x``).
    Processed in chunks to keep memory low.
    """
    if invert and images.dtype != np.bool_:
        raise ValueError(f"images: invert=True needs a bool array, found {images.dtype}")
    n = images.shape[0]
    out = np.empty((n, *size), dtype=np.float32)
    src = torch.from_numpy(np.ascontiguousarray(images))
    for i in range(0, n, chunk):
        x = src[i : i + chunk]
        if invert:
            x = ~x
        x = x.to(torch.float32).unsqueeze(1)
        out[i : i + chunk] = torch.nn.functional.adaptive_avg_pool2d(x, size).squeeze(1).numpy()
    return out
