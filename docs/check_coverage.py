"""Fail unless the API reference has a page for every public module of pyrogen.

Run after ``sphinx-build`` (``make docs`` does): every importable module whose dotted name has
no component starting with an underscore must have ``docs/generated/<module>.rst``.
"""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

import pyrogen

GENERATED = Path(__file__).resolve().parent / "generated"


def public_modules() -> list[str]:
    names = ["pyrogen"]
    for info in pkgutil.walk_packages(pyrogen.__path__, prefix="pyrogen."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def main() -> int:
    missing = [m for m in public_modules() if not (GENERATED / f"{m}.rst").exists()]
    if missing:
        print(f"API reference: no page for {len(missing)} public module(s): {missing}")
        return 1
    print(f"API reference covers all {len(public_modules())} public modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
