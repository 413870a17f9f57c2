"""Registry entry of the deterministic autoencoder family (linear, nonlinear, deep with RBM
pre-training, stacked denoising): ``pyrogen train autoencoder --kind deep ...``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pyrogen.registry import DataInfo, Family, _choice, _opt, register

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

    kind: str = _choice(
        "deep",
        KINDS,
        "linear | nonlinear (one hidden layer) | deep (Hinton & Salakhutdinov 2006) | "
        "denoising (stacked denoising, Vincent et al. 2010)",
    )
    hidden: str = _opt(
        "",
        "comma-separated layer widths after the input, code last (empty: by kind: linear 30, "
        "nonlinear 500, deep/denoising 2000,1000,500,30)",
    )
    activation: str = _choice(
        "sigmoid", ("sigmoid", "tanh", "relu"), "hidden units (not used by kind=linear)"
    )
    output: str = _choice(
        "bernoulli",
        ("bernoulli", "gaussian"),
        "reconstruction error: Bernoulli cross-entropy on logits, or Gaussian (squared error)",
    )
    pretrain: str = _choice(
        "auto",
        ("auto", "none", "rbm", "denoising"),
        "greedy layer-wise pre-training (auto: rbm for deep, denoising for denoising with "
        "several layers, none otherwise)",
    )
    pretrain_epochs: int = _opt(5, "epochs of greedy pre-training per layer (0: none)")
    corruption: str = _choice("mask", ("mask", "gaussian"), "denoising corruption")
    noise: float = _opt(0.25, "corruption level: masked fraction, or Gaussian noise std")
    tied: bool = _opt(False, "keep decoder weights tied to the encoder's during fine-tuning")
    cd_k: int = _opt(1, "Gibbs sweeps per RBM pre-training update (CD-k)")
    rbm_lr: float = _opt(
        1e-4,
        "SGD learning rate of binary RBM pre-training per summed gradient (0.01 for the batch "
        "mean at batch 100; with ~1000 active inputs per unit, as above a 2000-unit layer, "
        "0.1 drives every hidden unit off)",
    )
    gaussian_lr: float = _opt(
        1e-5,
        "the same for the RBMs with Gaussian (linear) units, the first and the top one "
        "(0.001 for the batch mean, as Hinton & Salakhutdinov)",
    )
    rbm_sigma: float = _opt(
        0.3,
        "standard deviation of the first RBM's Gaussian visible units (output=gaussian), in "
        "units of the data, which should be standardized: below 1 so that the RBM's own "
        "noise does not already explain all the variance",
    )
    momentum: float = _opt(0.5, "SGD momentum of RBM pre-training")
    weight_decay: float = _opt(0.0, "L2 penalty on RBM weights during pre-training")

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

    sizes = (info.num_pixels, *config.sizes())
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


def _rbm_metrics(rbm):
    def evaluate(batch):
        return {"recon_error": (rbm.down(rbm.up(batch)) - batch).square().sum(-1).mean()}

    return evaluate


def pretraining_stages(module, config: AutoencoderConfig, lr: float, steps: int):
    """``(stages, load, parts)``: the greedy stages ``(name, learner, steps, prepare)``, the
    function that loads the pre-trained ``parts`` into ``module`` (RBMs or one-layer
    autoencoders), or ``([], None, [])`` without pre-training."""
    from pyro.infer import Trace_ELBO

    from pyrogen.infer import ContrastiveDivergence
    from pyrogen.models.autoencoder import stack_codes
    from pyrogen.train import SVILearner

    method = config.resolved_pretrain()
    if method == "none" or steps == 0:
        return [], None, []
    stages = []
    if method == "rbm":
        parts = module.rbm_stack(config.rbm_sigma)
        for k, rbm in enumerate(parts):
            gaussian = "gaussian" in (rbm.visible, rbm.hidden)
            optimizer = torch.optim.SGD(
                [
                    {"params": [rbm.weight], "weight_decay": config.weight_decay},
                    {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0},
                ],
                lr=config.gaussian_lr if gaussian else config.rbm_lr,
                momentum=config.momentum,
            )
            learner = SVILearner(
                rbm,
                ContrastiveDivergence(config.cd_k),
                optimizer=optimizer,
                evaluate_fn=_rbm_metrics(rbm),
            )
            stages.append((f"rbm{k + 1}", learner, steps, _below(sampled_codes, parts[:k])))

        def load():
            module.load_rbms(parts)

    else:
        parts = module.denoising_stack(config.noise, config.corruption)
        for k, part in enumerate(parts):
            learner = SVILearner(part, Trace_ELBO(), lr=lr)
            stages.append((f"dae{k + 1}", learner, steps, _below(stack_codes, parts[:k])))

        def load():
            module.load_layers(parts)

    return stages, load, parts


def sampled_codes(parts, x):
    from pyrogen.models.autoencoder import stack_codes

    return stack_codes(parts, x, sample=True)


def _below(fn, parts):
    if not parts:
        return None
    return lambda x: fn(parts, x)


@register
class AutoencoderFamily(Family):
    name = "autoencoder"
    description = "deterministic autoencoders: linear, nonlinear, deep (RBM-pre-trained), denoising"
    config_cls = AutoencoderConfig
    estimator = "none: no likelihood; the reconstruction error is reported"
    default_eval_samples = 1
    default_lr = 1e-3  # Adam, fine-tuning (and denoising pre-training)

    def build(self, config: AutoencoderConfig, info: DataInfo) -> torch.nn.Module:
        return build_autoencoder(config, info)

    def learner(self, module, config: AutoencoderConfig, lr: float, steps_per_epoch=None):
        """Adam on ``Trace_ELBO`` of the model (its reconstruction error), preceded by one
        greedy stage per layer when pre-training (a :class:`StagedLearner`)."""
        from pyro.infer import Trace_ELBO

        from pyrogen.train import StagedLearner, SVILearner

        finetune = SVILearner(
            module, Trace_ELBO(), lr=lr, evaluate_fn=reconstruction_metrics(module)
        )
        pretrain = config.resolved_pretrain() != "none" and config.pretrain_epochs > 0
        if not pretrain:
            return finetune
        if not steps_per_epoch:
            raise ValueError("greedy pre-training needs steps_per_epoch to schedule its stages")
        steps = config.pretrain_epochs * int(steps_per_epoch)
        stages, load, parts = pretraining_stages(module, config, lr, steps)
        stages.append(("finetune", finetune, 0, None))
        learner = StagedLearner(stages, {"finetune": load})
        learner.module = module  # what a checkpoint's "module" entry restores
        learner.parts = parts
        learner.set_lr = finetune.set_lr  # learning-rate schedules act on fine-tuning
        return learner

    def module_state(self, learner_state: dict) -> dict:
        if "stages" in learner_state:
            return learner_state["stages"][-1]["module"]
        return learner_state["module"]

    def log_likelihood(self, module, config, data, num_samples: int, **kwargs):
        """Autoencoders define no density: the mean squared error and reconstruction error
        per example are returned instead (:class:`ReconstructionScore`)."""
        batch_size = int(kwargs.get("batch_size", 1000))
        module.eval()
        sq, rec, n = 0.0, 0.0, 0
        with torch.no_grad():
            for i in range(0, data.shape[0], batch_size):
                x = data[i : i + batch_size].to(next(module.parameters()))
                sq += float(module.squared_error(x).sum())
                rec += float(module.reconstruction_error(x).sum())
                n += x.shape[0]
        return ReconstructionScore(sq / max(n, 1), rec / max(n, 1), n, module.output)

    def sample(self, module, num_samples: int) -> torch.Tensor:
        raise NotImplementedError(
            "a deterministic autoencoder defines no distribution to sample from; use "
            "module.reconstruct(x) or module.decode(z) for reconstructions"
        )


@dataclass
class ReconstructionScore:
    """Test reconstruction of an autoencoder (what ``pyrogen evaluate`` reports for it)."""

    squared_error: float
    reconstruction_error: float
    num_examples: int
    output: str

    def summary(self) -> str:
        loss = "cross-entropy" if self.output == "bernoulli" else "half squared error"
        return (
            f"reconstruction on {self.num_examples} examples: squared error "
            f"{self.squared_error:.4f} per example, {loss} {self.reconstruction_error:.4f} "
            "(an autoencoder has no log-likelihood)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "squared_error": self.squared_error,
            "reconstruction_error": self.reconstruction_error,
            "num_examples": self.num_examples,
            "output": self.output,
        }
