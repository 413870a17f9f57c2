"""Input checks shared by pyrogen's models (clear errors that name the argument)."""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def flatten_images(
    x: object, num_features: int, image_shape: Sequence[int] | None, name: str = "x"
):
    """Return ``x`` as a ``(batch, num_features)`` tensor, accepting flat vectors or images.

    Accepted shapes: ``(batch, D)``, ``(batch, H, W)`` and ``(batch, 1, H, W)`` with
    ``H * W == D``. Anything else is a :class:`ValueError` that names the expected and the
    found shape.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = f"(batch, {num_features})"
    if image_shape is not None:
        expected += f" or (batch, {', '.join(map(str, image_shape))})"
    if x.dim() == 2 and x.shape[-1] == num_features:
        return x
    if x.dim() in (3, 4) and math.prod(x.shape[1:]) == num_features:
        if x.dim() == 4 and x.shape[1] != 1:
            raise ValueError(f"{name}: expected one channel, got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], num_features)
    raise ValueError(
        f"{name}: wrong size for this model: expected shape {expected}, "
        f"got {tuple(x.shape)} ({math.prod(x.shape[1:]) if x.dim() > 1 else x.numel()} "
        f"values per example)"
    )


def check_binary(x: torch.Tensor, name: str = "x") -> None:
    """Raise :class:`ValueError` unless every entry of ``x`` is exactly 0 or 1.

    NaN is reported as such. Costs one host synchronisation, so callers skip it when
    validation is disabled.
    """
    bad = ~((x == 0) | (x == 1))
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        value = x[index].item()
        if math.isnan(value):
            raise ValueError(
                f"{name} contains NaN (first at index {index}); clean the data before training"
            )
        raise ValueError(
            f"{name} must be binary (0/1) for a Bernoulli likelihood, found {value:.6g} at "
            f"index {index}. Binarize it first, e.g. pyrogen.data.load(name, "
            f"binarize='dynamic') or torch.bernoulli(x)"
        )


def check_finite(x: torch.Tensor, name: str = "x") -> None:
    """Raise :class:`ValueError` if ``x`` contains NaN or infinity."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains {x[index].item()} at index {index}")


def check_data(X, name: str = "X", num_features: int | None = None) -> torch.Tensor:
    """``X`` as a floating-point ``(n, d)`` tensor; ``ValueError`` naming ``name`` on a wrong
    number of dimensions or features, an empty array or NaN/inf values."""
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(np.ascontiguousarray(X))
    elif not isinstance(X, torch.Tensor):
        try:
            X = torch.as_tensor(np.asarray(X, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}: expected an array or tensor, got {type(X).__name__}") from e
    if not X.is_floating_point():
        X = X.to(torch.get_default_dtype())
    if X.dim() != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (n_samples, n_features), got shape {tuple(X.shape)}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one example, got shape {tuple(X.shape)}")
    if num_features is not None and X.shape[1] != num_features:
        raise ValueError(
            f"{name}: expected {num_features} features (as in fit), got {X.shape[1]} "
            f"(shape {tuple(X.shape)})"
        )
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return X


def like_input(t: torch.Tensor, original) -> Any:
    """``t`` as NumPy when ``original`` was a NumPy array (NumPy in, NumPy out)."""
    return t.cpu().numpy() if isinstance(original, np.ndarray) else t


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside pyrogen, however deep inside
    the package the warning is raised (so that it points at the user's line)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the caller of warn_user
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
