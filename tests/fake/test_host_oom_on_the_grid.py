"""The host's OOM killer acts at the first point of the world's grid where the host is out of
memory and swap, however the world is advanced: one long call, a controller's ten-second rounds
or its quick rounds between the grid's points meet the same kills at the same moments (found by
the random scenarios: a policy read every second lost other VMs, at other moments, than
``static`` read every ten, in the same world)."""

from __future__ import annotations

import pytest

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World


def _crowded(step: float) -> World:
    """A 16 GiB host with 2 GiB of swap whose VMs' demand rises beyond both at 37 s."""
    vms = [
        {
            "name": f"v{i}",
            "memory": "6GiB",
            "used": "3GiB",
            "swap": "0",
            "free_page_reporting": True,
            "workload": {
                "kind": "spike",
                "params": {"at": 37 + 2.5 * i, "size": "2GiB", "rise": 3, "duration": 600},
            },
        }
        for i in range(4)
    ]
    host = {"physical": "16GiB", "overhead": "1GiB", "swap": "2GiB"}
    return World(parse_scenario({"name": "crowded", "step": step, "host": host, "vms": vms}))


def _host_kills(world: World, pattern: tuple[float, ...], end: float = 90.0) -> list[tuple[str, float]]:
    k = 0
    while world.now < end - 1e-9:
        world.advance(min(pattern[k % len(pattern)], end - world.now))
        k += 1
    return [(e["vm"], round(e["t"], 6)) for e in world.events if e["kind"] == "host_oom"]


@pytest.mark.parametrize("step", [1.0, 2.0])
def test_the_host_oom_killer_acts_at_the_same_moment_whoever_reads_the_world(step: float) -> None:
    stepwise = _host_kills(_crowded(step), (step,))
    assert stepwise, "the scenario runs the host out of memory and swap"
    assert all(abs(t / step - round(t / step)) < 1e-9 for _, t in stepwise)
    for pattern in ((90.0,), (10.0,), (1.0,), (0.7, 0.3), (2.3, 0.2, 7.5), (0.4, 0.35)):
        assert _host_kills(_crowded(step), pattern) == stepwise, pattern
