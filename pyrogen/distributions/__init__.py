"""Distributions: TorchDistribution subclasses (no training code here)."""

from pyrogen.distributions.bernoulli import IndependentBernoulli, bernoulli_log_prob

__all__ = ["IndependentBernoulli", "bernoulli_log_prob"]
