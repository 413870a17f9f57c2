r"""Restricted Boltzmann machines as distributions over their visible units.

A binary RBM has energy :math:`E(v, h) = -v^\top W h - b^\top v - c^\top h` over
:math:`v \in \{0,1\}^V`, :math:`h \in \{0,1\}^H`, and marginal

.. math::

    \tilde p(v) = \sum_h e^{-E(v, h)}
        = e^{b^\top v} \prod_{j=1}^H \big(1 + e^{c_j + (v^\top W)_j}\big),
    \qquad F(v) = -b^\top v - \sum_j \mathrm{softplus}(c_j + (v^\top W)_j).

Its conditionals factorize, :math:`p(h_j = 1 \mid v) = \sigma(c_j + (v^\top W)_j)` and
:math:`p(v_i = 1 \mid h) = \sigma(b_i + (W h)_i)`, which gives block Gibbs sampling [1];
summing :math:`v` out instead,
:math:`\tilde p(h) = e^{c^\top h} \prod_i (1 + e^{b_i + (W h)_i})`, so :math:`Z` is a sum over
the :math:`2^{\min(V, H)}` states of the smaller layer.

The parameters describe one RBM; ``batch_shape`` only broadcasts it (as ``pyro.plate``
does through :meth:`expand`).

**References**

[1] Training Products of Experts by Minimizing Contrastive Divergence. Geoffrey E. Hinton.
    2002.

[2] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyrogen.distributions.energy import (
    EnergyBasedDistribution,
    bernoulli_sample,
    binary_states,
)

#: rows of enumerated states processed at once (memory bound of exact log Z)
_ENUM_CHUNK = 1 << 14


def _check_weight(weight, visible_bias, hidden_bias):
    for name, t, dim in (
        ("weight", weight, 2),
        ("visible_bias", visible_bias, 1),
        ("hidden_bias", hidden_bias, 1),
    ):
        if not isinstance(t, torch.Tensor) or t.dim() != dim:
            raise ValueError(
                f"{name} must be a {dim}-D tensor, got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
    V, H = weight.shape
    if visible_bias.shape != (V,) or hidden_bias.shape != (H,):
        raise ValueError(
            f"weight has shape (num_visible, num_hidden) = {(V, H)}, so visible_bias must have "
            f"shape ({V},) and hidden_bias ({H},); got {tuple(visible_bias.shape)} and "
            f"{tuple(hidden_bias.shape)}"
        )


class _FreeEnergyGap(torch.autograd.Function):
    r""":math:`\sum_i F(x_i) - r \sum_j F(v_j)` for a binary RBM, and the negatives' hidden
    pre-activations, with a hand-written backward (the contrastive-divergence surrogate).

    With :math:`F(v) = -b^\top v - \sum_k \operatorname{softplus}(c_k + v^\top W_{:k})`,

    .. math::

        \partial_W = -X^\top \sigma(P_X) + r\, V^\top \sigma(P_V), \quad
        \partial_b = -\textstyle\sum_i x_i + r \sum_j v_j, \quad
        \partial_c = -\textstyle\sum_i \sigma(P_X)_i + r \sum_j \sigma(P_V)_j,

    :math:`P = c + vW`. The weight gradient is one ``addmm`` on top of one ``mm``, with no
    concatenated batch and no autograd graph: the same matrix products as a bare PCD loop.
    """

    @staticmethod
    def forward(ctx, x, negatives, weight, visible_bias, hidden_bias, ratio: float):
        pre_x = torch.addmm(hidden_bias, x, weight)
        pre_v = torch.addmm(hidden_bias, negatives, weight)
        sum_x, sum_v = x.sum(0), negatives.sum(0)
        value = (ratio * sum_v - sum_x) @ visible_bias
        value = value - F.softplus(pre_x).sum() + ratio * F.softplus(pre_v).sum()
        ctx.save_for_backward(x, negatives, pre_x, pre_v, sum_x, sum_v)
        ctx.ratio = ratio
        ctx.mark_non_differentiable(pre_v)
        return value, pre_v

    @staticmethod
    def backward(ctx, grad, _grad_pre):
        x, negatives, pre_x, pre_v, sum_x, sum_v = ctx.saved_tensors
        r = ctx.ratio
        need_w, need_b, need_c = ctx.needs_input_grad[2:5]
        s_x, s_v = torch.sigmoid(pre_x), torch.sigmoid(pre_v)
        g_w = g_b = g_c = None
        if need_w:
            g_w = torch.addmm(torch.mm(x.T, s_x), negatives.T, s_v, beta=-1.0, alpha=r)
            g_w = g_w.mul_(grad)
        if need_b:
            g_b = (r * sum_v - sum_x) * grad
        if need_c:
            g_c = (r * s_v.sum(0) - s_x.sum(0)) * grad
        return None, None, g_w, g_b, g_c, None


class BernoulliRBM(EnergyBasedDistribution):
    r"""Binary-binary RBM over :math:`v \in \{0,1\}^V` (see module docs).

    :param torch.Tensor weight: :math:`W`, shape ``(num_visible, num_hidden)``.
    :param torch.Tensor visible_bias: :math:`b`, shape ``(num_visible,)``.
    :param torch.Tensor hidden_bias: :math:`c`, shape ``(num_hidden,)``.
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).
    """

    arg_constraints = {
        "weight": constraints.independent(constraints.real, 2),
        "visible_bias": constraints.independent(constraints.real, 1),
        "hidden_bias": constraints.independent(constraints.real, 1),
    }
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(
        self,
        weight: torch.Tensor,
        visible_bias: torch.Tensor,
        hidden_bias: torch.Tensor,
        *,
        gibbs_steps: int = 1000,
        validate_args: bool | None = None,
    ) -> None:
        _check_weight(weight, visible_bias, hidden_bias)
        self.weight, self.visible_bias, self.hidden_bias = weight, visible_bias, hidden_bias
        self.default_gibbs_steps = int(gibbs_steps)
        super().__init__(torch.Size(), weight.shape[:1], validate_args=validate_args)

    @property
    def num_visible(self) -> int:
        return self.weight.shape[0]

    @property
    def num_hidden(self) -> int:
        return self.weight.shape[1]

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_log_partition_cache"})
        super(EnergyBasedDistribution, new).__init__(
            torch.Size(batch_shape), self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def _parameters(self):
        return (self.weight, self.visible_bias, self.hidden_bias)

    # ---- conditionals ---------------------------------------------------------------

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Log-odds of :math:`p(h = 1 \\mid v)`: :math:`c + v^\\top W`."""
        return torch.addmm(self.hidden_bias, v.reshape(-1, v.shape[-1]), self.weight).reshape(
            v.shape[:-1] + (self.num_hidden,)
        )

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Log-odds of :math:`p(v = 1 \\mid h)`: :math:`b + W h`."""
        return torch.addmm(self.visible_bias, h.reshape(-1, h.shape[-1]), self.weight.T).reshape(
            h.shape[:-1] + (self.num_visible,)
        )

    def hidden_given_visible(self, v: torch.Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(h \\mid v)`, a factorized Bernoulli."""
        return torch.distributions.Bernoulli(logits=self.hidden_logits(v), validate_args=False)

    def visible_given_hidden(self, h: torch.Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(v \\mid h)`, a factorized Bernoulli."""
        return torch.distributions.Bernoulli(logits=self.visible_logits(h), validate_args=False)

    # ---- densities --------------------------------------------------------------------

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`-F(v) = b^\\top v + \\sum_j \\mathrm{softplus}(c_j + (v^\\top W)_j)`."""
        value = value.to(self.weight.dtype)
        return value @ self.visible_bias + F.softplus(self.hidden_logits(value)).sum(-1)

    def free_energy_and_hidden_logits(self, value: torch.Tensor):
        """:math:`F(v)` and the hidden log-odds :math:`c + v^\top W` it was computed from
        (one matrix product for both; used by contrastive divergence)."""
        value = value.to(self.weight.dtype)
        pre = self.hidden_logits(value)
        return -(value @ self.visible_bias) - F.softplus(pre).sum(-1), pre

    def free_energy_gap(self, x: torch.Tensor, negatives: torch.Tensor):
        r""":math:`\sum_i F(x_i) - \frac{n}{m} \sum_j F(v_j)` for ``(n, V)`` data and ``(m, V)``
        model samples (the contrastive-divergence surrogate, whose gradient is minus the CD
        estimate of the log-likelihood gradient of the batch), and the samples' hidden
        log-odds :math:`c + v^\top W` (reused by the next Gibbs sweep of a persistent chain).
        Differentiable in the parameters, with a hand-written backward."""
        dtype = self.weight.dtype
        x, negatives = x.to(dtype), negatives.to(dtype)
        ratio = x.shape[0] / negatives.shape[0]
        return _FreeEnergyGap.apply(
            x, negatives, self.weight, self.visible_bias, self.hidden_bias, ratio
        )

    def unnormalized_log_prob_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\tilde p(h) = c^\\top h + \\sum_i \\mathrm{softplus}(b_i + (W h)_i)`."""
        h = h.to(self.weight.dtype)
        return h @ self.hidden_bias + F.softplus(self.visible_logits(h)).sum(-1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`E(v, h)`."""
        v, h = v.to(self.weight.dtype), h.to(self.weight.dtype)
        return -((v @ self.weight) * h).sum(-1) - v @ self.visible_bias - h @ self.hidden_bias

    def can_enumerate(self) -> bool:
        return min(self.num_visible, self.num_hidden) <= self.max_enumeration

    def _exact_log_partition(self) -> torch.Tensor:
        hidden_side = self.num_hidden <= self.num_visible
        n = self.num_hidden if hidden_side else self.num_visible
        fn = self.unnormalized_log_prob_hidden if hidden_side else self.unnormalized_log_prob
        parts = [
            torch.logsumexp(fn(states), 0)
            for states in binary_states(n, self.weight.dtype, self.weight.device, _ENUM_CHUNK)
        ]
        return torch.logsumexp(torch.stack(parts), 0)

    def annealing_path(self, data: torch.Tensor | None = None):
        """Salakhutdinov & Murray's AIS path from a base-rate model (see
        :class:`pyrogen.infer.ais.RBMAnnealingPath`)."""
        from pyrogen.infer.ais import RBMAnnealingPath

        return RBMAnnealingPath(self, data)

    # ---- Gibbs sampling --------------------------------------------------------------

    def init_chains(self, num_chains: int):
        """Chains started from independent fair coins."""
        half = self.weight.new_full((num_chains, self.num_visible), 0.5)
        return (bernoulli_sample(half),)

    def gibbs_step(self, state):
        """:math:`h \\sim p(h \\mid v)`, then :math:`v \\sim p(v \\mid h)`; state ``(v, h)``."""
        return self.gibbs_step_from_logits(self.hidden_logits(state[0]))

    def gibbs_step_from_logits(self, hidden_logits: torch.Tensor):
        """A Gibbs sweep that starts from already computed hidden log-odds of the current
        visible state; returns ``(v, h)``."""
        h = bernoulli_sample(torch.sigmoid(hidden_logits))
        v = bernoulli_sample(torch.sigmoid(self.visible_logits(h)))
        return (v, h)
