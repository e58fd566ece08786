"""The retries inside a controller's round are logged at debug level: the round says the outage
(at its first failure and each doubling), so a long outage is not two retry lines per round. A
program calling the API still sees its retries at INFO, or at the level its policy names."""

from __future__ import annotations

import logging

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import InvalidRequestError
from hvballoon.retry import RetryPolicy
from tests.support.policies import play_rounds


def _retry_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hvballoon.retry" and r.levelno >= level]


def test_an_outage_of_many_rounds_writes_no_retry_line_at_info(caplog: pytest.LogCaptureFixture) -> None:
    from hvballoon.fake.scenario import load_scenario
    from hvballoon.fake.world import World
    from hvballoon.policy.simulated import simulated_controller

    caplog.set_level(logging.DEBUG, logger="hvballoon")
    w = World(load_scenario("seed"))
    with simulated_controller(w, "hvballoon") as ctl:
        play_rounds(w, ctl, rounds=5)
        assert ctl.lowered()
        w.faults.add(op="get_stats", kind="connection_lost", probability=1.0, at=w.now, until=w.now + 900)
        caplog.clear()
        failed = play_rounds(w, ctl, until=900 + 60)
    assert failed >= 10
    assert _retry_lines(caplog, logging.DEBUG)  # each retry is still a record, at debug level
    assert _retry_lines(caplog) == [], [r.getMessage() for r in _retry_lines(caplog)][:4]
    said = [
        r
        for r in caplog.records
        if getattr(r, "event", None) == "round_failed" and r.levelno >= logging.WARNING
    ]
    assert 1 <= len(said) < failed  # the controller says the outage itself


def test_a_program_s_retries_are_still_info_lines_or_at_the_level_its_policy_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hvballoon")
    with fake.world("seed") as w:
        w.faults.add(op="get_stats", kind="timeout", count=2)
        with hvballoon.connect("fake://", world=w, retry=RetryPolicy(sleep=lambda _s: None)) as hv:
            hv.get_stats()
            assert len(_retry_lines(caplog)) == 2
            caplog.clear()
            w.faults.add(op="get_stats", kind="timeout", count=1)
            quiet = RetryPolicy(sleep=lambda _s: None, log_level=logging.DEBUG)
            hv.get_stats(retry=quiet)
    assert _retry_lines(caplog) == [] and len(_retry_lines(caplog, logging.DEBUG)) == 1


@pytest.mark.parametrize("level", [True, "DEBUG", -1, 99, 1.5, None])
def test_a_log_level_that_is_no_logging_level_is_refused(level: object) -> None:
    with pytest.raises(InvalidRequestError, match="log_level"):
        RetryPolicy(log_level=level)  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_sessions_autoballoon_opens_again_in_an_outage_retry_at_debug_level(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    from pathlib import Path

    from hvballoon.cli.controller_session import session_factory
    from hvballoon.fake.scenario import load_scenario
    from hvballoon.fake.store import WorldStore
    from hvballoon.fake.world import World

    caplog.set_level(logging.DEBUG, logger="hvballoon")
    db = Path(str(tmp_path)) / "w.db"

    def connect_fails_once() -> None:
        store = WorldStore(db, lambda: World(load_scenario("seed")))
        with store.transaction() as w:
            w.faults.add(op="connect", kind="connection_lost", count=1)
        store.close()

    connect_fails_once()
    factory = session_factory(f"fake://seed?state={db}", {"timeout": "5s"})
    with factory() as first:  # the controller's first session: its retries are the operator's to see
        assert first.retry.log_level == logging.INFO
    assert len(_retry_lines(caplog)) == 1
    caplog.clear()
    connect_fails_once()
    with factory() as again:  # one replacing a broken session: the controller says the outage
        assert again.retry.log_level == logging.INFO  # its rounds' retries: see the round
    assert _retry_lines(caplog) == [] and len(_retry_lines(caplog, logging.DEBUG)) == 1
