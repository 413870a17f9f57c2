"""The tutorial notebooks: each runs end to end in smoke mode, and is stored without outputs.

Smoke mode is what ``CI`` in the environment selects inside a notebook (``smoke_test = "CI" in
os.environ``): tiny data, one or two epochs, few importance samples. The kernel is Jupyter's
``python3`` kernel, which runs the interpreter running the tests (ipykernel's native kernel
spec; jupyter_client substitutes ``sys.executable`` for its ``python``), so it sees the same
installed pyrogen. It inherits this process's environment: ``PYROGEN_DATA`` decides whether a
notebook uses the real data files or its shipped fallback, nothing is ever downloaded
(``PYROGEN_NO_DOWNLOAD=1``), figures go to matplotlib's Agg backend, and torch uses one thread.
``.ci/run`` runs this file twice: with the data folder, and as a fresh clone sees it (no
``PYROGEN_DATA``, an empty cache folder), where every tutorial must run on shipped data.

Tutorials show the current API: a setup cell run before the notebook's own (and not stored in
it) turns every ``DeprecationWarning`` that pyrogen raises into an error, whether the notebook
called a deprecated name or pyrogen did internally.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("jupyter_client.kernelspec")

TUTORIALS = Path(__file__).parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
KERNEL = "python3"
TIMEOUT_S = 600  # per cell

#: Every family reports a test log-likelihood (see DESIGN.md, "Evaluation protocol"), and
#: ``LogLikelihood.summary()`` prints it as "test log-likelihood: <mean> ± <stderr> nats...".
LOG_LIKELIHOOD = re.compile(r"test log-likelihood: (-?\d+\.\d+) ± (\d+\.\d+) nats")


#: Run in the kernel before the notebook: a DeprecationWarning raised by pyrogen's own code
#: (``warnings.warn`` called from a ``pyrogen`` module) becomes an error that names it.
#: Filtering by module would not do: pyrogen warns with ``stacklevel`` pointing at the
#: caller, so a notebook's deprecated call is attributed to ``__main__``.
STRICT_DEPRECATIONS = """\
import sys
import warnings

_pyrogen_warn = warnings.warn


def _strict_warn(message, category=None, stacklevel=1, *args, **kwargs):
    if category is None:
        category = type(message) if isinstance(message, Warning) else UserWarning
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if caller.split(".")[0] == "pyrogen" and issubclass(category, DeprecationWarning):
        raise category(f"a tutorial used a deprecated pyrogen API: {message}")
    return _pyrogen_warn(message, category, stacklevel + 1, *args, **kwargs)


warnings.warn = _strict_warn
"""


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _stream_text(nb) -> str:
    """All text a notebook's code cells wrote to stdout (streams and plain-text results)."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                parts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_tutorials_exist():
    assert NOTEBOOKS, f"no notebooks found in {TUTORIALS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL, (
        f"{path.name}: metadata.kernelspec.name should be {KERNEL!r}"
    )
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or an execution count; strip them "
        "(e.g. `jupyter nbconvert --clear-output --inplace`) before committing"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_smoke_mode(path: Path, monkeypatch: pytest.MonkeyPatch):
    if KERNEL not in kernelspec.find_kernel_specs():
        pytest.fail(
            f"no {KERNEL!r} Jupyter kernel: install ipykernel in this environment "
            f"(or run `python -m ipykernel install --sys-prefix --name {KERNEL}`)"
        )
    # The kernel is started by this process and inherits its environment.
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYROGEN_NO_DOWNLOAD", "1")
    # One intra-op thread: smoke-sized tensors gain nothing from more, and on a busy machine
    # (parallel test workers, a benchmark next door) torch's OpenMP threads waiting on each
    # other slow small operations down by up to a hundredfold.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(STRICT_DEPRECATIONS))
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    client.execute()  # raises CellExecutionError (with the traceback) if any cell fails

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells), "cells were skipped"
    errors = [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs: {errors}"

    text = _stream_text(nb)
    found = LOG_LIKELIHOOD.findall(text)
    assert found, f"{path.name}: no cell printed a 'test log-likelihood: ...' summary"
    for mean, stderr in found:
        # Binary images: log p(x) <= 0, and it is finite.
        assert float(mean) < 0 and float(stderr) >= 0, (mean, stderr)
