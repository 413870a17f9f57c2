r"""Registry entry of the deep belief network (Hinton, Osindero & Teh 2006).

``pyrogen train dbn --hidden 500,500,2000`` builds :class:`~pyrogen.models.dbn.DeepBeliefNetwork`
over the data and trains it in stages (:class:`~pyrogen.train.StagedLearner`):

1. greedy layer-wise training, one RBM per hidden layer for ``--greedy-epochs`` epochs each
   (contrastive divergence with SGD and momentum, the RBM family's learner), each on the
   hidden probabilities of the RBMs below
   (:meth:`~pyrogen.models.dbn.DeepBeliefNetwork.stages`);
2. with ``--fine-tune`` (the default), up-down fine-tuning until the end of training
   (:class:`~pyrogen.models.dbn.UpDownLearner`, ``--updown-k`` Gibbs sweeps in the top RBM
   per step); without it the top RBM's stage runs to the end.

Test log-likelihood: exact for networks small enough to enumerate, otherwise Salakhutdinov
& Murray's estimator (importance sampling through the directed layers with the recognition
model as proposal, :math:`K` = 5000, and the top RBM's :math:`\log Z` by AIS with
``--ais-betas`` temperatures).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, option, register, sizes
from pyrogen.families.rbm import cd_learner


@dataclass
class DBNConfig:
    """Hyper-parameters of the deep belief network family."""

    hidden: tuple = sizes(
        (500, 500, 2000), "units of the hidden layers, bottom first (the last pair: top RBM)"
    )
    greedy_epochs: int = option(10, "epochs of greedy training per RBM")
    cd_k: int = option(1, "Gibbs sweeps per update of greedy training (CD-k / PCD-k)")
    persistent: bool = option(False, "greedy training with persistent chains (PCD)")
    chains: int = option(100, "persistent chains of PCD (0: one per example)")
    fine_tune: bool = option(True, "up-down fine-tuning after greedy training")
    updown_k: int = option(3, "Gibbs sweeps in the top RBM per up-down step")
    momentum: float = option(0.5, "SGD momentum")
    weight_decay: float = option(0.0, "L2 penalty on the RBM weights during greedy training")
    ais_betas: int = option(14500, "AIS temperatures for the top RBM's log Z (evaluation)")
    ais_chains: int = option(100, "AIS chains for the top RBM's log Z (evaluation)")

    def validate(self) -> None:
        if not self.hidden:
            raise ValueError("hidden must list at least one layer size")
        if min(self.cd_k, self.updown_k, self.ais_betas) < 1 or self.chains < 0:
            raise ValueError(
                "cd_k, updown_k and ais_betas must be >= 1 and chains >= 0, got "
                f"{self.cd_k}, {self.updown_k}, {self.ais_betas}, {self.chains}"
            )
        if self.ais_chains < 2:
            raise ValueError(f"ais_chains must be >= 2, got {self.ais_chains}")
        if self.greedy_epochs < 0:
            raise ValueError(f"greedy_epochs must be >= 0, got {self.greedy_epochs}")
        if self.greedy_epochs == 0 and not self.fine_tune:
            raise ValueError("greedy_epochs = 0 without fine_tune leaves nothing to train")
        if self.fine_tune and len(self.hidden) < 2:
            raise ValueError(
                "fine_tune needs at least two hidden layers (one hidden layer is an RBM); "
                "pass --no-fine-tune or another layer"
            )
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError(
                f"momentum must be in [0, 1) and weight_decay >= 0, got {self.momentum}, "
                f"{self.weight_decay}"
            )


@register
class DBNFamily(Family):
    name = "dbn"
    description = "deep belief network: greedy RBM stack, up-down fine-tuning (Hinton 2006)"
    config_cls = DBNConfig
    sample_option = "num_samples"
    default_num_samples = 5000  # importance samples through the directed layers
    default_lr = 1e-3  # per summed gradient, as the RBM family
    smoke_config = {"hidden": (8, 6), "greedy_epochs": 1, "updown_k": 1, "ais_betas": 200}

    def build(self, config: DBNConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.dbn import DeepBeliefNetwork

        return DeepBeliefNetwork(
            (info.num_features, *config.hidden),
            pixel_mean=info.pixel_mean,
            image_shape=info.image_shape,
        )

    def learner(self, model, config: DBNConfig, lr: float):
        """Greedy stages (CD or PCD per RBM, each with its own seeded noise), then the
        up-down stage when ``fine_tune``."""
        from pyrogen._rng import draw_seed
        from pyrogen.infer import ContrastiveDivergence
        from pyrogen.models.dbn import UpDownLearner
        from pyrogen.train import Stage, StagedLearner

        seed = draw_seed()

        def rbm_learner(k, rbm):
            loss = ContrastiveDivergence(
                config.cd_k,
                persistent=config.persistent,
                num_chains=config.chains or None,
                seed=seed + k,
            )
            return cd_learner(rbm, loss, lr, config.momentum, config.weight_decay)

        stages = model.stages(rbm_learner, config.greedy_epochs) if config.greedy_epochs else []
        if config.fine_tune:
            updown = UpDownLearner(model, cd_k=config.updown_k, lr=lr, momentum=config.momentum)
            stages.append(Stage("updown", updown))
        return StagedLearner(stages)

    def evaluation_options(self, config: DBNConfig) -> dict:
        return {"betas": config.ais_betas, "num_chains": config.ais_chains}
