"""Model families by name: each a config dataclass and a few functions.

Entries live in :mod:`pyrogen.families`, one module per family, found by
:func:`load_families`. An entry says how to build its module from a config and the data's
shape, how to train it (a learner for :func:`pyrogen.train.train`), how to score it by the
evaluation protocol and how to draw samples. The CLI builds ``pyrogen train <family>`` flags
from the config dataclass, so a new model appears in ``pyrogen train --help`` by adding a
module to :mod:`pyrogen.families` and nothing else.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

FAMILIES: dict[str, Family] = {}
_LOADED = False


@dataclass(frozen=True)
class DataInfo:
    """What a family needs to know about the data to build its module."""

    num_pixels: int
    image_shape: tuple[int, ...]
    pixel_mean: torch.Tensor | None = None
    dataset: str = ""


class Family(ABC):
    """A registered model family (see module docs)."""

    name: ClassVar[str]
    description: ClassVar[str]
    config_cls: ClassVar[type]
    #: the strongest log-likelihood estimator it admits (evaluation protocol)
    estimator: ClassVar[str]
    default_eval_samples: ClassVar[int] = 5000
    #: learning rate used when the command line does not give one
    default_lr: ClassVar[float] = 1e-3

    def config(self, **overrides) -> Any:
        """A config instance with ``overrides`` applied (unknown names are an error)."""
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(
                f"{self.name}: unknown option(s) {sorted(unknown)}; known: {sorted(names)}"
            )
        cfg = self.config_cls(**overrides)
        if hasattr(cfg, "validate"):
            cfg.validate()
        return cfg

    @abstractmethod
    def build(self, config, info: DataInfo) -> torch.nn.Module: ...

    @abstractmethod
    def learner(self, module: torch.nn.Module, config, lr: float, steps_per_epoch=None):
        """The learner that trains ``module`` (``steps_per_epoch`` lets staged learners
        place their stage boundaries in epochs)."""

    @abstractmethod
    def log_likelihood(self, module, config, data, num_samples: int, **kwargs): ...

    @abstractmethod
    def sample(self, module, num_samples: int) -> torch.Tensor: ...

    def module_state(self, learner_state: dict) -> dict:
        """The module's state dict inside a learner's checkpointed state."""
        return learner_state["module"]


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: add a family to :data:`FAMILIES` under ``cls.name``."""
    FAMILIES[cls.name] = cls()
    return cls


def load_families() -> dict[str, Family]:
    """Import every module of :mod:`pyrogen.families` (each registers its family) and
    return :data:`FAMILIES`. A new family is a new module there; nothing else changes."""
    global _LOADED
    if not _LOADED:
        import importlib
        import pkgutil

        import pyrogen.families as package

        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{package.__name__}.{info.name}")
        _LOADED = True
    return FAMILIES


def get_family(name: str) -> Family:
    load_families()
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; registered: {sorted(FAMILIES)}")
    return FAMILIES[name]


def _choice(default, choices, help):
    return field(default=default, metadata={"choices": tuple(choices), "help": help})


def _opt(default, help):
    return field(default=default, metadata={"help": help})
