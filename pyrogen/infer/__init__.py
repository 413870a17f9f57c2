"""Learning rules in Pyro's ELBO style."""

from pyrogen.infer.iwae import IWAE

__all__ = ["IWAE"]
