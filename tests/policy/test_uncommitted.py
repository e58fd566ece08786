"""A host that backs every running VM at its whole size has nothing to gain from a balloon: the
``hvballoon`` policy takes nothing back there (``hold_when_uncommitted``, on by default), so a
surge beyond the plausible one, faster than a round, finds the memory still in its VM — as under
``static`` (found by running the policies on scenarios drawn far outside the built-ins: one idle
VM on a roomy host, lowered by its plausible surge, killed by a spike of 90 % of its size rising
in half a second)."""

from __future__ import annotations

from typing import Any

import pytest

from hvballoon.fake.scenario import parse_scenario
from tests.support.policies import kills, run_simulated

GiB = 2**30


def _scenario(*, flavor: str, vms: int) -> Any:
    # one VM surges by 90 % of its size within half a second, after 40 idle minutes; the others
    # (when there are others) only make the host overcommitted
    fleet: list[dict[str, Any]] = [
        {
            "name": "surger",
            "memory": "24GiB",
            "used": "1GiB",
            "workload": {
                "kind": "spike",
                "params": {"at": 2400, "duration": 120, "size": "21GiB", "rise": 0.5},
            },
        }
    ]
    fleet += [{"name": f"idle{i}", "memory": "24GiB", "used": "2GiB"} for i in range(vms - 1)]
    host = {"physical": "56GiB", "overhead": "2GiB", "reserve": "2GiB", "swap": "0GiB"}
    return parse_scenario({"name": "roomy", "flavor": flavor, "host": host, "vms": fleet})


TAKE_BACK = {"hold_when_uncommitted": False}


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["kvm", "esxi"])
def test_a_host_that_holds_every_vm_whole_takes_nothing_back(flavor: str) -> None:
    scenario = _scenario(flavor=flavor, vms=2)  # 48 GiB of VMs on 52 GiB above the overheads
    world, decisions = run_simulated(scenario, "hvballoon", 45)
    assert not [d for d in decisions if d.applied and d.action == "lower"]
    assert {d.rule for d in decisions} == {"hvballoon.uncommitted"}
    assert "nothing is gained by taking memory back" in decisions[0].reason
    static, _ = run_simulated(scenario, "static", 45)
    assert kills(world) == kills(static) == 0


def test_an_overcommitted_host_is_still_ballooned() -> None:
    # three such VMs (72 GiB) do not fit: the policy takes back what they do not use, as before
    _world, decisions = run_simulated(_scenario(flavor="kvm", vms=3), "hvballoon", 3)
    assert any(d.applied and d.action == "lower" for d in decisions)
    assert "hvballoon.uncommitted" not in {d.rule for d in decisions}


@pytest.mark.slow
def test_without_the_hold_the_idle_vm_is_lowered_and_the_spike_costs_a_process() -> None:
    # what the hold is for: without it the policy takes back what the VM does not use, on any host
    world, decisions = run_simulated(_scenario(flavor="kvm", vms=2), "hvballoon", 45, TAKE_BACK)
    assert any(d.applied and d.action == "lower" for d in decisions)
    assert kills(world) == 1
