"""Registry entries of the PixelCNN (plain or gated) and PixelRNN (Row LSTM) families.

Both are :class:`~pyrogen.models.autoregressive.AutoregressiveModel` s over one-channel
images ``(1, H, W)`` (the data layer's flat ``(N, H * W)`` batches are accepted as they
are), trained by SVI with ``Trace_ELBO`` and Adam (no latent variables: the loss is the
exact negative log-likelihood) and scored by their exact log-likelihood.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from pyrogen.distributions.pixelcnn import PixelCNN, PixelRNN
from pyrogen.families.base import DataInfo, Family, choice, option, register
from pyrogen.nn.masked import PixelCNNNet
from pyrogen.nn.pixelrnn import PixelRNNNet

_OUTPUTS = ("bernoulli", "categorical")
_OUTPUT_HELP = (
    "bernoulli (binary pixels) or categorical (a levels-way softmax per pixel; the data "
    "must then hold integers 0..levels-1)"
)


def _check_common(config) -> None:
    if config.hidden < 1 or config.layers < 0:
        raise ValueError(
            f"hidden must be >= 1 and layers >= 0, got {config.hidden}, {config.layers}"
        )
    for name in ("kernel", "first_kernel"):
        k = getattr(config, name)
        if k < 3 or k % 2 == 0:
            raise ValueError(f"{name} must be an odd integer >= 3, got {k}")
    if config.output not in _OUTPUTS:
        raise ValueError(f"output must be one of {_OUTPUTS}, got {config.output!r}")
    if config.levels < 2:
        raise ValueError(f"levels must be >= 2, got {config.levels}")


@dataclass
class PixelCNNConfig:
    """Hyper-parameters of the PixelCNN family (van den Oord et al. 2016)."""

    hidden: int = option(32, "channels of the residual stream (plain) or of each stack (gated)")
    layers: int = option(6, "layers after the first (residual blocks, or gated blocks)")
    kernel: int = option(3, "odd kernel size of those layers")
    first_kernel: int = option(7, "odd kernel size of the first, type-A masked layer")
    gated: bool = option(False, "gated PixelCNN: vertical and horizontal stacks, no blind spot")
    output: str = choice("bernoulli", _OUTPUTS, _OUTPUT_HELP)
    levels: int = option(256, "levels of the categorical output")

    def validate(self) -> None:
        _check_common(self)
        if not self.gated and self.hidden % 2:
            raise ValueError(f"hidden must be even for the plain PixelCNN, got {self.hidden}")


@dataclass
class PixelRNNConfig:
    """Hyper-parameters of the PixelRNN family with Row LSTM layers."""

    hidden: int = option(32, "channels of the first convolution and of each Row LSTM state")
    layers: int = option(1, "Row LSTM layers (residual)")
    kernel: int = option(3, "odd width of the Row LSTM's input-to-state and state-to-state convs")
    first_kernel: int = option(7, "odd kernel size of the first, type-A masked layer")
    output: str = choice("bernoulli", _OUTPUTS, _OUTPUT_HELP)
    levels: int = option(256, "levels of the categorical output")

    def validate(self) -> None:
        _check_common(self)
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1 for the PixelRNN, got {self.layers}")


def _image_shape(info: DataInfo) -> tuple[int, int]:
    shape = tuple(int(s) for s in info.image_shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2 or shape[0] * shape[1] != info.num_features:
        raise ValueError(
            f"this family models one-channel images: expected image_shape (H, W) with "
            f"H * W = {info.num_features}, got {tuple(info.image_shape)}"
        )
    return shape


class _ImageAutoregressiveFamily(Family):
    sample_option = None  # exact: no samples
    default_num_samples = None
    default_lr = 1e-3

    def learner(self, model, config, lr: float):
        from pyro.infer import Trace_ELBO

        from pyrogen.train import SVILearner

        return SVILearner(model, Trace_ELBO(max_plate_nesting=1), lr=lr)

    #: the network class (built from the config's fields) and the distribution reading it
    net_cls: type
    distribution_cls: type

    def build(self, config, info: DataInfo) -> torch.nn.Module:
        """``net_cls(image_shape, **config)`` read by ``distribution_cls``, over one-channel
        images ``(1, H, W)``."""
        from pyrogen.models.autoregressive import AutoregressiveModel

        shape = _image_shape(info)
        net = self.net_cls(shape, **dataclasses.asdict(config))
        return AutoregressiveModel(net, self.distribution_cls, (1, *shape))

    def evaluation_options(self, config) -> dict:
        return {"batch_size": 100}


@register
class PixelCNNFamily(_ImageAutoregressiveFamily):
    name = "pixelcnn"
    description = "PixelCNN / gated PixelCNN (masked convolutions), exact log-likelihood"
    config_cls = PixelCNNConfig
    smoke_config = {"hidden": 8, "layers": 1, "first_kernel": 3, "gated": True}
    default_lr = 3e-3  # faster than 1e-3 on binarized MNIST in short CPU runs, and stable
    net_cls = PixelCNNNet
    distribution_cls = PixelCNN


@register
class PixelRNNFamily(_ImageAutoregressiveFamily):
    name = "pixelrnn"
    description = "PixelRNN with Row LSTM layers, exact log-likelihood"
    config_cls = PixelRNNConfig
    smoke_config = {"hidden": 8, "first_kernel": 3}
    net_cls = PixelRNNNet
    distribution_cls = PixelRNN
