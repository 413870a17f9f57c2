r"""A run: build -> train -> evaluate -> sample a registered family, in a run folder.

The command line (``pyrogen train / evaluate / sample / demo``), the benchmarks and the
tutorials all go through this module, so a model is built, trained, scored and sampled the
same way wherever it is run:

.. code-block:: python

    from pyrogen.runs import Run, RunConfig

    run = Run(RunConfig("nade", dataset="binarized_mnist", config={"hidden": 500}, epochs=2,
                        batch_size=20, lr=5e-3), out="runs/nade")
    run.train()                      # resumes from runs/nade/checkpoint.pt when present
    print(run.evaluate().summary())  # exact test log-likelihood; writes eval.json
    run.sample(64)                   # writes runs/nade/samples.png

    Run.load("runs/nade").evaluate(limit=1000)   # later, from the folder alone

A run folder holds

========================  ===================================================================
``config.json``           the :class:`RunConfig` (family, its hyper-parameters, data set,
                          training options) and the data's shape
``checkpoint.pt``         the learner's state, position, RNG states (written atomically;
                          training resumes from it exactly)
``checkpoint.prev.pt``    the checkpoint before it, kept so that a damaged ``checkpoint.pt``
                          (e.g. truncated by a partial copy) falls back to it with a
                          warning; with neither readable, loading stops with an error naming
                          the file and the way out (delete the folder, train elsewhere,
                          or restore the file)
``history.jsonl``         one JSON object per logged step and validation
``eval.json``             the last evaluation (``LogLikelihood.to_dict()`` and the split)
``samples.png``           the last sample grid
========================  ===================================================================

The number of steps per epoch is computed once, by the engine, and handed to the learner
(staged learners place their stage boundaries with it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pyrogen import data as pdata
from pyrogen import distributed
from pyrogen.registry import DataInfo, get_family
from pyrogen.train import TrainResult, load_checkpoint, resolve_device, train

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "EVAL",
    "HISTORY",
    "SAMPLES",
    "Run",
    "RunConfig",
    "data_info",
    "demo",
    "load_splits",
]

#: file names of a run folder
CONFIG, CHECKPOINT, HISTORY, EVAL, SAMPLES = (
    "config.json",
    "checkpoint.pt",
    "history.jsonl",
    "eval.json",
    "samples.png",
)


# ------------------------------------------------------------------------------ data


def load_splits(dataset: str, binarize: str | None = "auto", root=None):
    """``(train, valid or None, test)`` of a registered data set for a binary model
    (grey-level sets are binarized dynamically unless ``binarize`` says otherwise;
    :func:`pyrogen.data.default_binarization`)."""
    binarize = pdata.default_binarization(dataset, binarize)
    spec = pdata.get_spec(dataset)
    train_set = pdata.load(dataset, "train", root=root, binarize=binarize)
    valid = (
        pdata.load(dataset, "valid", root=root, binarize=binarize)
        if "valid" in spec.splits
        else None
    )
    test = pdata.load(dataset, "test", root=root, binarize=binarize)
    return train_set, valid, test


def data_info(train_set) -> DataInfo:
    """What a family needs to know of a data set to build its model (width, image shape,
    pixel means, name), from a pyrogen dataset or an ``(N, D)`` tensor."""
    if isinstance(train_set, torch.Tensor):
        x = train_set.reshape(train_set.shape[0], -1)
        from pyrogen.models.base import default_image_shape

        shape = default_image_shape(x.shape[1])
        return DataInfo(x.shape[1], shape, x.float().mean(0), "")
    return DataInfo(
        num_features=train_set.num_features,
        image_shape=tuple(train_set.image_shape),
        pixel_mean=train_set.data.float().mean(0),
        dataset=getattr(train_set, "name", ""),
    )


def _subset(ds, limit: int | None):
    if limit is None or limit >= len(ds):
        return ds
    return ds.tensor()[:limit]


# ------------------------------------------------------------------------------ runs


@dataclass
class RunConfig:
    """Everything that defines a run (what ``config.json`` of a run folder holds).

    :ivar str family: a registered family (``pyrogen.registry.load_families()``).
    :ivar dict config: the family's hyper-parameters (its config dataclass's fields).
    :ivar str dataset: a registered data set (``pyrogen datasets`` lists them).
    :ivar binarize: ``"auto"`` (as stored for binary sets; for grey levels, dynamic
        binarization, or the grey levels themselves when the family's observation model is
        continuous, e.g. a Gaussian decoder), ``"none"`` (as stored), ``"dynamic"``,
        ``"stochastic"``, ``"threshold"`` or ``None``.
    :ivar int epochs: passes over the training set.
    :ivar int batch_size: examples per step.
    :ivar lr: learning rate of the family's optimizer (``None``: the family's default).
    :ivar int seed: seeds initialisation, shuffling and sampling.
    :ivar str device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    :ivar checkpoint_every: steps between checkpoints (``None``: each epoch).
    :ivar bool validate: evaluate the validation split at epoch ends.
    :ivar max_steps: stop after this many steps.
    :ivar train_limit: train on the first N training examples only.
    :ivar str train_split: the split trained on (e.g. ``"train+valid"``: all non-test
        images, with no validation); ``"train"`` validates on ``"valid"``.
    :ivar str precision: ``"fp32"``, or ``"bf16"``: bfloat16 autocast inside the model's
        networks during training (:mod:`pyrogen.accelerate`; log-weights, losses and
        evaluation stay float32), or ``"fp64"``: the model, its training and its
        evaluation in float64.
    :ivar bool compile: ``torch.compile`` the model's networks (eager, with a warning
        naming the family and the reason, where that does not work).
    """

    family: str
    config: dict[str, Any] = field(default_factory=dict)
    dataset: str = "binarized_mnist"
    binarize: str | None = "auto"
    epochs: int = 10
    batch_size: int = 100
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int | None = None
    validate: bool = True
    max_steps: int | None = None
    train_limit: int | None = None
    train_split: str = "train"
    precision: str = "fp32"
    compile: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["config"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Run:
    """One run of a registered family (see module docs).

    :param RunConfig config: what to run.
    :param out: the run folder (``None``: nothing is written, training does not resume).
    :param root: data folder (default ``$PYROGEN_DATA``, then ``~/.cache/pyrogen``).
    :param DataInfo info: the data's shape, when training on data that is not the
        registered set's (e.g. a benchmark's own split); read from the training split
        otherwise.
    """

    def __init__(
        self,
        config: RunConfig,
        out: str | os.PathLike | None = None,
        *,
        root=None,
        info: DataInfo | None = None,
    ) -> None:
        self.config = config
        self.family = get_family(config.family)
        self.model_config = self.family.config(**config.config)
        self.out = Path(out) if out is not None else None
        self.root = root
        self.info = info
        self._splits = None
        self.model = None
        self.learner = None
        self.result: TrainResult | None = None

    # ---- data -------------------------------------------------------------------------

    @property
    def _binarize(self) -> str | None:
        """``config.binarize``, with ``"auto"`` read as ``"none"`` for a family whose
        observation model is continuous (it models the grey levels, not bits)."""
        binarize = self.config.binarize
        if binarize == "auto" and self.family.observation_for(self.model_config) != "bernoulli":
            return "none"
        return binarize

    @property
    def binarization(self) -> str | None:
        """The binarization the data set is loaded with (``None`` for data that is not a
        registered set, such as a benchmark's own, given to :meth:`train`)."""
        if self.config.dataset not in pdata.DATASETS:
            return None if self._binarize in ("auto", "none") else self._binarize
        return pdata.default_binarization(self.config.dataset, self._binarize)

    def splits(self):
        """``(train, valid or None, test)`` of the run's data set (loaded once)."""
        if self._splits is None:
            self._splits = load_splits(self.config.dataset, self._binarize, self.root)
        return self._splits

    def split(self, name: str):
        """One split (``"train"``, ``"valid"``, ``"test"``, or any the data set has)."""
        known = dict(zip(("train", "valid", "test"), self.splits()))
        if name in known and known[name] is not None:
            return known[name]
        return pdata.load(self.config.dataset, name, root=self.root, binarize=self.binarization)

    # ---- build ------------------------------------------------------------------------

    def build(self):
        """The model (seeded: its initialisation is part of the run) and its learner."""
        if self.info is None:
            self.info = data_info(self.split(self.config.train_split))
        torch.manual_seed(self.config.seed)
        self.model = self.family.build(self.model_config, self.info)
        lr = self.config.lr if self.config.lr is not None else self.family.default_lr
        self.learner = self.family.learner(self.model, self.model_config, lr)
        return self.model

    def _write_config(self) -> None:
        if self.out is None or not distributed.is_main():  # under torchrun: rank 0 writes
            return
        self.out.mkdir(parents=True, exist_ok=True)
        record = {
            **self.config.to_dict(),
            "config": dataclasses.asdict(self.model_config),
            "binarization": self.binarization,
            "num_features": self.info.num_features,
            "image_shape": list(self.info.image_shape),
        }
        path = self.out / CONFIG
        if (self.out / CHECKPOINT).exists() and path.exists():
            old = json.loads(path.read_text())
            keys = ("family", "config", "dataset")
            if {k: old.get(k) for k in keys} != json.loads(
                json.dumps({k: record[k] for k in keys})
            ):
                raise ValueError(
                    f"{self.out} holds a checkpoint of another run ({old.get('family')} "
                    f"{old.get('config')} on {old.get('dataset')}); choose another folder"
                )
        path.write_text(json.dumps(record, indent=1))

    # ---- train ------------------------------------------------------------------------

    def train(
        self, train_data=None, val_data=None, *, progress: bool = True, **train_options
    ) -> TrainResult:
        """Train by :func:`pyrogen.train.train` (resuming from the run folder's checkpoint
        when there is one). ``train_data`` / ``val_data`` default to the data set's train /
        valid splits (no validation when ``config.validate`` is off); other keyword arguments
        (``lr_schedule``, ``callback``, ``log_every``, ...) go to :func:`~pyrogen.train.train`.
        """
        c = self.config
        if train_data is None:
            train_set = self.split(c.train_split)
            valid = self.splits()[1] if c.train_split == "train" else None
            if self.info is None:  # the model is built from the whole split, not the subset
                self.info = data_info(train_set)
            train_data = _subset(train_set, c.train_limit)
            if val_data is None and c.validate:
                val_data = valid
        if self.info is None:
            self.info = data_info(train_data)
        if self.model is None:
            self.build()
        self._write_config()
        self.result = train(
            self.learner,
            train_data,
            epochs=c.epochs,
            batch_size=c.batch_size,
            val_data=val_data if c.validate else None,
            device=c.device,
            seed=c.seed,
            out=self.out,
            checkpoint_every=c.checkpoint_every,
            max_steps=c.max_steps,
            progress=progress,
            precision=c.precision,
            compile=c.compile,
            name=f"{c.family} family",
            **train_options,
        )
        return self.result

    # ---- load -------------------------------------------------------------------------

    @classmethod
    def load(cls, out: str | os.PathLike, device: str = "cpu", root=None) -> Run:
        """The run of a folder written by :meth:`train`, its model restored from the
        checkpoint (in evaluation mode, on ``device``)."""
        out = Path(out)
        path = out / CONFIG
        if not path.exists():
            raise FileNotFoundError(f"{out} is not a pyrogen run folder: {path} is missing")
        record = json.loads(path.read_text())
        info = DataInfo(
            record["num_features"], tuple(record["image_shape"]), None, record["dataset"]
        )
        run = cls(RunConfig.from_dict(record), out, root=root, info=info)
        run.build()
        if run.config.precision == "fp64":  # before loading, so nothing is rounded
            run.model.double()
        state = load_checkpoint(out, map_location="cpu")
        run.learner.load_state_dict(state["learner"])
        run.model.to(resolve_device(device))
        run.model.eval()
        return run

    # ---- evaluate and sample ----------------------------------------------------------

    def evaluate(
        self,
        data=None,
        *,
        split: str = "test",
        limit: int | None = None,
        seed: int = 0,
        num_samples: int | None = None,
        progress: bool = True,
        **options,
    ):
        """Score the model by the evaluation protocol: the family's estimator (a
        :class:`~pyrogen.evaluate.LogLikelihood`; for deterministic families, their
        reconstruction) on ``data`` or the data set's ``split``, optionally on a seeded
        random subset of ``limit`` examples (MNIST's test set is not shuffled). Writes
        ``eval.json``.

        ``seed`` picks the subset and seeds a sampling estimator (importance samples of
        batch :math:`i`, AIS chains of group :math:`g`, drawn from ``(seed, i)``), so that
        the estimate is reproducible and the same under any number of processes
        (:mod:`pyrogen.distributed`); pass ``seed=None`` in ``options`` for the global
        stream instead.

        :param num_samples: the estimator's sample count (importance samples, AIS chains;
            the family's protocol by default); an error for exact families.
        :param options: further options of the model's ``log_likelihood``.
        """
        if self.model is None:
            raise RuntimeError("nothing to evaluate: train or load the run first")
        name = "custom"
        if data is None:
            ds = self.split(split)
            data, name = ds, split
        if hasattr(data, "tensor") and callable(data.tensor):
            data = data.tensor()
        if limit is not None and limit < len(data):
            gen = torch.Generator().manual_seed(int(seed))
            data = data[torch.randperm(len(data), generator=gen)[:limit]]
        ref = next(iter(self.model.parameters()), None)
        if ref is not None and ref.dtype == torch.float64 and data.is_floating_point():
            data = data.double()  # a float64 run is scored in float64
        option = self.family.sample_option
        if num_samples is not None:
            if option is None:
                raise TypeError(
                    f"{self.family.name}: its {self.family.kind} evaluation is exact and takes "
                    f"no sample count (got num_samples={num_samples})"
                )
            options[option] = int(num_samples)
        elif option is not None and option not in options:
            options[option] = self.family.default_num_samples
        if option is not None:
            options.setdefault("seed", int(seed))
        if self.family.kind == "density":
            options.setdefault("progress", progress)
        start = time.perf_counter()
        result = self.family.evaluate(self.model, self.model_config, data, **options)
        seconds = time.perf_counter() - start
        if self.out is not None and distributed.is_main():
            record = {
                "dataset": self.config.dataset,
                "split": name,
                "binarization": self.binarization,
                "seconds": seconds,
                **result.to_dict(),
            }
            (self.out / EVAL).write_text(json.dumps(record, indent=1))
        return result

    def sample(self, num_samples: int = 64, path: str | os.PathLike | None = None, seed: int = 0):
        """Draw ``num_samples`` from the model and write them as a PNG grid to ``path``
        (default ``samples.png`` in the run folder; nothing written without either).
        Returns ``(samples, path)``: conditional means where the model has them (a VAE's
        :math:`p(x \\mid z)`, an RBM's :math:`p(v \\mid h)`), in [0, 1]."""
        if self.model is None:
            raise RuntimeError("nothing to sample: train or load the run first")
        if self.family.kind != "density":
            raise TypeError(
                f"{self.family.name} is a deterministic model: it defines no distribution to "
                "sample from (use reconstruct or decode)"
            )
        torch.manual_seed(seed)
        kwargs = {"mean": True} if self.model.has_mean_samples else {}
        with torch.no_grad():
            x = self.model.to_unit_interval(self.model.sample(int(num_samples), **kwargs))
        x = x.reshape(int(num_samples), -1).float().cpu()
        if path is None and self.out is not None:
            path = self.out / SAMPLES
        if path is not None:
            from pyrogen.plotting import save_image_grid

            title = f"{self.config.family} samples ({self.config.dataset})"
            path = save_image_grid(x, path, self.info.image_shape, title=title)
        return x, path


# ------------------------------------------------------------------------------ demo


def _locally_available(dataset: str) -> bool:
    spec = pdata.get_spec(dataset)
    return all(pdata.locate_file(f) is not None for f in spec.files)


#: the demo's budget per data set
DEMO = {
    "digits": {"epochs": 150, "eval_k": 5000, "batch_size": 100},
    "binarized_mnist": {"epochs": 5, "eval_k": 500, "batch_size": 100},
}


def demo(
    dataset: str = "auto",
    out: str | os.PathLike = "runs/demo",
    smoke: bool = False,
    device: str = "auto",
    progress: bool = True,
    epochs: int | None = None,
    eval_k: int | None = None,
) -> dict[str, Any]:
    """Train a one-layer IWAE (k = 5) on a default data set, print its test
    log-likelihood and write a sample grid: the README's first command."""
    if dataset == "auto":
        dataset = "binarized_mnist" if _locally_available("binarized_mnist") else "digits"
        why = "found locally" if dataset == "binarized_mnist" else "binarized MNIST not found"
        print(f"demo: data set {dataset} ({why}; choose with --dataset)")
    settings = DEMO.get(dataset, DEMO["binarized_mnist"])
    epochs = epochs or (1 if smoke else settings["epochs"])
    eval_k = eval_k or (50 if smoke else settings["eval_k"])
    start = time.perf_counter()
    run = Run(
        RunConfig(
            "vae",
            {"layers": 1, "objective": "iwae", "num_particles": 5},
            dataset=dataset,
            epochs=epochs,
            batch_size=settings["batch_size"],
            device=device,
            max_steps=20 if smoke else None,
            validate=not smoke,
        ),
        out,
    )
    result = run.train(progress=progress)
    ll = run.evaluate(num_samples=eval_k, limit=200 if smoke else None, progress=progress)
    _, grid = run.sample(64)
    seconds = time.perf_counter() - start
    print(ll.summary())
    print(f"sample grid: {grid}")
    print(f"demo finished in {seconds:.0f} s ({result.step} training steps)")
    return {"dataset": dataset, "log_likelihood": ll, "grid": grid, "seconds": seconds}
