"""The test tree's layout: support is a package of its own, conftest files only hold fixtures.

- ``tests/support`` is what tests, the hardening matrix and the benchmarks import; it imports
  nothing else of ``tests`` (no test module, no conftest);
- no module anywhere imports a ``conftest.py`` or a test module;
- ``tests/peers`` holds peer tests only (``test_*.py``);
- a ``conftest.py`` defines fixtures and hooks, nothing else a module could want to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.source import import_statements, imports_in, parsed

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"
PY_FILES = sorted(
    p for d in ("tests", "benchmarks") for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts
)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved against its package)."""
    statements = (
        imports_in(path) if source is None else import_statements(ast.parse(source, filename=str(path)))
    )
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in statements:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _is_test_or_conftest(module: str) -> bool:
    last = module.rpartition(".")[2]
    return module.startswith("tests.") and (last == "conftest" or last.startswith("test_"))


def test_the_import_walker_sees_relative_and_absolute_imports() -> None:
    code = "from .conftest import a\nfrom ..support import b\nimport tests.peers.test_y\nfrom . import c\n"
    names = imported_modules(TESTS / "backends" / "kvm" / "x.py", code)
    assert {"tests.backends.kvm.conftest", "tests.backends.support.b", "tests.peers.test_y"} <= names
    assert "tests.backends.kvm.c" in names
    assert sorted(filter(_is_test_or_conftest, names)) == [
        "tests.backends.kvm.conftest",
        "tests.peers.test_y",
    ]
    assert not _is_test_or_conftest("tests.support.kvm_guest.harness")


def test_the_import_walker_finds_imports_in_every_kind_of_block() -> None:
    """Only lists of statements are walked: an import in a function, a class, a branch, a
    handler, a ``with``, a loop or a ``match`` case is found all the same."""
    code = (
        "import a0\n"
        "def f():\n    import a1\n"
        "class C:\n    import a2\n    def m(self):\n        from a3 import x\n"
        "if x:\n    import a4\nelse:\n    import a5\n"
        "try:\n    import a6\nexcept ImportError:\n    import a7\nelse:\n    import a8\n"
        "finally:\n    import a9\n"
        "with x:\n    import a10\n"
        "for i in x:\n    import a11\nwhile x:\n    import a12\n"
        "match x:\n    case 1:\n        import a13\n"
        "async def g():\n    async with x:\n        import a14\n"
        "if TYPE_CHECKING:\n    import a15\nelse:\n    import a16\n"
        "x = lambda: __import__('not_a_statement')\n"
    )
    tree = ast.parse(code)
    every = {f"a{i}" for i in range(17)}
    assert {
        n.names[0].name if isinstance(n, ast.Import) else n.module for n in import_statements(tree)
    } == every
    running = import_statements(tree, runtime_only=True)
    assert {n.names[0].name if isinstance(n, ast.Import) else n.module for n in running} == every - {"a15"}


def test_nothing_imports_a_conftest_or_a_test_module() -> None:
    bad = {_rel(p): sorted(filter(_is_test_or_conftest, imported_modules(p))) for p in PY_FILES}
    bad = {path: names for path, names in bad.items() if names}
    assert not bad, f"move what these need to tests/support: {bad}"


def test_support_imports_only_support() -> None:
    outside = {
        _rel(p): sorted(
            m for m in imported_modules(p) if m.startswith("tests.") and not m.startswith("tests.support")
        )
        for p in SUPPORT.rglob("*.py")
    }
    outside = {path: names for path, names in outside.items() if names}
    assert not outside, f"tests/support imports from outside itself: {outside}"


def test_peers_holds_peer_tests_only() -> None:
    entries = sorted(p.name for p in (TESTS / "peers").iterdir() if p.name != "__pycache__")
    others = [n for n in entries if n != "__init__.py" and not (n.startswith("test_") and n.endswith(".py"))]
    assert not others, f"tests/peers holds peer tests only; move {others} to tests/support"


def conftest_problems(path: Path) -> list[str]:
    """What in a conftest.py is neither a fixture, a hook nor a ``pytest.importorskip``."""
    problems = []
    for node in parsed(path).body:
        if isinstance(node, ast.FunctionDef):
            decorators = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
            if not (decorators & {"pytest.fixture", "pytest.hookimpl"} or node.name.startswith("pytest_")):
                problems.append(f"{node.name}()")
        elif isinstance(node, ast.ClassDef):
            problems.append(f"class {node.name}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = ast.unparse(node.value) if node.value is not None else ""
            if not value.startswith("pytest.importorskip("):
                problems.append(ast.unparse(node))
    return problems


def test_conftest_files_hold_only_fixtures_and_hooks() -> None:
    found = {_rel(p): conftest_problems(p) for p in TESTS.rglob("conftest.py")}
    assert len(found) >= 5, found
    found = {path: problems for path, problems in found.items() if problems}
    assert not found, f"conftest files hold fixtures and hooks only; move to tests/support: {found}"


def test_the_conftest_check_finds_helpers(tmp_path: Path) -> None:
    path = tmp_path / "conftest.py"
    path.write_text(
        "import pytest\nlibvirt = pytest.importorskip('libvirt')\nFLEET = []\n"
        "def connect(peer): ...\nclass Peer: ...\n@pytest.fixture\ndef hv(): ...\n"
        "def pytest_configure(config): ...\n",
        encoding="utf-8",
    )
    assert conftest_problems(path) == ["FLEET = []", "connect()", "class Peer"]
