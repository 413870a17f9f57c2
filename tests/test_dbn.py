"""Deep belief networks (pyrogen.models.dbn) against quantities computed by brute force:
log p(x) by summing over every hidden configuration, the complementary-prior identity of a
top RBM that is the transpose of the one below, the up-down update by hand, sampling
against the enumerated distribution."""

import itertools
import math

import pyro
import pytest
import torch
import torch.nn.functional as F

from pyrogen.families.base import DataInfo
from pyrogen.families.rbm import cd_learner
from pyrogen.infer import ContrastiveDivergence, ReweightedWakeSleep
from pyrogen.models.dbn import DeepBeliefNetwork, UpDownLearner
from pyrogen.models.rbm import RBM
from pyrogen.train import StagedLearner, SVILearner


def randomize(dbn, scale=1.0, tied=False):
    """Random parameters in every RBM of the stack and, unless ``tied``, independent random
    generative and recognition layers (the untied state after fine-tuning)."""
    with torch.no_grad():
        for p in dbn.parameters():
            p.copy_(torch.randn_like(p) * scale)
    if tied:
        dbn.untie()
    return dbn


def states(n):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


def bernoulli(logits, value):
    return (value * logits - F.softplus(logits)).sum(-1)


def brute_force_log_prob(dbn, x):
    """log p(x) by summing the joint over every configuration of every hidden layer
    (h_1, ..., h_L), read from the parameters alone: the top RBM's energy
    -h^T W h' - b^T h - c^T h' normalised by its sum over all (h, h'), times the sigmoid
    belief layers p(h_l | h_{l+1}) = Bernoulli(sigmoid(b_l + W_l h_{l+1}))."""
    sizes, L = dbn.layer_sizes, dbn.num_layers
    top = dbn.top
    W, b, c = top.weight, top.visible_bias, top.hidden_bias

    def neg_energy(v, h):
        return (v @ W * h).sum(-1) + v @ b + h @ c

    pairs = [(v, h) for v in states(sizes[-2]) for h in states(sizes[-1])]
    log_z = torch.logsumexp(torch.stack([neg_energy(v, h) for v, h in pairs]), 0)
    if L == 1:
        return (
            torch.stack(
                [
                    torch.logsumexp(torch.stack([neg_energy(xi, h) for h in states(sizes[1])]), 0)
                    for xi in x
                ]  # fmt: skip
            )
            - log_z
        )
    terms = []
    for config in itertools.product(*[states(s) for s in sizes[1:]]):
        hs = [x, *(h.expand(x.shape[0], -1) for h in config)]  # h_0 = x, ..., h_L
        t = neg_energy(hs[-2], hs[-1]) - log_z
        for l in range(L - 1):
            lin = dbn.generative[l].net.output_layer
            t = t + bernoulli(lin.bias + hs[l + 1] @ lin.weight.T, hs[l])
        terms.append(t)
    return torch.logsumexp(torch.stack(terms), 0)


def exact_elbo(dbn, x):
    """sum_{h1} q(h1 | x) [log p(x, h1) - log q(h1 | x)] of a two-layer DBN, by enumeration."""
    h1 = states(dbn.layer_sizes[1])
    top = dbn.top_distribution()
    log_prior = top.log_prob(h1)  # exact log Z
    out = []
    for xi in x:
        log_q = dbn.recognition[0].log_prob(h1, xi.expand(h1.shape[0], -1))
        log_joint = log_prior + dbn.generative[0].log_prob(xi.expand(h1.shape[0], -1), h1)
        out.append((log_q.exp() * (log_joint - log_q)).sum())
    return torch.stack(out)


def binary(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < 0.4).to(torch.get_default_dtype())


# ---- exact log-likelihood ----------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(6, 4, 3), (5, 3, 3, 2)])
def test_exact_log_prob_equals_sum_over_all_hidden_configurations(float64, sizes):
    dbn = randomize(DeepBeliefNetwork(sizes))
    x = binary(7, sizes[0])
    expected = brute_force_log_prob(dbn, x)
    torch.testing.assert_close(dbn.log_prob(x), expected, rtol=0, atol=1e-10)
    ll = dbn.log_likelihood(x, progress=False)  # auto: exact for an enumerable network
    assert ll.estimator == "exact" and ll.mc_stderr == 0
    torch.testing.assert_close(ll.per_example, expected, rtol=0, atol=1e-10)
    # a distribution over x: the probabilities of all 2^D images sum to 1
    all_x = states(sizes[0])
    assert abs(dbn.log_prob(all_x).logsumexp(0).item()) < 1e-10


def test_importance_estimate_equals_exact_within_three_standard_errors(float64):
    # seed 0 (conftest), K = 4000 importance samples per example, exact log Z
    # (PSIS k-hat is left out: with 16 latent states the weights take at most 16 values,
    # which a Pareto tail fit cannot describe; the ESS is the diagnostic that applies)
    dbn = randomize(DeepBeliefNetwork((6, 4, 3)), scale=0.5, tied=True)
    x = binary(8, 6, seed=3)
    exact = dbn.log_prob(x).mean().item()
    options = {"num_samples": 4000, "progress": False, "diagnostics": False, "seed": 11}
    ll = dbn.log_likelihood(x, estimator="importance", **options)
    assert ll.diagnostics["top_log_z_method"] == "exact"
    assert ll.mc_stderr > 0 and "importance sampling" in ll.estimator
    assert abs(ll.mean - exact) < 3 * ll.mc_stderr, (ll.mean, exact, ll.mc_stderr)
    assert ll.ess.shape == (8,) and bool((ll.ess > 100).all())  # ESS out of 4000
    # the same seed gives the same estimate; the global stream is left alone
    before = torch.get_rng_state()
    again = dbn.log_likelihood(x, estimator="importance", **options)
    assert again.mean == ll.mean and torch.equal(torch.get_rng_state(), before)


def test_ais_log_z_of_the_top_rbm_in_the_estimate(float64):
    # seed 0; AIS with 50 chains and 500 temperatures on a 4 x 3 top RBM against exact log Z
    dbn = randomize(DeepBeliefNetwork((6, 4, 3)), scale=0.7, tied=True)
    x = binary(8, 6, seed=3)
    exact_z = dbn.top_log_partition("exact").log_z.item()
    ll = dbn.log_likelihood(
        x,
        estimator="importance",
        num_samples=500,
        log_z="ais",
        num_chains=50,
        betas=500,
        progress=False,
        diagnostics=False,
        seed=2,
    )
    d = ll.diagnostics
    assert d["top_log_z_method"] == "ais" and d["top_log_z_stderr"] > 0
    assert abs(d["top_log_z"] - exact_z) < max(0.05, 3 * d["top_log_z_stderr"])
    assert d["top_log_z_ess"] > 25 and d["top_log_z_num_betas"] == 500  # of 50 chains
    assert "AIS log Z (50 chains, 500 temperatures)" in ll.estimator
    assert ll.mc_stderr >= d["top_log_z_stderr"]
    assert "ESS per example" in ll.summary()
    same_is = dbn.log_likelihood(
        x, estimator="importance", num_samples=500, progress=False, diagnostics=False, seed=2
    )
    torch.testing.assert_close(
        ll.per_example, same_is.per_example + exact_z - d["top_log_z"], rtol=0, atol=1e-9
    )


def test_one_layer_dbn_is_its_rbm(float64):
    dbn = randomize(DeepBeliefNetwork((6, 4)))
    rbm = RBM(6, 4)
    with torch.no_grad():
        rbm.weight.copy_(dbn.top.weight)
        rbm.visible_bias.copy_(dbn.top.visible_bias)
        rbm.hidden_bias.copy_(dbn.top.hidden_bias)
    x = binary(9, 6)
    expected = rbm.distribution().log_prob(x)
    torch.testing.assert_close(dbn.log_prob(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(dbn.log_prob(x), brute_force_log_prob(dbn, x), rtol=0, atol=1e-10)
    a = dbn.log_likelihood(x, estimator="importance", progress=False)
    b = rbm.log_likelihood(x, progress=False)
    torch.testing.assert_close(a.per_example, b.per_example, rtol=0, atol=0)
    # one observed site with the RBM as its distribution, no latent site
    tr = pyro.poutine.trace(dbn.model).get_trace(x)
    sites = [n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "data"]
    assert sites == ["x"] and dbn.site_names == ()
    torch.testing.assert_close(tr.nodes["x"]["fn"].log_prob(x), expected, rtol=0, atol=0)


def test_top_rbm_transposed_from_below_is_a_complementary_prior(float64):
    """Hinton et al. (2006): with W_2 = W_1^T, b_2 = c_1, c_2 = b_1 the top RBM's marginal
    over h_1 is RBM 1's, so the two-layer DBN has RBM 1's log p(x), the recognition layer is
    its exact posterior, every importance weight equals p(x) and the bound is tight."""
    dbn = DeepBeliefNetwork((6, 4, 6))
    randomize(dbn, tied=True)
    rbm1, top = dbn.stack
    with torch.no_grad():
        top.weight.copy_(rbm1.weight.T)
        top.visible_bias.copy_(rbm1.hidden_bias)
        top.hidden_bias.copy_(rbm1.visible_bias)
    x = binary(5, 6)
    rbm_log_p = rbm1.rbm().log_prob(x)
    torch.testing.assert_close(dbn.log_prob(x), rbm_log_p, rtol=0, atol=1e-10)
    lw = dbn.log_weights(x, 50)
    torch.testing.assert_close(lw, rbm_log_p.expand(50, -1), rtol=0, atol=1e-10)
    torch.testing.assert_close(exact_elbo(dbn, x), rbm_log_p, rtol=0, atol=1e-10)
    ll = dbn.log_likelihood(
        x, estimator="importance", num_samples=50, progress=False, diagnostics=False
    )
    torch.testing.assert_close(ll.ess, torch.full((5,), 50.0, dtype=torch.float64))


# ---- greedy training ------------------------------------------------------------------


class Recorder:
    """A learner that records the batches it is given."""

    def __init__(self, module):
        self.module, self.batches = module, []

    def step(self, batch):
        self.batches.append(batch.clone())
        return {"loss": torch.zeros(())}

    def evaluate(self, batch):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def to(self, device):
        return self


def test_greedy_layer_two_trains_on_layer_one_up_pass():
    dbn = DeepBeliefNetwork((6, 4, 3))
    recorder = Recorder(dbn.top)
    learner1 = cd_learner(dbn.stack[0], ContrastiveDivergence(1), 0.1, 0.0, 0.0)

    def learner_for(k, part):
        assert part is dbn.stack[k]
        return learner1 if k == 0 else recorder

    stages = dbn.stages(learner_for, epochs=2)
    assert [s.name for s in stages] == ["layer1", "layer2"]
    staged = StagedLearner(stages)
    staged.set_steps_per_epoch(1)
    x = binary(10, 6)
    w0 = dbn.stack[0].weight.detach().clone()
    staged.step(x), staged.step(x)  # layer 1: two CD-1 updates
    assert not torch.equal(dbn.stack[0].weight, w0)
    # entering layer 2 unties layer 1 into the directed layers ...
    assert not torch.equal(dbn.generative[0].net.output_layer.weight, dbn.stack[0].weight)
    staged.step(x)
    gen, rec = dbn.generative[0].net.output_layer, dbn.recognition[0].net.output_layer
    torch.testing.assert_close(gen.weight, dbn.stack[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(rec.weight, dbn.stack[0].weight.T, rtol=0, atol=0)
    torch.testing.assert_close(rec.bias, dbn.stack[0].hidden_bias, rtol=0, atol=0)
    # ... and layer 2 sees the layer-1 up pass sigma(c_1 + W_1^T x)
    (seen,) = recorder.batches
    expected = torch.sigmoid(dbn.stack[0].hidden_bias + x @ dbn.stack[0].weight)
    torch.testing.assert_close(seen, expected.detach())
    torch.testing.assert_close(seen, dbn.up(x))


def test_variational_bound_after_greedy_training_is_below_exact_log_p(float64):
    # seed 0: 30 CD-1 updates per layer on 40 examples, then the exact bound by enumeration
    dbn = DeepBeliefNetwork((6, 4, 3), init_scale=0.1)
    x = binary(40, 6, seed=5)
    staged = StagedLearner(
        dbn.stages(lambda k, part: cd_learner(part, ContrastiveDivergence(1), 0.05, 0.5, 0.0), 30)
    )
    staged.set_steps_per_epoch(1)
    for _ in range(60):
        staged.step(x)
    log_p, bound = dbn.log_prob(x), exact_elbo(dbn, x)
    gap = log_p - bound  # KL(q(h1 | x) || p(h1 | x)) >= 0
    assert bool((gap >= -1e-12).all()) and bool((gap > 1e-6).any())
    # the single-sample bound (K = 1 importance weights) is an unbiased estimate of it:
    # 20000 draws per example, mean within 4 standard errors
    lw = dbn.log_weights(x[:4], 20000)
    se = lw.std(0) / math.sqrt(20000)
    assert bool(((lw.mean(0) - bound[:4]).abs() < 4 * se + 1e-9).all())


# ---- sampling -----------------------------------------------------------------------------


def test_sample_shapes_and_range():
    dbn = randomize(DeepBeliefNetwork((6, 4, 3, 2), image_shape=(2, 3)))
    s = dbn.sample(7, num_steps=3)
    assert s.shape == (7, 6) and set(s.unique().tolist()) <= {0.0, 1.0}
    m = dbn.sample(7, num_steps=3, mean=True)
    assert m.shape == (7, 6) and bool(((m > 0) & (m < 1)).all())
    one = randomize(DeepBeliefNetwork((6, 4)))
    assert one.sample(3, num_steps=2).shape == (3, 6)
    assert bool((one.sample(3, mean=True, num_steps=2) > 0).all())
    # the Pyro model dreams the same shapes, each layer binary
    tr = pyro.poutine.trace(dbn.model).get_trace(None, num_samples=5)
    assert [tr.nodes[n]["value"].shape for n in ("h2", "h1", "x")] == [(5, 3), (5, 4), (5, 6)]
    assert dbn.site_names == ("h1", "h2")


def test_samples_follow_the_enumerated_distribution():
    # seed 0: 20000 chains, 40 Gibbs sweeps in the 3 x 2 top RBM, then the down pass;
    # chi-square over the 16 images with 15 dof, below its 0.999 quantile (37.7)
    dbn = randomize(DeepBeliefNetwork((4, 3, 2)))
    p = dbn.log_prob(states(4)).exp().detach()
    s = dbn.sample(20000, num_steps=40)
    codes = (s * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(-1).long()
    counts = torch.bincount(codes, minlength=16).double()
    expected = 20000 * p.double()
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 37.7, chi2


# ---- fine-tuning --------------------------------------------------------------------------


def test_up_down_step_is_the_wake_cd_sleep_update_by_hand(float64):
    dbn = randomize(DeepBeliefNetwork((5, 4, 3, 2)), scale=0.5)
    x = binary(6, 5)
    lr, k = 0.1, 2
    before = {n: p.detach().clone() for n, p in dbn.named_parameters()}
    torch.manual_seed(7)
    out = UpDownLearner(dbn, cd_k=k, lr=lr).step(x)
    after = {n: p.detach().clone() for n, p in dbn.named_parameters()}
    with torch.no_grad():
        for n, p in dbn.named_parameters():
            p.copy_(before[n])
    # the same draws by hand, in the same order: up pass, CD-k in the top RBM, down pass
    torch.manual_seed(7)
    rec = [q.net.output_layer for q in dbn.recognition]
    gen = [g.net.output_layer for g in dbn.generative]
    up = [x]
    for lin in rec:
        up.append((torch.rand(6, lin.out_features) < torch.sigmoid(lin(up[-1]))).double())
    top = dbn.top
    W, b, c = top.weight.detach(), top.visible_bias.detach(), top.hidden_bias.detach()
    v = up[-1]
    for _ in range(k):
        h = (torch.rand(6, 2) < torch.sigmoid(c + v @ W)).double()
        v = (torch.rand(6, 3) < torch.sigmoid(b + h @ W.T)).double()
    down = [v]
    for lin in reversed(gen):
        down.insert(0, (torch.rand(6, lin.out_features) < torch.sigmoid(lin(down[0]))).double())
    # delta rules (summed over the batch): generative (wake), recognition (sleep), CD
    for l, lin in enumerate(gen):
        err = up[l] - torch.sigmoid(lin(up[l + 1]))
        name = f"generative.{l}.net.0"
        torch.testing.assert_close(after[name + ".weight"] - before[name + ".weight"],
                                   lr * err.T @ up[l + 1])  # fmt: skip
        torch.testing.assert_close(after[name + ".bias"] - before[name + ".bias"],
                                   lr * err.sum(0))  # fmt: skip
    for l, lin in enumerate(rec):
        err = down[l + 1] - torch.sigmoid(lin(down[l]))
        name = f"recognition.{l}.net.0"
        torch.testing.assert_close(after[name + ".weight"] - before[name + ".weight"],
                                   lr * err.T @ down[l])  # fmt: skip
    pos, neg = torch.sigmoid(c + up[-1] @ W), torch.sigmoid(c + v @ W)
    torch.testing.assert_close(
        after["stack.2.weight"] - before["stack.2.weight"], lr * (up[-1].T @ pos - v.T @ neg)
    )
    torch.testing.assert_close(
        after["stack.2.visible_bias"] - before["stack.2.visible_bias"],
        lr * (up[-1] - v).sum(0),
    )
    # the lower RBMs of the stack are not touched by fine-tuning
    assert all(torch.equal(after[n], before[n]) for n in before if n.startswith("stack.0"))
    wake = -sum(
        bernoulli(lin(up[l + 1]), up[l]).sum() for l, lin in enumerate(gen)
    ) / 6  # fmt: skip
    torch.testing.assert_close(out["wake"], wake)
    torch.testing.assert_close(out["loss"], out["wake"] + out["sleep"])


def test_fine_tuning_runs_in_the_training_engine_after_greedy_stages():
    from pyrogen.train import Stage, train

    dbn = DeepBeliefNetwork((6, 4, 3))
    stages = dbn.stages(
        lambda k, part: cd_learner(part, ContrastiveDivergence(1), 0.05, 0.5, 0.0), 1
    )
    stages.append(Stage("updown", UpDownLearner(dbn, cd_k=2, lr=0.01)))
    x = binary(32, 6)
    result = train(StagedLearner(stages), x, epochs=4, batch_size=16, val_data=x[:8],
                   progress=False, seed=0)  # fmt: skip
    val = [r for r in result.history if r.get("kind") == "val"]
    assert math.isfinite(val[-1]["val_neg_unnormalized_elbo"])
    last = [r for r in result.history if r.get("kind") == "train"][-1]
    assert last["loss"] == pytest.approx(last["wake"] + last["sleep"])


def test_wake_sleep_losses_apply_to_the_model_and_guide():
    # the contract: any valid Pyro loss trains the pair; with an exact log Z the top RBM's
    # gradient comes through the top site's log_prob
    dbn = randomize(DeepBeliefNetwork((6, 4, 3), sample_steps=20), scale=0.5)
    loss = ReweightedWakeSleep(3, insomnia=0.5, max_plate_nesting=1)
    learner = SVILearner(dbn, loss, lr=1e-2)
    out = learner.step(binary(8, 6))
    assert math.isfinite(float(out["loss"]))
    for part in (dbn.top, dbn.generative, dbn.recognition):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
        assert any(bool((g != 0).any()) for g in grads)


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"layer_sizes": (6,)}, "layer_sizes"),
        ({"layer_sizes": (6, 0, 3)}, "layer_sizes[1]"),
        ({"layer_sizes": (6, 2.5)}, "layer_sizes[1]"),
        ({"layer_sizes": "643"}, "layer_sizes"),
        ({"layer_sizes": (6, 4), "sample_steps": 0}, "sample_steps"),
        ({"layer_sizes": (6, 4), "init_scale": 0.0}, "init_scale"),
    ],
)
def test_bad_constructor_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        DeepBeliefNetwork(**kwargs)


def test_bad_inputs_name_the_argument():
    dbn = DeepBeliefNetwork((6, 4, 3))
    x = binary(4, 6)
    with pytest.raises(ValueError, match="x"):
        dbn.log_prob(x * 0.5 + 0.25)
    with pytest.raises(ValueError, match="x"):
        dbn.log_prob(torch.ones(4, 7))
    with pytest.raises(ValueError, match="estimator"):
        dbn.log_likelihood(x, estimator="parzen")
    with pytest.raises(ValueError, match="log_z"):
        dbn.log_likelihood(x, estimator="importance", log_z="raise")
    with pytest.raises(ValueError, match="init"):
        dbn.sample(3, init=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="num_samples"):
        dbn.sample(0)
    with pytest.raises(ValueError, match="layer"):
        dbn.untie(1)  # the top RBM has no directed copy
    with pytest.raises(ValueError, match="dbn"):
        UpDownLearner(DeepBeliefNetwork((6, 4)))
    with pytest.raises(ValueError, match="cd_k"):
        UpDownLearner(dbn, cd_k=0)
    with pytest.raises(ValueError, match="num_particles"):
        dbn.log_weights(x, 0)
    big = DeepBeliefNetwork((6, 30, 30))
    with pytest.raises(ValueError, match="exact log p"):
        big.log_prob(x)


def test_family_config_errors_name_the_option():
    from pyrogen.registry import load_families

    family = load_families()["dbn"]
    with pytest.raises(ValueError, match="fine_tune"):
        family.config(hidden=(8,))  # one hidden layer is an RBM: nothing to fine-tune
    with pytest.raises(ValueError, match="greedy_epochs"):
        family.config(greedy_epochs=0, fine_tune=False)
    with pytest.raises(ValueError, match="updown_k"):
        family.config(updown_k=0)
    config = family.config(hidden=(8,), fine_tune=False)  # greedy only: one RBM
    model = family.build(config, DataInfo(6, (2, 3)))
    stages = family.learner(model, config, 0.01).stages
    assert model.layer_sizes == (6, 8) and [s.name for s in stages] == ["layer1"]
