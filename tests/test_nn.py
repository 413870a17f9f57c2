"""Plain torch building blocks."""

import math

import pytest
import torch

from pyrogen.nn import MLP, GaussianHead


def test_mlp_layers_activation_and_glorot_init():
    torch.manual_seed(0)
    net = MLP(30, [20, 10], 5)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(30, 20), (20, 10), (10, 5)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in net) == 2  # none after the output
    for m in linears:
        bound = math.sqrt(6 / (m.in_features + m.out_features))
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.8 * bound
        assert torch.all(m.bias == 0)
    assert net.output_layer is linears[-1]
    torch_init = MLP(30, [20], 5, init="torch")
    assert torch_init[0].bias.abs().sum() > 0


def test_gaussian_head_returns_a_positive_scale():
    head = GaussianHead(6, [8], 3)
    loc, scale = head(torch.randn(4, 6))
    assert loc.shape == scale.shape == (4, 3) and torch.all(scale > 0)
    with torch.no_grad():
        head.net.output_layer.bias.fill_(1e3)  # a runaway log-scale is clamped, not inf
    assert torch.isfinite(head(torch.randn(2, 6))[1]).all()


@pytest.mark.parametrize(
    "kwargs, match", [({"activation": "swish"}, "activation"), ({"init": "he"}, "init")]
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(3, [4], 2, **kwargs)
    with pytest.raises(ValueError, match="positive"):
        MLP(3, [0], 2)
