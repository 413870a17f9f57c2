"""The VAE model/guide pair: sites, shapes, architecture, input errors, Pyro interop."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from pyrogen.infer import IWAE
from pyrogen.infer._weights import run_particles
from pyrogen.models import VAE


def _linear_shapes(module):
    return [tuple(m.weight.shape[::-1]) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_burda_architectures():
    one = VAE.burda(784, layers=1)
    assert _linear_shapes(one.encoders[0]) == [(784, 200), (200, 200), (200, 100)]  # loc+scale
    assert _linear_shapes(one.decoder) == [(50, 200), (200, 200), (200, 784)]
    two = VAE.burda(784, layers=2)
    assert _linear_shapes(two.encoders[0]) == [(784, 200), (200, 200), (200, 200)]
    assert _linear_shapes(two.encoders[1]) == [(100, 100), (100, 100), (100, 100)]
    assert _linear_shapes(two.priors[0]) == [(50, 100), (100, 100), (100, 200)]
    assert _linear_shapes(two.decoder) == [(100, 200), (200, 200), (200, 784)]
    assert all(
        isinstance(m, torch.nn.Tanh) for m in two.decoder if not isinstance(m, torch.nn.Linear)
    )
    with pytest.raises(ValueError, match="layers"):
        VAE.burda(784, layers=3)


def test_sites_shapes_and_plates():
    vae = VAE.burda(784, layers=2)
    x = (torch.rand(6, 784) < 0.2).float()
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    assert guide_tr.nodes["z1"]["value"].shape == (6, 100)
    assert guide_tr.nodes["z2"]["value"].shape == (6, 50)
    assert model_tr.nodes["x"]["is_observed"]
    for name in ("z1", "z2", "x"):
        frames = [f.name for f in model_tr.nodes[name]["cond_indep_stack"]]
        assert frames == ["data"]
    # vectorized over particles, the weights are (particles, batch)
    model_sites, guide_sites = run_particles(vae.model, vae.guide, (x,), {}, 5, 1)
    assert guide_sites["z2"]["value"].shape == (5, 6, 50)
    assert model_sites["x"]["fn"].batch_shape == (5, 6)


def test_output_bias_is_the_pixel_log_odds():
    mean = torch.linspace(0.0, 1.0, 16)
    vae = VAE(16, (2,), ((8,),), pixel_mean=mean)
    expected = torch.logit(mean.clamp(1e-3, 1 - 1e-3))
    torch.testing.assert_close(vae.decoder.output_layer.bias.detach(), expected)
    with pytest.raises(ValueError, match="16 values"):
        vae.init_output_bias(torch.zeros(15))


def test_image_shaped_input_is_accepted():
    vae = VAE(16, (2,), ((8,),), image_shape=(4, 4))
    x = (torch.rand(3, 4, 4) < 0.5).float()
    assert vae.guide(x).shape == (3, 2)
    assert vae.guide(x.unsqueeze(1)).shape == (3, 2)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.full((2, 16), 0.5), r"binary \(0/1\).*0\.5 at index \(0, 0\)"),
        (torch.tensor([[0.0] * 15 + [float("nan")]] * 2), "NaN"),
        (torch.zeros(2, 15), r"expected shape \(batch, 16\) or \(batch, 4, 4\), got \(2, 15\)"),
        (torch.zeros(2, 5, 5), "wrong size"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_problem(x, match):
    vae = VAE(16, (2,), ((8,),), image_shape=(4, 4))
    for fn in (vae.model, vae.guide):
        with pytest.raises(ValueError, match=match):
            fn(x)
    with pytest.raises(ValueError, match=match):
        IWAE(3).loss(vae.model, vae.guide, x)


def test_non_tensor_input_is_a_type_error():
    vae = VAE(16, (2,), ((8,),))
    with pytest.raises(TypeError, match="torch.Tensor"):
        vae.guide([[0.0] * 16])


def test_parameters_are_registered_only_when_observed():
    vae = VAE(16, (2,), ((8,),))
    x = torch.zeros(2, 16)
    tr = poutine.trace(vae.guide).get_trace(x)
    params = [n for n, s in tr.nodes.items() if s["type"] == "param"]
    assert len(params) == sum(1 for _ in vae.encoders.parameters())
    pyro.clear_param_store()
    run_particles(vae.model, vae.guide, (x,), {}, 3, 1)  # pyrogen's recorder only
    assert len(pyro.get_param_store()) == 0


def test_two_instances_train_their_own_parameters_under_svi():
    first, second = VAE(16, (2,), ((8,),)), VAE(16, (2,), ((8,),))
    assert first._pyro_name != second._pyro_name
    x = (torch.rand(8, 16) < 0.5).float()
    SVI(first.model, first.guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO()).step(x)
    before = [p.detach().clone() for p in second.parameters()]
    SVI(second.model, second.guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO()).step(x)
    after = list(second.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after))


def test_sample_and_reconstruct():
    vae = VAE(16, (2,), ((8,),))
    probs = vae.sample(5)
    assert probs.shape == (5, 16) and probs.min() >= 0 and probs.max() <= 1
    binary = vae.sample(5, mean=False)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    x = (torch.rand(3, 16) < 0.5).float()
    assert vae.reconstruct(x).shape == (3, 16)
    with pytest.raises(ValueError, match="num_samples"):
        vae.model(None)


def test_every_new_batch_is_checked():
    # The binary check runs once per batch object, never skipping a new batch.
    vae = VAE(16, (2,), ((8,),))
    for _ in range(3):
        good = (torch.rand(4, 16) < 0.5).float()
        vae.guide(good)
        vae.model(good)
        del good
        bad = torch.full((4, 16), 0.5)
        with pytest.raises(ValueError, match="binary"):
            vae.guide(bad)
    x = torch.zeros(4, 16)
    vae.guide(x)
    x[0, 0] = 0.25  # modified in place: checked again
    with pytest.raises(ValueError, match="binary"):
        vae.model(x)
