"""The README's examples run against the package as it is.

Every ``pyrogen ...`` command line of the README parses with the command's own parser, and
every Python block runs, in order and in one namespace, in smoke mode: the substitutions
below shrink its budgets (epochs, importance samples, AIS temperatures, test images) and
nothing else. Blocks that need binarized MNIST run when ``PYROGEN_DATA`` points at the
offline data (as in CI); on a machine without it they are skipped.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import requires_data

from pyrogen import cli

README = Path(__file__).resolve().parent.parent / "README.md"

#: (pattern, replacement): the only changes made to the README's code in smoke mode
SMOKE = [
    (r"\bepochs=\d+", "epochs=1, max_steps=2"),
    (r"num_samples=5000", "num_samples=5"),
    (r'load\("binarized_mnist", "test"\)', 'load("binarized_mnist", "test").tensor()[:20]'),
    (r"\.log_likelihood\(test_set\)", ".log_likelihood(test_set, num_chains=4, betas=50)"),
    (r"\.split\(100\)", ".split(100)[:3]"),
    (r"limit=1000", "limit=20"),
    (r"natural_image_patches\(100_000", "natural_image_patches(2_000"),
    (r"SparseCoding\(n_atoms=256", "SparseCoding(n_atoms=16, max_epochs=1"),
]


def blocks(language: str) -> list[str]:
    text = README.read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def command_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("pyrogen "):
                lines.append(line)
    return lines


def test_the_readme_has_examples():
    assert len(blocks("python")) >= 4 and len(command_lines()) >= 8


@pytest.mark.parametrize("line", command_lines())
def test_every_command_line_parses(line):
    argv = shlex.split(line)[1:]
    if "--help" in argv:
        with pytest.raises(SystemExit) as exit_:
            cli.build_parser().parse_args(argv)
        assert exit_.value.code == 0
        return
    cli.build_parser().parse_args(argv)  # an unknown or mistyped flag exits with code 2


@requires_data
@pytest.mark.filterwarnings("ignore:PSIS k-hat")  # 5 importance samples after 2 steps
def test_python_examples_run_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write runs/... folders
    namespace: dict = {}
    for i, block in enumerate(blocks("python")):
        code = block
        for pattern, replacement in SMOKE:
            code = re.sub(pattern, replacement, code)
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"README python block {i + 1} failed:\n{code}") from error
    assert "result" in namespace and namespace["result"].num_examples == 20
