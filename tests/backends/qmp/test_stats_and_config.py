"""QMP answers → models, the stats period, targets per run, config, concurrency (in-test server)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from hvballoon.backend import TargetRequest
from hvballoon.backends.qmp._qom import count_vfio
from hvballoon.backends.qmp._stats import guest_report, local_host_figures, power_state
from hvballoon.errors import (
    BalloonStalledError,
    InvalidStateError,
    PermissionDeniedError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.models import PowerState
from hvballoon.session import Hypervisor
from tests.support.qmp_server import Gauge, Serve, booted_long_ago, connect

MiB = 2**20


def test_first_sight_arms_the_period_and_withholds_the_boot_report(node: str, serve: Serve) -> None:
    with connect(node, stats_period=2) as hv:
        first = {s.vm.name: s for s in hv.get_stats()}
        web = first["web01"]
        assert web.stale and web.guest_used_bytes is None and web.guest_total_bytes is None  # never zeros
        assert web.extra["stats_note"].startswith("stats period just enabled")
        assert web.current_bytes == web.configured_bytes == 4096 * MiB and web.ballooned_bytes == 0
        second = {s.vm.name: s for s in hv.get_stats()}["web01"]  # the guest answered the arming
    assert not second.stale and second.extra["stats_period_seconds"] == 2
    assert second.guest_total_bytes == 4096 * MiB
    assert second.guest_used_bytes == 1024 * MiB  # total − available
    assert second.guest_available_bytes == 3072 * MiB and second.guest_cache_bytes == 256 * MiB
    assert second.guest_free_bytes == (4096 - 1024 - 256) * MiB
    assert second.swap_in_bytes == 0 and second.major_faults == 3 and second.extra["minor_faults"] == 1000
    assert second.host_consumed_bytes is not None and second.host_consumed_bytes > 0  # the peer's RSS
    assert second.guest_report_age_seconds is not None and second.guest_report_age_seconds < 2


def test_a_period_already_running_is_trusted_and_left_alone(serve: Serve, qmp_dir: Path) -> None:
    vm = serve("102", name="db01", period=5, last_update=int(time.time()) - 1, balloon_id=None, pci=False)
    with connect(f"qmp://{qmp_dir}", stats_period=2) as hv:
        (st,) = hv.get_stats()
        cfg = hv.get_config("db01")
    assert not st.stale and st.guest_used_bytes == 1024 * MiB
    assert "qom-set" not in vm.received and vm.period == 5
    assert cfg.extra["balloon_qom_path"] == "/machine/peripheral-anon/device[0]"  # no id=: found anyway
    assert cfg.stats_period_seconds == 5


def test_an_old_report_is_stale_but_kept(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01", period=5, last_update=int(time.time()) - 60, guest_alive=False)
    with connect(f"qmp://{qmp_dir}") as hv:
        (st,) = hv.get_stats()
    assert st.stale and st.guest_used_bytes == 1024 * MiB and st.guest_report_age_seconds >= 59


@pytest.mark.parametrize(("options", "armed"), [({"read_only": True}, False), ({"stats_period": 0}, False)])
def test_the_period_is_left_off_when_asked(serve: Serve, qmp_dir: Path, options: dict, armed: bool) -> None:
    vm = serve("101", name="web01", last_update=booted_long_ago())
    with connect(f"qmp://{qmp_dir}", **options) as hv:
        for _ in range(2):
            (st,) = hv.get_stats()
            assert st.stale and st.guest_used_bytes is None
            assert st.extra["stats_note"] == "stats period off: the guest's figures are frozen since its boot"
    assert ("qom-set" in vm.received) is armed and vm.period == 0


def test_names_ids_and_states(node_hv: Hypervisor, qmp_dir: Path) -> None:
    vms = {v.name: v for v in node_hv.list_vms()}
    assert set(vms) == {"web01", "db01", "103", "plain01"}  # unnamed: the socket's stem (a vmid)
    assert vms["web01"].id == "11111111-1111-4111-8111-111111111111"
    assert vms["103"].power_state is PowerState.PAUSED and vms["web01"].power_state is PowerState.RUNNING
    assert vms["web01"].extra["socket"] == str(qmp_dir / "101.qmp")
    assert all(v.host and v.backend == "qmp" for v in vms.values())


def test_without_uuid_the_socket_path_is_the_id(serve: Serve, qmp_dir: Path) -> None:
    serve("a", name="same")
    serve("b", name="same")
    with connect(f"qmp://{qmp_dir}") as hv:
        ids = sorted(v.id for v in hv.list_vms())
    assert ids == [str(qmp_dir / "a.qmp"), str(qmp_dir / "b.qmp")]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("running", PowerState.RUNNING),
        ("paused", PowerState.PAUSED),
        ("prelaunch", PowerState.PAUSED),
        ("inmigrate", PowerState.PAUSED),
        ("io-error", PowerState.PAUSED),
        ("suspended", PowerState.SUSPENDED),
        ("shutdown", PowerState.STOPPED),
        ("guest-panicked", PowerState.PAUSED),
        ("something-new", PowerState.UNKNOWN),
        (None, PowerState.UNKNOWN),
    ],
)
def test_power_states(status: str | None, state: PowerState) -> None:
    assert power_state(status) is state


def test_missing_and_malformed_statistics_are_none() -> None:
    report = guest_report(
        {
            "stats": {
                "stat-total-memory": 100,
                "stat-free-memory": -1,
                "stat-swap-in": "x",
                "stat-swap-out": True,
            },
            "last-update": 5,
        }
    )
    assert report.total_bytes == 100 and report.free_bytes is None
    assert report.swap_in_bytes is None and report.swap_out_bytes is None
    assert guest_report(None).last_update is None
    assert guest_report({"stats": "garbage", "last-update": "x"}).last_update is None


def test_a_vm_without_balloon(node_hv: Hypervisor) -> None:
    st = node_hv.get_stats(["plain01"])[0]
    assert st.current_bytes == st.configured_bytes and st.ballooned_bytes == 0
    assert st.guest_used_bytes is None and st.extra["balloon"] is False
    cfg = node_hv.get_config("plain01")
    assert cfg.extra["balloon"] is False and cfg.stats_period_seconds is None and cfg.deflate_on_oom is None
    assert cfg.free_page_reporting is None


def test_hot_plugged_memory_counts_in_the_configured_size(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="web01", base_memory=2048 * MiB, plugged_memory=1024 * MiB)
    with connect(f"qmp://{qmp_dir}") as hv:
        (st,) = hv.get_stats()
        cfg = hv.get_config("web01")
    assert st.configured_bytes == cfg.maximum_bytes == 3072 * MiB
    assert cfg.startup_bytes == 2048 * MiB and cfg.extra["plugged_memory_bytes"] == 1024 * MiB


def test_deflate_on_oom_is_read_from_the_balloon_itself(serve: Serve, qmp_dir: Path) -> None:
    serve("101", name="pci", deflate_on_oom=True)
    serve("102", name="mmio", pci=False, balloon_id=None)
    with connect(f"qmp://{qmp_dir}") as hv:
        assert hv.get_config("pci").deflate_on_oom is True
        assert hv.get_config("mmio").deflate_on_oom is False


def test_free_page_reporting_is_read_from_the_balloon_as_libvirt_reads_it(
    serve: Serve, qmp_dir: Path
) -> None:
    """QEMU's ``free-page-reporting`` (5.1+), as the kvm backend reads ``<memballoon
    freePageReporting>`` and the fake reports it: a restated value changes nothing while the
    guest runs (an idempotent request), another one is the kind's refusal; a QEMU without the
    property leaves it unknown."""
    serve("101", name="pci", free_page_reporting=True)
    serve("102", name="mmio", pci=False, balloon_id=None)
    serve("103", name="old", free_page_reporting=None)
    with connect(f"qmp://{qmp_dir}") as hv:
        assert hv.get_config("pci").free_page_reporting is True
        assert hv.get_config("mmio").free_page_reporting is False
        assert hv.get_config("old").free_page_reporting is None
        assert hv.set_config("pci", free_page_reporting=True).changed is False
        with pytest.raises(InvalidStateError) as info:
            hv.set_config("mmio", free_page_reporting=True)
        assert info.value.details["rule"] == "free_page_reporting_only_when_off"


def test_the_target_is_remembered_for_this_run_only(serve: Serve, qmp_dir: Path, servers: list) -> None:
    vm = serve("101", name="web01", uuid="11111111-1111-4111-8111-111111111111")
    with connect(f"qmp://{qmp_dir}") as hv:
        assert hv.get_stats()[0].target_bytes is None  # QEMU does not report one
        hv.set_target("web01", "3GiB", force=True)
        st = hv.get_stats()[0]
        assert st.target_bytes == 3 * 2**30 and st.current_bytes == 3 * 2**30 == vm.actual
        servers[0].close()  # the VM stops and starts again: a new socket
        serve("101", name="web01", uuid="11111111-1111-4111-8111-111111111111")
        restarted = hv.get_stats()[0]
    assert restarted.target_bytes is None and restarted.current_bytes == 4 * 2**30


def test_a_socket_taken_over_by_another_vm(serve: Serve, qmp_dir: Path, servers: list) -> None:
    serve("101", name="web01", uuid="11111111-1111-4111-8111-111111111111")
    with connect(f"qmp://{qmp_dir}") as hv:
        old = hv.resolve("web01")
        servers[0].close()
        serve("101", name="other", uuid="99999999-9999-4999-8999-999999999999")
        with pytest.raises(VMNotFoundError, match="another VM"):
            hv.get_stats([old])
        with pytest.raises(VMNotFoundError, match="another VM"):
            hv.backend.apply_target(old, 2**30)
    assert servers[1].vm.received.count("balloon") == 0


def test_read_only_refuses_changes_before_sending(serve: Serve, qmp_dir: Path) -> None:
    vm = serve("101", name="web01", period=2, last_update=int(time.time()))
    with connect(f"qmp://{qmp_dir}", read_only=True) as hv:
        with pytest.raises(PermissionDeniedError):
            hv.set_target("web01", "3GiB", force=True)
        with pytest.raises(PermissionDeniedError):
            hv.set_config("web01", stats_period=5)
    assert "balloon" not in vm.received and "qom-set" not in vm.received


def test_the_stats_period_can_be_changed_live(serve: Serve, qmp_dir: Path) -> None:
    vm = serve("101", name="web01", period=2, last_update=int(time.time()))
    with connect(f"qmp://{qmp_dir}") as hv:
        change = hv.set_config("web01", stats_period=5)
        assert change.changed and change.before == {"stats_period_seconds": 2}
        assert vm.period == 5 and hv.get_config("web01").stats_period_seconds == 5
        assert hv.set_config("web01", stats_period=5).changed is False


@pytest.mark.parametrize(
    "change", [{"maximum": "8GiB"}, {"deflate_on_oom": True}, {"free_page_reporting": True}]
)
def test_what_qemu_fixes_at_start_cannot_be_changed(serve: Serve, qmp_dir: Path, change: dict) -> None:
    serve("101", name="web01", status="shutdown")  # guest off, QEMU alive: "settable offline" by the kind
    with (
        connect(f"qmp://{qmp_dir}") as hv,
        pytest.raises(UnsupportedOperationError, match="command line") as info,
    ):
        hv.set_config("web01", **change)
    assert info.value.details["rule"] == "not_supported"


def test_a_sweep_talks_to_at_most_concurrency_vms_at_once(serve: Serve, qmp_dir: Path, gauge: Gauge) -> None:
    for i in range(12):
        serve(f"{100 + i}", name=f"vm{i:02d}", uuid=f"00000000-0000-4000-8000-{i:012d}", reply_delay=0.01)
    with connect(f"qmp://{qmp_dir}", concurrency=4) as hv:
        stats = hv.get_stats()
    assert [s.vm.name for s in stats] == [f"vm{i:02d}" for i in range(12)]  # every VM, in socket order
    assert 1 < gauge.peak <= 4


# -- the host -------------------------------------------------------------------------------------

MEMINFO = """MemTotal:       16384000 kB
MemFree:         2048000 kB
MemAvailable:    8192000 kB
Buffers:          102400 kB
Cached:          4096000 kB
SwapTotal:       4194304 kB
SwapFree:        3145728 kB
HugePages_Total:       0
"""


def test_host_figures_from_meminfo_and_ksm() -> None:
    f = local_host_figures(MEMINFO, "2560\n")
    assert f["physical_bytes"] == 16384000 * 1024
    assert f["free_bytes"] == (2048000 + 102400 + 4096000) * 1024  # free + buffers + cache
    assert f["swap_total_bytes"] == 4194304 * 1024 and f["swap_used_bytes"] == 1048576 * 1024
    assert f["shared_bytes"] == 2560 * os.sysconf("SC_PAGE_SIZE")
    assert f["extra"]["mem_available_bytes"] == 8192000 * 1024


@pytest.mark.parametrize(
    ("meminfo", "ksm"), [("", ""), ("MemTotal: lots kB\nSwapTotal: 1 kB\n", "x"), ("garbage", "-3")]
)
def test_unreadable_host_figures_are_none(meminfo: str, ksm: str) -> None:
    f = local_host_figures(meminfo, ksm)
    assert {k for k in f if k != "extra"} == set()  # nothing invented


def test_the_host_is_this_machine_and_sums_the_sweep(node_hv: Hypervisor) -> None:
    stats = node_hv.get_stats()
    (host,) = node_hv.get_host_stats()
    with open("/proc/meminfo", encoding="ascii") as fh:
        total_kib = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1])
    assert host.host == socket.gethostname() and host.backend == "qmp"
    assert host.physical_bytes == total_kib * 1024
    assert host.free_bytes is not None and 0 < host.free_bytes <= host.physical_bytes
    running = [s for s in stats if s.vm.power_state is PowerState.RUNNING]
    assert host.vms_running == len(running) == 3
    assert host.vm_configured_bytes == sum(s.configured_bytes or 0 for s in running)
    assert host.ballooned_bytes == sum(s.ballooned_bytes or 0 for s in running)


def test_bulk_targets_move_side_by_side_and_one_refusal_is_that_vms_own(
    serve: Serve, qmp_dir: Path, gauge: Gauge
) -> None:
    vms = [
        serve(f"{100 + i}", name=f"vm{i:02d}", uuid=f"00000000-0000-4000-8000-{i:012d}",
              last_update=booted_long_ago(), reply_delay=0.002)
        for i in range(8)
    ]  # fmt: skip
    vms[5].errors["balloon"] = ("DeviceNotActive", "No balloon device has been activated")  # at apply time
    with connect(f"qmp://{qmp_dir}", concurrency=3) as hv:
        listed = hv.list_vms()
        gauge.peak = 0
        answers = hv.backend.apply_targets([TargetRequest(vm, 2 * 2**30) for vm in listed])
        assert 1 < gauge.peak <= 3  # the moves side by side, never more than the concurrency at once
        assert [a is None for a in answers] == [i != 5 for i in range(8)]
        assert answers[5] is not None and answers[5].code == "unsupported" and answers[5].vm == "vm05"
        results = hv.set_targets({f"vm{i:02d}": "3GiB" for i in range(8)}, force=True)  # the session's way
    assert set(results.errors) == {"vm05"} and results.errors["vm05"].code == "unsupported"
    assert results.made == {f"vm{i:02d}" for i in range(8) if i != 5}
    assert [vm.actual for i, vm in enumerate(vms) if i != 5] == [3 * 2**30] * 7  # every other VM moved
    assert vms[5].actual == 4096 * MiB
    assert results.error is not None and results.error.code == "partial_change"


def test_a_guest_whose_balloon_driver_never_answers_is_a_stall_in_bounded_time(
    serve: Serve, qmp_dir: Path
) -> None:
    # QEMU takes the target and answers at once; the balloon only moves when the guest's driver
    # does, and a hung one never does: a typed answer, not a wait until the timeout
    serve("101", name="web01", period=1, last_update=int(time.time()), balloon_stuck=True)
    with connect(f"qmp://{qmp_dir}", stats_period=1) as hv:
        assert hv.set_target("web01", "2GiB", force=True).changed
        started = time.monotonic()
        with pytest.raises(BalloonStalledError) as info:
            hv.wait_for_target("web01", timeout=30, poll_interval=0.1, stall_after=0.5)
        assert time.monotonic() - started < 5
        assert info.value.vm == "web01"


#: ``qom-list`` of /machine/peripheral as QEMU answers it (qapi/qom.json ``ObjectPropertyInfo``:
#: a child's type is ``child<TYPE>``) with a GPU passed through (``-device vfio-pci,id=hostdev0``).
_PERIPHERAL_WITH_A_GPU = [
    {"name": "type", "type": "string"},
    {"name": "balloon0", "type": "child<virtio-balloon-pci>"},
    {"name": "hostdev0", "type": "child<vfio-pci>"},
    {"name": "net0", "type": "child<virtio-net-pci>"},
]
_ANONYMOUS = [
    {"name": "type", "type": "string"},
    {"name": "device[0]", "type": "child<vfio-pci-nohotplug>"},
    {"name": "device[1]", "type": "child<vfio-ccw>"},
]


def test_vfio_pci_devices_are_counted_from_qom_list() -> None:
    assert count_vfio([_PERIPHERAL_WITH_A_GPU, _ANONYMOUS]) == 2
    assert count_vfio([_PERIPHERAL_WITH_A_GPU[:2], _ANONYMOUS[:1] + _ANONYMOUS[2:]]) == 0
    # a tree that could not be listed (QMP's error in its place among the answers): unknown, never 0
    assert count_vfio([_PERIPHERAL_WITH_A_GPU, RuntimeError("DeviceNotFound")]) is None


def test_a_qemu_with_a_device_assigned_through_vfio_says_its_balloon_frees_nothing(
    serve: Serve, qmp_dir: Path
) -> None:
    """As the kvm backend reads a domain's ``<hostdev>``: the configuration counts the VFIO-PCI
    devices (``extra["vfio_devices"]``), and the KVM kind says a lower frees nothing; the
    controller holds it as on libvirt."""
    serve("101", name="gpu01", devices={"hostdev0": "vfio-pci", "device[3]": "vfio-pci-nohotplug"})
    serve("102", name="web01", devices={"device[2]": "vfio-ccw", "net0": "virtio-net-pci"})
    with connect(f"qmp://{qmp_dir}") as hv:
        configs = {c.vm.name: c for c in hv.get_configs()}
        kind = hv.backend.kind
        assert kind is not None
        assert configs["gpu01"].extra["vfio_devices"] == 2 and configs["web01"].extra["vfio_devices"] == 0
        assert kind.frees_nothing_reason(configs["gpu01"]) is not None
        assert kind.frees_nothing_reason(configs["web01"]) is None
