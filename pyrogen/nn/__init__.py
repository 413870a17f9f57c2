"""Plain torch modules used by pyrogen's models. Nothing here calls Pyro."""

from pyrogen.nn.mlp import MLP, GaussianHead

__all__ = ["MLP", "GaussianHead"]
