r"""The dictionary step of sparse coding: atoms that best reconstruct the data from fixed codes.

With data :math:`X \in \mathbb R^{n \times d}` (one example per row), codes
:math:`A \in \mathbb R^{n \times k}` and a dictionary :math:`\Phi \in \mathbb R^{d \times k}`
(atoms :math:`\phi_j` as columns), :func:`update_dictionary` decreases

.. math::

    f(\Phi) = \tfrac12 \lVert X - A \Phi^\top \rVert_F^2
            = \tfrac12 \operatorname{tr}(X^\top X) - \operatorname{tr}(\Phi^\top B)
              + \tfrac12 \operatorname{tr}(\Phi^\top \Phi \, S)
    \quad \text{s.t.} \quad \lVert \phi_j \rVert_2 \le 1,

which depends on the data only through the sufficient statistics :math:`S = A^\top A`
(``(k, k)``) and :math:`B = X^\top A` (``(d, k)``). These can be sums over many mini-batches
(with forgetting), which is what makes online dictionary learning (Mairal et al. [1])
possible: the cost of a dictionary step does not grow with the number of examples seen.

**Block-coordinate descent.** One sweep minimises :math:`f` exactly over each atom in turn,
the others fixed. As a function of :math:`\phi_j` alone, :math:`f` is the isotropic quadratic
:math:`\tfrac{S_{jj}}2 \lVert \phi_j - u_j \rVert^2 + \text{const}` with
:math:`u_j = \phi_j + (b_j - \Phi s_j) / S_{jj}`, so its minimiser on the unit ball is the
projection

.. math::

    \phi_j \leftarrow u_j / \max(\lVert u_j \rVert_2, 1).

Each step is an exact block minimisation, hence :math:`f` never increases and every atom
stays in the unit ball (Mairal et al. [1], Algorithm 2; the same constrained least-squares
problem that Lee, Battle, Raina & Ng [2] solve through its Lagrange dual). The residual
:math:`R = B - \Phi S` is updated by a rank-one product after each atom, so a sweep costs
:math:`O(d k^2)` whatever :math:`n`.

**Unused atoms.** An atom with :math:`S_{jj} \le \text{unused\_tol} \cdot
\operatorname{tr}(S)/k` is (almost) never used by the codes, so it can be changed without
changing :math:`f` (when :math:`S_{jj} = 0` its row and column of :math:`S` are zero too).
When the batch ``X`` and its codes ``A`` are given, such atoms are re-initialised to the
normalised residuals :math:`(x_i - \Phi a_i)/\lVert x_i - \Phi a_i \rVert` of the examples
the current dictionary reconstructs worst (one distinct example per atom, largest residual
first), i.e. pointed at what the dictionary is missing; otherwise they are left as they are.

**References**

[1] Online Learning for Matrix Factorization and Sparse Coding. Julien Mairal, Francis Bach,
    Jean Ponce, Guillermo Sapiro. 2010.

[2] Efficient Sparse Coding Algorithms. Honglak Lee, Alexis Battle, Rajat Raina,
    Andrew Y. Ng. 2006.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DictionaryUpdate", "dictionary_objective", "sufficient_statistics", "update_dictionary"]


@dataclass
class DictionaryUpdate:
    """Result of :func:`update_dictionary`.

    :ivar phi: ``(d, k)`` the new dictionary.
    :ivar reinitialized: indices of the atoms that were re-initialised as unused.
    """

    phi: torch.Tensor
    reinitialized: torch.Tensor


def sufficient_statistics(
    X: torch.Tensor, codes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`(A^\top A, X^\top A)` of data ``X`` ``(n, d)`` and codes ``A`` ``(n, k)``."""
    return codes.T @ codes, X.T @ codes


def dictionary_objective(
    phi: torch.Tensor, AtA: torch.Tensor, XtA: torch.Tensor, trace_xx: float | torch.Tensor = 0.0
) -> torch.Tensor:
    r""":math:`f(\Phi) = \tfrac12 \operatorname{tr}(X^\top X) - \operatorname{tr}(\Phi^\top B)
    + \tfrac12 \operatorname{tr}(\Phi^\top \Phi S)` from the sufficient statistics (see
    module docs); equals :math:`\tfrac12 \lVert X - A \Phi^\top \rVert_F^2` when
    ``trace_xx`` is :math:`\lVert X \rVert_F^2`."""
    return 0.5 * trace_xx - (phi * XtA).sum() + 0.5 * ((phi.T @ phi) * AtA).sum()


def _reinit(phi, unused, X, codes):
    """Point ``unused`` atoms at the worst-reconstructed examples' residuals (in place)."""
    residual = X - codes @ phi.T
    err = (residual * residual).sum(1)
    m = min(unused.numel(), int((err > 0).sum()))
    if m == 0:
        return unused[:0]
    worst = torch.topk(err, m).indices
    new = residual[worst]
    phi[:, unused[:m]] = (new / new.norm(dim=1, keepdim=True)).T.to(phi)
    return unused[:m]


@torch.no_grad()
def update_dictionary(
    phi: torch.Tensor,
    AtA: torch.Tensor,
    XtA: torch.Tensor,
    *,
    n_sweeps: int = 1,
    X: torch.Tensor | None = None,
    codes: torch.Tensor | None = None,
    unused_tol: float = 1e-6,
) -> DictionaryUpdate:
    r"""Block-coordinate descent on the atoms (see module docs); returns a new dictionary.

    :param phi: ``(d, k)`` current dictionary (not modified).
    :param AtA: ``(k, k)`` :math:`S = A^\top A` (possibly accumulated over batches).
    :param XtA: ``(d, k)`` :math:`B = X^\top A`.
    :param int n_sweeps: passes over the atoms.
    :param X: ``(n, d)`` a batch of data, used only to re-initialise unused atoms.
    :param codes: ``(n, k)`` its codes under ``phi``.
    :param float unused_tol: an atom is unused when :math:`S_{jj}` is at most this fraction of
        the mean of :math:`\operatorname{diag} S`.
    """
    d, k = phi.shape
    if AtA.shape != (k, k) or XtA.shape != (d, k):
        raise ValueError(
            f"expected AtA {(k, k)} and XtA {(d, k)} for a dictionary of shape {(d, k)}; got "
            f"{tuple(AtA.shape)} and {tuple(XtA.shape)}"
        )
    if n_sweeps < 1:
        raise ValueError(f"n_sweeps: expected >= 1, got {n_sweeps}")
    phi = phi.clone()
    AtA, XtA = AtA.to(phi), XtA.to(phi)
    diag = AtA.diagonal()
    unused_mask = diag <= unused_tol * diag.mean().clamp_min(0)
    unused = unused_mask.nonzero().squeeze(1)  # one host sync per call
    reinit = unused[:0]
    if unused.numel() > 0 and X is not None and codes is not None:
        reinit = _reinit(phi, unused, X.to(phi), codes.to(phi))
    used = (~unused_mask).nonzero().squeeze(1).tolist()
    inv_diag = 1.0 / diag.clamp_min(torch.finfo(phi.dtype).tiny)
    # work on rows (atoms contiguous): Phi^T and R^T = B^T - S Phi^T, the latter kept
    # current through a rank-one update after each atom
    atoms = phi.T.contiguous()
    residual = XtA.T - AtA @ atoms
    one = torch.ones((), dtype=phi.dtype, device=phi.device)
    for _ in range(n_sweeps):
        for j in used:
            old = atoms[j].clone()
            u = torch.addcmul(old, residual[j], inv_diag[j])
            new = u / torch.maximum(torch.linalg.vector_norm(u), one)
            atoms[j] = new
            residual.addr_(AtA[:, j], new - old, alpha=-1.0)
    phi = atoms.T
    return DictionaryUpdate(phi, reinit)
