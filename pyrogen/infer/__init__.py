"""Learning rules in Pyro's ELBO style, and partition-function estimators."""

from pyrogen.infer.adversarial import Adversarial
from pyrogen.infer.ais import ais, ais_log_partition, default_betas
from pyrogen.infer.cd import ContrastiveDivergence
from pyrogen.infer.iwae import IWAE
from pyrogen.infer.mmd import MMD, MMDTestResult, mmd2, mmd_test
from pyrogen.infer.nvil import NVIL
from pyrogen.infer.vimco import VIMCO
from pyrogen.infer.wake_sleep import ReweightedWakeSleep, WakeSleep

__all__ = [
    "IWAE",
    "Adversarial",
    "MMD",
    "MMDTestResult",
    "NVIL",
    "VIMCO",
    "ContrastiveDivergence",
    "ReweightedWakeSleep",
    "WakeSleep",
    "ais",
    "ais_log_partition",
    "default_betas",
    "mmd2",
    "mmd_test",
]

from pyrogen.infer.dictionary import update_dictionary  # noqa: E402
from pyrogen.infer.lasso import LassoResult, lasso_fista, lasso_objective  # noqa: E402

__all__ += ["LassoResult", "lasso_fista", "lasso_objective", "update_dictionary"]
