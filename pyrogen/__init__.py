"""pyrogen: deep unsupervised learning as Pyro models, losses and evaluators."""

__version__ = "0.1.0"
