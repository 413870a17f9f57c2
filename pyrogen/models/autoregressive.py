r"""Fully observed (autoregressive) models as Pyro models.

An autoregressive distribution (NADE, PixelCNN, ...) has no latent variables: its
``log_prob`` is exact, so ``pyro.sample("x", dist, obs=x)`` trained with any Pyro ELBO
(e.g. ``Trace_ELBO``, whose guide is empty) maximizes the exact log-likelihood.
:class:`AutoregressiveModel` pairs a network (an ``nn.Module`` holding the parameters) with
the distribution class that reads it, registers the network with Pyro when a handler can
observe parameters, and follows the model protocol of :mod:`pyrogen.models.base`:
``model`` / ``guide`` / ``sample`` / ``log_likelihood`` (exact).
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.nn import pyro_method
from torch import nn

from pyrogen.evaluate.exact import exact_log_likelihood
from pyrogen.models.base import GenerativeModel

__all__ = ["AutoregressiveModel", "ensemble_orderings"]


def ensemble_orderings(num_features: int, count: int, seed: int = 0) -> torch.Tensor:
    """``(count, D)`` orderings for a test-time ensemble: the identity, then ``count - 1``
    uniform permutations from a generator seeded with ``seed`` (the same for every run)."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.arange(num_features)]
    rows += [torch.randperm(num_features, generator=gen) for _ in range(count - 1)]
    return torch.stack(rows)


class AutoregressiveModel(GenerativeModel):
    """``pyro.sample("x", distribution(net, context=y, **kwargs), obs=x)`` in a data plate.

    :param torch.nn.Module net: the network whose parameters the distribution uses.
    :param distribution: a distribution class called as
        ``distribution(net, context=..., **distribution_kwargs)``.
    :param tuple event_shape: shape of one example (e.g. ``(784,)`` or ``(1, 28, 28)``).
    """

    name_prefix = "ar"

    def __init__(
        self,
        net: nn.Module,
        distribution: type,
        event_shape: tuple[int, ...],
        name: str | None = None,
        **distribution_kwargs,
    ) -> None:
        event_shape = tuple(int(s) for s in event_shape)
        image = event_shape[1:] if len(event_shape) == 3 and event_shape[0] == 1 else None
        if len(event_shape) == 2:
            image = event_shape
        super().__init__(math.prod(event_shape), image, name)
        self.net = net
        self.distribution_cls = distribution
        self._event_shape = event_shape
        self.distribution_kwargs = distribution_kwargs

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size(self._event_shape)

    def distribution(self, context: torch.Tensor | None = None, **kwargs):
        """The distribution with the current parameters (and class labels ``context``)."""
        net = self._observed("net")
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
    def sample(self, num_samples: int, *, context: torch.Tensor | None = None) -> torch.Tensor:
        """Ancestral samples, ``(num_samples,) + event_shape``."""
        return self.distribution(context).sample((int(num_samples),))

    def to_unit_interval(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples as values in [0, 1] for pictures (categorical levels divided by
        ``levels - 1``; binary values as they are)."""
        if getattr(self.net, "output", None) == "categorical":
            return samples.float() / (self.net.levels - 1)
        return samples

    def log_likelihood(
        self,
        data,
        *,
        batch_size: int = 1000,
        progress: bool = False,
        device: torch.device | str | None = None,
        num_orderings: int = 1,
    ):
        """The exact mean test log-likelihood (``mc_stderr = 0``).

        :param int num_orderings: for distributions that define ``ensemble_log_prob``
            (NADE), the equal-weight ensemble of the identity ordering and
            ``num_orderings - 1`` fixed random ones (:func:`ensemble_orderings`); 1 scores the
            model's own ordering.
        """
        if num_orderings == 1:
            return exact_log_likelihood(
                self, data, batch_size=batch_size, progress=progress, device=device
            )
        dist = self.distribution()
        if not hasattr(dist, "ensemble_log_prob"):
            raise ValueError(
                f"num_orderings={num_orderings}: {self.distribution_cls.__name__} has no "
                "ensemble of orderings; use num_orderings=1"
            )
        params = next(self.parameters())
        orderings = ensemble_orderings(self.num_features, int(num_orderings)).to(params.device)
        was_training = self.training
        self.eval()
        try:
            return exact_log_likelihood(
                lambda x: dist.ensemble_log_prob(x, orderings),
                data,
                batch_size=batch_size,
                progress=progress,
                estimator=f"exact (ensemble of {num_orderings} orderings)",
                num_samples=int(num_orderings),
                device=params.device if device is None else device,
            )
        finally:
            self.train(was_training)
