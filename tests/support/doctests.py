"""A test module is searched for doctests only if its text has a prompt (``>>>``).

pyproject's ``addopts`` give ``--doctest-modules`` for the package's docstrings, and the test
directories are among the ``testpaths``: every test module would be collected twice, as tests
and as doctests, the doctest finder walking each of its functions and classes for examples
that, without a ``>>>`` in the file, it cannot find (about a quarter of a second in every
process of a run). A file collected as a test module is imported for its tests anyway, so what
this drops is only that walk; a module of the package or an example, which nothing else may
import, is still collected (and imported) as a doctest module whether it has examples or not.
pyproject's ``addopts`` load this plugin with ``-p``.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path) -> Generator[None, list[pytest.Collector], list[pytest.Collector]]:
    collected = yield
    doctest = any(isinstance(c, DoctestModule) for c in collected)
    tests = any(isinstance(c, pytest.Module) for c in collected)
    if doctest and tests and b">>>" not in file_path.read_bytes():
        return [c for c in collected if not isinstance(c, DoctestModule)]
    return collected
