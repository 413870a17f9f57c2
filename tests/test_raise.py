"""Trustworthy partition functions: AIS diagnostics and warnings, RAISE against exact values.

Every number is checked against enumeration: the annealing model's density by products of
transition matrices, log Z and log p(v) of RBMs and a DBM small enough to sum, and the wide
RBM (20 visible, 500 hidden units) by summing the hidden layer out over all 2^20 visible
states. Seeds are fixed; each statistical check states its tolerance.
"""

import math
import warnings

import pytest
import torch

from pyrogen.distributions import DBM, BernoulliRBM, GaussianRBM
from pyrogen.distributions.annealing import (
    LogPartition,
    UnreliableEstimateWarning,
    ais,
    ais_estimate,
    default_betas,
    ess_threshold,
    inverse_temperatures,
    reverse_ais,
)
from pyrogen.distributions.energy import binary_states
from pyrogen.evaluate.energy import energy_log_likelihood
from pyrogen.evaluate.result import LogLikelihoodBracket
from pyrogen.evaluate.reverse_ais import log_likelihood_bracket, raise_log_likelihood

D = torch.float64


def _rbm(V, H, scale, seed=0):
    """A random RBM whose biases roughly centre the units (so no state dominates)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(V, H, generator=g, dtype=D) * scale
    b = torch.randn(V, generator=g, dtype=D) * 0.5 - 0.5 * W.sum(1)
    c = torch.randn(H, generator=g, dtype=D) * 0.5 - 0.5 * W.sum(0)
    return BernoulliRBM(W, b, c)


def _exact(rbm):
    """All visible states, their exact log p(v), and log Z (by enumerating v)."""
    S = next(binary_states(rbm.num_visible, D))
    u = rbm.unnormalized_log_prob(S)
    log_z = torch.logsumexp(u, 0)
    return S, u - log_z, log_z


def _draw(states, log_p, n, seed):
    g = torch.Generator().manual_seed(seed)
    return states[torch.multinomial(log_p.exp(), n, replacement=True, generator=g)]


def _no_ais(rbm):
    """The same RBM, but scored with AIS: enumeration off for this instance."""
    rbm.max_enumeration = 0
    return rbm


# ----------------------------------------------------------------------------- diagnostics


def test_log_partition_diagnostics_equal_hand_computed_values():
    """ESS, the spread of the log-weights and the reliability rule, on weights 1, 1, 2, 4
    (ESS = 8^2 / 22) and on 20 chains of which one carries everything."""
    w = torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=D)
    lp = ais_estimate(w.log(), 0.0, num_betas=7)
    assert float(lp.ess) == pytest.approx(64 / 22, rel=1e-12)
    assert lp.log_weight_std == pytest.approx(float(w.log().std()), rel=1e-12)
    assert lp.log_weight_range == pytest.approx(math.log(4.0), rel=1e-12)
    assert float(lp.log_z) == pytest.approx(math.log(2.0), rel=1e-12)
    d = lp.diagnostics()
    assert d["num_chains"] == 4 and d["num_betas"] == 7 and d["ess_threshold"] == 2.0
    assert d["reliable"] and lp.is_reliable  # ESS 2.9 >= max(2, 0.4)
    assert ess_threshold(100) == 10.0 and ess_threshold(10) == 2.0 and ess_threshold(3) == 2.0
    one = torch.full((20,), -30.0, dtype=D)
    one[3] = 0.0
    bad = ais_estimate(one, 1.0, num_betas=5)
    assert float(bad.ess) == pytest.approx(1.0, abs=1e-10) and not bad.is_reliable
    assert bad.log_weight_range == pytest.approx(30.0)
    assert "ESS 1.0/20" in repr(bad)
    with pytest.warns(UnreliableEstimateWarning, match=r"1\.0 of 20 chains.*5 temperatures"):
        assert bad.warn_if_unreliable()
    exact = LogPartition.exact(torch.tensor(3.0, dtype=D))
    assert exact.is_reliable and math.isnan(exact.diagnostics()["ess"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not exact.warn_if_unreliable() and not lp.warn_if_unreliable()


def test_unreliable_warning_fires_on_a_hard_model_and_not_on_an_easy_one():
    """A strongly coupled RBM with 100 chains and 5 temperatures: ESS below 10 (10% of the
    chains), a warning naming the model, the chains and the temperatures, and a summary
    that says UNRELIABLE. A weakly coupled one with 50 chains and 100 temperatures: no
    warning, and the ESS and spread printed."""
    torch.manual_seed(0)
    hard = _no_ais(_rbm(16, 16, scale=8.0))
    x = _draw(*_exact(hard)[:2], 50, seed=1)
    with pytest.warns(UnreliableEstimateWarning) as record:
        result = energy_log_likelihood(hard, x, num_chains=100, betas=5, progress=False)
    message = str(record[0].message)
    assert "BernoulliRBM (16 visible, 16 hidden)" in message
    assert "of 100 chains" in message and "5 temperatures" in message
    assert "num_chains" in message and "betas" in message and "RAISE" in message
    d = result.diagnostics
    assert d["log_z_ess"] < 10.0 and not d["reliable"]
    assert "UNRELIABLE" in result.summary() and "log-weights std" in result.summary()
    # the cached log Z of the distribution warns when it is computed
    with pytest.warns(UnreliableEstimateWarning, match="BernoulliRBM"):
        hard.log_partition("ais", num_chains=100, betas=5)

    easy = _no_ais(_rbm(16, 16, scale=0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableEstimateWarning)
        result = energy_log_likelihood(easy, x, num_chains=50, betas=100, progress=False)
    assert result.diagnostics["reliable"] and result.diagnostics["log_z_ess"] > 40
    text = result.summary()
    assert "AIS effective sample size" in text and "max-min" in text
    assert "UNRELIABLE" not in text


def test_min_ess_doubles_the_chains_until_it_is_reached(capsys):
    """``min_ess``: chains double (20, 40, 80, ...) until the pooled ESS reaches it, the
    rounds are printed and recorded; the first round is the plain run's chains (same
    seed: the same first 20 log-weights), and a cap that is too low warns."""
    rbm = _no_ais(_rbm(10, 10, scale=2.0))
    S, log_p, log_z = _exact(rbm)
    x = _draw(S, log_p, 30, seed=2)
    plain = energy_log_likelihood(rbm, x, num_chains=20, betas=10, seed=3, progress=False)
    grown = energy_log_likelihood(
        rbm, x, num_chains=20, betas=10, seed=3, progress=True, min_ess=60, max_chains=640
    )
    rounds = grown.diagnostics["chain_rounds"]
    assert rounds[0] == [20, pytest.approx(plain.diagnostics["log_z_ess"])]
    assert [n for n, _ in rounds] == [20 * 2**i for i in range(len(rounds))]
    assert len(rounds) >= 2 and rounds[-1][1] >= 60 and rounds[-2][1] < 60
    assert grown.num_samples == rounds[-1][0] and grown.diagnostics["num_chains"] == rounds[-1][0]
    assert "min_ess 60 reached" in capsys.readouterr().out
    assert "AIS chains for min_ess 60" in grown.summary()
    # the pooled estimate is still an estimate of the exact log Z (3 s.e., seed 3)
    assert abs(grown.diagnostics["log_z"] - float(log_z)) < 3 * grown.diagnostics["log_z_stderr"]
    with pytest.warns(UnreliableEstimateWarning, match="did not reach min_ess = 79"):
        energy_log_likelihood(
            rbm, x, num_chains=20, betas=3, seed=3, progress=False, min_ess=79, max_chains=80
        )


def test_min_ess_bad_values_are_refused():
    rbm = _no_ais(_rbm(6, 5, scale=1.0))
    x = torch.ones(3, 6, dtype=D)
    for kwargs, match in [
        (dict(min_ess=0), "min_ess must be a positive"),
        (dict(min_ess=500, max_chains=100), "cannot be reached"),
        (dict(min_ess=5, max_chains=10), "max_chains .* at least num_chains"),
        (dict(max_chains=100), "only used with min_ess"),
    ]:
        with pytest.raises(ValueError, match=match):
            energy_log_likelihood(rbm, x, num_chains=20, betas=5, progress=False, **kwargs)


# ----------------------------------------------------------------------------- RAISE, exact


def _annealing_model_density(rbm, base, betas):
    r""":math:`p_{\mathrm{ann}}(v) = p_0 T_1 \cdots T_K` over all visible states, with
    :math:`T_\beta(v' \mid v) = \sum_h p_\beta(h \mid v)\, p_\beta(v' \mid h)` written out as
    matrices (the path of :class:`~pyrogen.distributions.rbm.RBMAnnealingPath`)."""
    S = next(binary_states(rbm.num_visible, D))
    Hs = next(binary_states(rbm.num_hidden, D))

    def bern(x, logits):  # log prod_i Bernoulli(x_i; sigma(logits_i)), all pairs
        return (x[None] * logits[:, None] - torch.nn.functional.softplus(logits)[:, None]).sum(-1)

    p = bern(S, base[None]).exp()[0]  # p_0 over the visible states
    for beta in betas[1:]:
        h_given_v = bern(Hs, beta * rbm.hidden_logits(S)).exp()  # (states, hiddens)
        v_logits = torch.lerp(base.expand(len(Hs), -1), rbm.visible_logits(Hs), beta)
        v_given_h = bern(S, v_logits).exp()  # (hiddens, states)
        p = p @ h_given_v @ v_given_h
    return S, p


def test_reverse_ais_weights_are_unbiased_for_the_annealing_model():
    """RAISE's weight has expectation p_ann(v), the density of the forward chain's last
    state (base rates, then 3 Gibbs transitions), computed exactly with transition
    matrices. 4,000 reverse chains from each of the 16 visible states: every mean weight
    within 4 standard errors of p_ann(v) (seed 0), while p_ann differs from the RBM's own
    p(v) by more than that for some state, so the check tells the two apart."""
    rbm = _rbm(4, 3, scale=1.5, seed=4)
    data = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]], dtype=D)
    path = rbm.annealing_path(data)
    betas = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=D)
    S, p_ann = _annealing_model_density(rbm, path.base_bias, betas)
    assert float(p_ann.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.manual_seed(0)
    n = 4000
    w = reverse_ais(path, (S.repeat_interleave(n, 0),), betas).exp().view(-1, n)
    mean, se = w.mean(1), w.std(1) / math.sqrt(n)
    assert torch.all((mean - p_ann).abs() < 4 * se), (mean, p_ann, se)
    p_model = _exact(rbm)[1].exp()
    assert torch.any((p_model - p_ann).abs() > 8 * se)


def test_ais_log_z_within_its_stated_error_of_the_exact_value():
    """(a) On an enumerable RBM (12 visible, 10 hidden) AIS's sandwich log Z ± 3 s.e.
    (50 chains, 200 temperatures) contains the exact log Z for at least 9 of 10 seeds, and
    the estimates are reliable (no warning)."""
    rbm = _rbm(12, 10, scale=1.0, seed=5)
    S, log_p, log_z = _exact(rbm)
    path = rbm.annealing_path(_draw(S, log_p, 200, seed=6))
    inside = 0
    for seed in range(10):
        torch.manual_seed(seed)
        lp = ais(path, num_chains=50, betas=200)
        assert lp.is_reliable
        inside += bool(lp.lower <= log_z <= lp.upper)
    assert inside >= 9


def test_raise_and_ais_bracket_the_exact_log_likelihood():
    """(b) Test examples drawn from an enumerable RBM (10 visible, 8 hidden, strong
    weights), so that E[log p_ann(v)] <= E[log p(v)]. With a short schedule (20
    temperatures) RAISE (4 reverse chains per example) is below the exact mean
    log-likelihood for all of 10 seeds, by 0.05 to 0.5 nats, while AIS (50 chains)
    is above it on average over the seeds (its mean error >= -2 s.e. of that mean): the
    two bracket the truth. With 300 temperatures RAISE is within 0.06 nats of it."""
    rbm = _no_ais(_rbm(10, 8, scale=2.0))
    S, log_p, log_z = _exact(rbm)
    x = _draw(S, log_p, 100, seed=1)
    exact = float(log_p[(x * 2 ** torch.arange(10, dtype=D)).sum(1).long()].mean())
    raise_err, ais_err = [], []
    for seed in range(10):
        r = raise_log_likelihood(rbm, x, num_samples=4, betas=20, seed=seed, progress=False)
        assert r.bound and r.num_samples == 4
        raise_err.append(r.mean - exact)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnreliableEstimateWarning)
            a = energy_log_likelihood(rbm, x, num_chains=50, betas=20, seed=seed, progress=False)
        ais_err.append(a.mean - exact)
    raise_err, ais_err = torch.tensor(raise_err), torch.tensor(ais_err)
    assert torch.all(raise_err < -0.05) and torch.all(raise_err > -0.5), raise_err
    assert ais_err.mean() >= -2 * ais_err.std() / math.sqrt(10), ais_err
    assert ais_err.mean() - raise_err.mean() > 0.05
    long = raise_log_likelihood(rbm, x, num_samples=4, betas=300, seed=0, progress=False)
    assert -0.06 < long.mean - exact < 0.02
    assert long.mc_stderr > 0 and torch.all(long.ess <= 4 + 1e-9) and torch.all(long.ess >= 1)


def test_raise_of_a_dbm_brackets_its_exact_log_likelihood():
    """A DBM small enough to enumerate (8 visible, 6 and 5 hidden), 60 model samples.
    With 30 temperatures, for each of 10 seeds RAISE (mean-field proposal for h2, 5 reverse
    chains) is below the exact mean log-likelihood by 0.2 to 1.5 nats, and AIS's log Z (50
    chains) is within its stated 3 s.e. of the exact one, its log-likelihood error
    averaging >= -2 s.e. of that mean over the seeds: the two bracket the truth. With 300
    temperatures RAISE is within 0.1 nats below it (seed 0)."""
    g = torch.Generator().manual_seed(7)
    sizes = (8, 6, 5)
    weights = [torch.randn(a, b, generator=g, dtype=D) * 1.2 for a, b in zip(sizes, sizes[1:])]
    biases = [torch.randn(s, generator=g, dtype=D) * 0.3 for s in sizes]
    dbm = DBM(weights, biases)
    S = next(binary_states(8, D))
    log_z = dbm.log_partition("exact").log_z
    log_p = dbm.unnormalized_log_prob(S) - log_z
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-10)
    x = _draw(S, log_p, 60, seed=8)
    exact = float((dbm.unnormalized_log_prob(x) - log_z).mean())
    path = dbm.annealing_path(x)
    raise_err, ais_err = [], []
    for seed in range(10):
        r = raise_log_likelihood(dbm, x, num_samples=5, betas=30, seed=seed, progress=False)
        raise_err.append(r.mean - exact)
        torch.manual_seed(seed)
        lp = ais(path, num_chains=50, betas=30)
        assert lp.lower <= log_z <= lp.upper and lp.is_reliable
        ais_err.append(float(log_z - lp.log_z))  # AIS log-likelihood minus the exact one
    assert "mean-field" in r.estimator
    raise_err, ais_err = torch.tensor(raise_err), torch.tensor(ais_err)
    assert torch.all(raise_err < -0.2) and torch.all(raise_err > -1.5), raise_err
    assert ais_err.mean() >= -2 * ais_err.std() / math.sqrt(10), ais_err
    long = raise_log_likelihood(dbm, x, num_samples=5, betas=300, seed=0, progress=False)
    assert -0.1 < long.mean - exact < 0.02


def test_raise_of_a_three_layer_dbm_approaches_its_exact_log_likelihood():
    """A 3-layer DBM (7-5-4-3, enumerable; the path sums h1 and h3 out): RAISE (seed 0, 5
    reverse chains) is 0.1 to 1 nats below the exact mean log-likelihood of 60 model
    samples with 30 temperatures and within 0.05 nats below it with 300."""
    g = torch.Generator().manual_seed(3)
    sizes = (7, 5, 4, 3)
    weights = [torch.randn(a, b, generator=g, dtype=D) for a, b in zip(sizes, sizes[1:])]
    biases = [torch.randn(s, generator=g, dtype=D) * 0.3 for s in sizes]
    dbm = DBM(weights, biases)
    S = next(binary_states(7, D))
    log_z = dbm.log_partition("exact").log_z
    log_p = dbm.unnormalized_log_prob(S) - log_z
    x = _draw(S, log_p, 60, seed=8)
    exact = float((dbm.unnormalized_log_prob(x) - log_z).mean())
    short = raise_log_likelihood(dbm, x, num_samples=5, betas=30, seed=0, progress=False)
    long = raise_log_likelihood(dbm, x, num_samples=5, betas=300, seed=0, progress=False)
    assert -1.0 < short.mean - exact < -0.1
    assert -0.05 < long.mean - exact < 0.01


# ----------------------------------------------------------------------------- Gaussian RBM


def _gaussian_rbm(scale, seed=12):
    """A Gaussian RBM with 3 visible and 8 hidden units (sigma = 0.7), its exact log Z
    (summing the 2^8 hidden states), and ``n`` exact samples (h from its marginal, then
    v | h Gaussian)."""
    g = torch.Generator().manual_seed(seed)
    rbm = GaussianRBM(
        torch.randn(3, 8, generator=g, dtype=D) * scale,
        torch.randn(3, generator=g, dtype=D),
        torch.randn(8, generator=g, dtype=D) * 0.5,
        torch.full((3,), 0.7, dtype=D),
    )
    hs = next(binary_states(8, D))
    log_p_h = rbm.unnormalized_log_prob_hidden(hs)
    log_z = float(torch.logsumexp(log_p_h, 0))

    def draw(n):
        h = hs[torch.multinomial((log_p_h - log_z).exp(), n, replacement=True, generator=g)]
        mean = rbm.visible_mean(h)
        return mean + rbm.visible_scale * torch.randn(mean.shape, generator=g, dtype=D)

    return rbm, log_z, draw


def test_raise_of_a_gaussian_rbm_without_weights_is_exact():
    """With W = 0 and the base centred on b (no base_data) every intermediate distribution
    is the model itself, so every reverse weight equals p(v): RAISE is the exact
    log-density to 1e-9, for any schedule, and every ESS is M."""
    rbm, log_z, draw = _gaussian_rbm(0.0)
    x = draw(20)
    exact = rbm.unnormalized_log_prob(x) - log_z
    assert log_z == pytest.approx(float(rbm.log_partition("exact").log_z), abs=1e-10)
    r = raise_log_likelihood(rbm, x, num_samples=3, betas=7, seed=0, progress=False)
    torch.testing.assert_close(r.per_example, exact, rtol=0, atol=1e-9)
    assert torch.allclose(r.ess, torch.full_like(r.ess, 3.0))


def test_raise_and_ais_bracket_the_exact_log_density_of_a_gaussian_rbm():
    """3 visible, 8 hidden units, weights N(0, 1.6^2), 60 exact samples, base means from
    300 other samples. With 10 temperatures RAISE (4 reverse chains) is below the exact mean
    log-density for all of 10 seeds, by 0.15 to 0.6 nats, and AIS (50 chains, enumeration
    off) lies within 3 of its standard errors above it or higher for all of 5 seeds: the two
    bracket the truth. With 1,000 temperatures RAISE is within 0.2 nats below it (seed 0)."""
    rbm, log_z, draw = _gaussian_rbm(1.6)
    x, train = draw(60), draw(300)
    exact = float((rbm.unnormalized_log_prob(x) - log_z).mean())
    errors = []
    for seed in range(10):
        r = raise_log_likelihood(
            rbm, x, num_samples=4, betas=10, base_data=train, seed=seed, progress=False
        )
        errors.append(r.mean - exact)
    assert all(-0.6 < e < -0.15 for e in errors), errors
    long = raise_log_likelihood(
        rbm, x, num_samples=4, betas=1000, base_data=train, seed=0, progress=False
    )
    assert -0.2 < long.mean - exact < 0.0
    rbm.max_enumeration = 0
    for seed in range(5):
        bracket = log_likelihood_bracket(
            rbm, x, num_chains=50, betas=10, num_samples=4, base_data=train, seed=seed,
            progress=False,
        )  # fmt: skip
        assert bracket.contains(exact, num_stderr=3), (seed, bracket.lower, bracket.upper)
    with pytest.raises(ValueError, match="data"):
        raise_log_likelihood(rbm, x.masked_fill(x > 1, float("nan")), progress=False)


# ----------------------------------------------------------------------------- the wide RBM


def _visible_log_probs(rbm, group: int = 10, rows: int = 8):
    r""":math:`\log \tilde p(v) = b^\top v + \sum_j \log(1 + e^{c_j + v^\top W_{:j}})` for all
    :math:`2^V` visible states, the hidden layer summed out. The visible units are split in
    halves :math:`v = (a, b)`, so :math:`e^{c + v^\top W} = e^{c + a^\top W_a} \odot e^{b^\top
    W_b}` is a product of two small tables, and the softplus terms are summed as the log of
    products of ``group`` factors :math:`1 + e^{\cdot}` (units :math:`j, j + H/g, \dots`;
    one log per ``group`` hidden units instead of one each). About a second for 20 x 500."""
    V, H = rbm.num_visible, rbm.num_hidden
    assert H % group == 0
    half = V // 2
    va, vb = next(binary_states(half, D)), next(binary_states(V - half, D))
    W, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
    ea, eb = (va @ W[:half] + c).exp(), (vb @ W[half:]).exp()
    la, lb = va @ b[:half], vb @ b[half:]
    out = torch.empty(len(va), len(vb), dtype=D)
    for i in range(0, len(va), rows):
        t = ea[i : i + rows, None, :] * eb[None]
        t += 1.0
        soft = t.view(t.shape[0], len(vb), group, H // group).prod(-2).log_().sum(-1)
        out[i : i + rows] = soft + la[i : i + rows, None] + lb[None]
    assert bool(torch.isfinite(out).all())  # no product overflowed
    # state index a + 2^half b, as binary_states numbers them (bit i is unit i)
    return out.T.reshape(-1)


def test_visible_sum_equals_the_enumeration_of_the_distribution():
    """The chunked sum of the wide test agrees with the RBM's own ``log_prob`` enumeration
    on a model where both are cheap (10 visible, 40 hidden)."""
    rbm = _rbm(10, 40, scale=0.3, seed=9)
    S = next(binary_states(10, D))
    torch.testing.assert_close(_visible_log_probs(rbm), rbm.unnormalized_log_prob(S))


@pytest.fixture(scope="module")
def wide():
    """The wide RBM of the issue: 20 visible, 500 hidden units; its exact log Z and
    per-state log p(v) by summing the hidden layer out over all 2^20 visible states."""
    rbm = _rbm(20, 500, scale=0.12, seed=10)
    u = _visible_log_probs(rbm)
    log_z = torch.logsumexp(u, 0)
    return rbm, u - log_z, log_z


def test_wide_rbm_ais_and_raise_against_the_exact_log_z(wide):
    """(c) 20 visible, 500 hidden units. AIS (100 chains, 500 temperatures) has log Z within
    3 s.e. of the exact value and a reliable ESS; on 40 model samples RAISE (4 reverse
    chains, 500 temperatures) is below the exact mean log-likelihood by less than 0.2 nats
    and AIS is within its sandwich of it: the bracket contains the truth."""
    rbm, log_p, log_z = wide
    assert float(log_z) > 500 * math.log(2)  # the hidden layer alone gives 2^500 states
    idx = torch.multinomial(
        log_p.exp(), 40, replacement=True, generator=torch.Generator().manual_seed(11)
    )
    x = ((idx[:, None] >> torch.arange(20)) & 1).to(D)
    exact = float(log_p[idx].mean())
    torch.testing.assert_close(
        rbm.unnormalized_log_prob(x) - log_z, log_p[idx], rtol=0, atol=1e-9
    )  # the state numbering of the sum
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableEstimateWarning)
        bracket = log_likelihood_bracket(
            _no_ais(rbm), x, num_chains=100, betas=500, num_samples=4, seed=0, progress=False
        )
    assert isinstance(bracket, LogLikelihoodBracket)
    d = bracket.optimistic.diagnostics
    assert abs(d["log_z"] - float(log_z)) < 3 * d["log_z_stderr"] + 1e-3
    assert d["log_likelihood_lower"] <= exact <= d["log_likelihood_upper"]
    assert -0.2 < bracket.lower - exact < 0.0
    assert bracket.contains(exact, num_stderr=3)
    row = bracket.row()
    assert set(row) == {"AIS", "RAISE", "gap", "ESS"} and row["ESS"].endswith("/100")
    text = bracket.summary()
    assert "RAISE (conservative)" in text and "AIS (optimistic)" in text


# ----------------------------------------------------------------------------- API


def test_raise_is_seeded_and_refuses_bad_input():
    rbm = _rbm(6, 5, scale=1.0)
    x = _draw(*_exact(rbm)[:2], 7, seed=0)
    state = torch.get_rng_state()
    a = raise_log_likelihood(rbm, x, num_samples=3, betas=10, seed=4, progress=False)
    b = raise_log_likelihood(rbm, x, num_samples=3, betas=10, seed=4, progress=False)
    torch.testing.assert_close(a.per_example, b.per_example, rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left alone
    one = raise_log_likelihood(rbm, x, num_samples=1, betas=10, seed=4, progress=False)
    assert math.isnan(one.mc_stderr) and "RAISE" in one.estimator
    with pytest.raises(ValueError, match="data must be binary"):
        raise_log_likelihood(rbm, x * 0.5, progress=False)
    with pytest.raises(ValueError, match=r"data: expected an \(N, 6\) tensor"):
        raise_log_likelihood(rbm, x[:, :4], progress=False)
    with pytest.raises(ValueError, match="num_samples"):
        raise_log_likelihood(rbm, x, num_samples=0, progress=False)
    with pytest.raises(ValueError, match="betas must increase"):
        raise_log_likelihood(rbm, x, betas=torch.tensor([0.0, 0.5]), progress=False)
    with pytest.raises(ValueError, match="dist: RAISE is implemented for"):
        raise_log_likelihood(object(), x, progress=False)
    with pytest.raises(ValueError, match="same examples"):
        LogLikelihoodBracket(a, raise_log_likelihood(rbm, x[:3], betas=5, progress=False))


def test_short_default_schedules_run_from_0_to_1():
    """``default_betas(n)`` increases from 0 to 1 for every n >= 3 (counts too small to split
    in three used to end at 0.9); bad schedules are refused."""
    for n in range(3, 40):
        b = default_betas(n)
        assert len(b) == n and b[0] == 0.0 and b[-1] == 1.0 and bool((b.diff() >= 0).all())
    assert inverse_temperatures(5) == default_betas(5).tolist()
    with pytest.raises(ValueError, match="num_betas must be at least 3"):
        default_betas(2)
    for bad in ([0.0, 0.5], [0.0, 0.7, 0.5, 1.0], [0.1, 1.0]):
        with pytest.raises(ValueError, match="betas must increase from 0 to 1"):
            inverse_temperatures(torch.tensor(bad))


def test_force_ais_scores_an_enumerable_model_by_ais():
    """``force_ais`` takes the AIS path on a model whose log Z is enumerable (same result
    as switching enumeration off on the instance), and ``log_likelihood_bracket`` passes
    it on; without it the exact value is used."""
    rbm = _rbm(10, 8, scale=1.0, seed=3)
    S, log_p, _ = _exact(rbm)
    x = _draw(S, log_p, 50, seed=2)
    exact = energy_log_likelihood(rbm, x, progress=False)
    forced = energy_log_likelihood(
        rbm, x, num_chains=50, betas=200, seed=0, progress=False, force_ais=True
    )
    assert "AIS" not in exact.estimator and "AIS" in forced.estimator
    assert forced.mean != exact.mean and abs(forced.mean - exact.mean) < 0.1
    same = energy_log_likelihood(
        _no_ais(_rbm(10, 8, scale=1.0, seed=3)),
        x,
        num_chains=50,
        betas=200,
        seed=0,
        progress=False,
    )
    assert same.mean == pytest.approx(forced.mean, abs=1e-12)
    bracket = log_likelihood_bracket(
        rbm, x, num_chains=50, betas=200, num_samples=2, seed=0, progress=False, force_ais=True
    )
    assert bracket.optimistic.mean == pytest.approx(forced.mean, abs=1e-12)
