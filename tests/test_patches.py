"""Natural-image patches: shape, determinism, mean removal, whitening, normalisation."""

import importlib.util

import pytest
import torch
from conftest import requires_data

from pyrogen.data import DatasetNotFoundError
from pyrogen.data.patches import natural_image_patches, whitening

pytestmark = requires_data


def test_shape_dtype_determinism_and_mean_removal():
    x = natural_image_patches(500, size=8, seed=0)
    assert x.shape == (500, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x, natural_image_patches(500, size=8, seed=0), rtol=0, atol=0)
    assert not torch.equal(x, natural_image_patches(500, size=8, seed=1))
    assert float(x.mean(1).abs().max()) < 1e-6  # each patch's DC removed
    assert float(x.std()) > 0.01  # real image content, not zeros


def test_zca_whitening_gives_identity_covariance():
    """With a tiny regulariser (eps=1e-6 of the mean eigenvalue) the covariance of the
    whitened patches is the identity on the (d-1)-dimensional zero-mean subspace, within
    0.02 per entry."""
    x = natural_image_patches(20_000, size=6, seed=0, whiten="zca", eps=1e-6)
    d = x.shape[1]
    cov = torch.cov(x.T.double())
    target = torch.eye(d, dtype=torch.float64) - 1.0 / d
    assert float((cov - target).abs().max()) < 0.02
    # ZCA is symmetric: whitening matrix W = W^T
    raw = natural_image_patches(20_000, size=6, seed=0)
    W, _ = whitening(raw.double(), "zca", eps=1e-6)
    torch.testing.assert_close(W, W.T)
    # PCA whitening: same covariance up to rotation, so the same eigenvalues
    p = natural_image_patches(20_000, size=6, seed=0, whiten="pca", eps=1e-6)
    ev = torch.linalg.eigvalsh(torch.cov(p.T.double()))
    assert float((ev[1:] - 1).abs().max()) < 0.02 and float(ev[0]) < 1e-6


def test_default_regulariser_damps_small_eigenvalues_and_normalize():
    x = natural_image_patches(5000, size=6, seed=0, whiten="zca")
    ev = torch.linalg.eigvalsh(torch.cov(x.T.double()))
    assert float(ev.max()) <= 1.0 + 1e-3 and float(ev[1]) < 0.9  # damped, never amplified
    u = natural_image_patches(1000, size=6, seed=0, normalize=True)
    norms = u.norm(dim=1)
    assert bool(((norms - 1).abs() < 1e-5).logical_or(norms == 0).all())


def test_bad_arguments_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="whiten"):
        natural_image_patches(10, whiten="sphere")
    with pytest.raises(ValueError, match="n"):
        natural_image_patches(0)
    with pytest.raises(ValueError, match="size"):
        natural_image_patches(10, size=10_000)
    with pytest.raises(DatasetNotFoundError, match="natural_images/hyvarinen"):
        natural_image_patches(10, root=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image")
def test_scikit_image_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("PYROGEN_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    x = natural_image_patches(100, size=8, seed=0)
    assert x.shape == (100, 64)
