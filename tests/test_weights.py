"""pyrogen.infer._weights: fused site log-densities, their value checks, the particle plate."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.distributions import IndependentBernoulli
from pyrogen.infer._weights import (
    StructureChecks,
    compute_log_weights,
    run_particles,
    site_log_prob,
)


def _cases():
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    binary = (torch.rand(4, 6, generator=g) < 0.4).double()

    def bern(**kw):
        return dist.Bernoulli(**kw).to_event(1)

    return [
        # (name, distribution factory of its parameters, parameters, value)
        ("bernoulli logits", lambda l: bern(logits=l), [r(3, 4, 6)], binary),
        ("bernoulli probs", lambda p: bern(probs=p), [r(4, 6).sigmoid()], binary),
        ("bernoulli value wider", lambda l: bern(logits=l), [r(6)], binary),
        ("pyrogen IndependentBernoulli", IndependentBernoulli, [r(3, 4, 6)], binary),
        (
            "bernoulli 2 event dims",
            lambda l: dist.Bernoulli(logits=l).to_event(2),
            [r(3, 4, 6)],
            binary,
        ),
        (
            "torch bernoulli",
            lambda l: torch.distributions.Independent(torch.distributions.Bernoulli(logits=l), 1),
            [r(3, 4, 6)],
            binary,
        ),
        (
            "normal",
            lambda m, s: dist.Normal(m, s).to_event(1),
            [r(4, 5), r(4, 5).exp()],
            r(3, 4, 5),
        ),
        (
            "normal expanded",
            lambda m, s: dist.Normal(m, s).expand([3, 4, 5]).to_event(1),
            [r(4, 5), r(4, 5).exp()],
            r(3, 4, 5),
        ),
        (
            "normal scalar params",
            lambda m, s: dist.Normal(m, s).expand([5]).to_event(1),
            [r(()), r(()).exp()],
            r(2, 5),
        ),
        (
            "normal 2 event dims",
            lambda m, s: dist.Normal(m, s).to_event(2),
            [r(4, 5), r(4, 5).exp()],
            r(3, 4, 5),
        ),
        ("normal no event dim", lambda m, s: dist.Normal(m, s), [r(4, 5), r(4, 5).exp()], r(4, 5)),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_fused_log_prob_equals_the_distributions_own(case):
    _, make, params, value = case
    params = [p.clone().requires_grad_() for p in params]
    value = value.clone().requires_grad_(value.dtype.is_floating_point and "normal" in case[0])
    fn = make(*params)
    ours = site_log_prob(fn, value)
    theirs = fn.log_prob(value)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    inputs = params + ([value] if value.requires_grad else [])
    w = torch.randn(ours.shape, dtype=ours.dtype)
    g_ours = torch.autograd.grad((ours * w).sum(), inputs, retain_graph=True)
    g_theirs = torch.autograd.grad((theirs * w).sum(), inputs)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


_SPECIAL = {
    "above 1": lambda t: torch.nextafter(t(1.0), t(2.0)),
    "below 1": lambda t: torch.nextafter(t(1.0), t(0.0)),
    "smallest denormal": lambda t: torch.nextafter(t(0.0), t(1.0)),
}


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, -0.7, float("nan"), float("inf"), *_SPECIAL])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_bernoulli_rejects_every_non_binary_value(bad, dtype):
    logits = torch.zeros(2, 3, dtype=dtype)
    x = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=dtype)
    fn = dist.Bernoulli(logits=logits, validate_args=True).to_event(1)
    site_log_prob(fn, x)
    site_log_prob(fn, -x.abs() + 1)  # 1 - x, and -0.0 stays 0
    if bad in _SPECIAL:
        bad = _SPECIAL[bad](lambda v: torch.tensor(v, dtype=dtype))
        assert bad not in (0, 1)
    x[1, 2] = bad
    with pytest.raises(ValueError, match="support"):
        site_log_prob(fn, x)


def test_fused_normal_checks_its_value_like_torch():
    fn = dist.Normal(torch.zeros(3), 1.0, validate_args=True).to_event(1)
    site_log_prob(fn, torch.tensor([float("inf"), -float("inf"), 0.0]))  # real, NaN-free
    with pytest.raises(ValueError, match="support"):
        site_log_prob(fn, torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="event_shape"):
        site_log_prob(fn, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="broadcastable"):
        site_log_prob(dist.Normal(torch.zeros(2, 3), 1.0).to_event(1), torch.zeros(4, 3))


def test_fused_bernoulli_checks_the_value_shape_like_torch():
    fn = dist.Bernoulli(logits=torch.zeros(2, 3)).to_event(1)
    with pytest.raises(ValueError, match="event_shape"):
        site_log_prob(fn, torch.zeros(2, 4))
    fn.base_dist._validate_args = False  # off: nothing is checked, as in torch
    site_log_prob(fn, torch.full((2, 3), 0.5))


def _pair(x_dim=5, z_dim=2):
    w = torch.randn(z_dim, x_dim)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z @ w.to(z.dtype)).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))

    return model, guide


def test_signature_follows_shapes_plates_and_particles():
    model, guide = _pair()
    x = torch.ones(3, 5)

    def sig(x, k=4, nesting=1):
        m, g = run_particles(model, guide, (x,), {}, k, nesting)
        return StructureChecks.signature(m, g, nesting + 1)

    assert sig(x) == sig(x) is not None
    assert sig(x) != sig(torch.ones(2, 5))  # batch size
    assert sig(x) != sig(x, k=5)  # particles
    assert sig(x) != sig(x, nesting=2)  # plate dims
    assert sig(x) != sig(x.double())  # dtype


def test_compute_log_weights_without_checks_object_checks_every_call():
    model, guide = _pair()
    x = torch.ones(3, 5)
    checks = StructureChecks()
    for _ in range(3):
        m, g = run_particles(model, guide, (x,), {}, 4, 1)
        a = compute_log_weights(m, g, 1, checks)
        b = compute_log_weights(m, g, 1)
        torch.testing.assert_close(a.log_weights, b.log_weights)
    assert checks.runs == 1


def test_particle_plate_still_handles_params_with_event_dim():
    # pyro.param(..., event_dim=...) inside the plates gets the plate's checks as in Pyro
    def model(x):
        with pyro.plate("data", x.shape[0]):
            p = pyro.param("p", torch.zeros(3, 5), event_dim=1)
            pyro.sample("x", dist.Bernoulli(logits=p).to_event(1), obs=x)

    def guide(x):
        pass

    with pytest.raises(ValueError, match="invalid shape of pyro.param"):
        run_particles(model, guide, (torch.ones(4, 5),), {}, 2, 1)
    sites, _ = run_particles(model, guide, (torch.ones(3, 5),), {}, 2, 1)
    assert sites["x"]["fn"].batch_shape == (2, 3)


def test_fused_independent_bernoulli_checks_its_value():
    fn = IndependentBernoulli(torch.zeros(2, 3), validate_args=True)
    site_log_prob(fn, torch.ones(2, 3))
    with pytest.raises(ValueError, match="support"):
        site_log_prob(fn, torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="event_shape"):
        site_log_prob(fn, torch.ones(2, 4))
