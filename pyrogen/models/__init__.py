"""Pyro model/guide pairs (PyroModules)."""

from pyrogen.models.linear_gaussian import LinearGaussianVAE
from pyrogen.models.vae import VAE

__all__ = ["LinearGaussianVAE", "VAE"]

from pyrogen.models.autoencoder import Autoencoder  # noqa: E402

__all__ += ["Autoencoder"]

from pyrogen.models.kmeans import KMeansFeatures  # noqa: E402
from pyrogen.models.psd import PSD, PSDLearner  # noqa: E402
from pyrogen.models.sparse_coding import SparseCoding, SparseCodingModel, map_codes  # noqa: E402

__all__ += ["KMeansFeatures", "PSD", "PSDLearner", "SparseCoding", "SparseCodingModel", "map_codes"]
