"""Distributions: TorchDistribution subclasses (no training code here)."""

from pyrogen.distributions.bernoulli import IndependentBernoulli, bernoulli_log_prob
from pyrogen.distributions.dbm import DBM, DBMAnnealingPath
from pyrogen.distributions.energy import AnnealingPath, EnergyBasedDistribution, LogPartition
from pyrogen.distributions.gaussian_rbm import GaussianRBM
from pyrogen.distributions.nade import FVSBN, NADE, RNADE
from pyrogen.distributions.pixelcnn import AutoregressiveImage, PixelCNN, PixelRNN
from pyrogen.distributions.rbm import BernoulliRBM
from pyrogen.distributions.replicated_softmax import ReplicatedSoftmaxRBM

__all__ = [
    "AutoregressiveImage",
    "FVSBN",
    "NADE",
    "PixelCNN",
    "PixelRNN",
    "RNADE",
    "AnnealingPath",
    "BernoulliRBM",
    "DBM",
    "DBMAnnealingPath",
    "EnergyBasedDistribution",
    "GaussianRBM",
    "IndependentBernoulli",
    "LogPartition",
    "ReplicatedSoftmaxRBM",
    "bernoulli_log_prob",
]
