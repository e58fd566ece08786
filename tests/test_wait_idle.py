"""Waiting for a target of a VM that does not run (off, paused, saved): nothing moves its memory,
so the wait returns at once, saying so, instead of timing out on a change that was applied."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

import hvballoon
from hvballoon.errors import TargetNotObservableWarning
from hvballoon.fake.world import World
from hvballoon.models import Change, PowerState
from hvballoon.retry import RetryPolicy
from hvballoon.units import GiB
from tests.support.hyperv.scenarios import idle

IDLE = [f"{kind}-{state}" for kind in ("static", "dm") for state in ("stopped", "paused", "suspended")]


@pytest.fixture
def hv() -> Iterator[hvballoon.Hypervisor]:
    world = World(idle(), flavor="hyperv")
    with hvballoon.connect(
        "fake://?flavor=hyperv", world=world, retry=RetryPolicy(max_attempts=1)
    ) as session:
        yield session


def test_set_targets_does_not_wait_for_vms_that_do_not_run(hv: hvballoon.Hypervisor) -> None:
    goals = {name: 10 * GiB for name in IDLE} | {"static-on": 6 * GiB}
    res = hv.set_targets(goals, wait=True, wait_timeout=5)
    assert res.ok, res
    for name in IDLE:
        change = res[name]
        assert isinstance(change, Change) and change.changed, name
        if name.startswith("static-"):
            assert any("nothing to wait for" in w for w in change.warnings), change.warnings
    assert res.stats["static-on"].current_bytes == 6 * GiB  # the running one was waited for
    assert {st.vm.name: st.target_bytes for st in hv.get_stats(IDLE)} == dict.fromkeys(IDLE, 10 * GiB)


@pytest.mark.parametrize("name", ["static-stopped", "static-paused", "static-suspended"])
def test_wait_for_target_of_a_vm_that_does_not_run_returns_at_once(
    hv: hvballoon.Hypervisor, name: str
) -> None:
    hv.set_target(name, "10GiB")
    with pytest.warns(TargetNotObservableWarning, match="memory moves only while it runs"):
        stats = hv.wait_for_target(name, timeout=5)
    assert stats.vm.power_state is not PowerState.RUNNING and stats.target_bytes == 10 * GiB


def test_a_running_vm_is_still_waited_for(hv: hvballoon.Hypervisor) -> None:
    hv.set_target("static-on", "6GiB")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TargetNotObservableWarning)
        assert hv.wait_for_target("static-on", timeout=30).current_bytes == 6 * GiB
