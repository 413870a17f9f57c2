"""The IWAE loss: its value against Pyro's RenyiELBO, its gradients against closed forms."""

import contextlib
import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, RenyiELBO, Trace_ELBO

from pyrogen.infer import IWAE
from pyrogen.models import VAE, LinearGaussianVAE


def _binary(n, d, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < p).float()


def _orthogonal_ppca(D=4, d=2, noise=0.5, seed=0):
    torch.manual_seed(seed)
    m = LinearGaussianVAE(D, d, noise)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(D, d))
        m.weight.copy_(q * torch.tensor([1.5, 0.8])[:d])
        m.bias.copy_(torch.randn(D) * 0.3)
    return m


def _grads(module):
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("k", [1, 5])
def test_value_equals_renyi_elbo_on_the_same_samples(float64, layers, k):
    vae = VAE(20, *((50,), ((16,),)) if layers == 1 else ((6, 3), ((16,), (8,))))
    vae.double()
    x = _binary(7, 20).double()
    pyro.set_rng_seed(3)
    ours = IWAE(k, max_plate_nesting=1).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    nesting = 2 if k > 1 else 1  # Pyro's count includes its particle plate
    renyi = RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=nesting)
    theirs = renyi.loss(vae.model, vae.guide, x)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-9)


def test_standard_gradient_equals_renyi_elbo_gradient(float64):
    vae = VAE(20, (4,), ((16,),)).double()
    x = _binary(7, 20).double()
    pyro.set_rng_seed(5)
    IWAE(5, max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x).backward()
    ours = _grads(vae)
    vae.zero_grad()
    pyro.set_rng_seed(5)
    renyi = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=2)
    renyi.loss_and_grads(vae.model, vae.guide, x)
    theirs = _grads(vae)
    assert ours.keys() == theirs.keys() and len(ours) == len(list(vae.parameters()))
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-10, atol=1e-10)


def test_guessing_plate_nesting_leaves_the_random_stream_alone():
    vae = VAE(10, (3,), ((8,),))
    x = _binary(4, 10)
    pyro.set_rng_seed(1)
    guessed = IWAE(5).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    given = IWAE(5, max_plate_nesting=1).loss(vae.model, vae.guide, x)
    assert guessed == given


def _mean_grads(model, loss, x, reps, params):
    """Mean and standard error of ``reps`` independent gradient estimates."""
    draws = []
    for _ in range(reps):
        for p in params:
            p.grad = None
        loss.differentiable_loss(model.model, model.guide, x).backward()
        draws.append(torch.cat([p.grad.reshape(-1) for p in params]))
    draws = torch.stack(draws)
    return draws.mean(0), draws.std(0) / math.sqrt(reps)


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_k1_gradient_is_unbiased_for_the_closed_form_elbo(float64, estimator):
    # With k = 1 both estimators target the ELBO, which is closed form for this model.
    m = _orthogonal_ppca()
    with torch.no_grad():
        m.guide_weight.normal_(0, 0.3)
        m.guide_log_scale.fill_(-0.5)
    x = m.marginal().sample((3,)).repeat(2000, 1)  # 2000 replicates of 3 points per draw
    params = list(m.parameters())
    mean, se = _mean_grads(m, IWAE(1, estimator=estimator, max_plate_nesting=1), x, 40, params)
    exact = torch.autograd.grad(-m.exact_elbo(x).sum(), params)
    exact = torch.cat([g.reshape(-1) for g in exact])
    # 4.5 standard errors per coordinate (seeded; ~1e-5 chance per coordinate under the CLT)
    assert torch.all((mean - exact).abs() <= 4.5 * se + 1e-8), (mean - exact) / se


@pytest.mark.parametrize("k", [5, 20])
def test_dreg_and_iwae_gradients_agree_in_expectation(float64, k):
    m = _orthogonal_ppca()
    with torch.no_grad():
        m.guide_weight.normal_(0, 0.3)
        m.guide_log_scale.fill_(-0.7)
    x = m.marginal().sample((3,)).repeat(1000, 1)
    params = list(m.parameters())
    g_iwae, se_iwae = _mean_grads(m, IWAE(k, max_plate_nesting=1), x, 30, params)
    g_dreg, se_dreg = _mean_grads(m, IWAE(k, estimator="dreg", max_plate_nesting=1), x, 30, params)
    se = torch.sqrt(se_iwae**2 + se_dreg**2)
    assert torch.all((g_iwae - g_dreg).abs() <= 4.5 * se + 1e-8), (g_iwae - g_dreg) / se
    # and DReG's guide gradient has lower variance (the point of the estimator)
    n_model = m.weight.numel() + m.bias.numel()
    assert (se_dreg[n_model:] ** 2).sum() < (se_iwae[n_model:] ** 2).sum()


def test_dreg_guide_gradient_vanishes_at_the_exact_posterior(float64):
    # q = p(z|x) makes every weight equal to p(x): DReG's guide gradient is 0 for every
    # sample (zero variance), while the standard estimator is only 0 on average.
    m = _orthogonal_ppca()
    m.set_guide_to_posterior()
    x = m.marginal().sample((5,))
    guide_params = [m.guide_weight, m.guide_bias, m.guide_log_scale]
    for estimator, expect_zero in (("dreg", True), ("iwae", False)):
        m.zero_grad()
        IWAE(10, estimator=estimator, max_plate_nesting=1).differentiable_loss(
            m.model, m.guide, x
        ).backward()
        size = max(p.grad.abs().max().item() for p in guide_params)
        assert (size < 1e-10) == expect_zero, (estimator, size)


class HierarchicalLinear(pyro.nn.PyroModule):
    """z2 -> z1 -> x, all linear-Gaussian, with a hierarchical guide x -> z1 -> z2."""

    def __init__(self):
        super().__init__(name=f"hier{id(self)}")
        self.a = torch.nn.Parameter(torch.tensor([0.8, -0.4]))
        self.w = torch.nn.Parameter(torch.tensor([[1.0, 0.5], [-0.3, 0.7], [0.2, -1.1]]))
        self.g1 = torch.nn.Parameter(torch.tensor([[0.3, -0.2, 0.1], [0.1, 0.4, -0.3]]))
        self.s1 = torch.nn.Parameter(torch.tensor([-0.6, -0.4]))
        self.g2 = torch.nn.Parameter(torch.tensor([[0.5, -0.2]]))
        self.s2 = torch.nn.Parameter(torch.tensor([-0.3]))

    @pyro.nn.pyro_method
    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(1), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2 * self.a, 0.6).to_event(1))
            pyro.sample("x", dist.Normal(z1 @ self.w.T, 0.5).to_event(1), obs=x)

    @pyro.nn.pyro_method
    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(x @ self.g1.T, self.s1.exp()).to_event(1))
            pyro.sample("z2", dist.Normal(z1 @ self.g2.T, self.s2.exp()).to_event(1))


def test_dreg_is_unbiased_for_hierarchical_guides(float64):
    # q(z2|z1) depends on z1: DReG must keep that path (a detach of the site parameters
    # would bias it). Compared with the standard estimator, which is unbiased.
    m = HierarchicalLinear()
    x = torch.tensor([[0.5, -1.0, 0.3], [1.2, 0.4, -0.8]]).repeat(1000, 1)
    params = list(m.parameters())
    g_iwae, se_iwae = _mean_grads(m, IWAE(5, max_plate_nesting=1), x, 30, params)
    g_dreg, se_dreg = _mean_grads(m, IWAE(5, estimator="dreg", max_plate_nesting=1), x, 30, params)
    se = torch.sqrt(se_iwae**2 + se_dreg**2)
    assert torch.all((g_iwae - g_dreg).abs() <= 4.5 * se + 1e-8), (g_iwae - g_dreg) / se


def test_loss_value_of_dreg_is_the_bound():
    vae = VAE(10, (3,), ((8,),))
    x = _binary(4, 10)
    pyro.set_rng_seed(2)
    a = IWAE(5, max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(2)
    b = IWAE(5, estimator="dreg", max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_subsampling_scale_is_applied_after_the_log_mean_exp(float64):
    m = _orthogonal_ppca()
    x = m.marginal().sample((6,))

    def model(x):
        with pyro.poutine.scale(scale=10.0):
            m.model(x)

    def guide(x):
        with pyro.poutine.scale(scale=10.0):
            m.guide(x)

    pyro.set_rng_seed(0)
    scaled = IWAE(5, max_plate_nesting=1).loss(model, guide, x)
    pyro.set_rng_seed(0)
    plain = IWAE(5, max_plate_nesting=1).loss(m.model, m.guide, x)
    assert scaled == pytest.approx(10 * plain, rel=1e-10)


def test_non_reparameterizable_guide_is_rejected():
    def model():
        pyro.sample("c", dist.Bernoulli(0.5))

    def guide():
        pyro.sample("c", dist.Bernoulli(0.3))

    with pytest.raises(ValueError, match="not reparameterizable"):
        IWAE(3, max_plate_nesting=0).loss(model, guide)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_particles"):
        IWAE(0)
    with pytest.raises(ValueError, match="estimator"):
        IWAE(5, estimator="vimco")


@pytest.mark.parametrize("loss", [IWAE(5), IWAE(5, estimator="dreg")])
def test_trains_with_pyro_svi(loss):
    # Plain Pyro SVI finds the VAE's parameters through its param statements and improves
    # the bound on a small fixed data set (seeded; the threshold is far from the noise).
    vae = VAE(16, (2,), ((16,),), pixel_mean=torch.full((16,), 0.3))
    data = torch.zeros(64, 16)
    data[:32, :8] = 1
    data[32:, 8:] = 1
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.02}), loss)
    first = sum(svi.step(data) for _ in range(5)) / 5
    for _ in range(200):
        svi.step(data)
    last = sum(svi.step(data) for _ in range(5)) / 5
    assert len(pyro.get_param_store()) == sum(1 for _ in vae.parameters())
    assert last < first - 300  # nats over the 64-example batch


def test_trace_elbo_and_torch_optim_train_the_vae():
    vae = VAE(16, (2,), ((16,),))
    data = torch.zeros(32, 16)
    data[:16, :8] = 1
    data[16:, 8:] = 1
    loss_fn = Trace_ELBO()(vae.model, vae.guide)
    opt = torch.optim.Adam(vae.parameters(), lr=0.02)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = loss_fn(data)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 100


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_k5_gradient_at_the_posterior_is_the_exact_log_likelihood_gradient(float64, estimator):
    # With q = p(z|x) the K-sample bound touches log p(x) and is maximal in the guide, so its
    # exact gradient is grad_theta log p(x) (closed form) for the model and 0 for the guide.
    m = _orthogonal_ppca()
    m.set_guide_to_posterior()
    x = m.marginal().sample((3,))
    model_params = [m.weight, m.bias]
    guide_params = [m.guide_weight, m.guide_bias, m.guide_log_scale]
    params = model_params + guide_params
    loss = IWAE(5, estimator=estimator, max_plate_nesting=1)
    mean, se = _mean_grads(m, loss, x.repeat(500, 1), 40, params)
    exact = torch.autograd.grad(-500 * m.exact_log_prob(x).sum(), model_params)
    n_model = sum(p.numel() for p in model_params)
    exact = torch.cat(
        [torch.cat([g.reshape(-1) for g in exact]), torch.zeros(mean.numel() - n_model)]
    )
    assert torch.all((mean - exact).abs() <= 4.5 * se + 1e-8), (mean - exact) / (se + 1e-30)


# ---------------------------------------------------------------- a model as users write it


class PlainVAE(torch.nn.Module):
    """Plain modules, ``pyro.module`` and Pyro's own distributions (no pyrogen pieces).

    ``extra_plate`` (one more plate around the data) and ``extra`` (a latent site the guide
    lacks) let a test change the structure between steps.
    """

    def __init__(self, d=12, z=3):
        super().__init__()
        self.z = z
        self.enc = torch.nn.Linear(d, 2 * z)
        self.dec = torch.nn.Linear(z, d)
        self.extra_plate = False
        self.extra = False

    def model(self, x):
        pyro.module("plain_dec", self.dec)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z), 1.0).to_event(1))
            if self.extra:
                pyro.sample("w", dist.Normal(x.new_zeros(()), 1.0))
            with pyro.plate("extra", 1) if self.extra_plate else contextlib.nullcontext():
                pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("plain_enc", self.enc)
        with pyro.plate("data", x.shape[0]):
            loc, log_scale = self.enc(x).split(self.z, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


class GaussianPair:
    """z ~ N(0, I_3), x ~ N(sum z, 1) with a guide of adjustable width (the model only uses
    the sum of z, so a guide of the wrong width runs; only the model/guide check sees it)."""

    def __init__(self):
        self.loc = torch.zeros(3, requires_grad=True)
        self.width = 3

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc[: self.width], 1.0).to_event(1))


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_plain_pyro_model_value_and_gradient_equal_renyi_elbo(float64, estimator):
    # Pyro's Normal and Bernoulli go through pyrogen's fused log-densities: same numbers.
    m = PlainVAE().double()
    x = _binary(6, 12).double()
    pyro.set_rng_seed(4)
    ours = IWAE(5, estimator=estimator).differentiable_loss(m.model, m.guide, x)
    ours.backward()
    g_ours = _grads(m)
    m.zero_grad()
    pyro.set_rng_seed(4)
    renyi = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=2)
    theirs = renyi.loss_and_grads(m.model, m.guide, x)
    assert ours.item() == pytest.approx(theirs, rel=1e-12)
    if estimator == "iwae":  # DReG has another guide gradient by design
        for name, g in _grads(m).items():
            torch.testing.assert_close(g_ours[name], g, rtol=1e-10, atol=1e-10)


def test_structural_checks_run_once_per_signature():
    m = PlainVAE()
    x = _binary(6, 12)
    loss = IWAE(5)
    for _ in range(4):
        loss.loss_and_grads(m.model, m.guide, x)
    assert loss.structure_checks.runs == 1
    loss.loss_and_grads(m.model, m.guide, _binary(4, 12))  # another batch size: checked
    assert loss.structure_checks.runs == 2
    loss.loss_and_grads(m.model, m.guide, x)  # seen before
    assert loss.structure_checks.runs == 2
    pyro.enable_validation(False)
    loss.loss_and_grads(m.model, m.guide, x)
    assert loss.structure_checks.runs == 2


def test_a_structural_change_between_steps_is_still_caught():
    m = PlainVAE()
    x = _binary(6, 12)
    loss = IWAE(5, max_plate_nesting=1)
    for _ in range(3):
        loss.loss_and_grads(m.model, m.guide, x)
    # a new latent site in the model that the guide lacks
    m.extra = True
    with pytest.warns(UserWarning, match="model but not guide"):
        loss.loss(m.model, m.guide, x)
    m.extra = False
    loss.loss(m.model, m.guide, x)
    # one more plate around the data: more plates than max_plate_nesting allows
    m.extra_plate = True
    for _ in range(2):  # a failed check is not remembered
        with pytest.raises(ValueError, match="plate stack overflow"):
            loss.loss(m.model, m.guide, x)
    m.extra_plate = False
    loss.loss(m.model, m.guide, x)
    # checked: the first step, the new site, the extra plate twice; the rest was remembered
    assert loss.structure_checks.runs == 4


def test_a_guide_of_another_shape_is_still_caught_after_good_steps():
    pair = GaussianPair()
    x = torch.randn(4, 1)
    loss = IWAE(3)
    for _ in range(3):
        loss.loss(pair.model, pair.guide, x)
    pair.width = 1  # runs (the model sums z), but the guide's z has another shape
    for _ in range(2):
        with pytest.raises(ValueError, match="shapes disagree"):
            loss.loss(pair.model, pair.guide, x)
    pyro.enable_validation(False)  # what the check protects against: a silent broadcast
    assert math.isfinite(loss.loss(pair.model, pair.guide, x))


@pytest.mark.parametrize(
    "bad, match",
    [
        (0.5, "support"),
        (2.0, "support"),
        (-1.0, "support"),
        (float("nan"), "invalid values"),  # caught already at the encoder's output
    ],
)
def test_bad_data_is_rejected_on_every_step(bad, match):
    m = PlainVAE()
    x = _binary(6, 12)
    loss = IWAE(5)
    for _ in range(3):  # the structure is remembered by now
        loss.loss_and_grads(m.model, m.guide, x)
    bad_x = x.clone()
    bad_x[2, 5] = bad
    for _ in range(2):
        with pytest.raises(ValueError, match=match):
            loss.loss_and_grads(m.model, m.guide, bad_x)
    loss.loss_and_grads(m.model, m.guide, x)  # and good data still passes


def test_nan_in_a_gaussian_observation_is_rejected_on_every_step():
    pair = GaussianPair()
    x = torch.randn(4, 1)
    loss = IWAE(3)
    for _ in range(3):
        loss.loss(pair.model, pair.guide, x)
    bad = x.clone()
    bad[1, 0] = float("nan")
    for _ in range(2):
        with pytest.raises(ValueError, match="support"):
            loss.loss(pair.model, pair.guide, bad)
    # +inf and -inf sum to NaN without a NaN in the data: the full check lets them through
    both = torch.tensor([[float("inf")], [-float("inf")], [0.0], [1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loss is not finite, and Pyro says so
        loss.loss(pair.model, pair.guide, both)
