r"""Adversarial training of a generator (GAN) as a learner of the training engine.

A discriminator :math:`D(x) = \mathrm{sigmoid}(\ell(x))` (``discriminator(x)`` returns the
logit :math:`\ell`) and a generator :math:`x = G(z)`, :math:`z \sim p(z)`, play the
minimax game of Goodfellow et al. [1],

.. math::

    \min_G \max_D\; V(D, G) = \mathbb E_{x \sim p_\text{data}} \log D(x)
        + \mathbb E_{z \sim p(z)} \log\big(1 - D(G(z))\big).

For a fixed generator the best discriminator is

.. math::

    D^\star(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_G(x)},

and against it the generator minimises :math:`2\,\mathrm{JS}(p_\text{data} \,\|\, p_G) -
\log 4`. The discriminator minimises the cross-entropy

.. math::

    L_D = \mathbb E_{x}\, \mathrm{softplus}(-\ell(x))
        + \mathbb E_{z}\, \mathrm{softplus}(\ell(G(z))),

computed from logits (never :math:`\log \mathrm{sigmoid}`). Two generator losses:

* **minimax** (the game itself): :math:`L_G = \mathbb E_z \log(1 - D(G(z))) =
  -\mathbb E_z\, \mathrm{softplus}(\ell(G(z)))`, with
  :math:`\partial L_G / \partial \ell = -D(G(z))`: it saturates (vanishes) when the
  discriminator confidently rejects the samples, early in training;
* **non-saturating** (the heuristic of [1]): :math:`L_G = -\mathbb E_z \log D(G(z)) =
  \mathbb E_z\, \mathrm{softplus}(-\ell(G(z)))`, with
  :math:`\partial L_G / \partial \ell = -(1 - D(G(z)))`, close to :math:`-1` exactly there.

Both derivatives are negative: a gradient step on :math:`L_G` moves the samples towards
where the discriminator's logit rises, i.e. where it believes data lie.

As in Algorithm 1 of [1], each :meth:`Adversarial.step` updates the discriminator on the
engine's batch of data and as many generated examples; every ``discriminator_steps``-th
step (:math:`k`) then also updates the generator, against the updated discriminator, on
the same generated batch (one generator pass per step, as in common hand-written loops;
Algorithm 1 draws fresh noise for it). An optional R1 penalty [2] adds
:math:`\frac\gamma2 \mathbb E_x \lVert \nabla_x \ell(x) \rVert^2` on the data to
:math:`L_D`.

**Wasserstein GAN with gradient penalty** (``objective="wasserstein"``). The Wasserstein-1
distance has the dual form (Kantorovich-Rubinstein) used by [3],

.. math::

    W(p_\text{data}, p_G) = \sup_{\lVert f \rVert_L \le 1}
        \mathbb E_{x \sim p_\text{data}} f(x) - \mathbb E_{z} f(G(z)),

so the discriminator becomes a *critic* :math:`f = \ell` (its output is not squashed)
that minimises :math:`L_D = \mathbb E_z f(G(z)) - \mathbb E_x f(x)`, and the generator
minimises :math:`L_G = -\mathbb E_z f(G(z))`. The optimal critic has gradient norm 1
almost everywhere on the lines between coupled points of the two distributions, so instead
of clipping weights ([3]) Gulrajani et al. [4] penalise the deviation of the gradient norm
from 1 at random interpolates,

.. math::

    \lambda\, \mathbb E_{\hat x} \big(\lVert \nabla_{\hat x} f(\hat x) \rVert_2 - 1\big)^2,
    \qquad \hat x = \epsilon x + (1 - \epsilon) \tilde x,\quad
    \epsilon \sim U[0, 1],

with :math:`x` a data example, :math:`\tilde x = G(z)` a generated one, one
:math:`\epsilon` per pair, and :math:`\lambda = 10` and :math:`k = 5` critic steps per
generator step in [4] (``gp_weight=10.0, discriminator_steps=5``). The penalty
(:func:`gradient_penalty`) is added to :math:`L_D` by double backpropagation; it may also be
used with the cross-entropy game (``gp_weight`` with ``objective="gan"``). [4] uses no batch
norm in the critic (the penalty is per example); layer norm or none.

**References**

[1] Generative Adversarial Nets. Ian Goodfellow, Jean Pouget-Abadie, Mehdi Mirza, Bing Xu,
    David Warde-Farley, Sherjil Ozair, Aaron Courville, Yoshua Bengio. NIPS 2014.

[2] Which Training Methods for GANs do actually Converge? Lars Mescheder, Andreas Geiger,
    Sebastian Nowozin. ICML 2018.

[3] Wasserstein Generative Adversarial Networks. Martin Arjovsky, Soumith Chintala, Léon
    Bottou. ICML 2017.

[4] Improved Training of Wasserstein GANs. Ishaan Gulrajani, Faruk Ahmed, Martin Arjovsky,
    Vincent Dumoulin, Aaron Courville. NIPS 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "GENERATOR_LOSSES",
    "OBJECTIVES",
    "Adversarial",
    "discriminator_loss",
    "gradient_penalty",
    "minimax_generator_loss",
    "non_saturating_generator_loss",
    "r1_penalty",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r""":math:`L_D`: the mean of :math:`\mathrm{softplus}(-\ell)` on data plus the mean of
    :math:`\mathrm{softplus}(\ell)` on generated examples (module docs)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def minimax_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathbb E \log(1 - D(G(z))) = -\mathbb E\,\mathrm{softplus}(\ell)`; its
    derivative in each logit is :math:`-D(G(z)) / M` (saturating)."""
    return -F.softplus(fake_logits).mean()


def non_saturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    r""":math:`-\mathbb E \log D(G(z)) = \mathbb E\,\mathrm{softplus}(-\ell)`; its derivative
    in each logit is :math:`-(1 - D(G(z))) / M`."""
    return F.softplus(-fake_logits).mean()


def wasserstein_critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The critic's loss of the Wasserstein GAN [3, 4]: :math:`\mathbb E_z f(G(z)) -
    \mathbb E_x f(x)`, the negated estimate of the dual Wasserstein distance."""
    return fake_logits.mean() - real_logits.mean()


def wasserstein_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The generator's loss of the Wasserstein GAN: :math:`-\mathbb E_z f(G(z))`; its
    derivative in each critic value is :math:`-1/M` (it never saturates)."""
    return -fake_logits.mean()


#: the generator losses by name
GENERATOR_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "minimax": minimax_generator_loss,
    "non_saturating": non_saturating_generator_loss,
    "wasserstein": wasserstein_generator_loss,
}

#: the objectives: the discriminator's (critic's) loss, the generator losses that belong
#: to it (the first is the default)
OBJECTIVES: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple]] = {
    "gan": (discriminator_loss, ("non_saturating", "minimax")),
    "wasserstein": (wasserstein_critic_loss, ("wasserstein",)),
}


def r1_penalty(discriminator: Callable, real: torch.Tensor) -> torch.Tensor:
    r"""The R1 penalty [2] without its weight: :math:`\frac12 \mathbb E_x \lVert \nabla_x
    \ell(x) \rVert^2` on the data ``real``, differentiable in the discriminator's
    parameters (double backpropagation)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return 0.5 * grad.reshape(grad.shape[0], -1).pow(2).sum(-1).mean()


def gradient_penalty(
    discriminator: Callable, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    r"""The gradient penalty of WGAN-GP [4] without its weight :math:`\lambda`:
    :math:`\frac1M \sum_i (\lVert \nabla_{\hat x} f(\hat x_i) \rVert_2 - 1)^2` at
    :math:`\hat x_i = \epsilon_i x_i + (1 - \epsilon_i) \tilde x_i`, one
    :math:`\epsilon_i \sim U[0, 1]` per pair (torch's global RNG), differentiable in the
    critic's parameters (double backpropagation) but not in ``real`` or ``fake``.

    :param discriminator: ``x -> (M,)`` critic values.
    :param torch.Tensor real: ``(M, ...)`` data examples.
    :param torch.Tensor fake: ``(M, ...)`` generated examples, the same shape as ``real``.
    """
    if fake.shape != real.shape:
        raise ValueError(
            f"fake: expected the shape of real {tuple(real.shape)} to pair the examples, "
            f"got {tuple(fake.shape)}"
        )
    real, fake = real.detach(), fake.detach()
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, dtype=real.dtype, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    norm = grad.reshape(grad.shape[0], -1).pow(2).sum(-1).sqrt()
    return (norm - 1).pow(2).mean()


@contextmanager
def _frozen(module: torch.nn.Module):
    """No parameter gradients for ``module`` meanwhile (gradients still flow through it)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class Adversarial:
    r"""Alternating GAN updates (module docs) as a learner of :func:`pyrogen.train.train`.

    :param torch.nn.Module generator: owns the generator's parameters; generated batches
        come from ``generator.model(None, num_samples=M)`` (pyrogen's
        :class:`~pyrogen.models.Generator`) unless ``sample`` is given.
    :param torch.nn.Module discriminator: ``x -> (B,)`` logits of :math:`D(x)`.
    :param str objective: ``"gan"`` (default: the cross-entropy game of [1], ``discriminator``
        returns logits) or ``"wasserstein"`` (WGAN [3, 4], ``discriminator`` is the critic
        :math:`f`; pair it with ``gp_weight``).
    :param generator_loss: for ``"gan"``: ``"non_saturating"`` (default) or ``"minimax"``;
        for ``"wasserstein"``: ``"wasserstein"`` (default); or a function
        ``fake_logits -> loss``.
    :param int discriminator_steps: :math:`k`, discriminator updates per generator update
        (one per engine step; the generator is updated on every :math:`k`-th step).
    :param float lr: learning rate of the default optimizers, Adam with
        ``betas=(0.5, 0.999)`` as in DCGAN.
    :param generator_optimizer: a ``torch.optim`` optimizer over the generator's
        parameters (default Adam).
    :param discriminator_optimizer: likewise for the discriminator.
    :param float r1_weight: :math:`\gamma` of the R1 penalty (0: none).
    :param float gp_weight: :math:`\lambda` of the WGAN-GP gradient penalty at interpolates
        (0: none; 10 in [4]). The generated batch is paired with the data batch; when their
        sizes differ, the first :math:`\min(N, M)` of each.
    :param int num_samples: generated examples per update (default: the batch size).
    :param sample: ``M -> (M, ...)`` generated batch, instead of ``generator.model``.

    :meth:`step` returns ``d_loss`` (:math:`L_D` before the update, without penalties),
    ``g_loss`` (the generator loss on this step's generated batch: after the
    discriminator's update on steps that update the generator, before it on the others),
    ``d_real`` and ``d_fake`` (mean :math:`D` on data and on generated examples; for
    ``"wasserstein"`` the mean critic values, whose difference :math:`-L_D` estimates the
    Wasserstein distance), and ``gradient_penalty`` when ``gp_weight > 0``; the engine's NaN
    guard watches every one of them. :meth:`state_dict` holds both networks, both optimizers and
    the step counter, so a resumed run continues exactly.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        *,
        objective: str = "gan",
        generator_loss: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        discriminator_steps: int = 1,
        lr: float = 2e-4,
        generator_optimizer: torch.optim.Optimizer | None = None,
        discriminator_optimizer: torch.optim.Optimizer | None = None,
        r1_weight: float = 0.0,
        gp_weight: float = 0.0,
        num_samples: int | None = None,
        sample: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
        critic_loss, allowed = OBJECTIVES[objective]
        if generator_loss is None:
            generator_loss = allowed[0]
        if isinstance(generator_loss, str):
            if generator_loss not in allowed:
                raise ValueError(
                    f"generator_loss must be one of {sorted(allowed)} or a function for "
                    f"objective={objective!r}, got {generator_loss!r}"
                )
            generator_loss = GENERATOR_LOSSES[generator_loss]
        elif not callable(generator_loss):
            raise TypeError(f"generator_loss must be a name or a function, got {generator_loss!r}")
        if int(discriminator_steps) < 1:
            raise ValueError(f"discriminator_steps must be >= 1, got {discriminator_steps}")
        if not r1_weight >= 0:
            raise ValueError(f"r1_weight must be >= 0, got {r1_weight}")
        if not gp_weight >= 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        if num_samples is not None and int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if sample is None and not callable(getattr(generator, "model", None)):
            raise TypeError(
                "generator has no model(None, num_samples=M) method; pass sample=M -> batch"
            )
        self.generator, self.discriminator = generator, discriminator
        self.generator_loss = generator_loss
        self.discriminator_steps = int(discriminator_steps)
        self.objective = objective
        self.critic_loss = critic_loss
        self.r1_weight = float(r1_weight)
        self.gp_weight = float(gp_weight)
        self.num_samples = None if num_samples is None else int(num_samples)
        self._sample = sample
        self._factories: dict[str, Callable] = {}

        def adam(params):
            return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))

        if generator_optimizer is None:
            self._factories["g"] = adam
            generator_optimizer = adam(generator.parameters())
        if discriminator_optimizer is None:
            self._factories["d"] = adam
            discriminator_optimizer = adam(discriminator.parameters())
        self.g_optimizer, self.d_optimizer = generator_optimizer, discriminator_optimizer
        #: engine steps taken (the generator is updated when it reaches a multiple of k)
        self.steps = 0

    # ---- pieces ---------------------------------------------------------------------

    def generate(self, num: int) -> torch.Tensor:
        """A generated batch of ``num`` examples (differentiable in the generator)."""
        if self._sample is not None:
            return self._sample(num)
        return self.generator.model(None, num_samples=num)

    def _num(self, batch: torch.Tensor) -> int:
        return self.num_samples if self.num_samples is not None else batch.shape[0]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Both optimizers (generator first), e.g. for gradient synchronisation."""
        return [self.g_optimizer, self.d_optimizer]

    # ---- the learner protocol -------------------------------------------------------

    def step(self, batch: torch.Tensor) -> dict[str, Any]:
        """One discriminator update on ``batch``, and a generator update on every
        :math:`k`-th call (see class docs for what is returned)."""
        self.generator.train()
        self.discriminator.train()
        num = self._num(batch)
        update_generator = (self.steps + 1) % self.discriminator_steps == 0
        # one generated batch per step: the discriminator sees it detached, and the
        # generator (on its steps) is updated on the same batch, as hand-written GAN loops do
        with torch.set_grad_enabled(update_generator):
            fake = self.generate(num)
        self.d_optimizer.zero_grad(set_to_none=True)
        real_logits = self.discriminator(batch)
        fake_logits = self.discriminator(fake.detach())
        d_loss = self.critic_loss(real_logits, fake_logits)
        total = d_loss
        if self.r1_weight > 0:
            total = total + self.r1_weight * r1_penalty(self.discriminator, batch)
        if self.gp_weight > 0:
            m = min(batch.shape[0], fake.shape[0])
            gp = gradient_penalty(self.discriminator, batch[:m], fake[:m])
            total = total + self.gp_weight * gp
        total.backward()
        self.d_optimizer.step()
        out = {"d_loss": d_loss.detach(), **self._means(real_logits, fake_logits)}
        if self.gp_weight > 0:
            out["gradient_penalty"] = gp.detach()
        self.steps += 1
        if update_generator:
            self.g_optimizer.zero_grad(set_to_none=True)
            with _frozen(self.discriminator):
                g_loss = self.generator_loss(self.discriminator(fake))
            g_loss.backward()
            self.g_optimizer.step()
            out["g_loss"] = g_loss.detach()
        else:
            with torch.no_grad():
                out["g_loss"] = self.generator_loss(fake_logits.detach())
        return out

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor) -> dict[str, Any]:
        """``d_loss``, ``g_loss``, ``d_real`` and ``d_fake`` on ``batch`` and as many
        generated examples (networks in eval mode, no update)."""
        g_mode, d_mode = self.generator.training, self.discriminator.training
        self.generator.eval()
        self.discriminator.eval()
        try:
            real_logits = self.discriminator(batch)
            fake_logits = self.discriminator(self.generate(self._num(batch)))
        finally:
            self.generator.train(g_mode)
            self.discriminator.train(d_mode)
        return {
            "d_loss": self.critic_loss(real_logits, fake_logits),
            "g_loss": self.generator_loss(fake_logits),
            **self._means(real_logits, fake_logits),
        }

    def _means(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, Any]:
        """Mean :math:`D` (mean critic value for ``"wasserstein"``) on data and generated
        examples, detached."""
        squash = torch.sigmoid if self.objective == "gan" else (lambda t: t)
        return {
            "d_real": squash(real_logits.detach()).mean(),
            "d_fake": squash(fake_logits.detach()).mean(),
        }

    def to(self, device: torch.device) -> Adversarial:
        for key, module, attr in (
            ("g", self.generator, "g_optimizer"),
            ("d", self.discriminator, "d_optimizer"),
        ):
            before = next(module.parameters(), None)
            module.to(device)
            after = next(module.parameters(), None)
            if before is not None and after is not before and key in self._factories:
                setattr(self, attr, self._factories[key](module.parameters()))
        return self

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of both optimizers (used by ``lr_schedule``)."""
        for opt in self.optimizers():
            for group in opt.param_groups:
                group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.steps = int(state["steps"])
