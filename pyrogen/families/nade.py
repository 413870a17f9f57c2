r"""Registry entries of the fully visible binary autoregressive models: ``fvsbn`` and
``nade``.

Both are :class:`~pyrogen.models.autoregressive.AutoregressiveModel`\ s (a network plus the
distribution reading it) trained by maximum likelihood: ``SVILearner`` with
``Trace_ELBO`` (for a model without latent variables, the exact negative log-likelihood)
and Adam, or plain SGD. Test log-likelihoods are exact (``method="exact"``,
``mc_stderr = 0``).

``nade --order-agnostic`` trains with a fresh random ordering per example and step (Uria
et al. 2014; see :mod:`pyrogen.distributions.nade`); the module itself keeps the identity
ordering, so validation, evaluation and sampling use it, or with ``--test-orderings M > 1``
the equal-weight ensemble of ``M`` fixed orderings (the identity and ``M - 1`` drawn from a
fixed seed).

RNADE has no registry entry: the engine feeds the data as loaded (binary or binarized), while
RNADE needs real values (e.g. dequantized, standardised grey levels); use
:class:`~pyrogen.distributions.nade.RNADE` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrogen.families.base import DataInfo, Family, choice, option, register

_OPTIMIZERS = ("adam", "sgd")


def _optimizer(module: torch.nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(module.parameters(), lr=lr)
    return torch.optim.SGD(module.parameters(), lr=lr)


class _BinaryAutoregressiveFamily(Family):
    sample_option = None  # exact: no samples
    default_num_samples = None

    def learner(self, model, config, lr: float):
        from pyro.infer import Trace_ELBO

        from pyrogen.train import SVILearner

        return SVILearner(model, Trace_ELBO(), optimizer=_optimizer(model, config.optimizer, lr))


@dataclass
class FVSBNConfig:
    """Hyper-parameters of the fully visible sigmoid belief net (logistic autoregression)."""

    optimizer: str = choice(
        "adam", _OPTIMIZERS, "adam, or sgd (plain; --lr applies to the summed gradient)"
    )

    def validate(self) -> None:
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")


@register
class FVSBNFamily(_BinaryAutoregressiveFamily):
    name = "fvsbn"
    description = "fully visible sigmoid belief net (logistic autoregression), exact likelihood"
    config_cls = FVSBNConfig
    # Adam on binarized MNIST, batch 100: test NLL 100.0 after 3 epochs at 1e-2 (97.9 after
    # 3 more at 1e-3 and 2 at 1e-4, through the engine's lr_schedule; 31 s on one CPU thread)
    default_lr = 1e-2

    def build(self, config: FVSBNConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.distributions.nade import FVSBN
        from pyrogen.models.autoregressive import AutoregressiveModel
        from pyrogen.nn.nade import FVSBNNet

        net = FVSBNNet(info.num_features)
        if info.pixel_mean is not None:
            net.init_output_bias(info.pixel_mean)
        return AutoregressiveModel(net, FVSBN, (info.num_features,))


@dataclass
class NADEConfig:
    """Hyper-parameters of NADE (Larochelle & Murray 2011) and its order-agnostic training
    (Uria, Murray & Larochelle 2014)."""

    hidden: int = option(500, "hidden units H (500 in Larochelle & Murray's MNIST experiments)")
    activation: str = choice(
        "sigmoid", ("sigmoid", "relu"), "hidden nonlinearity (sigmoid: the original NADE)"
    )
    order_agnostic: bool = option(
        False,
        "train with a fresh random ordering per example and step (Uria et al. 2014); "
        "evaluation and sampling use the identity ordering (or --test-orderings)",
    )
    mask_input: bool = option(
        False, "feed the 'observed' bits with their own weights (Uria et al. 2014)"
    )
    test_orderings: int = option(
        1, "orderings averaged at test time: the identity and M-1 random ones (ensemble)"
    )
    optimizer: str = choice(
        "adam", _OPTIMIZERS, "adam, or sgd (plain; --lr applies to the summed gradient)"
    )

    def validate(self) -> None:
        if self.hidden < 1 or self.test_orderings < 1:
            raise ValueError(
                f"hidden and test_orderings must be >= 1, got {self.hidden}, {self.test_orderings}"
            )
        if self.activation not in ("sigmoid", "relu"):
            raise ValueError(f"activation must be 'sigmoid' or 'relu', got {self.activation!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")


@register
class NADEFamily(_BinaryAutoregressiveFamily):
    name = "nade"
    description = "neural autoregressive distribution estimator, exact likelihood"
    config_cls = NADEConfig
    smoke_config = {"hidden": 8, "test_orderings": 2}
    # Adam on binarized MNIST, H = 500, batch 20: test NLL 92.7 after 1 epoch, 90.6 after 2
    # (about 4 min per epoch on one CPU thread); at 1e-3 and batch 100: 103.6 after 2 epochs
    default_lr = 5e-3

    def build(self, config: NADEConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.distributions.nade import NADE
        from pyrogen.models.autoregressive import AutoregressiveModel
        from pyrogen.nn.nade import NADENet

        net = NADENet(
            info.num_features,
            config.hidden,
            mask_input=config.mask_input,
            activation=config.activation,
        )
        if info.pixel_mean is not None:
            net.init_output_bias(info.pixel_mean)
        return AutoregressiveModel(net, NADE, (info.num_features,))

    def learner(self, model, config: NADEConfig, lr: float):
        if not config.order_agnostic:
            return super().learner(model, config, lr)
        import pyro
        from pyro.infer import Trace_ELBO

        from pyrogen.train import SVILearner

        def order_agnostic_model(x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", model.distribution(ordering="random"), obs=x)

        def validation(batch):  # the exact NLL under the identity ordering
            return {"loss": -model.log_prob(batch).mean()}

        return SVILearner(
            model,
            Trace_ELBO(),
            optimizer=_optimizer(model, config.optimizer, lr),
            model=order_agnostic_model,
            evaluate_fn=validation,
        )

    def evaluation_options(self, config: NADEConfig) -> dict:
        return {"num_orderings": config.test_orderings}
