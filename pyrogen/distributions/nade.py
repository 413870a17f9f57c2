r"""Fully visible autoregressive distributions: FVSBN, NADE and RNADE.

Each is a distribution over a vector :math:`x \in \mathcal X^D` factorised along an
ordering :math:`o` (a permutation of the :math:`D` variables),

.. math:: p(x) = \prod_{k=1}^D p\big(x_{o_k} \mid x_{o_1}, \dots, x_{o_{k-1}}\big),

so ``log_prob`` is exact and ``sample`` is ancestral. The parameters live in a network from
:mod:`pyrogen.nn.nade` (an ``nn.Module``, registered with Pyro by whoever owns it, e.g.
:class:`~pyrogen.models.autoregressive.AutoregressiveModel`), so that
``pyro.sample("x", NADE(net), obs=x)`` inside ``pyro.plate("data", n)`` trains with any Pyro
ELBO; without latent variables ``Trace_ELBO`` is the exact negative log-likelihood.

* :class:`FVSBN`: logistic autoregression [1],
  :math:`p(x_{o_k} = 1 \mid x_{o_{<k}}) = \sigma(b_{o_k} + \sum_{i<k} W_{o_k o_i} x_{o_i})`.
* :class:`NADE` [2]: the conditionals share one hidden layer,
  :math:`h_k = \phi(c + \sum_{i<k} W_{:, o_i} x_{o_i})`,
  :math:`p(x_{o_k} = 1 \mid x_{o_{<k}}) = \sigma(b_{o_k} + V_{o_k, :} h_k)`; the
  pre-activations obey :math:`a_{k+1} = a_k + W_{:, o_k} x_{o_k}`, which makes ``log_prob``
  and ``sample`` :math:`O(DH)` per example.
* :class:`RNADE` [3]: real-valued :math:`x`, each conditional a mixture of :math:`K`
  Gaussians whose parameters are read from NADE's hidden layer.

**Orderings.** ``ordering=None`` is the identity; a ``(D,)`` permutation fixes another one;
a ``batch_shape + (D,)`` tensor gives each example its own. ``ordering="random"`` draws a
fresh uniformly random ordering for every example at every call of ``log_prob`` or
``sample`` (torch's global RNG). That is order-agnostic training [4]: the objective

.. math::

    \mathcal J_{\mathrm{OA}}(\theta) = \mathbb E_{x}\, \mathbb E_{o \sim \mathcal U(S_D)}
        \big[-\log p(x \mid \theta, o)\big]

trains one set of parameters to be a good model under every ordering; with
``ordering="random"``, ``-log_prob(x)`` is :math:`-\log p(x \mid \theta, o)` for one random
:math:`o` per example: an unbiased estimate of the inner expectation that evaluates all
:math:`D` conditionals of its ordering (one-hidden-layer NADE computes them in
:math:`O(DH)`, so it needs no single-split estimator as the deep variant does [4]). Each value
is an exact log-likelihood, but of a different model (ordering) per call, so
``exp(log_prob)`` is not one normalised density. At test time use a fixed ordering, or the
ensemble :math:`\frac1M \sum_m p(x \mid o^{(m)})` of :meth:`~_FullyVisible.ensemble_log_prob`,
a normalised mixture of :math:`M` fixed orderings [4]. Sampling with ``"random"`` draws the
ordering uniformly and then :math:`x \mid o`: a sample of the uniform mixture over all
orderings.

**Class context.** Networks built with ``num_classes=K`` take ``context``: integer labels of
shape ``batch_shape`` (or one-hot / probability vectors, ``batch_shape + (K,)``); the label's
embedding is added to the hidden pre-activation and/or the output bias.

**References**

[1] Connectionist Learning of Belief Networks. Radford M. Neal. 1992.

[2] The Neural Autoregressive Distribution Estimator. Hugo Larochelle, Iain Murray. 2011.

[3] RNADE: The Real-valued Neural Autoregressive Density-Estimator. Benigno Uria, Iain
    Murray, Hugo Larochelle. 2013.

[4] A Deep and Tractable Density Estimator. Benigno Uria, Iain Murray, Hugo Larochelle. 2014.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyrogen._checks import check_binary, check_finite
from pyrogen.distributions._values import check_event
from pyrogen.distributions.bernoulli import bernoulli_log_prob
from pyrogen.nn.nade import FVSBNNet, NADENet, RNADENet, order_values, unorder_values

__all__ = ["FVSBN", "NADE", "RNADE"]


def _shape(t) -> tuple:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


class _FullyVisible(TorchDistribution):
    """Shared machinery: network, context and ordering checks, batch broadcasting."""

    arg_constraints: dict = {}
    has_rsample = False
    _net_type: type = type(None)

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        context: torch.Tensor | None = None,
        ordering: torch.Tensor | str | None = None,
        validate_args: bool | None = None,
    ) -> None:
        name = type(self).__name__
        if not isinstance(net, self._net_type):
            raise TypeError(
                f"net: expected a {self._net_type.__name__} for {name}, got {type(net).__name__}"
            )
        self.net = net
        d = net.num_features
        context, context_batch = self._parse_context(context)
        ordering, ordering_batch = self._parse_ordering(ordering, d)
        self.context, self.ordering = context, ordering
        try:
            batch_shape = torch.broadcast_shapes(context_batch, ordering_batch)
        except RuntimeError:
            raise ValueError(
                f"context (batch shape {tuple(context_batch)}) and ordering (batch shape "
                f"{tuple(ordering_batch)}) do not broadcast"
            ) from None
        super().__init__(batch_shape, torch.Size([d]), validate_args=validate_args)
        if self._validate_args:
            self._validate_context_and_ordering()

    # ---- arguments ----------------------------------------------------------------------

    def _parse_context(self, context):
        k = self.net.num_classes
        name = type(self).__name__
        if context is None:
            if k:
                raise ValueError(
                    f"context: this {name} is class-conditional ({k} classes); pass the "
                    "labels as context"
                )
            return None, torch.Size()
        if not k:
            raise ValueError(
                f"context: this {name} takes no class labels (build its network with "
                f"num_classes=...), got a value of shape {_shape(context)}"
            )
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
        if context.is_floating_point():
            if context.dim() < 1 or context.shape[-1] != k:
                raise ValueError(
                    f"context: one-hot / probability labels need shape (..., {k}), found "
                    f"{tuple(context.shape)}"
                )
            return context, context.shape[:-1]
        if context.dtype in (torch.bool, torch.complex64, torch.complex128):
            raise TypeError(f"context: expected integer labels, got dtype {context.dtype}")
        return context.long(), context.shape

    @staticmethod
    def _parse_ordering(ordering, d: int):
        if ordering is None:
            return None, torch.Size()
        if isinstance(ordering, str):
            if ordering != "random":
                raise ValueError(
                    f"ordering must be None, 'random' or a permutation tensor, got {ordering!r}"
                )
            return ordering, torch.Size()
        if not isinstance(ordering, torch.Tensor) or ordering.is_floating_point():
            raise TypeError(
                f"ordering: expected an integer tensor (a permutation of 0..{d - 1}), got "
                f"{type(ordering).__name__}"
                + (f" of dtype {ordering.dtype}" if isinstance(ordering, torch.Tensor) else "")
            )
        if ordering.dim() < 1 or ordering.shape[-1] != d:
            raise ValueError(f"ordering: expected shape (..., {d}), found {tuple(ordering.shape)}")
        return ordering.long(), ordering.shape[:-1]

    def _validate_context_and_ordering(self) -> None:
        d, k = self.net.num_features, self.net.num_classes
        if isinstance(self.ordering, torch.Tensor):
            reference = torch.arange(d, device=self.ordering.device)
            if not bool((self.ordering.sort(-1).values == reference).all()):
                raise ValueError(f"ordering: every row must be a permutation of 0..{d - 1}")
        if self.context is not None:
            if self.context.is_floating_point():
                check_finite(self.context, "context")
            elif self.context.numel() and not (
                0 <= int(self.context.min()) and int(self.context.max()) < k
            ):
                raise ValueError(
                    f"context: labels must lie in 0..{k - 1}, found values in "
                    f"[{int(self.context.min())}, {int(self.context.max())}]"
                )

    @property
    def _like(self) -> torch.Tensor:
        return next(self.net.parameters())

    def _context_event_shape(self) -> torch.Size:
        c = self.context
        return c.shape[-1:] if c is not None and c.is_floating_point() else torch.Size()

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new.net = self.net
        new.context = (
            None
            if self.context is None
            else self.context.expand(batch_shape + self._context_event_shape())
        )
        ordering = self.ordering
        if isinstance(ordering, torch.Tensor) and ordering.dim() > 1:
            ordering = ordering.expand(batch_shape + self.event_shape)
        new.ordering = ordering
        super(_FullyVisible, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ---- values -------------------------------------------------------------------------

    def _check_support(self, value: torch.Tensor) -> None:
        check_binary(value, "value")

    def _validate_sample(self, value: torch.Tensor) -> None:
        check_event(value, self.net.num_features, "value", f" for this {type(self).__name__}")
        if self._validate_args:
            self._check_support(value)

    def _flat_arguments(self, batch: torch.Size, like: torch.Tensor):
        """Context ``(n, ...)`` and ordering (``None``, ``(D,)`` or ``(n, D)``) for the
        ``n = batch.numel()`` rows of a flattened batch; draws random orderings."""
        n, d = batch.numel(), self.net.num_features
        context = self.context
        if context is not None:
            event = self._context_event_shape()
            context = context.expand(batch + event).reshape((n,) + event)
        ordering = self.ordering
        if isinstance(ordering, str):  # "random": one uniform permutation per row
            ordering = torch.argsort(like.new_empty(n, d).uniform_(), dim=-1)
        elif ordering is not None and ordering.dim() > 1:
            ordering = ordering.expand(batch + (d,)).reshape(n, d)
        return context, ordering

    def _flatten(self, value: torch.Tensor):
        """``(x, context, ordering, batch)``: ``value`` as ``(n, D)`` rows, checked."""
        self._validate_sample(value)
        try:
            batch = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"value: batch shape {tuple(value.shape[:-1])} does not broadcast with the "
                f"distribution's batch_shape {tuple(self.batch_shape)}"
            ) from None
        like = self._like
        x = value.to(like.dtype).expand(batch + self.event_shape).reshape(-1, self.event_shape[0])
        context, ordering = self._flat_arguments(batch, x)
        return x, context, ordering, batch

    def _with_ordering(self, ordering) -> _FullyVisible:
        new = type(self)(self.net, context=self.context, ordering=ordering, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def ensemble_log_prob(self, value: torch.Tensor, orderings: torch.Tensor) -> torch.Tensor:
        r"""Log-density of the equal-weight mixture over ``M`` fixed orderings ([4], sec. 4),

        .. math:: \log \frac1M \sum_{m=1}^M p\big(x \mid o^{(m)}\big),

        a normalised density for any fixed set of orderings (``orderings``: ``(M, D)``).
        """
        if not isinstance(orderings, torch.Tensor) or orderings.dim() != 2:
            raise ValueError(
                f"orderings: expected a (M, {self.net.num_features}) tensor, found "
                f"{_shape(orderings)}"
            )
        parts = [self._with_ordering(o).log_prob(value) for o in orderings]
        return torch.logsumexp(torch.stack(parts), 0) - math.log(len(parts))

    def _positions(self, ordering, n: int, like: torch.Tensor):
        """The variable sampled at each step: a list of ints (shared ordering) or a list of
        ``(n,)`` index tensors (per-row orderings), plus the ``(D,)`` / ``(n, D)`` ordering."""
        d = self.net.num_features
        if ordering is None:
            ordering = torch.arange(d, device=like.device)
        if ordering.dim() == 1:
            return ordering.tolist(), ordering
        return list(ordering.unbind(1)), ordering

    def sample(self, sample_shape=()) -> torch.Tensor:
        """Ancestral samples, ``sample_shape + batch_shape + event_shape``."""
        return self._sample(sample_shape, naive=False)

    def _sample(self, sample_shape, naive: bool) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        batch = shape[:-1]
        like = self._like
        with torch.no_grad():
            context, ordering = self._flat_arguments(batch, like)
            x = self._sample_rows(batch.numel(), context, ordering, like, naive)
        return x.reshape(shape)

    def _sample_rows(self, n, context, ordering, like, naive) -> torch.Tensor:
        raise NotImplementedError


class _BinaryAutoregressive(_FullyVisible):
    support = constraints.independent(constraints.boolean, 1)

    def conditional_logits(self, value: torch.Tensor) -> torch.Tensor:
        """Log-odds of :math:`p(x_i = 1 \\mid \\text{the variables before } x_i)` for every
        :math:`i`, ``batch + (D,)``, variable-indexed (differentiable in ``value``)."""
        x, context, ordering, batch = self._flatten(value)
        return self.net(x, context, ordering).reshape(batch + self.event_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)`, shape ``broadcast(value.shape[:-1], batch_shape)``."""
        x, context, ordering, batch = self._flatten(value)
        return bernoulli_log_prob(self.net(x, context, ordering), x).reshape(batch)


class FVSBN(_BinaryAutoregressive):
    r"""Fully visible sigmoid belief network (logistic autoregression) [1].

    .. math::

        \log p(x) = \sum_{k=1}^D \Big[x_{o_k} \ell_k - \mathrm{softplus}(\ell_k)\Big],
        \qquad \ell_k = b_{o_k} + \sum_{i<k} W_{o_k o_i} x_{o_i}

    All :math:`D` log-odds are one product with the masked weight matrix; ``sample`` keeps
    the running log-odds of the variables not yet drawn (:math:`O(D)` per variable).

    :param FVSBNNet net: the parameters.
    :param context: must be ``None`` (kept for a uniform signature).
    :param ordering: ``None`` (identity), a ``(D,)`` permutation, per-example
        permutations ``batch_shape + (D,)``, or ``"random"`` (see module docs).
    """

    _net_type = FVSBNNet

    def _sample_rows(self, n, context, ordering, like, naive):
        net = self.net
        steps, ordering = self._positions(ordering, n, like)
        u = like.new_empty(n, net.num_features).uniform_()
        logits = net.bias.expand(n, -1).clone()
        x = torch.zeros_like(logits)
        columns = net.weight.t()  # row j: the weights of x_j in every conditional
        for k, i in enumerate(steps):
            if isinstance(i, int):
                xk = (u[:, k] < torch.sigmoid(logits[:, i])).to(like.dtype)
                x[:, i] = xk
            else:
                xk = (u[:, k] < torch.sigmoid(logits.gather(1, i[:, None])[:, 0])).to(like.dtype)
                x.scatter_(1, i[:, None], xk[:, None])
            # variables already drawn also receive the term; they are never read again
            logits.addcmul_(xk[:, None], columns[i])
        return x


class NADE(_BinaryAutoregressive):
    r"""Neural autoregressive distribution estimator over binary vectors [2].

    .. math::

        a_1 = c, \quad a_{k+1} = a_k + W_{:, o_k} x_{o_k}, \quad
        \log p(x) = \sum_{k=1}^D \Big[x_{o_k} \ell_k - \mathrm{softplus}(\ell_k)\Big],
        \quad \ell_k = b_{o_k} + V_{o_k, :}\, \phi(a_k)

    ``log_prob`` computes every :math:`a_k` by one cumulative sum over the ordering
    (:math:`O(DH)` per example, no Python loop); :meth:`naive_log_prob` recomputes each
    hidden layer from scratch (:math:`O(D^2 H)`, a test reference). ``sample`` updates the
    running pre-activation once per variable (:math:`O(H)`); :meth:`naive_sample` recomputes
    it from the variables drawn so far (:math:`O(DH)` per variable), the baseline of the
    speed benchmark. Both draw their uniforms in the same order, so under the same random
    state they return the same samples (up to floating-point ties).

    Order-agnostic training [4] is ``ordering="random"`` (module docs); with a network
    built with ``mask_input=True`` the hidden layer also sees which variables are observed.

    :param NADENet net: the parameters.
    :param context: class labels (``batch_shape``) or one-hot vectors
        (``batch_shape + (K,)``) when ``net`` is class-conditional.
    :param ordering: ``None`` (identity), ``(D,)``, ``batch_shape + (D,)``, or ``"random"``.
    """

    _net_type = NADENet

    def _ordered_parts(self, context, ordering):
        net = self.net
        return (
            net.hidden_bias_for(context),
            net.output_bias_for(context),
            net.weight.t(),
            net.output_weight,
            None if net.mask_weight is None else net.mask_weight.t(),
        )

    @staticmethod
    def _preactivation_from_scratch(c, xo, wo, uo, k: int) -> torch.Tensor:
        """:math:`a_k = c + \\sum_{i<k} W_{:, o_i} x_{o_i} (+ U_{:, o_i})` recomputed from the
        first ``k`` position-indexed inputs ``xo`` (rows ``wo``, ``uo`` in ordering order)."""
        if wo.dim() == 2:
            a = torch.addmm(c, xo[:, :k], wo[:k])
            return a if uo is None else a + uo[:k].sum(0)
        a = c + torch.einsum("nk,nkh->nh", xo[:, :k], wo[:, :k])
        return a if uo is None else a + uo[:, :k].sum(1)

    def naive_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x)` with every hidden layer recomputed from the inputs before it
        (:math:`O(D^2 H)`; a reference for tests and benchmarks)."""
        x, context, ordering, batch = self._flatten(value)
        c, b, wt, v, ut = self._ordered_parts(context, ordering)
        n, d = x.shape
        xo = order_values(x, ordering)
        bo = order_values(b.expand(n, d), ordering)
        rows = (lambda t: t) if ordering is None else (lambda t: t[ordering])
        wo, vo = rows(wt), rows(v)
        uo = None if ut is None else rows(ut)
        logits = []
        for k in range(d):
            h = self.net.activation(self._preactivation_from_scratch(c, xo, wo, uo, k))
            logits.append(bo[:, k] + (h @ vo[k] if vo.dim() == 2 else (h * vo[:, k]).sum(-1)))
        return bernoulli_log_prob(torch.stack(logits, -1), xo).reshape(batch)

    def naive_sample(self, sample_shape=()) -> torch.Tensor:
        """Ancestral samples with each hidden layer recomputed from scratch (the
        "naive recomputation" baseline; same samples as :meth:`sample` under the same
        random state)."""
        return self._sample(sample_shape, naive=True)

    def _sample_rows(self, n, context, ordering, like, naive):
        net = self.net
        d = net.num_features
        steps, ordering = self._positions(ordering, n, like)
        c, b, wt, v, ut = self._ordered_parts(context, ordering)
        wt = wt.contiguous()
        # x_{o_k} = 1 iff u_k < sigmoid(b_{o_k} + s_k) iff s_k > logit(u_k) - b_{o_k}
        u = like.new_empty(n, d).uniform_()
        threshold = torch.logit(u) - order_values(b.expand(n, d), ordering)
        xo = like.new_zeros(n, d)  # position-indexed
        a = c.expand(n, -1).clone()
        if naive:
            wo, uo = wt[ordering], None if ut is None else ut[ordering]
        for k, i in enumerate(steps):
            if naive:
                a = self._preactivation_from_scratch(c, xo, wo, uo, k)
            h = net.activation(a)
            s = torch.mv(h, v[i]) if isinstance(i, int) else (h * v[i]).sum(-1)
            xk = (s > threshold[:, k]).to(like.dtype)
            xo[:, k] = xk
            if not naive:  # the O(H) update of the running pre-activation
                a.addcmul_(xk.unsqueeze(1), wt[i])
                if ut is not None:
                    a.add_(ut[i])
        return unorder_values(xo, ordering)


class RNADE(_FullyVisible):
    r"""Real-valued NADE with mixture-of-Gaussians conditionals [3].

    .. math::

        \log p(x) = \sum_{k=1}^D \log \sum_{j=1}^K \pi_{kj}\,
            \mathcal N\big(x_{o_k};\ \mu_{kj}, \sigma_{kj}^2\big)

    computed in the log domain (``logsumexp`` of log-weights plus Gaussian log-densities);
    the mixture parameters come from NADE's hidden layer (see :class:`~pyrogen.nn.nade.
    RNADENet`), all :math:`D` of them by one cumulative sum. ``sample`` updates the running
    pre-activation once per variable.

    :param RNADENet net: the parameters.
    :param context: class labels when ``net`` has ``num_classes``.
    :param ordering: ``None``, ``(D,)``, ``batch_shape + (D,)`` or ``"random"``.
    """

    _net_type = RNADENet
    support = constraints.independent(constraints.real, 1)

    def _check_support(self, value: torch.Tensor) -> None:
        check_finite(value, "value")

    def conditional_params(self, value: torch.Tensor):
        """``(logits, loc, scale)`` of every conditional's mixture, each
        ``batch + (D, K)``, variable-indexed (differentiable in ``value``)."""
        x, context, ordering, batch = self._flatten(value)
        out = self.net(x, context, ordering)
        return tuple(t.reshape(batch + t.shape[1:]) for t in out)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)`, shape ``broadcast(value.shape[:-1], batch_shape)``."""
        x, context, ordering, batch = self._flatten(value)
        logits, loc, scale = self.net(x, context, ordering)
        components = torch.distributions.Normal(loc, scale, validate_args=False).log_prob(
            x.unsqueeze(-1)
        )
        per_variable = torch.logsumexp(F.log_softmax(logits, -1) + components, -1)
        return per_variable.sum(-1).reshape(batch)

    def _sample_rows(self, n, context, ordering, like, naive):
        net = self.net
        steps, ordering = self._positions(ordering, n, like)
        wt = net.weight.t().contiguous()
        a = net.hidden_bias_for(context).expand(n, -1).clone()
        xo = like.new_zeros(n, net.num_features)
        for k, i in enumerate(steps):
            logits, loc, scale = net.mixture_params(a, i)
            j = torch.distributions.Categorical(logits=logits).sample().unsqueeze(-1)
            noise = torch.randn_like(xo[:, k])
            xk = loc.gather(-1, j)[:, 0] + scale.gather(-1, j)[:, 0] * noise
            xo[:, k] = xk
            a.addcmul_(xk[:, None], wt[i])
        return unorder_values(xo, ordering)
