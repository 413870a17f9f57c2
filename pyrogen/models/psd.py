r"""Predictive sparse decomposition (Kavukcuoglu, Ranzato & LeCun [1]): sparse coding with a
feed-forward encoder trained to predict the codes, so that coding at test time is one pass.

The energy of an example :math:`x \in \mathbb R^d` and a code :math:`z \in \mathbb R^k` is

.. math::

    E(x, z) = \tfrac12 \lVert x - \Phi z \rVert_2^2 + \alpha \lVert z \rVert_1
            + \tfrac\beta2 \lVert z - F(x) \rVert_2^2, \qquad
    F(x) = g \odot \tanh(W x + b),

with a dictionary :math:`\Phi` of unit-norm atoms and an encoder with filters
:math:`W \in \mathbb R^{k \times d}`, biases :math:`b` and per-unit gains :math:`g` (the
paper's :math:`D`, :math:`W`, :math:`G`). The paper writes
:math:`\lVert x - \Phi z \rVert^2 + \lambda \lVert z \rVert_1 + \beta_p \lVert z - F(x) \rVert^2`,
i.e. twice ours with :math:`\lambda = 2\alpha` and :math:`\beta_p = \beta`.

**Learning** (:class:`PSDLearner`), for each mini-batch, alternating as in [1]:

1. the optimal codes :math:`z^\star = \arg\min_z E(x, z)`, by the batched FISTA solver
   (:func:`~pyrogen.infer.lasso.lasso_fista` with the extra quadratic term centred at the
   prediction, ``prior=F(x)``, ``beta``), warm-started at :math:`F(x)`;
2. one Adam step on the encoder for :math:`\tfrac\beta2 \lVert z^\star - F(x) \rVert^2`
   (the only part of :math:`E` that depends on it);
3. the dictionary step of sparse coding on :math:`\tfrac12 \lVert x - \Phi z^\star \rVert^2`:
   sufficient statistics with forgetting and exact block-coordinate descent with the atoms
   kept in the unit ball (:func:`~pyrogen.infer.dictionary.update_dictionary`).

As the encoder improves, the prediction pulls the optimal codes towards values it can
produce, and the codes towards the prediction; at test time :meth:`PSD.transform` is the
encoder alone, :math:`F(x)` (``optimal_codes`` gives :math:`z^\star` when needed).

:class:`PSD` is an ``nn.Module`` (the encoder's parameters and the dictionary buffer), with
a scikit-learn-like ``fit``/``transform``; :class:`PSDLearner` follows the learner protocol
of :func:`pyrogen.train.train`.

**References**

[1] Fast Inference in Sparse Coding Algorithms with Applications to Object Recognition.
    Koray Kavukcuoglu, Marc'Aurelio Ranzato, Yann LeCun. 2008 (arXiv:1010.3467).

[2] Learning Invariant Features through Topographic Filter Maps. Koray Kavukcuoglu,
    Marc'Aurelio Ranzato, Rob Fergus, Yann LeCun. 2009.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from pyrogen._checks import check_data, like_input
from pyrogen.infer.dictionary import update_dictionary
from pyrogen.infer.lasso import LassoResult, lasso_fista

__all__ = ["PSD", "PSDLearner"]


class PSD(nn.Module):
    """Predictive sparse decomposition (see module docs).

    :param int num_features: :math:`d`, the data width.
    :param int n_atoms: :math:`k`.
    :param float alpha: weight of :math:`\\lVert z \\rVert_1` (half the paper's
        :math:`\\lambda`).
    :param float beta: weight of the prediction term (the paper's :math:`\\beta`).
    :param float tol: relative duality gap of the optimal codes while learning.
    :param int max_iter: FISTA iterations at most per solve.
    """

    def __init__(
        self,
        num_features: int,
        n_atoms: int,
        alpha: float = 0.1,
        beta: float = 1.0,
        *,
        tol: float = 1e-3,
        max_iter: int = 500,
    ) -> None:
        super().__init__()
        for name, v in (("num_features", num_features), ("n_atoms", n_atoms)):
            if isinstance(v, bool) or int(v) != v or v <= 0:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if not (math.isfinite(alpha) and alpha >= 0) or not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"need alpha >= 0 and beta > 0, got alpha={alpha}, beta={beta}")
        self.num_features, self.n_atoms = int(num_features), int(n_atoms)
        self.alpha, self.beta, self.tol, self.max_iter = float(alpha), float(beta), tol, max_iter
        bound = 1.0 / math.sqrt(num_features)
        self.weight = nn.Parameter(torch.empty(n_atoms, num_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_atoms))
        self.gain = nn.Parameter(torch.ones(n_atoms))
        atoms = torch.randn(n_atoms, num_features)
        self.register_buffer("components", atoms / atoms.norm(dim=1, keepdim=True))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def init_from_data(self, X: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Atoms from distinct random examples (unit norm); encoder filters the same atoms,
        scaled so that :math:`W x` starts at the size of the correlations :math:`\\Phi^\\top x`."""
        n = X.shape[0]
        pick = torch.randperm(n, generator=generator)[: min(n, self.n_atoms)].to(X.device)
        atoms = X[pick].to(self.components)
        norms = atoms.norm(dim=1, keepdim=True)
        good = norms.squeeze(1) > 1e-12
        self.components[: atoms.shape[0]][good] = atoms[good] / norms[good]
        self.weight.copy_(self.components)
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted codes :math:`F(x) = g \\odot \\tanh(W x + b)`, ``(n, k)``."""
        return self.gain * torch.tanh(torch.addmm(self.bias, x, self.weight.T))

    def energy(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """:math:`E(x, z)` per example (see module docs)."""
        r = x - z @ self.components
        p = z - self(x)
        return 0.5 * (r * r).sum(1) + self.alpha * z.abs().sum(1) + 0.5 * self.beta * (p * p).sum(1)

    @torch.no_grad()
    def optimal_codes(self, x: torch.Tensor, prediction: torch.Tensor | None = None) -> LassoResult:
        """:math:`z^\\star = \\arg\\min_z E(x, z)` by FISTA warm-started at :math:`F(x)`."""
        if prediction is None:
            prediction = self(x)
        return lasso_fista(
            x,
            self.components.T,
            self.alpha,
            init=prediction,
            prior=prediction,
            beta=self.beta,
            tol=self.tol,
            max_iter=self.max_iter,
            check_input=False,
        )

    def _prepare(self, X, name="X") -> torch.Tensor:
        X = check_data(X, name, self.num_features)
        return X.to(self.components)

    def fit(
        self,
        X,
        epochs: int = 10,
        batch_size: int = 256,
        lr: float = 1e-3,
        seed: int = 0,
        progress: bool = False,
    ) -> PSD:
        """Train on ``X`` ``(n, d)`` with :class:`PSDLearner` for ``epochs`` passes."""
        X = self._prepare(X)
        gen = torch.Generator().manual_seed(int(seed))
        if not bool(self.initialized):
            self.init_from_data(X, gen)
        learner = PSDLearner(self, lr=lr)
        n = X.shape[0]
        self.history_: list[dict[str, float]] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=epochs * math.ceil(n / batch_size), desc="PSD", unit="batch")
        for _ in range(int(epochs)):
            order = torch.randperm(n, generator=gen).to(X.device)
            for start in range(0, n, batch_size):
                out = learner.step(X[order[start : start + batch_size]])
                self.history_.append({k: float(v) for k, v in out.items()})
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        return self

    @torch.no_grad()
    def transform(self, X) -> torch.Tensor | np.ndarray:
        """Test-time codes: one encoder pass :math:`F(x)`. NumPy in, NumPy out."""
        original = X
        return like_input(self(self._prepare(X)), original)

    @torch.no_grad()
    def inverse_transform(self, Z) -> torch.Tensor | np.ndarray:
        """Reconstructions ``Z @ components``."""
        Zt = check_data(Z, "Z", self.n_atoms).to(self.components)
        return like_input(Zt @ self.components, Z)

    @torch.no_grad()
    def reconstruct(self, X) -> torch.Tensor | np.ndarray:
        """The decoded test-time codes, ``inverse_transform(transform(X))``."""
        return self.inverse_transform(self.transform(X))


class PSDLearner:
    """One PSD update per batch (see module docs): optimal codes, an Adam step on the encoder,
    a dictionary step. ``step`` reports the mean energy at the optimal codes and the relative
    prediction error :math:`\\sum \\lVert z^\\star - F(x) \\rVert^2 / \\sum \\lVert z^\\star
    \\rVert^2` (before the encoder step).

    :param PSD psd: the module.
    :param float lr: Adam learning rate of the encoder.
    :param float forget: :math:`\\rho` of the statistics' forgetting factor
        :math:`(1 - 1/t)^\\rho` (as in :class:`~pyrogen.models.sparse_coding.SparseCoding`).
    """

    def __init__(self, psd: PSD, lr: float = 1e-3, forget: float = 1.0) -> None:
        self.psd, self.forget = psd, float(forget)
        self.optimizer = torch.optim.Adam([psd.weight, psd.bias, psd.gain], lr=lr)
        k, d = psd.n_atoms, psd.num_features
        self.AtA = torch.zeros(k, k, dtype=psd.components.dtype, device=psd.components.device)
        self.XtA = torch.zeros(d, k, dtype=psd.components.dtype, device=psd.components.device)
        self.count = 0
        self.batch_size = 0  # the first batch's size: scale of the statistics

    def step(self, batch: torch.Tensor) -> dict[str, Any]:
        psd = self.psd
        x = batch.to(psd.components)
        if not bool(psd.initialized):
            psd.init_from_data(x)
        if self.batch_size == 0:
            self.batch_size = x.shape[0]
        prediction = psd(x)
        z = psd.optimal_codes(x, prediction.detach()).codes
        diff = z - prediction
        loss = 0.5 * psd.beta * (diff * diff).sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.count += 1
            beta_t = (1.0 - 1.0 / self.count) ** self.forget if self.count > 1 else 0.0
            # sums (a short batch weighs in proportion to its size), kept O(1) in range
            scale = 1.0 / max(self.batch_size, 1)
            self.AtA.mul_(beta_t).addmm_(z.T, z, alpha=scale)
            self.XtA.mul_(beta_t).addmm_(x.T, z, alpha=scale)
            update = update_dictionary(psd.components.T, self.AtA, self.XtA, X=x, codes=z)
            psd.components.copy_(update.phi.T)
            energy = psd.energy(x, z).mean()
            rel = (diff.detach() ** 2).sum() / (z * z).sum().clamp_min(1e-30)
        return {"energy": energy, "prediction_error": rel}

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]:
        x = batch.to(self.psd.components)
        prediction = self.psd(x)
        z = self.psd.optimal_codes(x, prediction).codes
        rel = ((z - prediction) ** 2).sum() / (z * z).sum().clamp_min(1e-30)
        return {"energy": self.psd.energy(x, z).mean(), "prediction_error": rel}

    def to(self, device) -> PSDLearner:
        self.psd.to(device)
        self.AtA, self.XtA = self.AtA.to(device), self.XtA.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.psd.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "AtA": self.AtA,
            "XtA": self.XtA,
            "count": self.count,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.psd.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.AtA, self.XtA, self.count = state["AtA"], state["XtA"], state["count"]
        self.batch_size = state.get("batch_size", 0)
