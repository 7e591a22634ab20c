"""The package's import graph: every module sits in a layer, imports only its own layer or lower ones, and no two
modules import each other, directly or round a longer circle. Imports inside functions (and under
``TYPE_CHECKING``) count: they are dependencies too, only deferred."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurocircuit"

#: Lowest first. A module belongs to the layer of the longest pattern that matches it (``x.*``: x's submodules).
#: The built-in backends are plugins loaded by name (``backends._BUILTIN``), as entry points would be: the
#: interface depends on no backend, each backend on the interface.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("neurocircuit._version", "neurocircuit.errors", "neurocircuit._reads", "neurocircuit._toml",
              "neurocircuit.pool", "neurocircuit.progress", "neurocircuit.limits",
              "neurocircuit.axis_values")),
    ("descriptions", ("neurocircuit.rules", "neurocircuit.circuit", "neurocircuit.phases", "neurocircuit.transforms",
                      "neurocircuit.datasets", "neurocircuit.results", "neurocircuit.selection")),
    ("torch rule layers", ("neurocircuit.torch.nn", "neurocircuit.torch.nn.*")),
    ("registries", ("neurocircuit.registry", "neurocircuit.backends", "neurocircuit.data", "neurocircuit.images")),
    ("schema", ("neurocircuit.simulation",)),
    ("running", ("neurocircuit.runs", "neurocircuit.outdir")),
    ("torch backend", ("neurocircuit.torch", "neurocircuit.torch.*")),
    ("brian2 backend", ("neurocircuit.brian", "neurocircuit.brian.*")),
    ("public aliases", ("neurocircuit.nn", "neurocircuit.nn.*")),
    ("tools", ("neurocircuit.sweep", "neurocircuit.sweep_points", "neurocircuit.plotting", "neurocircuit.run_figures",
               "neurocircuit.figure_style",
               "neurocircuit.book", "neurocircuit.book.*", "neurocircuit.tables", "neurocircuit.tables.*",
               "neurocircuit.api")),
    ("entry points", ("neurocircuit.cli", "neurocircuit.cli_book", "neurocircuit.__main__", "neurocircuit")),
]


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            hit = module.startswith(pattern[:-1]) if pattern.endswith(".*") else module == pattern
            if hit and len(pattern) > best_len:
                best, best_len = index, len(pattern)
    return best


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports anywhere in its source (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from a import b` imports a, and a.b where b is a module
            targets = [origin] + [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a package resolves to the deepest module
                target = target.rpartition(".")[0]
            ancestor = module.startswith(target + ".")  # a parent package is imported first anyway
            if target and target != module and not ancestor and target.startswith("neurocircuit"):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    known = set(names)
    return {module: imports_of(module, path, known) for module, path in names.items()}


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in module_names() if layer_of(m) < 0)
    assert not missing, f"modules without a layer in tests/test_architecture.py LAYERS: {missing}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    graph = import_graph()
    upward = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})"
                    for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))
    assert not upward, "imports running back up:\n" + "\n".join(upward)


def test_no_circles() -> None:
    graph = import_graph()
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, f"modules that import each other (directly or round a circle): {circles}"


def test_the_graph_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    # the reader itself: a deferred import counts, a relative import resolves, a non-package import and the
    # module's own parent packages are not edges
    source = tmp_path / "mod.py"
    source.write_text("import os\n\ndef f():\n    from ..errors import ConfigError\n    from . import phases\n")
    found = imports_of("neurocircuit.torch.mod", source, {"neurocircuit.errors", "neurocircuit.torch.phases",
                                                          "neurocircuit.torch", "neurocircuit"})
    assert found == {"neurocircuit.errors", "neurocircuit.torch.phases"}


def test_the_rule_layers_load_without_the_trainer() -> None:
    # the torch package's __init__ loads its names lazily: the parent-package edges the graph skips stay empty
    code = ("import sys, neurocircuit.torch.nn; print(sorted(m for m in sys.modules "
            "if m.startswith('neurocircuit.torch.') and not m.startswith('neurocircuit.torch.nn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.split() == ["[]"]


@pytest.mark.parametrize("module", ["neurocircuit.simulation", "neurocircuit.torch.settings", "neurocircuit"])
def test_the_schema_imports_neither_torch_nor_brian2(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules, 'brian2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.split() == ["False", "False"]


def test_no_module_is_much_over_500_lines() -> None:
    long = {m: n for m, p in module_names().items() if (n := len(p.read_text().splitlines())) > 520}
    assert not long, f"modules over ~500 lines (split them by job): {long}"


def test_every_subpackage_is_installed() -> None:
    # pyproject.toml lists the packages by hand (models/ and simulations/ are mapped in): a new folder must be added
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, f"packages missing from pyproject.toml: {sorted(folders - listed)}"


def test_the_layers_in_docs_architecture_are_these() -> None:
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    listed = []
    for number, name, rest in re.findall(r"^(\d+)\. ([^:\n]+): (.*)$", doc, flags=re.M):
        modules = {m if m == "neurocircuit" else f"neurocircuit.{m}" for m in re.findall(r"`([^`]+)`", rest)}
        listed.append((int(number), name.lower(), modules))
    assert listed == [(i + 1, name, set(patterns)) for i, (name, patterns) in enumerate(LAYERS)]
