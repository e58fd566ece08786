"""The fake's power cycle: ``World.power_off`` then ``World.power_on``, a cold start in a new run.

As libvirt's test and QEMU drivers do, a KVM domain that starts gets a new domain ID and boots
at its definition's ``<currentMemory>``: a live balloon target set before it stopped is gone, and
so is the session's knowledge of it, even when no sweep saw it off. An ESXi limit and a Hyper-V
size are configuration, and a start keeps them. Hyper-V starts a VM only with its startup memory
free on the host; ESXi powers on a VM with a reservation only with its reservation plus its
overhead unreserved (admission control).
"""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon import RetryPolicy
from hvballoon.fake.scenario import load_scenario, parse_scenario
from hvballoon.fake.store import world_from_bytes, world_to_bytes
from hvballoon.fake.world import StartRefusedError, World
from hvballoon.models import ConfigUpdate

GiB = 2**30
INSTANT = RetryPolicy(sleep=lambda seconds: None)


def cycle(w: World, name: str) -> None:
    g = w.guest(name)
    w.power_off(g.id)
    w.power_on(g.id)


def test_a_kvm_domain_started_again_has_a_new_run_and_its_boot_size() -> None:
    w = World(load_scenario("seed"), flavor="kvm")
    with hvballoon.connect("fake://seed", world=w, retry=INSTANT) as hv:
        before = hv.resolve("web01").extra["libvirt_id"]
        hv.set_target("web01", "8GiB", force=True)
        w.advance(30)
        assert hv.get_stats(["web01"])[0].current_bytes == 8 * GiB
        cycle(w, "web01")  # no sweep sees it off
        w.advance(30)
        (st,) = hv.get_stats(["web01"])
        assert st.vm.power_state is hvballoon.PowerState.RUNNING
        assert st.vm.extra["libvirt_id"] not in (None, before)
        assert st.target_bytes is None  # the session's target was for the run before
        assert st.current_bytes == 16 * GiB == w.guest("web01").target_bytes
        assert st.guest_used_bytes is not None and not st.stale  # its driver reports again
        assert w.accounting()["host"]["conserved"]


def test_a_stopped_kvm_domain_has_no_run() -> None:
    w = World(load_scenario("seed"), flavor="kvm")
    w.power_off(w.guest("web01").id)
    with hvballoon.connect("fake://seed", world=w) as hv:
        assert hv.resolve("web01").extra["libvirt_id"] is None


@pytest.mark.parametrize("flavor", ["esxi", "hyperv"])
def test_a_start_keeps_a_target_that_is_configuration(flavor: str) -> None:
    w = World(load_scenario("seed"), flavor=flavor)
    g = w.guest("web01")
    with hvballoon.connect(f"fake://seed?flavor={flavor}", world=w, retry=INSTANT) as hv:
        if flavor == "hyperv":  # a Dynamic Memory maximum only goes down while the VM is off
            w.power_off(g.id)
        hv.set_target("web01", "12GiB", force=True)
        if flavor == "esxi":
            w.power_off(g.id)
        w.power_on(g.id)
        w.advance(60)
        assert hv.get_stats(["web01"])[0].target_bytes == 12 * GiB


def test_only_a_stopped_vm_is_started() -> None:
    w = World(load_scenario("seed"))
    with pytest.raises(ValueError, match="only a stopped VM"):
        w.power_on(w.guest("web01").id)
    w.vanish(w.guest("web02").id)
    with pytest.raises(ValueError, match="gone"):
        w.power_on(w.guest("web02").id)


def test_a_saved_world_keeps_its_runs() -> None:
    w = World(load_scenario("seed"))
    cycle(w, "web01")
    again = world_from_bytes(world_to_bytes(w))
    assert again.runs == w.runs and again.guest("web01").run == 11


def _hyperv(*vms: dict[str, object], physical: str = "16GiB", reserve: str = "0") -> World:
    """A Hyper-V host (2 GiB for its own OS, ``reserve`` kept for itself) with static VMs."""
    host = {"physical": physical, "overhead": "2GiB", "reserve": reserve}
    spec = {"name": "start", "flavor": "hyperv", "host": host}
    return World(parse_scenario({**spec, "vms": [{"dynamic": False, **vm} for vm in vms]}), strict=True)


def _held(w: World) -> tuple[object, ...]:
    arrays = w.state.arrays()
    return tuple(arrays[k].tobytes() for k in sorted(arrays)), list(w.power), list(w.runs)


def test_hyperv_does_not_start_a_vm_whose_startup_memory_is_not_free() -> None:
    """Hyper-V starts a VM only with its startup memory free on the host at that moment (event
    19544), whatever started it: refused, the VM stays off, the world logs it, nothing else moves."""
    w = _hyperv(
        {"name": "big", "memory": "10GiB", "used": "2GiB"},
        {"name": "late", "memory": "8GiB", "used": "2GiB", "power_state": "stopped"},
    )
    late = w.guest("late")
    before = _held(w)
    with pytest.raises(
        StartRefusedError, match="'late' could not be started because it requires 8192 MB"
    ) as err:
        w.power_on(late.id)
    assert err.value.vm == "late" and isinstance(err.value, ValueError)
    assert late.power_state == "stopped" and late.run is None
    assert [e["kind"] for e in w.events] == ["start_failed"]
    assert "event 19544" in w.events[0]["message"]
    assert _held(w) == before  # the refusal changed nothing else
    w.power_off(w.guest("big").id)  # its memory is free again
    w.power_on(late.id)
    w.advance(10)
    assert late.power_state == "running" and late.current_bytes == 8 * GiB


@pytest.mark.parametrize(("reserve", "starts"), [("0", True), ("1GiB", True), ("2GiB", False)])
def test_hyperv_starts_a_vm_only_out_of_what_the_host_has_for_its_vms(reserve: str, starts: bool) -> None:
    """The reserve the host keeps for itself is not its VMs' (Dynamic Memory never hands it out):
    on 16 GiB less 2 GiB for its own OS, a 4 GiB VM beside a running 8 GiB one (and its 32 MiB
    of overhead) starts while the host keeps 1 GiB, not while it keeps 2 GiB."""
    w = _hyperv(
        {"name": "big", "memory": "8GiB", "used": "2GiB"},
        {"name": "late", "memory": "4GiB", "used": "1GiB", "power_state": "stopped"},
        reserve=reserve,
    )
    late = w.guest("late")
    if starts:
        w.power_on(late.id)
        assert late.power_state == "running"
    else:
        with pytest.raises(StartRefusedError, match="requires 4096 MB"):
            w.power_on(late.id)
        assert late.power_state == "stopped"


def test_a_dynamic_memory_vm_needs_its_startup_memory_free_not_its_minimum() -> None:
    w = _hyperv(
        {"name": "big", "memory": "10GiB", "used": "2GiB"},
        {"name": "dm", "memory": "8GiB", "used": "1GiB", "dynamic": True, "startup": "6GiB",
         "minimum": "512MiB", "power_state": "stopped"},
    )  # fmt: skip
    with pytest.raises(StartRefusedError, match="requires 6144 MB"):
        w.power_on(w.guest("dm").id)


def _esxi(*vms: dict[str, object]) -> World:
    """An ESXi host with 14 GiB for its VMs (16 GiB, 2 GiB for itself); a VM's overhead is the
    flavour's 96 MiB."""
    spec = {"name": "admit", "flavor": "esxi", "host": {"physical": "16GiB", "overhead": "2GiB"}}
    return World(parse_scenario({**spec, "vms": list(vms)}), strict=True)


#: 10 GiB reserved plus 96 MiB of overhead: 14 GiB - 10 GiB - 96 MiB = 4000 MiB stay unreserved
_BIG = {"name": "big", "memory": "12GiB", "used": "2GiB", "reservation": "10GiB"}


def test_esxi_does_not_power_on_a_vm_whose_reservation_and_overhead_are_not_unreserved() -> None:
    """ESXi's admission control at power-on, whoever asked: refused with the fault's name and
    figures, the VM stays off, the world logs it, nothing else moves."""
    w = _esxi(_BIG, {"name": "late", "memory": "8GiB", "used": "2GiB", "reservation": "4GiB",
                     "power_state": "stopped"})  # fmt: skip
    late = w.guest("late")
    before = _held(w)
    with pytest.raises(StartRefusedError, match="InsufficientMemoryResourcesFault") as err:
        w.power_on(late.id)
    assert err.value.vm == "late" and isinstance(err.value, ValueError)
    assert "requests 4192 MB" in str(err.value) and "4000 MB is unreserved" in str(err.value)
    assert late.power_state == "stopped" and late.run is None
    assert [e["kind"] for e in w.events] == ["start_failed"]
    assert _held(w) == before
    w.power_off(w.guest("big").id)  # its reservation is released
    w.power_on(late.id)
    w.advance(10)
    assert late.power_state == "running"


@pytest.mark.parametrize(("reservation", "starts"), [("3904MiB", True), ("3905MiB", False)])
def test_esxi_admission_control_counts_the_vm_overhead(reservation: str, starts: bool) -> None:
    """4000 MiB unreserved: a reservation of 3904 MiB plus 96 MiB of overhead fits exactly, one
    MiB more does not (without the overhead it would)."""
    w = _esxi(_BIG, {"name": "late", "memory": "8GiB", "used": "2GiB", "reservation": reservation,
                     "power_state": "stopped"})  # fmt: skip
    late = w.guest("late")
    if starts:
        w.power_on(late.id)
        assert late.power_state == "running"
    else:
        with pytest.raises(StartRefusedError):
            w.power_on(late.id)
        assert late.power_state == "stopped"


def test_esxi_powers_on_a_vm_without_a_reservation_on_a_fully_reserved_host() -> None:
    """Admission control guarantees reservations only: a VM without one powers on, however
    little is unreserved (ESXi overcommits its memory)."""
    # 14 GiB - 14208 MiB - 96 MiB: 32 MiB unreserved, less than the new VM's overhead
    w = _esxi({**_BIG, "reservation": "14208MiB", "memory": "14GiB"},
              {"name": "free", "memory": "8GiB", "used": "2GiB", "power_state": "stopped"})  # fmt: skip
    w.power_on(w.guest("free").id)
    assert w.guest("free").power_state == "running"


@pytest.mark.parametrize("flavor", ["kvm", "esxi"])
def test_an_overcommitting_hypervisor_starts_what_hyperv_would_not(flavor: str) -> None:
    w = World(load_scenario("dense"), flavor=flavor)
    g = w.guest("vm01")
    w.power_off(g.id)
    w.set_config(g.id, ConfigUpdate(maximum_bytes=100 * GiB))
    w.power_on(g.id)
    assert g.power_state == "running"


def test_a_hyperv_vm_started_below_what_its_workloads_ask_is_oom_killed() -> None:
    """A static VM whose startup size was lowered while it was off starts with it; its workloads
    ask what they asked before, and what does not fit (no swap here) is its OOM killer's."""
    w = _hyperv({"name": "small", "memory": "8GiB", "used": "4GiB", "power_state": "stopped"})
    g = w.guest("small")
    with hvballoon.connect("fake://", world=w) as hv:
        hv.set_target("small", "2GiB", force=True)
    w.power_on(g.id)
    w.advance(10)
    assert g.current_bytes == g.memory_bytes == 2 * GiB
    assert g.oom_events == 1 and [e["kind"] for e in w.events][-1] == "oom"
