"""Registry entry of the binary RBM family."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.registry import DataInfo, Family, _opt, register


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
