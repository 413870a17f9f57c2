"""The run layer (pyrogen.runs): what a run builds from, what its folder records."""

from __future__ import annotations

import json

import torch
from conftest import requires_data

from pyrogen.data import load
from pyrogen.registry import DataInfo
from pyrogen.runs import Run, RunConfig


def test_a_subset_trains_the_model_built_from_the_whole_split(tmp_path):
    config = RunConfig("fvsbn", dataset="digits", epochs=1, train_limit=50, validate=False)
    run = Run(config, tmp_path)
    run.train(progress=False)
    full = load("digits", "train").tensor()
    torch.testing.assert_close(run.info.pixel_mean, full.float().mean(0))
    assert run.info.image_shape == (8, 8) and run.result.step == 1  # 50 examples, batch 100
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["train_limit"] == 50 and record["train_split"] == "train"
    assert record["image_shape"] == [8, 8] and record["num_features"] == 64


@requires_data
def test_the_training_split_is_recorded_and_used(tmp_path):
    config = RunConfig(
        "fvsbn", dataset="binarized_mnist", train_split="valid", max_steps=1, validate=True
    )
    run = Run(config, tmp_path)
    assert len(run.split("valid")) == 10_000
    result = run.train(progress=False)
    # training on "valid" leaves nothing to validate on
    assert [r["kind"] for r in result.history] == ["train"]
    assert json.loads((tmp_path / "config.json").read_text())["train_split"] == "valid"
    loaded = Run.load(tmp_path)
    assert loaded.config.train_split == "valid"


def test_custom_data_and_an_unregistered_name_keep_a_run_folder(tmp_path):
    x = torch.bernoulli(torch.full((40, 6), 0.3))
    info = DataInfo(6, (2, 3), x.mean(0), "my_data")
    run = Run(RunConfig("fvsbn", dataset="my_data", epochs=1, batch_size=10), tmp_path, info=info)
    run.train(x, progress=False)
    result = run.evaluate(x[:8])
    assert result.num_examples == 8 and result.is_exact
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["split"] == "custom" and record["binarization"] is None
    assert Run.load(tmp_path).model.num_features == 6


def test_auto_binarization_follows_the_observation_model():
    """On a grey-level set, "auto" binarizes for Bernoulli models and keeps the grey levels
    for Gaussian observations; an explicit choice wins; binary sets stay as stored."""
    from pyrogen.runs import Run, RunConfig

    def binarization(family, config, **kw):
        return Run(RunConfig(family, config, dataset=kw.pop("dataset", "mnist"), **kw)).binarization

    assert binarization("vae", {}) == "dynamic"
    assert binarization("vae", {"observation": "gaussian"}) is None
    assert binarization("gan", {}) is None and binarization("gmmn", {}) is None
    assert binarization("gan", {}, binarize="threshold") == "threshold"
    assert binarization("vae", {}, binarize="none") is None
    assert binarization("vae", {"observation": "gaussian"}, dataset="binarized_mnist") is None
