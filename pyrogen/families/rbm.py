"""Registry entry of the binary RBM family."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, option, register


@dataclass
class RBMConfig:
    """Hyper-parameters of the binary RBM family trained by (persistent) contrastive
    divergence with SGD + momentum (Hinton 2010's practical guide)."""

    hidden: int = option(500, "number of hidden units")
    cd_k: int = option(1, "Gibbs sweeps per update (CD-k / PCD-k)")
    persistent: bool = option(True, "persistent chains (PCD, Tieleman 2008) instead of CD")
    chains: int = option(100, "persistent chains (0: one per example of the first batch)")
    momentum: float = option(0.5, "SGD momentum")
    weight_decay: float = option(0.0, "L2 penalty on the weights (not the biases)")
    ais_betas: int = option(
        14500, "AIS temperatures for the log-likelihood (Salakhutdinov & Murray)"
    )

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


def sgd(weights, biases, lr: float, momentum: float, weight_decay: float):
    """SGD with momentum and an L2 penalty on the weights only (Hinton 2010), the optimizer
    of every RBM-like learner."""
    return torch.optim.SGD(
        [
            {"params": list(weights), "weight_decay": weight_decay},
            {"params": list(biases), "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=momentum,
    )


def cd_learner(rbm, loss, lr: float, momentum: float, weight_decay: float):
    """The learner of an RBM-like model (``weight``, ``visible_bias``, ``hidden_bias``):
    :class:`~pyrogen.train.SVILearner` with a contrastive-divergence ``loss``, :func:`sgd`
    and :func:`rbm_validation`. The ``rbm`` family, DBM pre-training and the deep
    autoencoder's RBM pre-training all use it."""
    from pyrogen.train import SVILearner

    optimizer = sgd([rbm.weight], [rbm.visible_bias, rbm.hidden_bias], lr, momentum, weight_decay)
    return SVILearner(rbm, loss, optimizer=optimizer, evaluate_fn=rbm_validation(rbm))


def rbm_validation(rbm):
    """Validation numbers of an RBM-like model that need no partition function: the mean
    free energy and the squared error of its one-step mean-field reconstruction, per
    example."""

    def evaluate(batch):
        return {
            "free_energy": rbm.free_energy(batch).mean(),
            "recon_error": (rbm.reconstruct(batch) - batch).square().sum(-1).mean(),
        }

    return evaluate


@register
class RBMFamily(Family):
    name = "rbm"
    description = "binary restricted Boltzmann machine, (persistent) contrastive divergence"
    config_cls = RBMConfig
    sample_option = "num_chains"
    default_num_samples = 100  # AIS chains
    smoke_config = {"hidden": 8, "chains": 10, "ais_betas": 200}
    default_lr = 1e-3  # per summed gradient: 0.1 for the batch mean at batch size 100

    def build(self, config: RBMConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.rbm import RBM

        return RBM(info.num_features, config.hidden, info.pixel_mean, info.image_shape)

    def learner(self, model, config: RBMConfig, lr: float):
        from pyrogen._rng import draw_seed
        from pyrogen.infer import ContrastiveDivergence

        loss = ContrastiveDivergence(  # its own noise: chains that do not depend on processes
            config.cd_k,
            persistent=config.persistent,
            num_chains=config.chains or None,
            seed=draw_seed(),
        )
        return cd_learner(model, loss, lr, config.momentum, config.weight_decay)

    def evaluation_options(self, config: RBMConfig) -> dict:
        return {"betas": config.ais_betas}
