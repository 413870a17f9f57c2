r"""Exact test log-likelihoods of tractable models (FVSBN, NADE, PixelCNN, ...).

For a model whose ``log_prob`` is exact, the evaluation protocol's estimate is just the
average :math:`\frac1N \sum_n \log p(x_n)`; its only uncertainty is the sampling of the
test set (``stderr``), none is Monte Carlo (``mc_stderr = 0``), and the importance-sampling
diagnostics (ESS, :math:`\hat k`) do not apply (NaN).

Under ``torchrun`` (an initialised process group of :math:`R` ranks) batch :math:`i` is
scored by rank :math:`i \bmod R` and the values are gathered in order: every rank returns the
single-process result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from pyrogen import distributed
from pyrogen.accelerate import full_precision
from pyrogen.evaluate.result import LogLikelihood

__all__ = ["exact_log_likelihood"]


@full_precision
def exact_log_likelihood(
    model: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    data,
    *,
    batch_size: int = 1000,
    progress: bool = False,
    estimator: str = "exact",
    num_samples: int = 0,
    device: torch.device | str | None = None,
    method: str | None = None,
) -> LogLikelihood:
    """Exact per-example log-likelihoods of ``data``, in batches.

    :param model: an ``nn.Module`` with a ``log_prob(x)`` method (put in ``eval`` mode for
        the call and restored after; batches are moved to its parameters' device), or any
        callable ``x -> log p(x)`` of shape ``(batch,)``.
    :param data: a ``(N, ...)`` tensor of examples or a pyrogen ``ImageDataset``.
    :param int batch_size: examples per call.
    :param bool progress: show a progress bar.
    :param str estimator: the estimator's name in the summary (e.g. an ordering ensemble).
    :param int num_samples: samples behind each value (0: none; ``M`` for an ensemble of
        ``M`` orderings).
    :param device: where to evaluate when ``model`` is a plain callable (default: the
        data's device).
    :param str method: deprecated name of ``estimator`` (removed in the next release).
    :returns: :class:`~pyrogen.evaluate.LogLikelihood` with ``mc_stderr = 0``.
    """
    if method is not None:
        warnings.warn(
            "exact_log_likelihood(method=...) is deprecated; use estimator=...",
            DeprecationWarning,
            stacklevel=2,
        )
        estimator = method
    from tqdm import tqdm

    if hasattr(data, "tensor") and callable(data.tensor):  # a pyrogen ImageDataset
        data = data.tensor()
    if not isinstance(data, torch.Tensor) or data.dim() < 2 or data.shape[0] == 0:
        found = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"data: expected a non-empty (N, ...) tensor of examples, got {found}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)

    module = model if isinstance(model, torch.nn.Module) else None
    log_prob = module.log_prob if module is not None else model
    if module is not None and device is None:
        device = next(module.parameters()).device
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    world = distributed.world()
    batches = data.split(batch_size)
    mine = range(world.rank, len(batches), world.size)
    chunks = {}
    try:
        with torch.no_grad():
            bar = tqdm(mine, desc="exact log p(x)", disable=not (progress and world.is_main))
            for i in bar:
                x = batches[i]
                if device is not None:
                    x = x.to(device)
                chunks[i] = log_prob(x).detach().double().cpu().reshape(-1)
    finally:
        if module is not None:
            module.train(was_training)
    if world.size > 1:
        chunks = distributed.gather_in_order(chunks, len(batches), world)
    else:
        chunks = list(chunks.values())
    return LogLikelihood.from_per_example(torch.cat(chunks), estimator, num_samples=num_samples)
