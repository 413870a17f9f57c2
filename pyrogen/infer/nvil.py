r"""NVIL: neural variational inference and learning with learned baselines and local signals.

For a model :math:`p_\theta(x, h)` and a guide :math:`q_\phi(h \mid x)` with discrete
(non-reparameterizable) sites, the ELBO

.. math::

    \mathcal L(x) = \mathbb E_{q_\phi(h \mid x)}\big[\ell(x, h)\big], \qquad
    \ell(x, h) = \log p_\theta(x, h) - \log q_\phi(h \mid x),

has the score-function gradient
:math:`\nabla_\phi \mathcal L = \mathbb E_q[\ell\, \nabla_\phi \log q_\phi(h \mid x)]`,
unbiased but noisy. NVIL [1] keeps it unbiased and reduces its variance in three ways.

*Local learning signals.* Write the guide's sites in sampling order,
:math:`h_1, \dots, h_L` with :math:`h_0 = x` (for a sigmoid belief net
:math:`q(h_i \mid h_{i-1})`). A term of :math:`\ell` that depends on no value downstream
of :math:`h_i` in the guide (:math:`h_i` and its descendants :math:`D_i`) has zero
covariance with :math:`\nabla_\phi \log q(h_i \mid \mathrm{pa}_i)` given the parents, so it
can be dropped from the signal of site :math:`i`:

.. math::

    \ell_i(x, h) = \sum_{m:\ (\{m\} \cup \mathrm{pa}_p(m)) \cap D_i \ne \emptyset}
        \log p_\theta(m \mid \mathrm{pa}_p(m))
        \;-\; \sum_{j \in D_i} \log q_\phi(h_j \mid \mathrm{pa}_q(h_j)).

For the layered net, :math:`\ell_i = \log p(h_{i-1}, \dots, h_L) - \log q(h_i, \dots,
h_L \mid h_{i-1})`, i.e. :math:`\log p(h_{i-1} \mid h_i) + \dots + \log p(h_L) -
\sum_{j \ge i} \log q(h_j \mid h_{j-1})` (with :math:`h_0 = x`), as in [1, sec. 3.3]. The
dependency structure of model and guide is read once per step signature with Pyro's
:func:`pyro.infer.inspect.get_dependencies` (model sites that the guide does not propose
pass the dependency on); if it cannot be read, every term is kept (unbiased, noisier).

*Input-dependent baseline.* A network :math:`C_\psi(x)` (``baseline_net``; one output per
example, or one per discrete guide site in the guide's order) is subtracted from each
signal and trained to minimise :math:`\frac12 (\ell_i - c_i - C_{\psi,i}(x))^2`.

*Centring and variance normalisation.* Running averages with decay :math:`\alpha`,
:math:`c_i \leftarrow \alpha c_i + (1 - \alpha)\,\mathrm{mean}(\ell_i - C_{\psi,i}(x))` and
:math:`v_i \leftarrow \alpha v_i + (1 - \alpha)\,\mathrm{var}(\ell_i - C_{\psi,i}(x))`
over the batch, and the signal actually used is

.. math::

    A_i = \frac{\ell_i - C_{\psi,i}(x) - c_i}{\max(1, \sqrt{v_i})}, \qquad
    \nabla_\phi \mathcal L \approx \sum_i A_i \nabla_\phi \log q_\phi(h_i \mid
    \mathrm{pa}_i) + \nabla_\phi \ell .

The averages are updated *after* the step that uses them (the paper updates them first);
so :math:`c_i` does not depend on the current samples and the centred estimator stays
exactly unbiased. Dividing by :math:`\max(1, \sqrt{v_i})` rescales the guide's
score-function gradient (an adaptive step size, as in [1]); pass ``normalize=False`` for
an estimator whose mean is exactly :math:`\nabla \mathcal L`. The statistics are updated
only when gradients are enabled (not in a ``torch.no_grad()`` evaluation), and saved by
:meth:`NVIL.state_dict`.

Reparameterizable guide sites get pathwise gradients (through :math:`\ell`) and no score
term; the model's parameters get :math:`\nabla_\theta \log p_\theta(x, h)`.

The loss number is :math:`-\sum_n \mathrm{scale}_n \ell(x_n, h_n)`, the negative
single-sample ELBO in nats summed over the batch (averaged over particles), the
subsampling scale applied per example.

**References**

[1] Neural Variational Inference and Learning in Belief Networks. Andriy Mnih, Karol
    Gregor. 2014.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.util import warn_if_nan

from pyrogen._rng import preserved_rng
from pyrogen.infer._weights import (
    StructureChecks,
    guess_max_plate_nesting,
    plate_nesting_arg,
    run_particles,
)
from pyrogen.infer.wake_sleep import check_num_particles, scaled_sum, site_terms


def _dependencies(fn, args, kwargs) -> dict[str, set[str]] | None:
    """Direct stochastic parents of every sample site of ``fn``, or None if unknown."""
    from pyro.infer.inspect import get_dependencies

    try:
        with poutine.block(), preserved_rng(), torch.no_grad():
            deps = get_dependencies(fn, args, kwargs)["prior_dependencies"]
    except Exception:  # noqa: BLE001 -- any failure: keep every term (still unbiased)
        return None
    return {name: set(parents) - {name} for name, parents in deps.items()}


class NVIL(ELBO):
    r"""Score-function ELBO gradient with NVIL's variance reduction (module docs).

    Drop-in for Pyro's ELBOs under ``SVI``; ``baseline_net`` is registered with
    ``pyro.module`` inside the loss, so ``SVI``'s optimizer trains it. With
    :class:`pyrogen.train.SVILearner`, whose optimizer covers ``module.parameters()``,
    make the baseline a submodule of the model's module (or pass an optimizer over both).

    :param torch.nn.Module baseline_net: maps the model's observed values (one positional
        argument per observed site, in the model's order; for a Helmholtz machine the data
        batch) to a baseline of shape ``plate_shape`` or ``plate_shape + (1,)`` (one per
        example, shared by all sites) or ``plate_shape + (S,)`` (one per discrete guide site,
        in the guide's order), or a dict ``{site name: plate_shape tensor}``. ``None``: no
        input-dependent baseline.
    :param float decay: :math:`\alpha` of the running mean and variance (0.8 in [1]).
    :param bool center: subtract the running mean :math:`c_i`.
    :param bool normalize: divide by :math:`\max(1, \sqrt{v_i})`.
    :param bool local_signals: per-site local learning signals (else the whole
        :math:`\ell` for every site).
    :param int num_particles: independent samples per example (the estimates averaged).
    :param str baseline_name: the name under which ``baseline_net`` is registered.
    :param int max_plate_nesting: plate dims of the model (not counting the particle
        plate); guessed from one run of model and guide when ``None``.
    """

    def __init__(
        self,
        baseline_net: torch.nn.Module | None = None,
        *,
        decay: float = 0.8,
        center: bool = True,
        normalize: bool = True,
        local_signals: bool = True,
        num_particles: int = 1,
        baseline_name: str = "nvil_baseline",
        max_plate_nesting: int | None = None,
    ) -> None:
        if baseline_net is not None and not isinstance(baseline_net, torch.nn.Module):
            raise TypeError(
                f"baseline_net must be a torch.nn.Module or None, got {type(baseline_net)}"
            )
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        k = check_num_particles(num_particles, 1)
        super().__init__(num_particles=k, vectorize_particles=True)
        self.baseline_net = baseline_net
        self.decay = float(decay)
        self.center = bool(center)
        self.normalize = bool(normalize)
        self.local_signals = bool(local_signals)
        self.baseline_name = baseline_name
        self.model_plate_nesting = plate_nesting_arg(max_plate_nesting)
        self.structure_checks = StructureChecks()
        #: site name -> tensor ``[c, v]`` (running mean and variance of its signal)
        self.stats: dict[str, torch.Tensor] = {}
        self._structure: dict[tuple, dict | None] = {}

    def __repr__(self) -> str:
        return f"NVIL(decay={self.decay}, num_particles={self.num_particles})"

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """The running statistics (the baseline network's weights live in its module)."""
        return {"stats": {k: v.detach().clone() for k, v in self.stats.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.stats = {k: v.detach().clone() for k, v in state["stats"].items()}

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("NVIL does not produce Pyro traces")

    # ------------------------------------------------------------------ internals

    def _kept_terms(self, model, guide, args, kwargs, model_sites, guide_sites, names):
        """For each score site, the model and guide terms of its local signal (or None:
        all terms)."""
        key = (tuple(model_sites), tuple(guide_sites))
        if key in self._structure:
            return self._structure[key]
        result = None
        model_deps = _dependencies(model, args, kwargs)
        guide_deps = _dependencies(guide, args, kwargs)
        if model_deps is not None and guide_deps is not None:
            guide_order = [n for n in guide_sites if not guide_sites[n]["is_observed"]]
            result = {}
            for name in names:
                down = {name}
                for other in guide_order:  # descendants in the guide, in sampling order
                    if guide_deps.get(other, set()) & down:
                        down.add(other)
                for m, site in model_sites.items():  # through model-only latent sites
                    if not site["is_observed"] and m not in guide_sites:
                        if model_deps.get(m, set()) & down:
                            down.add(m)
                p_keep = [m for m in model_sites if ({m} | model_deps.get(m, set())) & down]
                q_keep = [n for n in guide_order if n in down]
                result[name] = (p_keep, q_keep)
        self._structure[key] = result
        return result

    def _baselines(self, model_sites, names, plate_shape):
        """``{site: baseline}`` of shape ``plate_shape`` from ``baseline_net``."""
        net = self.baseline_net
        pyro.module(self.baseline_name, net)
        inputs = [s["value"] for s in model_sites.values() if s["is_observed"]]
        out = net(*inputs)
        if isinstance(out, dict):
            missing = [n for n in names if n not in out]
            if missing:
                raise ValueError(f"baseline_net's dict output lacks the sites {missing}")
            return {n: out[n].reshape(plate_shape) for n in names}
        shape = tuple(out.shape)
        if shape == tuple(plate_shape) or shape == tuple(plate_shape) + (1,):
            b = out.reshape(plate_shape)
            return dict.fromkeys(names, b)
        if shape == tuple(plate_shape) + (len(names),):
            return {n: out[..., i] for i, n in enumerate(names)}
        raise ValueError(
            f"baseline_net output has shape {shape}; expected {tuple(plate_shape)}, "
            f"{tuple(plate_shape) + (1,)} or {tuple(plate_shape) + (len(names),)} "
            f"(one per discrete guide site: {names})"
        )

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """A scalar whose value is the negative ELBO estimate and whose gradient is NVIL's
        estimate of :math:`-\\nabla \\mathcal L` (plus the baseline's regression gradient
        for ``baseline_net``)."""
        if self.model_plate_nesting is None:
            self.model_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        nesting = self.model_plate_nesting
        model_sites, guide_sites = run_particles(
            model, guide, args, kwargs, self.num_particles, nesting
        )
        terms = site_terms(model_sites, guide_sites, nesting, self.structure_checks)
        lw = terms.weights
        elbo = lw.log_p - lw.log_q  # (K,) + plate_shape, with the pathwise graph
        names = [
            n
            for n, s in guide_sites.items()
            if n in terms.guide and not getattr(s["fn"], "has_rsample", False)
        ]
        surrogate = elbo
        baseline_loss = None
        if names and any(terms.guide[n].requires_grad for n in names):
            kept = None
            if self.local_signals:
                kept = self._kept_terms(model, guide, args, kwargs, model_sites, guide_sites, names)
            plate_shape = elbo.shape[1:]
            baselines = (
                self._baselines(model_sites, names, plate_shape)
                if self.baseline_net is not None
                else None
            )
            update = torch.is_grad_enabled()
            with torch.no_grad():
                full = elbo.detach()
            for name in names:
                with torch.no_grad():
                    if kept is None:
                        signal = full
                    else:
                        p_keep, q_keep = kept[name]
                        signal = sum(terms.model[m] for m in p_keep if m in terms.model) - sum(
                            terms.guide[n] for n in q_keep
                        )
                        signal = torch.as_tensor(signal, dtype=full.dtype, device=full.device)
                        signal = torch.broadcast_to(signal, full.shape)
                    centred = signal
                    if baselines is not None:
                        centred = signal - baselines[name].detach()
                    stats = self.stats.get(name)
                    a = centred
                    if stats is not None:
                        if self.center:
                            a = a - stats[0]
                        if self.normalize:
                            a = a / stats[1].sqrt().clamp(min=1.0)
                if baselines is not None:
                    target = signal - (stats[0] if stats is not None and self.center else 0.0)
                    err = 0.5 * (target - baselines[name]).pow(2).mean(0).sum()
                    baseline_loss = err if baseline_loss is None else baseline_loss + err
                surrogate = surrogate + a * terms.guide[name]
                if update:
                    with torch.no_grad():
                        c_b = centred.mean()
                        v_b = centred.var(unbiased=False)
                        new = torch.stack([c_b, v_b])
                        if stats is not None:
                            new = self.decay * stats + (1 - self.decay) * new
                        self.stats[name] = new
        surrogate = scaled_sum(surrogate.mean(0), lw.scale)
        value = scaled_sum(elbo.detach().mean(0), lw.scale)
        loss = -(surrogate - surrogate.detach() + value)
        if baseline_loss is not None:
            loss = loss + (baseline_loss - baseline_loss.detach())
        return loss

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """:returns: the negative single-sample ELBO estimate, summed over the batch."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs).item()
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate NVIL's gradient estimate. :returns: the loss as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        loss = loss.item()
        warn_if_nan(loss, "loss")
        return loss
