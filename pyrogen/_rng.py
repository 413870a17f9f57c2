"""Saving, restoring and forking the global random streams (Python, NumPy, torch)."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def get_rng_state() -> dict[str, Any]:
    """The state of every global random stream pyrogen's training draws from."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@contextmanager
def preserved_rng():
    """Run a block without consuming the global random streams."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


# ---- row-sharded noise --------------------------------------------------------------------


class RowNoise:
    r"""Noise for rows ``offset .. offset + rows - 1`` of draws of ``total`` rows from a
    dedicated ``generator``: a draw for an ``(rows, ...)`` tensor takes ``total`` rows from
    the generator and keeps this share. When every process holds the same generator state and
    its own contiguous share of the rows (data-parallel training, :mod:`pyrogen.distributed`),
    every row gets the noise it would get in one process holding all of them.

    A draw for a tensor whose leading size is not ``rows`` (or a scalar) takes its own shape
    from the generator.

    :param torch.Generator generator: where the noise comes from.
    :param int offset: the first row held here.
    :param int rows: the rows held here.
    :param int total: the rows of all processes together.
    """

    def __init__(self, generator: torch.Generator, offset: int, rows: int, total: int):
        if not 0 <= offset <= offset + rows <= total:
            raise ValueError(f"rows {offset}..{offset + rows} do not fit in {total}")
        self.generator, self.offset, self.rows, self.total = generator, offset, rows, total

    def _shape(self, like: torch.Tensor) -> tuple[tuple[int, ...], bool]:
        shape = tuple(like.shape)
        if shape and shape[0] == self.rows and self.total != self.rows:
            return (self.total, *shape[1:]), True
        return shape, False

    def _take(self, full: torch.Tensor, sliced: bool) -> torch.Tensor:
        return full[self.offset : self.offset + self.rows] if sliced else full

    def rand_like(self, like: torch.Tensor) -> torch.Tensor:
        """Uniform noise on [0, 1) of ``like``'s shape, dtype and device."""
        shape, sliced = self._shape(like)
        full = torch.rand(shape, generator=self.generator, dtype=like.dtype, device=like.device)
        return self._take(full, sliced)

    def randn_like(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of ``like``'s shape, dtype and device."""
        shape, sliced = self._shape(like)
        full = torch.randn(shape, generator=self.generator, dtype=like.dtype, device=like.device)
        return self._take(full, sliced)


_ROW_NOISE: list[RowNoise] = []


@contextmanager
def row_noise(noise: RowNoise | None):
    """Within the block, the energy-based samplers (:func:`rand_like`, :func:`randn_like`)
    draw from ``noise`` instead of the global stream (``None``: the global stream)."""
    if noise is None:
        yield
        return
    _ROW_NOISE.append(noise)
    try:
        yield
    finally:
        _ROW_NOISE.pop()


def rand_like(like: torch.Tensor) -> torch.Tensor:
    """``torch.rand_like(like)``, or the active :func:`row_noise`'s share of a larger draw."""
    if _ROW_NOISE:
        return _ROW_NOISE[-1].rand_like(like)
    return torch.rand_like(like)


def randn_like(like: torch.Tensor) -> torch.Tensor:
    """``torch.randn_like(like)``, or the active :func:`row_noise`'s share of a larger draw."""
    if _ROW_NOISE:
        return _ROW_NOISE[-1].randn_like(like)
    return torch.randn_like(like)


def draw_seed() -> int:
    """A seed drawn from the global torch stream: the same in every process whose stream is in
    the same state (e.g. right after a model is built from the run's seed)."""
    return int(torch.randint(0, 2**62, ()).item())
