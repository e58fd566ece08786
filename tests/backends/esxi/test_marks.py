"""Marks on ESXi VMs: ``extraConfig`` keys, written and read through the vSphere API of the
simulator (which the harness makes replace and remove keys the way vSphere does)."""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon.errors import InvalidRequestError, UnsupportedOperationError
from tests.support.cli import invoke
from tests.support.policies import Fixed
from tests.support.vsphere.fleet import connect
from tests.support.vsphere.harness import VcsimServer

KEY = "hvballoon.controller.before"


@pytest.mark.peer
def test_a_mark_is_an_extraconfig_key_set_replaced_and_removed(peer: VcsimServer) -> None:
    with connect(peer) as hv:
        assert hv.capabilities.marks
        assert hv.get_marks(KEY) == {}
        hv.set_mark("web01", KEY, "unlimited")
        hv.set_mark("db01", KEY, str(24576 * 2**20))
        ids = {v.name: v.id for v in hv.list_vms()}
        assert hv.get_marks(KEY) == {ids["web01"]: "unlimited", ids["db01"]: str(24576 * 2**20)}
        assert peer.vm("web01")["extraConfig"][KEY] == "unlimited"
        hv.set_mark("web01", KEY, "12345")  # replaced, not added beside the old value
        assert hv.get_marks(KEY)[ids["web01"]] == "12345"
        assert list(peer.vm("web01")["extraConfig"]).count(KEY) == 1
        hv.set_mark("web01", KEY, None)
        assert KEY not in peer.vm("web01")["extraConfig"]
        assert hv.get_marks(KEY) == {ids["db01"]: str(24576 * 2**20)}
        hv.set_mark("web01", KEY, None)  # removing what is not there changes nothing
        # a mark leaves the VM's memory allocation and its other keys alone
        hv.set_config("idle01", balloon_cap="2GiB", limit="8GiB")  # powered off: both allowed
        hv.set_mark("idle01", "hvballoon.other", "x")
        vm = peer.vm("idle01")
        assert vm["extraConfig"]["sched.mem.maxmemctl"] == "2048"
        assert vm["extraConfig"]["hvballoon.other"] == "x"
        assert vm["memoryAllocation"]["limit"] == 8192
        assert hv.get_config("idle01").balloon_cap_bytes == 2 * 2**30


@pytest.mark.peer
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sched.mem.maxmemctl", "1024"),  # another of the VM's settings: never
        ("hvballoon", "x"),
        ("hvballoon.Upper", "x"),
        ("hvballoon.a..b", "x"),
        ("hvballoon." + "a" * 100, "x"),
        (KEY, ""),
        (KEY, "a\nb"),
        (KEY, "é"),
        (KEY, "x" * 256),
    ],
)
def test_bad_keys_and_values_are_refused_before_anything_is_sent(
    shared_peer: VcsimServer, key: str, value: str
) -> None:
    with connect(shared_peer) as hv:
        shared_peer.reset_counts()
        with pytest.raises(InvalidRequestError, match="mark's"):
            hv.set_mark("web01", key, value)
        assert "ReconfigVM_Task" not in shared_peer.counts()


def test_backends_without_marks_say_so() -> None:
    """Hyper-V keeps no marks (KVM keeps them in the domain's metadata: tests/backends/kvm)."""
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        assert not hv.capabilities.marks
        with pytest.raises(UnsupportedOperationError, match="keeps no marks"):
            hv.get_marks(KEY)
        with pytest.raises(UnsupportedOperationError, match="keeps no marks"):
            hv.set_mark("web01", KEY, "1")


@pytest.mark.peer
def test_limits_the_controller_set_are_released_from_their_marks_alone(peer: VcsimServer) -> None:
    """The controller lowers through ESXi limits and marks each VM; its journal is lost (it was
    in memory); ``hvballoon release --from-marks`` finds and restores every one, on the
    simulator, through the vSphere API: a VM without a limit gets none, one with a limit gets it
    back, even above its memory size (web02's)."""
    import json

    from hvballoon.policy import Controller, ControllerSettings

    with connect(peer) as hv:
        hv.set_config("web02", limit="20GiB")  # above its 16 GiB: its target reads 16 GiB
        ctl = Controller(hv, Fixed(12 * 2**30), ControllerSettings(host_memory_bytes="256GiB"))
        decisions = {d.vm: d for d in ctl.step()}
    lowered = {name for name, d in decisions.items() if d.action == "lower" and d.applied}
    assert lowered == {"web01", "web02", "db01"}  # notools01 reports no use, idle01 is off
    assert decisions["notools01"].rule == "controller.stale_figures"
    assert peer.vm("web01")["extraConfig"][KEY] == "unlimited"
    assert peer.vm("web02")["extraConfig"][KEY] == str(20 * 2**30)  # not its memory size
    assert peer.vm("db01")["extraConfig"][KEY] == str(24576 * 2**20)  # the limit it replaced
    assert peer.vm("db01")["memoryAllocation"]["limit"] == 12288
    uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
    args = ("release", uri, "--from-marks", "--json", "--ca-file", str(peer.ca_file), "--password-stdin")
    r = invoke(*args, stdin=peer.password + "\n")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert {v["vm"]: v["action"] for v in report["vms"]} == dict.fromkeys(lowered, "released")
    for name, limit in (("web01", -1), ("web02", 20480)):
        vm = peer.vm(name)
        assert vm["memoryAllocation"]["limit"] == limit and KEY not in vm["extraConfig"], name
    db01 = peer.vm("db01")
    assert db01["memoryAllocation"]["limit"] == 24576 and KEY not in db01["extraConfig"]
    assert db01["memoryAllocation"]["reservation"] == 0  # the rest of the allocation untouched


@pytest.mark.peer
def test_a_vm_whose_extraconfig_may_not_be_read_is_named_and_not_released() -> None:
    """The account may not read db01's ``extraConfig`` (the simulator answers it in the
    ``missingSet`` with NoPermission, as vSphere does): its marks are unknown, not absent, and a
    release from the marks names it as not released (exit code 6, the error in ``--json``)."""
    import json

    from tests.support.vsphere.fleet import FLEET

    fleet = [dict(vm, unreadable=["config.extraConfig"]) if vm["name"] == "db01" else vm for vm in FLEET]
    with VcsimServer(fleet, https=True, hosts=2) as peer:
        with connect(peer) as hv:
            hv.set_mark("web01", KEY, "unlimited")
            ids = {v.name: v.id for v in hv.list_vms()}
            marks = hv.get_marks(KEY)
            assert marks == {ids["web01"]: "unlimited"} and list(marks.unreadable) == [ids["db01"]]
            error = marks.unreadable[ids["db01"]]
            assert (error.code, error.vm, error.backend) == ("permission_denied", "db01", "esxi")
            assert error.details["unreadable"] == ["config.extraConfig"]
            hv.set_config("web01", limit="12GiB")  # as the controller leaves it
        uri = f"esxi://{peer.username}@{peer.host}:{peer.port}"
        args = ("release", uri, "--from-marks", "--json", "--ca-file", str(peer.ca_file), "--password-stdin")
        r = invoke(*args, stdin=peer.password + "\n")
        assert r.returncode == 12, r.stderr  # web01 released, db01 not: a partial release
        report = json.loads(r.stdout)
        assert {v["vm"]: v["action"] for v in report["vms"]} == {"web01": "released", "db01": "error"}
        db01 = next(v for v in report["vms"] if v["vm"] == "db01")
        assert db01["error"]["code"] == "permission_denied" and "not released" in db01["reason"]
        assert peer.vm("web01")["memoryAllocation"]["limit"] == -1
