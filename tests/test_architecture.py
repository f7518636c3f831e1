"""The shape of the code: stages import only the stages before them, no cycles, small modules.

Data flows one way: sources -> pathways -> model -> (training) -> screening -> handoff -> loop, with
``core`` under everything and ``pipelines`` and ``cli`` on top. Every import counts, the ones
inside functions and under ``TYPE_CHECKING`` too: an import moved into a function to dodge a cycle
is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Layers from the bottom up; a module may import its own layer and the ones before it.
LAYERS = ["core", "sources", "pathways", "model", "training", "screening", "handoff", "loop", "pipelines", "cli"]
#: Entry points: run as programs, they may call the command line (nothing imports them).
ENTRY_POINTS = {"screener.__main__", "pipelines.nightly"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("screener", "pipelines"):
        for path in (REPO / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Own modules imported anywhere in the file (module level, functions, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for t in targets:
            parts = t.split(".")
            for k in range(len(parts), 0, -1):  # the longest own module named
                cand = ".".join(parts[:k])
                if cand in MODULES:
                    if cand != name:
                        found.add(cand)
                    break
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer(module: str) -> int | None:
    """Index in :data:`LAYERS` (None for the package root and ``screener._version``)."""
    parts = module.split(".")
    if parts[0] == "pipelines":
        return LAYERS.index("pipelines")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    if module == "screener._version":
        return 0
    return None


def test_every_module_belongs_to_a_layer():
    loose = [m for m in MODULES if layer(m) is None and m not in ("screener", "screener.__main__")]
    assert not loose, f"modules outside the stage subpackages: {loose}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in ENTRY_POINTS and m != "screener"))
def test_a_layer_imports_only_the_layers_before_it(module):
    mine = layer(module)
    above = sorted(t for t in GRAPH[module] if t != "screener" and (layer(t) or 0) > mine)
    assert not above, f"{module} ({LAYERS[mine]}) imports a later stage: {above}"


def test_no_module_imports_the_package_root():
    offenders = sorted(m for m, targets in GRAPH.items() if "screener" in targets)
    assert not offenders, f"import the module that defines the name instead of `screener`: {offenders}"


def test_the_library_never_imports_pipelines():
    offenders = sorted((m, t) for m, targets in GRAPH.items() for t in targets
                       if m.startswith("screener") and not m.startswith("screener.cli")
                       and t.startswith("pipelines"))
    assert not offenders


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(GRAPH[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (cycle := visit(w)):
                return cycle
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(GRAPH):
        if v not in state:
            cycle = visit(v)
            assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{module} has {n} lines (> {MAX_LINES}): split it by responsibility"


def _private_imports(path: Path, own_package: str | None) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in ("screener", "pipelines"):
            package = ".".join(node.module.split(".")[:2])
            for a in node.names:
                if a.name.startswith("_") and a.name != "__version__" and package != own_package:
                    bad.append(f"{node.module}.{a.name}")
    return bad


def test_private_names_are_not_imported_across_packages():
    files = {p: ".".join(p.relative_to(REPO).parts[:2]) for p in MODULES.values()}
    files.update({p: None for d in ("tests", "benchmarks") for p in (REPO / d).rglob("*.py")})
    bad = {str(p.relative_to(REPO)): b for p, pkg in files.items() if (b := _private_imports(p, pkg))}
    assert not bad, bad
