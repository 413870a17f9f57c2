"""The Fréchet distance against closed forms (diagonal and 2 x 2 covariances, singular ones),
its invariances, bad input, and the feature classifier on small separable tasks and its
cache."""

import math

import numpy as np
import pytest
import torch

from pyrogen.evaluate import quality
from pyrogen.evaluate.quality import (
    FeatureClassifier,
    classifier_accuracy,
    feature_classifier,
    frechet_distance,
    frechet_distance_gaussian,
    gaussian_statistics,
    mnist_frechet_distance,
    train_feature_classifier,
)


def _spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


def test_diagonal_covariances_closed_form():
    # diagonal covariances commute: Tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt a - sqrt b)^2
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(5, generator=g), torch.randn(5, generator=g)
    a, b = torch.rand(5, generator=g) + 0.1, torch.rand(5, generator=g) * 3
    expected = (m1 - m2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()
    value = frechet_distance_gaussian(m1, torch.diag(a), m2, torch.diag(b))
    assert value == pytest.approx(expected.item(), rel=1e-6)


def test_non_commuting_2x2_closed_form():
    # S1 S2 is similar to a PSD matrix with eigenvalues l1, l2, so
    # Tr (S1 S2)^(1/2) = sqrt(l1) + sqrt(l2) = sqrt(Tr(S1 S2) + 2 sqrt(det S1 det S2))
    s1, s2 = _spd(2, 1), _spd(2, 2)
    assert not torch.allclose(s1 @ s2, s2 @ s1)
    m1, m2 = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.5])
    trace_sqrt = math.sqrt(
        torch.trace(s1 @ s2).item() + 2 * math.sqrt(torch.det(s1).item() * torch.det(s2).item())
    )
    expected = (m1 - m2).pow(2).sum().item() + torch.trace(s1 + s2).item() - 2 * trace_sqrt
    assert frechet_distance_gaussian(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-12)
    # S2 = S1^-1: S1^(1/2) S1^-1 S1^(1/2) = I, so the trace term is Tr S1 + Tr S1^-1 - 2 d
    s3 = _spd(4, 3)
    zero = torch.zeros(4, dtype=torch.float64)
    expected = torch.trace(s3) + torch.trace(torch.linalg.inv(s3)) - 8
    value = frechet_distance_gaussian(zero, s3, zero, torch.linalg.inv(s3))
    assert value == pytest.approx(expected.item(), rel=1e-10)


def test_singular_covariances():
    # rank-one covariances on orthogonal axes: (S1 S2)^(1/2) = 0, distance Tr S1 + Tr S2
    zero = torch.zeros(2)
    value = frechet_distance_gaussian(
        zero, torch.diag(torch.tensor([2.0, 0.0])), zero, torch.diag(torch.tensor([0.0, 3.0]))
    )
    assert value == pytest.approx(5.0, abs=1e-12)
    # identical singular Gaussians: exactly 0 (round-off clipped, never negative)
    s = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert frechet_distance_gaussian(zero, s, zero, s) == pytest.approx(0.0, abs=1e-12)


def test_from_samples_zero_symmetric_invariant_and_plug_in():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    y = torch.randn(150, 6, generator=g, dtype=torch.float64) @ _spd(6, 4) + 0.3
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-10)
    d = frechet_distance(x, y)
    assert d > 1 and frechet_distance(y, x) == pytest.approx(d, rel=1e-10)
    # a common rotation and translation of the feature space leaves it unchanged
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    shift = torch.randn(6, generator=g, dtype=torch.float64)
    assert frechet_distance(x @ q + shift, y @ q + shift) == pytest.approx(d, rel=1e-10)
    # the plug-in estimate: unbiased sample covariances (numpy's np.cov, divisor n - 1)
    mx, my = x.mean(0), y.mean(0)
    cx = torch.from_numpy(np.cov(x.numpy(), rowvar=False))
    cy = torch.from_numpy(np.cov(y.numpy(), rowvar=False))
    assert d == pytest.approx(frechet_distance_gaussian(mx, cx, my, cy), rel=1e-12)
    mean, cov = gaussian_statistics(x)
    torch.testing.assert_close(cov, cx)
    # features: scaling them by 3 scales the squared distance by 9
    assert frechet_distance(x, y, features=lambda t: 3 * t) == pytest.approx(9 * d, rel=1e-10)


def test_bad_input_names_the_argument():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="reference: expected 3 features"):
        frechet_distance(x, torch.randn(10, 4))
    with pytest.raises(ValueError, match="samples: need at least 2"):
        frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match="reference: need at least 2"):
        frechet_distance(x, x[:1], features=lambda t: t)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="reference: contains NaN"):
        frechet_distance(x, bad)
    with pytest.raises(ValueError, match="samples: contains NaN"):
        frechet_distance(bad, x, features=lambda t: t)
    with pytest.raises(ValueError, match="samples: expected a 2-D"):
        frechet_distance(torch.randn(4, 2, 2), x)
    with pytest.raises(ValueError, match="cov2: expected shape"):
        frechet_distance_gaussian(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="mean1: contains NaN"):
        frechet_distance_gaussian(
            torch.tensor([math.nan]), torch.eye(1), torch.zeros(1), torch.eye(1)
        )


def _bars(n, seed):
    # 8 x 8 images with one horizontal (class 0) or vertical (class 1) bar, plus noise
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, 8, (n,), generator=g)
    images = 0.2 * torch.rand(n, 8, 8, generator=g)
    for i in range(n):
        if labels[i] == 0:
            images[i, pos[i], :] += 0.8
        else:
            images[i, :, pos[i]] += 0.8
    return images.reshape(n, 64), labels


def test_classifier_learns_a_separable_task_and_leaves_the_rng_alone():
    images, labels = _bars(400, 0)
    test_images, test_labels = _bars(200, 1)
    state = torch.get_rng_state()
    net = train_feature_classifier(
        images, labels, image_shape=(8, 8), num_classes=2, epochs=3, batch_size=32, lr=3e-3
    )
    assert torch.equal(torch.get_rng_state(), state)
    assert not net.training
    # seeded (seed 0): 1.0 on 200 held-out images
    assert classifier_accuracy(net, test_images, test_labels) >= 0.98
    assert net.features(test_images).shape == (200, 64)
    # the features separate the classes: the Fréchet distance between the two classes' bar
    # images is far larger than between two halves of one class
    horizontal, vertical = test_images[test_labels == 0], test_images[test_labels == 1]
    between = frechet_distance(horizontal, vertical, net.features)
    within = frechet_distance(horizontal[::2], horizontal[1::2], net.features)
    assert between > 5 * within, (between, within)


def test_feature_classifier_trains_states_accuracy_and_caches(tmp_path, monkeypatch):
    # scikit-learn's 8 x 8 digits (1,257 train / 360 test images; no download)
    options = dict(cache=tmp_path, epochs=4, batch_size=32, lr=3e-3)
    net = feature_classifier("digits", verbose=True, **options)
    path = tmp_path / "digits_classifier_e4_b32_lr0.003_s0.pt"
    assert path.exists() and not list(tmp_path.glob("*.tmp*"))
    # seeded: 0.90 on the 360 test digits (0.66 with batches of 128 and lr 1e-3)
    assert net.test_accuracy > 0.8
    from pyrogen.data import load

    test = load("digits", "test")
    assert classifier_accuracy(net, test.data, test.labels) == net.test_accuracy

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(quality, "train_feature_classifier", no_training)
    again = feature_classifier("digits", **options)
    assert again.test_accuracy == net.test_accuracy
    for key, value in net.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_classifier_and_mnist_convenience_bad_input():
    with pytest.raises(ValueError, match="image_shape"):
        FeatureClassifier((10, 10))
    net = FeatureClassifier((28, 28))
    with pytest.raises(ValueError, match="x: expected shape"):
        net(torch.rand(2, 100))
    with pytest.raises(ValueError, match="samples: expected 28 x 28"):
        mnist_frechet_distance(torch.rand(5, 64), torch.rand(5, 784), classifier=net)
    with pytest.raises(ValueError, match="labels: expected shape"):
        train_feature_classifier(torch.rand(4, 64), torch.zeros(3), image_shape=(8, 8))
    # images in any of the three layouts give the same features
    x = torch.rand(6, 784)
    a = mnist_frechet_distance(x, x.flip(0) * 0.5, classifier=net)
    b = mnist_frechet_distance(
        x.reshape(6, 1, 28, 28), (x.flip(0) * 0.5).reshape(6, 28, 28), classifier=net
    )
    assert a == pytest.approx(b, rel=1e-9) and a > 0
    assert net.training  # the module's mode is restored
