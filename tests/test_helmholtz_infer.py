"""Learning rules for Helmholtz machines: WakeSleep, ReweightedWakeSleep, NVIL, VIMCO.

Every exact test runs on a tiny sigmoid belief net written here as a plain Pyro model and
guide (x: 4 binary units, h1: 3, h2: 2; 32 latent states, 16 data states), small enough to
enumerate, in float64. Estimators are averaged over ``M`` independent calls (each a batch of
``R`` copies of two data vectors, so each call already averages ``R`` draws per vector); a
mean passes when every coordinate is within ``Z`` standard errors (from the spread of the
``M`` calls) plus a small absolute slack of the exact value. Seeds are fixed by conftest
(``pyro.set_rng_seed(0)``) and where stated.
"""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from pyrogen.infer import NVIL, VIMCO, ReweightedWakeSleep, WakeSleep
from pyrogen.infer.vimco import leave_one_out_log_mean

D, H1, H2 = 4, 3, 2
Z = 5.0  # standard errors allowed per coordinate (about 40 coordinates per test)
GUIDE = ("Q1", "c1", "Q2", "c2")
MODEL = ("top", "W21", "b21", "W1x", "b1x")


class TinySBN(nn.Module):
    """p(h2) p(h1 | h2) p(x | h1) and q(h1 | x) q(h2 | h1), all sigmoid layers.

    ``plate=False`` writes the batch as an event dim instead of a ``pyro.plate`` (one
    importance weight for the whole batch, as Pyro's ReweightedWakeSleep weights it).
    ``offset`` (a tensor of shape ``(B, H1)``) is added to q(h1 | x)'s logits, so that its
    gradient is the per-example gradient of the bias ``c1``.
    """

    def __init__(self, seed: int = 0, plate: bool = True) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def p(*shape):
            return nn.Parameter(0.8 * torch.randn(*shape, generator=g, dtype=torch.float64))

        self.top, self.W21, self.b21 = p(H2), p(H1, H2), p(H1)
        self.W1x, self.b1x = p(D, H1), p(D)
        self.Q1, self.c1, self.Q2, self.c2 = p(H1, D), p(H1), p(H2, H1), p(H2)
        self.plate = plate

    def _ctx(self, n):
        return pyro.plate("data", n) if self.plate else _null()

    def _event(self, n):
        return 1 if self.plate else 2

    def model(self, x, offset=None):
        pyro.module("tiny", self)
        n, e = x.shape[0], self._event(x.shape[0])
        with self._ctx(n):
            top = self.top.expand(n, H2)
            h2 = pyro.sample("h2", dist.Bernoulli(logits=top).to_event(e))
            h1 = pyro.sample("h1", dist.Bernoulli(logits=h2 @ self.W21.T + self.b21).to_event(e))
            logits = h1 @ self.W1x.T + self.b1x
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(e), obs=x)

    def guide(self, x, offset=None):
        pyro.module("tiny", self)
        n, e = x.shape[0], self._event(x.shape[0])
        with self._ctx(n):
            logits = x @ self.Q1.T + self.c1
            if offset is not None:
                logits = logits + offset
            h1 = pyro.sample("h1", dist.Bernoulli(logits=logits).to_event(e))
            pyro.sample("h2", dist.Bernoulli(logits=h1 @ self.Q2.T + self.c2).to_event(e))

    # ----------------------------------------------------------------- enumeration

    def log_joint(self, x):
        """log p(x, h) for every latent state: (B, 32)."""
        h1, h2 = LATENTS
        lp = dist.Bernoulli(logits=self.top).log_prob(h2).sum(-1)
        lp = lp + dist.Bernoulli(logits=h2 @ self.W21.T + self.b21).log_prob(h1).sum(-1)
        px = dist.Bernoulli(logits=h1 @ self.W1x.T + self.b1x)
        return lp + px.log_prob(x.unsqueeze(1)).sum(-1)

    def log_q(self, x):
        """log q(h | x) for every latent state: (B, 32)."""
        h1, h2 = LATENTS
        logits = (x @ self.Q1.T + self.c1).unsqueeze(1)
        lq = dist.Bernoulli(logits=logits).log_prob(h1).sum(-1)
        return lq + dist.Bernoulli(logits=h1 @ self.Q2.T + self.c2).log_prob(h2).sum(-1)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


_H = torch.tensor(list(itertools.product(range(2**H1), range(2**H2))))
LATENTS = (_states(H1)[_H[:, 0]], _states(H2)[_H[:, 1]])
ALL_X = _states(D)
DATA = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)


def _grads(net, names):
    return torch.cat(
        [
            (
                getattr(net, n).grad
                if getattr(net, n).grad is not None
                else torch.zeros_like(getattr(net, n))
            ).reshape(-1)
            for n in names
        ]
    )


def _exact_grad(net, objective, names):
    net.zero_grad()
    objective.backward()
    return _grads(net, names).clone()


def _estimate(net, loss, names, calls, copies, data=DATA, **kwargs):
    """Mean and standard error over ``calls`` of the gradient per copy of ``data``."""
    x = data.repeat(copies, 1)
    draws = []
    for _ in range(calls):
        net.zero_grad()
        loss.loss_and_grads(net.model, net.guide, x, **kwargs)
        draws.append(_grads(net, names) / copies)
    draws = torch.stack(draws)
    return draws.mean(0), draws.std(0) / math.sqrt(calls)


def _assert_close(mean, se, exact, slack=1e-3):
    bad = (mean - exact).abs() > Z * se + slack
    assert not bad.any(), (
        f"estimate {mean[bad]} vs exact {exact[bad]} (se {se[bad]}) at {bad.nonzero().flatten()}"
    )


def _exact_elbo(net, x):
    lq = net.log_q(x)
    return (lq.exp() * (net.log_joint(x) - lq)).sum()


def _exact_bound(net, x, k):
    """The K-sample bound summed over the rows of x, by enumerating all 32^K tuples."""
    idx = torch.tensor(list(itertools.product(range(32), repeat=k)))
    lw = net.log_joint(x) - net.log_q(x)  # (B, 32)
    lq = net.log_q(x)
    lme = torch.logsumexp(lw[:, idx], -1) - math.log(k)
    return (lq[:, idx].sum(-1).exp() * lme).sum()


# --------------------------------------------------------------------- Pyro parity


@pytest.mark.parametrize("plate", [True, False], ids=["batch-of-one", "no-shared-plate"])
@pytest.mark.parametrize("validate", [True, False])
def test_rws_equals_pyro_on_identical_samples(float64, plate, validate):
    pyro.enable_validation(validate)
    net = TinySBN(seed=1, plate=plate)
    x = DATA[:1] if plate else DATA
    k = 4
    ours = ReweightedWakeSleep(num_particles=k, max_plate_nesting=1)
    theirs = pyro.infer.ReweightedWakeSleep(num_particles=k, max_plate_nesting=1)
    for step in range(3):
        pyro.set_rng_seed(10 + step)
        net.zero_grad()
        value = ours.loss_and_grads(net.model, net.guide, x)
        ours_grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        pyro.set_rng_seed(10 + step)
        net.zero_grad()
        theta_loss, _ = theirs.loss_and_grads(net.model, net.guide, x)
        assert value == pytest.approx(theta_loss, rel=1e-12, abs=1e-12)
        for n, p in net.named_parameters():
            assert torch.allclose(ours_grads[n], p.grad, rtol=1e-10, atol=1e-12), n
        pyro.set_rng_seed(10 + step)
        loss = ours.loss(net.model, net.guide, x)
        pyro.set_rng_seed(10 + step)
        assert loss == pytest.approx(float(theirs.loss(net.model, net.guide, x)[0]), rel=1e-12)


# --------------------------------------------------------------------- exact gradients


def test_wake_phase_gradient_is_expected_log_joint_gradient(float64):
    net = TinySBN()
    lq = net.log_q(DATA).detach()
    exact = _exact_grad(net, -(lq.exp() * net.log_joint(DATA)).sum(), MODEL)
    mean, se = _estimate(net, WakeSleep(max_plate_nesting=1), MODEL, calls=20, copies=500)
    _assert_close(mean, se, exact)


def test_sleep_phase_gradient_is_dream_log_likelihood_gradient(float64):
    net = TinySBN()
    # E_{p(x, h)} log q(h | x), exactly: 16 data states x 32 latent states
    log_pxh = net.log_joint(ALL_X).detach()
    exact = _exact_grad(net, -(log_pxh.exp() * net.log_q(ALL_X)).sum(), GUIDE)
    # each example of the batch gets one dream; the data do not matter to the sleep phase
    for loss in (WakeSleep(max_plate_nesting=1), ReweightedWakeSleep(2, insomnia=0.0)):
        mean, se = _estimate(net, loss, GUIDE, calls=20, copies=500)
        _assert_close(mean / 2, se / 2, exact)  # two data rows per copy: two dreams


def test_rws_wake_q_approaches_kl_gradient(float64):
    net = TinySBN()
    lj, lq = net.log_joint(DATA).detach(), net.log_q(DATA)
    post = torch.softmax(lj, -1)
    exact = _exact_grad(net, (post * (post.log() - lq)).sum(), GUIDE)
    errors = {}
    for k in (2, 100):
        loss = ReweightedWakeSleep(num_particles=k, max_plate_nesting=1)
        mean, se = _estimate(net, loss, GUIDE, calls=10, copies=2000 // k)
        errors[k] = (mean - exact).norm().item()
        if k == 100:  # the self-normalised bias is O(1/K)
            _assert_close(mean, se, exact, slack=0.02)
    assert errors[100] < 0.5 * errors[2], errors


@pytest.mark.parametrize(
    "kwargs",
    [
        {"center": False, "normalize": False, "local_signals": False},
        {"center": False, "normalize": False},
        {"normalize": False},
    ],
    ids=["plain", "local", "local+centred"],
)
def test_nvil_gradient_is_elbo_gradient(float64, kwargs):
    net = TinySBN()
    exact = _exact_grad(net, -_exact_elbo(net, DATA), GUIDE + MODEL)
    loss = NVIL(**kwargs, max_plate_nesting=1)
    if kwargs.get("center", True):  # warm up the running mean (not the net's gradients)
        for _ in range(5):
            loss.loss_and_grads(net.model, net.guide, DATA.repeat(200, 1))
    mean, se = _estimate(net, loss, GUIDE + MODEL, calls=20, copies=500)
    _assert_close(mean, se, exact)


def test_vimco_gradient_is_k_sample_bound_gradient(float64):
    net = TinySBN()
    k = 3
    exact = _exact_grad(net, -_exact_bound(net, DATA, k), GUIDE + MODEL)
    mean, se = _estimate(net, VIMCO(k, max_plate_nesting=1), GUIDE + MODEL, 20, 500)
    _assert_close(mean, se, exact)


def test_vimco_leave_one_out_baseline():
    log_w = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    got = leave_one_out_log_mean(log_w)
    for j in range(3):
        others = [log_w[i, 0] for i in range(3) if i != j]
        geo = sum(others) / 2
        want = torch.logsumexp(torch.stack(others + [geo]), 0) - math.log(3)
        assert got[j, 0].item() == pytest.approx(want.item(), rel=1e-12)


def test_loss_values_are_negative_bounds(float64):
    """Each rule's loss number averages (over draws) to its stated objective."""
    net = TinySBN()
    x = DATA.repeat(4000, 1)
    with torch.no_grad():
        elbo = _exact_elbo(net, DATA).item()
        bound3 = _exact_bound(net, DATA, 3).item()
    per = 4000
    assert -NVIL(max_plate_nesting=1).loss(net.model, net.guide, x) / per == pytest.approx(
        elbo, abs=0.05
    )
    assert -WakeSleep().loss(net.model, net.guide, x) / per == pytest.approx(elbo, abs=0.05)
    for loss in (VIMCO(3), ReweightedWakeSleep(3)):
        assert -loss.loss(net.model, net.guide, x) / per == pytest.approx(bound3, abs=0.05)


# --------------------------------------------------------------------- baselines


def _c1_draws(net, loss, copies=4000):
    """Per-example gradient of the bias c1 (through the offset trick): (copies*2, H1)."""
    x = DATA.repeat(copies, 1)
    offset = torch.zeros(x.shape[0], H1, dtype=torch.float64, requires_grad=True)
    net.zero_grad()
    loss.loss_and_grads(net.model, net.guide, x, offset=offset)
    return offset.grad.reshape(copies, 2, H1)


def test_nvil_baselines_change_variance_not_mean(float64):
    net = TinySBN()
    plain = NVIL(center=False, normalize=False, local_signals=False, max_plate_nesting=1)
    centred = NVIL(normalize=False, local_signals=False, max_plate_nesting=1)
    baseline = nn.Linear(D, 2).double()  # one output per discrete guide site
    nn.init.zeros_(baseline.weight)
    nn.init.zeros_(baseline.bias)
    with_net = NVIL(baseline, center=False, normalize=False, max_plate_nesting=1)
    # a baseline net that has learnt the mean local signal of each site (by its own updates)
    opt = torch.optim.Adam(baseline.parameters(), lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        with_net.loss_and_grads(net.model, net.guide, DATA.repeat(100, 1))
        opt.step()
    for _ in range(3):
        centred.loss_and_grads(net.model, net.guide, DATA.repeat(1000, 1))
    draws = {
        name: _c1_draws(net, loss)
        for name, loss in [("plain", plain), ("centred", centred), ("net", with_net)]
    }
    exact = _exact_grad(net, -_exact_elbo(net, DATA), ("c1",))
    for d in draws.values():
        mean = d.sum(1).mean(0)  # per copy of the two rows
        se = d.sum(1).std(0) / math.sqrt(d.shape[0])
        _assert_close(mean, se, exact)
    var = {name: d.var(0).sum().item() for name, d in draws.items()}
    assert var["centred"] < 0.5 * var["plain"], var
    assert var["net"] < 0.5 * var["plain"], var


def test_nvil_local_signals_reduce_variance(float64):
    net = TinySBN()
    whole = NVIL(center=False, normalize=False, local_signals=False, max_plate_nesting=1)
    local = NVIL(center=False, normalize=False, max_plate_nesting=1)
    # q(h2 | h1)'s parameters: its local signal drops log p(x | h1) and log q(h1 | x)
    grads = {}
    for name, loss in (("whole", whole), ("local", local)):
        draws = []
        for _ in range(200):
            net.zero_grad()
            loss.loss_and_grads(net.model, net.guide, DATA)
            draws.append(_grads(net, ("Q2", "c2")))
        grads[name] = torch.stack(draws)
    assert grads["local"].var(0).sum() < 0.8 * grads["whole"].var(0).sum()


def test_nvil_local_signal_structure(float64):
    net = TinySBN()
    loss = NVIL(max_plate_nesting=1)
    loss.loss_and_grads(net.model, net.guide, DATA)
    (kept,) = loss._structure.values()
    assert kept is not None
    assert set(kept["h1"][0]) == {"h2", "h1", "x"} and kept["h1"][1] == ["h1", "h2"]
    assert set(kept["h2"][0]) == {"h2", "h1"} and kept["h2"][1] == ["h2"]


def test_nvil_normalisation_and_state(float64):
    net = TinySBN()
    loss = NVIL(decay=0.5, max_plate_nesting=1)
    x = DATA.repeat(50, 1)
    loss.loss_and_grads(net.model, net.guide, x)
    first = {k: v.clone() for k, v in loss.stats.items()}
    assert set(first) == {"h1", "h2"} and all(v[1] > 0 for v in first.values())
    loss.loss_and_grads(net.model, net.guide, x)
    assert not torch.equal(first["h1"], loss.stats["h1"])
    with torch.no_grad():  # evaluation does not move the statistics
        before = {k: v.clone() for k, v in loss.stats.items()}
        loss.differentiable_loss(net.model, net.guide, x)
        assert all(torch.equal(before[k], loss.stats[k]) for k in before)
    other = NVIL(max_plate_nesting=1)
    other.load_state_dict(loss.state_dict())
    assert all(torch.equal(other.stats[k], loss.stats[k]) for k in loss.stats)
    # normalisation divides the score-function part by sqrt(v) (here v = 16 for both sites)
    loss.stats = {k: torch.tensor([0.0, 16.0], dtype=torch.float64) for k in loss.stats}
    raw = NVIL(center=False, normalize=False, max_plate_nesting=1)
    offset = torch.zeros(x.shape[0], H1, dtype=torch.float64, requires_grad=True)
    got = []
    for rule in (loss, raw):
        pyro.set_rng_seed(3)
        offset.grad = None
        rule.differentiable_loss(net.model, net.guide, x, offset=offset).backward()
        got.append(offset.grad.clone())
    # the loss's d/d offset = -(A g - g), g = d log q(h1 | x) / d offset at the same sample:
    # the normalised A is the raw one divided by sqrt(16) = 4
    g = _log_q_h1_grad(net, x, offset)
    assert not torch.allclose(got[0], got[1])
    assert torch.allclose(got[0] - g, (got[1] - g) / 4, rtol=1e-9, atol=1e-12)


def _log_q_h1_grad(net, x, offset):
    """d log q(h1 | x) / d offset at the sample that seed 3 draws."""
    pyro.set_rng_seed(3)
    tr = pyro.poutine.trace(net.guide).get_trace(x, offset)
    lq = tr.nodes["h1"]["fn"].log_prob(tr.nodes["h1"]["value"]).sum()
    (g,) = torch.autograd.grad(lq, offset)
    return g


# --------------------------------------------------------------------- subsampling


class _Subsampled(TinySBN):
    def model(self, x, idx):
        pyro.module("tiny", self)
        with pyro.plate("data", x.shape[0], subsample=idx):
            xb = x[idx]
            top = self.top.expand(len(idx), H2)
            h2 = pyro.sample("h2", dist.Bernoulli(logits=top).to_event(1))
            h1 = pyro.sample("h1", dist.Bernoulli(logits=h2 @ self.W21.T + self.b21).to_event(1))
            logits = h1 @ self.W1x.T + self.b1x
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=xb)

    def guide(self, x, idx):
        pyro.module("tiny", self)
        with pyro.plate("data", x.shape[0], subsample=idx):
            logits = x[idx] @ self.Q1.T + self.c1
            h1 = pyro.sample("h1", dist.Bernoulli(logits=logits).to_event(1))
            pyro.sample("h2", dist.Bernoulli(logits=h1 @ self.Q2.T + self.c2).to_event(1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReweightedWakeSleep(3, max_plate_nesting=1),
        lambda: ReweightedWakeSleep(3, insomnia=0.5, max_plate_nesting=1),
        lambda: WakeSleep(max_plate_nesting=1),
        lambda: VIMCO(3, max_plate_nesting=1),
        lambda: NVIL(center=False, normalize=False, max_plate_nesting=1),
    ],
    ids=["rws", "rws-sleep", "ws", "vimco", "nvil"],
)
def test_subsample_scale_outside_log_mean_exp(float64, make):
    """A subsample of B of N examples: loss and gradients are N/B times those of the same
    B examples as a full batch, on the same samples (the scale multiplies each example's
    term after the log-mean-exp)."""
    full = ALL_X
    idx = torch.tensor([3, 7, 12])
    sub, plain = _Subsampled(seed=2), TinySBN(seed=2)
    scale = full.shape[0] / len(idx)
    pyro.set_rng_seed(5)
    sub.zero_grad()
    v_sub = make().loss_and_grads(sub.model, sub.guide, full, idx)
    pyro.set_rng_seed(5)
    plain.zero_grad()
    v_plain = make().loss_and_grads(plain.model, plain.guide, full[idx])
    assert v_sub == pytest.approx(scale * v_plain, rel=1e-10)
    for (n, a), b in zip(sub.named_parameters(), plain.parameters()):
        assert torch.allclose(a.grad, scale * b.grad, rtol=1e-9, atol=1e-12), n


# --------------------------------------------------------------------- drop-in use


@pytest.mark.parametrize(
    "make",
    [
        lambda: WakeSleep(),
        lambda: ReweightedWakeSleep(5),
        lambda: ReweightedWakeSleep(5, insomnia=0.5),
        lambda: NVIL(nn.Linear(D, 1).double()),
        lambda: VIMCO(5),
    ],
    ids=["ws", "rws", "rws-sleep", "nvil", "vimco"],
)
def test_svi_drop_in_improves_bound(float64, make):
    net = TinySBN(seed=3)
    x = ALL_X[torch.tensor([0, 3, 5, 6, 9, 10, 12, 15])].repeat(8, 1)
    with torch.no_grad():
        before = -_exact_elbo(net, x).item()
    svi = SVI(net.model, net.guide, Adam({"lr": 0.05}), make())
    for _ in range(60):
        assert math.isfinite(svi.step(x))
    with torch.no_grad():
        after = -_exact_elbo(net, x).item()
    assert after < before


def test_svi_learner(float64):
    from pyrogen.train import SVILearner

    net = TinySBN(seed=4)
    learner = SVILearner(net, ReweightedWakeSleep(5), lr=0.05, model=net.model, guide=net.guide)
    out = [learner.step(DATA.repeat(10, 1))["loss"] for _ in range(30)]
    assert all(math.isfinite(v) for v in out)
    assert math.isfinite(learner.evaluate(DATA)["loss"])


def test_sleep_inputs_and_observations_keyword(float64):
    net = TinySBN()
    seen = {}

    def guide(x, observations=None):
        seen["obs"] = observations
        net.guide(x if observations is None else observations["x"])

    WakeSleep().loss_and_grads(net.model, guide, DATA)
    assert seen["obs"] is not None and seen["obs"]["x"].shape == DATA.shape

    def sleep_inputs(dreams, args, kwargs):
        seen["dreams"] = dreams
        return (dreams["x"],), kwargs

    ReweightedWakeSleep(2, insomnia=0.0, sleep_inputs=sleep_inputs).loss_and_grads(
        net.model, net.guide, DATA
    )
    assert set(seen["dreams"]) == {"x"}

    def opaque_guide(data):  # the data reach the guide in a form the rule cannot recognise
        net.guide(data[0])

    def opaque_model(data):
        net.model(data[0])

    with pytest.raises(ValueError, match="observations"):
        WakeSleep().loss_and_grads(opaque_model, opaque_guide, [DATA])


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ReweightedWakeSleep(0), "num_particles"),
        (lambda: ReweightedWakeSleep(1), "num_particles"),
        (lambda: ReweightedWakeSleep(2.5), "num_particles"),
        (lambda: ReweightedWakeSleep("5"), "num_particles"),
        (lambda: ReweightedWakeSleep(5, insomnia=1.5), "insomnia"),
        (lambda: ReweightedWakeSleep(5, num_sleep_particles=0), "num_sleep_particles"),
        (lambda: VIMCO(1), "num_particles"),
        (lambda: VIMCO(-3), "num_particles"),
        (lambda: NVIL(num_particles=0), "num_particles"),
        (lambda: NVIL(decay=1.0), "decay"),
        (lambda: WakeSleep(max_plate_nesting=-1), "max_plate_nesting"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_baseline(float64):
    with pytest.raises(TypeError, match="baseline_net"):
        NVIL(lambda x: x)
    net = TinySBN()
    loss = NVIL(nn.Linear(D, 5).double(), max_plate_nesting=1)
    with pytest.raises(ValueError, match="baseline_net output has shape"):
        loss.loss_and_grads(net.model, net.guide, DATA)


def test_non_binary_data_is_refused(float64):
    net = TinySBN()
    bad = DATA.clone()
    bad[0, 0] = 0.5
    for loss in (ReweightedWakeSleep(2), VIMCO(2), NVIL(), WakeSleep()):
        with pytest.raises(ValueError):
            loss.loss_and_grads(net.model, net.guide, bad)


# --------------------------------------------------------------------- HelmholtzMachine


@pytest.mark.parametrize(
    "make",
    [
        lambda m: WakeSleep(),
        lambda m: ReweightedWakeSleep(5, insomnia=0.5),
        lambda m: NVIL(m.baseline),
        lambda m: VIMCO(5),
    ],
    ids=["ws", "rws", "nvil", "vimco"],
)
def test_rules_train_helmholtz_machine(make):
    helmholtz = pytest.importorskip("pyrogen.models.helmholtz")
    torch.manual_seed(0)
    m = helmholtz.HelmholtzMachine((8, 4, 3), baseline_hidden=5)
    x = (torch.rand(64, 8) < 0.3).float()
    x[:, :4] = x[:, 4:]  # some structure to learn
    svi = SVI(m.model, m.guide, Adam({"lr": 0.05}), make(m))
    with torch.no_grad():
        before = -m.log_prob(x).mean().item()
    losses = [svi.step(x, subsample_size=32) for _ in range(50)]
    with torch.no_grad():
        after = -m.log_prob(x).mean().item()
    assert all(math.isfinite(v) for v in losses)
    assert after < before
