"""A guest given less memory than its floor (its kernel and unfreeable memory, never swapped):
a Hyper-V Dynamic Memory VM without its integration services stays at its startup memory, which
may be below what it pins. Its memory is full, its swap holds only what may be swapped, the rest
of its floor is its OOM killer's — never a negative cache or swap, nor more used than it has
(found by the random scenarios: seed 10005's ``web23``, 624 MiB of startup memory pinning 920)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World

MiB = 2**20


def _scenario(power_state: str = "running") -> Any:
    return parse_scenario(
        {
            "name": "below-floor",
            "flavor": "hyperv",
            "host": {"name": "h", "physical": "8GiB", "swap": "1GiB"},
            "vms": [
                {
                    "name": "web23",
                    "memory": "944MiB",
                    "used": "900MiB",
                    "unfreeable": "820MiB",
                    "swap": "236MiB",
                    "dynamic": True,
                    "minimum": "272MiB",
                    "startup": "624MiB",
                    "maximum": "944MiB",
                    "balloon_driver": False,
                    "power_state": power_state,
                },
                {"name": "app01", "memory": "1GiB", "used": "512MiB"},
            ],
        }
    )


def test_a_guest_below_its_floor_holds_what_fits_and_loses_the_rest() -> None:
    world = World(_scenario(), strict=True)  # the identities checked at every step
    g = world.guest("web23")
    floor = float(world.state.floor[g.index])
    assert g.current_bytes == 624 * MiB < floor  # no driver: Dynamic Memory adds nothing
    for _ in range(6):
        world.advance(10)
        acc = world.accounting()["guests"]["web23"]
        assert min(acc["cache"], acc["free"], acc["guest_swapped"]) >= 0, acc
        assert acc["used"] <= acc["current"] == 624 * MiB
        assert acc["guest_swapped"] <= 236 * MiB
        assert acc["demand"] <= acc["current"] + 236 * MiB
    assert [e["vm"] for e in world.events if e["kind"] == "oom"] == ["web23"]  # what it pins beyond


@pytest.mark.parametrize("power_state", ["stopped", "suspended"])
def test_what_an_observer_sees_of_a_guest_that_does_not_run_is_never_negative(power_state: str) -> None:
    world = World(_scenario(power_state), strict=True)
    seen: list[float] = []
    world.observe(lambda w, block: seen.append(float(np.min(block.guest_swapped))))
    world.advance(30)
    if power_state == "stopped":  # then started: below its floor from its boot on
        world.power_on(world.guest("web23").id)
    world.advance(30)
    assert seen and min(seen) >= 0
