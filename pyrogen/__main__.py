"""``python -m pyrogen``: the ``pyrogen`` command (what ``torchrun -m pyrogen`` starts)."""

import sys

from pyrogen.cli import main

if __name__ == "__main__":
    sys.exit(main())
