"""Multi-layer perceptrons and the Gaussian output head used by deep latent-variable models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "elu": nn.ELU}


class MLP(nn.Sequential):
    """A fully connected network ``in -> hidden[0] -> ... -> hidden[-1] -> out``.

    The activation follows every hidden layer, not the output layer, so the output is an
    unconstrained pre-activation (logits, a mean, a log-scale).

    :param int in_features: input width.
    :param hidden: widths of the hidden layers (may be empty: a single affine map).
    :param int out_features: output width.
    :param str activation: one of ``"tanh"`` (the default, as in Burda et al. 2015),
        ``"relu"``, ``"softplus"``, ``"elu"``.
    :param str init: ``"glorot"`` (uniform Glorot & Bengio 2010 weights, zero biases: the
        heuristic Burda et al. use, and faster to train with tanh than torch's default) or
        ``"torch"`` (``nn.Linear``'s own initialization).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "tanh",
        init: str = "glorot",
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        widths = [int(in_features), *map(int, hidden), int(out_features)]
        if min(widths) < 1:
            raise ValueError(f"layer widths must be positive, got {widths}")
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(w_in, w_out))
            if i < len(widths) - 2:
                layers.append(_ACTIVATIONS[activation]())
        super().__init__(*layers)
        if init == "glorot":
            for layer in layers:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        elif init != "torch":
            raise ValueError(f"init must be 'glorot' or 'torch', got {init!r}")
        self.in_features = widths[0]
        self.out_features = widths[-1]

    @property
    def output_layer(self) -> nn.Linear:
        """The last affine layer (e.g. to initialise its bias to the data's log-odds)."""
        return self[-1]


class GaussianHead(nn.Module):
    r"""An MLP whose output is split into the location and scale of a diagonal Gaussian.

    .. math:: \mu, \log\sigma = \mathrm{MLP}(h), \qquad \sigma = \exp(\log\sigma)

    The exponential link is the one of Burda et al. (2015); ``min_log_scale`` and
    ``max_log_scale`` clamp :math:`\log\sigma` so that a bad step cannot produce a zero or
    infinite scale (the clamp is inactive in normal operation).

    :returns: ``(loc, scale)``, each of shape ``batch + (out_features,)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "tanh",
        min_log_scale: float = -15.0,
        max_log_scale: float = 15.0,
    ) -> None:
        super().__init__()
        self.net = MLP(in_features, hidden, 2 * out_features, activation)
        self.out_features = int(out_features)
        self.min_log_scale = float(min_log_scale)
        self.max_log_scale = float(max_log_scale)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_scale = self.net(h).chunk(2, dim=-1)
        log_scale = log_scale.clamp(self.min_log_scale, self.max_log_scale)
        return loc, log_scale.exp()
