"""Shared test set-up: Pyro validation on, a clean param store and fixed seeds per test."""

import os

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

# The tests run small models, for which one thread beats two (no thread wake-ups, and no
# collapse when another process holds the second core).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "requires_cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _pyro_state():
    pyro.enable_validation(True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """Run a test in double precision (for comparisons with closed forms)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def shared_data_root():
    root = os.environ.get("PYROGEN_DATA")
    if root and os.path.isdir(root):
        return root
    return None


requires_data = pytest.mark.skipif(
    shared_data_root() is None, reason="PYROGEN_DATA is not set to the offline data folder"
)
