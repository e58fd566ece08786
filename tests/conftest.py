"""Suite-wide rules. In CI (``CI=true``) nothing may skip: a skipped test proves nothing, and a
skip there almost always means a prerequisite the CI set-up failed to install."""

from __future__ import annotations

from typing import Any

import pytest

from tests._require import in_ci


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
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
