"""Model families by name.

Entries live in :mod:`pyrogen.families`, one module per family (see
:mod:`pyrogen.families.base` for what an entry is), and are found by :func:`load_families`
the first time a name is looked up. A new model appears in ``pyrogen train --help``, in the
contract tests and in :func:`pyrogen.runs.train_run` by adding a module there and nothing
else.
"""

from __future__ import annotations

import importlib
import pkgutil

from pyrogen.families.base import FAMILIES, DataInfo, Family, register

__all__ = ["FAMILIES", "DataInfo", "Family", "get_family", "load_families", "register"]

_LOADED = False


def load_families() -> dict[str, Family]:
    """Import every module of :mod:`pyrogen.families` (each registers its family) and
    return ``{name: family}``."""
    global _LOADED
    if not _LOADED:
        import pyrogen.families as package

        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name != "base":
                importlib.import_module(f"{package.__name__}.{info.name}")
        _LOADED = True
    return FAMILIES


def get_family(name: str) -> Family:
    """The family registered as ``name``; a ValueError listing the registered ones if none."""
    families = load_families()
    if name not in families:
        raise ValueError(f"unknown model family {name!r}; registered: {sorted(families)}")
    return families[name]
