"""Distributions: TorchDistribution subclasses (no training code here)."""

from pyrogen.distributions.annealing import AnnealingPath, LogPartition
from pyrogen.distributions.bernoulli import IndependentBernoulli, bernoulli_log_prob
from pyrogen.distributions.conv_rbm import ConvolutionalRBM, GaussianConvolutionalRBM
from pyrogen.distributions.dbm import DBM, DBMAnnealingPath
from pyrogen.distributions.energy import EnergyBasedDistribution, RBMBase
from pyrogen.distributions.gaussian_hidden_rbm import (
    GaussianHiddenRBM,
    GaussianHiddenRBMAnnealingPath,
)
from pyrogen.distributions.gaussian_rbm import GaussianRBM, GaussianRBMAnnealingPath
from pyrogen.distributions.nade import FVSBN, NADE, RNADE
from pyrogen.distributions.pixelcnn import AutoregressiveImage, PixelCNN, PixelRNN
from pyrogen.distributions.rbm import BernoulliRBM, RBMAnnealingPath
from pyrogen.distributions.replicated_softmax import (
    ReplicatedSoftmaxAnnealingPath,
    ReplicatedSoftmaxRBM,
)

__all__ = [
    "AutoregressiveImage",
    "FVSBN",
    "NADE",
    "PixelCNN",
    "PixelRNN",
    "RNADE",
    "AnnealingPath",
    "BernoulliRBM",
    "ConvolutionalRBM",
    "DBM",
    "DBMAnnealingPath",
    "EnergyBasedDistribution",
    "GaussianConvolutionalRBM",
    "GaussianHiddenRBM",
    "GaussianHiddenRBMAnnealingPath",
    "GaussianRBM",
    "GaussianRBMAnnealingPath",
    "IndependentBernoulli",
    "LogPartition",
    "RBMAnnealingPath",
    "RBMBase",
    "ReplicatedSoftmaxAnnealingPath",
    "ReplicatedSoftmaxRBM",
    "bernoulli_log_prob",
]
