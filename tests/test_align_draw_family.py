"""The align_draw family and the run layer's conditional data sets (pyrogen.runs): an
example is an image and a caption; training, evaluation and sampling pass the captions as
the model's context, binarization touches the images only."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import requires_data
from pyro.infer import TraceMeanField_ELBO

from pyrogen import cli
from pyrogen.data import load_mnist_captions
from pyrogen.infer import IWAE
from pyrogen.registry import get_family
from pyrogen.runs import (
    ConditionalBatch,
    ConditionalDataInfo,
    ConditionalDataset,
    Run,
    RunConfig,
    conditional_split,
    load_splits,
)

pytestmark = requires_data

TINY = {
    "steps": 2,
    "latent_dim": 3,
    "encoder_size": 8,
    "decoder_size": 8,
    "read_size": 2,
    "write_size": 3,
    "language_size": 4,
    "alignment_size": 6,
}


@pytest.fixture(scope="module")
def small():
    """64 test pairs of MNIST with captions (a prefix of the test split, seed 0)."""
    return load_mnist_captions("test", size=64)


def _model(small, seed=0):
    family = get_family("align_draw")
    config = family.config(**TINY)
    info = ConditionalDataInfo(
        3600, (1, 60, 60), None, "mnist_captions", context_shape=(12,), context_size=22
    )
    torch.manual_seed(seed)
    return family, config, family.build(config, info)


def test_paper_defaults_and_bad_options():
    family = get_family("align_draw")
    c = family.config()
    paper = (32, 8, 8, 300, 300, 150, 128, 512)
    assert (
        c.steps,
        c.read_size,
        c.write_size,
        c.encoder_size,
        c.decoder_size,
        c.latent_dim,
        c.language_size,
        c.alignment_size,
    ) == paper
    with pytest.raises(ValueError, match="steps"):
        family.config(steps=0)
    with pytest.raises(ValueError, match="alignment_size"):
        family.config(alignment_size=-2)
    with pytest.raises(ValueError, match="objective"):
        family.config(objective="gan")


def test_binarization_touches_the_images_only(small):
    grey = small.pixels.reshape(64, -1).float() / 255
    dynamic = conditional_split(small, "dynamic")
    torch.manual_seed(5)
    batch = dynamic.__getitems__([3, 0, 7])
    torch.manual_seed(5)
    expected = torch.bernoulli(grey[[3, 0, 7]])
    assert isinstance(batch, ConditionalBatch) and batch.shape == (3, 3600)
    assert torch.equal(batch.image, expected)  # one fresh Bernoulli draw of the grey levels
    assert batch.context.dtype == torch.int64
    assert torch.equal(batch.context, small.tokens[[3, 0, 7]])  # captions untouched
    threshold = conditional_split(small, "threshold").__getitems__(range(64))
    assert torch.equal(threshold.image, (grey > 0.5).float())
    stochastic = conditional_split(small, "stochastic")
    assert torch.equal(stochastic.tensor(), conditional_split(small, "stochastic").tensor())
    assert set(stochastic.tensor().unique().tolist()) == {0.0, 1.0}
    assert torch.equal(conditional_split(small).tensor(), grey)  # None: the grey levels
    # a subset keeps image, caption and source row together
    part = dynamic.subset(torch.tensor([9, 2]))
    assert part.rows.tolist() == [9, 2] and torch.equal(part.context, small.tokens[[9, 2]])
    assert part.describe(0) == small.captions([9])[0]
    assert part.held_out.tolist() == small.held_out[[9, 2]].tolist()
    torch.testing.assert_close(conditional_split(small).pixel_mean(), grey.mean(0))
    with pytest.raises(ValueError, match="context"):
        ConditionalDataset(small.pixels.reshape(64, -1), small.tokens[:10], image_shape=(60, 60))
    with pytest.raises(ValueError, match="binarize"):
        load_splits("mnist_captions", "fixed")


def test_the_learner_hands_the_captions_to_model_and_guide(small):
    family, config, model = _model(small)
    learner = family.learner(model, config, lr=1e-3)
    batch = conditional_split(small, "threshold").__getitems__(range(16))
    x, c = batch
    # learner.evaluate is the K = 1 IWAE bound of p(x | c), per example
    torch.manual_seed(1)
    value = learner.evaluate(batch)["loss"]
    torch.manual_seed(1)
    direct = IWAE(1, max_plate_nesting=1).loss(model.model, model.guide, x, None, c) / 16
    torch.testing.assert_close(float(value), float(direct), rtol=1e-5, atol=1e-4)
    # the captions matter: other captions, same random numbers, another value
    torch.manual_seed(1)
    swapped = learner.evaluate(ConditionalBatch([x, c.flip(0)]))["loss"]
    assert abs(float(swapped) - float(value)) > 1e-3
    # the test bound is the ELBO with closed-form KL terms (TraceMeanField_ELBO)
    torch.manual_seed(2)
    bound, stderr = family.test_bound(model, x, c, batch_size=16)
    torch.manual_seed(2)
    elbo = -TraceMeanField_ELBO().loss(model.model, model.guide, x, None, c) / 16
    assert bound == pytest.approx(elbo, rel=1e-5) and stderr > 0
    before = [p.detach().clone() for p in model.parameters()]
    out = learner.step(batch)
    assert math.isfinite(float(out["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_conditional_family_and_an_unconditional_data_set_do_not_mix():
    with pytest.raises(ValueError, match="dataset: digits is not conditional"):
        Run(RunConfig("align_draw", TINY, dataset="digits")).build()
    with pytest.raises(ValueError, match="dataset: mnist_captions is conditional"):
        Run(RunConfig("fvsbn", dataset="mnist_captions")).build()


@pytest.mark.filterwarnings("ignore:PSIS k-hat")  # K = 8 from a 3-step model
def test_cli_trains_evaluates_and_samples_from_captions(tmp_path, capsys):
    out = str(tmp_path / "run")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    common = ["--no-progress"]
    argv = ["train", "align_draw", "--dataset", "mnist_captions", "--epochs", "1"]
    argv += ["--max-steps", "3", "--batch-size", "20", "--no-validate", "--out", out]
    assert cli.main(argv + flags + common) == 0
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["steps"] == 2 and record["config"]["read_size"] == 2
    assert record["num_features"] == 3600 and record["image_shape"] == [1, 60, 60]
    assert record["context_shape"] == [12] and record["context_size"] == 22
    assert record["binarization"] == "dynamic"
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").open()]
    assert max(row["step"] for row in history) == 3
    # evaluate: importance-sampled log p(x | caption) of 12 test pairs, and the test bound
    assert cli.main(["evaluate", out, "--num-samples", "8", "--limit", "12", *common]) == 0
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert evaluation["num_examples"] == 12 and evaluation["num_samples"] == 8
    assert evaluation["split"] == "test" and evaluation["binarization"] == "dynamic"
    ll, bound = evaluation["log_likelihood"], evaluation["test_bound"]
    assert math.isfinite(ll) and ll < 0 and math.isfinite(bound) and bound < 0
    # the run layer's estimate is the model's own on the same pairs and seed
    run = Run.load(out)
    test = run.split("test")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:12]
    part = test.subset(pick)
    again = run.model.log_likelihood(
        part.tensor(), part.context, num_samples=8, seed=0, progress=False
    )
    assert again.mean == pytest.approx(ll, rel=1e-6)
    # sample: a grid from 6 test captions, 3 of them held-out compositions, listed beside it
    capsys.readouterr()
    assert cli.main(["sample", out, "--n", "6"]) == 0
    assert capsys.readouterr().out.strip().endswith("samples.png")
    lines = (tmp_path / "run" / "samples.txt").read_text().splitlines()
    _, chosen = run.conditional_contexts(6, seed=0)
    assert [line.split("\t")[1] for line in lines] == ["held-out"] * 3 + ["seen"] * 3
    assert [line.split("\t")[2] for line in lines] == [test.describe(int(i)) for i in chosen]
    assert test.held_out[chosen].tolist() == [True] * 3 + [False] * 3
    x, path = run.sample(6, tmp_path / "again.png")
    assert x.shape == (6, 3600) and x.min() >= 0 and x.max() <= 1
    assert (tmp_path / "again.png").exists() and (tmp_path / "again.txt").exists()
