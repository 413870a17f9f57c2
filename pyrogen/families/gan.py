r"""Registry entries of the generator families: ``gan`` (adversarial training) and ``gmmn``
(generative moment matching), on the generators of :mod:`pyrogen.models.gan`.

Both train a generator :math:`x = G(z)`, :math:`z \sim \mathcal N(0, I_d)`: ``gan`` by the
alternating updates of :class:`~pyrogen.infer.adversarial.Adversarial` against a
discriminator [1, 2] (non-saturating generator loss by default, :math:`k` discriminator
steps per generator step, optional R1 penalty [5]); ``gmmn`` by minimising the unbiased
:math:`\widehat{\mathrm{MMD}}{}^2_u` between generated and data batches with a sum of
Gaussian kernels over several bandwidths, in data space [3] (:class:`~pyrogen.infer.MMD`).
The generator is Goodfellow et al.'s MLP [1] (``--generator mlp``, widths from
``--latent-dim`` and ``--hidden``), DCGAN's [2] (``--generator dcgan``, 28 × 28 or 64 × 64
images), or one of the decoders Wu et al. [4] share between GAN, GMMN and VAE
(``wu10``: 10-64-256-256-1024-784, ``wu50``: 50-1024-1024-1024-784; the same networks as
the ``vae`` family's ``--decoder wu10|wu50 --observation gaussian``).

**Evaluation.** A generator has no density; as in Wu et al. [4] the model is given the
Gaussian observation model :math:`x \mid z \sim \mathcal N(G(z), \sigma^2 I)` with
:math:`\sigma` from the config (``--sigma``, 0.1 by default; [4] choose it on validation
data, and a log-likelihood is only comparable at the same :math:`\sigma`), and its test
log-likelihood is estimated by annealed importance sampling with HMC from the prior
(:func:`~pyrogen.evaluate.decoder_log_likelihood`; chains, temperatures and leapfrog steps
from the config, 16 chains by default as in [4]). Being a density of continuous values, it
can be positive. :meth:`~pyrogen.models.Generator.sample` draws from that density
(:math:`G(z) + \sigma\epsilon`); ``mean=True`` (what ``pyrogen sample`` and sample grids
show) gives :math:`G(z)`, in [0, 1] for every generator here (DCGAN's tanh output is
mapped by :math:`(t + 1)/2`, i.e. the data are seen on DCGAN's [-1, 1] scale).

GMMN+AE [3] (moment matching in an autoencoder's code space) is not a family option yet: it
needs a two-stage learner (the autoencoder first, then the generator on its codes) and a
model :math:`x = \mathrm{dec}(G(z))`; in code, train a
:class:`~pyrogen.models.Autoencoder`, then the generator with
``MMD(data_transform=autoencoder.transform)``, and decode its samples with
``autoencoder.decode``.

**References**

[1] Generative Adversarial Nets. Ian Goodfellow, Jean Pouget-Abadie, Mehdi Mirza, Bing Xu,
    David Warde-Farley, Sherjil Ozair, Aaron Courville, Yoshua Bengio. NIPS 2014.

[2] Unsupervised Representation Learning with Deep Convolutional Generative Adversarial
    Networks. Alec Radford, Luke Metz, Soumith Chintala. ICLR 2016.

[3] Generative Moment Matching Networks. Yujia Li, Kevin Swersky, Richard Zemel. ICML 2015.

[4] On the Quantitative Analysis of Decoder-Based Generative Models. Yuhuai Wu, Yuri Burda,
    Ruslan Salakhutdinov, Roger Grosse. ICLR 2017.

[5] Which Training Methods for GANs do actually Converge? Lars Mescheder, Andreas Geiger,
    Sebastian Nowozin. ICML 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from pyrogen.families.base import DataInfo, Family, choice, option, register, sizes

__all__ = ["GANConfig", "GANFamily", "GMMNConfig", "GMMNFamily", "build_generator"]

GENERATORS = ("mlp", "dcgan", "wu10", "wu50")
GENERATOR_LOSSES = ("non_saturating", "minimax")


@dataclass
class GeneratorConfig:
    """Hyper-parameters shared by the generator families: the generator and its
    evaluation (see module docs)."""

    generator: str = choice(
        "mlp",
        GENERATORS,
        "generator network: mlp (latent-dim, hidden, ReLU, sigmoid output), dcgan (28x28 or "
        "64x64 images), wu10 (10-64-256-256-1024-D) or wu50 (50-1024-1024-1024-D)",
    )
    latent_dim: int = option(100, "latent size d of z ~ N(0, I_d) (mlp, dcgan; wu10/wu50 fix it)")
    hidden: tuple = sizes((1200, 1200), "hidden widths of the mlp generator (Goodfellow et al.)")
    width: int = option(64, "dcgan: channels of the generator's last hidden layer")
    sigma: float = option(
        0.1, "sigma of the Gaussian observation N(G(z), sigma^2 I) used for log-likelihoods"
    )
    ais_temperatures: int = option(1000, "AIS evaluation: intermediate distributions")
    ais_leapfrog: int = option(10, "AIS evaluation: leapfrog steps per HMC transition")

    def validate(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        for name in ("latent_dim", "width", "ais_temperatures", "ais_leapfrog"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be positive and finite, got {self.sigma}")


class _ToUnitInterval(nn.Module):
    """:math:`t \\mapsto (t + 1) / 2`: a tanh output in [-1, 1] as pixels in [0, 1]."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return (t + 1) / 2


def _square_side(info: DataInfo, what: str) -> int:
    shape = tuple(s for s in info.image_shape if s != 1) or (1,)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] not in (28, 64):
        raise ValueError(
            f"generator: {what} needs 28x28 or 64x64 one-channel images, got image_shape "
            f"{tuple(info.image_shape)}"
        )
    return shape[0]


def build_generator(config: GeneratorConfig, info: DataInfo):
    """The :class:`~pyrogen.models.Generator` of ``config`` for data described by ``info``,
    with the Gaussian observation model of ``config.sigma``; outputs in [0, 1]."""
    from pyrogen.models.gan import DCGANGenerator, Generator

    D = info.num_features
    common = dict(image_shape=info.image_shape, sigma=config.sigma)
    if config.generator == "mlp":
        return Generator.mlp(config.latent_dim, config.hidden, D, **common)
    if config.generator in ("wu10", "wu50"):
        return Generator.wu(int(config.generator[2:]), D, **common)
    side = _square_side(info, "dcgan")
    dcgan = DCGANGenerator(config.latent_dim, side, 1, config.width)
    network = nn.Sequential(dcgan.network, _ToUnitInterval())
    return Generator(network, config.latent_dim, D, **common)


class _GeneratorFamily(Family):
    """What the generator families share: the model, its evaluation by decoder AIS."""

    observation = "gaussian"
    sample_option = "num_chains"
    default_num_samples = 16

    def build(self, config: GeneratorConfig, info: DataInfo) -> torch.nn.Module:
        return build_generator(config, info)

    def evaluation_options(self, config: GeneratorConfig) -> dict:
        return {
            "sigma": config.sigma,
            "num_temperatures": config.ais_temperatures,
            "num_leapfrog": config.ais_leapfrog,
        }

    def log_likelihood(self, model, config, data, *, seed: int | None = None, **options):
        """Decoder AIS (module docs) with this config's options; ``seed`` (what
        :meth:`pyrogen.runs.Run.evaluate` passes) seeds the chains for a reproducible
        estimate without consuming the global random streams (``None``: the global
        stream)."""
        if seed is None:
            return super().log_likelihood(model, config, data, **options)
        from pyrogen._rng import preserved_rng

        with preserved_rng():
            torch.manual_seed(int(seed))
            return super().log_likelihood(model, config, data, **options)


@dataclass
class GANConfig(GeneratorConfig):
    """Hyper-parameters of the GAN family (see module docs)."""

    generator_loss: str = choice(
        "non_saturating",
        GENERATOR_LOSSES,
        "non_saturating (-log D(G(z))) or minimax (log(1 - D(G(z))))",
    )
    discriminator_steps: int = option(1, "k: discriminator updates per generator update")
    discriminator_hidden: tuple = sizes(
        (240, 240), "hidden widths of the MLP discriminator (LeakyReLU)"
    )
    dropout: float = option(0.0, "dropout after each hidden layer of the MLP discriminator")
    r1_weight: float = option(0.0, "gamma of the R1 gradient penalty on data (0: none)")

    def validate(self) -> None:
        super().validate()
        if self.generator_loss not in GENERATOR_LOSSES:
            raise ValueError(
                f"generator_loss must be one of {GENERATOR_LOSSES}, got {self.generator_loss!r}"
            )
        if int(self.discriminator_steps) < 1:
            raise ValueError(f"discriminator_steps must be >= 1, got {self.discriminator_steps}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.r1_weight >= 0 and math.isfinite(self.r1_weight)):
            raise ValueError(f"r1_weight must be >= 0, got {self.r1_weight}")


@register
class GANFamily(_GeneratorFamily):
    name = "gan"
    description = "generative adversarial network (MLP, DCGAN or Wu et al. generator)"
    config_cls = GANConfig
    default_lr = 2e-4
    smoke_config = {
        "latent_dim": 4,
        "hidden": (16,),
        "discriminator_hidden": (16,),
        "ais_temperatures": 5,
        "ais_leapfrog": 2,
    }

    def discriminator(self, config: GANConfig, model) -> torch.nn.Module:
        """The discriminator for ``config`` and the generator ``model``: DCGAN's with the
        DCGAN generator, an MLP one otherwise."""
        from pyrogen.models.gan import DCGANDiscriminator, MLPDiscriminator

        if config.generator == "dcgan":
            info = DataInfo(model.num_features, tuple(model.image_shape))
            return DCGANDiscriminator(_square_side(info, "dcgan"), 1, config.width)
        return MLPDiscriminator(model.num_features, config.discriminator_hidden, config.dropout)

    def learner(self, model, config: GANConfig, lr: float):
        from pyrogen.infer.adversarial import Adversarial

        return Adversarial(
            model,
            self.discriminator(config, model),
            generator_loss=config.generator_loss,
            discriminator_steps=config.discriminator_steps,
            lr=lr,
            r1_weight=config.r1_weight,
        )


@dataclass
class GMMNConfig(GeneratorConfig):
    """Hyper-parameters of the GMMN family (see module docs)."""

    generator: str = choice(
        "wu10",
        GENERATORS,
        "generator network: wu10 (10-64-256-256-1024-D, the GMMN of Li et al.), wu50, mlp "
        "(latent-dim, hidden) or dcgan (28x28 or 64x64 images)",
    )
    bandwidths: str = option(
        "2,5,10,20,40,80",
        "comma-separated bandwidths of the Gaussian kernels summed in MMD^2 (Li et al.'s for "
        "pixels in [0, 1])",
    )

    def kernel_bandwidths(self) -> tuple[float, ...]:
        """:attr:`bandwidths` as positive floats (a ValueError naming them otherwise)."""
        try:
            values = tuple(float(s) for s in str(self.bandwidths).split(",") if s.strip())
        except ValueError:
            values = ()
        if not values or not all(v > 0 and math.isfinite(v) for v in values):
            raise ValueError(
                f"bandwidths must be comma-separated positive numbers, got {self.bandwidths!r}"
            )
        return values

    def validate(self) -> None:
        super().validate()
        self.kernel_bandwidths()


@register
class GMMNFamily(_GeneratorFamily):
    name = "gmmn"
    description = "generative moment-matching network (MMD with a sum of Gaussian kernels)"
    config_cls = GMMNConfig
    default_lr = 1e-3
    smoke_config = {
        "generator": "mlp",
        "latent_dim": 4,
        "hidden": (16,),
        "ais_temperatures": 5,
        "ais_leapfrog": 2,
    }

    def loss(self, config: GMMNConfig):
        from pyrogen.infer.mmd import MMD

        return MMD(config.kernel_bandwidths())

    def learner(self, model, config: GMMNConfig, lr: float):
        from pyrogen.train import SVILearner

        return SVILearner(model, self.loss(config), lr=lr)
