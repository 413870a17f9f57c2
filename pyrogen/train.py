r"""One training loop for every family.

The engine drives a *learner* (:class:`Learner`), an object with

* ``step(batch) -> dict[str, Tensor | float]``: one update; returns what to report
  (per-example numbers, as tensors: the engine syncs the host only when it reports);
* ``evaluate(batch) -> dict[str, Tensor | float]``: validation numbers for a batch;
* ``state_dict()`` / ``load_state_dict(state)``: everything needed to resume exactly
  (modules, optimizers, persistent chains, the stage of a staged learner);
* ``to(device)``: move modules (and any persistent state) to a device;
* ``set_steps_per_epoch(n)`` (optional): called once before the first step with the
  number of steps per epoch, which the engine computes from the data and the batch size
  (staged learners place their stage boundaries in epochs with it);
* ``set_lr(lr)`` (needed only with ``lr_schedule``): set the learning rate.

:class:`SVILearner` wraps any Pyro ELBO (``Trace_ELBO``, ``RenyiELBO``, pyrogen's
:class:`~pyrogen.infer.IWAE`, :class:`~pyrogen.infer.ContrastiveDivergence`, ...) with a
plain ``torch.optim`` optimizer; :class:`StagedLearner` runs learners one after another
(greedy pre-training, then joint training). Alternating learners (sparse coding, PSD)
follow the same protocol.

:func:`train` (a :class:`Trainer`) adds epochs, seeded shuffling, devices, a progress bar,
periodic validation, atomic checkpoints with exact resume (learner state, RNG states, data
position) and a NaN/inf guard that stops with a clear message and keeps the last good
checkpoint. A run folder (``out``) receives ``checkpoint.pt`` and ``history.jsonl`` (one JSON
object per line: ``{"kind": "train" | "val", "step", "epoch", ...}``, rewritten with every
checkpoint). The checkpoint before the latest is kept beside it as ``checkpoint.prev.pt``:
when the latest cannot be read (e.g. truncated by a partial copy), :func:`load_checkpoint`
falls back to it with a :class:`CheckpointWarning`, and stops with a
:class:`CheckpointError` naming the files and the ways out when neither can be read.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyro
import torch
from tqdm import tqdm

from pyrogen import distributed
from pyrogen._rng import get_rng_state, preserved_rng, set_rng_state
from pyrogen.accelerate import PRECISIONS, accelerate

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.jsonl"


class TrainingDiverged(RuntimeError):
    """The objective became NaN or infinite; training stopped."""


@runtime_checkable
class Learner(Protocol):
    """What the engine calls (see module docs). ``set_steps_per_epoch`` is called when the
    learner has it; ``set_lr`` only with an ``lr_schedule``."""

    def step(self, batch: torch.Tensor) -> dict[str, Any]: ...

    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def to(self, device: torch.device) -> Learner: ...


#: methods of the protocol that every learner must have
REQUIRED_METHODS = ("step", "evaluate", "state_dict", "load_state_dict", "to")


def check_learner(learner, lr_schedule=None) -> None:
    """A TypeError naming the methods of the protocol that ``learner`` lacks."""
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(learner, m, None))]
    if lr_schedule is not None and not callable(getattr(learner, "set_lr", None)):
        missing.append("set_lr (needed by lr_schedule)")
    if missing:
        raise TypeError(
            f"{type(learner).__name__} is not a learner: it lacks {', '.join(missing)} "
            "(see pyrogen.train.Learner)"
        )


# ----------------------------------------------------------------------------- devices, RNG


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but no CUDA device is available")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) through ``pyro.set_rng_seed``."""
    pyro.set_rng_seed(int(seed))


# ----------------------------------------------------------------------------- checkpoints

#: the checkpoint written before the latest one, kept beside it (``checkpoint.prev.pt``)
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"


class CheckpointError(RuntimeError):
    """No readable checkpoint: the latest one (and the previous one kept beside it) could not
    be read. The message names the files and the ways out."""


class CheckpointWarning(UserWarning):
    """The latest checkpoint could not be read; the previous one was used instead."""


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pt`` ->
    ``checkpoint.prev.pt`` (``name.ext`` -> ``name.prev.ext`` for other names).

    :param path: the latest checkpoint's path.
    """
    path = Path(path)
    if path.name == CHECKPOINT_NAME:
        return path.with_name(PREVIOUS_CHECKPOINT_NAME)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _looks_complete(path: Path) -> bool:
    """A cheap check that ``path`` is a whole ``torch.save`` archive: its zip directory (at
    the end of the file) can be read, which a truncated copy fails."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def save_checkpoint(
    state: dict[str, Any], path: str | os.PathLike, keep_previous: bool = True
) -> Path:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file in the same folder,
    flushed to disk, then renamed over ``path``. An interrupted write leaves any previous
    checkpoint at ``path`` intact.

    :param dict state: what to save.
    :param path: the checkpoint's path.
    :param bool keep_previous: move the checkpoint already at ``path`` to
        :func:`previous_checkpoint` (``checkpoint.prev.pt``) first, so that a damaged latest
        file still leaves one to fall back on (:func:`load_checkpoint`). A file at ``path``
        that is not a whole checkpoint (e.g. truncated by a partial copy) does not replace
        a good previous one: it is overwritten instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists() and _looks_complete(path):
            # between these two renames only the previous file exists, which
            # load_checkpoint falls back to: a crash there loses nothing
            os.replace(path, previous_checkpoint(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _way_out(path: Path) -> str:
    return (
        f"To start afresh, delete the run folder {path.parent} (or train with --out / out= "
        "pointing elsewhere); to keep this run, restore the file from a backup or copy it "
        "again in full."
    )


def load_checkpoint(
    path: str | os.PathLike, map_location="cpu", fallback: bool = True
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or :func:`train`).

    When the latest checkpoint cannot be read (a partial copy, a full disk, a file damaged
    from outside), the previous one kept beside it (:func:`previous_checkpoint`) is loaded
    instead, with a :class:`CheckpointWarning` naming both; when neither can be read, a
    :class:`CheckpointError` names the files and the ways out.

    :param path: a checkpoint file, or a run folder (its ``checkpoint.pt``).
    :param map_location: passed to ``torch.load``.
    :param bool fallback: fall back to the previous checkpoint (``False``: read ``path``
        only, still with a clear error).
    :raises FileNotFoundError: when there is no checkpoint at all.
    :raises CheckpointError: when no checkpoint there can be read.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    previous = previous_checkpoint(path)
    candidates = [path] + ([previous] if fallback else [])
    present = [p for p in candidates if p.exists()]
    if not present:
        raise FileNotFoundError(f"no checkpoint at {path}")
    errors = []
    for candidate in present:
        try:
            state = torch.load(candidate, map_location=map_location, weights_only=False)
        except Exception as error:  # noqa: BLE001 -- torch raises many kinds for a bad file
            errors.append((candidate, error))
            continue
        if candidate != path:
            why = f"it cannot be read ({_describe(errors[0][1])})" if errors else "it is missing"
            warnings.warn(
                f"pyrogen: the latest checkpoint {path} is unusable: {why}; loaded the "
                f"previous one, {candidate} (step {state.get('step', '?')}), instead. Training "
                "resumes from there and overwrites the damaged file.",
                CheckpointWarning,
                stacklevel=2,
            )
        return state
    listed = "; ".join(f"{p} ({_describe(e)})" for p, e in errors)
    missing = "" if previous in present or not fallback else f"; no previous copy at {previous}"
    raise CheckpointError(
        f"cannot read the checkpoint {path}: {listed}{missing}. The file is damaged or "
        f"incomplete (e.g. truncated by a partial copy). {_way_out(path)}"
    ) from errors[-1][1]


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


# ----------------------------------------------------------------------------- learners


def _per_example(value: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    return value / batch.shape[0]


class SVILearner:
    """Stochastic variational inference with any Pyro ELBO and a ``torch.optim`` optimizer.

    :param torch.nn.Module module: owns the parameters (a :class:`~pyro.nn.PyroModule`
        with ``model`` and ``guide`` methods, or any module when ``model``/``guide`` are
        given).
    :param loss: a Pyro ELBO instance (``Trace_ELBO()``, ``IWAE(5)``, ``RenyiELBO(0, 5)``).
    :param optimizer: a ``torch.optim`` optimizer over ``module.parameters()``; by default
        ``Adam(lr=lr)``.
    :param eval_loss: the ELBO used by :meth:`evaluate` (defaults to ``loss``).
    :param evaluate_fn: ``batch -> dict`` used by :meth:`evaluate` instead of a loss (for
        losses whose value is not a validation number, such as contrastive divergence).

    Reported numbers are per example: ``loss`` is :math:`-\\text{bound}` averaged over the
    batch (in nats).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        loss,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float = 1e-3,
        model: Callable | None = None,
        guide: Callable | None = None,
        eval_loss=None,
        evaluate_fn: Callable[[torch.Tensor], dict[str, Any]] | None = None,
    ) -> None:
        self.module = module
        self.evaluate_fn = evaluate_fn
        self.model = model if model is not None else module.model
        self.guide = guide if guide is not None else module.guide
        self.loss = loss
        self.eval_loss = eval_loss if eval_loss is not None else loss
        self._optimizer_factory = None
        if optimizer is None:
            self._optimizer_factory = lambda params: torch.optim.Adam(params, lr=lr)
            optimizer = self._optimizer_factory(module.parameters())
        self.optimizer = optimizer

    def to(self, device: torch.device) -> SVILearner:
        before = next(self.module.parameters(), None)
        self.module.to(device)
        after = next(self.module.parameters(), None)
        if before is not None and after is not before and self._optimizer_factory is not None:
            self.optimizer = self._optimizer_factory(self.module.parameters())
        return self

    def _differentiable_loss(self, loss, batch):
        if hasattr(loss, "differentiable_loss"):
            return loss.differentiable_loss(self.model, self.guide, batch)
        return None

    def step(self, batch: torch.Tensor) -> dict[str, Any]:
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        # losses that write their gradients more cheaply than a graph would (contrastive
        # divergence) offer value_and_grads; the others go through differentiable_loss
        direct = getattr(self.loss, "value_and_grads", None)
        if direct is not None:
            value = direct(self.model, self.guide, batch)
        elif (value := self._differentiable_loss(self.loss, batch)) is not None:
            value.backward()
            value = value.detach()
        else:  # e.g. RenyiELBO: only loss_and_grads
            value = torch.as_tensor(self.loss.loss_and_grads(self.model, self.guide, batch))
        self.optimizer.step()
        return {"loss": _per_example(value, batch)}

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]:
        self.module.eval()
        if self.evaluate_fn is not None:
            return self.evaluate_fn(batch)
        value = self._differentiable_loss(self.eval_loss, batch)
        if value is None:
            value = torch.as_tensor(self.eval_loss.loss(self.model, self.guide, batch))
        return {"loss": _per_example(value.detach(), batch)}

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (used by ``lr_schedule``)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        state = {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}
        if hasattr(self.loss, "state_dict"):  # e.g. persistent Gibbs chains
            state["loss"] = self.loss.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "loss" in state and hasattr(self.loss, "load_state_dict"):
            self.loss.load_state_dict(state["loss"])


@dataclass
class Stage:
    """One stage of a :class:`StagedLearner`.

    :ivar str name: what progress lines and ``on_enter`` call it.
    :ivar learner: the learner it runs.
    :ivar epochs: its length in epochs (converted to steps with the engine's steps per
        epoch); ``None`` for the last stage, which runs to the end of training.
    :ivar prepare: ``batch -> batch`` applied before the learner sees it (e.g. the data
        passed up through the layers trained before), or ``None``.
    :ivar steps: its length in steps instead of epochs.
    :ivar on_enter: called once when the stage starts (e.g. to compose a model from the
        pre-trained parts), not again on resuming inside it.
    """

    name: str
    learner: Any
    epochs: float | None = None
    prepare: Callable[[Any], Any] | None = None
    steps: int | None = None
    on_enter: Callable[[], None] | None = None

    def length(self, steps_per_epoch: int | None) -> int:
        if self.steps is not None:
            return int(self.steps)
        if self.epochs is None:
            return 0
        if steps_per_epoch is None:
            raise RuntimeError(
                f"stage {self.name!r} is {self.epochs} epochs long, but the steps per epoch are "
                "not known yet (the engine sets them; call set_steps_per_epoch first)"
            )
        return int(round(self.epochs * steps_per_epoch))


class StagedLearner:
    """Runs learners one after another: greedy layer-wise pre-training followed by joint
    training is this.

    :param stages: :class:`Stage` objects, or tuples ``(name, learner, epochs, prepare)``.
        Every stage but the last has a length; the last runs to the end of training.
    :param on_enter: ``{stage name: callable}``, called once when that stage starts (the
        same as ``Stage.on_enter``).
    :param lr_stages: names of the stages whose learners :meth:`set_lr` (the engine's
        ``lr_schedule``) reaches; default every stage (a schedule meant for one stage then
        maps the epochs of the others to their rate).

    The step count is part of the state, so resuming lands in the right stage.
    """

    def __init__(
        self,
        stages: Sequence,
        on_enter: dict[str, Callable[[], None]] | None = None,
        lr_stages: Sequence[str] | None = None,
    ):
        if not stages:
            raise ValueError("stages must not be empty")
        self.stages = [s if isinstance(s, Stage) else Stage(*s) for s in stages]
        for name, fn in (on_enter or {}).items():
            matches = [s for s in self.stages if s.name == name]
            if not matches:
                raise ValueError(f"on_enter names no stage: {name!r}")
            matches[0].on_enter = fn
        names = [s.name for s in self.stages]
        if isinstance(lr_stages, str):
            lr_stages = (lr_stages,)
        unknown = sorted(set(lr_stages or ()) - set(names))
        if unknown:
            raise ValueError(f"lr_stages names no stage: {unknown}; stages: {names}")
        self.lr_stages = tuple(lr_stages) if lr_stages is not None else tuple(names)
        self.steps_per_epoch: int | None = None
        self.count = 0
        self._entered = -1

    def set_steps_per_epoch(self, steps: int) -> None:
        self.steps_per_epoch = int(steps)
        for stage in self.stages:
            if hasattr(stage.learner, "set_steps_per_epoch"):
                stage.learner.set_steps_per_epoch(steps)

    def _bounds(self) -> list[int]:
        ends, total = [], 0
        for stage in self.stages[:-1]:
            total += stage.length(self.steps_per_epoch)
            ends.append(total)
        return ends

    def _stage_of(self, count: int) -> int:
        for i, end in enumerate(self._bounds()):
            if count < end:
                return i
        return len(self.stages) - 1

    @property
    def stage(self) -> str:
        """The name of the stage the next step belongs to."""
        return self.stages[self._stage_of(self.count)].name

    @property
    def module(self):
        """The module of the last stage's learner (the model being trained)."""
        return self.stages[-1].learner.module

    def _enter(self) -> Stage:
        i = self._stage_of(self.count)
        if i != self._entered:
            stage = self.stages[i]
            start = ([0] + self._bounds())[i]
            if stage.on_enter is not None and self.count == start:
                stage.on_enter()
            self._entered = i
        return self.stages[i]

    def step(self, batch):
        stage = self._enter()
        out = stage.learner.step(stage.prepare(batch) if stage.prepare else batch)
        self.count += 1
        return out

    def evaluate(self, batch):
        stage = self.stages[self._stage_of(self.count)]
        return stage.learner.evaluate(stage.prepare(batch) if stage.prepare else batch)

    def to(self, device):
        for stage in self.stages:
            stage.learner.to(device)
        return self

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of the learners of :attr:`lr_stages`."""
        for stage in self.stages:
            if stage.name not in self.lr_stages:
                continue
            if not hasattr(stage.learner, "set_lr"):
                raise TypeError(f"{type(stage.learner).__name__} has no set_lr")
            stage.learner.set_lr(lr)

    def state_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "steps_per_epoch": self.steps_per_epoch,
            "stages": [s.learner.state_dict() for s in self.stages],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = state["count"]
        if self.steps_per_epoch is None:  # loaded outside the engine (e.g. a run folder)
            self.steps_per_epoch = state.get("steps_per_epoch")
        for stage, sub in zip(self.stages, state["stages"]):
            stage.learner.load_state_dict(sub)
        # the stage of the last step taken: a resume exactly at a boundary enters the next
        last = self.count - 1
        self._entered = -1 if last < 0 else self._stage_of(last)


# ----------------------------------------------------------------------------- data


def _num_examples(data) -> int:
    if isinstance(data, torch.Tensor):
        return data.shape[0]
    return len(data)


def _fetch(data, index: torch.Tensor) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data[index]
    if hasattr(data, "__getitems__"):
        return data.__getitems__(index.tolist())
    items = [data[i] for i in index.tolist()]
    return torch.utils.data.default_collate(items)


def epoch_batches(
    data,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """Batches of one epoch in a order fixed by ``(seed, epoch)``, from batch ``start``.

    With ``world_size`` ranks, ``batch_size`` is the global batch and rank ``rank`` gets
    its contiguous slice of each (:func:`pyrogen.distributed.shard_indices`); a last batch
    with fewer examples than ranks is dropped (:func:`pyrogen.distributed.steps_per_epoch`).

    Uses its own generator, so the order does not depend on (or disturb) the global RNG;
    resuming mid-epoch only needs the batch index.
    """
    n = _num_examples(data)
    if shuffle:
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    for i in range(start * batch_size, n, batch_size):
        index = order[i : i + batch_size]
        if world_size > 1:
            if index.numel() < world_size:
                return
            index = distributed.shard_indices(index, rank, world_size)
        yield _fetch(data, index)


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """What :func:`train` did: steps, epochs, wall time and the logged history."""

    step: int
    epoch: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None

    def last(self, key: str, kind: str = "train") -> float | None:
        for row in reversed(self.history):
            if row.get("kind") == kind and key in row:
                return row[key]
        return None


def _to_float(v) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


def _move(batch, device, dtype: torch.dtype | None = None):
    """``batch`` (a tensor, or nested lists / tuples of them) on ``device``, its floating
    tensors cast to ``dtype`` when one is given (``precision="fp64"``)."""
    if isinstance(batch, torch.Tensor):
        if dtype is not None and batch.is_floating_point():
            return batch.to(device, dtype, non_blocking=True)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(_move(b, device, dtype) for b in batch)
    return batch


#: what ``precision=`` accepts: the network precisions of :mod:`pyrogen.accelerate`, and
#: ``"fp64"`` (the whole model and every training batch in float64)
RUN_PRECISIONS = (*PRECISIONS, "fp64")


def validate(
    learner: Learner,
    data,
    batch_size: int,
    device: torch.device,
    world: distributed.World | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Average ``learner.evaluate`` over ``data`` (weighted by batch size). With a ``world``
    of several ranks, each evaluates its contiguous share of ``data`` and the totals are
    summed over ranks. ``dtype``: cast floating batches to it (float64 runs)."""
    world = world or distributed.World()
    if world.size > 1:
        index = distributed.shard_indices(torch.arange(_num_examples(data)), world.rank, world.size)
        local = max(1, math.ceil(batch_size / world.size))
        batches = (_fetch(data, index[i : i + local]) for i in range(0, len(index), local))
    else:
        batches = epoch_batches(data, batch_size, seed=0, epoch=0, shuffle=False)
    totals: dict[str, float] = {}
    n = 0
    for batch in batches:
        batch = _move(batch, device, dtype)
        m = batch.shape[0]
        for key, value in learner.evaluate(batch).items():
            totals[key] = totals.get(key, 0.0) + _to_float(value) * m
        n += m
    if world.size > 1:
        keys = sorted(totals)
        summed = world.sum(torch.tensor([totals[k] for k in keys] + [n], dtype=torch.float64))
        totals, n = dict(zip(keys, summed[:-1].tolist())), summed[-1].item()
    return {f"val_{k}": v / max(n, 1) for k, v in totals.items()}


class Trainer:
    """The training loop of :func:`train`, one named method per phase.

    :meth:`run` starts (:meth:`start`: device, steps per epoch, resume or seed), runs epochs
    (:meth:`run_epoch`) of steps (:meth:`take_step`), syncs the pending step outputs every
    ``log_every`` steps (:meth:`flush`, which applies the NaN guard :meth:`guard` and
    writes a history row), validates (:meth:`validate`) and checkpoints
    (:meth:`checkpoint`), then writes the history file (:meth:`finish`). See :func:`train`
    for the arguments.
    """

    def __init__(
        self,
        learner: Learner,
        train_data,
        *,
        epochs: int = 1,
        batch_size: int = 100,
        val_data=None,
        device: str | torch.device = "auto",
        seed: int = 0,
        out: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        validate_every: int | None = None,
        log_every: int = 20,
        max_steps: int | None = None,
        resume: bool = True,
        progress: bool = True,
        lr_schedule: Callable[[int], float] | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
        precision: str = "fp32",
        compile: bool = False,
        name: str | None = None,
    ) -> None:
        if int(batch_size) < 1 or int(epochs) < 0:
            raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size}, {epochs}")
        if int(log_every) < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        check_learner(learner, lr_schedule)
        self.num_examples = _num_examples(train_data)
        if self.num_examples == 0:
            raise ValueError("train_data is empty")
        self.learner, self.train_data, self.val_data = learner, train_data, val_data
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.seed, self.resume, self.progress = int(seed), resume, progress
        self.device = resolve_device(device)
        self.out = Path(out) if out is not None else None
        self.checkpoint_path = self.out / CHECKPOINT_NAME if self.out is not None else None
        #: steps per epoch, computed once here and handed to the learner
        self.steps_per_epoch = math.ceil(self.num_examples / self.batch_size)
        self.total_steps = self.epochs * self.steps_per_epoch
        if max_steps is not None:
            self.total_steps = min(self.total_steps, int(max_steps))
        self.checkpoint_every = checkpoint_every or self.steps_per_epoch
        self.validate_every, self.log_every = validate_every, int(log_every)
        self.lr_schedule, self.callback = lr_schedule, callback
        if precision not in RUN_PRECISIONS:
            raise ValueError(f"precision must be one of {RUN_PRECISIONS}, got {precision!r}")
        self.precision, self.compile, self.name = precision, bool(compile), name
        #: the dtype training batches are cast to (None: as they come)
        self.dtype = torch.float64 if precision == "fp64" else None
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # step outputs since the last sync
        self.last_good: Path | None = None  # the checkpoint the NaN guard restores
        self.written_at = -1  # the step of the last checkpoint written
        self.bar = None
        #: the processes (:mod:`pyrogen.distributed`; one until :meth:`start`)
        self.world = distributed.World()
        self.sync: distributed.GradientSync | None = None

    # ---- phases ------------------------------------------------------------------------

    def start(self) -> None:
        """Move the learner to the device, tell it the steps per epoch, then resume from the
        run folder's checkpoint (exactly: learner, position, history, RNG states) or seed
        the global RNGs. Launched by ``torchrun``, it first joins the process group, and
        rank 0 reads the checkpoint for every rank (:mod:`pyrogen.distributed`)."""
        self.world = distributed.init(self.device)
        if self.world.distributed:
            self._join_world()
        self.learner.to(self.device)
        self.accelerate()
        if hasattr(self.learner, "set_steps_per_epoch"):
            self.learner.set_steps_per_epoch(self.steps_per_epoch)
        path = self.checkpoint_path
        state = None
        if (
            self.world.is_main
            and path is not None
            and self.resume
            and (path.exists() or previous_checkpoint(path).exists())
        ):
            where = "cpu" if self.world.distributed else self.device
            state = load_checkpoint(path, map_location=where)
        if self.world.distributed:
            state = distributed.to_device(self.world.broadcast(state), self.device)
        if state is not None:
            self.learner.load_state_dict(state["learner"])
            self.step, self.epoch = state["step"], state["epoch"]
            self.batch_in_epoch = state["batch_in_epoch"]
            self.history = state.get("history", [])
            set_rng_state(state["rng"])
            self.last_good, self.written_at = path, self.step
            if self.world.distributed:
                distributed.restore_ranks(self.learner, state, self.world, self.seed)
        else:
            seed_everything(self.seed)
            if self.world.distributed:
                distributed.start_ranks(self.learner, self.world, self.seed, self.device)
        if self.world.size > 1:
            self.sync = distributed.GradientSync(self.learner, self.world)

    def _join_world(self) -> None:
        """Several ranks: this rank's device, the steps per epoch of the sharded data, and
        the progress bar and printing on rank 0 only."""
        self.device = self.world.device(self.device)
        steps = distributed.steps_per_epoch(self.num_examples, self.batch_size, self.world.size)
        if steps != self.steps_per_epoch:
            if self.checkpoint_every == self.steps_per_epoch:
                self.checkpoint_every = steps
            self.total_steps = min(self.total_steps, self.epochs * steps)
            self.steps_per_epoch = steps
        self.progress = self.progress and self.world.is_main

    def accelerate(self) -> None:
        """Apply ``precision`` and ``compile`` to the networks of the learner's modules
        (:func:`pyrogen.accelerate.accelerate`: bfloat16 autocast and ``torch.compile`` inside
        the networks only; log-densities, log-weights and losses stay float32). With
        ``"fp64"``, every module of the learner is cast to float64 first (before a checkpoint
        is loaded into it), and the networks are then compiled if asked."""
        modules = _learner_modules(self.learner)
        precision = self.precision
        if precision == "fp64":
            for module in modules:
                module.double()
            precision = "fp32"
        if precision == "fp32" and not self.compile:
            return
        accelerate(modules, precision, self.compile, self.name)

    def run(self) -> TrainResult:
        """Train to ``epochs`` (or ``max_steps``); returns a :class:`TrainResult`."""
        self.start()
        start_time = time.perf_counter()
        self.bar = tqdm(
            total=self.total_steps,
            initial=min(self.step, self.total_steps),
            desc="train",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            while self.step < self.total_steps:
                self.run_epoch()
            self.flush()
            self.checkpoint()
        finally:
            self.bar.close()
            if self.sync is not None:
                self.sync.close()
        self.finish()
        return TrainResult(
            step=self.step,
            epoch=self.epoch,
            seconds=time.perf_counter() - start_time,
            history=self.history,
            checkpoint=self.checkpoint_path,
        )

    def run_epoch(self) -> None:
        """The rest of the current epoch (from the resume position), in the order fixed by
        ``(seed, epoch)``; stops early at ``max_steps``."""
        self.bar.set_description(f"epoch {self.epoch + 1}/{self.epochs}")
        if self.lr_schedule is not None:
            self.learner.set_lr(float(self.lr_schedule(self.epoch)))
        batches = epoch_batches(
            self.train_data,
            self.batch_size,
            self.seed,
            self.epoch,
            start=self.batch_in_epoch,
            rank=self.world.rank,
            world_size=self.world.size,
        )
        for batch in batches:
            self.take_step(batch)
            if self.step >= self.total_steps or self.batch_in_epoch == 0:
                break

    def take_step(self, batch) -> None:
        """One learner step, then whatever falls due: a sync of the pending outputs, the
        end of the epoch, validation, a checkpoint."""
        batch = _move(batch, self.device, self.dtype)
        if self.sync is not None:  # this rank's share of the global batch
            self.sync.examples = _num_examples(batch[0] if isinstance(batch, list) else batch)
        try:
            self.pending.append(self.learner.step(batch))
        except Exception as error:
            if self.world.size > 1:  # no collective here: the other ranks are elsewhere
                raise
            # An error after a NaN (e.g. a distribution rejecting NaN parameters under
            # validation) is reported as the divergence it is.
            try:
                self.flush()
            except TrainingDiverged as diverged:
                raise diverged from error
            raise
        self.step += 1
        self.batch_in_epoch += 1
        self.bar.update(1)
        end_of_epoch = self.batch_in_epoch >= self.steps_per_epoch
        if end_of_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
        due = self.step % self.checkpoint_every == 0 or self.step >= self.total_steps
        if len(self.pending) >= self.log_every or due or end_of_epoch:
            self.flush()
        if end_of_epoch or (self.validate_every and self.step % self.validate_every == 0):
            self.validate()
        if due:
            self.checkpoint()

    def flush(self) -> dict[str, float] | None:
        """Sync the pending step outputs (the loop's only host sync): NaN guard, a history
        row of their means, the progress bar's numbers."""
        if not self.pending:
            return None
        keys = self.pending[0].keys()
        values = {
            k: torch.stack([torch.as_tensor(p[k], dtype=torch.float64).cpu() for p in self.pending])
            for k in keys
        }
        if self.world.size > 1:  # every rank's guard sees the same numbers
            values = self.world.mean(values)
        self.guard(values, first_step=self.step - len(self.pending) + 1)
        row = {"kind": "train", "step": self.step, "epoch": self.epoch}
        row.update({k: v.mean().item() for k, v in values.items()})
        self.pending.clear()
        self.record(row)
        self.bar.set_postfix({k: f"{row[k]:.3f}" for k in keys}, refresh=False)
        return row

    def guard(self, values: dict[str, torch.Tensor], first_step: int) -> None:
        """The NaN guard: on a NaN or infinite number, load the last good checkpoint back
        into the learner (when there is one) and raise :class:`TrainingDiverged`."""
        for k, v in values.items():
            bad = ~torch.isfinite(v)
            if not bool(bad.any()):
                continue
            at = first_step + int(bad.nonzero()[0])
            message = (
                f"training diverged: {k} = {v[bad][0].item()} at step {at} (epoch {self.epoch}). "
            )
            if self.last_good is not None:
                state = load_checkpoint(self.last_good, map_location=self.device)
                self.learner.load_state_dict(state["learner"])
                message += (
                    f"The last good checkpoint ({self.last_good}, step {state['step']}) is "
                    "intact and has been loaded back into the learner; resume from it with a "
                    "smaller learning rate, or check the data for NaN."
                )
            else:
                message += "No checkpoint had been written (pass out= to keep one)."
            raise TrainingDiverged(message)

    def validate(self) -> None:
        """Average ``learner.evaluate`` over the validation data (without consuming the
        global random streams) into a ``"val"`` history row; printed for about ten epochs
        of a run."""
        if self.val_data is None:
            return
        with preserved_rng():
            metrics = validate(
                self.learner, self.val_data, self.batch_size, self.device, self.world, self.dtype
            )
        row = {"kind": "val", "step": self.step, "epoch": self.epoch, **metrics}
        self.record(row)
        every = max(1, self.epochs // 10)
        if self.progress and (self.epoch % every == 0 or self.step >= self.total_steps):
            self.bar.write(
                f"epoch {self.epoch} step {self.step}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("val_"))
            )

    def record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.callback is not None:
            self.callback(row)

    def checkpoint(self) -> None:
        """Write the checkpoint (atomically) and the history file, once per step."""
        if self.checkpoint_path is None or self.written_at == self.step:
            return
        # several ranks: every rank's chains and random state go to rank 0, which writes
        ranks = (
            distributed.checkpoint_ranks(self.learner, self.world) if self.world.size > 1 else {}
        )
        if self.world.is_main:
            state = {
                "learner": self.learner.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "rng": get_rng_state(),
                "history": self.history,
                "seed": self.seed,
                **ranks,
            }
            save_checkpoint(state, self.checkpoint_path)
        self.last_good, self.written_at = self.checkpoint_path, self.step
        self.write_history()

    def write_history(self) -> None:
        """``history.jsonl`` in the run folder: one JSON object per history row (rank 0
        only)."""
        if self.out is None or not self.world.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(row) + "\n" for row in self.history)
        tmp = self.out / f".{HISTORY_NAME}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.out / HISTORY_NAME)

    def finish(self) -> None:
        self.write_history()


def _learner_modules(learner) -> list[torch.nn.Module]:
    """The modules a learner trains: each stage's of a :class:`StagedLearner`, else its
    ``module``."""
    learners = (
        [stage.learner for stage in learner.stages] if hasattr(learner, "stages") else [learner]
    )
    modules = []
    for each in learners:
        module = getattr(each, "module", None)
        if isinstance(module, torch.nn.Module) and all(module is not m for m in modules):
            modules.append(module)
    return modules


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run folder's ``history.jsonl`` (or of that file)."""
    path = Path(path)
    if path.is_dir():
        path = path / HISTORY_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(learner: Learner, train_data, **options) -> TrainResult:
    """Train ``learner`` on ``train_data`` (a tensor of examples or a Dataset).

    :param int epochs: passes over the data (``max_steps`` may stop earlier).
    :param int batch_size: examples per step; the last batch of an epoch may be smaller.
    :param val_data: validation examples, evaluated every ``validate_every`` steps and at
        the end of each epoch.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a ``torch.device``.
    :param int seed: seeds the global RNGs (when not resuming) and the shuffling order.
    :param out: run folder: ``checkpoint.pt`` and ``history.jsonl`` go there. With
        ``resume=True`` and a checkpoint present, training continues from it exactly.
    :param int checkpoint_every: steps between checkpoints (also written at the end);
        ``None`` writes one per epoch.
    :param int log_every: steps between progress updates (and NaN checks: the only host
        syncs of the loop).
    :param lr_schedule: ``epoch -> learning rate``, applied through ``learner.set_lr`` at
        the start of every epoch (a function of the epoch only, so resuming is exact).
    :param callback: called with every history row (training and validation).
    :param str precision: ``"fp32"`` (default) or ``"bf16"``: bfloat16 autocast inside the
        model's networks during training steps (:mod:`pyrogen.accelerate`); log-densities,
        importance log-weights, ``logsumexp`` and losses stay float32, and validation runs
        in float32. ``"fp64"``: the whole model and every batch in float64 (slower; for
        runs that must agree to rounding, e.g. a Gibbs sampler's thresholds turn float32
        rounding differences between one and several processes into different chains).
    :param bool compile: ``torch.compile`` the model's networks (a warning, and eager
        execution, where that fails or there is no network).
    :param str name: what those warnings call the model (e.g. its family).
    :raises TrainingDiverged: when the loss becomes NaN/inf; the learner is restored to the
        last good checkpoint when there is one.
    """
    return Trainer(learner, train_data, **options).run()


train.__signature__ = inspect.Signature(
    list(inspect.signature(Trainer.__init__).parameters.values())[1:],
    return_annotation=TrainResult,
)
