r"""VIMCO: the multi-sample bound with leave-one-out baselines, vectorized over particles.

For :math:`K` particles :math:`h_k \sim q_\phi(h \mid x)` with weights
:math:`w_k = p_\theta(x, h_k) / q_\phi(h_k \mid x)`, the objective is the
:math:`K`-sample bound [1, 2]

.. math::

    \mathcal L_K = \mathbb E\big[\hat L\big], \qquad
    \hat L = \log \frac1K \sum_{k=1}^K w_k .

Its gradient splits into a term through the weights and a score-function term for the
guide's non-reparameterizable sites. VIMCO [2] gives each particle :math:`j` its own
baseline: :math:`\hat L` with :math:`\log w_j` replaced by the mean of the other
log-weights (the geometric mean of the other weights),

.. math::

    \hat L_{-j} = \log \frac1K \Big(\sum_{k \ne j} w_k + \exp\Big(\frac{1}{K-1}
        \sum_{k \ne j} \log w_k\Big)\Big),

which does not depend on :math:`h_j`, so that the estimator

.. math::

    \nabla \mathcal L_K \approx \sum_j \big(\hat L - \hat L_{-j}\big)
        \nabla_\phi \log q_\phi(h_j \mid x) + \sum_j \tilde w_j \nabla \log w_j,
    \qquad \tilde w_j = \frac{w_j}{\sum_k w_k},

is unbiased. :math:`\log q_\phi(h_j \mid x)` in the first term sums the guide's
non-reparameterizable sites; reparameterizable sites get pathwise gradients through
:math:`\log w_j`.

The loss number is :math:`-\sum_n \mathrm{scale}_n \hat L_n`, the negative bound in nats
summed over the batch; one weight per particle and element of the plates shared by every
site (the ``"data"`` plate), the subsampling scale applied outside the log-mean-exp.

**References**

[1] Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. 2015.

[2] Variational Inference for Monte Carlo Objectives. Andriy Mnih, Danilo J. Rezende. 2016.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import ELBO
from pyro.util import warn_if_nan

from pyrogen.infer._weights import (
    StructureChecks,
    guess_max_plate_nesting,
    plate_nesting_arg,
    run_particles,
)
from pyrogen.infer.wake_sleep import check_num_particles, scaled_sum, site_terms


def leave_one_out_log_mean(log_w: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat L_{-j}` for every particle :math:`j` (dim 0 of ``log_w``, :math:`K \ge 2`)."""
    k = log_w.shape[0]
    others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)
    # row j: log_w with entry j replaced by the mean of the others
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device)
    eye = eye.reshape((k, k) + (1,) * (log_w.dim() - 1))
    table = torch.where(eye, others.unsqueeze(1), log_w.unsqueeze(0))
    return torch.logsumexp(table, dim=1) - math.log(k)


class VIMCO(ELBO):
    r"""The :math:`K`-sample bound with VIMCO's leave-one-out baselines (module docs).

    Drop-in for Pyro's ELBOs (``SVI(model, guide, optim, VIMCO(5))``) and for
    :class:`pyrogen.train.SVILearner`; all particles in one vectorized run.

    :param int num_particles: :math:`K \ge 2`.
    :param int max_plate_nesting: plate dims of the model (not counting the particle
        plate); guessed from one run of model and guide when ``None``.
    """

    def __init__(self, num_particles: int = 5, *, max_plate_nesting: int | None = None) -> None:
        k = check_num_particles(num_particles, 2)
        super().__init__(num_particles=k, vectorize_particles=True)
        self.model_plate_nesting = plate_nesting_arg(max_plate_nesting)
        self.structure_checks = StructureChecks()

    def __repr__(self) -> str:
        return f"VIMCO(num_particles={self.num_particles})"

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("VIMCO does not produce Pyro traces")

    def _terms(self, model, guide, args, kwargs):
        if self.model_plate_nesting is None:
            self.model_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        nesting = self.model_plate_nesting
        model_sites, guide_sites = run_particles(
            model, guide, args, kwargs, self.num_particles, nesting
        )
        terms = site_terms(model_sites, guide_sites, nesting, self.structure_checks)
        score = [
            terms.guide[name]
            for name, site in guide_sites.items()
            if name in terms.guide and not getattr(site["fn"], "has_rsample", False)
        ]
        return terms.weights, (sum(score) if score else None)

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """:returns: an estimate of :math:`-\\mathcal L_K`, summed over the batch."""
        lw, _ = self._terms(model, guide, args, kwargs)
        loss = -scaled_sum(lw.log_mean_weight(), lw.scale).item()
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """A scalar whose value is the :meth:`loss` estimate and whose gradient is VIMCO's
        estimate of :math:`-\\nabla \\mathcal L_K`."""
        lw, log_q_score = self._terms(model, guide, args, kwargs)
        log_w = lw.log_weights
        bound = lw.log_mean_weight()  # its gradient: sum_j w~_j grad log w_j
        surrogate = bound
        if log_q_score is not None and log_q_score.requires_grad:
            with torch.no_grad():
                signal = bound.unsqueeze(0) - leave_one_out_log_mean(log_w)
            surrogate = surrogate + (signal * log_q_score).sum(0)
        surrogate = scaled_sum(surrogate, lw.scale)
        value = scaled_sum(bound, lw.scale).detach()
        return -(surrogate - surrogate.detach() + value)

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate VIMCO's gradient estimate. :returns: the loss as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        loss = loss.item()
        warn_if_nan(loss, "loss")
        return loss
