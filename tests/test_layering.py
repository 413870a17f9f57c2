"""The package's layering, read from its source: no forbidden import arrow and no cycle.

Every ``import`` and ``from ... import`` statement of every module under ``pyrogen/`` is read
with :mod:`ast` (module-level and function-level imports alike: a lazy import is still a
dependency), resolved to the pyrogen module it names, and checked against the layering of
``DESIGN.md``:

* ``distributions`` know no ``models``, ``infer``, ``train``;
* ``nn`` knows no ``models``, ``infer`` and does not call Pyro;
* ``data`` knows no ``models``, ``infer``;
* ``infer`` knows no ``models``;
* ``train`` knows no ``models``, ``families``, ``cli``;
* ``evaluate`` knows no ``models`` (models call their estimators, not the reverse);
* ``models`` know no ``families``, ``registry``, ``runs`` (the registry builds models);
* nothing imports ``cli``;

and no two modules import each other, directly or through others (no cycle), and no two
layers do either.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyrogen"

#: layer -> layers (or external top-level packages) it must not import
FORBIDDEN = {
    "distributions": {"models", "infer", "train", "runs", "families", "registry"},
    "nn": {"models", "infer", "distributions", "train", "runs", "families", "registry", "pyro"},
    "data": {"models", "infer", "distributions", "nn", "train", "runs", "families", "registry"},
    "infer": {"models", "train", "runs", "families", "registry"},
    "evaluate": {"models", "train", "runs", "families", "registry"},
    "train": {"models", "families", "runs", "registry"},
    # models may call the engine in a `fit` convenience (train knows no models: no cycle)
    "models": {"runs", "families", "registry"},
    "registry": {"runs"},
    "families": {"runs"},
}
#: nothing imports the command line
NOBODY_IMPORTS = {"cli"}
#: ... but the entry point that runs it (``python -m pyrogen``, what ``torchrun -m`` starts)
ENTRY_POINTS = {"pyrogen.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    """``pyrogen.distributions.rbm`` -> ``distributions``; ``pyrogen.train`` -> ``train``;
    an external module -> its top-level package (``pyro``, ``torch``)."""
    parts = module.split(".")
    if parts[0] != "pyrogen":
        return parts[0]
    return parts[1] if len(parts) > 1 else "pyrogen"


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in ``path``; ``from a import b`` names
    ``a.b`` when that is a module of the package, ``a`` otherwise."""
    module = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = _resolve_relative(module, is_package, node.level, node.module)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in known else target, node.lineno))
    return found


def import_graph() -> dict[str, list[tuple[str, int]]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    graph = {}
    for f in files:
        edges = []
        for target, line in imports_of(f, known):
            # `import pyrogen.a.b` depends on pyrogen.a.b (the deepest known module)
            while target not in known and "." in target and target.startswith("pyrogen"):
                target = target.rsplit(".", 1)[0]
            edges.append((target, line))
        graph[module_name(f)] = edges
    return graph


def forbidden_arrows(graph) -> list[str]:
    bad = []
    for module, edges in graph.items():
        src = layer_of(module)
        for target, line in edges:
            dst = layer_of(target)
            if dst == src:
                continue
            if dst in FORBIDDEN.get(src, ()) or (
                target.startswith("pyrogen.")
                and dst in NOBODY_IMPORTS
                and module not in ENTRY_POINTS
            ):
                bad.append(f"{module} (line {line}) imports {target}: {src} -> {dst} is forbidden")
    return bad


def cycles(nodes, edges_of) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges_of(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    graph = import_graph()
    assert "pyrogen.distributions.rbm" in graph and "pyrogen.train" in graph
    targets = {t for t, _ in graph["pyrogen.distributions.rbm"]}
    assert "pyrogen.distributions.energy" in targets


def test_no_forbidden_arrow():
    bad = forbidden_arrows(import_graph())
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_no_module_cycle():
    graph = import_graph()
    internal = {m: [t for t, _ in e if t in graph and t != m] for m, e in graph.items()}
    found = cycles(sorted(internal), lambda m: internal[m])
    assert not found, f"import cycles between modules: {found}"


def test_no_layer_cycle():
    graph = import_graph()
    layers: dict[str, set[str]] = {}
    for module, edges in graph.items():
        src = layer_of(module)
        layers.setdefault(src, set())
        for target, _ in edges:
            dst = layer_of(target)
            if target in graph and dst != src and src != "pyrogen":
                layers[src].add(dst)
    found = cycles(sorted(layers), lambda m: sorted(layers.get(m, ())))
    assert not found, f"import cycles between layers: {found}"


@pytest.mark.parametrize(
    "source, extra, arrow",
    [
        ("distributions/rbm.py", "from pyrogen.models.rbm import RBM\n", "distributions -> models"),
        ("nn/mlp.py", "import pyro\n", "nn -> pyro"),
        ("train.py", "from pyrogen.families import vae\n", "train -> families"),
        ("infer/cd.py", "def f():\n    from pyrogen import cli\n", "infer -> cli"),
    ],
)
def test_an_added_arrow_is_caught(tmp_path, monkeypatch, source, extra, arrow):
    """The checker itself: adding one forbidden import to a copy of the package fails it."""
    import shutil

    copy = tmp_path / "pyrogen"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / source, "a") as f:
        f.write("\n" + extra)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    bad = forbidden_arrows(import_graph())
    assert any(arrow in line for line in bad), bad
