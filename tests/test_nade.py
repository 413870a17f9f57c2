"""FVSBN, NADE and RNADE: normalisation by enumeration / quadrature, the autoregressive
property by exact Jacobians, the O(DH) recurrence against naive recomputation, samplers
against exact distributions, input errors, and training through Pyro and the engine.

Seeds are fixed by ``tests/conftest.py`` (``pyro.set_rng_seed(0)``) unless a test sets its
own; tolerances are stated where they are used.
"""

import itertools
import math

import numpy as np
import pyro
import pytest
import scipy.integrate
import scipy.stats
import torch
from pyro.infer import SVI, Trace_ELBO

import pyrogen.nn.nade as nade_nn
from pyrogen import data as pdata
from pyrogen.distributions.nade import FVSBN, NADE, RNADE
from pyrogen.models.autoregressive import AutoregressiveModel
from pyrogen.nn.nade import FVSBNNet, NADENet, RNADENet
from pyrogen.registry import DataInfo, get_family
from pyrogen.runs import Run
from pyrogen.train import train


def all_binary(d: int) -> torch.Tensor:
    """All 2^d binary vectors, (2^d, d), in the default dtype."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))


def randomize(net: torch.nn.Module, scale: float = 1.0) -> torch.nn.Module:
    """Non-zero random values in every parameter (zero-initialised embeddings, mask weights
    and FVSBN weights would make tests vacuous)."""
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, scale)
    return net


def nade_net(d=8, h=5, **kwargs) -> NADENet:
    return randomize(NADENet(d, h, **kwargs))


ORDERINGS = ["identity", "perm", "per_example"]


def make_ordering(kind, d, batch=()):
    if kind == "identity":
        return None
    if kind == "perm":
        return torch.randperm(d)
    return torch.stack([torch.randperm(d) for _ in range(math.prod(batch))]).reshape(*batch, d)


# ------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("kind", ORDERINGS)
def test_fvsbn_sums_to_one_over_all_binary_vectors(float64, kind):
    d = 10
    net = randomize(FVSBNNet(d))
    dist = FVSBN(net, ordering=make_ordering(kind, d, (3,)))  # per_example: 3 orderings
    totals = dist.log_prob(all_binary(d).unsqueeze(1)).exp().sum(0)
    assert totals.shape == ((3,) if kind == "per_example" else (1,))
    assert torch.allclose(totals, torch.ones_like(totals), atol=1e-6, rtol=0), totals


@pytest.mark.parametrize("kind", ORDERINGS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"activation": "relu"},
        {"mask_input": True},
        {"num_classes": 3, "context_to": "both"},
        {"num_classes": 3, "context_to": "hidden", "mask_input": True},
    ],
    ids=["plain", "relu", "mask", "context", "context-hidden+mask"],
)
def test_nade_sums_to_one_over_all_binary_vectors(float64, kind, options):
    d = 10
    net = nade_net(d, 6, **options)
    x = all_binary(d)
    if "num_classes" in options:
        # every label, and a one-hot / probability-vector label: each a normalised model
        context = torch.tensor([0, 1, 2])
        x = x.unsqueeze(1)  # (2^d, 1, d) against batch_shape (3,)
        ordering = make_ordering(kind, d, (3,))
        probs = torch.tensor([0.2, 0.5, 0.3])
        total = NADE(net, context=probs).log_prob(all_binary(d)).exp().sum()
        assert abs(total.item() - 1) < 1e-6
    else:
        context, ordering = None, make_ordering(kind, d, ())
    dist = NADE(net, context=context, ordering=ordering)
    totals = dist.log_prob(x).exp().sum(0)
    assert torch.allclose(totals, torch.ones_like(totals), atol=1e-6, rtol=0), totals


def test_ensemble_over_orderings_sums_to_one(float64):
    d = 9
    net = nade_net(d, 5, mask_input=True)
    orderings = torch.stack([torch.arange(d)] + [torch.randperm(d) for _ in range(3)])
    total = NADE(net).ensemble_log_prob(all_binary(d), orderings).exp().sum()
    assert abs(total.item() - 1) < 1e-6


def small_rnade(d, seed=0):
    torch.manual_seed(seed)
    net = RNADENet(d, 6, 3)
    with torch.no_grad():  # scales exp(+-0.6) at most: a grid of step 0.05 resolves them
        net.weight.normal_(0, 1.0)
        net.output_weight.normal_(0, 0.1)
        net.output_bias.normal_(0, 0.3)
        net.rho.uniform_(0.5, 1.5)
    return net


def test_rnade_density_integrates_to_one_in_1d(float64):
    dist = RNADE(small_rnade(1))

    def density(t):
        return dist.log_prob(torch.tensor([[t]])).exp().item()

    total, err = scipy.integrate.quad(density, -np.inf, np.inf, limit=200)
    assert abs(total - 1) < 1e-6 and err < 1e-6


def test_rnade_density_integrates_to_one_in_2d(float64):
    net = small_rnade(2)
    # trapezoid rule on [-12, 12]^2, step 0.05: exact to ~1e-12 for Gaussians with
    # scale >= 0.4 whose mass lies inside the box (checked below)
    grid = torch.linspace(-12, 12, 481)
    x = torch.cartesian_prod(grid, grid)
    dist = RNADE(net)
    _, loc, scale = dist.conditional_params(x)
    assert scale.min() > 0.4 and loc.abs().max() + 8 * scale.max() < 12
    density = dist.log_prob(x).exp().reshape(len(grid), len(grid))
    total = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid)
    assert abs(total.item() - 1) < 1e-6
    # and with another ordering
    density = RNADE(net, ordering=torch.tensor([1, 0])).log_prob(x).exp()
    total = torch.trapezoid(torch.trapezoid(density.reshape(481, 481), grid, dim=1), grid)
    assert abs(total.item() - 1) < 1e-6


# ------------------------------------------------------------------------------ autoregressive


def assert_autoregressive(jacobian: torch.Tensor, ordering: torch.Tensor | None) -> None:
    """``jacobian[i, j] = d(params of conditional i) / d x_j`` (params reduced to their
    largest absolute derivative): exactly zero unless j comes before i; non-zero for every
    j before i (the test can see a dependence)."""
    d = jacobian.shape[0]
    position = torch.arange(d) if ordering is None else torch.argsort(ordering)
    before = position.unsqueeze(0) < position.unsqueeze(1)  # [i, j]: j before i
    assert (jacobian[~before] == 0).all(), "a conditional depends on itself or a later input"
    assert (jacobian[before] != 0).all(), "a conditional ignores an earlier input"


@pytest.mark.parametrize("kind", ["identity", "perm"])
def test_fvsbn_conditionals_depend_only_on_earlier_inputs(float64, kind):
    d = 7
    ordering = make_ordering(kind, d)
    dist = FVSBN(randomize(FVSBNNet(d)), ordering=ordering, validate_args=False)
    x = torch.bernoulli(torch.full((d,), 0.5))
    jac = torch.autograd.functional.jacobian(dist.conditional_logits, x)
    assert_autoregressive(jac, ordering)


@pytest.mark.parametrize("kind", ["identity", "perm", "per_example"])
@pytest.mark.parametrize("options", [{}, {"num_classes": 2, "mask_input": True}])
def test_nade_conditionals_depend_only_on_earlier_inputs(float64, kind, options):
    d = 7
    net = nade_net(d, 4, **options)
    context = torch.tensor(1) if options else None
    ordering = make_ordering(kind, d, ())
    if kind == "per_example":  # a batch of 3 examples with their own orderings
        ordering = make_ordering(kind, d, (3,))
        x = torch.bernoulli(torch.full((3, d), 0.5))
        dist = NADE(net, context=context, ordering=ordering, validate_args=False)
        jac = torch.autograd.functional.jacobian(dist.conditional_logits, x)
        for n in range(3):
            assert (jac[n, :, [m for m in range(3) if m != n]] == 0).all()
            assert_autoregressive(jac[n, :, n], ordering[n])
        return
    x = torch.bernoulli(torch.full((d,), 0.5))
    dist = NADE(net, context=context, ordering=ordering)
    jac = torch.autograd.functional.jacobian(dist.conditional_logits, x)
    assert_autoregressive(jac, ordering)


def test_rnade_mixture_parameters_depend_only_on_earlier_inputs(float64):
    d = 6
    net = small_rnade(d)
    for ordering in (None, torch.randperm(d)):
        dist = RNADE(net, ordering=ordering, validate_args=False)
        jacs = torch.autograd.functional.jacobian(dist.conditional_params, torch.randn(d))
        for jac in jacs:  # (D, K, D) for logits, loc and scale
            assert_autoregressive(jac.abs().amax(1), ordering)


# ------------------------------------------------------------------------------ recurrence


@pytest.mark.parametrize("kind", ORDERINGS)
@pytest.mark.parametrize(
    "options", [{}, {"num_classes": 4, "mask_input": True}, {"activation": "relu"}]
)
def test_recurrence_equals_naive_recomputation(float64, kind, options):
    d, n = 12, 6
    net = nade_net(d, 7, **options)
    context = torch.randint(0, 4, (n,)) if options.get("num_classes") else None
    dist = NADE(net, context=context, ordering=make_ordering(kind, d, (n,)))
    x = torch.bernoulli(torch.full((n, d), 0.4))
    fast, naive = dist.log_prob(x), dist.naive_log_prob(x)
    assert fast.shape == (n,)
    assert (fast - naive).abs().max() < 1e-10
    # the gradients too (the recurrence is differentiated by autograd)
    params = list(net.parameters())
    g_fast = torch.autograd.grad(fast.sum(), params)
    g_naive = torch.autograd.grad(naive.sum(), params)
    for a, b in zip(g_fast, g_naive):
        assert (a - b).abs().max() < 1e-10


def test_random_orderings_are_one_per_example_from_the_global_rng(float64):
    d, n = 10, 5
    net = nade_net(d, 4, mask_input=True)
    x = torch.bernoulli(torch.full((n, d), 0.5))
    torch.manual_seed(3)
    random = NADE(net, ordering="random").log_prob(x)
    torch.manual_seed(3)
    orderings = torch.argsort(torch.rand(n, d), dim=-1)
    explicit = torch.stack([NADE(net, ordering=orderings[i]).log_prob(x[i]) for i in range(n)])
    assert (random - explicit).abs().max() < 1e-12
    assert len({tuple(o.tolist()) for o in orderings}) == n


def test_cpu_chunking_does_not_change_the_result(float64, monkeypatch):
    d, n = 12, 23
    x = torch.bernoulli(torch.full((n, d), 0.5))
    nets = [nade_net(d, 5, num_classes=3), small_rnade(d)]
    context = torch.randint(0, 3, (n,))
    ordering = make_ordering("per_example", d, (n,))
    whole = [NADE(nets[0], context=context, ordering=ordering).log_prob(x)]
    whole.append(RNADE(nets[1], ordering=ordering).log_prob(x))
    monkeypatch.setattr(nade_nn, "CPU_CHUNK_ELEMENTS", 2 * d * 5)  # chunks of ~2 rows
    chunked = [NADE(nets[0], context=context, ordering=ordering).log_prob(x)]
    chunked.append(RNADE(nets[1], ordering=ordering).log_prob(x))
    for a, b in zip(whole, chunked):
        assert (a - b).abs().max() < 1e-12


# ------------------------------------------------------------------------------ sampling


def chi_square_pvalue(samples: torch.Tensor, log_probs: torch.Tensor, check=True) -> float:
    """Pearson's chi-square of binary ``samples`` (n, d) against the exact probabilities of
    the 2^d states (``log_probs``, in the order of :func:`all_binary`)."""
    d = samples.shape[-1]
    codes = (samples.long() * (2 ** torch.arange(d - 1, -1, -1))).sum(-1)
    observed = torch.bincount(codes, minlength=2**d).double().numpy()
    expected = log_probs.detach().double().exp().numpy() * len(samples)
    assert not check or expected.min() >= 5, "cells too small for the chi-square approximation"
    return scipy.stats.chisquare(observed, expected / expected.sum() * len(samples)).pvalue


@pytest.mark.parametrize(
    "model", ["fvsbn", "fvsbn-random-order", "nade", "nade-context-random-order"]
)
def test_samples_match_the_enumerated_distribution(float64, model):
    """10^5 samples against the exact distribution of 2^4 states; the threshold p > 1e-3
    fails a correct sampler with probability 1e-3 (the seed is fixed, so the test is
    deterministic)."""
    d = 4
    torch.manual_seed(0)
    if model == "fvsbn":
        dist = FVSBN(randomize(FVSBNNet(d), 0.7), ordering=torch.tensor([2, 0, 3, 1]))
        exact = dist.log_prob(all_binary(d))
    elif model == "fvsbn-random-order":
        net = randomize(FVSBNNet(d), 0.7)
        dist = FVSBN(net, ordering="random")
        orderings = torch.tensor(list(itertools.permutations(range(d))))
        exact = FVSBN(net).ensemble_log_prob(all_binary(d), orderings)
    elif model == "nade":
        dist = NADE(randomize(NADENet(d, 3), 0.7), ordering=torch.tensor([3, 1, 0, 2]))
        exact = dist.log_prob(all_binary(d))
    else:
        # sampling with random orderings draws from the uniform mixture over all orderings
        net = randomize(NADENet(d, 3, num_classes=2, mask_input=True), 0.7)
        dist = NADE(net, context=torch.tensor(1), ordering="random")
        orderings = torch.tensor(list(itertools.permutations(range(d))))
        exact = NADE(net, context=torch.tensor(1)).ensemble_log_prob(all_binary(d), orderings)
    assert abs(exact.exp().sum().item() - 1) < 1e-9
    samples = dist.sample((100_000,))
    assert samples.shape == (100_000, d)
    assert chi_square_pvalue(samples, exact) > 1e-3
    # power: the same samples are rejected against another model's probabilities
    other = NADE(randomize(NADENet(d, 3), 0.7)).log_prob(all_binary(d))
    assert chi_square_pvalue(samples, other, check=False) < 1e-6


@pytest.mark.parametrize("kind", ["identity", "perm", "random"])
def test_fast_and_naive_sampling_give_the_same_samples(float64, kind):
    d = 16
    net = nade_net(d, 6, num_classes=3, mask_input=True)
    ordering = "random" if kind == "random" else make_ordering(kind, d)
    dist = NADE(net, context=torch.tensor([0, 2]), ordering=ordering)
    torch.manual_seed(7)
    fast = dist.sample((50,))
    torch.manual_seed(7)
    naive = dist.naive_sample((50,))
    assert fast.shape == (50, 2, d)
    assert torch.equal(fast, naive)


def test_rnade_samples_pass_the_rosenblatt_test(float64):
    """Each variable's conditional CDF at the samples, F(x_k | x_<k), is Uniform(0, 1)
    (Rosenblatt transform); Kolmogorov-Smirnov on 2 * 10^4 samples per variable, threshold
    p > 1e-3 per variable (fixed seed), for one shared ordering and for one ordering per
    sample."""
    d, n = 3, 20_000
    net = small_rnade(d)
    per_example = torch.argsort(torch.rand(n, d), dim=-1)  # batch of n orderings
    for dist, shape in (
        (RNADE(net, ordering=torch.tensor([2, 0, 1])), (n,)),
        (RNADE(net, ordering=per_example), ()),
    ):
        samples = dist.sample(shape)
        assert samples.shape == (n, d)
        with torch.no_grad():
            logits, loc, scale = dist.conditional_params(samples)
        weights = torch.softmax(logits, -1)
        normal = torch.distributions.Normal(loc, scale)
        cdf = (weights * normal.cdf(samples.unsqueeze(-1))).sum(-1)
        for k in range(d):
            assert scipy.stats.kstest(cdf[:, k].numpy(), "uniform").pvalue > 1e-3
    # power: uniforms of another model are rejected
    with torch.no_grad():
        other = RNADE(small_rnade(d, seed=1)).conditional_params(samples)
    w, mu, sd = torch.softmax(other[0], -1), other[1], other[2]
    wrong = (w * torch.distributions.Normal(mu, sd).cdf(samples.unsqueeze(-1))).sum(-1)
    assert min(scipy.stats.kstest(wrong[:, k].numpy(), "uniform").pvalue for k in range(d)) < 1e-6


def test_shapes_follow_torch_rules_and_expand():
    d = 6
    net = NADENet(d, 4, num_classes=3)
    dist = NADE(net, context=torch.tensor([0, 1, 2]))
    assert dist.batch_shape == (3,) and dist.event_shape == (d,)
    assert dist.sample((5,)).shape == (5, 3, d)
    assert dist.log_prob(torch.zeros(5, 1, d)).shape == (5, 3)
    assert dist.support.event_dim == 1
    unconditional = NADE(NADENet(d, 4))
    big = unconditional.expand((4, 2))
    assert big.batch_shape == (4, 2) and big.sample().shape == (4, 2, d)
    assert big.log_prob(torch.ones(d)).shape == (4, 2)
    per_example = NADE(NADENet(d, 4), ordering=torch.stack([torch.randperm(d) for _ in range(2)]))
    assert per_example.expand((3, 2)).log_prob(torch.ones(d)).shape == (3, 2)
    assert RNADE(RNADENet(d, 4, 2)).expand((2,)).sample((3,)).shape == (3, 2, d)
    assert FVSBN(FVSBNNet(d)).expand((2,)).sample().shape == (2, d)
    # inside a plate: pyro expands the distribution over the batch
    model = AutoregressiveModel(NADENet(d, 4), NADE, (d,))
    trace = pyro.poutine.trace(model.model).get_trace(torch.ones(7, d))
    assert trace.nodes["x"]["fn"].batch_shape == (7,)
    assert trace.log_prob_sum().shape == ()


# ------------------------------------------------------------------------------ bad input


def test_bad_input_is_a_clear_value_error():
    d = 5
    for dist in (FVSBN(FVSBNNet(d)), NADE(NADENet(d, 3))):
        x = torch.zeros(2, d)
        x[1, 3] = 0.5
        with pytest.raises(ValueError, match=r"binary.*0\.5.*\(1, 3\)"):
            dist.log_prob(x)
        x[1, 3] = float("nan")
        with pytest.raises(ValueError, match=r"NaN.*\(1, 3\)"):
            dist.log_prob(x)
        with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 5\).*found \(2, 6\)"):
            dist.log_prob(torch.zeros(2, 6))
        with pytest.raises(ValueError, match="does not broadcast"):
            dist.expand((3,)).log_prob(torch.zeros(2, d))
    rnade = RNADE(RNADENet(d, 3, 2))
    with pytest.raises(ValueError, match="NaN|nan"):
        rnade.log_prob(torch.tensor([0.0, 1.0, float("nan"), 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"found \(4,\)"):
        rnade.log_prob(torch.zeros(4))
    net = NADENet(d, 3, num_classes=2)
    with pytest.raises(ValueError, match="class-conditional"):
        NADE(net)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        NADE(net, context=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="takes no class labels"):
        NADE(NADENet(d, 3), context=torch.tensor([0]))
    with pytest.raises(ValueError, match="permutation"):
        NADE(NADENet(d, 3), ordering=torch.tensor([0, 1, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 5\)"):
        NADE(NADENet(d, 3), ordering=torch.arange(4))
    with pytest.raises(ValueError, match="'random'"):
        NADE(NADENet(d, 3), ordering="reverse")
    with pytest.raises(TypeError, match="NADENet"):
        NADE(FVSBNNet(d))
    # with validation off the (free) shape check still runs
    with pytest.raises(ValueError, match="wrong size"):
        NADE(NADENet(d, 3), validate_args=False).log_prob(torch.zeros(3))
    # and through the Pyro model
    model = AutoregressiveModel(NADENet(d, 3), NADE, (d,))
    with pytest.raises(ValueError, match="binary"):
        Trace_ELBO().loss(model.model, model.guide, torch.full((2, d), 0.3))


# ------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def digits():
    return (
        pdata.load("digits", "train").tensor(),
        pdata.load("digits", "test").tensor(),
    )


def test_svi_with_trace_elbo_improves_the_exact_test_log_likelihood(digits):
    """Plain Pyro: SVI + pyro.optim.Adam on the model's parameters (registered through
    pyro.module). 300 steps on 8x8 digits from the default initialisation (seed 0) gain
    > 20 nats of exact test log-likelihood (measured with seeds 0-2: 25.3-26.0, from about
    -44.5 to -18.7)."""
    train_x, test_x = digits
    d = train_x.shape[1]
    torch.manual_seed(0)
    model = AutoregressiveModel(NADENet(d, 32), NADE, (d,))
    before = model.log_prob(test_x).mean().item()
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        svi.step(train_x[torch.randint(len(train_x), (100,), generator=gen)])
    assert f"{model._pyro_name}.net$$$weight" in pyro.get_param_store()
    after = model.log_prob(test_x).mean().item()
    assert after > before + 20, (before, after)


@pytest.mark.parametrize(
    "family, config",
    [
        ("fvsbn", {}),
        ("nade", {"hidden": 32}),
        ("nade", {"hidden": 32, "order_agnostic": True, "mask_input": True, "test_orderings": 3}),
    ],
    ids=["fvsbn", "nade", "nade-order-agnostic"],
)
def test_family_learner_improves_the_exact_test_log_likelihood(digits, family, config):
    """The registry's learner through the training engine: 10 epochs (130 steps, lr 0.01,
    seed 0) on 8x8 digits, starting from the independent-pixel model (output biases at the
    pixel log-odds: -25.1 nats). Gain > 4 nats of exact test log-likelihood (measured with
    seeds 0-2: FVSBN 5.7, NADE 6.2-6.3, order-agnostic NADE with a 3-ordering ensemble
    5.1-5.2)."""
    train_x, test_x = digits
    fam = get_family(family)
    cfg = fam.config(**config)
    torch.manual_seed(0)
    module = fam.build(cfg, DataInfo(train_x.shape[1], (8, 8), train_x.mean(0), "digits"))
    before = fam.log_likelihood(module, cfg, test_x)
    learner = fam.learner(module, cfg, lr=0.01)
    result = train(learner, train_x, epochs=10, batch_size=100, progress=False, val_data=test_x)
    after = fam.log_likelihood(module, cfg, test_x)
    assert after.estimator.startswith("exact") and after.mc_stderr == 0
    assert after.per_example.shape == (len(test_x),)
    assert after.mean > before.mean + 4, (before.mean, after.mean)
    if not cfg.__dict__.get("order_agnostic"):  # validation loss is the exact test NLL
        assert abs(result.last("val_loss", "val") - after.nll) < 1e-3
    samples = module.sample(10)
    assert samples.shape == (10, 64) and set(samples.unique().tolist()) <= {0.0, 1.0}


def test_cli_trains_and_evaluates_nade(tmp_path, capsys):
    from pyrogen import cli

    run = tmp_path / "run"
    argv = ["train", "nade", "--dataset", "digits", "--hidden", "16", "--epochs", "1"]
    argv += ["--out", str(run), "--no-progress", "--evaluate", "--order-agnostic"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "exact" in out
    result = Run.load(run).evaluate(progress=False)
    assert result.estimator == "exact" and result.mc_stderr == 0 and result.nll > 0
    with pytest.raises(SystemExit):
        cli.main(["train", "nade", "--help"])
    text = capsys.readouterr().out
    for flag in ("--hidden", "--order-agnostic", "--mask-input", "--test-orderings"):
        assert flag in text
