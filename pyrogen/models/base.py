r"""The protocol every pyrogen model follows, and the pieces they share.

**Density models** (:class:`GenerativeModel`: VAEs, RBMs, DBMs, NADE, PixelCNN, ...) define a
distribution :math:`p(x)` over examples and offer, with the same signatures in every family:

``model(x, ...)`` / ``guide(x, ...)``
    Plain Pyro code: the batch inside ``pyro.plate("data", N)``, sample sites with stable,
    documented names. The guide may be empty (energy-based and autoregressive models have
    no latent sites). Any Pyro loss valid for the pair works with them.
``sample(num_samples, *, context=None)``
    ``(num_samples, *event_shape)`` draws from :math:`p(x)` (``context``: class labels or
    other conditioning, for models that take it). Models whose observations are drawn from
    a simple conditional :math:`p(x \mid \text{state})` (VAEs: :math:`p(x \mid z)`; RBMs and
    DBMs: :math:`p(v \mid h)` of the last Gibbs sweep) also accept ``mean=True``, which
    returns that conditional's mean instead, the usual picture of "samples"
    (:attr:`GenerativeModel.has_mean_samples`).
``log_likelihood(data, **options)``
    The mean test log-likelihood of ``data`` by the strongest estimator the family admits,
    as a :class:`~pyrogen.evaluate.LogLikelihood`: exact (autoregressive models, the
    linear-Gaussian model), importance sampling with the guide as proposal (VAEs), an exact
    or AIS partition function (RBMs), the mean-field bound with an AIS partition function
    (DBMs). ``pyrogen.evaluate.log_likelihood(model, data)`` calls it. Options its
    estimator does not take are a :class:`TypeError`.

**Deterministic models** (autoencoders, sparse coding, predictive sparse decomposition,
k-means features) define no density; they follow the sibling protocol
:class:`Representation`: ``fit(X)``, ``transform(X)`` (the codes; autoencoders also call it
``encode``) and ``reconstruct(X)``.

The pieces repeated across model classes live here once: a fresh Pyro name per instance
(two models in one process never share entries of Pyro's param store), the data width
``num_features`` and the image shape used to accept image-shaped input and draw grids, the
output-bias initialisation from training-set pixel means, registering parameters with Pyro
only when a handler can observe them, and the check that binary data are binary.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule

from pyrogen._checks import check_binary, flatten_images
from pyrogen._effects import params_observed
from pyrogen.nn.init import logit_of_mean

__all__ = [
    "GenerativeModel",
    "PyroModel",
    "Representation",
    "default_image_shape",
    "logit_of_mean",
]

_instance_ids = itertools.count()


def default_image_shape(
    num_features: int, image_shape: Sequence[int] | None = None
) -> tuple[int, ...]:
    """``image_shape`` checked against ``num_features``, or a square when none is given and
    ``num_features`` is one (``(1, D)`` otherwise)."""
    num_features = int(num_features)
    if image_shape is None:
        side = math.isqrt(num_features)
        return (side, side) if side * side == num_features else (1, num_features)
    shape = tuple(int(s) for s in image_shape)
    if math.prod(shape) != num_features:
        raise ValueError(
            f"image_shape {shape} does not hold num_features={num_features} values "
            f"(product {math.prod(shape)})"
        )
    return shape


class PyroModel(PyroModule):
    """What pyrogen's Pyro models share, density or not (see module docs).

    :param int num_features: :math:`D`, the width of one example.
    :param image_shape: ``(H, W)`` of one example (``H * W == D``); default a square when
        ``D`` is one.
    :param str name: Pyro name prefix of the parameters; default a fresh
        ``"<name_prefix><N>"``.
    """

    #: prefix of the fresh Pyro names of instances
    name_prefix: ClassVar[str] = "model"

    def __init__(
        self,
        num_features: int,
        image_shape: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            name=name if name is not None else f"{self.name_prefix}{next(_instance_ids)}"
        )
        if int(num_features) < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.num_features = int(num_features)
        self.image_shape = default_image_shape(num_features, image_shape)

    # ---- shared pieces -----------------------------------------------------------------

    def _observed(self, name: str):
        """The submodule or parameter ``name``, read through Pyro (which registers its
        parameters, what ``SVI`` and Pyro's ELBOs need) when a handler could observe
        ``pyro.param`` statements, and directly otherwise (a measurable saving in a
        millisecond training step; see :func:`pyrogen._effects.params_observed`)."""
        if params_observed():
            return getattr(self, name)
        found = self._modules.get(name)
        return found if found is not None else self._parameters[name]

    def _check_context(self, context) -> None:
        if context is not None:
            raise TypeError(f"context: {type(self).__name__} is unconditional and takes none")

    def _flatten(self, x, name: str = "x") -> torch.Tensor:
        """``x`` as ``(batch, num_features)``, accepting image-shaped input; a clear error
        naming the expected and the found shape otherwise."""
        return flatten_images(x, self.num_features, self.image_shape, name)

    def _binary_input(self, x, name: str = "x") -> torch.Tensor:
        """:meth:`_flatten`, then (with Pyro's validation on) the check that every value is
        0 or 1. Model and guide see the same batch object in a step, so the check (a host
        sync) runs once per batch: a weak reference and the tensor's version counter tell a
        new or modified batch from the one already checked."""
        x = self._flatten(x, name)
        if is_validation_enabled():
            ref, version = self.__dict__.get("_checked", (None, None))
            if ref is None or ref() is not x or version != x._version:
                check_binary(x, name)
                self.__dict__["_checked"] = (weakref.ref(x), x._version)
        return x


class GenerativeModel(PyroModel):
    """Base class of pyrogen's density models (see module docs for the protocol:
    ``model`` / ``guide``, ``sample``, ``log_likelihood``)."""

    #: whether :meth:`sample` accepts ``mean=True`` (see module docs)
    has_mean_samples: ClassVar[bool] = False

    @property
    def event_shape(self) -> torch.Size:
        """Shape of one example as :meth:`sample` returns it."""
        return torch.Size((self.num_features,))

    # ---- the protocol ------------------------------------------------------------------

    def model(self, x: torch.Tensor, *args, **kwargs):
        raise NotImplementedError

    def guide(self, x: torch.Tensor, *args, **kwargs):
        """Empty unless the model has latent sample sites."""

    def sample(self, num_samples: int, *, context: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def log_likelihood(self, data, **options):
        raise NotImplementedError

    def guide_importance_log_likelihood(self, data, context: Any = None, **options):
        """:func:`~pyrogen.evaluate.importance_log_likelihood` of ``data`` with the guide as
        proposal and the data plate as the one plate, the module in evaluation mode for the
        duration (its training mode restored after).

        ``context`` (conditioning input, e.g. captions: a tensor, or a tuple or list of
        tensors, each with one row per example of ``data``) is handed to model and guide as
        the keyword argument ``context=``, the rows of each batch with that batch. To keep
        them together however the evaluator cuts the data into batches (and shares the
        batches among processes), each example travels with its row number as one extra
        column of the data; the model and guide see the data without it. ``data`` must then
        be a tensor (or a pyrogen dataset with ``tensor()``) of at most :math:`2^{24}`
        float32 rows (the row numbers are exact in the data's floating-point type).
        """
        from pyrogen.evaluate.importance import importance_log_likelihood

        was_training = self.training
        self.eval()
        try:
            if context is None:
                return importance_log_likelihood(
                    self.model, self.guide, data, max_plate_nesting=1, **options
                )
            if hasattr(data, "tensor") and callable(data.tensor):
                data = data.tensor()
            if not isinstance(data, torch.Tensor):
                raise TypeError(
                    "data: with a context, expected a tensor of examples, got "
                    f"{type(data).__name__}"
                )
            if data.dim() == 0 or data.shape[0] == 0:
                raise ValueError(
                    f"data: expected a non-empty batch of examples, got {tuple(data.shape)}"
                )
            n, shape = data.shape[0], data.shape[1:]
            parts = list(context) if isinstance(context, tuple | list) else [context]
            for i, part in enumerate(parts):
                if not isinstance(part, torch.Tensor) or part.dim() == 0 or part.shape[0] != n:
                    found = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part)
                    raise ValueError(
                        f"context: every part needs one row per example of data ({n}); "
                        f"part {i} is {found}"
                    )
            flat = data.reshape(n, -1)
            if not flat.is_floating_point():
                flat = flat.to(torch.get_default_dtype())
            if n > 2 / torch.finfo(flat.dtype).eps:  # 2**24 for float32
                raise ValueError(
                    f"data: {n} examples are more than the row numbers {flat.dtype} holds "
                    "exactly; evaluate in chunks"
                )
            index = torch.arange(n, device=flat.device, dtype=flat.dtype)
            rows = torch.cat([flat, index[:, None]], dim=1)
            on_device: dict = {}

            def split(batch: torch.Tensor):
                idx = batch[:, -1].long()
                if idx.device not in on_device:
                    on_device[idx.device] = [p.to(idx.device) for p in parts]
                picked = [p[idx] for p in on_device[idx.device]]
                ctx = type(context)(picked) if isinstance(context, tuple | list) else picked[0]
                return batch[:, :-1].reshape(batch.shape[0], *shape), ctx

            def model(batch, *args, **kwargs):
                x, ctx = split(batch)
                return self.model(x, *args, context=ctx, **kwargs)

            def guide(batch, *args, **kwargs):
                x, ctx = split(batch)
                return self.guide(x, *args, context=ctx, **kwargs)

            options.setdefault("device", next((p.device for p in self.parameters()), None))
            return importance_log_likelihood(model, guide, rows, max_plate_nesting=1, **options)
        finally:
            self.train(was_training)

    def to_unit_interval(self, samples: torch.Tensor) -> torch.Tensor:
        """:meth:`sample` output as values in [0, 1], for pictures (the identity for binary
        data and probabilities)."""
        return samples


@runtime_checkable
class Representation(Protocol):
    """The protocol of pyrogen's deterministic models (no density): autoencoders, sparse
    coding, predictive sparse decomposition, k-means features.

    ``fit(X)`` learns from ``(n, D)`` examples and returns the model; ``transform(X)`` gives
    their codes ``(n, K)``; ``reconstruct(X)`` gives the reconstructions ``(n, D)`` decoded
    from those codes.
    """

    def fit(self, X, *args, **kwargs) -> Any: ...

    def transform(self, X) -> Any: ...

    def reconstruct(self, X) -> Any: ...
