"""A host short of its reserve whose free memory does not show what a lower gives: random world
26 (Hyper-V, a static VM of 739 GiB on a host of 899 GiB that has paged 550 GiB of its VMs' memory
out), where every byte the static VM gives up is paged back in and the host stays at its own
reserve. The policy, reading the host as deployed, lowers that VM in a few large steps, not by a
sliver every quick round while its last lower is still under way."""

from __future__ import annotations

import pytest

from hvballoon.fake.randomized import random_scenario
from hvballoon.fake.world import World
from hvballoon.policy.simulated import simulated_controller, simulated_round
from hvballoon.units import GiB


@pytest.mark.slow  # eight simulated minutes of a world of 899 GiB: a few seconds
def test_a_lower_still_under_way_is_not_deepened_by_a_sliver_every_round() -> None:
    spec = random_scenario(26).model_copy(update={"faults": []})
    world = World(spec)
    assert spec.flavor == "hyperv" and world.accounting()["host"]["swapped"] > 500 * GiB
    lowers = []
    with simulated_controller(world, "hvballoon") as ctl:
        end = world.now + 480
        while world.now < end:
            decisions, _, wait = simulated_round(world, ctl)
            lowers += [
                (world.now, d) for d in decisions if d.applied and d.vm == "ci02" and d.action == "lower"
            ]
            world.advance(max(wait, 0.001))
    assert len(lowers) >= 2 and all(d.rule == "hvballoon.lower" for _, d in lowers)
    assert all((d.inputs.get("host_short_bytes") or 0) > 100 * GiB for _, d in lowers)  # as short throughout
    # the host stays as short, and the VM is taken down all the same, a few large steps at a time
    steps = [(d.before_bytes or 0) - (d.after_bytes or 0) for _, d in lowers[1:]]
    assert len(lowers) <= 6 and min(steps) > 10 * GiB, [round(s / GiB, 2) for s in steps]
