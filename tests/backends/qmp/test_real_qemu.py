"""The QMP backend against real QEMU processes that never run a guest (paused ``-S`` machines).

What QEMU itself answers — identity, memory sizes (base and hot-plugged), the balloon device
wherever it sits, QMP's own errors — and what happens when a QEMU goes away, is held by
someone else, or has no balloon. Each QEMU costs ~50 ms to start (see
``tests/support/qmp_guest``); the booted guest's tests are in ``test_real_guest.py``.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from hvballoon.backends.qmp._qom import VFIO_PCI_TYPES
from hvballoon.errors import (
    InvalidRequestError,
    OperationTimeoutError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.models import PowerState
from tests.support.qmp_guest.harness import QemuProcess, prerequisites, start_bare
from tests.support.qmp_server import connect
from tests.support.require import require

pytestmark = [pytest.mark.peer]

MiB = 2**20
UUID = "5a1d0b2e-0c4f-4e1a-9d7e-0123456789ab"


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Path, dict[str, QemuProcess]]]:
    """Four paused QEMUs side by side, as on a Proxmox node."""
    require(not prerequisites(guest=False), "; ".join(prerequisites(guest=False)))
    where = Path(tempfile.mkdtemp(prefix="hvbq-"))
    procs: dict[str, QemuProcess] = {}
    try:
        procs["101"] = start_bare(where, "101", memory_mib=96, qemu_name="web01", uuid=UUID,
                                  machine="pc", balloon_id="balloon0", extra=["-global",
                                  "virtio-balloon-device.deflate-on-oom=on", "-global",
                                  "virtio-balloon-device.free-page-reporting=on"])  # fmt: skip
        procs["102"] = start_bare(where, "102", memory_mib=64)  # no -name, no -uuid, anonymous balloon
        procs["103"] = start_bare(where, "103", memory_mib=64, qemu_name="plain01", balloon=False)
        procs["104"] = start_bare(
            where,
            "104",
            memory_mib=64,
            qemu_name="dimm01",
            machine="pc",
            extra=[
                "-m", "64M,slots=2,maxmem=512M",
                "-object", "memory-backend-ram,id=mem1,size=64M",
                "-device", "pc-dimm,id=dimm1,memdev=mem1",
            ],
        )  # fmt: skip
        yield where, procs
    finally:
        for proc in procs.values():
            proc.kill()
        shutil.rmtree(where, ignore_errors=True)


def test_identity_sizes_and_states_as_qemu_gives_them(fleet: tuple[Path, dict[str, QemuProcess]]) -> None:
    where, procs = fleet
    with connect(f"qmp://{where}", timeout=10) as hv:
        vms = {v.name: v for v in hv.list_vms()}
        stats = {s.vm.name: s for s in hv.get_stats()}
        configs = {name: hv.get_config(name) for name in vms}
    assert {"web01", "102", "plain01", "dimm01"} <= set(vms)
    assert vms["web01"].id == UUID and vms["102"].id == str(where / "102.qmp")
    assert vms["web01"].extra["qemu_pid"] == procs["101"].pid  # read from the socket itself
    assert all(v.power_state is PowerState.PAUSED for v in vms.values())  # -S: "prelaunch"
    assert stats["web01"].configured_bytes == 96 * MiB == stats["web01"].current_bytes
    assert stats["dimm01"].configured_bytes == 128 * MiB  # base + hot-plugged DIMM
    assert configs["dimm01"].startup_bytes == 64 * MiB and configs["dimm01"].maximum_bytes == 128 * MiB
    assert configs["web01"].extra["balloon_qom_path"] == "/machine/peripheral/balloon0"
    assert configs["102"].extra["balloon_qom_path"] == "/machine/peripheral-anon/device[0]"
    assert configs["web01"].deflate_on_oom is True and configs["102"].deflate_on_oom is False
    assert configs["web01"].free_page_reporting is True and configs["102"].free_page_reporting is False
    assert configs["plain01"].free_page_reporting is None  # no balloon, no setting (libvirt: None)
    assert stats["plain01"].extra["balloon"] is False and configs["plain01"].extra["balloon"] is False
    # no device assigned through VFIO-PCI in QEMU's device trees (counted from qom-list), never unknown
    assert {c.extra["vfio_devices"] for c in configs.values()} == {0}
    for st in stats.values():  # no guest ever ran: no figures, never zeros
        assert st.guest_used_bytes is None and st.stale
        assert st.host_consumed_bytes is not None and st.host_consumed_bytes > 10 * MiB


def test_the_stats_period_is_armed_on_qemu(fleet: tuple[Path, dict[str, QemuProcess]]) -> None:
    where, _ = fleet
    fresh = start_bare(where, "301", qemu_name="fresh")  # its own: the others were armed already
    try:
        with connect(f"qmp://{where}/301.qmp", stats_period=7) as hv:
            assert hv.get_config("fresh").stats_period_seconds == 0  # QEMU starts with it off
            hv.get_stats()
            assert hv.get_config("fresh").stats_period_seconds == 7
            hv.set_config("fresh", stats_period=3)
            assert hv.get_config("fresh").stats_period_seconds == 3
    finally:
        fresh.kill()


def test_qemu_errors_are_typed(fleet: tuple[Path, dict[str, QemuProcess]]) -> None:
    where, _ = fleet
    with connect(f"qmp://{where}") as hv:
        with pytest.raises(UnsupportedOperationError) as info:
            hv.backend.apply_target(hv.resolve("plain01"), 32 * MiB)
        assert info.value.native_code == "DeviceNotActive"
        with pytest.raises(InvalidRequestError) as info2:
            hv.backend.apply_target(hv.resolve("web01"), 0)  # QEMU: "Parameter 'target' expects a size"
        assert info2.value.native_code == "GenericError"
        assert hv.set_target("web01", "80MiB").changed  # paused: accepted, no floor applies
        assert hv.get_stats(["web01"])[0].target_bytes == 80 * MiB


def test_a_monitor_held_by_another_client_times_out(fleet: tuple[Path, dict[str, QemuProcess]]) -> None:
    where, _ = fleet
    other = socket.socket(socket.AF_UNIX)
    other.connect(str(where / "102.qmp"))
    other.recv(4096)  # QEMU greeted it: it holds the monitor now
    start = time.monotonic()
    try:
        with connect(f"qmp://{where}", timeout=1.5) as hv, pytest.raises(OperationTimeoutError) as info:
            hv.get_stats()
    finally:
        other.close()
    assert info.value.vm == "102" and info.value.retryable
    assert time.monotonic() - start < 6


def test_a_killed_or_stopped_qemu(tmp_path: Path) -> None:
    require(not prerequisites(guest=False), "; ".join(prerequisites(guest=False)))
    where = Path(tempfile.mkdtemp(prefix="hvbq-"))
    killed = start_bare(where, "201", qemu_name="killed")
    stopped = start_bare(where, "202", qemu_name="stopped")
    alive = start_bare(where, "203", qemu_name="alive")
    try:
        with connect(f"qmp://{where}") as hv:
            gone = {n: hv.resolve(n) for n in ("killed", "stopped")}
            killed.kill(signal.SIGKILL)  # leaves its socket: connections are refused
            stopped.stop()  # quits cleanly: removes its socket
            assert (where / "201.qmp").exists() and not (where / "202.qmp").exists()
            assert [s.vm.name for s in hv.get_stats()] == ["alive"]
            codes = {}
            for name, vm in gone.items():
                with pytest.raises(VMNotFoundError) as info:
                    hv.get_stats([vm])
                codes[name] = info.value.native_code
                with pytest.raises(VMNotFoundError):
                    hv.set_target(vm, "32MiB")
            assert codes == {"killed": "ECONNREFUSED", "stopped": "ENOENT"}
    finally:
        for proc in (killed, stopped, alive):
            proc.kill()
        shutil.rmtree(where, ignore_errors=True)


def test_the_vfio_types_counted_are_types_this_qemu_has(fleet: tuple[Path, dict[str, QemuProcess]]) -> None:
    """The QOM types the backend counts as devices assigned through VFIO-PCI are types of the
    QEMU under test (``qom-list-types``): the positive case itself needs a host device to pass
    through, which the test machine does not have."""
    where, _ = fleet

    async def types() -> set[str]:
        client = QMPClient("hvballoon-test")
        await client.connect(str(where / "103.qmp"))
        try:
            found = await client.execute("qom-list-types", {"implements": "pci-device", "abstract": False})
        finally:
            await client.disconnect()
        assert isinstance(found, list)
        return {t["name"] for t in found}

    known = asyncio.run(types())
    assert {t.removeprefix("child<").removesuffix(">") for t in VFIO_PCI_TYPES} <= known
    assert "virtio-balloon-pci" in known  # the listing is the one the balloon is found by
