"""Guests that tell the host nothing, as the fake's flavours model them (scenario
``balloon_driver: false``): a Hyper-V VM without integration services, an ESXi VM without
VMware Tools. Their use reads as unknown (never 0), the hypervisor does not move their memory,
and every policy holds them. (A KVM guest without its balloon driver reports nothing already:
tests/fake/test_behaviour.py, tests/backends/kvm/test_stats_and_config.py.)"""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon.fake.scenario import Scenario, parse_scenario
from hvballoon.fake.world import World
from hvballoon.policy import Controller, ControllerSettings
from hvballoon.policy.base import POLICY_NAMES
from hvballoon.policy.simulated import simulated_controller, simulated_round
from tests.support.policies import Fixed

GiB = 1024**3


def scenario(flavor: str, **silent: Any) -> Scenario:
    vms = [
        {"name": "silent", "memory": "8GiB", "startup": "2GiB", "used": "5GiB", "swap": "4GiB",
         "dynamic": True, "balloon_driver": False, **silent},
        {"name": "talks", "memory": "8GiB", "startup": "2GiB", "used": "3GiB", "dynamic": True},
    ]  # fmt: skip
    return parse_scenario({"name": "silent", "flavor": flavor, "host": {"physical": "24GiB"}, "vms": vms})


@pytest.mark.parametrize("flavor", ["hyperv", "esxi"])
def test_the_use_of_a_silent_guest_is_unknown_never_zero(flavor: str) -> None:
    with hvballoon.connect("fake://", world=World(scenario(flavor))) as hv:
        by_vm = {s.vm.name: s for s in hv.get_stats()}
        silent, talks = by_vm["silent"], by_vm["talks"]
        assert silent.stale and silent.used_bytes is None and silent.demand_bytes is None
        assert silent.guest_used_bytes is None and silent.pressure_ratio is None
        assert silent.current_bytes is not None
        assert not talks.stale and talks.used_bytes is not None


@pytest.mark.parametrize("policy", sorted(POLICY_NAMES))
def test_dynamic_memory_leaves_a_vm_without_integration_services_at_its_startup_memory(policy: str) -> None:
    world = World(scenario("hyperv"))
    silent, talks = world.guest("silent"), world.guest("talks")
    with simulated_controller(world, policy) as ctl:
        for _ in range(6):
            decisions, _read, wait = simulated_round(world, ctl)
            world.advance(max(wait, 30.0))
            assert silent.current_bytes == 2 * GiB  # its use above that is paged out
            held = next(d for d in decisions if d.vm == "silent")
            assert held.action == "hold" and not held.applied, held
    assert talks.current_bytes > 3 * GiB  # the one that reports is balanced on its demand
    assert silent.target_bytes == 8 * GiB


def test_integration_services_that_stop_leave_the_vm_where_it_is() -> None:
    world = World(
        scenario(
            "hyperv", balloon_driver=True, workload={"kind": "ramp", "params": {"to": "6GiB", "over": "10m"}}
        )
    )
    with hvballoon.connect("fake://", world=world) as hv:
        world.advance(120)
        held = world.guest("silent").current_bytes
        world.stop_balloon_driver(world.guest("silent").id)
        world.advance(900)
        (st,) = hv.get_stats(["silent"])
        assert st.current_bytes == held and st.stale and st.demand_bytes is None
        assert st.extra["memory_status"] is None


def test_an_esxi_vm_without_vmware_tools_keeps_its_balloon_and_reads_unknown() -> None:
    with hvballoon.connect("fake://", world=World(scenario("esxi"))) as hv:
        (st,) = hv.get_stats(["silent"])
        assert st.guest_used_bytes is None and st.demand_bytes is None and st.stale
        assert "VMware Tools is not installed or not running" in st.extra["stats_note"]
        assert st.extra["guest_heartbeat"] == "gray"
        # ESXi's own figures are still there: they do not need the guest
        assert st.ballooned_bytes == 0 and st.host_consumed_bytes is not None


def test_the_controller_holds_an_esxi_vm_without_vmware_tools() -> None:
    with hvballoon.connect("fake://", world=World(scenario("esxi"))) as hv:
        settings = ControllerSettings(host_memory_bytes=24 * GiB)
        d = {x.vm: x for x in Controller(hv, Fixed(4 * GiB), settings).step()}
        assert d["silent"].action == "hold" and d["silent"].rule == "controller.stale_figures"
        assert d["talks"].action == "lower"
        d = {x.vm: x for x in Controller(hv, "hvballoon", settings).step()}
        assert d["silent"].action == "hold" and d["silent"].rule == "hvballoon.no_stats"
        assert hv.get_config("silent").limit_bytes is None


def test_the_hvballoon_policy_says_a_kvm_domain_has_no_balloon_device_and_how_to_add_one() -> None:
    """A domain with ``<memballoon model='none'>`` reports nothing and cannot be moved while it
    runs: the decision says so, not merely that its figures are missing; a domain with a device
    whose guest is silent is held as before."""
    vms = [
        {"name": "plain", "memory": "4GiB", "used": "1GiB", "balloon_device": False},
        {"name": "nodriver", "memory": "4GiB", "used": "1GiB", "balloon_driver": False},
        {"name": "talks", "memory": "4GiB", "used": "1GiB", "stats_period": 2},
    ]
    spec = parse_scenario({"name": "plain", "flavor": "kvm", "host": {"physical": "64GiB"}, "vms": vms})
    with hvballoon.connect("fake://", world=World(spec)) as hv:
        settings = ControllerSettings(host_memory_bytes=64 * GiB)
        d = {x.vm: x for x in Controller(hv, "hvballoon", settings).step()}
    plain = d["plain"]
    assert plain.action == "hold" and plain.rule == "hvballoon.no_stats"
    assert "no balloon device" in plain.reason and "<memballoon model='virtio'>" in plain.reason
    assert "no balloon device" not in d["nodriver"].reason
    assert d["nodriver"].rule == "hvballoon.no_stats"
