"""Tests of the Helmholtz machine (pyrogen.models.helmholtz) and its family entry.

Exactness is checked against a hand computation (explicit sigmoid formulas, a loop over
every latent state), normalisation by summing p(x) over all 2^D values, the
importance-sampling evaluator against the exact value (within 3 Monte Carlo standard
errors), sampling by a chi-square goodness-of-fit test against exact p(x). Seeds are fixed
(conftest seeds 0; tests that draw many samples set their own).
"""

from __future__ import annotations

import itertools
import math

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceGraph_ELBO
from pyro.infer import ReweightedWakeSleep as PyroRWS
from scipy import stats

from pyrogen.evaluate import LogLikelihood, log_likelihood
from pyrogen.models import HelmholtzMachine
from pyrogen.models.helmholtz import MAX_EXACT_LATENT_UNITS, NADEConditional, all_states

SIZES = (8, 4, 3)  # D = 8 pixels, h1: 4 units, h2: 3 units


def randomized(machine: HelmholtzMachine, seed: int, scale: float = 1.0) -> HelmholtzMachine:
    """``machine`` with every parameter redrawn from N(0, scale^2) (a model far from the
    symmetric initialisation, so that the checks below are not trivially satisfied)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in machine.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return machine


def tiny(seed: int = 1, **kwargs) -> HelmholtzMachine:
    return randomized(HelmholtzMachine(SIZES, **kwargs), seed)


def every_x(d: int = SIZES[0]) -> torch.Tensor:
    return all_states(d, torch.zeros((), dtype=torch.get_default_dtype()))


def test_exact_log_prob_equals_hand_computation(float64):
    m = tiny(seed=2)
    # the parameters, written out: p(h2) = prod sigm(a); p(h1 | h2) = prod sigm(W2 h2 + c);
    # p(x | h1) = prod sigm(W1 h1 + b)
    a = m.generative[2].logits
    lin2 = m.generative[1].net.output_layer
    lin1 = m.generative[0].net.output_layer
    W2, c, W1, b = lin2.weight, lin2.bias, lin1.weight, lin1.bias

    def bern(logit: float, value: float) -> float:
        p = 1.0 / (1.0 + math.exp(-logit))
        return p if value == 1 else 1.0 - p

    xs = torch.tensor(
        [[0, 1, 1, 0, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]],
        dtype=torch.float64,
    )
    expected = []
    for x in xs.tolist():
        total = 0.0
        for h2 in itertools.product((0, 1), repeat=3):
            p2 = math.prod(bern(a[j].item(), h2[j]) for j in range(3))
            for h1 in itertools.product((0, 1), repeat=4):
                p1 = 1.0
                for i in range(4):
                    logit = c[i].item() + sum(W2[i, j].item() * h2[j] for j in range(3))
                    p1 *= bern(logit, h1[i])
                px = 1.0
                for d in range(8):
                    logit = b[d].item() + sum(W1[d, i].item() * h1[i] for i in range(4))
                    px *= bern(logit, x[d])
                total += p2 * p1 * px
        expected.append(math.log(total))
    torch.testing.assert_close(
        m.log_prob(xs).detach(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-10
    )
    # and through the one evaluation entry point: exact (auto picks it for 7 latent units)
    result = log_likelihood(m, xs, progress=False)
    assert result.is_exact and result.estimator == "exact"
    assert abs(result.mean - sum(expected) / 3) < 1e-10


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"hidden": 5}, {"conditional": "nade", "hidden": 3}],
    ids=["sigmoid", "sigmoid-mlp", "nade"],
)
def test_probabilities_sum_to_one(float64, kwargs):
    m = tiny(seed=3, **kwargs)
    lp = m.log_prob(every_x())
    assert lp.shape == (256,)
    assert abs(torch.logsumexp(lp, 0).item()) < 1e-10


def test_one_latent_layer_and_three(float64):
    for sizes in ((5, 3), (5, 3, 2, 2)):
        m = randomized(HelmholtzMachine(sizes), seed=4)
        assert abs(torch.logsumexp(m.log_prob(every_x(5)), 0).item()) < 1e-10


def test_nade_conditional_normalises_for_every_context(float64):
    layer = NADEConditional(3, 4, hidden=5)
    randomized(layer, seed=5)
    ys = every_x(4)  # (16, 4)
    for context in every_x(3):
        lp = layer.log_prob(ys, context.expand(16, 3))
        assert abs(torch.logsumexp(lp, 0).item()) < 1e-10
    prior = randomized(NADEConditional(None, 4, hidden=5), seed=6)
    assert abs(torch.logsumexp(prior.log_prob(ys, None), 0).item()) < 1e-10


@pytest.mark.filterwarnings("ignore:PSIS k-hat")  # a deliberately poor proposal
def test_importance_sampling_within_three_standard_errors(float64):
    # seed 7: parameters at scale 0.5 (a proposal that is not the posterior; ESS < K)
    m = randomized(HelmholtzMachine(SIZES), seed=7, scale=0.5)
    torch.manual_seed(7)
    x = torch.bernoulli(torch.full((20, 8), 0.5, dtype=torch.float64))
    exact = m.log_prob(x).mean().item()
    est = m.log_likelihood(x, estimator="importance", num_samples=2000, progress=False)
    assert isinstance(est, LogLikelihood) and est.estimator == "importance sampling"
    assert est.mc_stderr > 0 and (est.ess < 2000).all() and (est.ess > 1).all()
    assert abs(est.mean - exact) < 3 * est.mc_stderr, (est.mean, exact, est.mc_stderr)


def test_samples_follow_the_exact_distribution():
    # 40 000 ancestral samples of the tiny machine against exact p(x) over the 256 values:
    # chi-square over the values with expected count >= 5 (the rest pooled), p > 1e-3
    m = tiny(seed=8)
    pyro.set_rng_seed(8)
    n = 40_000
    x = m.sample(n)
    assert x.shape == (n, 8) and set(x.unique().tolist()) <= {0.0, 1.0}
    codes = (x * (2 ** torch.arange(7, -1, -1))).sum(-1).long()
    observed = torch.bincount(codes, minlength=256).double()
    with torch.no_grad():
        p = m.log_prob(every_x()).double().exp()
    expected = n * p / p.sum()
    big = expected >= 5
    obs = torch.cat([observed[big], observed[~big].sum().reshape(1)])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    _, pvalue = stats.chisquare(obs.numpy(), exp.numpy())
    assert pvalue > 1e-3, pvalue


def test_dreams_and_mean_samples():
    m = tiny(seed=9)
    dream = m.dream(6)
    assert {k: tuple(v.shape) for k, v in dream.items()} == {
        "h2": (6, 3),
        "h1": (6, 4),
        "x": (6, 8),
    }
    means = m.sample(6, mean=True)
    assert means.shape == (6, 8) and 0 <= means.min() and means.max() <= 1
    nade = HelmholtzMachine(SIZES, conditional="nade")
    assert not nade.has_mean_samples
    with pytest.raises(ValueError, match="mean=True"):
        nade.sample(2, mean=True)


def _step_changes_parameters(m, loss, x, **kwargs):
    before = [p.detach().clone() for p in m.parameters()]
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), loss)
    value = svi.step(x, **kwargs)
    values = value if isinstance(value, tuple) else (value,)
    assert all(math.isfinite(v) for v in values)
    changed = [not torch.equal(b, p) for b, p in zip(before, m.parameters())]
    assert all(changed), "every generative and recognition parameter should get a gradient"


@pytest.mark.parametrize("conditional", ["sigmoid", "nade"])
def test_pyro_losses_run_unchanged(conditional):
    m = HelmholtzMachine(SIZES, conditional=conditional, hidden=4)
    x = torch.bernoulli(torch.full((10, 8), 0.4))
    _step_changes_parameters(m, TraceGraph_ELBO(), x)
    # Pyro's RWS: wake-theta, wake-phi and sleep-phi (its sleep phase hands the guide the
    # dream as observations={"x": ...})
    pyro.clear_param_store()
    rws = PyroRWS(num_particles=4, insomnia=0.5, vectorize_particles=True, max_plate_nesting=1)
    _step_changes_parameters(m, rws, x)


def test_subsampled_plate_scales_and_replays():
    m = tiny(seed=10)
    x = torch.bernoulli(torch.full((12, 8), 0.4))
    guide_tr = pyro.poutine.trace(m.guide).get_trace(x, subsample_size=4)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide_tr)).get_trace(
        x, subsample_size=4
    )
    index = guide_tr.nodes["data"]["value"]
    assert index.shape == (4,)
    assert torch.equal(model_tr.nodes["data"]["value"], index)
    site = model_tr.nodes["x"]
    assert torch.equal(site["value"], x[index]) and site["scale"] == 3.0
    model_tr.compute_log_prob()
    unscaled = m.generative[0].log_prob(x[index], model_tr.nodes["h1"]["value"]).sum()
    torch.testing.assert_close(site["log_prob_sum"], 3.0 * unscaled)
    # Pyro's losses with the subsampled plate
    _step_changes_parameters(m, TraceGraph_ELBO(), x, subsample_size=4)
    rws = PyroRWS(num_particles=3, insomnia=0.5, vectorize_particles=True, max_plate_nesting=1)
    _step_changes_parameters(m, rws, x, subsample_size=4)


@pytest.mark.parametrize("objective", ["ws", "rws", "nvil", "vimco", "iwae"])
def test_family_learners_train(objective):
    from pyrogen.registry import get_family
    from pyrogen.runs import DataInfo

    family = get_family("helmholtz")
    config = family.config(layers="6,3", objective=objective, num_particles=3)
    info = DataInfo(num_features=16, image_shape=(4, 4), pixel_mean=torch.full((16,), 0.3))
    model = family.build(config, info)
    assert (model.baseline is not None) == (objective == "nvil")
    learner = family.learner(model, config, lr=1e-2)
    x = torch.bernoulli(torch.full((8, 16), 0.3))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        assert math.isfinite(learner.step(x)["loss"])
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert math.isfinite(float(learner.evaluate(x)["loss"]))
    if objective == "nvil":
        assert any(k.startswith("baseline.") for k in learner.state_dict()["module"])


def test_family_config_errors():
    from pyrogen.registry import get_family

    family = get_family("helmholtz")
    with pytest.raises(ValueError, match="layers"):
        family.config(layers="200,0")
    with pytest.raises(ValueError, match="num_particles"):
        family.config(objective="vimco", num_particles=1)
    with pytest.raises(ValueError, match="objective"):
        family.config(objective="cd")


def test_output_bias_from_pixel_means():
    mean = torch.linspace(0.1, 0.9, 8)
    for conditional in ("sigmoid", "nade"):
        m = HelmholtzMachine(SIZES, conditional=conditional, pixel_mean=mean)
        torch.testing.assert_close(torch.sigmoid(m.generative[0].output_bias.detach()), mean)


def test_bad_input_is_a_clear_error():
    m = tiny(seed=11)
    good = torch.bernoulli(torch.full((3, 8), 0.5))
    with pytest.raises(ValueError, match=r"binary.*found 0\.[27]5"):
        m.model(good * 0.5 + 0.25)
    nan = good.clone()
    nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.guide(nan)
    with pytest.raises(ValueError, match=r"wrong size.*\(batch, 8\)"):
        m.log_prob(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="binary"):
        m.log_likelihood(good * 0.5, progress=False)


@pytest.mark.parametrize(
    "sizes, match",
    [
        ((8, 0, 3), r"layer_sizes\[1\].*h1.*at least one unit"),
        ((0, 4), r"layer_sizes\[0\].*data width"),
        ((8,), "at least one latent layer"),
        ((8, -2), r"layer_sizes\[1\]"),
    ],
)
def test_bad_layer_sizes(sizes, match):
    with pytest.raises(ValueError, match=match):
        HelmholtzMachine(sizes)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="conditional"):
        HelmholtzMachine(SIZES, conditional="gaussian")
    with pytest.raises(ValueError, match="hidden"):
        HelmholtzMachine(SIZES, hidden=-1)
    big = HelmholtzMachine((8, 20, 1))
    assert big.num_latent_units == MAX_EXACT_LATENT_UNITS + 1
    with pytest.raises(ValueError, match="at most|up to 20"):
        big.log_prob(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="estimator"):
        big.log_likelihood(torch.zeros(2, 8), estimator="ais")
    with pytest.raises(TypeError, match="no_such_option"):
        log_likelihood(big, torch.zeros(2, 8), no_such_option=1)
    with pytest.raises((TypeError, ValueError), match="context"):
        big.sample(2, context=torch.zeros(2))


@pytest.mark.filterwarnings("ignore:PSIS k-hat")
def test_auto_estimator_picks_importance_sampling_for_big_machines():
    big = HelmholtzMachine((8, 20, 4))
    x = torch.bernoulli(torch.full((5, 8), 0.5))
    result = big.log_likelihood(x, num_samples=50, progress=False)
    assert result.estimator == "importance sampling" and result.num_samples == 50
    assert result.per_example.shape == (5,) and math.isfinite(result.mean)


@pytest.mark.requires_cuda
def test_cuda_matches_cpu(float64):
    m = tiny(seed=12)
    x = every_x()
    g = tiny(seed=12).cuda()
    torch.testing.assert_close(g.log_prob(x.cuda()).cpu(), m.log_prob(x))
    assert g.sample(5).device.type == "cuda"
    result = g.log_likelihood(
        x[:10].cuda(), estimator="importance", num_samples=100, progress=False
    )
    assert math.isfinite(result.mean)
    svi = SVI(g.model, g.guide, pyro.optim.Adam({"lr": 1e-2}), TraceGraph_ELBO())
    assert math.isfinite(svi.step(x[:10].cuda()))
