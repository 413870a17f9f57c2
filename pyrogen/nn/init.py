"""Initialisations shared by pyrogen's networks and models."""

from __future__ import annotations

import torch

__all__ = ["logit_of_mean"]


@torch.no_grad()
def logit_of_mean(
    pixel_mean: torch.Tensor, like: torch.Tensor | None = None, eps: float = 1e-3
) -> torch.Tensor:
    r""":math:`\log\frac{m}{1-m}` of training-set means :math:`m` (clamped to
    ``[eps, 1 - eps]``): the output bias that makes a Bernoulli model start from the data's
    factorised marginal (Burda et al. 2015; Hinton 2010's practical guide). With ``like``,
    the result is shaped, typed and placed like it (a ValueError if the sizes differ)."""
    m = torch.as_tensor(pixel_mean)
    if like is not None:
        m = m.reshape(-1)
        if m.numel() != like.numel():
            raise ValueError(f"pixel_mean: expected {like.numel()} values, got {m.numel()}")
        m = m.to(like).reshape(like.shape)
    return torch.logit(m.clamp(eps, 1 - eps))
