"""Hyper-V starts VMs one after another, each only with its startup memory free (event 19544),
and pages no VM's memory out to make room: a fake Hyper-V world whose VMs run at the start is one
the host could be in only if, started in turn, each found its startup memory free beside what
the VMs before it hold. A world it could not be in is refused (naming the VM), and the random
generator leaves stopped what Hyper-V would not have started."""

from __future__ import annotations

from typing import Any

import pytest

from hvballoon.errors import ScenarioError
from hvballoon.fake.randomized import random_scenario
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World

GiB = 2**30


def _scenario(second: dict[str, Any]) -> Any:
    return parse_scenario(
        {
            "name": "turns",
            "flavor": "hyperv",
            "host": {"physical": "64GiB", "overhead": "2GiB", "reserve": "6GiB"},
            "vms": [
                {"name": "sql01", "memory": "32GiB", "used": "20GiB", "dynamic": False},
                {"name": "app01", "used": "4GiB", **second},
            ],
        }
    )


def test_a_static_vm_the_host_could_not_have_started_beside_the_first_is_refused() -> None:
    # 64 GiB less 2 of its own and a 6 GiB reserve: 56 GiB for VMs; sql01 holds 32 of them
    with pytest.raises(ScenarioError, match=r"vms\.1\.power_state") as refused:
        World(_scenario({"memory": "28GiB", "dynamic": False}))
    assert "could not be started because it requires 28672 MB" in str(refused.value)
    assert "event 19544" in str(refused.value)
    # alone, each fits; stopped, the second is no trouble; smaller, it starts
    World(_scenario({"memory": "28GiB", "dynamic": False, "power_state": "stopped"}))
    w = World(_scenario({"memory": "20GiB", "dynamic": False}), strict=True)
    w.advance(30)
    assert w.accounting()["host"]["swapped"] == 0 and w.accounting()["host"]["conserved"]


def test_a_dynamic_memory_vm_starts_with_its_startup_and_then_holds_what_its_demand_asks() -> None:
    """Its startup memory must be free when it starts; after that Dynamic Memory gives it its
    demand plus buffer out of what is free, so a maximum beyond the host is no bar."""
    dm = {"memory": "48GiB", "dynamic": True, "startup": "8GiB", "minimum": "2GiB", "maximum": "48GiB"}
    w = World(_scenario(dm), strict=True)
    w.advance(30)
    assert w.guest("app01").running and w.accounting()["host"]["swapped"] == 0
    with pytest.raises(ScenarioError, match=r"vms\.1\.power_state"):
        World(_scenario({**dm, "startup": "30GiB"}))


@pytest.mark.slow  # builds every Hyper-V world among the first 120 seeds
def test_no_random_hyperv_world_starts_with_the_host_paging_vm_memory_out() -> None:
    worlds = [s for s in (random_scenario(seed) for seed in range(120)) if s.flavor == "hyperv"]
    assert len(worlds) > 20
    for s in worlds:
        assert World(s).accounting()["host"]["swapped"] == 0, s.name
    # seed 26 drew a 739 GiB static VM beside Dynamic Memory VMs of 583 and 342 GiB startup on a
    # host of 899 GiB: Hyper-V would not have started it, so it is drawn stopped
    (ci02,) = [v for v in random_scenario(26).vms if v.name == "ci02"]
    assert ci02.power_state == "stopped"


def test_generated_hyperv_wave_fleets_are_ones_hyperv_could_have_started() -> None:
    """The wave generator draws again a Hyper-V fleet whose VMs could not all have been started
    in turn (seeds 6 and 7 drew such fleets)."""
    from hvballoon.fake.waves import wave_scenario

    for seed in (6, 7):
        World(wave_scenario(seed, flavor="hyperv"))  # a refusal is a ScenarioError
