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

import functools
import math

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyrogen.distributions.energy import (
    BaseRateAnnealingPath,
    RBMBase,
    affine,
    base_rates,
    bernoulli_sample,
)


@functools.lru_cache(maxsize=16)
def _row_weights(num_data: int, num_negatives: int, dtype, device) -> torch.Tensor:
    r""":math:`w = (-1, \dots, -1, r, \dots, r)`, :math:`r = n / m`: the gap is
    :math:`-\sum_k w_k F(u_k)` over the stacked rows :math:`u = (x_1..x_n, v_1..v_m)`."""
    w = torch.full((num_data + num_negatives,), -1.0, dtype=dtype, device=device)
    w[num_data:] = num_data / num_negatives
    return w


def _gap_forward(stacked, num_data: int, weight, visible_bias, hidden_bias):
    """Value of the free-energy gap of the stacked rows (see :class:`_FreeEnergyGap`) and
    what its gradient needs: ``(value, pre, row_weights, grad_b)``."""
    w = _row_weights(num_data, stacked.shape[0] - num_data, stacked.dtype, stacked.device)
    pre = torch.addmm(hidden_bias, stacked, weight)  # one product for data and samples
    grad_b = torch.mv(stacked.T, w)  # r sum_j v_j - sum_i x_i
    value = torch.dot(grad_b, visible_bias).add_(torch.dot(F.softplus(pre).sum(-1), w))
    return value, pre, w, grad_b


def _gap_grads(stacked, pre, w, grad_b, grad, need, into=None):
    """Gradients of ``grad`` times the gap in ``(weight, visible_bias, hidden_bias)`` (None
    where ``need`` is False). With ``into`` (three tensors or None), they are added to those
    tensors in place (how ``.grad`` accumulates) and returned."""
    into = into or (None, None, None)
    wg = w if isinstance(grad, float) and grad == 1.0 else w * grad
    s = torch.sigmoid(pre).mul_(wg[:, None])  # w_k g sigma(c + u_k W), one pass
    g_w = g_b = g_c = None
    if need[0]:  # sum_k w_k g u_k sigma(...)^T: one product, no scaling pass over the result
        g_w = torch.mm(stacked.T, s) if into[0] is None else into[0].addmm_(stacked.T, s)
    if need[1]:
        g_b = grad_b * grad
        g_b = g_b if into[1] is None else into[1].add_(g_b)
    if need[2]:
        g_c = s.sum(0) if into[2] is None else into[2].add_(s.sum(0))
    return g_w, g_b, g_c


class _FreeEnergyGap(torch.autograd.Function):
    r""":math:`\sum_i F(x_i) - r \sum_j F(v_j)` for a binary RBM, :math:`r = n / m`, from
    the stacked rows :math:`U = (x_1..x_n, v_1..v_m)`, and the samples' hidden
    pre-activations, with a hand-written backward (the contrastive-divergence surrogate).

    With :math:`F(u) = -b^\top u - \sum_k \operatorname{softplus}(c_k + u^\top W_{:k})`
    and row weights :math:`w = (-1, \dots, -1, r, \dots, r)`,

    .. math::

        \mathrm{gap} = b^\top U^\top w + w^\top \operatorname{softplus}(P)\,\mathbf 1, \quad
        \partial_W = U^\top \operatorname{diag}(w)\, \sigma(P), \quad
        \partial_b = U^\top w, \quad
        \partial_c = \sigma(P)^\top w,

    :math:`P = \mathbf 1 c^\top + U W`. Data and samples share each product: one ``addmm``
    forward, one ``mm`` backward, no autograd graph.
    """

    @staticmethod
    def forward(ctx, stacked, num_data: int, weight, visible_bias, hidden_bias):
        value, pre, w, grad_b = _gap_forward(stacked, num_data, weight, visible_bias, hidden_bias)
        ctx.save_for_backward(stacked, pre, w, grad_b)
        pre_v = pre[num_data:]
        ctx.mark_non_differentiable(pre_v)
        return value, pre_v

    @staticmethod
    def backward(ctx, grad, _grad_pre):
        grads = _gap_grads(*ctx.saved_tensors, grad, ctx.needs_input_grad[2:5])
        return (None, None, *grads)


def _accumulates_like_backward(t: torch.Tensor) -> bool:
    """Whether adding to ``t.grad`` directly is exactly what ``backward()`` would do: a plain
    leaf that requires grad, with no hooks."""
    return (
        type(t) in (torch.Tensor, torch.nn.Parameter)
        and t.is_leaf
        and t.requires_grad
        and not t._backward_hooks
        and not getattr(t, "_post_accumulate_grad_hooks", None)
    )


class BernoulliRBM(RBMBase):
    r"""Binary-binary RBM over :math:`v \in \{0,1\}^V` (see module docs).

    :param torch.Tensor weight: :math:`W`, shape ``(num_visible, num_hidden)``.
    :param torch.Tensor visible_bias: :math:`b`, shape ``(num_visible,)``.
    :param torch.Tensor hidden_bias: :math:`c`, shape ``(num_hidden,)``.
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).
    """

    support = constraints.independent(constraints.boolean, 1)

    # ---- conditionals ---------------------------------------------------------------

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Log-odds of :math:`p(h = 1 \\mid v)`: :math:`c + v^\\top W`."""
        return affine(v, self.weight, self.hidden_bias)

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Log-odds of :math:`p(v = 1 \\mid h)`: :math:`b + W h`."""
        return affine(h, self.weight.T, self.visible_bias)

    def visible_given_hidden(self, h: torch.Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(v \\mid h)`, a factorized Bernoulli."""
        return torch.distributions.Bernoulli(logits=self.visible_logits(h), validate_args=False)

    # ---- densities --------------------------------------------------------------------

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`-F(v) = b^\\top v + \\sum_j \\mathrm{softplus}(c_j + (v^\\top W)_j)`."""
        value = value.to(self.weight.dtype)
        return value @ self.visible_bias + F.softplus(self.hidden_logits(value)).sum(-1)

    def free_energy_and_hidden_logits(self, value: torch.Tensor):
        r""":math:`F(v)` and the hidden log-odds :math:`c + v^\top W` it was computed from
        (one matrix product for both)."""
        value = value.to(self.weight.dtype)
        pre = self.hidden_logits(value)
        return -(value @ self.visible_bias) - F.softplus(pre).sum(-1), pre

    def _stacked(self, x, negatives, num_data):
        if (negatives is None) == (num_data is None):
            raise ValueError("give either negatives or num_data (x stacks data and samples)")
        dtype = self.weight.dtype
        if negatives is not None:
            num_data = x.shape[0]
            x = torch.cat([x.to(dtype), negatives.to(dtype)])
        if not 0 < num_data < x.shape[0]:
            raise ValueError(
                f"num_data must leave at least one data row and one sample, got {num_data} "
                f"of {x.shape[0]} rows"
            )
        return x.to(dtype), int(num_data)

    def free_energy_gap(self, x: torch.Tensor, negatives=None, *, num_data=None):
        r""":math:`\sum_i F(x_i) - \frac{n}{m} \sum_j F(v_j)` for ``(n, V)`` data and ``(m, V)``
        model samples (the contrastive-divergence surrogate, whose gradient is minus the CD
        estimate of the log-likelihood gradient of the batch), and the samples' hidden
        log-odds :math:`c + v^\top W` (reused by the next Gibbs sweep of a persistent chain).
        Differentiable in the parameters, with a hand-written backward.

        Either ``negatives`` is given, or ``x`` already stacks the ``num_data`` data rows
        followed by the samples (what :meth:`contrastive_divergence` builds, to save a
        copy)."""
        stacked, n = self._stacked(x, negatives, num_data)
        return _FreeEnergyGap.apply(stacked, n, self.weight, self.visible_bias, self.hidden_bias)

    def free_energy_gap_accumulate(self, x, negatives=None, *, num_data=None, scale=1.0):
        """:meth:`free_energy_gap` with its gradient, times ``scale``, added straight to the
        parameters' ``.grad`` (what ``backward()`` on ``scale * gap`` does) without building an
        autograd graph; returns the detached ``(scale * gap, samples' hidden log-odds)``.

        Only for parameters that are plain leaf tensors without hooks (see
        :meth:`can_accumulate`); parameters that do not require grad are left alone."""
        if not self.can_accumulate():
            raise RuntimeError(
                "free_energy_gap_accumulate needs grad mode on and leaf parameters without "
                "hooks; use free_energy_gap(...)[0].backward() instead"
            )
        stacked, n = self._stacked(x, negatives, num_data)
        with torch.no_grad():
            return self._accumulate_gap(stacked, n, scale)

    def _accumulate_gap(self, stacked, n: int, scale):
        # the body of free_energy_gap_accumulate, for callers that checked can_accumulate()
        # and stacked the rows themselves (contrastive_divergence, under no_grad)
        params = (self.weight, self.visible_bias, self.hidden_bias)
        value, *saved = _gap_forward(stacked, n, *params)
        need = tuple(p.requires_grad for p in params)
        grads = _gap_grads(stacked, *saved, scale, need, tuple(p.grad for p in params))
        for p, g in zip(params, grads):
            if g is not None and p.grad is None:
                p.grad = g
        return self._scaled(value, scale), saved[0][n:]

    def can_accumulate(self) -> bool:
        """Whether :meth:`free_energy_gap_accumulate` applies: grad mode on, no parameter that
        is a non-leaf or has hooks, at least one that requires grad."""
        if not torch.is_grad_enabled():
            return False
        wanted = False
        for p in (self.weight, self.visible_bias, self.hidden_bias):
            if p.requires_grad:
                if not _accumulates_like_backward(p):
                    return False
                wanted = True
        return wanted

    def contrastive_divergence(
        self, x, chains, num_steps, *, accumulate=False, scale=1.0, mean_field_iters=10
    ):
        r"""The surrogate of
        :meth:`~pyrogen.distributions.energy.EnergyBasedDistribution.contrastive_divergence`,
        :math:`\sum_i F(x_i) - \frac{n}{m} \sum_j F(\bar v_j)`, the fast way: the data rows
        and the chains' last sweep share one ``(n + m, V)`` buffer, so the surrogate and its
        gradient are one product forward and one backward (:meth:`free_energy_gap`); with
        ``accumulate`` and plain leaf parameters (:meth:`can_accumulate`) the gradient is
        written straight into ``.grad`` (:meth:`free_energy_gap_accumulate`, no autograd
        graph). The chains come back as ``(v, h, pre)`` with ``pre`` the hidden log-odds of
        ``v`` computed for the surrogate, which starts the next update's first sweep (as in
        Tieleman 2008 and scikit-learn), so that a PCD-1 update costs three products."""
        n, m = x.shape[0], chains[0].shape[0]
        done = accumulate and self.can_accumulate()
        state = chains
        with torch.no_grad():
            stacked = self.weight.new_empty((n + m, x.shape[-1]))
            stacked[:n] = x
            for i in range(num_steps):
                reuse = i == 0 and len(state) == 3  # the pre-activation from last update
                logits = state[2] if reuse else self.hidden_logits(state[0])
                out = stacked[n:] if i == num_steps - 1 else None
                state = self.gibbs_step_from_logits(logits, out=out)
            if done:  # gradients straight into .grad, no graph
                surrogate, pre = self._accumulate_gap(stacked, n, scale)
        if not done:
            surrogate, pre = self.free_energy_gap(stacked, num_data=n)
            surrogate = self._scaled(surrogate, scale)
        return surrogate, (state[0], state[1], pre.detach()), done

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
        if self.num_hidden <= self.num_visible:  # sum v out, enumerate h
            return self._sum_over_states(
                self.num_hidden, self.unnormalized_log_prob_hidden, self.num_visible
            )
        return self._sum_over_states(self.num_visible, self.unnormalized_log_prob, self.num_hidden)

    def annealing_path(self, data: torch.Tensor | None = None) -> RBMAnnealingPath:
        """Salakhutdinov & Murray's AIS path from a base-rate model fitted to ``data`` (or
        uniform); see :class:`RBMAnnealingPath`."""
        return RBMAnnealingPath(self, data)

    # ---- Gibbs sampling --------------------------------------------------------------

    def gibbs_step(self, state):
        """:math:`h \\sim p(h \\mid v)`, then :math:`v \\sim p(v \\mid h)`; state ``(v, h)``."""
        return self.gibbs_step_from_logits(self.hidden_logits(state[0]))

    def gibbs_step_from_logits(self, hidden_logits: torch.Tensor, out=None):
        """A Gibbs sweep that starts from already computed hidden log-odds of the current
        visible state; returns ``(v, h)``. ``out``, if given, receives ``v``."""
        h = bernoulli_sample(torch.sigmoid(hidden_logits))
        v = bernoulli_sample(torch.sigmoid(self.visible_logits(h)), out=out)
        return (v, h)


class RBMAnnealingPath(BaseRateAnnealingPath):
    r"""Salakhutdinov & Murray's path for a binary RBM: base rates :math:`b_A` (logits of
    smoothed data marginals, or zeros), and

    .. math:: \log f_\beta(v) = (1-\beta)\, b_A^\top v + \beta\, b^\top v
        + \sum_j \mathrm{softplus}\big(\beta\,(c_j + (v^\top W)_j)\big),

    so that at :math:`\beta = 0` the hidden units are fair coins independent of :math:`v` and
    :math:`Z_A = 2^H \prod_i (1 + e^{b_{A,i}})`; the visible units at temperature
    :math:`\beta` are Bernoulli with log-odds :math:`(1 - \beta)\, b_A + \beta\,(b + W h)`.

    :param BernoulliRBM rbm: the target model.
    :param torch.Tensor data: optional binary data ``(..., num_visible)`` for :math:`b_A`.
    :param float smoothing: pseudo-count added to the data marginals.
    """

    def __init__(self, rbm: BernoulliRBM, data: torch.Tensor | None = None, smoothing=0.05):
        self.model = self.rbm = rbm
        self.base = base_rates(data, rbm.visible_bias.detach(), smoothing)
        self.log_z_base = (F.softplus(self.base).sum() + rbm.num_hidden * math.log(2.0)).detach()

    @property
    def base_bias(self) -> torch.Tensor:
        """:math:`b_A`."""
        return self.base

    def sample_visible(self, logits):
        return bernoulli_sample(torch.sigmoid(logits))
