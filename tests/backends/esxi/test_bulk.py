"""The ESXi backend's bulk paths on the vSphere simulator: names without a full listing, many
targets issued then awaited together, each VM's fault its own."""

from __future__ import annotations

from typing import Any

import pytest
from pyVmomi import vim, vmodl

from hvballoon.backend import TargetRequest
from hvballoon.errors import InvalidRequestError, VMNotFoundError
from hvballoon.units import MiB
from tests.support.vsphere.fleet import FLEET, connect, vm_figures
from tests.support.vsphere.harness import VcsimServer

pytestmark = pytest.mark.peer

MOVES = {"web01": "6GiB", "web02": "5GiB", "db01": "20GiB"}


def _destroy(peer: VcsimServer, name: str) -> None:
    from tests.hardening.matrix import _esxi_destroy

    _esxi_destroy(peer, name)


def test_set_targets_issues_every_task_then_waits_once() -> None:
    # tasks that end after their call returns, as on a real vCenter
    with VcsimServer(FLEET, task_delay=0.3) as peer, connect(peer) as hv:
        hv.list_vms()
        peer.reset_counts()
        res = hv.set_targets(MOVES)
        counts = peer.counts()
        assert res.ok and res.made == set(MOVES)
        # one read of the VMs (stats, configuration, hosts), one of their allocations, one of
        # the tasks' states; a reconfiguration per VM; one filter and its waits for all tasks
        assert counts["RetrievePropertiesEx"] == 3
        assert counts["ReconfigVM_Task"] == 3
        assert counts["CreateFilter"] == 1 and counts["DestroyPropertyFilter"] == 1
        assert counts["CreatePropertyCollector"] == 1
        assert 1 <= counts["WaitForUpdatesEx"] <= 3
        for name, size in MOVES.items():
            alloc = peer.vm(name)["memoryAllocation"]
            assert alloc["limit"] == int(size.removesuffix("GiB")) * 1024
            # the whole allocation was sent back: reservation and shares kept
            original = next(v for v in FLEET if v["name"] == name)["memoryAllocation"]
            assert alloc["reservation"] == original["reservation"]
            assert alloc["shares"] == original["shares"]
        # the task collector is kept for the session: the next batch makes no new one
        peer.reset_counts()
        assert hv.set_targets({"web01": "7GiB"}).made == {"web01"}
        assert "CreatePropertyCollector" not in peer.counts()


def test_each_tasks_fault_is_its_own() -> None:
    with VcsimServer(FLEET, task_delay=0.2) as peer, connect(peer) as hv:
        backend = hv.backend
        client = backend.client
        web01, web02 = hv.resolve_many(["web01", "web02"])
        good = backend._ref(web01).ReconfigVM_Task(
            spec=vim.vm.ConfigSpec(memoryAllocation=vim.ResourceAllocationInfo(limit=8192))
        )
        # the simulator refuses a limit below -1 in the task, as vSphere does
        bad = backend._ref(web02).ReconfigVM_Task(
            spec=vim.vm.ConfigSpec(memoryAllocation=vim.ResourceAllocationInfo(limit=-5))
        )
        ends = client.wait_for_tasks([good, bad], timeout=10)
        assert ends[0] is None
        assert isinstance(ends[1], vmodl.fault.InvalidArgument)
        with pytest.raises(vmodl.fault.InvalidArgument):
            client.wait_for_task(bad, timeout=10)


def test_a_task_still_running_at_the_timeout_is_that_vms_timeout() -> None:
    with VcsimServer(FLEET, task_delay=3.0) as peer, connect(peer) as hv:
        backend = hv.backend
        (web01,) = hv.resolve_many(["web01"])
        task = backend._ref(web01).ReconfigVM_Task(
            spec=vim.vm.ConfigSpec(memoryAllocation=vim.ResourceAllocationInfo(limit=8192))
        )
        (end,) = backend.client.wait_for_tasks([task], timeout=1.0)
        assert end is not None and getattr(end, "code", None) == "timeout"
        assert end.details["task"] == task._moId  # type: ignore[attr-defined]


def test_a_vm_removed_before_its_move_fails_alone(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        web01, web02 = hv.resolve_many(["web01", "web02"])
        _destroy(peer, "web02")
        answers = hv.backend.apply_targets(
            [TargetRequest(web01, 6 * 1024 * MiB), TargetRequest(web02, 5 * 1024 * MiB)]
        )
        assert answers[0] is None
        assert isinstance(answers[1], VMNotFoundError) and answers[1].vm == "web02"
        assert peer.vm("web01")["memoryAllocation"]["limit"] == 6 * 1024


def test_a_refusal_in_the_middle_sends_nothing(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        hv.list_vms()
        peer.reset_counts()
        # db01 has no reservation; web01's is 1 GiB: a limit below it is refused before sending
        res = hv.set_targets({"db01": "20GiB", "web01": "512MiB", "web02": "5GiB"}, force=True)
        assert isinstance(res["web01"], InvalidRequestError) and not res.applied
        assert peer.counts() == {"RetrievePropertiesEx": 1}
        assert peer.vm("db01")["memoryAllocation"]["limit"] == 24576


def test_a_name_costs_no_full_listing_and_is_then_known() -> None:
    fleet = [vm_figures(f"vm{i:04d}") for i in range(300)]
    with VcsimServer(fleet, hosts=4) as peer, connect(peer) as hv:
        peer.reset_counts()
        hv.set_target("vm0150", "6GiB")
        cold = peer.counts()
        # one sweep of the VMs' names, the hosts' names once, the VM read, its allocation,
        # the reconfiguration and one read of the task
        assert cold == {"RetrievePropertiesEx": 5, "ReconfigVM_Task": 1}
        peer.reset_counts()
        hv.set_target("vm0151", "6GiB")  # the sweep saw it: no look-up at all
        assert peer.counts() == {"RetrievePropertiesEx": 3, "ReconfigVM_Task": 1}


def test_configurations_of_every_vm_in_one_sweep(shared_peer: VcsimServer, fast_sweep: bool) -> None:
    with connect(shared_peer, fast_sweep=fast_sweep) as hv:
        shared_peer.reset_counts()
        configs = {c.vm.name: c for c in hv.get_configs()}
        assert shared_peer.counts() == {"RetrievePropertiesEx": 1}
        assert sorted(configs) == sorted(v["name"] for v in FLEET)
        one_by_one: dict[str, Any] = {n: hv.get_config(n) for n in configs}
        assert configs == one_by_one
        assert configs["db01"].limit_bytes == 24576 * MiB and configs["db01"].shares == 5000
