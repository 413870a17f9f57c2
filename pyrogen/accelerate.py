r"""Mixed precision and compilation of a model's networks (``--precision bf16``,
``--compile``).

Both act on a model's *networks*: the plain ``torch.nn`` sub-modules that a Pyro model or
guide calls (encoders and decoders, NADE's and PixelCNN's nets, the MLPs of a Helmholtz
machine), found by :func:`network_modules`. Pyro's effect handlers, the distributions, the
log-densities, the importance log-weights and their ``logsumexp``, AIS weights and partition
functions stay outside, in float32 (or float64 where the model is):

* ``precision="bf16"`` runs each network's ``forward`` under ``torch.autocast`` (device type
  from the network's parameters; CPUs support bfloat16 autocast) while the module is in
  training mode, and casts its bfloat16 outputs back to float32, so everything computed from
  them -- densities, weights, bounds, losses -- is float32 by construction. Validation and
  evaluation (modules in evaluation mode) run in full precision.
* ``compile=True`` runs each network's ``forward`` through ``torch.compile``. Compiling a
  whole step does not work: Pyro's effect handlers (messengers on a global stack) break
  full-graph capture, so the networks are the practical unit. A network whose compilation
  fails falls back to eager execution with an :class:`AccelerationWarning` naming the model
  and the reason.

The evaluators (importance sampling, exact, AIS) are wrapped in :func:`full_precision`: they
turn any autocast a caller has entered off, so log-weights, ``logsumexp`` accumulators, AIS
weights and partition functions are never computed in reduced precision.

A model with no network (an RBM or a DBM, whose learners use the weight matrices directly)
is left as it is, with an :class:`AccelerationWarning` saying why.

.. code-block:: python

    from pyrogen.accelerate import accelerate

    accelerate(vae, precision="bf16", compile=True, name="vae")  # before training
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import weakref
from collections.abc import Callable, Iterable

import torch
from pyro.nn import PyroModule

__all__ = ["PRECISIONS", "AccelerationWarning", "accelerate", "full_precision", "network_modules"]

#: the precisions a run accepts: float32 throughout, or bfloat16 autocast in the networks
PRECISIONS = ("fp32", "bf16")

_CONTAINERS = (
    torch.nn.ModuleList,
    torch.nn.ModuleDict,
    torch.nn.ParameterList,
    torch.nn.ParameterDict,
)

#: network -> its compiled forward (kept off the module, so that copies compile their own)
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class AccelerationWarning(UserWarning):
    """``--precision`` or ``--compile`` could not be applied (in full); the run goes on in
    float32 / eagerly where it could not."""


def _has_forward(module: torch.nn.Module) -> bool:
    return type(module).forward is not torch.nn.Module.forward


def network_modules(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The outermost plain ``torch.nn`` sub-modules of ``module`` that define ``forward`` and
    hold parameters: what :func:`accelerate` autocasts and compiles. Pyro modules and
    containers (``ModuleList``, ...) are looked into, not taken.

    :param torch.nn.Module module: a model (usually a :class:`~pyro.nn.PyroModule`).
    :returns: ``(qualified name, module)`` pairs.
    """
    found = []

    def visit(prefix: str, m: torch.nn.Module) -> None:
        for name, child in m.named_children():
            qualified = f"{prefix}.{name}" if prefix else name
            if (
                isinstance(child, PyroModule)
                or isinstance(child, _CONTAINERS)
                or not _has_forward(child)
            ):
                visit(qualified, child)
            elif any(True for _ in child.parameters()):
                found.append((qualified, child))

    visit("", module)
    return found


def _as_float32(value):
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
    if isinstance(value, tuple | list):
        return type(value)(_as_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_float32(v) for k, v in value.items()}
    return value


def _eager_forward(self, *args, **kwargs):
    options = self._pyrogen_accelerate
    if options["precision"] == "bf16" and self.training:
        device_type = next(self.parameters()).device.type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            out = type(self).forward(self, *args, **kwargs)
        return _as_float32(out)
    return type(self).forward(self, *args, **kwargs)


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _accelerated_forward(self, *args, **kwargs):
    options = self._pyrogen_accelerate
    if options["compile"] and not options["failed"]:
        compiled = _COMPILED.get(self)
        if compiled is None:
            compiled = _COMPILED[self] = torch.compile(_eager_forward)
        try:
            return compiled(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 -- any compiler failure falls back
            options["failed"] = True
            _COMPILED.pop(self, None)
            warnings.warn(
                f"pyrogen: --compile: {options['name']}: torch.compile of its network "
                f"{type(self).__name__} failed ({_describe(error)}); running it eagerly",
                AccelerationWarning,
                stacklevel=2,
            )
    return _eager_forward(self, *args, **kwargs)


def accelerate(
    modules: torch.nn.Module | Iterable[torch.nn.Module],
    precision: str = "fp32",
    compile: bool = False,
    name: str | None = None,
) -> list[str]:
    """Run the networks of ``modules`` in bfloat16 autocast and / or through
    ``torch.compile`` (module docs). Parameters, ``state_dict`` keys and checkpoints do not
    change; calling it again replaces the earlier settings.

    :param modules: a model, or several (e.g. the stages of a staged learner).
    :param str precision: ``"fp32"`` (nothing changes) or ``"bf16"``.
    :param bool compile: compile the networks' ``forward``.
    :param str name: what warnings call the model (e.g. its family); default its class.
    :returns: the qualified names of the networks set up (empty when there are none).
    :raises ValueError: for an unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    modules = list(modules)
    label = name or ", ".join(sorted({type(m).__name__ for m in modules}))
    networks = []
    for module in modules:
        for qualified, net in network_modules(module):
            options = {"precision": precision, "compile": bool(compile), "name": label}
            options["failed"] = False
            net._pyrogen_accelerate = options
            _COMPILED.pop(net, None)
            if precision == "fp32" and not compile:
                net.__dict__.pop("forward", None)  # back to the class's forward
            else:
                net.forward = _accelerated_forward.__get__(net)
            networks.append(qualified)
    if not networks and (precision != "fp32" or compile):
        asked = " and ".join(
            flag
            for flag, on in (("--precision bf16", precision == "bf16"), ("--compile", compile))
            if on
        )
        warnings.warn(
            f"pyrogen: {asked}: {label} has no torch network to apply it to (its learner uses "
            "its parameters directly, and Pyro's effect handlers do not compile as one "
            "graph); training runs in float32, eagerly",
            AccelerationWarning,
            stacklevel=2,
        )
    return networks


def full_precision(fn: Callable) -> Callable:
    """Decorator: run ``fn`` with every active autocast (CPU, CUDA) turned off, so that what
    it computes keeps its inputs' precision even when the caller runs under
    ``torch.autocast`` (the evaluators' log-weights, ``logsumexp`` accumulators, AIS weights
    and partition functions).

    :param fn: the function to protect.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            for device_type in ("cpu", "cuda"):
                if torch.is_autocast_enabled(device_type):
                    stack.enter_context(torch.autocast(device_type, enabled=False))
            return fn(*args, **kwargs)

    return wrapped
