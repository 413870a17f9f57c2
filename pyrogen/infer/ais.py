"""Annealed importance sampling (AIS) for partition functions of energy-based models.

The machinery lives with the distributions that use it for ``log_partition("ais")``
(:mod:`pyrogen.distributions.annealing`, see its docs for the estimator and its standard
error), and each annealing path beside its distribution; this module re-exports the public
names so that ``from pyrogen.infer import ais, default_betas`` keeps working.
"""

from pyrogen.distributions.annealing import (
    AnnealingPath,
    LogPartition,
    UnreliableEstimateWarning,
    ais,
    ais_log_partition,
    default_betas,
    effective_sample_size,
    ess_threshold,
    inverse_temperatures,
    reverse_ais,
)
from pyrogen.distributions.rbm import RBMAnnealingPath

__all__ = [
    "AnnealingPath",
    "LogPartition",
    "RBMAnnealingPath",
    "UnreliableEstimateWarning",
    "ais",
    "ais_log_partition",
    "default_betas",
    "effective_sample_size",
    "ess_threshold",
    "inverse_temperatures",
    "reverse_ais",
]
