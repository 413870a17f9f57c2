r"""One entry point for every test log-likelihood: :func:`log_likelihood`.

.. code-block:: python

    log_likelihood(model, data, **options)           # any pyrogen model: its own estimator
    log_likelihood(rbm_distribution, data, **options)  # an energy-based distribution: AIS / exact
    log_likelihood(model_fn, guide_fn, data, **options)  # a plain Pyro pair: importance sampling

A pyrogen model (every class in :mod:`pyrogen.models` that defines a density) knows the
strongest estimator its family admits and offers it as ``model.log_likelihood(data,
**options)``: exact for the autoregressive models, importance sampling with the guide as
proposal for VAEs, an exact or AIS partition function for RBMs, the mean-field bound with an
AIS partition function for DBMs. Every path returns one
:class:`~pyrogen.evaluate.LogLikelihood`. Options that the chosen estimator does not take are
a :class:`TypeError` that names them and lists the ones it does take.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from pyrogen.distributions.energy import EnergyBasedDistribution
from pyrogen.evaluate.energy import energy_log_likelihood
from pyrogen.evaluate.importance import importance_log_likelihood
from pyrogen.evaluate.result import LogLikelihood

__all__ = ["check_options", "log_likelihood"]


def check_options(estimator: Callable, options: dict, what: str, skip: int = 0) -> None:
    """Raise :class:`TypeError` if ``options`` holds a keyword that ``estimator`` does not
    take (``what`` names the estimator in the message; the first ``skip`` parameters are
    positional inputs, not options)."""
    params = list(inspect.signature(estimator).parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"{what} does not take the option(s) {unknown}; it takes {accepted or 'none'}"
        )


def log_likelihood(model, *args, **options) -> LogLikelihood:
    r"""The mean test log-likelihood of ``data`` by the strongest estimator ``model`` admits.

    :param model: a pyrogen model (anything with a ``log_likelihood(data, **options)``
        method), an energy-based distribution (:class:`~pyrogen.distributions.BernoulliRBM`,
        ...), or the model function of a Pyro ``(model, guide)`` pair.
    :param args: ``data``, or ``guide, data`` for a Pyro pair.
    :param options: the estimator's options (e.g. ``num_samples`` and ``batch_size`` for
        importance sampling, ``num_chains`` and ``betas`` for AIS).
    :returns: :class:`~pyrogen.evaluate.LogLikelihood`.
    :raises TypeError: on options the estimator does not take, or arguments that match no
        form above.
    """
    own = getattr(model, "log_likelihood", None)
    if own is not None and not isinstance(model, EnergyBasedDistribution):
        if len(args) != 1:
            raise TypeError(
                f"log_likelihood({type(model).__name__}, data, **options) takes one positional "
                f"argument after the model (the data), got {len(args)}"
            )
        check_options(own, options, f"{type(model).__name__}.log_likelihood", skip=1)
        return own(args[0], **options)
    if isinstance(model, EnergyBasedDistribution):
        if len(args) != 1:
            raise TypeError("log_likelihood(distribution, data, **options) takes the data only")
        check_options(energy_log_likelihood, options, "energy_log_likelihood", skip=2)
        return energy_log_likelihood(model, args[0], **options)
    if callable(model) and len(args) == 2 and callable(args[0]):
        check_options(importance_log_likelihood, options, "importance_log_likelihood", skip=3)
        return importance_log_likelihood(model, args[0], args[1], **options)
    raise TypeError(
        "log_likelihood takes (pyrogen model, data), (energy-based distribution, data) or "
        f"(model_fn, guide_fn, data); got {type(model).__name__} and {len(args)} more "
        "positional argument(s). For a function x -> log p(x) use exact_log_likelihood."
    )
