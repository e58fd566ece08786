"""The wave scenario generator: every scenario it draws is of the class it promises."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hvballoon.fake.catalog import load_scenario
from hvballoon.fake.record import record
from hvballoon.fake.scenario import Scenario, parse_scenario
from hvballoon.fake.waves import (
    CAPACITIES,
    FLAVORS,
    WAVE_CLASS,
    WaveClass,
    WaveFacts,
    parse_wave_class,
    wave_facts,
    wave_scenario,
)
from hvballoon.fake.workloads import components
from hvballoon.fake.world import World
from hvballoon.units import GiB

SEEDS = range(24)


def spikes(scenario):  # type: ignore[no-untyped-def]
    out = {}
    for i, v in enumerate(scenario.vms):
        out[v.name] = [
            c.params for c in components(i, v.workload.kind, v.workload.params) if c.kind == "spike"
        ]
    return out


def test_the_same_seed_draws_the_same_scenario_and_others_differ() -> None:
    assert wave_scenario(3) == wave_scenario(3)
    assert wave_scenario(3) != wave_scenario(4)
    assert wave_scenario(3, capacity="over") != wave_scenario(3, capacity="roomy")
    # a scenario survives its YAML/JSON form
    again = parse_scenario(wave_scenario(3).model_dump(mode="json"))
    assert again == wave_scenario(3)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_wave_scenario_is_drawn_for_each_flavor(flavor: str) -> None:
    s = wave_scenario(5, flavor=flavor, hours=3)  # type: ignore[arg-type]
    assert s.flavor == flavor
    assert s.name == ("waves-5" if flavor == "kvm" else f"waves-5-{flavor}")
    facts = wave_facts(s)
    assert facts.waves and facts.capacity in CAPACITIES
    # ESXi has no free page reporting: a guest's touched pages stay backed
    assert all(v.free_page_reporting is (flavor != "esxi") for v in s.vms)
    # the simulator runs it: a wave's VMs surge on that hypervisor too
    world = World(s)
    world.advance(60)
    assert world.now == pytest.approx(60)


@pytest.mark.parametrize("flavor", ["xen", "", "KVM", None])
def test_an_unknown_flavor_is_refused(flavor: object) -> None:
    with pytest.raises(ValueError, match="unknown flavor"):
        wave_scenario(5, flavor=flavor)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def drawn() -> dict[int, tuple[Scenario, WaveFacts]]:
    """The scenario each seed draws and its facts, drawn once for the tests that only read them."""
    scenarios = {seed: wave_scenario(seed) for seed in SEEDS}
    return {seed: (s, wave_facts(s)) for seed, s in scenarios.items()}


@pytest.mark.parametrize("seed", SEEDS)
def test_every_scenario_is_of_the_class(seed: int, drawn: dict[int, tuple[Scenario, WaveFacts]]) -> None:
    s, facts = drawn[seed]
    cls = WAVE_CLASS
    assert cls.overcommit[0] <= s.promised_bytes / s.host.physical <= cls.overcommit[1]
    assert facts.waves, "at least one wave"
    surges = spikes(s)
    for start, names in facts.waves:
        assert len(names) >= 2, "several VMs at once"
        for name in names:
            (p,) = [p for p in surges[name] if start <= p.at <= start + cls.spread_seconds]
            vm = next(v for v in s.vms if v.name == name)
            assert p.size >= vm.memory / 3 - 2**20, "a jump of a third of its size or more"
            assert cls.rise_seconds[0] <= p.rise <= cls.rise_seconds[1], "within seconds"
            assert vm.used + p.size <= 0.95 * vm.memory + 2**20, "within what the VM could hold"
    # VMs that had shown no variability before they surge, and JVMs or databases beside them
    kinds = {v.workload.kind for v in s.vms}
    assert "spike" in kinds or "mixed" in kinds
    steady_surgers = [v for v in s.vms if v.workload.kind == "spike"]
    beside = [v for v in s.vms if v.workload.kind in ("jvm", "database")]
    assert steady_surgers or beside


def test_a_class_of_faster_larger_surges_draws_them() -> None:
    cls = parse_wave_class("rise_seconds=1:2, surge_fraction=0.5:0.7, spread_seconds=5")
    assert (cls.rise_seconds, cls.surge_fraction, cls.spread_seconds) == ((1.0, 2.0), (0.5, 0.7), 5.0)
    assert cls.overcommit == WAVE_CLASS.overcommit  # what is not named stays the generator's
    s = wave_scenario(3, cls=cls)
    surges = spikes(s)
    for start, names in wave_facts(s).waves:
        for name in names:
            (p,) = [p for p in surges[name] if start <= p.at <= start + 5]
            vm = next(v for v in s.vms if v.name == name)
            assert 1.0 <= p.rise <= 2.0
            # half its size or more, unless the VM could not hold it (95 % of its size at most)
            assert p.size >= vm.memory / 2 - 2**20 or vm.used + p.size >= 0.95 * vm.memory - 2**20


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no field given"),
        (" , ", "no field given"),
        ("rise_seconds", "is not field=value"),
        ("=1:2", "is not field=value"),
        ("rise_seconds=", "is not field=value"),
        ("rise=1:4", "unknown field 'rise'"),
        ("rise_seconds=4", "rise_seconds is low:high"),
        ("rise_seconds=1:2:3", "rise_seconds is low:high"),
        ("spread_seconds=1:2", "spread_seconds is one number"),
        ("rise_seconds=1:x", "is not numbers"),
        ("waves=1.5:2", "is not whole numbers"),
        ("rise_seconds=inf:9", "finite and not negative"),
        ("spread_seconds=-5", "finite and not negative"),
        ("rise_seconds=4:1", "the low bound 4 is above the high bound 1"),
        ("surge_fraction=0.5:1.5", "is a share, at most 1"),
        ("steady_share=2", "is a share, at most 1"),
        ("rise_seconds=0:2", "rise_seconds must be at least 0.1"),
        ("waves=0:2", "must be above 0"),
        # bounds the generator cannot draw from: rises rounded to 0 s, surges of 0 s, fleets of
        # hundreds of VMs (or none), surges too small to count
        ("rise_seconds=0.04:0.04", "rise_seconds must be at least 0.1 (a rise is drawn to a tenth"),
        ("surge_seconds=0:0", "surge_seconds must be at least 1 (a surge lasts whole seconds)"),
        ("surge_seconds=0.4:2", "surge_seconds must be at least 1"),
        ("overcommit=100:100", "overcommit must be from 1 to 4"),
        ("overcommit=0.01:0.01", "overcommit must be from 1 to 4"),
        ("overcommit=1.5:4.5", "overcommit must be from 1 to 4"),
        ("surge_fraction=0.0001:0.0001", "the high bound must be at least 1/3"),
        ("rise_seconds=1:2,rise_seconds=1:3", "given twice"),
    ],
)
def test_a_malformed_wave_class_is_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_wave_class(text)


@pytest.mark.parametrize(
    ("bounds", "says"),
    [
        ({"rise_seconds": (0.04, 0.04)}, "rise_seconds must be at least 0.1"),
        ({"surge_seconds": (0.0, 0.0)}, "surge_seconds must be at least 1"),
        ({"overcommit": (100.0, 100.0)}, "overcommit must be from 1 to 4"),
        ({"waves": (1.5, 2)}, "waves: (1.5, 2) is not whole numbers"),
        ({"rise_seconds": 3.0}, "rise_seconds is low:high"),
        ({"spread_seconds": (1.0, 2.0)}, "spread_seconds is one number"),
        ({"wave_share": (0.5, 0.2)}, "the low bound 0.5 is above the high bound 0.2"),
    ],
)
def test_a_wave_class_built_directly_is_held_to_the_same_bounds(bounds: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        WaveClass(**bounds)


def test_the_least_bounds_accepted_are_drawn() -> None:
    cls = parse_wave_class("rise_seconds=0.1:0.1, surge_seconds=1:1, overcommit=1:1")
    s = wave_scenario(3, cls=cls)
    assert spikes(s) and all((p.rise, p.duration) == (0.1, 1.0) for ps in spikes(s).values() for p in ps)


@pytest.mark.parametrize(
    ("text", "kwargs", "says"),
    [
        # every wave starts before the last of the hours asked
        ("first_wave_seconds=1e9:1e9", {}, "first_wave_seconds: the first wave comes at 1e+09 s or later"),
        ("first_wave_seconds=9000:9000", {"hours": 3}, "within hours=3 every wave starts by 7200 s"),
        # a host exactly as large as its fleet is never over memory plus swap
        ("overcommit=1:1", {"capacity": "over"}, "no over wave scenario of the class 'overcommit=1:1' found"),
    ],
)
def test_a_class_no_scenario_can_be_drawn_from_is_a_value_error(
    text: str, kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        wave_scenario(3, cls=parse_wave_class(text), **kwargs)


def test_the_class_mixes_capacities_faults_and_steady_surgers(
    drawn: dict[int, tuple[Scenario, WaveFacts]],
) -> None:
    scenarios = [s for s, _ in drawn.values()]
    facts = [f for _, f in drawn.values()]
    assert len(scenarios) == len(SEEDS)
    assert {f.capacity for f in facts} == set(CAPACITIES)
    assert 0 < sum(1 for s in scenarios if s.faults) < len(scenarios)
    assert sum(1 for s in scenarios for v in s.vms if v.workload.kind == "spike") > len(scenarios)
    assert sum(1 for s in scenarios for v in s.vms if v.workload.kind in ("jvm", "database")) > len(scenarios)
    assert len({len(f.waves) for f in facts}) > 1


@pytest.mark.parametrize("seed", range(8))
def test_faults_come_while_a_wave_rises(seed: int) -> None:
    s = wave_scenario(seed, faults=True)
    starts = [at for at, _ in wave_facts(s).waves]
    assert {f.op for f in s.faults} == {"set_target", "get_stats"}
    assert {f.kind for f in s.faults} == {"connection_lost", "slow"}
    for f in s.faults:
        assert f.at is not None and f.until is not None
        assert any(f.at <= at < f.until for at in starts)
    assert not wave_scenario(seed, faults=False).faults


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_the_capacity_is_what_the_host_shows_with_no_ballooning(capacity: str) -> None:
    s = wave_scenario(11, capacity=capacity, hours=2)  # type: ignore[arg-type]
    facts = wave_facts(s, hours=2)
    assert facts.capacity == capacity
    w = World(s)
    rec = record(w, every=10)
    w.advance(2 * 3600)
    data = rec.to_data()
    demand = np.array([v["demand_bytes"] for v in data["vms"].values()]).sum(axis=0)
    swapped = max(data["host"]["reclaimed_bytes"])
    overheads = s.host.overhead + len(s.vms) * w.physics.vm_overhead
    if capacity == "roomy":
        assert swapped == 0, "the host holds the whole peak, page cache included"
    elif capacity == "tight":
        assert swapped > 0, "the page cache does not fit: the host swaps"
        assert demand.max() + overheads <= s.host.physical + w.host.swap_bytes
    else:
        # beyond memory plus swap: the host's OOM killer takes a VM as soon as its swap is full
        assert any(e["kind"] == "host_oom" for e in w.events)
        assert facts.peak_demand_bytes + overheads > s.host.physical + w.host.swap_bytes


def test_facts_of_a_hand_written_scenario() -> None:
    facts = wave_facts(load_scenario("seed-spike"))
    assert facts.capacity == "tight"
    assert [sorted(names) for _, names in facts.waves] == [["app01", "web01", "web02", "web03"]]
    assert facts.peak_demand_bytes > 60 * GiB and facts.peak_footprint_bytes > facts.host_room_bytes


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"capacity": "huge"}, "unknown capacity 'huge'; accepted: roomy, tight, over"),
        ({"hours": 1}, "hours"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        wave_scenario(1, **kwargs)  # type: ignore[arg-type]


def test_a_generated_scenario_is_loaded_by_its_name_everywhere_a_scenario_is_named(tmp_path: Path) -> None:
    import hvballoon

    assert load_scenario("waves-7") == wave_scenario(7)
    assert load_scenario("waves-7-esxi") == wave_scenario(7, flavor="esxi")
    assert load_scenario("waves-7-kvm") == wave_scenario(7)
    with hvballoon.connect("fake://waves-3-hyperv") as hv:
        assert {vm.name for vm in hv.list_vms()} == {v.name for v in wave_scenario(3).vms}
    # a file of that name wins
    own = tmp_path / "waves-7"
    own.write_text("name: mine\nhost: {physical: 8GiB}\nvms: [{name: a, memory: 1GiB}]\n", "utf-8")
    assert load_scenario(str(own)).name == "mine"


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("waves-7-xen", "unknown flavor 'xen'"),
        ("waves-7-ESXI", "not a generated wave scenario"),
        ("waves-", "not a generated wave scenario"),
        ("waves-x", "not a generated wave scenario"),
        ("waves--1", "not a generated wave scenario"),
        ("waves-1234567890", "not a generated wave scenario"),
        ("waves-7-esxi-2", "not a generated wave scenario"),
    ],
)
def test_a_malformed_generated_name_is_a_scenario_error(ref: str, says: str) -> None:
    from hvballoon.errors import ScenarioError

    with pytest.raises(ScenarioError, match=says):
        load_scenario(ref)
