"""The adversarial learner: the optimal discriminator, the generator losses' gradients,
exact resume through the engine, the NaN guard on both losses, the R1 penalty, the
Wasserstein objective and the WGAN-GP gradient penalty."""

import math

import pytest
import torch
from torch import nn

from pyrogen.infer.adversarial import (
    Adversarial,
    discriminator_loss,
    gradient_penalty,
    minimax_generator_loss,
    non_saturating_generator_loss,
    r1_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from pyrogen.models import Generator, MLPDiscriminator
from pyrogen.train import TrainingDiverged, load_checkpoint, train


class Shift(nn.Module):
    """x = loc + scale * z, z ~ N(0, 1): a one-dimensional generator."""

    def __init__(self, loc=0.0, scale=1.0):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([float(loc)]))
        self.scale = float(scale)

    def model(self, x=None, num_samples=None):
        return self.loc + self.scale * torch.randn(num_samples, 1)


def _normal_pdf(x, loc, scale):
    return torch.exp(-0.5 * ((x - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))


def test_discriminator_approaches_the_optimal_one():
    # Data N(1, 0.5^2), a fixed generator N(-1, 1) (k larger than the run: no generator
    # update). After 400 Adam steps on batches of 512 (learning rate 1e-2, then 3e-3 and
    # 1e-3 for the last half and quarter) the discriminator is within 0.04 of
    # D* = p_data / (p_data + p_model) on [-1.5, 2], where both have mass (seeded; 0.012 to
    # 0.02 over seeds 0-2; with a constant rate the error stays near 0.06 to 0.08).
    torch.manual_seed(0)
    gen = Shift(-1.0)
    disc = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh())
    disc.append(nn.Linear(32, 1)).append(nn.Flatten(0))
    learner = Adversarial(
        gen,
        disc,
        discriminator_steps=10**9,
        discriminator_optimizer=torch.optim.Adam(disc.parameters(), lr=1e-2),
    )
    loc_before = gen.loc.clone()
    for i in range(400):
        if i in (200, 300):
            learner.set_lr({200: 3e-3, 300: 1e-3}[i])
        learner.step(1 + 0.5 * torch.randn(512, 1))
    assert torch.equal(gen.loc, loc_before) and learner.steps == 400
    grid = torch.linspace(-1.5, 2, 36).unsqueeze(1)
    p_data, p_model = _normal_pdf(grid, 1, 0.5), _normal_pdf(grid, -1, 1)
    optimal = (p_data / (p_data + p_model)).squeeze(1)
    with torch.no_grad():
        learned = torch.sigmoid(disc(grid))
    assert (learned - optimal).abs().max() < 0.04, (learned - optimal).abs().max()


def test_generator_loss_gradients_have_the_documented_sign():
    # D's logit l(x) = 3 (x - 1) says "data" for large x; the generator N(-3, 1) sits where D
    # rejects its samples confidently. dL/dl is -D for minimax and -(1 - D) for the
    # non-saturating loss (per sample, over M): both negative, so a descent step moves the
    # generator up; minimax saturates (d/dloc = -0.005), the non-saturating one does not
    # (-2.99).
    torch.manual_seed(0)
    z = torch.randn(100, 1)
    for loss, expected_dl in (
        (minimax_generator_loss, lambda l: -torch.sigmoid(l)),
        (non_saturating_generator_loss, lambda l: -torch.sigmoid(-l)),
    ):
        loc = torch.tensor([-3.0], requires_grad=True)
        logits = (3 * (loc + z - 1)).squeeze(1)
        (grad,) = torch.autograd.grad(loss(logits), loc)
        analytic = (expected_dl(logits.detach()) * 3).mean()
        torch.testing.assert_close(grad[0], analytic)
        assert grad.item() < 0
    (g_mm,) = torch.autograd.grad(minimax_generator_loss(3 * (loc + z - 1).squeeze(1)), loc)
    assert abs(g_mm.item()) < 0.01 and abs(grad.item()) > 2.9

    # the same through the learner: one SGD generator step moves loc up with either loss
    for kind in ("minimax", "non_saturating"):
        gen = Shift(-3.0)
        disc = nn.Linear(1, 1)
        with torch.no_grad():
            disc.weight.fill_(3.0)
            disc.bias.fill_(-3.0)
        learner = Adversarial(
            gen,
            nn.Sequential(disc, nn.Flatten(0)),
            generator_loss=kind,
            generator_optimizer=torch.optim.SGD(gen.parameters(), lr=0.1),
            discriminator_optimizer=torch.optim.SGD(disc.parameters(), lr=0.0),
        )
        learner.step(torch.ones(50, 1))
        assert gen.loc.item() > -3.0, kind


def test_discriminator_loss_and_r1_penalty_closed_forms():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2 + math.log1p(
        math.exp(0.5)
    )
    assert discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    # a linear discriminator l(x) = w.x + b: grad_x l = w, so R1 = |w|^2 / 2
    lin = nn.Linear(3, 1)
    disc = nn.Sequential(lin, nn.Flatten(0))
    value = r1_penalty(disc, torch.randn(7, 3))
    assert value.item() == pytest.approx(0.5 * lin.weight.pow(2).sum().item(), rel=1e-6)
    (grad,) = torch.autograd.grad(value, lin.weight)  # differentiable in the parameters
    torch.testing.assert_close(grad, lin.weight.detach())


def test_gradient_penalty_of_a_linear_critic_and_its_gradient():
    # f(x) = w.x + b: grad_x f = w at every interpolate, so the penalty is (|w| - 1)^2
    # whatever the interpolation weights, and its gradient in w is 2 (|w| - 1) w / |w|
    torch.manual_seed(0)
    lin = nn.Linear(5, 1).double()
    critic = nn.Sequential(lin, nn.Flatten(0))
    real, fake = torch.randn(9, 5, dtype=torch.float64), torch.randn(9, 5, dtype=torch.float64)
    value = gradient_penalty(critic, real, fake)
    norm = lin.weight.detach().norm()
    assert value.item() == pytest.approx((norm.item() - 1) ** 2, rel=1e-12)
    grad_w, grad_b = torch.autograd.grad(value, [lin.weight, lin.bias], allow_unused=True)
    torch.testing.assert_close(grad_w, 2 * (norm - 1) * lin.weight.detach() / norm)
    assert grad_b is None or torch.equal(grad_b, torch.zeros_like(grad_b))
    # images: the norm is over all pixels of an example
    img_critic = nn.Sequential(nn.Flatten(1), lin, nn.Flatten(0))
    value = gradient_penalty(img_critic, real.reshape(9, 1, 5, 1), fake.reshape(9, 1, 5, 1))
    assert value.item() == pytest.approx((norm.item() - 1) ** 2, rel=1e-12)


def test_gradient_penalty_at_interpolates():
    # f(x) = 2 x^2 (1-D): grad = 4 x. With real == fake the interpolate is x itself, so the
    # penalty is exactly mean (4 |x| - 1)^2.
    def critic(x):
        return 2 * x.pow(2).sum(-1)

    x = torch.tensor([[0.5], [-1.0], [0.1]], dtype=torch.float64)
    expected = ((4 * x.abs() - 1) ** 2).mean().item()
    assert gradient_penalty(critic, x, x.clone()).item() == pytest.approx(expected, rel=1e-12)
    # f(x) = x^2 / 2 between real 0 and fake 1: x_hat = 1 - eps, grad = 1 - eps, penalty
    # (eps)^2 with eps ~ U[0, 1] per example: mean 1/3, standard deviation
    # sqrt(1/5 - 1/9) = 0.298; 10^5 pairs, tolerance 0.005 (5 standard errors), seed 0
    torch.manual_seed(0)
    n = 100_000
    value = gradient_penalty(lambda t: 0.5 * t.pow(2).sum(-1), torch.zeros(n, 1), torch.ones(n, 1))
    assert value.item() == pytest.approx(1 / 3, abs=0.005)
    with pytest.raises(ValueError, match="fake: expected the shape of real"):
        gradient_penalty(critic, x, x[:2])


def test_wasserstein_losses_and_a_critic_step_by_hand():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.5, 4.0])
    assert wasserstein_critic_loss(real, fake).item() == pytest.approx(2.0 - 0.5)
    assert wasserstein_generator_loss(fake).item() == pytest.approx(-2.0)
    # one SGD step of the learner on a linear critic f(x) = w.x + b, a fixed generated batch
    # and lambda = 10: the gradient is mean(fake) - mean(real) + 2 lambda (|w| - 1) w / |w|
    # (the penalty of a linear critic does not depend on the interpolates)
    torch.manual_seed(0)
    data, generated = torch.randn(6, 3), torch.randn(6, 3) + 2
    lin = nn.Linear(3, 1)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    gen = nn.Linear(1, 1)  # owns parameters only; sample() gives the batch
    learner = Adversarial(
        gen,
        nn.Sequential(lin, nn.Flatten(0)),
        objective="wasserstein",
        gp_weight=10.0,
        discriminator_steps=2,  # the first step updates the critic only
        discriminator_optimizer=torch.optim.SGD(lin.parameters(), lr=0.1),
        sample=lambda m: generated[:m],
    )
    out = learner.step(data)
    norm = w0.norm()
    grad_w = generated.mean(0) - data.mean(0) + 20 * (norm - 1) * w0[0] / norm
    torch.testing.assert_close(lin.weight.detach()[0], w0[0] - 0.1 * grad_w)
    torch.testing.assert_close(lin.bias.detach(), b0)  # the bias cancels in L_D
    critic_real = (data @ w0.T + b0).mean()
    critic_fake = (generated @ w0.T + b0).mean()
    torch.testing.assert_close(out["d_loss"], critic_fake - critic_real)
    torch.testing.assert_close(out["d_real"], critic_real)  # critic values, not sigmoids
    torch.testing.assert_close(out["gradient_penalty"], (norm - 1) ** 2)


def _gan(seed=0, **options):
    torch.manual_seed(seed)
    options = options or dict(r1_weight=0.1)
    return Adversarial(
        Generator.mlp(2, (8,), 4),
        MLPDiscriminator(4, (8,)),
        discriminator_steps=2,
        lr=1e-2,
        **options,
    )


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["steps"] == sb["steps"]
    for net in ("generator", "discriminator"):
        for key, value in sa[net].items():
            assert torch.equal(value, sb[net][key]), (net, key)
    for opt in ("g_optimizer", "d_optimizer"):
        oa, ob = sa[opt]["state"], sb[opt]["state"]
        assert oa.keys() == ob.keys()
        for i in oa:
            for key in oa[i]:
                assert torch.equal(torch.as_tensor(oa[i][key]), torch.as_tensor(ob[i][key]))


@pytest.mark.parametrize(
    "options",
    [dict(r1_weight=0.1), dict(objective="wasserstein", gp_weight=10.0)],
    ids=["r1", "wgan-gp"],
)
def test_resume_through_the_engine_is_bitwise_exact(tmp_path, options):
    # 13 steps straight == 7 steps, checkpoint, fresh objects, resume to 13 (CPU). With k = 2
    # the resume point (step 7) falls between a discriminator-only step and a generator
    # update, so the step counter must be part of the checkpoint; the interpolates of the
    # gradient penalty come from torch's RNG, which the checkpoint restores.
    data = torch.rand(100, 4, generator=torch.Generator().manual_seed(1))
    val = torch.rand(30, 4, generator=torch.Generator().manual_seed(2))
    common = dict(epochs=4, batch_size=20, val_data=val, seed=3, progress=False, log_every=3)
    straight = _gan(**options)
    r1 = train(straight, data, out=tmp_path / "a", max_steps=13, **common)
    half = _gan(**options)
    train(half, data, out=tmp_path / "b", max_steps=7, checkpoint_every=7, **common)
    assert load_checkpoint(tmp_path / "b")["step"] == 7
    resumed = _gan(seed=123, **options)  # another initialisation: overwritten by the resume
    r2 = train(resumed, data, out=tmp_path / "b", max_steps=13, **common)
    assert r1.step == r2.step == 13 and straight.steps == resumed.steps == 13
    _assert_same_state(straight, resumed)
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(r2.history[-1])
    assert any(k.startswith("val_d_loss") for row in r2.history for k in row)


def test_a_nan_in_either_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    data = torch.rand(100, 4, generator=torch.Generator().manual_seed(1))
    common = dict(epochs=3, batch_size=20, seed=0, progress=False, log_every=1)
    # the discriminator loss: NaN in the data of the second epoch
    bad = data.clone()
    learner = _gan()
    train(learner, bad, out=tmp_path / "d", **common, max_steps=5)
    bad[:] = float("nan")
    with pytest.raises(TrainingDiverged, match="d_loss = nan at step 6.*last good checkpoint"):
        train(learner, bad, out=tmp_path / "d", **common)
    assert load_checkpoint(tmp_path / "d")["step"] == 5
    assert all(torch.isfinite(p).all() for p in learner.discriminator.parameters())

    # the generator loss: NaN from the fourth generator update on (step 8 with k = 2)
    calls = []

    def flaky(fake_logits):
        if fake_logits.requires_grad:
            calls.append(1)
        loss = non_saturating_generator_loss(fake_logits)
        return loss * float("nan") if len(calls) >= 4 else loss

    torch.manual_seed(0)
    learner = Adversarial(
        Generator.mlp(2, (8,), 4),
        MLPDiscriminator(4, (8,)),
        generator_loss=flaky,
        discriminator_steps=2,
    )
    with pytest.raises(TrainingDiverged, match="g_loss = nan at step 8"):
        train(learner, data, out=tmp_path / "g", checkpoint_every=5, **common)
    assert load_checkpoint(tmp_path / "g")["step"] == 5
    assert all(torch.isfinite(p).all() for p in learner.generator.parameters())


def test_evaluate_and_lr():
    learner = _gan()
    out = learner.evaluate(torch.rand(10, 4))
    assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert learner.generator.training and learner.steps == 0
    learner.set_lr(0.5)
    assert all(g["lr"] == 0.5 for o in learner.optimizers() for g in o.param_groups)


def test_bad_arguments():
    g, d = Generator.mlp(2, (8,), 4), MLPDiscriminator(4, (8,))
    with pytest.raises(ValueError, match="generator_loss must be one of"):
        Adversarial(g, d, generator_loss="wasserstein")
    with pytest.raises(ValueError, match="discriminator_steps"):
        Adversarial(g, d, discriminator_steps=0)
    with pytest.raises(ValueError, match="r1_weight"):
        Adversarial(g, d, r1_weight=-1.0)
    with pytest.raises(ValueError, match="gp_weight must be >= 0"):
        Adversarial(g, d, gp_weight=-1.0)
    with pytest.raises(ValueError, match="gp_weight must be >= 0"):
        Adversarial(g, d, gp_weight=float("nan"))
    with pytest.raises(ValueError, match="objective must be one of"):
        Adversarial(g, d, objective="wgan")
    with pytest.raises(ValueError, match="generator_loss must be one of.*'wasserstein'"):
        Adversarial(g, d, objective="wasserstein", generator_loss="minimax")
    with pytest.raises(TypeError, match="no model"):
        Adversarial(nn.Linear(2, 4), d)
    # any network works with a sample function
    net = nn.Linear(2, 4)
    learner = Adversarial(net, d, sample=lambda m: net(torch.randn(m, 2)))
    assert torch.isfinite(learner.step(torch.rand(6, 4))["g_loss"])
