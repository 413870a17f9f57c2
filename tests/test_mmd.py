"""The unbiased MMD² estimator, the GMMN loss and the permutation two-sample test."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method

from pyrogen.infer import MMD, mmd2, mmd_test
from pyrogen.infer.mmd import gaussian_kernel_sum, median_bandwidth
from pyrogen.models import Autoencoder
from pyrogen.train import SVILearner, train


def _k(a, b, bandwidths):
    return sum(
        math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * s * s)) for s in bandwidths
    )


def test_matches_the_double_sums_written_out(float64):
    x = [[0.0, 1.0], [1.0, -0.5]]
    y = [[0.5, 0.0], [2.0, 1.0], [-1.0, 3.0]]
    s = (0.7, 2.0)
    m, n = len(x), len(y)
    xx = sum(_k(x[i], x[j], s) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(_k(y[i], y[j], s) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(_k(x[i], y[j], s) for i in range(m) for j in range(n)) / (m * n)
    expected = xx + yy - 2 * xy
    got = mmd2(torch.tensor(x), torch.tensor(y), s)
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-14)
    # symmetric, and image-shaped input is flattened
    assert mmd2(torch.tensor(y), torch.tensor(x), s).item() == pytest.approx(expected, rel=1e-12)
    got = mmd2(torch.tensor(x).reshape(2, 1, 2), torch.tensor(y).reshape(3, 1, 2), s)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # the kernel matrix itself
    k = gaussian_kernel_sum(torch.tensor(x), torch.tensor(y), s)
    assert k[1, 2].item() == pytest.approx(_k(x[1], y[2], s), rel=1e-12)


def test_zero_in_expectation_for_identical_distributions(float64):
    # 2000 pairs of samples of 8 from the same 2-D Gaussian (seed 0): the mean of the unbiased
    # estimate is within 4 standard errors of 0, while the biased (V-statistic) estimate,
    # with the diagonal kept, is many standard errors above it: the test can tell.
    torch.manual_seed(0)
    draws, m, s = 2000, 8, (0.5, 1.0, 2.0)
    x = torch.randn(draws, m, 2)
    y = torch.randn(draws, m, 2)
    unbiased = torch.stack([mmd2(x[i], y[i], s) for i in range(draws)])
    se = unbiased.std() / math.sqrt(draws)
    assert abs(unbiased.mean()) < 4 * se, (unbiased.mean().item(), se.item())

    def biased(a, b):
        return (
            gaussian_kernel_sum(a, a, s).mean()
            + gaussian_kernel_sum(b, b, s).mean()
            - 2 * gaussian_kernel_sum(a, b, s).mean()
        )

    v = torch.stack([biased(x[i], y[i]) for i in range(draws)])
    assert v.mean() > 10 * v.std() / math.sqrt(draws)


def test_positive_for_different_distributions():
    torch.manual_seed(1)
    x = torch.randn(200, 3)
    y = torch.randn(200, 3) + torch.tensor([0.5, 0.0, 0.0])
    assert mmd2(x, y, (0.5, 1.0, 2.0)) > 0.01
    result = mmd_test(x, y, num_permutations=200)
    assert result.statistic > 0 and result.p_value < 0.01 and result.reject(0.05)
    # a scale difference with equal means is detected too
    result = mmd_test(torch.randn(200, 2), 2 * torch.randn(200, 2), num_permutations=200)
    assert result.p_value < 0.01


def test_permutation_false_positive_rate_near_its_level():
    # 200 tests at level 0.1, each on two samples of 20 from the same 2-D distribution
    # (99 permutations: the p-value is uniform on {1/100, ..., 1}, so P(reject) = 0.1
    # exactly). Rejections ~ Binomial(200, 0.1): mean 20, sd 4.24; accept 20 +- 3 sd.
    g = torch.Generator().manual_seed(5)
    rejections = 0
    for _ in range(200):
        x = torch.randn(20, 2, generator=g).exp()
        y = torch.randn(20, 2, generator=g).exp()
        rejections += mmd_test(x, y, num_permutations=99, generator=g).reject(0.1)
    sd = math.sqrt(200 * 0.1 * 0.9)
    assert abs(rejections - 20) <= 3 * sd, rejections


def test_p_value_is_reproducible_with_a_generator():
    x, y = torch.randn(15, 2), torch.randn(17, 2)
    a = mmd_test(x, y, 1.0, generator=torch.Generator().manual_seed(3))
    b = mmd_test(x, y, 1.0, generator=torch.Generator().manual_seed(3))
    assert a == b and a.num_permutations == 500 and a.bandwidths == (1.0,)


@pytest.mark.parametrize(
    "x, y, bandwidths, match",
    [
        (torch.randn(5, 3), torch.randn(5, 2), 1.0, "same number of features"),
        (torch.randn(1, 3), torch.randn(5, 3), 1.0, "at least 2 samples"),
        (torch.randn(5, 3), torch.randn(1, 3), 1.0, "at least 2 samples"),
        (torch.randn(5, 3), torch.randn(5, 3), 0.0, "positive"),
        (torch.randn(5, 3), torch.randn(5, 3), (1.0, -2.0), "positive"),
        (torch.randn(5, 3), torch.randn(5, 3), (), "at least one bandwidth"),
    ],
)
def test_bad_input(x, y, bandwidths, match):
    with pytest.raises(ValueError, match=match):
        mmd2(x, y, bandwidths)
    with pytest.raises(ValueError, match=match):
        mmd_test(x, y, bandwidths)


def test_bad_loss_arguments():
    with pytest.raises(ValueError, match="positive"):
        MMD(bandwidths=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        MMD(num_samples=1)
    with pytest.raises(ValueError, match="all points coincide"):
        median_bandwidth(torch.ones(4, 2))


class ShiftScale(PyroModule):
    """x = a + b z, z ~ N(0, 1): a one-dimensional generator."""

    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.tensor([0.0]))
        self.log_scale = PyroParam(torch.tensor([0.0]))

    @pyro_method
    def model(self, x=None, num_samples=None):
        n = x.shape[0] if x is not None else num_samples
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
            out = self.loc + self.log_scale.exp() * z
            pyro.deterministic("x", out, event_dim=1)
        return out

    def guide(self, x=None, num_samples=None):
        pass


def test_gmmn_loss_trains_a_generator_through_the_engine():
    # Data N(3, 0.5^2); 160 Adam steps of the MMD loss move the generator from N(0, 1) to
    # within 0.15 of the location and 0.15 of the scale (seeded). The engine reports the
    # MMD^2 itself (the loss is N * MMD^2, divided by N by SVILearner).
    torch.manual_seed(0)
    data = 3 + 0.5 * torch.randn(2000, 1)
    gen = ShiftScale()
    learner = SVILearner(gen, MMD(bandwidths=(0.25, 0.5, 1.0, 2.0)), lr=0.05)
    before = mmd2(gen.model(None, num_samples=500).detach(), data[:500], (0.5, 1.0))
    result = train(learner, data, epochs=8, batch_size=100, progress=False, log_every=20)
    assert gen.loc.item() == pytest.approx(3.0, abs=0.15)
    assert gen.log_scale.exp().item() == pytest.approx(0.5, abs=0.15)
    after = mmd2(gen.model(None, num_samples=500).detach(), data[:500], (0.5, 1.0))
    assert after < 0.05 * before
    assert abs(result.last("loss")) < 0.05
    # the site option reads the same batch from the trace
    pyro.set_rng_seed(1)
    a = MMD(1.0, site="x").loss(gen.model, gen.guide, data[:50])
    pyro.set_rng_seed(1)
    b = MMD(1.0).loss(gen.model, gen.guide, data[:50])
    assert a == pytest.approx(b, rel=1e-6)
    with pytest.raises(ValueError, match="no site 'y'"):
        MMD(1.0, site="y").loss(gen.model, gen.guide, data[:50])


def test_code_space_loss_compares_with_the_autoencoders_codes():
    # GMMN+AE: the generator makes 3-dimensional codes; the data (6-dimensional) are mapped
    # by the autoencoder's transform before the comparison.
    torch.manual_seed(0)
    ae = Autoencoder.linear(6, 3)
    data = torch.randn(40, 6)

    def codes(x=None, num_samples=None):
        return torch.randn(num_samples, 3)

    loss = MMD((1.0, 2.0), data_transform=ae.transform)
    torch.manual_seed(2)
    value = loss.loss(codes, None, data)
    torch.manual_seed(2)
    expected = 40 * mmd2(torch.randn(40, 3), ae.transform(data), (1.0, 2.0)).item()
    assert value == pytest.approx(expected, rel=1e-6)
    assert MMD(1.0, num_samples=7)._generated(codes, 7, (), {}).shape == (7, 3)
