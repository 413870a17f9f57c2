"""Registry entry of the VAE / IWAE family."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.registry import DataInfo, Family, _choice, _opt, register


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
        from pyrogen.evaluate import importance_log_likelihood

        module.eval()
        return importance_log_likelihood(
            module.model, module.guide, data, num_samples=num_samples, max_plate_nesting=1, **kwargs
        )

    def sample(self, module, num_samples: int) -> torch.Tensor:
        return module.sample(num_samples)
