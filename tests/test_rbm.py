"""Binary RBM: exact log Z, Gibbs sampler goodness of fit, AIS, contrastive divergence."""

import itertools
import math

import pyro
import pytest
import scipy.stats
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.data import load
from pyrogen.distributions.rbm import BernoulliRBM
from pyrogen.infer import ContrastiveDivergence
from pyrogen.models.rbm import RBM
from pyrogen.registry import get_family
from pyrogen.train import load_checkpoint, train


def _states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def _random_rbm(V, H, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return BernoulliRBM(
        scale * torch.randn(V, H, generator=g),
        scale * torch.randn(V, generator=g),
        scale * torch.randn(H, generator=g),
    )


@pytest.mark.parametrize("V, H", [(5, 3), (3, 6)])  # enumerates h, then v
def test_exact_log_partition_equals_brute_force(float64, V, H):
    rbm = _random_rbm(V, H)
    vs, hs = _states(V), _states(H)
    v = vs.repeat_interleave(len(hs), 0)
    h = hs.repeat(len(vs), 1)
    brute = torch.logsumexp(-rbm.energy(v, h), 0)
    result = rbm.log_partition()
    assert result.is_exact and result.stderr == 0
    assert abs(result.log_z.item() - brute.item()) < 1e-8
    # and -F(v) = log sum_h exp(-E(v, h)); probabilities sum to one
    per_v = torch.logsumexp(-rbm.energy(v, h).reshape(len(vs), len(hs)), 1)
    torch.testing.assert_close(rbm.unnormalized_log_prob(vs), per_v, rtol=0, atol=1e-10)
    assert abs(rbm.log_prob(vs).exp().sum().item() - 1) < 1e-10


def test_log_partition_is_cached_and_invalidated_by_updates(float64):
    W = torch.randn(4, 3)
    rbm = BernoulliRBM(W, torch.zeros(4), torch.zeros(3))
    first = rbm.log_partition()
    assert rbm.log_partition() is first
    with torch.no_grad():
        W.add_(0.5)  # an optimizer step changes the tensor's version
    assert rbm.log_partition() is not first
    assert rbm.log_partition().log_z != first.log_z


def test_gibbs_sampler_goodness_of_fit():
    # 10^5 samples of a 6x4 RBM against the enumerated distribution; the chi-square test
    # rejects with probability 2e-5 when the sampler is exact (seeded, so deterministic).
    torch.manual_seed(0)
    rbm = _random_rbm(6, 4, scale=1.0, seed=1)
    with torch.no_grad():
        samples = rbm.sample((100_000,), num_steps=200)
    index = (samples * 2 ** torch.arange(5, -1, -1)).sum(-1).long()
    observed = torch.bincount(index, minlength=64).double()
    expected = rbm.log_prob(_states(6)).double().exp() * 100_000
    keep = expected >= 5
    obs = torch.cat([observed[keep], observed[~keep].sum().reshape(1)])
    exp = torch.cat([expected[keep], expected[~keep].sum().reshape(1)])
    exp = exp * obs.sum() / exp.sum()
    p_value = scipy.stats.chisquare(obs.numpy(), exp.numpy()).pvalue
    assert p_value > 2e-5, p_value


def test_ais_is_within_three_standard_errors_and_sandwiches_log_z():
    # 20 seeded random RBMs (20 visible, <= 15 hidden): |log Zhat - log Z| <= 3 se in at
    # least 19, and log Z inside the sandwich every time.
    inside, within = 0, 0
    for seed in range(20):
        H = 5 + seed % 11
        rbm = _random_rbm(20, H, scale=0.6, seed=seed)
        exact = rbm.log_partition("exact").log_z.double()
        torch.manual_seed(seed)
        est = rbm.log_partition("ais", num_chains=100, betas=5000)
        within += abs(est.log_z - exact) <= 3 * est.stderr
        inside += est.lower <= exact <= est.upper
        assert est.stderr > 0 and est.method == "ais"
    assert within >= 19 and inside == 20


def test_ais_base_rates_from_data_improve_the_estimate():
    rbm = _random_rbm(30, 12, scale=0.4, seed=3)
    data = rbm.sample((500,), num_steps=100)
    exact = rbm.log_partition("exact").log_z.double()
    torch.manual_seed(0)
    fitted = rbm.log_partition("ais", data=data, num_chains=50, betas=300)
    torch.manual_seed(0)
    uniform = rbm.log_partition("ais", num_chains=50, betas=300)
    assert abs(fitted.log_z - exact) < 3 * fitted.stderr
    assert fitted.stderr <= uniform.stderr * 1.5


def _hand_gradient(rbm, v):
    """Sum over rows of d(-F)/d(W, b, c) = (v sigma(c + vW)^T, v, sigma(c + vW))."""
    s = torch.sigmoid(v @ rbm.weight + rbm.hidden_bias)
    return v.T @ s, v.sum(0), s.sum(0)


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_surrogate_gradient_is_the_positive_minus_negative_phase(float64, persistent):
    model = RBM(6, 4)
    model.double()
    x = (torch.rand(8, 6) < 0.5).double()
    loss = ContrastiveDivergence(k=2, persistent=persistent, num_chains=5)
    loss.differentiable_loss(model.model, model.guide, x).backward()
    dist = model.distribution()
    if persistent:
        negatives = loss.chains["v"][0]
    else:  # CD restarts at the data: rerun the same chain with the same seed
        pyro.set_rng_seed(0)
        model.zero_grad()
        loss.differentiable_loss(model.model, model.guide, x).backward()
        pyro.set_rng_seed(0)
        state = (x,)
        for _ in range(2):
            state = dist.gibbs_step(state)
        negatives = state[0]
    pos = _hand_gradient(dist, x)
    neg = _hand_gradient(dist, negatives)
    n, m = x.shape[0], negatives.shape[0]
    for param, p, q in zip((model.weight, model.visible_bias, model.hidden_bias), pos, neg):
        torch.testing.assert_close(param.grad, -(p - n / m * q), rtol=1e-10, atol=1e-10)


def test_cd_with_exact_negative_samples_follows_the_likelihood_gradient(float64):
    # Chains started at exact samples stay exact under Gibbs: the CD gradient is then an
    # unbiased estimate of the true gradient (checked within 4.5 standard errors).
    torch.manual_seed(0)
    model = RBM(5, 3, init_scale=0.8)
    model.double()
    x = (torch.rand(10, 5) < 0.4).double()
    dist = model.distribution()
    exact = torch.autograd.grad(-dist.log_prob(x).sum(), list(model.parameters()))
    probs = dist.log_prob(_states(5)).exp().detach()
    draws = []
    for _ in range(30):
        idx = torch.multinomial(probs, 20_000, replacement=True)
        loss = ContrastiveDivergence(k=1, persistent=True)
        loss.chains["v"] = (_states(5)[idx],)
        model.zero_grad()
        loss.differentiable_loss(model.model, model.guide, x).backward()
        draws.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    draws = torch.stack(draws)
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    truth = torch.cat([g.reshape(-1) for g in exact])
    assert torch.all((mean - truth).abs() <= 4.5 * se + 1e-9), (mean - truth) / se


def test_trace_elbo_gives_the_exact_gradient_for_a_small_rbm(float64):
    model = RBM(5, 3, init_scale=0.5)
    model.double()
    x = (torch.rand(6, 5) < 0.5).double()
    Trace_ELBO().differentiable_loss(model.model, model.guide, x).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    exact = torch.autograd.grad(-model.distribution().log_prob(x).sum(), list(model.parameters()))
    for g, e in zip(grads, exact):
        torch.testing.assert_close(g, e)


def test_training_on_digits_improves_the_exact_test_log_likelihood():
    train_set, test_set = load("digits", "train").data, load("digits", "test").data
    torch.manual_seed(0)
    model = RBM(64, 16, pixel_mean=train_set.mean(0))
    before = model.distribution().log_prob(test_set).mean().item()
    svi = SVI(
        model.model,
        model.guide,
        pyro.optim.SGD({"lr": 5e-4, "momentum": 0.5}),
        ContrastiveDivergence(k=1, persistent=True),
    )
    for _ in range(30):
        for i in range(0, len(train_set), 100):
            svi.step(train_set[i : i + 100])
    after = model.distribution().log_prob(test_set).mean().item()
    assert len(pyro.get_param_store()) == 3  # SVI found W, b and c
    assert after > before + 1.0, (before, after)  # nats per test image (seeded)


def test_non_binary_data_is_rejected_with_the_value():
    model = RBM(4, 2)
    with pytest.raises(ValueError, match=r"binary.*found 0\.3 at index \(1, 2\)"):
        model.model(torch.tensor([[0.0, 1, 0, 1], [1.0, 0, 0.3, 1]]))
    rbm = BernoulliRBM(torch.zeros(4, 2), torch.zeros(4), torch.zeros(2), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        rbm.log_prob(torch.full((1, 4), 0.5))
    with pytest.raises(
        ValueError, match=r"visible_bias must have shape \(num_visible,\) = \(4,\), got \(3,\)"
    ):
        BernoulliRBM(torch.zeros(4, 2), torch.zeros(3), torch.zeros(2))


def test_pcd_chains_resume_exactly(tmp_path):
    data = load("digits", "train").data[:300]
    fam = get_family("rbm")
    cfg = fam.config(hidden=8, chains=20)

    def learner(seed):
        torch.manual_seed(seed)
        return fam.learner(RBM(64, 8, pixel_mean=data.mean(0)), cfg, 1e-3)

    common = dict(epochs=3, batch_size=50, seed=2, progress=False)
    straight = learner(0)
    train(straight, data, out=tmp_path / "a", **common)
    half = learner(0)
    train(half, data, out=tmp_path / "b", max_steps=7, checkpoint_every=7, **common)
    assert "loss" in load_checkpoint(tmp_path / "b")["learner"]  # the chains are saved
    resumed = learner(5)
    train(resumed, data, out=tmp_path / "b", **common)
    for a, b in zip(straight.module.parameters(), resumed.module.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(straight.loss.chains["v"], resumed.loss.chains["v"]):
        assert torch.equal(a, b)


def test_cd_argument_errors():
    with pytest.raises(ValueError, match="k must"):
        ContrastiveDivergence(k=0)
    with pytest.raises(ValueError, match="energy-based"):
        ContrastiveDivergence().loss(
            lambda: pyro.sample("x", pyro.distributions.Normal(0, 1), obs=torch.tensor(0.0)),
            lambda: None,
        )


def test_replicated_softmax_model_checks_counts_and_trains(float64):
    from pyrogen.models.rbm import ReplicatedSoftmax

    # two "topics": half the documents draw their words from the first six, half from the
    # last six (lengths 5..14); seeded by conftest
    topic = torch.zeros(2, 12).double()
    topic[0, :6], topic[1, 6:] = 1 / 6, 1 / 6
    counts = torch.stack(
        [
            torch.distributions.Multinomial(5 + i % 10, probs=topic[i % 2]).sample()
            for i in range(40)
        ]
    )
    model = ReplicatedSoftmax(12, 3, word_counts=counts.sum(0)).double()
    with pytest.raises(ValueError, match=r"-1\.0 \(negative\)"):
        model.model(torch.tensor([[1.0, -1.0] + [0.0] * 10]).double())
    with pytest.raises(ValueError, match="not a non-negative integer"):
        model.model(torch.tensor([[0.5] + [0.0] * 11]).double())
    before = model.distribution().log_prob(counts).mean().item()  # exact (3 hidden units)
    svi = SVI(model.model, model.guide, pyro.optim.SGD({"lr": 2e-3}), ContrastiveDivergence(k=1))
    for _ in range(200):
        svi.step(counts)
    after = model.distribution().log_prob(counts).mean().item()
    assert after > before + 2.0, (before, after)  # nats per document (seeded)
    expected = model.reconstruct(counts)
    torch.testing.assert_close(expected.sum(-1), counts.sum(-1))
    assert model.topics().shape == (3, 12)


def test_free_energy_gap_matches_autograd_of_the_free_energies(float64):
    """The hand-written backward of the CD fast path against autograd (and gradcheck)."""
    torch.manual_seed(3)
    V, H, n, m = 7, 5, 6, 4
    params = [
        torch.randn(V, H, requires_grad=True),
        torch.randn(V, requires_grad=True),
        torch.randn(H, requires_grad=True),
    ]
    x = torch.bernoulli(torch.full((n, V), 0.4))
    v = torch.bernoulli(torch.full((m, V), 0.6))
    rbm = BernoulliRBM(*params)
    gap, pre = rbm.free_energy_gap(x, v)
    expected = rbm.free_energy(x).sum() - (n / m) * rbm.free_energy(v).sum()
    assert gap.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(pre, rbm.hidden_logits(v))
    got = torch.autograd.grad(3.0 * gap, params)
    want = torch.autograd.grad(3.0 * expected, params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda W, b, c: BernoulliRBM(W, b, c).free_energy_gap(x, v)[0], params
    )


def test_free_energy_gap_accumulate_adds_what_backward_would(float64):
    """The graph-free CD path: value and .grad updates equal backward() on scale * gap,
    including accumulation into existing gradients and parameters that are held fixed."""
    torch.manual_seed(4)
    V, H, n, m = 6, 4, 5, 3
    x = torch.bernoulli(torch.full((n, V), 0.4))
    v = torch.bernoulli(torch.full((m, V), 0.6))
    init = [torch.randn(V, H), torch.randn(V), torch.randn(H)]
    old = [torch.randn(V, H), torch.randn(V), torch.randn(H)]

    def fresh(fixed_bias):
        ps = [t.clone().requires_grad_(not (fixed_bias and i == 1)) for i, t in enumerate(init)]
        for p, g in zip(ps, old):
            if p.requires_grad:
                p.grad = g.clone()
        return ps

    for fixed_bias in (False, True):
        direct, graph = fresh(fixed_bias), fresh(fixed_bias)
        rbm = BernoulliRBM(*direct)
        assert rbm.can_accumulate()
        value, pre = rbm.free_energy_gap_accumulate(x, v, scale=2.5)
        gap, pre_graph = BernoulliRBM(*graph).free_energy_gap(x, v)
        (2.5 * gap).backward()
        assert value.item() == pytest.approx(2.5 * gap.item(), rel=1e-12)
        assert not value.requires_grad
        torch.testing.assert_close(pre, pre_graph)
        for a, b in zip(direct, graph):
            if b.requires_grad:
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
            else:
                assert a.grad is None
    # a first gradient (no .grad yet) is created rather than accumulated
    direct = [t.clone().requires_grad_() for t in init]
    BernoulliRBM(*direct).free_energy_gap_accumulate(x, v)
    graph = [t.clone().requires_grad_() for t in init]
    want = torch.autograd.grad(BernoulliRBM(*graph).free_energy_gap(x, v)[0], graph)
    for a, w in zip(direct, want):
        torch.testing.assert_close(a.grad, w, rtol=1e-10, atol=1e-12)


def test_free_energy_gap_accumulate_refuses_hooks_and_non_leaves(float64):
    W, b, c = torch.randn(4, 3, requires_grad=True), torch.zeros(4), torch.zeros(3)
    assert BernoulliRBM(W, b, c).can_accumulate()
    assert not BernoulliRBM(W * 1.0, b, c).can_accumulate()  # non-leaf: needs the graph
    with torch.no_grad():
        assert not BernoulliRBM(W, b, c).can_accumulate()
    W.register_hook(lambda g: g)
    rbm = BernoulliRBM(W, b, c)
    assert not rbm.can_accumulate()
    with pytest.raises(RuntimeError, match="backward"):
        rbm.free_energy_gap_accumulate(torch.ones(2, 4), torch.zeros(2, 4))


@pytest.mark.parametrize("hooked", [False, True])
def test_cd_loss_and_grads_equals_differentiable_loss_backward(float64, hooked):
    """SVI's entry point (direct gradients for plain parameters, the graph for hooked ones)
    gives the same value, gradients and chains as differentiable_loss(...).backward(),
    with a poutine.scale on the site."""
    x = (torch.rand(8, 6, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    results = []
    calls = []
    for entry in ("graph", "direct"):
        torch.manual_seed(0)
        model = RBM(6, 4).double()
        if hooked:
            model.weight.register_hook(lambda g: calls.append(1) or g)
        loss = ContrastiveDivergence(k=1, persistent=True, num_chains=5)
        scaled = pyro.poutine.scale(model.model, scale=0.25)
        for _ in range(3):  # persistent chains carry over between updates
            model.zero_grad()
            if entry == "graph":
                out = loss.differentiable_loss(scaled, model.guide, x)
                out.backward()
                value = out.item()
            else:
                value = loss.loss_and_grads(scaled, model.guide, x)
        results.append((value, [p.grad.clone() for p in model.parameters()], loss.chains["v"]))
    (v1, g1, c1), (v2, g2, c2) = results
    assert v2 == pytest.approx(v1, rel=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(c1, c2):
        torch.testing.assert_close(a, b)
    assert len(calls) == (6 if hooked else 0)  # hooks still run: the graph path was taken


def test_free_energy_gap_of_stacked_rows_and_argument_errors(float64):
    torch.manual_seed(5)
    rbm = _random_rbm(5, 3, scale=0.7)
    x = torch.bernoulli(torch.full((4, 5), 0.5))
    v = torch.bernoulli(torch.full((2, 5), 0.5))
    gap, pre = rbm.free_energy_gap(x, v)
    gap_s, pre_s = rbm.free_energy_gap(torch.cat([x, v]), num_data=4)
    expected = rbm.free_energy(x).sum() - 2.0 * rbm.free_energy(v).sum()
    assert gap_s.item() == pytest.approx(expected.item(), rel=1e-12)
    assert gap.item() == pytest.approx(expected.item(), rel=1e-12)
    torch.testing.assert_close(pre_s, rbm.hidden_logits(v))
    with pytest.raises(ValueError, match="either negatives or num_data"):
        rbm.free_energy_gap(x)
    with pytest.raises(ValueError, match="either negatives or num_data"):
        rbm.free_energy_gap(x, v, num_data=2)
    with pytest.raises(ValueError, match="num_data must leave"):
        rbm.free_energy_gap(x, num_data=4)


def test_bernoulli_sample_writes_into_out():
    from pyrogen.distributions.energy import bernoulli_sample

    probs = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    out = torch.full((2, 3), 7.0, dtype=torch.float64)
    got = bernoulli_sample(probs, out=out)
    assert got is out and out.dtype == torch.float64
    torch.testing.assert_close(out, probs.double())


def test_replicated_softmax_model_scores_each_document_under_its_own_length(monkeypatch):
    # the model's log_likelihood: one log Z per distinct document length, exact by
    # enumeration of 12 hidden units, and by AIS per length when enumeration is refused
    # (seeded; 100 chains x 2000 temperatures; within 3 reported Monte Carlo errors)
    from pyrogen.distributions import ReplicatedSoftmaxRBM
    from pyrogen.models import ReplicatedSoftmax

    torch.manual_seed(0)
    model = ReplicatedSoftmax(10, 12, init_scale=0.3).double()
    x = torch.cat(
        [
            torch.distributions.Multinomial(n, torch.ones(10)).sample((5,)).double()
            for n in (3, 8, 15)
        ]
    )
    exact = model.log_likelihood(x, progress=False)
    assert exact.is_exact and exact.diagnostics["num_lengths"] == 3
    torch.testing.assert_close(exact.per_example, model.distribution().log_prob(x).detach())
    monkeypatch.setattr(ReplicatedSoftmaxRBM, "max_enumeration", 8)
    pyro.set_rng_seed(1)
    estimate = model.log_likelihood(x, num_chains=100, betas=2000, progress=False)
    assert not estimate.is_exact and "AIS per document length" in estimate.estimator
    assert 0 < estimate.mc_stderr < 0.5
    assert abs(estimate.mean - exact.mean) < 3 * estimate.mc_stderr + 1e-3
