r"""Caption encoders for text-conditioned image models: a bidirectional LSTM over the words
of a caption and a soft alignment over its word states, as in alignDRAW [1] (after the
alignment model of Bahdanau et al. [2]).

**Encoder.** A caption :math:`y = (y_1, \dots, y_L)` of token ids, of true length
:math:`n \le L` and padded after its last word with the padding id, is embedded,
:math:`e_k = E[y_k]`, and read in both directions by two LSTMs started from zero states:

.. math::

    \overrightarrow h_k = \mathrm{LSTM}^{\rightarrow}(\overrightarrow h_{k-1}, e_k),
    \quad k = 1, \dots, n, \qquad
    \overleftarrow h_k = \mathrm{LSTM}^{\leftarrow}(\overleftarrow h_{k+1}, e_k),
    \quad k = n, \dots, 1,

and word :math:`k` is represented by :math:`h_k = [\overrightarrow h_k; \overleftarrow h_k]`.
The backward pass starts at the caption's own last word :math:`n`, not at position
:math:`L`: each caption is reversed within its length and read by a forward LSTM, so that
padding never reaches a word state (no packed sequences, no host synchronisation). Padded
positions get :math:`h_k = 0` and a false mask.

**Alignment.** Given a query :math:`q` (alignDRAW: the previous decoder state
:math:`h^{dec}_{t-1}`), every word gets a score and the weights are their softmax over the
caption's words,

.. math::

    e_k = v^\top \tanh(U h_k + W q + b), \qquad
    \alpha_k = \frac{\exp e_k}{\sum_{j \le n} \exp e_j} \quad (\alpha_k = 0 \text{ for } k > n),
    \qquad s = \sum_{k=1}^{n} \alpha_k h_k ,

the sentence vector :math:`s`. The scores of padded positions are set to :math:`-\infty`
before the softmax, so their weights are exactly zero. :math:`U h_k + b` does not depend on
the query and is computed once per caption (:meth:`CaptionAlignment.project`).

Both modules are plain torch (no Pyro) and broadcast the query over leading dimensions
(particles): a query ``(..., B, Q)`` against words ``(B, L, 2H)`` gives weights
``(..., B, L)`` and sentence vectors ``(..., B, 2H)``.

**References**

[1] Generating Images from Captions with Attention. Elman Mansimov, Emilio Parisotto,
    Jimmy Lei Ba, Ruslan Salakhutdinov. ICLR 2016 (arXiv:1511.02793).

[2] Neural Machine Translation by Jointly Learning to Align and Translate. Dzmitry Bahdanau,
    Kyunghyun Cho, Yoshua Bengio. ICLR 2015 (arXiv:1409.0473).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CaptionAlignment", "CaptionEncoder"]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class CaptionEncoder(nn.Module):
    r"""Bidirectional LSTM over the word embeddings of padded captions (see module docs).

    :param int vocab_size: number of words :math:`V`; ids ``0 .. V - 1`` are words and
        ``V`` is the padding id (:attr:`pad_id`), so the embedding has :math:`V + 1` rows.
    :param int hidden_size: :math:`H`, units of each direction (the word states have
        :math:`2H`, :attr:`output_size`).
    :param int embedding_size: width of the word embeddings; default ``hidden_size``.
    """

    def __init__(
        self, vocab_size: int, hidden_size: int = 128, embedding_size: int | None = None
    ) -> None:
        super().__init__()
        self.vocab_size = _positive_int(vocab_size, "vocab_size")
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        embedding_size = hidden_size if embedding_size is None else embedding_size
        self.embedding_size = _positive_int(embedding_size, "embedding_size")
        self.embedding = nn.Embedding(
            self.vocab_size + 1, self.embedding_size, padding_idx=self.vocab_size
        )
        self.forward_lstm = nn.LSTM(self.embedding_size, self.hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(self.embedding_size, self.hidden_size, batch_first=True)

    @property
    def pad_id(self) -> int:
        """The padding id, ``vocab_size``."""
        return self.vocab_size

    @property
    def output_size(self) -> int:
        """Width of a word state, :math:`2H`."""
        return 2 * self.hidden_size

    def check(
        self, tokens, lengths=None, name: str = "captions"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, lengths)`` checked: ``tokens`` an integer ``(B, L)`` tensor of ids in
        ``0 .. vocab_size`` (the last is the padding), ``lengths`` ``(B,)`` in ``1 .. L`` with
        no padding id inside a caption; ``lengths=None`` counts the ids before the first
        padding. A :class:`ValueError` (:class:`TypeError` for a non-tensor) naming ``name``
        otherwise. Costs host synchronisations (callers skip it when not validating, after
        the first call)."""
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor of token ids, got {type(tokens).__name__}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise ValueError(f"{name}: expected integer token ids, got dtype {tokens.dtype}")
        if tokens.dim() != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ValueError(
                f"{name}: expected token ids of shape (batch, length) with batch, length >= 1, "
                f"got {tuple(tokens.shape)}"
            )
        bad = (tokens < 0) | (tokens > self.pad_id)
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name}: token id {int(tokens[index])} at index {index} is outside the "
                f"vocabulary (words 0-{self.vocab_size - 1}, padding {self.pad_id})"
            )
        if lengths is None:
            lengths = self.lengths(tokens)
        lengths = self._check_lengths(tokens, lengths, name)
        inside = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]
        if bool(((tokens == self.pad_id) & inside).any()):
            row = int(((tokens == self.pad_id) & inside).any(-1).nonzero()[0, 0])
            raise ValueError(
                f"{name}: caption {row} has the padding id {self.pad_id} before its end "
                f"(length {int(lengths[row])})"
            )
        return tokens, lengths

    def _check_lengths(self, tokens: torch.Tensor, lengths, name: str) -> torch.Tensor:
        what = f"{name} lengths"
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.as_tensor(lengths)
        if lengths.is_floating_point() or lengths.shape != tokens.shape[:1]:
            raise ValueError(
                f"{what}: expected {tokens.shape[0]} integer lengths, got dtype "
                f"{lengths.dtype} and shape {tuple(lengths.shape)}"
            )
        lengths = lengths.to(tokens.device)
        if bool(((lengths < 1) | (lengths > tokens.shape[1])).any()):
            raise ValueError(
                f"{what}: every caption needs a length between 1 and {tokens.shape[1]} "
                f"(the padded width), got {lengths.tolist()}"
            )
        return lengths

    def lengths(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B,)`` lengths of padded captions: the number of ids before the first padding."""
        return (tokens != self.pad_id).long().cumprod(-1).sum(-1)

    @staticmethod
    def reverse_within_length(lengths: torch.Tensor, width: int) -> torch.Tensor:
        """``(B, width)`` positions that reverse each caption within its length and leave the
        padding in place: :math:`n - 1 - k` for :math:`k < n`, else :math:`k` (an
        involution: applying it twice is the identity)."""
        k = torch.arange(width, device=lengths.device)
        return torch.where(k < lengths[:, None], lengths[:, None] - 1 - k, k)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None, validate: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Word states of a batch of padded captions.

        :param tokens: ``(B, L)`` integer token ids, padded with :attr:`pad_id`.
        :param lengths: ``(B,)`` true lengths; default: the ids before the first padding.
        :param bool validate: run :meth:`check` (a few host synchronisations).
        :returns: ``(states, mask)``: ``(B, L, 2H)`` word states :math:`h_k`
            (exactly 0 at padded positions) and the ``(B, L)`` boolean mask of words.
        """
        if validate:
            tokens, lengths = self.check(tokens, lengths)
        elif lengths is None:
            lengths = self.lengths(tokens)
        lengths = lengths.to(tokens.device)
        width = tokens.shape[1]
        mask = torch.arange(width, device=tokens.device) < lengths[:, None]
        # padded positions read the padding row, whatever id they hold
        ids = torch.where(mask, tokens, torch.full_like(tokens, self.pad_id))
        embedded = self.embedding(ids)
        forward_states, _ = self.forward_lstm(embedded)
        order = self.reverse_within_length(lengths, width)
        gather = order[..., None].expand(-1, -1, self.embedding_size)
        backward_reversed, _ = self.backward_lstm(embedded.gather(1, gather))
        backward_states = backward_reversed.gather(
            1, order[..., None].expand(-1, -1, self.hidden_size)
        )
        states = torch.cat([forward_states, backward_states], dim=-1)
        return states * mask[..., None].to(states.dtype), mask


class CaptionAlignment(nn.Module):
    r"""Soft alignment of a query over word states (see module docs):
    :math:`e_k = v^\top\tanh(U h_k + W q + b)`, :math:`\alpha = \mathrm{softmax}(e)` over the
    words, :math:`s = \sum_k \alpha_k h_k`.

    :param int word_size: width of a word state :math:`h_k`.
    :param int query_size: width of the query :math:`q`.
    :param int hidden_size: width of the alignment layer (the rows of :math:`U`, :math:`W`).
    """

    def __init__(self, word_size: int, query_size: int, hidden_size: int = 512) -> None:
        super().__init__()
        self.word_size = _positive_int(word_size, "word_size")
        self.query_size = _positive_int(query_size, "query_size")
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        #: :math:`U` and :math:`b`
        self.word_proj = nn.Linear(self.word_size, self.hidden_size)
        #: :math:`W`
        self.query_proj = nn.Linear(self.query_size, self.hidden_size, bias=False)
        #: :math:`v`
        self.score = nn.Linear(self.hidden_size, 1, bias=False)

    def project(self, words: torch.Tensor) -> torch.Tensor:
        r""":math:`U h_k + b` for word states ``(B, L, word_size)``: the part of the scores that
        does not depend on the query, computed once per caption."""
        return self.word_proj(words)

    def forward(
        self,
        query: torch.Tensor,
        words: torch.Tensor,
        mask: torch.Tensor,
        projected: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The sentence vector and the alignment weights.

        :param query: ``(..., B, query_size)``.
        :param words: ``(B, L, word_size)`` word states (zero at padded positions).
        :param mask: ``(B, L)`` boolean, true at words; every row needs a true entry.
        :param projected: :meth:`project` of ``words``, if already computed.
        :returns: ``(sentence, weights)``: ``(..., B, word_size)`` and ``(..., B, L)``, the
            weights summing to one over each caption and exactly zero where ``mask`` is false.
        """
        if projected is None:
            projected = self.project(words)
        hidden = torch.tanh(projected + self.query_proj(query).unsqueeze(-2))
        scores = self.score(hidden).squeeze(-1)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        sentence = (weights.unsqueeze(-1) * words).sum(-2)
        return sentence, weights
