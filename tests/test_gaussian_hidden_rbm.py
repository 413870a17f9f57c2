"""GaussianHiddenRBM (binary visible, linear Gaussian hidden units): the free energy against
numerical integration over h, log Z against enumeration, conditionals against the energy,
the Gibbs sampler against the exact distribution, AIS against exact log Z, and contrastive
divergence through the base class's generic surrogate against the analytic gradient."""

import itertools
import math

import pyro
import pytest
import torch
from scipy import integrate, stats

from pyrogen.distributions import GaussianHiddenRBM, GaussianHiddenRBMAnnealingPath
from pyrogen.infer import ContrastiveDivergence, ais


def random_rbm(V, H, seed, scale=0.8, **kwargs):
    g = torch.Generator().manual_seed(seed)
    W = scale * torch.randn(V, H, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(V, generator=g, dtype=torch.float64)
    c = 0.5 * torch.randn(H, generator=g, dtype=torch.float64)
    return GaussianHiddenRBM(W, b, c, **kwargs)


def visible_states(V):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=V)), dtype=torch.float64)


def test_free_energy_is_minus_log_integral_over_h():
    """-F(v) = log of the integral of exp(-E(v, h)) over h in R^1, by adaptive quadrature
    (relative error 1e-12), for every v of a 3 x 1 model."""
    rbm = random_rbm(3, 1, seed=1)
    for v in visible_states(3):

        def integrand(h, v=v):
            return math.exp(-float(rbm.energy(v, torch.tensor([h], dtype=torch.float64))))

        centre = float(rbm.hidden_mean(v))
        val, _ = integrate.quad(integrand, centre - 40, centre + 40, epsabs=0, epsrel=1e-12)
        assert float(rbm.unnormalized_log_prob(v)) == pytest.approx(math.log(val), abs=1e-9)


@pytest.mark.parametrize("V, H", [(4, 2), (5, 3)])
def test_exact_log_partition_and_normalisation(V, H):
    rbm = random_rbm(V, H, seed=V + H)
    vs = visible_states(V)
    log_z = rbm.log_partition()
    assert log_z.is_exact and float(log_z.stderr) == 0
    torch.testing.assert_close(
        log_z.log_z, torch.logsumexp(rbm.unnormalized_log_prob(vs), 0), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(rbm.log_prob(vs).exp().sum(), torch.tensor(1.0).double())


def test_conditionals_match_the_energy():
    """p(h | v) is N(c + W^T v, I): -E(v, h) - log N(h; mean, I) does not depend on h; the
    log-odds of p(v_i = 1 | h) are differences of energies."""
    rbm = random_rbm(4, 3, seed=3)
    torch.manual_seed(3)
    v = visible_states(4)[[1, 6, 11]]
    h = torch.randn(5, 3, dtype=torch.float64)
    q = rbm.hidden_given_visible(v[:, None, :])
    rest = -rbm.energy(v[:, None, :], h) - q.log_prob(h).sum(-1)
    torch.testing.assert_close(rest, rest[:, :1].expand_as(rest))
    for i in range(4):
        on, off = v.clone(), v.clone()
        on[:, i], off[:, i] = 1.0, 0.0
        hh = h[:3]
        logit = rbm.energy(off, hh) - rbm.energy(on, hh)
        torch.testing.assert_close(rbm.visible_logits(hh)[:, i], logit)


def test_gibbs_sampler_matches_exact_distribution():
    """V = 4 (16 states), 20000 chains, 50 sweeps: chi-square against exp(log_prob) at level
    1e-4 (seeded); the fair-coin start is rejected (the test has power)."""
    torch.manual_seed(0)
    rbm = random_rbm(4, 2, seed=4, scale=1.0, gibbs_steps=50)
    p = rbm.log_prob(visible_states(4)).exp().numpy()
    radix = torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)

    def counts(x):
        return torch.bincount((x @ radix).long(), minlength=16).numpy()

    x = rbm.sample((20000,))
    assert x.shape == (20000, 4) and x.dtype == torch.float64
    assert stats.chisquare(counts(x), p * len(x)).pvalue > 1e-4
    start = rbm.init_chains(20000)[0]
    assert stats.chisquare(counts(start), p * len(start)).pvalue < 1e-4


def test_ais_within_three_standard_errors():
    """10 seeded models (V = 10, H = 3..12), 100 chains, 1000 temperatures: the exact log Z
    lies inside the +-3 s.e. sandwich in at least 9."""
    hits = 0
    for trial in range(10):
        rbm = random_rbm(10, 3 + trial, seed=50 + trial, scale=0.3)
        torch.manual_seed(trial)
        est = rbm.log_partition("ais", num_chains=100, betas=1000)
        exact = float(rbm.log_partition("exact").log_z)
        assert est.method == "ais" and 0 < float(est.stderr) < 0.2
        hits += float(est.lower) <= exact <= float(est.upper)
    assert hits >= 9


def test_ais_path_endpoints_and_base_rates():
    rbm = random_rbm(5, 3, seed=6)
    data = visible_states(5)[[3, 7, 8, 30, 31]]
    path = rbm.annealing_path(data)
    assert isinstance(path, GaussianHiddenRBMAnnealingPath)
    torch.testing.assert_close(
        torch.sigmoid(path.base_bias), (data.sum(0) + 0.05) / (len(data) + 0.1)
    )
    v = path.sample_base(7)
    cache = path.prepare(v)
    torch.testing.assert_close(path.log_f(v, cache, 1.0), rbm.unnormalized_log_prob(v[0]))
    base = torch.distributions.Bernoulli(logits=path.base_bias).log_prob(v[0]).sum(-1)
    torch.testing.assert_close(path.log_f(v, cache, 0.0) - path.log_z_base, base)
    torch.manual_seed(6)
    est = ais(path, num_chains=100, betas=500)
    assert abs(float(est.log_z) - float(rbm.log_partition().log_z)) < 3 * float(est.stderr) + 1e-3


@pytest.mark.parametrize("persistent", [False, True])
def test_contrastive_divergence_gradient_is_positive_minus_negative_phase(persistent):
    """The generic surrogate of EnergyBasedDistribution.contrastive_divergence: with
    -dF/dW = v (c + W^T v)^T, -dF/db = v, -dF/dc = W^T v, its gradient is minus (data term
    - n/m samples term), the samples being the chains after k sweeps (1e-10)."""
    rbm = random_rbm(5, 3, seed=7)
    W, b, c = (t.clone().requires_grad_() for t in rbm.parameter_tensors())
    torch.manual_seed(7)
    x = (torch.rand(8, 5) < 0.5).double()

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("v", GaussianHiddenRBM(W, b, c, validate_args=True), obs=x)

    loss = ContrastiveDivergence(k=2, persistent=persistent, num_chains=4)
    pyro.set_rng_seed(0)
    loss.loss_and_grads(model, lambda x: None, x)
    if persistent:
        negatives = loss.chains["v"][0]
    else:  # CD restarts at the data: rerun the same chain with the same seed
        pyro.set_rng_seed(0)
        negatives = rbm.gibbs_chain((x,), 2)[0]

    def minus_grad_free_energy(v):
        mean = c.detach() + v @ W.detach()
        return v.T @ mean, v.sum(0), (v @ W.detach()).sum(0)

    pos = minus_grad_free_energy(x)
    neg = minus_grad_free_energy(negatives)
    n, m = len(x), len(negatives)
    for param, p, q in zip((W, b, c), pos, neg):
        torch.testing.assert_close(param.grad, -(p - n / m * q), rtol=1e-10, atol=1e-10)


def test_shapes_expand_and_errors():
    rbm = random_rbm(3, 2, seed=8, gibbs_steps=3, validate_args=True)
    assert rbm.batch_shape == () and rbm.event_shape == (3,)
    e = rbm.expand((4,))
    assert e.sample((2,)).shape == (2, 4, 3)
    assert e.log_prob(visible_states(3)[:2, None, :]).shape == (2, 4)
    with pytest.raises(ValueError, match="support"):
        rbm.log_prob(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    W, b, c = rbm.parameter_tensors()
    with pytest.raises(ValueError, match=r"hidden_bias must have shape \(num_hidden,\) = \(2,\)"):
        GaussianHiddenRBM(W, b, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"weight must be real \(not NaN\); found nan"):
        GaussianHiddenRBM(W * float("nan"), b, c, validate_args=True)
    assert not GaussianHiddenRBM(
        torch.zeros(21, 2), torch.zeros(21), torch.zeros(2)
    ).can_enumerate()
