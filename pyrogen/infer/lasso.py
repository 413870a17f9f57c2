r"""Batched Lasso: sparse codes of many examples at once by FISTA, with a duality-gap stop.

For every row :math:`x_i \in \mathbb R^d` of ``X`` and a dictionary
:math:`\Phi \in \mathbb R^{d \times k}` (columns are the atoms, usually of unit norm),
:func:`lasso_fista` solves

.. math::

    a_i^\star = \arg\min_{a \in \mathbb R^k} \; P_i(a) =
        \tfrac12 \lVert x_i - \Phi a \rVert_2^2 + \alpha \lVert a \rVert_1

(optionally plus :math:`\tfrac\beta2 \lVert a - p_i \rVert_2^2`, see below) for the whole
batch in one set of matrix products, on the device and in the dtype of ``X``.

**Algorithm.** FISTA (Beck & Teboulle [1]) with the constant step :math:`1/L`,
:math:`L = \lVert \Phi \rVert_2^2 = \lambda_{\max}(\Phi^\top \Phi)` (the Lipschitz constant
of the gradient of the smooth part). The Gram matrix :math:`G = \Phi^\top \Phi` and the
correlations :math:`C = X \Phi` are computed once, so one iteration for the batch is a single
``(n, k) @ (k, k)`` product followed by the soft-threshold:

.. math::

    a^{(t+1)} = \mathcal S_{\alpha/L}\bigl(y^{(t)} (I - G/L) + C/L\bigr), \qquad
    y^{(t+1)} = a^{(t+1)} + \tfrac{\tau_t - 1}{\tau_{t+1}} (a^{(t+1)} - a^{(t)}),

with :math:`\tau_{t+1} = (1 + \sqrt{1 + 4 \tau_t^2}) / 2` and
:math:`\mathcal S_\lambda(v) = \operatorname{sign}(v) \max(|v| - \lambda, 0)`. Each example
keeps its own momentum, which is reset (:math:`\tau = 1`) when it points uphill, the
gradient restart of O'Donoghue & Candès [2]: :math:`(y^{(t)} - a^{(t+1)})^\top
(a^{(t+1)} - a^{(t)}) > 0`. This removes FISTA's oscillations and, in practice, gives
linear convergence once the support is found [2]. ``init`` warm-starts the iterations
(e.g. the codes of the previous dictionary).

**Polishing.** At each check, the rows whose support has not changed since the previous
check also try the exact minimiser on that support with those signs,
:math:`a_S = G_{SS}^{-1} (c_S - \alpha \operatorname{sign}(a_S))` (batched Cholesky
solves, supports padded to a common size). It is accepted only when its signs agree with the
support's — it then minimises :math:`P` on that face, so :math:`P` cannot increase — and its
duality gap is smaller; FISTA restarts from it. Once the support is right this ends the
slow tail of the iterations (the homotopy/LARS idea of finishing on the active set).

**Stopping.** Every ``check_every`` iterations the duality gap of each example still running
is computed from its residual :math:`r = x - \Phi a`: the scaled residual
:math:`\theta = r \min(1, \alpha / \lVert \Phi^\top r \rVert_\infty)` is dual feasible, the
dual objective is :math:`D(\theta) = x^\top \theta - \tfrac12 \lVert \theta \rVert^2` and
:math:`\operatorname{gap} = P(a) - D(\theta) \ge P(a) - P(a^\star) \ge 0`. An example stops
when :math:`\operatorname{gap}_i \le \text{tol} \cdot P_i(a_i)`, i.e. its objective is within
a relative ``tol`` of the optimum; it is then removed from the batch (the rest goes on). In
float32 the gap itself is only accurate to about :math:`10^{-6}` relative, so ask for
``tol >= 1e-5`` there (float64 for tighter tolerances); ``max_iter`` bounds the work.

**The extra quadratic term.** With ``prior`` :math:`p` and ``beta`` :math:`\beta > 0` the
objective is :math:`P_i(a) + \tfrac\beta2 \lVert a - p_i \rVert^2`, the code step of predictive
sparse decomposition (:mod:`pyrogen.models.psd`). It is the same Lasso for the augmented data
:math:`\tilde x = (x, \sqrt\beta p)` and dictionary :math:`\tilde \Phi = (\Phi; \sqrt\beta I)`,
so the same FISTA (with :math:`G + \beta I`, :math:`C + \beta p`,
:math:`L + \beta`) and the same duality gap apply.

**Scaling, and scikit-learn.** :class:`sklearn.linear_model.Lasso` minimises
:math:`\frac{1}{2 n_\text{samples}} \lVert y - X w \rVert^2 + \alpha_\text{sk} \lVert w
\rVert_1`. Solving one of our problems with it means ``X = Phi`` (``n_samples = d`` rows)
and ``y = x_i``; multiplying its objective by :math:`d` gives ours, so
**alpha_sklearn = alpha / d** (with ``fit_intercept=False``). scikit-learn's dictionary
learning (``sparse_encode``, ``MiniBatchDictionaryLearning``) does this division itself and
uses the same :math:`\alpha` as here.

**References**

[1] A Fast Iterative Shrinkage-Thresholding Algorithm for Linear Inverse Problems.
    Amir Beck, Marc Teboulle. 2009.

[2] Adaptive Restart for Accelerated Gradient Schemes. Brendan O'Donoghue, Emmanuel Candès.
    2015.

[3] Regression Shrinkage and Selection via the Lasso. Robert Tibshirani. 1996.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["LassoResult", "lasso_fista", "lasso_objective", "lipschitz_constant"]


@dataclass
class LassoResult:
    """Codes and per-example diagnostics of :func:`lasso_fista`.

    :ivar codes: ``(n, k)`` the solutions :math:`a_i`.
    :ivar objective: ``(n,)`` :math:`P_i(a_i)` (with the extra quadratic term if any).
    :ivar gap: ``(n,)`` duality gap at the last check (an upper bound on
        :math:`P_i(a_i) - P_i(a_i^\\star)`).
    :ivar n_iter: ``(n,)`` FISTA iterations each example ran.
    :ivar converged: ``(n,)`` whether ``gap <= tol * objective`` was reached.
    """

    codes: torch.Tensor
    objective: torch.Tensor
    gap: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor

    @property
    def max_iter(self) -> int:
        return int(self.n_iter.max()) if self.n_iter.numel() else 0


def lipschitz_constant(phi: torch.Tensor, gram: torch.Tensor | None = None) -> float:
    r""":math:`L = \lVert \Phi \rVert_2^2`, the largest eigenvalue of :math:`\Phi^\top \Phi`
    (computed in float64 by ``torch.linalg.eigvalsh`` on the smaller Gram matrix)."""
    if gram is None:
        gram = phi.T @ phi if phi.shape[1] <= phi.shape[0] else phi @ phi.T
    return float(torch.linalg.eigvalsh(gram.to(torch.float64))[-1])


def _check(X: torch.Tensor, phi: torch.Tensor, alpha: float) -> None:
    if not isinstance(X, torch.Tensor) or not isinstance(phi, torch.Tensor):
        raise TypeError(
            f"X and phi must be torch tensors, got {type(X).__name__}, {type(phi).__name__}"
        )
    if X.dim() != 2 or phi.dim() != 2:
        raise ValueError(
            f"X must be (n, d) and phi (d, k); got shapes {tuple(X.shape)}, {tuple(phi.shape)}"
        )
    if X.shape[1] != phi.shape[0]:
        raise ValueError(
            f"X has {X.shape[1]} features but the dictionary phi has {phi.shape[0]} rows "
            "(phi must be (d, k), atoms as columns)"
        )
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha: expected a finite number >= 0, got {alpha!r}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X contains NaN or infinite values")
    if not bool(torch.isfinite(phi).all()):
        raise ValueError("phi contains NaN or infinite values")


def _gap(X, phi, a, alpha, prior, beta):
    """Primal objective and duality gap of each row (see module docs)."""
    r = X - a @ phi.T
    corr = r @ phi  # Phi^T r
    rr = (r * r).sum(1)
    xr = (X * r).sum(1)
    if prior is not None:
        rp = prior - a
        corr = corr + beta * rp
        rr = rr + beta * (rp * rp).sum(1)
        xr = xr + beta * (prior * rp).sum(1)
    l1 = a.abs().sum(1)
    primal = 0.5 * rr + alpha * l1
    dual_norm = corr.abs().amax(1)
    if alpha > 0:
        scale = torch.clamp(alpha / dual_norm.clamp_min(torch.finfo(a.dtype).tiny), max=1.0)
    else:  # plain least squares: the dual is feasible only at Phi^T r = 0
        scale = torch.ones_like(dual_norm)
    dual = scale * xr - 0.5 * scale * scale * rr
    gap = (primal - dual).clamp_min(0)
    if alpha == 0:
        gap = gap + torch.where(dual_norm > 0, torch.full_like(gap, math.inf), 0.0)
    return primal, gap


def _polish(a, gram, c, alpha, max_support):
    r"""Exact minimiser on each row's current support with its current signs (see module
    docs): :math:`a_S = G_{SS}^{-1}(c_S - \alpha\,\operatorname{sign}(a_S))`, batched over
    rows by padding supports to a common size. Rows whose support is empty, larger than
    ``max_support`` or whose :math:`G_{SS}` is singular are returned unchanged."""
    mask = a != 0
    size = mask.sum(1)
    m = int(size.max()) if size.numel() else 0
    m = min(m, max_support)
    if m == 0:
        return a
    idx = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :m]
    valid = torch.gather(mask, 1, idx)
    both = valid[:, :, None] & valid[:, None, :]
    sub = torch.where(both, gram[idx[:, :, None], idx[:, None, :]], 0.0)
    sub.diagonal(dim1=1, dim2=2).add_((~valid).to(a.dtype))
    signs = torch.sign(torch.gather(a, 1, idx))
    rhs = torch.gather(c, 1, idx) - alpha * signs
    rhs = torch.where(valid, rhs, 0.0)
    chol, info = torch.linalg.cholesky_ex(sub)
    sol = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
    cand = torch.zeros_like(a).scatter_(1, idx, torch.where(valid, sol, 0.0))
    # only sign-consistent solutions: then cand minimises P on the face of a, P(cand) <= P(a)
    consistent = ((sol * signs > 0) | ~valid).all(1)
    ok = (info == 0) & (size <= max_support) & (size > 0) & consistent
    return torch.where(ok[:, None], cand, a)


def lasso_fista(
    X: torch.Tensor,
    phi: torch.Tensor,
    alpha: float,
    *,
    init: torch.Tensor | None = None,
    tol: float = 1e-4,
    max_iter: int = 1000,
    check_every: int = 10,
    gram: torch.Tensor | None = None,
    lipschitz: float | None = None,
    prior: torch.Tensor | None = None,
    beta: float = 0.0,
    restart: bool = True,
    polish: bool = True,
    check_input: bool = True,
) -> LassoResult:
    r"""Solve the Lasso for every row of ``X`` by FISTA (see module docs).

    :param X: ``(n, d)`` data, one example per row.
    :param phi: ``(d, k)`` dictionary :math:`\Phi`, one atom per column.
    :param float alpha: :math:`\alpha \ge 0`, the weight of :math:`\lVert a \rVert_1`
        (scikit-learn's ``Lasso`` needs ``alpha / d``). With ``alpha = 0`` (least squares)
        the gap is finite only at an exact solution, so ``max_iter`` iterations run.
    :param init: ``(n, k)`` warm start (default zeros).
    :param float tol: stop an example when its duality gap is ``<= tol`` times its objective.
    :param int max_iter: at most this many iterations.
    :param int check_every: iterations between gap checks.
    :param gram: precomputed :math:`\Phi^\top \Phi` (``(k, k)``).
    :param float lipschitz: precomputed :math:`\lVert \Phi \rVert_2^2`.
    :param prior: ``(n, k)`` centre :math:`p` of the extra term
        :math:`\tfrac\beta2 \lVert a - p \rVert^2` (used when ``beta > 0``).
    :param float beta: its weight.
    :param bool restart: gradient-based momentum restart [2].
    :param bool polish: at each check, also try the exact solution on the current support
        and signs (see module docs).
    :param bool check_input: check shapes and finiteness (one host sync).
    :returns: :class:`LassoResult`.
    """
    if check_input:
        _check(X, phi, alpha)
        if tol < 0 or max_iter < 0 or check_every < 1:
            raise ValueError(
                f"need tol >= 0, max_iter >= 0, check_every >= 1; got {tol}, {max_iter}, "
                f"{check_every}"
            )
        if beta < 0:
            raise ValueError(f"beta: expected >= 0, got {beta}")
    alpha = float(alpha)
    phi = phi.to(X)
    n, k = X.shape[0], phi.shape[1]
    if gram is None:
        gram = phi.T @ phi
    L = lipschitz_constant(phi, gram) if lipschitz is None else float(lipschitz)
    use_prior = prior is not None and beta > 0
    if use_prior:
        prior = prior.to(X)
        if prior.shape != (n, k):
            raise ValueError(f"prior: expected shape {(n, k)}, got {tuple(prior.shape)}")
        L = L + beta
    else:
        prior, beta = None, 0.0
    if L <= 0:  # an all-zero dictionary: the solution is a = 0 (or the prior)
        L = 1.0
    step = 1.0 / L
    # a (I - G/L) + C/L is the gradient step; M = I - G/L, Cs = C/L
    M = -step * gram.to(X)
    M.diagonal().add_(1.0 - step * beta)
    C = X @ phi
    if use_prior:
        C = C + beta * prior
    Cs = C * step
    gram_aug = gram.to(X)
    if beta > 0:
        gram_aug = gram_aug + beta * torch.eye(k, dtype=X.dtype, device=X.device)
    thresh = alpha * step

    a = torch.zeros(n, k, dtype=X.dtype, device=X.device) if init is None else init.to(X).clone()
    if a.shape != (n, k):
        raise ValueError(f"init: expected shape {(n, k)}, got {tuple(a.shape)}")
    codes = a.clone()
    objective = torch.zeros(n, dtype=X.dtype, device=X.device)
    gap = torch.full((n,), math.inf, dtype=X.dtype, device=X.device)
    n_iter = torch.zeros(n, dtype=torch.long, device=X.device)
    converged = torch.zeros(n, dtype=torch.bool, device=X.device)

    rows = torch.arange(n, device=X.device)  # original indices of the rows still running
    x_act, p_act, Cs_act, C_act = X, prior, Cs, C
    max_support = X.shape[1] if beta == 0 else k
    prev_support = None
    y = a.clone()
    tau = torch.ones(n, 1, dtype=X.dtype, device=X.device)
    it = 0
    while rows.numel() > 0:
        last = it >= max_iter
        if it % check_every == 0 or last:
            primal, g = _gap(x_act, phi, a, alpha, p_act, beta)
            if polish:
                support = a != 0
                if prev_support is not None:
                    # polish the rows whose support has not changed since the last check
                    stable = (support == prev_support).all(1) & (g > tol * primal)
                    stable &= support.any(1) & (support.sum(1) <= max_support)
                    sel = stable.nonzero().squeeze(1)
                    if sel.numel() > 0:
                        p_sel = p_act[sel] if p_act is not None else None
                        cand = _polish(a[sel], gram_aug, C_act[sel], alpha, max_support)
                        primal_c, g_c = _gap(x_act[sel], phi, cand, alpha, p_sel, beta)
                        better = (g_c < g[sel]) & (primal_c <= primal[sel])
                        sel, cand = sel[better], cand[better]
                        a[sel], y[sel], tau[sel] = cand, cand, 1.0
                        primal[sel], g[sel] = primal_c[better], g_c[better]
                prev_support = support
            done = g <= tol * primal
            if last:
                done = torch.ones_like(done)
            codes[rows] = a
            objective[rows], gap[rows] = primal, g
            n_iter[rows] = it
            converged[rows] = g <= tol * primal
            keep = ~done
            if not bool(keep.all()):
                rows, a, y, tau = rows[keep], a[keep], y[keep], tau[keep]
                if polish:
                    prev_support = prev_support[keep]
                Cs_act, C_act = Cs[rows], C[rows]
                x_act = X[rows]
                p_act = prior[rows] if prior is not None else None
            if rows.numel() == 0:
                break
        z = torch.addmm(Cs_act, y, M)
        a_new = F.softshrink(z, thresh) if thresh > 0 else z
        diff = a_new - a
        tau_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * tau * tau))
        mom = (tau - 1.0) / tau_new
        if restart:
            uphill = ((y - a_new) * diff).sum(1, keepdim=True) > 0
            mom = torch.where(uphill, 0.0, mom)
            tau_new = torch.where(uphill, 1.0, tau_new)
        y = torch.addcmul(a_new, mom, diff)
        a, tau = a_new, tau_new
        it += 1
    return LassoResult(codes, objective, gap, n_iter, converged)


def lasso_objective(
    X: torch.Tensor,
    phi: torch.Tensor,
    alpha: float,
    *,
    tol: float = 1e-5,
    max_iter: int = 5000,
    batch_size: int = 4096,
    reduce: bool = True,
) -> torch.Tensor | float:
    r"""Mean over the rows of ``X`` of :math:`\min_a \tfrac12 \lVert x - \Phi a \rVert^2 +
    \alpha \lVert a \rVert_1`, each solved by :func:`lasso_fista` to a relative duality gap
    ``tol`` — the number by which dictionaries are compared on held-out data.

    :param phi: ``(d, k)`` dictionary (atoms as columns; a fitted
        :class:`~pyrogen.models.sparse_coding.SparseCoding` gives ``components_.T``).
    :param int batch_size: rows solved together.
    :param bool reduce: return the mean (a float) or the ``(n,)`` per-row values.
    """
    _check(X, phi, alpha)
    phi = phi.to(X)
    gram = phi.T @ phi
    L = lipschitz_constant(phi, gram)
    out = [
        lasso_fista(
            xb,
            phi,
            alpha,
            tol=tol,
            max_iter=max_iter,
            gram=gram,
            lipschitz=L,
            check_input=False,
        ).objective
        for xb in X.split(int(batch_size))
    ]
    values = torch.cat(out)
    return float(values.mean()) if reduce else values
