"""A host short of its reserve whose free memory does not show what a lower gives: a KVM host
that has swapped out 236 GiB of its busy VMs' memory pages it back in as a large idle VM's
balloon frees memory (slowly: 512 MiB/s), so the host stays at its reserve while that lower is
under way. The policy, reading the host as deployed, lowers that VM in a few large steps, not by
a sliver every quick round while its last lower is still under way (the guest holding more than
its target)."""

from __future__ import annotations

import pytest

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.policy.simulated import simulated_controller, simulated_round
from hvballoon.units import GiB


def _busy(name: str) -> dict[str, object]:
    walk = {"kind": "random_walk", "params": {"step": "1GiB"}}
    return {"name": name, "memory": "200GiB", "used": "190GiB", "stats_period": 1, "workload": walk}


@pytest.mark.slow  # eight simulated minutes of quick rounds: a few seconds
def test_a_lower_still_under_way_is_not_deepened_by_a_sliver_every_round() -> None:
    spec = parse_scenario(
        {
            "name": "short",
            "flavor": "kvm",
            "host": {
                "physical": "512GiB",
                "swap": "512GiB",
                "reserve": "8GiB",
                "balloon": {"inflate_rate": "512MiB"},
            },
            "vms": [
                {
                    "name": "big",
                    "memory": "400GiB",
                    "used": "60GiB",
                    "cache": "300GiB",
                    "stats_period": 1,
                    "workload": {"kind": "random_walk", "params": {"step": "2GiB"}},
                },
                _busy("a"),
                _busy("b"),
            ],
        }
    )
    world = World(spec)
    assert world.accounting()["host"]["swapped"] > 200 * GiB
    lowers = []
    with simulated_controller(world, "hvballoon") as ctl:
        end = world.now + 480
        while world.now < end:
            decisions, _, wait = simulated_round(world, ctl)
            lowers += [d for d in decisions if d.applied and d.vm == "big" and d.action == "lower"]
            world.advance(max(wait, 0.001))
    assert len(lowers) >= 2 and all(d.rule == "hvballoon.lower" for d in lowers)
    # the big VM is taken down all the same, in a few large steps (34 lowers, most of them
    # slivers under a gigabyte, when a lower under way was deepened every round)
    assert len(lowers) <= 8, [(d.before_bytes, d.after_bytes) for d in lowers]
    assert (lowers[-1].after_bytes or 0) < 100 * GiB
