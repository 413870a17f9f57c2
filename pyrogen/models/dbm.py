r"""Deep Boltzmann machines as Pyro models, with greedy layer-wise pre-training.

``DeepBoltzmannMachine.model(x)`` is ``pyro.sample("v", DBM(weights, biases), obs=x)``
inside ``pyro.plate("data")`` (hidden layers summed out by the distribution, empty guide).
Learning follows Salakhutdinov & Hinton (2009) [1]:

1. **Greedy pre-training** of one RBM per layer pair
   (:meth:`DeepBoltzmannMachine.pretraining_stack`: :class:`~pyrogen.models.greedy.StackRBM`
   s), the bottom one with two tied copies of its visible units (bottom-up input doubled),
   the top one with two tied copies of its hidden units (top-down input doubled), each on
   the sampled hidden probabilities of the one below (:mod:`pyrogen.models.greedy`);
   composed by :meth:`pyrogen.distributions.DBM.from_rbms`.
2. **Joint training**: the positive phase from the mean-field posterior, the negative
   phase from persistent Gibbs chains (:class:`~pyrogen.infer.ContrastiveDivergence` with
   ``persistent=True`` handles DBMs this way).

**References**

[1] Deep Boltzmann Machines. Ruslan Salakhutdinov, Geoffrey Hinton. 2009.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrogen.distributions.dbm import DBM, pretraining_scales
from pyrogen.models.base import logit_of_mean
from pyrogen.models.energy import EnergyModel
from pyrogen.models.greedy import StackRBM

__all__ = ["DeepBoltzmannMachine"]


class DeepBoltzmannMachine(EnergyModel):
    """A DBM with trainable parameters (see module docs).

    :param int num_features: :math:`V`, the visible units (the data width).
    :param hidden: hidden layer sizes, 2 or 3 of them (e.g. ``(500, 1000)``).
    :param pixel_mean: training pixel means (visible-bias initialisation).
    :param image_shape: for sample grids.
    """

    name_prefix = "dbm"
    parameter_names = ("weights", "biases")

    def __init__(
        self,
        num_features: int,
        hidden: Sequence[int] = (500, 1000),
        pixel_mean: torch.Tensor | None = None,
        image_shape: Sequence[int] | None = None,
        init_scale: float = 0.01,
        name: str | None = None,
    ) -> None:
        hidden = tuple(int(h) for h in hidden)
        if len(hidden) not in (2, 3) or min(hidden) < 1:
            raise ValueError(f"hidden must list 2 or 3 positive layer sizes, got {hidden}")
        super().__init__(num_features, image_shape, name)
        self.hidden = hidden
        self.sizes = (self.num_features,) + hidden
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(a, b) * init_scale)
            for a, b in zip(self.sizes[:-1], self.sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(s)) for s in self.sizes)
        if pixel_mean is not None:
            with torch.no_grad():
                self.biases[0].copy_(logit_of_mean(pixel_mean, self.biases[0]))

    @property
    def num_visible(self) -> int:
        """The visible units (the data width), :attr:`num_features`."""
        return self.num_features

    def distribution(self, **kwargs) -> DBM:
        """The DBM with the current parameters, as a distribution over the visible units."""
        weights, biases = self._distribution_parameters()
        return DBM(list(weights), list(biases), **kwargs)

    def _visible_mean(self, dist, state) -> torch.Tensor:
        return torch.sigmoid(dist.layer_logits(0, above=state[1]))

    # ---- greedy pre-training ------------------------------------------------------

    def pretraining_stack(self) -> list[StackRBM]:
        """Fresh RBMs of the greedy stack with Salakhutdinov & Hinton's doubling
        (:func:`~pyrogen.distributions.dbm.pretraining_scales`: bottom visible units
        doubled, top hidden units doubled, middle plain); the bottom one's visible bias
        starts at this DBM's."""
        n = len(self.sizes) - 1
        stack = []
        for k in range(n):
            up, down = (int(s) for s in pretraining_scales(k, n))
            rbm = StackRBM(self.sizes[k], self.sizes[k + 1], up=up, down=down)
            if k == 0:
                with torch.no_grad():
                    rbm.visible_bias.copy_(self.biases[0])
            stack.append(rbm)
        return stack

    @torch.no_grad()
    def load_pretrained(self, rbms: Sequence[StackRBM]) -> None:
        """Compose the pre-trained stack into this DBM's parameters (``DBM.from_rbms``)."""
        dbm = DBM.from_rbms([r.rbm() for r in rbms])
        for p, w in zip(self.weights, dbm.weights):
            p.copy_(w)
        for p, b in zip(self.biases, dbm.biases):
            p.copy_(b)
