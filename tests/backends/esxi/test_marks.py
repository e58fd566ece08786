"""Marks on ESXi VMs: ``extraConfig`` keys, written and read through the vSphere API of the
simulator (which the harness makes replace and remove keys the way vSphere does)."""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon.errors import InvalidRequestError, UnsupportedOperationError
from tests.support.vsphere.fleet import connect
from tests.support.vsphere.harness import VcsimServer

KEY = "hvballoon.controller.before"


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


@pytest.mark.parametrize("flavor", ["kvm", "hyperv"])
def test_backends_without_marks_say_so(flavor: str) -> None:
    with hvballoon.connect(f"fake://seed?flavor={flavor}") as hv:
        assert not hv.capabilities.marks
        with pytest.raises(UnsupportedOperationError, match="keeps no marks"):
            hv.get_marks(KEY)
        with pytest.raises(UnsupportedOperationError, match="keeps no marks"):
            hv.set_mark("web01", KEY, "1")
