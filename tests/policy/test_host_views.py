"""The host as the policy sees it, two ways, on a simulated host under pressure: derived from
its VMs (``host_memory_bytes`` set: the host's overhead plus what each running VM consumes)
and read from the host (``get_host_stats``, as ``hvballoon control`` does by default).

They agree to the byte on ESXi (a VM's consumed memory, ``hostMemoryUsage``, holds its
compression cache and its overhead) and on KVM (a domain's RSS holds its overhead, not what
the host swapped, which the host does not hold either). They differ, by design, where the VMs'
figures cannot show what the host holds:

* Hyper-V: ``MemoryAssigned`` does not count the VM's overhead, which the host holds (the
  derived view is short by it, per running VM);
* a paused VM (any flavour) still holds its memory, and the derived view counts running VMs
  only (it is short by what the paused VM consumes).
"""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.policy.controller import Controller
from hvballoon.policy.model import ControllerSettings
from hvballoon.units import GiB

#: Three 16 GiB VMs using 14 GiB each on a 24 GiB host (1 GiB its own, 1 GiB kept free), the
#: first without a balloon driver: the host reclaims (ESXi: sharing, compression and swap; KVM:
#: swap; Hyper-V: Dynamic Memory).
USED = "14GiB"


def _world(flavor: str, *, paused: bool = False) -> World:
    vms: list[dict[str, object]] = [
        {"name": f"v{i}", "memory": "16GiB", "used": USED, "swap": "8GiB"} for i in range(3)
    ]
    vms[0]["balloon_driver"] = False
    if paused:
        vms[-1]["power_state"] = "paused"
    host: dict[str, object] = {"physical": "24GiB", "overhead": "1GiB", "reserve": "1GiB"}
    if flavor == "kvm":
        host["swap"] = "32GiB"
    if flavor == "hyperv":  # Hyper-V starts each VM only with its startup memory free
        host["physical"] = "28GiB"
    return World(parse_scenario({"name": "pressed", "flavor": flavor, "host": host, "vms": vms}), strict=True)


def _views(w: World) -> tuple[int, int]:
    """The host's used memory the policy sees: derived from the VMs, then read from the host."""
    host = w.host
    with hvballoon.connect("fake://", world=w) as hv:
        w.advance(300)
        derived = ControllerSettings(
            host_memory_bytes=host.physical_bytes, host_overhead_bytes=host.overhead_bytes
        )
        views = []
        for settings in (derived, ControllerSettings()):
            snap, _, _ = Controller(hv, "hvballoon", settings, dry_run=True).snapshot()
            assert snap.host.total_bytes == host.physical_bytes
            views.append(snap.host.used_bytes)
    return views[0], views[1]


def test_esxi_a_vm_consumes_its_compression_cache() -> None:
    """ESXi keeps a VM's compressed pages in that VM's compression cache, host memory charged to
    the VM: its consumed memory counts it, and the views agree while the host compresses."""
    w = _world("esxi")
    derived, read = _views(w)
    acc = w.accounting()["host"]
    assert acc["compression_cache"] > 256 * 2**20 and acc["swapped"] > 0  # the host compresses
    assert derived == read


def test_kvm_a_domain_consumes_what_the_host_did_not_swap() -> None:
    w = _world("kvm")
    derived, read = _views(w)
    assert w.accounting()["host"]["swapped"] > GiB  # the host swaps QEMU's memory
    assert derived == read


def test_hyperv_memory_assigned_leaves_out_the_vms_overhead() -> None:
    w = _world("hyperv")
    derived, read = _views(w)
    overheads = sum(int(w.state.overhead[g.index]) for g in w.guests.values())
    # Dynamic Memory filled the host up to what it keeps free
    assert abs(w.accounting()["host"]["free"] - w.host.reserve_bytes) < 2**20
    assert read - derived == overheads


@pytest.mark.parametrize("flavor", ["kvm", "esxi", "hyperv"])
def test_a_paused_vm_holds_memory_the_derived_view_does_not_count(flavor: str) -> None:
    running, paused = _views(_world(flavor)), _views(_world(flavor, paused=True))
    assert paused[1] == running[1]  # the host holds the paused VM's memory all the same
    assert running[1] - running[0] < GiB  # (Hyper-V: the overheads)
    assert paused[1] - paused[0] > 4 * GiB  # the derived view misses the paused VM's
