"""A Hyper-V VM named by its id (a GUID) in another spelling — upper case, braced, as WMI and the
VM's files write it — is the same VM; a name that only looks like an id is not changed."""

from __future__ import annotations

import pytest

import hvballoon
from hvballoon.errors import VMNotFoundError
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World

VM_ID = "aaaaaaaa-1111-2222-3333-444444444444"


@pytest.fixture
def hv() -> hvballoon.Hypervisor:
    scenario = parse_scenario(
        {
            "name": "ids",
            "flavor": "hyperv",
            "host": {"name": "hv01", "physical": "64GiB"},
            "vms": [
                {"name": "web01", "id": VM_ID, "memory": "8GiB", "used": "2GiB"},
                {"name": "web02", "memory": "8GiB", "used": "2GiB"},
            ],
        }
    )
    return hvballoon.connect("fake://?flavor=hyperv", world=World(scenario, flavor="hyperv"))


@pytest.mark.parametrize("ref", [VM_ID.upper(), "{" + VM_ID + "}", "{" + VM_ID.upper() + "}"])
def test_an_id_in_another_spelling_names_the_vm(hv: hvballoon.Hypervisor, ref: str) -> None:
    with hv:
        assert hv.resolve(ref).name == "web01"
        assert [s.vm.name for s in hv.get_stats([ref])] == ["web01"]
        assert hv.set_target(ref, "10GiB").vm.id == VM_ID


def test_other_kinds_and_names_are_matched_as_written(hv: hvballoon.Hypervisor) -> None:
    with hv:
        with pytest.raises(VMNotFoundError):
            hv.resolve("WEB01")  # names are not ids: compared exactly
    with hvballoon.connect("fake://seed?flavor=kvm") as kvm:
        vm = kvm.list_vms()[0]
        assert kvm.resolve(vm.id).id == vm.id
