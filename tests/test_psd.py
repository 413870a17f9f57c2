"""Predictive sparse decomposition: the encoder learns to predict the sparse codes."""

import numpy as np
import pytest
import torch

from pyrogen.infer.lasso import lasso_fista
from pyrogen.models.psd import PSD, PSDLearner


def planted(n=1000, d=20, k=30, s=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(d, k, generator=g)
    true /= true.norm(dim=0)
    support = torch.rand(n, k, generator=g).argsort(1)[:, :s]
    mag = (torch.rand(n, s, generator=g) + 0.5) * (torch.randint(0, 2, (n, s), generator=g) * 2 - 1)
    codes = torch.zeros(n, k).scatter_(1, support, mag)
    return codes @ true.T + 0.01 * torch.randn(n, d, generator=g)


def relative_error(pred, codes):
    return float(((pred - codes) ** 2).sum() / (codes**2).sum())


def test_psd_prediction_error_decreases():
    """Seed 0; the relative error of the encoder's prediction to the optimal codes falls by
    at least half from the first 10 to the last 10 updates, and its error to the plain Lasso
    codes of the final dictionary is below 0.5 (it is about 1 before training)."""
    torch.manual_seed(0)
    X = planted()
    psd = PSD(20, 30, alpha=0.1, beta=1.0)
    psd.init_from_data(X, torch.Generator().manual_seed(0))
    lasso0 = lasso_fista(X, psd.components.T, 0.1, tol=1e-6).codes
    before = relative_error(psd.transform(X), lasso0)
    psd.fit(X, epochs=10, batch_size=100, lr=1e-2)
    h = [row["prediction_error"] for row in psd.history_]
    assert len(h) == 100
    assert np.mean(h[-10:]) < 0.5 * np.mean(h[:10])
    e = [row["energy"] for row in psd.history_]
    assert np.mean(e[-10:]) < np.mean(e[:10])
    lasso = lasso_fista(X, psd.components.T, 0.1, tol=1e-6).codes
    after = relative_error(psd.transform(X), lasso)
    assert after < 0.5 and after < 0.6 * before
    assert float(psd.components.norm(dim=1).max()) <= 1 + 1e-6


def test_psd_optimal_codes_minimise_energy():
    torch.manual_seed(1)
    X = planted(n=50).double()
    psd = PSD(20, 30, alpha=0.1, beta=0.5, tol=1e-10, max_iter=20_000).double()
    psd.init_from_data(X)
    z = psd.optimal_codes(X).codes
    e = psd.energy(X, z)
    for scale in (1e-3, 1e-2):
        assert bool((psd.energy(X, z + scale * torch.randn_like(z)) >= e - 1e-10).all())


def test_psd_learner_protocol_and_shapes(tmp_path):
    from pyrogen.train import train

    X = planted(n=300)
    psd = PSD(20, 16, alpha=0.1)
    learner = PSDLearner(psd, lr=1e-2)
    train(learner, X, epochs=2, batch_size=100, progress=False, out=tmp_path)
    assert learner.count == 6
    state = learner.state_dict()
    other = PSDLearner(PSD(20, 16, alpha=0.1), lr=1e-2)
    other.load_state_dict(state)
    torch.testing.assert_close(other.psd.components, psd.components)
    codes = psd.transform(X.numpy())
    assert isinstance(codes, np.ndarray) and codes.shape == (300, 16)
    assert psd.inverse_transform(torch.as_tensor(codes)).shape == (300, 20)
    assert set(learner.evaluate(X[:50])) == {"energy", "prediction_error"}


def test_psd_bad_input():
    with pytest.raises(ValueError, match="n_atoms"):
        PSD(4, 0)
    with pytest.raises(ValueError, match="beta"):
        PSD(4, 3, beta=0.0)
    psd = PSD(4, 3)
    with pytest.raises(ValueError, match="expected 4 features"):
        psd.transform(torch.randn(2, 5))
    with pytest.raises(ValueError, match="NaN"):
        psd.fit(torch.full((3, 4), float("nan")))
