"""Registry entry of the DRAW family (Gregor et al. 2015; :mod:`pyrogen.models.draw`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, choice, option, register
from pyrogen.families.vae import particle_learner, particle_loss


@dataclass
class DRAWConfig:
    """Hyper-parameters of DRAW; the defaults are the paper's MNIST setting with attention
    (T = 64, 2x2 read, 5x5 write, LSTMs of 256, z of 100)."""

    steps: int = option(64, "glimpses T (time steps writing to the canvas)")
    latent_dim: int = option(100, "width of each latent z_t")
    encoder_size: int = option(256, "encoder LSTM units")
    decoder_size: int = option(256, "decoder LSTM units")
    attention: bool = option(True, "Gaussian read/write attention (off: whole image, linear write)")
    read_size: int = option(2, "N of the N x N read grid")
    write_size: int = option(5, "N of the N x N write patch")
    prior: str = choice(
        "standard", ("standard", "learned"), "prior of z_t: N(0, I) or p(z_t | h_dec_{t-1})"
    )
    objective: str = choice(
        "elbo", ("elbo", "iwae"), "training objective: the ELBO (as in the paper) or IWAE"
    )
    num_particles: int = option(1, "importance samples (particles) per example in the objective")

    def validate(self) -> None:
        for name in ("steps", "latent_dim", "encoder_size", "decoder_size", "read_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.write_size < 1:
            raise ValueError(f"write_size must be >= 1, got {self.write_size}")
        if self.prior not in ("standard", "learned"):
            raise ValueError(f"prior must be 'standard' or 'learned', got {self.prior!r}")
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")
        if self.num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {self.num_particles}")


def draw_network_options(config, info: DataInfo) -> dict:
    """The keyword arguments of :class:`~pyrogen.models.draw.DRAW`'s networks taken from a
    config (the ``draw`` family's or ``align_draw``'s) and the data."""
    return {
        "image_shape": info.image_shape,
        "steps": config.steps,
        "latent_dim": config.latent_dim,
        "encoder_size": config.encoder_size,
        "decoder_size": config.decoder_size,
        "attention": config.attention,
        "read_size": config.read_size,
        "write_size": config.write_size,
        "pixel_mean": info.pixel_mean,
    }


@register
class DRAWFamily(Family):
    name = "draw"
    description = "DRAW: recurrent VAE writing to a canvas with Gaussian attention (Bernoulli)"
    config_cls = DRAWConfig
    sample_option = "num_samples"
    default_num_samples = 5000
    smoke_config = {
        "steps": 3,
        "latent_dim": 4,
        "encoder_size": 16,
        "decoder_size": 16,
        "read_size": 2,
        "write_size": 3,
    }

    def build(self, config: DRAWConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.draw import DRAW

        return DRAW(info.num_features, prior=config.prior, **draw_network_options(config, info))

    def loss(self, config: DRAWConfig):
        return particle_loss(config.objective, config.num_particles)

    def learner(self, model, config: DRAWConfig, lr: float):
        return particle_learner(model, self.loss(config), config.num_particles, lr)
