"""The host picture of a vCenter with several ESXi hosts, from the simulator, both sweeps.

Each host's figures are set in the simulator (``hardware.memorySize``, and
``summary.quickStats.overallMemoryUsage`` in MB as the API sends it) and each VM is placed on
a host; the simulator omits zero-valued quickStats, which pyvmomi then reads as unset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from hvballoon.cli import main
from tests.support.vsphere.fleet import connect, vm_figures
from tests.support.vsphere.harness import VcsimServer

pytestmark = pytest.mark.peer

MiB, GiB = 2**20, 2**30

HOSTS = [
    {"memoryMB": 65536, "overallMemoryUsage": 30000},
    {"memoryMB": 131072, "overallMemoryUsage": 90000},
    {"memoryMB": 49152, "overallMemoryUsage": 2000},
]
QS = {"guestMemoryUsage": 4096, "hostMemoryUsage": 8300, "swappedMemory": 64, "sharedMemory": 100}
VMS = [
    vm_figures("web01", host=0, quickStats={**QS, "balloonedMemory": 512, "consumedOverheadMemory": 90}),
    vm_figures("web02", host=1, quickStats={**QS, "balloonedMemory": 1024, "consumedOverheadMemory": 80}),
    vm_figures(
        "db01",
        host=1,
        memoryMB=65536,
        quickStats={**QS, "balloonedMemory": 2048, "consumedOverheadMemory": 200},
    ),
    vm_figures("idle01", host=1, powerState="poweredOff", quickStats={}),
    vm_figures("off02", host=2, powerState="poweredOff", quickStats={}),
]


@pytest.fixture(scope="module")
def vcenter() -> Iterator[VcsimServer]:
    with VcsimServer(VMS, hosts=3, host_figures=HOSTS) as server:
        yield server


def test_every_host_with_its_own_figures_and_its_vms(vcenter: VcsimServer, fast_sweep: bool) -> None:
    with connect(vcenter, fast_sweep=fast_sweep) as hv:
        vcenter.reset_counts()
        hosts = hv.get_host_stats()
        assert vcenter.counts() == {"RetrievePropertiesEx": 1}  # every host and VM, one request
        stats = hv.get_stats()
    assert [h.host for h in hosts] == ["DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"]
    h0, h1, h2 = hosts
    for h, fig in zip(hosts, HOSTS, strict=True):
        assert h.physical_bytes == fig["memoryMB"] * MiB
        assert h.used_bytes == fig["overallMemoryUsage"] * MiB  # MB on the wire
        assert h.free_bytes == h.physical_bytes - h.used_bytes
        assert h.backend == "esxi" and h.swap_total_bytes is None
    assert (h0.vms_running, h1.vms_running, h2.vms_running) == (1, 2, 0)
    assert h0.vm_configured_bytes == 16 * GiB and h1.vm_configured_bytes == (16 + 64) * GiB
    assert h1.ballooned_bytes == (1024 + 2048) * MiB and h0.ballooned_bytes == 512 * MiB
    assert h1.overcommit_ratio == round(80 / 128, 4)
    assert h1.swap_used_bytes == 2 * 64 * MiB and h1.shared_bytes == 2 * 100 * MiB
    assert h1.hypervisor_overhead_bytes == (80 + 200) * MiB
    # a host running nothing holds nothing: zeros, not unknowns
    assert (h2.vm_configured_bytes, h2.ballooned_bytes, h2.swap_used_bytes, h2.overcommit_ratio) == (
        0,
        0,
        0,
        0.0,
    )
    # the sums are the sweep's, VM by VM
    running = [s for s in stats if s.vm.power_state.value == "running" and s.vm.host == "DC0_C0_H1"]
    assert h1.vm_current_bytes == sum(s.current_bytes or 0 for s in running)


def test_a_given_sweep_costs_one_small_request(vcenter: VcsimServer, fast_sweep: bool) -> None:
    with connect(vcenter, fast_sweep=fast_sweep) as hv:
        stats = hv.get_stats()
        vcenter.reset_counts()
        hosts = hv.get_host_stats(vm_stats=stats)
        assert vcenter.counts() == {"RetrievePropertiesEx": 1}
        assert [h.vms_running for h in hosts] == [1, 2, 0]
        again = hv.get_host_stats()  # reading the VMs itself: the same sums
        assert [h.model_dump(exclude={"collected_at"}) for h in hosts] == [
            h.model_dump(exclude={"collected_at"}) for h in again
        ]


def test_a_host_not_reporting_its_usage(fast_sweep: bool) -> None:
    # a disconnected host reports 0 MB used, which no live host does: unknown, not "all free";
    # a VM's zero quickStat is a real zero (a leaf property path is sent even when 0)
    vms = [
        vm_figures("web01", host=0),
        vm_figures("web02", host=0, quickStats={"guestMemoryUsage": 1000, "balloonedMemory": 100}),
    ]
    host = {"memoryMB": 32768, "overallMemoryUsage": 0}
    with (
        VcsimServer(vms, hosts=1, host_figures=[host]) as server,
        connect(server, fast_sweep=fast_sweep) as hv,
    ):
        (h,) = hv.get_host_stats()
    assert h.physical_bytes == 32 * GiB
    assert h.used_bytes is None and h.free_bytes is None
    assert h.swap_used_bytes == 64 * MiB and h.shared_bytes == 100 * MiB  # web02's are 0
    assert h.ballooned_bytes == (512 + 100) * MiB and h.vms_running == 2
    assert h.overcommit_ratio == 1.0


def test_host_command_and_autoballoon_without_host_memory(vcenter: VcsimServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("HVBALLOON_PASSWORD", vcenter.password)
    uri = f"esxi://{vcenter.username}@{vcenter.host}:{vcenter.port}/?scheme=http"
    r = CliRunner().invoke(main, ["host", uri, "--json"])
    assert r.exit_code == 0, r.output
    hosts = json.loads(r.stdout)  # stderr has the warning about plain http
    assert [h["physical_bytes"] for h in hosts] == [f["memoryMB"] * MiB for f in HOSTS]
    r = CliRunner().invoke(main, ["autoballoon", uri, "--once", "--dry-run", "-v"])
    assert r.exit_code == 0, r.output
    assert "web01" in r.output and "db01" in r.output


def test_usage_beyond_the_memory_size_is_capped(fast_sweep: bool) -> None:
    # overallMemoryUsage (MB) above hardware.memorySize: used is all of physical, free 0, and
    # the two add up; a host answering 0 bytes of memory is not reporting it (unknown)
    hosts = [{"memoryMB": 4096, "overallMemoryUsage": 5000}, {"memoryMB": 8192, "overallMemoryUsage": 1000}]
    with (
        VcsimServer([vm_figures("web01", host=0)], hosts=2, host_figures=hosts) as server,
        connect(server, fast_sweep=fast_sweep) as hv,
    ):
        over, fine = hv.get_host_stats()
    assert (over.physical_bytes, over.used_bytes, over.free_bytes) == (4 * GiB, 4 * GiB, 0)
    assert (fine.used_bytes, fine.free_bytes) == (1000 * MiB, (8192 - 1000) * MiB)


def test_the_controller_decides_each_host_on_its_own_memory() -> None:
    """Two ESXi hosts, one at 96 % and one at 8 %: the pool (28 %) would move nothing; MoM
    shrinks the hot host's VMs and leaves the idle host's alone."""
    from hvballoon.policy import Controller

    hosts = [
        {"memoryMB": 65536, "overallMemoryUsage": 63000},
        {"memoryMB": 262144, "overallMemoryUsage": 20000},
    ]
    vms = [vm_figures("hot01", host=0), vm_figures("hot02", host=0), vm_figures("cool01", host=1)]
    with (
        VcsimServer(vms, hosts=2, host_figures=hosts) as server,
        connect(server) as hv,
    ):
        decisions = {d.vm: d for d in Controller(hv, "mom", dry_run=True).step()}
    assert {d.inputs["host"] for d in decisions.values()} == {"DC0_C0_H0", "DC0_C0_H1"}
    for name in ("hot01", "hot02"):
        d = decisions[name]
        assert d.inputs["host"] == "DC0_C0_H0" and d.rule == "mom.shrink" and d.action == "lower", d
    cool = decisions["cool01"]
    assert cool.inputs["host"] == "DC0_C0_H1" and cool.action != "lower", cool


def test_a_disconnected_host_holds_its_vms_and_the_other_host_is_decided(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """vCenter lost one host (disconnected: no memory size reported): its VMs are not decided
    on a guess, the round goes on for the other host, and a warning names the lost host."""
    import logging

    from hvballoon.policy import Controller

    hosts = [{"memoryMB": 65536, "overallMemoryUsage": 63000}, {"disconnected": True}]
    vms = [
        vm_figures("hot01", host=0),
        vm_figures("hot02", host=0),
        vm_figures("lost01", host=1),  # its host is gone, but vCenter still says it runs
        vm_figures("lost02", host=1, connectionState="disconnected"),  # as vCenter shows it
    ]
    with (
        VcsimServer(vms, hosts=2, host_figures=hosts) as server,
        connect(server) as hv,
        caplog.at_level(logging.WARNING, logger="hvballoon.policy"),
    ):
        physical = {h.host: h.physical_bytes for h in hv.get_host_stats()}
        assert physical == {"DC0_C0_H0": 64 * GiB, "DC0_C0_H1": None}
        decisions = {d.vm: d for d in Controller(hv, "mom", dry_run=True).step()}
    for name in ("hot01", "hot02"):
        d = decisions[name]
        assert d.inputs["host"] == "DC0_C0_H0" and d.rule == "mom.shrink" and d.action == "lower", d
    lost = decisions["lost01"]
    assert (lost.action, lost.rule) == (
        "hold",
        "controller.host_memory_unknown",
    ) and "DC0_C0_H1" in lost.reason
    assert "lost02" not in decisions or decisions["lost02"].action != "lower"  # not known to run
    warned = [r for r in caplog.records if getattr(r, "event", None) == "host_memory_unknown"]
    assert [r.host for r in warned] == ["DC0_C0_H1"]  # type: ignore[attr-defined]
