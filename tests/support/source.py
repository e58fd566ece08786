"""Python source read statically, for the layout tests: each file's import statements are
found once per process, without walking its expressions.

An ``import`` is a statement, so it can only sit in a list of statements (a module's, a class's
or a function's body, a branch of ``if``/``try``/``match``/``with``/loops): walking those lists
alone finds every one, and skips the expressions that make up most of a syntax tree.
"""

from __future__ import annotations

import ast
import functools
import gc
import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

Imports = ast.Import | ast.ImportFrom


def parsed(path: Path) -> ast.Module:
    """The syntax tree of ``path``.

    The collector is paused while the parser builds the tree: its nodes hold no cycle, and in a
    test process whose heap is large the collections their allocation set off cost more than
    the parse (0.5 s against 0.3 s for every file under ``tests``)."""
    return _parse(path.read_bytes(), path)


def _parse(source: bytes, path: Path) -> ast.Module:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source.decode("utf-8"), filename=str(path))
    finally:
        if enabled:
            gc.enable()


def is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``: a condition that never holds at run time."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def import_statements(tree: ast.AST, *, runtime_only: bool = False) -> Iterator[Imports]:
    """Every ``import`` and ``from … import`` statement in ``tree``, in functions and classes
    too; with ``runtime_only``, none from the body of ``if TYPE_CHECKING:`` (they never run)."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if runtime_only and isinstance(node, ast.If) and is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        for _, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], _HOLDS_STATEMENTS):
                todo.extend(value)


# what a list of statements is made of: statements, and the clauses that hold statements
_HOLDS_STATEMENTS = (ast.stmt, ast.excepthandler, ast.match_case)


#: where :func:`imports_in` keeps what it found, by the file's content (git-ignored)
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "imports"


@functools.cache
def imports_in(path: Path, *, runtime_only: bool = False) -> tuple[Imports, ...]:
    """:func:`import_statements` of the file ``path``, remembered for the process (the statements
    alone: a whole tree kept alive would slow every later full collection of the run), and on
    disk by the file's content and the Python version: the layout tests of every worker and
    every run parse only the files that changed (parsing every file under ``tests`` and the
    package is about a second)."""
    data = path.read_bytes()
    key = hashlib.sha256(data + f"{sys.version}/{runtime_only}".encode()).hexdigest()
    stored = CACHE / key[:2] / key
    try:
        found = pickle.loads(stored.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        pass
    else:
        if isinstance(found, tuple) and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in found):
            return found
    found = tuple(import_statements(_parse(data, path), runtime_only=runtime_only))
    try:
        stored.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=stored.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(pickle.dumps(found))
        os.replace(tmp, stored)  # whole or not at all, whichever worker writes it
    except OSError:
        pass
    return found
