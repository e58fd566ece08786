"""A KVM domain with devices assigned through VFIO pins its whole memory when it starts (QEMU
maps guest RAM for the devices' DMA; pinned pages are never swapped): in the fake as on a real
host, such a domain starts only where the host's memory, less its own, its huge-page pool and
the memory other VFIO domains hold pinned, can hold it ("VFIO_MAP_DMA failed: Cannot allocate
memory"); a scenario running one that cannot be held at the start is refused, and the random
generator draws none."""

from __future__ import annotations

from typing import Any

import pytest

from hvballoon.errors import ScenarioError
from hvballoon.fake.randomized import random_scenario
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import StartRefusedError, World

GiB = 2**30


def _data(gpu: dict[str, Any], pool: dict[str, str] | None = None) -> dict[str, Any]:
    host: dict[str, Any] = {"name": "h", "physical": "64GiB", "overhead": "4GiB", "swap": "64GiB"}
    if pool is not None:
        host["hugepage_pool"] = pool
    return {
        "name": "vfio",
        "flavor": "kvm",
        "host": host,
        "vms": [
            {"name": "gpu01", "memory": "32GiB", "used": "8GiB", "vfio_devices": 1},
            {"name": "gpu02", "used": "8GiB", "vfio_devices": 2, **gpu},
            {"name": "web01", "memory": "48GiB", "used": "4GiB"},
        ],
    }


def test_a_vfio_domain_running_at_the_start_beyond_what_the_host_can_pin_is_refused() -> None:
    # 64 GiB less 4 GiB of its own, less gpu01's 32 GiB: 28 GiB left to pin
    with pytest.raises(ScenarioError, match=r"vms\.1\.vfio_devices") as refused:
        parse_scenario(_data({"memory": "30GiB"}))
    assert "VFIO_MAP_DMA failed: Cannot allocate memory" in str(refused.value)
    assert "28 GiB" in str(refused.value)
    # the huge-page pool is pinned too
    with pytest.raises(ScenarioError, match=r"vms\.1\.vfio_devices"):
        parse_scenario(_data({"memory": "24GiB"}, pool={"2MiB": "8GiB"}))
    # what fits runs
    w = World(parse_scenario(_data({"memory": "20GiB"})), strict=True)
    w.advance(30)
    assert w.guest("gpu02").running and w.accounting()["host"]["conserved"]


def test_a_vfio_domain_the_host_cannot_pin_does_not_start_and_nothing_changes() -> None:
    w = World(parse_scenario(_data({"memory": "30GiB", "power_state": "stopped"})), strict=True)
    w.advance(10)
    before = (list(w.power), w.host_free_bytes)
    with pytest.raises(StartRefusedError, match="VFIO_MAP_DMA failed") as refused:
        w.power_on(w.guest("gpu02").id)
    assert "its 30 GiB must be pinned" in str(refused.value) and "at most 28 GiB more" in str(refused.value)
    assert (list(w.power), w.host_free_bytes) == before
    assert w.events[-1]["kind"] == "start_failed"
    # once gpu01 stops, its pinned memory is the host's again: gpu02 starts
    w.power_off(w.guest("gpu01").id)
    w.power_on(w.guest("gpu02").id)
    w.advance(10)
    assert w.guest("gpu02").running and w.accounting()["host"]["conserved"]


def test_the_random_generator_draws_no_vfio_domain_the_host_cannot_pin() -> None:
    """Seed 31 drew a 75 GiB domain with a device passed through on a 35 GiB host (its world
    started with 40 GiB less than nothing free): it now runs without the device."""
    s = random_scenario(31)
    (web00,) = s.vms
    assert web00.memory > s.host.physical and web00.vfio_devices == 0
    assert World(s).accounting()["host"]["free"] >= 0
