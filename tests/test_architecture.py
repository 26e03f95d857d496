"""The shape of the house: no import circle between packages, the pure packages do no I/O, and
the worker's functions stay short.

The checks read the source with :mod:`ast` (nothing is imported), so they see every import:
module level, inside functions, under ``if TYPE_CHECKING:``, relative ones, ``from convoi import
x`` and ``importlib.import_module("convoi.x")`` with a literal name.

Nodes of the package graph are the top-level parts of ``convoi``: a subpackage
(``convoi.reporting``, ``convoi.worker``) or a single module (``convoi.settings``); ``convoi``
itself (its ``__init__``) is a node too. Imports inside one node are not edges.

Nothing outside ``convoi.devstack`` imports it (stand-ins and test harnesses stay out of
production code).

Pure packages (:data:`PURE`) hold the call's rules: the status machine, greetings, overrides, the
call spec and the definitions. They may not import networking, databases, subprocesses, LiveKit or
web frameworks (:data:`IO_MODULES`), neither directly nor through any ``convoi`` module they
import. ``convoi.definitions`` counts as pure including its loader: reading the YAML files of
``agents_config/`` with :mod:`pathlib` is the one input it has and is not in the forbidden list.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "convoi"

PURE = (
    "convoi.lifecycle",
    "convoi.greeting",
    "convoi.callspec",
    "convoi.definitions",
)
IO_MODULES = (
    "aiohttp",
    "httpx",
    "sqlite3",
    "sqlalchemy",
    "livekit",
    "socket",
    "asyncio.subprocess",
    "subprocess",
    "fastapi",
)
_IMPORT_FUNCTIONS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    """One imported name, where it is imported."""

    source: str
    """The importing module, e.g. ``convoi.worker.phone``."""
    target: str
    """What it names, e.g. ``convoi.telephony`` or ``convoi.telephony.dial``."""
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


Graph = dict[str, dict[str, Import]]
"""node → {imported node: the first import that makes the edge}."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve_relative(source: str, is_package: bool, level: int, module: str | None) -> str:
    base = source.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


@cache
def imports_of(path: Path) -> tuple[Import, ...]:
    """Every import in ``path``, anywhere in the file; ``from a import b`` yields ``a`` and ``a.b``."""
    source = module_name(path)
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend(Import(source, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(
                    source, path.name == "__init__.py", node.level, node.module
                )
            found.append(Import(source, base, node.lineno))
            found.extend(
                Import(source, f"{base}.{alias.name}", node.lineno)
                for alias in node.names
                if alias.name != "*"
            )
        elif isinstance(node, ast.Call) and _called_name(node.func) in _IMPORT_FUNCTIONS:
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(Import(source, arg.value, node.lineno))
    return tuple(found)


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def node_of(name: str) -> str | None:
    """The graph node holding module (or attribute) ``name``; None outside ``convoi``."""
    parts = name.split(".")
    if parts[0] != "convoi":
        return None
    if len(parts) == 1:
        return "convoi"
    top = parts[1]
    if (ROOT / top / "__init__.py").is_file() or (ROOT / f"{top}.py").is_file():
        return f"convoi.{top}"
    return "convoi"  # an attribute of convoi/__init__.py: ``from convoi import something``


def package_graph() -> Graph:
    """node → {imported node: the first import that makes the edge}."""
    graph: Graph = {}
    for name, path in modules().items():
        here = node_of(name)
        assert here is not None
        edges = graph.setdefault(here, {})
        for imp in imports_of(path):
            there = node_of(imp.target)
            if there is not None and there != here:
                edges.setdefault(there, imp)
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(c)) for c in components]


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """A shortest cycle through the component's first node (breadth first, inside it)."""
    start = min(component)
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, {})):
            if w == start:
                return [*paths[v], start]
            if w in component and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no cycle in component {sorted(component)}")  # pragma: no cover


def describe(cycle: list[str], graph: Graph) -> str:
    hops = [f"  {a} -> {b}  ({graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join(cycle) + "\n" + "\n".join(hops)


def is_io(name: str) -> bool:
    return any(name == m or name.startswith(f"{m}.") for m in IO_MODULES)


def io_imports_reachable_from(package: str) -> Iterator[tuple[list[str], Import]]:
    """I/O imports of ``package``'s modules and of every convoi module they import, with the path."""
    table = modules()
    start = [m for m in table if m == package or m.startswith(f"{package}.")]
    paths: dict[str, list[str]] = {m: [m] for m in start}
    queue = list(start)
    while queue:
        current = queue.pop(0)
        for imp in imports_of(table[current]):
            if is_io(imp.target):
                yield paths[current], imp
            target = _module_for(imp.target, table)
            if target is not None and target not in paths:
                paths[target] = [*paths[current], target]
                queue.append(target)


def _module_for(name: str, table: dict[str, Path]) -> str | None:
    """The convoi module ``name`` is, or is an attribute of (``convoi.x.f`` → ``convoi.x``)."""
    while name:
        if name in table:
            return name
        name = name.rpartition(".")[0]
    return None


# --- the checker checks ------------------------------------------------------------------------


@pytest.fixture
def fake_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, str]], Graph]]:
    """Write a fake ``src/convoi`` tree and return its package graph."""

    def make(files: dict[str, str]) -> Graph:
        root = tmp_path / "src" / "convoi"
        for rel, text in {"__init__.py": "", **files}.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        monkeypatch.setitem(globals(), "SRC", tmp_path / "src")
        monkeypatch.setitem(globals(), "ROOT", root)
        imports_of.cache_clear()
        return package_graph()

    yield make
    imports_of.cache_clear()


@pytest.mark.parametrize(
    "b_imports_a",
    [
        pytest.param("from convoi.a import f", id="from-module"),
        pytest.param("from convoi import a", id="from-convoi-import-package"),
        pytest.param("import convoi.a.inner", id="import-dotted"),
        pytest.param("def g():\n    from convoi.a.inner import f", id="deferred-in-function"),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from convoi.a import f",
            id="type-checking",
        ),
        pytest.param("from ..a import f", id="relative"),
        pytest.param("import importlib\nm = importlib.import_module('convoi.a')", id="importlib"),
    ],
)
def test_checker_sees_every_import_form(
    fake_tree: Callable[[dict[str, str]], Graph], b_imports_a: str
) -> None:
    graph = fake_tree(
        {
            "a/__init__.py": "from convoi.b.mod import g\n",
            "a/inner.py": "f = 1\n",
            "b/__init__.py": "",
            "b/mod.py": b_imports_a + "\n",
        }
    )
    cycles = find_cycles(graph)
    assert cycles == [["convoi.a", "convoi.b", "convoi.a"]], graph


def test_checker_names_single_modules_and_root_attributes(
    fake_tree: Callable[[dict[str, str]], Graph],
) -> None:
    graph = fake_tree(
        {
            "__init__.py": "from convoi.settings import Settings\n",
            "settings.py": "from convoi import VERSION\nclass Settings: ...\n",
        }
    )
    assert set(graph["convoi.settings"]) == {"convoi"}
    assert find_cycles(graph) == [["convoi", "convoi.settings", "convoi"]]


def test_checker_accepts_a_tree_without_circles(
    fake_tree: Callable[[dict[str, str]], Graph],
) -> None:
    graph = fake_tree(
        {
            "a/__init__.py": "from convoi.b import g\nfrom convoi.a import inner\n",
            "a/inner.py": "from . import x\n",
            "b/__init__.py": "import json\n",
        }
    )
    assert graph["convoi.a"].keys() == {"convoi.b"}
    assert find_cycles(graph) == []


def test_checker_finds_io_reached_through_another_convoi_module(
    fake_tree: Callable[[dict[str, str]], Graph],
) -> None:
    fake_tree(
        {
            "lifecycle/__init__.py": "from convoi.lifecycle.status import f\n",
            "lifecycle/status.py": "def f():\n    from convoi.util import g\n",
            "util.py": "from asyncio import subprocess\nimport json\n",
        }
    )
    found = [(path, str(imp)) for path, imp in io_imports_reachable_from("convoi.lifecycle")]
    assert found == [
        (
            ["convoi.lifecycle.status", "convoi.util"],
            "convoi.util:1 imports asyncio.subprocess",
        )
    ]


# --- the house ---------------------------------------------------------------------------------


def test_the_package_graph_has_no_cycle() -> None:
    graph = package_graph()
    assert {"convoi.lifecycle", "convoi.reporting", "convoi.worker"} <= graph.keys()
    cycles = find_cycles(graph)
    assert not cycles, "import circles between packages:\n" + "\n".join(
        describe(c, graph) for c in cycles
    )


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_io(package: str) -> None:
    assert package in modules(), f"{package} is gone: update PURE"
    found = [
        f"{imp}" + (f"  (reached via {' -> '.join(path)})" if len(path) > 1 else "")
        for path, imp in io_imports_reachable_from(package)
    ]
    assert not found, f"{package} reaches I/O:\n" + "\n".join(found)


def test_lifecycle_imports_nothing_of_convoi_but_itself() -> None:
    """The status vocabulary is the bottom of the house: everything may use it, it uses nothing."""
    assert set(package_graph()["convoi.lifecycle"]) == set()


def test_no_production_package_imports_the_devstack() -> None:
    """Stand-ins and test harnesses live in ``convoi.devstack``; production code never sees them."""
    graph = package_graph()
    importers = {
        f"{node} ({edges['convoi.devstack']})"
        for node, edges in graph.items()
        if "convoi.devstack" in edges
    }
    assert not importers, "production code imports the devstack:\n" + "\n".join(sorted(importers))


MAX_WORKER_FUNCTION_LINES = 60
"""The worker's call path stays readable: no function of ``convoi.worker`` is longer."""


def long_functions(package: Path, limit: int) -> list[str]:
    """``file:line name (N lines)`` of every function in ``package`` longer than ``limit``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(
                        f"{path.relative_to(package)}:{node.lineno} {node.name} ({length})"
                    )
    return found


def test_long_function_checker_finds_one(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert [f.split(" ", 1)[1] for f in long_functions(tmp_path, 60)] == ["long (62)"]


def test_worker_functions_are_short() -> None:
    assert long_functions(ROOT / "worker", MAX_WORKER_FUNCTION_LINES) == []
