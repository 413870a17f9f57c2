"""The pieces every model shares (models/base.py) and the names kept for one release."""

from __future__ import annotations

import pytest
import torch

from pyrogen.data import load
from pyrogen.models import (
    PSD,
    RBM,
    VAE,
    Autoencoder,
    DeepBoltzmannMachine,
    KMeansFeatures,
    SparseCoding,
)
from pyrogen.models.base import GenerativeModel, Representation, default_image_shape
from pyrogen.nn import NADENet
from pyrogen.nn.init import logit_of_mean
from pyrogen.registry import DataInfo, get_family


def test_fresh_names_image_shapes_and_widths():
    a, b = VAE(16, (2,), ((4,),)), VAE(16, (2,), ((4,),))
    assert a._pyro_name != b._pyro_name and a._pyro_name.startswith("vae")
    assert RBM(16, 3)._pyro_name.startswith("rbm")
    assert default_image_shape(16) == (4, 4) and default_image_shape(12) == (1, 12)
    assert default_image_shape(12, (3, 4)) == (3, 4)
    with pytest.raises(ValueError, match="does not hold num_features=12"):
        default_image_shape(12, (5, 5))
    for model in (VAE(16, (2,), ((4,),)), RBM(16, 3), DeepBoltzmannMachine(16, (3, 2))):
        assert isinstance(model, GenerativeModel)
        assert model.num_features == 16 and model.image_shape == (4, 4)
        assert model.event_shape == (16,)


def test_output_bias_from_pixel_means_is_one_function():
    mean = torch.tensor([0.0, 0.25, 0.5, 1.0])
    like = torch.zeros(4, dtype=torch.float64)
    out = logit_of_mean(mean, like)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[1:3], torch.tensor([-1.0986123, 0.0], dtype=torch.float64))
    assert out[0] == torch.logit(torch.tensor(1e-3, dtype=torch.float64))  # clamped
    with pytest.raises(ValueError, match="expected 4 values, got 3"):
        logit_of_mean(mean[:3], like)
    # the same initialisation in a VAE's decoder, an RBM's visible bias, a NADE's output
    torch.testing.assert_close(
        VAE(4, (2,), ((3,),), pixel_mean=mean).decoder.output_layer.bias, out.float()
    )
    torch.testing.assert_close(RBM(4, 2, pixel_mean=mean).visible_bias, out.float())
    torch.testing.assert_close(NADENet(4, 3).init_output_bias(mean).output_bias, out.float())


def test_deterministic_models_follow_the_sibling_protocol():
    x = torch.randn(40, 6)
    for model in (
        Autoencoder.linear(6, 2),
        SparseCoding(4, alpha=0.1, max_epochs=1).fit(x),
        PSD(6, 4).fit(x, epochs=1),
        KMeansFeatures(3, seed=0).fit(x),
    ):
        assert isinstance(model, Representation), type(model).__name__
        assert model.reconstruct(x).shape == x.shape, type(model).__name__
        assert model.num_features == 6


def test_old_names_warn_and_still_work():
    with pytest.warns(DeprecationWarning, match="num_features"):
        assert DataInfo(16, (4, 4)).num_pixels == 16
    digits = load("digits", "train")
    with pytest.warns(DeprecationWarning, match="num_features"):
        assert digits.num_pixels == digits.num_features == 64
    with pytest.warns(DeprecationWarning, match="num_particles"):
        assert get_family("vae").config(k=7).num_particles == 7
    with pytest.warns(DeprecationWarning, match="hidden"):
        cfg = get_family("dbm").config(hidden1=30, hidden2=20)
    assert cfg.hidden == (30, 20)
    assert get_family("dbm").config(hidden="40,10,5").hidden == (40, 10, 5)
    with pytest.raises(ValueError, match="positive integers"):
        get_family("dbm").config(hidden="40,x")
    rbm = RBM(16, 3)
    assert (rbm.num_features, rbm.hidden, rbm.num_visible, rbm.num_hidden) == (16, 3, 16, 3)


def test_old_family_calls_of_the_tutorials_warn_and_still_work():
    x = load("digits", "train").data[:100]
    test = load("digits", "test").data[:30]
    rbm_family = get_family("rbm")
    cfg = rbm_family.config(hidden=6, chains=10)
    rbm = rbm_family.build(cfg, DataInfo(64, (8, 8), x.mean(0)))
    with pytest.warns(DeprecationWarning, match="steps_per_epoch"):
        learner = rbm_family.learner(rbm, cfg, 1e-3, steps_per_epoch=13)
    learner.step(x)
    with pytest.warns(DeprecationWarning, match="num_chains"):
        result = rbm_family.log_likelihood(rbm, cfg, test, num_samples=5, progress=False)
    assert result.num_examples == 30 and result.is_exact  # 6 hidden units: enumerated
    with pytest.warns(DeprecationWarning, match="model.sample"):
        grid = rbm_family.sample(rbm, 4)
    assert grid.shape == (4, 64) and 0 <= grid.min() and grid.max() <= 1
    nade = get_family("nade")
    model = nade.build(nade.config(hidden=4), DataInfo(64, (8, 8)))
    with pytest.warns(DeprecationWarning, match="exact"):
        assert nade.log_likelihood(model, nade.config(), test, num_samples=1).is_exact
