"""AIS log-likelihood of decoder-based models, BDMC, the HMC kernel and the Parzen window,
against closed forms (probabilistic PCA) and importance sampling (a small VAE)."""

import math

import pytest
import torch

from pyrogen.evaluate import (
    HMC,
    ParzenWarning,
    annealing_schedule,
    bidirectional_monte_carlo,
    decoder_log_likelihood,
    parzen_log_likelihood,
)
from pyrogen.models import VAE, LinearGaussianVAE


def _ppca(num_features=5, latent_dim=2, sigma=0.5, scales=(3.0, 1.5), seed=0):
    """x = W z + b + sigma eps with a well-conditioned W; log p(x) = log N(x; b, W W' + s^2 I)."""
    torch.manual_seed(seed)
    m = LinearGaussianVAE(num_features, latent_dim, sigma)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(num_features, latent_dim))
        m.weight.copy_(q * torch.tensor(scales))
        m.bias.copy_(torch.randn(num_features) * 0.3)
    W, b = m.weight.detach(), m.bias.detach()
    return m, (lambda z: z @ W.T + b)


def test_ais_matches_the_closed_form_on_ppca(float64):
    # 20 examples, 16 chains, 200 temperatures: the mean AIS estimate is within 3 reported
    # Monte Carlo standard errors of the exact mean log-likelihood (seeded), and so is each
    # example within 5 of its own.
    m, decoder = _ppca()
    x = m.marginal().sample((20,))
    exact = m.exact_log_prob(x)
    result = decoder_log_likelihood(
        decoder, x, latent_dim=2, sigma=0.5, num_temperatures=200, progress=False
    )
    assert 0 < result.mc_stderr < 0.1
    assert abs(result.mean - exact.mean().item()) < 3 * result.mc_stderr, (
        result.mean,
        result.mc_stderr,
        exact.mean().item(),
    )
    assert result.num_samples == 16 and result.per_example.shape == (20,)
    assert (result.ess > 1).all() and (result.ess <= 16 + 1e-9).all()
    d = result.diagnostics
    assert d["num_temperatures"] == 200 and d["sigma"] == 0.5 and d["pilot_chains"] == 4
    assert 0.5 < d["acceptance_rate"] < 0.95
    assert "AIS (16 chains, 200 temperatures" in result.estimator


def test_forward_and_reverse_ais_bracket_the_exact_value(float64):
    # Short schedules (30 temperatures) leave a visible gap. On 20 simulated examples the
    # forward mean is at most 2 Monte Carlo standard errors above the exact mean and the
    # reverse mean at most 2 below it (the bounds hold in expectation), and the gap is
    # positive. (Chains that adapt their own step size break this: reverse AIS then fell
    # 0.15 to 0.37 nats, about 5 standard errors, below the exact value.)
    m, decoder = _ppca()
    torch.manual_seed(1)
    bdmc = bidirectional_monte_carlo(
        decoder,
        latent_dim=2,
        num_examples=20,
        sigma=0.5,
        num_temperatures=30,
        progress=False,
    )
    exact = m.exact_log_prob(bdmc.data).mean().item()
    lower, upper = bdmc.forward, bdmc.reverse
    assert lower.mean <= exact + 2 * lower.mc_stderr, (lower.mean, exact)
    assert upper.mean >= exact - 2 * upper.mc_stderr, (upper.mean, exact)
    assert bdmc.gap > 0
    assert bdmc.data.shape == (20, 5) and bdmc.latents.shape == (20, 2)
    assert "upper bound" in upper.estimator and "gap" in bdmc.summary()
    # given latents: the data are simulated from them
    z = torch.zeros(3, 2)
    small = bidirectional_monte_carlo(
        decoder, latent_dim=2, latents=z, sigma=0.5, num_temperatures=5, progress=False
    )
    assert small.latents.shape == (3, 2) and small.forward.num_examples == 3


@pytest.mark.parametrize("step_size", [0.3, 0.8])
def test_hmc_leaves_a_gaussian_invariant(float64, step_size):
    # 4000 chains started at exact draws of N(mu, S) (correlation 0.8), 10 HMC transitions
    # of 5 leapfrog steps without adaptation: the sample mean stays within 0.07 and the
    # covariance within 0.1 of the target's (about 4.5 sampling standard errors: 0.016 for
    # the mean, 0.022 for the covariance); at step 0.8 (near the integrator's stability
    # limit 2 * 0.45) about half the proposals are rejected, so the Metropolis correction
    # is exercised.
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    prec = torch.linalg.inv(cov)
    chol = torch.linalg.cholesky(cov)

    def potential(z):
        u = z - mu
        return 0.5 * ((u @ prec) * u).sum(-1), u @ prec

    z = mu + torch.randn(4000, 2) @ chol.T
    kernel = HMC(num_leapfrog=5, adapt=False)
    accept = []
    for _ in range(10):
        out = kernel.step(z, potential, torch.tensor(step_size))
        z = out.z
        accept.append(out.accept_prob.mean().item())
        assert torch.equal(out.step_size, torch.full((4000,), step_size))
    assert (z.mean(0) - mu).abs().max() < 0.07
    assert (torch.cov(z.T) - cov).abs().max() < 0.1
    if step_size == 0.8:
        assert 0.3 < sum(accept) / len(accept) < 0.8


def test_hmc_adapts_towards_the_target_acceptance(float64):
    torch.manual_seed(0)

    def potential(z):
        return 0.5 * (z * z).sum(-1) / 0.01, z / 0.01  # N(0, 0.1^2 I)

    kernel = HMC(num_leapfrog=5)
    z, eps = 0.1 * torch.randn(500, 3), torch.full((500,), 0.5)
    accept = []
    for i in range(400):
        out = kernel.step(z, potential, eps)
        z, eps = out.z, out.step_size
        if i >= 300:
            accept.append(out.accept_prob.mean().item())
    assert abs(sum(accept) / len(accept) - 0.65) < 0.1
    assert eps.median() < 0.2


def _quadrature_log_prob(decoder, x, half_width=7.0, points=281):
    """log p(x) of a Bernoulli decoder with 2 latents by a Riemann sum on a grid
    (spacing 0.05 over [-7, 7]^2: exact to far below the Monte Carlo errors here)."""
    g = torch.linspace(-half_width, half_width, points)
    z = torch.cartesian_prod(g, g)
    with torch.no_grad():
        logits = decoder(z)
        log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits.expand(len(x), *logits.shape),
            x.unsqueeze(1).expand(-1, len(z), -1),
            reduction="none",
        ).sum(-1)
        log_prior = -0.5 * (z * z).sum(-1) - math.log(2 * math.pi)
        return torch.logsumexp(log_lik + log_prior, -1) + 2 * math.log(g[1] - g[0])


def test_vae_decoder_from_the_prior_and_from_the_encoder(float64):
    # A small one-layer Bernoulli VAE (16 pixels, 2 latents), on 6 of its own samples: AIS
    # from the prior and AIS started from the encoder's q(z | x) agree with log p(x) by
    # quadrature on a grid within 3 Monte Carlo standard errors + 0.02 nats.
    torch.manual_seed(0)
    vae = VAE(16, latent_dims=(2,), hidden=((20,),)).double()
    x = vae.sample(6)
    exact = _quadrature_log_prob(vae.decoder, x).mean().item()
    common = dict(
        latent_dim=2, likelihood="bernoulli", num_temperatures=60, num_chains=8, progress=False
    )
    prior = decoder_log_likelihood(vae.decoder, x, **common)
    encoder = decoder_log_likelihood(vae.decoder, x, encoder=vae.encoders[0], **common)
    for r in (prior, encoder):
        assert abs(r.mean - exact) < 3 * r.mc_stderr + 0.02, (r.mean, r.mc_stderr, exact)
    assert "from the encoder" in encoder.estimator and "from the prior" in prior.estimator
    assert vae.training  # put back in training mode


def test_schedules():
    for kind in ("sigmoid", "geometric", "linear"):
        b = annealing_schedule(50, kind)
        assert b.shape == (51,) and b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    s = annealing_schedule(100, "sigmoid")
    assert s[1] - s[0] < s[51] - s[50]  # dense at the ends
    with pytest.raises(ValueError, match="schedule must be one of"):
        annealing_schedule(10, "cosine")


def test_bad_input(float64):
    m, decoder = _ppca()
    x = m.marginal().sample((4,))
    kw = dict(latent_dim=2, num_temperatures=3, progress=False)
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma must be positive"):
            decoder_log_likelihood(decoder, x, sigma=sigma, **kw)
    with pytest.raises(ValueError, match="needs sigma"):
        decoder_log_likelihood(decoder, x, **kw)
    with pytest.raises(ValueError, match="wrong width.*6 values.*outputs 5"):
        decoder_log_likelihood(decoder, torch.randn(4, 6), sigma=0.5, **kw)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"data contains NaN \(first at index \(2, 1\)\)"):
        decoder_log_likelihood(decoder, bad, sigma=0.5, **kw)
    with pytest.raises(ValueError, match="binary"):
        decoder_log_likelihood(decoder, x, likelihood="bernoulli", **kw)
    with pytest.raises(ValueError, match="takes no sigma"):
        decoder_log_likelihood(decoder, (x > 0).double(), likelihood="bernoulli", sigma=1.0, **kw)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        decoder_log_likelihood(decoder, x, likelihood="poisson", **kw)
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        decoder_log_likelihood(decoder, x, sigma=0.5, latent_dim=2, schedule=[0.0, 0.5])
    with pytest.raises(ValueError, match="num_chains"):
        decoder_log_likelihood(decoder, x, sigma=0.5, num_chains=0, **kw)
    with pytest.raises(ValueError, match="sigma must be positive"):
        bidirectional_monte_carlo(decoder, sigma=0.0, **kw)
    with pytest.raises(ValueError, match="num_leapfrog"):
        HMC(num_leapfrog=0)


def test_parzen_window_is_fine_in_one_dimension_and_misleading_in_fifty():
    # Samples of the true N(0, I): in 1-D the Parzen estimate (bandwidth chosen on
    # validation data) is within 0.05 nats of the exact mean log-likelihood; in 50-D, with
    # as many samples, it is more than 5 nats below it (7.1 here). It always warns.
    torch.manual_seed(0)
    for dim, check in ((1, lambda gap: abs(gap) < 0.05), (50, lambda gap: gap < -5)):
        samples, val, test = torch.randn(3000, dim), torch.randn(500, dim), torch.randn(500, dim)
        exact = (-0.5 * (test * test).sum(-1) - 0.5 * dim * math.log(2 * math.pi)).mean()
        with pytest.warns(ParzenWarning, match="biased"):
            result = parzen_log_likelihood(samples, test, validation=val)
        assert check(result.mean - exact.item()), (dim, result.mean, exact.item())
        assert result.diagnostics["bandwidth"] > 0
    with pytest.warns(ParzenWarning), pytest.raises(ValueError, match="bandwidth or validation"):
        parzen_log_likelihood(samples, test)
    with pytest.warns(ParzenWarning), pytest.raises(ValueError, match="values per example"):
        parzen_log_likelihood(samples, torch.randn(3, 4), 0.1)


def test_seeded_estimate_is_reproducible_and_leaves_the_global_stream():
    """With ``seed``, batch i's chains come from ``(seed, i)``: two calls agree exactly, the
    global stream is untouched, and another seed gives another estimate."""
    torch.manual_seed(0)
    decoder = torch.nn.Linear(2, 5).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    options = dict(latent_dim=2, sigma=0.5, num_chains=3, num_temperatures=20, batch_size=4,
                   pilot_chains=0, progress=False)  # fmt: skip
    state = torch.get_rng_state()
    a = decoder_log_likelihood(decoder, x, seed=5, **options)
    assert torch.equal(torch.get_rng_state(), state)
    b = decoder_log_likelihood(decoder, x, seed=5, **options)
    c = decoder_log_likelihood(decoder, x, seed=6, **options)
    assert torch.equal(a.per_example, b.per_example)
    assert not torch.equal(a.per_example, c.per_example)
