"""The family contract, checked the same way for every registered family.

Like Pyro's ``tests/distributions`` battery, these tests know no family by name: each one
runs over ``load_families()``, building a tiny instance from the family's ``smoke_config``
on scikit-learn's 8x8 digits (shipped, no download). A new family is covered by registering
it. For every family:

* its model follows the protocol of :mod:`pyrogen.models.base` (density models:
  ``model`` / ``guide``, ``sample``, ``log_likelihood``; deterministic ones: ``fit`` /
  ``transform`` / ``reconstruct``);
* it trains a few steps through the engine, and a run interrupted by a checkpoint and
  resumed by fresh objects ends in exactly the state of an uninterrupted run (staged
  learners across a stage boundary);
* ``sample(n)`` returns ``(n, *event_shape)`` values in the range of the family's declared
  observation model (``Family.observation`` / ``observation_for(config)``): 0 or 1 for
  ``"bernoulli"``, finite reals for ``"gaussian"``; pictures (``to_unit_interval``) and
  conditional means in [0, 1] for every family;
* ``log_likelihood`` returns a :class:`~pyrogen.evaluate.LogLikelihood` (finite, one value per
  example, the same through ``pyrogen.evaluate.log_likelihood``), negative for a discrete
  (Bernoulli) observation model, where it is the log of a probability (a Gaussian density
  may exceed 1), and an option its estimator does not take is a TypeError naming it;
* every ``pyrogen train <family>`` flag is documented in ``--help``.

A *conditional* family (``Family.conditional``, e.g. ``align_draw``: an example is an image
and a caption) cannot train on the digits; it runs on its ``default_dataset`` (MNIST with
captions, needs ``PYROGEN_DATA``) and gets the conditional variant of each check: the model
has that data's shape, samples are drawn from test contexts (and asking for samples without
one is an error naming the context), and log-likelihoods are :math:`\\log p(x \\mid y)` with
the test contexts, through the family, through ``pyrogen.evaluate.log_likelihood`` (the
context under the model's ``Family.context_option`` keyword) and through the run layer.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import shared_data_root

from pyrogen import cli
from pyrogen.evaluate import LogLikelihood, ReconstructionScore, log_likelihood
from pyrogen.models.base import GenerativeModel, Representation
from pyrogen.registry import load_families
from pyrogen.runs import Run, RunConfig, load_splits

FAMILIES = sorted(load_families())
#: families whose examples are (image, context) pairs; they run on their default_dataset
CONDITIONAL = {n for n, f in load_families().items() if f.conditional}
#: the families the tests below run: every one, conditional ones only with the data folder
RUNNABLE = [n for n in FAMILIES if n not in CONDITIONAL or shared_data_root() is not None]
#: the observation models a family may declare, and whether each is discrete
OBSERVATIONS = {"bernoulli": True, "gaussian": False}
# 200 training examples in batches of 50: 4 steps per epoch; 10 steps cross every stage
# boundary of a smoke-sized staged learner (one pre-training epoch per layer)
TRAIN_LIMIT, BATCH, STEPS, HALF = 200, 50, 10, 5


def run_config(name: str, **overrides) -> RunConfig:
    family = load_families()[name]
    settings = dict(
        dataset=family.default_dataset if name in CONDITIONAL else "digits",
        epochs=10,
        batch_size=BATCH,
        max_steps=STEPS,
        train_limit=TRAIN_LIMIT,
        device="cpu",
        seed=3,
    )
    return RunConfig(name, dict(family.smoke_config), **{**settings, **overrides})


@pytest.fixture(scope="module")
def digits():
    train_set, _, test = load_splits("digits")
    return train_set, test.tensor()[:40]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke run per family (trained once, shared by the tests below)."""
    runs = {}
    for name in RUNNABLE:
        out = tmp_path_factory.mktemp(name)
        run = Run(run_config(name), out)
        run.train(progress=False)
        runs[name] = run
    return runs


def test_every_family_is_covered():
    assert {
        "vae",
        "rbm",
        "dbm",
        "fvsbn",
        "nade",
        "pixelcnn",
        "pixelrnn",
        "autoencoder",
        "gan",
        "gmmn",
        "dbn",
        "draw",
        "helmholtz",
        "align_draw",
    } <= set(FAMILIES)
    for name, family in load_families().items():
        assert family.kind in ("density", "representation"), name
        assert family.description and family.config_cls, name
        config = family.config(**family.smoke_config)  # the smoke config is valid
        assert family.observation in OBSERVATIONS, name
        assert family.observation_for(config) in OBSERVATIONS, name


def _observation(run) -> str:
    return run.family.observation_for(run.model_config)


def _params():
    """Every family; a conditional one skipped (with the reason) without the data folder."""
    skip = pytest.mark.skip(reason="a conditional family trains on PYROGEN_DATA's MNIST")
    return [pytest.param(n, marks=() if n in RUNNABLE else skip, id=n) for n in FAMILIES]


@pytest.fixture(scope="module")
def contexts(trained):
    """(images, contexts) of 40 test pairs of each conditional family's data set."""
    out = {}
    for name in CONDITIONAL & set(trained):
        test = trained[name].split("test").subset(range(40))
        out[name] = test.tensor(), test.context
    return out


@pytest.mark.parametrize("name", _params())
def test_model_follows_the_protocol(name, trained):
    run = trained[name]
    model = run.model
    if run.family.kind == "density":
        assert isinstance(model, GenerativeModel)
        for method in ("model", "guide", "sample", "log_likelihood"):
            assert callable(getattr(model, method)), method
    else:
        assert isinstance(model, Representation)
    if name in CONDITIONAL:  # the shape of its data set's images
        assert model.num_features == run.info.num_features
        assert tuple(model.image_shape) == tuple(run.info.image_shape)
        return
    assert model.num_features == 64 and tuple(model.image_shape) == (8, 8)


def _flatten_state(state, prefix=""):
    """(path, value) pairs of the tensors and numbers in a nested state dict."""
    if isinstance(state, dict):
        for key, value in state.items():
            yield from _flatten_state(value, f"{prefix}/{key}")
    elif isinstance(state, list | tuple):
        for i, value in enumerate(state):
            yield from _flatten_state(value, f"{prefix}/{i}")
    elif isinstance(state, torch.Tensor | int | float | bool) or state is None:
        yield prefix, state


@pytest.mark.parametrize("name", _params())
def test_checkpoint_and_resume_are_exact(name, trained, tmp_path):
    straight = trained[name]
    # the same run, interrupted after HALF steps, then resumed by fresh objects
    half = Run(run_config(name, max_steps=HALF, checkpoint_every=HALF), tmp_path)
    half.train(progress=False)
    resumed = Run(run_config(name), tmp_path)
    result = resumed.train(progress=False)
    assert result.step == STEPS
    a = dict(_flatten_state(straight.learner.state_dict()))
    b = dict(_flatten_state(resumed.learner.state_dict()))
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key
    # the run folder holds what runs.py documents
    for file in ("config.json", "checkpoint.pt", "history.jsonl"):
        assert (tmp_path / file).exists(), file


@pytest.mark.parametrize("name", _params())
def test_sample_shape_and_range(name, trained, contexts):
    run = trained[name]
    if run.family.kind != "density":
        with pytest.raises(TypeError, match="deterministic"):
            run.sample(4)
        return
    model = run.model
    given = {"context": contexts[name][1][:5]} if name in CONDITIONAL else {}
    x = model.sample(5, **given)
    assert x.shape == (5, *model.event_shape)
    assert torch.isfinite(x).all()
    if _observation(run) == "bernoulli":
        assert ((x == 0) | (x == 1)).all(), "samples of a Bernoulli observation model are 0/1"
    pictures = model.to_unit_interval(x)
    assert torch.isfinite(pictures).all() and pictures.min() >= 0 and pictures.max() <= 1
    if model.has_mean_samples:
        means = model.sample(5, mean=True, **given)
        assert means.shape == x.shape and means.min() >= 0 and means.max() <= 1
    grid, path = run.sample(9)
    assert grid.shape == (9, model.num_features) and path.endswith("samples.png")
    if name in CONDITIONAL:  # generated from test contexts, listed beside the grid
        assert len((run.out / "samples.txt").read_text().splitlines()) == 9
        with pytest.raises((TypeError, ValueError), match="context"):
            model.sample(2)  # a conditional model needs its context
        return
    with pytest.raises((TypeError, ValueError), match="context"):
        model.sample(2, context=torch.zeros(2))  # these smoke models are unconditional


@pytest.mark.filterwarnings("ignore:PSIS k-hat")  # 20 samples from a 10-step model
@pytest.mark.parametrize("name", _params())
def test_evaluation_returns_the_one_result_type(name, trained, digits, contexts):
    run = trained[name]
    _, test = digits
    options = {"progress": False}
    given, model_given = {}, {}
    if name in CONDITIONAL:  # log p(x | y) of test pairs
        test, context = contexts[name]
        given, model_given = {"context": context}, {run.family.context_option: context}
    if run.family.sample_option is not None:
        options[run.family.sample_option] = 20
    if run.family.kind != "density":
        score = run.family.evaluate(run.model, run.model_config, test)
        assert isinstance(score, ReconstructionScore) and score.num_examples == len(test)
        assert math.isfinite(score.squared_error)
        assert run.model.transform(test).shape == (len(test), run.model.sizes[-1])
        assert run.model.reconstruct(test).shape == test.shape
        return
    torch.manual_seed(0)
    result = run.family.log_likelihood(run.model, run.model_config, test, **options, **given)
    assert isinstance(result, LogLikelihood)
    assert result.per_example.shape == (len(test),) and math.isfinite(result.mean)
    if OBSERVATIONS[_observation(run)]:  # the log of a probability
        assert (result.per_example < 0).all() and result.mean < 0
    assert result.stderr >= 0 and result.mc_stderr >= 0
    assert result.estimator and isinstance(result.to_dict(), dict)
    assert "test log-likelihood" in result.summary()
    # the one entry point dispatches to the model's own estimator
    opts = {**run.family.evaluation_options(run.model_config), **options}
    torch.manual_seed(0)
    again = log_likelihood(run.model, test, **opts, **model_given)
    assert isinstance(again, LogLikelihood) and again.estimator == result.estimator
    if result.is_exact:
        torch.testing.assert_close(again.per_example, result.per_example)
    # an option the estimator does not take is named
    with pytest.raises(TypeError, match="no_such_option"):
        log_likelihood(run.model, test, no_such_option=1, **model_given)
    # the run layer writes eval.json with the same numbers
    data = run.split("test").subset(range(40)) if name in CONDITIONAL else test
    record = run.evaluate(data, **({} if run.family.sample_option is None else {"num_samples": 20}))
    assert (run.out / "eval.json").exists() and math.isfinite(record.mean)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_train_flag_is_documented(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    family = load_families()[name]
    for f in dataclasses.fields(family.config_cls):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert f.metadata.get("help"), f"{name}: config field {f.name} has no help text"
    for flag in ("--dataset", "--epochs", "--batch-size", "--lr", "--out", "--device"):
        assert flag in text, flag
