"""The simulator's rounds are the service loop's: what a controller does when its sweep fails
(the backoff before the next round, the release after too many failures in a row) is what the
policies benchmark and ``hvballoon simulate --policy`` measure, not a controller that tries again
at once and never gives anything back."""

from __future__ import annotations

from typing import Any

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.policy.simulated import simulated_controller, simulated_round

GiB = 2**30
OUTAGE = (600.0, 1500.0)  # every sweep fails in this window of simulated time


def _scenario(fault: dict[str, Any] | None = None) -> Any:
    host = {"physical": "24GiB", "overhead": "1GiB", "reserve": "1GiB", "swap": "2GiB"}
    vms = [{"name": f"vm{i}", "memory": "8GiB", "used": "2GiB"} for i in range(4)]
    outage = {"op": "get_stats", "kind": "connection_lost", "probability": 1.0, "at": OUTAGE[0], "until": OUTAGE[1]}
    faults = [fault or outage]
    return parse_scenario({"name": "outage", "flavor": "kvm", "host": host, "vms": vms, "faults": faults})


def _simulated(minutes: float) -> tuple[World, list[tuple[float, bool, float]]]:
    world = World(_scenario())
    rounds: list[tuple[float, bool, float]] = []
    with simulated_controller(world, "hvballoon") as ctl:
        while world.now < minutes * 60:
            began = world.now
            _decisions, read, wait = simulated_round(world, ctl)
            rounds.append((began, read, wait))
            world.advance(wait)
    return world, rounds


def test_a_failed_sweep_waits_the_controllers_backoff() -> None:
    _world, rounds = _simulated(20)
    failed = [(t, wait) for t, read, wait in rounds if not read]
    assert len(failed) >= 4
    # the interval (10 s), then doubled per failure in a row, at most max_backoff_seconds (60 s)
    assert [round(wait) for _t, wait in failed[:5]] == [10, 20, 40, 60, 60][: len(failed[:5])]
    # fewer than a round a second while the hypervisor does not answer
    outage = OUTAGE[1] - OUTAGE[0]
    assert len(failed) < outage / 10


def test_too_many_failed_rounds_give_back_what_was_lowered() -> None:
    # five sweeps in a row fail (three attempts each: the session retries a lost connection),
    # as many as fit in three minutes of backoff; the call after them answers
    fault = {"op": "get_stats", "kind": "connection_lost", "count": 15, "at": OUTAGE[0]}
    world = World(_scenario(fault))
    whole = 8 * GiB
    seen: list[tuple[bool, bool]] = []  # (sweep read, every VM whole again) per round
    with simulated_controller(world, "hvballoon") as ctl:
        while world.now < OUTAGE[0] + 400:
            _decisions, read, wait = simulated_round(world, ctl)
            seen.append((read, all(g.target_bytes == whole for g in world.guests.values())))
            if world.now < OUTAGE[0]:
                lowered = [g.name for g in world.guests.values() if g.target_bytes < whole]
            world.advance(wait)
    assert lowered, "the policy lowers the VMs of an overcommitted host before the outage"
    failures = [k for k, (read, _whole) in enumerate(seen) if not read]
    assert len(failures) == 5
    assert seen[failures[-1]] == (False, True), "the fifth failure in a row gives every VM back"


def test_the_simulated_rounds_fall_when_the_service_loops_do() -> None:
    _world, rounds = _simulated(30)
    simulated = [round(t, 6) for t, _read, _wait in rounds]
    world = World(_scenario())
    starts: list[float] = []
    with simulated_controller(world, "hvballoon") as ctl:
        for _rnd in ctl.run(rounds=len(simulated), before_round=lambda: starts.append(world.now)):
            pass
    assert [round(t, 6) for t in starts] == simulated
