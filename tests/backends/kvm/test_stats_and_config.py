"""Stats mapping, the stats period, targets and config against the test driver (and records)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

import hvballoon
from hvballoon.backends.kvm._domain import Freshness, parse_domain_xml, stats_from_record
from hvballoon.errors import (
    InvalidRequestError,
    InvalidStateError,
    PartialChangeError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.models import VM, ConfigUpdate, PowerState
from hvballoon.session import Hypervisor

libvirt = pytest.importorskip("libvirt")

GiB = 2**30
MiB = 2**20
NOW = 2_000_000_000.0
VM_ = VM(id="u1", name="g1", backend="kvm", power_state=PowerState.RUNNING)


def record(**over: Any) -> dict[str, Any]:
    """A running guest's bulk record as QEMU gives it (KiB)."""
    base = {
        "state.state": 1,
        "balloon.current": 524288,
        "balloon.maximum": 524288,
        "balloon.available": 500000,
        "balloon.usable": 450000,
        "balloon.unused": 430000,
        "balloon.disk_caches": 10000,
        "balloon.rss": 200000,
        "balloon.swap_in": 0,
        "balloon.swap_out": 0,
        "balloon.major_fault": 7,
        "balloon.minor_fault": 1234,
        "balloon.last-update": int(NOW) - 1,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def stats(rec: dict[str, Any], fresh: Freshness, target: int | None = None) -> Any:
    return stats_from_record(
        VM_,
        rec,
        target_bytes=target,
        freshness=fresh,
        default_period=10,
        now=NOW,
        collected_at=datetime(2033, 5, 18, tzinfo=timezone.utc),
    )


def test_a_fresh_report_maps_every_field_in_bytes() -> None:
    st = stats(record(), Freshness(period=2))
    assert not st.stale and st.guest_report_age_seconds == 1.0
    assert st.configured_bytes == st.current_bytes == 512 * MiB
    assert st.ballooned_bytes == 0
    assert st.guest_total_bytes == 500000 * 1024
    assert st.guest_available_bytes == 450000 * 1024
    assert st.guest_free_bytes == 430000 * 1024
    assert st.guest_used_bytes == (500000 - 450000) * 1024
    assert st.guest_cache_bytes == 10000 * 1024
    assert st.host_consumed_bytes == 200000 * 1024
    assert st.major_faults == 7 and st.extra["minor_faults"] == 1234


def test_ballooned_is_maximum_minus_current() -> None:
    st = stats(record(**{"balloon.current": 262144}), Freshness(period=2), target=256 * MiB)
    assert st.ballooned_bytes == 256 * MiB and st.target_bytes == 256 * MiB


def test_used_falls_back_to_free_and_cache_without_usable() -> None:
    st = stats(record(**{"balloon.usable": None}), Freshness(period=2))
    assert st.guest_used_bytes == (500000 - 430000 - 10000) * 1024
    assert st.guest_available_bytes is None


def test_no_report_yet_is_none_and_stale_never_zero() -> None:
    rec = {"state.state": 1, "balloon.current": 524288, "balloon.maximum": 524288, "balloon.last-update": 0}
    st = stats(rec, Freshness(period=10))
    assert st.stale and st.guest_report_age_seconds is None
    assert st.guest_used_bytes is None and st.guest_total_bytes is None and st.guest_free_bytes is None
    assert st.current_bytes == 512 * MiB


def test_period_off_means_the_boot_report_is_withheld() -> None:
    st = stats(record(**{"balloon.last-update": int(NOW) - 3}), Freshness(period=0))
    assert st.stale and st.guest_used_bytes is None
    assert st.guest_report_age_seconds == 3.0
    assert "frozen" in st.extra["stats_note"]


def test_just_armed_waits_for_a_report_made_since() -> None:
    boot = int(NOW) - 5
    before = stats(record(**{"balloon.last-update": boot}), Freshness(period=2, armed_after=boot))
    assert before.stale and before.guest_used_bytes is None
    after = stats(record(**{"balloon.last-update": boot + 1}), Freshness(period=2, armed_after=boot))
    assert not after.stale and after.guest_used_bytes is not None


def test_an_old_report_keeps_its_figures_but_is_stale() -> None:
    st = stats(record(**{"balloon.last-update": int(NOW) - 100}), Freshness(period=10))
    assert st.stale and st.guest_used_bytes is not None and st.guest_report_age_seconds == 100.0


def test_a_stopped_domain_has_its_boot_target_and_nothing_live() -> None:
    vm = VM_.model_copy(update={"power_state": PowerState.STOPPED})
    rec = {"state.state": 5, "balloon.current": 1048576, "balloon.maximum": 4194304}
    st = stats_from_record(vm, rec, target_bytes=None, freshness=Freshness(None), default_period=10, now=NOW)
    assert st.stale and st.current_bytes is None and st.ballooned_bytes is None
    assert st.target_bytes == GiB and st.configured_bytes == 4 * GiB


def test_parse_domain_xml_reads_units_balloon_and_period() -> None:
    xml = parse_domain_xml(
        "<domain><memory unit='GiB'>2</memory><currentMemory unit='MiB'>1536</currentMemory>"
        "<memtune><min_guarantee unit='KiB'>1024</min_guarantee></memtune>"
        "<devices><memballoon model='virtio' autodeflate='on' freePageReporting='on'><stats period='7'/>"
        "</memballoon>"
        "</devices></domain>"
    )
    assert xml.memory_bytes == 2 * GiB and xml.current_memory_bytes == 1536 * MiB
    assert xml.min_guarantee_bytes == MiB and xml.autodeflate is True and xml.stats_period_seconds == 7
    assert xml.free_page_reporting is True
    none = parse_domain_xml(
        "<domain><memory>1024</memory><devices><memballoon model='none'/></devices></domain>"
    )
    assert not none.has_balloon and none.stats_period_seconds is None and none.memory_bytes == MiB
    assert none.free_page_reporting is None


# -- against the test driver -----------------------------------------------------------------


def test_the_first_sweep_switches_an_off_period_on(node_hv: Hypervisor) -> None:
    assert node_hv.get_config("web01").stats_period_seconds == 0
    node_hv.get_stats()
    assert node_hv.get_config("web01").stats_period_seconds == 10
    assert node_hv.get_config("web02").stats_period_seconds == 5  # already set: left alone
    assert node_hv.get_config("plain01").stats_period_seconds is None  # no balloon


@pytest.mark.parametrize("persist", [False, True])
def test_a_period_switched_on_goes_into_the_definition_only_with_persist(
    node_uri: str, persist: bool
) -> None:
    """docs/backends/kvm.md: the period switched on at the first sighting is live, and in the
    persistent definition too with ``persist=True`` (as a target is)."""
    import libvirt

    with hvballoon.connect(node_uri, persist=persist) as hv:
        hv.get_stats()
        assert hv.get_config("web01").stats_period_seconds == 10
        saved = hv.native.lookupByName("web01").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert parse_domain_xml(saved).stats_period_seconds == (10 if persist else 0)


def test_stats_period_zero_leaves_it_off(node_uri: str) -> None:
    with hvballoon.connect(node_uri, stats_period=0) as hv:
        hv.get_stats()
        assert hv.get_config("web01").stats_period_seconds == 0


def test_a_period_the_caller_switches_off_stays_off(node_hv: Hypervisor) -> None:
    """The session switches an off period on when it first sees a run, not after the caller
    switched it off: the change it reported is what the domain keeps."""
    node_hv.get_stats()  # web02's period (5) is seen
    change = node_hv.set_config("web02", stats_period=0)
    assert change.changed and change.after["stats_period_seconds"] == 0
    node_hv.get_stats()
    assert node_hv.get_config("web02").stats_period_seconds == 0
    node_hv.set_config("web02", stats_period=7)  # and a new one is kept as well
    node_hv.get_stats()
    assert node_hv.get_config("web02").stats_period_seconds == 7


def test_stats_of_the_mixed_host(node_hv: Hypervisor) -> None:
    by = {s.vm.name: s for s in node_hv.get_stats()}
    assert set(by) == {"web01", "web02", "db01", "off01", "plain01"}
    assert by["web01"].current_bytes == 3 * GiB and by["web01"].ballooned_bytes == GiB
    assert by["web01"].guest_used_bytes is not None and not by["web01"].stale
    off = by["off01"]
    assert off.vm.power_state is PowerState.STOPPED and off.current_bytes is None
    assert off.target_bytes == GiB and off.stale
    assert by["plain01"].guest_used_bytes is None and by["plain01"].stale
    assert node_hv.get_stats(["db01", "web01"])[0].vm.name == "db01"


def test_target_is_only_what_this_backend_set(node_hv: Hypervisor) -> None:
    assert node_hv.get_stats("web01")[0].target_bytes is None  # libvirt keeps no live target
    change = node_hv.set_target("web01", "2GiB")
    assert change.before == {"target_bytes": 3 * GiB}  # unknown target: the balloon's position
    st = node_hv.get_stats("web01")[0]
    assert st.target_bytes == st.current_bytes == 2 * GiB


def test_persist_writes_the_target_into_the_definition(node_uri: str) -> None:
    with hvballoon.connect(node_uri, persist=True) as hv:
        hv.set_target("web01", "2GiB")
        assert hv.get_config("web01").startup_bytes == 2 * GiB
    with hvballoon.connect(node_uri) as hv:
        hv.set_target("web01", "2GiB")
        # without persist the definition keeps its boot size
        assert hv.get_config("web01").startup_bytes == 3 * GiB


@pytest.mark.parametrize("persist", [False, True])
def test_persist_on_a_transient_domain_says_the_target_is_live_only(node_uri: str, persist: bool) -> None:
    # it wrote the live target only, and said nothing of it
    from tests.support.libvirt_xml import domain_xml

    note = "transient domain: the target is live only, no definition to persist"
    with hvballoon.connect(node_uri, persist=persist) as hv:
        hv.native.createXML(domain_xml("tmp01", current_mib=3072), 0)  # as `virsh create` does
        assert hv.get_config("tmp01").extra["persistent"] is False
        planned = hv.set_targets({"tmp01": "2GiB", "web01": "2GiB"}, dry_run=True)
        change = hv.set_target("tmp01", "2GiB")
        assert change.changed and hv.get_stats("tmp01")[0].target_bytes == 2 * GiB
        assert change.warnings == ((note,) if persist else ())
        assert planned["tmp01"].warnings == change.warnings  # type: ignore[union-attr]
        assert planned["web01"].warnings == ()  # type: ignore[union-attr]  # persistent: persisted


def test_a_stopped_domain_gets_its_boot_target_and_maximum(node_hv: Hypervisor) -> None:
    change = node_hv.set_target("off01", "3GiB")
    assert change.changed and change.warnings
    assert node_hv.get_stats("off01")[0].target_bytes == 3 * GiB
    assert node_hv.get_config("off01").free_page_reporting is False
    node_hv.set_config("off01", maximum="8GiB", deflate_on_oom=True, free_page_reporting=True, stats_period=3)
    cfg = node_hv.get_config("off01")
    assert cfg.maximum_bytes == 8 * GiB and cfg.deflate_on_oom is True and cfg.stats_period_seconds == 3
    assert cfg.free_page_reporting is True
    # libvirt keeps the attribute in the definition it hands back
    assert "freePageReporting='on'" in node_hv.native.lookupByName("off01").XMLDesc(0).replace('"', "'")


def test_a_stats_period_libvirt_cannot_take_is_refused_before_anything_changes(node_hv: Hypervisor) -> None:
    # virDomainSetMemoryStatsPeriod takes a C int: libvirt-python raised OverflowError, after the
    # maximum and deflate-on-OOM of the stopped domain had been changed
    before = {name: node_hv.get_config(name) for name in ("off01", "web01")}
    with pytest.raises(InvalidRequestError, match=r"stats_period: .*2147483647"):
        node_hv.set_config("off01", maximum="3GiB", deflate_on_oom=True, stats_period=2**32)
    with pytest.raises(InvalidRequestError, match=r"stats_period: .*2147483647"):
        node_hv.set_config("web01", stats_period=2**32)
    assert {name: node_hv.get_config(name) for name in before} == before
    node_hv.set_config("web01", stats_period=2**31 - 1)  # the largest libvirt takes
    assert node_hv.get_config("web01").stats_period_seconds == 2**31 - 1


def test_a_native_failure_after_a_step_landed_is_a_partial_change(node_hv: Hypervisor) -> None:
    vm = node_hv.resolve("off01")
    current = node_hv.get_config(vm)
    # a plan past the model's bound (as a backend caller could build one): libvirt-python raises
    # OverflowError on the third step, after the first two were applied
    plan = ConfigUpdate.model_construct(
        maximum_bytes=3 * GiB, deflate_on_oom=True, stats_period_seconds=2**32
    )
    with pytest.raises(PartialChangeError) as info:
        node_hv.backend.apply_config(vm, plan, current)
    err = info.value
    assert err.details == {
        "applied": ["maximum_bytes", "deflate_on_oom"],
        "not_applied": ["stats_period_seconds"],
    }
    assert isinstance(err.__cause__, OverflowError) and "OverflowError" in err.message and err.vm == "off01"
    after = node_hv.get_config("off01")  # what the error says was applied, was
    assert after.maximum_bytes == 3 * GiB and after.deflate_on_oom is True
    assert after.stats_period_seconds == current.stats_period_seconds


def test_live_rules(node_hv: Hypervisor) -> None:
    with pytest.raises(InvalidStateError):
        node_hv.set_config("web01", maximum="8GiB")
    with pytest.raises(InvalidStateError):
        node_hv.set_config("web01", deflate_on_oom=True)
    with pytest.raises(InvalidStateError, match="free_page_reporting"):
        node_hv.set_config("web01", free_page_reporting=True)
    assert node_hv.get_config("web01").free_page_reporting is False
    node_hv.set_config("web01", stats_period=4)
    assert node_hv.get_config("web01").stats_period_seconds == 4


def test_no_balloon_device_means_no_live_target(node_hv: Hypervisor) -> None:
    with pytest.raises(UnsupportedOperationError):
        node_hv.set_target("plain01", "512MiB", force=True)


def test_a_vanished_domain(node_hv: Hypervisor) -> None:
    vm = node_hv.resolve("web01")
    node_hv.native.lookupByUUIDString(vm.id).destroy()  # transient-less test driver: undefine too
    node_hv.native.lookupByUUIDString(vm.id).undefine()
    assert "web01" not in {s.vm.name for s in node_hv.get_stats()}
    with pytest.raises(VMNotFoundError):
        node_hv.get_stats([vm])


def test_no_balloon_device_means_no_stats_period(
    node_hv: Hypervisor, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UnsupportedOperationError, match="has no balloon device"):
        node_hv.set_config("plain01", stats_period=5)
    # libvirt's own handler would have printed its error to stderr: the backend keeps it quiet
    with pytest.raises(VMNotFoundError):
        node_hv.get_config(
            node_hv.resolve("plain01").model_copy(update={"id": "00000000-0000-0000-0000-000000000000"})
        )
    assert "libvirt:" not in capfd.readouterr().err


def test_the_controller_advises_deflate_on_oom_for_the_domains_without_it(node_hv: Hypervisor) -> None:
    from hvballoon.policy import Controller, ControllerSettings

    def advised() -> str:
        (advice,) = Controller(node_hv, "hvballoon", ControllerSettings()).advice()
        return advice

    assert "no deflate-on-OOM (" in advised() and "off01" in advised()
    node_hv.set_config("off01", deflate_on_oom=True)  # libvirt's memballoon autodeflate='on'
    assert "off01" not in advised() and "web01" in advised()
