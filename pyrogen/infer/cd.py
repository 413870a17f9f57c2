r"""Contrastive divergence (CD-k) and persistent CD as a Pyro loss.

For an energy-based model :math:`p_\theta(v) = e^{-F_\theta(v)} / Z_\theta` the
log-likelihood gradient is a difference of two expectations,

.. math::

    \nabla_\theta \sum_{n=1}^N \log p_\theta(x_n)
    = -\sum_n \nabla_\theta F_\theta(x_n)
      + N\, \mathbb E_{v \sim p_\theta}[\nabla_\theta F_\theta(v)].

CD-k [1] replaces the model expectation by :math:`M` samples after :math:`k` block-Gibbs
sweeps started at the data; persistent CD [2] keeps :math:`M` chains alive across updates
and advances each by :math:`k` sweeps per update. The gradient estimator is the gradient of
the surrogate

.. math::

    \mathcal S(\theta) = \sum_n F_\theta(x_n) - \frac{N}{M} \sum_{m=1}^M F_\theta(\bar v_m),

with the samples :math:`\bar v_m` held fixed (detached), so that
:math:`\nabla \mathcal S = -(\text{log-likelihood gradient estimate})`. With exact samples from
:math:`p_\theta` it is unbiased. Its value is not a log-likelihood (that needs
:math:`\log Z`); :meth:`ContrastiveDivergence.loss` returns it as the training number.

For a deep Boltzmann machine the free energy of the data is intractable; the positive phase
uses the mean-field posterior :math:`q(h \mid x) = \prod \mathrm{Bernoulli}(\mu)` instead
(Salakhutdinov & Hinton 2009): :math:`F(x)` is replaced by :math:`E(x, \mu(x))` with
:math:`\mu` held fixed, and the samples' term by the joint energy :math:`E(\bar v, \bar h)`
of the persistent chains, whose gradient is that of :math:`F` in expectation.

Each observed site's distribution computes its own surrogate and advances its chains
through its public
:meth:`~pyrogen.distributions.EnergyBasedDistribution.contrastive_divergence`; this loss
only finds the sites, keeps the persistent chains and sums the terms. Binary RBMs do it the
fast way there: the data and the samples go through one matrix product, and with PCD the
hidden pre-activation of the chains computed for :math:`\mathcal S` starts the next update's
Gibbs sweep (as in [2] and scikit-learn), so a PCD-1 update costs three products.

**References**

[1] Training Products of Experts by Minimizing Contrastive Divergence. Geoffrey E. Hinton.
    2002.

[2] Training Restricted Boltzmann Machines using Approximations to the Likelihood Gradient.
    Tijmen Tieleman. 2008.
"""

from __future__ import annotations

import torch
from pyro.infer import ELBO

from pyrogen import _rng, distributed
from pyrogen.distributions.energy import EnergyBasedDistribution
from pyrogen.infer._weights import ParticleRecorder


def _rank_sizes(total: int, world_size: int) -> list[int]:
    """How many of ``total`` rows each rank holds (contiguous shares, as
    ``torch.tensor_split`` cuts them)."""
    return [len(c) for c in torch.arange(int(total)).tensor_split(int(world_size))]


class ContrastiveDivergence(ELBO):
    r"""CD-k / PCD-k loss for models whose observed sites are energy-based distributions.

    :param int k: Gibbs sweeps per update.
    :param bool persistent: keep the chains across updates (PCD) instead of restarting them
        at the data (CD).
    :param int num_chains: persistent chains (default: the first batch's size; they start at
        that batch). Ignored for CD, which runs one chain per example.
    :param int mean_field_iters: mean-field sweeps of the positive phase of models with
        hidden layers that do not sum out (deep Boltzmann machines).
    :param int seed: draw the Gibbs noise from a generator of its own seeded with ``seed``
        (its state is part of :meth:`state_dict`) instead of the global stream. Under
        several processes (:mod:`pyrogen.distributed`) it also makes the chains independent
        of the number of processes: each rank holds a contiguous share of the
        ``num_chains`` chains (for CD, its rows of the global batch), and every draw takes
        the rows of all ranks from the shared generator and keeps this rank's, so each chain
        gets the noise it would get in one process. Binary and Gaussian units draw this way;
        replicated-softmax words still come from the global stream. ``None``: the global
        stream, and under several processes ``num_chains`` chains per rank.

    The guide is not used (the hidden units are summed out, there are no latent sites).
    Chains are part of :meth:`state_dict` so that training resumes exactly.
    """

    def __init__(
        self,
        k: int = 1,
        persistent: bool = False,
        num_chains: int | None = None,
        mean_field_iters: int = 10,
        seed: int | None = None,
    ):
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if num_chains is not None and num_chains < 1:
            raise ValueError(f"num_chains must be positive, got {num_chains}")
        super().__init__(num_particles=1)
        self.k = int(k)
        self.persistent = bool(persistent)
        self.num_chains = num_chains
        self.mean_field_iters = int(mean_field_iters)
        self.chains: dict[str, tuple] = {}
        if seed is not None and (isinstance(seed, bool) or int(seed) != seed):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._generator: torch.Generator | None = None
        self._generator_state: tuple[str, torch.Tensor] | None = None
        self._shares: dict[str, tuple[int, int, int]] = {}  # site: (offset, rows, total)

    def __repr__(self) -> str:
        kind = "PCD" if self.persistent else "CD"
        return f"ContrastiveDivergence({kind}-{self.k})"

    # ---- state ---------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {"chains": {n: tuple(t.clone() for t in s) for n, s in self.chains.items()}}
        if self._generator is not None:
            state["noise"] = (self._generator.device.type, self._generator.get_state())
        elif self._generator_state is not None:
            state["noise"] = self._generator_state
        return state

    def load_state_dict(self, state: dict) -> None:
        self.chains = {n: tuple(s) for n, s in state["chains"].items()}
        self._shares.clear()
        self._generator, self._generator_state = None, state.get("noise")

    def reset(self) -> None:
        """Forget the persistent chains (the noise generator keeps its state)."""
        self.chains.clear()
        self._shares.clear()

    # ---- noise ---------------------------------------------------------------------

    def _noise_generator(self, device: torch.device) -> torch.Generator:
        gen = self._generator
        if gen is None or gen.device.type != device.type:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            saved = self._generator_state
            if saved is not None and saved[0] == device.type:
                gen.set_state(saved[1])
            self._generator, self._generator_state = gen, None
        return gen

    def _share(self, name: str, rows: int, persistent_total: int | None):
        """``(offset, rows, total)``: this rank's chain rows among all ranks' (cached for
        persistent chains, whose count does not change)."""
        world = distributed.world()
        if world.size == 1:
            return 0, rows, rows
        share = self._shares.get(name)
        if share is not None and share[1] == rows:
            return share
        if persistent_total is not None:
            sizes = _rank_sizes(persistent_total, world.size)
        else:
            sizes = [int(n) for n in world.all_gather(int(rows))]
        share = (sum(sizes[: world.rank]), rows, sum(sizes))
        if self.persistent:
            self._shares[name] = share
        return share

    # ---- the estimator ----------------------------------------------------------------

    def _sites(self, model, args, kwargs):
        with ParticleRecorder() as rec:
            model(*args, **kwargs)
        sites = [
            s
            for s in rec.sites.values()
            if s["is_observed"] and isinstance(s["fn"], EnergyBasedDistribution)
        ]
        if not sites:
            raise ValueError(
                "ContrastiveDivergence needs an observed sample site whose distribution is "
                "energy-based (e.g. pyro.sample('v', BernoulliRBM(...), obs=x))"
            )
        latent = [s["name"] for s in rec.sites.values() if not s["is_observed"]]
        if latent:
            raise ValueError(f"ContrastiveDivergence does not handle latent sites: {latent}")
        return sites

    def _negative_state(self, name, dist, x):
        """Where the site's negative phase starts: the data rows ``x`` (CD), or the
        persistent chains, started at the first batch's rows (or at ``dist.init_chains``
        when more chains than rows are asked for)."""
        if not self.persistent:
            return (x.detach(),)
        state = self.chains.get(name)
        if state is None:
            m = self._fresh_chains(x)
            state = (x[:m].detach().clone(),) if m <= x.shape[0] else dist.init_chains(m)
        return state

    def _fresh_chains(self, x) -> int:
        """How many persistent chains this rank starts: ``num_chains`` (with a ``seed``, this
        rank's share of them), or the batch's rows."""
        if not self.num_chains:
            return x.shape[0]
        if self.seed is None:
            return self.num_chains
        world = distributed.world()
        return _rank_sizes(self.num_chains, world.size)[world.rank]

    def _site_surrogate(self, site, accumulate: bool = False):
        """The site's surrogate (times its scale) and whether its gradient has already been
        added to the parameters' ``.grad`` (with ``accumulate=True``, by distributions that
        can write it directly instead of through an autograd graph); advances the chains."""
        dist, x, name = site["fn"], site["value"], site["name"]
        x = x.reshape(-1, x.shape[-1])
        noise = None
        if self.seed is not None:
            state = self.chains.get(name) if self.persistent else None
            if state is not None:
                rows = state[0].shape[0]
            else:
                rows = self._fresh_chains(x) if self.persistent else x.shape[0]
            total = self.num_chains if self.persistent and self.num_chains else None
            share = self._share(name, rows, total)
            noise = _rng.RowNoise(self._noise_generator(x.device), *share)
        with _rng.row_noise(noise):
            surrogate, chains, done = dist.contrastive_divergence(
                x,
                self._negative_state(name, dist, x),
                self.k,
                accumulate=accumulate,
                scale=site["scale"],
                mean_field_iters=self.mean_field_iters,
            )
        if self.persistent:
            self.chains[name] = chains
        return surrogate, done

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("ContrastiveDivergence does not produce Pyro traces")

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The surrogate :math:`\\mathcal S` (see module docs), summed over sites; its
        gradient is the CD / PCD estimate of minus the log-likelihood gradient."""
        terms = [self._site_surrogate(s)[0] for s in self._sites(model, args, kwargs)]
        return terms[0] if len(terms) == 1 else torch.stack(terms).sum()

    def value_and_grads(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The surrogate's value as a detached tensor (no host sync; pyrogen's trainer calls
        this), with its gradient added to the parameters' ``.grad``. Distributions that can
        write it directly do (binary RBMs whose parameters are plain leaf tensors: no autograd
        graph, see :meth:`~pyrogen.distributions.BernoulliRBM.free_energy_gap_accumulate`);
        otherwise it is ``differentiable_loss(...).backward()``."""
        values, graph = [], []
        for site in self._sites(model, args, kwargs):
            value, done = self._site_surrogate(site, accumulate=True)
            (values if done else graph).append(value)
        if graph:
            loss = graph[0] if len(graph) == 1 else torch.stack(graph).sum()
            if loss.requires_grad:
                loss.backward()
            values.append(loss.detach())
        return values[0] if len(values) == 1 else torch.stack(values).sum()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """:meth:`value_and_grads` as a float (what :class:`pyro.infer.SVI` calls)."""
        return float(self.value_and_grads(model, guide, *args, **kwargs))

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """The surrogate's value (free energy of the data minus that of the samples; not a
        log-likelihood, which needs :math:`\\log Z`). Advances persistent chains."""
        return float(self.differentiable_loss(model, guide, *args, **kwargs))
