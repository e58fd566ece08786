"""The simulator's rounds are the service loop's: what a controller does when its sweep fails
(the backoff before the next round, the release after too many failures in a row) is what the
policies benchmark and ``hvballoon simulate --policy`` measure, not a controller that tries again
at once and never gives anything back. The backoff starts from the pace the rounds kept: a host
the policy watched every second is not left ten seconds unwatched for one failed sweep."""

from __future__ import annotations

from typing import Any

import pytest

from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.policy.simulated import simulated_controller, simulated_round

GiB = 2**30
OUTAGE = (600.0, 1500.0)  # every sweep fails in this window of simulated time
# the backoff's window: two minutes set the pace (the exposed host's rounds, every second, are
# most of the test's cost before its outage)
EARLY_OUTAGE = (120.0, 1020.0)
# four 8 GiB VMs using 2 GiB each: on 24 GiB the host backs their plausible surges and the rounds
# come every 10 s; on 14 GiB it does not, and the policy asks for a round every second
HOSTS = {"calm": ("24GiB", 10.0), "exposed": ("14GiB", 1.0)}


def _scenario(
    physical: str, fault: dict[str, Any] | None = None, window: tuple[float, float] = OUTAGE
) -> Any:
    host = {"physical": physical, "overhead": "1GiB", "reserve": "1GiB", "swap": "2GiB"}
    vms = [{"name": f"vm{i}", "memory": "8GiB", "used": "2GiB"} for i in range(4)]
    outage = {
        "op": "get_stats",
        "kind": "connection_lost",
        "probability": 1.0,
        "at": window[0],
        "until": window[1],
    }
    return parse_scenario(
        {"name": "outage", "flavor": "kvm", "host": host, "vms": vms, "faults": [fault or outage]}
    )


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_a_failed_sweep_backs_off_from_the_pace_the_rounds_kept(host: str) -> None:
    physical, pace = HOSTS[host]
    world = World(_scenario(physical, window=EARLY_OUTAGE))
    failed: list[float] = []
    paces: list[float] = []  # the pace before each failed round
    with simulated_controller(world, "hvballoon") as ctl:
        while world.now < EARLY_OUTAGE[1] - 60:
            before = ctl.next_round_seconds
            _decisions, read, wait = simulated_round(world, ctl)
            if not read:
                failed.append(wait)
                paces.append(before)
            world.advance(wait)
    assert paces[0] == pace
    # the pace, doubled per failure in a row after the first, at most max_backoff_seconds (60 s)
    expected = [min(60.0, pace * 2**k) for k in range(len(failed))]
    assert [round(w, 6) for w in failed] == expected
    assert len(failed) < (EARLY_OUTAGE[1] - EARLY_OUTAGE[0]) / 30  # an outage is not swept every second


@pytest.mark.parametrize(
    ("host", "bearable"), [("calm", 5), pytest.param("exposed", 8, marks=pytest.mark.slow)]
)
def test_three_minutes_of_failed_rounds_give_back_what_was_lowered(host: str, bearable: int) -> None:
    # ``bearable`` sweeps in a row fail (three attempts each: the session retries a lost
    # connection) — as many as fit in three minutes of backoff from the rounds' pace (10+20+40+
    # 60+60 s; 1+2+4+8+16+32+60+60 s) — and the call after them answers
    fault = {"op": "get_stats", "kind": "connection_lost", "count": 3 * bearable, "at": OUTAGE[0]}
    world = World(_scenario(HOSTS[host][0], fault))
    whole = 8 * GiB
    seen: list[tuple[bool, bool]] = []  # (sweep read, every VM whole again) per round
    with simulated_controller(world, "hvballoon") as ctl:
        while world.now < OUTAGE[0] + 400:
            _decisions, read, wait = simulated_round(world, ctl)
            seen.append((read, all(g.target_bytes == whole for g in world.guests.values())))
            last = ctl.last_round
            assert last is not None and last.ok == read
            if last.released is not None:  # the round that gave the VMs back says so
                released = (len(seen) - 1, sorted(r.vm for r in last.released.vms if r.action == "released"))
            if world.now < OUTAGE[0]:
                lowered = [g.name for g in world.guests.values() if g.target_bytes < whole]
            world.advance(wait)
    assert lowered, "the policy lowers the VMs before the outage"
    failures = [k for k, (read, _whole) in enumerate(seen) if not read]
    assert len(failures) == bearable
    assert seen[failures[-2]] == (False, False), "the failure before the last gives nothing back"
    assert seen[failures[-1]] == (False, True), "the last failure in a row gives every VM back"
    assert released == (failures[-1], sorted(lowered))


@pytest.mark.slow
@pytest.mark.parametrize("host", sorted(HOSTS))
def test_the_simulated_rounds_fall_when_the_service_loops_do(host: str) -> None:
    physical, _pace = HOSTS[host]
    world = World(_scenario(physical))
    simulated: list[float] = []
    with simulated_controller(world, "hvballoon") as ctl:
        while world.now < 30 * 60:
            simulated.append(round(world.now, 6))
            _decisions, _read, wait = simulated_round(world, ctl)
            world.advance(wait)
    world = World(_scenario(physical))
    starts: list[float] = []
    with simulated_controller(world, "hvballoon") as ctl:
        for _rnd in ctl.run(rounds=len(simulated), before_round=lambda: starts.append(round(world.now, 6))):
            pass
    assert starts == simulated
