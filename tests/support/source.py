"""Python source read statically, for the layout tests: each file is parsed once per process,
and its import statements are found without walking its expressions.

An ``import`` is a statement, so it can only sit in a list of statements (a module's, a class's
or a function's body, a branch of ``if``/``try``/``match``/``with``/loops): walking those lists
alone finds every one, and skips the expressions that make up most of a syntax tree.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

Imports = ast.Import | ast.ImportFrom


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The syntax tree of ``path``, shared by every caller in this process: do not change it."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


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
