"""Pyro model/guide pairs (PyroModules)."""

from pyrogen.models.linear_gaussian import LinearGaussianVAE
from pyrogen.models.vae import VAE

__all__ = ["LinearGaussianVAE", "VAE"]
