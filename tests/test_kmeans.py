"""k-means (k-means++ / Lloyd / mini-batch) and the triangle features of Coates et al."""

import numpy as np
import pytest
import torch

from pyrogen.models.kmeans import (
    KMeansFeatures,
    kmeans_plus_plus,
    pairwise_sq_distances,
    spherical_kmeans,
    triangle_features,
)


def blobs(n_per=100, k=5, d=10, spread=0.3, seed=0):
    """Centres 10 e_1, ..., 10 e_k (all 10 sqrt(2) apart), Gaussian spread."""
    g = torch.Generator().manual_seed(seed)
    centres = 10 * torch.eye(k, d, dtype=torch.float64)
    labels = torch.arange(k).repeat_interleave(n_per)
    X = centres[labels] + spread * torch.randn(k * n_per, d, generator=g, dtype=torch.float64)
    perm = torch.randperm(k * n_per, generator=g)
    return X[perm], labels[perm], centres


def match_error(found, centres):
    """Largest distance from a true centre to its nearest found centre."""
    return float(pairwise_sq_distances(centres, found).min(1).values.sqrt().max())


@pytest.mark.parametrize("algorithm", ["lloyd", "minibatch"])
def test_recovers_well_separated_centres(algorithm):
    """5 blobs 14 apart in 10-D, spread 0.3, 100 points each: every true centre is within
    0.15 of a found one (the standard error of a blob mean is 0.03 per coordinate)."""
    X, labels, centres = blobs()
    km = KMeansFeatures(5, algorithm=algorithm, max_iter=20, batch_size=64, n_init=2).fit(X)
    assert km.cluster_centers_.shape == (5, 10)
    assert match_error(km.cluster_centers_, centres) < 0.15
    # the clustering is the planted one (up to relabelling)
    pred = km.predict(X)
    for c in range(5):
        assert len(set(pred[labels == c].tolist())) == 1
    assert km.inertia_ == pytest.approx(
        float(pairwise_sq_distances(X, km.cluster_centers_).min(1).values.sum())
    )


def test_triangle_features_formula_and_sparsity():
    X, labels, centres = blobs(seed=1)
    km = KMeansFeatures(5, max_iter=20).fit(X.numpy())
    f = km.transform(X.numpy())
    assert isinstance(f, np.ndarray) and f.shape == (500, 5)
    C = km.cluster_centers_.numpy()
    z = np.sqrt(((X.numpy()[:, None, :] - C[None]) ** 2).sum(-1))
    np.testing.assert_allclose(f, np.maximum(0, z.mean(1, keepdims=True) - z), atol=1e-8)
    assert (f >= 0).all()
    # well separated: exactly one active feature per example, the nearest centre
    assert ((f > 0).sum(1) == 1).all()
    np.testing.assert_array_equal(f.argmax(1), km.predict(X.numpy()))
    # on unstructured data about half the features are zero (those farther than average)
    g = torch.Generator().manual_seed(2)
    R = torch.randn(2000, 8, generator=g)
    fr = triangle_features(R, KMeansFeatures(16, max_iter=10).fit(R).cluster_centers_)
    zero = float((fr == 0).float().mean())
    assert 0.3 < zero < 0.7 and bool((fr > 0).any(1).all())


def test_hard_transform_and_kmeanspp():
    X, labels, centres = blobs(seed=3)
    km = KMeansFeatures(5, transform="hard", max_iter=5).fit(X)
    onehot = km.transform(X)
    assert torch.equal(onehot.sum(1), torch.ones(500, dtype=onehot.dtype))
    init = kmeans_plus_plus(X, 5, torch.Generator().manual_seed(0))
    # k-means++ on well-separated blobs picks one point per blob
    assert match_error(init, centres) < 2.0
    S = spherical_kmeans(X, init, n_iter=3)
    torch.testing.assert_close(S.norm(dim=1), torch.ones(5, dtype=S.dtype))


def test_kmeans_bad_input():
    with pytest.raises(ValueError, match="n_clusters"):
        KMeansFeatures(0)
    with pytest.raises(ValueError, match="algorithm"):
        KMeansFeatures(3, algorithm="elkan")
    with pytest.raises(ValueError, match="larger than the number of examples"):
        KMeansFeatures(10).fit(torch.randn(5, 2))
    with pytest.raises(ValueError, match="NaN"):
        KMeansFeatures(2).fit(torch.tensor([[0.0, float("nan")], [1.0, 2.0], [3.0, 4.0]]))
    km = KMeansFeatures(2).fit(torch.randn(20, 3))
    with pytest.raises(ValueError, match="expected 3 features"):
        km.transform(torch.randn(4, 2))
