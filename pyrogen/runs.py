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
``samples.txt``           for a conditional data set (an example is an image and a context,
                          e.g. a caption): the contexts the grid's images were generated
                          from, one line per image, held-out compositions marked
========================  ===================================================================

Conditional data sets (``"mnist_captions"``, ``"mnist_captions_colour"``; in general a
:class:`ConditionalDataset`) go through the same steps: the learner gets
:class:`ConditionalBatch` batches ``[images, context]`` (binarization applies to the images
only), evaluation scores :math:`\log p(x \mid y)` with the test contexts passed to the
family's estimator as ``context=``, and sampling generates from test contexts (half of
them, where the data set records them, compositions held out of training).

The number of steps per epoch is computed once, by the engine, and handed to the learner
(staged learners place their stage boundaries with it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pyrogen import data as pdata
from pyrogen import distributed
from pyrogen.data.registry import GENERATED
from pyrogen.registry import DataInfo, get_family
from pyrogen.train import TrainResult, load_checkpoint, resolve_device, train

__all__ = [
    "CAPTIONS",
    "CHECKPOINT",
    "CONFIG",
    "EVAL",
    "HISTORY",
    "SAMPLES",
    "ConditionalBatch",
    "ConditionalDataInfo",
    "ConditionalDataset",
    "Run",
    "RunConfig",
    "conditional_split",
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
#: the captions (contexts) of a conditional run's sample grid, one line per image
CAPTIONS = "samples.txt"


# ------------------------------------------------------------------------------ data


def _default_binarization(dataset: str, binarize: str | None) -> str | None:
    """:func:`pyrogen.data.default_binarization`, also for the generated sets (grey levels:
    dynamic binarization unless ``binarize`` says otherwise; ``"fixed"`` is an error)."""
    if dataset not in GENERATED:
        return pdata.default_binarization(dataset, binarize)
    if binarize == "none":
        return None
    if binarize in (None, "auto"):
        return "dynamic"
    if binarize not in CONDITIONAL_BINARIZATIONS:
        raise ValueError(
            f"binarize: {dataset} holds grey levels; expected 'auto', 'none', "
            f"{', '.join(repr(b) for b in CONDITIONAL_BINARIZATIONS)}, found {binarize!r}"
        )
    return binarize


def load_splits(dataset: str, binarize: str | None = "auto", root=None):
    """``(train, valid or None, test)`` of a registered data set for a binary model
    (grey-level sets are binarized dynamically unless ``binarize`` says otherwise;
    :func:`pyrogen.data.default_binarization`). A generated conditional set (``"mnist_captions"``,
    ``"mnist_captions_colour"``) gives :class:`ConditionalDataset` splits, the binarization
    applied to their images only."""
    binarize = _default_binarization(dataset, binarize)
    if dataset in GENERATED:
        spec = GENERATED[dataset]

        def load(split):
            return conditional_split(pdata.load(dataset, split, root=root), binarize)
    else:
        spec = pdata.get_spec(dataset)

        def load(split):
            return pdata.load(dataset, split, root=root, binarize=binarize)

    train_set = load("train")
    valid = load("valid") if "valid" in spec.splits else None
    return train_set, valid, load("test")


#: the binarizations of a conditional data set's images
CONDITIONAL_BINARIZATIONS = ("dynamic", "stochastic", "threshold")


class ConditionalBatch(list):
    """A batch of a :class:`ConditionalDataset`: the list ``[images, context]`` (so that the
    training engine moves and casts both parts, the context keeping its integer dtype), with
    the images' :attr:`shape` (the engine counts examples by ``batch.shape[0]``)."""

    @property
    def image(self) -> torch.Tensor:
        """``(n, D)`` images."""
        return self[0]

    @property
    def context(self) -> torch.Tensor:
        """``(n, ...)`` context rows (e.g. caption token ids)."""
        return self[1]

    @property
    def shape(self) -> torch.Size:
        """The images' shape, ``(n, D)``."""
        return self[0].shape


class ConditionalDataset(torch.utils.data.Dataset):
    r"""A split whose examples are pairs :math:`(x, y)`: an image and a context tensor on
    which a conditional model :math:`p(x \mid y)` is conditioned (for MNIST with captions,
    the caption's token ids). The binarization applies to the images only.

    :param images: ``(N, D)`` stored images: uint8 grey levels (read as ``images / 255``)
        or floats in [0, 1]; kept as stored, converted batch by batch.
    :param context: ``(N, ...)`` context, one row per example (any dtype; not binarized).
    :param image_shape: ``(H, W)`` or ``(C, H, W)`` of one image.
    :param binarization: ``None`` (grey levels), ``"dynamic"`` (a fresh Bernoulli sample of
        the grey levels at every fetch, torch's global RNG, as
        :class:`~pyrogen.data.ImageDataset`), ``"stochastic"`` (one sample, drawn at
        construction with a generator seeded by ``seed``) or ``"threshold"`` (grey level
        :math:`> 0.5`).
    :param int context_size: the number of values a context entry takes (a vocabulary's
        words, padding excluded), or None.
    :param str name: the data set's name.
    :param str split: the split's name.
    :param int seed: seed of the ``"stochastic"`` sample.
    :param source: the object the split was made from (e.g. a
        :class:`~pyrogen.data.CaptionDataset`, whose captions and held-out flags
        :meth:`describe` and :attr:`held_out` read), or None.

    ``dataset.__getitems__(indices)`` (what the training engine calls) returns a
    :class:`ConditionalBatch` ``[images (n, D), context (n, ...)]``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        context: torch.Tensor,
        *,
        image_shape,
        binarization: str | None = None,
        context_size: int | None = None,
        name: str = "",
        split: str = "",
        seed: int = 0,
        source: Any = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 2:
            found = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"images: expected a tensor (N, D), found {found}")
        if not isinstance(context, torch.Tensor) or context.dim() == 0:
            found = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context)
            raise ValueError(f"context: expected a tensor with one row per image, found {found}")
        if context.shape[0] != images.shape[0]:
            raise ValueError(
                f"context: expected one row per image ({images.shape[0]}), found {context.shape[0]}"
            )
        image_shape = tuple(int(s) for s in image_shape)
        if math.prod(image_shape) != images.shape[1]:
            raise ValueError(
                f"image_shape: {image_shape} does not hold D = {images.shape[1]} values"
            )
        if binarization is not None and binarization not in CONDITIONAL_BINARIZATIONS:
            raise ValueError(
                f"binarization: expected None or one of {CONDITIONAL_BINARIZATIONS}, found "
                f"{binarization!r}"
            )
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        if binarization == "threshold":
            images, scale = (images > 0.5 * scale).to(torch.uint8), 1.0
        elif binarization == "stochastic":
            gen = torch.Generator().manual_seed(int(seed))
            images = torch.cat(
                [
                    torch.bernoulli(c.to(torch.float32) / scale, generator=gen).to(torch.uint8)
                    for c in images.split(4096)
                ]
            )
            scale = 1.0
        self.images, self.context, self.scale = images, context, scale
        self.image_shape = image_shape
        self.binarization = binarization
        self.context_size = context_size
        self.name, self.split, self.seed, self.source = name, split, int(seed), source
        #: ``(N,)`` the examples' row numbers in :attr:`source`
        self.rows = torch.arange(images.shape[0])

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_features(self) -> int:
        """:math:`D`, values per image."""
        return self.images.shape[1]

    def _float(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.to(torch.float32) / self.scale if self.scale != 1 else rows.to(torch.float32)

    def __getitems__(self, indices) -> ConditionalBatch:
        """The examples at ``indices``: ``[images (n, D), context (n, ...)]``, the images
        binarized as :attr:`binarization` says (a fresh sample for ``"dynamic"``)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self._float(self.images.index_select(0, idx))
        if self.binarization == "dynamic":
            x = torch.bernoulli(x)
        return ConditionalBatch([x, self.context.index_select(0, idx)])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, c = self.__getitems__([int(index)])
        return x[0], c[0]

    def subset(self, indices) -> ConditionalDataset:
        """The examples at ``indices`` (a tensor, range or list), as a data set of their own
        (its :attr:`source` rows are :attr:`rows`)."""
        idx = torch.as_tensor(list(indices) if isinstance(indices, range) else indices)
        idx = idx.long()
        out = ConditionalDataset.__new__(ConditionalDataset)
        out.__dict__.update(self.__dict__)
        out.images = self.images.index_select(0, idx)
        out.context = self.context.index_select(0, idx)
        out.rows = self.rows.index_select(0, idx)
        return out

    def tensor(self, seed: int = 0) -> torch.Tensor:
        """The ``(N, D)`` images as used for evaluation (for ``"dynamic"``, one Bernoulli
        sample drawn with a local generator seeded by ``seed``, as
        :meth:`pyrogen.data.ImageDataset.tensor`)."""
        x = self._float(self.images)
        if self.binarization != "dynamic":
            return x
        return torch.bernoulli(x, generator=torch.Generator().manual_seed(int(seed)))

    def pixel_mean(self) -> torch.Tensor:
        """``(D,)`` mean grey level (or bit) of every pixel, in float32."""
        total = torch.zeros(self.num_features, dtype=torch.float64)
        for chunk in self.images.split(4096):
            total += chunk.sum(0, dtype=torch.float64)
        return (total / (len(self) * self.scale)).to(torch.float32)

    @property
    def held_out(self) -> torch.Tensor | None:
        """bool ``(N,)``: the example's context is one training never shows (read from
        :attr:`source`), or None when the source does not say."""
        flags = getattr(self.source, "held_out", None)
        return None if flags is None else flags[self.rows]

    def describe(self, index: int) -> str:
        """Example ``index``'s context as text (a caption, from :attr:`source`), else its
        values."""
        if hasattr(self.source, "captions"):
            return self.source.captions([int(self.rows[index])])[0]
        return " ".join(str(v) for v in self.context[index].reshape(-1).tolist())

    def __repr__(self) -> str:
        return (
            f"ConditionalDataset(name={self.name!r}, split={self.split!r}, N={len(self)}, "
            f"image_shape={self.image_shape}, context={tuple(self.context.shape[1:])}, "
            f"binarization={self.binarization!r})"
        )


def conditional_split(ds, binarization: str | None = None) -> ConditionalDataset:
    """A :class:`~pyrogen.data.CaptionDataset` as a :class:`ConditionalDataset`: its images
    and, as context, its caption token ids (padded with the vocabulary's padding id, which
    marks the captions' ends)."""
    return ConditionalDataset(
        ds.pixels.reshape(len(ds), -1),
        ds.tokens,
        image_shape=ds.image_shape,
        binarization=binarization,
        context_size=len(ds.vocabulary),
        name=ds.name,
        split=ds.split,
        seed=ds.seed,
        source=ds,
    )


@dataclass(frozen=True)
class ConditionalDataInfo(DataInfo):
    """:class:`~pyrogen.registry.DataInfo` of a conditional data set: also the shape of one
    example's context and the number of values its entries take.

    :ivar tuple context_shape: shape of one example's context (``(L,)`` token ids).
    :ivar context_size: values a context entry takes (vocabulary size, padding excluded),
        or None.
    """

    context_shape: tuple[int, ...] = ()
    context_size: int | None = None


def data_info(train_set) -> DataInfo:
    """What a family needs to know of a data set to build its model (width, image shape,
    pixel means, name; for a :class:`ConditionalDataset`, a :class:`ConditionalDataInfo`
    with the context's shape and size), from a pyrogen dataset or an ``(N, D)`` tensor."""
    if isinstance(train_set, torch.Tensor):
        x = train_set.reshape(train_set.shape[0], -1)
        from pyrogen.models.base import default_image_shape

        shape = default_image_shape(x.shape[1])
        return DataInfo(x.shape[1], shape, x.float().mean(0), "")
    if isinstance(train_set, ConditionalDataset):
        return ConditionalDataInfo(
            num_features=train_set.num_features,
            image_shape=train_set.image_shape,
            pixel_mean=train_set.pixel_mean(),
            dataset=train_set.name,
            context_shape=tuple(train_set.context.shape[1:]),
            context_size=train_set.context_size,
        )
    return DataInfo(
        num_features=train_set.num_features,
        image_shape=tuple(train_set.image_shape),
        pixel_mean=train_set.data.float().mean(0),
        dataset=getattr(train_set, "name", ""),
    )


def _subset(ds, limit: int | None):
    if limit is None or limit >= len(ds):
        return ds
    if isinstance(ds, ConditionalDataset):
        return ds.subset(range(limit))
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
        if self.config.dataset not in pdata.DATASETS and self.config.dataset not in GENERATED:
            return None if self._binarize in ("auto", "none") else self._binarize
        return _default_binarization(self.config.dataset, self._binarize)

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
        if self.config.dataset in GENERATED:
            ds = pdata.load(self.config.dataset, name, root=self.root)
            return conditional_split(ds, self.binarization)
        return pdata.load(self.config.dataset, name, root=self.root, binarize=self.binarization)

    # ---- build ------------------------------------------------------------------------

    def build(self):
        """The model (seeded: its initialisation is part of the run) and its learner."""
        if self.info is None:
            self.info = data_info(self.split(self.config.train_split))
        conditional = bool(self.family.conditional)
        if isinstance(self.info, ConditionalDataInfo) != conditional:
            data = "conditional (an image and a context per example)"
            raise ValueError(
                f"dataset: {self.config.dataset} is "
                + (f"not {data}" if conditional else data)
                + f", but the {self.family.name} family is "
                + ("conditional" if conditional else "unconditional")
                + "; choose a data set of the other kind"
            )
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
        if isinstance(self.info, ConditionalDataInfo):
            record["context_shape"] = list(self.info.context_shape)
            record["context_size"] = self.info.context_size
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
        if "context_shape" in record:
            info = ConditionalDataInfo(
                *dataclasses.astuple(info),
                context_shape=tuple(record["context_shape"]),
                context_size=record["context_size"],
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
        ``eval.json``. A :class:`ConditionalDataset` (e.g. MNIST with captions) is scored
        by :math:`\\log p(x \\mid y)`, its contexts :math:`y` passed to the family's estimator
        as ``context=``.

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
        if isinstance(data, ConditionalDataset):
            if limit is not None and limit < len(data):
                gen = torch.Generator().manual_seed(int(seed))
                data = data.subset(torch.randperm(len(data), generator=gen)[:limit])
            options["context"] = data.context
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
        :math:`p(x \\mid z)`, an RBM's :math:`p(v \\mid h)`), in [0, 1].

        A run on a conditional data set generates from the contexts of ``num_samples``
        test examples (:meth:`conditional_contexts`: half of them, where the data set
        records which, compositions held out of training), and writes the contexts as text
        beside the grid (``samples.txt`` next to ``samples.png``: the image's place in the
        grid, ``held-out`` or ``seen``, the caption)."""
        if self.model is None:
            raise RuntimeError("nothing to sample: train or load the run first")
        if self.family.kind != "density":
            raise TypeError(
                f"{self.family.name} is a deterministic model: it defines no distribution to "
                "sample from (use reconstruct or decode)"
            )
        conditional = isinstance(self.info, ConditionalDataInfo)
        if conditional:
            test, picked = self.conditional_contexts(int(num_samples), seed)
            ref = next(iter(self.model.parameters()), None)
            context = test.context[picked]
            kwargs = {"context": context if ref is None else context.to(ref.device)}
        else:
            kwargs = {}
        torch.manual_seed(seed)
        if self.model.has_mean_samples:
            kwargs["mean"] = True
        with torch.no_grad():
            x = self.model.to_unit_interval(self.model.sample(int(num_samples), **kwargs))
        x = x.reshape(int(num_samples), -1).float().cpu()
        if path is None and self.out is not None:
            path = self.out / SAMPLES
        if path is not None:
            from pyrogen.plotting import save_image_grid

            title = f"{self.config.family} samples ({self.config.dataset})"
            shape, pictures = self.info.image_shape, x  # (C, H, W): colour, RGB
            if conditional:
                title += f": from test contexts, listed in {Path(path).with_suffix('.txt').name}"
            nrow = math.ceil(math.sqrt(len(x)))
            path = save_image_grid(pictures, path, shape, nrow=nrow, title=title)
            if conditional:
                held = test.held_out
                lines = [
                    f"{i // nrow} {i % nrow}\t"
                    + ("" if held is None else ("held-out" if held[j] else "seen") + "\t")
                    + test.describe(int(j))
                    for i, j in enumerate(picked.tolist())
                ]
                Path(path).with_suffix(".txt").write_text("\n".join(lines) + "\n")
        return x, path

    def conditional_contexts(self, num: int, seed: int = 0):
        """``(test, indices)``: the test split of a conditional run and the ``num`` examples
        whose contexts :meth:`sample` generates from, drawn without replacement by ``seed``;
        where the split records held-out compositions (:attr:`ConditionalDataset.held_out`),
        the first ``num // 2`` are held-out ones (as many as there are), the rest seen."""
        test = self.split("test")
        if not isinstance(test, ConditionalDataset):
            raise TypeError(f"{self.config.dataset} is not a conditional data set")
        gen = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(len(test), generator=gen)
        held = test.held_out
        if held is None:
            return test, order[:num]
        flags = held[order]
        unseen = order[flags][: num // 2]
        seen = order[~flags][: num - len(unseen)]
        return test, torch.cat([unseen, seen])


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
