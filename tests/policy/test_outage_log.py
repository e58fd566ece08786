"""An outage is logged when it starts, when its error changes, at each doubling of its length and
when it ends, not once per round: a controller left running through an hour of a hypervisor
that does not answer writes a few lines, not one per round. Counted in log records."""

from __future__ import annotations

import logging

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.policy import Controller, ControllerSettings
from hvballoon.retry import RetryPolicy
from hvballoon.units import GiB
from tests.support.policies import Fixed, play_rounds


def _said(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event and r.levelno >= logging.WARNING]


def test_an_outage_of_forty_rounds_is_said_in_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hvballoon")
    with fake.world("seed") as w:
        retry = RetryPolicy(max_attempts=1)
        with hvballoon.connect("fake://", world=w, retry=retry) as hv:
            ctl = Controller(
                hv, Fixed(12 * GiB), ControllerSettings(host_memory_bytes="120GiB"), dry_run=True
            )
            assert ctl.attempt().ok
            w.faults.add(op="get_stats", kind="connection_lost", count=30)
            w.faults.add(op="get_stats", kind="timeout", after=30, count=10)
            rounds = [ctl.attempt() for _ in range(41)]
    assert [r.ok for r in rounds] == [False] * 40 + [True]
    failed = _said(caplog, "round_failed")
    # 1, 2, 4, 8, 16 in a row; the error changing at 31; then 32
    assert [r.consecutive_failures for r in failed] == [1, 2, 4, 8, 16, 31, 32]  # type: ignore[attr-defined]
    # every failed round is still a record, at debug level
    assert sum(getattr(r, "event", None) == "round_failed" for r in caplog.records) == 40
    recovered = _said(caplog, "recovered")
    assert [r.failed_rounds for r in recovered] == [40]  # type: ignore[attr-defined]


@pytest.mark.slow  # an hour and a quarter of a simulated host's rounds
def test_a_release_tried_each_round_of_an_outage_is_said_at_doublings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # after too many failed rounds the controller gives back what it lowered, and tries again
    # each round while the release cannot read the VMs: an hour of it is a few lines
    from hvballoon.fake.scenario import load_scenario
    from hvballoon.fake.world import World
    from hvballoon.policy.simulated import simulated_controller

    caplog.set_level(logging.DEBUG, logger="hvballoon")
    w = World(load_scenario("seed"))
    with simulated_controller(w, "hvballoon") as ctl:
        play_rounds(w, ctl, rounds=20)
        assert ctl.lowered()
        w.faults.add(op="get_stats", kind="connection_lost", probability=1.0, at=w.now, until=w.now + 3600)
        play_rounds(w, ctl, until=3900)
    tries = [r for r in caplog.records if getattr(r, "event", None) == "release_failed"]
    assert len(tries) > 40  # tried each round of the outage after the first few
    said = [r.tries for r in tries if r.levelno >= logging.WARNING]  # type: ignore[attr-defined]
    assert said == [1, 2, 4, 8, 16, 32], said
