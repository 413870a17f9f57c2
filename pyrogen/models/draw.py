r"""DRAW: a recurrent variational autoencoder that writes onto a canvas [1].

The generative model draws :math:`T` latent vectors one after the other; a decoder LSTM
turns each into an update of a canvas :math:`c_t` through a write operation (with or
without attention, :mod:`pyrogen.nn.attention`), and the final canvas parameterises the
pixels:

.. math::

    z_t &\sim p(z_t \mid h^{dec}_{t-1}), \\
    h^{dec}_t &= \mathrm{LSTM}^{dec}\big(h^{dec}_{t-1}, [z_t, s_t]\big), \\
    c_t &= c_{t-1} + \mathrm{write}(h^{dec}_t), \\
    x &\sim \mathrm{Bernoulli}\big(\sigma(c_T)\big)
        \quad\text{(logits } c_T\text{)}.

The prior is :math:`\mathcal N(0, I)` as in [1] (``prior="standard"``) or a diagonal
Gaussian whose mean and log-scale are a linear map of :math:`h^{dec}_{t-1}`
(``prior="learned"``, the prior of alignDRAW [2]). :math:`s_t` is an optional conditioning
vector (empty in DRAW; alignDRAW's sentence representation from an alignment over the
caption, driven by :math:`h^{dec}_{t-1}`). With ``likelihood="gaussian"`` (grey levels in
:math:`[0, 1]`) the pixels are :math:`\mathcal N(\sigma(c_T), \mathrm{diag}(s^2))` with a
learned per-pixel scale :math:`s`, a density rather than a probability.

The guide (the encoder of [1]) reads the image and the error image
:math:`\hat x_t = x - \sigma(c_{t-1})` at a window chosen by the previous decoder state:

.. math::

    r_t &= \mathrm{read}(x, \hat x_t, h^{dec}_{t-1}), \\
    h^{enc}_t &= \mathrm{LSTM}^{enc}\big(h^{enc}_{t-1}, [r_t, h^{dec}_{t-1}]\big), \\
    q(z_t \mid x, z_{<t}) &= \mathcal N\big(\mu(h^{enc}_t), \mathrm{diag}\,
        \sigma(h^{enc}_t)^2\big), \qquad \mu, \log\sigma \text{ linear in } h^{enc}_t .

The decoder's states are part of the guide's computation (the encoder sees what has been
drawn so far), so the guide runs the decoder too. When the model is then replayed on the
guide's draws (every Pyro ELBO, pyrogen's IWAE, importance sampling), it does not run the
decoder a second time: the guide records, for each :math:`z_t` it drew, the decoder state
and canvas it computed from it, and the model uses that record when ``pyro.sample``
returns the very same tensor object, the model's state is the one the guide started that
step from, the ``context`` argument is the same object and no parameter has been changed
in place since the guide ran. The model's computation graph is then the guide's, so the
bound and all its gradients are those of the recomputation (the same functions of the
same inputs), at the cost of one decoder pass instead of two. In every other case
(sampling from the prior, values changed by a handler such as ``poutine.condition``, a
trace from an earlier guide call) the model computes the states itself. The record is
emptied at the start of every guide call, is not copied with the model
(``copy.deepcopy``, pickling) and holds one guide call's tensors at most.

The negative bound :math:`\mathcal L = \mathcal L^x + \mathcal L^z` of [1] is

.. math::

    \mathcal L^x = -\log D(x \mid c_T), \qquad
    \mathcal L^z = \sum_{t=1}^T \mathrm{KL}\big(q(z_t \mid \cdot)\,\|\,p(z_t \mid \cdot)\big)
    = \frac12 \sum_{t=1}^T \big(\mu_t^2 + \sigma_t^2 - \log\sigma_t^2\big) - \frac T2

(the closed form for the standard prior, summed over the latent dimensions), returned term
by term by :meth:`DRAW.loss_terms`; as a Pyro model/guide pair it trains with any Pyro loss
(``Trace_ELBO``, ``TraceMeanField_ELBO``, ``RenyiELBO``) and with pyrogen's
:class:`~pyrogen.infer.IWAE`.

Sample sites (stable names): ``"z_1"``, ..., ``"z_T"`` (one site per step, each
``(batch, latent_dim)`` with ``to_event(1)``) and the observed ``"x"`` (flattened pixels,
``(batch, num_features)``), all inside ``pyro.plate("data")``; the steps run under
``pyro.markov``.

**Extending.** Subclasses (alignDRAW) override three hooks and pass ``condition_size``:
:meth:`DRAW._encode_context` (the conditioning input, once per call), :meth:`DRAW._condition`
(:math:`s_t` from :math:`h^{dec}_{t-1}`) and :meth:`DRAW._prior` (the prior's mean and scale
from :math:`h^{dec}_{t-1}`).

**References**

[1] DRAW: A Recurrent Neural Network For Image Generation. Karol Gregor, Ivo Danihelka,
    Alex Graves, Danilo Jimenez Rezende, Daan Wierstra. ICML 2015 (arXiv:1502.04623).

[2] Generating Images from Captions with Attention. Elman Mansimov, Emilio Parisotto,
    Jimmy Lei Ba, Ruslan Salakhutdinov. ICLR 2016 (arXiv:1511.02793).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import pyro_method
from pyro.poutine.messenger import Messenger
from torch import nn

from pyrogen.distributions import IndependentBernoulli
from pyrogen.evaluate.dispatch import check_options
from pyrogen.evaluate.importance import importance_log_likelihood
from pyrogen.models.base import GenerativeModel, logit_of_mean
from pyrogen.nn import GaussianHead
from pyrogen.nn.attention import FullRead, FullWrite, GaussianRead, GaussianWrite

__all__ = ["DRAW", "lstm_step"]

PRIORS = ("standard", "learned")
LIKELIHOODS = ("bernoulli", "gaussian")


class _TemperedLatents(Messenger):
    r"""Replaces every unobserved :math:`z_t` site's :math:`\mathcal N(\mu, \sigma^2)` by
    :math:`\mathcal N(\mu, \tau^2\sigma^2)`, and by a point mass at :math:`\mu` when
    :math:`\tau = 0` (used by :meth:`DRAW.sample`)."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def _process_message(self, msg) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or not msg["name"].startswith("z_"):
            return
        normal = msg["fn"].base_dist
        if self.temperature == 0.0:
            msg["fn"] = dist.Delta(normal.loc, event_dim=1)
        else:
            msg["fn"] = dist.Normal(normal.loc, self.temperature * normal.scale).to_event(1)


def lstm_step(
    cell: nn.LSTMCell, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of ``cell`` with any leading batch dimensions (particles, examples):
    ``inputs`` ``(..., input_size)`` and the state's ``(h, c)`` ``(..., hidden_size)``
    broadcast against each other; returns the new ``(h, c)`` with the broadcast shape."""
    h, c = state
    if inputs.dim() == 2 and inputs.shape[0] == h.shape[0] == c.shape[0] and h.dim() == 2:
        return cell(inputs, (h, c))  # the common case, without broadcasting
    lead = torch.broadcast_shapes(inputs.shape[:-1], h.shape[:-1], c.shape[:-1])
    flat = [t.expand(*lead, t.shape[-1]).reshape(-1, t.shape[-1]) for t in (inputs, h, c)]
    h, c = cell(flat[0], (flat[1], flat[2]))
    return h.reshape(*lead, -1), c.reshape(*lead, -1)


class _DecoderRecord:
    """The decoder states of the last guide call, keyed on the identity of each drawn
    :math:`z_t` (see :class:`DRAW`'s module docs). Never copied: a deep copy or an unpickled
    model starts with an empty record."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        #: ``id(z_t)`` -> ``(z_t, state before the step, state after it)``
        self.steps: dict[int, tuple[torch.Tensor, dict, dict]] = {}
        self.initial: dict | None = None
        self.context: Any = None
        self.versions: tuple[int, ...] = ()

    def start(self, initial: dict, context: Any, versions: tuple[int, ...]) -> None:
        self.clear()
        self.initial, self.context, self.versions = initial, context, versions

    def lookup(self, z: torch.Tensor, state: dict, first: bool) -> dict | None:
        """The guide's state after decoding ``z``, if ``z`` is the tensor the guide drew and
        ``state`` the state it decoded it from (the guide's initial one when ``first``)."""
        entry = self.steps.get(id(z))
        if entry is None or entry[0] is not z:
            return None
        before = entry[1]
        if before is state or (
            first
            and before is self.initial
            and all(before[k].shape == state[k].shape for k in ("h_dec", "c_dec", "canvas"))
        ):
            return entry[2]
        return None

    def __deepcopy__(self, memo) -> _DecoderRecord:
        return _DecoderRecord()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.clear()


class DRAW(GenerativeModel):
    r"""Deep Recurrent Attentive Writer (see module docs).

    :param int num_features: :math:`D = C H W`, pixels per example.
    :param image_shape: ``(H, W)`` or ``(C, H, W)``; default a square of one channel.
    :param int steps: :math:`T`, glimpses (64 for MNIST in [1]).
    :param int latent_dim: width of each :math:`z_t` (100 in [1]).
    :param int encoder_size: encoder LSTM units (256 in [1]).
    :param int decoder_size: decoder LSTM units (256 in [1]).
    :param bool attention: Gaussian read and write attention (True) or reading the whole
        image and writing the whole canvas by a linear map (False).
    :param int read_size: :math:`N` of the read grid (2 for MNIST in [1]).
    :param int write_size: :math:`N` of the write patch (5 for MNIST in [1]).
    :param str prior: ``"standard"`` (:math:`\mathcal N(0, I)`) or ``"learned"``
        (:math:`p(z_t \mid h^{dec}_{t-1})`).
    :param str likelihood: ``"bernoulli"`` (binary pixels, logits :math:`c_T`) or
        ``"gaussian"`` (grey levels, mean :math:`\sigma(c_T)`, learned per-pixel scale).
    :param pixel_mean: optional ``(D,)`` training-set pixel means: the initial canvas
        :math:`c_0` (a learned bias) starts at their log-odds, so the untrained model is the
        factorised marginal.
    :param int condition_size: width of the conditioning vector :math:`s_t` (0 in DRAW;
        for subclasses).
    :param str name: Pyro name prefix of the parameters; default a fresh ``"draw<N>"``.
    """

    name_prefix = "draw"
    has_mean_samples = True
    #: whether the model, replayed on the guide's draws, reuses the decoder states the guide
    #: computed (module docs); set False on an instance to recompute them
    reuse_decoder_states = True

    def __init__(
        self,
        num_features: int = 784,
        image_shape: Sequence[int] | None = None,
        steps: int = 64,
        latent_dim: int = 100,
        encoder_size: int = 256,
        decoder_size: int = 256,
        attention: bool = True,
        read_size: int = 2,
        write_size: int = 5,
        prior: str = "standard",
        likelihood: str = "bernoulli",
        pixel_mean: torch.Tensor | None = None,
        condition_size: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(num_features, image_shape, name)
        if len(self.image_shape) not in (2, 3):
            raise ValueError(
                f"image_shape must be (H, W) or (C, H, W), got {self.image_shape} "
                f"(pass image_shape= for num_features={self.num_features})"
            )
        for arg, value in (
            ("steps", steps),
            ("latent_dim", latent_dim),
            ("encoder_size", encoder_size),
            ("decoder_size", decoder_size),
            ("read_size", read_size),
            ("write_size", write_size),
        ):
            if int(value) != value or int(value) < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        if int(condition_size) != condition_size or condition_size < 0:
            raise ValueError(
                f"condition_size must be a non-negative integer, got {condition_size!r}"
            )
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        C, H, W = (1, *self.image_shape) if len(self.image_shape) == 2 else self.image_shape
        self.canvas_shape = (C, H, W)
        self.steps = int(steps)
        self.latent_dim = int(latent_dim)
        self.encoder_size = int(encoder_size)
        self.decoder_size = int(decoder_size)
        self.condition_size = int(condition_size)
        self.attention = bool(attention)
        self.prior = prior
        self.likelihood = likelihood
        if self.attention:
            self.reader = GaussianRead(decoder_size, H, W, read_size, C)
            self.writer = GaussianWrite(decoder_size, H, W, write_size, C)
        else:
            self.reader = FullRead(H, W, C)
            self.writer = FullWrite(decoder_size, H, W, C)
        self.encoder = nn.LSTMCell(self.reader.output_size + self.decoder_size, self.encoder_size)
        self.posterior = GaussianHead(self.encoder_size, (), self.latent_dim)
        self.decoder = nn.LSTMCell(self.latent_dim + self.condition_size, self.decoder_size)
        if prior == "learned":
            self.prior_net = GaussianHead(self.decoder_size, (), self.latent_dim)
        #: :math:`c_0`, the initial canvas (a learned bias)
        self.canvas_bias = nn.Parameter(torch.zeros(C, H, W))
        if likelihood == "gaussian":
            #: log of the per-pixel scale of the Gaussian output
            self.log_output_scale = nn.Parameter(torch.full((self.num_features,), math.log(0.1)))
        if pixel_mean is not None:
            self.init_output_bias(pixel_mean)
        # outside the module's state (not a buffer, not copied); see _DecoderRecord
        self.__dict__["_decoder_record"] = _DecoderRecord()

    def _observed(self, name: str):
        """As :meth:`GenerativeModel._observed`, fetched once per call of model or guide
        (:meth:`_one_fetch`): reading a submodule through Pyro registers all its
        parameters, and the decoder, the writer, the alignment and the prior are used at
        every one of the :math:`T` steps."""
        memo = self.__dict__.get("_fetched")
        if memo is None:
            return super()._observed(name)
        found = memo.get(name)
        if found is None:
            found = memo[name] = super()._observed(name)
        return found

    @contextlib.contextmanager
    def _one_fetch(self):
        """Within it, :meth:`_observed` returns what it returned the first time for each
        name (one call of model or guide: one set of Pyro handlers). Re-entrant: an inner
        scope shares the outer one's fetches."""
        if self.__dict__.get("_fetched") is not None:
            yield
            return
        self.__dict__["_fetched"] = {}
        try:
            yield
        finally:
            self.__dict__["_fetched"] = None

    def _parameter_versions(self) -> tuple[int, ...]:
        """In-place version counters of all parameters: an optimiser step between a guide
        call and the model's replay invalidates the guide's decoder record."""
        return tuple(p._version for p in self.parameters())

    def _record_of(self, context: Any) -> _DecoderRecord | None:
        """The guide's decoder record if the model may use it for ``context``."""
        record = self.__dict__.get("_decoder_record")
        if (
            record is None
            or not self.reuse_decoder_states
            or not record.steps
            or record.context is not context
            or record.versions != self._parameter_versions()
        ):
            return None
        return record

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        r"""Set :math:`c_0` to :math:`\log\frac{m}{1-m}` of the pixel means ``m`` (clamped
        to ``[eps, 1 - eps]``)."""
        self.canvas_bias.copy_(logit_of_mean(pixel_mean, self.canvas_bias, eps))

    # ---------------------------------------------------------------- hooks (alignDRAW)

    def _encode_context(self, context: Any, batch: int) -> Any:
        """The conditioning input, prepared once per call of model or guide and handed to
        :meth:`_condition` at every step. DRAW is unconditional: ``context`` must be None."""
        self._check_context(context)
        return None

    def _condition(self, h_dec: torch.Tensor, context_state: Any) -> torch.Tensor | None:
        r""":math:`s_t` ``(..., condition_size)`` from :math:`h^{dec}_{t-1}`, or None (DRAW)."""
        return None

    def _prior(self, h_dec: torch.Tensor, context_state: Any) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Mean and scale of :math:`p(z_t \mid h^{dec}_{t-1})`, ``(..., latent_dim)`` each."""
        if self.prior == "learned":
            return self._observed("prior_net")(h_dec)
        loc = h_dec.new_zeros(h_dec.shape[:-1] + (self.latent_dim,))
        return loc, torch.ones_like(loc)

    # ---------------------------------------------------------------- the recurrence

    def _initial_state(self, batch: int, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        zeros_dec = ref.new_zeros(batch, self.decoder_size)
        return {
            "h_dec": zeros_dec,
            "c_dec": zeros_dec,
            "canvas": self._observed("canvas_bias").expand(batch, *self.canvas_shape),
        }

    def _decode(self, z: torch.Tensor, state: dict, context_state: Any) -> dict:
        """One decoder step: :math:`h^{dec}_t` from :math:`z_t` (and :math:`s_t`), then the
        canvas update."""
        s = self._condition(state["h_dec"], context_state)
        inputs = z if s is None else self._concat(z, s)
        h, c = lstm_step(self._observed("decoder"), inputs, (state["h_dec"], state["c_dec"]))
        canvas = state["canvas"] + self._observed("writer")(h)
        return {**state, "h_dec": h, "c_dec": c, "canvas": canvas}

    @staticmethod
    def _concat(*tensors: torch.Tensor) -> torch.Tensor:
        first = tensors[0].shape[:-1]
        if all(t.shape[:-1] == first for t in tensors[1:]):
            return torch.cat(tensors, dim=-1)
        lead = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
        return torch.cat([t.expand(*lead, t.shape[-1]) for t in tensors], dim=-1)

    def _observation(self, canvas: torch.Tensor):
        """:math:`D(x \\mid c_T)` for the final canvas ``(..., C, H, W)``."""
        logits = canvas.flatten(-3)
        if self.likelihood == "bernoulli":
            return IndependentBernoulli(logits)
        scale = self._observed("log_output_scale").exp()
        return dist.Normal(torch.sigmoid(logits), scale).to_event(1)

    def _flatten(self, x, name: str = "x") -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() == 4 and tuple(x.shape[1:]) == self.canvas_shape:
            return x.reshape(x.shape[0], self.num_features)
        return super()._flatten(x, name)

    def _data(self, x, name: str = "x") -> torch.Tensor:
        return (
            self._binary_input(x, name)
            if self.likelihood == "bernoulli"
            else self._flatten(x, name)
        )

    # ---------------------------------------------------------------- model and guide

    @pyro_method
    def model(
        self, x: torch.Tensor | None = None, num_samples: int | None = None, context: Any = None
    ) -> torch.Tensor:
        r"""The generative model :math:`p(x, z_{1:T})` (see module docs).

        :param x: data ``(batch, num_features)`` or image-shaped; ``None`` to sample.
        :param int num_samples: batch size when ``x`` is ``None``.
        :param context: conditioning input (None for DRAW; subclasses).
        :returns: the final canvas :math:`c_T` flattened, ``(..., batch, num_features)``
            (the Bernoulli logits).
        """
        with self._one_fetch():
            return self._model(x, num_samples, context)

    def _model(self, x, num_samples, context) -> torch.Tensor:
        if x is None:
            if num_samples is None:
                raise ValueError("model(x=None) needs num_samples")
            batch, ref = int(num_samples), self.canvas_bias
        else:
            x = self._data(x)
            batch, ref = x.shape[0], x
        context_state = self._encode_context(context, batch)
        state = self._initial_state(batch, ref)
        record = self.__dict__.get("_record")
        decoded = self._record_of(context) if x is not None else None
        with pyro.plate("data", batch):
            for t in pyro.markov(range(self.steps)):
                loc, scale = self._prior(state["h_dec"], context_state)
                z = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1))
                cached = None if decoded is None else decoded.lookup(z, state, t == 0)
                state = self._decode(z, state, context_state) if cached is None else cached
                if record is not None:
                    record.append(state["canvas"])
            pyro.sample("x", self._observation(state["canvas"]), obs=x)
        return state["canvas"].flatten(-3)

    @pyro_method
    def guide(
        self, x: torch.Tensor, num_samples: int | None = None, context: Any = None
    ) -> torch.Tensor:
        r"""The encoder :math:`q(z_{1:T} \mid x) = \prod_t q(z_t \mid x, z_{<t})` (see module
        docs); returns the final canvas, flattened."""
        with self._one_fetch():
            return self._guide(x, context)

    def _guide(self, x, context) -> torch.Tensor:
        x = self._data(x)
        batch = x.shape[0]
        image = x.reshape(batch, *self.canvas_shape)
        context_state = self._encode_context(context, batch)
        state = self._initial_state(batch, x)
        decoded = self.__dict__["_decoder_record"]
        decoded.clear()
        if self.reuse_decoder_states:
            decoded.start(state, context, self._parameter_versions())
        h_enc = c_enc = x.new_zeros(batch, self.encoder_size)
        reader, encoder = self._observed("reader"), self._observed("encoder")
        posterior = self._observed("posterior")
        with pyro.plate("data", batch):
            for t in pyro.markov(range(self.steps)):
                h_dec = state["h_dec"]
                r = reader(image, image - torch.sigmoid(state["canvas"]), h_dec)
                h_enc, c_enc = lstm_step(encoder, self._concat(r, h_dec), (h_enc, c_enc))
                loc, scale = posterior(h_enc)
                z = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1))
                before, state = state, self._decode(z, state, context_state)
                if self.reuse_decoder_states:
                    decoded.steps[id(z)] = (z, before, state)
        return state["canvas"].flatten(-3)

    # ---------------------------------------------------------------- user-facing helpers

    def loss_terms(self, x: torch.Tensor, context: Any = None) -> dict[str, torch.Tensor]:
        r"""The two terms of DRAW's loss [1] for one draw of :math:`z_{1:T}` from the guide:
        ``"reconstruction"`` :math:`\mathcal L^x = -\log D(x \mid c_T)` ``(batch,)`` and
        ``"kl"`` ``(batch, T)``, the closed-form
        :math:`\mathrm{KL}(q(z_t \mid x, z_{<t}) \,\|\, p(z_t \mid z_{<t}))` of every step.
        Their sum over steps plus the reconstruction is the negative bound with the KL
        integrated analytically (what ``TraceMeanField_ELBO`` computes), differentiable."""
        with poutine.block():
            guide_tr = poutine.trace(self.guide).get_trace(x, None, context)
            model_tr = poutine.trace(poutine.replay(self.model, trace=guide_tr)).get_trace(
                x, None, context
            )
        site = model_tr.nodes["x"]
        reconstruction = -site["fn"].log_prob(site["value"])
        kl = torch.stack(
            [
                torch.distributions.kl_divergence(
                    guide_tr.nodes[f"z_{t}"]["fn"], model_tr.nodes[f"z_{t}"]["fn"]
                )
                for t in range(1, self.steps + 1)
            ],
            dim=-1,
        )
        return {"reconstruction": reconstruction, "kl": kl}

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        context: Any = None,
        mean: bool = False,
        temperature: float = 1.0,
        return_canvases: bool = False,
    ):
        r"""``(num_samples, num_features)`` draws of :math:`x`, or with ``mean=True`` the
        mean of :math:`D(x \mid c_T)` (pixel probabilities :math:`\sigma(c_T)`).

        ``temperature`` :math:`\tau \ge 0` scales the prior's standard deviations: each
        :math:`z_t` is drawn from :math:`\mathcal N(\mu_t, \tau^2 \sigma_t^2)` instead of
        :math:`p(z_t \mid h^{dec}_{t-1}) = \mathcal N(\mu_t, \sigma_t^2)`. The default
        :math:`\tau = 1` samples the model; :math:`\tau < 1` trades variety for typical
        images, and :math:`\tau = 0` follows the prior's means (for DRAW's standard prior,
        :math:`z_t = 0`; for alignDRAW's learned prior, each :math:`z_t` at the mean of
        :math:`p(z_t \mid y, z_{<t})` given the means before it, a greedy mode-seeking
        path rather than the joint mode), so that only ``mean=False``'s pixel draws remain
        random.

        With ``return_canvases=True`` returns ``(samples, canvases)``, ``canvases`` of shape
        ``(steps, num_samples, num_features)``: :math:`\sigma(c_t)` after every step
        :math:`t = 1, \dots, T` (the last equals the mean of the samples' distribution).
        """
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not math.isfinite(temperature)
            or temperature < 0
        ):
            raise ValueError(f"temperature: expected a finite number >= 0, got {temperature!r}")
        self._encode_context(context, int(num_samples))  # validates context
        record: list[torch.Tensor] = []
        self.__dict__["_record"] = record if return_canvases else None
        tempered = _TemperedLatents(temperature) if temperature != 1 else contextlib.nullcontext()
        try:
            with poutine.block(), poutine.trace() as tr, tempered:
                logits = self.model(None, num_samples=int(num_samples), context=context)
        finally:
            self.__dict__["_record"] = None
        x = torch.sigmoid(logits) if mean else tr.trace.nodes["x"]["value"]
        if not return_canvases:
            return x
        return x, torch.stack([torch.sigmoid(c.flatten(-3)) for c in record])

    def to_unit_interval(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples as values in [0, 1] (Gaussian samples are clipped)."""
        return samples.clamp(0, 1) if self.likelihood == "gaussian" else samples

    def log_likelihood(self, data, **options):
        """Importance-sampling estimate of the mean test log-likelihood with the guide as
        proposal (the protocol's :math:`K = 5000`), with ESS and PSIS diagnostics; options
        are those of :func:`~pyrogen.evaluate.importance_log_likelihood`. For
        ``likelihood="gaussian"`` it is a log-density."""
        check_options(importance_log_likelihood, options, "DRAW.log_likelihood", 3)
        if "max_plate_nesting" in options:
            raise TypeError("DRAW.log_likelihood: max_plate_nesting is fixed (1, the data plate)")
        return self.guide_importance_log_likelihood(data, **options)
