r"""Replicated softmax RBM: an undirected topic model over word-count vectors.

A document of :math:`D` words from a vocabulary of :math:`K` is seen as :math:`D` softmax
units that share their weights [1]; with word counts :math:`v \in \mathbb{N}^K`,
:math:`D = \sum_k v_k`, and binary hidden units :math:`h \in \{0,1\}^H`,

.. math::

    E(v, h) = -\sum_k v_k b_k - \sum_{k,j} v_k W_{kj} h_j - D \sum_j c_j h_j,

with the hidden biases scaled by the document length. The conditionals are

.. math::

    p(h_j = 1 \mid v) = \sigma\Big(D c_j + \sum_k v_k W_{kj}\Big), \qquad
    p(v \mid h) = \mathrm{Multinomial}\big(D,\ \mathrm{softmax}(b + W h)\big).

**Two normalizations.** The model defines one distribution for each length :math:`D`.
:math:`e^{-E(v, h)}` is the weight of *one word sequence* :math:`w_{1:D}` whose counts are
:math:`v` (all :math:`\binom{D}{v} = D! / \prod_k v_k!` orderings of the same words have the
same weight), and :math:`Z_D` sums it over the :math:`K^D` sequences of length :math:`D` and
over :math:`h`. Hence

.. math::

    \log p(v \mid D) = \log \binom{D}{v} - F(v) - \log Z_D, \qquad
    \log p(w_{1:D}) = -F(v) - \log Z_D,

    F(v) = -b^\top v - \sum_j \mathrm{softplus}\Big(D c_j + \sum_k v_k W_{kj}\Big),

    \log Z_D = \operatorname{logsumexp}_{h \in \{0,1\}^H}
        \Big[D\, c^\top h + D \operatorname{logsumexp}_k \big(b_k + (W h)_k\big)\Big].

:meth:`ReplicatedSoftmaxRBM.log_prob` is the first: a proper distribution over the count
vectors of each length (it sums to one over them). :meth:`~ReplicatedSoftmaxRBM.sequence_log_prob`
is the second (the probability of one particular word order; the two differ by the
multinomial coefficient). Accordingly :meth:`~ReplicatedSoftmaxRBM.unnormalized_log_prob` and
:meth:`~ReplicatedSoftmaxRBM.free_energy` include :math:`\log \binom{D}{v}`, and the paper's
:math:`F` is :meth:`~ReplicatedSoftmaxRBM.sequence_free_energy`; the two only differ by a
term that does not depend on the parameters, so their gradients agree.

**Lengths.** :math:`\log Z_D` is exact by enumerating the hidden layer (at most
:attr:`~ReplicatedSoftmaxRBM.max_enumeration` units; one pass serves every length), otherwise
an AIS estimate per length along :class:`ReplicatedSoftmaxAnnealingPath`. ``log_prob`` uses
the :math:`Z_D` of each document's own length. Functions that have no document to read the
length from (:meth:`~ReplicatedSoftmaxRBM.log_partition`, :meth:`~ReplicatedSoftmaxRBM.sample`
from scratch, :meth:`~ReplicatedSoftmaxRBM.annealing_path`) take a ``length`` argument, which
defaults to the ``length`` given to the constructor. Gibbs sampling keeps every chain's length.

The parameters describe one model; ``batch_shape`` only broadcasts it.

**References**

[1] Replicated Softmax: an Undirected Topic Model. Ruslan Salakhutdinov, Geoffrey E. Hinton.
    2009.

[2] On the Quantitative Analysis of Deep Belief Networks. Ruslan Salakhutdinov, Iain Murray.
    2008.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import constraints

from pyrogen.distributions._values import check_event
from pyrogen.distributions.annealing import LogPartition, ais
from pyrogen.distributions.energy import (
    BaseRateAnnealingPath,
    RBMBase,
    affine,
    bernoulli_sample,
)


def _check_length(length, name: str = "length") -> int:
    if isinstance(length, torch.Tensor):
        if length.numel() != 1:
            raise ValueError(
                f"{name} must be one document length, got a tensor of shape {tuple(length.shape)}"
            )
        length = length.item()
    if isinstance(length, bool) or int(length) != length or length < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {length!r}")
    return int(length)


def check_counts(value: torch.Tensor, vocab_size: int, name: str = "value") -> None:
    """Raise a ``ValueError`` unless ``value`` is a tensor of word-count vectors (last dim
    ``vocab_size``, finite non-negative integer entries), naming the first offending entry."""
    check_event(value, vocab_size, name, " of word counts over the vocabulary")
    if value.dtype == torch.bool:
        return
    if value.is_floating_point():
        bad = ~(torch.isfinite(value) & (value >= 0) & (value == value.floor()))
    else:
        bad = value < 0
    if bool(bad.any()):
        idx = tuple(bad.nonzero()[0].tolist())
        kind = "negative" if value[idx] < 0 else "not a non-negative integer"
        raise ValueError(
            f"{name} must hold word counts (non-negative integers); found {value[idx].item()} "
            f"({kind}) at index {idx}"
        )


def log_multinomial_coefficient(counts: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \binom{D}{v} = \log D! - \sum_k \log v_k!` over the last dim."""
    return torch.lgamma(counts.sum(-1) + 1) - torch.lgamma(counts + 1).sum(-1)


def sample_counts(logits: torch.Tensor, lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    r"""One multinomial count vector per row: ``lengths[n]`` words drawn from
    :math:`\mathrm{softmax}(\text{logits}[n])` (``max_length`` bounds the lengths)."""
    counts = torch.zeros_like(logits)
    if max_length == 0:
        return counts
    rows = logits.reshape(-1, logits.shape[-1])
    words = torch.multinomial(torch.softmax(rows, -1), max_length, replacement=True)
    ranks = torch.arange(max_length, device=logits.device)
    keep = (ranks < lengths.reshape(-1, 1)).to(logits.dtype)
    return counts.reshape(rows.shape).scatter_add_(1, words, keep).reshape(logits.shape)


class ReplicatedSoftmaxRBM(RBMBase):
    r"""Replicated softmax RBM over word-count vectors :math:`v \in \mathbb{N}^K` (see module
    docs for the energy and the normalization conventions).

    :param torch.Tensor weight: :math:`W`, shape ``(vocab_size, num_hidden)``.
    :param torch.Tensor visible_bias: :math:`b`, shape ``(vocab_size,)``.
    :param torch.Tensor hidden_bias: :math:`c`, shape ``(num_hidden,)`` (per word: the
        hidden units see :math:`D c`).
    :param int length: default document length :math:`D` of :meth:`log_partition`,
        :meth:`sample` and :meth:`annealing_path` (``None``: they need one passed).
        :meth:`log_prob` always uses each document's own length.
    :param int gibbs_steps: sweeps of :meth:`sample` (default 1000).
    """

    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(
        self,
        weight: torch.Tensor,
        visible_bias: torch.Tensor,
        hidden_bias: torch.Tensor,
        length: int | None = None,
        *,
        gibbs_steps: int = 1000,
        validate_args: bool | None = None,
    ) -> None:
        self.length = None if length is None else _check_length(length)
        super().__init__(
            weight, visible_bias, hidden_bias, gibbs_steps=gibbs_steps, validate_args=validate_args
        )

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    def _resolve_length(self, length) -> int:
        if length is None:
            if self.length is None:
                raise ValueError(
                    "length is needed: a replicated softmax RBM has one distribution (and one "
                    "partition function) per document length; pass length=D here or to the "
                    "constructor"
                )
            return self.length
        return _check_length(length)

    def _check(self, value: torch.Tensor, name: str = "value") -> None:
        if self._validate_args:
            check_counts(value, self.vocab_size, name)

    def _validate_sample(self, value: torch.Tensor) -> None:
        check_counts(value, self.vocab_size)
        super()._validate_sample(value)

    # ---- conditionals ---------------------------------------------------------------

    def _hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        v = v.to(self.weight.dtype)
        flat = v.reshape(-1, self.vocab_size)
        pre = torch.addr(flat @ self.weight, flat.sum(-1), self.hidden_bias)
        return pre.reshape(v.shape[:-1] + (self.num_hidden,))

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        r"""Log-odds of :math:`p(h = 1 \mid v)`: :math:`D c + v^\top W`, :math:`D = \sum_k
        v_k`. Checks the counts when validation is on."""
        self._check(v, "v")
        return self._hidden_logits(v)

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        r"""Logits of the word distribution given :math:`h`: :math:`b + W h`."""
        return affine(h.to(self.weight.dtype), self.weight.T, self.visible_bias)

    def word_given_hidden(self, h: torch.Tensor) -> torch.distributions.Categorical:
        r"""The distribution of each word of a document given :math:`h`:
        :math:`\mathrm{Categorical}(\mathrm{softmax}(b + W h))`."""
        return torch.distributions.Categorical(logits=self.visible_logits(h), validate_args=False)

    def visible_given_hidden(self, h: torch.Tensor, length=None) -> torch.distributions.Multinomial:
        r""":math:`p(v \mid h, D) = \mathrm{Multinomial}(D, \mathrm{softmax}(b + W h))` for one
        length :math:`D` (``length``, default the constructor's)."""
        D = self._resolve_length(length)
        return torch.distributions.Multinomial(
            D, logits=self.visible_logits(h), validate_args=False
        )

    # ---- densities --------------------------------------------------------------------

    def _sequence_log_weight(self, value: torch.Tensor) -> torch.Tensor:
        # -F(v), no checks
        return value @ self.visible_bias + F.softplus(self._hidden_logits(value)).sum(-1)

    def sequence_free_energy(self, value: torch.Tensor) -> torch.Tensor:
        r"""The paper's free energy of any one word sequence with counts ``value``:
        :math:`F(v) = -b^\top v - \sum_j \mathrm{softplus}(D c_j + (v^\top W)_j)`."""
        self._check(value)
        return -self._sequence_log_weight(value.to(self.weight.dtype))

    def unnormalized_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r"""Of the count vector: :math:`\log \binom{D}{v} - F(v)` (so that
        :meth:`free_energy` is minus this)."""
        self._check(value)
        value = value.to(self.weight.dtype)
        return log_multinomial_coefficient(value) + self._sequence_log_weight(value)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        r""":math:`E(v, h) = -b^\top v - v^\top W h - D c^\top h` (of one word sequence)."""
        v, h = v.to(self.weight.dtype), h.to(self.weight.dtype)
        D = v.sum(-1)
        return -((v @ self.weight) * h).sum(-1) - v @ self.visible_bias - D * (h @ self.hidden_bias)

    def unnormalized_log_prob_hidden(self, h: torch.Tensor, length=None) -> torch.Tensor:
        r""":math:`\log \tilde p(h \mid D) = D\, c^\top h + D \operatorname{logsumexp}_k
        (b_k + (W h)_k)` (words summed out, all sequences of length :math:`D`)."""
        D = self._resolve_length(length)
        h = h.to(self.weight.dtype)
        return D * (h @ self.hidden_bias + torch.logsumexp(self.visible_logits(h), -1))

    def can_enumerate(self) -> bool:
        return self.num_hidden <= self.max_enumeration

    def _exact_log_partitions(self, lengths: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`\log Z_D` for each entry of ``lengths``, in one pass over the hidden
        states."""
        lengths = lengths.to(self.weight)

        def fn(states):  # (S, H) -> (len(lengths), S)
            per_word = states @ self.hidden_bias + torch.logsumexp(self.visible_logits(states), -1)
            return lengths.unsqueeze(-1) * per_word

        return self._sum_over_states(self.num_hidden, fn, self.vocab_size)

    def _exact_log_partition(self, length=None) -> torch.Tensor:
        D = self._resolve_length(length)
        return self._exact_log_partitions(self.weight.new_tensor([float(D)]))[0]

    def log_partition(self, method: str = "auto", length=None, **kwargs) -> LogPartition:
        r""":math:`\log Z_D` for documents of ``length`` :math:`D` words (default the
        constructor's ``length``): ``"exact"`` (enumeration of the hidden layer, at most
        :attr:`max_enumeration` units), ``"ais"`` (an *estimate*; keyword arguments go to
        :func:`pyrogen.distributions.annealing.ais` and ``data`` to :meth:`annealing_path`)
        or ``"auto"``.

        Cached per parameter values and length. Exact values are differentiable.
        """
        D = self._resolve_length(length)
        return self._cached_log_partition(method, kwargs, {"length": D})

    partition_group = ("document length", "lengths")

    def log_partition_groups(self, value: torch.Tensor, method: str = "auto", **kwargs):
        """One :math:`\\log Z_D` per distinct document length :math:`D` in ``value``
        (``[(LogPartition, rows of that length)]``; see
        :meth:`~pyrogen.distributions.energy.EnergyBasedDistribution.log_partition_groups`)."""
        lengths, inverse = torch.unique(value.to(self.weight.dtype).sum(-1), return_inverse=True)
        return [
            (self.log_partition(method, length=int(D), **kwargs), (inverse == i).nonzero()[:, 0])
            for i, D in enumerate(lengths.tolist())
        ]

    def _ais_log_partition(self, length=None, data=None, smoothing: float = 0.5, **kwargs):
        return ais(self.annealing_path(data=data, length=length, smoothing=smoothing), **kwargs)

    def _log_normalizer(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log Z_D` of each document's own length :math:`D`: exact in one pass when
        possible, through the cache of :meth:`log_partition` otherwise."""
        lengths, inverse = torch.unique(value.to(self.weight.dtype).sum(-1), return_inverse=True)
        if self.can_enumerate():
            values = self._exact_log_partitions(lengths)
            if not torch.is_grad_enabled():
                for D, log_z in zip(lengths.tolist(), values):
                    key = self._cache_key("exact", {"length": int(D)})
                    self._store_log_partition(key, LogPartition.exact(log_z))
        else:
            values = torch.stack(
                [self.log_partition(length=int(D)).log_z for D in lengths.tolist()]
            )
        return values[inverse]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(v \mid D) = \log \binom{D}{v} - F(v) - \log Z_D`, the probability of
        the count vector among those of its own length :math:`D = \sum_k v_k`. With more than
        :attr:`max_enumeration` hidden units :math:`\log Z_D` is an AIS *estimate* (one run
        per distinct length, cached), and so is this. Checks the counts when validation is
        on."""
        return super().log_prob(value)

    def sequence_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(w_{1:D}) = -F(v) - \log Z_D`: the probability of one word sequence
        whose counts are ``value`` (an estimate when :math:`Z_D` is)."""
        log_p = self.log_prob(value)
        return log_p - log_multinomial_coefficient(value.to(self.weight.dtype))

    def annealing_path(
        self, data: torch.Tensor | None = None, length=None, smoothing: float = 0.5
    ) -> ReplicatedSoftmaxAnnealingPath:
        """The AIS path of :class:`ReplicatedSoftmaxAnnealingPath` for documents of
        ``length`` words (default the constructor's), from the word frequencies of ``data``
        (or uniform)."""
        return ReplicatedSoftmaxAnnealingPath(
            self, self._resolve_length(length), data, smoothing=smoothing
        )

    # ---- Gibbs sampling --------------------------------------------------------------

    def init_chains(self, num_chains: int, length=None):
        """Chains started from documents of ``length`` words (default the constructor's)
        drawn uniformly from the vocabulary."""
        D = self._resolve_length(length)
        logits = self.weight.new_zeros((num_chains, self.vocab_size)).detach()
        return (sample_counts(logits, logits.new_full((num_chains,), float(D)), D),)

    def _gibbs_step(self, v: torch.Tensor, lengths: torch.Tensor, max_length: int):
        h = bernoulli_sample(torch.sigmoid(self._hidden_logits(v)))
        v = sample_counts(self.visible_logits(h), lengths, max_length)
        return (v, h)

    @staticmethod
    def _lengths(v: torch.Tensor):
        lengths = v.sum(-1)
        return lengths, int(lengths.max()) if lengths.numel() else 0

    def gibbs_step(self, state):
        r""":math:`h \sim p(h \mid v)`, then :math:`v \sim p(v \mid h, D)` with each chain's
        own length :math:`D`; state ``(v, h)``."""
        v = state[0].to(self.weight.dtype)
        return self._gibbs_step(v, *self._lengths(v))

    def gibbs_chain(self, state, num_steps: int):
        """``num_steps`` block-Gibbs sweeps from ``state``, every chain keeping its length
        (read once, not at every sweep)."""
        v = state[0].to(self.weight.dtype)
        lengths, max_length = self._lengths(v)
        with torch.no_grad():
            for _ in range(num_steps):
                state = self._gibbs_step(v, lengths, max_length)
                v = state[0]
        return state

    def sample(
        self, sample_shape=(), num_steps: int | None = None, init=None, length=None
    ) -> torch.Tensor:
        """Count vectors of shape ``sample_shape + batch_shape + (vocab_size,)`` after
        ``num_steps`` block-Gibbs sweeps (default ``gibbs_steps``), from ``init`` (count
        vectors, or a Gibbs state, with that many rows; each chain keeps its length) or from
        :meth:`init_chains` with ``length`` words (default the constructor's). Approximate:
        exact only as ``num_steps`` grows."""
        if init is None:
            n = (torch.Size(sample_shape) + self.batch_shape).numel()
            init = self.init_chains(max(1, n), length)
        else:
            self._check(init if isinstance(init, torch.Tensor) else init[0], "init")
        return super().sample(sample_shape, num_steps, init)


class ReplicatedSoftmaxAnnealingPath(BaseRateAnnealingPath):
    r"""AIS path for :class:`ReplicatedSoftmaxRBM` at one document length :math:`D` (after
    Salakhutdinov & Murray's base-rate path, as used in [1] of the module docs).

    The base model :math:`A` has no weights: words drawn from
    :math:`\mathrm{softmax}(b_A)` with :math:`b_A` the log of the (smoothed) word frequencies
    of ``data``, or uniform, and :math:`H` hidden fair coins. The joint at inverse
    temperature :math:`\beta` is :math:`f_\beta(v, h) = \binom{D}{v}
    e^{(1-\beta) b_A^\top v - \beta E(v, h)}`; summing :math:`h` out,

    .. math::

        \log f_\beta(v) = \log \binom{D}{v} + (1-\beta)\, b_A^\top v + \beta\, b^\top v
            + \sum_j \mathrm{softplus}\big(\beta\, (D c_j + (v^\top W)_j)\big),

    so :math:`f_1` is the model's unnormalized count-vector probability and
    :math:`\log Z_A = H \log 2 + D \operatorname{logsumexp}_k b_{A,k}`. The block-Gibbs
    conditionals at temperature :math:`\beta` are

    .. math::

        p_\beta(h_j = 1 \mid v) = \sigma\big(\beta\, (D c_j + (v^\top W)_j)\big), \qquad
        p_\beta(v \mid h) = \mathrm{Multinomial}\big(D,\ \mathrm{softmax}((1-\beta)\, b_A
            + \beta\, (b + W h))\big).

    The coefficient :math:`\binom{D}{v}` is common to every :math:`f_\beta` and cancels in
    the AIS weights, so :meth:`log_f` leaves it out.

    :param ReplicatedSoftmaxRBM rsm: the target model.
    :param int length: the document length :math:`D`.
    :param torch.Tensor data: optional count vectors ``(..., vocab_size)`` for :math:`b_A`.
    :param float smoothing: pseudo-count added to every word's count in ``data``.
    """

    def __init__(
        self,
        rsm: ReplicatedSoftmaxRBM,
        length: int,
        data: torch.Tensor | None = None,
        smoothing: float = 0.5,
    ) -> None:
        self.model = self.rsm = rsm
        self.length = _check_length(length)
        K = rsm.vocab_size
        with torch.no_grad():
            if data is None:
                self.base = rsm.visible_bias.detach().new_zeros(K)
            else:
                if rsm._validate_args:
                    check_counts(data, K, "data")
                counts = data.reshape(-1, K).to(rsm.weight).sum(0) + smoothing
                self.base = counts.log() - counts.sum().log()
            self.log_z_base = rsm.num_hidden * math.log(2.0) + self.length * torch.logsumexp(
                self.base, 0
            )

    @property
    def base_logits(self) -> torch.Tensor:
        """:math:`b_A`, normalized log word frequencies."""
        return self.base

    def hidden_logits(self, v):
        return self.rsm._hidden_logits(v)  # the chains' counts need no checks

    def sample_visible(self, logits):
        D = self.length
        return sample_counts(logits, logits.new_full(logits.shape[:-1], float(D)), D)
