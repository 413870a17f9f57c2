r"""Fully observed (autoregressive) models as Pyro models.

An autoregressive distribution (NADE, PixelCNN, ...) has no latent variables: its
``log_prob`` is exact, so ``pyro.sample("x", dist, obs=x)`` trained with any Pyro ELBO
(e.g. ``Trace_ELBO``, whose guide is empty) maximizes the exact log-likelihood.
:class:`AutoregressiveModel` pairs a network (an ``nn.Module`` holding the parameters) with
the distribution class that reads it, registers the network with Pyro when a handler can
observe parameters (``pyro.module``), and offers ``model`` / ``guide`` / ``sample`` /
``log_prob``.
"""

from __future__ import annotations

import itertools

import pyro
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyrogen._effects import params_observed

_instance_ids = itertools.count()


class AutoregressiveModel(PyroModule):
    """``pyro.sample("x", distribution(net, context=y, **kwargs), obs=x)`` in a data plate.

    :param torch.nn.Module net: the network whose parameters the distribution uses.
    :param distribution: a distribution class called as
        ``distribution(net, context=..., **distribution_kwargs)``.
    :param tuple event_shape: shape of one example (e.g. ``(784,)`` or ``(1, 28, 28)``).
    """

    def __init__(
        self,
        net: nn.Module,
        distribution: type,
        event_shape: tuple[int, ...],
        name: str | None = None,
        **distribution_kwargs,
    ) -> None:
        super().__init__(name=name if name is not None else f"ar{next(_instance_ids)}")
        self.net = net
        self.distribution_cls = distribution
        self.event_shape = tuple(int(s) for s in event_shape)
        self.distribution_kwargs = distribution_kwargs

    def distribution(self, context: torch.Tensor | None = None, **kwargs):
        """The distribution with the current parameters (and class labels ``context``)."""
        net = self.net if params_observed() else self._modules["net"]  # registers when seen
        return self.distribution_cls(net, context=context, **{**self.distribution_kwargs, **kwargs})

    @pyro_method
    def model(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """Observe ``x`` (a batch of examples) under the autoregressive distribution."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.distribution(context), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """Empty: there are no latent variables."""

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Exact :math:`\\log p(x)` per example."""
        return self.distribution(context).log_prob(x)

    @torch.no_grad()
    def sample(self, num_samples: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """Ancestral samples, ``(num_samples,) + event_shape``."""
        return self.distribution(context).sample((num_samples,))
