"""Pyro models (PyroModules) of every family, on one protocol (:mod:`pyrogen.models.base`):
density models offer ``model`` / ``guide``, ``sample`` and ``log_likelihood``; deterministic
models offer ``fit``, ``transform`` and ``reconstruct``."""

from pyrogen.models.align_draw import AlignDRAW
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.autoregressive import AutoregressiveModel
from pyrogen.models.base import GenerativeModel, PyroModel, Representation
from pyrogen.models.cdbn import ConvolutionalDBN, ConvRBMLayer
from pyrogen.models.dbm import DeepBoltzmannMachine
from pyrogen.models.dbn import DeepBeliefNetwork, UpDownLearner
from pyrogen.models.draw import DRAW
from pyrogen.models.energy import EnergyModel
from pyrogen.models.gan import DCGANDiscriminator, DCGANGenerator, Generator, MLPDiscriminator
from pyrogen.models.greedy import StackRBM
from pyrogen.models.helmholtz import HelmholtzMachine
from pyrogen.models.kmeans import KMeansFeatures
from pyrogen.models.linear_gaussian import LinearGaussianVAE
from pyrogen.models.psd import PSD, PSDLearner
from pyrogen.models.rbm import RBM, ReplicatedSoftmax
from pyrogen.models.sparse_coding import SparseCoding, SparseCodingModel, map_codes
from pyrogen.models.vae import VAE

__all__ = [
    "DRAW",
    "PSD",
    "RBM",
    "VAE",
    "AlignDRAW",
    "Autoencoder",
    "AutoregressiveModel",
    "ConvRBMLayer",
    "ConvolutionalDBN",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DeepBeliefNetwork",
    "DeepBoltzmannMachine",
    "EnergyModel",
    "GenerativeModel",
    "Generator",
    "HelmholtzMachine",
    "KMeansFeatures",
    "LinearGaussianVAE",
    "MLPDiscriminator",
    "PSDLearner",
    "PyroModel",
    "ReplicatedSoftmax",
    "Representation",
    "SparseCoding",
    "SparseCodingModel",
    "StackRBM",
    "UpDownLearner",
    "map_codes",
]
