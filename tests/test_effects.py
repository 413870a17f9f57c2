"""pyrogen._effects: the cached data plate behaves like a fresh pyro.plate."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrogen._effects import data_plate


def _model(outer: bool):
    def model():
        if outer:
            with pyro.plate("outer", 3):
                with data_plate("data", 5) as p:
                    pyro.sample("x", dist.Normal(0.0, 1.0))
        else:
            with data_plate("data", 5) as p:
                pyro.sample("x", dist.Normal(0.0, 1.0))
        return p

    return model


def test_data_plate_is_reused_and_picks_its_dim_afresh():
    first = poutine.trace(_model(False)).get_trace()
    assert first.nodes["x"]["value"].shape == (5,)
    # the same plate object, now under an outer plate that took dim -1: it moves to dim -2
    nested_plate = _model(True)()
    nested = poutine.trace(_model(True)).get_trace()
    assert nested.nodes["x"]["value"].shape == (5, 3)
    frames = {f.name: f.dim for f in nested.nodes["x"]["cond_indep_stack"]}
    assert frames == {"outer": -1, "data": -2}
    again = poutine.trace(_model(False)).get_trace()
    assert again.nodes["x"]["value"].shape == (5,)
    assert nested_plate is _model(False)()  # one cached object for ("data", 5)


def test_data_plate_checks_batch_shapes_like_pyro_plate():
    with pytest.raises(ValueError, match="Shape mismatch"):
        with data_plate("data", 4):
            pyro.sample("y", dist.Normal(torch.zeros(3), 1.0).to_event(0))
