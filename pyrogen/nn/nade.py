r"""Networks of the fully visible autoregressive models: FVSBN, NADE and RNADE.

Each network holds the parameters of one model over :math:`D` variables and computes the
parameters of every conditional :math:`p(x_{o_k} \mid x_{o_{<k}})` for an *ordering*
:math:`o` (a permutation of :math:`0, \dots, D-1`): ``None`` (the identity), one ``(D,)``
permutation shared by the batch, or one ``(N, D)`` permutation per example. Parameters are
tied to variables, not to positions, so one network is a model for every ordering (which is
what order-agnostic training needs). Outputs are indexed by variable: ``logits[n, i]`` is
the log-odds of :math:`x_i` given the variables before it in example ``n``'s ordering.

The distributions in :mod:`pyrogen.distributions.nade` read these networks; nothing here
calls Pyro.

NADE's hidden pre-activations obey the shared-weight recurrence

.. math::

    a_1 = c, \qquad a_{k+1} = a_k + W_{:, o_k} x_{o_k}, \qquad
    h_k = \phi(a_k), \qquad
    p(x_{o_k} = 1 \mid x_{o_{<k}}) = \sigma(b_{o_k} + V_{o_k, :} h_k),

so all :math:`D` pre-activations are one cumulative sum over the ordering: :math:`O(DH)` per
example instead of the :math:`O(D^2 H)` of recomputing each hidden layer. On the CPU the
batch is processed in chunks of about :data:`CPU_CHUNK_ELEMENTS` pre-activations, which keeps
the ``(chunk, D, H)`` temporaries in cache-sized blocks (about 3x faster than one
``(N, D, H)`` block for ``D = 784``, ``H = 500``); on other devices the batch is one block.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pyrogen.nn.init import logit_of_mean

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
}

#: hidden pre-activations per chunk of the batch on the CPU (see module docs)
CPU_CHUNK_ELEMENTS = 1 << 22


def _check_size(name: str, value: int) -> int:
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def _glorot_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound)


def order_values(x: torch.Tensor, ordering: torch.Tensor | None) -> torch.Tensor:
    """``x[n, o_k]`` at position ``k``: ``x`` rearranged into ordering ``ordering``
    (``None``, ``(D,)`` or ``(N, D)``) along its dim 1."""
    if ordering is None:
        return x
    if ordering.dim() == 1:
        return x[:, ordering]
    index = ordering if x.dim() == 2 else ordering.reshape(ordering.shape + (1,) * (x.dim() - 2))
    return x.gather(1, index.expand(x.shape))


def unorder_values(y: torch.Tensor, ordering: torch.Tensor | None) -> torch.Tensor:
    """Inverse of :func:`order_values`: position-indexed ``y`` back to variable-indexed."""
    if ordering is None:
        return y
    return order_values(y, torch.argsort(ordering, dim=-1))


def _rows(table: torch.Tensor, ordering: torch.Tensor | None) -> torch.Tensor:
    """``table[o_k]`` at position ``k``: ``(D, ...)`` or, per example, ``(N, D, ...)``."""
    return table if ordering is None else table[ordering]


def _batch_chunks(n: int, per_row: int, device: torch.device) -> list[slice]:
    if device.type != "cpu":
        return [slice(0, n)]
    size = max(1, CPU_CHUNK_ELEMENTS // max(per_row, 1))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)] or [slice(0, 0)]


def _map_chunks(fn, x: torch.Tensor, per_row: int, context, ordering):
    """``fn(x, context, ordering)`` over chunks of the batch (dim 0), outputs concatenated.

    ``context`` (``(N, ...)`` or ``None``) is split with ``x``; ``ordering`` only when it is
    per example (``(N, D)``).
    """
    chunks = _batch_chunks(x.shape[0], per_row, x.device)
    if len(chunks) == 1:
        return fn(x, context, ordering)
    outs = []
    for s in chunks:
        ctx = None if context is None else context[s]
        order = ordering[s] if ordering is not None and ordering.dim() == 2 else ordering
        outs.append(fn(x[s], ctx, order))
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


def nade_preactivations(
    x: torch.Tensor,
    weight: torch.Tensor,
    hidden_bias: torch.Tensor,
    ordering: torch.Tensor | None = None,
    mask_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""All of NADE's hidden pre-activations by one cumulative sum (no loop over :math:`d`).

    .. math:: a_k = c + \sum_{i < k} \big(W_{:, o_i} x_{o_i} + U_{:, o_i}\big)

    :param x: ``(N, D)`` inputs (variable-indexed).
    :param weight: :math:`W`, ``(H, D)``.
    :param hidden_bias: :math:`c`, ``(H,)`` or per example ``(N, H)``.
    :param ordering: ``None``, ``(D,)`` or ``(N, D)``.
    :param mask_weight: :math:`U`, ``(H, D)``, the weights of the "is observed" input bits
        of order-agnostic NADE (Uria et al. 2014); ``None`` for none.
    :returns: ``(N, D, H)``, position-indexed: ``a[:, k]`` feeds the conditional of
        :math:`x_{o_k}`.
    """
    n, d = x.shape
    xo = order_values(x, ordering)
    # position k receives the input of position k - 1: shift by one, zero at position 0
    shifted_x = F.pad(xo[:, :-1], (1, 0))
    if ordering is None or ordering.dim() == 1:
        prev = slice(0, d - 1) if ordering is None else ordering[:-1]
        rows = F.pad(weight.t()[prev], (0, 0, 1, 0))  # (D, H), row 0 is zero
        steps = shifted_x.unsqueeze(-1) * rows
        if mask_weight is not None:
            steps = steps + F.pad(mask_weight.t()[prev], (0, 0, 1, 0))
    else:
        # per-example orderings: row 0 is any column, multiplied by the zero input
        prev = torch.cat([ordering[:, :1], ordering[:, :-1]], dim=1)
        steps = shifted_x.unsqueeze(-1) * weight.t()[prev]
        if mask_weight is not None:
            observed = torch.ones_like(shifted_x[0])
            observed[0] = 0
            steps = steps + observed.unsqueeze(-1) * mask_weight.t()[prev]
    return steps.cumsum(1).add_(hidden_bias.unsqueeze(-2))


class _ContextMixin:
    """Class-conditional biases: an embedding of the label added to a bias vector."""

    num_classes: int | None

    def _embed(self, table: torch.Tensor | None, context: torch.Tensor | None):
        if table is None or context is None:
            return None
        if context.is_floating_point():  # one-hot or class probabilities, (N, K)
            return context.to(table.dtype) @ table
        return table[context]


class FVSBNNet(nn.Module):
    r"""Parameters of a fully visible sigmoid belief network (logistic autoregression).

    .. math:: p(x_{o_k} = 1 \mid x_{o_{<k}}) = \sigma\Big(b_{o_k} + \sum_{i<k} W_{o_k o_i}
        x_{o_i}\Big)

    ``weight`` is a full ``(D, D)`` matrix; only the entries :math:`W_{ij}` with :math:`j`
    before :math:`i` in the ordering are used (strictly lower-triangular for the identity
    ordering), the others get zero gradient. Initialised at zero weights (the objective is
    convex in the parameters) and zero biases (see :meth:`init_output_bias`).

    :param int num_features: :math:`D`.
    """

    num_classes = None

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = _check_size("num_features", num_features)
        self.weight = nn.Parameter(torch.zeros(self.num_features, self.num_features))
        self.bias = nn.Parameter(torch.zeros(self.num_features))

    @torch.no_grad()
    def init_output_bias(self, mean: torch.Tensor) -> FVSBNNet:
        """Set the biases to the log-odds of ``mean`` (the training pixel means)."""
        self.bias.copy_(logit_of_mean(mean, self.bias))
        return self

    def masked_weight(self, ordering: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`W` with the entries not allowed by ``ordering`` set to zero: ``(D, D)``,
        or ``(N, D, D)`` for per-example orderings."""
        if ordering is None:
            return torch.tril(self.weight, diagonal=-1)
        position = torch.argsort(ordering, dim=-1)  # position of each variable
        allowed = position.unsqueeze(-2) < position.unsqueeze(-1)  # [i, j]: j before i
        return self.weight * allowed.to(self.weight.dtype)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, ordering=None
    ) -> torch.Tensor:
        """Log-odds of every conditional, ``(N, D)`` variable-indexed. ``context`` must be
        ``None`` (an FVSBN has no class input)."""
        weight = self.masked_weight(ordering)
        if weight.dim() == 2:
            return torch.addmm(self.bias, x, weight.t())
        return self.bias + torch.einsum("nj,nij->ni", x, weight)


class NADENet(_ContextMixin, nn.Module):
    r"""Parameters of NADE (Larochelle & Murray 2011), optionally class-conditional and
    with the mask inputs of order-agnostic NADE (Uria et al. 2014).

    .. math::

        h_k = \phi\Big(c + e^h_y + \sum_{i<k} (W_{:, o_i} x_{o_i} + U_{:, o_i})\Big), \qquad
        p(x_{o_k} = 1 \mid x_{o_{<k}}, y) = \sigma\big(b_{o_k} + e^o_{y, o_k}
            + V_{o_k, :} h_k\big)

    :param int num_features: :math:`D`.
    :param int hidden: :math:`H`.
    :param int num_classes: number of class labels :math:`y` (``None``: unconditional).
        The label's embeddings :math:`e^h_y \in \mathbb R^H` and :math:`e^o_y \in
        \mathbb R^D` are initialised at zero.
    :param str context_to: where the label enters: ``"hidden"`` (:math:`e^h` only),
        ``"output"`` (:math:`e^o` only) or ``"both"``.
    :param bool mask_input: add the "observed" indicator inputs with weights :math:`U`
        (``(H, D)``, initialised at zero). Uria et al. (2014) feed them so that an
        order-agnostic network can tell a missing input from an observed zero.
    :param str activation: :math:`\phi`, ``"sigmoid"`` (the original NADE) or ``"relu"``.

    Attributes: ``weight`` :math:`W` ``(H, D)``, ``output_weight`` :math:`V` ``(D, H)``,
    ``output_bias`` :math:`b` ``(D,)``, ``hidden_bias`` :math:`c` ``(H,)``, and when
    enabled ``mask_weight`` :math:`U`, ``context_hidden`` ``(K, H)``, ``context_output``
    ``(K, D)``. :math:`W` and :math:`V` start uniform with Glorot & Bengio's bound
    :math:`\sqrt{6 / (D + H)}`, the biases at zero (see :meth:`init_output_bias`).
    """

    def __init__(
        self,
        num_features: int,
        hidden: int,
        *,
        num_classes: int | None = None,
        context_to: str = "both",
        mask_input: bool = False,
        activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        d = self.num_features = _check_size("num_features", num_features)
        h = self.hidden = _check_size("hidden", hidden)
        self.activation_name = activation
        self.activation = _activation(activation)
        self.weight = nn.Parameter(torch.empty(h, d))
        self.output_weight = nn.Parameter(torch.empty(d, h))
        self.output_bias = nn.Parameter(torch.zeros(d))
        self.hidden_bias = nn.Parameter(torch.zeros(h))
        _glorot_(self.weight, d, h)
        _glorot_(self.output_weight, d, h)
        self.mask_weight = nn.Parameter(torch.zeros(h, d)) if mask_input else None
        if context_to not in ("hidden", "output", "both"):
            raise ValueError(f"context_to must be 'hidden', 'output' or 'both', got {context_to!r}")
        self.num_classes = None if num_classes is None else _check_size("num_classes", num_classes)
        self.context_to = context_to
        k = self.num_classes
        use_h = k is not None and context_to in ("hidden", "both")
        use_o = k is not None and context_to in ("output", "both")
        self.context_hidden = nn.Parameter(torch.zeros(k, h)) if use_h else None
        self.context_output = nn.Parameter(torch.zeros(k, d)) if use_o else None

    @torch.no_grad()
    def init_output_bias(self, mean: torch.Tensor) -> NADENet:
        """Set :math:`b` to the log-odds of ``mean`` (the training pixel means)."""
        self.output_bias.copy_(logit_of_mean(mean, self.output_bias))
        return self

    def hidden_bias_for(self, context: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`c + e^h_y`: ``(N, H)`` for labels ``(N,)`` / ``(N, K)``, else ``(1, H)``."""
        extra = self._embed(self.context_hidden, context)
        return self.hidden_bias.unsqueeze(0) if extra is None else self.hidden_bias + extra

    def output_bias_for(self, context: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`b + e^o_y`: ``(N, D)`` for labels, else ``(1, D)``."""
        extra = self._embed(self.context_output, context)
        return self.output_bias.unsqueeze(0) if extra is None else self.output_bias + extra

    def preactivations(
        self, x: torch.Tensor, context: torch.Tensor | None = None, ordering=None
    ) -> torch.Tensor:
        """Hidden pre-activations :math:`a_k`, ``(N, D, H)`` position-indexed (see
        :func:`nade_preactivations`)."""
        return nade_preactivations(
            x, self.weight, self.hidden_bias_for(context), ordering, self.mask_weight
        )

    def _logits(self, x, context, ordering):
        h = self.activation(self.preactivations(x, context, ordering))
        v = _rows(self.output_weight, ordering)
        if v.dim() == 2:
            s = torch.einsum("ndh,dh->nd", h, v)
        else:
            s = (h * v).sum(-1)
        bias = self.output_bias_for(context)
        return unorder_values(s, ordering) + bias

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, ordering=None
    ) -> torch.Tensor:
        """Log-odds of every conditional, ``(N, D)`` variable-indexed, in :math:`O(NDH)`.

        :param x: ``(N, D)`` binary inputs.
        :param context: labels ``(N,)`` (integers) or ``(N, K)`` (one-hot / probabilities).
        :param ordering: ``None``, ``(D,)`` or ``(N, D)``.
        """
        return _map_chunks(self._logits, x, self.num_features * self.hidden, context, ordering)


class RNADENet(_ContextMixin, nn.Module):
    r"""Parameters of RNADE (Uria, Murray & Larochelle 2013): NADE's hidden layer with a
    mixture of :math:`K` Gaussians per conditional.

    .. math::

        h_k = \phi\big(\rho_{o_k} a_k\big), \qquad
        p(x_{o_k} \mid x_{o_{<k}}) = \sum_{j=1}^K \pi_{kj}\,
            \mathcal N\big(x_{o_k};\ \mu_{kj}, \sigma_{kj}^2\big),

    with :math:`a_k` NADE's pre-activations, :math:`\pi_k = \mathrm{softmax}(V^\pi_{o_k}
    h_k + b^\pi_{o_k})`, :math:`\mu_k = V^\mu_{o_k} h_k + b^\mu_{o_k}` and
    :math:`\log \sigma_k = V^\sigma_{o_k} h_k + b^\sigma_{o_k}`. :math:`\rho_d` is the
    paper's activation rescaling: a learned factor per variable on the pre-activation
    (initialised at 1), which lets each conditional adjust the scale of an :math:`a_k` that
    sums more inputs the later it comes in the ordering.

    :param int num_features: :math:`D`.
    :param int hidden: :math:`H`.
    :param int num_components: :math:`K`.
    :param int num_classes: class labels added to the hidden pre-activation (``None``: none).
    :param str activation: ``"sigmoid"`` or ``"relu"``.
    :param bool rescale: learn :math:`\rho` (else :math:`\rho = 1`).

    Attributes: ``weight`` ``(H, D)``, ``hidden_bias`` ``(H,)``, ``output_weight``
    ``(D, 3K, H)`` (rows :math:`V^\pi, V^\mu, V^\sigma`), ``output_bias`` ``(D, 3K)``,
    ``rho`` ``(D,)``. The means' biases start spread over :math:`[-1, 1]` (data are
    expected standardised), so the components differ from the first step.
    """

    def __init__(
        self,
        num_features: int,
        hidden: int,
        num_components: int = 5,
        *,
        num_classes: int | None = None,
        activation: str = "sigmoid",
        rescale: bool = True,
    ) -> None:
        super().__init__()
        d = self.num_features = _check_size("num_features", num_features)
        h = self.hidden = _check_size("hidden", hidden)
        k = self.num_components = _check_size("num_components", num_components)
        self.activation_name = activation
        self.activation = _activation(activation)
        self.weight = nn.Parameter(torch.empty(h, d))
        self.hidden_bias = nn.Parameter(torch.zeros(h))
        self.output_weight = nn.Parameter(torch.empty(d, 3 * k, h))
        self.output_bias = nn.Parameter(torch.zeros(d, 3 * k))
        _glorot_(self.weight, d, h)
        _glorot_(self.output_weight, h, 3 * k)
        with torch.no_grad():
            self.output_bias[:, k : 2 * k] = torch.linspace(-1.0, 1.0, k) if k > 1 else 0.0
        self.rho = nn.Parameter(torch.ones(d)) if rescale else None
        self.num_classes = None if num_classes is None else _check_size("num_classes", num_classes)
        self.context_hidden = (
            nn.Parameter(torch.zeros(self.num_classes, h)) if self.num_classes else None
        )
        self.mask_weight = None

    def hidden_bias_for(self, context: torch.Tensor | None = None) -> torch.Tensor:
        extra = self._embed(self.context_hidden, context)
        return self.hidden_bias.unsqueeze(0) if extra is None else self.hidden_bias + extra

    def mixture_params(self, a: torch.Tensor, positions) -> tuple[torch.Tensor, ...]:
        """Mixture logits, means and scales, each ``(..., K)``, from pre-activations ``a``
        (``(..., H)``) of the variables ``positions`` (an index or index tensor)."""
        if self.rho is not None:
            a = a * self.rho[positions].unsqueeze(-1)
        h = self.activation(a)
        v, b = self.output_weight[positions], self.output_bias[positions]
        if v.dim() == h.dim() + 1:  # one output matrix per row of h
            params = (v @ h.unsqueeze(-1)).squeeze(-1) + b
        else:  # shared by the leading (batch) dim of h
            params = torch.einsum("n...h,...mh->n...m", h, v) + b
        logits, loc, log_scale = params.split(self.num_components, dim=-1)
        return logits, loc, log_scale.exp()

    def _params(self, x, context, ordering):
        a = nade_preactivations(x, self.weight, self.hidden_bias_for(context), ordering)
        index = torch.arange(self.num_features, device=x.device) if ordering is None else ordering
        logits, loc, scale = self.mixture_params(a, index)
        return tuple(unorder_values(t, ordering) for t in (logits, loc, scale))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, ordering=None):
        """``(logits, loc, scale)`` of every conditional's mixture, each ``(N, D, K)``
        variable-indexed."""
        per_row = self.num_features * self.hidden * (1 + 3 * self.num_components)
        return _map_chunks(self._params, x, per_row, context, ordering)
