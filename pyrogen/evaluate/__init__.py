"""Log-likelihood estimators with reliability diagnostics, behind one entry point
(:func:`log_likelihood`) and one result type (:class:`LogLikelihood`)."""

from pyrogen.evaluate.decoder_ais import (
    HMC,
    BDMCResult,
    ParzenWarning,
    annealing_schedule,
    bidirectional_monte_carlo,
    decoder_log_likelihood,
    parzen_log_likelihood,
)
from pyrogen.evaluate.dispatch import log_likelihood
from pyrogen.evaluate.energy import energy_log_likelihood
from pyrogen.evaluate.exact import exact_log_likelihood
from pyrogen.evaluate.importance import importance_bound, importance_log_likelihood, psis_khat
from pyrogen.evaluate.quality import feature_classifier, frechet_distance, mnist_frechet_distance
from pyrogen.evaluate.result import (
    KHAT_THRESHOLD,
    LogLikelihood,
    LogLikelihoodBracket,
    ReconstructionScore,
)
from pyrogen.evaluate.reverse_ais import log_likelihood_bracket, raise_log_likelihood

__all__ = [
    "HMC",
    "KHAT_THRESHOLD",
    "BDMCResult",
    "ParzenWarning",
    "annealing_schedule",
    "bidirectional_monte_carlo",
    "decoder_log_likelihood",
    "parzen_log_likelihood",
    "LogLikelihood",
    "LogLikelihoodBracket",
    "ReconstructionScore",
    "energy_log_likelihood",
    "exact_log_likelihood",
    "feature_classifier",
    "frechet_distance",
    "importance_bound",
    "importance_log_likelihood",
    "log_likelihood",
    "log_likelihood_bracket",
    "mnist_frechet_distance",
    "psis_khat",
    "raise_log_likelihood",
]
