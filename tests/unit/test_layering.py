"""Layers point one way: no import cycle between hpi_triton's modules (function-local imports
included, so none hides a cycle), and the rules the layout rests on."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[2] / "hpi_triton"


def import_graph() -> Dict[str, Set[str]]:
    """Module → the hpi_triton modules it imports anywhere in its body."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base
                                                                             else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_check_is_not_vacuous():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def _reaches(graph, start: str) -> Set[str]:
    seen, todo = set(), [start]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


@pytest.mark.parametrize("layer, forbidden", [
    # The code shipped into tritonserver reaches nothing else of hpi_triton.
    ("hpi_triton.python_backend", ("hpi_triton.generator", "hpi_triton.triton_models",
                                   "hpi_triton.ensembles", "hpi_triton.licensing",
                                   "hpi_triton.server", "hpi_triton.cli", "hpi_triton.errors")),
    # The plan is a leaf: the build, the pipelines and licensing build on it.
    ("hpi_triton.generator.plan", ("hpi_triton.generator.build", "hpi_triton.ensembles",
                                   "hpi_triton.licensing", "hpi_triton.cli")),
    # The build is handed pipelines and transforms; it imports neither.
    ("hpi_triton.generator.build", ("hpi_triton.ensembles", "hpi_triton.licensing",
                                    "hpi_triton.cli", "hpi_triton.server")),
    # Backends convert and verify over core/; they know no build, pipeline or licence.
    ("hpi_triton.triton_models", ("hpi_triton.generator", "hpi_triton.ensembles",
                                  "hpi_triton.transforms", "hpi_triton.licensing",
                                  "hpi_triton.server", "hpi_triton.client", "hpi_triton.cli")),
    # core/ is the bottom: model dirs, cache, isolation, verification.
    ("hpi_triton.core", ("hpi_triton.generator", "hpi_triton.triton_models",
                         "hpi_triton.ensembles", "hpi_triton.transforms", "hpi_triton.server",
                         "hpi_triton.client", "hpi_triton.licensing", "hpi_triton.cli")),
    # The build writes; serving and measuring what it wrote is the transforms' (above both).
    ("hpi_triton.generator", ("hpi_triton.server", "hpi_triton.client", "hpi_triton.aio",
                              "hpi_triton.transforms", "hpi_triton.paddlex_api",
                              "hpi_triton.cli")),
    # The server knows no build.
    ("hpi_triton.server", ("hpi_triton.generator", "hpi_triton.transforms",
                           "hpi_triton.ensembles", "hpi_triton.cli")),
    # Pipelines declare and write graphs; they neither serve nor measure.
    ("hpi_triton.ensembles", ("hpi_triton.server", "hpi_triton.client",
                              "hpi_triton.transforms", "hpi_triton.cli")),
    # Inside the runtime: documents build on OCR, both on the doc_preprocessor, not back.
    ("hpi_triton.python_backend.ocr", ("hpi_triton.python_backend.documents",)),
    ("hpi_triton.python_backend.doc_preprocessor", ("hpi_triton.python_backend.ocr",
                                                    "hpi_triton.python_backend.documents")),
])
def test_layer_rules(layer, forbidden):
    graph = import_graph()
    for module in [m for m in graph if m == layer or m.startswith(layer + ".")]:
        bad = sorted(m for m in _reaches(graph, module)
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        assert not bad, f"{module} reaches {bad}"


def _package(module: str) -> str:
    """hpi_triton.<package> (python_backend: one level deeper, its own packages)."""
    parts = module.split(".")
    return ".".join(parts[:3] if parts[1:2] == ["python_backend"] else parts[:2])


def test_no_two_packages_point_at_each_other():
    """Collapsed to packages (generator, core, triton_models, ensembles, transforms, server,
    ...; python_backend's ocr, documents, ...), the imports still form no cycle."""
    graph: Dict[str, Set[str]] = {}
    for module, targets in import_graph().items():
        graph.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module))
    for targets in list(graph.values()):
        for target in targets:
            graph.setdefault(target, set())
    assert cycles(graph) == []
