"""Registry entry of the deep Boltzmann machine family."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.registry import DataInfo, Family, _opt, register


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
