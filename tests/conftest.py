"""Suite-wide rules and fixtures shared across directories (built on :mod:`tests.support`).

In CI (``CI=true``) nothing may skip: a skipped test proves nothing, and a skip there almost
always means a prerequisite the CI set-up failed to install. A test that starts a real peer
(see :mod:`tests.support.peer_guard`) without the ``peer`` marker fails, so that
``-m "not peer"`` leaves every real peer out. A socket or file left open warns when it is
collected, an error (see pyproject's filterwarnings) in the test during which that happens; in
CI the garbage collector also runs after the last test of each file, so that a file's leak fails
in that file (a full collection costs about 0.1 s, too much for the inner loop's 90 files).
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tests.support.bytecode  # noqa: F401  (loaded first through addopts; here too if they are overridden)
from tests.support.ansible import Ansible, playbook_setup
from tests.support.cli import Running
from tests.support.peer_guard import take_notes
from tests.support.require import in_ci, require


def pytest_configure(config: pytest.Config) -> None:
    # a property test without a budget of its own draws 25 examples in a run that leaves the
    # slow tests out (the inner loop), Hypothesis's default of 100 in the full suite (a profile
    # given with --hypothesis-profile stands). pytest-xdist's controller runs no test: it does not
    # import Hypothesis for it (a quarter of a second)
    inner_loop = "not slow" in (config.getoption("markexpr") or "")
    controller = bool(config.getoption("numprocesses", None)) and not hasattr(config, "workerinput")
    if inner_loop and not controller and config.getoption("hypothesis_profile", None) is None:
        from hypothesis import settings

        settings.register_profile("inner-loop", max_examples=25)
        settings.load_profile("inner-loop")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    started = take_notes()  # the peers this phase started (a wider-scoped fixture's count here)
    if started and report.passed and item.get_closest_marker("peer") is None:
        report.outcome = "failed"
        report.longrepr = f"started a real peer without the peer marker: {', '.join(sorted(set(started)))}"
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (prerequisite missing?): {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"module skipped in CI (prerequisite missing?): {report.longrepr}"


def pytest_collection_finish(session: pytest.Session) -> None:
    # what is alive once the tests are collected (the modules, the package, pydantic's and
    # libvirt's tables) lives until the end: the collector need not walk it again in every full
    # collection of the run, nor in the five that close it. The garbage of the collection is
    # collected first (a socket it left open warns now, not never)
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if in_ci() and (nextitem is None or nextitem.path != item.path):  # the last test of a file
        gc.collect()


@pytest.fixture(scope="module")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> Ansible:
    """A real ``ansible-playbook`` set-up against localhost with the fake backend (the Ansible
    and the hardening tests)."""
    require(shutil.which("ansible-playbook"), "ansible-core is not installed (pip install -e '.[test]')")
    return playbook_setup(tmp_path_factory.mktemp("ansible"))


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    """``running("autoballoon", URI, …, env={…})``: the command in a subprocess
    (:class:`tests.support.cli.Running`), killed after the test if it is still running."""
    started: list[Running] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Running:
        r = Running(*args, env=env)
        started.append(r)
        return r

    yield start
    for r in started:
        r.kill()
