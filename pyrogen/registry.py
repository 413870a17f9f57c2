"""Model families by name: each a config dataclass and a few functions.

A family entry says how to build its module from a config and the data's shape, how to
train it (a learner for :func:`pyrogen.train.train`), how to score it by the evaluation
protocol and how to draw samples. The CLI builds ``pyrogen train <family>`` flags from the
config dataclass, so registering a family here is all a new model needs to appear in
``pyrogen train --help``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

FAMILIES: dict[str, Family] = {}


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


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; registered: {sorted(FAMILIES)}")
    return FAMILIES[name]


def _choice(default, choices, help):
    return field(default=default, metadata={"choices": tuple(choices), "help": help})


def _opt(default, help):
    return field(default=default, metadata={"help": help})


# --------------------------------------------------------------------------------- vae


@dataclass
class VAEConfig:
    """Hyper-parameters of the VAE / IWAE family (Burda et al. 2015 architectures)."""

    layers: int = _choice(
        1, (1, 2), "stochastic layers: 1 = x-200-200-z(50); 2 = x-200-200-z1(100)-100-100-z2(50)"
    )
    objective: str = _choice(
        "iwae", ("elbo", "iwae"), "training objective: the ELBO (VAE) or the IWAE bound"
    )
    k: int = _opt(5, "importance samples (particles) per example in the objective")
    estimator: str = _choice(
        "iwae", ("iwae", "dreg"), "gradient estimator of the IWAE bound (dreg: Tucker et al. 2018)"
    )

    def validate(self) -> None:
        if self.layers not in (1, 2):
            raise ValueError(f"layers must be 1 or 2, got {self.layers}")
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.estimator not in ("iwae", "dreg"):
            raise ValueError(f"estimator must be 'iwae' or 'dreg', got {self.estimator!r}")


@register
class VAEFamily(Family):
    name = "vae"
    description = "variational / importance-weighted autoencoder (Bernoulli pixels)"
    config_cls = VAEConfig
    estimator = "importance sampling"

    def build(self, config: VAEConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.vae import VAE

        return VAE.burda(
            info.num_pixels,
            layers=config.layers,
            image_shape=info.image_shape,
            pixel_mean=info.pixel_mean,
        )

    def loss(self, config: VAEConfig):
        from pyro.infer import Trace_ELBO

        from pyrogen.infer import IWAE

        if config.objective == "iwae":
            return IWAE(config.k, estimator=config.estimator, max_plate_nesting=1)
        return Trace_ELBO(
            num_particles=config.k, vectorize_particles=config.k > 1, max_plate_nesting=2
        )

    def learner(self, module, config: VAEConfig, lr: float, steps_per_epoch=None):
        from pyrogen.infer import IWAE
        from pyrogen.train import SVILearner

        # Validation reports the IWAE bound with the training k (the ELBO when k = 1).
        return SVILearner(
            module, self.loss(config), lr=lr, eval_loss=IWAE(config.k, max_plate_nesting=1)
        )

    def log_likelihood(self, module, config, data, num_samples: int, **kwargs):
        from pyrogen.evaluate import log_likelihood

        module.eval()
        return log_likelihood(
            module.model, module.guide, data, num_samples=num_samples, max_plate_nesting=1, **kwargs
        )

    def sample(self, module, num_samples: int) -> torch.Tensor:
        return module.sample(num_samples)


# --------------------------------------------------------------------------------- rbm


@dataclass
class RBMConfig:
    """Hyper-parameters of the binary RBM family trained by (persistent) contrastive
    divergence with SGD + momentum (Hinton 2010's practical guide)."""

    hidden: int = _opt(500, "number of hidden units")
    cd_k: int = _opt(1, "Gibbs sweeps per update (CD-k / PCD-k)")
    persistent: bool = _opt(True, "persistent chains (PCD, Tieleman 2008) instead of CD")
    chains: int = _opt(100, "persistent chains (0: one per example of the first batch)")
    momentum: float = _opt(0.5, "SGD momentum")
    weight_decay: float = _opt(0.0, "L2 penalty on the weights (not the biases)")
    ais_betas: int = _opt(14500, "AIS temperatures for the log-likelihood (Salakhutdinov & Murray)")

    def validate(self) -> None:
        if self.hidden < 1 or self.cd_k < 1 or self.chains < 0:
            raise ValueError(
                f"hidden and cd_k must be >= 1 and chains >= 0, got {self.hidden}, "
                f"{self.cd_k}, {self.chains}"
            )
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError(
                f"momentum must be in [0, 1) and weight_decay >= 0, got {self.momentum}, "
                f"{self.weight_decay}"
            )


def rbm_validation(rbm):
    """Validation numbers of an RBM that need no partition function: the mean free energy
    and the one-step mean-field reconstruction error (squared, per example)."""

    def evaluate(batch):
        dist = rbm.distribution()
        free = dist.free_energy(batch)
        recon = torch.sigmoid(dist.visible_logits(torch.sigmoid(dist.hidden_logits(batch))))
        return {"free_energy": free.mean(), "recon_error": ((recon - batch) ** 2).sum(-1).mean()}

    return evaluate


@register
class RBMFamily(Family):
    name = "rbm"
    description = "binary restricted Boltzmann machine, (persistent) contrastive divergence"
    config_cls = RBMConfig
    estimator = "annealed importance sampling"
    default_eval_samples = 100  # AIS chains
    default_lr = 1e-3  # per summed gradient: 0.1 for the batch mean at batch size 100

    def build(self, config: RBMConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.rbm import RBM

        return RBM(info.num_pixels, config.hidden, info.pixel_mean, info.image_shape)

    def learner(self, module, config: RBMConfig, lr: float, steps_per_epoch=None):
        from pyrogen.infer import ContrastiveDivergence
        from pyrogen.train import SVILearner

        groups = [
            {"params": [module.weight], "weight_decay": config.weight_decay},
            {"params": [module.visible_bias, module.hidden_bias], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
        loss = ContrastiveDivergence(
            config.cd_k, persistent=config.persistent, num_chains=config.chains or None
        )
        return SVILearner(module, loss, optimizer=optimizer, evaluate_fn=rbm_validation(module))

    def log_likelihood(self, module, config, data, num_samples: int, **kwargs):
        from pyrogen.evaluate import energy_log_likelihood

        return energy_log_likelihood(
            module.distribution(),
            data,
            num_chains=num_samples,
            betas=config.ais_betas,
            progress=kwargs.get("progress", True),
            batch_size=kwargs.get("batch_size", 1000),
        )

    def sample(self, module, num_samples: int) -> torch.Tensor:
        return module.sample(num_samples, num_steps=1000)


# --------------------------------------------------------------------------------- dbm


@dataclass
class DBMConfig:
    """Hyper-parameters of the deep Boltzmann machine family (Salakhutdinov & Hinton 2009):
    greedy pre-training of an RBM stack with doubled inputs, then joint training with a
    mean-field positive phase and persistent chains."""

    hidden1: int = _opt(500, "units of the first hidden layer")
    hidden2: int = _opt(1000, "units of the second hidden layer")
    pretrain_epochs: int = _opt(10, "epochs of greedy pre-training per RBM (then joint training)")
    cd_k: int = _opt(1, "Gibbs sweeps per update (pre-training and joint training)")
    chains: int = _opt(100, "persistent chains")
    mean_field_iters: int = _opt(10, "mean-field sweeps of the positive phase")
    momentum: float = _opt(0.5, "SGD momentum")
    weight_decay: float = _opt(0.0, "L2 penalty on the weights")
    ais_betas: int = _opt(14500, "AIS temperatures for log Z (evaluation)")

    def validate(self) -> None:
        if min(self.hidden1, self.hidden2, self.cd_k, self.chains, self.mean_field_iters) < 1:
            raise ValueError("hidden1, hidden2, cd_k, chains and mean_field_iters must be >= 1")
        if self.pretrain_epochs < 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError("pretrain_epochs >= 0, momentum in [0, 1), weight_decay >= 0")


def _sgd(weights, biases, lr, config):
    return torch.optim.SGD(
        [
            {"params": list(weights), "weight_decay": config.weight_decay},
            {"params": list(biases), "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=config.momentum,
    )


@register
class DBMFamily(Family):
    name = "dbm"
    description = "deep Boltzmann machine: greedy pre-training, then mean-field + PCD"
    config_cls = DBMConfig
    estimator = "mean-field variational bound with an AIS log Z"
    default_eval_samples = 100  # AIS chains
    default_lr = 1e-3  # per summed gradient (0.1 for the batch mean at batch size 100)

    def build(self, config: DBMConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.dbm import DeepBoltzmannMachine

        return DeepBoltzmannMachine(
            info.num_pixels, (config.hidden1, config.hidden2), info.pixel_mean, info.image_shape
        )

    def learner(self, module, config: DBMConfig, lr: float, steps_per_epoch=None):
        from pyrogen.infer import ContrastiveDivergence
        from pyrogen.models.dbm import stack_inputs
        from pyrogen.train import StagedLearner, SVILearner

        if config.pretrain_epochs and not steps_per_epoch:
            raise ValueError("the DBM learner needs steps_per_epoch to schedule pre-training")
        rbms = module.pretraining_rbms()
        stages = []
        for k, rbm in enumerate(rbms):
            loss = ContrastiveDivergence(config.cd_k, persistent=True, num_chains=config.chains)
            opt = _sgd([rbm.weight], [rbm.visible_bias, rbm.hidden_bias], lr, config)
            learner = SVILearner(rbm, loss, optimizer=opt, evaluate_fn=_rbm_eval(rbm))
            below = rbms[:k]

            def prepare(x, below=below):
                return stack_inputs(below, x)

            steps = config.pretrain_epochs * (steps_per_epoch or 0)
            stages.append((f"pretrain{k + 1}", learner, steps, prepare))
        loss = ContrastiveDivergence(
            config.cd_k,
            persistent=True,
            num_chains=config.chains,
            mean_field_iters=config.mean_field_iters,
        )
        joint = SVILearner(
            module,
            loss,
            optimizer=_sgd(module.weights, module.biases, lr, config),
            evaluate_fn=_dbm_eval(module, config),
        )
        stages.append(("joint", joint, 0, None))
        on_enter = {}
        if config.pretrain_epochs:
            on_enter["joint"] = lambda: module.load_pretrained(rbms)
        learner = StagedLearner(stages, on_enter)
        learner.module = module  # what a checkpoint's "module" entry restores
        learner.rbms = rbms
        return learner

    def module_state(self, learner_state: dict) -> dict:
        return learner_state["stages"][-1]["module"]

    def log_likelihood(self, module, config, data, num_samples: int, **kwargs):
        from pyrogen.evaluate import energy_log_likelihood

        return energy_log_likelihood(
            module.distribution(),
            data,
            num_chains=num_samples,
            betas=config.ais_betas,
            progress=kwargs.get("progress", True),
            batch_size=kwargs.get("batch_size", 1000),
            mean_field_iters=100,
        )

    def sample(self, module, num_samples: int) -> torch.Tensor:
        return module.sample(num_samples, num_steps=1000)


def _rbm_eval(rbm):
    def evaluate(batch):
        dist = rbm.distribution()
        x = torch.cat([batch] * rbm.up, -1)
        return {"free_energy": dist.free_energy(x).mean()}

    return evaluate


def _dbm_eval(module, config):
    def evaluate(batch):
        dist = module.distribution()
        bound = dist.unnormalized_variational_bound(batch, num_iters=config.mean_field_iters)
        return {"neg_unnormalized_bound": -bound.mean()}

    return evaluate
