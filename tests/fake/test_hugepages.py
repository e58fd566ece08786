"""A KVM domain backed by huge pages, in the fake as on libvirt: its memory comes from the
host's huge-page pool (reserved when mapped, never swapped), its balloon takes memory from the
guest and gives the host none (QEMU discards a huge page only once the balloon holds all of it,
and then into the pool). The fake's configuration says so as the kvm backend reads it
(``extra["hugepages"]``, ``extra["hugepage_bytes"]``), and the controller holds such a VM as it
does on libvirt's test driver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import ScenarioError
from hvballoon.fake.randomized import random_scenario
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from tests.support.cli import stats_frees_nothing

GiB = 2**30
MiB = 2**20

_VMS: list[dict[str, Any]] = [
    {"name": "nfv01", "memory": "8GiB", "used": "2GiB", "hugepages": "2MiB"},
    {"name": "web01", "memory": "8GiB", "used": "2GiB"},
]
_HOST = {"physical": "32GiB", "overhead": "1GiB", "swap": "8GiB"}


def _data(vms: list[dict[str, Any]], physical: str = "32GiB") -> dict[str, Any]:
    return {"name": "huge", "flavor": "kvm", "host": {**_HOST, "physical": physical}, "vms": vms}


def _world(physical: str = "32GiB") -> World:
    return World(parse_scenario(_data([dict(v) for v in _VMS], physical)), strict=True)


def test_the_fake_says_which_domains_huge_pages_back() -> None:
    with hvballoon.connect("fake://", world=_world()) as hv:
        configs = {c.vm.name: c for c in hv.get_configs()}
    assert (configs["nfv01"].extra["hugepages"], configs["nfv01"].extra["hugepage_bytes"]) == (True, 2 * MiB)
    assert "hugepages" not in configs["web01"].extra and "hugepage_bytes" not in configs["web01"].extra


def test_hvballoon_stats_marks_a_huge_page_domain(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(json.dumps(_data(_VMS)))
    rows, footnotes, notes = stats_frees_nothing(f"fake://{path}")
    assert "frees nothing*" in rows["nfv01"] and "frees nothing" not in rows["web01"], rows
    assert len(footnotes) == 1 and "huge pages" in footnotes[0]
    assert notes["web01"] is None and notes["nfv01"] is not None and "huge pages" in notes["nfv01"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("3MiB", "huge page size"),
        ("4KiB", "huge page size"),  # the base page: not a huge one
        ("32GiB", "huge page size"),
        (0, "huge page size"),
        ("2MB", "huge page size"),  # 2,000,000 bytes
        ("huge", "hugepages"),
        (True, "hugepages"),
        (-2097152, "hugepages"),
    ],
)
def test_a_scenario_with_a_malformed_huge_page_size_is_refused(value: object, says: str) -> None:
    """Not a huge page size (a power of two from 64 KiB to 16 GiB), or not a size at all: a
    typed error naming the field, and no world; the same VM with 2 MiB pages is taken."""
    vm = {"name": "nfv01", "memory": "8GiB", "hugepages": "2MiB"}
    assert parse_scenario(_data([vm])).vms[0].hugepages == 2 * MiB
    with pytest.raises(ScenarioError, match="hugepages") as refused:
        parse_scenario(_data([{**vm, "hugepages": value}]))
    assert says in refused.value.message


@pytest.mark.parametrize("value", ["64KiB", "2MiB", "1GiB", "16GiB", 2 * MiB])
def test_the_huge_page_sizes_of_every_architecture_are_accepted(value: object) -> None:
    (vm,) = parse_scenario(_data([{"name": "nfv01", "memory": "16GiB", "hugepages": value}])).vms
    assert vm.hugepages is not None and vm.hugepages >= 64 * 1024


@pytest.mark.parametrize("seeds", [12, pytest.param(30, marks=pytest.mark.slow)])
def test_random_worlds_draw_huge_pages_only_when_asked_and_are_otherwise_the_same(seeds: int) -> None:
    """The option draws from a stream of its own: the seed's world is unchanged besides the
    huge pages, and without the option no VM has any. The first 12 seeds (the inner loop) back
    four VMs on three KVM hosts with huge pages, and draw ESXi and Hyper-V hosts too."""
    drawn = 0
    for seed in range(seeds):
        plain, huge = random_scenario(seed), random_scenario(seed, hugepages=True)
        assert all(v.hugepages is None for v in plain.vms)
        assert [v.model_copy(update={"hugepages": None}) for v in huge.vms] == list(plain.vms)
        assert huge.model_copy(update={"vms": plain.vms}) == plain  # its faults, step, host too
        backed = sum(v.hugepages is not None for v in huge.vms)
        assert huge.flavor == "kvm" or backed == 0  # a KVM setting
        drawn += backed
    assert drawn > 0
