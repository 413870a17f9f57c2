"""Face data: the Olivetti loader (shapes, range, orientation, split by person,
augmentation) and the LFW patches of scikit-image."""

import sys

import pytest
import torch
from conftest import requires_data

from pyrogen.data import (
    AugmentedFaces,
    DatasetNotFoundError,
    augment_faces,
    lfw_patches,
    olivetti_faces,
)


@requires_data
def test_olivetti_shapes_range_and_split_by_person():
    train = olivetti_faces("train")
    test = olivetti_faces("test")
    assert train.data.shape == (300, 625) and test.data.shape == (100, 625)
    assert train.image_shape == (25, 25) and train.data.dtype == torch.float32
    for ds in (train, test):
        assert ds.data.min() >= 0 and ds.data.max() <= 1
        assert ds.data.std() > 0.1  # grey levels, not a constant
        counts = torch.bincount(ds.labels)
        assert set(counts[counts > 0].tolist()) == {10}  # 10 images of each person
    train_people, test_people = set(train.labels.tolist()), set(test.labels.tolist())
    assert train_people == set(range(30)) and test_people == set(range(30, 40))  # H&S split
    assert not train_people & test_people
    assert olivetti_faces("all").data.shape == (400, 625)


@requires_data
def test_olivetti_seeded_split_is_reproducible_and_disjoint():
    a = olivetti_faces("test", seed=3, num_train_people=32)
    b = olivetti_faces("test", seed=3, num_train_people=32)
    train = olivetti_faces("train", seed=3, num_train_people=32)
    assert torch.equal(a.data, b.data) and a.data.shape == (80, 625)
    assert not set(a.labels.tolist()) & set(train.labels.tolist())
    assert set(a.labels.tolist()) != set(range(32, 40))  # a random choice of people


@requires_data
def test_olivetti_images_are_upright():
    """The file stores column-major images; read wrongly, faces lie on their side. An
    upright mean face is more symmetric left-right than top-bottom."""
    mean = olivetti_faces("all", size=64).data.mean(0).reshape(64, 64)
    left_right = (mean - mean.flip(1)).abs().mean()
    top_bottom = (mean - mean.flip(0)).abs().mean()
    assert left_right < 0.5 * top_bottom


@requires_data
def test_olivetti_size_and_augmentation():
    small = olivetti_faces("train", size=16)
    assert small.data.shape == (300, 256) and small.image_shape == (16, 16)
    aug = olivetti_faces("train", augment=3, augment_seed=5)
    again = olivetti_faces("train", augment=3, augment_seed=5)
    other = olivetti_faces("train", augment=3, augment_seed=6)
    assert aug.data.shape == (900, 625) and torch.equal(aug.data, again.data)
    assert not torch.equal(aug.data, other.data)
    assert aug.data.min() >= 0 and aug.data.max() <= 1
    assert torch.equal(aug.labels, torch.arange(30).repeat_interleave(30))
    mild = olivetti_faces("test", augment=1, rotation=0.0, zoom=(1.0, 1.0), shift=0.0, flip=False)
    plain = olivetti_faces("test")
    # the identity transformation reproduces the originals up to resampling
    assert (mild.data - plain.data).abs().mean() < 0.02


@requires_data
def test_olivetti_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        olivetti_faces("valid")
    with pytest.raises(ValueError, match="size"):
        olivetti_faces(size=65)
    with pytest.raises(ValueError, match="num_train_people"):
        olivetti_faces(num_train_people=40)
    with pytest.raises(ValueError, match="augment > 0"):
        olivetti_faces(rotation=10.0)
    with pytest.raises(ValueError, match="unknown augmentation"):
        olivetti_faces(augment=1, shear=3.0)


@requires_data
def test_augmented_faces_draw_fresh_variants_reproducibly():
    ds = AugmentedFaces("train", size=25, copies=2, transform=lambda x: 2 * x)
    assert len(ds) == 600 and ds.image_shape == (25, 25)
    torch.manual_seed(0)
    a = ds.__getitems__([0, 1, 300])
    b = ds.__getitems__([0, 1, 300])
    torch.manual_seed(0)
    again = ds.__getitems__([0, 1, 300])
    assert a.shape == (3, 625)
    assert torch.equal(a, again)  # global RNG: reproducible by seeding
    assert not torch.equal(a, b)  # every fetch is a new variant
    assert a.min() >= 0 and a.max() <= 2  # the transform was applied
    assert ds[5].shape == (625,)
    fixed = ds.sample(2, seed=3)
    assert fixed.shape == (600, 625) and torch.equal(fixed, ds.sample(2, seed=3))
    # the engine trains on it directly
    from pyrogen.train import epoch_batches

    batch = next(epoch_batches(ds, 50, seed=0, epoch=0))
    assert batch.shape == (50, 625)
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugmentedFaces(shear=1.0)


def test_olivetti_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"olivetti/olivettifaces\.mat.*PYROGEN_DATA"):
        olivetti_faces(root=tmp_path)


def test_augment_faces_shapes_and_errors():
    images = torch.rand(4, 32, 32)
    out = augment_faces(images, 2, size=8, seed=0)
    assert out.shape == (8, 8, 8)
    assert out.min() >= 0 and out.max() <= 1  # bilinear + area averages stay in range
    with pytest.raises(ValueError, match="copies"):
        augment_faces(images, 0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        augment_faces(images[0], 1)
    with pytest.raises(ValueError, match="zoom"):
        augment_faces(images, 1, zoom=(2.0, 1.0))
    assert torch.equal(augment_faces(images, 1, seed=4), augment_faces(images, 1, seed=4))
    torch.manual_seed(1)
    first = augment_faces(images, 1, seed=None)  # global RNG
    torch.manual_seed(1)
    assert torch.equal(first, augment_faces(images, 1, seed=None))


def test_lfw_patches_without_scikit_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(ImportError, match="scikit-image"):
        lfw_patches()


def test_lfw_patches():
    pytest.importorskip("skimage")
    ds = lfw_patches()
    assert ds.data.shape == (200, 625) and ds.image_shape == (25, 25)
    assert ds.data.min() >= 0 and ds.data.max() <= 1
    assert ds.labels.sum() == 100
    assert lfw_patches(faces_only=True).data.shape == (100, 625)
