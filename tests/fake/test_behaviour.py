"""The simulator through the API: over-inflation crashes, OOM, flavours, faults, workloads."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import hvballoon
from hvballoon import fake
from hvballoon.errors import (
    HVConnectionError,
    InvalidStateError,
    OperationTimeoutError,
    PermissionDeniedError,
    ScenarioError,
    SessionExpiredError,
    StatsUnavailableError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.fake.flavors import KVMFlavor
from hvballoon.fake.record import record
from hvballoon.fake.scenario import load_scenario, parse_scenario
from hvballoon.fake.store import world_from_bytes, world_to_bytes
from hvballoon.fake.world import SimulationError, World
from hvballoon.retry import RetryPolicy
from hvballoon.units import GiB, MiB

INSTANT = RetryPolicy(sleep=lambda _s: None)
NO_RETRY = RetryPolicy(max_attempts=1)

GUEST = """
name: small
host: {physical: 8GiB}
vms:
  - {name: tmpfs, memory: 512MiB, used: 380MiB, unfreeable: 300MiB, kernel: 73MiB, stats_period: 1}
  - {name: autodeflate, memory: 512MiB, used: 380MiB, unfreeable: 300MiB, kernel: 73MiB, deflate_on_oom: true, stats_period: 1}
  - {name: process, memory: 512MiB, used: 380MiB, kernel: 73MiB, stats_period: 1}
"""


@pytest.fixture
def small(tmp_path: Path) -> Iterator[hvballoon.Hypervisor]:
    path = tmp_path / "small.yaml"
    path.write_text(GUEST)
    with fake.world(path) as w, hvballoon.connect(f"fake://{path}", world=w, retry=INSTANT) as hv:
        yield hv


def test_over_inflation_past_unfreeable_memory_crashes_the_guest(small: hvballoon.Hypervisor) -> None:
    # the measured QEMU guest: 300 MiB in tmpfs, target 128 MiB -> stall at ~373 MiB, panic ~4 s later
    small.set_target("tmpfs", "128MiB", force=True)
    world = small.backend.world
    world.advance(1)
    (st,) = small.get_stats(["tmpfs"])
    assert st.current_bytes == 373 * MiB
    world.advance(4)
    with pytest.raises(VMNotFoundError):
        small.get_stats(["tmpfs"])
    assert "tmpfs" not in [v.name for v in small.list_vms()]
    assert [e["kind"] for e in world.events if e["vm"] == "tmpfs"][-1] == "panic"


def test_wait_for_target_reports_the_vanished_guest(small: hvballoon.Hypervisor) -> None:
    small.set_target("tmpfs", "128MiB", force=True)
    with pytest.raises(VMNotFoundError, match="vanished"):
        small.wait_for_target("tmpfs", timeout=60)


def test_deflate_on_oom_survives_at_the_stall_point(small: hvballoon.Hypervisor) -> None:
    small.set_target("autodeflate", "128MiB", force=True)
    small.backend.world.advance(60)
    (st,) = small.get_stats(["autodeflate"])
    # the balloon gave back what the guest needed instead of letting it die or OOM-kill
    assert 373 * MiB <= (st.current_bytes or 0) <= 380 * MiB and st.target_bytes == 128 * MiB
    assert small.backend.world.guest("autodeflate").oom_events == 0


def test_ordinary_process_is_oom_killed_and_the_balloon_arrives(small: hvballoon.Hypervisor) -> None:
    small.set_target("process", "128MiB", force=True)
    st = small.wait_for_target("process", timeout=10)
    assert st.current_bytes == 128 * MiB
    world = small.backend.world
    assert world.guest("process").oom_events == 1
    assert any(e["kind"] == "oom" and e["vm"] == "process" for e in world.events)


def test_guard_rail_refuses_what_would_crash(small: hvballoon.Hypervisor) -> None:
    with pytest.raises(hvballoon.TargetBelowFloorError):
        small.set_target("tmpfs", "128MiB")


def test_balloon_rate_and_guest_swap() -> None:
    with fake.world("java") as w, hvballoon.connect("fake://java", world=w, retry=INSTANT) as hv:
        hv.set_target("jvm01", "6GiB", force=True)
        w.advance(1)
        assert hv.get_stats(["jvm01"])[0].current_bytes == 10 * GiB  # 2 GiB/s
        w.advance(120)
        st = hv.get_stats(["jvm01"])[0]
        # the heap cannot be freed: it went to the guest's swap, and the GC faults it back in
        assert st.current_bytes == 6 * GiB
        assert (st.swap_out_bytes or 0) > GiB and (st.major_faults or 0) > 0
        jvm03 = w.guest("jvm03")  # no swap space at all
        hv.set_target("jvm03", "3GiB", force=True)
        w.advance(30)
        assert jvm03.oom_events >= 1


def test_esxi_limit_balloons_then_compresses_and_swaps() -> None:
    with (
        fake.world("esxi-limits") as w,
        hvballoon.connect("fake://esxi-limits", world=w, retry=INSTANT) as hv,
    ):
        w.advance(600)
        by = {s.vm.name: s for s in hv.get_stats()}
        web = by["web01"]
        assert web.ballooned_bytes and web.ballooned_bytes > 0
        assert (web.host_consumed_bytes or 0) <= 6 * GiB + 96 * MiB
        pinned = by["pinned01"]
        # sched.mem.maxmemctl caps the balloon at 2 GiB: the rest of the limit is compressed / swapped
        assert pinned.ballooned_bytes == 2 * GiB
        assert (pinned.compressed_bytes or 0) + (pinned.swapped_bytes or 0) > 0
        cfg = hv.get_config("pinned01")
        assert cfg.balloon_cap_bytes == 2 * GiB
        assert w.accounting()["host"]["conserved"]


def test_esxi_balloon_capped_at_65_percent() -> None:
    scenario = parse_scenario(
        {
            "name": "cap",
            "flavor": "esxi",
            "host": {"physical": "64GiB"},
            "vms": [{"name": "a", "memory": "16GiB", "used": "12GiB", "swap": "8GiB", "limit": "1GiB"}],
        }
    )
    w = World(scenario)
    w.advance(300)
    g = w.guest("a")
    assert g.ballooned_bytes == int(0.65 * 16 * GiB)
    assert g.guest_swapped_bytes > 0 and g.host_swapped_bytes + g.compressed_bytes > 0


def test_esxi_a_balloon_cap_of_zero_means_no_ballooning() -> None:
    """sched.mem.maxmemctl = 0 lets the balloon take nothing (VMware's way to switch ballooning
    off for a VM): ESXi holds the limit by compression and swap alone."""
    vm = {"name": "a", "memory": "16GiB", "used": "4GiB", "limit": "2GiB", "balloon_cap": 0}
    w = World(parse_scenario({"name": "cap0", "flavor": "esxi", "host": {"physical": "64GiB"}, "vms": [vm]}))
    w.advance(300)
    g = w.guest("a")
    assert g.ballooned_bytes == 0 and g.host_swapped_bytes + g.compressed_bytes > 0


def test_esxi_a_limit_above_the_memory_size_is_no_target_above_it() -> None:
    """As the esxi backend reads it: the VM can have its memory size, no more."""
    vms = [
        {"name": "a", "memory": "16GiB", "used": "4GiB", "limit": "64GiB"},
        {"name": "b", "memory": "16GiB", "used": "4GiB", "limit": "64GiB", "power_state": "stopped"},
    ]
    w = World(parse_scenario({"name": "over", "flavor": "esxi", "host": {"physical": "64GiB"}, "vms": vms}))
    with hvballoon.connect("fake://?flavor=esxi", world=w) as hv:
        for st in hv.get_stats():
            assert st.target_bytes == st.configured_bytes == 16 * 2**30, st.vm.name
            assert st.extra.get("limit_bytes", 64 * 2**30) == 64 * 2**30
        assert not hv.set_target("a", "16GiB").changed


def test_hyperv_dynamic_memory_steady_from_the_start_then_priority() -> None:
    w = World(load_scenario("hyperv-dm"))
    acc = w.accounting()
    # time zero is a running steady state, not a boot: no VM holds its 8 GiB startup memory
    # beyond what it needs, so nothing is paged to the host
    assert acc["host"]["swapped"] == 0 and acc["host"]["conserved"]
    w.advance(120)
    acc = w.accounting()
    assert acc["host"]["swapped"] == 0 and acc["host"]["conserved"]
    g = acc["guests"]
    assert g["dc01"]["current"] == 8 * GiB  # static memory: never moved by DM
    # sql01 (priority 90) got demand + buffer; dev01 (priority 10) was trimmed first
    assert g["sql01"]["current"] >= int(g["sql01"]["demand"] * 1.2) - 2 * MiB
    assert g["dev01"]["current"] < int(g["dev01"]["demand"] * 1.2)


def _one_vm(flavor: str, physical: str = "16GiB", **vm: object) -> dict[str, object]:
    return {"name": "one", "flavor": flavor, "host": {"physical": physical}, "vms": [{"name": "v", **vm}]}


def test_hyperv_dynamic_memory_vm_starts_where_its_demand_holds_it_not_at_startup() -> None:
    """Time zero is a running steady state: a Dynamic Memory VM using more than its startup
    memory (4 GiB // 2 by default) holds its use plus buffer, uses exactly the scenario's
    figure, and no OOM follows on an empty host."""
    w = World(parse_scenario(_one_vm("hyperv", memory="4GiB", used="3GiB")), strict=True)
    g = w.guest("v")
    assert g.used_bytes == 3 * GiB and g.demand_bytes == 3 * GiB
    assert g.current_bytes == int(3 * GiB * 1.2)  # demand plus the default 20 % buffer
    w.advance(60)
    assert [e["kind"] for e in w.events] == [] and g.used_bytes == 3 * GiB


def test_hyperv_time_zero_is_consistent_with_a_startup_below_what_the_guest_cannot_free() -> None:
    spec = _one_vm("hyperv", memory="4GiB", used="2GiB", unfreeable="2GiB", startup="512MiB")
    w = World(parse_scenario(spec), strict=True)  # raised "negative swap; negative cache; ..."
    w.advance(30)
    g = w.guest("v")
    assert g.current_bytes >= 2 * GiB and g.used_bytes == 2 * GiB and w.events == []


@pytest.mark.parametrize("unfreeable", ["0MiB", "768MiB"])
def test_hyperv_static_vm_has_exactly_its_startup_memory(unfreeable: str) -> None:
    """Hyper-V does not balance a static VM: a guest whose use grows past its startup memory
    swaps (or is refused more), its VM is never grown past the startup size."""
    spec = _one_vm(
        "hyperv",
        memory="4GiB",
        used="768MiB",
        unfreeable=unfreeable,
        swap="2GiB",
        dynamic=False,
        startup="1GiB",
        workload={"kind": "ramp", "params": {"to": "2GiB", "over": "20s"}},
    )
    w = World(parse_scenario(spec), strict=True)
    g = w.guest("v")
    for _ in range(4):
        assert g.current_bytes == GiB and g.memory_bytes == GiB
        w.advance(10)
    assert g.demand_bytes > GiB  # its use did grow past the startup size


def test_kvm_vm_never_holds_more_than_its_memory() -> None:
    """libvirt's <memory> is the most a balloon gives back: ``maximum`` (a Hyper-V setting) does
    not raise it, a target above it is refused, and QEMU clamps one set behind the API's back."""
    spec = _one_vm("kvm", memory="4GiB", used="3GiB", stats_period=1)
    w = World(parse_scenario(spec), strict=True)
    with hvballoon.connect("fake://", world=w) as hv:
        assert hv.get_config("v").maximum_bytes == 4 * GiB
        with pytest.raises(hvballoon.errors.TargetAboveMaximumError):
            hv.set_target("v", "8GiB")
        w.set_target(w.guest("v").id, 8 * GiB)
        w.advance(10)
        st = hv.get_stats(["v"])[0]
    assert st.configured_bytes == st.current_bytes == 4 * GiB and st.ballooned_bytes == 0


@pytest.mark.parametrize(
    ("vm", "size"),
    [
        ({"used": "1GiB", "dynamic": False, "startup": "3GiB"}, 3 * GiB),
        (
            {
                "used": "3GiB",
                "maximum": "6GiB",
                "workload": {"kind": "ramp", "params": {"to": "7GiB", "over": "1m"}},
            },
            6 * GiB,
        ),
    ],
    ids=["static-startup", "dynamic-maximum"],
)
def test_hyperv_vm_configured_size_is_what_it_may_hold_and_its_balloon_is_never_negative(
    vm: dict[str, object], size: int
) -> None:
    """A static VM's configured size is its startup memory, a Dynamic Memory VM's its maximum
    (neither may exceed the scenario's ``memory``, which the loader checks): what it holds never
    exceeds it, and what the recorder (and the policy benchmark) counts as ballooned never goes
    negative."""
    w = World(parse_scenario(_one_vm("hyperv", memory="8GiB", swap="4GiB", **vm)), strict=True)
    rec = record(w, every=10)
    with hvballoon.connect("fake://", world=w) as hv:
        w.advance(300)
        st = hv.get_stats(["v"])[0]
    g = w.guest("v")
    assert g.memory_bytes == st.configured_bytes == size
    assert g.current_bytes <= size
    assert min(rec.to_data()["vms"]["v"]["balloon_bytes"]) >= 0


def test_hyperv_static_vm_resized_down_below_its_use_keeps_within_its_size() -> None:
    """A runtime resize takes only what the guest can free; what it keeps stays within the
    VM's configured size, and what was taken counts as ballooned out of it."""
    w = World(parse_scenario(_one_vm("hyperv", memory="8GiB", used="3GiB", dynamic=False)), strict=True)
    rec = record(w, every=5)
    with hvballoon.connect("fake://", world=w) as hv:
        hv.set_target("v", "1GiB", force=True)
        w.advance(60)
    g = w.guest("v")
    assert 3 * GiB <= g.current_bytes < 8 * GiB and g.memory_bytes == 8 * GiB
    assert g.ballooned_bytes == 8 * GiB - g.current_bytes
    assert min(rec.to_data()["vms"]["v"]["balloon_bytes"]) >= 0


HYPERV_STATIC_PAIR = """
name: pair
flavor: hyperv
host: {physical: 16GiB, overhead: 1GiB, reserve: 3GiB}
vms:
  - {name: a, memory: 8GiB, used: 1GiB, dynamic: false}
  - {name: b, memory: 4032MiB, used: 1GiB, dynamic: false}
"""


def test_hyperv_grows_a_static_vm_only_by_what_it_has_free_for_its_vms() -> None:
    """A runtime resize up is refused when the host lacks the memory for its VMs (its memory
    less its own overhead, what its VMs hold with their overheads — 32 MiB each — and the
    reserve it keeps for itself); what it takes, the VM gets in full."""
    w = World(parse_scenario(yaml.safe_load(HYPERV_STATIC_PAIR)), strict=True)
    for_vms = 16 * GiB - GiB - 3 * GiB - 2 * 32 * MiB
    with hvballoon.connect("fake://", world=w, retry=NO_RETRY) as hv:
        hv.set_target("a", "6GiB", force=True)
        w.advance(60)
        assert w.guest("a").current_bytes == 6 * GiB
        free = for_vms - 6 * GiB - 4032 * MiB  # 2 GiB
        with pytest.raises(InvalidStateError, match="free for its VMs"):
            hv.set_target("a", "9GiB")  # 3 GiB more
        assert w.guest("a").current_bytes == 6 * GiB
        hv.set_target("a", 6 * GiB + free)
        w.advance(60)
    assert w.guest("a").current_bytes == 6 * GiB + free


def test_strict_world_catches_a_vm_above_its_configured_memory() -> None:
    class Overgrowing(KVMFlavor):
        """A flavour with the bug: it steers a VM past its configured memory."""

        def steer(self, world: World, floor: Any) -> Any:
            return world.state.memory + GiB, floor

    w = World(parse_scenario(_one_vm("kvm", memory="4GiB", used="1GiB")), strict=True)
    w.hypervisor = Overgrowing()
    with pytest.raises(SimulationError, match="more than its configured memory"):
        w.advance(1)


ESXI_RESERVED = """
name: r
flavor: esxi
host: {physical: 16GiB, swap: 0}
vms:
  - {name: res, memory: 12GiB, used: 2GiB, cache: 8GiB, reservation: 12GiB, memory_reservation_lock: true}
  - {name: other, memory: 12GiB, used: 10GiB}
"""


@pytest.mark.parametrize("reservation", [{"memory_reservation_lock": True}, {"reservation": "8GiB"}])
def test_esxi_never_reclaims_a_vm_below_its_reservation(reservation: dict[str, object]) -> None:
    """ESXi reclaims (balloons, compresses, swaps) only memory above a VM's reservation: the
    host's shortage falls on the VM without one."""
    spec = yaml.safe_load(ESXI_RESERVED)
    res = {k: v for k, v in spec["vms"][0].items() if k not in ("reservation", "memory_reservation_lock")}
    spec["vms"][0] = {**res, **reservation}
    w = World(parse_scenario(spec), strict=True)
    w.advance(30 * 60)
    r, other = w.guest("res"), w.guest("other")
    reserved = 12 * GiB if reservation.get("memory_reservation_lock") else 8 * GiB
    held_back = r.memory_bytes - r.ballooned_bytes - r.host_swapped_bytes - r.compressed_bytes
    assert held_back >= reserved and r.ballooned_bytes <= 12 * GiB - reserved
    assert other.ballooned_bytes > 4 * GiB
    assert w.accounting()["host"]["conserved"]


def test_kvm_a_stopped_domain_boots_with_its_definitions_current_memory() -> None:
    """A live target is forgotten when the domain stops (libvirt keeps it only in the running
    definition): its target is its definition's ``<currentMemory>`` again, its boot size."""
    w = World(load_scenario("seed"), flavor="kvm")
    with hvballoon.connect("fake://seed?flavor=kvm", world=w, retry=INSTANT) as hv:
        boot = hv.get_config("web01").startup_bytes
        assert boot == 16 * GiB
        hv.set_target("web01", "12GiB")
        assert hv.get_stats(["web01"])[0].target_bytes == 12 * GiB
        assert hv.get_config("web01").startup_bytes == boot  # a live target: not the definition's
        w.power_off(hv.resolve("web01").id)
        (st,) = hv.get_stats(["web01"])
        assert st.target_bytes == boot == hv.get_config("web01").startup_bytes


@pytest.mark.parametrize("flavor", ["kvm", "esxi", "hyperv"])
def test_a_running_vms_target_is_read_as_its_hypervisor_keeps_it(flavor: str) -> None:
    """libvirt keeps a running domain's balloon position, not the target asked for: the kvm
    flavour, like the kvm and qmp backends, shows only the targets the session set itself. An ESXi limit and a Hyper-V maximum are configuration: every session
    reads them."""
    w = World(load_scenario("seed"), flavor=flavor)
    uri = f"fake://seed?flavor={flavor}"
    with hvballoon.connect(uri, world=w, retry=INSTANT) as setter, hvballoon.connect(uri, world=w) as reader:
        before = reader.get_stats(["web01"])[0].target_bytes
        asked = 12 * GiB if flavor != "hyperv" else 20 * GiB  # a running VM's maximum only rises
        setter.set_target("web01", asked)
        mine, theirs = setter.get_stats(["web01"])[0], reader.get_stats(["web01"])[0]
        assert mine.target_bytes == asked
        if flavor == "kvm":
            assert before is None and theirs.target_bytes is None
        else:
            assert before is not None and theirs.target_bytes == asked


def test_kvm_guest_reports_are_trusted_as_the_kvm_backends_trust_them() -> None:
    """The guest driver's report is read as the kvm and qmp backends read it
    (hvballoon.virtio_balloon): stale once older than three periods and two seconds, and no
    guest figure at all once the stats period is off (libvirt keeps the last report, frozen)."""
    w = World(load_scenario("seed"), flavor="kvm")
    with hvballoon.connect("fake://seed?flavor=kvm", world=w, retry=INSTANT) as hv:
        vm = hv.resolve("web01")
        assert hv.get_config(vm).stats_period_seconds == 10
        w.freeze_reports([vm.id], 3600)
        w.advance(31)  # the last report is 31 s old: within 3 x 10 s + 2 s
        (st,) = hv.get_stats([vm])
        assert 31 <= st.guest_report_age_seconds <= 32 and not st.stale and st.guest_used_bytes is not None
        w.advance(10)
        (st,) = hv.get_stats([vm])
        assert st.stale and st.guest_used_bytes is not None  # stale, its figures kept
        hv.set_config(vm, stats_period=0)
        (st,) = hv.get_stats([vm])
        assert st.stale and st.guest_used_bytes is None and st.guest_total_bytes is None
        assert st.used_bytes is None


ESXI_ADMISSION = """
name: admission
flavor: esxi
host: {physical: 16GiB, overhead: 1GiB}
vms:
  - {name: big, memory: 12GiB, used: 2GiB, reservation: 8GiB}
  - {name: small, memory: 12GiB, used: 2GiB}
  - {name: parked, memory: 12GiB, used: 2GiB, power_state: stopped}
"""


def test_esxi_admission_control_refuses_a_reservation_the_host_cannot_back() -> None:
    """ESXi keeps every powered-on VM's reservation within what the host has for its VMs
    (15 GiB here) less the VMs' overheads ("this extra memory commitment is included in the
    admission control calculation": 96 MiB per VM powered on in the fake's ESXi, two here):
    raising a running VM's reservation (or locking it to its memory size) beyond that is refused
    by the host (InsufficientResourcesFault), and nothing changes; within it, lower, or on a VM
    that is off, it is taken."""
    unreserved = 15 * GiB - 8 * GiB - 2 * 96 * MiB
    w = World(parse_scenario(yaml.safe_load(ESXI_ADMISSION)))
    with hvballoon.connect("fake://?flavor=esxi", world=w, retry=NO_RETRY) as hv:
        before = hv.get_config("small")
        for change in (
            {"reservation": "8GiB"},
            {"reservation": unreserved + 4 * MiB},  # a memoryMB step more than is unreserved
            {"memory_reservation_lock": True},
        ):
            with pytest.raises(InvalidStateError, match="admission control") as info:
                hv.set_config("small", **change)
            assert info.value.native_code == "vim.fault.InsufficientMemoryResourcesFault"
            assert info.value.details["unreserved_bytes"] == unreserved
            assert hv.get_config("small") == before
        assert hv.set_config("small", reservation=unreserved).changed
        assert hv.set_config("big", reservation="4GiB").changed  # lowering is always taken
        assert hv.set_config("parked", memory_reservation_lock=True).changed  # checked at power-on


def test_a_world_saved_before_the_reservation_array_loads_it_from_its_configuration() -> None:
    import json

    import numpy as np

    w = World(parse_scenario(yaml.safe_load(ESXI_RESERVED)))
    w.advance(60)
    data = world_to_bytes(w)
    size = int.from_bytes(data[:8], "big")
    header = json.loads(data[8 : 8 + size])
    body, offset, kept = data[8 + size :], 0, b""
    for key, dtype, shape in list(header["arrays"]):
        length = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if key == "state.reservation":
            header["arrays"].remove([key, dtype, shape])
        else:
            kept += body[offset : offset + length]
        offset += length
    head = json.dumps(header).encode()
    old = world_from_bytes(len(head).to_bytes(8, "big") + head + kept)
    np.testing.assert_array_equal(old.state.reservation, [12 * GiB, 0])
    assert world_to_bytes(old) == data


def test_faults_by_count_are_retried_like_real_transient_errors() -> None:
    with fake.world("seed") as w:
        w.faults.add(op="get_stats", kind="connection_lost", count=2)
        with hvballoon.connect("fake://seed", world=w, retry=INSTANT) as hv:
            assert len(hv.get_stats()) == 10  # third attempt succeeds
        w.faults.add(op="get_stats", kind="timeout", count=5)
        with (
            hvballoon.connect("fake://seed", world=w, retry=INSTANT) as hv,
            pytest.raises(OperationTimeoutError),
        ):
            hv.get_stats()


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("connection_lost", HVConnectionError),
        ("session_expired", SessionExpiredError),
        ("permission_denied", PermissionDeniedError),
        ("timeout", OperationTimeoutError),
    ],
)
def test_fault_kinds_map_to_hvballoon_errors(kind: str, error: type[Exception]) -> None:
    with fake.world("seed") as w, hvballoon.connect("fake://seed", world=w, retry=NO_RETRY) as hv:
        w.faults.add(op="set_target", kind=kind, after=1)
        hv.set_target("web01", "12GiB")
        with pytest.raises(error) as info:
            hv.set_target("web01", "11GiB")
        assert info.value.retryable is (kind != "permission_denied")  # type: ignore[attr-defined]
        assert hv.get_stats(["web01"])[0].target_bytes == 12 * GiB


def test_vanished_stale_slow_and_driverless() -> None:
    with fake.world("seed") as w, hvballoon.connect("fake://seed", world=w, retry=NO_RETRY) as hv:
        w.faults.add(op="get_config", kind="vm_vanished", vm="web02")
        with pytest.raises(VMNotFoundError):
            hv.get_config("web02")
        assert "web02" not in [v.name for v in hv.list_vms()]

        w.faults.add(op="get_stats", kind="stats_stale", vm="web03", duration=600)
        hv.get_stats()
        w.advance(120)
        with pytest.raises(StatsUnavailableError):
            hv.set_target("web03", "8GiB")

        w.faults.add(op="list_vms", kind="slow", latency=5)
        before = w.now
        hv.list_vms()
        assert w.now == before + 5
        w.faults.add(op="list_vms", kind="slow", latency=60)
        with pytest.raises(OperationTimeoutError):
            hv.list_vms()

        w.faults.add(op="set_target", kind="no_balloon_driver", vm="web01")
        with pytest.raises(UnsupportedOperationError, match="no balloon driver"):
            hv.set_target("web01", "8GiB")


def test_probability_faults_are_seeded() -> None:
    def pattern(seed: int) -> list[bool]:
        w = World(load_scenario("seed"), seed=seed)
        w.faults.add(op="get_stats", kind="timeout", probability=0.3)
        return [w.faults.hit("get_stats") is not None for _ in range(200)]

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 30 < sum(pattern(7)) < 90


def test_faults_from_the_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(
        "name: f\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB, used: 256MiB}]\n"
        "faults: [{op: list_vms, kind: session_expired, count: 1}]\n"
    )
    with hvballoon.connect(f"fake://{path}", retry=NO_RETRY) as hv, pytest.raises(SessionExpiredError):
        hv.list_vms()
    path.write_text(
        "name: f\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB}]\nfaults: [{op: list, kind: boom}]\n"
    )
    with pytest.raises(ScenarioError, match=r"faults\.0.*unknown fault op"):
        load_scenario(path)


def test_faults_in_a_time_window_fire_only_then_whoever_calls() -> None:
    with fake.world("seed") as w, hvballoon.connect("fake://seed", world=w, retry=NO_RETRY) as hv:
        w.faults.add(op="set_target", kind="connection_lost", probability=1.0, at=60, until=120)
        hv.set_target("web01", "12GiB")  # before the window
        w.advance(60)
        for size in ("11GiB", "10GiB"):
            with pytest.raises(HVConnectionError):
                hv.set_target("web01", size)
        assert hv.get_stats(["web01"])[0].target_bytes == 12 * GiB
        w.advance(60)  # the window has closed
        hv.set_target("web01", "10GiB")
        assert hv.get_stats(["web01"])[0].target_bytes == 10 * GiB


def test_fault_windows_round_trip_and_are_checked(tmp_path: Path) -> None:
    w = World(load_scenario("seed"))
    w.faults.add(op="get_stats", kind="slow", latency=60, probability=0.5, at=10, until=20)
    again = world_from_bytes(world_to_bytes(w))
    assert (again.faults.rules[0].at, again.faults.rules[0].until) == (10.0, 20.0)
    assert again.faults.hit("get_stats") is None  # a windowed rule needs the world's time
    for at, until in ((20, 10), (-1, 5)):
        with pytest.raises(ValueError, match=r"until must be after at|must not be negative"):
            w.faults.add(op="get_stats", kind="timeout", at=at, until=until)
    path = tmp_path / "f.yaml"
    path.write_text(
        "name: f\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB}]\n"
        "faults: [{op: get_stats, kind: timeout, at: 2m, until: 1m}]\n"
    )
    with pytest.raises(ScenarioError, match=r"faults\.0.*until must be after at"):
        load_scenario(path)
    path.write_text(
        "name: f\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB}]\n"
        "faults: [{op: get_stats, kind: timeout, at: soon}]\n"
    )
    with pytest.raises(ScenarioError, match=r"faults\.0\.at"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("workload", "problem"),
    [
        ("{kind: spike, params: {at: 1h}}", "params.duration: Field required"),
        ("{kind: diurnal, params: {amplitude: 2 gigs}}", "params.amplitude"),
        ("{kind: ramp, params: {to: 2GiB, over: 0}}", "params.over"),
        ("{kind: jvm, params: {heap: 1GiB, colour: red}}", "params.colour"),
        ("{kind: mixed, params: {parts: [{kind: spike, params: {}}]}}", "parts.0"),
        ("{kind: weather}", "kind"),
    ],
)
def test_bad_workload_params_name_file_path_and_problem(tmp_path: Path, workload: str, problem: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        f"name: w\nhost: {{physical: 8GiB}}\nvms: [{{name: a, memory: 1GiB, workload: {workload}}}]\n"
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg and "vms.0.workload" in msg and problem in msg


def test_the_recorded_oom_count_counts_each_kill_once() -> None:
    """batch01's 5 GiB spike at 2 h, squeezed to 3 GiB with 2 GiB of swap: one OOM kill, which
    the series shows from the sample after it on, once."""
    w = World(load_scenario("seed"))
    rec = record(w, every=60)
    w.set_target(w.guest("batch01").id, 3 * GiB)
    w.advance(3 * 3600)
    series = rec.to_data()["vms"]["batch01"]["oom_events"]
    (kill,) = [e["t"] for e in w.events if e["kind"] == "oom"]
    assert w.guest("batch01").oom_events == 1
    assert series == [0 if t < kill else 1 for t in rec.t]


def test_workload_shapes() -> None:
    w = World(load_scenario("seed"))
    rec = record(w, every=60)
    w.advance(4 * 3600)
    data = rec.to_data()
    t = data["t"]
    batch = data["vms"]["batch01"]["demand_bytes"]  # spike at 2h for 30m, 5 GiB
    at = {round(x): i for i, x in enumerate(t)}
    assert batch[at[3600]] == int(1.5 * GiB)
    assert batch[at[2 * 3600 + 900]] == int(6.5 * GiB)
    assert batch[at[3 * 3600]] == int(1.5 * GiB)
    ramp = data["vms"]["app02"]["demand_bytes"]  # 4.5 -> 6 GiB over 8h
    assert ramp[at[4 * 3600]] == int(5.25 * GiB)
    jvm = data["vms"]["jvm01"]["demand_bytes"]
    assert all(b >= a for a, b in itertools.pairwise(jvm))  # a heap is never given back


def test_wall_clock_mode_follows_real_time() -> None:
    w = World(load_scenario("seed"), clock="wall", speed=3600)
    w.sync()
    import time

    time.sleep(0.05)
    w.sync()
    assert 100 < w.now < 3600
    with hvballoon.connect("fake://seed?speed=60") as hv:
        assert hv.backend.world.clock == "wall"
    with pytest.raises(hvballoon.InvalidURIError):
        hvballoon.connect("fake://seed?speed=-1")


FREE_PAGES = """
name: free-pages
flavor: kvm
host: {{name: host01, physical: 32GiB}}
vms:
  - {{name: a, memory: 8GiB, used: 1GiB, cache: 0.5GiB, swap: 1GiB, free_page_reporting: {on},
      workload: {{kind: spike, params: {{at: 60, duration: 300, size: 4GiB, rise: 5}}}}}}
"""


@pytest.mark.parametrize("on", [True, False])
def test_free_page_reporting_decides_whether_the_host_keeps_touched_pages(on: bool) -> None:
    w = World(parse_scenario(yaml.safe_load(FREE_PAGES.format(on=str(on).lower())), source="test"))
    g = w.guests[w.ids[0]]
    w.advance(120)  # in the spike: about 5.5 GiB touched
    peak = g.host_backed_bytes
    assert peak > 5 * GiB
    w.advance(600)  # the spike is over: the guest freed 4 GiB
    if on:
        assert g.host_backed_bytes < peak - 3 * GiB, "reported free pages go back to the host"
    else:
        assert g.host_backed_bytes >= peak, "without reporting the host backs every page touched"
        # a balloon takes them back
        with hvballoon.connect("fake://", world=w) as hv:
            hv.set_target("a", "3GiB", force=True)
        w.advance(30)
        assert g.host_backed_bytes <= 3 * GiB
    with hvballoon.connect("fake://", world=w) as hv:
        assert hv.get_config("a").free_page_reporting is on
        with pytest.raises(InvalidStateError):
            hv.set_config("a", free_page_reporting=not on)


def test_esxi_memory_hot_add_grows_a_running_vm_as_vsphere_does(tmp_path: Path) -> None:
    """A running ESXi VM with memory hot-add on grows its memory (the CLI's ``config --maximum``),
    within its limit and increment, and the figures show it; it never shrinks live, and one with
    hot-add off is not resized live at all; every refusal names its rule and changes nothing."""
    from tests.support.cli import invoke

    path = tmp_path / "grow.yaml"
    path.write_text(
        "name: grow\nflavor: esxi\nhost: {physical: 64GiB}\nvms:\n"
        "  - {name: grow01, memory: 16GiB, used: 3GiB, memory_hot_add: true, hot_add_limit: 32GiB,"
        " hot_add_increment: 128MiB}\n"
        "  - {name: plain01, memory: 16GiB, used: 3GiB}\n"
    )
    shown = invoke("config", f"fake://{path}", "grow01", "--json")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["extra"] == {
        "memory_hot_add": True,
        "hot_add_limit_bytes": 32 * GiB,
        "hot_add_increment_bytes": 128 * MiB,
    }
    grown = invoke("config", f"fake://{path}", "grow01", "--maximum", "20GiB")
    assert grown.returncode == 0 and "maximum: 16 GiB -> 20 GiB" in grown.stdout, grown.stderr
    for vm, size, rule in [
        ("grow01", "8GiB", "memory_hot_add_grow_only"),
        ("grow01", "40GiB", "memory_hot_add_limit"),
        ("grow01", "20000MiB", "memory_hot_add_increment"),
        ("plain01", "20GiB", "memory_size_only_when_off"),
    ]:
        for dry in ([], ["--dry-run"]):
            refused = invoke("config", f"fake://{path}", vm, "--maximum", size, "--json", *dry)
            assert refused.returncode != 0, refused.stdout
            assert yaml.safe_load(refused.stdout)["details"]["rule"] == rule
    with fake.world(str(path)) as w, hvballoon.connect(f"fake://{path}", world=w) as hv:
        hv.set_config("grow01", maximum="24GiB")
        (st,) = hv.get_stats(["grow01"])
        assert st.configured_bytes == st.target_bytes == 24 * GiB
        assert st.current_bytes == 24 * GiB - (st.ballooned_bytes or 0)
        assert hv.get_config("grow01").maximum_bytes == 24 * GiB
        with pytest.raises(InvalidStateError):
            hv.set_config("grow01", maximum="20GiB")
