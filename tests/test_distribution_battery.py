"""One battery over every distribution class that ``pyrogen.distributions`` exports (in the
spirit of Pyro's ``tests/distributions``): shapes, ``expand``, ``log_prob`` broadcasting by
torch's rule, samples in the support and scored finitely, validation of out-of-support
values, float64 throughout, and a state round trip.

Every concrete ``TorchDistribution`` subclass in ``pyrogen.distributions.__all__`` needs one
entry in :data:`EXAMPLES` (a small instance, an out-of-support value and, for distributions
backed by a network, how to rebuild one from the network's ``state_dict``);
:func:`test_every_exported_distribution_has_an_example` fails, naming the class, when one
is missing. Tiny sizes: the whole battery runs in seconds.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from pyro.distributions import TorchDistribution

import pyrogen.distributions as D
from pyrogen.distributions.conv_rbm import ConvolutionalRBM, GaussianConvolutionalRBM
from pyrogen.nn.masked import PixelCNNNet
from pyrogen.nn.nade import FVSBNNet, NADENet, RNADENet
from pyrogen.nn.pixelrnn import PixelRNNNet


def _randn(*shape, dtype, scale=1.0):
    return scale * torch.randn(*shape, dtype=dtype)


def _randomized(net: torch.nn.Module, dtype) -> torch.nn.Module:
    """``net`` in ``dtype`` with every parameter perturbed (zero initialisations make dull
    examples)."""
    net = net.to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net


@dataclass
class Example:
    """How to test one distribution class.

    :ivar make: ``make(dtype, validate_args)`` -> a small instance with float parameters of
        ``dtype`` (seeded by the caller).
    :ivar bad: ``bad(dist)`` -> one event-shaped value outside the support.
    :ivar net: for a network-backed class, ``net(dtype)`` -> a fresh network of the same
        architecture and ``rebuild(dist, net)`` -> the same distribution around ``net``;
        ``None``: the distribution itself is pickled.
    """

    make: Callable[[torch.dtype, bool], TorchDistribution]
    bad: Callable[[TorchDistribution], torch.Tensor]
    net: Callable[[torch.dtype], torch.nn.Module] | None = None
    rebuild: Callable[[TorchDistribution, torch.nn.Module], TorchDistribution] | None = None


def _full(value):
    def bad(dist):
        like = dist.sample()
        return torch.full(dist.event_shape, value, dtype=torch.float64).to(like.device)

    return bad


def _rbm_args(V, H, dtype):
    return _randn(V, H, dtype=dtype, scale=0.7), _randn(V, dtype=dtype), _randn(H, dtype=dtype)


def _fully_visible(cls, net_fn, **kwargs):
    def make(dtype, validate):
        return cls(_randomized(net_fn(), dtype), validate_args=validate, **kwargs)

    def rebuild(dist, net):
        return cls(net, context=dist.context, ordering=dist.ordering)

    return make, (lambda dtype: net_fn().to(dtype)), rebuild


def _image(cls, net_fn, **kwargs):
    def make(dtype, validate):
        return cls(_randomized(net_fn(), dtype), validate_args=validate, **kwargs)

    def rebuild(dist, net):
        return cls(net, context=dist.context)

    return make, (lambda dtype: net_fn().to(dtype)), rebuild


def _pixelcnn_net(**kwargs):
    return PixelCNNNet((3, 3), hidden=4, layers=1, first_kernel=3, **kwargs)


_FVSBN = _fully_visible(D.FVSBN, lambda: FVSBNNet(5), ordering=torch.tensor([2, 0, 4, 1, 3]))
_NADE = _fully_visible(
    D.NADE, lambda: NADENet(5, 4, num_classes=3), context=torch.tensor([0, 2, 1])
)
_RNADE = _fully_visible(D.RNADE, lambda: RNADENet(4, 3, num_components=2))
_PIXELCNN = _image(D.PixelCNN, lambda: _pixelcnn_net(num_classes=2), context=torch.tensor([1, 0]))
_PIXELRNN = _image(D.PixelRNN, lambda: PixelRNNNet((3, 3), hidden=4, layers=1, first_kernel=3))
_AUTOREGRESSIVE = _image(
    D.AutoregressiveImage, lambda: _pixelcnn_net(gated=True, output="categorical", levels=4)
)

#: one example per exported distribution class
EXAMPLES: dict[type, Example] = {
    D.IndependentBernoulli: Example(
        lambda dtype, v: D.IndependentBernoulli(_randn(2, 4, dtype=dtype), validate_args=v),
        _full(0.5),
    ),
    D.BernoulliRBM: Example(
        lambda dtype, v: D.BernoulliRBM(*_rbm_args(4, 3, dtype), gibbs_steps=3, validate_args=v),
        _full(0.5),
    ),
    D.GaussianRBM: Example(
        lambda dtype, v: D.GaussianRBM(
            *_rbm_args(3, 2, dtype),
            0.5 + torch.rand(3, dtype=dtype),
            gibbs_steps=3,
            validate_args=v,
        ),
        _full(float("nan")),
    ),
    D.GaussianHiddenRBM: Example(
        lambda dtype, v: D.GaussianHiddenRBM(
            *_rbm_args(3, 2, dtype), gibbs_steps=3, validate_args=v
        ),
        _full(0.5),
    ),
    D.ReplicatedSoftmaxRBM: Example(
        lambda dtype, v: D.ReplicatedSoftmaxRBM(
            *_rbm_args(4, 2, dtype), length=3, gibbs_steps=3, validate_args=v
        ),
        _full(1.5),
    ),
    D.DBM: Example(
        lambda dtype, v: D.DBM(
            [_randn(4, 3, dtype=dtype), _randn(3, 2, dtype=dtype)],
            [_randn(4, dtype=dtype), _randn(3, dtype=dtype), _randn(2, dtype=dtype)],
            gibbs_steps=3,
            validate_args=v,
        ),
        _full(0.5),
    ),
    D.FVSBN: Example(_FVSBN[0], _full(0.5), *_FVSBN[1:]),
    D.NADE: Example(_NADE[0], _full(0.5), *_NADE[1:]),
    D.RNADE: Example(_RNADE[0], _full(float("nan")), *_RNADE[1:]),
    D.PixelCNN: Example(_PIXELCNN[0], _full(0.5), *_PIXELCNN[1:]),
    D.PixelRNN: Example(_PIXELRNN[0], _full(0.5), *_PIXELRNN[1:]),
    D.AutoregressiveImage: Example(_AUTOREGRESSIVE[0], _full(7.0), *_AUTOREGRESSIVE[1:]),
}


def _conv_rbm(cls, dtype, validate):
    W, b, c = _randn(2, 1, 2, 2, dtype=dtype), _randn(1, dtype=dtype), _randn(2, dtype=dtype)
    return cls(W, b, c, image_shape=(3, 3), pooling=2, gibbs_steps=3, validate_args=validate)


# the convolutional RBMs join once pyrogen.distributions exports them
EXAMPLES.update(
    {
        cls: Example(lambda dtype, v, cls=cls: _conv_rbm(cls, dtype, v), bad)
        for cls, bad in (
            (ConvolutionalRBM, _full(0.5)),
            (GaussianConvolutionalRBM, _full(float("nan"))),
        )
        if cls.__name__ in D.__all__
    }
)


def exported_distribution_classes() -> list[type]:
    """Concrete ``TorchDistribution`` subclasses in ``pyrogen.distributions.__all__``."""
    out = []
    for name in D.__all__:
        obj = getattr(D, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, TorchDistribution)
            and not inspect.isabstract(obj)
        ):
            out.append(obj)
    return out


CLASSES = sorted(EXAMPLES, key=lambda c: c.__name__)


def _make(cls, dtype=torch.float32, validate=True):
    return EXAMPLES[cls].make(dtype, validate)


def _value(dist, batch=()):
    """A value in the support with batch dims ``batch`` (one of the distribution's own
    samples, an event, repeated)."""
    sample = dist.sample()
    event = sample.reshape((-1,) + dist.event_shape)[0]
    return event.expand(torch.Size(batch) + dist.event_shape)


def test_every_exported_distribution_has_an_example():
    missing = [c.__name__ for c in exported_distribution_classes() if c not in EXAMPLES]
    assert not missing, (
        f"add an entry to EXAMPLES in {__file__} for the exported distribution class(es) {missing}"
    )
    assert {c.__name__ for c in exported_distribution_classes()} == {
        c.__name__ for c in EXAMPLES
    }, "EXAMPLES lists a class that pyrogen.distributions does not export"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_shapes_and_samples(cls):
    dist = _make(cls)
    assert type(dist) is cls
    full = dist.batch_shape + dist.event_shape
    assert dist.shape() == full
    x = dist.sample()
    assert x.shape == full
    xs = dist.sample((2,))
    assert xs.shape == (2,) + full
    assert bool(dist.support.check(xs).all()), "samples outside the support"
    lp = dist.log_prob(xs)
    assert lp.shape == (2,) + dist.batch_shape
    assert bool(torch.isfinite(lp).all()), "log_prob not finite on the distribution's samples"


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_expand(cls, validate):
    dist = _make(cls, validate=validate)
    new_batch = torch.Size((3,)) + dist.batch_shape
    new = dist.expand(new_batch)
    assert type(new) is cls
    assert new.batch_shape == new_batch and new.event_shape == dist.event_shape
    assert new._validate_args is validate
    x = _value(dist, (2, 1) + dist.batch_shape)
    want = dist.log_prob(x).expand((2,) + new_batch)
    lp = new.log_prob(x)
    assert lp.shape == (2,) + new_batch
    torch.testing.assert_close(lp, want)
    assert new.sample((2,)).shape == (2,) + new_batch + dist.event_shape
    # expand of an expanded distribution
    newer = new.expand((4,) + new_batch)
    assert newer.batch_shape == (4,) + new_batch and newer._validate_args is validate
    torch.testing.assert_close(newer.log_prob(x[:1]), want[:1].expand((4,) + new_batch))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_log_prob_broadcasts_batch_dims_by_torchs_rule(cls):
    base = _make(cls)
    dist = base.expand(torch.Size((3,)) + base.batch_shape)
    batch = dist.batch_shape
    ones = (1,) * (len(batch) - 1)
    for value_batch in [(), (1,), (5, 1) + ones, (5,) + batch, (2, 1) + batch, batch[1:]]:
        value = _value(dist, value_batch)
        want = torch.broadcast_shapes(torch.Size(value_batch), batch)
        assert dist.log_prob(value).shape == want, value_batch


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_out_of_support_value_raises_under_validation(cls):
    dist = _make(cls, validate=True)
    with pytest.raises(ValueError):
        dist.log_prob(EXAMPLES[cls].bad(dist))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_float64_parameters_give_float64(cls):
    dist = _make(cls, dtype=torch.float64)
    x = dist.sample((2,))
    if x.is_floating_point():  # categorical image levels are integers by design
        assert x.dtype == torch.float64
    assert dist.log_prob(x).dtype == torch.float64


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_state_round_trip_keeps_log_prob(cls):
    example = EXAMPLES[cls]
    dist = _make(cls)
    x = dist.sample((3,))
    if example.net is None:
        copy = pickle.loads(pickle.dumps(dist))
    else:
        net = example.net(torch.float32)
        net.load_state_dict(dist.net.state_dict())
        copy = example.rebuild(dist, net)
    assert type(copy) is cls and copy.batch_shape == dist.batch_shape
    torch.testing.assert_close(copy.log_prob(x), dist.log_prob(x), rtol=0, atol=0)
