"""Registry entry of the VAE / IWAE family."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, choice, option, register


@dataclass
class VAEConfig:
    """Hyper-parameters of the VAE / IWAE family (Burda et al. 2015 architectures)."""

    layers: int = choice(
        1, (1, 2), "stochastic layers: 1 = x-200-200-z(50); 2 = x-200-200-z1(100)-100-100-z2(50)"
    )
    objective: str = choice(
        "iwae", ("elbo", "iwae"), "training objective: the ELBO (VAE) or the IWAE bound"
    )
    num_particles: int = option(5, "importance samples (particles) per example in the objective")
    estimator: str = choice(
        "iwae", ("iwae", "dreg"), "gradient estimator of the IWAE bound (dreg: Tucker et al. 2018)"
    )

    def validate(self) -> None:
        if self.layers not in (1, 2):
            raise ValueError(f"layers must be 1 or 2, got {self.layers}")
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")
        if self.num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {self.num_particles}")
        if self.estimator not in ("iwae", "dreg"):
            raise ValueError(f"estimator must be 'iwae' or 'dreg', got {self.estimator!r}")


@register
class VAEFamily(Family):
    name = "vae"
    description = "variational / importance-weighted autoencoder (Bernoulli pixels)"
    config_cls = VAEConfig
    sample_option = "num_samples"
    default_num_samples = 5000
    smoke_config = {"num_particles": 2}
    deprecated_options = {"k": ("num_particles", lambda value, cfg: {"num_particles": value})}

    def build(self, config: VAEConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.vae import VAE

        return VAE.burda(
            info.num_features,
            layers=config.layers,
            image_shape=info.image_shape,
            pixel_mean=info.pixel_mean,
        )

    def loss(self, config: VAEConfig):
        from pyro.infer import Trace_ELBO

        from pyrogen.infer import IWAE

        k = config.num_particles
        if config.objective == "iwae":
            return IWAE(k, estimator=config.estimator, max_plate_nesting=1)
        return Trace_ELBO(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=2)

    def learner(self, model, config: VAEConfig, lr: float):
        from pyrogen.infer import IWAE
        from pyrogen.train import SVILearner

        # Validation reports the IWAE bound with the training k (the ELBO when k = 1).
        return SVILearner(
            model,
            self.loss(config),
            lr=lr,
            eval_loss=IWAE(config.num_particles, max_plate_nesting=1),
        )
