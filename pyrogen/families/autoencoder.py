"""Registry entry of the deterministic autoencoder family (linear, nonlinear, deep with RBM
pre-training, stacked denoising): ``pyrogen train autoencoder --kind deep ...``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, choice, option, register

KINDS = ("linear", "nonlinear", "deep", "denoising")
DEFAULT_HIDDEN = {
    "linear": "30",
    "nonlinear": "500",
    "deep": "2000,1000,500,30",
    "denoising": "2000,1000,500,30",
}


@dataclass
class AutoencoderConfig:
    """Hyper-parameters of the autoencoder family (see :mod:`pyrogen.models.autoencoder`).

    Corruption: with ``kind="denoising"`` and several layers, each layer is pre-trained as a
    denoising autoencoder with ``noise`` and the stack is fine-tuned on clean inputs
    (Vincent et al. 2010); with one layer (or ``pretrain="none"``) the autoencoder itself
    trains on corrupted inputs. ``pretrain="denoising"`` with another kind also corrupts in
    pre-training only.
    """

    kind: str = choice(
        "deep",
        KINDS,
        "linear | nonlinear (one hidden layer) | deep (Hinton & Salakhutdinov 2006) | "
        "denoising (stacked denoising, Vincent et al. 2010)",
    )
    hidden: str = option(
        "",
        "comma-separated layer widths after the input, code last (empty: by kind: linear 30, "
        "nonlinear 500, deep/denoising 2000,1000,500,30)",
    )
    activation: str = choice(
        "sigmoid", ("sigmoid", "tanh", "relu"), "hidden units (not used by kind=linear)"
    )
    output: str = choice(
        "bernoulli",
        ("bernoulli", "gaussian"),
        "reconstruction error: Bernoulli cross-entropy on logits, or Gaussian (squared error)",
    )
    pretrain: str = choice(
        "auto",
        ("auto", "none", "rbm", "denoising"),
        "greedy layer-wise pre-training (auto: rbm for deep, denoising for denoising with "
        "several layers, none otherwise)",
    )
    pretrain_epochs: int = option(5, "epochs of greedy pre-training per layer (0: none)")
    corruption: str = choice("mask", ("mask", "gaussian"), "denoising corruption")
    noise: float = option(0.25, "corruption level: masked fraction, or Gaussian noise std")
    tied: bool = option(False, "keep decoder weights tied to the encoder's during fine-tuning")
    cd_k: int = option(1, "Gibbs sweeps per RBM pre-training update (CD-k)")
    rbm_lr: float = option(
        1e-4,
        "SGD learning rate of binary RBM pre-training per summed gradient (0.01 for the batch "
        "mean at batch 100; with ~1000 active inputs per unit, as above a 2000-unit layer, "
        "0.1 drives every hidden unit off)",
    )
    gaussian_lr: float = option(
        1e-5,
        "the same for the RBMs with Gaussian (linear) units, the first and the top one "
        "(0.001 for the batch mean, as Hinton & Salakhutdinov)",
    )
    rbm_sigma: float = option(
        0.3,
        "standard deviation of the first RBM's Gaussian visible units (output=gaussian), in "
        "units of the data, which should be standardized: below 1 so that the RBM's own "
        "noise does not already explain all the variance",
    )
    momentum: float = option(0.5, "SGD momentum of RBM pre-training")
    weight_decay: float = option(0.0, "L2 penalty on RBM weights during pre-training")

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        self.sizes()  # parses
        if self.pretrain_epochs < 0 or self.cd_k < 1 or min(self.rbm_lr, self.gaussian_lr) <= 0:
            raise ValueError(
                "pretrain_epochs must be >= 0, cd_k >= 1 and rbm_lr, gaussian_lr > 0; got "
                f"{self.pretrain_epochs}, {self.cd_k}, {self.rbm_lr}, {self.gaussian_lr}"
            )
        if not 0 <= self.momentum < 1 or self.weight_decay < 0 or not self.rbm_sigma > 0:
            raise ValueError("momentum must be in [0, 1), weight_decay >= 0 and rbm_sigma > 0")
        if self.noise < 0 or (self.corruption == "mask" and self.noise >= 1):
            raise ValueError(f"noise must be >= 0 (and < 1 for masking), got {self.noise}")
        if self.resolved_pretrain() == "rbm" and (
            self.kind == "linear" or self.activation != "sigmoid"
        ):
            raise ValueError(
                "RBM pre-training needs logistic hidden units: kind must not be 'linear' and "
                f"activation must be 'sigmoid' (got kind={self.kind!r}, "
                f"activation={self.activation!r}); use pretrain='denoising' or 'none'"
            )

    def sizes(self) -> tuple[int, ...]:
        text = self.hidden or DEFAULT_HIDDEN[self.kind]
        try:
            sizes = tuple(int(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise ValueError(f"hidden must be comma-separated integers, got {text!r}") from None
        if not sizes or min(sizes) < 1:
            raise ValueError(f"hidden must list positive widths, got {text!r}")
        if self.kind in ("linear", "nonlinear") and len(sizes) != 1:
            raise ValueError(f"kind={self.kind!r} has one layer (the code); got hidden={text!r}")
        return sizes

    def resolved_pretrain(self) -> str:
        if self.pretrain != "auto":
            return self.pretrain
        if self.kind == "deep":
            return "rbm"
        if self.kind == "denoising" and len(self.sizes()) > 1:
            return "denoising"
        return "none"


def build_autoencoder(config: AutoencoderConfig, info: DataInfo):
    """The module for ``config`` on data described by ``info``."""
    from pyrogen.models.autoencoder import Autoencoder

    sizes = (info.num_features, *config.sizes())
    act = "linear" if config.kind == "linear" else config.activation
    code = act if len(sizes) == 2 else "linear"
    pretrain = config.resolved_pretrain()
    noisy = config.kind == "denoising" and pretrain != "denoising"
    return Autoencoder(
        sizes,
        act,
        code,
        config.output,
        corruption=config.corruption,
        noise=config.noise if noisy else 0.0,
        tied=config.tied,
        pixel_mean=info.pixel_mean,
        image_shape=info.image_shape,
    )


def reconstruction_metrics(module):
    """Validation numbers: the loss (reconstruction error, per example, clean input) and the
    squared error per example."""

    def evaluate(batch):
        return {
            "loss": module.reconstruction_error(batch).mean(),
            "sq_error": module.squared_error(batch).mean(),
        }

    return evaluate


def pretraining_stages(model, config: AutoencoderConfig, lr: float):
    """``(stages, load)``: the greedy stages (:func:`~pyrogen.models.greedy.greedy_stages`)
    that pre-train ``model`` layer by layer (RBMs trained by CD on sampled binary codes of
    the layers below, or one-layer denoising autoencoders on clean codes), and the function
    that loads the trained parts into ``model`` when fine-tuning starts; ``([], None)``
    without pre-training."""
    from pyro.infer import Trace_ELBO

    from pyrogen._rng import draw_seed
    from pyrogen.families.rbm import cd_learner
    from pyrogen.infer import ContrastiveDivergence
    from pyrogen.models.greedy import greedy_stages
    from pyrogen.train import SVILearner

    method = config.resolved_pretrain()
    if method == "none" or config.pretrain_epochs == 0:
        return [], None
    if method == "rbm":
        parts = model.rbm_stack(config.rbm_sigma)

        seed = draw_seed()  # RBM k's noise: seed + k, drawn here, at build

        def learner_for(k, rbm):
            gaussian = "gaussian" in (rbm.visible_units, rbm.hidden_units)
            lr = config.gaussian_lr if gaussian else config.rbm_lr
            loss = ContrastiveDivergence(config.cd_k, seed=seed + k)
            return cd_learner(rbm, loss, lr, config.momentum, config.weight_decay)

        stages = greedy_stages(
            parts, learner_for, config.pretrain_epochs, sample=True, prefix="rbm"
        )
        load = model.load_rbms
    else:
        parts = model.denoising_stack(config.noise, config.corruption)
        stages = greedy_stages(
            parts,
            lambda k, part: SVILearner(part, Trace_ELBO(), lr=lr),
            config.pretrain_epochs,
            prefix="dae",
        )
        load = model.load_layers
    return stages, (lambda: load(parts))


@register
class AutoencoderFamily(Family):
    name = "autoencoder"
    description = "deterministic autoencoders: linear, nonlinear, deep (RBM-pre-trained), denoising"
    config_cls = AutoencoderConfig
    kind = "representation"
    smoke_config = {"hidden": "12,4", "pretrain_epochs": 1}
    sample_option = None
    default_num_samples = None
    default_lr = 1e-3  # Adam, fine-tuning (and denoising pre-training)

    def build(self, config: AutoencoderConfig, info: DataInfo) -> torch.nn.Module:
        return build_autoencoder(config, info)

    def learner(self, model, config: AutoencoderConfig, lr: float):
        """Adam on ``Trace_ELBO`` of the model (its reconstruction error), preceded by one
        greedy stage per layer when pre-training (a :class:`~pyrogen.train.StagedLearner`
        whose learning-rate schedule acts on fine-tuning only)."""
        from pyro.infer import Trace_ELBO

        from pyrogen.train import Stage, StagedLearner, SVILearner

        finetune = SVILearner(model, Trace_ELBO(), lr=lr, evaluate_fn=reconstruction_metrics(model))
        stages, load = pretraining_stages(model, config, lr)
        if not stages:
            return finetune
        stages.append(Stage("finetune", finetune, on_enter=load))
        return StagedLearner(stages, lr_stages=("finetune",))

    def log_likelihood(self, model, config, data, **options):
        raise TypeError(
            "an autoencoder defines no density, so no log-likelihood; evaluate() reports its "
            "reconstruction (Autoencoder.reconstruction_score)"
        )

    def evaluate(self, model, config, data, **options):
        """The test reconstruction (:meth:`~pyrogen.models.Autoencoder.reconstruction_score`):
        an autoencoder has no log-likelihood."""
        return model.reconstruction_score(data, **options)
