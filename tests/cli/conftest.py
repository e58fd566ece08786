"""Fixtures for the CLI tests: a third-party backend (``slowtest://``, see
:mod:`tests.support.plugin_backend`) installed in a subprocess's environment or registered here."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from hvballoon import registry
from tests.support import cli
from tests.support.plugin_backend import write_distribution


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a subprocess that has the ``slowtest`` backend installed."""
    where = write_distribution(tmp_path_factory.mktemp("plugin"))
    path = os.pathsep.join(p for p in (str(where), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


@pytest.fixture
def slow_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register ``slowtest://`` in this process, through the registry (undone after the test)."""
    spec = registry.BackendSpec("slowtest", "tests.support.plugin_backend:SlowBackend", ("slowtest",))
    monkeypatch.setitem(registry._specs, "slowtest", spec)


@pytest.fixture
def run(slow_backend: None) -> Callable[..., cli.Result]:
    """``run("stats", URI, …)``: the command in this process, with ``slowtest://`` registered."""

    def _run(*args: str, stdin: str | None = None, env: dict[str, str | None] | None = None) -> cli.Result:
        return cli.invoke(*args, stdin=stdin, env=env)

    return _run
