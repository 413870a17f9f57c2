"""Tests of pyrogen.data: registry, parsers, checksums, roots, downloads, binarization.

Tests marked by the ``data_root`` fixture read the real files from ``$PYROGEN_DATA`` (CI sets
``PYROGEN_DATA=../shared/data``) and are skipped when it is unset or not a folder. Every test
runs with ``PYROGEN_NO_DOWNLOAD=1`` and a temporary ``XDG_CACHE_HOME`` unless it says otherwise,
so nothing is ever downloaded or written outside ``tmp_path`` by accident.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import pyrogen.data.download as download_mod
from pyrogen.data import (
    DATASETS,
    ChecksumError,
    DatasetNotFoundError,
    ImageDataset,
    RemoteFile,
    data_roots,
    describe,
    find_file,
    format_table,
    load,
    omniglot_zip_to_npz,
    parse_amat,
    parse_idx,
    read_amat,
    read_idx,
)
from pyrogen.data.dataset import _digits_split_indices

_DATA_ENV = os.environ.get("PYROGEN_DATA")

BINARY_SETS = {"binarized_mnist", "caltech101_silhouettes", "digits"}
GREY_SETS = {"mnist", "omniglot"}
ALL_SPLITS = [(name, split) for name, spec in DATASETS.items() for split in spec.splits]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No downloads and a private cache folder for every test."""
    monkeypatch.setenv("PYROGEN_NO_DOWNLOAD", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def data_root() -> Path:
    """The real data folder from $PYROGEN_DATA (skip when absent)."""
    if not _DATA_ENV:
        pytest.skip("PYROGEN_DATA is not set (point it at a folder laid out like shared/data)")
    root = Path(_DATA_ENV).expanduser()
    if not root.is_dir():
        pytest.skip(f"PYROGEN_DATA={_DATA_ENV} is not a folder")
    return root


def _needs_data(request, name: str) -> None:
    if DATASETS[name].needs_download:
        request.getfixturevalue("data_root")


def _centre_spread(images: torch.Tensor) -> tuple[float, float]:
    """Mean ink-weighted variance of the row and of the column coordinate."""
    n, h, w = images.shape
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    mass = images.sum((1, 2)).clamp_min(1e-6)
    r0 = (images * rows).sum((1, 2)) / mass
    c0 = (images * cols).sum((1, 2)) / mass
    var_r = (images * (rows - r0.view(-1, 1, 1)) ** 2).sum((1, 2)) / mass
    var_c = (images * (cols - c0.view(-1, 1, 1)) ** 2).sum((1, 2)) / mass
    return var_r.mean().item(), var_c.mean().item()


def _file_url(path: Path) -> str:
    return path.absolute().as_uri()


# ---------------------------------------------------------------------------------------------
# shapes, counts, values


@pytest.mark.parametrize(("name", "split"), ALL_SPLITS)
def test_counts_shapes_and_values(request, name, split):
    _needs_data(request, name)
    spec = DATASETS[name]
    ds = load(name, split)
    h, w = spec.image_shape
    assert isinstance(ds, ImageDataset)
    assert len(ds) == spec.splits[split]
    assert ds.data.shape == (spec.splits[split], h * w)
    assert ds.data.dtype == torch.float32
    assert ds.image_shape == spec.image_shape and ds.num_features == h * w
    assert ds.name == name and ds.split == split
    assert ds[0].shape == (h * w,)
    assert ds.__getitems__([0, 2, 1]).shape == (3, h * w)
    values = torch.unique(ds.data)
    if name in BINARY_SETS:
        assert values.tolist() == [0.0, 1.0]
        assert ds.binarization == "fixed" and ds.is_binary
    else:
        assert 0.0 <= values.min().item() and values.max().item() <= 1.0
        assert len(values) > 2, "grey-level set came out binary"
        assert ds.binarization is None and not ds.is_binary
    if name == "binarized_mnist":
        assert ds.labels is None
    else:
        assert ds.labels is not None and ds.labels.dtype == torch.int64
        assert ds.labels.shape == (len(ds),)
        n_classes = {"mnist": 10, "digits": 10, "caltech101_silhouettes": 101}.get(name)
        if name == "omniglot":
            n_classes = spec.splits[split] // 20  # characters x 20 drawers
        assert ds.labels.min().item() == 0 and ds.labels.max().item() == n_classes - 1


def test_binarized_mnist_mean_intensity(data_root):
    # MNIST's mean grey level is 0.1307; a transposed file keeps it but an inverted one gives
    # 0.87 and a misparsed one anything. Tolerance 0.005 (observed 0.1306).
    ds = load("binarized_mnist", "train")
    assert abs(ds.data.mean().item() - 0.1307) < 0.005


@pytest.mark.parametrize("name", ["mnist", "binarized_mnist"])
def test_mnist_images_are_upright(data_root, name):
    x = load(name, "test").tensor().view(-1, 28, 28)
    # Ink is centred (centre of mass within 1.5 px of the middle) ...
    mass = x.sum(0)
    r = (mass.sum(1) * torch.arange(28.0)).sum() / mass.sum()
    c = (mass.sum(0) * torch.arange(28.0)).sum() / mass.sum()
    assert abs(r.item() - 13.5) < 1.5 and abs(c.item() - 13.5) < 1.5
    # ... the first and last rows are almost empty ...
    assert x[:, 0].mean().item() < 0.005 and x[:, 27].mean().item() < 0.005
    # ... and digits are taller than wide (a transpose swaps this; observed ratio 2.0).
    var_rows, var_cols = _centre_spread(x)
    assert var_rows > 1.5 * var_cols


def test_mnist_not_upside_down(data_root):
    ds = load("mnist", "train")
    x = ds.images()

    def top_fraction(label):
        xi = x[ds.labels == label]
        return (xi[:, :14].sum() / xi.sum()).item()

    # A 9 has its loop at the top, a 6 at the bottom (observed 0.50 vs 0.40).
    assert top_fraction(9) - top_fraction(6) > 0.05


def test_omniglot_ink_is_one_and_sparse(data_root):
    for split in ("train", "test"):
        ds = load("omniglot", split)
        x = ds.images()
        assert x.mean().item() < 0.15  # ink covers ~8% of the page
        assert x[:, 0].mean().item() < 0.01 and x[:, -1].mean().item() < 0.01
        assert x[:, 10:18, 10:18].mean().item() > 2 * x.mean().item()  # strokes near the centre
        assert "NOT the 28x28 split of Burda" in repr(ds)
    assert "NOT the 28x28" in DATASETS["omniglot"].description


def test_caltech_silhouettes_orientation(data_root):
    ds = load("caltech101_silhouettes", "train+valid")
    assert ds.class_names is not None and len(ds.class_names) == 101
    obj = (ds.images() == 0).float()  # the file's polarity: object 0, background 1
    assert ds.data.mean().item() > 0.5

    def subset(cls):
        return obj[ds.labels == ds.class_names.index(cls)]

    # Side views of airplanes are wide (observed variance ratio 2.0), faces tall.
    var_r, var_c = _centre_spread(subset("Airplanes Side 2"))
    assert var_c > 1.5 * var_r
    var_r, var_c = _centre_spread(subset("Faces 2"))
    assert var_r > 1.2 * var_c
    # Pyramids are heavy at the bottom (observed 31% in the top half), umbrellas at the top.
    pyr, umb = subset("pyramid"), subset("umbrella")
    assert (pyr[:, :14].sum() / pyr.sum()).item() < 0.4
    assert (umb[:, :14].sum() / umb.sum()).item() > 0.65


def test_train_valid_is_concatenation(data_root):
    both = load("binarized_mnist", "train+valid")
    train, valid = load("binarized_mnist", "train"), load("binarized_mnist", "valid")
    assert torch.equal(both.data, torch.cat([train.data, valid.data]))


def test_digits_needs_no_files(monkeypatch, tmp_path):
    monkeypatch.delenv("PYROGEN_DATA", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    parts = {s: load("digits", s, root=empty) for s in ("train", "valid", "test")}
    assert [len(parts[s]) for s in parts] == [1257, 180, 360]
    assert parts["train"].image_shape == (8, 8)
    idx = np.concatenate([_digits_split_indices(s) for s in ("train", "valid", "test")])
    assert sorted(idx.tolist()) == list(range(1797))  # disjoint and complete
    # The split is fixed: same indices on a second call.
    assert np.array_equal(_digits_split_indices("valid"), _digits_split_indices("valid"))
    assert list(empty.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# parsers


def _write_amat(path: Path, arr: np.ndarray) -> None:
    np.savetxt(path, arr, fmt="%d")


def test_parse_amat_matches_loadtxt(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.random((7, 784)) < 0.3).astype(np.uint8)
    plain = tmp_path / "x.amat"
    _write_amat(plain, arr)
    expected = np.loadtxt(plain)
    np.testing.assert_array_equal(read_amat(plain), expected)
    gz = tmp_path / "x.amat.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_amat(gz), expected)
    # Irregular whitespace (CRLF, repeated spaces, trailing blank lines) takes the slow path.
    text = "\r\n".join("  ".join(str(v) for v in row) + " " for row in arr) + "\r\n\n"
    irregular = tmp_path / "y.amat"
    irregular.write_text(text)
    np.testing.assert_array_equal(read_amat(irregular), expected)
    assert read_amat(plain).dtype == np.uint8


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0 1 2 0\n", "unexpected character"),
        ("0 1 0.5 0\n", "unexpected character"),
        ("0 1 10 0\n", "more than one character"),
        ("0 1 0\n", "expected 4 values, found 3"),
        ("", "empty"),
    ],
)
def test_parse_amat_rejects_bad_input(text, match):
    with pytest.raises(ValueError, match=match):
        parse_amat(text.encode(), num_pixels=4)


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def test_parse_idx(tmp_path):
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    np.testing.assert_array_equal(parse_idx(_idx_bytes(a, 0x08)), a)
    b = np.array([[-70000, 3], [5, 123456]], dtype=np.int32)
    parsed = parse_idx(_idx_bytes(b, 0x0C))
    np.testing.assert_array_equal(parsed, b)
    assert parsed.dtype == np.dtype("int32")  # native byte order
    gz = tmp_path / "a-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(_idx_bytes(a, 0x08)))
    np.testing.assert_array_equal(read_idx(gz), a)
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01\x00\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="bytes for shape"):
        parse_idx(_idx_bytes(a, 0x08)[:-1])


def _png(draw_ink: bool, size: int = 105) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("1", (size, size), 1)  # white page
    if draw_ink:
        ImageDraw.Draw(img).line([(10, 10), (80, 10)], fill=0, width=3)  # black stroke, top
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _omniglot_zip(path: Path) -> None:
    # Two alphabets written in reverse order, 2 characters each, 3 drawers (PNG names unsorted).
    with zipfile.ZipFile(path, "w") as zf:
        for alphabet in ("Zulu_script", "Alpha"):
            for character in ("character02", "character01"):
                for drawer in ("0003_03.png", "0003_01.png", "0003_02.png"):
                    ink = character == "character01" and drawer == "0003_01.png"
                    name = f"images_background/{alphabet}/{character}/{drawer}"
                    zf.writestr(name, _png(ink))


def test_omniglot_zip_to_npz(tmp_path):
    zpath = tmp_path / "images_background.zip"
    _omniglot_zip(zpath)
    out = tmp_path / "out.npz.part"  # any name: numpy must not append ".npz"
    omniglot_zip_to_npz(zpath, out)
    assert out.is_file() and not (tmp_path / "out.npz.part.npz").exists()
    with np.load(out) as z:
        images, labels = z["images"], z["labels"]
        assert z["alphabets"].tolist() == ["Alpha", "Alpha", "Zulu_script", "Zulu_script"]
        assert z["characters"].tolist() == ["character01", "character02"] * 2
    assert images.shape == (4, 3, 105, 105) and images.dtype == bool
    assert labels.tolist() == [[0] * 3, [1] * 3, [2] * 3, [3] * 3]
    # True = white background as in shared/data; the stroke is False, only in the first
    # drawer (sorted by name) of each alphabet's character01.
    assert not images[0, 0, 10, 40] and not images[2, 0, 10, 40]
    assert images[0, 1].all() and images[1].all() and images[0, 0, 50:].all()


# ---------------------------------------------------------------------------------------------
# roots, errors


def test_data_roots_order(monkeypatch, tmp_path):
    monkeypatch.setenv("PYROGEN_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_roots(tmp_path / "r") == [tmp_path / "r"]
    assert data_roots() == [tmp_path / "env", tmp_path / "xdg" / "pyrogen"]
    monkeypatch.delenv("PYROGEN_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_roots() == [Path.home() / ".cache" / "pyrogen"]


def test_missing_files_with_downloads_disabled(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load("binarized_mnist", "test", root=tmp_path)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "binarized_mnist/binarized_mnist_test.amat" in msg and ".amat.gz" in msg
    assert str(tmp_path) in msg
    assert "PYROGEN_NO_DOWNLOAD" in msg and "PYROGEN_DATA" in msg and "root=" in msg
    assert list(tmp_path.rglob("*")) == []  # nothing was created
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load("mnist", "test", root=tmp_path, download=False)


def test_unknown_name_split_and_binarization():
    with pytest.raises(ValueError, match="Did you mean 'binarized_mnist'") as info:
        load("binarized_mnsit")
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="'train', 'valid', 'test'"):
        load("digits", "validation")
    with pytest.raises(ValueError, match="no validation split"):
        load("mnist", "valid")
    with pytest.raises(ValueError, match="already binary"):
        load("digits", binarize="dynamic")
    with pytest.raises(ValueError, match="'dynamic', 'stochastic', 'threshold'"):
        load("digits", binarize="otsu")
    with pytest.raises(ValueError, match="only for sets shipped binary"):
        load("mnist", binarize="fixed")
    assert load("digits", binarize="fixed").binarization == "fixed"


def _copy_into(src_root: Path, rel: str, dst_root: Path) -> Path:
    dst = dst_root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_root / rel, dst)
    return dst


def _flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    st = path.stat()  # make sure the (size, mtime) memo sees a change even on coarse clocks
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_corrupt_file_raises_checksum_error(data_root, tmp_path):
    rel = DATASETS["caltech101_silhouettes"].files[0].filename
    path = _copy_into(data_root, rel, tmp_path)
    assert len(load("caltech101_silhouettes", "test", root=tmp_path)) == 2307  # verified OK
    _flip_byte(path, path.stat().st_size // 2)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as info:
        load("caltech101_silhouettes", "test", root=tmp_path)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in msg
    assert DATASETS["caltech101_silhouettes"].files[0].sha256 in msg and actual in msg
    assert "corrupt or incomplete: delete it and run again to re-download" in msg


def test_amat_plain_and_gz_checked_by_content(data_root, tmp_path):
    rel = "binarized_mnist/binarized_mnist_test.amat"
    content = gzip.decompress((data_root / (rel + ".gz")).read_bytes())
    (tmp_path / "binarized_mnist").mkdir()
    # An uncompressed .amat is accepted (same content hash as the .gz copies).
    (tmp_path / rel).write_bytes(content)
    plain = load("binarized_mnist", "test", root=tmp_path)
    assert torch.equal(plain.data, load("binarized_mnist", "test").data)
    # A well-formed gzip of altered content fails on the decompressed hash.
    (tmp_path / rel).unlink()
    altered = bytearray(content)
    altered[1000] = ord("1") if altered[1000] == ord("0") else ord("0")
    (tmp_path / (rel + ".gz")).write_bytes(gzip.compress(bytes(altered), compresslevel=1))
    with pytest.raises(ChecksumError, match="decompressed content") as info:
        load("binarized_mnist", "test", root=tmp_path)
    assert hashlib.sha256(bytes(altered)).hexdigest() in str(info.value)
    # A truncated gzip cannot be decompressed: still a ChecksumError naming the file.
    gz = tmp_path / (rel + ".gz")
    gz.write_bytes(gzip.compress(content, compresslevel=1)[:5000])
    with pytest.raises(ChecksumError, match="cannot be decompressed"):
        load("binarized_mnist", "test", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# downloads (file:// URLs; no network)


def _local_remote(data_root: Path, rel: str) -> RemoteFile:
    spec_file = next(f for s in DATASETS.values() for f in s.files if f.filename == rel)
    return dataclasses.replace(spec_file, url=_file_url(data_root / rel))


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_download_lands_atomically_and_verifies(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("PYROGEN_NO_DOWNLOAD")
    rel = "mnist/t10k-labels-idx1-ubyte.gz"
    remote = _local_remote(data_root, rel)
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(download_mod.os, "replace", spy)
    root = tmp_path / "root"
    path = find_file(remote, root=root)
    assert path == root / rel
    assert path.read_bytes() == (data_root / rel).read_bytes()
    # Written to a temporary file in the same folder, then renamed into place.
    assert len(replaced) == 1 and replaced[0][1] == path
    assert replaced[0][0].parent == path.parent and replaced[0][0] != path
    assert _leftovers(root) == []
    # Found (not downloaded) the second time.
    assert find_file(remote, root=root) == path and len(replaced) == 1

    # A download whose hash does not match is not kept.
    bad = dataclasses.replace(remote, filename="mnist/other.gz", sha256="0" * 64)
    with pytest.raises(ChecksumError, match="does not match its published SHA-256"):
        find_file(bad, root=root)
    assert not (root / "mnist/other.gz").exists() and _leftovers(root) == []


def test_load_downloads_missing_files(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("PYROGEN_NO_DOWNLOAD")
    spec = DATASETS["mnist"]
    files = tuple(_local_remote(data_root, f.filename) for f in spec.files)
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(spec, files=files))
    ds = load("mnist", "test", root=tmp_path)
    assert len(ds) == 10000
    assert (tmp_path / "mnist/t10k-images-idx3-ubyte.gz").is_file()
    assert not (tmp_path / "mnist/train-images-idx3-ubyte.gz").exists()  # only what is needed


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("PYROGEN_NO_DOWNLOAD")
    missing_url = _file_url(tmp_path / "nowhere" / "t10k-labels-idx1-ubyte.gz")
    remote = dataclasses.replace(DATASETS["mnist"].files[3], url=missing_url)
    root = tmp_path / "root"
    with pytest.raises(DatasetNotFoundError) as info:
        find_file(remote, root=root)
    msg = str(info.value)
    assert missing_url in msg and "failed" in msg and "URLError" in msg
    assert str(root) in msg
    assert not (root / remote.filename).exists() and _leftovers(tmp_path) == []


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.delenv("PYROGEN_NO_DOWNLOAD")

    class Broken:
        headers = {"Content-Length": "100000"}

        def __init__(self):
            self.sent = False

        def read(self, n):
            if not self.sent:
                self.sent = True
                return b"x" * 1000
            raise TimeoutError("timed out")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda req, timeout: Broken())
    root = tmp_path / "root"
    remote = DATASETS["mnist"].files[3]
    with pytest.raises(DatasetNotFoundError, match="TimeoutError: timed out") as info:
        find_file(remote, root=root)
    assert remote.url in str(info.value)
    assert not (root / remote.filename).exists() and _leftovers(tmp_path) == []


def test_unwritable_data_folder_falls_back_to_cache(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("PYROGEN_NO_DOWNLOAD")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PYROGEN_DATA", str(blocker / "data"))  # cannot be created
    rel = "mnist/t10k-labels-idx1-ubyte.gz"
    path = find_file(_local_remote(data_root, rel))
    assert path == tmp_path / "xdg-cache" / "pyrogen" / rel


def test_download_disabled_by_environment(data_root, tmp_path):
    remote = _local_remote(data_root, "mnist/t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError, match="PYROGEN_NO_DOWNLOAD is set"):
        find_file(remote, root=tmp_path / "root")
    assert not (tmp_path / "root").exists()


def test_omniglot_download_converts_zip(tmp_path, monkeypatch):
    monkeypatch.delenv("PYROGEN_NO_DOWNLOAD")
    zpath = tmp_path / "images_background.zip"
    _omniglot_zip(zpath)
    remote = dataclasses.replace(DATASETS["omniglot"].files[0], url=_file_url(zpath))
    root = tmp_path / "root"
    with pytest.warns(UserWarning, match="no SHA-256 is known"):
        path = find_file(remote, root=root)
    assert path == root / "omniglot/images_background.npz"
    with np.load(path) as z:
        assert z["images"].shape == (4, 3, 105, 105)
    assert (root / "omniglot/images_background.npz.pyrogen.json").is_file()
    assert _leftovers(root) == []
    # Found again: checked against the hash recorded at conversion, not the published one.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_file(remote, root=root) == path
    _flip_byte(path, 100)
    with pytest.raises(ChecksumError, match="recorded in images_background.npz.pyrogen.json"):
        find_file(remote, root=root)


def test_omniglot_npz_checked_against_published_hash(data_root, tmp_path):
    rel = "omniglot/images_evaluation.npz"
    path = _copy_into(data_root, rel, tmp_path)
    remote = DATASETS["omniglot"].files[1]
    assert find_file(remote, root=tmp_path) == path
    _flip_byte(path, 10)
    with pytest.raises(ChecksumError, match="published"):
        find_file(remote, root=tmp_path)


# ---------------------------------------------------------------------------------------------
# binarization


def test_dynamic_binarization(data_root):
    grey = load("mnist", "test")
    ds = load("mnist", "test", binarize="dynamic")
    assert ds.binarization == "dynamic" and ds.is_binary
    assert torch.equal(ds.data, grey.data)  # grey levels kept
    first, second = ds[0], ds[0]  # two "epochs"
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    torch.manual_seed(123)
    a = ds.__getitems__([5, 6, 7])
    torch.manual_seed(123)
    b = ds.__getitems__([5, 6, 7])
    assert a.shape == (3, 784) and torch.equal(a, b)

    state = torch.get_rng_state()
    t0, t1 = ds.tensor(seed=0), ds.tensor(seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # local generator only
    assert torch.equal(t0, t1) and not torch.equal(t0, ds.tensor(seed=1))
    assert t0.unique().tolist() == [0.0, 1.0]
    # 7.84M Bernoulli draws: the mean is within 0.002 of the grey-level mean (std ~1e-4).
    assert abs(t0.mean().item() - grey.data.mean().item()) < 0.002
    stochastic = load("mnist", "test", binarize="stochastic", seed=0)
    assert stochastic.binarization == "stochastic" and torch.equal(stochastic.data, t0)
    assert torch.equal(stochastic[3], stochastic[3])
    assert torch.equal(grey.tensor(), grey.data)


def test_threshold_binarization(data_root):
    grey = load("omniglot", "test")
    ds = load("omniglot", "test", binarize="threshold")
    assert ds.binarization == "threshold"
    assert torch.equal(ds.data, (grey.data > 0.5).float())


def test_dataloader_batches(data_root, monkeypatch):
    ds = load("mnist", "test", binarize="dynamic")
    calls = []
    real = ImageDataset.__getitems__
    monkeypatch.setattr(
        ImageDataset, "__getitems__", lambda self, idx: calls.append(len(idx)) or real(self, idx)
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, shuffle=True, collate_fn=ImageDataset.collate
    )
    batch = next(iter(loader))
    assert batch.shape == (64, 784) and set(batch.unique().tolist()) <= {0.0, 1.0}
    assert calls == [64]  # one batched fetch, not 64 single ones
    sizes = [len(b) for b in ds.loader(batch_size=4000)]
    assert sizes == [4000, 4000, 2000]
    assert ImageDataset.collate([ds.data[0], ds.data[1]]).shape == (2, 784)


def test_image_dataset_validates_input():
    with pytest.raises(ValueError, match="image_shape"):
        ImageDataset(torch.zeros(3, 10), image_shape=(3, 3))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        ImageDataset(torch.full((3, 4), 2.0), image_shape=(2, 2))
    with pytest.raises(ValueError, match="requires values in"):
        ImageDataset(torch.full((3, 4), 0.5), image_shape=(2, 2), binarization="fixed")
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), image_shape=(2, 2))
    ds = ImageDataset(torch.zeros(3, 4), image_shape=(2, 2), name="toy", split="test")
    assert re.search(r"name='toy', split='test', N=3, image_shape=\(2, 2\)", repr(ds))


# ---------------------------------------------------------------------------------------------
# describe


def test_describe_and_table(tmp_path, monkeypatch):
    monkeypatch.delenv("PYROGEN_DATA", raising=False)
    rows = describe(root=tmp_path)
    assert [r["name"] for r in rows] == list(DATASETS)
    by_name = {r["name"]: r for r in rows}
    assert by_name["digits"]["location"] == "shipped with scikit-learn"
    assert by_name["mnist"]["location"] == "missing"
    assert by_name["binarized_mnist"]["splits"]["train"] == 50000
    assert len(by_name["binarized_mnist"]["urls"]) == 3
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["name", "splits", "image_shape"]
    assert len(lines) == 2 + len(rows)
    assert all(name in table for name in DATASETS)
    col = lines[0].index("location")
    assert all(line[col:].startswith("missing") for line in lines[2:] if "mnist " in line)
    # A partly present set says which files are missing.
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    row = {r["name"]: r for r in describe(root=tmp_path)}["mnist"]
    assert row["location"].startswith("partial:") and "train-images" in row["location"]


def test_describe_finds_real_files(data_root):
    rows = {r["name"]: r for r in describe()}
    for name in ("binarized_mnist", "mnist", "omniglot", "caltech101_silhouettes"):
        assert rows[name]["location"] == str((data_root / name).absolute())
    # find_file also takes a registered file name and returns the verified copy found.
    rel = "mnist/t10k-labels-idx1-ubyte.gz"
    assert find_file(rel) == (data_root / rel).absolute()
    with pytest.raises(ValueError, match="unknown file"):
        find_file("mnist/nonexistent.gz")
