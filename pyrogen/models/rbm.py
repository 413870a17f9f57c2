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

from collections.abc import Sequence

import torch
from pyro.infer.util import is_validation_enabled

from pyrogen.distributions.rbm import BernoulliRBM
from pyrogen.distributions.replicated_softmax import ReplicatedSoftmaxRBM, check_counts
from pyrogen.models.base import logit_of_mean
from pyrogen.models.energy import EnergyModel

__all__ = ["RBM", "ReplicatedSoftmax"]


class RBM(EnergyModel):
    """Binary RBM with trainable parameters (see module docs).

    :param int num_features: :math:`V`, the visible units (the data width).
    :param int hidden: :math:`H`, the hidden units.
    :param pixel_mean: ``(V,)`` training-set means for the visible-bias initialisation.
    :param image_shape: ``(H, W)`` of the visible units, for filters and sample grids.
    :param float init_scale: standard deviation of the initial weights.
    """

    name_prefix = "rbm"

    def __init__(
        self,
        num_features: int,
        hidden: int,
        pixel_mean: torch.Tensor | None = None,
        image_shape: Sequence[int] | None = None,
        init_scale: float = 0.01,
        name: str | None = None,
    ) -> None:
        super().__init__(num_features, image_shape, name)
        self._init_layer_parameters(hidden, init_scale)
        if pixel_mean is not None:
            with torch.no_grad():
                self.visible_bias.copy_(logit_of_mean(pixel_mean, self.visible_bias))

    @property
    def num_visible(self) -> int:
        """The visible units (the data width), :attr:`num_features`."""
        return self.num_features

    def distribution(self, **kwargs) -> BernoulliRBM:
        """The RBM with the current parameters, as a distribution over the visible units."""
        return BernoulliRBM(*self._distribution_parameters(), **kwargs)

    def _visible_mean(self, dist, state) -> torch.Tensor:
        return torch.sigmoid(dist.visible_logits(state[1]))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """One mean-field up-down pass, :math:`\\sigma(b + W \\sigma(c + W^\\top x))`."""
        dist = self.distribution()
        x = self._prepare(x)
        return torch.sigmoid(dist.visible_logits(torch.sigmoid(dist.hidden_logits(x))))

    @torch.no_grad()
    def filters(self) -> torch.Tensor:
        """Each hidden unit's weights as an image, ``(hidden, *image_shape)``."""
        return self.weight.detach().T.reshape(self.hidden, *self.image_shape)


class ReplicatedSoftmax(EnergyModel):
    r"""Replicated-softmax RBM (Salakhutdinov & Hinton 2009) with trainable parameters: an
    undirected topic model over word-count vectors,
    ``pyro.sample("v", ReplicatedSoftmaxRBM(W, b, c), obs=counts)``.

    Initialisation: weights :math:`\mathcal N(0, 0.01^2)`, word biases the log of the
    smoothed training word frequencies, hidden biases 0. Train it with
    :class:`~pyrogen.infer.ContrastiveDivergence` (the model's hidden biases are scaled by
    each document's length inside the distribution).

    :param int num_features: :math:`K`, the vocabulary size (the data width).
    :param int hidden: :math:`H` (the "topics").
    :param word_counts: ``(K,)`` total training counts per word, for the bias initialisation.
    :param int document_length: words per document of :meth:`sample` when none is given.
    """

    name_prefix = "rsm"

    def __init__(
        self,
        num_features: int,
        hidden: int,
        word_counts: torch.Tensor | None = None,
        *,
        document_length: int | None = None,
        init_scale: float = 0.01,
        name: str | None = None,
    ) -> None:
        super().__init__(num_features, (1, int(num_features)), name)
        self._init_layer_parameters(hidden, init_scale)
        self.document_length = None if document_length is None else int(document_length)
        if word_counts is not None:
            with torch.no_grad():
                counts = torch.as_tensor(word_counts, dtype=torch.float32).reshape(-1) + 1.0
                self.visible_bias.copy_((counts / counts.sum()).log().to(self.visible_bias))

    @property
    def vocab_size(self) -> int:
        """The vocabulary size, :attr:`num_features`."""
        return self.num_features

    def distribution(self, **kwargs) -> ReplicatedSoftmaxRBM:
        """The replicated-softmax RBM with the current parameters (``length``: the document
        length of its partition function and of fresh Gibbs chains)."""
        kwargs.setdefault("length", self.document_length)
        return ReplicatedSoftmaxRBM(*self._distribution_parameters(), **kwargs)

    def _prepare(self, x, name: str = "counts") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if is_validation_enabled():
            check_counts(x, self.num_features, name)
        return x

    def _visible_mean(self, dist, state) -> torch.Tensor:
        # expected counts given h: D softmax(b + W h), each chain with its own length D
        return state[0].sum(-1, keepdim=True) * torch.softmax(dist.visible_logits(state[1]), -1)

    @torch.no_grad()
    def topics(self) -> torch.Tensor:
        """Each hidden unit's weights over the vocabulary, ``(hidden, vocab_size)``: its
        top words are the "topic" it has learned."""
        return self.weight.detach().T

    @torch.no_grad()
    def reconstruct(self, counts: torch.Tensor) -> torch.Tensor:
        """One mean-field up-down pass: the expected counts
        :math:`D\\,\\mathrm{softmax}(b + W\\,\\sigma(Dc + v^\\top W))` of each document."""
        dist = self.distribution()
        h = torch.sigmoid(dist.hidden_logits(counts))
        return counts.sum(-1, keepdim=True) * torch.softmax(dist.visible_logits(h), -1)
