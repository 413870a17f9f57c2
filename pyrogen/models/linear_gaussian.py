r"""A linear-Gaussian latent variable model (probabilistic PCA) with an amortized guide.

.. math::

    z \sim \mathcal N(0, I_d), \qquad x \mid z \sim \mathcal N(W z + b, \sigma^2 I_D),
    \qquad q_\phi(z \mid x) = \mathcal N(A x + c, \operatorname{diag}(s^2)).

Everything an estimator could want is closed form, which makes it the reference model for
testing pyrogen's bounds, gradient estimators and evaluators [1, 2]:

* :math:`\log p(x) = \log \mathcal N(x;\, b,\, W W^\top + \sigma^2 I)`;
* the posterior :math:`p(z \mid x) = \mathcal N(\Sigma W^\top (x - b)/\sigma^2, \Sigma)`
  with :math:`\Sigma = (I + W^\top W / \sigma^2)^{-1}`;
* the ELBO :math:`\mathbb E_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p(z))`.

Sample sites: ``"z"`` (latent) and ``"x"`` (observed) inside ``pyro.plate("data")``.

**References**

[1] Probabilistic Principal Component Analysis. Michael E. Tipping, Christopher M. Bishop.
    1999.

[2] Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. 2015.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from pyrogen._checks import check_finite
from pyrogen.evaluate.exact import exact_log_likelihood
from pyrogen.models.base import GenerativeModel

__all__ = ["LinearGaussianVAE"]


class LinearGaussianVAE(GenerativeModel):
    """Probabilistic PCA with a linear amortized Gaussian guide (see module docs).
    Its :meth:`log_likelihood` is exact (the Gaussian marginal).

    :param int num_features: :math:`D`.
    :param int latent_dim: :math:`d`.
    :param float noise_scale: :math:`\\sigma` (fixed).
    """

    name_prefix = "ppca"

    def __init__(
        self, num_features: int, latent_dim: int, noise_scale: float = 0.5, name: str | None = None
    ) -> None:
        super().__init__(num_features, (1, int(num_features)), name)
        if noise_scale <= 0:
            raise ValueError(f"noise_scale must be positive, got {noise_scale}")
        self.latent_dim = int(latent_dim)
        self.noise_scale = float(noise_scale)
        self.weight = nn.Parameter(torch.randn(num_features, latent_dim) / math.sqrt(latent_dim))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.guide_weight = nn.Parameter(torch.zeros(latent_dim, num_features))
        self.guide_bias = nn.Parameter(torch.zeros(latent_dim))
        self.guide_log_scale = nn.Parameter(torch.zeros(latent_dim))

    @pyro_method
    def model(self, x: torch.Tensor):
        x = self._flatten(x)
        check_finite(x)
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(x.new_zeros(()), x.new_ones(())).expand([self.latent_dim])
            z = pyro.sample("z", prior.to_event(1))
            loc = z @ self.weight.T + self.bias
            pyro.sample("x", dist.Normal(loc, self.noise_scale).to_event(1), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor):
        x = self._flatten(x)
        with pyro.plate("data", x.shape[0]):
            loc = x @ self.guide_weight.T + self.guide_bias
            scale = self.guide_log_scale.exp().expand_as(loc)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ closed forms

    def marginal(self) -> dist.MultivariateNormal:
        r""":math:`p(x) = \mathcal N(b, W W^\top + \sigma^2 I)`."""
        cov = self.weight @ self.weight.T
        cov = cov + self.noise_scale**2 * torch.eye(self.num_features, dtype=cov.dtype)
        return dist.MultivariateNormal(self.bias, covariance_matrix=cov)

    def exact_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(x)` per example."""
        return self.marginal().log_prob(x)

    @torch.no_grad()
    def sample(self, num_samples: int, *, context: torch.Tensor | None = None) -> torch.Tensor:
        """``(num_samples, num_features)`` draws from :math:`p(x)`."""
        self._check_context(context)
        return self.marginal().sample((int(num_samples),))

    def log_likelihood(self, data, *, batch_size: int = 1000, progress: bool = False):
        """The exact mean test log-likelihood under the Gaussian marginal."""
        with torch.no_grad():
            return exact_log_likelihood(
                self.exact_log_prob,
                data,
                batch_size=batch_size,
                progress=progress,
                estimator="exact (linear-Gaussian marginal)",
            )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(N, d)`` and covariance ``(d, d)`` of the exact posterior :math:`p(z|x)`."""
        W, s2 = self.weight, self.noise_scale**2
        eye = torch.eye(self.latent_dim, dtype=W.dtype)
        cov = torch.linalg.inv(eye + W.T @ W / s2)
        mean = (x - self.bias) @ (W @ cov) / s2
        return mean, cov

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        r"""The ELBO :math:`\mathbb E_q[\log p(x, z) - \log q(z|x)]` per example, in closed
        form (differentiable in all parameters)."""
        D, d, s2 = self.num_features, self.latent_dim, self.noise_scale**2
        mu = x @ self.guide_weight.T + self.guide_bias
        var = (2 * self.guide_log_scale).exp()
        resid = x - mu @ self.weight.T - self.bias
        trace = (self.weight**2 * var).sum()
        expected_lik = (
            -0.5 * D * math.log(2 * math.pi * s2) - 0.5 * ((resid**2).sum(-1) + trace) / s2
        )
        expected_prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * ((mu**2).sum(-1) + var.sum())
        entropy = 0.5 * d * math.log(2 * math.pi * math.e) + self.guide_log_scale.sum()
        return expected_lik + expected_prior + entropy

    @torch.no_grad()
    def set_guide_to_posterior(self) -> None:
        """Make the guide the exact posterior; needs :math:`W^\\top W` diagonal (orthogonal
        columns), since the guide's covariance is diagonal."""
        W, s2 = self.weight, self.noise_scale**2
        gram = W.T @ W
        off = gram - torch.diag(torch.diagonal(gram))
        if off.abs().max() > 1e-8 * gram.abs().max():
            raise ValueError(
                "the exact posterior has a full covariance unless W has orthogonal columns; "
                "orthogonalise weight first (e.g. with torch.linalg.qr)"
            )
        eye = torch.eye(self.latent_dim, dtype=W.dtype)
        cov = torch.linalg.inv(eye + gram / s2)
        self.guide_weight.copy_(cov @ W.T / s2)
        self.guide_bias.copy_(-(cov @ W.T / s2) @ self.bias)
        self.guide_log_scale.copy_(0.5 * torch.log(torch.diagonal(cov)))
