"""Finding, verifying and downloading data files.

Search order
------------
:func:`data_roots` gives the folders searched, in order:

1. ``root``, when passed to :func:`find_file` / :func:`pyrogen.data.load` (then *only* it);
2. otherwise ``$PYROGEN_DATA`` when that variable is set (e.g. ``../shared/data`` on this
   project's offline machines),
3. followed by the cache folder ``$XDG_CACHE_HOME/pyrogen`` (``~/.cache/pyrogen`` when
   ``XDG_CACHE_HOME`` is unset).

Each folder is laid out like the project's ``shared/data``: the registry's relative file names
(``mnist/train-images-idx3-ubyte.gz``, ...) below it.

A file found is verified against its SHA-256 (memoized per path, size and modification time
within the process); a mismatch raises :class:`~pyrogen.data.ChecksumError`. A file missing from
every folder is downloaded from its canonical address into the first writable folder (a
read-only ``$PYROGEN_DATA`` falls back to the cache folder) through a temporary file renamed
into place with :func:`os.replace` once verified, so no partial file is ever left behind.
``PYROGEN_NO_DOWNLOAD=1`` (or ``download=False``) disables downloading; a missing file then
raises :class:`~pyrogen.data.DatasetNotFoundError`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
import urllib.request
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

from .errors import ChecksumError, DatasetNotFoundError
from .parsers import omniglot_zip_to_npz
from .registry import DATASETS, RemoteFile

__all__ = [
    "CONVERTERS",
    "cache_dir",
    "data_roots",
    "download_disabled",
    "file_sha256",
    "find_file",
    "locate_file",
    "verify_file",
]

#: Seconds before a stalled connection is abandoned.
TIMEOUT = 30.0
_CHUNK = 1 << 20
_USER_AGENT = "pyrogen (https://github.com/pyro-ppl; data download)"

#: Conversion steps named by :attr:`RemoteFile.convert`: ``f(downloaded_path, output_path)``.
CONVERTERS: dict[str, Callable[[str, str], None]] = {"omniglot_zip": omniglot_zip_to_npz}

_FIX = (
    "Fix: set PYROGEN_DATA to a folder laid out like shared/data ({layout}), pass root=..., "
    "or run on a machine with internet access so that pyrogen can download it."
)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pyrogen``, or ``~/.cache/pyrogen`` when ``XDG_CACHE_HOME`` is unset."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "pyrogen").absolute()


def data_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for data files, in order (absolute paths).

    ``[root]`` when ``root`` is given; otherwise ``[$PYROGEN_DATA]`` (when set and non-empty)
    followed by :func:`cache_dir`.
    """
    if root is not None:
        return [Path(root).expanduser().absolute()]
    roots = []
    env = os.environ.get("PYROGEN_DATA")
    if env:
        roots.append(Path(env).expanduser().absolute())
    cache = cache_dir()
    if cache not in roots:
        roots.append(cache)
    return roots


def download_disabled() -> bool:
    """Whether ``PYROGEN_NO_DOWNLOAD`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get("PYROGEN_NO_DOWNLOAD", "").strip().lower() in {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------------------------
# hashing


_SHA_CACHE: dict[tuple[str, bool, int, int], str] = {}


def file_sha256(path: str | os.PathLike, decompress: bool = False) -> str:
    """SHA-256 (hex) of a file's bytes, or of its gzip-decompressed bytes if ``decompress``.

    Memoized per (path, decompress, size, modification time) within the process. A file that
    cannot be decompressed raises :class:`ChecksumError`.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.absolute()), decompress, st.st_size, st.st_mtime_ns)
    digest = _SHA_CACHE.get(key)
    if digest is None:
        h = hashlib.sha256()
        opener = gzip.open if decompress else open
        try:
            with opener(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except (OSError, EOFError, zlib.error) as e:
            if not decompress:
                raise
            raise ChecksumError(
                f"{path} cannot be decompressed ({type(e).__name__}: {e}), so its SHA-256 "
                "cannot be checked. The file is corrupt or incomplete: delete it and run again "
                "to re-download, or copy it again from the original source."
            ) from e
        digest = h.hexdigest()
        _SHA_CACHE[key] = digest
    return digest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".pyrogen.json")


def _expected_hash(path: Path, remote: RemoteFile) -> tuple[str | None, str]:
    """(expected sha256, description of what is hashed) for a found file."""
    if remote.convert is not None:
        side = _sidecar(path)
        if side.is_file():
            try:
                info = json.loads(side.read_text())
                return info["sha256"], f"recorded in {side.name} when it was converted"
            except (ValueError, KeyError, OSError):
                pass
    return remote.sha256, "published"


def _decompresses(path: Path, remote: RemoteFile) -> bool:
    return remote.hash_of == "content" and path.name.endswith(".gz")


def verify_file(path: str | os.PathLike, remote: RemoteFile, *, source: str | None = None) -> None:
    """Check ``path`` against ``remote.sha256``; raise :class:`ChecksumError` on a mismatch.

    Does nothing when no hash is known. For ``hash_of="content"`` a ``.gz`` file is checked
    through its decompressed bytes. A file made by a conversion step (Omniglot) is checked
    against the hash recorded next to it when it was converted. ``source`` overrides the path
    used to decide on decompression (for temporary files).
    """
    path = Path(path)
    expected, what = _expected_hash(Path(source) if source else path, remote)
    if expected is None:
        return
    decompress = _decompresses(Path(source) if source else path, remote)
    actual = file_sha256(path, decompress=decompress)
    if actual.lower() != expected.lower():
        content = " of the decompressed content" if decompress else ""
        origin = f" (canonical address: {remote.url})" if remote.url else ""
        raise ChecksumError(
            f"SHA-256{content} mismatch for {path}: expected {expected} ({what}), got "
            f"{actual}. The file is corrupt or incomplete: delete it and run again to "
            f"re-download, or copy it again from the original source{origin}."
        )


# ---------------------------------------------------------------------------------------------
# finding


def _as_remote(remote_file: RemoteFile | str) -> RemoteFile:
    if isinstance(remote_file, RemoteFile):
        return remote_file
    for spec in DATASETS.values():
        for f in spec.files:
            if remote_file in f.candidates:
                return f
    known = ", ".join(f.filename for s in DATASETS.values() for f in s.files)
    raise ValueError(f"remote_file: unknown file {remote_file!r}; registered files: {known}")


def locate_file(
    remote_file: RemoteFile | str, root: str | os.PathLike | None = None
) -> Path | None:
    """The first existing path of ``remote_file`` in :func:`data_roots`, unverified; or ``None``."""
    remote = _as_remote(remote_file)
    for r in data_roots(root):
        for cand in remote.candidates:
            p = r / cand
            if p.is_file():
                return p
    return None


def find_file(
    remote_file: RemoteFile | str,
    root: str | os.PathLike | None = None,
    download: bool = True,
    *,
    dataset: str | None = None,
) -> Path:
    """The path of a verified copy of ``remote_file``, downloading it when missing.

    :param remote_file: a :class:`RemoteFile` (or the registered relative file name).
    :param root: search only this folder (see :func:`data_roots`).
    :param download: download a missing file (also disabled by ``PYROGEN_NO_DOWNLOAD=1``).
    :param dataset: data set name used in error messages (default: the file's folder).
    :raises ChecksumError: a file found or downloaded does not match its SHA-256.
    :raises DatasetNotFoundError: missing everywhere and not downloadable.
    """
    remote = _as_remote(remote_file)
    roots = data_roots(root)
    label = dataset or remote.filename.split("/")[0]
    path = locate_file(remote, root)
    if path is not None:
        verify_file(path, remote)
        return path

    if not download or download_disabled():
        why = (
            "download=False"
            if not download
            else "PYROGEN_NO_DOWNLOAD is set; unset it to allow downloads"
        )
        where = f"its address is {remote.url}" if remote.url else "no download address is known"
        reason = f"Downloading is disabled ({why}); {where}."
        raise DatasetNotFoundError(_not_found(label, remote, roots, reason))
    if remote.url is None:
        reason = "No download address is known for it."
        raise DatasetNotFoundError(_not_found(label, remote, roots, reason))

    errors = []
    for r in roots:
        dest = r / remote.filename
        created = not dest.parent.exists()
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as e:
            errors.append(f"{r}: not writable ({e.strerror or e})")
            continue
        os.close(fd)
        try:
            _download_into(remote, tmp, dest)
        except ChecksumError:
            raise
        except Exception as e:  # network errors, HTTP errors, timeouts, bad archives
            reason = f"Download from {remote.url} failed: {type(e).__name__}: {e}."
            raise DatasetNotFoundError(_not_found(label, remote, roots, reason)) from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            if created and not dest.exists():
                with contextlib.suppress(OSError):
                    dest.parent.rmdir()  # only succeeds when empty
        return dest
    reason = f"Could not download it from {remote.url}: no writable folder ({'; '.join(errors)})."
    raise DatasetNotFoundError(_not_found(label, remote, roots, reason))


def _not_found(label: str, remote: RemoteFile, roots: list[Path], reason: str) -> str:
    alts = " or ".join(repr(a) for a in remote.alternatives)
    also = f" (or {alts})" if alts else ""
    where = ", ".join(str(r) for r in roots)
    notes = []
    env = os.environ.get("PYROGEN_DATA")
    if env and not Path(env).expanduser().is_dir():
        notes.append(f" (PYROGEN_DATA={env} is not a folder.)")
    layout = f"<folder>/{remote.filename}"
    return (
        f"{label}: could not find {remote.filename!r}{also} in: {where}.{''.join(notes)} "
        f"{reason} {_FIX.format(layout=layout)}"
    )


# ---------------------------------------------------------------------------------------------
# downloading


def _fetch(url: str, out_path: str, desc: str) -> None:
    """Stream ``url`` into ``out_path`` with a progress bar and a timeout."""
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        length = resp.headers.get("Content-Length") if resp.headers else None
        total = int(length) if length and length.isdigit() else None
        with (
            open(out_path, "wb") as f,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"pyrogen: {desc}",
                disable=None,
                leave=False,
            ) as bar,
        ):
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and os.path.getsize(out_path) != total:
            raise OSError(
                f"incomplete download: {os.path.getsize(out_path)} of {total} bytes received"
            )


def _download_into(remote: RemoteFile, tmp: str, dest: Path) -> None:
    """Download ``remote`` into the temporary ``tmp`` (same folder as ``dest``), verify it,
    convert it when needed, and move it to ``dest`` atomically."""
    assert remote.url is not None
    _fetch(remote.url, tmp, remote.filename)
    if remote.convert is None:
        try:
            verify_file(tmp, remote, source=str(dest))
        except ChecksumError as e:
            raise ChecksumError(
                f"The file downloaded from {remote.url} does not match its published SHA-256 "
                f"(nothing was saved to {dest}). {e}"
            ) from None
        os.replace(tmp, dest)
        return

    # Download is an archive that a conversion step turns into `dest`.
    if remote.url_sha256 is None:
        warnings.warn(
            f"{remote.url}: no SHA-256 is known for this download, so it is used unverified "
            f"(the file converted from it, {dest.name}, gets its hash recorded in "
            f"{_sidecar(dest).name} and is checked against that from now on).",
            stacklevel=3,
        )
    else:
        actual = file_sha256(tmp)
        if actual != remote.url_sha256:
            raise ChecksumError(
                f"SHA-256 mismatch for the file downloaded from {remote.url}: expected "
                f"{remote.url_sha256}, got {actual}. The download is corrupt or incomplete: "
                "run again to re-download."
            )
    converter = CONVERTERS[remote.convert]
    fd, converted = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    side_tmp = None
    try:
        converter(tmp, converted)
        digest = file_sha256(converted)
        info = {
            "sha256": digest,
            "source": remote.url,
            "note": (
                f"{dest.name} was converted by pyrogen ({remote.convert}) from {remote.url}; "
                "its bytes differ from copies made elsewhere, so it is verified against this "
                "hash instead of the published one."
            ),
        }
        side = _sidecar(dest)
        fd, side_tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{side.name}.", suffix=".part")
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=1)
        # The hash goes in place first: a file without its record would fail verification.
        os.replace(side_tmp, side)
        os.replace(converted, dest)
    finally:
        for leftover in (converted, side_tmp):
            if leftover:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(leftover)
