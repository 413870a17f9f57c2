"""``benchmarks/gan.py``: its pieces against exact answers, and a ``--smoke`` run end to end
(into a temporary results folder), so that the Wu et al. (2017) benchmark cannot rot."""

import copy
import importlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from pyrogen.infer import Adversarial

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def gan():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("gan")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _mnist_available() -> bool:
    try:
        from pyrogen.data import load

        load("mnist", split="test", download=False)
    except Exception:  # noqa: BLE001 -- no data folder on this machine
        return False
    return True


def test_dequantize_puts_each_level_in_its_own_bin(gan):
    # grey level k / 255 becomes (k + u) / 256 with u in [0, 1): floor(256 x) == k exactly
    levels = torch.arange(256.0).repeat(4)
    x = gan.dequantize(levels / 255.0, torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(x * 256), levels)
    assert x.min() >= 0 and x.max() < 1
    # the noise is not constant within a level (it is a fresh uniform per pixel)
    assert x[levels == 7].unique().numel() == 4


def test_ppca_fit_is_the_closed_form_maximum_likelihood(gan, float64):
    # Tipping & Bishop: the model covariance W W' + s^2 I keeps the top-d eigenpairs of the
    # sample covariance and replaces the others by their mean s^2 (to 1e-10)
    torch.manual_seed(0)
    X = torch.randn(300, 6) @ torch.randn(6, 6)
    m = gan.fit_ppca(X, 2)
    S = torch.cov((X - X.mean(0)).T)
    evals = torch.linalg.eigvalsh(S).flip(0)
    C = m.weight @ m.weight.T + m.noise_scale**2 * torch.eye(6)
    model_evals = torch.linalg.eigvalsh(C).flip(0)
    expected = torch.cat([evals[:2], evals[2:].mean().expand(4)])
    assert torch.allclose(model_evals, expected, atol=1e-10)
    assert torch.allclose(m.bias, X.mean(0), atol=1e-12)


def test_hand_written_step_makes_the_same_update_as_the_learner(gan, float64):
    # the speed comparison compares like with like: from one initialisation and one seed,
    # two steps of the hand-written loop and of Adversarial leave bitwise equal weights
    torch.manual_seed(0)
    generator, disc = gan.Generator.wu(10), gan.discriminator()
    hand_g, hand_d = copy.deepcopy(generator.network), copy.deepcopy(disc)
    learner = Adversarial(generator, disc, lr=gan.GAN_LR)
    x = torch.rand(8, 784)
    hand = gan.hand_gan_step(hand_g, hand_d, 10, x)
    for _ in range(2):
        torch.manual_seed(1)
        learner.step(x)
        torch.manual_seed(1)
        hand()
    for a, b in zip(generator.network.parameters(), hand_g.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(disc.parameters(), hand_d.parameters()):
        assert torch.equal(a, b)
    assert any((p.grad is not None) for p in hand_g.parameters())


def test_samples_are_seeded_decoder_means_and_eval_mode_is_restored(gan):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Dropout(0.5))
    net.train()
    a = gan.draw_samples(net, 3, 2500, seed=4)
    b = gan.draw_samples(net, 3, 2500, seed=4)
    assert a.shape == (2500, 5) and torch.equal(a, b)  # seeded; dropout off (eval mode)
    assert net.training  # and the module's own mode is given back
    z = torch.randn(1000, 3, generator=torch.Generator().manual_seed(4))
    # the first batch of 1000 is the decoder (in eval mode) at the seed's first 1000 latents
    assert torch.allclose(a[:1000], net.eval()(z), atol=1e-6)
    assert not torch.equal(a, gan.draw_samples(net, 3, 2500, seed=5))


def test_ordering_needs_the_vae_above_both(gan):
    rows = [
        {"kind": "VAE", "latent_dim": 10, "ais_mean": 5.0},
        {"kind": "GAN", "latent_dim": 10, "ais_mean": 4.0},
        {"kind": "GMMN", "latent_dim": 10, "ais_mean": 6.0},
        {"kind": "VAE", "latent_dim": 50, "ais_mean": 9.0},
        {"kind": "GAN", "latent_dim": 50, "ais_mean": 1.0},
        {"kind": "GMMN", "latent_dim": 50, "ais_mean": 2.0},
    ]
    assert gan.ordering(rows) == {"10": False, "50": True}
    assert gan.ordering(rows[1:]) == {"10": None, "50": True}


@pytest.mark.skipif(not _mnist_available(), reason="MNIST not found (set PYROGEN_DATA)")
def test_smoke_run_writes_every_table(gan, tmp_path):
    assert gan.main(["--smoke", "--results", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "gan_smoke.json").read_text())
    assert record["mode"] == "smoke"
    rows = {(r["kind"], r["latent_dim"]): r for r in record["rows"]}
    assert set(rows) == {(k, d) for k in ("GAN", "GMMN", "VAE") for d in (10, 50)}
    for key, r in rows.items():
        if "error" in r:  # only the VAE may be missing (VAE.wu not in this checkout)
            assert key[0] == "VAE", r
            continue
        assert r["sigma"] in gan.MODES["smoke"]["sigma_grid"]
        assert max(r["sigma_scores"].values()) == r["sigma_scores"][str(r["sigma"])]
        for name in ("ais_mean", "ais_stderr", "bdmc_forward", "bdmc_reverse", "bdmc_gap"):
            assert math.isfinite(r[name]), (key, name)
        assert r["bdmc_gap"] == pytest.approx(r["bdmc_reverse"] - r["bdmc_forward"])
        assert r["train"]["steps"] >= 1
    assert set(record["ordering"]) == {"10", "50"}
    check = record["linear_gaussian"]
    assert [run["label"] for run in check["runs"]] == ["table settings", "check"]
    assert all(math.isfinite(run["exact"]) and math.isfinite(run["z"]) for run in check["runs"])
    speed = record["speed"]
    assert [r["latent_dim"] for r in speed] == [10, 50]
    assert all(r["ms_pyrogen"] > 0 and r["ms_hand"] > 0 for r in speed)
    for key, r in rows.items():
        if "error" not in r:  # the sample scores of every model
            assert math.isfinite(r["parzen_mean"]) and r["parzen_bandwidth"] > 0, key
            assert r["frechet"] >= 0, key
    assert math.isfinite(record["real_data_frechet"])
    iwae = record["iwae_table1"]
    labels = [e["label"] for e in iwae["estimates"]]
    assert labels[0].startswith("IWAE bound") and labels[2].startswith("AIS from the encoder")
    assert all(math.isfinite(e["mean"]) and e["mean"] < 0 for e in iwae["estimates"])
    assert iwae["ais_minus_iwae"] == pytest.approx(
        iwae["estimates"][2]["mean"] - iwae["estimates"][1]["mean"]
    )
    table = (tmp_path / "gan_smoke.md").read_text()
    assert "| GAN-10 |" in table and "991.4 ± 6.5" in table
    assert "225 ± 2 (GAN)" in table and "Fréchet" in table and "-85.68" in table
    assert "Linear-Gaussian check" in table and "hand-written (ms)" in table
