r"""Maximum mean discrepancy (MMD): the unbiased estimator, a loss for generative
moment-matching networks, and a two-sample test.

For a kernel :math:`k` the squared MMD between distributions :math:`P` and :math:`Q` is the
squared distance of their mean embeddings in the kernel's feature space [1],

.. math::

    \mathrm{MMD}^2(P, Q) = \mathbb E\,k(x, x') + \mathbb E\,k(y, y') - 2\,\mathbb E\,k(x, y),
    \qquad x, x' \sim P,\; y, y' \sim Q,

zero if and only if :math:`P = Q` for a characteristic kernel such as the Gaussian one. From
samples :math:`x_{1:m} \sim P` and :math:`y_{1:n} \sim Q` its unbiased estimate (Lemma 6 of
[1]) leaves the diagonal out of the within-sample sums,

.. math::

    \widehat{\mathrm{MMD}}{}^2_u = \frac{1}{m(m-1)} \sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{n(n-1)} \sum_{i \ne j} k(y_i, y_j)
        - \frac{2}{mn} \sum_{i=1}^m \sum_{j=1}^n k(x_i, y_j),

so that its expectation is exactly :math:`\mathrm{MMD}^2` (it can be negative). As in
generative moment-matching networks [2] the kernel is a sum of Gaussian kernels over several
bandwidths :math:`\sigma_s`, which keeps a useful gradient at every scale,

.. math::

    k(a, b) = \sum_s \exp\!\Big(-\frac{\lVert a - b \rVert^2}{2 \sigma_s^2}\Big).

:func:`mmd2` computes the estimate; :class:`MMD` is a Pyro-style loss that trains a
generator by minimising it against a data batch, in data space (GMMN) or in the code space
of an autoencoder (GMMN+AE, ``data_transform=autoencoder.transform``); :func:`mmd_test` is
the kernel two-sample test of [1] with a permutation p-value.

**References**

[1] A Kernel Two-Sample Test. Arthur Gretton, Karsten M. Borgwardt, Malte J. Rasch,
    Bernhard Schölkopf, Alexander Smola. JMLR 13, 2012.

[2] Generative Moment Matching Networks. Yujia Li, Kevin Swersky, Richard Zemel. ICML 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyro
import torch

__all__ = [
    "GMMN_BANDWIDTHS",
    "MMD",
    "MMDTestResult",
    "gaussian_kernel_sum",
    "median_bandwidth",
    "mmd2",
    "mmd_test",
]

#: the bandwidths of Li, Swersky & Zemel (2015) for MNIST pixels in [0, 1]
GMMN_BANDWIDTHS = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)


def _check_bandwidths(bandwidths: Sequence[float] | float) -> tuple[float, ...]:
    if isinstance(bandwidths, int | float):
        bandwidths = (bandwidths,)
    values = tuple(float(b) for b in bandwidths)
    if not values:
        raise ValueError("bandwidths: expected at least one bandwidth, got none")
    bad = [b for b in values if not (b > 0 and math.isfinite(b))]
    if bad:
        raise ValueError(f"bandwidths must be positive and finite, got {list(values)}")
    return values


def _check_samples(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 1:
            raise ValueError(f"{name}: expected (num_samples, ...), got a scalar")
        if t.shape[0] < 2:
            raise ValueError(
                f"{name}: the unbiased estimator needs at least 2 samples, got {t.shape[0]}"
            )
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same number of features, got x {x.shape[1]} and y {y.shape[1]}"
        )
    return x, y.to(x.dtype)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ||a||^2 + ||b||^2 - 2 a.b, clamped at 0 against rounding
    sq = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1) - 2 * a @ b.T
    return sq.clamp_min(0)


def gaussian_kernel_sum(
    a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float] | float
) -> torch.Tensor:
    r"""The ``(len(a), len(b))`` matrix of :math:`\sum_s \exp(-\lVert a_i - b_j\rVert^2 /
    2\sigma_s^2)`.

    :param torch.Tensor a: ``(m, d)`` points.
    :param torch.Tensor b: ``(n, d)`` points.
    :param bandwidths: the :math:`\sigma_s` (positive).
    """
    bandwidths = _check_bandwidths(bandwidths)
    sq = _squared_distances(a, b)
    return sum(torch.exp(sq / (-2.0 * s * s)) for s in bandwidths)


def median_bandwidth(x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    r"""The median heuristic [1]: the median distance between distinct points of the pooled
    sample (a bandwidth at the data's own scale).

    :param torch.Tensor x: ``(m, ...)`` samples.
    :param y: optional ``(n, ...)`` samples pooled with ``x``.
    """
    z = x.reshape(x.shape[0], -1)
    if y is not None:
        z = torch.cat([z, y.reshape(y.shape[0], -1).to(z.dtype)])
    sq = _squared_distances(z, z)
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    median = sq[i, j].median().sqrt().item()
    if not median > 0:
        raise ValueError("median_bandwidth: all points coincide; give the bandwidths yourself")
    return median


def _mmd2_from_kernels(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> torch.Tensor:
    m, n = kxx.shape[0], kyy.shape[0]
    sum_xx = kxx.sum() - kxx.diagonal().sum()
    sum_yy = kyy.sum() - kyy.diagonal().sum()
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2 * kxy.sum() / (m * n)


def mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float] | float = GMMN_BANDWIDTHS,
) -> torch.Tensor:
    r"""The unbiased estimate :math:`\widehat{\mathrm{MMD}}{}^2_u` between the samples ``x``
    and ``y`` with a sum of Gaussian kernels (see module docs); differentiable in both.

    :param torch.Tensor x: ``(m, ...)`` samples of :math:`P`, :math:`m \ge 2` (trailing
        dimensions are flattened).
    :param torch.Tensor y: ``(n, ...)`` samples of :math:`Q`, :math:`n \ge 2`, with as many
        features as ``x``.
    :param bandwidths: the kernel bandwidths :math:`\sigma_s` (positive); the default is the
        GMMN set for pixels in [0, 1] (:data:`GMMN_BANDWIDTHS`). Choose them at the scale
        of the data (e.g. around :func:`median_bandwidth`).
    :returns: a scalar tensor (may be slightly negative when :math:`P = Q`).
    :raises ValueError: on fewer than 2 samples, different feature counts, or a
        non-positive bandwidth.
    """
    bandwidths = _check_bandwidths(bandwidths)
    x, y = _check_samples(x, y)
    return _mmd2_from_kernels(
        gaussian_kernel_sum(x, x, bandwidths),
        gaussian_kernel_sum(y, y, bandwidths),
        gaussian_kernel_sum(x, y, bandwidths),
    )


@dataclass
class MMDTestResult:
    """The outcome of :func:`mmd_test`.

    :ivar float statistic: :math:`\\widehat{\\mathrm{MMD}}{}^2_u` of the two samples.
    :ivar float p_value: the permutation p-value :math:`(1 + \\#\\{b: T_b \\ge T\\}) / (1 + B)`.
    :ivar int num_permutations: :math:`B`.
    :ivar tuple bandwidths: the kernel bandwidths used.
    """

    statistic: float
    p_value: float
    num_permutations: int
    bandwidths: tuple[float, ...]

    def reject(self, level: float = 0.05) -> bool:
        """Whether the test rejects "same distribution" at ``level``."""
        return self.p_value <= level


def mmd_test(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float] | float | None = None,
    *,
    num_permutations: int = 500,
    generator: torch.Generator | None = None,
) -> MMDTestResult:
    r"""The kernel two-sample test of [1]: is ``x`` drawn from the same distribution as
    ``y``?

    The statistic is :math:`T = \widehat{\mathrm{MMD}}{}^2_u(x, y)`; under the null
    hypothesis the pooled sample is exchangeable, so :math:`T` is compared with its values
    :math:`T_1, \dots, T_B` on :math:`B` random re-splittings of the pooled sample into parts
    of sizes :math:`m` and :math:`n`. The p-value

    .. math::

        p = \frac{1 + \#\{b : T_b \ge T\}}{1 + B}

    is valid at any :math:`B`: :math:`\Pr(p \le \alpha) \le \alpha` under the null. The
    kernel matrix of the pooled sample is computed once and every permutation's statistic
    is read from it (all of them in one batched product).

    :param torch.Tensor x: ``(m, ...)`` samples, :math:`m \ge 2`.
    :param torch.Tensor y: ``(n, ...)`` samples, :math:`n \ge 2`.
    :param bandwidths: kernel bandwidths; default the median heuristic on the pooled sample
        (:func:`median_bandwidth`, which does not depend on the split, so the test stays
        valid).
    :param int num_permutations: :math:`B`.
    :param torch.Generator generator: random numbers of the permutations (on the device of
        ``x``); default the global generator.
    :returns: :class:`MMDTestResult`.
    """
    x, y = _check_samples(x, y)
    if int(num_permutations) < 1:
        raise ValueError(f"num_permutations must be >= 1, got {num_permutations}")
    if bandwidths is None:
        bandwidths = (median_bandwidth(x, y),)
    bandwidths = _check_bandwidths(bandwidths)
    m, n = x.shape[0], y.shape[0]
    with torch.no_grad():
        z = torch.cat([x, y]).detach()
        k = gaussian_kernel_sum(z, z, bandwidths)
        k_off = k - torch.diag_embed(k.diagonal())
        statistic = _mmd2_from_kernels(k[:m, :m], k[m:, m:], k[:m, m:])
        # one row per permutation: 1 for the examples put in the first sample
        num = int(num_permutations)
        keys = torch.rand(num, m + n, generator=generator, device=z.device)
        first = torch.zeros(num, m + n, dtype=z.dtype, device=z.device)
        first.scatter_(1, keys.argsort(dim=1)[:, :m], 1.0)
        second = 1.0 - first
        xx = ((first @ k_off) * first).sum(1) / (m * (m - 1))
        yy = ((second @ k_off) * second).sum(1) / (n * (n - 1))
        xy = ((first @ k) * second).sum(1) / (m * n)
        null = xx + yy - 2 * xy
        # ties within rounding count as exceedances (conservative)
        tol = 1e-12 * max(1.0, abs(statistic.item()))
        exceed = int((null >= statistic - tol).sum())
    return MMDTestResult(
        statistic=statistic.item(),
        p_value=(1 + exceed) / (1 + num),
        num_permutations=num,
        bandwidths=bandwidths,
    )


class MMD:
    r"""The GMMN objective [2] as a Pyro-style loss: the unbiased :math:`\widehat{\mathrm{MMD}}
    {}^2_u` between a batch of data and a batch generated by the model, minimised over the
    generator's parameters.

    The model is called as ``model(None, num_samples=M)`` and must return the generated
    batch ``(M, ...)`` (what pyrogen's generators do; ``site`` reads a sample site's value
    from the trace instead). There is no guide (it is ignored). With ``data_transform`` the
    data are mapped before the comparison: ``data_transform=autoencoder.transform`` matches
    the generator to the autoencoder's codes of the data (GMMN+AE of [2]); samples are then
    decoded by the autoencoder.

    Like Pyro's ELBOs, whose values are sums over the data plate, :meth:`differentiable_loss`
    and :meth:`loss` return :math:`N \cdot \widehat{\mathrm{MMD}}{}^2_u` for a batch of
    :math:`N` examples, so that :class:`~pyrogen.train.SVILearner` (which divides by the batch
    size) reports :math:`\widehat{\mathrm{MMD}}{}^2_u` itself. Use :func:`mmd2` for the plain
    number.

    :param bandwidths: kernel bandwidths :math:`\sigma_s` (default :data:`GMMN_BANDWIDTHS`,
        for pixels in [0, 1]).
    :param int num_samples: generated examples per step (default: as many as the batch).
    :param str site: read the generated batch from this sample site instead of the model's
        return value.
    :param data_transform: ``x -> features`` applied to the data batch, without gradients
        (e.g. an autoencoder's ``transform``).

    ``SVILearner(generator, MMD())`` trains a generator with the engine.
    """

    def __init__(
        self,
        bandwidths: Sequence[float] | float = GMMN_BANDWIDTHS,
        *,
        num_samples: int | None = None,
        site: str | None = None,
        data_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.bandwidths = _check_bandwidths(bandwidths)
        if num_samples is not None and int(num_samples) < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        self.num_samples = None if num_samples is None else int(num_samples)
        self.site = site
        self.data_transform = data_transform

    def _generated(self, model, num: int, args, kwargs) -> torch.Tensor:
        if self.site is None:
            out = model(None, *args, num_samples=num, **kwargs)
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    "MMD: the model must return the generated batch as a tensor (or give "
                    f"site=...), got {type(out).__name__}"
                )
            return out
        trace = pyro.poutine.trace(model).get_trace(None, *args, num_samples=num, **kwargs)
        if self.site not in trace.nodes:
            raise ValueError(f"MMD: the model has no site {self.site!r}")
        return trace.nodes[self.site]["value"]

    def differentiable_loss(self, model, guide, x: torch.Tensor, *args, **kwargs):
        """:math:`N \\cdot \\widehat{\\mathrm{MMD}}{}^2_u` between the batch ``x`` (``N``
        examples) and a generated batch, differentiable in the generator's parameters."""
        if self.data_transform is not None:
            with torch.no_grad():
                x = self.data_transform(x)
        num = self.num_samples if self.num_samples is not None else x.shape[0]
        generated = self._generated(model, num, args, kwargs)
        return x.shape[0] * mmd2(generated, x.detach(), self.bandwidths)

    def loss(self, model, guide, x: torch.Tensor, *args, **kwargs) -> float:
        """The value of :meth:`differentiable_loss` as a float (no gradient)."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, x, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, x: torch.Tensor, *args, **kwargs) -> float:
        """Backpropagate :meth:`differentiable_loss`; return its value."""
        value = self.differentiable_loss(model, guide, x, *args, **kwargs)
        value.backward()
        return value.item()
