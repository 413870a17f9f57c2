"""``--precision bf16`` and ``--compile`` (:mod:`pyrogen.accelerate`): bfloat16 autocast and
``torch.compile`` inside the networks only; log-weights, evaluators and losses stay in full
precision, a bf16 run's loss stays near float32's, a compiled run's equals eager's, and where
compilation fails or there is no network a warning says so and the run goes on eagerly."""

import json

import pytest
import torch

from pyrogen import cli
from pyrogen.accelerate import AccelerationWarning, accelerate, full_precision, network_modules
from pyrogen.evaluate.importance import example_log_weights, importance_log_likelihood
from pyrogen.infer import IWAE
from pyrogen.infer._weights import compute_log_weights, run_particles
from pyrogen.models import VAE
from pyrogen.registry import get_family
from pyrogen.runs import data_info
from pyrogen.train import SVILearner, train

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def _data(n=200, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(4, d, generator=g)  # four prototypes: something to learn
    which = torch.randint(0, 4, (n,), generator=g)
    return (torch.rand(n, d, generator=g) < probs[which]).float()


def _vae(seed=0, d=16):
    torch.manual_seed(seed)
    return VAE(d, (4,), ((32,),))


# ------------------------------------------------------------------ what stays in full precision


def test_log_weights_stay_float32_under_autocast():
    x, vae = _data(20), _vae()
    with torch.autocast(**BF16):
        assert vae.decoder(torch.zeros(2, 4)).dtype == torch.bfloat16  # autocast is on
        model_sites, guide_sites = run_particles(vae.model, vae.guide, (x,), {}, 5, 1)
        lw = compute_log_weights(model_sites, guide_sites, 1)
        assert lw.log_p.dtype == lw.log_q.dtype == lw.log_weights.dtype == torch.float32
        loss = IWAE(5, max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x)
        assert loss.dtype == torch.float32
        assert example_log_weights(vae.model, vae.guide, x, 8, 8, 1).dtype == torch.float64


@pytest.mark.parametrize("family", ["vae", "nade", "rbm"])
@pytest.mark.filterwarnings("ignore:PSIS k-hat")
def test_evaluators_ignore_a_callers_autocast(family):
    # importance sampling, exact and AIS give the same numbers, to the bit, inside autocast
    x = _data(20)
    fam = get_family(family)
    config = fam.config(**fam.smoke_config)
    torch.manual_seed(0)
    model = fam.build(config, data_info(x))
    options = {} if fam.sample_option is None else {fam.sample_option: 10}
    results = []
    for on in (False, True):
        torch.manual_seed(1)
        with torch.autocast(**BF16, enabled=on):
            results.append(fam.evaluate(model, config, x, **options))
    plain, autocast = results
    assert autocast.per_example.dtype == torch.float64
    assert torch.equal(plain.per_example, autocast.per_example)


@pytest.mark.filterwarnings("ignore:PSIS k-hat")
def test_importance_results_are_float_under_autocast():
    x, vae = _data(20), _vae()
    with torch.autocast(**BF16):
        ll = importance_log_likelihood(vae.model, vae.guide, x, 16, progress=False)
    assert ll.per_example.dtype == torch.float64 and ll.ess.dtype == torch.float64


def test_full_precision_turns_autocast_off_inside():
    @full_precision
    def product(a):
        return a @ a

    a = torch.randn(4, 4)
    with torch.autocast(**BF16):
        assert (a @ a).dtype == torch.bfloat16
        assert product(a).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")  # restored after the call


# ------------------------------------------------------------------ bf16 training


def test_networks_are_the_plain_torch_submodules():
    assert [name for name, _ in network_modules(_vae())] == ["encoders.0", "decoder"]
    fam = get_family("rbm")
    rbm = fam.build(fam.config(**fam.smoke_config), data_info(_data(10)))
    assert network_modules(rbm) == []


def test_bf16_runs_the_networks_in_bfloat16_and_returns_float32():
    vae = _vae()
    accelerate(vae, "bf16")
    seen = []
    vae.decoder[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    z = torch.randn(3, 4)
    vae.train()
    assert vae.decoder(z).dtype == torch.float32 and seen[-1] == torch.bfloat16
    vae.eval()  # validation and evaluation: full precision
    assert vae.decoder(z).dtype == torch.float32 and seen[-1] == torch.float32
    assert torch.equal(vae.decoder(z), _vae().decoder(z))
    accelerate(vae, "fp32")  # undone
    vae.train()
    vae.decoder(z)
    assert seen[-1] == torch.float32


def test_bf16_training_loss_stays_near_float32():
    # 60 steps of IWAE (k = 5) on synthetic binary data, same seed, same batches. Stated
    # tolerance: the mean training loss of the last 20 steps within 2% of float32's (bf16
    # keeps 8 bits of mantissa in the networks; the log-weights stay float32).
    data = _data(400)
    losses = {}
    for precision in ("fp32", "bf16"):
        learner = SVILearner(_vae(), IWAE(5, max_plate_nesting=1), lr=1e-2)
        rows = []
        train(
            learner,
            data,
            epochs=3,
            batch_size=20,
            seed=0,
            progress=False,
            log_every=1,
            precision=precision,
            callback=rows.append,
        )
        losses[precision] = [r["loss"] for r in rows if r["kind"] == "train"]
    fp32, bf16 = (torch.tensor(losses[p][-20:]).mean().item() for p in ("fp32", "bf16"))
    assert len(losses["bf16"]) == 60
    assert losses["fp32"][-1] < losses["fp32"][0]  # it learned something
    print(f"mean loss of the last 20 steps: fp32 {fp32:.4f}, bf16 {bf16:.4f}")
    assert abs(bf16 - fp32) / abs(fp32) < 0.02, (fp32, bf16)


def test_bf16_without_a_network_warns_and_trains_in_float32():
    fam = get_family("rbm")
    config = fam.config(**fam.smoke_config)
    x = _data(40)
    rbm = fam.build(config, data_info(x))
    learner = fam.learner(rbm, config, 1e-2)
    with pytest.warns(AccelerationWarning, match="rbm family has no torch network"):
        train(learner, x, batch_size=20, progress=False, precision="bf16", name="rbm family")
    assert all(p.dtype == torch.float32 for p in rbm.parameters())


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        accelerate(_vae(), "fp16")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "vae", "--out", "x", "--precision", "fp16"])


def test_cli_flags_reach_the_run_folder(tmp_path):
    out = tmp_path / "run"
    args = ["train", "vae", "--dataset", "digits", "--layers", "1", "--num-particles", "2"]
    args += ["--epochs", "1", "--max-steps", "3", "--no-validate", "--device", "cpu"]
    args += ["--no-progress", "--precision", "bf16", "--out", str(out)]
    assert cli.main(args) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["precision"] == "bf16" and record["compile"] is False


# ------------------------------------------------------------------ compile


def _compiled_by(backend):
    real = torch.compile
    return lambda fn, **kw: real(fn, backend=backend, **kw)


def _steps(precision="fp32", compile=False, steps=4):
    vae = _vae()
    accelerate(vae, precision, compile, name="vae family")
    learner = SVILearner(vae, IWAE(3, max_plate_nesting=1), lr=1e-2)
    data = _data(20 * steps)
    torch.manual_seed(3)
    return [float(learner.step(data[i * 20 : (i + 1) * 20])["loss"]) for i in range(steps)]


def test_compiled_networks_give_the_eager_loss(monkeypatch):
    # Dynamo captures the networks (with the autocast wrapper); the "aot_eager" backend keeps
    # this test quick (no C++ code generation; see the slow test for inductor)
    eager = _steps()
    monkeypatch.setattr(torch, "compile", _compiled_by("aot_eager"))
    torch._dynamo.reset()
    compiled = _steps(compile=True)
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_a_failing_compile_warns_and_runs_eagerly(monkeypatch):
    eager = _steps()

    def broken(fn, **kw):
        def call(*args, **kwargs):
            raise RuntimeError("backend exploded")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(AccelerationWarning, match=r"vae family.*backend exploded.*eagerly"):
        fallen_back = _steps(compile=True)
    assert fallen_back == eager


def test_compile_without_a_network_warns():
    fam = get_family("rbm")
    rbm = fam.build(fam.config(**fam.smoke_config), data_info(_data(10)))
    with pytest.warns(AccelerationWarning, match="--compile: rbm family has no torch network"):
        assert accelerate(rbm, compile=True, name="rbm family") == []


def test_copies_compile_their_own_network(monkeypatch):
    import copy

    monkeypatch.setattr(torch, "compile", _compiled_by("eager"))
    vae = _vae()
    accelerate(vae, "fp32", compile=True)
    twin = copy.deepcopy(vae)
    with torch.no_grad():
        twin.decoder[0].weight.add_(1.0)
    z = torch.randn(2, 4)
    assert not torch.equal(vae.decoder(z), twin.decoder(z))


@pytest.mark.slow
def test_inductor_compiled_run_matches_eager():
    torch._dynamo.reset()
    eager = _steps(steps=3)
    compiled = _steps(compile=True, steps=3)
    assert compiled == pytest.approx(eager, rel=1e-4)


def _pcd_rbm(seed=0, d=16):
    from pyrogen.infer import ContrastiveDivergence
    from pyrogen.models import RBM

    torch.manual_seed(seed)
    rbm = RBM(d, 8, init_scale=0.1)
    loss = ContrastiveDivergence(k=1, persistent=True, num_chains=20, seed=3)
    return SVILearner(rbm, loss, optimizer=torch.optim.SGD(rbm.parameters(), lr=0.01))


def test_fp64_trains_the_whole_model_in_float64_and_resumes_exactly(tmp_path):
    """precision="fp64": parameters, chains and batches are float64 (float32 data and a
    float32-built model in), a float64 checkpoint resumes into a freshly built float32
    learner without rounding, and the run equals a model built in float64 from the start."""
    data = _data().round()
    options = dict(batch_size=20, seed=1, progress=False, epochs=1, checkpoint_every=1)
    straight = _pcd_rbm()
    train(straight, data, max_steps=6, precision="fp64", **options)
    params = dict(straight.module.named_parameters())
    assert all(p.dtype == torch.float64 for p in params.values())
    assert straight.loss.chains["v"][0].dtype == torch.float64

    train(_pcd_rbm(), data, max_steps=3, precision="fp64", out=tmp_path, **options)
    resumed = _pcd_rbm()
    train(resumed, data, max_steps=6, precision="fp64", out=tmp_path, **options)
    for name, p in resumed.module.named_parameters():
        torch.testing.assert_close(p, params[name], rtol=0, atol=0, msg=name)

    by_hand = _pcd_rbm()
    by_hand.module.double()
    train(by_hand, data.double(), max_steps=6, **options)
    for name, p in by_hand.module.named_parameters():
        torch.testing.assert_close(p, params[name], rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="precision"):
        train(_pcd_rbm(), data, max_steps=1, precision="fp16", **options)
