"""A static Hyper-V VM beside Dynamic Memory VMs on a short host: what it gives up is theirs.

A static VM is resized at run time only with the memory free on the host, and Dynamic Memory
hands what is free above the host's reserve to its VMs whose demand plus buffer exceeds what they
are assigned. So memory a static VM gives up while Dynamic Memory wants more than the host has
free goes to the Dynamic Memory VMs at their next rebalancing, and when the static VM's own use
rises its raise back finds no memory free: under ``static`` it would have kept its memory. The
``hvballoon`` policy lowers a static VM only while the host has free above its reserve what
Dynamic Memory is about to hand out (found on random Hyper-V scenarios whose peak demand exceeds
the host's memory and swap, where the policy killed more than ``static``).
"""

from __future__ import annotations

from typing import Any

import pytest

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.models import Mechanism
from hvballoon.policy.adaptive import HvballoonPolicy
from hvballoon.policy.model import HostView, Snapshot, VMView
from hvballoon.policy.simulated import simulated_controller, simulated_round
from hvballoon.units import GiB


def _dm(name: str, *, demand: float, current: float) -> VMView:
    return VMView(
        id=name,
        name=name,
        mechanism=Mechanism.DYNAMIC_MEMORY,
        maximum_bytes=12 * GiB,
        minimum_bytes=GiB,
        current_bytes=int(current * GiB),
        target_bytes=12 * GiB,
        used_bytes=int(demand * GiB),
        can_lower=False,
        buffer_percent=20,
    )


def _round(*dm: VMView, host_used: float) -> Any:
    db = VMView(
        id="db01",
        name="db01",
        mechanism=Mechanism.RUNTIME_RESIZE,
        maximum_bytes=8 * GiB,
        current_bytes=8 * GiB,
        target_bytes=8 * GiB,
        used_bytes=GiB,
    )
    host = HostView(total_bytes=24 * GiB, used_bytes=int(host_used * GiB), reserve_bytes=GiB)
    policy = HvballoonPolicy()
    plan = policy.decide(Snapshot(at_seconds=0, host=host, vms=(db, *dm)), policy.initial_state())
    return plan.for_vm("db01")


def test_a_static_vm_is_not_lowered_while_dynamic_memory_wants_more_than_the_host_has_free() -> None:
    # each Dynamic Memory VM's demand plus buffer (10.8 GiB) is above what it is assigned (7 GiB):
    # the host's 1.5 GiB free above its reserve would be theirs, and so would what db01 gave up
    p = _round(_dm("app01", demand=9, current=7), _dm("app02", demand=9, current=7), host_used=21.5)
    assert p is not None and p.target_bytes is None and p.rule == "hvballoon.unbacked"
    assert p.inputs["host_room_for_static_bytes"] < 0


def test_a_static_vm_is_lowered_while_the_host_has_what_dynamic_memory_is_about_to_hand_out() -> None:
    # their demand plus buffer (6 GiB) is what they are assigned: what db01 gives up stays free
    p = _round(_dm("app01", demand=5, current=6), _dm("app02", demand=5, current=6), host_used=21.5)
    assert p is not None and p.rule == "hvballoon.lower" and p.target_bytes is not None
    assert p.target_bytes < 8 * GiB and p.inputs["host_room_for_static_bytes"] >= 0


def _short_host() -> Any:
    # db01 (static, 8 GiB) idles at 1 GiB, then its use rises by 3 GiB at 12 minutes; beside it two
    # Dynamic Memory VMs whose demand (9 GiB each, plus a 20 % buffer) the host cannot give them
    dm = {"memory": "12GiB", "used": "9GiB", "swap": "4GiB", "dynamic": True, "minimum": "1GiB",
          "startup": "4GiB", "maximum": "12GiB", "buffer_percent": 20}  # fmt: skip
    fleet: list[dict[str, Any]] = [
        {
            "name": "db01",
            "memory": "8GiB",
            "used": "1GiB",
            "cache": "256MiB",
            "dynamic": False,
            "workload": {"kind": "spike", "params": {"at": "12m", "duration": "10m", "size": "3GiB"}},
        },
        {"name": "app01", **dm},
        {"name": "app02", **dm},
    ]
    host = {"name": "hv01", "physical": "24GiB", "overhead": "1GiB", "reserve": "1GiB"}
    return parse_scenario(
        {"name": "static-beside-dm", "flavor": "hyperv", "seed": 1, "host": host, "vms": fleet}
    )


def _kills(policy: str, minutes: float) -> list[str]:
    world = World(_short_host())
    with simulated_controller(world, policy) as ctl:
        while world.now < minutes * 60:
            _decisions, _read, wait = simulated_round(world, ctl)
            world.advance(max(0.1, wait))
    return [e["vm"] for e in world.events if e["kind"] in ("oom", "panic", "host_oom", "crashed")]


@pytest.mark.slow
def test_a_static_vm_beside_hungry_dynamic_memory_keeps_the_memory_its_use_rises_into() -> None:
    assert _kills("static", 15) == []
    assert _kills("hvballoon", 15) == []
