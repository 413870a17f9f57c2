"""IndependentBernoulli: the fused log-density against torch's Bernoulli."""

import pytest
import torch
from pyro.distributions import Bernoulli

from pyrogen.distributions import IndependentBernoulli, bernoulli_log_prob


@pytest.mark.parametrize(
    "logit_shape, value_shape",
    [((7,), (7,)), ((3, 5, 7), (5, 7)), ((5, 7), (3, 5, 7)), ((3, 5, 7), (3, 1, 7))],
)
def test_log_prob_and_gradient_match_torch(float64, logit_shape, value_shape):
    torch.manual_seed(0)
    logits = (3 * torch.randn(logit_shape)).requires_grad_()
    value = (torch.rand(value_shape) < 0.4).double()
    ours = IndependentBernoulli(logits).log_prob(value)
    theirs = Bernoulli(logits=logits).to_event(1).log_prob(value)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), logits)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)


def test_gradcheck_and_extreme_logits(float64):
    logits = torch.tensor([[-60.0, -3.0, 0.0, 2.5, 60.0]], requires_grad=True)
    value = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0]])
    assert torch.autograd.gradcheck(lambda l: bernoulli_log_prob(l, value), (logits,))
    lp = bernoulli_log_prob(logits, value)
    assert torch.isfinite(lp).all()


def test_shapes_expand_sample_and_moments():
    d = IndependentBernoulli(torch.zeros(4, 6))
    assert d.batch_shape == (4,) and d.event_shape == (6,)
    e = d.expand((2, 4))
    assert e.batch_shape == (2, 4) and e.sample().shape == (2, 4, 6)
    s = d.sample((1000,))
    assert set(s.unique().tolist()) == {0.0, 1.0}
    assert abs(s.mean().item() - 0.5) < 0.03  # 24000 fair coins: sd 0.003
    torch.testing.assert_close(d.mean, torch.full((4, 6), 0.5))
    ent = Bernoulli(logits=torch.zeros(4, 6)).entropy().sum(-1)
    torch.testing.assert_close(d.entropy(), ent)


def test_validation_names_the_bad_value():
    d = IndependentBernoulli(torch.zeros(2, 3), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="logits"):
        IndependentBernoulli(torch.tensor(0.3))


@pytest.mark.parametrize("wrapped", ["logits", "value"])
def test_bernoulli_log_prob_keeps_its_graph_for_tensor_subclasses(wrapped):
    # TraceGraph_ELBO hands Pyro's ProvenanceTensors (a torch.Tensor subclass) to the
    # log-density: the logits of an observation below a discrete latent are one. The fused
    # kernel once returned a result without a graph there (every gradient silently zero).
    from pyro.ops.provenance import ProvenanceTensor

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 6, generator=g, requires_grad=True)
    value = (torch.rand(5, 6, generator=g) < 0.5).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(value).sum(-1)
    (grad_expected,) = torch.autograd.grad(expected.sum(), logits)
    args = {"logits": logits, "value": value}
    args[wrapped] = ProvenanceTensor(args[wrapped], frozenset({"h1"}))
    got = IndependentBernoulli(args["logits"]).log_prob(args["value"])
    assert got.grad_fn is not None
    (grad,) = torch.autograd.grad(got.sum(), logits)
    torch.testing.assert_close(torch.as_tensor(got).detach(), expected.detach())
    torch.testing.assert_close(grad, grad_expected)
