"""``set_targets(figures=...)``: the caller's own recent read instead of reading again, only
while the guard rails would trust it; malformed figures refused before anything is read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import InvalidRequestError, StatsUnavailableError, TargetBelowFloorError
from hvballoon.models import MemoryConfig, MemoryStats
from hvballoon.retry import RetryPolicy
from hvballoon.session import GuardRails
from hvballoon.units import GiB
from tests.support.calls import counted, spy_reads
from tests.support.policies import targets

INSTANT = RetryPolicy(sleep=lambda _s: None)

Pair = tuple[MemoryStats, MemoryConfig]


@pytest.fixture
def hv() -> Iterator[hvballoon.Hypervisor]:
    with hvballoon.connect("fake://seed", retry=INSTANT) as session:
        yield session


def swept(hv: hvballoon.Hypervisor) -> dict[str, Pair]:
    """A caller's own read: every VM's stats and configuration, by name."""
    configs = {c.vm.id: c for c in hv.get_configs()}
    return {s.vm.name: (s, configs[s.vm.id]) for s in hv.get_stats()}


def test_fresh_figures_spare_the_read(hv: hvballoon.Hypervisor) -> None:
    read = swept(hv)
    calls = counted(hv)
    res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"}, figures=list(read.values()))
    assert res.ok and res.made == {"web01", "web02"}
    assert calls == {"apply_targets": 1}  # nothing read: the caller's figures were used
    # the read's target (here: none the session set, as libvirt keeps none) or else its balloon
    assert res["web01"].before["target_bytes"] == read["web01"][0].current_bytes
    after = targets(hv)
    assert (after["web01"], after["web02"]) == (7 * GiB, 8 * GiB)


def test_a_vm_without_figures_is_read_alone(hv: hvballoon.Hypervisor) -> None:
    read = swept(hv)
    reads = spy_reads(hv)
    res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"}, figures=[read["web01"], read["app01"]])
    assert res.ok and res.made == {"web01", "web02"}
    assert reads == [["web02"]]  # app01's figures are not asked about: ignored


def test_figures_older_than_the_guard_rails_allow_are_read_fresh(hv: hvballoon.Hypervisor) -> None:
    read = swept(hv)
    reads = spy_reads(hv)
    rails = GuardRails(max_stats_age_seconds=30)
    web01 = read["web01"][0]
    hv.backend.world.advance(29 - (web01.guest_report_age_seconds or 0))
    hv.set_targets({"web01": "7GiB"}, figures=list(read.values()), guard_rails=rails)
    assert reads == []  # 29 s old: still trusted
    hv.backend.world.advance(2)
    res = hv.set_targets({"web01": "6GiB"}, figures=list(read.values()), guard_rails=rails)
    assert reads == [["web01"]] and res.ok
    assert res["web01"].before["target_bytes"] == 7 * GiB  # planned on what it reads now


def test_the_session_default_max_stats_age_applies(hv: hvballoon.Hypervisor) -> None:
    read = swept(hv)
    reads = spy_reads(hv)
    hv.backend.world.advance(hv.guard_rails.max_stats_age_seconds + 1)
    assert hv.set_targets({"web01": "7GiB"}, figures=list(read.values())).ok
    assert reads == [["web01"]]


@pytest.mark.parametrize(
    "untrusted",
    [
        {"stale": True},  # the backend marked them stale
        {"guest_used_bytes": None, "demand_bytes": None},  # the guest's use unknown
        {"collected_at": "an hour ahead"},  # stamped in the future: a clock that went back
    ],
    ids=["stale", "no-use", "clock-ahead"],
)
def test_figures_the_guard_rails_would_not_trust_are_read_fresh(
    hv: hvballoon.Hypervisor, untrusted: dict[str, Any]
) -> None:
    read = swept(hv)
    reads = spy_reads(hv)
    stats, config = read["web01"]
    if "collected_at" in untrusted:
        untrusted = {"collected_at": stats.collected_at + timedelta(hours=1)}
    figures = [(stats.model_copy(update=untrusted), config), read["web02"]]
    res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"}, figures=figures)
    assert res.ok and reads == [["web01"]]  # web02's figures were used


def test_a_name_the_figures_no_longer_bear_is_read_fresh(hv: hvballoon.Hypervisor) -> None:
    read = swept(hv)
    reads = spy_reads(hv)
    stats, config = read["web01"]
    renamed = stats.vm.model_copy(update={"name": "old-web01"})
    other = (stats.model_copy(update={"vm": renamed}), config.model_copy(update={"vm": renamed}))
    assert hv.set_targets({"web01": "7GiB"}, figures=[other]).ok
    assert reads == [["web01"]]
    reads.clear()
    assert hv.set_targets({stats.vm.id: "6GiB"}, figures=[other]).ok  # named by id: no doubt
    assert reads == []


def test_the_guard_rails_judge_the_supplied_figures(hv: hvballoon.Hypervisor) -> None:
    read = swept(hv)
    stats, config = read["web01"]
    assert stats.used_bytes is not None and stats.used_bytes + 2 * GiB < 12 * GiB
    assert hv.set_targets({"web01": stats.used_bytes + 2 * GiB}, dry_run=True).ok  # fine, read fresh
    busy = (stats.model_copy(update={"guest_used_bytes": 12 * GiB}), config)
    calls = counted(hv)
    res = hv.set_targets({"web01": stats.used_bytes + 2 * GiB}, figures=[busy])
    refusal = res["web01"]
    assert isinstance(refusal, TargetBelowFloorError) and refusal.details["used_bytes"] == 12 * GiB
    assert res.made == set() and calls == {}  # judged on the figures given, nothing read or sent
    forced = hv.set_targets({"web01": "13GiB"}, figures=[busy], force=True)
    assert forced.ok and forced.made == {"web01"}


def test_a_guest_that_never_reported_is_read_fresh_and_still_refused(tmp_path: Any) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nflavor: kvm\nhost: {name: h, physical: 32GiB}\nvms:\n"
        "  - {name: a, memory: 16GiB, used: 3GiB, cache: 1GiB, stats_period: 0}\n"
    )
    with hvballoon.connect(f"fake://{path}", retry=INSTANT) as hv:
        read = swept(hv)
        assert read["a"][0].stale
        reads = spy_reads(hv)
        res = hv.set_targets({"a": "12GiB"}, figures=list(read.values()))
        assert reads == [["a"]]
        assert isinstance(res["a"], StatsUnavailableError) and res.made == set()


def test_figures_of_a_refused_ref_change_nothing(hv: hvballoon.Hypervisor) -> None:
    read, before = swept(hv), targets(hv)
    res = hv.set_targets({"web01": "7GiB", "nosuch": "8GiB"}, figures=list(read.values()))
    assert not res.applied and res["web01"].dry_run
    assert targets(hv) == before


@pytest.mark.parametrize(
    ("figures", "says"),
    [
        ("web01", "list of (MemoryStats, MemoryConfig) pairs"),
        (b"web01", "list of (MemoryStats, MemoryConfig) pairs"),
        ({"web01": None}, "list of (MemoryStats, MemoryConfig) pairs"),
        (42, "got int"),
        (["web01"], "pair, got str"),
        ([("a", "b")], "pair, got (str, str)"),
        (["stats"], "pair, got MemoryStats"),
        (["config-first"], "pair, got (MemoryConfig, MemoryStats)"),
        (["stats-stats"], "pair, got (MemoryStats, MemoryStats)"),
        (["triple"], "pair, got (MemoryStats, MemoryConfig, MemoryConfig)"),
        (["mixed"], "with the configuration of 'web02'"),
        (["twice"], "twice"),
        (["elsewhere"], "from the kvm backend, not this fake session"),
    ],
)
def test_malformed_figures_are_refused_before_anything(
    hv: hvballoon.Hypervisor, figures: Any, says: str
) -> None:
    read = swept(hv)
    stats, config = read["web01"]
    kvm_vm = stats.vm.model_copy(update={"backend": "kvm"})
    made = {
        "stats": stats,
        "config-first": (config, stats),
        "stats-stats": (stats, stats),
        "triple": (stats, config, config),
        "mixed": (stats, read["web02"][1]),
        "twice": [read["web01"], read["web01"]],
        "elsewhere": (stats.model_copy(update={"vm": kvm_vm}), config.model_copy(update={"vm": kvm_vm})),
    }
    if isinstance(figures, list) and figures and figures[0] in made:
        value = made[figures[0]]
        figures = value if figures[0] == "twice" else [value]
    before = targets(hv)
    calls = counted(hv)
    with pytest.raises(InvalidRequestError, match=r"figures") as info:
        hv.set_targets({"web01": "7GiB"}, figures=figures)
    assert says in info.value.message
    assert calls == {} and targets(hv) == before
