"""``benchmarks/draw.py``: its pieces against exact answers (the hand-written DRAW step
against pyrogen's bound and update on the same noise, the KL warm-up against the bound's
two terms, the learning-curve extrapolation on a curve whose answer is known), and a
``--smoke`` run end to end into a temporary results folder."""

import copy
import importlib
import json
import math
import sys
from pathlib import Path

import pyro
import pytest
import torch

from pyrogen.models import DRAW

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("draw")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _available(name: str) -> bool:
    try:
        from pyrogen.data import load

        load(name, split="test", download=False)
    except Exception:  # noqa: BLE001 -- no data folder on this machine
        return False
    return True


def _tiny(attention: bool) -> DRAW:
    torch.manual_seed(0)
    x_mean = torch.rand(64) * 0.8 + 0.1
    return DRAW(
        64,
        image_shape=(8, 8),
        steps=3,
        latent_dim=2,
        encoder_size=5,
        decoder_size=4,
        attention=attention,
        read_size=2,
        write_size=3,
        pixel_mean=x_mean,
    ).double()


def _data(n: int = 6) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 64), 0.4), generator=torch.Generator().manual_seed(1))


def test_kl_weight_is_a_linear_ramp(bench):
    assert [bench.kl_weight(s, 4) for s in (1, 2, 3, 4, 5, 100)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert bench.kl_weight(1, 0) == 1.0
    with pytest.raises(ValueError, match="warmup"):
        bench.kl_weight(1, -1)
    with pytest.raises(ValueError, match="step"):
        bench.kl_weight(0, 3)


@pytest.mark.parametrize("attention", [True, False])
def test_hand_written_loss_is_pyrogens_bound_on_the_same_noise(bench, attention, float64):
    # the hand-written step's loss (closed-form KL) is -sum(bound) of DRAW.loss_terms for
    # the same epsilons: both draw z_t = mu + sigma * eps from the seeded global stream
    net = _tiny(attention)
    x = _data().double()
    torch.manual_seed(3)
    terms = net.loss_terms(x)
    expected = (terms["reconstruction"] + terms["kl"].sum(-1)).sum()
    hand = bench.hand_draw_step(copy.deepcopy(net), x, lr=1e-3)
    torch.manual_seed(3)
    assert torch.allclose(hand(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("attention", [True, False])
def test_hand_written_sampled_step_makes_the_learners_update(bench, attention, float64):
    # with the single-sample KL, the hand-written gradient is Trace_ELBO's (the draw
    # family's learner) on the same noise, to rounding; so are the weights after two steps
    from pyrogen.registry import get_family

    net = _tiny(attention)
    hand_net = copy.deepcopy(net)
    family = get_family("draw")
    config = family.config(steps=3, latent_dim=2, encoder_size=5, decoder_size=4)
    learner = family.learner(net, config, 1e-3)
    x = _data().double()
    hand = bench.hand_draw_step(hand_net, x, lr=1e-3, kl="sampled")
    for seed in (5, 6):
        torch.manual_seed(seed)
        out = learner.step(x)
        torch.manual_seed(seed)
        loss = hand()
        assert float(out["loss"]) * x.shape[0] == pytest.approx(float(loss), abs=1e-9)
        for (name, a), b in zip(net.named_parameters(), hand_net.parameters()):
            assert a.grad is not None and b.grad is not None, name
            assert torch.allclose(a.grad, b.grad, rtol=1e-7, atol=1e-9), name
    for a, b in zip(net.parameters(), hand_net.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-8)


def test_hand_written_step_rejects_what_it_does_not_write(bench):
    net = _tiny(True)
    with pytest.raises(ValueError, match="kl"):
        bench.hand_draw_step(net, _data().double(), kl="exact")
    learned = DRAW(64, image_shape=(8, 8), steps=2, latent_dim=2, prior="learned")
    with pytest.raises(ValueError, match="net"):
        bench.hand_draw_step(learned, _data())


def test_kl_warmup_scales_only_the_latent_terms(bench, float64):
    # Trace_ELBO of the wrapped pair at weight beta, on fixed noise, is
    # reconstruction + beta * (log q - log p): linear in beta, and at beta = 0 the
    # reconstruction term of DRAW.loss_terms on the same noise
    net = _tiny(True)
    x = _data().double()
    warm = bench.KLWarmup(1.0)
    elbo = pyro.infer.Trace_ELBO(max_plate_nesting=1)

    def loss(beta):
        warm.weight = beta
        torch.manual_seed(7)
        return elbo.differentiable_loss(warm(net.model), warm(net.guide), x).item()

    l0, l1, l3 = loss(0.0), loss(1.0), loss(0.3)
    assert l3 == pytest.approx(l0 + 0.3 * (l1 - l0), abs=1e-9)
    torch.manual_seed(7)
    rec = net.loss_terms(x)["reconstruction"].sum().item()
    assert l0 == pytest.approx(rec, abs=1e-9)
    assert l1 != pytest.approx(l0)


def test_marginal_nll_is_the_independent_bernoulli_at_the_training_means(bench):
    # two pixels with training means 0.25 and 0.5 (the 1e-3 clamp does not bite): the test
    # image (1, 0) costs -log 0.25 - log 0.5 nats, the image (0, 0) -log 0.75 - log 0.5
    train = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    test = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    out = bench.marginal_nll(train, test)
    costs = torch.tensor(
        [-math.log(0.25) - math.log(0.5), -math.log(0.75) - math.log(0.5)], dtype=torch.float64
    )
    assert out["nll"] == pytest.approx(costs.mean().item(), abs=1e-12)
    assert out["stderr"] == pytest.approx(costs.std().item() / math.sqrt(2), abs=1e-12)
    assert out["num_examples"] == 2
    # a pixel never on in training is clamped to 1e-3, not log 0
    assert math.isfinite(bench.marginal_nll(torch.zeros(3, 1), torch.ones(1, 1))["nll"])


def test_extrapolation_solves_a_log_linear_curve(bench):
    # -bound = 200 - 10 log(step) reaches 90 at step e^11, at 0.5 s per step
    curve = [
        {"step": s, "bound": -(200 - 10 * math.log(s)), "seconds": 0.5 * s}
        for s in (1, 10, 100, 200, 400, 800)
    ]
    ex = bench.extrapolate(curve, target=90.0)
    assert ex["a"] == pytest.approx(200) and ex["b"] == pytest.approx(-10)
    assert ex["steps"] == pytest.approx(math.exp(11), rel=1e-9)
    assert ex["seconds"] == pytest.approx(0.5 * math.exp(11), rel=1e-9)
    rising = [{**p, "bound": -(100 + 10 * math.log(p["step"]))} for p in curve]
    assert bench.extrapolate(rising) is None
    assert bench.extrapolate(curve[:2]) is None
    # a curve stuck at the marginal (0.01 nats per e-fold of steps) gets no number
    flat = [{**p, "bound": -(206 - 0.01 * math.log(p["step"]))} for p in curve]
    assert bench.extrapolate(flat) is None
    done = bench.extrapolate([{**p, "bound": -80.0} for p in curve])
    assert done["steps"] == 800


@pytest.mark.skipif(
    not (_available("binarized_mnist") and _available("mnist")),
    reason="binarized MNIST / MNIST not found (set PYROGEN_DATA)",
)
def test_smoke_run_writes_every_table(bench, tmp_path):
    figures = tmp_path / "figures"
    assert bench.main(["--smoke", "--results", str(tmp_path), "--figures", str(figures)]) == 0
    record = json.loads((tmp_path / "draw_smoke.json").read_text())
    assert record["mode"] == "smoke"
    rows = record["nll"]
    assert [r["attention"] for r in rows] == [True, False]
    for r in rows:
        imp = r["importance"]
        assert imp["estimator"] and imp["num_samples"] == 8 and imp["num_examples"] == 4
        assert math.isfinite(imp["log_likelihood"]) and imp["log_likelihood"] < 0
        assert imp["nll"] == pytest.approx(-imp["log_likelihood"])
        assert math.isfinite(r["bound"]["bound"]) and r["bound"]["num_examples"] == 4
        curve = r["train"]["curve"]
        assert curve[0]["step"] == 0 and curve[-1]["step"] == r["train"]["steps"] == 4
        assert all(
            p["bound"] == pytest.approx(-(p["reconstruction"] + p["kl"]), abs=1e-9) for p in curve
        )
    assert record["published"]["attention"]["nll_at_most"] == 80.97
    speed = record["speed"]
    assert [r["attention"] for r in speed] == [True, False]
    assert all(r["ms_pyrogen"] > 0 and r["ms_hand"] > 0 and r["ratio"] > 0 for r in speed)
    align = record["align_draw"]
    assert align["steps"] >= 1 and math.isfinite(align["importance"]["log_likelihood"])
    assert math.isfinite(align["importance"]["test_bound"])
    fid = align["fidelity"]
    assert set(fid) == {"all", "seen", "held_out"}
    assert fid["seen"]["num_images"] == fid["held_out"]["num_images"] == 4
    assert 0 <= fid["held_out"]["match"] <= 1
    assert set(align["classifier_real_test"]) == {"all", "seen", "held_out"}
    # fidelity at each temperature, the first the headline one
    temps = align["fidelity_by_temperature"]
    assert [f["temperature"] for f in temps] == [0.0, 1.0] and align["temperature"] == 0.0
    assert temps[0]["groups"] == fid
    assert all(f["held_out_met"] == (f["groups"]["held_out"]["match"] >= 0.7) for f in temps)
    table = (tmp_path / "draw_smoke.md").read_text()
    assert "| DRAW, attention |" in table and "80.97" in table and "87.40" in table
    assert "hand-written (ms)" in table and "held_out (4)" in table
    assert "Temperature tau = 0:" in table and "Temperature tau = 1:" in table
    assert table.count("Target (issue 11): held-out match >= 0.7 at tau = ") == 2
    assert "pixel marginal" in table and math.isfinite(record["marginal"]["nll"])
    # --figures: each DRAW's samples and alignDRAW's images at each temperature, as PNGs
    from PIL import Image

    pictures = [r["figure"] for r in rows] + align["figures"]
    assert [Path(p).name for p in pictures] == [
        "draw_attention_samples.png",
        "draw_no_attention_samples.png",
        "align_draw_tau0.png",
        "align_draw_tau1.png",
    ]
    for p in pictures:
        with Image.open(p) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_fidelity_verdicts_name_the_attributes_read_wrongly(bench):
    from pyrogen.models.caption_fidelity import caption_fidelity

    class Reader:  # a classifier that reads the first and the position wrongly, as set here
        attributes = ("count", "first", "second", "position")

        def predict(self, images, batch_size=500):
            return {**said, "first": torch.tensor([1, 0, 3]), "position": torch.tensor([1, 0, 0])}

    said = {  # what the captions say, as the attributes' classes
        "count": torch.tensor([1, 1, 1]),  # two digits each
        "first": torch.tensor([1, 2, 3]),
        "second": torch.tensor([4, 5, 6]),
        "position": torch.tensor([1, 2, 3]),
    }
    fidelity = caption_fidelity(torch.zeros(3, 3600), said, Reader())
    assert bench.fidelity_verdicts(fidelity) == [
        "match",
        "wrong: first, position",
        "wrong: position",
    ]


def test_stuck_means_no_better_than_the_marginal(bench):
    # the marginal's NLL is 206.8: a bound of 205 is stuck, one of 124.7 (a model that learned)
    # is not
    assert bench.is_stuck(205.0, 206.8) and bench.is_stuck(210.0, 206.8)
    assert not bench.is_stuck(124.7, 206.8) and not bench.is_stuck(203.7, 206.8)


@pytest.mark.skipif(
    not _available("binarized_mnist"), reason="binarized MNIST not found (set PYROGEN_DATA)"
)
def test_models_option_trains_only_the_named_draws(bench, tmp_path):
    args = ["--smoke", "--sections", "nll", "--models", "attention", "--results", str(tmp_path)]
    assert bench.main([*args, "--name", "draw_attention_only"]) == 0
    record = json.loads((tmp_path / "draw_attention_only.json").read_text())
    assert [r["attention"] for r in record["nll"]] == [True]
    assert "speed" not in record and "align_draw" not in record
    with pytest.raises(ValueError, match="--models"):
        bench.main(["--smoke", "--models", "attention,recurrent"])


@pytest.mark.skipif(
    not _available("binarized_mnist"), reason="binarized MNIST not found (set PYROGEN_DATA)"
)
def test_each_draw_trains_for_its_own_budget(bench, tmp_path):
    """--minutes sets both DRAWs' budgets, --no-attention-minutes then the second's; the
    default mode gives the attentive DRAW the longer budget and says so."""
    assert bench._minutes({"minutes": 2.0}, False) == 2.0
    default = bench.MODES["default"]
    assert bench._minutes(default, True) > bench._minutes(default, False)
    args = ["--smoke", "--sections", "nll", "--minutes", "0.01", "--results", str(tmp_path)]
    assert bench.main([*args, "--no-attention-minutes", "0.02", "--name", "budgets"]) == 0
    record = json.loads((tmp_path / "budgets.json").read_text())
    budgets = {r["attention"]: r["train"]["budget_minutes"] for r in record["nll"]}
    assert budgets == {True: 0.01, False: 0.02}
    assert "0.01 min of training for DRAW with attention, 0.02 without" in record["budget"]
