r"""k-means features (Coates, Lee & Ng [1]): cluster centres as a dictionary, "triangle" codes.

:class:`KMeansFeatures` runs k-means on the rows of a data matrix, batched on the data's device
(CPU or GPU):

* **initialisation** by k-means++ (Arthur & Vassilvitskii [2]): the first centre is a random
  example, each next one an example drawn with probability proportional to its squared
  distance :math:`D(x)^2` to the nearest centre chosen so far (the "greedy" variant tries
  :math:`2 + \lfloor \ln k \rfloor` candidates per centre and keeps the one that lowers the
  potential most);
* **Lloyd iterations** (``algorithm="lloyd"``): assign every example to its nearest centre
  (squared distances :math:`\lVert x \rVert^2 - 2 x^\top c + \lVert c \rVert^2` as one matrix
  product), move each centre to the mean of its examples, stop when the relative decrease of
  the inertia :math:`\sum_i \min_k \lVert x_i - c_k \rVert^2` falls below ``tol``; a centre
  that loses all its examples is moved onto the example farthest from its centre;
* or **mini-batch** updates (``algorithm="minibatch"``, Sculley [3]): each centre moves towards
  the examples assigned to it with the per-centre step :math:`1/\text{count}`.

The feature map is the "triangle" activation of [1]: with :math:`z_k = \lVert x - c_k \rVert_2`
and :math:`\mu(z) = \frac1K \sum_k z_k`,

.. math::

    f_k(x) = \max\bigl(0, \mu(z) - z_k\bigr),

which is zero for the centres farther than average (about half of them), so the code is sparse
and non-negative. ``transform="hard"`` gives the one-hot assignment instead.

:func:`spherical_kmeans` (unit-norm centres, assignment by the largest :math:`|c_k^\top x|`,
Coates & Ng [4]) serves as a dictionary initialisation for sparse coding.

**References**

[1] An Analysis of Single-Layer Networks in Unsupervised Feature Learning. Adam Coates,
    Honglak Lee, Andrew Y. Ng. 2011.

[2] k-means++: The Advantages of Careful Seeding. David Arthur, Sergei Vassilvitskii. 2007.

[3] Web-Scale K-Means Clustering. D. Sculley. 2010.

[4] Learning Feature Representations with K-means. Adam Coates, Andrew Y. Ng. 2012.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pyrogen._checks import check_data, like_input

__all__ = [
    "KMeansFeatures",
    "kmeans_plus_plus",
    "lloyd",
    "pairwise_sq_distances",
    "spherical_kmeans",
    "triangle_features",
]


def pairwise_sq_distances(X: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    r"""``(n, K)`` squared distances :math:`\lVert x_i - c_k \rVert^2` (clamped at 0)."""
    d = torch.addmm((C * C).sum(1), X, C.T, alpha=-2.0)
    d += (X * X).sum(1, keepdim=True)
    return d.clamp_min_(0)


def kmeans_plus_plus(
    X: torch.Tensor, k: int, generator: torch.Generator | None = None, n_trials: int | None = None
) -> torch.Tensor:
    """``k`` initial centres by (greedy) k-means++ (see module docs); ``(k, d)``."""
    n = X.shape[0]
    if k > n:
        raise ValueError(f"n_clusters={k} is larger than the number of examples {n}")
    n_trials = 2 + int(math.log(k)) if n_trials is None else int(n_trials)
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [X[first]]
    closest = pairwise_sq_distances(X, X[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        probs = closest.double().cpu()
        total = float(probs.sum())
        if total <= 0:  # all points coincide with a centre: take any point
            cand = torch.randint(n, (n_trials,), generator=generator)
        else:
            cand = torch.multinomial(probs / total, n_trials, replacement=True, generator=generator)
        cand = cand.to(X.device)
        dist = pairwise_sq_distances(X, X[cand])  # (n, trials)
        new_closest = torch.minimum(closest[:, None], dist)
        best = int(new_closest.sum(0).argmin())
        centers.append(X[cand[best]])
        closest = new_closest[:, best]
    return torch.stack(centers)


def _assign(X, C, batch_size=65536):
    labels, dists = [], []
    for xb in X.split(batch_size):
        d = pairwise_sq_distances(xb, C)
        m, i = d.min(1)
        labels.append(i)
        dists.append(m)
    return torch.cat(labels), torch.cat(dists)


def lloyd(
    X: torch.Tensor, centers: torch.Tensor, max_iter: int = 100, tol: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Lloyd's iterations from ``centers``; returns ``(centers, labels, inertia, n_iter)``."""
    C = centers.clone()
    k = C.shape[0]
    prev = math.inf
    n_iter = 0
    for it in range(1, max_iter + 1):
        n_iter = it
        labels, dists = _assign(X, C)
        inertia = float(dists.sum())
        counts = torch.bincount(labels, minlength=k).to(X.dtype)
        sums = torch.zeros_like(C).index_add_(0, labels, X)
        empty = counts == 0
        C = torch.where(empty[:, None], C, sums / counts.clamp_min(1)[:, None])
        n_empty = int(empty.sum())
        if n_empty:  # move empty centres onto the worst-fitted examples
            far = torch.topk(dists, n_empty).indices
            C[empty] = X[far]
        if n_empty == 0 and prev - inertia <= tol * max(inertia, 1e-300):
            break
        prev = inertia
    labels, dists = _assign(X, C)
    return C, labels, float(dists.sum()), n_iter


def spherical_kmeans(X: torch.Tensor, init: torch.Tensor, n_iter: int = 10) -> torch.Tensor:
    r"""Spherical k-means of Coates & Ng [4]: ``n_iter`` rounds of
    :math:`s_i = \arg\max_k |c_k^\top x_i|`, :math:`c_k \propto \sum_{i: s_i = k}
    (c_k^\top x_i) x_i + c_k`; returns unit-norm centres ``(K, d)``."""
    C = init / init.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for _ in range(n_iter):
        proj = X @ C.T
        best = proj.abs().argmax(1)
        weight = proj.gather(1, best[:, None]).squeeze(1)
        C = C + torch.zeros_like(C).index_add_(0, best, X * weight[:, None])
        C = C / C.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return C


def triangle_features(X: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    r""":math:`f_k(x) = \max(0, \mu(z) - z_k)`, :math:`z_k = \lVert x - c_k \rVert`
    (see module docs); ``(n, K)``."""
    z = pairwise_sq_distances(X, centers).sqrt_()
    return (z.mean(1, keepdim=True) - z).clamp_min_(0)


class KMeansFeatures:
    """k-means with triangle features, scikit-learn style (see module docs).

    :param int n_clusters: :math:`K`.
    :param str algorithm: ``"lloyd"`` (full batch) or ``"minibatch"``.
    :param int n_init: k-means++ restarts; the run with the lowest inertia is kept.
    :param int max_iter: Lloyd iterations, or passes over the data for mini-batch.
    :param float tol: relative inertia decrease that stops Lloyd's iterations.
    :param int batch_size: mini-batch size (``algorithm="minibatch"``).
    :param str transform: ``"triangle"`` or ``"hard"`` (one-hot of the nearest centre).
    :param int seed: seeds k-means++ and the mini-batch order.
    :param device: where to compute (default: where the data are).

    After fitting: ``cluster_centers_`` ``(K, d)``, ``labels_``, ``inertia_``, ``n_iter_``.
    """

    def __init__(
        self,
        n_clusters: int,
        *,
        algorithm: str = "lloyd",
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        batch_size: int = 1024,
        transform: str = "triangle",
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(n_clusters, bool) or int(n_clusters) != n_clusters or n_clusters <= 0:
            raise ValueError(f"n_clusters: expected a positive integer, got {n_clusters!r}")
        if algorithm not in ("lloyd", "minibatch"):
            raise ValueError(f"algorithm: expected 'lloyd' or 'minibatch', got {algorithm!r}")
        if transform not in ("triangle", "hard"):
            raise ValueError(f"transform: expected 'triangle' or 'hard', got {transform!r}")
        if int(n_init) < 1 or int(max_iter) < 1 or int(batch_size) < 1 or tol < 0:
            raise ValueError(
                "need n_init, max_iter, batch_size >= 1 and tol >= 0; got "
                f"{n_init}, {max_iter}, {batch_size}, {tol}"
            )
        self.n_clusters, self.algorithm = int(n_clusters), algorithm
        self.n_init, self.max_iter, self.tol = int(n_init), int(max_iter), float(tol)
        self.batch_size, self.transform_kind = int(batch_size), transform
        self.seed, self.device = seed, device
        self.cluster_centers_: torch.Tensor | None = None
        self.n_features_in_: int | None = None

    def _prepare(self, X, name="X") -> torch.Tensor:
        X = check_data(X, name, self.n_features_in_)
        if X.dtype not in (torch.float32, torch.float64):
            X = X.float()
        if self.device is not None:
            X = X.to(self.device)
        elif self.cluster_centers_ is not None:
            X = X.to(self.cluster_centers_.device)
        return X

    def _minibatch(self, X, C, gen):
        n, k = X.shape[0], C.shape[0]
        counts = torch.zeros(k, dtype=X.dtype, device=X.device)
        for _ in range(self.max_iter):
            order = torch.randperm(n, generator=gen).to(X.device)
            for start in range(0, n, self.batch_size):
                xb = X[order[start : start + self.batch_size]]
                labels = pairwise_sq_distances(xb, C).argmin(1)
                bc = torch.bincount(labels, minlength=k).to(X.dtype)
                sums = torch.zeros_like(C).index_add_(0, labels, xb)
                counts += bc
                # c <- c + (sum_b - bc * c) / counts: the running mean of Sculley's update
                step = torch.where(counts > 0, 1.0 / counts.clamp_min(1), 0.0)[:, None]
                C = C + step * (sums - bc[:, None] * C)
        labels, dists = _assign(X, C)
        return C, labels, float(dists.sum()), self.max_iter

    def fit(self, X, y=None) -> KMeansFeatures:
        """Cluster the rows of ``X`` ``(n_samples, n_features)``."""
        self.cluster_centers_, self.n_features_in_ = None, None
        X = self._prepare(X)
        if self.n_clusters > X.shape[0]:
            raise ValueError(
                f"n_clusters={self.n_clusters} is larger than the number of examples {X.shape[0]}"
            )
        gen = torch.Generator().manual_seed(int(self.seed))
        best = None
        for _ in range(self.n_init):
            C0 = kmeans_plus_plus(X, self.n_clusters, gen)
            if self.algorithm == "lloyd":
                run = lloyd(X, C0, self.max_iter, self.tol)
            else:
                run = self._minibatch(X, C0, gen)
            if best is None or run[2] < best[2]:
                best = run
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = best
        self.n_features_in_ = X.shape[1]
        return self

    def _check_fitted(self):
        if self.cluster_centers_ is None:
            raise RuntimeError("this KMeansFeatures is not fitted yet: call fit")

    def predict(self, X) -> torch.Tensor | np.ndarray:
        """Index of the nearest centre of each row."""
        self._check_fitted()
        original = X
        X = self._prepare(X).to(self.cluster_centers_)
        return like_input(_assign(X, self.cluster_centers_)[0], original)

    def transform(self, X) -> torch.Tensor | np.ndarray:
        """Triangle features (or one-hot assignments) ``(n_samples, n_clusters)``."""
        self._check_fitted()
        original = X
        X = self._prepare(X).to(self.cluster_centers_)
        if self.transform_kind == "hard":
            labels = _assign(X, self.cluster_centers_)[0]
            out = torch.nn.functional.one_hot(labels, self.n_clusters).to(X.dtype)
        else:
            out = torch.cat([triangle_features(xb, self.cluster_centers_) for xb in X.split(65536)])
        return like_input(out, original)

    def reconstruct(self, X) -> torch.Tensor | np.ndarray:
        """Each example replaced by its nearest centre (vector quantization)."""
        self._check_fitted()
        original = X
        X = self._prepare(X).to(self.cluster_centers_)
        return like_input(self.cluster_centers_[_assign(X, self.cluster_centers_)[0]], original)

    @property
    def num_features(self) -> int | None:
        """The data width seen by :meth:`fit` (``n_features_in_``, scikit-learn's name)."""
        return self.n_features_in_

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)
