"""The package's shape: no import cycles, small modules, small functions.

Counted from the source, the way a reader meets it: every import statement counts,
those under ``if TYPE_CHECKING:`` and inside functions included, since each is a
dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "streamdata"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The package modules that the module ``name`` at ``path`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    yield f"{base}.{alias.name}"
                elif base in modules:
                    yield base


def _graph() -> nx.DiGraph[str]:
    modules = _modules()
    graph: nx.DiGraph[str] = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        graph.add_edges_from((name, target) for target in _imported(name, path, modules))
    graph.remove_edges_from(nx.selfloop_edges(graph))
    return graph


def test_the_import_graph_is_found() -> None:
    """The walker sees the package's imports (so an empty answer below means something)."""
    graph = _graph()
    assert ("streamdata._manager", "streamdata._models") in graph.edges
    assert graph.number_of_edges() > 100


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle among the package's modules, TYPE_CHECKING imports counted."""
    cycles = sorted(sorted(cycle) for cycle in nx.simple_cycles(_graph()))
    assert cycles == []


def test_no_module_is_over_400_lines() -> None:
    """Every module fits in a reader's head."""
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: size for name, size in sizes.items() if size > MAX_MODULE_LINES} == {}


def test_no_function_is_over_50_lines() -> None:
    """Every function, method included, fits on a screen."""
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert long == {}
