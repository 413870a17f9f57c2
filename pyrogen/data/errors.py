"""Exceptions raised by :mod:`pyrogen.data`.

Both carry a message that names the file, where pyrogen looked for it and how to fix the
problem, so that a user never has to read the source to recover.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DatasetNotFoundError"]


class DatasetNotFoundError(FileNotFoundError):
    """A data file is missing from every data folder and could not be downloaded.

    Raised when the file is in none of the folders returned by
    :func:`pyrogen.data.data_roots` and downloading it is disabled
    (``download=False`` or ``PYROGEN_NO_DOWNLOAD=1``), impossible (no writable folder, no known
    address) or failed (no network, HTTP error, timeout).
    """


class ChecksumError(ValueError):
    """A data file's SHA-256 differs from the published one.

    The message names the file, the expected and the actual hash, and the fix: the file is
    corrupt or incomplete; delete it and run again to re-download it, or copy it again from the
    original source.
    """
