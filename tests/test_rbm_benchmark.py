"""``benchmarks/rbm.py --quality``: its AIS / RAISE bracket against exact log-likelihoods of
enumerable models, and a ``--quick`` run end to end (into a temporary results folder) whose
table has both columns, a bracket line per model, a seeded file name, and which the
leaderboard reads."""

import importlib
import json
import math
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pyrogen.distributions import DBM, BernoulliRBM
from pyrogen.distributions.energy import binary_states
from pyrogen.evaluate.energy import energy_log_likelihood

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
D = torch.float64


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("rbm"), importlib.import_module("leaderboard")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _available(name: str) -> bool:
    """Whether data set ``name``'s test split is on this machine (no download)."""
    try:
        from pyrogen.data import load

        load(name, "test", download=False)
    except Exception:  # noqa: BLE001 -- no data folder on this machine
        return False
    return True


def _draw(dist, n, seed):
    """``n`` exact samples of an enumerable distribution (and every state's log p)."""
    states = next(binary_states(dist.event_shape[-1], D))
    log_p = dist.unnormalized_log_prob(states)
    log_p = log_p - torch.logsumexp(log_p, 0)
    g = torch.Generator().manual_seed(seed)
    return states[torch.multinomial(log_p.exp(), n, replacement=True, generator=g)], log_p


def _models():
    g = torch.Generator().manual_seed(1)
    rbm = BernoulliRBM(
        torch.randn(10, 8, generator=g, dtype=D) * 1.0,
        torch.randn(10, generator=g, dtype=D) * 0.3,
        torch.randn(8, generator=g, dtype=D) * 0.3,
    )
    sizes = (8, 12, 5)  # log Z needs 2^12 or 2^13 states, -F(v) only 2^5
    weights = [torch.randn(a, b, generator=g, dtype=D) * 1.0 for a, b in zip(sizes, sizes[1:])]
    dbm = DBM(weights, [torch.randn(s, generator=g, dtype=D) * 0.3 for s in sizes])
    return {"rbm": (rbm, 0), "dbm": (dbm, 8)}  # max_enumeration: AIS for log Z


@pytest.mark.parametrize("name", ["rbm", "dbm"])
def test_bracket_contains_the_exact_log_likelihood_of_an_enumerable_model(bench, name):
    """The benchmark's bracket (AIS on 40 model samples, RAISE on the first 15 of them, AIS
    restricted to the same 15) on an RBM (10 x 8) and a DBM (8-12-5) whose log Z is
    estimated by AIS (enumeration switched off for it; the DBM's -F(v) is still exact, so
    its AIS end is not a mean-field bound): for every one of seeds 0-4 the exact mean
    log-likelihood of those 15 lies in [RAISE - 3 s.e., AIS + 3 s.e.] (Monte Carlo errors),
    and the restricted AIS end is exactly the mean of -F(v) - log Z-hat over those 15."""
    rbm_mod, _ = bench
    dist, max_enumeration = _models()[name]
    x, log_p_all = _draw(dist, 40, seed=2)
    exact = float((dist.unnormalized_log_prob(x[:15]) - torch.logsumexp(
        dist.unnormalized_log_prob(next(binary_states(dist.event_shape[-1], D))), 0
    )).mean())  # fmt: skip
    base = _draw(dist, 200, seed=3)[0]  # "training" data for the base rates
    dist.max_enumeration = max_enumeration
    for seed in range(5):
        ais = energy_log_likelihood(
            dist, x, num_chains=50, betas=100, base_data=base, seed=seed, progress=False
        )
        assert "mean-field" not in ais.estimator and ais.diagnostics["log_z_ess"] > 0
        args = SimpleNamespace(raise_examples=15, raise_chains=5, raise_betas=100, seed=seed)
        bracket = rbm_mod.bracket_for(dist, x, ais, args, base)
        assert bracket.optimistic.num_examples == bracket.conservative.num_examples == 15
        log_z_hat = ais.diagnostics["log_z"]
        own = float((dist.unnormalized_log_prob(x[:15]) - log_z_hat).mean())
        assert bracket.upper == pytest.approx(own, abs=1e-9)
        assert bracket.contains(exact, num_stderr=3), (seed, bracket.lower, exact, bracket.upper)
        line = rbm_mod.bracket_line(name, bracket)
        assert f"AIS (upper-ish, optimistic) {bracket.upper:.2f} ± " in line
        assert f"| RAISE (conservative) {bracket.lower:.2f} ± " in line
        assert "ESS median" in line and "/50, log-w std" in line


def test_brackets_overlap_is_the_interval_test(bench):
    """Two recorded brackets overlap when [RAISE - k s.e., AIS + k s.e.] intersect."""
    rbm_mod, _ = bench

    def b(lo, hi, se=0.5):
        return {"lower": lo, "upper": hi, "raise": {"mc_stderr": se}, "ais": {"mc_stderr": se}}

    assert rbm_mod.brackets_overlap(b(-90, -88), b(-89, -87))
    # ends widened by 2 x 0.5 each: [-91, -87] against [-86.5, -83]: apart
    assert not rbm_mod.brackets_overlap(b(-90, -88), b(-85.5, -84))
    # [-91, -87] against [-87.5, -84]: they overlap; by 1 s.e. [-90.5, -87.5], [-87, -84.5]
    assert rbm_mod.brackets_overlap(b(-90, -88), b(-86.5, -85))
    assert not rbm_mod.brackets_overlap(b(-90, -88), b(-86.5, -85), num_stderr=1)


@pytest.mark.skipif(not _available("binarized_mnist"), reason="binarized MNIST not in PYROGEN_DATA")
def test_quick_quality_run_prints_the_bracket_of_every_model(bench, tmp_path, capsys):
    rbm_mod, leaderboard = bench
    torch.manual_seed(0)
    assert rbm_mod.main(["--quality", "--quick", "--seed", "3", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "rbm_quality_seed3_smoke.json").read_text())
    assert record["seed"] == 3 and set(record["results"]) == {"rbm", "dbm", "dbn"}
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    assert "AIS (optimistic)" in header and "RAISE (conservative)" in header
    pattern = re.compile(
        r"^(.*): AIS \(upper-ish, optimistic\) (-?\d+\.\d+) ± (\d+\.\d+), ESS ([\d.]+)/(\d+), "
        r"log-w std [\d.]+ \| RAISE \(conservative\) (-?\d+\.\d+) ± (\d+\.\d+), ESS median "
        r"([\d.]+)/(\d+), log-w std median [\d.]+ \| gap (-?\d+\.\d+) nats on (\d+) test images"
    )
    found = {m.group(1): m for m in map(pattern.match, out.splitlines()) if m}
    assert len(found) == 2, out
    settings = record["settings"]
    for key, m in zip(("rbm", "dbm"), found.values()):
        b = record["results"][key]["bracket"]
        assert float(m.group(2)) == pytest.approx(b["upper"], abs=0.006)
        assert float(m.group(6)) == pytest.approx(b["lower"], abs=0.006)
        assert int(m.group(5)) == settings["ais_chains"] == b["ais"]["num_chains"]
        assert int(m.group(9)) == settings["raise_chains"] == b["raise"]["num_samples"]
        assert int(m.group(11)) == settings["raise_examples"] == b["raise"]["num_examples"]
        assert float(m.group(4)) <= settings["ais_chains"]
        assert float(m.group(10)) == pytest.approx(b["upper"] - b["lower"], abs=0.011)
    assert re.search(r"DBN .*: AIS on the top RBM .* \| RAISE: - on \d+ test images", out)
    # the leaderboard reads the file: one row per model, the bracket in the diagnostics
    rows, notes, _ = leaderboard.gather(tmp_path, include_untracked=True)
    families = {r.family: r for r in rows}
    assert set(families) == {"RBM (PCD)", "DBM", "DBN (greedy + up-down)"}, notes
    assert "bracket RAISE" in families["DBM"].diagnostics and "seed 3" in families["DBM"].budget
    assert all(math.isfinite(r.log_likelihood) for r in rows)


@pytest.mark.skipif(not _available("omniglot"), reason="needs the Omniglot files")
def test_quick_omniglot_dbm_run_binarizes_once_and_writes_samples_beside_data(bench, tmp_path):
    rbm_mod, leaderboard = bench
    train, test = rbm_mod.quality_data("omniglot")
    again, _ = rbm_mod.quality_data("omniglot")
    assert torch.equal(train, again)  # one fixed binarization, whatever the run seed
    assert set(train.unique().tolist()) == {0.0, 1.0} and train.shape[1] == test.shape[1] == 784
    # the ink fraction of the binary images is the grey images' mean (Bernoulli draws)
    from pyrogen.data import load

    grey = load("omniglot", "train").tensor().float()
    assert float(train.mean()) == pytest.approx(float(grey.mean()), abs=2e-3)
    args = ["--quality", "--quick", "--dataset", "omniglot", "--models", "dbm", "--samples"]
    assert rbm_mod.main([*args, "--seed", "3", "--results", str(tmp_path)]) == 0
    name = "rbm_quality_omniglot_dbm_seed3_smoke"
    record = json.loads((tmp_path / f"{name}.json").read_text())
    assert record["dataset"] == "omniglot" and set(record["results"]) == {"dbm"}
    assert Path(record["results"]["dbm"]["samples"]) == tmp_path / f"{name}_samples.png"
    assert (tmp_path / f"{name}_samples.png").stat().st_size > 0
    table = (tmp_path / f"{name}.md").read_text()
    assert table.startswith("Test NLL on Omniglot") and "Salakhutdinov & Hinton" not in table
    rows, notes, _ = leaderboard.gather(tmp_path, include_untracked=True)
    assert [r.dataset for r in rows] == ["Omniglot 28x28 (one fixed binarization)"], notes
    with pytest.raises(SystemExit):
        rbm_mod.main(["--quality", "--dataset", "cifar"])
