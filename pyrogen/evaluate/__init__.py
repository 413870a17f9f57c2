"""Log-likelihood estimators with reliability diagnostics."""

from pyrogen.evaluate.importance import (
    LogLikelihood,
    importance_bound,
    log_likelihood,
    psis_khat,
)

__all__ = ["LogLikelihood", "importance_bound", "log_likelihood", "psis_khat"]
