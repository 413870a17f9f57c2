"""Small helpers about Pyro's effect stack shared by models and inference code."""

from __future__ import annotations

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
