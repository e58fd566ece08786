"""A random walk's path is a function of simulated time, not of how the world is advanced: a
controller that reads every second and one that reads every ten, or at odd fractions of a
second, meet the same demand (found by the random scenarios probe, where a policy's faster
rounds drew another walk than static's and were charged with its OOM kills)."""

from __future__ import annotations

import pytest

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World


def _walk(step: float) -> World:
    return World(
        parse_scenario(
            {
                "name": "walk",
                "step": step,
                "host": {"physical": "64GiB"},
                "vms": [
                    {
                        "name": "a",
                        "memory": "16GiB",
                        "used": "4GiB",
                        "workload": {"kind": "random_walk", "params": {"step": "1GiB"}},
                    },
                    {
                        "name": "b",
                        "memory": "8GiB",
                        "used": "2GiB",
                        "workload": {"kind": "random_walk", "params": {"step": "256MiB", "high": "7GiB"}},
                    },
                ],
            }
        )
    )


def _demand_at(world: World, end: float, chunk: float) -> list[int]:
    while world.now < end - 1e-9:
        world.advance(min(chunk, end - world.now))
    return [g.demand_bytes for g in world.guests.values()]


# two simulated minutes already tell a walk drawn per block from one drawn per step (the inner
# loop); the full suite walks ten and fifteen minutes as well
@pytest.mark.parametrize("end", [120.0, pytest.param(600.0, marks=pytest.mark.slow)])
@pytest.mark.parametrize("step", [1.0, 2.0, 0.5])
def test_the_walk_does_not_depend_on_how_the_world_is_advanced(step: float, end: float) -> None:
    every = [_demand_at(_walk(step), end, chunk) for chunk in (10.0, 1.0, 0.7, 3.3)]
    assert every[1:] == every[:1] * 3
    assert every[0] != [4 * 2**30, 2 * 2**30]  # it walked


@pytest.mark.parametrize("end", [120.0, pytest.param(900.0, marks=pytest.mark.slow)])
@pytest.mark.parametrize("step", [2.0, 1.0])
def test_a_walk_at_the_guests_limit_kills_as_often_whoever_reads_the_world(step: float, end: float) -> None:
    """A walk hovering at what the guest can hold (a balloon at 3 GiB, no swap) starts its OOM
    killer at each crossing: read every second, every ten or at fractions of one, the same
    crossings."""
    spec = parse_scenario({
        "name": "edge", "step": step, "host": {"physical": "64GiB"},
        "vms": [{"name": "a", "memory": "4GiB", "target": "3GiB", "used": "2900MiB", "deflate_on_oom": False,
                 "workload": {"kind": "random_walk", "params": {"step": "512MiB", "high": "4GiB"}}}],
    })  # fmt: skip
    kills = []
    for chunk in (10.0, 1.0, 0.7):
        world = World(spec)
        _demand_at(world, end, chunk)
        kills.append(sum(1 for e in world.events if e["kind"] == "oom"))
    assert kills[0] > 0
    assert kills == kills[:1] * 3


@pytest.mark.parametrize("step", [2.0, 5.0])
def test_a_walk_read_more_often_than_the_world_steps_holds_between_its_steps(step: float) -> None:
    """Read every half second, a walk on a world whose step is longer takes a new value only at
    the world's own step points: a controller's quick rounds see no steps of the walk a world
    read once per step would not have drawn."""
    world = _walk(step)
    seen: list[tuple[float, list[int]]] = []
    while world.now < 60.0 - 1e-9:
        world.advance(0.5)
        seen.append((world.now, [g.demand_bytes for g in world.guests.values()]))
    changed_at = [t for (t, d), (_, before) in zip(seen[1:], seen[:-1], strict=True) if d != before]
    assert changed_at  # it walked
    assert all(abs(t / step - round(t / step)) < 1e-9 for t in changed_at), changed_at
