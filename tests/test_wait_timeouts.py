"""A wait for a target ends at its timeout on any clock, and its error says whether the memory
was moving: a wait too short to see a stall does not call a still balloon "still moving"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hvballoon
from hvballoon.errors import WaitTimeoutError
from hvballoon.retry import RetryPolicy


@pytest.fixture
def hv() -> Iterator[hvballoon.Hypervisor]:
    with hvballoon.connect("fake://seed", retry=RetryPolicy(max_attempts=1)) as session:
        yield session


def _counted_sleeps(hv: hvballoon.Hypervisor, limit: int = 1000) -> list[float]:
    """The backend's sleeps, recorded; past ``limit`` of them the wait is one that never ends."""
    backend, sleeps = hv.backend, []
    sleep = backend.sleep

    def counted(seconds: float) -> None:
        sleeps.append(seconds)
        assert len(sleeps) <= limit, f"the wait did not end: {sleeps[-3:]}"
        sleep(seconds)

    backend.sleep = counted  # type: ignore[method-assign]
    return sleeps


@pytest.mark.parametrize("timeout", [0.001, 0.3, 0.7, 2.3])
def test_a_wait_on_the_simulator_s_clock_ends_at_its_timeout(
    hv: hvballoon.Hypervisor, timeout: float
) -> None:
    # the clock at 3 s (a first wait): 3.0 + 0.001 is 3.0009999999999999, a hair short of the
    # timeout, and a sleep of that hair does not move the simulator's clock again
    hv.set_target("web02", "6GiB")
    with pytest.raises(WaitTimeoutError):
        hv.wait_for_target("web02", timeout=3)
    assert hv.backend.monotonic() == 3.0
    hv.set_target("web03", "5GiB")
    sleeps = _counted_sleeps(hv)
    with pytest.raises(WaitTimeoutError) as err:
        hv.wait_for_target("web03", timeout=timeout)
    assert len(sleeps) <= timeout + 2, sleeps  # one poll a second, and the last part
    assert err.value.details["elapsed_seconds"] == pytest.approx(timeout, abs=1e-3)


def test_a_wait_timeout_says_whether_the_memory_was_moving(hv: hvballoon.Hypervisor) -> None:
    hv.set_target("web02", "6GiB")  # 10 GiB to give: it takes longer than 3 s
    with pytest.raises(WaitTimeoutError) as moving:
        hv.wait_for_target("web02", timeout=3)
    assert "'web02' was still moving after 3 s (" in str(moving.value)
    hv.set_target("web01", "7GiB")
    hv.wait_for_target("web01", timeout=60)
    # held at its target, 7 GiB; waited for another for less than a stall takes to tell
    with pytest.raises(WaitTimeoutError) as still:
        hv.wait_for_target("web01", target="6GiB", timeout=2)
    message = str(still.value)
    assert "still moving" not in message, message
    assert "'web01' did not move in the 2 s waited (too short to tell: a stall is told after 5 s" in message
    assert still.value.details["reached_bytes"] == 7 * 2**30
