"""Caption fidelity (pyrogen.models.caption_fidelity): the attributes of captions, the
seen / held-out report on a hand-made case, bad input, and a classifier trained briefly on
real MNIST-with-captions images (its accuracy measured, real vs shuffled captions, the
cache).

Tests that read MNIST are marked ``requires_data`` (skipped unless ``PYROGEN_DATA`` points at
the offline data folder). The trained classifier is small on purpose (2,048 training images,
150 steps of 64, seed 0; a few seconds on an idle CPU), so its stated accuracies are those of
a short training, well below those of the default 1,500 steps on the full split.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import requires_data
from torch.utils.data import TensorDataset

import pyrogen.models.caption_fidelity as cf
from pyrogen.data.captions import load_mnist_captions
from pyrogen.models.caption_fidelity import (
    ATTRIBUTES,
    COLOUR_ATTRIBUTES,
    NO_COLOUR,
    NO_DIGIT,
    CaptionAttributeClassifier,
    CaptionClassifierLearner,
    caption_attributes,
    caption_classifier,
    caption_fidelity,
    dataset_attributes,
    train_caption_classifier,
)
from pyrogen.train import train

N_TRAIN, N_TEST, STEPS = 2048, 500, 150
# stated accuracies on real test images after the short training above (seen once: count
# 1.000, first 0.624, second 0.750, position 1.000, match 0.478; chance: 0.5, 0.1, about 0.5
# (half the captions have no second digit), 1/6)
MIN_ACCURACY = {"count": 0.9, "first": 0.5, "second": 0.65, "position": 0.95}
MIN_MATCH = 0.35  # own captions
MAX_SHUFFLED_MATCH = 0.05  # shuffled captions (seen once: 0.004)


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    monkeypatch.setenv("PYROGEN_NO_DOWNLOAD", "1")


class StubClassifier:
    """Reads fixed classes, whatever the images."""

    attributes = ATTRIBUTES

    def __init__(self, predictions: dict[str, list[int]]) -> None:
        self.predictions = {k: torch.tensor(v) for k, v in predictions.items()}

    def predict(self, images, batch_size=500):
        return self.predictions


# ---- attributes of captions -----------------------------------------------------------------


def test_attributes_of_captions_by_hand():
    captions = [
        "the digit 3 is on the left of the digit 5 .",
        "the digit 5 is on the right of the digit 3 .",  # the same scene
        "the digit 2 is at the bottom of the digit 8 .",  # 8 above 2
        "the digit 1 is at the top of the digit 1 .",
        "the digit 4 is at the bottom left of the image .",
        "the digit 0 is at the top right of the image .",
    ]
    found = caption_attributes(captions)
    assert set(found) == set(ATTRIBUTES)
    assert found["count"].tolist() == [1, 1, 1, 1, 0, 0]
    assert found["first"].tolist() == [3, 3, 8, 1, 4, 0]
    assert found["second"].tolist() == [5, 5, 2, 1, NO_DIGIT, NO_DIGIT]
    assert found["position"].tolist() == [0, 0, 1, 1, 5, 4]


def test_coloured_attributes_by_hand():
    found = caption_attributes(
        [
            "the red digit 5 is on the right of the blue digit 3 .",
            "the white digit 7 is at the top of the green digit 2 .",
            "the green digit 9 is at the bottom right of the image .",
        ],
        coloured=True,
    )
    assert set(found) == set(COLOUR_ATTRIBUTES)
    assert found["first"].tolist() == [3, 7, 9]
    assert found["second"].tolist() == [5, 2, NO_DIGIT]
    assert found["position"].tolist() == [0, 1, 3]
    # COLOURS: red 0, green 1, blue 2, white 3
    assert found["first_colour"].tolist() == [2, 3, 1]
    assert found["second_colour"].tolist() == [0, 1, NO_COLOUR]


@requires_data
@pytest.mark.parametrize("coloured", [False, True])
def test_parsed_captions_agree_with_the_generator_record(coloured):
    data = load_mnist_captions("test", size=400, seed=0, coloured=coloured)
    record = dataset_attributes(data)
    from_text = caption_attributes(data.captions(), coloured=coloured)
    from_ids = caption_attributes(data.tokens, coloured=coloured)
    for name in COLOUR_ATTRIBUTES if coloured else ATTRIBUTES:
        assert torch.equal(from_text[name], record[name]), name
        assert torch.equal(from_ids[name], record[name]), name


# ---- the report -------------------------------------------------------------------------------


def test_seen_and_held_out_groups_follow_the_flags_exactly():
    expected = {
        "count": [1, 1, 0, 1, 0, 1],
        "first": [3, 4, 5, 6, 7, 8],
        "second": [2, 2, NO_DIGIT, 0, NO_DIGIT, 9],
        "position": [0, 1, 2, 0, 3, 1],
    }
    predicted = {
        "count": [1, 1, 0, 0, 0, 1],  # wrong at 3
        "first": [3, 0, 5, 6, 7, 1],  # wrong at 1, 5
        "second": [2, 2, NO_DIGIT, 0, 4, 9],  # wrong at 4
        "position": [0, 1, 2, 0, 3, 1],  # all right
    }
    flags = torch.tensor([False, True, False, True, True, False])
    images = torch.zeros(6, 1, 60, 60)
    result = caption_fidelity(
        images, {k: torch.tensor(v) for k, v in expected.items()}, StubClassifier(predicted),
        held_out=flags,
    )  # fmt: skip
    # every attribute right: examples 0 and 2 only
    assert result.correct["match"].tolist() == [True, False, True, False, False, False]
    assert result.overall.num_images == 6
    assert result.overall.match == pytest.approx(2 / 6)
    assert result.overall.accuracy == pytest.approx(
        {"count": 5 / 6, "first": 4 / 6, "second": 5 / 6, "position": 1.0}
    )
    # seen: examples 0, 2, 5
    assert result.seen.num_images == 3
    assert result.seen.match == pytest.approx(2 / 3)
    assert result.seen.accuracy == pytest.approx(
        {"count": 1.0, "first": 2 / 3, "second": 1.0, "position": 1.0}
    )
    assert result.seen.match_stderr == pytest.approx(math.sqrt(2 / 3 * 1 / 3 / 3))
    # held out: examples 1, 3, 4
    assert result.held_out.num_images == 3
    assert result.held_out.match == 0.0
    assert result.held_out.accuracy == pytest.approx(
        {"count": 2 / 3, "first": 2 / 3, "second": 2 / 3, "position": 1.0}
    )
    assert list(result.groups()) == ["all", "seen", "held_out"]
    table = result.markdown()
    assert "| seen (3) | 1.000 | 0.667 | 1.000 | 1.000 | 0.667 ± 0.272 |" in table
    assert "| held_out (3) | 0.667 | 0.667 | 0.667 | 1.000 | 0.000 ± 0.000 |" in table

    # no flags: one group; no held-out image: an empty group reads NaN
    plain = caption_fidelity(images, expected, StubClassifier(predicted))
    assert plain.seen is None and plain.held_out is None and list(plain.groups()) == ["all"]
    none_held = caption_fidelity(images, expected, StubClassifier(predicted), held_out=[False] * 6)
    assert none_held.seen.num_images == 6 and none_held.seen.match == pytest.approx(2 / 6)
    assert none_held.held_out.num_images == 0 and math.isnan(none_held.held_out.match)


def test_bad_input_names_the_argument():
    net = CaptionAttributeClassifier()
    images = torch.rand(3, 1, 60, 60)
    captions = ["the digit 3 is on the left of the digit 5 ."] * 3
    with pytest.raises(ValueError, match="images: expected images of shape"):
        caption_fidelity(torch.rand(3, 1, 28, 28), captions, net)
    with pytest.raises(ValueError, match="images: expected images of shape"):
        caption_fidelity(torch.rand(3, 3, 60, 60), captions, net)  # coloured to a grey one
    with pytest.raises(ValueError, match="captions: expected one caption per image"):
        caption_fidelity(images, captions[:2], net)
    bad = images.clone()
    bad[1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="images: contains NaN"):
        caption_fidelity(bad, captions, net)
    with pytest.raises(ValueError, match=r"held_out: expected one flag per image, shape \(3,\)"):
        caption_fidelity(images, captions, net, held_out=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="held_out: expected bool flags"):
        caption_fidelity(images, captions, net, held_out=torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"captions\[1\]: .* is not a caption"):
        caption_fidelity(
            images, [captions[0], "the digit 3 is near the digit 5 .", captions[0]], net
        )
    with pytest.raises(ValueError, match=r"captions\[0\]: the classifier reads grey images"):
        caption_fidelity(images, ["the red digit 3 is at the top left of the image ."] * 3, net)
    with pytest.raises(ValueError, match=r"captions\[0\]: a coloured caption names a colour"):
        caption_attributes(["the digit 3 is at the top left of the image ."], coloured=True)
    with pytest.raises(ValueError, match=r"captions\[0\]: token id 30"):
        caption_attributes(torch.tensor([[30, 1, 2]]))
    with pytest.raises(ValueError, match="captions: expected a sequence"):
        caption_attributes("the digit 3 is at the top left of the image .")


# ---- the learner ---------------------------------------------------------------------------


def _fake_batches(n=8):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n, 1, 60, 60, generator=g)
    labels = torch.stack(
        [torch.randint(0, cf.NUM_CLASSES[a], (n,), generator=g) for a in ATTRIBUTES], 1
    )
    return TensorDataset(images, labels)


def test_learner_cosine_schedule_by_hand():
    torch.manual_seed(0)
    learner = CaptionClassifierLearner(
        CaptionAttributeClassifier(widths=(2, 2, 2), hidden=4), lr=0.01, decay_steps=4
    )
    data = _fake_batches(2)
    seen = []
    for _ in range(6):
        learner.step(data[:])
        seen.append(learner.optimizer.param_groups[0]["lr"])
    # eta_t = 0.01 * (1 + cos(pi * min(t, 4) / 4)) / 2 for t = 0..5
    expected = [0.01 * (1 + math.cos(math.pi * min(t, 4) / 4)) / 2 for t in range(6)]
    assert seen == pytest.approx(expected, abs=1e-12)
    assert learner.count == 6


def test_learner_resumes_exactly_through_the_engine(tmp_path):
    def run(max_steps, out):
        torch.manual_seed(0)
        net = CaptionAttributeClassifier(widths=(2, 2, 2), hidden=4)
        learner = CaptionClassifierLearner(net, lr=0.01, decay_steps=6)
        train(learner, _fake_batches(), batch_size=2, epochs=2, max_steps=max_steps,
              out=out, progress=False, device="cpu")  # fmt: skip
        return learner

    straight = run(6, tmp_path / "straight")
    run(3, tmp_path / "resumed")
    resumed = run(6, tmp_path / "resumed")  # continues from the checkpoint at step 3
    assert resumed.count == straight.count == 6
    for (k, v), (_, w) in zip(
        straight.module.state_dict().items(), resumed.module.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k


# ---- a classifier trained on real images -------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("classifiers")
    before = torch.get_rng_state()
    net = caption_classifier(
        seed=0, steps=STEPS, train_size=N_TRAIN, test_size=N_TEST, cache=cache, device="cpu"
    )
    rng_untouched = torch.equal(torch.get_rng_state(), before)
    return net, cache, rng_untouched


@requires_data
def test_trained_classifier_reaches_the_stated_accuracy(trained):
    net, _, rng_untouched = trained
    assert rng_untouched  # the caller's global random stream is left as it was
    groups = net.test_fidelity
    assert set(groups) == {"all", "seen", "held_out"}
    assert groups["all"].num_images == N_TEST
    assert groups["seen"].num_images + groups["held_out"].num_images == N_TEST
    for name, bound in MIN_ACCURACY.items():
        assert groups["all"].accuracy[name] >= bound, (name, groups["all"].accuracy)
    assert groups["all"].match >= MIN_MATCH


@requires_data
def test_own_captions_score_high_and_shuffled_ones_low(trained):
    net = trained[0]
    test = load_mnist_captions("test", size=N_TEST, seed=0)
    own = caption_fidelity(test.images(), test.captions(), net, held_out=test.held_out)
    # the same code scores the classifier's test images and any other images
    assert own.groups() == net.test_fidelity
    assert own.overall.match >= MIN_MATCH
    order = torch.randperm(N_TEST, generator=torch.Generator().manual_seed(0))
    shuffled = [test.captions()[i] for i in order]
    other = caption_fidelity(test.images(), shuffled, net, held_out=test.held_out)
    assert other.overall.match <= MAX_SHUFFLED_MATCH
    # a flat (N, 3600) batch and token ids read the same
    again = caption_fidelity(test.tensor()[:100], test.tokens[:100], net)
    for name in ATTRIBUTES:
        assert torch.equal(again.predicted[name], own.predicted[name][:100])
        assert torch.equal(again.expected[name], own.expected[name][:100])


@requires_data
def test_classifier_is_cached_by_variant_and_seed(trained, monkeypatch):
    net, cache, _ = trained
    (path,) = cache.glob("*.pt")
    assert path.name.startswith("mnist_captions_fidelity_s0_h0.1_all_")

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached classifier")

    monkeypatch.setattr(cf, "train_caption_classifier", no_training)
    loaded = caption_classifier(
        seed=0, steps=STEPS, train_size=N_TRAIN, test_size=N_TEST, cache=cache, device="cpu"
    )
    assert loaded.test_fidelity == net.test_fidelity
    for (k, v), (k2, v2) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


@requires_data
def test_coloured_classifier_reads_colours():
    train = load_mnist_captions("train", size=1024, seed=0, coloured=True)
    test = load_mnist_captions("test", size=300, seed=0, coloured=True)
    net = train_caption_classifier(train, steps=60, seed=0, device="cpu")
    assert net.attributes == COLOUR_ATTRIBUTES
    result = caption_fidelity(test.images(), test.captions(), net)
    # colour is read from the channels: near-perfect after a few steps (stated bound 0.9)
    assert result.overall.accuracy["first_colour"] >= 0.9
    assert result.overall.accuracy["second_colour"] >= 0.9
    assert result.overall.accuracy["count"] >= 0.9
