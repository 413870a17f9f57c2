r"""The importance-weighted autoencoder objective, vectorized over particles.

For a model :math:`p_\theta(x, z)` and a reparameterizable guide :math:`q_\phi(z \mid x)`,
the IWAE bound with :math:`K` particles is

.. math::

    \mathcal L_K(x) = \mathbb E_{z_{1:K} \sim q_\phi}\Big[\log \frac1K \sum_{k=1}^K w_k\Big],
    \qquad w_k = \frac{p_\theta(x, z_k)}{q_\phi(z_k \mid x)},

with :math:`\mathrm{ELBO} = \mathcal L_1 \le \mathcal L_K \le \mathcal L_{K+1}
\le \log p_\theta(x)` [1]. With normalised weights :math:`\tilde w_k = w_k / \sum_j w_j`
its reparameterized gradient is

.. math::

    \nabla_{\theta,\phi} \mathcal L_K = \mathbb E\Big[\sum_k \tilde w_k
        \nabla_{\theta,\phi} \log w_k\Big],

which ``estimator="iwae"`` uses. The doubly reparameterized estimator of [2]
(``estimator="dreg"``) keeps that gradient for :math:`\theta` and replaces the guide's by

.. math::

    \nabla_\phi \mathcal L_K = \mathbb E\Big[\sum_k \tilde w_k^2\,
        \frac{\partial \log w_k}{\partial z_k} \frac{d z_k}{d \phi}\Big],

where :math:`\partial \log w_k / \partial z_k` holds :math:`\phi` fixed. Its variance
vanishes as :math:`q` approaches the posterior, unlike the plain estimator's, whose
signal-to-noise ratio for :math:`\phi` decays like :math:`K^{-1/2}` [3].

Implementation of DReG for any guide, hierarchical ones included: the guide is replayed on
its own sample :math:`z` through an identity map whose backward pass multiplies the
incoming gradient by :math:`\tilde w_k` (so the path derivative picks up
:math:`\tilde w_k^2`), and once more on :math:`z` detached, whose
:math:`\tilde w_k \log q_\phi(z_k)` cancels the score term exactly. The model runs once.

Plates shared by every sample site (the ``"data"`` plate of an amortized model) get one
importance weight per element, so the bound is summed over examples.

**Subsampling.** With ``pyro.plate("data", N, subsample_size=B)`` in model and guide, the
indices the guide's plate draws are replayed into the model (as ``poutine.replay`` does for
Pyro's own losses), in every pass of both estimators, so the model scores the minibatch the
guide sampled for. The common scale :math:`N / B` is applied *after* the log-mean-exp:

.. math::

    \widehat{\mathcal L}_K = \frac NB \sum_{n \in \text{batch}}
        \log \frac1K \sum_k w_{nk},

an unbiased estimate of the full-data bound :math:`\sum_{n=1}^N \mathcal L_K(x_n)`, and
with fixed indices an upper bound on :math:`-\frac NB \sum_n \log p(x_n)` as a loss.
Pyro's ``RenyiELBO`` scales the log-weights *inside* the log-mean-exp instead, which
estimates neither and can fall below the exact :math:`-\log p(x)` of the rows.

``max_plate_nesting=None`` or ``float("inf")`` (Pyro's default) is guessed from one run of
model and guide; a model and guide with no sample site (parameters only) give a loss of 0,
as Pyro's losses do.

**References**

[1] Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. 2015.

[2] Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives. George Tucker,
    Dieterich Lawson, Shixiang Gu, Chris J. Maddison. 2018.

[3] Tighter Variational Bounds are Not Necessarily Better. Tom Rainforth, Adam R.
    Kosiorek, Tuan Anh Le, Chris J. Maddison, Maximilian Igl, Frank Wood, Yee Whye Teh. 2018.
"""

from __future__ import annotations

import torch
from pyro.infer import ELBO
from pyro.util import warn_if_nan

from pyrogen.infer._weights import (
    StructureChecks,
    compute_log_weights,
    guess_max_plate_nesting,
    guide_log_prob,
    latent_sites,
    plate_nesting_arg,
    run_guide,
    run_model,
    run_particles,
)

ESTIMATORS = ("iwae", "dreg")


def _is_one(scale) -> bool:
    return isinstance(scale, float | int) and scale == 1


class _Slot:
    """Holds the weights that :class:`_ScaleGrad` applies in the backward pass."""

    __slots__ = ("weight",)

    def __init__(self) -> None:
        self.weight = None


class _ScaleGrad(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``slot.weight`` backward."""

    @staticmethod
    def forward(ctx, value, slot):
        ctx.slot = slot
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.slot.weight, None


class IWAE(ELBO):
    r"""Importance-weighted bound :math:`\mathcal L_K` as a Pyro loss (see module docs).

    Drop-in for Pyro's ELBOs: ``SVI(model, guide, optim, IWAE(num_particles=5))``, or
    ``IWAE(5)(model, guide)`` as a :class:`torch.nn.Module` for plain ``torch.optim``. All
    particles run as one vectorized batch in an outermost plate.

    **What is checked when.** With Pyro's validation on (``pyro.enable_validation(True)``,
    Pyro's default):

    * *Every step, on the values.* Each distribution checks its arguments when the model or
      guide builds it (torch's ``validate_args``: NaN parameters, a negative scale, ...), and
      every sample site's value is checked against its distribution's shape and support
      exactly as ``log_prob`` checks it -- data that is not binary for a Bernoulli, a NaN
      observation or sample for a Normal -- so bad data fails on the step that brings it.
      For ``Bernoulli`` and ``Normal`` sites (made independent with ``.to_event``) pyrogen
      computes the summed log-density with fused kernels and tests the support in one pass
      (:math:`x - x^2 = 0` exactly for :math:`x \in \{0, 1\}`; a NaN-free sum), falling
      back to torch's own check, and its error message, whenever that test does not pass.
      Guide sites are checked to be reparameterizable on every step (validation on or off).
    * *Once per step signature, on the structure.* Pyro's ``check_model_guide_match`` (the
      model's and the guide's latent sites agree in names, event dims and shapes) and
      ``check_site_shape`` (each log-density has the shape its plates and
      ``max_plate_nesting`` imply) depend only on the step's signature: for every sample
      site its name, whether it is observed, its distribution's type, batch and event
      shapes, its value's shape and dtype, its plates (name, dim, size) and the ``infer``
      flags the checks read, plus ``max_plate_nesting`` and the number of particles. They run
      on the first step of each signature and are skipped while it repeats (and re-run if a
      log-density comes out in another shape than before). Another batch size, a new site, a
      changed shape, dtype or plate makes a new signature and is checked; a check that fails
      raises and is not remembered, so it fails again next step; a warning of
      ``check_model_guide_match`` appears on the first step of its signature. The record
      lives in this object (:attr:`structure_checks`, up to 64 signatures).

    With validation off none of these checks run (a distribution built with
    ``validate_args=True`` still checks itself), except the reparameterization check.
    ``max_plate_nesting=None`` is guessed once, on the first call, and kept.

    :param int num_particles: :math:`K \ge 1`. ``K = 1`` is the ELBO.
    :param str estimator: ``"iwae"`` (the standard gradient) or ``"dreg"`` (doubly
        reparameterized gradient of Tucker et al. 2018).
    :param int max_plate_nesting: number of plate dims the model uses (not counting the
        particle plate). Guessed from one run of model and guide when ``None`` or
        ``float("inf")``; any larger value also works.
    """

    def __init__(
        self,
        num_particles: int = 5,
        estimator: str = "iwae",
        max_plate_nesting: int | None = None,
    ) -> None:
        if int(num_particles) != num_particles or num_particles < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        super().__init__(num_particles=int(num_particles), vectorize_particles=True)
        self.estimator = estimator
        self.model_plate_nesting = plate_nesting_arg(max_plate_nesting)
        self.structure_checks = StructureChecks()

    def __repr__(self) -> str:
        return f"IWAE(num_particles={self.num_particles}, estimator={self.estimator!r})"

    # -------------------------------------------------------------------- internals

    def _nesting(self, model, guide, args, kwargs) -> int:
        if self.model_plate_nesting is None:
            self.model_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        return self.model_plate_nesting

    def _log_weights(self, model, guide, args, kwargs):
        nesting = self._nesting(model, guide, args, kwargs)
        model_sites, guide_sites = run_particles(
            model, guide, args, kwargs, self.num_particles, nesting
        )
        return compute_log_weights(model_sites, guide_sites, nesting, self.structure_checks)

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("IWAE does not produce Pyro traces; use differentiable_loss")

    def _bound(self, lw) -> torch.Tensor:
        """:math:`\\sum` (scale * log-mean-weight): the IWAE bound of the batch."""
        bound = lw.log_mean_weight()
        if not _is_one(lw.scale):
            bound = bound * lw.scale
        return bound.sum()

    # -------------------------------------------------------------------- public API

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """:returns: an estimate of :math:`-\\mathcal L_K`, summed over the batch (a float)."""
        lw = self._log_weights(model, guide, args, kwargs)
        loss = -self._bound(lw).item()
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The surrogate of the chosen gradient estimator.

        :returns: a scalar whose value is the :meth:`loss` estimate and whose gradient is
            the chosen estimator of :math:`-\\nabla \\mathcal L_K`.
        """
        if self.estimator == "dreg":
            return self._dreg_loss(model, guide, args, kwargs)
        return -self._bound(self._log_weights(model, guide, args, kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate the gradient estimator.

        :returns: the loss as a float.
        """
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        loss = loss.item()
        warn_if_nan(loss, "loss")
        return loss

    def _dreg_loss(self, model, guide, args, kwargs) -> torch.Tensor:
        nesting = self._nesting(model, guide, args, kwargs)
        k = self.num_particles
        # Pass A: sample z, keeping its reparameterization graph z = T(eps; phi).
        guide_a = run_guide(guide, args, kwargs, k, nesting)
        sites = latent_sites(guide_a)
        if not sites:  # nothing to reparameterize: the standard estimator is the same
            return -self._bound(self._log_weights(model, guide, args, kwargs))
        slots = {site["name"]: _Slot() for site in sites}
        scaled = {s["name"]: _ScaleGrad.apply(s["value"], slots[s["name"]]) for s in sites}
        # Pass B: guide and model evaluated at the gradient-scaled copy of z (and on pass
        # A's minibatch: the subsample indices of its plates are replayed in every pass).
        scaled.update(guide_a.subsamples)
        guide_b = run_guide(guide, args, kwargs, k, nesting, replay=scaled)
        model_b = run_model(model, guide_b, args, kwargs, k, nesting)
        lw = compute_log_weights(model_b, guide_b, nesting, self.structure_checks)
        log_w = lw.log_weights
        with torch.no_grad():
            w = torch.softmax(log_w, dim=0)
        for site in sites:
            slots[site["name"]].weight = lw.to_batch_layout(w, site["fn"].event_dim)
        # Pass C: log q at z detached; w * log q_C cancels pass B's score term exactly.
        detached = {name: value.detach() for name, value in scaled.items()}
        log_q_c = guide_log_prob(run_guide(guide, args, kwargs, k, nesting, replay=detached), lw)
        surrogate = ((w * (log_w + log_q_c)).sum(0) * lw.scale).sum()
        value = self._bound(lw).detach()
        return -(surrogate - surrogate.detach() + value)
