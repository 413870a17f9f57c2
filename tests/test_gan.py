"""Generators as Pyro models (MLP GAN, DCGAN, Wu et al.'s decoders) and their
log-likelihood under a Gaussian observation model."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyrogen.evaluate import log_likelihood
from pyrogen.infer import MMD
from pyrogen.models import (
    DCGANDiscriminator,
    DCGANGenerator,
    Generator,
    LinearGaussianVAE,
    MLPDiscriminator,
)
from pyrogen.train import SVILearner


def _linear_widths(net):
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return [linears[0].in_features] + [m.out_features for m in linears]


def test_wu_and_goodfellow_architectures():
    assert _linear_widths(Generator.wu(10).network) == [10, 64, 256, 256, 1024, 784]
    assert _linear_widths(Generator.wu(50).network) == [50, 1024, 1024, 1024, 784]
    g = Generator.goodfellow()
    assert _linear_widths(g.network) == [100, 1200, 1200, 784]
    assert isinstance(g.network[1], nn.ReLU) and isinstance(g.network[-1], nn.Sigmoid)
    x = g.sample(3)
    assert x.shape == (3, 784) and g.event_shape == (784,) and g.image_shape == (28, 28)
    assert (x >= 0).all() and (x <= 1).all()
    assert _linear_widths(MLPDiscriminator().net) == [784, 240, 240, 1]
    with pytest.raises(ValueError, match="one of \\[10, 50\\]"):
        Generator.wu(20)


@pytest.mark.parametrize("size, channels", [(28, 1), (64, 3)])
def test_dcgan_shapes_and_layers(size, channels):
    g = DCGANGenerator(latent_dim=16, image_size=size, channels=channels, width=8)
    x = g.sample(4)
    assert x.shape == (4, channels * size * size) and g.image_shape == (channels, size, size)
    assert x.abs().max() <= 1 and (g.to_unit_interval(x) >= 0).all()
    convs = [m for m in g.network.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(c.stride == (2, 2) for c in convs[1:])  # strided, no pooling
    norms = [m for m in g.network.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == len(convs) - 1  # not on the output
    d = DCGANDiscriminator(size, channels, width=8)
    assert d(x).shape == (4,)
    assert d(x.reshape(4, channels, size, size)).shape == (4,)
    assert any(isinstance(m, nn.LeakyReLU) for m in d.modules())
    assert not isinstance(d.net[1], nn.BatchNorm2d)  # no batch norm on the input layer
    with pytest.raises(ValueError, match="image_size must be 28 or 64"):
        DCGANGenerator(image_size=32)


def test_pyro_model_sites():
    torch.manual_seed(0)
    g = Generator.mlp(3, (8,), 6, sigma=0.2)
    x = torch.rand(5, 6)
    tr = pyro.poutine.trace(g.model).get_trace(x)
    z = tr.nodes["z"]
    assert z["value"].shape == (5, 3) and not z["is_observed"]
    assert [f.name for f in z["cond_indep_stack"]] == ["data"]
    node = tr.nodes["x"]
    assert node["is_observed"] and torch.equal(node["value"], x)
    expected = dist.Normal(g.decode(z["value"]), 0.2).to_event(1).log_prob(x)
    torch.testing.assert_close(node["fn"].log_prob(x), expected)
    # without sigma: a deterministic site G(z), and the model returns the batch
    plain = Generator.mlp(3, (8,), 6)
    tr = pyro.poutine.trace(plain.model).get_trace(None, num_samples=4)
    torch.testing.assert_close(tr.nodes["x"]["value"], plain.decode(tr.nodes["z"]["value"]))
    assert plain.model(None, num_samples=7).shape == (7, 6)
    with pytest.raises(ValueError, match="sigma"):
        plain.model(x)
    with pytest.raises(ValueError, match="num_samples"):
        plain.model()


def test_samples_with_and_without_noise():
    g = Generator.mlp(2, (4,), 3, sigma=0.1)
    pyro.set_rng_seed(0)
    noisy = g.sample(1000)
    pyro.set_rng_seed(0)
    mean = g.sample(1000, mean=True)
    assert (noisy - mean).std().item() == pytest.approx(0.1, rel=0.1)
    with pytest.raises(TypeError, match="context"):
        g.sample(2, context=torch.zeros(2))


def _linear_generator():
    """G(z) = W z + b with sigma = 0.5: probabilistic PCA, log p(x) in closed form."""
    torch.manual_seed(0)
    ppca = LinearGaussianVAE(5, 2, 0.5)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(5, 2))
        ppca.weight.copy_(q * torch.tensor([3.0, 1.5]))
        ppca.bias.copy_(torch.randn(5) * 0.3)
    net = nn.Linear(2, 5)
    with torch.no_grad():
        net.weight.copy_(ppca.weight)
        net.bias.copy_(ppca.bias)
    return Generator(net, 2, 5, (1, 5), sigma=0.5), ppca


def test_log_likelihood_of_a_linear_generator_is_the_ppca_marginal(float64):
    # through pyrogen.evaluate.log_likelihood: within 3 Monte Carlo standard errors of the
    # closed form (20 examples, 16 chains, 200 temperatures, seeded)
    g, ppca = _linear_generator()
    x = ppca.marginal().sample((20,))
    result = log_likelihood(g, x, num_temperatures=200, progress=False)
    exact = ppca.exact_log_prob(x).mean().item()
    assert abs(result.mean - exact) < 3 * result.mc_stderr, (result.mean, exact)
    # a sigma given at evaluation overrides the model's
    other = g.log_likelihood(x, sigma=1.0, num_temperatures=5, num_chains=2, progress=False)
    assert other.diagnostics["sigma"] == 1.0


def test_log_likelihood_in_eval_mode_and_back():
    # batch norm uses its running statistics during AIS and they are not updated by it
    g = DCGANGenerator(latent_dim=4, image_size=28, width=4, sigma=0.1)
    x = g.sample(3, mean=True).reshape(3, 1, 28, 28)  # image-shaped input is accepted
    before = {k: v.clone() for k, v in g.state_dict().items()}
    result = g.log_likelihood(x, num_temperatures=3, num_chains=2, progress=False)
    assert g.training and result.per_example.shape == (3,)
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_input():
    with pytest.raises(ValueError, match="sigma must be positive"):
        Generator.mlp(2, (4,), 3, sigma=0.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        Generator.mlp(2, (4,), 3, sigma=-1.0)
    g = Generator.mlp(2, (4,), 3)
    x = torch.rand(4, 3)
    kw = dict(num_temperatures=2, num_chains=2, progress=False)
    with pytest.raises(ValueError, match="give the observation noise"):
        g.log_likelihood(x, **kw)
    with pytest.raises(ValueError, match="sigma must be positive"):
        g.log_likelihood(x, sigma=0.0, **kw)
    with pytest.raises(ValueError, match="wrong size"):
        g.log_likelihood(torch.rand(4, 5), sigma=0.1, **kw)
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        g.log_likelihood(bad, sigma=0.1, **kw)
    with pytest.raises(ValueError, match="NaN|nan"):
        Generator.mlp(2, (4,), 3, sigma=0.1).model(bad)
    with pytest.raises(TypeError, match="does not take"):
        g.log_likelihood(x, sigma=0.1, num_particles=3)
    with pytest.raises(TypeError, match="fixed by the model"):
        g.log_likelihood(x, sigma=0.1, latent_dim=3)
    with pytest.raises(ValueError, match="z: expected shape"):
        g.decode(torch.zeros(2, 3))


def test_a_generator_trains_with_the_mmd_loss():
    # one engine-free SVILearner loop: the MMD to the data falls over 60 steps
    torch.manual_seed(0)
    data = torch.rand(200, 4) * 0.2 + 0.6
    g = Generator.mlp(2, (16,), 4)
    learner = SVILearner(g, MMD((0.1, 0.3, 1.0)), lr=1e-2)
    first = [learner.step(data[:100])["loss"].item() for _ in range(3)]
    for _ in range(60):
        learner.step(data[torch.randint(0, 200, (100,))])
    last = [learner.step(data[100:])["loss"].item() for _ in range(3)]
    assert sum(last) < 0.2 * sum(first)
