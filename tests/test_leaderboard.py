"""benchmarks/leaderboard.py on a folder of small fake result files: the rows it builds from
two layouts, their order, the published column, the note on a file without a
log-likelihood, and that only committed files are read inside a git work tree."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _leaderboard():
    spec = importlib.util.spec_from_file_location(
        "leaderboard", ROOT / "benchmarks" / "leaderboard.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["leaderboard"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


MACHINE = {"cpu": "test", "date": "2026-01-02 03:04:05"}


def _ll(value, stderr, estimator, **extra):
    return {
        "log_likelihood": value,
        "nll": -value,
        "stderr": stderr,
        "mc_stderr": 0.0,
        "num_examples": 100,
        "num_samples": 0,
        "estimator": estimator,
        "bound": False,
        "khat_share_above_0.7": None,
        **extra,
    }


def _write(folder: Path):
    autoregressive = {
        "machine": MACHINE,
        "results": {
            "nade": {
                "config": {"hidden": 500},
                "budget": "2 epochs (Adam, lr 0.005), batch 20, 3.0 min",
                "train_images": 1000,
                **_ll(-90.5, 1.0, "exact"),
            },
            "fvsbn": {"config": {}, "budget": "1 epochs", **_ll(-100.25, 2.0, "exact")},
        },
    }
    vae = {
        "machine": {**MACHINE, "commit": "abc1234"},
        "args": {"dataset": "binarized_mnist", "layers": 1, "objective": "iwae"}
        | {"num_particles": 5},
        "epochs": 3,
        "steps": 1500,
        "train_seconds_this_invocation": 120.0,
        "paper_nll": 85.54,
        **_ll(-95.0, 1.5, "importance sampling", num_samples=5000, mc_stderr=0.05)
        | {"khat_share_above_0.7": 0.25, "ess_median": 40.0},
    }
    speed = {"machine": MACHINE, "seconds_per_epoch": {"pyrogen": 4.7}}
    (folder / "autoregressive.json").write_text(json.dumps(autoregressive))
    (folder / "vae_quality_binarized_mnist_l1_iwae_k5.json").write_text(json.dumps(vae))
    (folder / "rbm_speed.json").write_text(json.dumps(speed))


def _table(text):
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:]
    ]


def test_leaderboard_rows_from_two_layouts(tmp_path, capsys):
    _write(tmp_path)
    assert _leaderboard().main(["--results", str(tmp_path)]) == 0
    text = (tmp_path / "leaderboard.md").read_text()
    assert text in capsys.readouterr().out
    rows = _table(text)
    # one data set, sorted by log-likelihood (best first)
    assert [r["family"] for r in rows] == [
        "NADE (hidden 500)",
        "IWAE (1 stochastic layer, IWAE k=5)",
        "FVSBN",
    ]
    nade, iwae, fvsbn = rows
    assert {r["data set"] for r in rows} == {"binarized MNIST (fixed binarization)"}
    assert nade["test log-likelihood (nats)"] == "-90.50 ± 1.00"
    assert nade["estimator"] == "exact, 100 test images" and nade["bound"] == "no"
    assert nade["training budget"] == (
        "2 epochs (Adam, lr 0.005), batch 20, 3.0 min; 1000 training images"
    )
    assert nade["published"] == "-" and nade["date"] == "2026-01-02 03:04:05"
    assert nade["source"] == "autoregressive"
    assert iwae["test log-likelihood (nats)"] == "-95.00 ± 1.50 (MC ± 0.05)"
    assert iwae["estimator"] == "importance sampling, K=5000, 100 test images"
    assert iwae["published"] == "-85.54 (Burda et al. 2016, dynamic binarization)"
    assert iwae["diagnostics"] == "k-hat > 0.7: 25%; ESS median 40.0"
    assert iwae["training budget"] == "3 epochs (1500 steps), 2.0 min"
    assert iwae["date"] == "2026-01-02 03:04:05 (abc1234)"
    assert fvsbn["test log-likelihood (nats)"] == "-100.25 ± 2.00"
    assert "rbm_speed.json: skipped, no log-likelihood in it: RBM epoch time" in text


def test_only_committed_files_inside_a_git_work_tree(tmp_path):
    _write(tmp_path)
    git = ["git", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "add", "autoregressive.json"], cwd=tmp_path, check=True)
    module = _leaderboard()
    rows, notes, untracked = module.gather(tmp_path)
    assert sorted(r.family for r in rows) == ["FVSBN", "NADE (hidden 500)"]
    assert untracked == ["rbm_speed.json", "vae_quality_binarized_mnist_l1_iwae_k5.json"]
    assert notes == []
    rows, notes, untracked = module.gather(tmp_path, include_untracked=True)
    assert len(rows) == 3 and untracked == [] and len(notes) == 1


def test_gan_layout(tmp_path):
    # benchmarks/gan.py: rows with an "ais" record, a BDMC gap, published [mean, stderr]
    record = {
        "machine": MACHINE,
        "rows": [
            {
                "kind": "GAN",
                "latent_dim": 10,
                "sigma": 0.05,
                "train": {"epochs": 3, "steps": 600, "batch_size": 100, "seconds": 90.0},
                "ais": _ll(310.0, 4.0, "AIS (16 chains, 1000 temperatures)", num_samples=16),
                "bdmc_gap": 2.5,
            },
            {"kind": "VAE", "latent_dim": 10, "error": "not trained"},
        ],
        "published": {"GAN-10": [328.8, 5.5]},
    }
    (tmp_path / "gan.json").write_text(json.dumps(record))
    (row,), notes, _ = _leaderboard().gather(tmp_path)
    cells = dict(zip(_leaderboard().HEADER, row.cells()))
    assert cells["family"] == "GAN (Wu et al. decoder, 10-d)"
    assert cells["data set"] == "MNIST dequantized (density)"
    assert cells["test log-likelihood (nats)"] == "310.00 ± 4.00"
    assert cells["estimator"] == "AIS (16 chains, 1000 temperatures), 100 test images"
    assert cells["diagnostics"] == "sigma 0.05; BDMC gap 2.5"
    assert cells["published"] == "328.8 ± 5.5 (Wu et al. 2017)"
    assert cells["training budget"] == "3 epochs (600 steps, batch 100), 1.5 min"
    assert notes == []


def test_gan_layout_reads_the_iwae_table(tmp_path):
    # benchmarks/gan.py's Wu et al. Table 1 in small: IWAE bounds (bounds) and AIS (not one)
    record = {
        "machine": MACHINE,
        "rows": [],
        "iwae_table1": {
            "epochs": 5,
            "steps": 2500,
            "particles": 5,
            "train_seconds": 120.0,
            "test_images": 100,
            "published": {"AIS": -85.68, "IWAE bound": -86.90},
            "estimates": [
                {"label": "IWAE bound, k = 5000", "mean": -95.0, "stderr": 2.0, "mc_stderr": 0.1},
                {"label": "AIS from the encoder", "mean": -94.5, "stderr": 2.0, "mc_stderr": 0.2},
            ],
        },
    }
    (tmp_path / "gan.json").write_text(json.dumps(record))
    rows, notes, _ = _leaderboard().gather(tmp_path)
    rows = sorted(rows, key=lambda r: not r.bound)  # the table sorts by log-likelihood
    assert [r.bound for r in rows] == [True, False]
    cells = [dict(zip(_leaderboard().HEADER, r.cells())) for r in rows]
    assert cells[0]["data set"] == "binarized MNIST (fixed binarization)"
    assert cells[0]["published"] == "-86.90 (Wu et al. 2017, Table 1)"
    assert cells[1]["published"] == "-85.68 (Wu et al. 2017, Table 1)"
    assert cells[1]["test log-likelihood (nats)"] == "-94.50 ± 2.00 (MC ± 0.20)"
    assert cells[1]["estimator"] == "AIS from the encoder, 100 test images"
    assert cells[0]["training budget"] == "5 epochs (2500 steps, batch 100), 2.0 min"


def test_draw_layout(tmp_path):
    # benchmarks/draw.py: DRAW rows on binarized MNIST with Gregor et al.'s upper bounds on
    # the NLL, and alignDRAW's conditional log-likelihood with its held-out caption fidelity
    train = {"config": {"steps": 16}, "steps": 265, "epochs": 0.53, "batch_size": 100}
    record = {
        "machine": MACHINE,
        "published": {"attention": {"nll_at_most": 80.97}, "no_attention": {}},
        "nll": [
            {
                "attention": True,
                "train": {**train, "train_seconds": 420.0},
                "importance": _ll(-150.0, 4.0, "importance sampling"),
            },
            {
                "attention": False,
                "train": {**train, "train_seconds": 60.0},
                "importance": _ll(-117.0, 3.0, "importance sampling"),
            },
        ],
        "align_draw": {
            "steps": 130,
            "train_seconds": 384.0,
            "importance": _ll(-537.6, 16.7, "importance sampling"),
            "fidelity": {"held_out": {"match": 0.25}},
        },
    }
    (tmp_path / "draw.json").write_text(json.dumps(record))
    rows, notes, _ = _leaderboard().gather(tmp_path)
    cells = {r.family: dict(zip(_leaderboard().HEADER, r.cells())) for r in rows}
    assert set(cells) == {
        "DRAW (attention, T=16)",
        "DRAW (no attention, T=16)",
        "alignDRAW, log p(x | caption)",
    }
    attention = cells["DRAW (attention, T=16)"]
    assert attention["published"] == "<= -80.97 (Gregor et al. 2015)"
    assert attention["training budget"] == "0.53 epochs (265 steps, batch 100), 7.0 min"
    assert attention["data set"] == "binarized MNIST (fixed binarization)"
    assert cells["DRAW (no attention, T=16)"]["published"] == "-"
    align = cells["alignDRAW, log p(x | caption)"]
    assert align["test log-likelihood (nats)"] == "-537.60 ± 16.70"
    assert "held-out caption fidelity 0.25" in align["diagnostics"]
