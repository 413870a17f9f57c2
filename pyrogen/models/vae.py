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

import itertools
import math
import weakref
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule, pyro_method

from pyrogen._checks import check_binary, flatten_images
from pyrogen._effects import params_observed
from pyrogen.distributions import IndependentBernoulli
from pyrogen.nn import MLP, GaussianHead

_instance_ids = itertools.count()

#: Architectures of Burda et al. (2015), section 5: tanh units throughout.
BURDA_ARCHITECTURES = {
    1: {"latent_dims": (50,), "hidden_dims": ((200, 200),)},
    2: {"latent_dims": (100, 50), "hidden_dims": ((200, 200), (100, 100))},
}


class VAE(PyroModule):
    r"""Deep latent Gaussian model with Bernoulli pixels, and its amortized Gaussian guide.

    :param int num_pixels: :math:`D`, the number of binary pixels.
    :param latent_dims: widths of the stochastic layers, from the data upwards
        (``(50,)``: one layer; ``(100, 50)``: two layers as in Burda et al.).
    :param hidden_dims: for each stochastic layer, the deterministic hidden widths between
        it and the layer below (the data for the first): ``((200, 200),)`` or
        ``((200, 200), (100, 100))``. The generative networks use the mirror image.
    :param image_shape: ``(H, W)`` with ``H * W == num_pixels``, used to accept image-shaped
        input and to draw sample grids. Defaults to a square when ``num_pixels`` is one.
    :param pixel_mean: optional ``(num_pixels,)`` tensor of training-set pixel means; the
        decoder's output bias is set to their log-odds (Burda et al. 2015), so training
        starts from the factorised marginal.
    :param str activation: hidden nonlinearity (``"tanh"`` as in the paper).
    :param str name: Pyro name prefix of the parameters. Defaults to a fresh ``"vae<N>"`` so
        that two instances in one process never share entries of Pyro's param store.

    Use :meth:`burda` for the paper's architectures.
    """

    def __init__(
        self,
        num_pixels: int = 784,
        latent_dims: Sequence[int] = (50,),
        hidden_dims: Sequence[Sequence[int]] = ((200, 200),),
        image_shape: Sequence[int] | None = None,
        pixel_mean: torch.Tensor | None = None,
        activation: str = "tanh",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name if name is not None else f"vae{next(_instance_ids)}")
        latent_dims = tuple(int(d) for d in latent_dims)
        hidden_dims = tuple(tuple(int(h) for h in hs) for hs in hidden_dims)
        if not latent_dims:
            raise ValueError("latent_dims must name at least one stochastic layer")
        if len(hidden_dims) != len(latent_dims):
            raise ValueError(
                f"hidden_dims needs one entry per stochastic layer: got {len(hidden_dims)} "
                f"entries for latent_dims={latent_dims}"
            )
        if image_shape is None:
            side = math.isqrt(num_pixels)
            image_shape = (side, side) if side * side == num_pixels else (1, num_pixels)
        image_shape = tuple(int(s) for s in image_shape)
        if math.prod(image_shape) != num_pixels:
            raise ValueError(
                f"image_shape {image_shape} does not hold num_pixels={num_pixels} pixels"
            )
        self.num_pixels = int(num_pixels)
        self.latent_dims = latent_dims
        self.hidden_dims = hidden_dims
        self.image_shape = image_shape
        self.activation = activation
        # Guide: q(z1 | x), q(z2 | z1), ...
        below = (self.num_pixels,) + latent_dims[:-1]
        self.encoders = torch.nn.ModuleList(
            GaussianHead(b, hs, z, activation) for b, hs, z in zip(below, hidden_dims, latent_dims)
        )
        # Model: p(x | z1) (Bernoulli logits), p(z1 | z2), ...
        self.decoder = MLP(latent_dims[0], tuple(reversed(hidden_dims[0])), num_pixels, activation)
        self.priors = torch.nn.ModuleList(
            GaussianHead(latent_dims[l + 1], tuple(reversed(hidden_dims[l + 1])), latent_dims[l])
            for l in range(len(latent_dims) - 1)
        )
        if pixel_mean is not None:
            self.init_output_bias(pixel_mean)

    @classmethod
    def burda(cls, num_pixels: int = 784, layers: int = 1, **kwargs) -> VAE:
        """The architectures of Burda et al. (2015): ``layers=1`` is x-200-200-z(50);
        ``layers=2`` is x-200-200-z1(100)-100-100-z2(50) (tanh throughout)."""
        if layers not in BURDA_ARCHITECTURES:
            raise ValueError(f"layers must be 1 or 2 (the paper's architectures), got {layers}")
        return cls(num_pixels, **BURDA_ARCHITECTURES[layers], **kwargs)

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    @torch.no_grad()
    def init_output_bias(self, pixel_mean: torch.Tensor, eps: float = 1e-3) -> None:
        r"""Set the decoder's output bias to :math:`\log\frac{m}{1-m}` of the pixel means
        ``m`` (clamped to ``[eps, 1 - eps]``)."""
        pixel_mean = torch.as_tensor(pixel_mean).reshape(-1)
        if pixel_mean.numel() != self.num_pixels:
            raise ValueError(
                f"pixel_mean: expected {self.num_pixels} values, got {pixel_mean.numel()}"
            )
        bias = self.decoder.output_layer.bias
        bias.copy_(torch.logit(pixel_mean.to(bias).clamp(eps, 1 - eps)))

    def _module(self, name: str) -> torch.nn.Module:
        # Attribute access registers the submodule's parameters with Pyro (what SVI and
        # Pyro's ELBOs need); skipped when no handler could see the param statements.
        return getattr(self, name) if params_observed() else self._modules[name]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = flatten_images(x, self.num_pixels, self.image_shape)
        if is_validation_enabled():
            # model and guide see the same batch object in a step: check it (a host sync)
            # once; a weak reference cannot mistake a new batch for a freed one.
            ref, version = self.__dict__.get("_checked", (None, None))
            if ref is None or ref() is not x or version != x._version:
                check_binary(x)
                self.__dict__["_checked"] = (weakref.ref(x), x._version)
        return x

    @pyro_method
    def model(self, x: torch.Tensor | None = None, num_samples: int | None = None):
        r"""The generative model :math:`p_\theta(x, z_{1:L})`.

        :param x: binary data, ``(batch, num_pixels)`` or image-shaped; ``None`` to sample.
        :param int num_samples: batch size when ``x`` is ``None``.
        :returns: the Bernoulli logits of :math:`p(x \mid z_1)`.
        """
        if x is None:
            if num_samples is None:
                raise ValueError("model(x=None) needs num_samples")
            batch, ref = int(num_samples), self.decoder.output_layer.bias
        else:
            x = self._prepare(x)
            batch, ref = x.shape[0], x
        L = self.num_layers
        priors = self._module("priors") if L > 1 else ()
        decoder = self._module("decoder")
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
        x = self._prepare(x)
        h = x
        with pyro.plate("data", x.shape[0]):
            for l, encoder in enumerate(self._module("encoders")):
                loc, scale = encoder(h)
                h = pyro.sample(f"z{l + 1}", dist.Normal(loc, scale).to_event(1))
        return h

    # ---------------------------------------------------------------- user-facing helpers

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> torch.Tensor:
        """Draw images from the model: pixel probabilities (``mean=True``, what sample grids
        usually show) or binary samples. Returns ``(num_samples, num_pixels)``."""
        with pyro.poutine.block(), pyro.poutine.trace() as tr:
            logits = self.model(None, num_samples=num_samples)
        return torch.sigmoid(logits) if mean else tr.trace.nodes["x"]["value"]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Encode ``x`` with one guide sample and decode it (pixel probabilities)."""
        with pyro.poutine.block():
            guide_tr = pyro.poutine.trace(self.guide).get_trace(x)
            logits = pyro.poutine.replay(self.model, trace=guide_tr)(x)
        return torch.sigmoid(logits) if mean else torch.bernoulli(torch.sigmoid(logits))
