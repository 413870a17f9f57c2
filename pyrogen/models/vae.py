r"""Variational and importance-weighted autoencoders as Pyro model/guide pairs.

The generative model has :math:`L` layers of Gaussian latents above Bernoulli pixels,

.. math::

    p_\theta(x, z_{1:L}) = p(z_L)\,\prod_{l=1}^{L-1} p_\theta(z_l \mid z_{l+1})\;
        \prod_{d=1}^{D} \mathrm{Bernoulli}\big(x_d \mid \mathrm{sigmoid}(f_\theta(z_1)_d)\big),
    \qquad p(z_L) = \mathcal N(0, I),

with diagonal Gaussian conditionals :math:`p_\theta(z_l \mid z_{l+1})`; the guide is the
mirror image, :math:`q_\phi(z_{1:L} \mid x) = q_\phi(z_1 \mid x)\prod_l
q_\phi(z_{l+1} \mid z_l)`. Trained with :class:`~pyro.infer.Trace_ELBO` it is the VAE of
[1]; with :class:`~pyrogen.infer.IWAE` (or ``RenyiELBO(alpha=0)``) it is the IWAE of [2].

or, with ``observation="gaussian"``, above a Gaussian observation model for continuous data
(grey levels in [0, 1], e.g. dequantized MNIST),

.. math::

    x \mid z_1 \sim \mathcal N\big(\mu_\theta(z_1),\, \sigma^2 I_D\big),
    \qquad \mu_\theta(z_1) = \mathrm{sigmoid}(f_\theta(z_1)) \in (0, 1)^D,

with a fixed :math:`\sigma` (an argument; Wu et al. [3] choose it on validation data). The
network :attr:`VAE.decoder` outputs the observation's parameter: the logits
:math:`f_\theta(z_1)` (Bernoulli) or the mean :math:`\mu_\theta(z_1)` (Gaussian), so that
``decoder_log_likelihood(vae.decoder, x, latent_dim=d, likelihood=vae.observation,
sigma=vae.sigma)`` scores the same model by AIS (:meth:`VAE.ais_log_likelihood` does it,
from the encoder by default).

:meth:`VAE.wu` builds the one-layer VAEs of Wu et al. [3] whose decoders are those of
:meth:`pyrogen.models.Generator.wu` (10-64-256-256-1024-784 and 50-1024-1024-1024-784, the
same network constructor), so that a VAE, a GAN and a GMMN can be compared on one decoder
architecture; the encoder is the mirror image.

Sample sites (stable names): ``"z1"``, ..., ``"zL"`` (``"z1"`` nearest the data) and the
observed ``"x"``, all inside ``pyro.plate("data")``.

**References**

[1] Auto-Encoding Variational Bayes. Diederik P. Kingma, Max Welling. ICLR 2014.

[2] Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan Salakhutdinov.
    ICLR 2016 (arXiv:1509.00519, 2015).

[3] On the Quantitative Analysis of Decoder-Based Generative Models. Yuhuai Wu, Yuri Burda,
    Ruslan Salakhutdinov, Roger Grosse. ICLR 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.util import is_validation_enabled
from pyro.nn import pyro_method
from torch import nn

from pyrogen._checks import check_finite
from pyrogen.distributions import IndependentBernoulli
from pyrogen.evaluate.decoder_ais import _check_sigma, decoder_log_likelihood
from pyrogen.evaluate.dispatch import check_options
from pyrogen.evaluate.importance import importance_log_likelihood
from pyrogen.models.base import GenerativeModel, logit_of_mean
from pyrogen.nn import MLP, GaussianHead

__all__ = ["BURDA_ARCHITECTURES", "OBSERVATIONS", "VAE"]

#: the observation models :math:`p(x \mid z_1)` a VAE can have
OBSERVATIONS = ("bernoulli", "gaussian")

#: Architectures of Burda et al. (2015), section 5: tanh units throughout.
BURDA_ARCHITECTURES = {
    1: {"latent_dims": (50,), "hidden": ((200, 200),)},
    2: {"latent_dims": (100, 50), "hidden": ((200, 200), (100, 100))},
}


class VAE(GenerativeModel):
    r"""Deep latent Gaussian model with Bernoulli pixels (or a Gaussian observation model),
    and its amortized Gaussian guide.

    :param int num_features: :math:`D`, the number of pixels.
    :param latent_dims: widths of the stochastic layers, from the data upwards
        (``(50,)``: one layer; ``(100, 50)``: two layers as in Burda et al.).
    :param hidden: for each stochastic layer, the deterministic hidden widths between
        it and the layer below (the data for the first): ``((200, 200),)`` or
        ``((200, 200), (100, 100))``. The generative networks use the mirror image.
    :param image_shape: ``(H, W)`` with ``H * W == num_features``, used to accept
        image-shaped input and to draw sample grids. Defaults to a square when
        ``num_features`` is one.
    :param pixel_mean: optional ``(num_features,)`` tensor of training-set pixel means; the
        bias of the decoder's last linear layer is set to their log-odds (Burda et al. 2015),
        so training starts from the factorised marginal (right for Bernoulli logits and for
        a Gaussian mean behind a sigmoid).
    :param str activation: hidden nonlinearity (``"tanh"`` as in the paper).
    :param str name: Pyro name prefix of the parameters. Defaults to a fresh ``"vae<N>"`` so
        that two instances in one process never share entries of Pyro's param store.
    :param str observation: :math:`p(x \mid z_1)`: ``"bernoulli"`` (binary data, the
        default) or ``"gaussian"`` (:math:`\mathcal N(\mu_\theta(z_1), \sigma^2 I)`, for
        continuous data; see module docs).
    :param float sigma: :math:`\sigma > 0` of the Gaussian observation model (required
        with ``observation="gaussian"``; a Bernoulli model takes none). Wu et al. use values
        of about 0.01 to 0.1 for pixels in [0, 1].
    :param torch.nn.Module decoder: optional network ``(B, latent_dims[0]) -> (B, D)`` to
        use as :attr:`decoder` instead of the MLP built from ``hidden``; it must output the
        observation's parameter (logits, or the Gaussian mean). :meth:`wu` passes the
        decoder of :meth:`pyrogen.models.Generator.wu`.

    Use :meth:`burda` for the architectures of Burda et al. and :meth:`wu` for those of
    Wu et al.
    """

    name_prefix = "vae"
    has_mean_samples = True

    def __init__(
        self,
        num_features: int = 784,
        latent_dims: Sequence[int] = (50,),
        hidden: Sequence[Sequence[int]] = ((200, 200),),
        image_shape: Sequence[int] | None = None,
        pixel_mean: torch.Tensor | None = None,
        activation: str = "tanh",
        name: str | None = None,
        *,
        observation: str = "bernoulli",
        sigma: float | None = None,
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__(num_features, image_shape, name)
        latent_dims = tuple(int(d) for d in latent_dims)
        hidden = tuple(tuple(int(h) for h in hs) for hs in hidden)
        if not latent_dims:
            raise ValueError("latent_dims must name at least one stochastic layer")
        if len(hidden) != len(latent_dims):
            raise ValueError(
                f"hidden needs one entry per stochastic layer: got {len(hidden)} "
                f"entries for latent_dims={latent_dims}"
            )
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        self.observation = observation
        #: :math:`\sigma` of the Gaussian observation model (None for Bernoulli pixels)
        self.sigma = _check_sigma(observation, sigma)
        self.latent_dims = latent_dims
        self.hidden = hidden
        self.activation = activation
        # Guide: q(z1 | x), q(z2 | z1), ...
        below = (self.num_features,) + latent_dims[:-1]
        self.encoders = torch.nn.ModuleList(
            GaussianHead(b, hs, z, activation) for b, hs, z in zip(below, hidden, latent_dims)
        )
        # Model: p(x | z1) (Bernoulli logits or Gaussian mean), p(z1 | z2), ...
        if decoder is None:
            decoder = MLP(latent_dims[0], tuple(reversed(hidden[0])), self.num_features, activation)
            if observation == "gaussian":
                decoder = nn.Sequential(decoder, nn.Sigmoid())
        elif not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be a torch.nn.Module, got {type(decoder).__name__}")
        self.decoder = decoder
        self.priors = torch.nn.ModuleList(
            GaussianHead(latent_dims[l + 1], tuple(reversed(hidden[l + 1])), latent_dims[l])
            for l in range(len(latent_dims) - 1)
        )
        if pixel_mean is not None:
            self.init_output_bias(pixel_mean)

    @classmethod
    def burda(cls, num_features: int = 784, layers: int = 1, **kwargs) -> VAE:
        """The architectures of Burda et al. (2015): ``layers=1`` is x-200-200-z(50);
        ``layers=2`` is x-200-200-z1(100)-100-100-z2(50) (tanh throughout)."""
        if layers not in BURDA_ARCHITECTURES:
            raise ValueError(f"layers must be 1 or 2 (the paper's architectures), got {layers}")
        return cls(num_features, **BURDA_ARCHITECTURES[layers], **kwargs)

    @classmethod
    def wu(
        cls,
        latent_dim: int = 50,
        num_features: int = 784,
        *,
        observation: str = "gaussian",
        sigma: float | None = None,
        activation: str = "relu",
        **kwargs,
    ) -> VAE:
        r"""The one-layer VAEs of Wu et al. [3] on the decoders of
        :meth:`pyrogen.models.Generator.wu` (built by that constructor):
        ``latent_dim=10``: decoder 10-64-256-256-1024-784; ``latent_dim=50``:
        50-1024-1024-1024-784; the encoder is the mirror image (784-...-2d, loc and
        log-scale). With the Gaussian observation (the default) the decoder is exactly the
        generator's network, sigmoid output included, so weights can be moved between a
        VAE and a GAN or GMMN; with ``observation="bernoulli"`` it stops before the sigmoid
        (logits).

        :param int latent_dim: 10 or 50.
        :param float sigma: :math:`\sigma` of the Gaussian observation model (required
            with it).
        :param str activation: hidden nonlinearity of both networks (``"relu"``).
        :param kwargs: ``image_shape``, ``pixel_mean``, ``name`` of :class:`VAE`.
        """
        from pyrogen.models.gan import WU_ARCHITECTURES, Generator

        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        output = "sigmoid" if observation == "gaussian" else "linear"
        network = Generator.wu(
            latent_dim, num_features, activation=activation, output=output
        ).network
        hidden = tuple(reversed(WU_ARCHITECTURES[latent_dim]))
        return cls(
            num_features,
            (latent_dim,),
            (hidden,),
            activation=activation,
            observation=observation,
            sigma=sigma,
            decoder=network,
            **kwargs,
        )

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    def _output_linear(self) -> nn.Linear:
        """The decoder's last linear layer."""
        linears = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)]
        if not linears or linears[-1].out_features != self.num_features:
            raise ValueError(
                "decoder: pixel_mean needs a decoder whose last linear layer has "
                f"{self.num_features} outputs"
            )
        return linears[-1]

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        r"""Set the bias of the decoder's last linear layer to :math:`\log\frac{m}{1-m}` of
        the pixel means ``m`` (clamped to ``[eps, 1 - eps]``)."""
        bias = self._output_linear().bias
        bias.copy_(logit_of_mean(pixel_mean, bias, eps))

    def _input(self, x, name: str = "x") -> torch.Tensor:
        """The data as ``(N, D)``: binary for Bernoulli pixels; finite for a Gaussian
        observation (checked with Pyro's validation on)."""
        if self.observation == "bernoulli":
            return self._binary_input(x, name)
        x = self._flatten(x, name)
        if is_validation_enabled():
            check_finite(x, name)
        return x

    def _observation(self, out: torch.Tensor):
        if self.observation == "bernoulli":
            return IndependentBernoulli(out)
        return dist.Normal(out, self.sigma).to_event(1)

    @pyro_method
    def model(self, x: torch.Tensor | None = None, num_samples: int | None = None):
        r"""The generative model :math:`p_\theta(x, z_{1:L})`.

        :param x: data, ``(batch, num_features)`` or image-shaped (binary for Bernoulli
            pixels); ``None`` to sample.
        :param int num_samples: batch size when ``x`` is ``None``.
        :returns: the decoder's output: the Bernoulli logits or the Gaussian mean of
            :math:`p(x \mid z_1)`.
        """
        if x is None:
            if num_samples is None:
                raise ValueError("model(x=None) needs num_samples")
            batch, ref = int(num_samples), next(self.decoder.parameters())
        else:
            x = self._input(x)
            batch, ref = x.shape[0], x
        L = self.num_layers
        priors = self._observed("priors") if L > 1 else ()
        decoder = self._observed("decoder")
        with pyro.plate("data", batch):
            prior = dist.Normal(ref.new_zeros(()), ref.new_ones(()))
            z = pyro.sample(f"z{L}", prior.expand([self.latent_dims[-1]]).to_event(1))
            for l in range(L - 2, -1, -1):
                loc, scale = priors[l](z)
                z = pyro.sample(f"z{l + 1}", dist.Normal(loc, scale).to_event(1))
            out = decoder(z)
            pyro.sample("x", self._observation(out), obs=x)
        return out

    @pyro_method
    def guide(self, x: torch.Tensor, num_samples: int | None = None):
        r"""The amortized guide :math:`q_\phi(z_{1:L} \mid x)`; returns the top latent."""
        x = self._input(x)
        h = x
        with pyro.plate("data", x.shape[0]):
            for l, encoder in enumerate(self._observed("encoders")):
                loc, scale = encoder(h)
                h = pyro.sample(f"z{l + 1}", dist.Normal(loc, scale).to_event(1))
        return h

    # ---------------------------------------------------------------- user-facing helpers

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out) if self.observation == "bernoulli" else out

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, context: torch.Tensor | None = None, mean: bool = False
    ) -> torch.Tensor:
        """``(num_samples, num_features)`` draws of :math:`x`: :math:`z \\sim p(z)`, then
        :math:`x \\sim p(x \\mid z)` (binary pixels, or the Gaussian mean plus
        :math:`\\sigma` times standard normal noise), or with ``mean=True`` the mean of
        :math:`p(x \\mid z)` (pixel probabilities or the Gaussian mean, in [0, 1]: what
        sample grids usually show)."""
        self._check_context(context)
        with pyro.poutine.block(), pyro.poutine.trace() as tr:
            out = self.model(None, num_samples=int(num_samples))
        return self._mean(out) if mean else tr.trace.nodes["x"]["value"]

    def _sigma_for(self, sigma) -> float | None:
        if sigma is None:
            return self.sigma
        if self.observation != "gaussian":
            raise ValueError("sigma: a VAE with Bernoulli pixels takes no sigma")
        return _check_sigma("gaussian", sigma)

    def log_likelihood(self, data, *, sigma: float | None = None, **options):
        """Importance-sampling estimate of the mean test log-likelihood with the guide as
        proposal, with ESS and PSIS diagnostics. ``options`` are those of
        :func:`~pyrogen.evaluate.importance_log_likelihood` (``num_samples=5000``, the
        protocol of Burda et al. 2015; ``batch_size``, ``particle_batch_size``,
        ``max_elements``, ``device``, ``diagnostics``, ``progress``); others are a TypeError
        naming them.

        :param float sigma: score under a Gaussian observation model with this
            :math:`\\sigma` instead of the model's own (Wu et al. [3] choose it on
            validation data); Gaussian models only.
        """
        check_options(importance_log_likelihood, options, "VAE.log_likelihood", 3)
        if "max_plate_nesting" in options:
            raise TypeError("VAE.log_likelihood: max_plate_nesting is fixed (1, the data plate)")
        own, self.sigma = self.sigma, self._sigma_for(sigma)
        try:
            return self.guide_importance_log_likelihood(data, **options)
        finally:
            self.sigma = own

    def ais_log_likelihood(
        self, data, *, from_encoder: bool = True, sigma: float | None = None, **options
    ):
        r"""AIS estimate of the mean test log-likelihood of a one-layer VAE, as Wu et al. [3]
        score decoder-based models (:func:`~pyrogen.evaluate.decoder_log_likelihood` on
        :attr:`decoder` with this model's observation model).

        :param data: ``(N, D)`` or image-shaped examples.
        :param bool from_encoder: start the chains from the guide's :math:`q(z_1 \mid x)`
            (default) instead of the prior.
        :param float sigma: :math:`\sigma` of a Gaussian observation model instead of the
            model's own.
        :param options: those of :func:`~pyrogen.evaluate.decoder_log_likelihood`
            (``num_chains``, ``num_temperatures``, ``schedule``, ``num_leapfrog``, ...).
        """
        check_options(decoder_log_likelihood, options, "VAE.ais_log_likelihood", 2)
        for fixed in ("latent_dim", "likelihood", "encoder"):
            if fixed in options:
                raise TypeError(f"VAE.ais_log_likelihood: {fixed} is fixed by the model")
        if self.num_layers != 1:
            raise ValueError(
                f"ais_log_likelihood needs a one-layer VAE (z1 only), this one has "
                f"latent_dims={self.latent_dims}"
            )
        x = self._flatten(data, "data")
        return decoder_log_likelihood(
            self.decoder,
            x,
            latent_dim=self.latent_dims[0],
            likelihood=self.observation,
            sigma=self._sigma_for(sigma),
            encoder=self.encoders[0] if from_encoder else None,
            **options,
        )

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Encode ``x`` with one guide sample and decode it: the mean of
        :math:`p(x \\mid z_1)` (pixel probabilities or the Gaussian mean), or with
        ``mean=False`` a draw from it."""
        with pyro.poutine.block():
            guide_tr = pyro.poutine.trace(self.guide).get_trace(x)
            out = pyro.poutine.replay(self.model, trace=guide_tr)(x)
        if mean:
            return self._mean(out)
        return self._observation(out).sample()

    def to_unit_interval(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples as values in [0, 1] for pictures (Gaussian draws are clamped)."""
        return samples if self.observation == "bernoulli" else samples.clamp(0, 1)
