"""Checks of the values a distribution scores, shared by pyrogen's distributions."""

from __future__ import annotations

import torch


def check_event(value, size: int, name: str = "value", what: str = "") -> torch.Tensor:
    """``value`` unchanged if it is a tensor whose last dim is ``size`` (one event), else a
    ``TypeError`` (not a tensor) or a ``ValueError`` naming ``name``, the expected and the
    found shape; ``what`` says what the values are (e.g. ``" for this NADE"``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{what}, got {type(value).__name__}")
    if value.dim() < 1 or value.shape[-1] != size:
        raise ValueError(
            f"{name}: wrong size{what}: expected shape (..., {size}), found {tuple(value.shape)}"
        )
    return value
