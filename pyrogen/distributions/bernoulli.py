r"""Independent Bernoulli pixels parameterised by logits, with a fused log-density."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import lazy_property


class _BernoulliLogProb(torch.autograd.Function):
    r"""Fused :math:`\sum_d \log \mathrm{Bernoulli}(x_d \mid \sigma(l_d))` over the last dim.

    Uses :math:`\log p(x_d) = x_d l_d - \mathrm{softplus}(l_d)` and
    :math:`\partial \log p / \partial l_d = x_d - \sigma(l_d)`: three passes over the logits
    each way and one temporary of their size (``binary_cross_entropy_with_logits`` and a sum
    make several), which is most of the elementwise work of an importance-weighted step when
    the logits are ``particles x batch x pixels``. The sign is applied after the sum.
    """

    @staticmethod
    def forward(ctx, logits, value):
        # value broadcasts to the shape of logits (checked by the caller)
        ctx.save_for_backward(logits, value)
        return F.softplus(logits).addcmul_(logits, value, value=-1).sum(-1).neg_()

    @staticmethod
    def backward(ctx, grad):
        logits, value = ctx.saved_tensors
        return torch.sigmoid(logits).sub_(value).mul_(grad.neg().unsqueeze(-1)), None


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    if len(shape) > len(target):
        return False
    return all(s == t or s == 1 for s, t in zip(reversed(shape), reversed(target)))


def bernoulli_log_prob(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    r"""Log-probability of binary ``value`` under independent Bernoulli(sigmoid(``logits``))
    pixels, summed over the last dim; broadcasts like ``logits + value``."""
    value = value.to(logits.dtype)
    if (
        value.requires_grad
        or type(value) is not torch.Tensor
        or type(logits) is not torch.Tensor
        or not _broadcasts_to(value.shape, logits.shape)
    ):
        # rare: gradients through the value, a value with more batch dims than logits, or
        # tensor subclasses (Pyro's TraceGraph_ELBO passes ProvenanceTensors), whose
        # __torch_function__ would drop the autograd graph of a custom Function's output
        return (logits * value - F.softplus(logits)).sum(-1)
    return _BernoulliLogProb.apply(logits, value)


class IndependentBernoulli(TorchDistribution):
    r"""A vector of independent Bernoulli variables given by their log-odds.

    .. math:: p(x \mid l) = \prod_{d=1}^D \sigma(l_d)^{x_d}\,\sigma(-l_d)^{1 - x_d}

    Equivalent to ``Bernoulli(logits=logits).to_event(1)`` (the last dim of ``logits`` is
    the event), with a fused log-density that allocates less in the hot loop of
    importance-weighted training. Parameterised by ``logits`` only, so callers can never
    mistake probabilities for log-odds.

    :param torch.Tensor logits: log-odds, shape ``batch_shape + (D,)``.
    """

    arg_constraints = {"logits": constraints.independent(constraints.real, 1)}
    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = False

    def __init__(self, logits: torch.Tensor, *, validate_args: bool | None = None) -> None:
        if not isinstance(logits, torch.Tensor) or logits.dim() < 1:
            raise ValueError(
                "logits must be a tensor with at least one dim (the event), got "
                f"{type(logits).__name__}"
                + (f" of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else "")
            )
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(IndependentBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        super(IndependentBernoulli, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def mean(self) -> torch.Tensor:
        return self.probs

    @property
    def variance(self) -> torch.Tensor:
        return self.probs * torch.sigmoid(-self.logits)

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            return torch.bernoulli(self.probs.expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return bernoulli_log_prob(self.logits, value)

    def entropy(self) -> torch.Tensor:
        p = self.probs
        return (F.softplus(-self.logits) * p + F.softplus(self.logits) * (1 - p)).sum(-1)
