"""Registry entry of the deep Boltzmann machine family."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, option, register, sizes
from pyrogen.families.rbm import cd_learner, sgd


def _layer_alias(index: int):
    def translate(value, cfg: dict) -> dict:
        hidden = list(cfg["hidden"])
        hidden[index] = int(value)
        return {"hidden": tuple(hidden)}

    return translate


@dataclass
class DBMConfig:
    """Hyper-parameters of the deep Boltzmann machine family (Salakhutdinov & Hinton 2009):
    greedy pre-training of an RBM stack with doubled inputs, then joint training with a
    mean-field positive phase and persistent chains."""

    hidden: tuple = sizes((500, 1000), "units of the 2 or 3 hidden layers, bottom first")
    pretrain_epochs: int = option(10, "epochs of greedy pre-training per RBM (then joint training)")
    cd_k: int = option(1, "Gibbs sweeps per update (pre-training and joint training)")
    chains: int = option(100, "persistent chains")
    mean_field_iters: int = option(10, "mean-field sweeps of the positive phase")
    momentum: float = option(0.5, "SGD momentum")
    weight_decay: float = option(0.0, "L2 penalty on the weights")
    ais_betas: int = option(14500, "AIS temperatures for log Z (evaluation)")

    def validate(self) -> None:
        if len(self.hidden) not in (2, 3):
            raise ValueError(f"hidden must list 2 or 3 layer sizes, got {self.hidden}")
        if min(self.cd_k, self.chains, self.mean_field_iters) < 1:
            raise ValueError("cd_k, chains and mean_field_iters must be >= 1")
        if self.pretrain_epochs < 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError("pretrain_epochs >= 0, momentum in [0, 1), weight_decay >= 0")


@register
class DBMFamily(Family):
    name = "dbm"
    description = "deep Boltzmann machine: greedy pre-training, then mean-field + PCD"
    config_cls = DBMConfig
    sample_option = "num_chains"
    default_num_samples = 100  # AIS chains
    default_lr = 1e-3  # per summed gradient (0.1 for the batch mean at batch size 100)
    smoke_config = {"hidden": (8, 6), "pretrain_epochs": 1, "chains": 10, "ais_betas": 200}
    deprecated_options = {
        "hidden1": ("hidden", _layer_alias(0)),
        "hidden2": ("hidden", _layer_alias(1)),
    }

    def build(self, config: DBMConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.dbm import DeepBoltzmannMachine

        return DeepBoltzmannMachine(
            info.num_features, config.hidden, info.pixel_mean, info.image_shape
        )

    def learner(self, model, config: DBMConfig, lr: float):
        """Greedy pre-training of :meth:`~pyrogen.models.dbm.DeepBoltzmannMachine.
        pretraining_stack` (PCD, each RBM on sampled up-pass states of those below,
        :func:`~pyrogen.models.greedy.greedy_stages`), then joint training; without
        pre-training epochs, joint training only."""
        from pyrogen._rng import draw_seed
        from pyrogen.infer import ContrastiveDivergence
        from pyrogen.models.greedy import greedy_stages
        from pyrogen.train import Stage, StagedLearner, SVILearner

        seed = draw_seed()  # each loss's own noise (stage k: seed + 1 + k), drawn here, at build

        def pcd(stage, **kwargs):
            return ContrastiveDivergence(
                config.cd_k, persistent=True, num_chains=config.chains, seed=seed + stage, **kwargs
            )

        def rbm_learner(k, rbm):
            return cd_learner(rbm, pcd(1 + k), lr, config.momentum, config.weight_decay)

        joint = SVILearner(
            model,
            pcd(0, mean_field_iters=config.mean_field_iters),
            optimizer=sgd(model.weights, model.biases, lr, config.momentum, config.weight_decay),
            evaluate_fn=_dbm_validation(model, config),
        )
        if not config.pretrain_epochs:
            return joint
        stack = model.pretraining_stack()
        stages = greedy_stages(
            stack, rbm_learner, config.pretrain_epochs, sample=True, prefix="pretrain"
        )
        stages.append(Stage("joint", joint, on_enter=lambda: model.load_pretrained(stack)))
        return StagedLearner(stages)

    def evaluation_options(self, config: DBMConfig) -> dict:
        return {"betas": config.ais_betas, "mean_field_iters": 100}


def _dbm_validation(model, config):
    def evaluate(batch):
        dist = model.distribution()
        bound = dist.unnormalized_variational_bound(batch, num_iters=config.mean_field_iters)
        return {"neg_unnormalized_bound": -bound.mean()}

    return evaluate
