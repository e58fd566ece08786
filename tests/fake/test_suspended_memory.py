"""What a suspended VM holds on the simulated host, by flavour: a KVM guest suspended to RAM
(libvirt's pmsuspended) keeps its memory in its QEMU process, as a paused one does; an ESXi
VM's suspend and a Hyper-V saved state write it to disk, so the host holds none of it."""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.units import GiB


def _held(flavor: str, power_state: str) -> tuple[int, int]:
    """The host's resident memory and free memory with one 4 GiB VM (3 GiB used) in that state."""
    scenario = parse_scenario(
        {
            "name": "held",
            "flavor": flavor,
            "host": {"physical": "16GiB"},
            "vms": [{"name": "a", "memory": "4GiB", "used": "3GiB", "power_state": power_state}],
        }
    )
    w = World(scenario, strict=True)
    with hvballoon.connect("fake://", world=w) as hv:
        w.advance(60)
        (host,) = hv.get_host_stats()
        assert host.free_bytes is not None
        return int(host.extra["resident_bytes"]), host.free_bytes


@pytest.mark.parametrize("flavor", ["kvm", "esxi", "hyperv"])
def test_a_suspended_vm_holds_memory_only_where_it_is_suspended_to_ram(flavor: str) -> None:
    paused, suspended, stopped = (_held(flavor, s) for s in ("paused", "suspended", "stopped"))
    assert paused[0] >= 3 * GiB and stopped[0] == 0
    assert suspended == (paused if flavor == "kvm" else stopped)


def test_a_pmsuspended_domain_powered_off_gives_its_memory_back() -> None:
    scenario = parse_scenario(
        {
            "name": "off",
            "host": {"physical": "16GiB"},
            "vms": [{"name": "a", "memory": "4GiB", "used": "3GiB", "power_state": "suspended"}],
        }
    )
    w = World(scenario, strict=True)
    assert w.accounting()["host"]["resident"] >= 3 * GiB
    w.power_off(w.guest("a").id)
    w.advance(10)
    assert w.accounting()["host"]["resident"] == 0
