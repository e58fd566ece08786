"""Domains the ordinary hosts lack, against the test driver: crashed ones and TiB ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import hvballoon
from hvballoon.backends.kvm._domain import (
    Freshness,
    parse_domain_xml,
    record_from_per_domain,
    stats_from_record,
)
from hvballoon.errors import (
    AmbiguousVMError,
    InvalidRequestError,
    InvalidStateError,
    TargetAboveMaximumError,
    UnsupportedOperationError,
)
from hvballoon.models import VM, ConfigUpdate, PowerState
from hvballoon.session import Hypervisor
from tests.support.calls import counted
from tests.support.cli import invoke
from tests.support.libvirt_xml import domain_xml, write_node_xml

libvirt = pytest.importorskip("libvirt")

GiB = 2**30
TiB = 2**40
#: a signed 32-bit -2**31 as libvirt's unsigned long long carries it (the test driver's
#: memoryStats() of a 4 TiB domain whose balloon is at 2 TiB = 2**31 KiB)
WRAPPED = 2**64 - 2**31


@pytest.fixture
def odd_hv(tmp_path: Path) -> Iterator[Hypervisor]:
    uri = write_node_xml(
        tmp_path / "node.xml",
        [
            domain_xml("crashed01", memory_mib=4096, current_mib=2048, runstate=6),
            domain_xml("huge01", memory_mib=4 * 2**20, current_mib=2 * 2**20),
            domain_xml("big01", memory_mib=2 * 2**20 - 1, current_mib=2**20),
        ],
    )
    with hvballoon.connect(uri) as hv:
        yield hv


def test_a_crashed_domain_is_active_so_it_is_paused_not_stopped(odd_hv: Hypervisor) -> None:
    # libvirt keeps a domain crashed only with <on_crash>preserve</on_crash>: QEMU and its memory stay
    dom = odd_hv.native.lookupByName("crashed01")
    assert dom.state()[0] == libvirt.VIR_DOMAIN_CRASHED and dom.isActive()
    (st,) = odd_hv.get_stats(["crashed01"])
    assert st.vm.power_state is PowerState.PAUSED
    assert st.current_bytes == 2 * GiB and st.ballooned_bytes == 2 * GiB


def test_a_crashed_domain_keeps_its_maximum(odd_hv: Hypervisor) -> None:
    # as stopped, the maximum went into the next boot's definition while the change reported
    # it done and the live maximum stayed: refused now, as for any domain that is not off
    with pytest.raises(InvalidStateError) as err:
        odd_hv.set_config("crashed01", maximum="8GiB")
    assert err.value.details["rule"] == "maximum_only_when_off"
    assert (
        odd_hv.native.lookupByName("crashed01").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).count("4194304") == 1
    )


def test_a_target_on_a_crashed_domain_goes_to_its_live_balloon(odd_hv: Hypervisor) -> None:
    change = odd_hv.set_target("crashed01", "1GiB", force=True)
    assert change.changed
    assert odd_hv.get_stats(["crashed01"])[0].current_bytes == GiB


def test_a_tib_domain_never_reports_a_wrapped_figure(odd_hv: Hypervisor) -> None:
    assert odd_hv.native.lookupByName("huge01").memoryStats()["actual"] == WRAPPED
    by = {s.vm.name: s for s in odd_hv.get_stats()}
    huge = by["huge01"]
    assert huge.configured_bytes == 4 * TiB and huge.current_bytes == 2 * TiB
    assert huge.ballooned_bytes == 2 * TiB
    for st in by.values():
        for field in ("current_bytes", "guest_total_bytes", "guest_free_bytes", "guest_available_bytes"):
            value = getattr(st, field)
            assert value is None or value <= (st.configured_bytes or 0), (st.vm.name, field, value)
    assert by["big01"].current_bytes == TiB  # just below the overflow: figures as given


def test_a_balloon_report_cut_to_32_bits_gives_no_figure(tmp_path: Path) -> None:
    # the test driver counts KiB in an int: at 4 TiB its report reads 0, at 5 TiB 1 TiB (no
    # wrapped negative to tell); every figure of it is worked out from that cut value
    uri = write_node_xml(
        tmp_path / "node.xml",
        [domain_xml(f"t{n}", memory_mib=8 * 2**20, current_mib=n * 2**20) for n in (4, 5)],
    )
    with hvballoon.connect(uri) as hv:
        assert hv.native.lookupByName("t4").memoryStats()["actual"] == 0
        assert hv.native.lookupByName("t5").memoryStats()["actual"] == 2**30
        for st in hv.get_stats():
            size = int(st.vm.name[1:]) * TiB
            assert (st.current_bytes, st.ballooned_bytes) == (size, 8 * TiB - size), st.vm.name
            assert st.guest_total_bytes is None and st.guest_used_bytes is None and st.stale
            assert "32 bits" in st.extra["stats_note"]
        change = hv.set_target("t4", "3TiB", force=True)
        assert change.before == {"target_bytes": 4 * TiB}


def test_a_name_that_is_another_domains_uuid_is_ambiguous(tmp_path: Path) -> None:
    uuid = "11111111-2222-3333-4444-555555555555"
    alpha = domain_xml("alpha", current_mib=1024).replace("</name>", f"</name><uuid>{uuid}</uuid>")
    uri = write_node_xml(tmp_path / "node.xml", [alpha, domain_xml(uuid, current_mib=3072)])
    with hvballoon.connect(uri) as hv:
        for listed in (False, True):  # looked up afresh, then known from a listing
            if listed:
                hv.list_vms()
            with pytest.raises(AmbiguousVMError) as err:
                hv.resolve(uuid)
            (other,) = (v for v in hv.list_vms() if v.name == uuid)
            assert sorted(err.value.details["candidates"]) == sorted([uuid, other.id])
        result = hv.set_targets({uuid: "2GiB"})
        assert isinstance(result[uuid], AmbiguousVMError)
        assert {s.vm.name: s.current_bytes for s in hv.get_stats()} == {"alpha": GiB, uuid: 3 * GiB}
        # by the other's own id, or as a VM, each is itself
        assert hv.resolve(other.id).name == uuid
        assert hv.get_stats([hv.resolve("alpha")])[0].vm.id == uuid


def test_set_wait_says_it_waits_only_for_a_domain_it_waits_for(tmp_path: Path) -> None:
    # a paused domain's memory moves only once it runs: not waited for, and not said to be
    uri = write_node_xml(
        tmp_path / "node.xml", [domain_xml("paused01", runstate=3, current_mib=2048), domain_xml("run01")]
    )
    one = invoke("set", uri, "paused01", "3GiB", "--wait")
    assert one.returncode == 0, one.stderr
    assert "waiting up to" not in one.stdout and "not waiting" in one.stdout
    many = invoke("set", uri, "paused01=3GiB", "run01=3GiB", "--wait", "--force")
    assert many.returncode == 0, many.stderr
    assert "waiting up to 1m for the memory of run01 to reach its target…" in many.stdout.splitlines()
    assert "run01: reached 3 GiB" in many.stdout


def test_every_unit_libvirt_accepts_is_read() -> None:
    # libvirt's scaled integers: b/bytes, then KB/K/KiB … EB/E/EiB (decimal KB, binary K and KiB)
    for unit, factor in (("b", 1), ("KB", 1000), ("k", 1024), ("GB", 10**9), ("PiB", 2**50), ("EB", 10**18)):
        xml = parse_domain_xml(f"<domain><memory unit='{unit}'>3</memory></domain>")
        assert xml.memory_bytes == 3 * factor, unit


def test_a_wrapped_figure_is_missing_not_a_size() -> None:
    rec = record_from_per_domain(
        [1, 4 * 2**30, 2 * 2**30, 1, 0],
        {
            "actual": WRAPPED,
            "available": WRAPPED,
            "unused": 2**64 - 1,
            "last_update": 100,
            "major_fault": 2**64 - 1,
        },
    )
    assert rec["balloon.current"] == 2 * 2**30  # info()'s figure stays
    assert "balloon.available" not in rec and "balloon.unused" not in rec
    vm = VM(id="u", name="g", backend="kvm", power_state=PowerState.RUNNING)
    bulk = {"state.state": 1, "balloon.maximum": 2**20, "balloon.current": WRAPPED, "balloon.rss": WRAPPED}
    st = stats_from_record(
        vm, bulk, target_bytes=None, freshness=Freshness(10), default_period=10, now=1000.0
    )
    assert st.current_bytes is None and st.ballooned_bytes is None and st.host_consumed_bytes is None


def test_a_numa_domain_keeps_its_maximum_and_says_so_before_sending(tmp_path: Path) -> None:
    uri = write_node_xml(
        tmp_path / "numa.xml",
        [
            domain_xml("numaoff", memory_mib=8192, running=False, numa_nodes=2),
            domain_xml("numaon", memory_mib=8192, numa_nodes=2),
        ],
    )
    with hvballoon.connect(uri) as hv:
        # libvirt itself refuses: each cell has its own size
        with pytest.raises(libvirt.libvirtError, match="NUMA"):
            hv.native.lookupByName("numaoff").setMemoryFlags(
                9 * 2**20, libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM
            )
        assert hv.get_config("numaoff").extra["numa_nodes"] == 2
        for name in ("numaoff", "numaon"):
            for dry_run in (True, False):  # a dry run no longer promises what libvirt refuses
                with pytest.raises(UnsupportedOperationError) as err:
                    hv.set_config(name, maximum="9GiB", dry_run=dry_run)
                assert err.value.details["rule"] == "maximum_fixed_by_numa"
        assert not hv.set_config("numaoff", maximum="8GiB").changed  # the same size: nothing to do
        hv.set_config("numaoff", deflate_on_oom=True)  # the rest of the definition still changes
        assert hv.get_config("numaoff").maximum_bytes == 8 * GiB


def test_a_domain_started_since_it_was_read_is_not_changed_as_if_off(tmp_path: Path) -> None:
    uri = write_node_xml(tmp_path / "node.xml", [domain_xml("late01", memory_mib=4096, running=False)])
    with hvballoon.connect(uri) as hv:
        vm, current = hv.resolve("late01"), hv.get_config("late01")
        assert vm.power_state is PowerState.STOPPED
        hv.native.lookupByName("late01").create()  # started by someone else meanwhile
        inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
        before = hv.native.lookupByName("late01").XMLDesc(inactive)
        for field, value, rule in (
            ("maximum_bytes", 8 * GiB, "maximum_only_when_off"),
            ("deflate_on_oom", True, "deflate_on_oom_only_when_off"),
            ("free_page_reporting", True, "free_page_reporting_only_when_off"),
        ):
            # libvirt would take each into the next boot's definition only, without a word
            with pytest.raises(InvalidStateError) as err:
                hv.backend.apply_config(vm, ConfigUpdate.from_fields({field: value}), current)
            assert err.value.details["rule"] == rule and "started" in err.value.message
        assert hv.native.lookupByName("late01").XMLDesc(inactive) == before
        # a stats period may change live: it goes to the running domain, not only its definition
        hv.backend.apply_config(vm, ConfigUpdate(stats_period_seconds=3), current)
        assert "period='3'" in hv.native.lookupByName("late01").XMLDesc(0).replace('"', "'")


def test_a_domain_gone_across_a_reconnect_is_left_out_of_the_sweep(odd_hv: Hypervisor) -> None:
    (st,) = odd_hv.get_stats(["huge01"])
    ghost = st.vm.model_copy(update={"id": "00000000-0000-4000-8000-000000000001", "name": "ghost"})
    row = (None, ghost, {"state.state": 1, "balloon.last-update": 0})
    # as after a reconnect between the sweep and the period check: the domain is looked up anew
    seen = odd_hv.backend._sightings(object(), [row])  # type: ignore[attr-defined]
    assert ghost.id not in seen


def test_a_maximum_above_the_hotplug_ceiling_is_refused_before_sending(tmp_path: Path) -> None:
    # libvirt: "cannot set initial memory size greater than the maximum memory size"
    # (VIR_ERR_OPERATION_INVALID, which alone would read as a state problem)
    uri = write_node_xml(
        tmp_path / "hp.xml", [domain_xml("hp01", memory_mib=4096, running=False, max_memory_mib=8192)]
    )
    with hvballoon.connect(uri) as hv:
        assert hv.get_config("hp01").extra["hotplug_maximum_bytes"] == 8 * GiB
        dom = hv.native.lookupByName("hp01")
        with pytest.raises(libvirt.libvirtError, match="greater than the maximum memory size"):
            dom.setMemoryFlags(12 * 2**20, libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM)
        before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        for dry_run in (True, False):  # a dry run no longer promises what libvirt refuses
            with pytest.raises(InvalidRequestError) as err:
                hv.set_config("hp01", maximum="12GiB", dry_run=dry_run)
            assert err.value.details["rule"] == "maximum_above_hotplug_maximum"
            assert "<maxMemory> 8 GiB" in err.value.message
        assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
        assert hv.set_config("hp01", maximum="8GiB").changed  # up to the ceiling itself
        assert hv.get_config("hp01").maximum_bytes == 8 * GiB


def _virtio_mem_host(path: Path, *, current_mib: int | None = None) -> str:
    """One running domain: a 4 GiB NUMA cell plus a 4 GiB virtio-mem device (1 GiB requested)."""
    cells = "<cpu><numa><cell id='0' cpus='0' memory='4096' unit='MiB'/></numa></cpu>"
    vmem = (
        "<memory model='virtio-mem'><target><size unit='MiB'>4096</size><node>0</node>"
        "<block unit='MiB'>2</block><requested unit='MiB'>1024</requested></target></memory>"
    )
    xml = (
        domain_xml("vmem01", memory_mib=8192, current_mib=current_mib, max_memory_mib=16384)
        .replace("<os>", f"<vcpu>1</vcpu>{cells}<os>")
        .replace("</devices>", f"{vmem}</devices>")
    )
    return write_node_xml(path, [xml])


def test_a_balloon_target_never_takes_a_virtio_mem_device(tmp_path: Path) -> None:
    # libvirt's QEMU driver takes every virtio-mem device's <size> off <memory> before it
    # compares a balloon target (qemuDomainSetMemoryFlags); its test driver does not, so the
    # refusal has to be hvballoon's, before anything is sent
    uri = _virtio_mem_host(tmp_path / "vmem.xml")
    with hvballoon.connect(uri) as hv:
        cfg = hv.get_config("vmem01")
        assert cfg.maximum_bytes == 8 * GiB and cfg.extra["virtio_mem_bytes"] == 4 * GiB
        hv.set_target("vmem01", "3GiB", force=True)
        for dry_run in (True, False):
            with pytest.raises(TargetAboveMaximumError) as err:
                hv.set_target("vmem01", "6GiB", force=True, dry_run=dry_run)
            assert err.value.details["maximum_bytes"] == 4 * GiB and "virtio-mem" in err.value.message
        assert hv.native.lookupByName("vmem01").info()[2] == 3 * 2**20  # 6 GiB never sent
        assert hv.set_target("vmem01", "4GiB", force=True).changed  # the balloon's whole reach


def test_the_controller_raises_a_virtio_mem_domain_within_the_balloons_reach(tmp_path: Path) -> None:
    # a balloon at 2 GiB on a host with room: the controller raises it, never past <memory>
    # less the virtio-mem device (4 GiB), which libvirt's QEMU driver would refuse
    uri = _virtio_mem_host(tmp_path / "vmem.xml", current_mib=2048)
    journal = str(tmp_path / "j.db")
    r = invoke("autoballoon", uri, "--once", "--dry-run", "--journal", journal, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    (decision,) = [json.loads(line) for line in r.stdout.splitlines() if '"vm"' in line]
    assert decision["action"] == "raise", decision
    assert 2 * GiB < decision["after_bytes"] <= 4 * GiB


def test_the_hvballoon_policy_says_a_domain_has_no_balloon_device(tmp_path: Path) -> None:
    """On the test driver, as on the fake: a running ``<memballoon model='none'/>`` domain is
    held, and the decision says it has no balloon device and how to give it one."""
    from hvballoon.policy import Controller, ControllerSettings

    uri = write_node_xml(
        tmp_path / "node.xml",
        [domain_xml("plain01", memory_mib=1024, balloon="none"), domain_xml("web01", period=2)],
    )
    with hvballoon.connect(uri) as hv:
        settings = ControllerSettings(host_memory_bytes=64 * GiB)
        d = {x.vm: x for x in Controller(hv, "hvballoon", settings).step()}
    plain = d["plain01"]
    assert plain.action == "hold" and plain.rule == "hvballoon.no_stats"
    assert "no balloon device" in plain.reason and "<memballoon model='virtio'>" in plain.reason
    assert "no balloon device" not in d["web01"].reason


def test_a_domains_balloon_device_is_read_once_for_its_capabilities(tmp_path: Path) -> None:
    """A controller asks for every domain's capabilities in every round: the backend reads a
    domain's device once (at its run's first sighting, or with its configuration), not at each
    call. A shut-off domain without a device still takes a target (its <currentMemory>) but no
    stats period."""
    uri = write_node_xml(
        tmp_path / "node.xml",
        [domain_xml("off01", memory_mib=1024, running=False, balloon="none"), domain_xml("web01", period=2)],
    )
    with hvballoon.connect(uri) as hv:
        calls = counted(hv)
        hv.get_stats()  # web01's first sighting reads its definition
        for _ in range(3):
            caps = {vm.name: hv.vm_capabilities(vm) for vm in hv.list_vms()}
        assert calls["get_config"] == 1, dict(calls)  # off01's, once
    assert caps["off01"].can_set("target", running=False) and "stats_period_seconds" in caps["off01"].withheld
    assert not caps["web01"].withheld and caps["web01"].can_set("target", running=True)


def test_a_domain_uuid_written_in_upper_case_is_found(tmp_path: Path) -> None:
    # libvirt writes a domain's UUID in lower case and looks it up in any case; a UUID pasted in
    # upper case (from another tool, a ticket) was "not found"
    uuid = "6f1c0b2e-4d3a-4b5c-9e8f-0a1b2c3d4e5f"  # fixed: the test driver draws one per connection
    xml = domain_xml("web01", memory_mib=4096, current_mib=4096).replace(
        "</name>", f"</name><uuid>{uuid}</uuid>", 1
    )
    uri = write_node_xml(tmp_path / "node.xml", [xml])
    with hvballoon.connect(uri) as hv:  # a new session: the look-up goes to the host
        assert hv.resolve(uuid.upper()).id == uuid
    with hvballoon.connect(uri) as hv:
        assert [s.vm.id for s in hv.get_stats([uuid.upper()])] == [uuid]
        change = hv.set_target(uuid.upper(), "3GiB", force=True)
        assert change.vm.id == uuid and change.after["target_bytes"] == 3 * GiB
