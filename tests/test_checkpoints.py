"""Checkpoints you can trust: the previous checkpoint is kept beside the latest one, a
damaged latest one falls back to it with a warning, and when neither can be read the error
names the file and the way out -- through the engine, :class:`pyrogen.runs.Run` and the
command line, as a user meets it (a run folder whose ``checkpoint.pt`` was truncated by a
partial copy)."""

import os

import pytest
import torch

import pyrogen.train as engine
from pyrogen import cli
from pyrogen.runs import Run, RunConfig
from pyrogen.train import (
    CheckpointError,
    CheckpointWarning,
    load_checkpoint,
    previous_checkpoint,
    save_checkpoint,
)


def _truncate(path, keep=0.5):
    """What a partial copy leaves: the first part of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_the_previous_checkpoint_is_kept_beside_the_latest(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]
    save_checkpoint({"step": 2}, path)
    save_checkpoint({"step": 3}, path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.prev.pt", "checkpoint.pt"]
    assert previous_checkpoint(path) == tmp_path / "checkpoint.prev.pt"
    assert load_checkpoint(path)["step"] == 3
    assert load_checkpoint(previous_checkpoint(path))["step"] == 2


def test_a_truncated_latest_falls_back_to_the_previous_with_a_warning(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1, "w": torch.arange(100)}, path)
    save_checkpoint({"step": 2, "w": torch.arange(100)}, path)
    _truncate(path)
    with pytest.warns(CheckpointWarning, match=r"checkpoint\.pt.*checkpoint\.prev\.pt"):
        state = load_checkpoint(tmp_path)
    assert state["step"] == 1
    # the damaged file does not push the good previous one out at the next save
    save_checkpoint({"step": 3}, path)
    assert load_checkpoint(previous_checkpoint(path))["step"] == 1
    assert load_checkpoint(path)["step"] == 3


def test_a_missing_latest_falls_back_too(tmp_path):
    # a crash between the two renames of save_checkpoint leaves only the previous file
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)
    save_checkpoint({"step": 2}, path)
    path.unlink()
    with pytest.warns(CheckpointWarning, match="missing"):
        assert load_checkpoint(path)["step"] == 1


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)
    _truncate(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "checkpoint.prev.pt" in message
    assert "delete the run folder" in message and "restore" in message
    # both damaged
    save_checkpoint({"step": 1}, tmp_path / "other.pt")
    save_checkpoint({"step": 2}, tmp_path / "other.pt")
    _truncate(tmp_path / "other.pt")
    _truncate(tmp_path / "other.prev.pt", keep=0.3)
    with pytest.raises(CheckpointError, match=r"other\.pt.*other\.prev\.pt"):
        load_checkpoint(tmp_path / "other.pt")


def test_no_checkpoint_at_all_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------ as a user meets it


def _config(**kw):
    options = dict(
        dataset="digits",
        epochs=2,
        batch_size=50,
        device="cpu",
        validate=False,
        train_limit=200,
        seed=0,
    )
    options.update(kw)
    return RunConfig("vae", {"layers": 1, "num_particles": 2}, **options)


def _trained_folder(tmp_path):
    run = Run(_config(checkpoint_every=2, max_steps=4), tmp_path / "run")
    run.train(progress=False)
    folder = tmp_path / "run"
    assert (folder / "checkpoint.prev.pt").exists()
    return folder


def test_run_resumes_from_the_previous_checkpoint(tmp_path):
    folder = _trained_folder(tmp_path)  # latest: step 4, previous: step 2
    _truncate(folder / "checkpoint.pt")
    with pytest.warns(CheckpointWarning, match="step 2"):
        loaded = Run.load(folder)
    assert loaded.model is not None
    run = Run(_config(checkpoint_every=2, max_steps=6), folder)
    with pytest.warns(CheckpointWarning):
        result = run.train(progress=False)
    assert result.step == 6
    assert load_checkpoint(folder)["step"] == 6  # the damaged file was replaced


def test_run_with_no_readable_checkpoint_stops_with_the_way_out(tmp_path):
    folder = _trained_folder(tmp_path)
    _truncate(folder / "checkpoint.pt")
    _truncate(folder / "checkpoint.prev.pt")
    with pytest.raises(CheckpointError, match="delete the run folder"):
        Run.load(folder)
    with pytest.raises(CheckpointError, match=str(folder / "checkpoint.pt")):
        Run(_config(max_steps=6), folder).train(progress=False)


@pytest.mark.filterwarnings("ignore:PSIS k-hat")
def test_cli_evaluate_and_train_on_a_truncated_checkpoint(tmp_path, capsys):
    folder = _trained_folder(tmp_path)
    _truncate(folder / "checkpoint.pt")
    evaluate = ["evaluate", str(folder), "--num-samples", "5", "--limit", "10", "--no-progress"]
    with pytest.warns(CheckpointWarning, match="previous"):
        assert cli.main(evaluate) == 0
    assert "test log-likelihood" in capsys.readouterr().out
    _truncate(folder / "checkpoint.prev.pt")
    assert cli.main(evaluate) == 1
    err = capsys.readouterr().err
    assert "pyrogen: error: cannot read the checkpoint" in err
    assert "Traceback" not in err and "--out" in err
    train = [
        "train",
        "vae",
        "--dataset",
        "digits",
        "--layers",
        "1",
        "--num-particles",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--max-steps",
        "6",
        "--no-validate",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(folder),
    ]
    assert cli.main(train) == 1
    assert "checkpoint.pt" in capsys.readouterr().err


def test_save_without_keeping_the_previous(tmp_path):
    path = tmp_path / "c.pt"
    engine.save_checkpoint({"step": 1}, path, keep_previous=False)
    engine.save_checkpoint({"step": 2}, path, keep_previous=False)
    assert os.listdir(tmp_path) == ["c.pt"]
