"""Autoencoders: PCA subspace of the linear one, unrolled RBM / denoising pre-training,
corruption only in training, shapes, input errors, the registry entry and the CLI."""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrogen.distributions import GaussianHiddenRBM
from pyrogen.distributions.energy import binary_states
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.base import Representation
from pyrogen.models.greedy import StackRBM, propagate
from pyrogen.registry import DataInfo, get_family
from pyrogen.runs import Run
from pyrogen.train import SVILearner, train


def low_rank_data(n=400, dim=16, rank=3, noise=0.1, seed=0):
    """``n`` points near a ``rank``-dim subspace (variances 9, 4, 2.25), offset from 0."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=gen))
    scales = torch.tensor([3.0, 2.0, 1.5, 1.0, 0.8])[:rank]
    z = torch.randn(n, rank, generator=gen) * scales
    return z @ basis.T + noise * torch.randn(n, dim, generator=gen) + 0.5


def principal_angles_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (degrees) between the column spaces of ``a`` and ``b``."""
    qa, _ = torch.linalg.qr(a)
    qb, _ = torch.linalg.qr(b)
    cos = torch.linalg.svdvals(qa.T @ qb).clamp(max=1.0)
    return torch.rad2deg(torch.arccos(cos))


def tiny_info(dim=16):
    return DataInfo(num_features=dim, image_shape=(4, dim // 4), pixel_mean=None, dataset="toy")


# ----------------------------------------------------------------------------- linear = PCA


def test_linear_autoencoder_spans_the_principal_subspace():
    """Baldi & Hornik: at the minimum of the squared error the decoder spans the top-k
    principal subspace. 300 full-batch Adam steps; tolerance: every principal angle between
    the decoder's columns and the top-3 principal directions < 5 degrees (seen: < 0.11), and
    the error within 5% of PCA's, the minimum (seen: 3.3%)."""
    x = low_rank_data()
    k = 3
    ae = Autoencoder.linear(x.shape[1], k)
    learner = SVILearner(ae, Trace_ELBO(), lr=5e-2)
    train(learner, x, epochs=300, batch_size=x.shape[0], progress=False)
    centred = x - x.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    pcs = vh[:k].T
    with torch.no_grad():
        dec_angles = principal_angles_deg(ae.decoder[0].weight, pcs)
        ae_error = ae.squared_error(x).mean()
    assert dec_angles.max() < 5.0, dec_angles
    pca_error = (centred - centred @ pcs @ pcs.T).square().sum(-1).mean()
    assert pca_error <= ae_error < 1.05 * pca_error, (ae_error, pca_error)
    # and not any k-dim subspace: the bottom principal directions are far from it
    assert principal_angles_deg(ae.decoder[0].weight.detach(), vh[-k:].T).min() > 45


def test_trace_elbo_is_the_reconstruction_error():
    """The model has no latent sites, so Trace_ELBO = -log p(x | g(f(x))) exactly:
    half squared error + D log(sqrt(2 pi) sigma) (Gaussian), cross-entropy (Bernoulli)."""
    x = torch.rand(7, 16)
    ae = Autoencoder((16, 8, 3), output="gaussian", output_scale=0.5)
    ae.eval()
    expected = ae.reconstruction_error(x).sum() + 7 * 16 * math.log(math.sqrt(2 * math.pi) * 0.5)
    assert Trace_ELBO().loss(ae.model, ae.guide, x) == pytest.approx(expected.item(), rel=1e-5)
    manual = 0.5 * (ae(x) - x).square().sum() / 0.25
    assert ae.reconstruction_error(x).sum().item() == pytest.approx(manual.item(), rel=1e-5)
    ae = Autoencoder((16, 8, 3), output="bernoulli")
    ae.eval()
    logits = ae.decode_logits(ae.encode(x))
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    assert Trace_ELBO().loss(ae.model, ae.guide, x) == pytest.approx(ce.item(), rel=1e-5)


# ----------------------------------------------------------------------------- shapes, errors


@pytest.mark.parametrize(
    "make",
    [
        lambda: Autoencoder.linear(16, 3),
        lambda: Autoencoder.nonlinear(16, 5, "tanh", output="bernoulli"),
        lambda: Autoencoder.nonlinear(16, 5, "relu"),
        lambda: Autoencoder.deep(16, (12, 8, 3)),
        lambda: Autoencoder.deep(16, (12, 8, 3), tied=True, output="bernoulli"),
    ],
)
def test_encoder_decoder_shapes(make):
    ae = make()
    x = torch.rand(5, 16)
    z = ae.encode(x)
    assert z.shape == (5, ae.code_size)
    assert ae.decode(z).shape == (5, 16)
    assert ae(x).shape == (5, 16)
    assert ae.encode(x.reshape(5, 4, 4)).shape == (5, ae.code_size)  # image-shaped input
    assert ae.encode(x.reshape(5, 1, 4, 4)).shape == (5, ae.code_size)
    assert ae.reconstruction_error(x).shape == (5,)
    assert ae.squared_error(x).shape == (5,)
    if ae.output == "bernoulli":
        assert ((ae(x) > 0) & (ae(x) < 1)).all()
    names = {n for n, _ in ae.named_parameters()}
    assert any(n.startswith("decoder_bias") for n in names) == ae.tied


def test_deep_autoencoder_default_architecture():
    ae = Autoencoder.deep()
    assert ae.sizes == (625, 2000, 1000, 500, 30)
    assert ae.code_activation == "linear" and ae.activation == "sigmoid"
    assert ae.image_shape == (25, 25)
    # the linear code can take any real value
    assert ae.encode(torch.rand(3, 625)).abs().max() > 0


def test_bad_input_is_a_clear_value_error():
    ae = Autoencoder.deep(16, (8, 3))
    x = torch.rand(4, 16)
    with pytest.raises(ValueError, match=r"expected shape \(batch, 16\)"):
        ae.encode(torch.rand(4, 15))
    with pytest.raises(ValueError, match="wrong size"):
        ae(torch.rand(4, 3, 5))
    bad = x.clone()
    bad[2, 5] = float("nan")
    with pytest.raises(ValueError, match="nan"):
        ae.encode(bad)
    with pytest.raises(ValueError, match="nan"):
        Trace_ELBO().loss(ae.model, ae.guide, bad)
    with pytest.raises(ValueError, match=r"codes of shape \(batch, 3\)"):
        ae.decode(torch.rand(4, 5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ae.encode([[0.0] * 16])
    bern = Autoencoder.nonlinear(16, 4, output="bernoulli")
    with pytest.raises(ValueError, match=r"\[0, 1\].*Bernoulli"):
        bern.encode(x * 3)
    with pytest.raises(ValueError, match="sizes"):
        Autoencoder((16,))
    with pytest.raises(ValueError, match="activation"):
        Autoencoder((16, 4), activation="softsign")
    with pytest.raises(ValueError, match="noise"):
        Autoencoder((16, 4), noise=1.0, corruption="mask")
    with pytest.raises(ValueError, match="pixel_mean"):
        Autoencoder((16, 4), pixel_mean=torch.rand(15))


# ----------------------------------------------------------------------------- denoising


def test_corruption_is_applied_only_in_training():
    torch.manual_seed(1)
    ae = Autoencoder.nonlinear(16, 6, corruption="mask", noise=0.5)
    x = torch.rand(64, 16)
    ae.train()
    noisy = [ae.model(x) for _ in range(2)]  # decoder outputs of two corrupted passes
    assert not torch.allclose(noisy[0], noisy[1])
    ae.eval()
    clean = [ae.model(x) for _ in range(2)]
    torch.testing.assert_close(clean[0], clean[1])
    torch.testing.assert_close(clean[0], ae.decode_logits(ae.encode(x)))
    # forward and the learner's validation never corrupt, whatever the mode
    ae.train()
    torch.testing.assert_close(ae(x), ae(x))
    learner = SVILearner(ae, Trace_ELBO())
    first, second = learner.evaluate(x)["loss"], learner.evaluate(x)["loss"]
    assert first == second
    # a training step (train mode) sees corrupted inputs: its loss differs from the clean one
    ae.train()
    noisy_loss = Trace_ELBO().loss(ae.model, ae.guide, x) / 64
    assert noisy_loss != pytest.approx(float(first), rel=1e-4)


def test_corruption_statistics():
    """Masking noise zeroes a fraction nu of the inputs; Gaussian noise has std nu.
    n = 40000: tolerances 0.02 (~4 standard errors of the fraction and the std)."""
    torch.manual_seed(0)
    x = torch.ones(2500, 16)
    masked = Autoencoder((16, 4), corruption="mask", noise=0.3).corrupt(x)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert abs((masked == 0).float().mean().item() - 0.3) < 0.02
    gauss = Autoencoder((16, 4), corruption="gaussian", noise=0.4).corrupt(x)
    assert abs((gauss - x).std().item() - 0.4) < 0.02
    assert abs((gauss - x).mean().item()) < 0.02
    assert torch.equal(Autoencoder((16, 4)).corrupt(x), x)  # noise 0


# ----------------------------------------------------------------------------- pre-training


def run_stages(config, x, steps_per_epoch, extra_steps, lr=1e-3):
    fam = get_family("autoencoder")
    cfg = fam.config(**config)
    torch.manual_seed(0)
    ae = fam.build(cfg, tiny_info(x.shape[1]))
    learner = fam.learner(ae, cfg, lr)
    n_pre = cfg.pretrain_epochs * steps_per_epoch * (len(ae.sizes) - 1)
    initial = [p.detach().clone() for p in learner.stages[0].learner.module.parameters()]
    batch = x.shape[0] // steps_per_epoch
    train(learner, x, batch_size=batch, epochs=100, max_steps=n_pre + extra_steps, progress=False)
    return ae, learner, initial


def stack_parts(learner):
    """The pre-trained parts of a staged autoencoder learner (every stage but fine-tuning)."""
    return [stage.learner.module for stage in learner.stages[:-1]]


def test_deep_autoencoder_unrolls_the_pretrained_rbms():
    """After greedy RBM pre-training and before any fine-tuning update (lr = 0), encoder
    layer k holds W_k^T and c_k, decoder layer k holds W_k and b_k, and encoding is the
    RBMs' up-pass; the first RBM has Gaussian visible units, the top one linear hidden."""
    torch.manual_seed(0)
    x = torch.randn(64, 16)  # real-valued, standardized-ish
    config = dict(kind="deep", hidden="12,8,3", output="gaussian", pretrain_epochs=2, rbm_sigma=0.3)
    ae, learner, initial = run_stages(config, x, steps_per_epoch=4, extra_steps=1, lr=0.0)
    rbms = stack_parts(learner)
    assert [(r.visible_units, r.hidden_units) for r in rbms] == [
        ("gaussian", "binary"),
        ("binary", "binary"),
        ("binary", "gaussian"),
    ]
    assert not torch.equal(rbms[0].weight, initial[0])  # pre-training changed the RBMs
    assert learner.stage == "finetune"
    # Gaussian visible units of std s: h's pre-activation is c + (v / s)^T W, E[v | h] = b + s W h
    assert [r.visible_scale for r in rbms] == [0.3, 1.0, 1.0]
    torch.testing.assert_close(ae.encoder[0].weight, rbms[0].weight.T / 0.3, rtol=0, atol=0)
    torch.testing.assert_close(ae.decoder[0].weight, rbms[0].weight * 0.3, rtol=0, atol=0)
    for k, rbm in enumerate(rbms[1:], 1):
        torch.testing.assert_close(ae.encoder[k].weight, rbm.weight.T, rtol=0, atol=0)
        torch.testing.assert_close(ae.decoder[k].weight, rbm.weight, rtol=0, atol=0)
    for k, rbm in enumerate(rbms):
        torch.testing.assert_close(ae.encoder[k].bias, rbm.hidden_bias, rtol=0, atol=0)
        torch.testing.assert_close(ae.decoder[k].bias, rbm.visible_bias, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(ae.encode(x), propagate(rbms, x))
    # fine-tuning unties: the decoder moves away from the encoder's transpose
    ae.train()
    optimizer = torch.optim.Adam(ae.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        Trace_ELBO().differentiable_loss(ae.model, ae.guide, x).backward()
        optimizer.step()
    assert not torch.allclose(ae.decoder[0].weight, ae.encoder[0].weight.T)


def test_stacked_denoising_pretraining_loads_the_layer_autoencoders():
    x = torch.rand(64, 16)
    config = dict(kind="denoising", hidden="8,3", output="bernoulli", pretrain_epochs=2, noise=0.3)
    ae, learner, initial = run_stages(config, x, steps_per_epoch=4, extra_steps=0, lr=1e-2)
    assert learner.stage == "finetune"  # the next step would enter it and load the layers
    parts = stack_parts(learner)
    assert not torch.equal(ae.encoder[0].weight, parts[0].encoder[0].weight)
    learner.stages[-1].on_enter()
    assert ae.noise == 0.0  # the stack is fine-tuned on clean inputs
    assert all(p.noise == 0.3 and p.tied for p in parts)
    assert [p.output for p in parts] == ["bernoulli", "bernoulli"]  # logistic units below
    assert not torch.equal(parts[0].encoder[0].weight, initial[0])
    for k, part in enumerate(parts):
        torch.testing.assert_close(ae.encoder[k].weight, part.encoder[0].weight, rtol=0, atol=0)
        torch.testing.assert_close(ae.decoder[k].weight, part.encoder[0].weight.T, rtol=0, atol=0)
        torch.testing.assert_close(ae.decoder[k].bias, part.decoder_bias[0], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(ae.encode(x), propagate(parts, x))


def test_binary_gaussian_rbm_gibbs_matches_its_free_energy():
    """The top-layer RBM (binary visible, linear hidden): block Gibbs sampling reaches
    exp(-F(v)) / Z, Z by enumeration over the 8 visible states. 20000 chains, 30 sweeps:
    tolerance 0.015 per state probability (> 4 standard errors)."""
    torch.manual_seed(0)
    W = torch.randn(3, 2) * 0.8
    b, c = torch.randn(3) * 0.5, torch.randn(2) * 0.5
    rbm = GaussianHiddenRBM(W, b, c)
    states = next(iter(binary_states(3)))
    exact = (rbm.unnormalized_log_prob(states) - rbm.log_partition("exact").log_z).exp()
    assert exact.sum().item() == pytest.approx(1.0, abs=1e-5)
    v = rbm.sample((20000,), num_steps=30, init=rbm.init_chains(20000))
    index = (v * torch.tensor([4.0, 2.0, 1.0])).sum(-1).long()
    order = (states * torch.tensor([4.0, 2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(index, minlength=8).float() / 20000
    assert (freq[order] - exact).abs().max() < 0.015
    # the free energy is -log of the Gaussian integral over h (checked by quadrature)
    grid = torch.linspace(-8, 8, 801)
    hh = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    vv = states[5]
    energy = -(b @ vv) + 0.5 * (hh - c).square().sum(-1) - hh @ (W.T @ vv)
    log_integral = torch.logsumexp(-energy, 0) + 2 * math.log(grid[1] - grid[0])
    assert rbm.unnormalized_log_prob(vv).item() == pytest.approx(log_integral.item(), abs=1e-3)


def test_stack_rbm_kinds_and_errors():
    from pyrogen.distributions import BernoulliRBM, GaussianRBM

    assert isinstance(StackRBM(6, 4).distribution(), BernoulliRBM)
    assert isinstance(StackRBM(6, 4, visible_units="gaussian").distribution(), GaussianRBM)
    assert isinstance(StackRBM(6, 4, hidden_units="gaussian").distribution(), GaussianHiddenRBM)
    with pytest.raises(ValueError, match="both be Gaussian"):
        StackRBM(6, 4, visible_units="gaussian", hidden_units="gaussian")
    with pytest.raises(ValueError, match="visible_scale"):
        StackRBM(6, 4, visible_scale=0.5)  # binary units have no scale
    with pytest.raises(ValueError, match="tied copies"):
        StackRBM(6, 4, visible_units="gaussian", up=2)
    g = StackRBM(6, 4, visible_units="gaussian", visible_scale=0.5)
    assert torch.equal(g.distribution().visible_scale, torch.full((6,), 0.5))
    v = torch.randn(3, 6)
    torch.testing.assert_close(g.up(v), g.distribution().hidden_given_visible(v).probs)
    h = torch.bernoulli(torch.full((3, 4), 0.5))
    torch.testing.assert_close(g.down(h), g.distribution().visible_given_hidden(h).mean)
    with pytest.raises(ValueError, match="Gaussian visible and Gaussian hidden"):
        Autoencoder.linear(6, 2).rbm_stack()
    with pytest.raises(ValueError, match="logistic hidden units"):
        Autoencoder.deep(6, (4, 2), activation="tanh").rbm_stack()
    # grey-level (probability) inputs are accepted by the stacked RBMs
    rbm = StackRBM(6, 4)
    trace = pyro.poutine.trace(rbm.model).get_trace(torch.rand(5, 6))
    assert trace.nodes["v"]["value"].shape == (5, 6)


# ----------------------------------------------------------------------------- registry, CLI


def test_family_config_defaults_and_errors():
    fam = get_family("autoencoder")
    assert fam.config().sizes() == (2000, 1000, 500, 30)
    assert fam.config(kind="linear").sizes() == (30,)
    assert fam.config(kind="deep").resolved_pretrain() == "rbm"
    assert fam.config(kind="denoising").resolved_pretrain() == "denoising"
    assert fam.config(kind="denoising", hidden="50").resolved_pretrain() == "none"
    with pytest.raises(ValueError, match="comma-separated"):
        fam.config(hidden="12,x")
    with pytest.raises(ValueError, match="one layer"):
        fam.config(kind="nonlinear", hidden="12,4")
    with pytest.raises(ValueError, match="logistic"):
        fam.config(kind="deep", activation="relu")
    with pytest.raises(ValueError, match="kind"):
        fam.config(kind="convolutional")
    # a one-layer denoising autoencoder trains on corrupted inputs itself
    ae = fam.build(fam.config(kind="denoising", hidden="5", noise=0.2), tiny_info())
    assert ae.noise == 0.2 and ae.sizes == (16, 5)
    assert fam.kind == "representation" and isinstance(ae, Representation)
    with pytest.raises(TypeError, match="no density"):
        fam.log_likelihood(ae, fam.config(), torch.zeros(2, 16))


def test_cli_trains_and_evaluates_an_autoencoder(tmp_path, capsys):
    from pyrogen.cli import main

    out = tmp_path / "run"
    argv = ["train", "autoencoder", "--kind", "deep", "--hidden", "12,4", "--pretrain-epochs"]
    argv += ["1", "--dataset", "digits", "--max-steps", "2", "--batch-size", "500"]
    argv += ["--out", str(out), "--no-progress", "--no-validate", "--device", "cpu"]
    assert main(argv) == 0
    assert (out / "checkpoint.pt").exists()
    run = Run.load(out)
    assert run.config.family == "autoencoder" and run.model.sizes == (64, 12, 4)
    assert run.model_config.resolved_pretrain() == "rbm"
    with pytest.raises(TypeError, match="deterministic"):
        run.sample(4)
    assert main(["evaluate", str(out), "--limit", "50", "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "squared error" in printed and "no log-likelihood" in printed


def test_registry_learner_trains_one_step():
    fam = get_family("autoencoder")
    cfg = fam.config(kind="nonlinear", hidden="6", output="bernoulli")
    ae = fam.build(cfg, tiny_info())
    learner = fam.learner(ae, cfg, 1e-2)
    x = torch.bernoulli(torch.full((32, 16), 0.3))
    before = ae.encoder[0].weight.detach().clone()
    out = learner.step(x)
    assert math.isfinite(float(out["loss"]))
    assert not torch.equal(before, ae.encoder[0].weight)
    metrics = learner.evaluate(x)
    assert set(metrics) == {"loss", "sq_error"}
    score = fam.evaluate(ae, cfg, x, batch_size=10)
    assert score.num_examples == 32 and score.loss == "cross-entropy"
    assert score.squared_error == pytest.approx(ae.squared_error(x).mean().item(), rel=1e-5)
    rec = ae.reconstruction_error(x).mean().item()
    assert score.reconstruction_error == pytest.approx(rec, rel=1e-5)


def test_representation_protocol_fit_transform_reconstruct():
    # fit (through the engine), transform (the codes) and reconstruct on a linear
    # autoencoder; its reconstructions beat the mean's squared error on low-rank data
    x = low_rank_data(n=200, dim=8, rank=2)
    ae = Autoencoder.linear(8, 2)
    assert ae.fit(x, epochs=30, batch_size=20, lr=1e-2, progress=False) is ae
    codes = ae.transform(x)
    assert codes.shape == (200, 2) and not codes.requires_grad
    err = (ae.reconstruct(x) - x).square().sum(-1).mean()
    baseline = (x - x.mean(0)).square().sum(-1).mean()
    assert err < 0.2 * baseline, (err, baseline)
