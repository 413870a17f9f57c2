"""Log-likelihood estimators with reliability diagnostics."""

from pyrogen.evaluate.energy import energy_log_likelihood
from pyrogen.evaluate.exact import exact_log_likelihood
from pyrogen.evaluate.importance import (
    LogLikelihood,
    importance_bound,
    log_likelihood,
    psis_khat,
)

__all__ = [
    "LogLikelihood",
    "energy_log_likelihood",
    "exact_log_likelihood",
    "importance_bound",
    "log_likelihood",
    "psis_khat",
]
