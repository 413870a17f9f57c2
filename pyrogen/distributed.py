r"""Data-parallel training and evaluation on PyTorch's distributed engine.

:func:`pyrogen.train.train` becomes data parallel when it runs in a process started by
``torchrun`` (``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in the environment) or by
``pyrogen train ... --nproc N`` (:func:`relaunch`, which starts ``torch.distributed.run``):
the engine calls :func:`init` (process group on ``gloo`` for CPU, ``nccl`` for CUDA, one GPU
per local rank) and, through a :class:`World`,

* **shards the data**: every rank draws the same permutation of the training set for
  ``(seed, epoch)`` and, at each step, takes its contiguous slice of the same *global* batch
  of ``batch_size`` examples (``torch.tensor_split``: slices differ by at most one example).
  The union of the shards is exactly the single-process batch, so the data order does not
  depend on the number of processes. The last global batch of an epoch, when it holds fewer
  examples than there are ranks, is dropped (:func:`steps_per_epoch`; it never happens when
  the training set's size is a multiple of the batch size or leaves a remainder of at least
  the number of ranks);
* **all-reduces the gradients** of every parameter a learner's ``torch.optim`` optimizers
  update, between the backward pass and ``optimizer.step()`` (a step pre-hook on each
  optimizer the learner holds, :class:`GradientSync`): whatever wrote ``.grad`` — autograd
  under any Pyro loss, contrastive divergence writing its statistics straight into ``.grad``,
  the stage that is active in a staged learner — the optimizer then steps on

  .. math::

     g = \sum_{r=0}^{R-1} g_r \qquad\text{or}\qquad
     g = \frac{\sum_r n_r\, g_r}{\sum_r n_r},

  where :math:`g_r` is rank :math:`r`'s gradient on its :math:`n_r` examples (the first is
  ``gradient_reduction = "sum"``, the default; the second ``"mean"``). pyrogen's
  losses are sums over the data plate (Pyro's convention), for which the sum is the gradient
  of the union of the shards, i.e. of the single-process batch; a learner whose loss is a
  batch *mean* sets ``gradient_reduction = "mean"``. Every rank then takes the same
  optimizer step, so parameters stay identical;
* keeps **per-rank** what is per rank: the random streams (rank 0 keeps the run's seed, so
  its stream is the single-process one; rank :math:`r` is seeded with
  :func:`rank_seed`) and persistent Markov chains (PCD). A contrastive-divergence loss with a
  ``seed`` (what the energy-based families build) makes its chains independent of the number
  of ranks: each rank runs its contiguous share of the chains and keeps its rows of every
  Gibbs draw made, from the loss's own generator, for all ranks' chains
  (``pyrogen._rng.RowNoise``), so the trained model equals the single-process one up to
  rounding;
* writes checkpoints, history and the progress bar on **rank 0 only** (the write is atomic,
  so a crash of any rank leaves the last checkpoint whole).

**Resuming** (the same or another number of processes). A checkpoint holds the global step,
epoch and position in the epoch, rank 0's learner (modules, optimizers, rank 0's chains) and
random state, and — when written by :math:`R > 1` ranks — every rank's random state and
per-rank learner state (``rank_states``, e.g. persistent chains). Rank 0 reads it and
broadcasts it. With the same number of ranks, every rank restores its own random state and
chains: the run continues exactly. With a different number, the step count, the position in
the data order (which does not depend on the number of ranks), the modules, the optimizer
state and rank 0's random state and chains are restored; every other rank is seeded afresh
from ``(seed, rank, step)`` and its persistent chains are re-initialised (PCD restarts them
at the rank's next batch, as at the start of training). A single-process checkpoint is the
:math:`R = 1` case.

**Evaluation** (:func:`shard_indices`, :func:`gather_in_order`): the evaluators of
:mod:`pyrogen.evaluate` give each rank a share of the test batches (or, for AIS, of the
chain groups), seeded per batch (or group) rather than per rank, and gather one
:class:`~pyrogen.evaluate.LogLikelihood`, identical on every rank and identical to the
single-process one for the same ``seed``.

What is *not* synchronised: anything a learner changes outside a ``torch.optim`` step
(e.g. the closed-form dictionary statistics of sparse coding and PSD, batch-norm running
statistics), validation randomness, and the order of floating-point additions (gradients
equal the single-process ones up to rounding; exactly in float64 for the 2-rank reduction
tested).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "GradientSync",
    "World",
    "all_reduce_gradients",
    "find_optimizers",
    "gather_in_order",
    "init",
    "is_main",
    "launched",
    "load_rank_state_dict",
    "rank_seed",
    "rank_state_dict",
    "relaunch",
    "reset_rank_state",
    "shard_indices",
    "steps_per_epoch",
    "to_device",
    "world",
]

#: environment variables torchrun sets for every process
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


# ----------------------------------------------------------------------------- the world


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or ``pyrogen train --nproc``):
    ``RANK`` and ``WORLD_SIZE`` are in the environment."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: torch.device | str | None = None, timeout_s: float = 1800.0) -> World:
    """Initialise the default process group when launched by ``torchrun`` and not yet done
    (``nccl`` when ``device`` is CUDA, ``gloo`` otherwise; the CUDA device of this process is
    ``cuda:LOCAL_RANK``); returns the :class:`World` (a single process when not launched).

    :param device: the device training runs on (decides the backend).
    :param float timeout_s: how long a collective waits for the other ranks.
    """
    if dist.is_available() and not dist.is_initialized() and launched():
        cuda = device is not None and torch.device(device).type == "cuda"
        backend = "nccl" if cuda and dist.is_nccl_available() else "gloo"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        atexit.register(_destroy)
    return world()


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> World:
    """The current :class:`World`: the default process group's ranks, or one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), dist.get_backend())
    return World()


def is_main() -> bool:
    """Whether this process is rank 0 (or the only one): the one that writes and prints
    (read from ``RANK`` when launched by ``torchrun`` before the process group exists)."""
    if launched() and not (dist.is_available() and dist.is_initialized()):
        return int(os.environ["RANK"]) == 0
    return world().rank == 0


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of rank ``rank`` (``seed`` itself for rank 0 at step 0, so that rank 0 draws
    the single-process stream); distinct for every ``(seed, rank, step)``.

    :param int seed: the run's seed.
    :param int rank: the process's rank.
    :param int step: the global step at which the stream starts (a resume).
    """
    if rank == 0 and step == 0:
        return int(seed)
    return (int(seed) * 1_000_003 + int(rank) * 7_919 + int(step) * 104_729 + 1) % (2**63 - 1)


@dataclass(frozen=True)
class World:
    """The processes of a run: this one's ``rank`` among ``size``, on ``backend``.

    A single process is ``World()`` (rank 0 of 1); its methods are then no-ops.
    """

    rank: int = 0
    size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and history and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """A process group is initialised (even with one rank)."""
        return self.backend is not None

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run, ``device`` else."""
        if device.type == "cuda" and self.backend == "nccl":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return device

    def _comm_device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s picklable ``obj`` on every rank (tensors: send them on the CPU)."""
        if self.size == 1:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, device=self._comm_device())
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's picklable ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The mean over ranks of same-shaped tensors (the engine's reported numbers, so
        that every rank's NaN guard sees the same values)."""
        if self.size == 1 or not values:
            return values
        keys = list(values)
        stacked = torch.stack([values[k].double() for k in keys]).to(self._comm_device())
        dist.all_reduce(stacked)
        stacked = (stacked / self.size).cpu()
        return dict(zip(keys, stacked.unbind(0)))

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``tensor`` (returned on ``tensor``'s device)."""
        if self.size == 1:
            return tensor
        buf = tensor.to(self._comm_device()).clone()
        dist.all_reduce(buf)
        return buf.to(tensor.device)


# ----------------------------------------------------------------------------- data


def steps_per_epoch(num_examples: int, batch_size: int, world_size: int = 1) -> int:
    """Steps (global batches) per epoch: :math:`\\lceil N / B\\rceil`, less the last batch
    when it holds fewer than ``world_size`` examples (it is dropped: every rank must take
    every step).

    :param int num_examples: :math:`N`, the training set's size.
    :param int batch_size: :math:`B`, the global batch size.
    :param int world_size: the number of ranks.
    """
    full, rest = divmod(int(num_examples), int(batch_size))
    return full + (1 if rest >= max(int(world_size), 1) else 0)


def shard_indices(index: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous slice of a global batch's ``index`` (sizes differ by at
    most one; the union over ranks is ``index`` in order).

    :param index: the global batch's example indices.
    :param int rank: this rank.
    :param int world_size: the number of ranks.
    """
    if world_size == 1:
        return index
    return index.tensor_split(int(world_size))[int(rank)]


def gather_in_order(parts: dict[int, Any], num_parts: int, world: World | None = None) -> list[Any]:
    """The parts ``0 .. num_parts - 1`` that the ranks computed (each rank holding some of
    them as ``{part index: value}``), in order, on every rank.

    :param dict parts: this rank's parts by index.
    :param int num_parts: how many there are in all.
    :param World world: the processes (default :func:`world`).
    """
    world = world or pyrogen_world()
    merged: dict[int, Any] = {}
    for held in world.all_gather(parts):
        merged.update(held)
    missing = sorted(set(range(num_parts)) - set(merged))
    if missing:
        raise RuntimeError(f"parts {missing[:5]} were computed by no rank")
    return [merged[i] for i in range(num_parts)]


pyrogen_world = world  # the module-level function, shadowed by parameters named ``world``


def to_device(obj: Any, device: torch.device | str) -> Any:
    """``obj`` (nested dicts, lists and tuples of tensors) with every tensor moved to
    ``device``.

    :param obj: what to move.
    :param device: where to.
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


# ----------------------------------------------------------------------------- gradients


def find_optimizers(learner: Any, depth: int = 4) -> list[torch.optim.Optimizer]:
    """The ``torch.optim`` optimizers a learner holds: its ``optimizers()`` when it has that
    method, otherwise those found in its attributes (and theirs, e.g. the stages of a
    :class:`~pyrogen.train.StagedLearner`, ``depth`` levels down), each once.

    :param learner: the learner.
    :param int depth: how deep to look through attributes, lists and dicts.
    """
    own = getattr(learner, "optimizers", None)
    if callable(own):
        return list(own())
    found: list[torch.optim.Optimizer] = []
    seen: set[int] = set()

    def visit(obj, level):
        if id(obj) in seen or level > depth:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.optim.Optimizer):
            found.append(obj)
        elif isinstance(obj, torch.Tensor | torch.nn.Module | str | bytes | int | float):
            return
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v, level + 1)
        elif isinstance(obj, list | tuple):
            for v in obj:
                visit(v, level + 1)
        elif hasattr(obj, "__dict__") and not callable(obj):
            for v in vars(obj).values():
                visit(v, level + 1)

    visit(learner, 0)
    return found


@torch.no_grad()
def all_reduce_gradients(
    params: Iterable[torch.Tensor],
    reduction: str = "sum",
    examples: int | None = None,
    world: World | None = None,
) -> None:
    r"""Replace every parameter's ``.grad`` by its sum over ranks (``"sum"``) or its
    example-weighted mean :math:`\sum_r n_r g_r / \sum_r n_r` (``"mean"``), in place, in
    one collective per device and dtype (plus one small one for which parameters have a
    gradient anywhere: a parameter without ``.grad`` on some ranks counts as zero there, and
    keeps ``.grad = None`` only when no rank has one).

    :param params: the parameters (duplicates are reduced once).
    :param str reduction: ``"sum"`` or ``"mean"``.
    :param int examples: :math:`n_r`, this rank's examples (``"mean"`` only).
    :param World world: the processes (default :func:`world`).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    world = world or pyrogen_world()
    if world.size == 1:
        return
    unique, ids = [], set()
    for p in params:
        if id(p) not in ids:
            ids.add(id(p))
            unique.append(p)
    if not unique:
        return
    comm = world._comm_device()
    weight = float(examples if examples is not None else 1) if reduction == "mean" else 1.0
    meta = torch.tensor([p.grad is not None for p in unique] + [weight], dtype=torch.float64)
    meta = meta.to(comm)
    dist.all_reduce(meta)
    meta = meta.cpu()
    present, total = meta[:-1] > 0, float(meta[-1])
    buckets: dict[tuple, list[int]] = {}
    for i, p in enumerate(unique):
        if present[i]:
            buckets.setdefault((p.device, p.dtype), []).append(i)
    for (device, dtype), members in buckets.items():
        flat = torch.cat(
            [
                (unique[i].grad if unique[i].grad is not None else torch.zeros_like(unique[i]))
                .detach()
                .reshape(-1)
                .to(dtype)
                for i in members
            ]
        )
        if reduction == "mean":
            flat.mul_(weight)
        buf = flat.to(comm)
        dist.all_reduce(buf)
        if reduction == "mean":
            buf.div_(total)
        buf = buf.to(device)
        offset = 0
        for i in members:
            p = unique[i]
            chunk = buf[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if p.grad is None:
                p.grad = chunk.clone()
            else:
                p.grad.copy_(chunk)


class GradientSync:
    """All-reduces the gradients of a learner's optimizers before each of their steps (a
    step pre-hook on every optimizer :func:`find_optimizers` finds): the one place where
    every learner kind — SVI with any loss, contrastive divergence, staged and alternating
    learners — is made data parallel.

    :param learner: the learner (its ``gradient_reduction``, ``"sum"`` by default, says how
        the ranks' gradients combine; see the module docs).
    :param World world: the processes.
    :raises ValueError: when the learner holds no ``torch.optim`` optimizer (it cannot be
        made data parallel by the engine).

    The engine sets :attr:`examples` to this rank's batch size before each step.
    """

    def __init__(self, learner: Any, world: World) -> None:
        self.world = world
        self.reduction = getattr(learner, "gradient_reduction", "sum")
        self.optimizers = find_optimizers(learner)
        if not self.optimizers:
            raise ValueError(
                f"{type(learner).__name__} holds no torch.optim optimizer, so data-parallel "
                "training cannot synchronise its updates; give it an optimizers() method or "
                "train it in one process"
            )
        #: this rank's examples in the current step (weights of ``"mean"``)
        self.examples: int | None = None
        self.handles = [opt.register_step_pre_hook(self._hook) for opt in self.optimizers]

    def _hook(self, optimizer, args, kwargs) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        all_reduce_gradients(params, self.reduction, self.examples, self.world)

    def close(self) -> None:
        """Remove the hooks (the learner trains in one process again)."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


# ----------------------------------------------------------------------------- per-rank state


def rank_state_dict(learner: Any) -> dict[str, Any]:
    """What differs between ranks in a learner's state (persistent chains): its
    ``rank_state_dict()`` when it has one, else the state of its loss (a
    :class:`~pyrogen.train.SVILearner`'s ``loss.state_dict()``) or of its stages'.

    :param learner: the learner.
    """
    own = getattr(learner, "rank_state_dict", None)
    if callable(own):
        return own()
    stages = getattr(learner, "stages", None)
    if isinstance(stages, list | tuple) and all(hasattr(s, "learner") for s in stages):
        return {"stages": [rank_state_dict(s.learner) for s in stages]}
    loss = getattr(learner, "loss", None)
    if loss is not None and callable(getattr(loss, "state_dict", None)):
        return {"loss": loss.state_dict()}
    return {}


def load_rank_state_dict(learner: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`rank_state_dict` returned.

    :param learner: the learner.
    :param dict state: its per-rank state.
    """
    own = getattr(learner, "load_rank_state_dict", None)
    if callable(own):
        own(state)
        return
    if "stages" in state:
        for stage, sub in zip(learner.stages, state["stages"]):
            load_rank_state_dict(stage.learner, sub)
    elif "loss" in state:
        learner.loss.load_state_dict(state["loss"])


def reset_rank_state(learner: Any) -> None:
    """Forget the per-rank state (persistent chains restart at the next batch): the
    learner's ``reset_rank_state()``, else its loss's (or its stages' losses') ``reset()``.

    :param learner: the learner.
    """
    own = getattr(learner, "reset_rank_state", None)
    if callable(own):
        own()
        return
    for stage in getattr(learner, "stages", None) or ():
        if hasattr(stage, "learner"):
            reset_rank_state(stage.learner)
    reset = getattr(getattr(learner, "loss", None), "reset", None)
    if callable(reset):
        reset()


# ----------------------------------------------------------------------------- launching


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``.

    :param argv: command-line arguments.
    """
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def relaunch(argv: Sequence[str], nproc: int) -> int:
    """Run ``python -m pyrogen ARGV`` in ``nproc`` processes on this machine through
    ``torch.distributed.run`` (torchrun, ``--standalone``); returns its exit status.

    :param argv: the ``pyrogen`` arguments (``--nproc`` is removed).
    :param int nproc: processes to start.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={int(nproc)}",
        "-m",
        "pyrogen",
        *strip_nproc(argv),
    ]
    return subprocess.call(command)


# ----------------------------------------------------------------------------- the engine's hooks


def start_ranks(learner: Any, world: World, seed: int, device: torch.device) -> None:
    """A fresh start on several ranks: every rank takes rank 0's initial learner state (so
    that the replicas start equal however they were built) and its own random stream
    (:func:`rank_seed`; rank 0 keeps ``seed``).

    :param learner: the learner (already on ``device``).
    :param World world: the processes.
    :param int seed: the run's seed.
    :param device: this rank's device.
    """
    import pyro

    state = world.broadcast(to_device(learner.state_dict(), "cpu") if world.is_main else None)
    if not world.is_main:
        learner.load_state_dict(to_device(state, device))
        pyro.set_rng_seed(rank_seed(seed, world.rank))


def restore_ranks(learner: Any, state: dict[str, Any], world: World, seed: int) -> None:
    """A resume on several ranks, after every rank has loaded rank 0's learner state and
    random state from ``state`` (see the module docs for the rule): with the number of
    ranks that wrote the checkpoint, ranks > 0 restore their own random state and per-rank
    learner state; with another number, they are seeded from ``(seed, rank, step)`` and
    their per-rank state (persistent chains) is reset.

    :param learner: the learner.
    :param dict state: the checkpoint (as broadcast from rank 0).
    :param World world: the processes.
    :param int seed: the run's seed.
    """
    import pyro

    from pyrogen._rng import set_rng_state

    if world.is_main:
        return
    if state.get("world_size", 1) == world.size and "rank_states" in state:
        load_rank_state_dict(learner, state["rank_states"][world.rank])
        set_rng_state(state["rng_ranks"][world.rank])
    else:
        reset_rank_state(learner)
        pyro.set_rng_seed(rank_seed(seed, world.rank, state.get("step", 0)))


def checkpoint_ranks(learner: Any, world: World) -> dict[str, Any] | None:
    """What a checkpoint written by several ranks adds to rank 0's state: ``world_size``,
    every rank's per-rank learner state (``rank_states``) and random state (``rng_ranks``).
    A collective: every rank calls it; rank 0 gets the dict, the others ``None``.

    :param learner: the learner.
    :param World world: the processes.
    """
    from pyrogen._rng import get_rng_state

    mine = (to_device(rank_state_dict(learner), "cpu"), get_rng_state())
    gathered = world.gather(mine)
    if gathered is None:
        return None
    return {
        "world_size": world.size,
        "rank_states": [g[0] for g in gathered],
        "rng_ranks": [g[1] for g in gathered],
    }
