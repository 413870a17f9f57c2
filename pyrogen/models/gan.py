r"""Generators of GANs and GMMNs as Pyro models, and the discriminators of GANs.

A generator is a deterministic network :math:`G` pushed through a Gaussian latent,

.. math::

    z \sim \mathcal N(0, I_d), \qquad x = G(z),

a distribution without a density on :math:`\mathbb R^D`. It is trained adversarially (GAN
[1, 2], :class:`~pyrogen.infer.adversarial.Adversarial`) or by moment matching (GMMN [3],
:class:`~pyrogen.infer.MMD`). To give it a log-likelihood comparable with other families,
Wu et al. [4] add a Gaussian observation model,

.. math::

    x \mid z \sim \mathcal N\big(G(z), \sigma^2 I_D\big),

and estimate :math:`\log p(x)` by annealed importance sampling
(:func:`~pyrogen.evaluate.decoder_log_likelihood`); :math:`\sigma` is an argument of the
model (chosen on validation data, as in [4]).

Sample sites (stable names), inside ``pyro.plate("data")``: the latent ``"z"``
(``(N, d)``) and ``"x"``: observed :math:`\mathcal N(G(z), \sigma^2 I)` when the model has a
:math:`\sigma`, otherwise the deterministic site :math:`G(z)`. ``model(None,
num_samples=N)`` returns the generated batch :math:`G(z)` ``(N, D)``, which is what the MMD
and adversarial losses train.

Architectures:

* :meth:`Generator.goodfellow`: the MLP generator of the GAN paper's MNIST model [1]
  (100-1200-1200-784, ReLU, sigmoid output), with :class:`MLPDiscriminator`;
* :class:`DCGANGenerator` / :class:`DCGANDiscriminator` [2] for 28 × 28 and 64 × 64
  images: (transposed) convolutions with stride 2 instead of pooling, batch normalisation
  (not on the generator's output nor the discriminator's input), ReLU in the generator and
  LeakyReLU(0.2) in the discriminator, tanh output, weights from :math:`\mathcal N(0,
  0.02^2)`;
* :meth:`Generator.wu`: the decoders compared in [4] across GAN, GMMN and VAE,
  10-64-256-256-1024-784 (the GMMN architecture of [3]) and 50-1024-1024-1024-784.

**References**

[1] Generative Adversarial Nets. Ian Goodfellow, Jean Pouget-Abadie, Mehdi Mirza, Bing Xu,
    David Warde-Farley, Sherjil Ozair, Aaron Courville, Yoshua Bengio. NIPS 2014.

[2] Unsupervised Representation Learning with Deep Convolutional Generative Adversarial
    Networks. Alec Radford, Luke Metz, Soumith Chintala. ICLR 2016.

[3] Generative Moment Matching Networks. Yujia Li, Kevin Swersky, Richard Zemel. ICML 2015.

[4] On the Quantitative Analysis of Decoder-Based Generative Models. Yuhuai Wu, Yuri Burda,
    Ruslan Salakhutdinov, Roger Grosse. ICLR 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from pyrogen._checks import check_finite
from pyrogen.evaluate.decoder_ais import decoder_log_likelihood
from pyrogen.evaluate.dispatch import check_options
from pyrogen.models.base import GenerativeModel

__all__ = [
    "WU_ARCHITECTURES",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Generator",
    "MLPDiscriminator",
    "dcgan_init",
]

#: hidden widths of the decoders of Wu et al. (2017), by latent size
WU_ARCHITECTURES = {10: (64, 256, 256, 1024), 50: (1024, 1024, 1024)}

OUTPUTS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "softplus": nn.Softplus,
}


def _check_sigma(sigma) -> float | None:
    if sigma is None:
        return None
    sigma = float(sigma)
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be positive and finite (or None), got {sigma}")
    return sigma


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def _mlp(widths: Sequence[int], activation: str, output: str) -> nn.Sequential:
    _choice("activation", activation, ACTIVATIONS)
    _choice("output", output, OUTPUTS)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(ACTIVATIONS[activation]() if i < len(widths) - 2 else OUTPUTS[output]())
    return nn.Sequential(*layers)


def dcgan_init(module: nn.Module) -> None:
    r"""The initialisation of Radford et al. [2]: convolution and linear weights from
    :math:`\mathcal N(0, 0.02^2)`, batch-norm scales from :math:`\mathcal N(1, 0.02^2)`,
    biases zero. Use as ``net.apply(dcgan_init)``."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(GenerativeModel):
    r"""A generator :math:`x = G(z)`, :math:`z \sim \mathcal N(0, I_d)`, as a Pyro model (see
    module docs), with an optional Gaussian observation model for log-likelihoods.

    :param torch.nn.Module network: :math:`G`: ``(B, d)`` latents to ``(B, D)`` or
        ``(B, *image_shape)`` outputs.
    :param int latent_dim: :math:`d`.
    :param int num_features: :math:`D`.
    :param image_shape: shape of one example, ``(H, W)`` or ``(C, H, W)`` (product
        :math:`D`); default a square when :math:`D` is one.
    :param float sigma: :math:`\sigma > 0` of the observation model
        :math:`\mathcal N(G(z), \sigma^2 I)`; ``None`` (the default) for a plain generator,
        which can sample but not score data (:meth:`log_likelihood` then needs ``sigma``).
    :param str output_range: ``"unit"`` (outputs in [0, 1]) or ``"symmetric"`` (in
        [-1, 1], e.g. tanh), used by :meth:`to_unit_interval` for pictures.
    :param str name: Pyro name prefix; default a fresh ``"generator<N>"``.
    """

    name_prefix = "generator"
    has_mean_samples = True

    def __init__(
        self,
        network: nn.Module,
        latent_dim: int,
        num_features: int,
        image_shape: Sequence[int] | None = None,
        *,
        sigma: float | None = None,
        output_range: str = "unit",
        name: str | None = None,
    ) -> None:
        shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        super().__init__(num_features, shape, name)
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        _choice("output_range", output_range, ("unit", "symmetric"))
        self.network = network
        self.latent_dim = int(latent_dim)
        self.sigma = _check_sigma(sigma)
        self.output_range = output_range

    # ---- named architectures --------------------------------------------------------

    @classmethod
    def mlp(
        cls,
        latent_dim: int,
        hidden: Sequence[int],
        num_features: int = 784,
        *,
        activation: str = "relu",
        output: str = "sigmoid",
        **kwargs,
    ) -> Generator:
        """A fully connected generator ``latent_dim - hidden... - num_features``.

        :param str activation: ``"relu"``, ``"tanh"``, ``"leaky_relu"`` or ``"softplus"``.
        :param str output: ``"sigmoid"`` (pixels in [0, 1]), ``"tanh"`` or ``"linear"``.
        """
        widths = [int(latent_dim), *map(int, hidden), int(num_features)]
        if min(widths) < 1:
            raise ValueError(f"layer widths must be positive, got {widths}")
        net = _mlp(widths, activation, output)
        if output == "tanh":
            kwargs.setdefault("output_range", "symmetric")
        return cls(net, latent_dim, num_features, **kwargs)

    @classmethod
    def goodfellow(cls, latent_dim: int = 100, num_features: int = 784, **kwargs) -> Generator:
        """The MLP generator of Goodfellow et al.'s MNIST model [1]: 100-1200-1200-784,
        ReLU hidden units, sigmoid output."""
        return cls.mlp(latent_dim, (1200, 1200), num_features, **kwargs)

    @classmethod
    def wu(cls, latent_dim: int = 50, num_features: int = 784, **kwargs) -> Generator:
        """The decoders of Wu et al. [4]: ``latent_dim=10``: 10-64-256-256-1024-784 (the
        GMMN network of [3]); ``latent_dim=50``: 50-1024-1024-1024-784. Sigmoid output for
        pixels in [0, 1]; the hidden activation is an option (``activation="relu"`` by
        default)."""
        if latent_dim not in WU_ARCHITECTURES:
            raise ValueError(
                f"latent_dim must be one of {sorted(WU_ARCHITECTURES)} (Wu et al.'s decoders), "
                f"got {latent_dim}"
            )
        return cls.mlp(latent_dim, WU_ARCHITECTURES[latent_dim], num_features, **kwargs)

    # ---- the network ----------------------------------------------------------------

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`G(z)` as ``(B, D)``."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected shape (batch, {self.latent_dim}), got {tuple(z.shape)}")
        return self._observed("network")(z).reshape(z.shape[0], self.num_features)

    def _flatten(self, x, name: str = "x") -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() == len(self.image_shape) + 1:
            if tuple(x.shape[1:]) == self.image_shape:
                return x.reshape(x.shape[0], self.num_features)
        return super()._flatten(x, name)

    # ---- the protocol ---------------------------------------------------------------

    @pyro_method
    def model(self, x: torch.Tensor | None = None, num_samples: int | None = None):
        r"""``z ~ N(0, I)`` and ``x = G(z)`` in ``pyro.plate("data")``; with a
        :math:`\sigma`, ``x`` is observed from :math:`\mathcal N(G(z), \sigma^2 I)`.

        :param x: data ``(N, D)`` or image-shaped (needs ``sigma``); ``None`` to generate.
        :param int num_samples: batch size when ``x`` is ``None``.
        :returns: :math:`G(z)`, ``(N, D)``.
        """
        if x is None:
            if num_samples is None:
                raise ValueError("model(x=None) needs num_samples")
            n = int(num_samples)
        else:
            if self.sigma is None:
                raise ValueError(
                    "sigma: a generator without an observation model has no density to score "
                    "data with; construct it with sigma > 0"
                )
            x = self._flatten(x)
            check_finite(x)
            n = x.shape[0]
        ref = next(self.network.parameters())
        with pyro.plate("data", n):
            prior = dist.Normal(ref.new_zeros(()), ref.new_ones(())).expand([self.latent_dim])
            z = pyro.sample("z", prior.to_event(1))
            out = self.decode(z)
            if self.sigma is None:
                pyro.deterministic("x", out, event_dim=1)
            else:
                pyro.sample("x", dist.Normal(out, self.sigma).to_event(1), obs=x)
        return out

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, context: torch.Tensor | None = None, mean: bool = False
    ) -> torch.Tensor:
        r"""``(num_samples, D)`` draws: :math:`G(z)`, plus :math:`\sigma\epsilon` when the
        model has a :math:`\sigma` and ``mean`` is false (``mean=True``: :math:`G(z)`, the
        usual picture of a GAN's samples)."""
        self._check_context(context)
        with pyro.poutine.block():
            out = self.model(None, num_samples=int(num_samples))
        if self.sigma is not None and not mean:
            out = out + self.sigma * torch.randn_like(out)
        return out

    def log_likelihood(self, data, *, sigma: float | None = None, **options):
        r"""AIS estimate of the mean test log-likelihood under the Gaussian observation
        model [4] (:func:`~pyrogen.evaluate.decoder_log_likelihood`, the network in eval
        mode).

        :param data: ``(N, D)`` or image-shaped examples.
        :param float sigma: :math:`\sigma` (default the model's own); required when the
            model has none.
        :param options: those of :func:`~pyrogen.evaluate.decoder_log_likelihood`
            (``num_chains``, ``num_temperatures``, ``schedule``, ``num_leapfrog``,
            ``step_size``, ``batch_size``, ``progress``, ...).
        """
        check_options(decoder_log_likelihood, options, "Generator.log_likelihood", 2)
        for fixed in ("latent_dim", "likelihood", "encoder"):
            if fixed in options:
                raise TypeError(f"Generator.log_likelihood: {fixed} is fixed by the model")
        sigma = _check_sigma(sigma) if sigma is not None else self.sigma
        if sigma is None:
            raise ValueError(
                "sigma: give the observation noise (sigma > 0) to score data with a generator"
            )
        x = self._flatten(data, "data")
        was_training = self.training
        self.eval()
        try:
            return decoder_log_likelihood(
                self.decode, x, latent_dim=self.latent_dim, sigma=sigma, **options
            )
        finally:
            self.train(was_training)

    def to_unit_interval(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples as values in [0, 1] for pictures."""
        if self.output_range == "symmetric":
            samples = (samples + 1) / 2
        return samples.clamp(0, 1)


def _dcgan_levels(image_size: int) -> int:
    if image_size == 28:
        return 2  # 7 -> 14 -> 28
    if image_size == 64:
        return 4  # 4 -> 8 -> 16 -> 32 -> 64
    raise ValueError(f"image_size must be 28 or 64, got {image_size}")


class DCGANGenerator(Generator):
    r"""The DCGAN generator of Radford et al. [2] as a :class:`Generator`.

    :math:`z` is projected by a transposed convolution to a :math:`7\times7` (28 × 28
    images) or :math:`4\times4` (64 × 64) map of ``width * 2**(levels-1)`` channels, then each
    stride-2 transposed convolution (kernel 4) doubles the side and halves the channels, with
    batch normalisation and ReLU after every layer but the last, which has tanh (outputs in
    [-1, 1]; :meth:`to_unit_interval` maps them to [0, 1]).

    :param int latent_dim: :math:`d` (100 in [2]).
    :param int image_size: 28 or 64.
    :param int channels: image channels (1 for MNIST, 3 for colour images).
    :param int width: channels of the last hidden layer (64 in [2]).
    :param kwargs: ``sigma``, ``name`` of :class:`Generator`.
    """

    name_prefix = "dcgan"

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 64,
        channels: int = 1,
        width: int = 64,
        **kwargs,
    ) -> None:
        levels = _dcgan_levels(int(image_size))
        start = 7 if image_size == 28 else 4
        top = int(width) * 2 ** (levels - 1)
        layers: list[nn.Module] = [
            nn.Unflatten(1, (int(latent_dim), 1, 1)),
            nn.ConvTranspose2d(int(latent_dim), top, start, 1, 0, bias=False),
            nn.BatchNorm2d(top),
            nn.ReLU(),
        ]
        c = top
        for _ in range(levels - 1):
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(),
            ]
            c //= 2
        layers += [nn.ConvTranspose2d(c, int(channels), 4, 2, 1), nn.Tanh()]
        net = nn.Sequential(*layers)
        net.apply(dcgan_init)
        shape = (int(channels), int(image_size), int(image_size))
        kwargs.setdefault("output_range", "symmetric")
        super().__init__(net, latent_dim, math.prod(shape), shape, **kwargs)
        self.image_size, self.channels, self.width = int(image_size), int(channels), int(width)


class DCGANDiscriminator(nn.Module):
    r"""The DCGAN discriminator of Radford et al. [2]: stride-2 convolutions (kernel 4) that
    halve the side and double the channels from ``width``, LeakyReLU(0.2), batch
    normalisation on every layer but the first, and a last convolution to one logit.

    :param int image_size: 28 or 64.
    :param int channels: image channels.
    :param int width: channels of the first layer (64 in [2]).

    ``forward(x)`` takes ``(B, C*H*W)`` or ``(B, C, H, W)`` images and returns ``(B,)``
    logits of :math:`D(x)`, the probability that ``x`` is data.
    """

    def __init__(self, image_size: int = 64, channels: int = 1, width: int = 64) -> None:
        super().__init__()
        levels = _dcgan_levels(int(image_size))
        self.shape = (int(channels), int(image_size), int(image_size))
        layers: list[nn.Module] = [
            nn.Conv2d(int(channels), int(width), 4, 2, 1),
            nn.LeakyReLU(0.2),
        ]
        c = int(width)
        for _ in range(levels - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c)]
            layers.append(nn.LeakyReLU(0.2))
            c *= 2
        last = 7 if image_size == 28 else 4
        layers += [nn.Conv2d(c, 1, last, 1, 0), nn.Flatten(0)]
        self.net = nn.Sequential(*layers)
        self.net.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], *self.shape))


class MLPDiscriminator(nn.Module):
    r"""A fully connected discriminator ``num_features - hidden... - 1`` with
    LeakyReLU(0.2) hidden units (and optional dropout), returning ``(B,)`` logits.

    Goodfellow et al. [1] used maxout units with dropout (240 units of 5 pieces, twice, on
    MNIST); this is the common LeakyReLU variant of the same size.

    :param int num_features: :math:`D` (inputs are flattened).
    :param hidden: hidden widths.
    :param float dropout: dropout probability after each hidden layer.
    """

    def __init__(
        self, num_features: int = 784, hidden: Sequence[int] = (240, 240), dropout: float = 0.0
    ) -> None:
        super().__init__()
        widths = [int(num_features), *map(int, hidden)]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(widths[-1], 1), nn.Flatten(0)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))
