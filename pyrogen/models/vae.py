r"""Variational and importance-weighted autoencoders as Pyro model/guide pairs.

The generative model has :math:`L` layers of Gaussian latents above Bernoulli pixels,

.. math::

    p_\theta(x, z_{1:L}) = p(z_L)\,\prod_{l=1}^{L-1} p_\theta(z_l \mid z_{l+1})\;
        \prod_{d=1}^{D} \mathrm{Bernoulli}\big(x_d \mid \sigma(f_\theta(z_1)_d)\big),
    \qquad p(z_L) = \mathcal N(0, I),

with diagonal Gaussian conditionals :math:`p_\theta(z_l \mid z_{l+1})`; the guide is the
mirror image, :math:`q_\phi(z_{1:L} \mid x) = q_\phi(z_1 \mid x)\prod_l
q_\phi(z_{l+1} \mid z_l)`. Trained with :class:`~pyro.infer.Trace_ELBO` it is the VAE of
[1]; with :class:`~pyrogen.infer.IWAE` (or ``RenyiELBO(alpha=0)``) it is the IWAE of [2].

Sample sites (stable names): ``"z1"``, ..., ``"zL"`` (``"z1"`` nearest the data) and the
observed ``"x"``, all inside ``pyro.plate("data")``.

**References**

[1] Auto-Encoding Variational Bayes. Diederik P. Kingma, Max Welling. ICLR 2014.

[2] Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan Salakhutdinov.
    ICLR 2016 (arXiv:1509.00519, 2015).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method

from pyrogen.distributions import IndependentBernoulli
from pyrogen.evaluate.dispatch import check_options
from pyrogen.evaluate.importance import importance_log_likelihood
from pyrogen.models.base import GenerativeModel, logit_of_mean
from pyrogen.nn import MLP, GaussianHead

__all__ = ["BURDA_ARCHITECTURES", "VAE"]

#: Architectures of Burda et al. (2015), section 5: tanh units throughout.
BURDA_ARCHITECTURES = {
    1: {"latent_dims": (50,), "hidden": ((200, 200),)},
    2: {"latent_dims": (100, 50), "hidden": ((200, 200), (100, 100))},
}


class VAE(GenerativeModel):
    r"""Deep latent Gaussian model with Bernoulli pixels, and its amortized Gaussian guide.

    :param int num_features: :math:`D`, the number of binary pixels.
    :param latent_dims: widths of the stochastic layers, from the data upwards
        (``(50,)``: one layer; ``(100, 50)``: two layers as in Burda et al.).
    :param hidden: for each stochastic layer, the deterministic hidden widths between
        it and the layer below (the data for the first): ``((200, 200),)`` or
        ``((200, 200), (100, 100))``. The generative networks use the mirror image.
    :param image_shape: ``(H, W)`` with ``H * W == num_features``, used to accept
        image-shaped input and to draw sample grids. Defaults to a square when
        ``num_features`` is one.
    :param pixel_mean: optional ``(num_features,)`` tensor of training-set pixel means; the
        decoder's output bias is set to their log-odds (Burda et al. 2015), so training
        starts from the factorised marginal.
    :param str activation: hidden nonlinearity (``"tanh"`` as in the paper).
    :param str name: Pyro name prefix of the parameters. Defaults to a fresh ``"vae<N>"`` so
        that two instances in one process never share entries of Pyro's param store.

    Use :meth:`burda` for the paper's architectures.
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
        self.latent_dims = latent_dims
        self.hidden = hidden
        self.activation = activation
        # Guide: q(z1 | x), q(z2 | z1), ...
        below = (self.num_features,) + latent_dims[:-1]
        self.encoders = torch.nn.ModuleList(
            GaussianHead(b, hs, z, activation) for b, hs, z in zip(below, hidden, latent_dims)
        )
        # Model: p(x | z1) (Bernoulli logits), p(z1 | z2), ...
        self.decoder = MLP(
            latent_dims[0], tuple(reversed(hidden[0])), self.num_features, activation
        )
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

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        r"""Set the decoder's output bias to :math:`\log\frac{m}{1-m}` of the pixel means
        ``m`` (clamped to ``[eps, 1 - eps]``)."""
        bias = self.decoder.output_layer.bias
        bias.copy_(logit_of_mean(pixel_mean, bias, eps))

    @pyro_method
    def model(self, x: torch.Tensor | None = None, num_samples: int | None = None):
        r"""The generative model :math:`p_\theta(x, z_{1:L})`.

        :param x: binary data, ``(batch, num_features)`` or image-shaped; ``None`` to sample.
        :param int num_samples: batch size when ``x`` is ``None``.
        :returns: the Bernoulli logits of :math:`p(x \mid z_1)`.
        """
        if x is None:
            if num_samples is None:
                raise ValueError("model(x=None) needs num_samples")
            batch, ref = int(num_samples), self.decoder.output_layer.bias
        else:
            x = self._binary_input(x)
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
            logits = decoder(z)
            pyro.sample("x", IndependentBernoulli(logits), obs=x)
        return logits

    @pyro_method
    def guide(self, x: torch.Tensor, num_samples: int | None = None):
        r"""The amortized guide :math:`q_\phi(z_{1:L} \mid x)`; returns the top latent."""
        x = self._binary_input(x)
        h = x
        with pyro.plate("data", x.shape[0]):
            for l, encoder in enumerate(self._observed("encoders")):
                loc, scale = encoder(h)
                h = pyro.sample(f"z{l + 1}", dist.Normal(loc, scale).to_event(1))
        return h

    # ---------------------------------------------------------------- user-facing helpers

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, context: torch.Tensor | None = None, mean: bool = False
    ) -> torch.Tensor:
        """``(num_samples, num_features)`` draws of :math:`x`: :math:`z \\sim p(z)`, then binary
        pixels from :math:`p(x \\mid z)`, or with ``mean=True`` the pixel probabilities of
        :math:`p(x \\mid z)` (what sample grids usually show)."""
        self._check_context(context)
        with pyro.poutine.block(), pyro.poutine.trace() as tr:
            logits = self.model(None, num_samples=int(num_samples))
        return torch.sigmoid(logits) if mean else tr.trace.nodes["x"]["value"]

    def log_likelihood(self, data, **options):
        """Importance-sampling estimate of the mean test log-likelihood with the guide as
        proposal, with ESS and PSIS diagnostics. ``options`` are those of
        :func:`~pyrogen.evaluate.importance_log_likelihood` (``num_samples=5000``, the
        protocol of Burda et al. 2015; ``batch_size``, ``particle_batch_size``,
        ``max_elements``, ``device``, ``diagnostics``, ``progress``); others are a TypeError
        naming them."""
        check_options(importance_log_likelihood, options, "VAE.log_likelihood", 3)
        if "max_plate_nesting" in options:
            raise TypeError("VAE.log_likelihood: max_plate_nesting is fixed (1, the data plate)")
        return self.guide_importance_log_likelihood(data, **options)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Encode ``x`` with one guide sample and decode it (pixel probabilities)."""
        with pyro.poutine.block():
            guide_tr = pyro.poutine.trace(self.guide).get_trace(x)
            logits = pyro.poutine.replay(self.model, trace=guide_tr)(x)
        return torch.sigmoid(logits) if mean else torch.bernoulli(torch.sigmoid(logits))
