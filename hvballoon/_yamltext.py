"""Why a YAML text could not be read, in one line: the parser's problem and where it stopped.

PyYAML's own message spans several lines and quotes a snippet of the file, which could show a
secret written near the mistake: only the problem and its place are kept.

>>> import yaml
>>> try:
...     yaml.safe_load("a: [1, 2\\nb: 3\\n")
... except yaml.YAMLError as exc:
...     print(yaml_problem(exc))
expected ',' or ']', but got ':' (line 2, column 2)
"""

from __future__ import annotations

__all__ = ["yaml_problem"]


def yaml_problem(exc: BaseException) -> str:
    """``exc`` (a ``yaml.YAMLError``) as one line: its problem and the line and column."""
    problem = " ".join(str(getattr(exc, "problem", None) or "not valid YAML").split())
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        problem += f" (line {mark.line + 1}, column {mark.column + 1})"
    return problem
