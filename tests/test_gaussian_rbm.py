"""GaussianRBM: closed forms against brute force (enumeration of h, numerical integration
over v), conditionals against the energy, the Gibbs sampler against the exact marginal,
AIS against exact log Z."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import logsumexp

from pyrogen.distributions.gaussian_rbm import GaussianRBM, GaussianRBMAnnealingPath
from pyrogen.infer.ais import ais


def random_rbm(V, H, seed, weight_scale=1.0, dtype=torch.float64, **kwargs):
    g = torch.Generator().manual_seed(seed)
    W = weight_scale * torch.randn(V, H, generator=g, dtype=dtype)
    b = torch.randn(V, generator=g, dtype=dtype)
    c = 0.5 * torch.randn(H, generator=g, dtype=dtype)
    s = 0.5 + torch.rand(V, generator=g, dtype=dtype)
    return GaussianRBM(W, b, c, s, **kwargs)


def params(rbm):
    return [t.detach().numpy().astype(np.float64) for t in rbm.parameter_tensors()]


def np_energy(rbm, v, h):
    """E(v, h) from the module docs, written independently in numpy (v: (..., V))."""
    W, b, c, s = params(rbm)
    v, h = np.asarray(v, np.float64), np.asarray(h, np.float64)
    return (
        ((v - b) ** 2 / (2 * s**2)).sum(-1)
        - np.einsum("...i,ij,...j->...", v / s, W, h)
        - (h * c).sum(-1)
    )


def hidden_states(H):
    return np.array(list(itertools.product([0.0, 1.0], repeat=H)))


def log_integrals_1d(rbm):
    """log of the integral of exp(-E(v, h)) over v, for every h, by adaptive quadrature."""
    W, b, c, s = params(rbm)
    out = []
    for h in hidden_states(rbm.num_hidden):
        centre = b[0] + s[0] * (W @ h)[0]  # only used to place the integration window
        shift = np_energy(rbm, np.array([centre]), h)
        val, err = integrate.quad(
            lambda x, h=h, shift=shift: math.exp(shift - np_energy(rbm, np.array([x]), h)),
            centre - 30 * s[0],
            centre + 30 * s[0],
            epsabs=0,
            epsrel=1e-12,
            limit=200,
        )
        out.append(math.log(val) - shift)
    return np.array(out)


def log_integrals_2d(rbm, n=801):
    """The same in 2-D, by the trapezoidal rule on a fine grid (spectrally accurate for
    these Gaussian integrands: step 0.03 sigma, window +-12 sigma)."""
    W, b, c, s = params(rbm)
    out = []
    for h in hidden_states(rbm.num_hidden):
        centre = b + s * (W @ h)
        axes = [np.linspace(centre[i] - 12 * s[i], centre[i] + 12 * s[i], n) for i in range(2)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        log_f = -np_energy(rbm, grid, h)
        m = log_f.max()
        val = np.trapezoid(np.trapezoid(np.exp(log_f - m), axes[1], axis=1), axes[0])
        out.append(math.log(val) + m)
    return np.array(out)


# ---- energy, free energy, log Z -------------------------------------------------------


def test_energy_matches_formula():
    rbm = random_rbm(3, 4, seed=0)
    v = torch.randn(10, 3, dtype=torch.float64)
    h = torch.bernoulli(torch.full((10, 4), 0.5, dtype=torch.float64))
    np.testing.assert_allclose(rbm.energy(v, h).numpy(), np_energy(rbm, v, h), rtol=0, atol=1e-12)


def test_free_energy_is_minus_log_sum_over_hidden_states():
    rbm = random_rbm(3, 4, seed=1)
    v = 2 * torch.randn(20, 3, dtype=torch.float64)
    hs = hidden_states(4)
    brute = -logsumexp(-np_energy(rbm, v.numpy()[:, None, :], hs[None]), axis=1)
    np.testing.assert_allclose(rbm.free_energy(v).numpy(), brute, rtol=0, atol=1e-10)
    np.testing.assert_allclose(rbm.unnormalized_log_prob(v).numpy(), -brute, rtol=0, atol=1e-10)


@pytest.mark.parametrize("H", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_log_partition_1d_equals_numerical_integration(H, seed):
    rbm = random_rbm(1, H, seed=seed)
    brute = logsumexp(log_integrals_1d(rbm))
    lz = rbm.log_partition()
    assert lz.is_exact and float(lz.stderr) == 0.0
    assert abs(float(lz.log_z) - brute) < 1e-6


@pytest.mark.parametrize("H", [1, 3])
def test_exact_log_partition_2d_equals_numerical_integration(H):
    rbm = random_rbm(2, H, seed=2)
    brute = logsumexp(log_integrals_2d(rbm))
    assert abs(float(rbm.log_partition().log_z) - brute) < 1e-6
    # the marginal over h by closed form, state by state
    ours = rbm.unnormalized_log_prob_hidden(torch.tensor(hidden_states(H))).numpy()
    np.testing.assert_allclose(ours, log_integrals_2d(rbm), rtol=0, atol=1e-6)


def test_log_prob_integrates_to_one():
    rbm1 = random_rbm(1, 3, seed=3)
    val, _ = integrate.quad(
        lambda x: math.exp(float(rbm1.log_prob(torch.tensor([x], dtype=torch.float64)))),
        -np.inf,
        np.inf,
        epsabs=0,
        epsrel=1e-10,
        limit=200,
    )
    assert abs(val - 1) < 1e-6

    rbm2 = random_rbm(2, 3, seed=4)
    W, b, c, s = params(rbm2)
    lo, hi = b - 12 * s - 4 * np.abs(W).sum(1) * s, b + 12 * s + 4 * np.abs(W).sum(1) * s
    axes = [np.linspace(lo[i], hi[i], 1201) for i in range(2)]
    grid = torch.tensor(np.stack(np.meshgrid(*axes, indexing="ij"), -1))
    dens = rbm2.log_prob(grid).exp().numpy()
    total = np.trapezoid(np.trapezoid(dens, axes[1], axis=1), axes[0])
    assert abs(total - 1) < 1e-6


# ---- conditionals ---------------------------------------------------------------------


def test_hidden_conditional_matches_formula_and_energy():
    rbm = random_rbm(3, 4, seed=5)
    W, b, c, s = params(rbm)
    v = 2 * torch.randn(7, 3, dtype=torch.float64)
    d = rbm.hidden_given_visible(v)
    expected_mean = 1 / (1 + np.exp(-(c + (v.numpy() / s) @ W)))
    np.testing.assert_allclose(d.mean.numpy(), expected_mean, rtol=0, atol=1e-12)
    # p(h | v) proportional to exp(-E(v, h)) over all h
    hs = hidden_states(4)
    log_joint = -np_energy(rbm, v.numpy()[:, None, :], hs[None])
    expected = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
    ours = d.log_prob(torch.tensor(hs)[:, None, :]).sum(-1).T.numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10)


def test_visible_conditional_matches_formula_and_energy():
    rbm = random_rbm(3, 4, seed=6)
    W, b, c, s = params(rbm)
    h = torch.tensor(hidden_states(4))
    d = rbm.visible_given_hidden(h)
    np.testing.assert_allclose(d.mean.numpy(), b + s * (h.numpy() @ W.T), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.stddev.numpy(), np.broadcast_to(s, (16, 3)), atol=1e-15)
    np.testing.assert_allclose(rbm.visible_mean(h).numpy(), d.mean.numpy(), atol=0)
    # log p(v | h) + E(v, h) does not depend on v
    v = 3 * torch.randn(9, 1, 3, dtype=torch.float64)
    diff = d.log_prob(v).sum(-1).numpy() + np_energy(rbm, v.numpy(), h.numpy()[None])
    np.testing.assert_allclose(diff - diff[:1], 0.0, atol=1e-10)


def test_conditional_samples_have_the_stated_moments():
    # n = 40000 draws; sample mean within 5 standard errors, variance within 5 s.e.
    # (relative s.e. of a Gaussian sample variance: sqrt(2 / n)); seeded.
    torch.manual_seed(0)
    rbm = random_rbm(3, 4, seed=7)
    n = 40000
    h = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64).expand(n, 4)
    x = rbm.visible_given_hidden(h).sample()
    mean, sd = rbm.visible_mean(h[0]), rbm.visible_scale
    assert torch.all((x.mean(0) - mean).abs() < 5 * sd / math.sqrt(n))
    assert torch.all((x.var(0) / sd**2 - 1).abs() < 5 * math.sqrt(2 / n))
    v = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64).expand(n, 3)
    hs = rbm.hidden_given_visible(v).sample()
    p = torch.sigmoid(rbm.hidden_logits(v[0]))
    assert torch.all((hs.mean(0) - p).abs() < 5 * torch.sqrt(p * (1 - p) / n))


# ---- Gibbs sampler ----------------------------------------------------------------------


def test_gibbs_sampler_matches_exact_1d_marginal():
    """20000 independent chains, 200 sweeps each (this model mixes in about 20), from
    N(b, sigma^2). The visible state is compared with the exact mixture-of-Gaussians marginal
    by a Kolmogorov-Smirnov test, the hidden state with the exact p(h) (from numerical
    integration) by a chi-square test, each at level 1e-4: a sampler whose chains have mixed
    fails with probability at most 2e-4 (seeded). sigma = 0.5 so that a sampler that drops
    a sigma (in p(h | v) or in the mean of p(v | h)) is rejected, as is the start."""
    torch.manual_seed(0)
    w_row, b0, s0 = [1.5, -1.2, 1.0], 0.3, 0.5
    c = [-(w * w / 2 + b0 * w / s0) for w in w_row]  # single-unit states about equally likely
    t = lambda x: torch.tensor(x, dtype=torch.float64)
    rbm = GaussianRBM(t([w_row]), t([b0]), t(c), t([s0]))
    W, b, c, s = params(rbm)
    hs = hidden_states(3)
    log_w = log_integrals_1d(rbm)
    w = np.exp(log_w - logsumexp(log_w))
    means = b[0] + s[0] * (hs @ W[0])

    def cdf(x):
        return (w * stats.norm.cdf((np.asarray(x)[..., None] - means) / s[0])).sum(-1)

    state = rbm.init_chains(20000)
    for _ in range(200):
        state = rbm.gibbs_step(state)
    v, h = state
    assert stats.kstest(v[:, 0].numpy(), cdf).pvalue > 1e-4
    codes = (h.numpy() @ (2 ** np.arange(3))[::-1]).astype(int)  # matches hidden_states order
    observed = np.bincount(codes, minlength=8)
    assert stats.chisquare(observed, w * len(codes)).pvalue > 1e-4
    # the test has power: the prior N(b, sigma^2) the chains start from is rejected
    start = rbm.init_chains(20000)[0][:, 0].numpy()
    assert stats.kstest(start, cdf).pvalue < 1e-4


def test_sample_shapes_and_expand():
    rbm = random_rbm(3, 2, seed=9, gibbs_steps=5)
    assert rbm.sample().shape == (3,)
    assert rbm.sample((4, 2)).shape == (4, 2, 3)
    e = rbm.expand((2,))
    assert e.batch_shape == (2,) and e.event_shape == (3,)
    assert e.sample((4,)).shape == (4, 2, 3)
    v = torch.randn(5, 2, 3, dtype=torch.float64)
    assert e.log_prob(v).shape == (5, 2)
    torch.testing.assert_close(e.log_prob(v), rbm.log_prob(v), rtol=0, atol=0)
    assert float(e.log_partition().log_z) == float(rbm.log_partition().log_z)


# ---- AIS ------------------------------------------------------------------------------------


def test_ais_within_three_standard_errors():
    """20 seeded random models (V = 8, H = 4..12), 100 chains, 1000 temperatures: the exact
    log Z lies within 3 reported standard errors (inside the sandwich) in at least 19."""
    hits, errors = 0, []
    for trial in range(20):
        H = 4 + trial % 9
        rbm = random_rbm(8, H, seed=100 + trial, weight_scale=0.4)
        torch.manual_seed(trial)
        est = rbm.log_partition(method="ais", num_chains=100, betas=1000)
        exact = float(rbm.log_partition(method="exact").log_z)
        assert est.method == "ais" and float(est.stderr) > 0
        inside = float(est.lower) <= exact <= float(est.upper)
        assert inside == (abs(float(est.log_z) - exact) <= 3 * float(est.stderr))
        hits += inside
        errors.append(float(est.stderr))
    assert hits >= 19
    assert max(errors) < 0.2  # the standard errors are small, not vacuous


def test_ais_from_data_base_rate():
    torch.manual_seed(1)
    rbm = random_rbm(6, 10, seed=11, weight_scale=0.5)
    data = rbm.sample((500,), num_steps=50)
    path = rbm.annealing_path(data)
    assert isinstance(path, GaussianRBMAnnealingPath)
    torch.testing.assert_close(path.base_mean, data.mean(0))
    est = ais(path, num_chains=100, betas=1000)
    exact = float(rbm.log_partition().log_z)
    assert abs(float(est.log_z) - exact) < 3 * float(est.stderr) + 1e-3


def test_ais_path_endpoints():
    # log f_1 is -F, log f_0 is the base's unnormalized log-density, log Z_A as stated
    rbm = random_rbm(3, 5, seed=12)
    data = torch.randn(50, 3, dtype=torch.float64)
    path = rbm.annealing_path(data)
    v = (path.sample_base(6)[0],)
    cache = path.prepare(v)
    torch.testing.assert_close(path.log_f(v, cache, 1.0), rbm.unnormalized_log_prob(v[0]))
    base = torch.distributions.Normal(path.base_mean, rbm.visible_scale).log_prob(v[0]).sum(-1)
    torch.testing.assert_close(path.log_f(v, cache, 0.0) - path.log_z_base, base)


# ---- errors, dtypes, gradients, devices ---------------------------------------------------


def test_bad_shapes_and_scales_raise():
    W, b, c, s = torch.randn(3, 2), torch.randn(3), torch.randn(2), torch.ones(3)
    with pytest.raises(ValueError, match="weight must be a 2-D tensor"):
        GaussianRBM(W[0], b, c, s)
    with pytest.raises(
        ValueError, match=r"visible_scale must have shape \(num_visible,\) = \(3,\), got \(2,\)"
    ):
        GaussianRBM(W, b, c, torch.ones(2))
    with pytest.raises(
        ValueError, match=r"hidden_bias must have shape \(num_hidden,\) = \(2,\), got \(3,\)"
    ):
        GaussianRBM(W, b, torch.zeros(3), s)
    with pytest.raises(ValueError, match="all parameters must be floating tensors of one dtype"):
        GaussianRBM(W, b, c, s.double())
    with pytest.raises(ValueError, match=r"visible_scale must be positive; found -0.5 at index 1"):
        GaussianRBM(W, b, c, torch.tensor([1.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match=r"positive; found 0.0 at index 2"):
        GaussianRBM(W, b, c, torch.tensor([1.0, 1.0, 0.0]))
    GaussianRBM(W, b, c, torch.tensor([1.0, -0.5, 1.0]), validate_args=False)  # unchecked
    rbm = GaussianRBM(W, b, c, s)
    with pytest.raises(ValueError):
        rbm.log_prob(torch.tensor([0.0, float("nan"), 1.0]))


def test_float32_agrees_with_float64():
    rbm64 = random_rbm(4, 6, seed=13)
    rbm32 = GaussianRBM(*(t.float() for t in rbm64.parameter_tensors()))
    v = torch.randn(10, 4, dtype=torch.float64)
    lp32 = rbm32.log_prob(v.float())
    assert lp32.dtype == torch.float32 and rbm32.sample((2,), num_steps=2).dtype == torch.float32
    torch.testing.assert_close(lp32.double(), rbm64.log_prob(v), rtol=1e-5, atol=1e-4)


def test_log_prob_is_differentiable_in_all_parameters_including_the_scale():
    rbm = random_rbm(2, 3, seed=14)
    v = torch.randn(4, 2, dtype=torch.float64)
    ps = [t.clone().requires_grad_() for t in rbm.parameter_tensors()]

    def f(W, b, c, s):
        return GaussianRBM(W, b, c, s).log_prob(v)

    assert torch.autograd.gradcheck(f, ps)


@pytest.mark.requires_cuda
def test_cuda_matches_cpu():
    rbm = random_rbm(5, 6, seed=15, dtype=torch.float32)
    gpu = GaussianRBM(*(t.cuda() for t in rbm.parameter_tensors()))
    v = torch.randn(8, 5)
    torch.testing.assert_close(gpu.log_prob(v.cuda()).cpu(), rbm.log_prob(v), rtol=1e-5, atol=1e-4)
    assert gpu.sample((3,), num_steps=3).device.type == "cuda"
    est = gpu.log_partition(method="ais", num_chains=50, betas=200)
    assert est.log_z.device.type == "cuda"
