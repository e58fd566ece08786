"""The host's huge-page pool in the fake's kvm flavour, as on a real KVM host: reserved at boot
(``nr_hugepages``), part of physical memory and never of free memory (Linux's hugetlbpage.rst);
a domain backed by huge pages takes its pages from it when it starts (QEMU maps its RAM rounded
up to whole pages) and gives them back when it stops; a start the pool cannot supply fails
("unable to map backing store for guest RAM"). The host stats show it with the kvm backend's
keys (``hugepage_pool_bytes``, ``hugepage_pool_free_bytes``, ``hugepage_pools``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import ScenarioError
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import StartRefusedError, World
from tests.support.cli import invoke

GiB = 2**30
MiB = 2**20
POOL_KEYS = {"hugepage_pool_bytes", "hugepage_pool_free_bytes", "hugepage_pools"}


def _data(pool: dict[str, str] | None = None, **db: Any) -> dict[str, Any]:
    host: dict[str, Any] = {"name": "h", "physical": "64GiB", "swap": "8GiB"}
    if pool is not None:
        host["hugepage_pool"] = pool
    return {
        "name": "pool",
        "flavor": "kvm",
        "host": host,
        "vms": [
            {"name": "db01", "memory": "8GiB", "used": "4GiB", "hugepages": "1GiB", **db},
            {"name": "web01", "memory": "8GiB", "used": "2GiB"},
        ],
    }


def _world(pool: dict[str, str] | None = None, **db: Any) -> World:
    return World(parse_scenario(_data(pool, **db)), strict=True)


def _host(w: World) -> Any:
    with hvballoon.connect("fake://", world=w) as hv:
        (h,) = hv.get_host_stats()
    return h


def _pool(w: World) -> dict[str, Any]:
    return {k: v for k, v in _host(w).extra.items() if k in POOL_KEYS}


def test_the_default_pool_is_what_the_huge_page_vms_need_and_all_in_use() -> None:
    w = _world()
    w.advance(60)
    assert _pool(w) == {
        "hugepage_pool_bytes": 8 * GiB,
        "hugepage_pool_free_bytes": 0,
        "hugepage_pools": [{"page_bytes": GiB, "pages": 8, "free_pages": 0}],
    }
    assert "hugepage_pool_idle" in w.accounting()["host"] and w.accounting()["host"]["conserved"]


def test_pages_go_back_to_the_pool_when_the_vm_stops_not_to_free_memory() -> None:
    """Stopped, the domain's pages are free in the pool, and the host's free memory is what it
    was (less nothing but the domain's overhead, given back); started again, they are taken."""
    w = _world()
    w.advance(60)
    before = _host(w)
    db = w.guest("db01")
    w.power_off(db.id)
    w.advance(5)
    stopped = _host(w)
    assert stopped.extra["hugepage_pool_free_bytes"] == 8 * GiB
    assert stopped.extra["hugepage_pools"][0]["free_pages"] == 8
    assert stopped.free_bytes is not None and before.free_bytes is not None
    assert stopped.free_bytes - before.free_bytes <= 128 * MiB  # its overhead, not its 8 GiB
    assert w.accounting()["host"]["conserved"]
    w.power_on(db.id)
    w.advance(5)
    assert _host(w).extra["hugepage_pool_free_bytes"] == 0


def test_a_pool_larger_than_needed_is_not_free_memory() -> None:
    plain, larger = _world(), _world({"1GiB": "16GiB"})
    for w in (plain, larger):
        w.advance(60)
    assert _pool(larger)["hugepage_pool_free_bytes"] == 8 * GiB
    assert _host(plain).free_bytes - _host(larger).free_bytes == 8 * GiB
    assert larger.accounting()["host"]["conserved"]


def test_a_start_the_pool_cannot_supply_is_refused_and_changes_nothing() -> None:
    w = _world({"1GiB": "12GiB"}, power_state="stopped", memory="16GiB", used="4GiB")
    w.advance(10)
    before = (_pool(w), w.power, w.version)
    with pytest.raises(StartRefusedError, match="unable to map backing store for guest RAM") as refused:
        w.power_on(w.guest("db01").id)
    assert "needs 16 pages of 1 GiB" in str(refused.value) and "12 are free" in str(refused.value)
    assert (_pool(w), w.power) == before[:2]
    assert w.events[-1]["kind"] == "start_failed"


def test_a_size_that_is_not_whole_pages_takes_the_pages_it_touches() -> None:
    """QEMU rounds the mapping up to whole pages: 1.5 GiB on 1 GiB pages takes two."""
    w = _world(memory="1536MiB", used="512MiB")
    w.advance(10)
    assert _pool(w)["hugepage_pools"] == [{"page_bytes": GiB, "pages": 2, "free_pages": 0}]
    assert w.accounting()["host"]["hugepage_pool_idle"] == GiB // 2
    assert w.accounting()["host"]["conserved"]


@pytest.mark.parametrize(
    ("pool", "db", "match"),
    [
        ({"3MiB": "6MiB"}, {}, "huge page size"),
        ({"1GiB": "1536MiB"}, {}, "whole number of 1 GiB pages"),
        ({"1GiB": "128GiB"}, {}, "more than the host's memory"),
        ({"1GiB": "4GiB"}, {}, "needs 8 pages of 1 GiB"),
        ({"2MiB": "8GiB"}, {}, "needs 8 pages of 1 GiB"),
        (None, {"memory": "512MiB", "used": "256MiB"}, "must be equal to or larger than page size"),
    ],
)
def test_a_pool_or_a_vm_a_kvm_host_could_not_hold_is_refused(
    pool: dict[str, str] | None, db: dict[str, str], match: str
) -> None:
    with pytest.raises(ScenarioError, match=match):
        _world(pool, **db)


def test_a_default_pool_the_host_could_not_hold_is_refused_as_a_given_one_is() -> None:
    # a stopped 128 GiB VM on huge pages: the default pool (what it needs, running or not) is
    # twice the host's memory; given as host.hugepage_pool it is refused, so it is by default
    data = _data()
    data["vms"][0].update(memory="128GiB", power_state="stopped")
    with pytest.raises(ScenarioError, match=r"host\.hugepage_pool: the default huge-page pool, the 128 GiB"):
        World(parse_scenario(data))


def test_a_stopped_vm_the_pool_cannot_supply_is_taken_until_it_starts() -> None:
    w = _world({"1GiB": "4GiB"}, power_state="stopped")
    with pytest.raises(StartRefusedError):
        w.power_on(w.guest("db01").id)


def test_the_host_shows_the_kvm_backend_keys_only_on_kvm() -> None:
    """A KVM host without a pool says so (0, as libvirt's test driver, whose cells list huge
    pages with none in a pool); an ESXi or Hyper-V host has no such keys."""
    data = _data()
    del data["vms"][0]["hugepages"]
    assert _pool(World(parse_scenario(data))) == {
        "hugepage_pool_bytes": 0,
        "hugepage_pool_free_bytes": 0,
        "hugepage_pools": [],
    }
    for flavor in ("esxi", "hyperv"):
        assert not POOL_KEYS & set(_host(World(parse_scenario({**data, "flavor": flavor}))).extra)


def test_hvballoon_host_prints_the_pool(tmp_path: Path) -> None:
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(_data({"1GiB": "16GiB"})))
    result = invoke("host", f"fake://{path}")
    assert result.returncode == 0, result.stderr
    assert "a huge-page pool of 16 GiB, 8 GiB of it free" in result.stdout
