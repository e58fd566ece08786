"""Property tests of the simulator's physics (hypothesis), run with ``strict=True`` so the
world checks its accounting identities at every simulated step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvballoon.fake.randomized import started_in_turn
from hvballoon.fake.record import record
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.store import world_to_bytes
from hvballoon.fake.world import World
from hvballoon.models import ConfigUpdate
from hvballoon.units import GiB, MiB

KINDS = [
    {"kind": "constant"},
    {"kind": "diurnal", "params": {"amplitude": "1GiB", "period": "2h"}},
    {"kind": "spike", "params": {"at": "5m", "duration": "10m", "size": "3GiB"}},
    {"kind": "random_walk", "params": {"step": "256MiB"}},
    {"kind": "jvm", "params": {"heap": "2GiB", "initial_heap": "1GiB", "warmup": "10m"}},
    {"kind": "database", "params": {"buffer_pool": "2GiB", "filled": "1GiB", "query_memory": "256MiB"}},
]


@st.composite
def vm_specs(draw: Any, i: int) -> dict[str, Any]:
    memory = draw(st.sampled_from([2, 4, 8])) * GiB
    used = draw(st.integers(256, memory // MiB // 2)) * MiB
    unfreeable = draw(st.integers(0, used // MiB // 2)) * MiB
    cache = draw(st.integers(0, (memory - used) // MiB // 2)) * MiB
    return {
        "name": f"vm{i}",
        "memory": memory,
        "used": used,
        "cache": cache,
        "unfreeable": unfreeable,
        "swap": draw(st.sampled_from([0, 512 * MiB, GiB])),
        "deflate_on_oom": draw(st.booleans()),
        "free_page_reporting": draw(st.booleans()),
        "stats_period": draw(st.sampled_from([0, 2, 10])),
        "workload": draw(st.sampled_from(KINDS)),
    }


@st.composite
def worlds(draw: Any) -> tuple[dict[str, Any], str, int]:
    n = draw(st.integers(1, 4))
    vms = [draw(vm_specs(i)) for i in range(n)]
    flavor = draw(st.sampled_from(["kvm", "esxi", "hyperv"]))
    # Hyper-V starts a VM only with its startup memory free (half of up to 8 GiB here)
    physical = draw(st.sampled_from([8, 16, 64] if flavor == "hyperv" else [4, 8, 16, 64])) * GiB
    scenario = {
        "name": "prop",
        "host": {"physical": physical, "overhead": 256 * MiB, "reserve": 256 * MiB, "swap": 2 * GiB},
        "vms": vms,
    }
    # what the hypervisor would not have started, one after another, is drawn stopped
    started_in_turn(scenario, flavor=flavor, source="prop")
    return scenario, flavor, draw(st.integers(0, 2**16))


actions = st.lists(
    st.tuples(
        st.sampled_from(["advance", "target", "limit"]),
        st.integers(0, 3),
        st.floats(0.0, 1.2),
        st.sampled_from([0.5, 1.0, 7.0, 60.0, 600.0]),
    ),
    min_size=1,
    max_size=8,
)

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _play(world: World, plan: list[tuple[str, int, float, float]]) -> None:
    guests = list(world.guests.values())
    for what, who, frac, seconds in plan:
        g = guests[who % len(guests)]
        if what == "advance":
            world.advance(seconds)
        elif what == "target" and not g.crashed:
            world.set_target(g.id, int(g.memory_bytes * min(frac, 1.0)))
        elif what == "limit" and not g.crashed:
            world.set_config(g.id, ConfigUpdate(limit_bytes=max(MiB, int(g.memory_bytes * frac))))
        _check(world)


def _check(world: World) -> None:
    acc = world.accounting()
    host = acc["host"]
    assert host["conserved"], host
    for name, g in acc["guests"].items():
        for key, value in g.items():
            if isinstance(value, int):
                assert value >= 0, (name, key, value)
        guest = world.guest(name)
        if guest.running:
            assert g["used"] + g["cache"] + g["free"] == g["current"], g
            # the balloon never takes more than the guest can free
            assert g["balloon"] <= g["configured"] - guest.kernel_bytes - guest.unfreeable_bytes
            assert g["guest_swapped"] <= guest.swap_bytes


def _conserved(spec: tuple[dict[str, Any], str, int], plan: Any) -> None:
    scenario, flavor, seed = spec
    world = World(parse_scenario(scenario), flavor=flavor, seed=seed, strict=True)
    _check(world)
    _play(world, plan)


# 15 examples in the inner loop, the 40 of PROPS in the full suite (a twin marked slow)
test_memory_is_conserved_and_never_negative = settings(PROPS, max_examples=15)(
    given(worlds(), actions)(_conserved)
)
test_memory_is_conserved_and_never_negative_full = pytest.mark.slow(
    PROPS(given(worlds(), actions)(_conserved))
)


@pytest.mark.slow
@PROPS
@given(worlds(), actions)
def test_same_seed_same_series(spec: tuple[dict[str, Any], str, int], plan: Any) -> None:
    scenario, flavor, seed = spec
    runs = []
    for _ in range(2):
        world = World(parse_scenario(scenario), flavor=flavor, seed=seed)
        rec = record(world, every=1)
        _play(world, plan)
        runs.append((rec.to_json(), world_to_bytes(world)))
    assert runs[0] == runs[1]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 5, 10, 30]), st.floats(0.0, 100.0))
def test_stats_appear_only_after_the_period_is_set(period: int, wait: float) -> None:
    world = World(
        parse_scenario(
            {
                "name": "p",
                "host": {"physical": "16GiB"},
                "vms": [{"name": "a", "memory": "4GiB", "used": "1GiB", "stats_period": 0}],
            }
        )
    )
    g = world.guest("a")
    world.advance(wait)
    assert g.report() is None and g.last_report_at is None
    world.set_config(g.id, ConfigUpdate(stats_period_seconds=period))
    world.advance(period - 0.5)
    assert g.report() is None
    world.advance(0.5)
    assert g.last_report_at == pytest.approx(wait + period)
    world.advance(period * 3)
    assert g.last_report_at == pytest.approx(wait + 4 * period)
    assert g.report() is not None and world.report_age(g) == pytest.approx(0, abs=1e-6)


# 1000 s: past the spike's fall (15 min) and the JVM's warm-up (10 min), in the inner loop
@pytest.mark.parametrize("seconds", [1000, pytest.param(1800, marks=pytest.mark.slow)])
def test_chunked_and_stepwise_runs_agree_on_deterministic_workloads(seconds: int) -> None:
    scenario = parse_scenario(
        {
            "name": "agree",
            "host": {"physical": "16GiB", "reserve": "1GiB"},
            "vms": [
                {
                    "name": "a",
                    "memory": "8GiB",
                    "used": "3GiB",
                    "cache": "1GiB",
                    "swap": "1GiB",
                    "target": "3GiB",
                    "workload": KINDS[2],
                },
                {"name": "b", "memory": "8GiB", "used": "2GiB", "workload": KINDS[4]},
            ],
        }
    )
    one, many = World(scenario), World(scenario)
    one.advance(seconds)
    for _ in range(seconds):
        many.advance(1)
    assert one.accounting() == many.accounting()


def _everything(world: World) -> tuple[Any, ...]:
    arrays = world.state.arrays()
    return tuple(arrays[k].tobytes() for k in sorted(arrays)), tuple(map(str, world.events)), world.now


@pytest.mark.parametrize(
    ("scenario", "flavor", "seconds"),
    [
        ("hyperv-dm", "hyperv", 300),  # rebalancing every 5 s: the most decisions in the inner loop
        pytest.param("hyperv-dm", "hyperv", 900, marks=pytest.mark.slow),
        pytest.param("esxi-limits", "esxi", 900, marks=pytest.mark.slow),
        pytest.param("seed", "kvm", 900, marks=pytest.mark.slow),
    ],
)
def test_the_physics_do_not_depend_on_how_often_the_world_is_read(
    scenario: str, flavor: str, seconds: int
) -> None:
    """A hypervisor that rebalances every few seconds (ESXi 15 s, Hyper-V 5 s) decides at fixed
    times of the simulated clock: a policy that reads every second must not see a faster (or a
    different) hypervisor than one that reads every ten."""
    from hvballoon.fake.scenario import load_scenario

    spec = load_scenario(scenario)
    runs = []
    for chunk in (1, 3, 10, seconds):
        world = World(spec, flavor=flavor)
        for _ in range(seconds // chunk):
            world.advance(chunk)
        runs.append(_everything(world))
    assert runs[0] == runs[1] == runs[2] == runs[3]


@pytest.mark.parametrize("flavor", ["esxi", pytest.param("hyperv", marks=pytest.mark.slow)])
def test_a_wave_is_the_same_whoever_watches_it(flavor: str) -> None:
    from hvballoon.fake.waves import wave_facts, wave_scenario

    spec = wave_scenario(0, hours=3, flavor=flavor)  # type: ignore[arg-type]
    start = int(wave_facts(spec).waves[0][0])
    often, seldom = World(spec), World(spec)
    often.advance(start - 30)
    seldom.advance(start - 30)
    for _ in range(90):
        often.advance(1)
    for _ in range(9):
        seldom.advance(10)
    assert _everything(often) == _everything(seldom)


def test_the_oom_kills_do_not_depend_on_the_moments_the_world_is_read() -> None:
    """A controller's quick rounds read the world between the grid's steps: the kills it counts
    must be those of a run read every second (short excursions beyond memory at odd moments)."""
    spike = {"duration": 0.6, "size": "400MiB", "rise": 0.1}
    vms = [
        {
            "name": f"v{i}",
            "memory": "2GiB",
            "used": "1800MiB",
            "swap": "0",
            "target": "2GiB",
            "workload": {"kind": "spike", "params": {"at": 20 + 17.3 * i, **spike}},
        }
        for i in range(6)
    ]
    spec = parse_scenario({"name": "excursions", "host": {"physical": "16GiB"}, "vms": vms})

    def kills(steps: tuple[float, ...]) -> tuple[list[float], list[tuple[str, float]]]:
        world, now, k = World(spec), 0.0, 0
        while now < 130 - 1e-9:
            d = min(steps[k % len(steps)], 130 - now)
            world.advance(d)
            now, k = now + d, k + 1
        events = [(e["vm"], round(e["t"], 6)) for e in world.events if e["kind"] == "oom"]
        return world.state.oom_events.tolist(), events

    every_second = kills((1.0,))
    assert sum(every_second[0]) >= 2  # the scenario has kills to count
    for pattern in ((0.7, 0.3), (2.3, 0.2, 7.5), (9.3, 0.2, 0.5), (0.4, 0.35)):
        assert kills(pattern) == every_second, pattern
