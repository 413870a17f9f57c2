"""Registry entry of the VAE / IWAE family."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, choice, option, register

#: decoder architectures of the family: Burda et al.'s, or Wu et al.'s by latent size
DECODERS = {"burda": None, "wu10": 10, "wu50": 50}


def particle_loss(objective: str, num_particles: int, estimator: str = "iwae"):
    """The training loss of a family of Pyro-model VAEs (``vae``, ``draw``):
    ``objective="iwae"``, the IWAE bound with ``num_particles`` particles and its gradient
    ``estimator``; ``"elbo"``, Pyro's ``Trace_ELBO`` averaged over the particles
    (vectorized when there are several)."""
    from pyro.infer import Trace_ELBO

    from pyrogen.infer import IWAE

    k = num_particles
    if objective == "iwae":
        return IWAE(k, estimator=estimator, max_plate_nesting=1)
    return Trace_ELBO(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=2)


def particle_learner(model, loss, num_particles: int, lr: float):
    """An :class:`~pyrogen.train.SVILearner` of ``model`` on ``loss`` whose validation
    reports the IWAE bound with the training number of particles (the ELBO when it is 1)."""
    from pyrogen.infer import IWAE
    from pyrogen.train import SVILearner

    return SVILearner(model, loss, lr=lr, eval_loss=IWAE(num_particles, max_plate_nesting=1))


@dataclass
class VAEConfig:
    """Hyper-parameters of the VAE / IWAE family (Burda et al. 2015 architectures, or the
    decoders Wu et al. 2017 share with GANs and GMMNs)."""

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
    decoder: str = choice(
        "burda",
        tuple(DECODERS),
        "architecture: burda (tanh, see layers), or Wu et al.'s decoders of Generator.wu "
        "(wu10: 10-64-256-256-1024-784, wu50: 50-1024-1024-1024-784, ReLU; one layer)",
    )
    observation: str = choice(
        "bernoulli",
        ("bernoulli", "gaussian"),
        "p(x | z): bernoulli (binary pixels) or gaussian N(mean(z), sigma^2 I), mean in (0, 1)",
    )
    sigma: float = option(
        0.1, "sigma of the gaussian observation model (used only with --observation gaussian)"
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
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {sorted(DECODERS)}, got {self.decoder!r}")
        if self.decoder != "burda" and self.layers != 1:
            raise ValueError(
                f"layers: Wu et al.'s decoders ({self.decoder}) have one stochastic layer, "
                f"got layers={self.layers}"
            )
        if self.observation not in ("bernoulli", "gaussian"):
            raise ValueError(
                f"observation must be 'bernoulli' or 'gaussian', got {self.observation!r}"
            )
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be positive and finite, got {self.sigma}")


@register
class VAEFamily(Family):
    name = "vae"
    description = "variational / importance-weighted autoencoder (Bernoulli or Gaussian pixels)"
    config_cls = VAEConfig
    sample_option = "num_samples"
    default_num_samples = 5000
    smoke_config = {"num_particles": 2}
    deprecated_options = {"k": ("num_particles", lambda value, cfg: {"num_particles": value})}

    def observation_for(self, config: VAEConfig) -> str:
        return config.observation

    def build(self, config: VAEConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.vae import VAE

        kwargs = dict(
            image_shape=info.image_shape,
            pixel_mean=info.pixel_mean,
            observation=config.observation,
            sigma=config.sigma if config.observation == "gaussian" else None,
        )
        if config.decoder == "burda":
            return VAE.burda(info.num_features, layers=config.layers, **kwargs)
        return VAE.wu(DECODERS[config.decoder], info.num_features, **kwargs)

    def loss(self, config: VAEConfig):
        return particle_loss(config.objective, config.num_particles, config.estimator)

    def learner(self, model, config: VAEConfig, lr: float):
        return particle_learner(model, self.loss(config), config.num_particles, lr)
