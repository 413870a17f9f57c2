r"""Registry entry of the Helmholtz machines: sigmoid belief nets (or NADE-layered ones) with
a recognition network, trained by wake-sleep, reweighted wake-sleep, NVIL or VIMCO.

``pyrogen train helmholtz --layers 200,200 --objective rws --num-particles 5`` trains the
SBN 200-200 of Mnih & Gregor (2014) and Bornschein & Bengio (2015) with
:class:`~pyrogen.train.SVILearner` and Adam on the chosen loss:

* ``ws``: :class:`~pyrogen.infer.WakeSleep` (Hinton et al. 1995; one sample, sleep-q);
* ``rws``: :class:`~pyrogen.infer.ReweightedWakeSleep` with :math:`K` particles and
  ``--insomnia`` (weight of wake-q against sleep-q; 0.5 uses both, as in Bornschein &
  Bengio);
* ``nvil``: :class:`~pyrogen.infer.NVIL` with an input-dependent baseline network (an MLP
  with 100 tanh units, as in Mnih & Gregor) that the model owns as ``model.baseline``, so
  the optimizer trains it and checkpoints keep it (the running mean and variance of the
  learning signal are the loss's state, also checkpointed);
* ``vimco``: :class:`~pyrogen.infer.VIMCO` with :math:`K` particles;
* ``iwae``: the importance-weighted bound :math:`\mathcal L_K` of Burda et al. Its usual
  estimator (:class:`~pyrogen.infer.IWAE`) needs reparameterizable latents, which Bernoulli
  units are not; for them the bound's gradient is a score-function one, and VIMCO is that
  estimator with per-particle baselines. So ``iwae`` trains :math:`\mathcal L_K` with
  VIMCO's estimator: the same objective and gradient as ``vimco`` (the name is kept for
  the command line's uniformity with the VAE family).

Validation reports the negative :math:`K`-sample bound (:math:`K` = ``--num-particles``;
the ELBO for ``ws``). Test log-likelihood: importance sampling with the recognition model as
proposal (:math:`K` = 5000), exact for machines small enough to enumerate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, choice, option, register, sizes

OBJECTIVES = ("ws", "rws", "nvil", "vimco", "iwae")
#: tanh units of NVIL's input-dependent baseline network (Mnih & Gregor 2014)
NVIL_BASELINE_HIDDEN = 100


@dataclass
class HelmholtzConfig:
    """Hyper-parameters of the Helmholtz machine family."""

    layers: tuple = sizes((200, 200), "latent layer widths from the data upwards (SBN 200-200)")
    conditional: str = choice(
        "sigmoid",
        ("sigmoid", "nade"),
        "layer type: sigmoid belief net layers, or NADE layers (Bornschein & Bengio 2015)",
    )
    hidden: int = option(
        0,
        "sigmoid: units of a deterministic tanh layer inside each conditional (0: none); "
        "nade: hidden units of each NADE layer (0: the default, 50)",
    )
    objective: str = choice(
        "rws",
        OBJECTIVES,
        "learning rule: ws (wake-sleep), rws (reweighted wake-sleep), nvil, vimco, or iwae "
        "(the K-sample bound, trained with VIMCO's estimator for Bernoulli latents)",
    )
    num_particles: int = option(5, "particles K per example (rws, vimco, iwae)")
    insomnia: float = option(
        0.5, "rws: weight of wake-q against sleep-q in the recognition update (0..1)"
    )

    def validate(self) -> None:
        if not self.layers or min(self.layers) < 1:
            raise ValueError(f"layers must list positive widths, got {self.layers}")
        if self.conditional not in ("sigmoid", "nade"):
            raise ValueError(f"conditional must be 'sigmoid' or 'nade', got {self.conditional!r}")
        if self.hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {self.hidden}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        minimum = 2 if self.objective in ("vimco", "iwae") else 1
        if self.objective == "rws" and self.insomnia > 0:
            minimum = 2
        if self.num_particles < minimum:
            raise ValueError(
                f"num_particles must be >= {minimum} for objective {self.objective!r}, got "
                f"{self.num_particles}"
            )
        if not 0 <= self.insomnia <= 1:
            raise ValueError(f"insomnia must be in [0, 1], got {self.insomnia}")


@register
class HelmholtzFamily(Family):
    name = "helmholtz"
    description = "Helmholtz machine (sigmoid belief net + recognition net): WS, RWS, NVIL, VIMCO"
    config_cls = HelmholtzConfig
    sample_option = "num_samples"
    default_num_samples = 5000
    smoke_config = {"layers": (16, 8), "num_particles": 2}
    # Adam, batch 24 (see benchmarks/helmholtz.py for the settings behind the quoted NLLs)
    default_lr = 1e-3

    def build(self, config: HelmholtzConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.helmholtz import HelmholtzMachine

        return HelmholtzMachine(
            (info.num_features, *config.layers),
            hidden=config.hidden or None,
            conditional=config.conditional,
            image_shape=info.image_shape,
            pixel_mean=info.pixel_mean,
            baseline_hidden=NVIL_BASELINE_HIDDEN if config.objective == "nvil" else None,
        )

    def loss(self, config: HelmholtzConfig, model=None):
        """The learning rule of ``config.objective`` (``model``: the machine, whose
        ``baseline`` network NVIL uses)."""
        from pyrogen.infer import NVIL, VIMCO, ReweightedWakeSleep, WakeSleep

        k = config.num_particles
        if config.objective == "ws":
            return WakeSleep(max_plate_nesting=1)
        if config.objective == "rws":
            return ReweightedWakeSleep(k, insomnia=config.insomnia, max_plate_nesting=1)
        if config.objective == "nvil":
            baseline = getattr(model, "baseline", None)
            return NVIL(baseline, max_plate_nesting=1)
        return VIMCO(k, max_plate_nesting=1)  # vimco, and iwae (module docs)

    def learner(self, model, config: HelmholtzConfig, lr: float):
        from pyrogen.train import SVILearner

        k = 1 if config.objective in ("ws", "nvil") else config.num_particles

        def validation(batch):  # the negative K-sample bound per example
            lw = model.log_weights(batch, k)
            return {"loss": -(torch.logsumexp(lw, 0) - math.log(k)).mean()}

        return SVILearner(model, self.loss(config, model), lr=lr, evaluate_fn=validation)
