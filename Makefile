# pyrogen developer tasks. Every target creates .venv (and installs) when needed.
#
# On machines that carry a local CPU build of torch (this project's CI machines do), the
# install step takes it first so that pip never downloads a multi-GB CUDA build; everywhere
# else the package's ordinary requirement (torch>=2.4) applies.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_LOCAL ?= torch==2.13.0+cpu
EXTRAS ?= test
STAMP := $(VENV)/.installed-$(EXTRAS)

# demo settings: DATASET=auto uses binarized MNIST when its files are found locally
# (root, $$PYROGEN_DATA or ~/.cache/pyrogen) and scikit-learn's shipped digits otherwise.
DATASET ?= auto
DEMO_OUT ?= runs/demo
DEMO_FLAGS ?=

.PHONY: setup demo test lint format bench tutorials docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet "$(TORCH_LOCAL)" \
		|| echo "pyrogen: no local CPU build ($(TORCH_LOCAL)); using the ordinary torch>=2.4 requirement"
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	@touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pyrogen demo --dataset $(DATASET) --out $(DEMO_OUT) $(DEMO_FLAGS)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check pyrogen tests benchmarks tutorials docs
	$(VENV)/bin/ruff format --check pyrogen tests benchmarks tutorials docs

format: $(STAMP)
	$(VENV)/bin/ruff format pyrogen tests benchmarks tutorials docs
	$(VENV)/bin/ruff check --fix pyrogen tests benchmarks tutorials docs

bench:
	$(MAKE) EXTRAS=test,bench setup
	$(PY) benchmarks/iwae_speed.py
	$(PY) benchmarks/vae_quality.py

tutorials: $(STAMP)
	CI=1 $(PY) -m pytest -q tests/test_tutorials.py

# the API reference (docs/_build/html/index.html), warnings as errors, every public module
docs:
	$(MAKE) EXTRAS=test,docs setup
	rm -rf docs/_build docs/generated
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(PY) docs/check_coverage.py

clean:
	rm -rf $(VENV) runs build *.egg-info docs/_build docs/generated
