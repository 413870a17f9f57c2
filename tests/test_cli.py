"""The pyrogen command: help, datasets, train -> evaluate -> sample, the demo."""

import json
import subprocess
import sys

import pytest

from pyrogen import cli
from pyrogen.registry import get_family, load_families


def test_every_flag_is_documented(capsys):
    for argv in (
        ["--help"],
        ["train", "--help"],
        ["train", "vae", "--help"],
        ["evaluate", "--help"],
        ["sample", "--help"],
        ["demo", "--help"],
        ["datasets", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "usage: pyrogen" in text
    parser = cli.build_parser()
    actions = []
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.dest == "help":
                continue
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
            elif action.option_strings:
                actions.append(action)
    assert actions and all(a.help for a in actions), [a.dest for a in actions if not a.help]


def test_family_flags_come_from_the_config(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "vae", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--layers",
        "--objective",
        "--num-particles",
        "--k",  # deprecated alias, kept for one release
        "--estimator",
        "--dataset",
        "--epochs",
        "--device",
        "--out",
    ):
        assert flag in text
    assert {"vae", "rbm", "dbm"} <= set(load_families())
    with pytest.raises(ValueError, match="unknown option"):
        get_family("vae").config(hidden=3)
    with pytest.raises(ValueError, match="registered"):
        get_family("gan2")


def test_datasets_lists_every_set(capsys, tmp_path):
    assert cli.main(["datasets", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("binarized_mnist", "mnist", "omniglot", "caltech101_silhouettes", "digits"):
        assert name in out
    assert "missing" in out


@pytest.mark.filterwarnings("ignore:PSIS k-hat")  # 20 samples from a 4-step model
def test_train_evaluate_sample_on_digits(tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "vae",
        "--dataset",
        "digits",
        "--layers",
        "1",
        "--num-particles",
        "3",
        "--epochs",
        "1",
        "--max-steps",
        "4",
        "--out",
        str(run),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert cli.main(args) == 0
    config = json.loads((run / "config.json").read_text())
    expected = {"layers": 1, "objective": "iwae", "num_particles": 3, "estimator": "iwae"}
    assert {k: config["config"].get(k) for k in expected} == expected
    assert (run / "checkpoint.pt").exists() and (run / "history.jsonl").exists()
    assert cli.main(["evaluate", str(run), "--num-samples", "20", "--limit", "30"]) == 0
    out = capsys.readouterr().out
    assert "test log-likelihood" in out
    record = json.loads((run / "eval.json").read_text())
    assert record["num_examples"] == 30 and record["num_samples"] == 20
    assert record["log_likelihood"] < 0 and record["nll"] == -record["log_likelihood"]
    png = tmp_path / "grid.png"
    assert cli.main(["sample", str(run), "--n", "16", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a different configuration into the same folder is refused, not overwritten
    with pytest.raises(ValueError, match="another run"):
        cli.main(args[:4] + ["--layers", "2"] + args[6:])


def test_demo_smoke_runs_on_shipped_digits(tmp_path, monkeypatch):
    # What `make demo` runs, at smoke size, with no data folder and no downloads.
    monkeypatch.setenv("PYROGEN_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("PYROGEN_NO_DOWNLOAD", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyrogen.cli",
            "demo",
            "--smoke",
            "--out",
            str(tmp_path / "demo"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "data set digits" in proc.stdout
    assert "test log-likelihood" in proc.stdout
    assert (tmp_path / "demo" / "samples.png").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the Python-level twins
def test_deprecated_flags_still_work(tmp_path, capsys):
    # --k (now --num-particles) and --hidden1/--hidden2 (now --hidden 500,1000) were in the
    # README: they keep working for one release, with a warning.
    run = tmp_path / "run"
    common = ["--dataset", "digits", "--max-steps", "1", "--no-progress", "--no-validate"]
    with pytest.warns(FutureWarning, match="--num-particles"):
        cli.main(["train", "vae", "--k", "2", "--out", str(run), *common])
    assert json.loads((run / "config.json").read_text())["config"]["num_particles"] == 2
    dbm = tmp_path / "dbm"
    args = ["train", "dbm", "--hidden1", "7", "--hidden2", "5", "--pretrain-epochs", "0"]
    with pytest.warns(FutureWarning, match="--hidden"):
        cli.main([*args, "--chains", "4", "--out", str(dbm), *common])
    assert json.loads((dbm / "config.json").read_text())["config"]["hidden"] == [7, 5]
    capsys.readouterr()
    with pytest.warns(FutureWarning, match="--num-samples"):
        cli.main(["evaluate", str(run), "--k", "3", "--limit", "5", "--no-progress"])
    assert json.loads((run / "eval.json").read_text())["num_samples"] == 3


def test_exact_families_refuse_a_sample_count(tmp_path):
    run = tmp_path / "fvsbn"
    cli.main(
        ["train", "fvsbn", "--dataset", "digits", "--max-steps", "1", "--out", str(run)]
        + ["--no-progress", "--no-validate"]
    )
    with pytest.raises(TypeError, match="exact"):
        cli.main(["evaluate", str(run), "--num-samples", "10", "--no-progress"])
    assert cli.main(["evaluate", str(run), "--limit", "10", "--no-progress"]) == 0


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="binarized_mnist"):
        cli.main(["train", "vae", "--dataset", "mnits", "--out", str(tmp_path), "--no-progress"])
