r"""Deterministic autoencoders: linear, nonlinear, deep (Hinton & Salakhutdinov) and
stacked denoising (Vincent et al.), as Pyro models with a point estimate of the code.

An autoencoder maps a datum :math:`x \in \mathbb R^D` to a code
:math:`z = f_\theta(\tilde x) \in \mathbb R^K` and back to the parameters
:math:`g_\phi(z)` of an observation model, and minimises the reconstruction error

.. math::

    \mathcal L(\theta, \phi) = \sum_{n=1}^N -\log p\big(x_n \mid g_\phi(f_\theta(\tilde x_n))\big),

where :math:`\tilde x = x` for a plain autoencoder and :math:`\tilde x \sim q(\tilde x \mid
x)` is a corrupted copy for a denoising one [4] (training only: the corruption is applied
when the module is in training mode, never in evaluation). Two observation models:

* ``output="gaussian"``: :math:`p(x \mid z) = \mathcal N(g(z), \sigma^2 I)` with a fixed
  :math:`\sigma` (default 1), so :math:`-\log p = \frac{1}{2\sigma^2}\lVert x - g(z)\rVert^2
  + D \log(\sqrt{2\pi}\sigma)`: squared error;
* ``output="bernoulli"``: :math:`g(z)` are log-odds and :math:`-\log p =
  \sum_d \mathrm{softplus}(g_d) - x_d g_d`, the cross-entropy (computed from the logits; the
  targets may be grey levels in :math:`[0, 1]`).

:meth:`Autoencoder.model` is exactly this: ``pyro.sample("x", p(x | g(f(x~))), obs=x)``
inside ``pyro.plate("data")``, with no latent sample site (the code is a deterministic
function of the datum, a point mass) and an empty guide. So ``Trace_ELBO`` of the pair *is*
:math:`\mathcal L` (the ELBO of a model without latent variables is its log-likelihood), and
the autoencoder trains through :class:`~pyrogen.train.SVILearner` and
:func:`~pyrogen.train.train` like every other family (``pyrogen train autoencoder``).

Kinds (see :meth:`Autoencoder.linear` and friends):

* **linear**: one linear layer each way. At a minimum of the squared error its decoder
  spans the top-:math:`K` principal subspace of the data (Baldi & Hornik [1]), so it learns
  PCA up to an invertible linear map of the code.
* **nonlinear**: one hidden layer of sigmoid / tanh / ReLU units.
* **deep** (Hinton & Salakhutdinov [2]): several layers, logistic hidden units and a linear
  code layer (default :math:`625-2000-1000-500-30` for 25x25 faces). Initialised by greedy
  RBM pre-training (:meth:`Autoencoder.rbm_stack`, :meth:`Autoencoder.load_rbms`): the
  first RBM has Gaussian visible units of a fixed standard deviation :math:`s` for
  real-valued data (standardize the data; :math:`s < 1`, e.g. 0.3, leaves the weights room
  to model structure, while with :math:`s = 1` the RBM's own noise already accounts for all
  the variance and its hidden units learn almost nothing), the top RBM linear
  (unit-variance Gaussian) hidden units, the others are binary; each RBM is trained
  by contrastive divergence on binary hidden states sampled, afresh for every batch, from
  the RBM below driven by data (Hinton & Salakhutdinov feed the probabilities themselves,
  with mean-field reconstructions in CD-1; pyrogen's contrastive divergence samples binary
  visible states, and data of the same kind keep its two phases comparable). The stack is
  *unrolled*: encoder layer :math:`k` gets :math:`W_k^\top` and the RBM's hidden biases,
  decoder layer :math:`k` gets :math:`W_k` and its visible biases (:math:`W_1^\top / s` and
  :math:`s\,W_1` for the Gaussian layer), so encoder and decoder start tied; they are
  separate parameters and fine-tuning by back-propagation unties them. Without pre-training
  (``pyrogen train autoencoder --pretrain none``) tanh hidden units and Adam train such a
  network much faster than logistic ones (``benchmarks/faces.py`` compares the recipes).
* **stacked denoising** (Vincent et al. [4, 5]): each layer is first trained as a one-layer
  denoising autoencoder (masking noise: a random fraction :math:`\nu` of the inputs set to
  0; or additive Gaussian noise of standard deviation :math:`\nu`) on the clean codes of the
  layers below (:meth:`Autoencoder.denoising_stack`, :meth:`Autoencoder.load_layers`); the
  encoders are stacked, the decoders stacked in reverse, and the whole deep autoencoder is
  fine-tuned on clean inputs.

Without pre-training, weights are initialised uniformly after Glorot & Bengio [3], biases 0
(the output bias at the data mean, or its log-odds, when ``pixel_mean`` is given).

Greedy training schedules (stages of RBMs or layer autoencoders, then fine-tuning) are
built by the ``autoencoder`` registry entry (:mod:`pyrogen.families.autoencoder`) as a
:class:`~pyrogen.train.StagedLearner`; this module only provides the parts.

**References**

[1] Neural Networks and Principal Component Analysis: Learning from Examples Without Local
    Minima. Pierre Baldi, Kurt Hornik. 1989.

[2] Reducing the Dimensionality of Data with Neural Networks. Geoffrey E. Hinton, Ruslan R.
    Salakhutdinov. 2006.

[3] Understanding the Difficulty of Training Deep Feedforward Neural Networks. Xavier
    Glorot, Yoshua Bengio. 2010.

[4] Extracting and Composing Robust Features with Denoising Autoencoders. Pascal Vincent,
    Hugo Larochelle, Yoshua Bengio, Pierre-Antoine Manzagol. 2008.

[5] Stacked Denoising Autoencoders: Learning Useful Representations in a Deep Network with
    a Local Denoising Criterion. Pascal Vincent, Hugo Larochelle, Isabelle Lajoie, Yoshua
    Bengio, Pierre-Antoine Manzagol. 2010.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer.util import is_validation_enabled
from pyro.nn import pyro_method
from torch import nn

from pyrogen._checks import check_finite
from pyrogen.distributions import IndependentBernoulli
from pyrogen.evaluate.result import ReconstructionScore
from pyrogen.models.base import PyroModel
from pyrogen.models.greedy import StackRBM

__all__ = ["ACTIVATIONS", "CORRUPTIONS", "OUTPUTS", "Autoencoder"]

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "linear": lambda h: h,
}
OUTPUTS = ("gaussian", "bernoulli")
CORRUPTIONS = ("mask", "gaussian")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


class Autoencoder(PyroModel):
    r"""A (deep, optionally denoising) autoencoder as a Pyro model (see module docs).

    :param sizes: layer widths from the data to the code, ``(D, h_1, ..., K)`` (at least 2).
    :param str activation: hidden units: ``"sigmoid"``, ``"tanh"``, ``"relu"`` or
        ``"linear"`` (used in the encoder's hidden layers and the decoder's).
    :param str code_activation: the code layer's units (``"linear"`` for a deep
        autoencoder, as in [2]; the hidden activation for a one-layer nonlinear one).
    :param str output: ``"gaussian"`` (squared error) or ``"bernoulli"`` (cross-entropy on
        logits).
    :param float output_scale: :math:`\sigma` of the Gaussian observation model.
    :param str corruption: ``"mask"`` or ``"gaussian"`` (see module docs).
    :param float noise: corruption level :math:`\nu` during training (0: none).
    :param bool tied: decoder weights are the transposed encoder weights (a single set).
    :param pixel_mean: ``(D,)`` training means for the output bias initialisation.
    :param image_shape: ``(H, W)`` of the data, for image-shaped input and pictures.

    It follows the protocol of pyrogen's deterministic models
    (:class:`~pyrogen.models.base.Representation`): :meth:`fit`, :meth:`transform` (the
    codes; also :meth:`encode`) and :meth:`reconstruct`.
    """

    name_prefix = "ae"

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        code_activation: str = "linear",
        output: str = "gaussian",
        *,
        output_scale: float = 1.0,
        corruption: str = "mask",
        noise: float = 0.0,
        tied: bool = False,
        pixel_mean: torch.Tensor | None = None,
        image_shape: Sequence[int] | None = None,
        name: str | None = None,
    ) -> None:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(
                f"sizes must list at least 2 positive widths (data, ..., code), got {sizes}"
            )
        super().__init__(sizes[0], image_shape, name)
        _check_choice("activation", activation, ACTIVATIONS)
        _check_choice("code_activation", code_activation, ACTIVATIONS)
        _check_choice("output", output, OUTPUTS)
        _check_choice("corruption", corruption, CORRUPTIONS)
        if not output_scale > 0:
            raise ValueError(f"output_scale must be positive, got {output_scale}")
        if not 0 <= noise or (corruption == "mask" and noise >= 1):
            raise ValueError(
                f"noise must be >= 0 (and < 1 for masking noise), got {noise} for {corruption!r}"
            )
        self.sizes = sizes
        self.activation, self.code_activation = activation, code_activation
        self.output, self.output_scale = output, float(output_scale)
        self.corruption, self.noise, self.tied = corruption, float(noise), bool(tied)
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        # decoder[k] maps layer k + 1 back to layer k (applied from the top down)
        if self.tied:
            self.decoder_bias = nn.ParameterList(nn.Parameter(torch.zeros(a)) for a, _ in pairs)
        else:
            self.decoder = nn.ModuleList(nn.Linear(b, a) for a, b in pairs)
        with torch.no_grad():
            for layer in self._linear_layers():
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        if pixel_mean is not None:
            self.init_output_bias(pixel_mean)

    # ---- constructors of the named kinds -------------------------------------------

    @classmethod
    def linear(cls, num_features: int, code: int, **kwargs) -> Autoencoder:
        """One linear layer each way, squared error: learns the top-``code`` principal
        subspace."""
        kwargs.setdefault("output", "gaussian")
        return cls((num_features, code), "linear", "linear", **kwargs)

    @classmethod
    def nonlinear(
        cls, num_features: int, hidden: int, activation: str = "sigmoid", **kwargs
    ) -> Autoencoder:
        """One hidden layer of ``activation`` units (the code)."""
        return cls((num_features, hidden), activation, activation, **kwargs)

    @classmethod
    def deep(
        cls, num_features: int = 625, hidden: Sequence[int] = (2000, 1000, 500, 30), **kwargs
    ) -> Autoencoder:
        """Hinton & Salakhutdinov's deep autoencoder: logistic hidden layers, linear code
        (default ``625-2000-1000-500-30``, their face architecture)."""
        kwargs.setdefault("activation", "sigmoid")
        kwargs.setdefault("code_activation", "linear")
        return cls((num_features, *hidden), **kwargs)

    # ---- parts -----------------------------------------------------------------------

    @property
    def code_size(self) -> int:
        return self.sizes[-1]

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def _linear_layers(self):
        yield from self.encoder
        if not self.tied:
            yield from self.decoder

    def _encoder_activation(self, k: int):
        last = k == self.num_layers - 1
        return ACTIVATIONS[self.code_activation if last else self.activation]

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        r"""Set the output bias to the pixel means :math:`m` (Gaussian output) or their
        log-odds :math:`\log\frac{m}{1-m}` (Bernoulli; clamped to ``[eps, 1 - eps]``)."""
        m = torch.as_tensor(pixel_mean).reshape(-1)
        if m.numel() != self.num_features:
            raise ValueError(f"pixel_mean: expected {self.num_features} values, got {m.numel()}")
        bias = self.decoder_bias[0] if self.tied else self.decoder[0].bias
        m = m.to(bias)
        bias.copy_(torch.logit(m.clamp(eps, 1 - eps)) if self.output == "bernoulli" else m)

    # ---- input checks --------------------------------------------------------------

    def _prepare(self, x, name: str = "x") -> torch.Tensor:
        x = self._flatten(x, name)
        if is_validation_enabled():
            check_finite(x, name)
            if self.output == "bernoulli":
                lo, hi = x.aminmax()
                if lo < 0 or hi > 1:
                    raise ValueError(
                        f"{name} must lie in [0, 1] for a Bernoulli (cross-entropy) output, "
                        f"found values in [{lo.item():.4g}, {hi.item():.4g}]; rescale the data "
                        "or use output='gaussian'"
                    )
        return x

    def _check_code(self, z, name: str = "z") -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() < 1 or z.shape[-1] != self.code_size:
            raise ValueError(
                f"{name}: expected codes of shape (batch, {self.code_size}), got {tuple(z.shape)}"
            )
        if is_validation_enabled():
            check_finite(z, name)
        return z

    # ---- the maps ----------------------------------------------------------------------

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for k, layer in enumerate(self._observed("encoder")):
            h = self._encoder_activation(k)(layer(h))
        return h

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        act = ACTIVATIONS[self.activation]
        if self.tied:
            encoder, biases = self._observed("encoder"), self._observed("decoder_bias")
            maps = [
                (lambda u, e=e, b=b: F.linear(u, e.weight.t(), b)) for e, b in zip(encoder, biases)
            ]
        else:
            maps = list(self._observed("decoder"))
        for k in range(self.num_layers - 1, -1, -1):
            h = maps[k](h)
            if k > 0:
                h = act(h)
        return h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code :math:`f(x)`, ``(batch, K)`` (no corruption)."""
        return self._encode(self._prepare(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output :math:`g(z)` before the output nonlinearity: the mean for a
        Gaussian output, the log-odds for a Bernoulli one."""
        return self._decode_raw(self._check_code(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction's mean :math:`\\mathbb E[x \\mid z]`, ``(batch, D)``."""
        out = self.decode_logits(z)
        return torch.sigmoid(out) if self.output == "bernoulli" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The clean reconstruction :math:`\\mathbb E[x \\mid f(x)]` (never corrupted)."""
        out = self._decode_raw(self.encode(x))
        return torch.sigmoid(out) if self.output == "bernoulli" else out

    reconstruct = forward

    def transform(self, X) -> torch.Tensor:
        """The codes of ``X`` (:meth:`encode`, without gradients): the
        :class:`~pyrogen.models.base.Representation` protocol's name."""
        with torch.no_grad():
            return self.encode(X)

    def up(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """The clean code of ``x``, as the next layer of a greedy stack is trained on it
        (:func:`pyrogen.models.greedy.propagate`; deterministic, ``sample`` is ignored)."""
        with torch.no_grad():
            return self.encode(x)

    def fit(
        self,
        X,
        *,
        epochs: int = 10,
        batch_size: int = 100,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = True,
        **train_options,
    ) -> Autoencoder:
        """Minimise the reconstruction error of ``X`` (a tensor of examples or a pyrogen
        dataset) with Adam on ``Trace_ELBO`` of :meth:`model` (which is that error), through
        :func:`pyrogen.train.train`; other keyword arguments go to it (``val_data``,
        ``device``, ``out``, ...). No pre-training: ``pyrogen train autoencoder`` (or the
        ``autoencoder`` registry entry) runs greedy pre-training first. Returns ``self``."""
        from pyro.infer import Trace_ELBO

        from pyrogen.train import SVILearner, train

        learner = SVILearner(self, Trace_ELBO(), lr=lr)
        self.train_result_ = train(
            learner,
            X,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            **train_options,
        )
        return self

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        r"""A corrupted copy :math:`\tilde x \sim q(\tilde x \mid x)`: masking noise (each
        input set to 0 with probability :math:`\nu`) or :math:`x + \nu\,\epsilon`,
        :math:`\epsilon \sim \mathcal N(0, I)`. The identity when ``noise == 0``."""
        if self.noise == 0:
            return x
        if self.corruption == "mask":
            return x * (torch.rand_like(x) >= self.noise).to(x.dtype)
        return x + self.noise * torch.randn_like(x)

    def _training_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.corrupt(x) if self.training and self.noise > 0 else x

    # ---- losses ------------------------------------------------------------------------

    def reconstruction_error(self, x: torch.Tensor, corrupt: bool = False) -> torch.Tensor:
        r"""Per-example :math:`-\log p(x \mid g(f(\tilde x)))` up to the Gaussian's constant:
        :math:`\frac{1}{2\sigma^2}\lVert x - g\rVert^2` or the cross-entropy, ``(batch,)``.
        ``corrupt=True`` encodes a corrupted copy (the denoising criterion)."""
        x = self._prepare(x)
        out = self._decode_raw(self._encode(self.corrupt(x) if corrupt else x))
        if self.output == "bernoulli":
            return F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        return 0.5 * (out - x).square().sum(-1) / self.output_scale**2

    @torch.no_grad()
    def reconstruction_score(self, data, *, batch_size: int = 1000) -> ReconstructionScore:
        """Mean squared error and reconstruction error (the training loss) per example of
        ``data`` (a tensor or a pyrogen dataset), in evaluation mode (no corruption)."""
        if hasattr(data, "tensor") and callable(data.tensor):
            data = data.tensor()
        was_training = self.training
        self.eval()
        sq, rec, n = 0.0, 0.0, 0
        try:
            like = next(self.parameters())
            for x in data.split(int(batch_size)):
                x = x.to(like)
                sq += float(self.squared_error(x).sum())
                rec += float(self.reconstruction_error(x).sum())
                n += x.shape[0]
        finally:
            self.train(was_training)
        loss = "cross-entropy" if self.output == "bernoulli" else "half squared error"
        return ReconstructionScore(sq / max(n, 1), rec / max(n, 1), n, loss)

    def squared_error(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example squared error :math:`\\lVert x - \\hat x\\rVert^2` of the clean
        reconstruction's mean, ``(batch,)`` (the number reported for any output model)."""
        x = self._prepare(x)
        return (self(x) - x).square().sum(-1)

    def observation(self, out: torch.Tensor):
        """:math:`p(x \\mid z)` given the decoder's output (one event of ``D`` pixels)."""
        if self.output == "bernoulli":
            # grey-level targets are allowed (cross-entropy); checked in _prepare
            return IndependentBernoulli(out, validate_args=False)
        return dist.Normal(out, out.new_tensor(self.output_scale)).to_event(1)

    @pyro_method
    def model(self, x: torch.Tensor):
        """``pyro.sample("x", p(x | g(f(x~))), obs=x)`` inside ``pyro.plate("data")``; the
        input is corrupted only in training mode. Returns the decoder's output."""
        x = self._prepare(x)
        out = self._decode_raw(self._encode(self._training_input(x)))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.observation(out), obs=x)
        return out

    @pyro_method
    def guide(self, x: torch.Tensor):
        """Empty: the code is a deterministic function of the datum (no latent sites)."""

    # ---- greedy pre-training ---------------------------------------------------------

    def _layer_units(self, k: int) -> tuple[str, str]:
        """Unit types (``"binary"``/``"gaussian"``) below and above layer ``k``."""
        below = (
            ("gaussian" if self.output == "gaussian" else "binary")
            if k == 0
            else ("binary" if self.activation == "sigmoid" else "gaussian")
        )
        act = self.code_activation if k == self.num_layers - 1 else self.activation
        return below, ("binary" if act == "sigmoid" else "gaussian")

    def rbm_stack(self, visible_scale: float = 1.0) -> list[StackRBM]:
        """Fresh RBMs for greedy pre-training, one per layer, matching the architecture:
        Gaussian visible units under a Gaussian output (standard deviation
        ``visible_scale``), linear (Gaussian) hidden units under a linear code, binary
        (logistic) units elsewhere."""
        if self.activation != "sigmoid" and self.num_layers > 1:
            raise ValueError(
                "RBM pre-training needs logistic hidden units (activation='sigmoid'), got "
                f"{self.activation!r}; use denoising pre-training instead"
            )
        if self.code_activation not in ("sigmoid", "linear"):
            raise ValueError(
                "RBM pre-training needs a logistic or linear code layer, got "
                f"{self.code_activation!r}"
            )
        rbms = []
        for k in range(self.num_layers):
            visible, hidden = self._layer_units(k)
            if visible == hidden == "gaussian":
                raise ValueError(
                    f"layer {k + 1}: an RBM with Gaussian visible and Gaussian hidden units has "
                    "no normalisable distribution; use a Bernoulli output or a logistic code"
                )
            scale = visible_scale if visible == "gaussian" else 1.0
            rbms.append(
                StackRBM(
                    self.sizes[k],
                    self.sizes[k + 1],
                    visible_units=visible,
                    hidden_units=hidden,
                    visible_scale=scale,
                )
            )
        return rbms

    @torch.no_grad()
    def load_rbms(self, rbms: Sequence[StackRBM]) -> None:
        """Unroll pre-trained RBMs: encoder layer ``k`` gets :math:`W_k^\\top` and the
        hidden biases, decoder layer ``k`` gets :math:`W_k` and the visible biases (tied
        values in untied parameters, unless the module is ``tied``)."""
        if len(rbms) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} RBMs, got {len(rbms)}")
        for k, rbm in enumerate(rbms):
            shape = (self.sizes[k], self.sizes[k + 1])
            if tuple(rbm.weight.shape) != shape:
                raise ValueError(
                    f"RBM {k + 1}: expected weights of shape {shape}, got {tuple(rbm.weight.shape)}"
                )
            self.encoder[k].weight.copy_(rbm.encoder_weight().T)
            self.encoder[k].bias.copy_(rbm.hidden_bias)
            if self.tied:
                if rbm.visible_scale != 1:
                    raise ValueError("a tied autoencoder needs RBMs with visible_scale 1")
                self.decoder_bias[k].copy_(rbm.visible_bias)
            else:
                self.decoder[k].weight.copy_(rbm.decoder_weight())
                self.decoder[k].bias.copy_(rbm.visible_bias)

    def denoising_stack(
        self, noise: float = 0.25, corruption: str = "mask", tied: bool = True
    ) -> list[Autoencoder]:
        """Fresh one-layer denoising autoencoders, one per layer, for greedy pre-training
        (Vincent et al. [5]): layer ``k`` encodes like this module's layer ``k``; its
        output model is this module's for ``k = 0``, Bernoulli (cross-entropy) above
        logistic units and Gaussian (squared error) above others. Weights tied by default,
        as in [5]."""
        parts = []
        for k in range(self.num_layers):
            below, _ = self._layer_units(k)
            if k == 0:
                output = self.output
            else:
                output = "bernoulli" if self.activation == "sigmoid" else "gaussian"
            act = self.code_activation if k == self.num_layers - 1 else self.activation
            parts.append(
                Autoencoder(
                    (self.sizes[k], self.sizes[k + 1]),
                    activation=self.activation,
                    code_activation=act,
                    output=output,
                    output_scale=self.output_scale if k == 0 else 1.0,
                    corruption=corruption,
                    noise=noise,
                    tied=tied,
                )
            )
        return parts

    @torch.no_grad()
    def load_layers(self, layers: Sequence[Autoencoder]) -> None:
        """Stack pre-trained one-layer autoencoders: their encoders in order, their decoders
        in reverse (a tied layer's decoder weight is its encoder weight transposed)."""
        if len(layers) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layer autoencoders, got {len(layers)}")
        for k, part in enumerate(layers):
            if part.sizes != (self.sizes[k], self.sizes[k + 1]):
                raise ValueError(
                    f"layer {k + 1}: expected sizes {(self.sizes[k], self.sizes[k + 1])}, "
                    f"got {part.sizes}"
                )
            self.encoder[k].load_state_dict(part.encoder[0].state_dict())
            dec_w = part.encoder[0].weight.T if part.tied else part.decoder[0].weight
            dec_b = part.decoder_bias[0] if part.tied else part.decoder[0].bias
            if self.tied:
                self.decoder_bias[k].copy_(dec_b)
            else:
                self.decoder[k].weight.copy_(dec_w)
                self.decoder[k].bias.copy_(dec_b)
