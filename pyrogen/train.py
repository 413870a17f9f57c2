r"""One training loop for every family.

The engine drives a *learner*: an object with

* ``step(batch) -> dict[str, Tensor | float]`` — one update; returns what to report
  (per-example numbers, as tensors: the engine syncs only when it reports);
* ``evaluate(batch) -> dict[str, Tensor | float]`` — validation numbers for a batch;
* ``state_dict()`` / ``load_state_dict(state)`` — everything needed to resume exactly;
* ``to(device)`` — move modules (and any persistent state) to a device.

:class:`SVILearner` wraps any Pyro ELBO (``Trace_ELBO``, ``RenyiELBO``, pyrogen's
:class:`~pyrogen.infer.IWAE`, ...) with a plain ``torch.optim`` optimizer. Contrastive
divergence, adversarial and alternating learners follow the same protocol.

:func:`train` adds epochs, seeded shuffling, devices, a progress bar, periodic validation,
atomic checkpoints with exact resume (modules, optimizers, RNG states, data position) and a
NaN/inf guard that stops with a clear message and keeps the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyro
import torch
from tqdm import tqdm

from pyrogen._rng import get_rng_state, preserved_rng, set_rng_state

CHECKPOINT_NAME = "checkpoint.pt"


class TrainingDiverged(RuntimeError):
    """The objective became NaN or infinite; training stopped."""


@runtime_checkable
class Learner(Protocol):
    def step(self, batch: torch.Tensor) -> dict[str, Any]: ...

    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def to(self, device: torch.device) -> Learner: ...


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


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file in the same folder,
    flushed to disk, then renamed over ``path``. An interrupted write leaves any previous
    checkpoint at ``path`` intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (or :func:`train`)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=False)


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


class StagedLearner:
    """Runs learners one after another: ``stages`` is a list of ``(name, learner, steps,
    prepare)``; stage ``i`` makes ``steps`` updates (the last stage runs to the end), each
    on ``prepare(batch)`` (e.g. the data passed up through layers trained before).
    ``on_enter[name]`` is called once when that stage starts (e.g. to compose a model from
    the pre-trained parts). Greedy layer-wise pre-training followed by joint training is
    this. The step count is part of the state, so resuming lands in the right stage.
    """

    def __init__(self, stages, on_enter: dict[str, Callable[[], None]] | None = None) -> None:
        if not stages:
            raise ValueError("stages must not be empty")
        self.stages = list(stages)
        self.on_enter = on_enter or {}
        self.count = 0
        self._entered = -1

    def _current(self) -> int:
        return self._stage_of(self.count)

    @property
    def stage(self) -> str:
        return self.stages[self._current()][0]

    def _enter(self) -> int:
        i = self._current()
        if i != self._entered:
            name = self.stages[i][0]
            if name in self.on_enter and self.count == sum(s[2] for s in self.stages[:i]):
                self.on_enter[name]()
            self._entered = i
        return i

    def step(self, batch):
        i = self._enter()
        _, learner, _, prepare = self.stages[i]
        out = learner.step(prepare(batch) if prepare else batch)
        self.count += 1
        return out

    def evaluate(self, batch):
        i = self._current()
        _, learner, _, prepare = self.stages[i]
        return learner.evaluate(prepare(batch) if prepare else batch)

    def to(self, device):
        for _, learner, _, _ in self.stages:
            learner.to(device)
        return self

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every stage's learner (for ``lr_schedule``; a schedule
        that should act on one stage only maps the epochs of the others to their rate)."""
        for _, learner, _, _ in self.stages:
            if not hasattr(learner, "set_lr"):
                raise TypeError(f"{type(learner).__name__} has no set_lr")
            learner.set_lr(lr)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "stages": [s[1].state_dict() for s in self.stages]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = state["count"]
        for stage, sub in zip(self.stages, state["stages"]):
            stage[1].load_state_dict(sub)
        # the stage of the last step taken: a resume exactly at a boundary enters the next
        last = self.count - 1
        self._entered = -1 if last < 0 else self._stage_of(last)

    def _stage_of(self, count: int) -> int:
        total = 0
        for i, (_, _, steps, _) in enumerate(self.stages[:-1]):
            total += steps
            if count < total:
                return i
        return len(self.stages) - 1


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
    data, batch_size: int, seed: int, epoch: int, shuffle: bool = True, start: int = 0
) -> Iterator[torch.Tensor]:
    """Batches of one epoch in a order fixed by ``(seed, epoch)``, from batch ``start``.

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
        yield _fetch(data, order[i : i + batch_size])


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


def _move(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(_move(b, device) for b in batch)
    return batch


def validate(learner: Learner, data, batch_size: int, device: torch.device) -> dict[str, float]:
    """Average ``learner.evaluate`` over ``data`` (weighted by batch size)."""
    totals: dict[str, float] = {}
    n = 0
    for batch in epoch_batches(data, batch_size, seed=0, epoch=0, shuffle=False):
        batch = _move(batch, device)
        m = batch.shape[0]
        for key, value in learner.evaluate(batch).items():
            totals[key] = totals.get(key, 0.0) + _to_float(value) * m
        n += m
    return {f"val_{k}": v / max(n, 1) for k, v in totals.items()}


def train(
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
) -> TrainResult:
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
    :raises TrainingDiverged: when the loss becomes NaN/inf; the learner is restored to the
        last good checkpoint when there is one.
    """
    if int(batch_size) < 1 or int(epochs) < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size}, {epochs}")
    n = _num_examples(train_data)
    if n == 0:
        raise ValueError("train_data is empty")
    device = resolve_device(device)
    learner.to(device)
    steps_per_epoch = math.ceil(n / batch_size)
    out_dir = Path(out) if out is not None else None
    ckpt_path = out_dir / CHECKPOINT_NAME if out_dir is not None else None
    history: list[dict[str, Any]] = []
    step, epoch, batch_in_epoch = 0, 0, 0
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        learner.load_state_dict(state["learner"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        history = state.get("history", [])
        set_rng_state(state["rng"])
    else:
        seed_everything(seed)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, int(max_steps))
    if checkpoint_every is None:
        checkpoint_every = steps_per_epoch
    last_good: Path | None = ckpt_path if ckpt_path is not None and ckpt_path.exists() else None
    written_at = step if last_good is not None else -1

    def write_checkpoint() -> None:
        nonlocal last_good, written_at
        if ckpt_path is None or written_at == step:
            return
        state = {
            "learner": learner.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "rng": get_rng_state(),
            "history": history,
            "seed": seed,
        }
        save_checkpoint(state, ckpt_path)
        last_good, written_at = ckpt_path, step

    pending: list[dict[str, Any]] = []  # step outputs since the last sync

    def flush(bar) -> dict[str, float] | None:
        """Sync the pending step outputs: NaN guard, history, progress bar."""
        if not pending:
            return None
        keys = pending[0].keys()
        values = {
            k: torch.stack([torch.as_tensor(p[k], dtype=torch.float64).cpu() for p in pending])
            for k in keys
        }
        first_step = step - len(pending) + 1
        for k, v in values.items():
            bad = ~torch.isfinite(v)
            if bool(bad.any()):
                at = first_step + int(bad.nonzero()[0])
                message = (
                    f"training diverged: {k} = {v[bad][0].item()} at step {at} (epoch {epoch}). "
                )
                if last_good is not None:
                    state = load_checkpoint(last_good, map_location=device)
                    learner.load_state_dict(state["learner"])
                    message += (
                        f"The last good checkpoint ({last_good}, step {state['step']}) is intact "
                        "and has been loaded back into the learner; resume from it with a "
                        "smaller learning rate, or check the data for NaN."
                    )
                else:
                    message += "No checkpoint had been written (pass out= to keep one)."
                raise TrainingDiverged(message)
        row = {"kind": "train", "step": step, "epoch": epoch}
        row.update({k: v.mean().item() for k, v in values.items()})
        history.append(row)
        pending.clear()
        if bar is not None:
            bar.set_postfix({k: f"{row[k]:.3f}" for k in keys}, refresh=False)
        if callback is not None:
            callback(row)
        return row

    def run_validation(bar) -> None:
        if val_data is None:
            return
        with preserved_rng():
            metrics = validate(learner, val_data, batch_size, device)
        row = {"kind": "val", "step": step, "epoch": epoch, **metrics}
        history.append(row)
        every = max(1, epochs // 10)  # at most ~10 validation lines per run
        if progress and (epoch % every == 0 or step >= total_steps):
            bar.write(
                f"epoch {epoch} step {step}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("val_"))
            )
        if callback is not None:
            callback(row)

    start_time = time.perf_counter()
    bar = tqdm(
        total=total_steps,
        initial=min(step, total_steps),
        desc="train",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        while step < total_steps:
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            if lr_schedule is not None:
                learner.set_lr(float(lr_schedule(epoch)))
            for batch in epoch_batches(train_data, batch_size, seed, epoch, start=batch_in_epoch):
                batch = _move(batch, device)
                try:
                    pending.append(learner.step(batch))
                except Exception as error:
                    # An error after a NaN (e.g. a distribution rejecting NaN parameters
                    # under validation) is reported as the divergence it is.
                    try:
                        flush(bar)
                    except TrainingDiverged as diverged:
                        raise diverged from error
                    raise
                step += 1
                batch_in_epoch += 1
                bar.update(1)
                end_of_epoch = batch_in_epoch >= steps_per_epoch
                if end_of_epoch:
                    epoch += 1
                    batch_in_epoch = 0
                if len(pending) >= log_every or step % checkpoint_every == 0 or end_of_epoch:
                    flush(bar)
                if validate_every and step % validate_every == 0 or end_of_epoch:
                    run_validation(bar)
                if step % checkpoint_every == 0 or step >= total_steps:
                    flush(bar)
                    write_checkpoint()
                if step >= total_steps:
                    break
        flush(bar)
        write_checkpoint()
    finally:
        bar.close()
    if out_dir is not None:
        with open(out_dir / "history.json", "w") as f:
            json.dump(history, f, indent=1)
    return TrainResult(
        step=step,
        epoch=epoch,
        seconds=time.perf_counter() - start_time,
        history=history,
        checkpoint=ckpt_path,
    )
