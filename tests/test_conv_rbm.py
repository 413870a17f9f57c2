"""Convolutional RBM with probabilistic max-pooling: free energy, conditionals and log Z
against brute-force sums written out with explicit loops (no conv2d, no block reshapes),
the Gibbs sampler against the enumerated distribution, the block constraint, the
contrastive-divergence and sparsity gradients against hand-written expected statistics,
mean-field inference, bad input."""

import itertools
import math

import pyro
import pytest
import scipy.stats
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

from pyrogen.distributions.conv_rbm import ConvolutionalRBM, GaussianConvolutionalRBM
from pyrogen.infer import ContrastiveDivergence

#: Gibbs goodness-of-fit tests: chance of a spurious failure of an exact sampler, per test
TEST_FAILURE_RATE = 1e-3

# (channels, image (H, W), filters K, filter (Fh, Fw), pooling P)
TINY = (1, (3, 3), 2, (2, 2), 2)  # hidden 2x2x2, one block per group: 25 hidden states
WIDE = (1, (3, 5), 1, (2, 2), 2)  # hidden 1x2x4, two blocks side by side
COLOUR = (2, (3, 3), 2, (2, 2), 1)  # two channels, no pooling (a plain convolutional RBM)


def _params(config, scale=1.0, seed=0):
    C, _, K, (fh, fw), _ = config
    g = torch.Generator().manual_seed(seed)
    return (
        scale * torch.randn(K, C, fh, fw, generator=g, dtype=torch.float64),
        scale * torch.randn(C, generator=g, dtype=torch.float64),
        scale * torch.randn(K, generator=g, dtype=torch.float64),
    )


def _model(config, gaussian=False, scale=1.0, seed=0, **kwargs):
    cls = GaussianConvolutionalRBM if gaussian else ConvolutionalRBM
    W, b, c = _params(config, scale, seed)
    return cls(W, b, c, image_shape=config[1], pooling=config[4], **kwargs)


def _binary(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _blocks_by_hand(dist):
    """Lists of flat hidden indices (k, i, j) of each pooling block, written out."""
    K, nh, nw = dist.hidden_shape
    P = dist.pooling
    blocks = []
    for k in range(K):
        for a in range(nh // P):
            for b in range(nw // P):
                blocks.append(
                    [
                        (k * nh + i) * nw + j
                        for i in range(a * P, (a + 1) * P)
                        for j in range(b * P, (b + 1) * P)
                    ]
                )
    return blocks


def _allowed_hidden(dist):
    """Every binary hidden configuration with at most one unit on per block (filtered from
    all 2^(K N_h N_w) of them), as maps ``(n, K, N_h, N_w)``."""
    states = _binary(math.prod(dist.hidden_shape))
    ok = torch.ones(len(states), dtype=torch.bool)
    for block in _blocks_by_hand(dist):
        ok &= states[:, block].sum(-1) <= 1
    return states[ok].reshape((-1,) + dist.hidden_shape)


def _inputs_by_hand(dist, v):
    """I(h_kij) = c_k + sum_{c,r,s} W[k,c,r,s] v[c, i+r, j+s], by explicit loops over
    (k, i, j); ``v`` of shape ``(n, CHW)``."""
    maps = v.reshape((-1,) + dist.visible_shape)
    K, nh, nw = dist.hidden_shape
    fh, fw = dist.weight.shape[2:]
    out = torch.empty((len(v), K, nh, nw), dtype=torch.float64)
    for k in range(K):
        for i in range(nh):
            for j in range(nw):
                patch = maps[:, :, i : i + fh, j : j + fw]
                out[:, k, i, j] = dist.hidden_bias[k] + (patch * dist.weight[k]).sum((1, 2, 3))
    return out


def _energy_by_hand(dist, v, h):
    """E(v, h) for every pair of rows of ``v`` (n, CHW) and maps ``h`` (m, K, Nh, Nw):
    shape (n, m)."""
    inputs = _inputs_by_hand(dist, v).reshape(len(v), -1)
    bias = dist.visible_bias.repeat_interleave(math.prod(dist.image_shape))
    if isinstance(dist, GaussianConvolutionalRBM):
        visible = -0.5 * (v - bias).square().sum(-1)
    else:
        visible = v @ bias
    return -(inputs @ h.reshape(len(h), -1).T) - visible[:, None]


# ---- free energy, energy and the partition function ------------------------------------


@pytest.mark.parametrize("config", [TINY, WIDE, COLOUR], ids=["tiny", "wide", "colour"])
@pytest.mark.parametrize("gaussian", [False, True], ids=["binary", "gaussian"])
def test_free_energy_equals_brute_force_sum_over_allowed_hidden_configurations(config, gaussian):
    dist = _model(config, gaussian, seed=1)
    hs = _allowed_hidden(dist)
    assert len(hs) == (dist.block_size + 1) ** dist.num_blocks
    g = torch.Generator().manual_seed(2)
    if gaussian:
        v = torch.randn(20, dist.num_visible, generator=g, dtype=torch.float64)
    else:
        v = (torch.rand(20, dist.num_visible, generator=g) < 0.5).double()
    energies = _energy_by_hand(dist, v, hs)
    torch.testing.assert_close(dist.energy(v[:, None], hs), energies, rtol=0, atol=1e-12)
    brute = torch.logsumexp(-energies, 1)
    torch.testing.assert_close(dist.unnormalized_log_prob(v), brute, rtol=0, atol=1e-12)
    torch.testing.assert_close(dist.free_energy(v), -brute, rtol=0, atol=1e-12)
    # the package's own enumeration lists exactly the allowed configurations
    mine = torch.cat(list(dist.hidden_configurations(chunk=7)))
    assert sorted(map(tuple, mine.reshape(len(mine), -1).tolist())) == sorted(
        map(tuple, hs.reshape(len(hs), -1).tolist())
    )


def test_energy_is_infinite_where_a_block_has_two_units_on():
    dist = _model(TINY)
    h = torch.zeros((1,) + dist.hidden_shape, dtype=torch.float64)
    h[0, 1, 0, 0] = h[0, 1, 1, 1] = 1.0  # two units of group 1's only block
    v = torch.ones(1, dist.num_visible, dtype=torch.float64)
    assert dist.energy(v, h).item() == math.inf
    h[0, 1, 1, 1], h[0, 0, 1, 0] = 0.0, 1.0  # one per block: finite
    assert math.isfinite(dist.energy(v, h).item())


@pytest.mark.parametrize("config", [TINY, WIDE], ids=["tiny", "wide"])
def test_exact_log_partition_over_visible_and_over_hidden_equals_brute_force(config):
    dist = _model(config, seed=3)
    vs, hs = _binary(dist.num_visible), _allowed_hidden(dist)
    brute = torch.logsumexp(-_energy_by_hand(dist, vs, hs).reshape(-1), 0)
    over_visible = dist._sum_over_states(dist.num_visible, dist.unnormalized_log_prob)
    over_hidden = dist._log_partition_over_hidden()
    result = dist.log_partition()
    assert result.is_exact
    for value in (over_visible, over_hidden, result.log_z):
        assert abs(value.item() - brute.item()) < 1e-10
    # normalisation: sum_v exp(-F(v) - log Z) = 1
    assert abs(dist.log_prob(vs).exp().sum().item() - 1.0) < 1e-12


def test_colour_model_with_30_visible_units_enumerates_its_hidden_configurations():
    config = (2, (3, 5), 2, (2, 2), 2)  # 2^30 visible states, 5^4 = 625 hidden ones
    dist = _model(config, scale=0.5, seed=4)
    assert dist.can_enumerate() and dist.num_visible == 30
    hs = _allowed_hidden(dist)
    # v summed out by hand for each h: log p~(h) = c.h + sum softplus(b + u), with the
    # top-down input u[c, i+r, j+s] = sum_k W[k, c, r, s] h[k, i, j] written out
    u = torch.zeros((len(hs),) + dist.visible_shape, dtype=torch.float64)
    K, nh, nw = dist.hidden_shape
    for k in range(K):
        for i in range(nh):
            for j in range(nw):
                u[:, :, i : i + 2, j : j + 2] += hs[:, k, i, j, None, None, None] * dist.weight[k]
    bias = dist.visible_bias[:, None, None]
    log_ph = (hs.sum((-2, -1)) * dist.hidden_bias).sum(-1)
    log_ph = log_ph + torch.nn.functional.softplus(bias + u).sum((1, 2, 3))
    assert abs(dist.log_partition().log_z.item() - torch.logsumexp(log_ph, 0).item()) < 1e-10


@pytest.mark.parametrize("config", [TINY, WIDE], ids=["tiny", "wide"])
def test_gaussian_density_is_the_mixture_over_hidden_configurations(config):
    # exp(-E(v, h)) = p~(h) N(v; b + u_h, I): p(v) is a Gaussian mixture over the allowed
    # configurations with weights p~(h) / Z, which checks -F, log Z and normalisation at once
    dist = _model(config, gaussian=True, seed=5)
    hs = _allowed_hidden(dist)
    g = torch.Generator().manual_seed(6)
    v = 2 * torch.randn(15, dist.num_visible, generator=g, dtype=torch.float64)
    normal = torch.distributions.Normal(dist.visible_mean(hs), 1.0)  # (m, V)
    log_ph = -_energy_by_hand(dist, v, hs) - normal.log_prob(v[:, None]).sum(-1)  # (n, m)
    assert torch.allclose(log_ph, log_ph[:1].expand_as(log_ph), atol=1e-10)  # free of v
    torch.testing.assert_close(dist.unnormalized_log_prob_hidden(hs), log_ph[0])
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=log_ph[0]),
        torch.distributions.Independent(normal, 1),
    )
    torch.testing.assert_close(dist.log_prob(v), mixture.log_prob(v), rtol=0, atol=1e-10)


# ---- conditionals ------------------------------------------------------------------------


@pytest.mark.parametrize("gaussian", [False, True], ids=["binary", "gaussian"])
def test_hidden_conditionals_equal_the_enumerated_posterior(gaussian):
    dist = _model(WIDE, gaussian, seed=7)
    hs = _allowed_hidden(dist)
    g = torch.Generator().manual_seed(8)
    v = (torch.rand(6, dist.num_visible, generator=g) < 0.5).double()
    posterior = torch.softmax(-_energy_by_hand(dist, v, hs), 1)  # (n, m) over allowed h
    marginals = posterior @ hs.reshape(len(hs), -1)
    probs, pooling = dist.hidden_probs(v)
    torch.testing.assert_close(probs.reshape(len(v), -1), marginals, rtol=0, atol=1e-12)
    blocks = _blocks_by_hand(dist)
    flat = hs.reshape(len(hs), -1)
    for n_block, block in enumerate(blocks):
        any_on = posterior @ flat[:, block].sum(-1)  # P(pooling unit on | v)
        torch.testing.assert_close(pooling.reshape(len(v), -1)[:, n_block], any_on)
    # the softmax over block + off, by hand: exp(I) / (1 + sum exp(I)), 1 / (1 + sum exp(I))
    inputs = _inputs_by_hand(dist, v).reshape(len(v), -1)
    cat = dist.hidden_given_visible(v)
    assert cat.batch_shape == (len(v),) + dist.pooled_shape
    for n_block, block in enumerate(blocks):
        denom = 1 + inputs[:, block].exp().sum(-1, keepdim=True)
        want = torch.cat([inputs[:, block].exp() / denom, 1 / denom], -1)
        torch.testing.assert_close(cat.probs.reshape(len(v), -1, 5)[:, n_block], want)


def test_binary_visible_conditional_equals_the_enumerated_one():
    dist = _model(TINY, seed=9)
    vs, hs = _binary(dist.num_visible), _allowed_hidden(dist)
    conditional = torch.softmax(-_energy_by_hand(dist, vs, hs).T, 1)  # (m, 512): p(v | h)
    torch.testing.assert_close(
        dist.visible_given_hidden(hs[:, None]).log_prob(vs).sum(-1), conditional.log()
    )
    torch.testing.assert_close(
        torch.sigmoid(dist.visible_logits(hs)), conditional @ vs, rtol=0, atol=1e-12
    )


def test_gaussian_visible_conditional_has_the_energy_differences():
    dist = _model(WIDE, gaussian=True, seed=10)
    hs = _allowed_hidden(dist)[::5]
    g = torch.Generator().manual_seed(11)
    v = torch.randn(2, dist.num_visible, generator=g, dtype=torch.float64)
    energies = _energy_by_hand(dist, v, hs)  # (2, m)
    log_cond = dist.visible_given_hidden(hs).log_prob(v[:, None]).sum(-1)
    torch.testing.assert_close(log_cond[0] - log_cond[1], energies[1] - energies[0])
    assert (dist.visible_given_hidden(hs).scale == 1).all()  # unit variance


# ---- Gibbs sampling ------------------------------------------------------------------------


def test_gibbs_sampler_matches_the_enumerated_distribution_and_keeps_the_constraint():
    # 30,000 chains of 40 sweeps of the tiny model (512 visible, 25 hidden states; sampled
    # in float32, scored in float64), seeded. Pearson's chi-square over the visible states
    # expected at least 10 times (the rest pooled into one bin; scipy's chi2 tail, as
    # Pyro's chi2sf overflows at 500 degrees of freedom) and Pyro's
    # multinomial_goodness_of_fit for the hidden states (whose marginal is p~(h) / Z) must
    # not reject at level 1e-3; every sample has at most one unit on per block.
    torch.manual_seed(0)
    dist = _model(TINY, scale=0.8, seed=12)
    fast = ConvolutionalRBM(
        *(p.float() for p in dist.parameter_tensors()), image_shape=(3, 3), pooling=2
    )
    n = 30_000
    v, h = (t.double() for t in fast.gibbs_chain(fast.init_chains(n), 40))
    assert (dist.to_blocks(h).sum(-1) <= 1).all()
    vs = _binary(dist.num_visible)
    index = (v * 2 ** torch.arange(8, -1, -1, dtype=torch.float64)).sum(-1).long()
    counts = torch.bincount(index, minlength=512).double()
    expected = dist.log_prob(vs).exp() * n
    keep = expected >= 10
    obs, exp = counts[keep], expected[keep]
    if not keep.all():
        obs = torch.cat([obs, counts[~keep].sum().reshape(1)])
        exp = torch.cat([exp, expected[~keep].sum().reshape(1)])
    chi2 = ((obs - exp).square() / exp).sum().item()
    p_value = scipy.stats.chi2.sf(chi2, len(obs) - 1)
    print(f"visible: chi2 {chi2:.1f} on {len(obs) - 1} dof, p = {p_value:.3f}")
    assert p_value > TEST_FAILURE_RATE, (chi2, len(obs), p_value)
    hs = torch.cat(list(dist.hidden_configurations()))
    h_probs = torch.softmax(dist.unnormalized_log_prob_hidden(hs), 0)
    match = (h.reshape(n, 1, -1) == hs.reshape(1, len(hs), -1)).all(-1)
    assert (match.sum(1) == 1).all()
    gof = multinomial_goodness_of_fit(h_probs, match.sum(0).double())
    print(f"hidden: p = {gof:.3f}")
    assert gof > TEST_FAILURE_RATE, gof
    # the pooling units of the samples are "any unit of the block on"
    assert torch.equal(dist.pooling_units(h), (dist.to_blocks(h).sum(-1) > 0).double())


@pytest.mark.parametrize("gaussian", [False, True], ids=["binary", "gaussian"])
def test_at_most_one_unit_per_block_in_every_sample_of_a_strongly_driven_model(gaussian):
    # large weights and positive biases push several units of each block on at once if the
    # constraint were not enforced
    torch.manual_seed(1)
    W = 3 * torch.rand(3, 1, 3, 3, dtype=torch.float64)
    b, c = torch.ones(1, dtype=torch.float64), 2 * torch.ones(3, dtype=torch.float64)
    cls = GaussianConvolutionalRBM if gaussian else ConvolutionalRBM
    dist = cls(W, b, c, image_shape=(8, 8), pooling=3)
    v, h = dist.gibbs_chain(dist.init_chains(200), 5)
    sums = dist.to_blocks(h).sum(-1)
    assert sums.max() == 1 and (sums <= 1).all() and h.shape == (200, 3, 6, 6)
    assert torch.equal(dist.pooling_units(h), sums)
    assert dist.sample((4,), num_steps=2).shape == (4, 64)


# ---- learning ------------------------------------------------------------------------------


def _stats_by_hand(dist, v, weights=None):
    """Sum over rows of v (times ``weights``) of d(-F)/d(W, b, c) = (sum_ij P_kij
    v[c, i+r, j+s], the visible term, sum_ij P_kij), with P the posterior marginals from the
    hand-written block softmax."""
    weights = torch.ones(len(v), dtype=torch.float64) if weights is None else weights
    inputs = _inputs_by_hand(dist, v).reshape(len(v), -1)
    P = torch.zeros_like(inputs)
    for block in _blocks_by_hand(dist):
        e = inputs[:, block].exp()
        P[:, block] = e / (1 + e.sum(-1, keepdim=True))
    K, nh, nw = dist.hidden_shape
    P = P.reshape(len(v), K, nh, nw) * weights[:, None, None, None]
    maps = v.reshape((-1,) + dist.visible_shape)
    fh, fw = dist.weight.shape[2:]
    gW = torch.zeros_like(dist.weight)
    for r in range(fh):
        for s in range(fw):
            patch = maps[:, :, r : r + nh, s : s + nw]  # v[c, i+r, j+s] over (i, j)
            gW[:, :, r, s] = torch.einsum("nkij,ncij->kc", P, patch)
    if isinstance(dist, GaussianConvolutionalRBM):
        bias = dist.visible_bias[:, None, None]
        visible = maps - bias
    else:
        visible = maps
    gb = (visible * weights[:, None, None, None]).sum((0, 2, 3))
    return gW.detach(), gb.detach(), P.sum((0, 2, 3)).detach()


def test_exact_likelihood_gradient_is_the_expected_statistics_difference():
    # d/dtheta sum_n log p(x_n) = sum_n stats(x_n) - N E_p[stats(v)], E_p by enumeration
    W, b, c = (t.requires_grad_() for t in _params(TINY, seed=13))
    dist = ConvolutionalRBM(W, b, c, image_shape=(3, 3), pooling=2)
    x = (torch.rand(7, 9) < 0.5).double()
    grads = torch.autograd.grad(dist.log_prob(x).sum(), (W, b, c))
    vs = _binary(9)
    pos = _stats_by_hand(dist, x)
    neg = _stats_by_hand(dist, vs, dist.log_prob(vs).exp().detach())
    for g, a, e in zip(grads, pos, neg):
        torch.testing.assert_close(g, a - len(x) * e, rtol=1e-9, atol=1e-10)


def _pyro_model(W, b, c, config, gaussian=False, **kwargs):
    cls = GaussianConvolutionalRBM if gaussian else ConvolutionalRBM

    def model(x):
        dist = cls(W, b, c, image_shape=config[1], pooling=config[4], **kwargs)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("v", dist, obs=x)

    return model


@pytest.mark.parametrize("gaussian", [False, True], ids=["binary", "gaussian"])
def test_pcd_gradient_through_the_loss_is_the_positive_minus_negative_statistics(gaussian):
    W, b, c = (t.requires_grad_() for t in _params(WIDE, seed=14))
    model = _pyro_model(W, b, c, WIDE, gaussian)
    if gaussian:
        x = torch.randn(6, 15, dtype=torch.float64)
    else:
        x = (torch.rand(6, 15) < 0.5).double()
    loss = ContrastiveDivergence(k=3, persistent=True, num_chains=4)
    loss.differentiable_loss(model, lambda x: None, x).backward()
    negatives = loss.chains["v"][0]
    assert negatives.shape == (4, 15) and loss.chains["v"][1].shape == (4, 1, 2, 4)
    dist = ConvolutionalRBM if not gaussian else GaussianConvolutionalRBM
    dist = dist(W, b, c, image_shape=(3, 5), pooling=2)
    pos, neg = _stats_by_hand(dist, x), _stats_by_hand(dist, negatives)
    for param, p, q in zip((W, b, c), pos, neg):
        torch.testing.assert_close(param.grad, -(p - 6 / 4 * q), rtol=1e-10, atol=1e-10)


def test_sparsity_penalty_gradient_reaches_the_hidden_biases_only_and_in_closed_form():
    W, b, c = (t.requires_grad_() for t in _params(WIDE, seed=15))
    dist = ConvolutionalRBM(W, b, c, image_shape=(3, 5), pooling=2)
    x = (torch.rand(5, 15) < 0.5).double()
    target, cost = 0.05, 2.0
    # q_k by hand: the mean posterior activation of group k over rows and positions
    inputs = _inputs_by_hand(dist, x).reshape(5, -1)
    P = torch.zeros_like(inputs)
    for block in _blocks_by_hand(dist):
        e = inputs[:, block].exp()
        P[:, block] = e / (1 + e.sum(-1, keepdim=True))
    q = P.reshape(5, 1, -1).mean((0, 2))
    penalty = dist.sparsity_penalty(x, target, cost)
    torch.testing.assert_close(penalty, 5 * cost * (target - q).square().sum())
    (auto,) = torch.autograd.grad(penalty, c)
    closed = dist.sparsity_hidden_bias_grad(x, target, cost)
    torch.testing.assert_close(closed, auto, rtol=1e-10, atol=1e-12)
    # a descent step moves the bias towards the target: up when q < target, down otherwise
    assert (closed * (target - q.detach()) < 0).all()
    # through the CD loss: the same gradients as without the regulariser, plus the closed
    # form on c (same seed, so the same negative samples)
    grads = []
    for sparsity in ({}, {"sparsity_target": target, "sparsity_cost": cost}):
        for p in (W, b, c):
            p.grad = None
        pyro.set_rng_seed(3)
        model = _pyro_model(W, b, c, WIDE, **sparsity)
        ContrastiveDivergence(k=1).differentiable_loss(model, lambda x: None, x).backward()
        grads.append([p.grad.clone() for p in (W, b, c)])
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[1][2], grads[0][2] + closed, rtol=1e-10, atol=1e-12)


def test_pcd_training_through_the_loss_raises_the_exact_log_likelihood():
    # data from a "true" tiny model; a fresh model trained with PCD-1 through
    # ContrastiveDivergence.value_and_grads (what pyrogen's learner and SVI call)
    # in 20 updates gains at least 0.5 nats per example (seeded: -6.24 to -5.44 nats, the
    # true model -5.37)
    torch.manual_seed(0)
    truth = _model(TINY, scale=1.5, seed=16)
    data = truth.sample((500,), num_steps=50)
    W = torch.nn.Parameter(0.01 * torch.randn(2, 1, 2, 2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    c = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))

    def log_lik():
        with torch.no_grad():
            dist = ConvolutionalRBM(W, b, c, image_shape=(3, 3), pooling=2)
            return dist.log_prob(data).mean().item()

    before = log_lik()
    optim = torch.optim.SGD([W, b, c], lr=0.02, momentum=0.5)
    loss = ContrastiveDivergence(k=1, persistent=True, num_chains=100)
    model = _pyro_model(W, b, c, TINY)
    for _ in range(2):
        for i in range(0, 500, 50):
            optim.zero_grad()
            loss.value_and_grads(model, lambda x: None, data[i : i + 50])
            optim.step()
    after = log_lik()
    best = truth.log_prob(data).mean().item()
    assert after > before + 0.5 and after < best + 0.1, (before, after, best)


# ---- mean-field inference ----------------------------------------------------------------


def _mean_field_bound(dist, v, mask, mu_v, mu_h):
    """E_q[-E(v, h)] + H[q] of the factorized q (Bernoulli missing visible units, one
    categorical per block), by hand from the block marginals."""
    inputs = _inputs_by_hand(dist, mu_v).reshape(len(v), -1)
    flat = mu_h.reshape(len(v), -1)
    bias = dist.visible_bias.repeat_interleave(math.prod(dist.image_shape))
    bound = (flat * inputs).sum(-1) + mu_v @ bias
    m = mu_v[~mask].reshape(len(v), -1)
    bound = bound - (m * m.log() + (1 - m) * (1 - m).log()).sum(-1)
    for block in _blocks_by_hand(dist):
        on = flat[:, block]
        off = 1 - on.sum(-1)
        bound = bound - (on * on.log()).sum(-1) - off * off.log()
    return bound


def test_mean_field_never_lowers_its_bound_which_stays_below_the_exact_marginal():
    dist = _model(WIDE, scale=1.2, seed=17)
    g = torch.Generator().manual_seed(18)
    v = (torch.rand(4, 15, generator=g) < 0.5).double()
    mask = torch.ones(4, 15, dtype=torch.bool)
    mask[:, [1, 6, 7, 12]] = False  # four missing pixels per image
    missing = _binary(4)
    full = v[:, None].repeat(1, 16, 1)
    full[:, :, [1, 6, 7, 12]] = missing
    exact = torch.logsumexp(dist.unnormalized_log_prob(full), 1)  # log sum_missing p~(v)
    bounds = []
    for iters in range(1, 12):
        mu_v, mu_h, pooling = dist.mean_field(v, mask, num_iters=iters)
        assert torch.equal(mu_v[mask], v[mask])
        bounds.append(_mean_field_bound(dist, v, mask, mu_v, mu_h))
    bounds = torch.stack(bounds)
    assert (bounds[1:] >= bounds[:-1] - 1e-12).all()
    assert (bounds <= exact + 1e-12).all()
    assert (exact - bounds[-1]).max() < 0.5  # a useful bound on this model (seeded)
    # everything observed: the exact posterior
    mu_v, mu_h, pooling = dist.mean_field(v)
    torch.testing.assert_close(mu_h, dist.hidden_probs(v)[0])
    torch.testing.assert_close(pooling, dist.hidden_probs(v)[1])


# ---- bad input ---------------------------------------------------------------------------


def test_bad_input_is_a_value_error_naming_the_argument():
    W, b, c = _params(TINY)
    ok = dict(image_shape=(3, 3), pooling=2)
    with pytest.raises(ValueError, match=r"weight must be a 4-D tensor"):
        ConvolutionalRBM(W[0], b, c, **ok)
    with pytest.raises(ValueError, match=r"visible_bias must have shape \(channels,\) = \(1,\)"):
        ConvolutionalRBM(W, torch.zeros(2, dtype=torch.float64), c, **ok)
    with pytest.raises(ValueError, match=r"hidden_bias must have shape \(num_filters,\)"):
        ConvolutionalRBM(W, b, torch.zeros(3, dtype=torch.float64), **ok)
    with pytest.raises(ValueError, match=r"pooling 2 must divide the hidden maps of size \(3, 3\)"):
        ConvolutionalRBM(W, b, c, image_shape=(4, 4), pooling=2)
    with pytest.raises(ValueError, match=r"pooling must be a positive integer"):
        ConvolutionalRBM(W, b, c, image_shape=(3, 3), pooling=0)
    with pytest.raises(ValueError, match=r"image_shape \(1, 3\) is smaller than the filters"):
        ConvolutionalRBM(W, b, c, image_shape=(1, 3), pooling=1)
    with pytest.raises(ValueError, match=r"image_shape must be \(height, width\)"):
        ConvolutionalRBM(W, b, c, image_shape=(3, 3, 1), pooling=1)
    with pytest.raises(ValueError, match=r"sparsity_target must be in \[0, 1\]"):
        ConvolutionalRBM(W, b, c, sparsity_target=2.0, **ok)
    dist = ConvolutionalRBM(W, b, c, validate_args=True, **ok)
    with pytest.raises(ValueError, match=r"value must be binary .* found 0.5 at index \(1, 4\)"):
        x = torch.zeros(2, 9, dtype=torch.float64)
        x[1, 4] = 0.5
        dist.log_prob(x)
    with pytest.raises(ValueError, match=r"value: wrong size for a convolutional RBM over 1x3x3"):
        dist.log_prob(torch.zeros(2, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"v: wrong size .* expected shape \(\.\.\., 9\)"):
        dist.hidden_probs(torch.zeros(2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"h: expected hidden maps of shape \(\.\.\., 2, 2, 2\)"):
        dist.visible_given_hidden(torch.zeros(2, 8, dtype=torch.float64))
    # non-binary data given to contrastive divergence, through the Pyro model
    model = _pyro_model(W, b, c, TINY, validate_args=True)
    x = torch.full((3, 9), 0.3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x must be binary"):
        ContrastiveDivergence().differentiable_loss(model, lambda x: None, x)
    gauss = GaussianConvolutionalRBM(W, b, c, validate_args=True, **ok)
    with pytest.raises(ValueError, match=r"value contains nan"):
        gauss.log_prob(torch.full((1, 9), math.nan, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"mask must have the shape of v"):
        dist.mean_field(torch.zeros(2, 9), torch.ones(2, 8, dtype=torch.bool))
