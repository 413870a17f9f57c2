r"""Energy-based models (RBMs, DBMs) as Pyro models: what they share.

An energy-based model's parameters define an energy-based distribution over the visible
units (:class:`~pyrogen.distributions.BernoulliRBM`, :class:`~pyrogen.distributions.DBM`,
...), whose hidden units are summed out inside the distribution. As a Pyro model it is one
observed site,

.. code-block:: python

    with pyro.plate("data", N):
        pyro.sample("v", model.distribution(), obs=x)

with no latent site and an empty guide. It trains with
:class:`~pyrogen.infer.ContrastiveDivergence` (CD-k, PCD) as the SVI loss, samples by block
Gibbs sampling, and is scored with :func:`~pyrogen.evaluate.energy_log_likelihood`: an exact
partition function when a layer is small enough to enumerate, an AIS estimate with its
standard error and sandwich otherwise (for DBMs the mean-field bound on :math:`-F(v)`).
"""

from __future__ import annotations

from typing import ClassVar

import pyro
import torch
from pyro.nn import pyro_method
from torch import nn

from pyrogen._effects import data_plate, params_observed
from pyrogen.evaluate.dispatch import check_options
from pyrogen.evaluate.energy import energy_log_likelihood
from pyrogen.models.base import GenerativeModel

__all__ = ["EnergyModel"]


class EnergyModel(GenerativeModel):
    """Base class of the energy-based models (see module docs). Subclasses say which
    parameters make the distribution (:attr:`parameter_names`, in the distribution's
    argument order), which distribution class reads them (:meth:`distribution`), how data
    are checked (:meth:`_prepare`) and what the mean of :math:`p(v \\mid \\text{state})` is
    (:meth:`_visible_mean`)."""

    has_mean_samples: ClassVar[bool] = True
    #: Gibbs sweeps of :meth:`sample` (and of the command line's sample grids)
    default_sample_steps: ClassVar[int] = 1000
    #: names of the parameters passed to the distribution, in order
    parameter_names: ClassVar[tuple[str, ...]] = ("weight", "visible_bias", "hidden_bias")

    def _init_layer_parameters(self, hidden: int, init_scale: float) -> None:
        """``weight`` :math:`\\mathcal N(0, s^2)` of shape ``(num_features, hidden)``, zero
        ``visible_bias`` and ``hidden_bias``: the initialisation of Hinton's practical guide
        (2010) shared by every RBM-like model (``hidden`` is checked and stored)."""
        if int(hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.hidden = int(hidden)
        self.weight = nn.Parameter(torch.randn(self.num_features, self.hidden) * init_scale)
        self.visible_bias = nn.Parameter(torch.zeros(self.num_features))
        self.hidden_bias = nn.Parameter(torch.zeros(self.hidden))

    @property
    def num_hidden(self) -> int:
        """Deprecated alias of :attr:`hidden` (a layer width; DBMs list several)."""
        return self.hidden

    def _distribution_parameters(self) -> list[torch.Tensor]:
        """The parameters, read through Pyro when a handler can observe them (SVI needs
        them registered) and directly otherwise."""
        if params_observed():
            return [getattr(self, n) for n in self.parameter_names]
        params = []
        for n in self.parameter_names:
            p = self._parameters.get(n)
            if p is None:  # a ParameterList of layers
                params.append(list(self._modules[n]._parameters.values()))
            else:
                params.append(p)
        return params

    def distribution(self, **kwargs):
        """The distribution over the visible units with the current parameters."""
        raise NotImplementedError

    def _prepare(self, x, name: str = "x") -> torch.Tensor:
        """Data as the distribution's value (binary, flattened) with the checks of
        :meth:`_binary_input`."""
        return self._binary_input(x, name)

    @pyro_method
    def model(self, x: torch.Tensor):
        """``pyro.sample("v", distribution, obs=x)`` inside ``pyro.plate("data")``."""
        x = self._prepare(x)
        with data_plate("data", x.shape[0], x.device):
            pyro.sample("v", self.distribution(validate_args=False), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor):
        """Empty: the hidden units are summed out (no latent sample sites)."""

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`F(v) = -\\log \\tilde p(v)` of each example of ``x`` (no partition
        function needed)."""
        return self.distribution().free_energy(self._prepare(x))

    # ---- sampling ---------------------------------------------------------------------

    def _visible_mean(self, dist, state) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        context: torch.Tensor | None = None,
        num_steps: int | None = None,
        mean: bool = False,
        init=None,
    ) -> torch.Tensor:
        """``num_samples`` independent block-Gibbs chains run for ``num_steps`` sweeps (default
        :attr:`default_sample_steps`) from random states (or ``init``, a Gibbs state or a
        visible tensor): their visible states, or with ``mean=True`` the mean of
        :math:`p(v \\mid \\text{state})` after the last sweep. Approximate samples of
        :math:`p(v)`, exact only as ``num_steps`` grows."""
        self._check_context(context)
        dist = self.distribution()
        state = dist.init_chains(int(num_samples)) if init is None else init
        if isinstance(state, torch.Tensor):
            state = (state,)
        steps = self.default_sample_steps if num_steps is None else int(num_steps)
        for _ in range(steps):
            state = dist.gibbs_step(state)
        return self._visible_mean(dist, state) if mean else state[0]

    # ---- scoring ----------------------------------------------------------------------

    def log_likelihood(self, data, **options):
        """Mean test log-likelihood :math:`-F(v) - \\log Z` of ``data`` with an exact (small
        models) or AIS partition function. ``options`` are those of
        :func:`~pyrogen.evaluate.energy_log_likelihood` (``num_chains=100``,
        ``betas=14500``, ``base_data``, ``batch_size``, ``progress``, ``mean_field_iters``);
        others are a TypeError naming them."""
        check_options(energy_log_likelihood, options, f"{type(self).__name__}.log_likelihood", 2)
        if hasattr(data, "tensor") and callable(data.tensor):  # a pyrogen dataset
            data = data.tensor()
        return energy_log_likelihood(self.distribution(), self._prepare(data, "data"), **options)
