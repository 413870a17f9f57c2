r"""alignDRAW: DRAW conditioned on a caption through an alignment over its words [1].

A caption :math:`y` is read by a bidirectional LSTM into word states :math:`h_1, \dots,
h_n` (:class:`~pyrogen.nn.caption.CaptionEncoder`). At every step the previous decoder state
chooses, by a soft alignment (:class:`~pyrogen.nn.caption.CaptionAlignment`), the words to
draw from, and both the prior and the decoder depend on it:

.. math::

    \alpha^t_k &\propto \exp\big(v^\top \tanh(U h_k + W h^{dec}_{t-1} + b)\big),
    \qquad s_t = \sum_{k=1}^n \alpha^t_k h_k, \\
    z_t &\sim p(z_t \mid z_{<t}, y) = \mathcal N\big(\tanh(W_\mu h^{dec}_{t-1} + b_\mu),\,
        \mathrm{diag}\,\exp(\tanh(W_\sigma h^{dec}_{t-1} + b_\sigma))^2\big), \\
    h^{dec}_t &= \mathrm{LSTM}^{dec}\big(h^{dec}_{t-1}, [z_t, s_t]\big), \qquad
    c_t = c_{t-1} + \mathrm{write}(h^{dec}_t), \\
    x &\sim \mathrm{Bernoulli}\big(\sigma(c_T)\big).

The prior is the learned prior of [1], its mean and log-scale bounded by :math:`\tanh` as
there (the scale lies in :math:`[e^{-1}, e]`). The guide is DRAW's encoder [2],
:math:`q(z_t \mid x, y, z_{<t})`, which sees the caption through :math:`h^{dec}_{t-1}` (its
read window and its input), as in [1]. The bound

.. math::

    \log p(x \mid y) \ge \mathbb E_q\Big[\log p(x \mid y, z_{1:T})
        - \sum_{t=1}^T \mathrm{KL}\big(q(z_t \mid x, y, z_{<t}) \,\|\,
        p(z_t \mid y, z_{<t})\big)\Big]

has a closed-form KL per step between two diagonal Gaussians
(:meth:`~pyrogen.models.draw.DRAW.loss_terms`); as a Pyro pair the model trains with any
Pyro loss and with pyrogen's :class:`~pyrogen.infer.IWAE`, the caption passed as the third
argument (``context``) of model and guide::

    svi.step(images, None, (tokens, lengths))

Defaults are the MNIST-with-captions setting of [1] (:func:`pyrogen.data.load`
``("mnist_captions", split)``): a :math:`60 \times 60` canvas, :math:`T = 32` steps,
:math:`8 \times 8` read and write attention, encoder and decoder LSTMs of 300 units,
:math:`z_t` of 150, a language LSTM of 128 units per direction and an alignment layer of
512 units.

Sample sites are DRAW's (``"z_1"``, ..., ``"z_T"``, ``"x"``, inside ``pyro.plate("data")``).

**References**

[1] Generating Images from Captions with Attention. Elman Mansimov, Emilio Parisotto,
    Jimmy Lei Ba, Ruslan Salakhutdinov. ICLR 2016 (arXiv:1511.02793).

[2] DRAW: A Recurrent Neural Network For Image Generation. Karol Gregor, Ivo Danihelka,
    Alex Graves, Danilo Jimenez Rezende, Daan Wierstra. ICML 2015 (arXiv:1502.04623).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from pyro.infer.util import is_validation_enabled

from pyrogen._checks import check_binary, check_finite
from pyrogen.data.captions import COLOUR_VOCABULARY, VOCABULARY, CaptionVocabulary
from pyrogen.evaluate.dispatch import check_options
from pyrogen.evaluate.importance import importance_log_likelihood
from pyrogen.models.draw import DRAW
from pyrogen.nn.caption import CaptionAlignment, CaptionEncoder

__all__ = ["AlignDRAW", "EncodedCaptions"]


def _stamp(t: Any):
    """A weak reference to a tensor and its version counter (None for anything else)."""
    return (weakref.ref(t), t._version) if isinstance(t, torch.Tensor) else None


class EncodedCaptions(NamedTuple):
    """A batch of captions as the alignment uses it (see :meth:`AlignDRAW.encode_captions`)."""

    #: ``(B, L, 2H)`` word states, zero at padded positions
    states: torch.Tensor
    #: ``(B, L)`` boolean mask of words
    mask: torch.Tensor
    #: ``(B, L, A)`` the query-independent part :math:`U h_k + b` of the alignment scores
    projected: torch.Tensor


class AlignDRAW(DRAW):
    r"""alignDRAW (see module docs): DRAW with the learned prior, its decoder conditioned on
    the sentence vector :math:`s_t` of an alignment over the caption.

    :param int num_features: pixels per example, :math:`C H W` (3600 for a
        :math:`60 \times 60` grey canvas).
    :param image_shape: ``(H, W)`` or ``(C, H, W)``; default a square of one channel.
    :param int vocab_size: words in the vocabulary (22 for MNIST with captions, 26 for the
        coloured variant); id ``vocab_size`` is the padding.
    :param int steps: :math:`T`.
    :param int latent_dim: width of each :math:`z_t`.
    :param int encoder_size: units of DRAW's encoder (inference) LSTM.
    :param int decoder_size: units of the decoder (generative) LSTM.
    :param bool attention: Gaussian read/write attention (True) or whole-image read/write.
    :param int read_size: :math:`N` of the read grid.
    :param int write_size: :math:`N` of the write patch.
    :param int language_size: units per direction of the caption LSTM (word states have
        twice as many).
    :param int embedding_size: width of the word embeddings; default ``language_size``.
    :param int alignment_size: units of the alignment layer.
    :param str likelihood: ``"bernoulli"`` or ``"gaussian"`` (as in DRAW).
    :param pixel_mean: optional training-set pixel means for the initial canvas.
    :param str name: Pyro name prefix; default a fresh ``"align_draw<N>"``.
    """

    name_prefix = "align_draw"

    def __init__(
        self,
        num_features: int = 3600,
        image_shape: Sequence[int] | None = None,
        vocab_size: int = len(VOCABULARY),
        steps: int = 32,
        latent_dim: int = 150,
        encoder_size: int = 300,
        decoder_size: int = 300,
        attention: bool = True,
        read_size: int = 8,
        write_size: int = 8,
        language_size: int = 128,
        embedding_size: int | None = None,
        alignment_size: int = 512,
        likelihood: str = "bernoulli",
        pixel_mean: torch.Tensor | None = None,
        name: str | None = None,
    ) -> None:
        for arg, value in (("language_size", language_size), ("alignment_size", alignment_size)):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        super().__init__(
            num_features,
            image_shape=image_shape,
            steps=steps,
            latent_dim=latent_dim,
            encoder_size=encoder_size,
            decoder_size=decoder_size,
            attention=attention,
            read_size=read_size,
            write_size=write_size,
            prior="learned",
            likelihood=likelihood,
            pixel_mean=pixel_mean,
            condition_size=2 * int(language_size),
            name=name,
        )
        self.caption_encoder = CaptionEncoder(vocab_size, language_size, embedding_size)
        self.alignment = CaptionAlignment(
            self.caption_encoder.output_size, self.decoder_size, alignment_size
        )
        self.vocab_size = self.caption_encoder.vocab_size
        words = {len(VOCABULARY): VOCABULARY, len(COLOUR_VOCABULARY): COLOUR_VOCABULARY}
        #: the captions' vocabulary when ``vocab_size`` is that of MNIST with captions (or its
        #: coloured variant), so that :meth:`sample` takes captions as text; else None
        self.vocabulary = (
            CaptionVocabulary(words[self.vocab_size]) if self.vocab_size in words else None
        )

    # ---------------------------------------------------------------- captions

    @staticmethod
    def _split_captions(captions: Any, name: str = "captions"):
        if isinstance(captions, torch.Tensor):
            return captions, None
        if isinstance(captions, tuple | list) and len(captions) == 2:
            return captions[0], captions[1]
        raise TypeError(
            f"{name}: expected token ids (batch, length) or a pair (token ids, lengths), got "
            f"{type(captions).__name__}"
        )

    def encode_captions(self, captions: Any, batch: int | None = None) -> EncodedCaptions:
        """Word states, mask and projected states of ``captions``: token ids ``(B, L)``
        padded with ``vocab_size``, or a pair ``(token ids, lengths)``. With Pyro's
        validation on, the ids, the lengths and (when ``batch`` is given) the number of
        captions are checked (a :class:`ValueError` naming ``captions``)."""
        if captions is None:
            raise ValueError(
                "captions: AlignDRAW generates from captions; pass token ids (batch, length) "
                "or a pair (token ids, lengths) as context"
            )
        tokens, lengths = self._split_captions(captions)
        if is_validation_enabled():
            # Model and guide see the same caption tensors in a step: check them once (the
            # check costs host synchronisations), as DRAW checks binary data once per batch.
            if not self._captions_checked(tokens, lengths):
                checked = self.caption_encoder.check(tokens, lengths)
                self.__dict__["_checked_captions"] = (_stamp(tokens), _stamp(lengths))
                tokens, lengths = checked
            if batch is not None and tokens.shape[0] != batch:
                raise ValueError(
                    f"captions: got {tokens.shape[0]} captions for a batch of {batch} images"
                )
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
        states, mask = self._observed("caption_encoder")(tokens, lengths, validate=False)
        return EncodedCaptions(states, mask, self._observed("alignment").project(states))

    def _captions_checked(self, tokens: Any, lengths: Any) -> bool:
        """Whether ``tokens`` and ``lengths`` are the tensors (unmodified) checked last."""
        stamps = self.__dict__.get("_checked_captions")
        if stamps is None:
            return False
        return all(
            (t is None and st is None)
            or (
                isinstance(t, torch.Tensor)
                and st is not None
                and st[0]() is t
                and st[1] == t._version
            )
            for t, st in zip((tokens, lengths), stamps, strict=True)
        )

    def alignment_weights(self, h_dec: torch.Tensor, encoded: EncodedCaptions) -> torch.Tensor:
        r"""The alignment :math:`\alpha^t` ``(..., B, L)`` of decoder states ``h_dec``
        ``(..., B, decoder_size)`` over the words of ``encoded`` captions."""
        return self._observed("alignment")(h_dec, *encoded)[1]

    # ---------------------------------------------------------------- DRAW's hooks

    def _encode_context(self, context: Any, batch: int) -> EncodedCaptions:
        return self.encode_captions(context, batch)

    def _condition(self, h_dec: torch.Tensor, context_state: EncodedCaptions) -> torch.Tensor:
        sentence, weights = self._observed("alignment")(h_dec, *context_state)
        record = self.__dict__.get("_alignments")
        if record is not None:
            record.append(weights)
        return sentence

    def _prior(
        self, h_dec: torch.Tensor, context_state: EncodedCaptions
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`\mu = \tanh(W_\mu h + b_\mu)`, :math:`\sigma = \exp\tanh(W_\sigma h +
        b_\sigma)` [1], both linear maps in the prior head."""
        loc, log_scale = self._observed("prior_net").net(h_dec).chunk(2, dim=-1)
        return torch.tanh(loc), torch.exp(torch.tanh(log_scale))

    # ---------------------------------------------------------------- user-facing helpers

    def _as_tokens(self, captions: Any, lengths: Any) -> Any:
        """Text captions (a str or a list of str) as padded token ids; ids passed through."""
        if isinstance(captions, str):
            captions = [captions]
        if isinstance(captions, list | tuple) and captions and isinstance(captions[0], str):
            if self.vocabulary is None:
                raise ValueError(
                    f"captions: text needs a known vocabulary; vocab_size={self.vocab_size} "
                    "is neither MNIST with captions' nor its coloured variant's, pass token ids"
                )
            width = max(len(self.vocabulary.tokenize(c)) for c in captions)
            tokens = torch.stack([self.vocabulary.encode(c, width) for c in captions])
            return tokens.to(self.canvas_bias.device)
        if lengths is None:
            return captions
        if isinstance(captions, tuple | list):
            raise ValueError("lengths: given twice (in captions and as lengths=)")
        return (captions, lengths)

    @torch.no_grad()
    def sample(
        self,
        captions: Any,
        *,
        lengths: torch.Tensor | None = None,
        context: Any = None,
        mean: bool = False,
        temperature: float = 1.0,
        return_canvases: bool = False,
        return_alignments: bool = False,
    ):
        r"""Images generated from captions, one per caption.

        :param captions: token ids ``(B, L)`` padded with ``vocab_size``, a pair
            ``(token ids, lengths)``, or text (a str or a list of str; MNIST-with-captions
            vocabularies only). The protocol form ``sample(num_samples, context=captions)``
            is accepted too.
        :param lengths: ``(B,)`` caption lengths; default the ids before the first padding.
        :param bool mean: return the pixel means :math:`\sigma(c_T)` instead of draws.
        :param float temperature: :math:`\tau`, the factor on the learned prior's standard
            deviations (:meth:`DRAW.sample <pyrogen.models.draw.DRAW.sample>`); 0 follows
            the prior's means, step after step: a typical drawing of each caption.
        :param bool return_canvases: also return :math:`\sigma(c_t)` after every step,
            ``(steps, B, num_features)``.
        :param bool return_alignments: also return the alignment weights of every step,
            ``(steps, B, L)``.
        :returns: ``(B, num_features)`` images, or a tuple ``(images, canvases)``,
            ``(images, alignments)`` or ``(images, canvases, alignments)``.
        """
        num_samples = None
        if isinstance(captions, int) and not isinstance(captions, bool):
            if context is None:
                raise ValueError("captions: sample(num_samples) needs context=captions")
            num_samples, captions = int(captions), context
        elif context is not None:
            raise ValueError("context: pass the captions once (as captions, not context=)")
        captions = self._as_tokens(captions, lengths)
        tokens = self._split_captions(captions)[0]
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"captions: expected a tensor of token ids, got {type(tokens)}")
        if tokens.dim() == 0:
            raise ValueError("captions: expected token ids of shape (batch, length)")
        if num_samples is None:
            num_samples = tokens.shape[0]
        self.caption_encoder.check(*self._split_captions(captions))
        alignments: list[torch.Tensor] = []
        self.__dict__["_alignments"] = alignments if return_alignments else None
        try:
            out = super().sample(
                num_samples,
                context=captions,
                mean=mean,
                temperature=temperature,
                return_canvases=return_canvases,
            )
        finally:
            self.__dict__["_alignments"] = None
        if not return_alignments:
            return out
        out = out if isinstance(out, tuple) else (out,)
        return (*out, torch.stack(alignments))

    def log_likelihood(self, images, captions: Any = None, lengths: Any = None, **options):
        """Importance-sampling estimate of the mean :math:`\\log p(x \\mid y)` with the guide
        as proposal, through :func:`~pyrogen.evaluate.importance_log_likelihood` (the
        protocol's :math:`K = 5000`, ESS and PSIS diagnostics).

        :param images: ``(N, num_features)`` (or image-shaped) images, or a
            :class:`~pyrogen.data.CaptionDataset` (its images, token ids and lengths; then
            ``captions`` is None).
        :param captions: token ids ``(N, L)`` or a pair ``(token ids, lengths)``.
        :param lengths: ``(N,)`` caption lengths, if not in ``captions``.
        :param options: those of :func:`~pyrogen.evaluate.importance_log_likelihood`.
        """
        check_options(importance_log_likelihood, options, "AlignDRAW.log_likelihood", 3)
        if "max_plate_nesting" in options:
            raise TypeError(
                "AlignDRAW.log_likelihood: max_plate_nesting is fixed (1, the data plate)"
            )
        if hasattr(images, "tokens") and hasattr(images, "tensor"):  # a CaptionDataset
            if captions is not None or lengths is not None:
                raise ValueError("captions: a CaptionDataset carries its own captions")
            captions, lengths = images.tokens, images.lengths
            images = images.tensor()
        if captions is None:
            raise ValueError("captions: log p(x | y) needs the captions of the images")
        images = self._flatten(images, "images")
        check_finite(images, "images")
        if self.likelihood == "bernoulli":
            check_binary(images, "images")
        tokens, lengths = self.caption_encoder.check(
            *self._split_captions(self._as_tokens(captions, lengths))
        )
        if tokens.shape[0] != images.shape[0]:
            raise ValueError(
                f"captions: got {tokens.shape[0]} captions for {images.shape[0]} images"
            )
        return self.guide_importance_log_likelihood(images, context=(tokens, lengths), **options)
