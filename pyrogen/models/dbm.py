r"""Deep Boltzmann machines as Pyro models, with greedy layer-wise pre-training.

``DeepBoltzmannMachine.model(x)`` is ``pyro.sample("v", DBM(weights, biases), obs=x)``
inside ``pyro.plate("data")`` (hidden layers summed out by the distribution, empty guide).
Learning follows Salakhutdinov & Hinton (2009) [1]:

1. **Greedy pre-training** of one RBM per layer pair (:class:`PretrainingRBM`), the bottom
   one with two tied copies of its visible units (bottom-up input doubled), the top one
   with two tied copies of its hidden units (top-down input doubled), each on the sampled
   hidden probabilities of the one below; composed by
   :meth:`pyrogen.distributions.DBM.from_rbms`.
2. **Joint training**: the positive phase from the mean-field posterior, the negative
   phase from persistent Gibbs chains (:class:`~pyrogen.infer.ContrastiveDivergence` with
   ``persistent=True`` handles DBMs this way).

**References**

[1] Deep Boltzmann Machines. Ruslan Salakhutdinov, Geoffrey Hinton. 2009.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pyro
import torch
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyrogen._checks import check_binary, flatten_images
from pyrogen._effects import data_plate, params_observed
from pyrogen.distributions.dbm import DBM
from pyrogen.distributions.energy import bernoulli_sample
from pyrogen.distributions.rbm import BernoulliRBM

_instance_ids = itertools.count()


class PretrainingRBM(PyroModule):
    r"""An RBM of the greedy stack, with ``up``/``down`` tied copies (1 or 2).

    With ``up = 2`` the visible units are duplicated (both copies observe the same data,
    share :math:`W` and :math:`b`), so :math:`p(h \mid v) = \sigma(c + 2W^\top v)` and
    :math:`p(v \mid h) = \sigma(b + W h)`; with ``down = 2`` the hidden units are duplicated,
    so :math:`p(v \mid h, h') = \sigma(b + W h + W h')`. As an ordinary
    :class:`~pyrogen.distributions.BernoulliRBM` over the tiled units it trains with
    contrastive divergence unchanged.
    """

    def __init__(self, num_visible, num_hidden, up=1, down=1, init_scale=0.01, visible_bias=None):
        super().__init__(name=f"dbm_rbm{next(_instance_ids)}")
        if up not in (1, 2) or down not in (1, 2):
            raise ValueError(f"up and down must be 1 or 2, got {up}, {down}")
        self.up, self.down = up, down
        self.weight = nn.Parameter(torch.randn(num_visible, num_hidden) * init_scale)
        self.visible_bias = nn.Parameter(
            torch.zeros(num_visible) if visible_bias is None else visible_bias.clone()
        )
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))

    def _params(self):
        if params_observed():
            return self.weight, self.visible_bias, self.hidden_bias
        p = self._parameters
        return p["weight"], p["visible_bias"], p["hidden_bias"]

    def distribution(self) -> BernoulliRBM:
        """The RBM over the tiled units (what contrastive divergence trains)."""
        W, b, c = self._params()
        W = torch.cat([W] * self.up, 0)
        W = torch.cat([W] * self.down, 1)
        return BernoulliRBM(
            W, torch.cat([b] * self.up), torch.cat([c] * self.down), validate_args=False
        )

    def rbm(self) -> BernoulliRBM:
        """The untiled RBM (weights as trained), as :meth:`DBM.from_rbms` expects."""
        return BernoulliRBM(self.weight, self.visible_bias, self.hidden_bias)

    @pyro_method
    def model(self, x):
        with data_plate("data", x.shape[0], x.device):
            pyro.sample("v", self.distribution(), obs=torch.cat([x] * self.up, -1))

    @pyro_method
    def guide(self, x):
        """Empty (no latent sites)."""

    def up_probabilities(self, v):
        """:math:`p(h = 1 \\mid v)` of the pre-training conditional (bottom-up input times
        ``up``): what the next RBM of the stack is trained on."""
        return torch.sigmoid(self.hidden_bias + self.up * (v @ self.weight))


class DeepBoltzmannMachine(PyroModule):
    """A DBM with trainable parameters (see module docs).

    :param int num_visible: :math:`V`.
    :param hidden: hidden layer sizes, 2 or 3 of them (e.g. ``(500, 1000)``).
    :param pixel_mean: training pixel means (visible-bias initialisation).
    :param image_shape: for sample grids.
    """

    def __init__(
        self,
        num_visible: int,
        hidden: Sequence[int] = (500, 1000),
        pixel_mean: torch.Tensor | None = None,
        image_shape: Sequence[int] | None = None,
        init_scale: float = 0.01,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name if name is not None else f"dbm{next(_instance_ids)}")
        hidden = tuple(int(h) for h in hidden)
        if len(hidden) not in (2, 3) or min(hidden) < 1:
            raise ValueError(f"hidden must list 2 or 3 positive layer sizes, got {hidden}")
        sizes = (int(num_visible),) + hidden
        self.sizes = sizes
        if image_shape is None:
            side = math.isqrt(num_visible)
            image_shape = (side, side) if side * side == num_visible else (1, num_visible)
        self.image_shape = tuple(image_shape)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(a, b) * init_scale) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(s)) for s in sizes)
        if pixel_mean is not None:
            with torch.no_grad():
                m = torch.as_tensor(pixel_mean).reshape(-1).to(self.biases[0])
                self.biases[0].copy_(torch.logit(m.clamp(1e-3, 1 - 1e-3)))

    @property
    def num_visible(self) -> int:
        return self.sizes[0]

    def distribution(self, **kwargs) -> DBM:
        if params_observed():
            weights, biases = list(self.weights), list(self.biases)
        else:
            weights = list(self._modules["weights"]._parameters.values())
            biases = list(self._modules["biases"]._parameters.values())
        return DBM(weights, biases, **kwargs)

    @pyro_method
    def model(self, x: torch.Tensor):
        """``pyro.sample("v", DBM(...), obs=x)`` inside ``pyro.plate("data")``."""
        x = flatten_images(x, self.num_visible, self.image_shape)
        if is_validation_enabled():
            check_binary(x)
        with data_plate("data", x.shape[0], x.device):
            pyro.sample("v", self.distribution(validate_args=False), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor):
        """Empty: the hidden layers are summed out / handled by the learning rule."""

    # ---- greedy pre-training ------------------------------------------------------

    def pretraining_rbms(self, pixel_mean: torch.Tensor | None = None) -> list[PretrainingRBM]:
        """Fresh RBMs of the greedy stack with Salakhutdinov & Hinton's doubling (bottom:
        visible doubled; top: hidden doubled; middle: plain)."""
        n = len(self.sizes) - 1
        rbms = []
        for k in range(n):
            up = 2 if k == 0 else 1
            down = 2 if k == n - 1 else 1
            vb = self.biases[0].detach() if k == 0 else None
            rbms.append(PretrainingRBM(self.sizes[k], self.sizes[k + 1], up, down, visible_bias=vb))
        return rbms

    @torch.no_grad()
    def load_pretrained(self, rbms: Sequence[PretrainingRBM]) -> None:
        """Compose the pre-trained stack into this DBM's parameters (``DBM.from_rbms``)."""
        dbm = DBM.from_rbms([r.rbm() for r in rbms])
        for p, w in zip(self.weights, dbm.weights):
            p.copy_(w)
        for p, b in zip(self.biases, dbm.biases):
            p.copy_(b)

    @torch.no_grad()
    def sample(self, num_samples: int, num_steps: int = 1000) -> torch.Tensor:
        """Block Gibbs from random states; returns :math:`p(v = 1 \\mid h_1)` of the last
        sweep (the usual picture of DBM samples)."""
        dist = self.distribution()
        state = dist.init_chains(num_samples)
        for _ in range(num_steps):
            state = dist.gibbs_step(state)
        return torch.sigmoid(dist.layer_logits(0, above=state[1]))


def stack_inputs(rbms: Sequence[PretrainingRBM], x: torch.Tensor) -> torch.Tensor:
    """Data for the RBM after ``rbms``: each layer's up-pass probabilities, sampled."""
    for rbm in rbms:
        x = bernoulli_sample(rbm.up_probabilities(x))
    return x
