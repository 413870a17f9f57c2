"""The generator families (``gan``, ``gmmn``) and the VAE with Wu et al.'s decoders and a
Gaussian observation model: closed forms, hand computations of one training step, config
validation, and ``pyrogen train gan`` through the command line."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyrogen import cli
from pyrogen.evaluate import decoder_log_likelihood
from pyrogen.infer.adversarial import minimax_generator_loss
from pyrogen.models import VAE, Generator
from pyrogen.registry import DataInfo, get_family

INFO = DataInfo(4, (2, 2))


# ----------------------------------------------------------------------------- VAE


def _linear_gaussian_vae(D=5, d=2, sigma=0.5, seed=0):
    """A VAE whose decoder is linear, x = W z + b + sigma eps (probabilistic PCA), with a
    guide near the exact posterior (means exact, scales 1.3 times the marginal posterior
    standard deviations: an imperfect proposal, so the weights vary)."""
    torch.manual_seed(seed)
    linear = nn.Linear(d, D)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(D, d) * 1.5)
        linear.bias.copy_(torch.randn(D) * 0.3)
    vae = VAE(D, (d,), ((),), observation="gaussian", sigma=sigma, decoder=linear)
    set_guide_to_posterior(vae, sigma)
    return vae


def set_guide_to_posterior(vae, sigma, inflate=1.3):
    W, b = vae.decoder.weight.detach(), vae.decoder.bias.detach()
    d = W.shape[1]
    cov = torch.linalg.inv(torch.eye(d) + W.T @ W / sigma**2)
    A = cov @ W.T / sigma**2  # posterior mean = A (x - b)
    head = vae.encoders[0].net.output_layer
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:d] = A
        head.bias[:d] = -A @ b
        head.bias[d:] = 0.5 * cov.diagonal().log() + math.log(inflate)


def ppca_log_prob(vae, x, sigma):
    W, b = vae.decoder.weight.detach(), vae.decoder.bias.detach()
    cov = W @ W.T + sigma**2 * torch.eye(W.shape[0])
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


def test_gaussian_vae_log_likelihood_is_the_ppca_closed_form(float64):
    # 12 examples from the model, 500 importance samples (seeded): the importance-sampling
    # estimate, and decoder AIS started from the encoder, are within 3 reported Monte Carlo
    # standard errors of the exact mean log-likelihood; so is the estimate at another sigma
    # (log_likelihood(sigma=...)), against the closed form at that sigma.
    vae = _linear_gaussian_vae()
    torch.manual_seed(1)
    x = vae.sample(12)
    exact = ppca_log_prob(vae, x, 0.5).mean().item()
    result = vae.log_likelihood(x, num_samples=500, progress=False, diagnostics=False)
    assert 0 < result.mc_stderr < 0.05
    assert abs(result.mean - exact) < 3 * result.mc_stderr, (result.mean, exact)
    ais = vae.ais_log_likelihood(
        x, num_chains=8, num_temperatures=20, num_leapfrog=3, progress=False
    )
    assert ais.diagnostics["sigma"] == 0.5 and "from the encoder" in ais.estimator
    assert abs(ais.mean - exact) < 3 * ais.mc_stderr + 1e-6, (ais.mean, exact)
    # another sigma: the model's own is restored afterwards
    set_guide_to_posterior(vae, 0.8)
    other = vae.log_likelihood(x, sigma=0.8, num_samples=500, progress=False, diagnostics=False)
    exact_other = ppca_log_prob(vae, x, 0.8).mean().item()
    assert abs(other.mean - exact_other) < 3 * other.mc_stderr, (other.mean, exact_other)
    assert vae.sigma == 0.5
    # a density of continuous values may exceed one: these log-likelihoods are not bounded by 0
    assert math.isfinite(exact)


def test_gaussian_vae_samples_are_mean_plus_sigma_noise():
    vae = VAE(16, (2,), ((8,),), observation="gaussian", sigma=0.2)
    torch.manual_seed(5)
    x = vae.sample(200)
    torch.manual_seed(5)
    mean = vae.sample(200, mean=True)
    noise = x - mean
    # 3200 standard normal values times 0.2: their sample std is within 5% of 0.2
    assert abs(noise.std().item() - 0.2) < 0.01 and abs(noise.mean().item()) < 0.01
    assert 0 <= mean.min() and mean.max() <= 1  # the sigmoid mean
    pictures = vae.to_unit_interval(x)
    assert pictures.min() >= 0 and pictures.max() <= 1 and (x < 0).any()
    assert vae.reconstruct(x[:3]).shape == (3, 16)


def test_vae_wu_shares_the_generator_decoder():
    def layers(net):
        return [(type(m), getattr(m, "weight", torch.empty(0)).shape) for m in net]

    for d, widths in ((10, [784, 1024, 256, 256, 64]), (50, [784, 1024, 1024, 1024])):
        generator = Generator.wu(d)
        vae = VAE.wu(d, sigma=0.05)
        assert layers(vae.decoder) == layers(generator.network)
        assert isinstance(vae.decoder[-1], nn.Sigmoid)
        # the same network: a GAN's weights load into the VAE and decode identically
        vae.decoder.load_state_dict(generator.network.state_dict())
        z = torch.randn(3, d)
        torch.testing.assert_close(vae.decoder(z), generator.decode(z))
        encoder = [m.weight.shape[::-1] for m in vae.encoders[0].modules() if hasattr(m, "weight")]
        assert [s[0] for s in encoder] == widths and encoder[-1][1] == 2 * d
    logits = VAE.wu(10, observation="bernoulli")
    assert isinstance(logits.decoder[-1], nn.Identity) and logits.sigma is None
    with pytest.raises(ValueError, match="latent_dim"):
        VAE.wu(20, sigma=0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"observation": "gaussian"}, "sigma"),
        ({"observation": "gaussian", "sigma": 0.0}, "sigma"),
        ({"observation": "gaussian", "sigma": -1.0}, "sigma"),
        ({"sigma": 0.1}, "sigma"),  # a Bernoulli model takes none
        ({"observation": "poisson"}, "observation"),
    ],
)
def test_vae_observation_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE(16, (2,), ((8,),), **kwargs)


def test_gaussian_vae_bad_data_and_bad_sigma():
    vae = VAE(16, (2,), ((8,),), observation="gaussian", sigma=0.1)
    x = torch.rand(3, 16)
    vae.guide(x)  # grey levels are fine for a Gaussian observation
    bad = x.clone()
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"nan at index \(1, 2\)"):
        vae.model(bad)
    with pytest.raises(ValueError, match="sigma"):
        vae.log_likelihood(x, sigma=0.0, num_samples=2)
    with pytest.raises(ValueError, match="sigma"):
        VAE(16, (2,), ((8,),)).log_likelihood((x > 0.5).float(), sigma=0.1, num_samples=2)
    with pytest.raises(TypeError, match="encoder"):
        vae.ais_log_likelihood(x, encoder=None)
    with pytest.raises(ValueError, match="one-layer"):
        VAE(16, (4, 2), ((8,), (4,)), observation="gaussian", sigma=0.1).ais_log_likelihood(x)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "family, overrides, match",
    [
        ("gan", {"sigma": 0.0}, "sigma"),
        ("gan", {"sigma": -0.5}, "sigma"),
        ("gmmn", {"sigma": 0.0}, "sigma"),
        ("vae", {"sigma": -1.0}, "sigma"),
        ("gan", {"discriminator_steps": 0}, "discriminator_steps"),
        ("gan", {"r1_weight": -1.0}, "r1_weight"),
        ("gan", {"generator_loss": "wasserstein"}, "generator_loss"),
        ("gan", {"generator": "resnet"}, "generator"),
        ("gmmn", {"bandwidths": "2,-1"}, "bandwidths"),
        ("gmmn", {"bandwidths": "two"}, "bandwidths"),
        ("vae", {"decoder": "wu10", "layers": 2}, "layers"),
        ("vae", {"decoder": "wu20"}, "decoder"),
    ],
)
def test_bad_configs_are_value_errors_naming_the_option(family, overrides, match):
    with pytest.raises(ValueError, match=match):
        get_family(family).config(**overrides)


def test_families_build_the_documented_models():
    gan, gmmn, vae = get_family("gan"), get_family("gmmn"), get_family("vae")
    assert gan.observation == gmmn.observation == "gaussian"
    assert vae.observation_for(vae.config()) == "bernoulli"
    assert vae.observation_for(vae.config(observation="gaussian")) == "gaussian"
    info = DataInfo(784, (28, 28))
    # Wu et al.'s decoder, the same in all three families
    nets = [
        gan.build(gan.config(generator="wu10", sigma=0.05), info).network,
        gmmn.build(gmmn.config(sigma=0.05), info).network,  # gmmn's default generator
        vae.build(vae.config(decoder="wu10", observation="gaussian", sigma=0.05), info).decoder,
    ]
    shapes = [[tuple(p.shape) for p in net.parameters()] for net in nets]
    assert shapes[0] == shapes[1] == shapes[2]
    assert shapes[0][0] == (64, 10) and shapes[0][-2] == (784, 1024)
    model = gan.build(gan.config(generator="wu50", sigma=0.05), info)
    assert model.latent_dim == 50 and model.sigma == 0.05
    # DCGAN on 28x28, its tanh output mapped to [0, 1]; its own discriminator
    config = gan.config(generator="dcgan", latent_dim=8, width=4)
    dcgan = gan.build(config, info)
    pictures = dcgan.sample(3, mean=True)
    assert pictures.shape == (3, 784) and pictures.min() >= 0 and pictures.max() <= 1
    learner = gan.learner(dcgan, config, 1e-3)
    assert type(learner.discriminator).__name__ == "DCGANDiscriminator"
    out = learner.step(torch.rand(4, 784))
    assert math.isfinite(float(out["d_loss"]))
    with pytest.raises(ValueError, match="generator: dcgan needs 28x28 or 64x64"):
        gan.build(config, DataInfo(64, (8, 8)))
    # the learner gets the configured loss, k and R1 weight
    config = gan.config(generator_loss="minimax", discriminator_steps=3, r1_weight=2.0)
    learner = gan.learner(gan.build(config, INFO), config, 1e-3)
    assert learner.generator_loss is minimax_generator_loss
    assert learner.discriminator_steps == 3 and learner.r1_weight == 2.0
    assert gmmn.loss(gmmn.config(bandwidths="1, 3")).bandwidths == (1.0, 3.0)


# ----------------------------------------------------------------------------- one step


def _adam_first_step(before, grad, lr):
    """Adam's first update from zero moments: lr * g / (|g| + eps) after bias correction."""
    return before - lr * grad / (grad.abs() + 1e-8)


def assert_adam_step(module, before, loss, lr=0.01):
    """``module``'s parameters are ``before``'s after one Adam step on ``loss`` (computed
    from ``before``). Where a gradient is as small as Adam's eps (1e-8) the step
    g / (|g| + eps) amplifies the rounding of g, hence the absolute tolerance of 1e-6 (1e-4
    of a step)."""
    grads = torch.autograd.grad(loss, list(before.parameters()))
    for after, old, g in zip(module.parameters(), before.parameters(), grads):
        expected = _adam_first_step(old.detach(), g, lr)
        torch.testing.assert_close(after.detach(), expected, rtol=0, atol=1e-6)


def test_gan_one_step_equals_a_hand_computation(float64):
    family = get_family("gan")
    config = family.config(latent_dim=3, hidden="5", discriminator_hidden="6", sigma=0.2)
    torch.manual_seed(0)
    generator = family.build(config, INFO)
    learner = family.learner(generator, config, lr=0.01)
    G, D = copy.deepcopy(generator), copy.deepcopy(learner.discriminator)
    real = torch.rand(7, 4)
    torch.manual_seed(11)
    out = learner.step(real)
    torch.manual_seed(11)
    fake = G.model(None, num_samples=7)  # the same generated batch (same code path)
    # the discriminator's cross-entropy, written with log D and log(1 - D)
    d_real, d_fake = torch.sigmoid(D(real)), torch.sigmoid(D(fake.detach()))
    d_loss = -(d_real.log().mean() + (1 - d_fake).log().mean())
    torch.testing.assert_close(out["d_loss"], d_loss.detach())
    torch.testing.assert_close(out["d_real"], d_real.mean().detach())
    torch.testing.assert_close(out["d_fake"], d_fake.mean().detach())
    assert_adam_step(learner.discriminator, D, d_loss)
    # the generator then moves against the updated discriminator: -mean log D'(G(z))
    with torch.no_grad():
        for p, new in zip(D.parameters(), learner.discriminator.parameters()):
            p.copy_(new)
    g_loss = -torch.sigmoid(D(fake)).log().mean()
    torch.testing.assert_close(out["g_loss"], g_loss.detach())
    assert_adam_step(generator, G, g_loss)


def test_gmmn_one_step_equals_a_hand_computation(float64):
    family = get_family("gmmn")
    config = family.config(generator="mlp", latent_dim=3, hidden="5", bandwidths="0.5,2")
    torch.manual_seed(0)
    generator = family.build(config, INFO)
    learner = family.learner(generator, config, lr=0.01)
    G = copy.deepcopy(generator)
    real = torch.rand(6, 4)
    torch.manual_seed(11)
    out = learner.step(real)
    torch.manual_seed(11)
    fake = G.model(None, num_samples=6)

    def k(a, b):
        return sum(torch.exp(-((a - b) ** 2).sum() / (2 * s * s)) for s in (0.5, 2.0))

    m = 6  # the unbiased MMD^2, written out as double sums
    xx = sum(k(fake[i], fake[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(real[i], real[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(fake[i], real[j]) for i in range(m) for j in range(m)) / (m * m)
    mmd2 = xx + yy - 2 * xy
    torch.testing.assert_close(out["loss"], mmd2.detach())  # reported per example
    assert_adam_step(generator, G, mmd2)


def test_k_discriminator_steps_per_generator_step():
    family = get_family("gan")
    config = family.config(
        latent_dim=2, hidden="4", discriminator_hidden="4", discriminator_steps=2
    )
    generator = family.build(config, INFO)
    learner = family.learner(generator, config, lr=0.01)
    start = [p.detach().clone() for p in generator.parameters()]
    learner.step(torch.rand(5, 4))
    assert all(torch.equal(a, b) for a, b in zip(start, generator.parameters()))
    learner.step(torch.rand(5, 4))
    assert not any(torch.equal(a, b) for a, b in zip(start, generator.parameters()))


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_is_decoder_ais_with_the_config_sigma():
    family = get_family("gmmn")
    config = family.config(
        generator="mlp", latent_dim=2, hidden="4", sigma=0.3, ais_temperatures=6, ais_leapfrog=2
    )
    torch.manual_seed(0)
    model = family.build(config, INFO)
    x = torch.rand(5, 4)
    options = {"num_chains": 3, "progress": False}
    before = torch.get_rng_state()
    result = family.evaluate(model, config, x, seed=4, **options)
    assert torch.equal(torch.get_rng_state(), before)  # the seed leaves the global stream
    again = family.evaluate(model, config, x, seed=4, **options)
    torch.testing.assert_close(result.per_example, again.per_example, rtol=0, atol=0)
    torch.manual_seed(4)
    direct = decoder_log_likelihood(
        model.decode,
        x,
        latent_dim=2,
        sigma=0.3,
        num_temperatures=6,
        num_leapfrog=2,
        **options,
    )
    torch.testing.assert_close(result.per_example, direct.per_example, rtol=0, atol=0)
    assert result.diagnostics["sigma"] == 0.3 and result.diagnostics["num_temperatures"] == 6
    assert family.default_num_samples == 16 and family.sample_option == "num_chains"


# ----------------------------------------------------------------------------- CLI


def test_pyrogen_train_gan_through_the_command_line(tmp_path, capsys):
    run = tmp_path / "gan"
    small = ["--latent-dim", "4", "--hidden", "16", "--discriminator-hidden", "16"]
    evaluation = ["--ais-temperatures", "3", "--ais-leapfrog", "2", "--evaluate"]
    args = ["train", "gan", "--dataset", "digits", "--max-steps", "3", "--out", str(run)]
    code = cli.main([*args, *small, *evaluation, "--no-progress", "--device", "cpu"])
    assert code == 0
    out = capsys.readouterr().out
    assert "trained 3 steps" in out and "test log-likelihood" in out
    config = json.loads((run / "config.json").read_text())
    assert config["family"] == "gan" and config["config"]["generator_loss"] == "non_saturating"
    assert config["config"]["hidden"] == [16] and config["config"]["sigma"] == 0.1
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    steps = [h for h in history if "d_loss" in h]
    assert steps and all(math.isfinite(h["d_loss"]) and math.isfinite(h["g_loss"]) for h in steps)
    record = json.loads((run / "eval.json").read_text())
    assert record["num_samples"] == 16 and "AIS (16 chains, 3 temperatures" in record["estimator"]
    png = tmp_path / "grid.png"
    assert cli.main(["sample", str(run), "--n", "9", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sampled_pictures_are_in_the_unit_interval():
    for name in ("gan", "gmmn"):
        family = get_family(name)
        config = family.config(**family.smoke_config)
        model = family.build(config, INFO)
        x = model.sample(50)  # from N(G(z), sigma^2 I): beyond [0, 1] at times
        pictures = model.to_unit_interval(x)
        assert pictures.min() >= 0 and pictures.max() <= 1
        means = model.sample(50, mean=True)
        assert means.min() >= 0 and means.max() <= 1
        assert F.mse_loss(x, means).item() > 0
