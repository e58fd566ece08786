"""No import cycle anywhere in ``hvballoon/``.

The graph is read statically from every module's ``import`` and ``from … import`` statements,
those inside functions included (a cycle hidden in a function is still a cycle: it only fails
later, and in an order that depends on what ran first). Imports under ``if TYPE_CHECKING:`` are
left out: they never run. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg``; the implicit import of a module's parent packages is not an edge (a
package's ``__init__`` re-exporting its submodules is not a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.source import imports_in

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` for every module of ``package`` under ``root``,
    limited to the package's own modules."""
    files = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in imports_in(path, runtime_only=True):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    # `import a.b.c` runs a.b.c; the deepest module of ours that is named
                    known = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
                    targets.extend(next(([k] for k in known if k in files), []))
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    if sub in files:
                        targets.append(sub)
                    elif module in files:
                        targets.append(module)
            for target in targets:
                if target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[tuple[list[str], list[str]]]:
    """Per strongly connected component of more than one module: its modules, and one cycle
    through them (``[a, b, …, a]``)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
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
    return [(c, _cycle_in(graph, set(c), c[0])) for c in components]


def _cycle_in(graph: dict[str, dict[str, int]], members: set[str], start: str) -> list[str]:
    """A shortest path from ``start`` back to itself inside one component (breadth first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    return [*paths[v], start]
                if w in members and w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in no cycle")  # pragma: no cover - a component always has one


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(
        f"{a} (line {graph[a][b]})" if b else a for a, b in zip(cycle, [*cycle[1:], ""], strict=True)
    )


@pytest.fixture(scope="module")
def hvballoon_graph() -> dict[str, dict[str, int]]:
    """hvballoon's own import graph, read once for the tests below (which only read it)."""
    return import_graph(ROOT, "hvballoon")


def test_no_import_cycle_in_hvballoon(hvballoon_graph: dict[str, dict[str, int]]) -> None:
    graph = hvballoon_graph
    assert len(graph) > 40 and "hvballoon.session" in graph["hvballoon"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(
        f"{_describe(graph, cycle)}  [all of: {', '.join(members)}]" for members, cycle in cycles
    )


def test_cli_commands_import_only_shared_modules_never_the_entry_point(
    hvballoon_graph: dict[str, dict[str, int]],
) -> None:
    graph = hvballoon_graph
    entry = {"hvballoon.cli", "hvballoon.cli.app", "hvballoon.cli.__main__"}
    commands = [m for m in graph if m.startswith("hvballoon.cli.") and m not in entry]
    assert "hvballoon.cli.common" in commands and len(commands) >= 7
    for module in commands:
        assert not entry & set(graph[module]), f"{module} imports {sorted(entry & set(graph[module]))}"


def test_the_simulator_does_not_import_its_recorder(hvballoon_graph: dict[str, dict[str, int]]) -> None:
    # the recorder observes the world; the world, and what it imports, know no recorder
    graph = hvballoon_graph
    reached, todo = set(), ["hvballoon.fake.world"]
    while todo:
        for target in graph[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert reached and "hvballoon.fake.record" not in reached, sorted(reached)
    assert "hvballoon.fake.record" in graph["hvballoon.cli.simulate"]


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, dict[str, int]]:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return import_graph(tmp_path, "pkg")


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    graph = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import helper\n",
            "b.py": "def helper():\n    from pkg import a\n    return a\n",
            "c.py": "import pkg.a\n",
        },
    )
    assert graph["pkg.b"] == {"pkg.a": 2}
    assert find_cycles(graph) == [(["pkg.a", "pkg.b"], ["pkg.a", "pkg.b", "pkg.a"])]
    assert _describe(graph, ["pkg.a", "pkg.b", "pkg.a"]) == "pkg.a (line 1) -> pkg.b (line 2) -> pkg.a"


def test_relative_imports_resolve_and_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    graph = _package(
        tmp_path,
        {
            "__init__.py": "from .sub import mod\n",
            "sub/__init__.py": "from . import mod\n",
            "sub/mod.py": (
                "from typing import TYPE_CHECKING\n"
                "import typing\n"
                "if TYPE_CHECKING:\n    from pkg import top\n"
                "if typing.TYPE_CHECKING:\n    import pkg.top\n"
                "else:\n    from ..other import thing\n"
            ),
            "other.py": "from .sub.mod import x\n",
            "top.py": "import pkg.sub.mod\n",
        },
    )
    assert graph["pkg"] == {"pkg.sub.mod": 1}
    assert graph["pkg.sub"] == {"pkg.sub.mod": 1}
    assert graph["pkg.sub.mod"] == {"pkg.other": 8}
    assert find_cycles(graph) == [(["pkg.other", "pkg.sub.mod"], ["pkg.other", "pkg.sub.mod", "pkg.other"])]
