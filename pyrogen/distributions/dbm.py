r"""Deep Boltzmann machines (two or three hidden layers) as distributions over visible units.

A binary DBM [1] with layers :math:`x_0 = v \in \{0,1\}^V`, :math:`x_k = h^{(k)} \in
\{0,1\}^{H_k}` (:math:`k = 1, \dots, L`, :math:`L \in \{2, 3\}`), weights :math:`W_k` of shape
:math:`(H_{k-1}, H_k)` between layers :math:`k-1` and :math:`k` and biases :math:`c_k`
(:math:`c_0 = b`, the visible bias) has the energy

.. math::

    E(v, h^{(1)}, \dots, h^{(L)}) = -\sum_{k=1}^L x_{k-1}^\top W_k\, x_k
        - \sum_{k=0}^L c_k^\top x_k,
    \qquad p(v) = \frac1Z \sum_{h} e^{-E(v, h)}.

There are no connections inside a layer, so each layer given its two neighbours is a
factorized Bernoulli (bottom-up plus top-down input),

.. math::

    p(x_k = 1 \mid x_{k-1}, x_{k+1}) = \sigma\big(c_k + W_k^\top x_{k-1} + W_{k+1}\, x_{k+1}\big),

and the graph of layers is bipartite between the *odd* layers :math:`(h^{(1)}, h^{(3)})` and
the *even* ones :math:`(v, h^{(2)})`: block Gibbs sampling alternates the two classes, and
either class sums out analytically given the other,

.. math::

    \log f_{\mathrm{even}}(v, h^{(2)}) &= b^\top v + c_2^\top h^{(2)}
        + \sum_j \mathrm{softplus}\big(c_1 + W_1^\top v + W_2 h^{(2)}\big)_j
        + \sum_l \mathrm{softplus}\big(c_3 + W_3^\top h^{(2)}\big)_l, \\
    \log f_{\mathrm{odd}}(h^{(1)}, h^{(3)}) &= c_1^\top h^{(1)} + c_3^\top h^{(3)}
        + \sum_i \mathrm{softplus}\big(b + W_1 h^{(1)}\big)_i
        + \sum_m \mathrm{softplus}\big(c_2 + W_2^\top h^{(1)} + W_3 h^{(3)}\big)_m

(terms with :math:`h^{(3)}` only when :math:`L = 3`), with
:math:`Z = \sum_{v, h^{(2)}} f_{\mathrm{even}} = \sum_{h^{(1)}, h^{(3)}} f_{\mathrm{odd}}`.
So :math:`\log Z` is exact by enumerating whichever class is smaller, when it has at most
:attr:`~DBM.max_enumeration` units; otherwise it is estimated by AIS along
:class:`DBMAnnealingPath` (the odd layers summed out, as in [1]). The unnormalized marginal
:math:`\log \tilde p(v)` is exact by enumerating :math:`h^{(2)}` (summing :math:`h^{(1)}` and
:math:`h^{(3)}` analytically) or :math:`(h^{(1)}, h^{(3)})` (summing :math:`h^{(2)}`); for large
models use the mean-field lower bound (:meth:`DBM.variational_lower_bound`, [1, 2]).

The parameters describe one DBM; ``batch_shape`` only broadcasts it (as ``pyro.plate`` does
through :meth:`~DBM.expand`).

**References**

[1] Deep Boltzmann Machines. Ruslan Salakhutdinov, Geoffrey Hinton. 2009.

[2] Efficient Learning of Deep Boltzmann Machines. Ruslan Salakhutdinov, Hugo Larochelle.
    2010.

[3] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.

[4] Annealed Importance Sampling. Radford M. Neal. 2001.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyrogen.distributions._values import check_event
from pyrogen.distributions.annealing import AnnealingPath, LogPartition
from pyrogen.distributions.energy import (
    EnergyBasedDistribution,
    affine,
    base_rates,
    bernoulli_sample,
    fair_coins,
)

_ROUTES = ("auto", "even", "odd")


def _binary_entropy(mu: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_j -\mu_j \log \mu_j - (1 - \mu_j) \log (1 - \mu_j)` (0 log 0 = 0)."""
    return -(torch.special.xlogy(mu, mu) + torch.special.xlogy(1 - mu, 1 - mu)).sum(-1)


def _pick_route(route: str, n_even: int, n_odd: int) -> tuple[str, int]:
    """The route (``"auto"`` picks the shorter sum) and how many binary units it sums."""
    if route not in _ROUTES:
        raise ValueError(f"route must be one of {_ROUTES}, got {route!r}")
    if route == "auto":
        route = "odd" if n_odd <= n_even else "even"
    return route, n_odd if route == "odd" else n_even


def _check_parameters(weights, biases) -> list[int]:
    """The layer sizes, after checking the structure and then each tensor's shape (by
    :meth:`EnergyBasedDistribution.check_parameters`)."""
    if not isinstance(weights, Sequence) or len(weights) not in (2, 3):
        raise ValueError(
            "weights must be a sequence of 2 or 3 weight matrices [W1 (V, H1), W2 (H1, H2)"
            f"(, W3 (H2, H3))], got {type(weights).__name__}"
            + (f" of length {len(weights)}" if isinstance(weights, Sequence) else "")
        )
    if not isinstance(biases, Sequence) or len(biases) != len(weights) + 1:
        raise ValueError(
            f"biases must be a sequence of {len(weights) + 1} vectors (visible bias, then one "
            f"per hidden layer) for {len(weights)} weight matrices, got "
            f"{type(biases).__name__}"
            + (f" of length {len(biases)}" if isinstance(biases, Sequence) else "")
        )
    layers = ["V"] + [f"H{k}" for k in range(1, len(weights) + 1)]
    sizes = EnergyBasedDistribution.check_parameters(
        [(f"weights[{k}]", w, (layers[k], layers[k + 1])) for k, w in enumerate(weights)]
        + [(f"biases[{k}]", c, (layers[k],)) for k, c in enumerate(biases)]
    )
    return [sizes[name] for name in layers]


class DBM(EnergyBasedDistribution):
    r"""Binary deep Boltzmann machine with 2 or 3 hidden layers, a distribution over
    :math:`v \in \{0,1\}^V` (see module docs for the energy and the formulas).

    :param weights: ``[W1, W2]`` or ``[W1, W2, W3]``, :math:`W_k` of shape
        ``(size of layer k-1, size of layer k)`` (layer 0 is the visible one).
    :param biases: ``[b, c1, c2]`` or ``[b, c1, c2, c3]``, one vector per layer.
    :param int gibbs_steps: block-Gibbs sweeps of :meth:`sample` (default 1000).

    ``log_prob(v)`` is exact when both :math:`\log Z` (:meth:`can_enumerate`) and the hidden
    sum of :meth:`unnormalized_log_prob` (:meth:`can_enumerate_hidden`) are; with an AIS
    :math:`\log Z` it is an estimate. For large models use :meth:`variational_lower_bound`.
    """

    support = constraints.independent(constraints.boolean, 1)

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        biases: Sequence[torch.Tensor],
        *,
        gibbs_steps: int = 1000,
        validate_args: bool | None = None,
    ) -> None:
        sizes = _check_parameters(weights, biases)
        self.layer_sizes: tuple[int, ...] = tuple(int(s) for s in sizes)
        for k, w in enumerate(weights, 1):
            setattr(self, f"weight{k}", w)
        self.visible_bias = biases[0]
        for k, c in enumerate(biases[1:], 1):
            setattr(self, f"hidden_bias{k}", c)
        super().__init__(sizes[:1], gibbs_steps=gibbs_steps, validate_args=validate_args)

    @property
    def arg_constraints(self) -> dict:
        names = [f"weight{k}" for k in range(1, self.num_hidden_layers + 1)]
        cons = {n: constraints.independent(constraints.real, 2) for n in names}
        cons["visible_bias"] = constraints.independent(constraints.real, 1)
        for k in range(1, self.num_hidden_layers + 1):
            cons[f"hidden_bias{k}"] = constraints.independent(constraints.real, 1)
        return cons

    # ---- structure ------------------------------------------------------------------

    @property
    def num_hidden_layers(self) -> int:
        """:math:`L`, 2 or 3."""
        return len(self.layer_sizes) - 1

    @property
    def num_visible(self) -> int:
        return self.layer_sizes[0]

    @property
    def weights(self) -> tuple[torch.Tensor, ...]:
        """:math:`(W_1, \\dots, W_L)`."""
        return tuple(getattr(self, f"weight{k}") for k in range(1, self.num_hidden_layers + 1))

    @property
    def biases(self) -> tuple[torch.Tensor, ...]:
        """:math:`(b, c_1, \\dots, c_L)`."""
        return (self.visible_bias,) + tuple(
            getattr(self, f"hidden_bias{k}") for k in range(1, self.num_hidden_layers + 1)
        )

    @property
    def _like(self) -> torch.Tensor:
        return self.visible_bias

    def _size(self, k: int) -> int:
        return self.layer_sizes[k] if k < len(self.layer_sizes) else 0

    # ---- input checks ---------------------------------------------------------------

    def _check_layer(self, x: torch.Tensor, k: int, name: str, binary: bool) -> torch.Tensor:
        check_event(x, self.layer_sizes[k], name, f" for layer {k} of this DBM")
        if binary and self._validate_args:
            bad = (x != 0) & (x != 1)
            if bad.any():
                raise ValueError(
                    f"{name} must be binary (0 or 1) for a DBM, found the value(s) "
                    f"{x[bad].unique()[:5].tolist()}"
                )
        return x.to(self._like.dtype)

    def _validate_sample(self, value):
        self._check_layer(value, 0, "value", binary=True)
        super()._validate_sample(value)

    # ---- conditionals ---------------------------------------------------------------

    def layer_logits(
        self, k: int, below: torch.Tensor | None = None, above: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Log-odds of :math:`p(x_k = 1 \mid x_{k-1}, x_{k+1})`:
        :math:`c_k + W_k^\top x_{k-1} + W_{k+1} x_{k+1}`.

        :param int k: the layer, 0 (visible) to :math:`L` (top).
        :param below: :math:`x_{k-1}` (required for ``k >= 1``, must be ``None`` for ``k = 0``).
        :param above: :math:`x_{k+1}` (required for ``k < L``, ``None`` for the top layer).

        Binary states or mean-field probabilities alike; leading dims broadcast.
        """
        L = self.num_hidden_layers
        if not 0 <= k <= L:
            raise ValueError(f"k must be a layer index in 0..{L}, got {k}")
        for side, x, needed in (("below", below, k >= 1), ("above", above, k < L)):
            if needed and x is None:
                raise ValueError(f"layer {k} has a neighbour {side}; pass {side}=")
            if not needed and x is not None:
                raise ValueError(f"layer {k} has no neighbour {side}; pass {side}=None")
        out = None
        if below is not None:
            below = self._check_layer(below, k - 1, "below", binary=False)
            out = affine(below, self.weights[k - 1], self.biases[k])
        if above is not None:
            above = self._check_layer(above, k + 1, "above", binary=False)
            top_down = affine(above, self.weights[k].T)
            out = top_down + self.biases[k] if out is None else out + top_down
        return out

    def layer_given(
        self, k: int, below: torch.Tensor | None = None, above: torch.Tensor | None = None
    ) -> torch.distributions.Bernoulli:
        """:math:`p(x_k \\mid x_{k-1}, x_{k+1})`, a factorized Bernoulli (see
        :meth:`layer_logits`)."""
        return torch.distributions.Bernoulli(
            logits=self.layer_logits(k, below, above), validate_args=False
        )

    def visible_given_hidden(self, h1: torch.Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(v \\mid h^{(1)})`: logits :math:`b + W_1 h^{(1)}`."""
        return self.layer_given(0, above=h1)

    def hidden_given(
        self, k: int, below: torch.Tensor, above: torch.Tensor | None = None
    ) -> torch.distributions.Bernoulli:
        """:math:`p(h^{(k)} \\mid x_{k-1}, x_{k+1})` for hidden layer ``k >= 1``, e.g.
        ``hidden_given(1, v, h2)``; ``above`` is ``None`` for the top layer."""
        if k < 1:
            raise ValueError(f"hidden layers are 1..{self.num_hidden_layers}, got k={k}")
        return self.layer_given(k, below, above)

    # ---- energies and exact sums ----------------------------------------------------

    def energy(self, v: torch.Tensor, *hidden: torch.Tensor) -> torch.Tensor:
        r""":math:`E(v, h^{(1)}, \dots, h^{(L)})`; multilinear, so with mean-field
        probabilities :math:`\mu` in place of the hidden states it is
        :math:`\mathbb E_{q}[E(v, h)]` under the factorized :math:`q`."""
        if len(hidden) != self.num_hidden_layers:
            raise ValueError(
                f"energy needs {self.num_hidden_layers} hidden layers, got {len(hidden)}"
            )
        xs = [self._check_layer(v, 0, "v", binary=False)] + [
            self._check_layer(h, k, f"h{k}", binary=False) for k, h in enumerate(hidden, 1)
        ]
        out = -(xs[0] * self.visible_bias).sum(-1)
        for k in range(1, len(xs)):
            out = out - (affine(xs[k - 1], self.weights[k - 1]) * xs[k]).sum(-1)
            out = out - (xs[k] * self.biases[k]).sum(-1)
        return out

    def unnormalized_log_prob_even(self, v: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        r""":math:`\log f_{\mathrm{even}}(v, h^{(2)})`: the odd layers summed out
        analytically (module docs)."""
        v = self._check_layer(v, 0, "v", binary=False)
        h2 = self._check_layer(h2, 2, "h2", binary=False)
        W1, W2 = self.weight1, self.weight2
        out = (v * self.visible_bias).sum(-1) + (h2 * self.hidden_bias2).sum(-1)
        out = out + F.softplus(affine(v, W1, self.hidden_bias1) + affine(h2, W2.T)).sum(-1)
        if self.num_hidden_layers == 3:
            out = out + F.softplus(affine(h2, self.weight3, self.hidden_bias3)).sum(-1)
        return out

    def unnormalized_log_prob_odd(
        self, h1: torch.Tensor, h3: torch.Tensor | None = None
    ) -> torch.Tensor:
        r""":math:`\log f_{\mathrm{odd}}(h^{(1)}, h^{(3)})`: the even layers summed out
        analytically (module docs); ``h3`` only for a 3-layer DBM."""
        if (h3 is None) != (self.num_hidden_layers == 2):
            raise ValueError("pass h3 exactly when the DBM has 3 hidden layers")
        h1 = self._check_layer(h1, 1, "h1", binary=False)
        out = (h1 * self.hidden_bias1).sum(-1)
        out = out + F.softplus(affine(h1, self.weight1.T, self.visible_bias)).sum(-1)
        pre2 = affine(h1, self.weight2, self.hidden_bias2)
        if h3 is not None:
            h3 = self._check_layer(h3, 3, "h3", binary=False)
            out = out + (h3 * self.hidden_bias3).sum(-1)
            pre2 = pre2 + affine(h3, self.weight3.T)
        return out + F.softplus(pre2).sum(-1)

    def _odd_size(self) -> int:
        return self._size(1) + self._size(3)

    def can_enumerate(self) -> bool:
        """Whether :meth:`log_partition` can be exact: the even layers :math:`(v, h^{(2)})`
        or the odd ones :math:`(h^{(1)}, h^{(3)})` have at most :attr:`max_enumeration`
        units together."""
        return min(self._size(0) + self._size(2), self._odd_size()) <= self.max_enumeration

    def can_enumerate_hidden(self) -> bool:
        """Whether :meth:`unnormalized_log_prob` is exact: :math:`H_2` or
        :math:`H_1 + H_3` is at most :attr:`max_enumeration`."""
        return min(self._size(2), self._odd_size()) <= self.max_enumeration

    def unnormalized_log_prob_or_bound(
        self, value: torch.Tensor, *, mean_field_iters: int = 100
    ) -> tuple[torch.Tensor, bool]:
        """``(unnormalized_log_prob(value), False)`` when :meth:`can_enumerate_hidden`, else
        ``(unnormalized_variational_bound(value), True)``, the mean-field lower bound after at
        most ``mean_field_iters`` sweeps (tolerance 1e-6)."""
        if self.can_enumerate_hidden():
            return self.unnormalized_log_prob(value), False
        return self.unnormalized_variational_bound(
            value, num_iters=mean_field_iters, tol=1e-6
        ), True

    def exact_log_partition(self, route: str = "auto") -> torch.Tensor:
        r""":math:`\log Z` by enumeration: ``"even"`` sums :math:`f_{\mathrm{even}}` over all
        :math:`2^{V + H_2}` states of :math:`(v, h^{(2)})`, ``"odd"`` sums
        :math:`f_{\mathrm{odd}}` over the :math:`2^{H_1 + H_3}` states of
        :math:`(h^{(1)}, h^{(3)})`, ``"auto"`` the cheaper one. Differentiable."""
        route, n = _pick_route(route, self._size(0) + self._size(2), self._odd_size())
        if n > self.max_enumeration:
            raise ValueError(
                f"exact log Z over the {route} layers enumerates 2^{n} states; at most "
                f"2^{self.max_enumeration} are allowed (use log_partition(method='ais'))"
            )
        V, H1 = self._size(0), self._size(1)
        if route == "even":

            def fn(s):
                return self.unnormalized_log_prob_even(s[:, :V], s[:, V:])

            per_state = H1 + self._size(3)
        else:

            def fn(s):
                h3 = s[:, H1:] if self.num_hidden_layers == 3 else None
                return self.unnormalized_log_prob_odd(s[:, :H1], h3)

            per_state = V + self._size(2)
        return self._sum_over_states(n, fn, per_state)

    def _exact_log_partition(self) -> torch.Tensor:
        return self.exact_log_partition("auto")

    def unnormalized_log_prob(self, value: torch.Tensor, route: str = "auto") -> torch.Tensor:
        r""":math:`\log \tilde p(v) = \log \sum_h e^{-E(v, h)}`, exact:

        .. math::

            \log \tilde p(v) = b^\top v + \log \sum_{h^{(2)}} \exp\Big(c_2^\top h^{(2)}
                + \sum_j \mathrm{softplus}(a + W_2 h^{(2)})_j
                + \sum_l \mathrm{softplus}(c_3 + W_3^\top h^{(2)})_l\Big)

        with :math:`a = c_1 + W_1^\top v` (``route="even"``, :math:`2^{H_2}` terms), or
        :math:`b^\top v + \log \sum_{h^{(1)}, h^{(3)}} \exp(a^\top h^{(1)} + c_3^\top h^{(3)}
        + \sum_m \mathrm{softplus}(c_2 + W_2^\top h^{(1)} + W_3 h^{(3)})_m)`
        (``route="odd"``, :math:`2^{H_1 + H_3}` terms); ``"auto"`` takes the shorter sum.

        Values are checked (binary) by :meth:`log_prob` when validation is on, not here.

        :raises ValueError: when neither sum has at most :attr:`max_enumeration` binary units;
            then use :meth:`variational_lower_bound` (a lower bound on :math:`\log p(v)`) or
            :meth:`unnormalized_variational_bound`.
        """
        route, n = _pick_route(route, self._size(2), self._odd_size())
        v = self._check_layer(value, 0, "value", binary=False)
        if n > self.max_enumeration:
            raise ValueError(
                f"the exact marginal of a DBM with hidden layers {self.layer_sizes[1:]} sums "
                f"over 2^{n} states of its {route} hidden layers (at most "
                f"2^{self.max_enumeration} allowed); use variational_lower_bound(v) for a "
                "mean-field lower bound on log p(v), or unnormalized_variational_bound(v)"
            )
        batch = v.shape[:-1]
        v = v.reshape(-1, self.num_visible)
        N = v.shape[0]
        a = affine(v, self.weight1, self.hidden_bias1)  # (N, H1)
        H1, H2 = self._size(1), self._size(2)
        if route == "even":

            def fn(h2):  # (S, H2) -> (N, S)
                t = h2 @ self.hidden_bias2
                if self.num_hidden_layers == 3:
                    t = t + F.softplus(affine(h2, self.weight3, self.hidden_bias3)).sum(-1)
                top_down = affine(h2, self.weight2.T)  # (S, H1)
                return t + F.softplus(a.unsqueeze(-2) + top_down).sum(-1)

            per_state = N * H1
        else:

            def fn(s):  # (S, H1 + H3) -> (N, S)
                h1 = s[:, :H1]
                pre2 = affine(h1, self.weight2, self.hidden_bias2)
                t = torch.zeros_like(pre2[:, 0])
                if self.num_hidden_layers == 3:
                    h3 = s[:, H1:]
                    pre2 = pre2 + affine(h3, self.weight3.T)
                    t = h3 @ self.hidden_bias3
                t = t + F.softplus(pre2).sum(-1)
                return affine(a, h1.T) + t

            per_state = N + H2
        out = v @ self.visible_bias + self._sum_over_states(n, fn, per_state)
        return out.reshape(batch)

    # ---- AIS --------------------------------------------------------------------------

    def annealing_path(
        self, data: torch.Tensor | None = None, smoothing: float = 0.05
    ) -> DBMAnnealingPath:
        """The AIS path of :class:`DBMAnnealingPath` (odd layers summed out), from a
        base-rate model fitted to ``data`` (or uniform); for
        :func:`pyrogen.distributions.annealing.ais`."""
        return DBMAnnealingPath(self, data, smoothing=smoothing)

    # ---- Gibbs sampling --------------------------------------------------------------

    def _coins(self, shape, size: int) -> torch.Tensor:
        return fair_coins(tuple(shape) + (size,), self._like)

    def init_chains(self, num_chains: int):
        """Chains ``(v, h1, h2[, h3])`` started from independent fair coins."""
        return tuple(self._coins((num_chains,), size) for size in self.layer_sizes)

    def gibbs_step(self, state):
        r"""One block-Gibbs sweep: the odd layers given the even ones,
        :math:`h^{(1)} \sim p(h^{(1)} \mid v, h^{(2)})`,
        :math:`h^{(3)} \sim p(h^{(3)} \mid h^{(2)})`, then the even layers given the odd
        ones, :math:`v \sim p(v \mid h^{(1)})`,
        :math:`h^{(2)} \sim p(h^{(2)} \mid h^{(1)}, h^{(3)})`.

        :param state: ``(v, h1, h2[, h3])``; a shorter tuple such as ``(v,)`` gets the missing
            layers as fair coins (only :math:`h^{(2)}` matters: the odd layers are redrawn).
        :returns: the new ``(v, h1, h2[, h3])``.
        """
        state = tuple(state)
        v = state[0].to(self._like.dtype)
        lead = v.shape[:-1]
        state = (
            (v,)
            + tuple(state[1:])
            + tuple(self._coins(lead, size) for size in self.layer_sizes[len(state) :])
        )
        h2 = state[2]
        h1 = bernoulli_sample(torch.sigmoid(self.layer_logits(1, v, h2)))
        h3 = None
        if self.num_hidden_layers == 3:
            h3 = bernoulli_sample(torch.sigmoid(self.layer_logits(3, h2)))
        v = bernoulli_sample(torch.sigmoid(self.layer_logits(0, above=h1)))
        h2 = bernoulli_sample(torch.sigmoid(self.layer_logits(2, h1, h3)))
        return (v, h1, h2) if h3 is None else (v, h1, h2, h3)

    # ---- mean field -----------------------------------------------------------------

    def _mean_field_init(self, v, init):
        L = self.num_hidden_layers
        lead = v.shape[:-1]
        if isinstance(init, str):
            if init == "uniform":
                return [
                    torch.full(lead + (s,), 0.5, dtype=v.dtype, device=v.device)
                    for s in self.layer_sizes[1:]
                ]
            if init == "bottom_up":
                mus, below = [], v
                for k in range(1, L + 1):
                    scale = 2.0 if k < L else 1.0
                    pre = scale * affine(below, self.weights[k - 1]) + self.biases[k]
                    below = torch.sigmoid(pre)
                    mus.append(below)
                return mus
            raise ValueError(
                f"init must be 'uniform', 'bottom_up' or a sequence of {L} tensors, got {init!r}"
            )
        if len(init) != L:
            raise ValueError(f"init must have {L} tensors (one per hidden layer), got {len(init)}")
        return [
            self._check_layer(m, k, f"init[{k - 1}]", binary=False).expand(lead + m.shape[-1:])
            for k, m in enumerate(init, 1)
        ]

    def mean_field(
        self,
        v: torch.Tensor,
        num_iters: int = 100,
        tol: float | None = 1e-6,
        damping: float = 0.0,
        init: str | Sequence[torch.Tensor] = "uniform",
    ) -> tuple[torch.Tensor, ...]:
        r"""Fixed-point mean-field posterior
        :math:`q(h \mid v) = \prod_k \prod_j \mathrm{Bernoulli}(h^{(k)}_j; \mu^{(k)}_j)` [1]:
        iterates, odd layers then even ones,

        .. math::

            \mu^{(1)} &\leftarrow \sigma\big(c_1 + W_1^\top v + W_2 \mu^{(2)}\big), \quad
            \mu^{(3)} \leftarrow \sigma\big(c_3 + W_3^\top \mu^{(2)}\big), \\
            \mu^{(2)} &\leftarrow \sigma\big(c_2 + W_2^\top \mu^{(1)} + W_3 \mu^{(3)}\big),

        each update damped as :math:`\mu \leftarrow \delta\, \mu_{\mathrm{old}}
        + (1 - \delta)\, \mu_{\mathrm{new}}`. Each layer update maximizes the bound of
        :meth:`variational_lower_bound` over that layer with the others fixed (the bound is
        concave in one layer's :math:`\mu`), so the bound never decreases, damped or not.

        :param v: visible data, shape ``(..., V)`` (batched over leading dims).
        :param int num_iters: at most this many sweeps.
        :param tol: stop once no :math:`\mu` moved more than ``tol`` in a sweep; ``None``
            runs all ``num_iters`` sweeps without a host sync (for training loops).
        :param float damping: :math:`\delta \in [0, 1)`.
        :param init: ``"uniform"`` (all :math:`\mu = 1/2`), ``"bottom_up"`` (one upward pass
            with the weights into non-top layers doubled, the recognition pass of greedy
            pre-training [1]) or a sequence of :math:`L` tensors.
        :returns: ``(mu1, mu2[, mu3])``, each of shape ``(..., H_k)``.
        """
        v = self._check_layer(v, 0, "v", binary=True)
        return self._mean_field(v, num_iters, tol, damping, init)

    def _mean_field(self, v, num_iters=100, tol=1e-6, damping=0.0, init="uniform"):
        if not 0.0 <= damping < 1.0:
            raise ValueError(f"damping must be in [0, 1), got {damping}")
        if num_iters < 0:
            raise ValueError(f"num_iters must be >= 0, got {num_iters}")
        mus = self._mean_field_init(v, init)
        L = self.num_hidden_layers

        def update(old, new):
            return new if damping == 0.0 else torch.lerp(new, old, damping)

        bottom_up = affine(v, self.weights[0], self.biases[1])  # fixed across sweeps
        for _ in range(num_iters):
            old = mus
            mus = list(mus)
            top_down = affine(mus[1], self.weights[1].T)
            mus[0] = update(mus[0], torch.sigmoid(bottom_up + top_down))
            if L == 3:
                mus[2] = update(mus[2], torch.sigmoid(self.layer_logits(3, mus[1])))
            mus[1] = update(
                mus[1], torch.sigmoid(self.layer_logits(2, mus[0], mus[2] if L == 3 else None))
            )
            if tol is not None:
                changes = [(m - o).abs().max() for m, o in zip(mus, old) if m.numel()]
                if not changes or float(torch.stack(changes).max()) <= tol:
                    break
        return tuple(mus)

    def unnormalized_variational_bound(
        self, v: torch.Tensor, mus: Sequence[torch.Tensor] | None = None, **mean_field_kwargs
    ) -> torch.Tensor:
        r"""The mean-field bound without :math:`\log Z`, per example:

        .. math::

            \mathcal B(v; \mu) = \mathbb E_q[-E(v, h)] + \mathcal H(q)
                = -E(v, \mu^{(1)}, \dots, \mu^{(L)})
                  + \sum_{k, j} \mathcal H_{\mathrm{Bern}}\big(\mu^{(k)}_j\big)
                \le \log \tilde p(v).

        :param mus: the mean-field parameters; by default :meth:`mean_field` (keyword
            arguments go there), run without gradients. At a fixed point the bound is
            stationary in :math:`\mu`, so its gradient in the parameters with :math:`\mu`
            held fixed is the gradient of the optimized bound (the positive phase of DBM
            learning [1]).
        """
        v = self._check_layer(v, 0, "v", binary=True)
        if mus is None:
            with torch.no_grad():
                mus = self._mean_field(v, **mean_field_kwargs)
        elif mean_field_kwargs:
            raise ValueError("pass either mus or mean-field keyword arguments, not both")
        if len(mus) != self.num_hidden_layers:
            raise ValueError(f"mus must have {self.num_hidden_layers} tensors, got {len(mus)}")
        mus = [self._check_layer(m, k, f"mus[{k - 1}]", binary=False) for k, m in enumerate(mus, 1)]
        return -self.energy(v, *mus) + sum(_binary_entropy(m) for m in mus)

    def variational_lower_bound(
        self,
        v: torch.Tensor,
        log_z: torch.Tensor | LogPartition | float | None = None,
        mus: Sequence[torch.Tensor] | None = None,
        **mean_field_kwargs,
    ) -> torch.Tensor:
        r"""Mean-field lower bound on :math:`\log p(v)` per example [1, 2]:

        .. math::

            \log p(v) \ge \mathbb E_q[-E(v, h)] + \mathcal H(q) - \log Z
                = \log p(v) - \mathrm{KL}\big(q(h \mid v) \,\|\, p(h \mid v)\big).

        :param log_z: :math:`\log Z` (a tensor, float or
            :class:`~pyrogen.distributions.energy.LogPartition`); by default
            :meth:`log_partition`, exact when :meth:`can_enumerate`, else an AIS estimate
            with the default settings and no data for the base rates (better: pass
            ``log_partition("ais", data=train_data, ...)``). With an AIS
            :math:`\log \hat Z` the result is itself an *estimate* of the bound, not a
            bound (AIS tends to underestimate :math:`\log Z`, which biases this number
            upwards; report it with the AIS standard error and the sandwich).
        :param mus, mean_field_kwargs: as in :meth:`unnormalized_variational_bound`.
        """
        bound = self.unnormalized_variational_bound(v, mus, **mean_field_kwargs)
        if log_z is None:
            log_z = self.log_partition()
        if isinstance(log_z, LogPartition):
            log_z = log_z.log_z
        return bound - torch.as_tensor(log_z, dtype=bound.dtype, device=bound.device)

    # ---- learning ---------------------------------------------------------------------

    def contrastive_divergence(
        self, x, chains, num_steps, *, accumulate=False, scale=1.0, mean_field_iters=10
    ):
        r"""The contrastive-divergence surrogate of a DBM (Salakhutdinov & Hinton 2009 [1]):
        the free energy of the data is intractable, so the positive phase uses the
        mean-field posterior :math:`\mu(x)` (:meth:`mean_field`, ``mean_field_iters`` sweeps
        from the uniform start, no early stop) and the samples' term the joint energy of the
        chains' full states :math:`(\bar v, \bar h)` after ``num_steps`` block-Gibbs sweeps:

        .. math::

            \mathcal S(\theta) = \sum_{i=1}^n E_\theta\big(x_i, \mu(x_i)\big)
                - \frac{n}{m} \sum_{j=1}^m E_\theta(\bar v_j, \bar h_j),

        :math:`\mu` and the samples held fixed. :math:`E` is multilinear, so the first term's
        gradient is that of minus the mean-field bound at a fixed point, and the second's is
        that of :math:`F(\bar v)` in expectation. Returns ``(scale * S, chains, False)`` as
        :meth:`EnergyBasedDistribution.contrastive_divergence` does (no gradient is written
        directly)."""
        state = tuple(t.detach() for t in self.gibbs_chain(tuple(chains), num_steps))
        with torch.no_grad():
            mus = self.mean_field(x, num_iters=mean_field_iters, tol=None)
        n, m = x.shape[0], state[0].shape[0]
        surrogate = self.energy(x, *mus).sum() - (n / m) * self.energy(*state).sum()
        return self._scaled(surrogate, scale), state, False

    # ---- greedy pre-training ------------------------------------------------------------

    @classmethod
    def from_rbms(
        cls, rbms: Sequence, *, gibbs_steps: int = 1000, validate_args: bool | None = None
    ) -> DBM:
        r"""Compose greedily pre-trained RBMs into a DBM with Salakhutdinov & Hinton's
        scaling [1, Sec. 3.1].

        ``rbms`` are 2 or 3 :class:`~pyrogen.distributions.rbm.BernoulliRBM` s, bottom first,
        ``rbms[k]`` with visible layer :math:`x_k` and hidden layer :math:`x_{k+1}` (so
        ``rbms[k].num_hidden == rbms[k + 1].num_visible``). Each must have been trained (CD
        or PCD on the hidden probabilities of the one below, the first on the data) with the
        conditionals whose stored ``weight`` :math:`W` is multiplied by (up, down) =
        :func:`pretraining_scales`, :math:`p(h = 1 \mid v) = \sigma(c + s_\uparrow W^\top v)`
        and :math:`p(v = 1 \mid h) = \sigma(b + s_\downarrow W h)`:

        - bottom RBM (2, 1): :math:`p(h \mid v) = \sigma(c + 2 W^\top v)`,
          :math:`p(v \mid h) = \sigma(b + W h)` (two tied copies of the visible units); the
          weight passed in is :math:`W`, not :math:`2W`;
        - top RBM (1, 2): :math:`p(h \mid v) = \sigma(c + W^\top v)`,
          :math:`p(v \mid h) = \sigma(b + 2 W h)` (two tied copies of the hidden units);
        - middle RBM of a 3-layer DBM (1, 1): an ordinary RBM.

        Composition: :math:`W_1` and :math:`W_L` are the bottom and top RBMs' weights, the
        middle RBM's weight :math:`W'` of a 3-layer DBM is halved, :math:`W_2 = W'/2`; the
        visible bias is the bottom RBM's and the top bias the top RBM's; each intermediate
        layer's bias is the mean of the hidden bias of the RBM below and the visible bias of
        the RBM above. Then every DBM conditional is the average of the two pre-training
        pre-activations of that layer,

        .. math::

            c_k + W_k^\top x_{k-1} + W_{k+1} x_{k+1}
            = \tfrac12\big(c^{\uparrow}_k + s_\uparrow W'^\top_k x_{k-1}\big)
            + \tfrac12\big(b^{\downarrow}_k + s_\downarrow W'_{k+1} x_{k+1}\big),

        and the visible and top conditionals are those of the bottom and top RBMs. In
        particular, with zero weights above the first RBM and matching biases
        (``rbms[1].visible_bias == rbms[0].hidden_bias``) the DBM's marginal over :math:`v`
        is ``rbms[0]``'s (read as the plain RBM with weight :math:`W`).
        """
        from pyrogen.distributions.rbm import BernoulliRBM

        if not isinstance(rbms, Sequence) or len(rbms) not in (2, 3):
            raise ValueError(f"rbms must be a sequence of 2 or 3 BernoulliRBMs, got {rbms!r}")
        for k, rbm in enumerate(rbms):
            if not isinstance(rbm, BernoulliRBM):
                raise ValueError(f"rbms[{k}] must be a BernoulliRBM, got {type(rbm).__name__}")
        for k in range(1, len(rbms)):
            if rbms[k].num_visible != rbms[k - 1].num_hidden:
                raise ValueError(
                    f"rbms[{k - 1}] has {rbms[k - 1].num_hidden} hidden units but rbms[{k}] has "
                    f"{rbms[k].num_visible} visible units; they must match"
                )
        n = len(rbms)
        weights = [rbms[0].weight] + [rbm.weight / 2 for rbm in rbms[1:-1]] + [rbms[-1].weight]
        biases = [rbms[0].visible_bias]
        biases += [(rbms[k - 1].hidden_bias + rbms[k].visible_bias) / 2 for k in range(1, n)]
        biases += [rbms[-1].hidden_bias]
        return cls(weights, biases, gibbs_steps=gibbs_steps, validate_args=validate_args)


def pretraining_scales(index: int, num_rbms: int) -> tuple[float, float]:
    """(up, down) multipliers of the weight of the ``index``-th RBM (0 = bottom) of a stack of
    ``num_rbms`` in greedy DBM pre-training [1]: (2, 1) for the bottom RBM (visible units
    doubled), (1, 2) for the top one (hidden units doubled), (1, 1) in between. See
    :meth:`DBM.from_rbms`."""
    if num_rbms not in (2, 3):
        raise ValueError(f"a DBM is composed of 2 or 3 RBMs, got num_rbms={num_rbms}")
    if not 0 <= index < num_rbms:
        raise ValueError(f"index must be in 0..{num_rbms - 1}, got {index}")
    return (2.0 if index == 0 else 1.0, 2.0 if index == num_rbms - 1 else 1.0)


class DBMAnnealingPath(AnnealingPath):
    r"""AIS path for a :class:`DBM` over the even layers :math:`x = (v, h^{(2)})`, the odd
    layers :math:`(h^{(1)}, h^{(3)})` summed out analytically [1, 3]. (An
    :class:`~pyrogen.distributions.annealing.AnnealingPath`.)

    Base model: :math:`E_A(v, h) = -b_A^\top v`, so :math:`v` has independent base rates
    :math:`\sigma(b_A)` (logits of the smoothed data marginals, or 0) and every hidden unit is
    a fair coin, :math:`Z_A = 2^{H_1 + H_2 + H_3} \prod_i (1 + e^{b_{A,i}})`. The intermediate
    distributions have energies :math:`E_\beta = (1 - \beta) E_A + \beta E`; summing the odd
    layers out,

    .. math::

        \log f_\beta(v, h^{(2)}) = (1 - \beta)\, b_A^\top v + \beta\,\big(b^\top v
            + c_2^\top h^{(2)}\big)
            + \sum_j \mathrm{softplus}\big(\beta\,(c_1 + W_1^\top v + W_2 h^{(2)})_j\big)
            + \sum_l \mathrm{softplus}\big(\beta\,(c_3 + W_3^\top h^{(2)})_l\big),

    with :math:`f_0 = Z_A\, p_A` and :math:`f_1 = f_{\mathrm{even}}`. The transition
    :math:`T_\beta` is block Gibbs on :math:`E_\beta`, odd layers then even ones:

    .. math::

        h^{(1)} &\sim \sigma\big(\beta (c_1 + W_1^\top v + W_2 h^{(2)})\big), \quad
        h^{(3)} \sim \sigma\big(\beta (c_3 + W_3^\top h^{(2)})\big), \\
        v &\sim \sigma\big((1 - \beta) b_A + \beta (b + W_1 h^{(1)})\big), \quad
        h^{(2)} \sim \sigma\big(\beta (c_2 + W_2^\top h^{(1)} + W_3 h^{(3)})\big);

    the odd layers are drawn from their exact conditional and then dropped, so
    :math:`T_\beta` leaves :math:`f_\beta` invariant.

    :param DBM dbm: the target.
    :param data: visible data for the base rates (``None``: :math:`b_A = 0`).
    :param float smoothing: pseudo-count added to the data marginals.
    """

    def __init__(self, dbm: DBM, data: torch.Tensor | None = None, smoothing: float = 0.05):
        self.dbm = dbm
        if data is not None:
            data = dbm._check_layer(data, 0, "data", binary=False)
        self.base_bias = base_rates(data, dbm.visible_bias.detach(), smoothing)
        num_hidden = sum(dbm.layer_sizes[1:])
        self.log_z_base = (F.softplus(self.base_bias).sum() + num_hidden * math.log(2.0)).detach()

    def sample_base(self, num_chains: int):
        probs = torch.sigmoid(self.base_bias).expand(num_chains, -1)
        return (bernoulli_sample(probs), self.dbm._coins((num_chains,), self.dbm.layer_sizes[2]))

    def prepare(self, state):
        d = self.dbm
        v, h2 = state
        pre1 = d.layer_logits(1, v, h2)
        pre3 = d.layer_logits(3, h2) if d.num_hidden_layers == 3 else None
        return v @ self.base_bias, v @ d.visible_bias + h2 @ d.hidden_bias2, pre1, pre3

    def log_f(self, state, cache, beta: float) -> torch.Tensor:
        lin_a, lin_b, pre1, pre3 = cache
        out = (1 - beta) * lin_a + beta * lin_b + F.softplus(beta * pre1).sum(-1)
        if pre3 is not None:
            out = out + F.softplus(beta * pre3).sum(-1)
        return out

    def transition(self, state, cache, beta: float):
        d = self.dbm
        _, _, pre1, pre3 = cache
        h1 = bernoulli_sample(torch.sigmoid(beta * pre1))
        h3 = None if pre3 is None else bernoulli_sample(torch.sigmoid(beta * pre3))
        v_logits = torch.lerp(self.base_bias, d.layer_logits(0, above=h1), beta)
        v = bernoulli_sample(torch.sigmoid(v_logits))
        h2 = bernoulli_sample(torch.sigmoid(beta * d.layer_logits(2, h1, h3)))
        return (v, h2)
