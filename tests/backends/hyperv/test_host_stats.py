"""The Hyper-V host's memory picture through the loopback WinRM peer: one fixed script.

The peer answers the HOST template as a Windows host would: Get-VMHost's MemoryCapacity in
bytes, Win32_OperatingSystem's FreePhysicalMemory and paging-file sizes in whole kilobytes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from hvballoon.backends.hyperv._scripts import HOST, data_of, decode_data
from hvballoon.cli import main
from hvballoon.errors import BackendError, PermissionDeniedError
from tests.support.hyperv.fakehost import FakeHyperVHost, hyperv_world
from tests.support.hyperv.peer import PASSWORD, Peer, start_peer

pytestmark = pytest.mark.peer

GiB = 1024**3


def test_one_command_reads_the_host_and_its_vms(peer: Peer, hv: Any) -> None:
    w = peer.host.world
    w.advance(3600)
    peer.server.reset_counts()
    (h,) = hv.get_host_stats()
    assert peer.server.counts()["Command"] == 1
    record = peer.server.history[-1]
    assert decode_data(data_of(HOST, record.script)) == {"vms": True}
    assert h.backend == "hyperv" and h.host == w.host.name
    assert h.physical_bytes == w.host.physical_bytes == 120 * GiB
    assert h.free_bytes == w.host_free_bytes // 1024 * 1024  # whole KiB, as WMI reports it
    assert h.used_bytes == h.physical_bytes - h.free_bytes
    assert h.swap_total_bytes == w.host.swap_bytes
    assert h.swap_used_bytes == int(w.state.host_swapped.sum()) // 1024 * 1024
    assert h.shared_bytes is None and h.ballooned_bytes is None  # Hyper-V has neither figure
    assert h.hypervisor_overhead_bytes is None
    stats = hv.get_stats()
    running = [s for s in stats if s.vm.power_state.value == "running"]
    assert h.vms_running == len(running) == 10
    assert h.vm_configured_bytes == sum(s.configured_bytes or 0 for s in running) == 160 * GiB
    assert h.vm_current_bytes == sum(s.current_bytes or 0 for s in running)
    assert h.overcommit_ratio == 1.3333


def test_a_given_sweep_asks_the_host_for_no_vms(peer: Peer, hv: Any) -> None:
    stats = hv.get_stats()
    (h,) = hv.get_host_stats(vm_stats=stats)
    record = peer.server.history[-1]
    assert decode_data(data_of(HOST, record.script)) == {"vms": False}
    assert json.loads(record.stdout)["VMs"] == []
    assert h.vms_running == 10 and h.physical_bytes == 120 * GiB


class GarbledHost(FakeHyperVHost):
    """A host whose HOST answer a test sets (a broken or hostile endpoint)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer: Any = None

    def _host(self, params: dict[str, Any]) -> Any:
        return super()._host(params) if self.answer is None else self.answer


def test_the_hosts_refusals_and_garbage_are_typed_errors() -> None:
    host = GarbledHost()
    for peer in start_peer("basic", False, host=host):
        with peer.connect() as hv:
            host.fail_next(
                HOST,
                {
                    "id": "AccessDenied,Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand",
                    "category": "PermissionDenied",
                    "type": "Microsoft.Management.Infrastructure.CimException",
                    "message": "Access denied",
                },
            )
            with pytest.raises(PermissionDeniedError):
                hv.get_host_stats()
            host.answer = {"Name": "x"}  # no VMs list
            with pytest.raises(BackendError, match="not in the expected form"):
                hv.get_host_stats()
            host.answer = ["not", "a", "host"]
            with pytest.raises(BackendError, match="not in the expected form"):
                hv.get_host_stats()
            host.answer = {"Name": "x", "VMs": [{"Name": "no id"}]}
            with pytest.raises(BackendError, match="VM list"):
                hv.get_host_stats()
            host.answer = {"Name": "x", "MemoryCapacity": "lots", "FreePhysicalMemory": -5, "VMs": []}
            (h,) = hv.get_host_stats(vm_stats=[])
            assert h.physical_bytes is None and h.free_bytes is None  # unreadable figures: unknown
            assert h.host == "x" and h.vms_running == 0


def test_free_memory_beyond_the_capacity_is_capped_at_physical() -> None:
    # FreePhysicalMemory (KB, the OS's view) above Get-VMHost's MemoryCapacity (bytes): all free
    host = GarbledHost()
    for peer in start_peer("basic", False, host=host):
        with peer.connect() as hv:
            host.answer = {
                "Name": "hv9",
                "MemoryCapacity": 8 * GiB,
                "FreePhysicalMemory": 9 * GiB // 1024,
                "VMs": [],
            }
            (h,) = hv.get_host_stats(vm_stats=[])
            assert (h.physical_bytes, h.used_bytes, h.free_bytes) == (8 * GiB, 0, 8 * GiB)
            host.answer = {
                "Name": "hv9",
                "MemoryCapacity": 8 * GiB,
                "FreePhysicalMemory": 3 * GiB // 1024,
                "VMs": [],
            }
            (h,) = hv.get_host_stats(vm_stats=[])
            assert (h.used_bytes, h.free_bytes) == (5 * GiB, 3 * GiB)


def test_host_command_and_autoballoon_without_host_memory(basic_peer: Peer, monkeypatch: Any) -> None:
    basic_peer.host.world = hyperv_world()
    monkeypatch.setenv("HVBALLOON_PASSWORD", PASSWORD)
    uri = basic_peer.uri()
    r = CliRunner().invoke(main, ["host", uri, "--json"])
    assert r.exit_code == 0, r.output
    (host,) = json.loads(r.stdout)  # stderr has the warning about Basic over plain http
    assert host["physical_bytes"] == 120 * GiB and host["vms_running"] == 10
    r = CliRunner().invoke(main, ["autoballoon", uri, "--once", "--dry-run", "-v"])
    assert r.exit_code == 0, r.output
    assert "web01" in r.output
