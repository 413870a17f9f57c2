r"""RBM with binary visible units and linear (unit-variance Gaussian) hidden units.

The code layer of Hinton & Salakhutdinov's deep autoencoder [1] is pre-trained as an RBM
whose visible units :math:`v \in \{0,1\}^V` are binary (probabilities of the layer below)
and whose hidden units :math:`h \in \mathbb{R}^H` are linear with Gaussian noise of unit
variance:

.. math::

    E(v, h) = -b^\top v + \tfrac12 \lVert h - c \rVert^2 - v^\top W h,

so that the conditionals are

.. math::

    p(h \mid v) = \mathcal N\big(c + W^\top v,\ I\big), \qquad
    p(v_i = 1 \mid h) = \sigma\big(b_i + (W h)_i\big).

Integrating :math:`h` out (a Gaussian integral),

.. math::

    -F(v) = \log \int e^{-E(v, h)}\, dh
        = b^\top v + \tfrac12 \lVert c + W^\top v \rVert^2 - \tfrac12 \lVert c \rVert^2
          + \tfrac H2 \log 2\pi,

finite for every binary :math:`v`, so the model is normalizable (the visible layer is
finite). :math:`\log Z = \operatorname{logsumexp}_{v \in \{0,1\}^V} (-F(v))` is exact by
enumerating the visible layer when :math:`V` is at most
:attr:`~GaussianHiddenRBM.max_enumeration`; otherwise it is estimated by AIS along
:class:`GaussianHiddenRBMAnnealingPath` (after [2]).

The parameters describe one RBM; ``batch_shape`` only broadcasts it.

**References**

[1] Reducing the Dimensionality of Data with Neural Networks. Geoffrey E. Hinton, Ruslan R.
    Salakhutdinov. 2006.

[2] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyrogen import _rng
from pyrogen.distributions.annealing import AnnealingPath
from pyrogen.distributions.energy import (
    RBMBase,
    affine,
    base_rates,
    bernoulli_sample,
)

_LOG_2PI = math.log(2 * math.pi)


class GaussianHiddenRBM(RBMBase):
    r"""RBM over binary :math:`v \in \{0,1\}^V` with linear, unit-variance Gaussian hidden
    units (see module docs).

    :param torch.Tensor weight: :math:`W`, shape ``(num_visible, num_hidden)``.
    :param torch.Tensor visible_bias: :math:`b`, shape ``(num_visible,)``.
    :param torch.Tensor hidden_bias: :math:`c`, shape ``(num_hidden,)`` (the hidden means
        at :math:`v = 0`).
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).

    The support is binary; greedy pre-training on grey levels (probabilities of the layer
    below, as in [1]) passes ``validate_args=False``.
    """

    support = constraints.independent(constraints.boolean, 1)

    # ---- conditionals ---------------------------------------------------------------

    def hidden_mean(self, v: torch.Tensor) -> torch.Tensor:
        """Mean of :math:`p(h \\mid v)`: :math:`c + W^\\top v`."""
        return affine(v.to(self.weight.dtype), self.weight, self.hidden_bias)

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Log-odds of :math:`p(v = 1 \\mid h)`: :math:`b + W h`."""
        return affine(h.to(self.weight.dtype), self.weight.T, self.visible_bias)

    def hidden_given_visible(self, v: torch.Tensor) -> torch.distributions.Normal:
        """:math:`p(h \\mid v) = \\mathcal N(c + W^\\top v, I)`, factorized (one batch entry
        per hidden unit)."""
        mean = self.hidden_mean(v)
        return torch.distributions.Normal(mean, torch.ones_like(mean), validate_args=False)

    def visible_given_hidden(self, h: torch.Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(v \\mid h)`, a factorized Bernoulli."""
        return torch.distributions.Bernoulli(logits=self.visible_logits(h), validate_args=False)

    # ---- densities --------------------------------------------------------------------

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h)`."""
        v, h = v.to(self.weight.dtype), h.to(self.weight.dtype)
        return (
            -(v @ self.visible_bias)
            + 0.5 * (h - self.hidden_bias).square().sum(-1)
            - ((v @ self.weight) * h).sum(-1)
        )

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`-F(v) = b^\top v + \frac12 \lVert c + W^\top v\rVert^2
        - \frac12 \lVert c\rVert^2 + \frac H2 \log 2\pi`."""
        value = value.to(self.weight.dtype)
        const = 0.5 * self.num_hidden * _LOG_2PI - 0.5 * self.hidden_bias.square().sum()
        return value @ self.visible_bias + 0.5 * self.hidden_mean(value).square().sum(-1) + const

    def can_enumerate(self) -> bool:
        """Whether :math:`\\log Z` can be exact: at most :attr:`max_enumeration` visible
        units (the hidden ones are continuous and integrate out in closed form)."""
        return self.num_visible <= self.max_enumeration

    def _exact_log_partition(self) -> torch.Tensor:
        return self._sum_over_states(self.num_visible, self.unnormalized_log_prob, self.num_hidden)

    def annealing_path(
        self, data: torch.Tensor | None = None, smoothing: float = 0.05
    ) -> GaussianHiddenRBMAnnealingPath:
        """The AIS path of :class:`GaussianHiddenRBMAnnealingPath`, from base rates fitted to
        ``data`` (or uniform)."""
        return GaussianHiddenRBMAnnealingPath(self, data, smoothing=smoothing)

    # ---- Gibbs sampling --------------------------------------------------------------

    def gibbs_step(self, state):
        """:math:`h \\sim \\mathcal N(c + W^\\top v, I)`, then :math:`v \\sim p(v \\mid h)`;
        state ``(v, h)``."""
        mean = self.hidden_mean(state[0])
        h = mean + _rng.randn_like(mean)
        v = bernoulli_sample(torch.sigmoid(self.visible_logits(h)))
        return (v, h)


class GaussianHiddenRBMAnnealingPath(AnnealingPath):
    r"""A geometric AIS path for :class:`GaussianHiddenRBM`, after Salakhutdinov & Murray's
    base-rate path: the base model has no weights, visible base rates :math:`b_A` (logits of
    the smoothed data marginals, or 0) and hidden units :math:`\mathcal N(c, I)`. With
    :math:`E_\beta = (1 - \beta) E_A + \beta E`,
    :math:`E_A(v, h) = -b_A^\top v + \frac12 \lVert h - c\rVert^2`, integrating :math:`h` out,

    .. math::

        \log f_\beta(v) = (1 - \beta)\, b_A^\top v + \beta\, b^\top v
            + \beta\, c^\top W^\top v + \tfrac{\beta^2}{2} \lVert W^\top v\rVert^2
            + \tfrac H2 \log 2\pi,

    so :math:`f_1 = e^{-F}` and :math:`\log Z_A = \sum_i \mathrm{softplus}(b_{A,i})
    + \frac H2 \log 2\pi`. Block Gibbs at inverse temperature :math:`\beta`:
    :math:`h \sim \mathcal N(c + \beta W^\top v, I)`, then
    :math:`v_i \sim \sigma\big((1 - \beta)\, b_{A,i} + \beta\, (b + W h)_i\big)`.

    :param GaussianHiddenRBM rbm: the target model.
    :param torch.Tensor data: optional binary data ``(..., num_visible)`` for :math:`b_A`.
    :param float smoothing: pseudo-count added to the data marginals.
    """

    def __init__(
        self, rbm: GaussianHiddenRBM, data: torch.Tensor | None = None, smoothing: float = 0.05
    ) -> None:
        self.rbm = rbm
        self.base_bias = base_rates(data, rbm.visible_bias.detach(), smoothing)
        self.log_z_base = F.softplus(self.base_bias).sum() + 0.5 * rbm.num_hidden * _LOG_2PI

    def sample_base(self, num_chains: int):
        return (bernoulli_sample(torch.sigmoid(self.base_bias).expand(num_chains, -1)),)

    def prepare(self, state):
        v = state[0]
        u = v @ self.rbm.weight  # W^T v, one row per chain
        linear = v @ self.rbm.visible_bias + u @ self.rbm.hidden_bias
        return v @ self.base_bias, linear, 0.5 * u.square().sum(-1), u

    def log_f(self, state, cache, beta: float) -> torch.Tensor:
        base, linear, quad, _ = cache
        const = 0.5 * self.rbm.num_hidden * _LOG_2PI
        return (1 - beta) * base + beta * linear + beta * beta * quad + const

    def transition(self, state, cache, beta: float):
        u = cache[3]
        mean = self.rbm.hidden_bias + beta * u
        h = mean + _rng.randn_like(mean)
        logits = torch.lerp(self.base_bias, self.rbm.visible_logits(h), beta)
        return (bernoulli_sample(torch.sigmoid(logits)),)
