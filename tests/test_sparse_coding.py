"""Batched Lasso (FISTA), the dictionary step, SparseCoding and its Pyro model.

Seeds are fixed per test; tolerances are stated where they are used.
"""

import math

import numpy as np
import pytest
import torch

from pyrogen.infer.dictionary import (
    dictionary_objective,
    sufficient_statistics,
    update_dictionary,
)
from pyrogen.infer.lasso import lasso_fista, lasso_objective, lipschitz_constant
from pyrogen.models.sparse_coding import SparseCoding, SparseCodingModel, map_codes


def random_problem(n, d, k, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(d, k, generator=g, dtype=dtype)
    phi /= phi.norm(dim=0)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    return X, phi


def planted(n=2000, d=20, k=30, s=3, noise=0.01, seed=0):
    """Data from a known dictionary: ``s`` nonzeros per code, magnitudes in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(d, k, generator=g, dtype=torch.float64)
    true /= true.norm(dim=0)
    support = torch.rand(n, k, generator=g).argsort(1)[:, :s]
    mag = torch.rand(n, s, generator=g, dtype=torch.float64) + 0.5
    sign = torch.randint(0, 2, (n, s), generator=g).to(torch.float64) * 2 - 1
    codes = torch.zeros(n, k, dtype=torch.float64).scatter_(1, support, mag * sign)
    X = codes @ true.T + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return X, true


# ----------------------------------------------------------------------------- Lasso


@pytest.mark.parametrize("d,k,alpha,seed", [(20, 30, 0.3, 0), (15, 10, 0.05, 1), (8, 40, 1.0, 2)])
def test_lasso_matches_sklearn(d, k, alpha, seed):
    from sklearn.linear_model import Lasso

    X, phi = random_problem(25, d, k, seed)
    result = lasso_fista(X, phi, alpha, tol=1e-12, max_iter=100_000)
    assert bool(result.converged.all())
    ref = np.stack(
        [
            # sklearn's objective is ours divided by d (n_samples = d rows of phi)
            Lasso(alpha=alpha / d, fit_intercept=False, tol=1e-12, max_iter=1_000_000)
            .fit(phi.numpy(), x.numpy())
            .coef_
            for x in X
        ]
    )
    # tolerance 1e-4 on every code entry
    np.testing.assert_allclose(result.codes.numpy(), ref, atol=1e-4, rtol=0)
    obj = 0.5 * ((X - result.codes @ phi.T) ** 2).sum(1) + alpha * result.codes.abs().sum(1)
    torch.testing.assert_close(result.objective, obj)


@pytest.mark.parametrize("polish", [True, False])
def test_lasso_kkt(polish):
    X, phi = random_problem(50, 20, 30, 3)
    alpha = 0.2
    a = lasso_fista(X, phi, alpha, tol=1e-12, max_iter=100_000, polish=polish).codes
    corr = (X - a @ phi.T) @ phi  # Phi^T (x - Phi a)
    # |corr_j| <= alpha everywhere, corr_j = alpha sign(a_j) on the support (tolerance 1e-6)
    assert float(corr.abs().max()) <= alpha + 1e-6
    nz = a != 0
    assert int(nz.sum()) > 0 and int((~nz).sum()) > 0
    torch.testing.assert_close(corr[nz], alpha * a[nz].sign(), atol=1e-6, rtol=0)


def test_lasso_duality_gap_bounds_suboptimality_and_warm_start():
    X, phi = random_problem(40, 16, 24, 4)
    alpha = 0.1
    exact = lasso_fista(X, phi, alpha, tol=1e-13, max_iter=100_000)
    loose = lasso_fista(X, phi, alpha, tol=1e-2, polish=False)
    assert bool(loose.converged.all())
    sub = loose.objective - exact.objective
    assert bool((sub >= -1e-12).all()) and bool((sub <= loose.gap + 1e-12).all())
    assert bool((loose.gap <= 1e-2 * loose.objective).all())
    # started at the solution, every example stops at the first check
    warm = lasso_fista(X, phi, alpha, init=exact.codes, tol=1e-6)
    assert int(warm.n_iter.max()) == 0
    assert warm.max_iter == 0


def test_lasso_float32_and_zero_rows():
    X, phi = random_problem(64, 12, 20, 5, dtype=torch.float32)
    X[3] = 0
    r = lasso_fista(X, phi, 0.1, tol=1e-5)
    assert r.codes.dtype == torch.float32 and r.codes.shape == (64, 20)
    assert bool(r.converged.all()) and float(r.codes[3].abs().max()) == 0.0
    r64 = lasso_fista(X.double(), phi.double(), 0.1, tol=1e-12, max_iter=100_000)
    # float32 codes agree to 1e-3 with the float64 solution
    torch.testing.assert_close(r.codes.double(), r64.codes, atol=1e-3, rtol=0)


def test_lasso_extra_quadratic_term():
    """With prior p and beta: the KKT conditions of the augmented Lasso."""
    X, phi = random_problem(30, 10, 15, 6)
    g = torch.Generator().manual_seed(7)
    prior = torch.randn(30, 15, generator=g, dtype=torch.float64)
    alpha, beta = 0.3, 0.5
    a = lasso_fista(X, phi, alpha, prior=prior, beta=beta, tol=1e-12, max_iter=100_000).codes
    corr = (X - a @ phi.T) @ phi + beta * (prior - a)
    assert float(corr.abs().max()) <= alpha + 1e-7
    nz = a != 0
    torch.testing.assert_close(corr[nz], alpha * a[nz].sign(), atol=1e-7, rtol=0)


def test_lasso_objective_and_lipschitz():
    X, phi = random_problem(100, 10, 20, 8)
    L = lipschitz_constant(phi)
    assert math.isclose(L, float(torch.linalg.matrix_norm(phi, 2)) ** 2, rel_tol=1e-10)
    vals = lasso_objective(X, phi, 0.2, tol=1e-10, batch_size=32, reduce=False)
    ref = lasso_fista(X, phi, 0.2, tol=1e-12, max_iter=100_000).objective
    torch.testing.assert_close(vals, ref, atol=1e-8, rtol=1e-8)
    assert math.isclose(lasso_objective(X, phi, 0.2, tol=1e-10), float(ref.mean()), rel_tol=1e-8)


def test_lasso_bad_input():
    X, phi = random_problem(5, 4, 6, 9)
    with pytest.raises(ValueError, match="alpha"):
        lasso_fista(X, phi, -1.0)
    with pytest.raises(ValueError, match="features"):
        lasso_fista(X[:, :3], phi, 0.1)
    with pytest.raises(ValueError, match="shape"):
        lasso_fista(X[0], phi, 0.1)
    bad = X.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lasso_fista(bad, phi, 0.1)


# ----------------------------------------------------------------------------- dictionary


def test_dictionary_step_never_increases_objective_and_keeps_norms():
    g = torch.Generator().manual_seed(10)
    n, d, k = 300, 12, 25
    X = 3 * torch.randn(n, d, generator=g, dtype=torch.float64)  # large: the ball is active
    A = torch.randn(n, k, generator=g, dtype=torch.float64) * (torch.rand(n, k, generator=g) < 0.2)
    phi = torch.randn(d, k, generator=g, dtype=torch.float64)
    phi /= phi.norm(dim=0)
    S, B = sufficient_statistics(X, A)
    trace = (X * X).sum()
    values = [float(dictionary_objective(phi, S, B, trace))]
    for sweeps in (1, 1, 2, 3):
        phi = update_dictionary(phi, S, B, n_sweeps=sweeps).phi
        values.append(float(dictionary_objective(phi, S, B, trace)))
        assert float(phi.norm(dim=0).max()) <= 1 + 1e-12
    # monotone (tolerance 1e-10 relative for rounding), and it is the reconstruction error
    assert all(b <= a + 1e-10 * abs(a) for a, b in zip(values, values[1:]))
    assert values[-1] < 0.9 * values[0]
    assert int((phi.norm(dim=0) > 1 - 1e-9).sum()) >= k // 2  # the constraint binds
    assert math.isclose(values[-1], 0.5 * float(((X - A @ phi.T) ** 2).sum()), rel_tol=1e-10)


def test_dictionary_unused_atom_reinitialized_from_worst_example():
    g = torch.Generator().manual_seed(11)
    n, d, k = 100, 8, 6
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    A = torch.randn(n, k, generator=g, dtype=torch.float64)
    A[:, 2] = 0  # atom 2 is never used
    phi = torch.randn(d, k, generator=g, dtype=torch.float64)
    phi /= phi.norm(dim=0)
    S, B = sufficient_statistics(X, A)
    before = float(dictionary_objective(phi, S, B, (X * X).sum()))
    up = update_dictionary(phi, S, B, X=X, codes=A)
    assert up.reinitialized.tolist() == [2]
    residual = X - A @ phi.T
    worst = residual[(residual**2).sum(1).argmax()]
    torch.testing.assert_close(up.phi[:, 2], worst / worst.norm())
    after = float(dictionary_objective(up.phi, S, B, (X * X).sum()))
    assert after <= before + 1e-10
    # without data the unused atom stays as it was
    torch.testing.assert_close(update_dictionary(phi, S, B).phi[:, 2], phi[:, 2])


# ----------------------------------------------------------------------------- SparseCoding


def test_recovers_planted_dictionary():
    """d=20, k=30, 3 nonzeros per code, 2000 examples, noise 0.01: at least 90% of the true
    atoms have a learned atom with |cos| > 0.95."""
    X, true = planted()
    sc = SparseCoding(30, alpha=0.1, batch_size=100, max_epochs=10, forget=20, seed=0, tol=1e-3)
    sc.fit(X)
    cos = (sc.components_ @ true).abs().max(0).values
    assert float((cos > 0.95).double().mean()) >= 0.9
    assert float(sc.components_.norm(dim=1).max()) <= 1 + 1e-12
    assert sc.objective(X) < lasso_objective(X, true, 0.1) * 1.05


def test_sparse_coding_api_shapes_and_numpy():
    X, _ = planted(n=300, seed=1)
    Xn = X.numpy().astype(np.float32)
    sc = SparseCoding(16, alpha=0.1, batch_size=64, max_epochs=2, seed=0).fit(Xn)
    assert sc.components_.shape == (16, 20) and sc.components_.dtype == torch.float32
    codes = sc.transform(Xn)
    assert isinstance(codes, np.ndarray) and codes.shape == (300, 16)
    assert (codes == 0).mean() > 0.1  # sparse
    recon = sc.inverse_transform(codes)
    assert isinstance(recon, np.ndarray) and recon.shape == Xn.shape
    assert ((recon - Xn) ** 2).sum() < 0.5 * (Xn**2).sum()
    # transform gives the Lasso codes for the learned dictionary
    ref = lasso_fista(X.float(), sc.components_.T, 0.1, tol=1e-6).codes
    np.testing.assert_allclose(codes, ref.numpy(), atol=1e-3)
    # partial_fit continues from the current dictionary
    before = sc.objective(Xn)
    for _ in range(3):
        sc.partial_fit(Xn[:128])
    assert sc.n_steps_ == 2 * 5 + 3
    assert sc.score(Xn) == pytest.approx(-sc.objective(Xn))
    assert sc.objective(Xn) < before * 1.1


def test_sparse_coding_bad_input():
    with pytest.raises(ValueError, match="n_atoms"):
        SparseCoding(0)
    with pytest.raises(ValueError, match="alpha"):
        SparseCoding(4, alpha=-0.1)
    with pytest.raises(ValueError, match="init"):
        SparseCoding(4, init="nope")
    sc = SparseCoding(4, max_epochs=1)
    X = torch.randn(20, 5)
    bad = X.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        sc.fit(bad)
    with pytest.raises(ValueError, match="2-D"):
        sc.fit(X[0])
    with pytest.raises(RuntimeError, match="not fitted"):
        sc.transform(X)
    sc.fit(X)
    with pytest.raises(ValueError, match="expected 5 features"):
        sc.transform(torch.randn(3, 4))
    with pytest.raises(ValueError, match="codes"):
        sc.inverse_transform(torch.randn(3, 7))


def test_sparse_coding_as_learner_in_train(tmp_path):
    from pyrogen.train import train

    X, _ = planted(n=400, seed=2)
    X = X.float()
    sc = SparseCoding(30, alpha=0.1, forget=5)
    result = train(sc, X, epochs=3, batch_size=100, val_data=X[:100], progress=False, out=tmp_path)
    assert sc.n_steps_ == 12
    first, last = result.history[0]["objective"], result.last("val_objective", "val")
    assert last < first
    # exact resume from the checkpoint
    again = SparseCoding(30, alpha=0.1, forget=5)
    train(again, X, epochs=3, batch_size=100, progress=False, out=tmp_path)
    torch.testing.assert_close(again.components_, sc.components_)


# ----------------------------------------------------------------------------- Pyro model


def test_map_codes_with_autodelta_agree_with_lasso():
    """MAP by SVI + AutoDelta vs FISTA codes for alpha = sigma^2 / b: agree to 1e-3."""
    X, phi = random_problem(6, 8, 5, 12)
    alpha, sigma = 0.3, 0.5
    model = SparseCodingModel(phi.T, alpha=alpha, sigma=sigma)
    assert float(model.laplace_scale.detach()) == pytest.approx(sigma**2 / alpha)
    lasso = lasso_fista(X, phi, alpha, tol=1e-12, max_iter=100_000).codes
    assert int((lasso == 0).sum()) > 0  # some zeros to get right
    codes = map_codes(model, X, num_steps=1000, lr=0.1, final_lr=1e-5)
    torch.testing.assert_close(codes, lasso, atol=1e-3, rtol=0)
    # the model's parameters were not changed by the MAP fit
    torch.testing.assert_close(model.components.detach(), phi.T)


def test_sparse_coding_model_trace_shapes():
    import pyro

    X, phi = random_problem(7, 8, 5, 13, dtype=torch.float32)
    model = SparseCodingModel(phi.T, alpha=0.1)
    tr = pyro.poutine.trace(model.model).get_trace(X)
    assert tr.nodes["codes"]["value"].shape == (7, 5)
    assert tr.nodes["codes"]["fn"].event_shape == (5,)
    assert tr.nodes["x"]["fn"].event_shape == (8,)
    with pytest.raises(ValueError, match="alpha"):
        SparseCodingModel(phi.T, alpha=0.0)


@pytest.mark.requires_cuda
def test_lasso_and_sparse_coding_on_cuda():
    X, phi = random_problem(200, 12, 20, 14, dtype=torch.float32)
    cpu = lasso_fista(X, phi, 0.1, tol=1e-6)
    gpu = lasso_fista(X.cuda(), phi.cuda(), 0.1, tol=1e-6)
    assert gpu.codes.is_cuda
    torch.testing.assert_close(gpu.codes.cpu(), cpu.codes, atol=1e-4, rtol=0)
    sc = SparseCoding(20, alpha=0.1, batch_size=50, max_epochs=2).fit(X.cuda())
    assert sc.components_.is_cuda and sc.transform(X.cuda()).is_cuda
