"""DBM: exact sums against brute force, Gibbs sampler and AIS against enumeration, the
mean-field bound, composition of pre-trained RBMs, input checks."""

import math

import pyro
import pytest
import scipy.stats
import torch

from pyrogen.distributions.dbm import DBM, pretraining_scales
from pyrogen.distributions.energy import binary_states
from pyrogen.distributions.rbm import BernoulliRBM
from pyrogen.infer.ais import AnnealingPath, ais

TINY = [(4, 3, 2), (2, 4, 3), (3, 2, 3, 2), (2, 3, 2, 3)]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is faster and leaves the shared CPUs alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_dbm(sizes, seed=0, scale=1.0, dtype=torch.float64, **kwargs):
    """Weights N(0, scale^2), biases N(0, 1/4), drawn in float64 and cast to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    weights = [
        (scale * torch.randn(a, b, generator=g, dtype=torch.float64)).to(dtype)
        for a, b in zip(sizes, sizes[1:])
    ]
    biases = [(0.5 * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype) for s in sizes]
    return DBM(weights, biases, **kwargs)


def all_states(sizes, dtype=torch.float64):
    """All joint states, split into layers, and the negative energies."""
    states = next(binary_states(sum(sizes), dtype))
    return list(torch.split(states, list(sizes), dim=-1))


def brute_force(d):
    """-E over all joint states, log Z, and log p~(v) for every v (index = binary code)."""
    layers = all_states(d.layer_sizes)
    neg_e = -d.energy(*layers)
    log_z = torch.logsumexp(neg_e, 0)
    V = d.num_visible
    code = (layers[0] * 2 ** torch.arange(V, dtype=torch.float64)).sum(-1).long()
    log_pv = torch.stack([torch.logsumexp(neg_e[code == i], 0) for i in range(2**V)])
    return layers, neg_e, log_z, log_pv


# ---- exact sums -------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", TINY)
def test_exact_log_partition_equals_brute_force_both_routes(sizes):
    d = random_dbm(sizes, seed=1)
    _, _, log_z, _ = brute_force(d)
    for route in ("even", "odd", "auto"):
        torch.testing.assert_close(d.exact_log_partition(route), log_z, rtol=0, atol=1e-8)
    result = d.log_partition()
    assert result.is_exact and float(result.stderr) == 0.0
    torch.testing.assert_close(result.log_z, log_z, rtol=0, atol=1e-8)


@pytest.mark.parametrize("sizes", TINY)
def test_unnormalized_log_prob_equals_brute_force_and_log_prob_normalizes(sizes):
    d = random_dbm(sizes, seed=2)
    _, _, _, log_pv = brute_force(d)
    vs = next(binary_states(d.num_visible, torch.float64))
    for route in ("even", "odd", "auto"):
        torch.testing.assert_close(d.unnormalized_log_prob(vs, route), log_pv, rtol=0, atol=1e-8)
    total = torch.logsumexp(d.log_prob(vs), 0)
    assert abs(float(total)) < 1e-10  # sum_v p(v) = 1
    torch.testing.assert_close(d.free_energy(vs), -log_pv, rtol=0, atol=1e-8)


@pytest.mark.parametrize("sizes", [(3, 2, 3), (2, 3, 2, 2)])
def test_half_marginals_equal_brute_force(sizes):
    """f_even(v, h2) and f_odd(h1, h3) are the joint with the other class summed out."""
    d = random_dbm(sizes, seed=3)
    layers, neg_e, _, _ = brute_force(d)
    three = d.num_hidden_layers == 3

    def grouped(idx, values):
        keys, inverse = torch.unique(idx, dim=0, return_inverse=True)
        out = torch.stack([torch.logsumexp(values[inverse == i], 0) for i in range(len(keys))])
        return keys, out

    keys, ref = grouped(torch.cat([layers[0], layers[2]], -1), neg_e)
    V = sizes[0]
    torch.testing.assert_close(
        d.unnormalized_log_prob_even(keys[:, :V], keys[:, V:]), ref, rtol=0, atol=1e-10
    )
    odd = torch.cat([layers[1], layers[3]], -1) if three else layers[1]
    keys, ref = grouped(odd, neg_e)
    H1 = sizes[1]
    h3 = keys[:, H1:] if three else None
    torch.testing.assert_close(
        d.unnormalized_log_prob_odd(keys[:, :H1], h3), ref, rtol=0, atol=1e-10
    )


def test_layer_conditionals_equal_brute_force():
    """log p(x_k | rest) from the layer-wise conditionals equals -E(x) minus the log-sum over
    all values of layer k, for every layer of a 3-layer DBM."""
    sizes = (3, 2, 3, 2)
    d = random_dbm(sizes, seed=4)
    torch.manual_seed(4)
    x = [torch.bernoulli(torch.full((5, s), 0.5, dtype=torch.float64)) for s in sizes]
    for k, size in enumerate(sizes):
        alts = next(binary_states(size, torch.float64))  # (2^size, size)
        xs = [t.unsqueeze(1).expand(-1, len(alts), -1) for t in x]
        xs[k] = alts.expand(5, -1, -1)
        log_norm = torch.logsumexp(-d.energy(*xs), -1)
        ref = -d.energy(*x) - log_norm
        below = x[k - 1] if k > 0 else None
        above = x[k + 1] if k < len(sizes) - 1 else None
        ours = d.layer_given(k, below, above).log_prob(x[k]).sum(-1)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(
        d.visible_given_hidden(x[1]).logits, d.layer_logits(0, above=x[1]), rtol=0, atol=0
    )
    torch.testing.assert_close(
        d.hidden_given(1, x[0], x[2]).logits, d.layer_logits(1, x[0], x[2]), rtol=0, atol=0
    )


def test_exact_log_prob_is_differentiable():
    d = random_dbm((3, 2, 2), seed=5)
    vs = next(binary_states(3, torch.float64))
    params = [t.clone().requires_grad_() for t in d.weights + d.biases]

    def f(*p):
        return DBM(list(p[:2]), list(p[2:])).log_prob(vs)

    assert torch.autograd.gradcheck(f, tuple(params))


# ---- Gibbs sampling -------------------------------------------------------------------


def chi_square_statistic(d, samples):
    V = d.num_visible
    code = (samples * 2 ** torch.arange(V, dtype=samples.dtype)).sum(-1).long()
    counts = torch.bincount(code, minlength=2**V).double()
    vs = next(binary_states(V, torch.float64))
    expected = d.log_prob(vs).exp() * len(samples)
    assert expected.min() >= 5  # the chi-square approximation holds
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("sizes", [(4, 3, 2), (3, 2, 3, 2)])
def test_gibbs_samples_pass_chi_square(sizes):
    """25,000 chains, 200 burn-in sweeps, then 4 samples 25 sweeps apart (10^5 in all), binned
    over the 2^V visible states: the statistic stays under the chi-square quantile with
    p = 1e-5 (2^V - 1 dof), a false-failure rate of 1e-5 by construction. The same samples
    fail against a DBM with one weight changed by 0.5 (the test has power)."""
    d = random_dbm(sizes, seed=6)
    torch.manual_seed(6)
    state = d.init_chains(25_000)
    draws = []
    with torch.no_grad():
        for step in range(1, 276):
            state = d.gibbs_step(state)
            if step >= 200 and step % 25 == 0:
                draws.append(state[0])
    samples = torch.cat(draws)
    assert samples.shape == (100_000, sizes[0])
    threshold = scipy.stats.chi2.isf(1e-5, df=2 ** sizes[0] - 1)
    assert chi_square_statistic(d, samples) < threshold
    wrong_weights = [w.clone() for w in d.weights]
    wrong_weights[0][0, 0] += 0.5
    wrong = DBM(wrong_weights, list(d.biases))
    assert chi_square_statistic(wrong, samples) > threshold


def test_sample_shapes_and_partial_states():
    d = random_dbm((5, 4, 3, 2), seed=7, dtype=torch.float32)
    torch.manual_seed(7)
    x = d.sample((6, 2), num_steps=3)
    assert x.shape == (6, 2, 5) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    state = d.gibbs_step((torch.ones(7, 5),))  # missing layers are filled in
    assert [t.shape for t in state] == [(7, 5), (7, 4), (7, 3), (7, 2)]
    state = d.gibbs_step(d.init_chains(3))
    assert [t.shape for t in state] == [(3, 5), (3, 4), (3, 3), (3, 2)]


# ---- AIS ----------------------------------------------------------------------------------


def test_ais_within_three_standard_errors_of_exact():
    """20 seeded random DBMs (10 with 2 and 10 with 3 hidden layers, N(0, 1) weights),
    100 chains, 1,000 temperatures: |log Zhat - log Z| <= 3 s.e. (the +-3 s.e. sandwich holds
    the truth) in at least 19. With calibrated standard errors each trial misses with
    probability ~0.0027, so >= 2 misses has probability ~0.0014."""
    hits = sandwiched = 0
    for seed in range(20):
        sizes = (10, 8, 6) if seed % 2 == 0 else (8, 6, 6, 4)
        d = random_dbm(sizes, seed=100 + seed)
        g = torch.Generator().manual_seed(seed)
        data = (torch.rand(200, sizes[0], generator=g) < 0.3).double()
        exact = d.exact_log_partition()
        torch.manual_seed(seed)
        path = d.annealing_path(data)
        assert isinstance(path, AnnealingPath)
        result = ais(path, num_chains=100, betas=1000)
        assert result.method == "ais" and result.stderr > 0
        assert result.log_weights.shape == (100,) and 1 <= float(result.ess) <= 100
        hits += abs(float(result.log_z - exact)) <= 3 * float(result.stderr)
        sandwiched += float(result.lower) <= float(exact) <= float(result.upper)
    assert hits >= 19 and sandwiched >= 19


def test_log_partition_falls_back_to_ais():
    """Neither parity class enumerable (V + H2 = 26, H1 = 21): log_partition() runs AIS;
    the mean-field bound then uses that estimate."""
    d = random_dbm((16, 21, 10), seed=8, scale=0.1)
    assert not d.can_enumerate() and d.can_enumerate_hidden()
    torch.manual_seed(8)
    result = d.log_partition(num_chains=20, betas=50)
    assert result.method == "ais" and torch.isfinite(result.log_z)
    v = torch.bernoulli(torch.full((3, 16), 0.5, dtype=torch.float64))
    bound = d.variational_lower_bound(v, log_z=result)
    torch.testing.assert_close(bound, d.unnormalized_variational_bound(v) - result.log_z)
    # the exact marginal over the even hidden layer (H2 = 10) is still available
    assert (bound <= d.unnormalized_log_prob(v) - result.log_z).all()


def test_ais_state_dtype_float32():
    d = random_dbm((6, 5, 4), seed=9, dtype=torch.float32)
    torch.manual_seed(9)
    result = d.log_partition("ais", num_chains=50, betas=300)
    exact = random_dbm((6, 5, 4), seed=9).exact_log_partition()
    assert abs(float(result.log_z) - float(exact)) <= 3 * float(result.stderr) + 1e-3


# ---- mean field -----------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", TINY)
def test_bound_below_exact_log_prob_and_monotone(sizes):
    """For every v: the bound is <= log p(v) (1e-10 slack), never decreases over mean-field
    sweeps from a uniform start (damped or not; 1e-12 slack), and the converged means are a
    fixed point of the update equations (1e-8)."""
    d = random_dbm(sizes, seed=10, scale=1.5)
    vs = next(binary_states(d.num_visible, torch.float64))
    log_p = d.log_prob(vs)
    log_z = d.log_partition()
    for damping in (0.0, 0.5):
        bounds = torch.stack(
            [
                d.variational_lower_bound(vs, log_z, num_iters=n, tol=None, damping=damping)
                for n in range(30)
            ]
        )
        assert (bounds[1:] - bounds[:-1] >= -1e-12).all()
        assert (bounds[-1] > bounds[0]).all()
    mus = d.mean_field(vs, num_iters=2000, tol=1e-13)
    assert (d.variational_lower_bound(vs, mus=mus) <= log_p + 1e-10).all()
    L = d.num_hidden_layers
    x = [vs, *mus]
    for k in range(1, L + 1):
        above = x[k + 1] if k < L else None
        fixed = torch.sigmoid(d.layer_logits(k, x[k - 1], above))
        torch.testing.assert_close(fixed, x[k], rtol=0, atol=1e-8)
    bottom_up = d.mean_field(vs, num_iters=2000, tol=1e-13, init="bottom_up")
    assert (d.variational_lower_bound(vs, mus=bottom_up) <= log_p + 1e-10).all()


@pytest.mark.parametrize("sizes", [(3, 2, 3), (2, 3, 2, 2)])
def test_bound_is_log_prob_minus_kl(sizes):
    """For arbitrary factorized q: E_q[-E] + H(q) - log Z = log p(v) - KL(q || p(h | v)),
    with the KL computed by enumerating all hidden states (1e-10)."""
    d = random_dbm(sizes, seed=11)
    torch.manual_seed(11)
    v = torch.bernoulli(torch.full((4, sizes[0]), 0.5, dtype=torch.float64))
    mus = [torch.rand(4, s, dtype=torch.float64) for s in sizes[1:]]
    hs = all_states(sizes[1:])
    log_q = sum(
        (h * m.log().unsqueeze(1) + (1 - h) * (-m).log1p().unsqueeze(1)).sum(-1)
        for h, m in zip(hs, mus)
    )  # (4, S)
    neg_e = -d.energy(v.unsqueeze(1).expand(-1, len(hs[0]), -1), *hs)  # (4, S)
    log_post = neg_e - torch.logsumexp(neg_e, -1, keepdim=True)
    kl = (log_q.exp() * (log_q - log_post)).sum(-1)
    expected = d.log_prob(v) - kl
    torch.testing.assert_close(d.variational_lower_bound(v, mus=mus), expected, rtol=0, atol=1e-10)


def test_mean_field_batching_and_gradient():
    d = random_dbm((5, 4, 3), seed=12)
    v = torch.bernoulli(torch.full((2, 3, 5), 0.5, dtype=torch.float64))
    mus = d.mean_field(v)
    assert [m.shape for m in mus] == [(2, 3, 4), (2, 3, 3)]
    flat = d.mean_field(v.reshape(6, 5))
    torch.testing.assert_close(mus[1].reshape(6, 3), flat[1])
    w = d.weight1.clone().requires_grad_()
    e = DBM([w, d.weight2], list(d.biases))
    bound = e.unnormalized_variational_bound(v.reshape(6, 5), tol=1e-12, num_iters=1000)
    (grad,) = torch.autograd.grad(bound.sum(), w)
    # envelope theorem: d bound / d W1 = sum_n v_n mu1_n^T at the fixed point
    torch.testing.assert_close(grad, v.reshape(6, 5).T @ flat[0], rtol=0, atol=1e-6)


# ---- composition of pre-trained RBMs --------------------------------------------------------


def random_rbms(sizes, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [
        BernoulliRBM(
            torch.randn(a, b, generator=g, dtype=dtype),
            torch.randn(a, generator=g, dtype=dtype),
            torch.randn(b, generator=g, dtype=dtype),
        )
        for a, b in zip(sizes, sizes[1:])
    ]


@pytest.mark.parametrize("sizes", [(5, 4, 3), (5, 4, 3, 2)])
def test_from_rbms_conditionals_average_pretraining_conditionals(sizes):
    """Each intermediate DBM layer's log-odds is the mean of the up-pass of the RBM below and
    the down-pass of the RBM above, as they were used in pre-training; the visible and top
    layers' are those of the bottom and top RBMs."""
    rbms = random_rbms(sizes, seed=13)
    n = len(rbms)
    assert pretraining_scales(0, n)[0] == 2.0 and pretraining_scales(n - 1, n)[1] == 2.0
    d = DBM.from_rbms(rbms)
    assert d.layer_sizes == tuple(sizes)
    torch.manual_seed(13)
    x = [torch.bernoulli(torch.full((7, s), 0.5, dtype=torch.float64)) for s in sizes]

    def up(k, v):  # p(h = 1 | v) of the k-th RBM in pre-training: sigma(c + s_up W^T v)
        return rbms[k].hidden_bias + pretraining_scales(k, n)[0] * (v @ rbms[k].weight)

    def down(k, h):  # p(v = 1 | h) of the k-th RBM in pre-training: sigma(b + s_down W h)
        return rbms[k].visible_bias + pretraining_scales(k, n)[1] * (h @ rbms[k].weight.T)

    for k in range(1, n):
        torch.testing.assert_close(
            d.layer_logits(k, x[k - 1], x[k + 1]), (up(k - 1, x[k - 1]) + down(k, x[k + 1])) / 2
        )
    torch.testing.assert_close(d.layer_logits(0, above=x[1]), down(0, x[1]))
    torch.testing.assert_close(d.layer_logits(n, x[n - 1]), up(n - 1, x[n - 1]))


@pytest.mark.parametrize("num_rbms", [2, 3])
def test_from_rbms_with_zero_upper_weights_has_bottom_rbm_marginal(num_rbms):
    """Zero weights above the first RBM and rbms[1].visible_bias == rbms[0].hidden_bias: the
    DBM's p(v) is the bottom RBM's, and log Z adds the independent upper units' softplus
    terms (1e-10)."""
    sizes = (4, 3, 3, 2)[: num_rbms + 1]
    rbms = random_rbms(sizes, seed=14)
    upper = [
        BernoulliRBM(torch.zeros_like(r.weight), r.visible_bias, r.hidden_bias) for r in rbms[1:]
    ]
    upper[0] = BernoulliRBM(upper[0].weight, rbms[0].hidden_bias, upper[0].hidden_bias)
    d = DBM.from_rbms([rbms[0], *upper])
    vs = next(binary_states(4, torch.float64))
    torch.testing.assert_close(d.log_prob(vs), rbms[0].log_prob(vs), rtol=0, atol=1e-10)
    extra = sum(torch.nn.functional.softplus(c).sum() for c in d.biases[2:])
    torch.testing.assert_close(
        d.log_partition().log_z, rbms[0].log_partition().log_z + extra, rtol=0, atol=1e-10
    )


def test_from_rbms_rejects_mismatched_stack():
    rbms = random_rbms((5, 4, 3), seed=15)
    other = random_rbms((2, 3), seed=15)[0]
    with pytest.raises(ValueError, match="rbms"):
        DBM.from_rbms([rbms[0], other])
    with pytest.raises(ValueError, match="2 or 3"):
        DBM.from_rbms(rbms[:1])


# ---- shapes, devices, errors ----------------------------------------------------------------


def test_expand_plate_and_float32():
    d64 = random_dbm((4, 3, 2), seed=16)
    d32 = random_dbm((4, 3, 2), seed=16, dtype=torch.float32)
    vs = next(binary_states(4, torch.float64))
    torch.testing.assert_close(
        d32.log_prob(vs.float()).double(), d64.log_prob(vs), rtol=0, atol=1e-4
    )
    e = d64.expand((16,))
    assert e.batch_shape == (16,) and e.event_shape == (4,)
    torch.testing.assert_close(e.log_prob(vs), d64.log_prob(vs))

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("v", d64, obs=x)

    trace = pyro.poutine.trace(model).get_trace(vs)
    torch.testing.assert_close(trace.log_prob_sum(), d64.log_prob(vs).sum())


@pytest.mark.requires_cuda
def test_cuda_matches_cpu():
    d = random_dbm((6, 5, 4, 3), seed=17)
    g = DBM([w.cuda() for w in d.weights], [c.cuda() for c in d.biases])
    vs = next(binary_states(6, torch.float64))
    torch.testing.assert_close(g.log_prob(vs.cuda()).cpu(), d.log_prob(vs))
    torch.testing.assert_close(
        g.variational_lower_bound(vs.cuda()).cpu(), d.variational_lower_bound(vs)
    )
    assert g.sample((10,), num_steps=5).device.type == "cuda"
    result = g.log_partition("ais", num_chains=50, betas=200)
    assert result.log_z.device.type == "cuda"
    assert (
        abs(float(result.log_z) - float(d.log_partition().log_z)) < 5 * float(result.stderr) + 0.05
    )


def test_bad_visible_values_and_shapes():
    d = random_dbm((3, 2, 2), seed=18, validate_args=True)
    bad = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"binary.*0\.5"):
        d.log_prob(bad)
    with pytest.raises(ValueError, match=r"0\.5"):
        d.mean_field(bad)
    with pytest.raises(ValueError, match=r"0\.5"):
        d.variational_lower_bound(bad)
    with pytest.raises(
        ValueError,
        match=r"value: wrong size for layer 0 of this DBM: expected shape \(\.\.\., 3\), "
        r"found \(2, 4\)",
    ):
        d.unnormalized_log_prob(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="below"):
        d.layer_logits(1, above=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="route"):
        d.exact_log_partition("sideways")


def test_bad_parameters():
    w1, w2, w3 = torch.randn(3, 4), torch.randn(4, 2), torch.randn(2, 2)
    b = [torch.zeros(3), torch.zeros(4), torch.zeros(2)]
    with pytest.raises(ValueError, match="2 or 3"):
        DBM([w1], b[:2])
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        DBM([w1, torch.randn(5, 2)], b)
    with pytest.raises(ValueError, match=r"biases\[1\]"):
        DBM([w1, w2], [b[0], torch.zeros(5), b[2]])
    with pytest.raises(ValueError, match="biases must be a sequence of 4"):
        DBM([w1, w2, w3], b)
    with pytest.raises(ValueError, match="dtype"):
        DBM([w1, w2.double()], b)
    with pytest.raises(ValueError, match="support|real|weight1"):
        DBM([w1 * float("nan"), w2], b, validate_args=True)


def test_too_large_for_exact_sums_points_to_the_bound():
    d = random_dbm((30, 25, 22), seed=19, dtype=torch.float32, scale=0.01)
    assert not d.can_enumerate_hidden() and not d.can_enumerate()
    v = torch.zeros(2, 30)
    with pytest.raises(ValueError, match="variational_lower_bound"):
        d.unnormalized_log_prob(v)
    with pytest.raises(ValueError, match="ais"):
        d.log_partition("exact")
    assert d.unnormalized_variational_bound(v).shape == (2,)
    assert math.isfinite(float(d.variational_lower_bound(v, log_z=0.0).sum()))
