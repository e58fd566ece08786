"""The duty-cycle cap: however soon the pace asks for the next round, the wait after a round is
at least ``min_wait_fraction`` of what the round worked — a sweep of thousands of VMs that takes
as long as the quick rounds' pace is not run back to back. The attempts of a sweep that timed out
and the retry waits after them are not work: a round that hung and then read keeps its pace.
On the fake backend, whose calls take simulated time only when a fault makes them slow."""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.cli.autoballoon_settings import validate_settings
from hvballoon.errors import InvalidRequestError
from hvballoon.fake.world import World
from hvballoon.policy import Controller, ControllerSettings
from hvballoon.retry import RetryPolicy
from hvballoon.units import GiB
from tests.support.policies import Fixed

TIMEOUT = 5.0


def _waits(w: World, rounds: int, **settings: object) -> list[float]:
    """The waits the service loop makes after each round but the last (the pace: 2 s)."""
    waits: list[float] = []
    retry = RetryPolicy(sleep=w.advance, seed=1)
    with hvballoon.connect("fake://", world=w, timeout=TIMEOUT, retry=retry) as hv:
        ctl = Controller(
            hv,
            Fixed(12 * GiB),
            ControllerSettings(
                host_memory_bytes="120GiB", interval_seconds=2, fast_interval_seconds=None, **settings
            ),
        )
        for rnd in ctl.run(rounds=rounds, sleep=waits.append):
            assert rnd.ok
    return waits


def test_a_round_as_long_as_the_pace_is_followed_by_a_wait_as_long_as_itself() -> None:
    with fake.world("seed") as w:
        w.faults.add(op="get_stats", kind="slow", latency=3, count=1)  # within the timeout
        assert _waits(w, 3) == [pytest.approx(3.0, abs=0.01), pytest.approx(2.0, abs=0.01)]


def test_the_fraction_is_a_setting_and_zero_turns_the_cap_off() -> None:
    with fake.world("seed") as w:
        w.faults.add(op="get_stats", kind="slow", latency=3, count=1)
        assert _waits(w, 2, min_wait_fraction=0.5) == [pytest.approx(1.5, abs=0.01)]
    with fake.world("seed") as w:
        w.faults.add(op="get_stats", kind="slow", latency=3, count=1)
        assert _waits(w, 2, min_wait_fraction=0) == [0.0]


def test_a_sweep_that_hung_then_read_keeps_the_pace() -> None:
    # one attempt times out (5 s), the retry waits, the next reads at once: the round took
    # over 5 s of which it worked none, and the next round comes when the pace says
    with fake.world("seed") as w:
        w.faults.add(op="get_stats", kind="slow", latency=60, count=1)
        assert _waits(w, 2) == [0.0]


@pytest.mark.parametrize("value", [-0.5, 101, float("nan"), float("inf"), True, "1"])
def test_a_fraction_out_of_bounds_is_refused_naming_the_setting(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="min_wait_fraction: Input should be"):
        validate_settings({"min_wait_fraction": value})


def test_the_default_keeps_rounds_to_at_most_half_of_the_time() -> None:
    assert ControllerSettings().min_wait_fraction == 1.0
