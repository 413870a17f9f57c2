"""The importance-sampling evaluator against log p(x) known in closed form."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.evaluate import LogLikelihood, importance_bound, log_likelihood, psis_khat
from pyrogen.models import VAE, LinearGaussianVAE


def _ppca(seed=0):
    torch.manual_seed(seed)
    m = LinearGaussianVAE(5, 2, 0.5)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(5, 2))
        m.weight.copy_(q * torch.tensor([1.5, 0.8]))
        m.bias.copy_(torch.randn(5) * 0.3)
    return m


def test_exact_posterior_guide_gives_the_exact_log_likelihood(float64):
    # Every importance weight equals p(x): the estimate is exact for any K, the ESS is K.
    m = _ppca()
    m.set_guide_to_posterior()
    x = m.marginal().sample((20,))
    result = log_likelihood(m.model, m.guide, x, num_samples=50, progress=False)
    torch.testing.assert_close(result.per_example, m.exact_log_prob(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(result.ess, torch.full((20,), 50.0), rtol=1e-10, atol=0)
    assert result.mc_stderr < 1e-6


def test_estimate_within_three_monte_carlo_standard_errors(float64):
    # An imperfect (but not terrible) guide: the estimate is within 3 reported Monte Carlo
    # standard errors of the exact mean log-likelihood (seeded).
    m = _ppca()
    m.set_guide_to_posterior()
    with torch.no_grad():
        m.guide_weight.add_(0.05 * torch.randn_like(m.guide_weight))
        m.guide_log_scale.add_(0.3)  # wider than the posterior: bounded weights
    x = m.marginal().sample((40,))
    pyro.set_rng_seed(1)
    result = log_likelihood(m.model, m.guide, x, num_samples=5000, batch_size=16, progress=False)
    exact = m.exact_log_prob(x).mean().item()
    assert result.khat.max() < 0.7
    assert abs(result.mean - exact) < 3 * result.mc_stderr, (result.mean, exact, result.mc_stderr)
    # the population standard error is the spread of log p(x) over examples / sqrt(N)
    expected_se = m.exact_log_prob(x).std().item() / math.sqrt(40)
    assert result.stderr == pytest.approx(expected_se, rel=0.05)
    assert result.nll == -result.mean


def test_bounds_are_ordered_and_below_log_likelihood(float64):
    # ELBO = L_1 <= L_5 <= L_50 <= log p(x), each bound averaged over replicates; the
    # comparisons allow 3 standard errors.
    m = _ppca()
    with torch.no_grad():
        m.guide_weight.normal_(0, 0.3)
        m.guide_log_scale.fill_(-0.3)
    x = m.marginal().sample((4,))
    log_px = m.exact_log_prob(x)
    bounds = {}
    for k in (1, 5, 50):
        pyro.set_rng_seed(k)
        bounds[k] = importance_bound(m.model, m.guide, x, k, num_replicates=400)
    # the k = 1 bound is the ELBO, known in closed form
    mean1, se1 = bounds[1]
    assert torch.all((mean1 - m.exact_elbo(x)).abs() < 4 * se1)
    for lo, hi in ((1, 5), (5, 50)):
        (m_lo, s_lo), (m_hi, s_hi) = bounds[lo], bounds[hi]
        assert torch.all(m_lo < m_hi + 3 * torch.sqrt(s_lo**2 + s_hi**2)), (lo, hi)
        assert torch.all(m_hi - m_lo > 0), (lo, hi)  # strictly tighter here (gap >> noise)
    m50, s50 = bounds[50]
    assert torch.all(m50 < log_px + 3 * s50)


@pytest.mark.filterwarnings("ignore:PSIS k-hat")
def test_chunking_over_particles_and_data_does_not_change_the_estimate():
    vae = VAE(12, (3,), ((8,),))
    x = (torch.rand(10, 12) < 0.4).float()
    pyro.set_rng_seed(0)
    a = log_likelihood(vae.model, vae.guide, x, num_samples=60, batch_size=10, progress=False)
    pyro.set_rng_seed(0)
    b = log_likelihood(
        vae.model,
        vae.guide,
        x,
        num_samples=60,
        batch_size=10,
        particle_batch_size=60,
        progress=False,
    )
    torch.testing.assert_close(a.per_example, b.per_example)
    c = log_likelihood(
        vae.model,
        vae.guide,
        x,
        num_samples=60,
        batch_size=3,
        particle_batch_size=7,
        progress=False,
    )
    assert c.per_example.shape == (10,)
    assert torch.all(c.ess <= 60 + 1e-6) and torch.all(c.ess >= 1 - 1e-6)


def test_khat_flags_a_heavy_tailed_proposal(float64):
    m = _ppca()
    m.set_guide_to_posterior()
    x = m.marginal().sample((30,))
    good = log_likelihood(m.model, m.guide, x, num_samples=500, progress=False)
    with torch.no_grad():
        m.guide_log_scale.sub_(1.5)  # proposal far too narrow: weights heavy-tailed
    with pytest.warns(UserWarning, match="k-hat") as record:
        bad = log_likelihood(m.model, m.guide, x, num_samples=500, progress=False)
    assert record[0].filename == __file__  # attributed to the caller, not to pyrogen
    assert bad.khat_share > 0.5 and good.khat_share == 0
    assert bad.ess.median() < good.ess.median()
    assert "k-hat" in bad.summary()


def test_psis_khat_on_known_tails():
    # Pareto(alpha) weights have tail index k = 1/alpha.
    g = torch.Generator().manual_seed(0)
    u = torch.rand(4, 4000, generator=g, dtype=torch.float64)
    log_w = -torch.log(u) / torch.tensor([[0.5], [1.0], [2.0], [4.0]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        khat = psis_khat(log_w.numpy())
    assert khat == pytest.approx([2.0, 1.0, 0.5, 0.25], abs=0.15)


def test_global_latents_are_rejected():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 0.5))

    with pytest.raises(ValueError, match="inside the data plate"):
        log_likelihood(model, guide, torch.zeros(5), num_samples=10, progress=False)


def test_bad_arguments():
    vae = VAE(12, (3,), ((8,),))
    with pytest.raises(ValueError, match="num_samples"):
        log_likelihood(vae.model, vae.guide, torch.zeros(2, 12), num_samples=0)
    with pytest.raises(TypeError, match="data"):
        log_likelihood(vae.model, vae.guide, 3.0, num_samples=5)


def test_exact_log_likelihood_averages_log_prob_and_restores_the_mode():
    from pyrogen.evaluate import exact_log_likelihood

    class Factorised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.tensor([0.3, -1.2, 2.0]))

        def log_prob(self, x):
            assert not self.training  # evaluated in eval mode
            return dist.Bernoulli(logits=self.logits).log_prob(x).sum(-1)

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((37, 3), 0.4))
    module = Factorised().train()
    ll = exact_log_likelihood(module, x, batch_size=10)
    expected = dist.Bernoulli(logits=module.logits).log_prob(x).sum(-1).double()
    assert module.training
    assert ll.mean == pytest.approx(expected.mean().item(), rel=1e-6)
    assert ll.stderr == pytest.approx(expected.std().item() / 37**0.5, rel=1e-5)
    assert ll.mc_stderr == 0 and ll.num_examples == 37
    text = ll.summary()
    assert "exact" in text and "ESS" not in text and f"{ll.mean:.2f}" in text
    with pytest.raises(ValueError, match="batch_size"):
        exact_log_likelihood(module, x, batch_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        exact_log_likelihood(module.log_prob, x[:0])


# ----------------------------------------------------------------------------- one entry point


def test_one_entry_point_for_models_pairs_and_distributions(float64):
    # the linear-Gaussian model: its own estimator is exact, and importance sampling with the
    # exact posterior as proposal gives the same numbers through the Pyro-pair form
    m = _ppca()
    m.set_guide_to_posterior()
    x = m.marginal().sample((15,))
    own = log_likelihood(m, x)
    assert own.is_exact and own.estimator.startswith("exact")
    torch.testing.assert_close(own.per_example, m.exact_log_prob(x).detach())
    pair = log_likelihood(m.model, m.guide, x, num_samples=10, progress=False)
    torch.testing.assert_close(pair.per_example, own.per_example, rtol=0, atol=1e-8)
    assert pair.estimator == "importance sampling" and not pair.is_exact
    # an energy-based distribution: exact log Z for a tiny RBM
    from pyrogen.distributions import BernoulliRBM

    rbm = BernoulliRBM(torch.randn(4, 3), torch.randn(4), torch.randn(3))
    v = torch.bernoulli(torch.full((6, 4), 0.5))
    result = log_likelihood(rbm, v, progress=False)
    torch.testing.assert_close(result.per_example, rbm.log_prob(v).double())
    assert result.diagnostics["log_z_stderr"] == 0


def test_unknown_options_and_forms_are_named_type_errors():
    m = _ppca()
    x = m.marginal().sample((3,)).detach()
    with pytest.raises(TypeError, match=r"num_samples.*it takes \['batch_size', 'progress'\]"):
        log_likelihood(m, x, num_samples=100)
    with pytest.raises(TypeError, match="typo_option"):
        log_likelihood(m.model, m.guide, x, typo_option=1)
    with pytest.raises(TypeError, match="exact_log_likelihood"):
        log_likelihood(m.exact_log_prob, x)  # a plain function is neither form
    with pytest.raises(TypeError, match="one positional"):
        log_likelihood(m, x, x)


def test_deprecated_names_still_work_for_one_release():
    result = LogLikelihood.from_per_example(torch.tensor([-1.0, -3.0]), "exact")
    with pytest.warns(DeprecationWarning, match="estimator"):
        assert result.method == "exact"
    with pytest.warns(DeprecationWarning, match="diagnostics"):
        assert result.extra == {}
    from pyrogen.evaluate import exact_log_likelihood

    with pytest.warns(DeprecationWarning, match="estimator"):
        ll = exact_log_likelihood(lambda v: -v.sum(-1), torch.ones(4, 2), method="mine")
    assert ll.estimator == "mine" and ll.mean == -2.0 and ll.stderr == 0.0
