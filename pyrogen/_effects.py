"""Small helpers about Pyro's effect stack shared by models and inference code."""

from __future__ import annotations

from contextlib import contextmanager

import pyro
from pyro.poutine.indep_messenger import IndepMessenger
from pyro.poutine.runtime import _PYRO_STACK


def params_observed() -> bool:
    """Whether a ``pyro.param`` statement issued now could be seen by any handler.

    False only when every active messenger is a plate or declares ``ignores_params = True``
    (pyrogen's particle recorder does); then a module may skip registering its parameters
    with Pyro, which is a measurable saving in a millisecond training step. Under ``SVI``,
    ``poutine.trace``, or any other handler this is True and registration happens as usual.
    """
    for frame in _PYRO_STACK:
        if not (getattr(frame, "ignores_params", False) or isinstance(frame, IndepMessenger)):
            return True
    return False


class _DataPlates:
    """Re-entrant ``pyro.plate(name, size)`` objects, one per ``(name, size, device)``.

    Building a plate issues a subsample statement (an index tensor, settings lookups), which
    is a measurable share of a millisecond training step such as a PCD update of an RBM.
    Entering a cached plate behaves like entering a new one: its batch dimension is chosen
    afresh each time (``dim`` reset to ``None``), so it nests under any outer plates.
    """

    def __init__(self) -> None:
        self._plates: dict = {}

    @contextmanager
    def __call__(self, name: str, size: int, device=None):
        key = (name, int(size), None if device is None else str(device))
        plate = self._plates.get(key)
        if plate is None:
            if len(self._plates) > 256:
                self._plates.clear()
            plate = self._plates[key] = pyro.plate(name, size, device=device)
        plate.dim = None
        with plate as p:
            yield p


#: ``with data_plate("data", n):`` is ``with pyro.plate("data", n):`` without rebuilding it
data_plate = _DataPlates()
