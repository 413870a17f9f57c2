r"""Sparse coding (Olshausen & Field [1]): a dictionary learned so that data have sparse codes.

Given examples :math:`x_i \in \mathbb R^d`, :class:`SparseCoding` learns atoms
:math:`\Phi = (\phi_1, \dots, \phi_k)`, :math:`\lVert \phi_j \rVert_2 \le 1`, minimising

.. math::

    \frac1n \sum_{i=1}^n \min_{a_i} \tfrac12 \lVert x_i - \Phi a_i \rVert_2^2
        + \alpha \lVert a_i \rVert_1,

the objective of ``sklearn.decomposition.MiniBatchDictionaryLearning`` with the same
``alpha`` (scikit-learn stores :math:`\Phi^\top` as ``components_``; so does this class).

**Learning** is online alternating minimisation (Mairal et al. [2]): for each mini-batch,

1. codes by the batched Lasso solver :func:`~pyrogen.infer.lasso.lasso_fista` to a relative
   duality gap ``tol`` (default 1%: on 12x12 natural-image patches the dictionary improved
   as much per mini-batch as with ten times more accurate codes, in about 30% less time);
2. sufficient statistics :math:`S \leftarrow \beta_t S + A^\top A`,
   :math:`B \leftarrow \beta_t B + X^\top A` with the forgetting factor
   :math:`\beta_t = (1 - 1/t)^\rho` of [2] (:math:`t` counts mini-batches): mini-batch
   :math:`s` then weighs :math:`(s/t)^\rho` relative to the newest one, so :math:`\rho = 0`
   weighs all alike and a larger :math:`\rho` forgets sooner the codes computed with early,
   poor dictionaries (default 10, which learned markedly faster than 0 or 1 on image patches
   and on planted dictionaries);
3. ``n_sweeps`` sweeps of exact block-coordinate descent over the atoms
   (:func:`~pyrogen.infer.dictionary.update_dictionary`, warm-started at the current
   dictionary), which re-initialises atoms that no code uses.

The dictionary starts from ``n_atoms`` distinct random training examples scaled to unit norm
(``init="data"``, as recommended in [2]), or from the centres of a few Lloyd iterations of
spherical k-means on a sample (``init="kmeans"``), or from a given ``(n_atoms, d)`` array.
With ``max_epochs > 1`` the codes of each example are kept and warm-start the solver the
next time the example is seen. Every step runs in the dtype and on the device of the data
(``device=`` moves it), so the same code runs on a GPU.

**The probabilistic reading** (:class:`SparseCodingModel`): with a Laplace prior on the codes
and Gaussian noise,

.. math::

    a \sim \prod_j \operatorname{Laplace}(0, b), \qquad
    x \mid a \sim \mathcal N(\Phi a, \sigma^2 I_d),

:math:`-\log p(x, a) = \frac{1}{2\sigma^2} \lVert x - \Phi a \rVert^2 + \frac1b
\lVert a \rVert_1 + \text{const}`, so the MAP codes are the Lasso codes with
:math:`\alpha = \sigma^2 / b` (Olshausen & Field [1]; Lewicki & Sejnowski [3]).
:func:`map_codes` finds them with Pyro's ``AutoDelta`` guide and SVI.

**References**

[1] Emergence of Simple-Cell Receptive Field Properties by Learning a Sparse Code for Natural
    Images. Bruno A. Olshausen, David J. Field. 1996.

[2] Online Learning for Matrix Factorization and Sparse Coding. Julien Mairal, Francis Bach,
    Jean Ponce, Guillermo Sapiro. 2010.

[3] Learning Overcomplete Representations. Michael S. Lewicki, Terrence J. Sejnowski. 2000.

[4] Efficient Sparse Coding Algorithms. Honglak Lee, Alexis Battle, Rajat Raina,
    Andrew Y. Ng. 2006.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method
from torch.distributions import constraints

from pyrogen._checks import check_data, like_input
from pyrogen.infer.dictionary import update_dictionary
from pyrogen.infer.lasso import lasso_fista, lasso_objective, lipschitz_constant

__all__ = ["SparseCoding", "SparseCodingModel", "map_codes"]


class SparseCoding:
    """Dictionary learning for sparse coding, scikit-learn style (see module docs).

    :param int n_atoms: :math:`k`, the number of atoms.
    :param float alpha: :math:`\\alpha \\ge 0`, the weight of the L1 penalty (scikit-learn's
        ``alpha`` in ``MiniBatchDictionaryLearning``).
    :param int batch_size: examples per mini-batch.
    :param int max_epochs: passes over the data in :meth:`fit`.
    :param float tol: relative duality gap of the codes while learning.
    :param float transform_tol: relative duality gap of the codes of :meth:`transform`.
    :param int max_iter: FISTA iterations at most per Lasso solve.
    :param float forget: :math:`\\rho` of the forgetting factor :math:`(1 - 1/t)^\\rho`.
    :param int n_sweeps: block-coordinate sweeps over the atoms per mini-batch.
    :param init: ``"data"``, ``"kmeans"`` or an ``(n_atoms, d)`` array of initial atoms.
    :param int seed: seeds the initialisation and the order of the examples.
    :param device: where to compute (default: where the data are).
    :param dtype: computation dtype (default: the data's floating dtype).
    :param progress: show a progress bar (tqdm) in :meth:`fit`; ``None``: when the fit has at
        least 50 mini-batches and standard error is a terminal.
    :param callback: called as ``callback(self, step)`` after each dictionary update in
        :meth:`fit` (e.g. to snapshot ``components_``).

    After fitting: ``components_`` ``(n_atoms, n_features)`` (unit-norm atoms as rows),
    ``n_steps_`` (mini-batches seen), ``n_features_in_``.

    The object is also a learner for :func:`pyrogen.train.train` (``step`` = one mini-batch
    update, ``evaluate`` = the mean Lasso objective of a batch, ``state_dict`` for exact
    resume).
    """

    def __init__(
        self,
        n_atoms: int,
        alpha: float = 0.1,
        *,
        batch_size: int = 1024,
        max_epochs: int = 1,
        tol: float = 1e-2,
        transform_tol: float = 1e-5,
        max_iter: int = 1000,
        forget: float = 10.0,
        n_sweeps: int = 1,
        init: str | torch.Tensor | np.ndarray = "data",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        progress: bool | None = None,
        callback: Callable[[SparseCoding, int], None] | None = None,
    ) -> None:
        if isinstance(n_atoms, bool) or int(n_atoms) != n_atoms or n_atoms <= 0:
            raise ValueError(f"n_atoms: expected a positive integer, got {n_atoms!r}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha: expected a finite number >= 0, got {alpha!r}")
        if int(batch_size) < 1 or int(max_epochs) < 1:
            raise ValueError(
                f"batch_size and max_epochs must be >= 1, got {batch_size}, {max_epochs}"
            )
        if tol < 0 or transform_tol < 0 or forget < 0 or int(n_sweeps) < 1:
            raise ValueError(
                f"need tol >= 0, transform_tol >= 0, forget >= 0, n_sweeps >= 1; got {tol}, "
                f"{transform_tol}, {forget}, {n_sweeps}"
            )
        if isinstance(init, str) and init not in ("data", "kmeans"):
            raise ValueError(f"init: expected 'data', 'kmeans' or an array, got {init!r}")
        self.n_atoms, self.alpha = int(n_atoms), float(alpha)
        self.batch_size, self.max_epochs = int(batch_size), int(max_epochs)
        self.tol, self.transform_tol, self.max_iter = float(tol), float(transform_tol), max_iter
        self.forget, self.n_sweeps, self.init = float(forget), int(n_sweeps), init
        self.seed, self.device, self.dtype = seed, device, dtype
        self.progress, self.callback = progress, callback
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self.components_: torch.Tensor | None = None
        self._AtA: torch.Tensor | None = None
        self._XtA: torch.Tensor | None = None
        self.n_steps_ = 0
        self.n_features_in_: int | None = None
        self._generator: torch.Generator | None = None

    def _prepare(self, X, name: str = "X") -> torch.Tensor:
        X = check_data(X, name, self.n_features_in_)
        dtype = self.dtype or (X.dtype if X.dtype in (torch.float32, torch.float64) else None)
        X = X.to(dtype=dtype or torch.float32)
        if self.device is not None:
            X = X.to(self.device)
        elif self.components_ is not None:
            X = X.to(self.components_.device)
        return X

    def _gen(self, device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device="cpu").manual_seed(int(self.seed))
        return self._generator

    def _initialize(self, X: torch.Tensor) -> None:
        n, d = X.shape
        k = self.n_atoms
        self.n_features_in_ = d
        gen = self._gen(X.device)
        if isinstance(self.init, str):
            pick = torch.randperm(n, generator=gen)[: min(k, n)].to(X.device)
            atoms = X[pick]
            if atoms.shape[0] < k:  # fewer examples than atoms: random directions for the rest
                extra = torch.randn(k - atoms.shape[0], d, generator=gen).to(X)
                atoms = torch.cat([atoms, extra])
            if self.init == "kmeans" and n > k:
                from pyrogen.models.kmeans import spherical_kmeans

                sample = X[torch.randperm(n, generator=gen)[: min(n, 20 * k)].to(X.device)]
                atoms = spherical_kmeans(sample, atoms, n_iter=10)
        else:
            atoms = torch.as_tensor(
                np.asarray(self.init) if not torch.is_tensor(self.init) else self.init
            ).to(X)
            if atoms.shape != (k, d):
                raise ValueError(f"init: expected shape {(k, d)}, got {tuple(atoms.shape)}")
            if not bool(torch.isfinite(atoms).all()):
                raise ValueError("init: contains NaN or infinite values")
        norms = atoms.norm(dim=1, keepdim=True)
        zero = norms.squeeze(1) <= 1e-12
        if bool(zero.any()):
            atoms[zero] = torch.randn(int(zero.sum()), d, generator=gen).to(X)
            norms = atoms.norm(dim=1, keepdim=True)
        self.components_ = atoms / norms
        self._AtA = torch.zeros(k, k, dtype=X.dtype, device=X.device)
        self._XtA = torch.zeros(d, k, dtype=X.dtype, device=X.device)
        self.n_steps_ = 0

    # ------------------------------------------------------------------ learning

    def _codes(self, X, phi, init=None, tol=None, gram=None, lipschitz=None):
        return lasso_fista(
            X,
            phi,
            self.alpha,
            init=init,
            tol=self.tol if tol is None else tol,
            max_iter=self.max_iter,
            gram=gram,
            lipschitz=lipschitz,
            check_input=False,
        )

    def _update(self, X: torch.Tensor, init_codes=None):
        """One mini-batch: codes, statistics with forgetting, dictionary sweeps."""
        phi = self.components_.T
        result = self._codes(X, phi, init=init_codes)
        codes = result.codes
        self.n_steps_ += 1
        t = self.n_steps_
        beta = (1.0 - 1.0 / t) ** self.forget if t > 1 else 0.0
        # S <- beta S + A^T A,  B <- beta B + X^T A: sums, so that a short batch (the last
        # of an epoch) weighs in proportion to its size; scaled by 1/batch_size for range
        scale = 1.0 / self.batch_size
        self._AtA.mul_(beta).addmm_(codes.T, codes, alpha=scale)
        self._XtA.mul_(beta).addmm_(X.T, codes, alpha=scale)
        update = update_dictionary(
            phi, self._AtA, self._XtA, n_sweeps=self.n_sweeps, X=X, codes=codes
        )
        self.components_ = update.phi.T.contiguous()
        if update.reinitialized.numel():
            codes[:, update.reinitialized] = 0
        return result

    def fit(self, X, y=None) -> SparseCoding:
        """Learn the dictionary from ``X`` ``(n_samples, n_features)`` (starts afresh)."""
        self._reset()
        original = X
        X = self._prepare(original)
        self._initialize(X)
        n = X.shape[0]
        gen = self._gen(X.device)
        keep_codes = self.max_epochs > 1
        store = torch.zeros(n, self.n_atoms, dtype=X.dtype, device=X.device) if keep_codes else None
        steps = self.max_epochs * math.ceil(n / self.batch_size)
        bar = None
        show = self.progress
        if show is None:
            show = steps >= 50 and sys.stderr.isatty()
        if show:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc="sparse coding", unit="batch")
        for epoch in range(self.max_epochs):
            order = torch.randperm(n, generator=gen).to(X.device)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                init = store[idx] if keep_codes and epoch > 0 else None
                result = self._update(X[idx], init)
                if keep_codes:
                    store[idx] = result.codes
                if bar is not None:
                    bar.update(1)
                    if self.n_steps_ % 10 == 0:
                        bar.set_postfix(
                            objective=f"{float(result.objective.mean()):.4g}",
                            iters=f"{float(result.n_iter.float().mean()):.0f}",
                        )
                if self.callback is not None:
                    self.callback(self, self.n_steps_)
        if bar is not None:
            bar.close()
        return self

    def partial_fit(self, X, y=None) -> SparseCoding:
        """One online update with the mini-batch ``X`` (initialises on the first call)."""
        X = self._prepare(X)
        if self.components_ is None:
            self._initialize(X)
        self._update(X)
        return self

    # ------------------------------------------------------------------ using it

    def _check_fitted(self) -> None:
        if self.components_ is None:
            raise RuntimeError("this SparseCoding is not fitted yet: call fit or partial_fit")

    def transform(self, X, tol: float | None = None) -> torch.Tensor | np.ndarray:
        """Lasso codes ``(n_samples, n_atoms)`` of ``X`` under the learned dictionary, to a
        relative duality gap ``tol`` (default ``transform_tol``). NumPy in, NumPy out."""
        self._check_fitted()
        original = X
        X = self._prepare(X).to(self.components_)
        phi = self.components_.T
        gram = phi.T @ phi
        L = lipschitz_constant(phi, gram)
        tol = self.transform_tol if tol is None else tol
        codes = torch.cat(
            [
                self._codes(xb, phi, tol=tol, gram=gram, lipschitz=L).codes
                for xb in X.split(max(self.batch_size, 4096))
            ]
        )
        return like_input(codes, original)

    def inverse_transform(self, codes) -> torch.Tensor | np.ndarray:
        """Reconstructions ``codes @ components_``."""
        self._check_fitted()
        A = check_data(codes, "codes", self.n_atoms).to(self.components_)
        return like_input(A @ self.components_, codes)

    def reconstruct(self, X) -> torch.Tensor | np.ndarray:
        """The reconstructions from the Lasso codes, ``inverse_transform(transform(X))``."""
        return self.inverse_transform(self.transform(X))

    @property
    def num_features(self) -> int | None:
        """The data width seen by :meth:`fit` (``n_features_in_``, scikit-learn's name)."""
        return self.n_features_in_

    def objective(self, X, tol: float = 1e-5) -> float:
        """Mean Lasso objective of ``X`` under the dictionary (codes solved to ``tol``)."""
        self._check_fitted()
        X = self._prepare(X).to(self.components_)
        return lasso_objective(X, self.components_.T, self.alpha, tol=tol)

    def score(self, X, y=None) -> float:
        """Minus :meth:`objective` (higher is better, scikit-learn's convention)."""
        return -self.objective(X)

    # ------------------------------------------------------------------ learner protocol

    def step(self, batch: torch.Tensor) -> dict[str, Any]:
        """One :meth:`partial_fit` on ``batch``; reports the batch's mean Lasso objective
        (under the dictionary before the update) and mean FISTA iterations."""
        X = self._prepare(batch)
        if self.components_ is None:
            self._initialize(X)
        result = self._update(X)
        return {"objective": result.objective.mean(), "fista_iters": result.n_iter.float().mean()}

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]:
        return {"objective": self.objective(batch)}

    def to(self, device) -> SparseCoding:
        self.device = device
        for name in ("components_", "_AtA", "_XtA"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "components": self.components_,
            "AtA": self._AtA,
            "XtA": self._XtA,
            "n_steps": self.n_steps_,
            "n_features_in": self.n_features_in_,
            "generator": None if self._generator is None else self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.components_, self._AtA, self._XtA = state["components"], state["AtA"], state["XtA"]
        self.n_steps_, self.n_features_in_ = state["n_steps"], state["n_features_in"]
        if state.get("generator") is not None:
            self._gen(None).set_state(state["generator"])


class SparseCodingModel(PyroModule):
    r"""Sparse coding as a Pyro model (see module docs):
    ``a ~ Laplace(0, b)`` (site ``"codes"``, event dim 1) and
    ``x ~ Normal(a @ components.T, sigma)`` (site ``"x"``, event dim 1), in
    ``pyro.plate("data")``. The MAP codes solve the Lasso with :math:`\alpha = \sigma^2/b`.

    :param components: ``(k, d)`` dictionary (atoms as rows), e.g.
        ``SparseCoding.components_``; a learnable parameter (projected onto the unit ball by
        nothing here: learn it with :class:`SparseCoding`).
    :param float alpha: Lasso weight; with ``sigma`` it sets :math:`b = \sigma^2/\alpha`.
    :param float sigma: observation noise standard deviation.
    """

    def __init__(self, components, alpha: float, sigma: float = 1.0) -> None:
        super().__init__()
        components = torch.as_tensor(components)
        if components.dim() != 2:
            raise ValueError(f"components: expected (k, d), got shape {tuple(components.shape)}")
        if not alpha > 0 or not sigma > 0:
            raise ValueError(f"alpha and sigma must be > 0, got {alpha}, {sigma}")
        self.components = PyroParam(components.clone())
        self.sigma = PyroParam(
            torch.tensor(float(sigma), dtype=components.dtype), constraint=constraints.positive
        )
        self.alpha = float(alpha)
        self.n_atoms, self.num_features = components.shape

    @property
    def laplace_scale(self) -> torch.Tensor:
        r""":math:`b = \sigma^2 / \alpha`."""
        return self.sigma**2 / self.alpha

    @pyro_method
    def model(self, x: torch.Tensor) -> torch.Tensor:
        x = check_data(x, "x", self.num_features) if not torch.is_tensor(x) else x
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"x: expected (n, {self.num_features}), got {tuple(x.shape)}")
        zero = x.new_zeros(self.n_atoms)
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample(
                "codes", dist.Laplace(zero, self.laplace_scale.expand(self.n_atoms)).to_event(1)
            )
            pyro.sample("x", dist.Normal(a @ self.components, self.sigma).to_event(1), obs=x)
        return a


def map_codes(
    model: SparseCodingModel,
    x: torch.Tensor,
    num_steps: int = 1000,
    lr: float = 0.1,
    final_lr: float = 1e-5,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """MAP codes of ``x`` under ``model`` with the ``components`` and ``sigma`` held fixed,
    by SVI with ``AutoDelta`` (``Trace_ELBO`` with a point-mass guide is minus the log joint)
    and Adam whose learning rate decays geometrically from ``lr`` to ``final_lr`` (the L1
    term is not smooth; the decay lets the iterates settle at the kink).

    This is the slow, generic route — :class:`SparseCoding` uses the Lasso solver — kept to
    show (and test) that the model's MAP estimate is the Lasso solution.
    """
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoDelta, init_to_value
    from pyro.optim import ClippedAdam

    n = x.shape[0]
    start = init if init is not None else x.new_zeros(n, model.n_atoms)
    # components and sigma are held fixed: hidden from SVI and without gradients
    blocked = pyro.poutine.block(model.model, hide=["components", "sigma"])
    gamma = (final_lr / lr) ** (1.0 / max(num_steps, 1))
    model.requires_grad_(False)
    # a fresh parameter store: PyroModule parameters are looked up there by name, so a guide
    # from an earlier call would otherwise start where that one ended
    with pyro.get_param_store().scope():
        guide = AutoDelta(blocked, init_loc_fn=init_to_value(values={"codes": start}))
        svi = SVI(blocked, guide, ClippedAdam({"lr": lr, "lrd": gamma}), Trace_ELBO())
        try:
            for _ in range(num_steps):
                svi.step(x)
        finally:
            model.requires_grad_(True)
        codes = guide.median(x)["codes"].detach()
    return codes
