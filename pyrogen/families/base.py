r"""What a registered model family is: a config dataclass and three functions.

A family (``vae``, ``rbm``, ``nade``, ...) is a subclass of :class:`Family` registered with
:func:`register`, one module per family in :mod:`pyrogen.families`. It says

* which hyper-parameters it has: :attr:`Family.config_cls`, a dataclass whose fields are
  made with :func:`option` / :func:`choice` / :func:`sizes` (each with a help text: the
  command line builds ``pyrogen train <family>`` flags from them);
* how to build its model from a config and the data's shape (:meth:`Family.build`): a model
  that follows the protocol of :mod:`pyrogen.models.base`, so sampling and scoring are the
  model's own ``sample`` and ``log_likelihood``;
* how to train it (:meth:`Family.learner`): a learner for :func:`pyrogen.train.train`;
* which options of the model's estimator its config fixes (:meth:`Family.evaluation_options`,
  e.g. the AIS temperatures of an RBM).

Nothing else in the package changes when a family is added: the registry finds the module,
the command line grows a sub-command, and the contract tests (``tests/test_families.py``)
cover it.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from pyrogen._checks import warn_user

__all__ = [
    "FAMILIES",
    "DataInfo",
    "Family",
    "choice",
    "option",
    "parse_sizes",
    "register",
    "sizes",
]

#: name -> the registered family (filled by :func:`register` as the family modules load)
FAMILIES: dict[str, Family] = {}


@dataclass(frozen=True)
class DataInfo:
    """What a family needs to know about the data to build its model.

    :ivar int num_features: :math:`D`, the width of one example (pixels of an image).
    :ivar tuple image_shape: ``(H, W)`` of one example, for image-shaped input and pictures.
    :ivar pixel_mean: ``(D,)`` training-set means (for output-bias initialisations), or None.
    :ivar str dataset: the data set's name.
    """

    num_features: int
    image_shape: tuple[int, ...]
    pixel_mean: torch.Tensor | None = None
    dataset: str = ""

    @property
    def num_pixels(self) -> int:
        """Deprecated alias of :attr:`num_features` (removed in the next release)."""
        warn_user("DataInfo.num_pixels is deprecated; use num_features", DeprecationWarning)
        return self.num_features


# ----------------------------------------------------------------------------- config fields


def option(default, help: str):
    """A config field with a help text (a ``pyrogen train`` flag of the default's type)."""
    return field(default=default, metadata={"help": help})


def choice(default, choices: Sequence, help: str):
    """A config field restricted to ``choices``."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices)})


def sizes(default: Sequence[int], help: str):
    """A config field holding layer widths, a tuple of positive ints (``--hidden 500,1000``
    on the command line)."""
    return field(default=tuple(default), metadata={"help": help, "sizes": True})


def parse_sizes(text: str | int | Sequence[int], name: str = "hidden") -> tuple[int, ...]:
    """``"500,1000"``, ``500`` or ``(500, 1000)`` -> ``(500, 1000)``; a ValueError naming
    ``name`` for anything else."""
    if isinstance(text, int):
        values = (text,)
    elif isinstance(text, str):
        try:
            values = tuple(int(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise ValueError(
                f"{name} must be comma-separated positive integers, got {text!r}"
            ) from None
    else:
        values = tuple(int(s) for s in text)
    if not values or min(values) < 1:
        raise ValueError(f"{name} must list positive integers, got {text!r}")
    return values


def _is_sizes(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("sizes"))


# ----------------------------------------------------------------------------- families


class Family(ABC):
    """A registered model family (see module docs)."""

    name: ClassVar[str]
    description: ClassVar[str]
    config_cls: ClassVar[type]
    #: "density" (a generative model with sample / log_likelihood) or "representation"
    #: (a deterministic model with fit / transform / reconstruct)
    kind: ClassVar[str] = "density"
    #: the option of the model's estimator that counts its samples ("num_samples" for
    #: importance sampling, "num_chains" for AIS, None for an exact log-likelihood)
    sample_option: ClassVar[str | None] = "num_samples"
    #: the protocol's default for that option (5000 importance samples, 100 AIS chains)
    default_num_samples: ClassVar[int | None] = 5000
    #: the observation model :math:`p(x \mid \cdot)` of the family's data: ``"bernoulli"``
    #: (binary data: probabilities, so every log-likelihood is negative and samples are 0
    #: or 1) or ``"gaussian"`` (continuous data: densities, so a log-likelihood may be
    #: positive; samples are real-valued, ``model.to_unit_interval`` maps them to [0, 1]).
    #: A family whose config chooses it overrides :meth:`observation_for`.
    observation: ClassVar[str] = "bernoulli"
    #: learning rate used when the command line does not give one
    default_lr: ClassVar[float] = 1e-3
    #: a conditional family models :math:`p(x \mid y)`: every example is an image and a
    #: context (alignDRAW: caption token ids) and it trains on a conditional data set only
    conditional: ClassVar[bool] = False
    #: the keyword under which the model's ``log_likelihood`` and ``sample`` take the
    #: context (conditional families only)
    context_option: ClassVar[str | None] = None
    #: the data set a conditional family trains on when none is named (its tests use it)
    default_dataset: ClassVar[str | None] = None
    #: config overrides of a tiny instance, for smoke runs and the contract tests that run
    #: over every registered family (``tests/test_families.py``)
    smoke_config: ClassVar[dict[str, Any]] = {}
    #: old config names kept for one release: old -> (new, value -> {new: value} given the
    #: config being built)
    deprecated_options: ClassVar[dict[str, tuple[str, Callable[[Any, dict], dict]]]] = {}

    def config(self, **overrides) -> Any:
        """A config instance with ``overrides`` applied. Unknown names are a ValueError;
        deprecated names are translated with a :class:`DeprecationWarning`; layer widths may
        be given as ``"500,1000"``."""
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in self.deprecated_options and key not in fields:
                new, translate = self.deprecated_options[key]
                warn_user(
                    f"{self.name}: option {key!r} is deprecated; use {new!r}", DeprecationWarning
                )
                current = {n: values.get(n, f.default) for n, f in fields.items()}
                values.update(translate(value, current))
            else:
                values[key] = value
        unknown = set(values) - set(fields)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown option(s) {sorted(unknown)}; known: {sorted(fields)}"
            )
        for key, value in values.items():
            if _is_sizes(fields[key]):
                values[key] = parse_sizes(value, key)
        cfg = self.config_cls(**values)
        if hasattr(cfg, "validate"):
            cfg.validate()
        return cfg

    @abstractmethod
    def build(self, config, info: DataInfo) -> torch.nn.Module:
        """The model for ``config`` on data described by ``info``."""

    @abstractmethod
    def learner(self, model, config, lr: float):
        """The learner that trains ``model`` (:class:`pyrogen.train.Learner`); the engine
        tells it the number of steps per epoch before the first step."""

    def observation_for(self, config) -> str:
        """The observation model of a model built from ``config`` (:attr:`observation`
        unless the family's config chooses it)."""
        return self.observation

    def evaluation_options(self, config) -> dict[str, Any]:
        """Options of ``model.log_likelihood`` that ``config`` fixes (none by default)."""
        return {}

    def log_likelihood(self, model, config, data, **options):
        """``model.log_likelihood(data, **options)`` with this config's evaluation options
        (explicit ``options`` win). ``num_samples`` is also accepted, for one release, as
        the old name of an AIS family's ``num_chains`` (and ignored by exact families)."""
        if "num_samples" in options and self.sample_option != "num_samples":
            value = options.pop("num_samples")
            warn_user(
                f"{self.name}: log_likelihood(num_samples=...) is deprecated; "
                + (f"use {self.sample_option}=" if self.sample_option else "it is exact"),
                DeprecationWarning,
            )
            if self.sample_option is not None:
                options[self.sample_option] = value
        return model.log_likelihood(data, **{**self.evaluation_options(config), **options})

    def sample(self, model, num_samples: int) -> torch.Tensor:
        """Deprecated (removed in the next release): ``model.sample(num_samples)``, or with
        ``mean=True`` where the model has conditional means, flattened to ``(n, D)`` in
        [0, 1], what this method returned before."""
        warn_user(
            f"{self.name}: Family.sample is deprecated; use model.sample(n)",
            DeprecationWarning,
        )
        kwargs = {"mean": True} if getattr(model, "has_mean_samples", False) else {}
        x = model.to_unit_interval(model.sample(num_samples, **kwargs))
        return x.reshape(num_samples, -1)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "learner" in cls.__dict__:
            cls.learner = _accepting_steps_per_epoch(cls.__dict__["learner"])

    def evaluate(self, model, config, data, **options):
        """What ``pyrogen evaluate`` reports: the test log-likelihood for a density model
        (:meth:`log_likelihood`); deterministic families report their reconstruction."""
        return self.log_likelihood(model, config, data, **options)


def _accepting_steps_per_epoch(learner):
    """Let ``Family.learner`` take the old ``steps_per_epoch`` keyword for one release (the
    engine hands the steps per epoch to the learner now)."""

    @functools.wraps(learner)
    def wrapped(self, model, config, lr, *args, steps_per_epoch=None, **kwargs):
        if steps_per_epoch is not None:
            warn_user(
                f"{self.name}: learner(..., steps_per_epoch=...) is deprecated and ignored: "
                "the training engine tells the learner its steps per epoch",
                DeprecationWarning,
            )
        return learner(self, model, config, lr, *args, **kwargs)

    return wrapped


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: add a family to :data:`FAMILIES` under ``cls.name``."""
    if cls.name in FAMILIES and type(FAMILIES[cls.name]) is not cls:
        raise ValueError(f"two families are registered as {cls.name!r}")
    FAMILIES[cls.name] = cls()
    return cls
