r"""Gaussian-Bernoulli restricted Boltzmann machine: real-valued visible units.

The visible units :math:`v \in \mathbb{R}^V` are Gaussian with per-unit standard deviations
:math:`\sigma_i > 0` (learned or fixed), the hidden units :math:`h \in \{0,1\}^H` binary, and

.. math::

    E(v, h) = \sum_{i=1}^V \frac{(v_i - b_i)^2}{2\sigma_i^2}
        - \sum_{i,j} \frac{v_i}{\sigma_i} W_{ij} h_j - c^\top h

(the form of [1] with the learned variances of [2]). The conditionals factorize:

.. math::

    p(h_j = 1 \mid v) = \sigma\Big(c_j + \sum_i \frac{v_i}{\sigma_i} W_{ij}\Big), \qquad
    p(v_i \mid h) = \mathcal N\big(v_i;\ b_i + \sigma_i (W h)_i,\ \sigma_i^2\big),

and summing :math:`h` out gives the free energy

.. math::

    F(v) = \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2}
        - \sum_j \mathrm{softplus}\Big(c_j + \sum_i \frac{v_i}{\sigma_i} W_{ij}\Big).

Integrating :math:`v` out instead (a Gaussian integral per unit, with :math:`u = W h`)
gives :math:`\tilde p(h) = \int e^{-E(v, h)}\, dv
= e^{c^\top h} \prod_i \sqrt{2\pi}\,\sigma_i\, e^{b_i u_i / \sigma_i + u_i^2 / 2}`, so

.. math::

    \log Z = \operatorname{logsumexp}_{h \in \{0,1\}^H}
        \Big[c^\top h + \sum_i \Big(\frac{b_i}{\sigma_i} u_i + \frac{u_i^2}{2}\Big)\Big]
        + \sum_i \log\big(\sqrt{2\pi}\,\sigma_i\big),

a sum over the :math:`2^H` hidden states (only the hidden layer can be enumerated). Larger
models get an AIS estimate along :class:`GaussianRBMAnnealingPath` [3].

The parameters describe one RBM; ``batch_shape`` only broadcasts it (as ``pyro.plate``
does through :meth:`~GaussianRBM.expand`).

**References**

[1] Reducing the Dimensionality of Data with Neural Networks. Geoffrey E. Hinton, Ruslan R.
    Salakhutdinov. 2006.

[2] Learning Multiple Layers of Features from Tiny Images. Alex Krizhevsky. 2009.

[3] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyrogen import _rng
from pyrogen.distributions.energy import (
    BaseRateAnnealingPath,
    RBMBase,
    affine,
    bernoulli_sample,
)

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class GaussianRBM(RBMBase):
    r"""Gaussian-Bernoulli RBM over :math:`v \in \mathbb{R}^V` (see module docs).

    To learn the variances, pass a ``visible_scale`` that is a function of a parameter
    (e.g. ``log_scale.exp()``, or a ``PyroParam`` constrained to be positive); a plain
    tensor keeps them fixed (a common choice is 1 on standardized data [1]).

    :param torch.Tensor weight: :math:`W`, shape ``(num_visible, num_hidden)``.
    :param torch.Tensor visible_bias: :math:`b`, shape ``(num_visible,)``.
    :param torch.Tensor hidden_bias: :math:`c`, shape ``(num_hidden,)``.
    :param torch.Tensor visible_scale: :math:`\sigma > 0`, shape ``(num_visible,)``;
        checked when validation is on.
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).
    """

    arg_constraints = dict(
        RBMBase.arg_constraints, visible_scale=constraints.independent(constraints.positive, 1)
    )
    support = constraints.independent(constraints.real, 1)
    parameter_dims = dict(RBMBase.parameter_dims, visible_scale=("num_visible",))

    def __init__(self, weight, visible_bias, hidden_bias, visible_scale, **kwargs) -> None:
        # keyword-only gibbs_steps and validate_args as for every RBM (RBMBase)
        self.visible_scale = visible_scale
        super().__init__(weight, visible_bias, hidden_bias, **kwargs)

    # ---- conditionals ---------------------------------------------------------------

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        r"""Log-odds of :math:`p(h = 1 \mid v)`: :math:`c + (v / \sigma)^\top W`."""
        z = v.to(self.weight.dtype) / self.visible_scale
        return affine(z, self.weight, self.hidden_bias)

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        r"""Mean of :math:`p(v \mid h)`: :math:`b + \sigma \odot (W h)`."""
        u = affine(h.to(self.weight.dtype), self.weight.T)
        return torch.addcmul(self.visible_bias, self.visible_scale, u)

    def visible_given_hidden(self, h: torch.Tensor) -> torch.distributions.Normal:
        r""":math:`p(v \mid h) = \mathcal N(b + \sigma \odot W h, \sigma^2)`, factorized (one
        batch entry per visible unit)."""
        mean = self.visible_mean(h)
        return torch.distributions.Normal(
            mean, self.visible_scale.expand_as(mean), validate_args=False
        )

    # ---- densities --------------------------------------------------------------------

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`-F(v) = -\sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2}
        + \sum_j \mathrm{softplus}(c_j + ((v/\sigma)^\top W)_j)`."""
        value = value.to(self.weight.dtype)
        quad = ((value - self.visible_bias) / self.visible_scale).square().sum(-1)
        return F.softplus(self.hidden_logits(value)).sum(-1) - 0.5 * quad

    def unnormalized_log_prob_hidden(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\log \tilde p(h) = \log \int e^{-E(v, h)}\, dv = c^\top h
        + \sum_i \big(\frac{b_i}{\sigma_i} u_i + \frac{u_i^2}{2}
        + \log(\sqrt{2\pi}\,\sigma_i)\big)` with :math:`u = W h`."""
        h = h.to(self.weight.dtype)
        u = affine(h, self.weight.T)
        const = self.visible_scale.log().sum() + self.num_visible * _HALF_LOG_2PI
        return (
            h @ self.hidden_bias
            + u @ (self.visible_bias / self.visible_scale)
            + 0.5 * u.square().sum(-1)
            + const
        )

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h)`."""
        v, h = v.to(self.weight.dtype), h.to(self.weight.dtype)
        z = v / self.visible_scale
        quad = ((v - self.visible_bias) / self.visible_scale).square().sum(-1)
        return 0.5 * quad - ((z @ self.weight) * h).sum(-1) - h @ self.hidden_bias

    def can_enumerate(self) -> bool:
        return self.num_hidden <= self.max_enumeration

    def _exact_log_partition(self) -> torch.Tensor:
        return self._sum_over_states(
            self.num_hidden, self.unnormalized_log_prob_hidden, self.num_visible
        )

    def annealing_path(self, data: torch.Tensor | None = None) -> GaussianRBMAnnealingPath:
        """The geometric AIS path of :class:`GaussianRBMAnnealingPath`, from a factorized
        Gaussian centred on the mean of ``data`` (or on :math:`b`)."""
        return GaussianRBMAnnealingPath(self, data)

    # ---- Gibbs sampling --------------------------------------------------------------

    def init_chains(self, num_chains: int):
        r"""Chains started from :math:`\mathcal N(b, \sigma^2)`."""
        b = self.visible_bias.detach()
        noise = _rng.randn_like(b.new_empty((num_chains, self.num_visible)))
        return (torch.addcmul(b, self.visible_scale.detach(), noise),)

    def gibbs_step(self, state):
        r""":math:`h \sim p(h \mid v)`, then :math:`v \sim p(v \mid h)`; state ``(v, h)``."""
        h = bernoulli_sample(torch.sigmoid(self.hidden_logits(state[0])))
        mean = self.visible_mean(h)
        v = torch.addcmul(mean, self.visible_scale, _rng.randn_like(mean))
        return (v, h)


class GaussianRBMAnnealingPath(BaseRateAnnealingPath):
    r"""A geometric AIS path for :class:`GaussianRBM` (after Salakhutdinov & Murray's path
    for binary RBMs).

    The base model :math:`A` has no weights: visible means :math:`b_A` (the data mean, or
    :math:`b` when no data are given), the model's :math:`\sigma`, and :math:`H` hidden fair
    coins. The joint at inverse temperature :math:`\beta` is
    :math:`f_\beta(v, h) = e^{-(1-\beta) E_A(v) - \beta E(v, h)}` with
    :math:`E_A(v) = \sum_i (v_i - b_{A,i})^2 / (2\sigma_i^2)`; summing :math:`h` out,

    .. math::

        \log f_\beta(v) = -(1-\beta) \sum_i \frac{(v_i - b_{A,i})^2}{2\sigma_i^2}
            - \beta \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2}
            + \sum_j \mathrm{softplus}\Big(\beta \big(c_j
            + \textstyle\sum_i \frac{v_i}{\sigma_i} W_{ij}\big)\Big),

    so :math:`f_1 = e^{-F}` and
    :math:`Z_A = 2^H \prod_i \sqrt{2\pi}\,\sigma_i`. Since the two quadratic terms add up to
    one with weights :math:`1-\beta` and :math:`\beta`, the block-Gibbs conditionals at
    every temperature stay Bernoulli and Gaussian with the model's variances:

    .. math::

        p_\beta(h_j = 1 \mid v) = \sigma\Big(\beta \big(c_j
            + \textstyle\sum_i \frac{v_i}{\sigma_i} W_{ij}\big)\Big), \qquad
        p_\beta(v_i \mid h) = \mathcal N\big((1-\beta)\, b_{A,i}
            + \beta\, (b_i + \sigma_i (W h)_i),\ \sigma_i^2\big).

    :param GaussianRBM rbm: the target model.
    :param torch.Tensor data: optional data, shape ``(..., num_visible)``, whose mean is
        :math:`b_A`.
    """

    def __init__(self, rbm: GaussianRBM, data: torch.Tensor | None = None) -> None:
        self.model = self.rbm = rbm
        with torch.no_grad():
            if data is None:
                self.base = rbm.visible_bias.detach().clone()
            else:
                if data.shape[-1] != rbm.num_visible:
                    raise ValueError(
                        f"data must have shape (..., {rbm.num_visible}), got {tuple(data.shape)}"
                    )
                self.base = data.reshape(-1, rbm.num_visible).to(rbm.weight).mean(0)
            self.scale = rbm.visible_scale.detach()
            self.log_z_base = (
                rbm.num_hidden * math.log(2.0)
                + self.scale.log().sum()
                + rbm.num_visible * _HALF_LOG_2PI
            )

    @property
    def base_mean(self) -> torch.Tensor:
        """:math:`b_A`."""
        return self.base

    def _quadratic(self, v: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((v - mean) / self.scale).square().sum(-1)

    def base_term(self, v):
        return self._quadratic(v, self.base)

    def model_term(self, v):
        return self._quadratic(v, self.rbm.visible_bias)

    def visible_params(self, h):
        return self.rbm.visible_mean(h)

    def sample_visible(self, mean):
        return torch.addcmul(mean, self.scale, _rng.randn_like(mean))
