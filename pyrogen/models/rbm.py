r"""A binary RBM as a Pyro model: ``pyro.sample("v", BernoulliRBM(W, b, c), obs=x)``.

The hidden units are summed out inside the distribution, so the model has one observed
site and no latent sites; its guide is empty. Train it with
:class:`~pyrogen.infer.ContrastiveDivergence` (CD-k or persistent CD), e.g.
``SVI(rbm.model, rbm.guide, optim, ContrastiveDivergence(k=1, persistent=True))``; with a
small hidden layer (exact :math:`\log Z`) even ``Trace_ELBO`` gives the exact likelihood
gradient.

Initialisation follows Hinton's practical guide [1]: weights :math:`\mathcal N(0, 0.01^2)`,
hidden biases 0, visible biases :math:`\log \frac{m_i}{1 - m_i}` of the training pixel means.

**References**

[1] A Practical Guide to Training Restricted Boltzmann Machines. Geoffrey E. Hinton. 2010.
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
from pyrogen.distributions.rbm import BernoulliRBM

_instance_ids = itertools.count()


class RBM(PyroModule):
    """Binary RBM with trainable parameters (see module docs).

    :param int num_visible: :math:`V`.
    :param int num_hidden: :math:`H`.
    :param pixel_mean: ``(V,)`` training-set means for the visible-bias initialisation.
    :param image_shape: ``(H, W)`` of the visible units, for filters and sample grids.
    :param float init_scale: standard deviation of the initial weights.
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        pixel_mean: torch.Tensor | None = None,
        image_shape: Sequence[int] | None = None,
        init_scale: float = 0.01,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name if name is not None else f"rbm{next(_instance_ids)}")
        if num_visible < 1 or num_hidden < 1:
            raise ValueError(
                f"num_visible and num_hidden must be >= 1, got {num_visible}, {num_hidden}"
            )
        self.num_visible, self.num_hidden = int(num_visible), int(num_hidden)
        if image_shape is None:
            side = math.isqrt(num_visible)
            image_shape = (side, side) if side * side == num_visible else (1, num_visible)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.weight = nn.Parameter(torch.randn(num_visible, num_hidden) * init_scale)
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        if pixel_mean is not None:
            with torch.no_grad():
                mean = torch.as_tensor(pixel_mean).reshape(-1).to(self.visible_bias)
                if mean.numel() != num_visible:
                    raise ValueError(
                        f"pixel_mean: expected {num_visible} values, got {mean.numel()}"
                    )
                self.visible_bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))

    def distribution(self, **kwargs) -> BernoulliRBM:
        """The RBM with the current parameters, as a distribution over the visible units."""
        if params_observed():  # register the parameters with Pyro (SVI needs them)
            params = (self.weight, self.visible_bias, self.hidden_bias)
        else:
            p = self._parameters
            params = (p["weight"], p["visible_bias"], p["hidden_bias"])
        return BernoulliRBM(*params, **kwargs)

    def _prepare(self, x):
        x = flatten_images(x, self.num_visible, self.image_shape)
        if is_validation_enabled():
            check_binary(x)
        return x

    @pyro_method
    def model(self, x: torch.Tensor):
        """``pyro.sample("v", BernoulliRBM(...), obs=x)`` inside ``pyro.plate("data")``."""
        x = self._prepare(x)
        with data_plate("data", x.shape[0], x.device):
            pyro.sample("v", self.distribution(validate_args=False), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor):
        """Empty: the RBM has no latent sample sites (its hidden units are summed out)."""

    @torch.no_grad()
    def sample(self, num_samples: int, num_steps: int = 1000, init=None) -> torch.Tensor:
        """``num_samples`` chains of ``num_steps`` block-Gibbs sweeps; returns the last
        :math:`p(v = 1 \\mid h)` (the usual picture of RBM samples)."""
        rbm = self.distribution()
        state = rbm.init_chains(num_samples) if init is None else (init,)
        for _ in range(num_steps):
            state = rbm.gibbs_step(state)
        return torch.sigmoid(rbm.visible_logits(state[1]))

    def filters(self) -> torch.Tensor:
        """The weights of each hidden unit as an image, ``(num_hidden, *image_shape)``."""
        return self.weight.detach().T.reshape(self.num_hidden, *self.image_shape)


class ReplicatedSoftmax(PyroModule):
    r"""Replicated-softmax RBM (Salakhutdinov & Hinton 2009) with trainable parameters: an
    undirected topic model over word-count vectors,
    ``pyro.sample("v", ReplicatedSoftmaxRBM(W, b, c), obs=counts)``.

    Initialisation: weights :math:`\mathcal N(0, 0.01^2)`, word biases the log of the
    smoothed training word frequencies, hidden biases 0. Train it with
    :class:`~pyrogen.infer.ContrastiveDivergence` (the model's hidden biases are scaled by
    each document's length inside the distribution).

    :param int vocab_size: :math:`K`.
    :param int num_hidden: :math:`H` (the "topics").
    :param word_counts: ``(K,)`` total training counts per word, for the bias initialisation.
    """

    def __init__(
        self,
        vocab_size: int,
        num_hidden: int,
        word_counts: torch.Tensor | None = None,
        init_scale: float = 0.01,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name if name is not None else f"rsm{next(_instance_ids)}")
        self.vocab_size, self.num_hidden = int(vocab_size), int(num_hidden)
        self.weight = nn.Parameter(torch.randn(vocab_size, num_hidden) * init_scale)
        self.visible_bias = nn.Parameter(torch.zeros(vocab_size))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        if word_counts is not None:
            with torch.no_grad():
                counts = torch.as_tensor(word_counts, dtype=torch.float32).reshape(-1) + 1.0
                self.visible_bias.copy_((counts / counts.sum()).log().to(self.visible_bias))

    def distribution(self, **kwargs):
        from pyrogen.distributions import ReplicatedSoftmaxRBM

        if params_observed():
            params = (self.weight, self.visible_bias, self.hidden_bias)
        else:
            p = self._parameters
            params = (p["weight"], p["visible_bias"], p["hidden_bias"])
        return ReplicatedSoftmaxRBM(*params, **kwargs)

    @pyro_method
    def model(self, counts: torch.Tensor):
        """``pyro.sample("v", ReplicatedSoftmaxRBM(...), obs=counts)`` in the data plate;
        counts are checked (non-negative integers) when validation is on."""
        if is_validation_enabled():
            from pyrogen.distributions.replicated_softmax import check_counts

            check_counts(counts, self.vocab_size, "counts")
        with data_plate("data", counts.shape[0], counts.device):
            pyro.sample("v", self.distribution(validate_args=False), obs=counts)

    @pyro_method
    def guide(self, counts: torch.Tensor):
        """Empty (the hidden units are summed out)."""

    @torch.no_grad()
    def topics(self) -> torch.Tensor:
        """Each hidden unit's weights over the vocabulary, ``(num_hidden, vocab_size)``: its
        top words are the "topic" it has learned."""
        return self.weight.detach().T

    @torch.no_grad()
    def reconstruct(self, counts: torch.Tensor) -> torch.Tensor:
        """One mean-field up-down pass: the expected counts
        :math:`D\\,\\mathrm{softmax}(b + W\\,\\sigma(Dc + v^\\top W))` of each document."""
        dist = self.distribution()
        h = torch.sigmoid(dist.hidden_logits(counts))
        return counts.sum(-1, keepdim=True) * torch.softmax(dist.visible_logits(h), -1)
