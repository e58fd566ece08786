"""The ESXi backend on inventories beyond the fleet's: names vSphere escapes, folders, duplicates,
templates, and VMs vCenter is not connected to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import (
    AmbiguousVMError,
    GuardRailError,
    HVBalloonError,
    InvalidURIError,
    PermissionDeniedError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.models import PowerState
from hvballoon.units import GiB, MiB
from tests.support.vsphere.fleet import connect, vm_figures
from tests.support.vsphere.harness import VcsimServer

pytestmark = pytest.mark.peer

#: Names with the three characters vCenter stores escaped ("/" as %2f, "\" as %5c, "%" as %25:
#: vSphere API, ManagedEntity.name), and others it keeps as they are.
NAMES = ["web/01", "back\\slash", "50% off", "ünï cödé", "with space", "x" * 80]
#: A template, and VMs whose runtime.connectionState is not "connected" (their host is not, or
#: their files are gone, or they are no longer registered): their quickStats are left over.
ODD = [
    vm_figures("golden", powerState="poweredOff", quickStats={}, template=True),
    vm_figures("cut-off", connectionState="disconnected"),
    vm_figures("orphan", connectionState="orphaned"),
    # the account may not read its allocation: vSphere answers it in missingSet (NoPermission)
    vm_figures("locked-out", unreadable=["config.memoryAllocation"]),
    # memory hot-add on: its memory grows while it runs, to 32 GiB, by 128 MB
    vm_figures(
        "grow-live", memoryHotAddEnabled=True, hotPlugMemoryLimit=32768, hotPlugMemoryIncrementSize=128
    ),
]


@pytest.fixture(scope="module")
def named_peer() -> Iterator[VcsimServer]:
    """One simulator for the module: tests that change a VM change only their own."""
    with VcsimServer([*(vm_figures(name) for name in NAMES), *ODD]) as server:
        yield server


def test_the_simulator_stores_names_escaped_as_vcenter_does(named_peer: VcsimServer) -> None:
    assert named_peer.vm("web/01")["name"] == "web%2f01"
    assert named_peer.vm("50% off")["name"] == "50%25 off"


def test_names_read_as_written_and_address_their_vm(named_peer: VcsimServer, fast_sweep: bool) -> None:
    with connect(named_peer, fast_sweep=fast_sweep) as hv:
        everything = sorted([*NAMES, *(vm["name"] for vm in ODD)])
        assert sorted(vm.name for vm in hv.list_vms()) == everything
        assert sorted(s.vm.name for s in hv.get_stats()) == everything
        for name in NAMES:
            (stats,) = hv.get_stats([name])
            assert stats.vm.name == name
            change = hv.set_target(name, "8GiB")
            assert change.vm.name == name
            assert hv.get_config(name).limit_bytes == 8 * GiB
    for name in NAMES:  # each change reached the VM of that name
        assert named_peer.vm(name)["memoryAllocation"]["limit"] == 8 * GiB // MiB


def test_names_agree_with_the_fake(named_peer: VcsimServer, tmp_path: Any) -> None:
    import json

    scenario = tmp_path / "names.json"
    vms = [
        {"name": name, "memory": "16GiB", "used": "4GiB"} for name in [*NAMES, *(vm["name"] for vm in ODD)]
    ]
    scenario.write_text(
        json.dumps({"name": "names", "flavor": "esxi", "host": {"physical": "256GiB"}, "vms": vms})
    )
    with hvballoon.connect(f"fake://{scenario}") as fake, connect(named_peer) as real:
        assert sorted(vm.name for vm in real.list_vms()) == sorted(vm.name for vm in fake.list_vms())


def _admin(peer: VcsimServer) -> Any:
    from pyVim.connect import SmartConnect

    return SmartConnect(
        host=peer.host, port=peer.port, user=peer.username, pwd=peer.password, protocol="http"
    )


def _wait(task: Any) -> None:
    deadline = time.monotonic() + 30
    while task.info.state not in ("success", "error"):
        assert time.monotonic() < deadline, "the simulator's task did not end"
        time.sleep(0.02)
    assert task.info.state == "success", task.info.error


def test_folder_names_are_matched_as_written_and_duplicates_are_ambiguous() -> None:
    """A folder vCenter holds as ``team%2fweb`` is ``folder=team/web``, a VM folder whatever the
    host and datastore folders are named, and its hosts are those its VMs run on; the same VM
    name in two folders is two VMs, and naming it is ambiguous, never one picked silently."""
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    with VcsimServer([vm_figures("app"), vm_figures("app2"), vm_figures("solo")]) as peer:
        si = _admin(peer)
        try:
            dc = si.RetrieveContent().rootFolder.childEntity[0]
            vms = {vm.name: vm for vm in dc.vmFolder.childEntity if isinstance(vm, vim.VirtualMachine)}
            folder = dc.vmFolder.CreateFolder("team%2fweb")  # how vCenter stores "team/web"
            dc.hostFolder.CreateFolder("team%2fweb")  # host and datastore folders of that name
            dc.datastoreFolder.CreateFolder("team%2fweb")  # hold no VM of their own
            _wait(folder.MoveIntoFolder_Task([vms["app2"]]))
            _wait(vms["app2"].Rename_Task("app"))
        finally:
            Disconnect(si)
        base = f"vcenter://{peer.username}@{peer.host}:{peer.port}/?scheme=http&datacenter=DC0"
        with hvballoon.connect(f"{base}&folder=team/web", password=peer.password) as hv:
            (vm,) = hv.list_vms()
            assert vm.name == "app"
            assert vm.host is not None and vm.host.startswith("DC0_C0_H")  # its host's name
            # the folder's view holds no host: the one its VM runs on is read by reference
            for hosts in (hv.get_host_stats(), hv.get_host_stats(vm_stats=hv.get_stats())):
                (host,) = hosts
                assert host.host == vm.host and host.vms_running == 1
                assert host.physical_bytes is not None and host.used_bytes is not None
        with pytest.raises(InvalidURIError, match=r"no folder named 'host' here; folders: team/web, vm"):
            hvballoon.connect(f"{base}&folder=host", password=peer.password)  # the hosts' folder
        with hvballoon.connect(base, password=peer.password) as hv:
            assert sorted(vm.name for vm in hv.list_vms()) == ["app", "app", "solo"]
            with pytest.raises(AmbiguousVMError):
                hv.set_target("app", "8GiB")
            with pytest.raises(AmbiguousVMError):
                hv.set_target("app", "8GiB", dry_run=True)
            assert [c.limit_bytes for c in hv.get_configs()] == [None, None, None]  # nothing was sent


def test_a_template_is_read_but_never_changed(named_peer: VcsimServer, fast_sweep: bool) -> None:
    """vSphere reconfigures a template's name and annotation only: every memory change is
    refused before anything is sent, dry runs included, as the field a VM does not have."""
    with connect(named_peer, fast_sweep=fast_sweep) as hv:
        (stats,) = hv.get_stats(["golden"])
        assert stats.vm.extra["template"] is True
        assert stats.vm.power_state is PowerState.STOPPED
        caps = hv.vm_capabilities("golden")
        assert not caps.set_live and not caps.set_offline
        named_peer.reset_counts()
        attempts = [
            lambda: hv.set_target("golden", "8GiB"),
            lambda: hv.set_target("golden", "8GiB", dry_run=True, force=True),
            lambda: hv.set_config("golden", limit="unlimited"),
            lambda: hv.set_config("golden", reservation="2GiB", dry_run=True),
            lambda: hv.set_config("golden", maximum="8GiB"),
        ]
        for attempt in attempts:
            with pytest.raises(UnsupportedOperationError) as err:
                attempt()
            assert err.value.details["rule"] == "not_supported"
            # it says why (a template) and what to do, not "settable live: nothing"
            assert "'golden': it is a template" in err.value.message
            assert "convert it to a virtual machine" in err.value.message
            assert "settable live" not in err.value.message
        bulk = hv.set_targets({"golden": "8GiB"})
        assert isinstance(bulk["golden"], UnsupportedOperationError)
        assert "template" in bulk["golden"].message
        assert caps.frozen_reason is not None and "convert it to a virtual machine" in caps.frozen_reason
    if fast_sweep:  # the command says it too
        from tests.support.cli import invoke

        uri = f"esxi://{named_peer.username}@{named_peer.host}:{named_peer.port}/?scheme=http"
        shown = invoke("capabilities", uri, "golden", env={"HVBALLOON_PASSWORD": named_peer.password})
        assert shown.returncode == 0, shown.stderr
        assert "settable live: -" in shown.stdout and "nothing can change: it is a template" in shown.stdout
        assert "ReconfigVM_Task" not in named_peer.counts()
    assert named_peer.vm("golden")["memoryAllocation"]["limit"] == -1


@pytest.mark.parametrize("name", ["cut-off", "orphan"])
def test_a_vm_vcenter_is_not_connected_to_has_an_unknown_power_state(
    named_peer: VcsimServer, fast_sweep: bool, name: str
) -> None:
    """Its power state and quickStats are vCenter's last word: the stats are stale, and lowering
    its target needs force, as for any VM whose power state is unknown."""
    state = {"cut-off": "disconnected", "orphan": "orphaned"}[name]
    with connect(named_peer, fast_sweep=fast_sweep) as hv:
        (vm,) = [v for v in hv.list_vms() if v.name == name]
        assert vm.power_state is PowerState.UNKNOWN
        assert vm.extra["state"] == state
        (stats,) = hv.get_stats([name])
        assert stats.stale and stats.guest_used_bytes is None and stats.ballooned_bytes is None
        assert stats.configured_bytes == 16 * GiB
        named_peer.reset_counts()
        with pytest.raises(GuardRailError, match=state) as err:
            hv.set_target(name, "8GiB")
        assert err.value.details["rule"] == "unknown_power_state"
        assert "ReconfigVM_Task" not in named_peer.counts()
        running = [s for s in hv.get_stats() if s.vm.power_state is PowerState.RUNNING]
        assert name not in {s.vm.name for s in running}
        # it may be running: its host's sums over the running VMs are unknown, not an undercount
        hosts = hv.get_host_stats()
        (its_host,) = [h for h in hosts if h.host == stats.vm.host]
        assert its_host.vms_running is None and its_host.vm_configured_bytes is None
        assert its_host.physical_bytes is not None  # the host's own figures stay
        others = [h for h in hosts if h is not its_host]
        assert sum(h.vms_running or 0 for h in others) == sum(s.vm.host != stats.vm.host for s in running)


def test_a_property_the_account_may_not_read_is_unknown_not_unset(
    named_peer: VcsimServer, fast_sweep: bool
) -> None:
    """An allocation the server would not read (missingSet, NoPermission) is not "no limit, no
    reservation": a sweep reports it unknown and names it; a read of that VM, or any change to
    it, is a PermissionDeniedError, and no allocation is sent with reservation and shares guessed."""
    with connect(named_peer, fast_sweep=fast_sweep) as hv:
        stats = {s.vm.name: s for s in hv.get_stats()}["locked-out"]
        assert stats.target_bytes is None and stats.stale
        assert stats.extra["unreadable"] == ["config.memoryAllocation"]
        config = {c.vm.name: c for c in hv.get_configs()}["locked-out"]
        assert config.extra["unreadable"] == ["config.memoryAllocation"]
        named_peer.reset_counts()
        attempts = [
            lambda: hv.get_stats(["locked-out"]),
            lambda: hv.get_config("locked-out"),
            lambda: hv.set_target("locked-out", "8GiB"),
            lambda: hv.set_target("locked-out", "8GiB", dry_run=True),
            lambda: hv.set_config("locked-out", reservation="2GiB"),
            lambda: hv.set_config("locked-out", limit="unlimited", dry_run=True),
        ]
        for attempt in attempts:
            with pytest.raises(PermissionDeniedError) as err:
                attempt()
            assert err.value.details["unreadable"] == ["config.memoryAllocation"]
            assert err.value.vm == "locked-out"
        bulk = hv.set_targets({"locked-out": "8GiB"})
        assert isinstance(bulk["locked-out"], PermissionDeniedError)
        assert "ReconfigVM_Task" not in named_peer.counts()
    allocation = named_peer.vm("locked-out")["memoryAllocation"]
    assert allocation == {"reservation": 1024, "limit": -1, "shares": {"level": "normal", "shares": 163840}}


def test_a_vm_the_account_may_not_read_fails_alone_in_bulk_changes(
    named_peer: VcsimServer, fast_sweep: bool
) -> None:
    """One VM whose allocation comes back in missingSet (NoPermission) is that VM's own
    PermissionDeniedError in set_targets and set_configs: the others are read, held back with
    a warning, or changed with ``skip_invalid=True``; nothing is sent for the unreadable one."""
    other = "with space" if fast_sweep else "x" * 80
    with connect(named_peer, fast_sweep=fast_sweep) as hv:
        before = hv.get_config(other)
        limit, reservation = (before.limit_bytes or 8 * GiB) + GiB, (before.reservation_bytes or 0) + GiB
        named_peer.reset_counts()
        held = hv.set_targets({other: limit, "locked-out": limit})
        assert isinstance(held["locked-out"], PermissionDeniedError)
        assert held["locked-out"].details["unreadable"] == ["config.memoryAllocation"]
        change = held[other]
        assert not isinstance(change, Exception) and change.dry_run and not held.applied
        assert "1 of 2 VMs were refused (locked-out)" in change.warnings[-1]
        assert "ReconfigVM_Task" not in named_peer.counts()
        moved = hv.set_targets({other: limit, "locked-out": limit}, skip_invalid=True)
        assert isinstance(moved["locked-out"], PermissionDeniedError) and moved.made == {other}
        configs = hv.set_configs(
            {other: {"reservation": reservation}, "locked-out": {"reservation": reservation}},
            skip_invalid=True,
        )
        assert isinstance(configs["locked-out"], PermissionDeniedError) and configs.made == {other}
        assert named_peer.counts()["ReconfigVM_Task"] == 2
        after = hv.get_config(other)
        assert (after.limit_bytes, after.reservation_bytes) == (limit, reservation)
    allocation = named_peer.vm("locked-out")["memoryAllocation"]
    assert allocation == {"reservation": 1024, "limit": -1, "shares": {"level": "normal", "shares": 163840}}


def test_a_running_vm_with_memory_hot_add_grows_its_memory(named_peer: VcsimServer, fast_sweep: bool) -> None:
    """config.memoryHotAddEnabled, hotPlugMemoryLimit and hotPlugMemoryIncrementSize are read (in a
    sweep and for one VM); a running VM's memory grows within them, and every other live size
    is refused by its rule before anything is sent, dry runs alike."""
    with connect(named_peer, fast_sweep=fast_sweep) as hv:
        swept = {c.vm.name: c for c in hv.get_configs()}
        cfg = hv.get_config("grow-live")
        for read in (swept["grow-live"], cfg):
            assert (read.extra["memory_hot_add"], read.extra["hot_add_limit_bytes"]) == (True, 32 * GiB)
            assert read.extra["hot_add_increment_bytes"] == 128 * MiB
        assert swept["with space"].extra["memory_hot_add"] is False
        assert "hot_add_limit_bytes" not in swept["with space"].extra
        now = cfg.maximum_bytes
        assert now is not None
        named_peer.reset_counts()
        refused = [
            ("grow-live", now - 128 * MiB, "memory_hot_add_grow_only"),
            ("grow-live", 32 * GiB + 128 * MiB, "memory_hot_add_limit"),
            ("grow-live", now + 132 * MiB, "memory_hot_add_increment"),
            ("with space", 20 * GiB, "memory_size_only_when_off"),
        ]
        for name, size, rule in refused:
            for dry_run in (True, False):
                with pytest.raises(HVBalloonError) as err:
                    hv.set_config(name, maximum=size, dry_run=dry_run)
                assert err.value.details["rule"] == rule, err.value.message
        assert "hot-add is off" in err.value.message
        assert "ReconfigVM_Task" not in named_peer.counts()
        change = hv.set_config("grow-live", maximum=now + GiB)
        assert change.changed and change.after["maximum_bytes"] == now + GiB
        (stats,) = hv.get_stats(["grow-live"])
        assert stats.configured_bytes == stats.target_bytes == now + GiB  # unlimited: the target follows
    assert named_peer.vm("grow-live")["memoryMB"] == (now + GiB) // MiB


def test_a_vm_removed_after_it_was_named_is_not_found_by_name(fast_sweep: bool) -> None:
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    with VcsimServer(
        [vm_figures("gone", powerState="poweredOff", quickStats={}), vm_figures("kept")]
    ) as peer:
        with connect(peer, fast_sweep=fast_sweep) as hv:
            (vm,) = [v for v in hv.list_vms() if v.name == "gone"]
            si = _admin(peer)
            try:
                dc = si.RetrieveContent().rootFolder.childEntity[0]
                (ref,) = [
                    v
                    for v in dc.vmFolder.childEntity
                    if isinstance(v, vim.VirtualMachine) and v.name == "gone"
                ]
                _wait(ref.Destroy_Task())
            finally:
                Disconnect(si)
            for read in (lambda: hv.get_stats([vm]), lambda: hv.set_target(vm, "8GiB")):
                with pytest.raises(VMNotFoundError) as err:
                    read()
                assert err.value.vm == "gone"
            assert [v.name for v in hv.list_vms()] == ["kept"]


def test_several_datacenters_standalone_hosts_and_vapps() -> None:
    """Two datacenters (the second in a folder), each with a standalone host and a cluster with a
    vApp: the root view holds every VM and host; a name in both datacenters is ambiguous there,
    and one in each datacenter's view."""
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    inventory = {"datacenters": 2, "standaloneHosts": 1, "clusters": 1, "apps": 1, "folders": 1}
    with VcsimServer([vm_figures("web01"), vm_figures("db01")], hosts=2, inventory=inventory) as peer:
        si = _admin(peer)
        try:
            content = si.RetrieveContent()
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            (twin,) = [vm for vm in view.view if vm.name == "DC1_C0_RP0_VM0"]
            _wait(twin.Rename_Task("web01"))
        finally:
            Disconnect(si)
        base = f"vcenter://{peer.username}@{peer.host}:{peer.port}/?scheme=http"
        with hvballoon.connect(base, password=peer.password) as hv:
            vms = hv.list_vms()
            assert len(vms) == 12  # 2 per standalone host, cluster pool and vApp, in 2 datacenters
            assert {vm.host for vm in vms if vm.name.startswith("DC1_H0_")} == {"DC1_H0"}
            assert {h.host for h in hv.get_host_stats()} == {
                "DC0_H0", "DC0_C0_H0", "DC0_C0_H1", "DC1_H0", "DC1_C0_H0", "DC1_C0_H1",
            }  # fmt: skip
            with pytest.raises(AmbiguousVMError):
                hv.set_target("web01", "8GiB")
        for datacenter, host in (("DC0", "DC0_H0"), ("DC1", "DC1_C0_H0")):
            with hvballoon.connect(f"{base}&datacenter={datacenter}", password=peer.password) as hv:
                assert len(hv.list_vms()) == 6
                (stats,) = hv.get_stats(["web01"])
                assert stats.vm.host == host
                assert {h.host for h in hv.get_host_stats()} == {
                    f"{datacenter}_H0",
                    *(f"{datacenter}_C0_H{i}" for i in (0, 1)),
                }
        with hvballoon.connect(f"{base}&datacenter=DC1&cluster=DC1_C0", password=peer.password) as hv:
            names = {vm.name for vm in hv.list_vms()}
            assert names == {
                "web01",
                "DC1_C0_RP0_VM1",
                "DC1_C0_APP0_VM0",
                "DC1_C0_APP0_VM1",
            }  # the vApp's too
