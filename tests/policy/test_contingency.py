"""A sweep that hangs: the controller makes the raises its last plan held for it (``Plan.contingency``)
between the attempts of the sweep, through the same vetting and journal as any move, and only
then; on the fake backend with scripted ``slow`` sweeps (a call that hangs past the session's
timeout)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.fake.world import World
from hvballoon.policy import Controller, ControllerSettings, Plan, Proposal, Snapshot
from hvballoon.retry import RetryPolicy
from hvballoon.units import GiB
from tests.support.policies import Fixed

TIMEOUT = 5.0


class Braced(Fixed):
    """Every VM at ``target``; if the next sweep hangs, ``braced`` per VM name instead."""

    def __init__(self, target: int, braced: dict[str, int]) -> None:
        super().__init__(target)
        self.braced = braced

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        plan = super().decide(snapshot, state)
        contingency = tuple(
            Proposal(vm_id=v.id, target_bytes=self.braced[v.name], rule="braced.blind", reason="braced")
            for v in snapshot.vms
            if v.name in self.braced
        )
        return dataclasses.replace(plan, contingency=contingency)


def targets(w: World) -> dict[str, int]:
    return {g.name: g.target_bytes for g in w.guests.values()}


def session(w: World, waits: list[tuple[float, dict[str, int]]]) -> hvballoon.Hypervisor:
    """A session whose retries wait on the world's clock, noting the targets at each wait."""

    def sleep(seconds: float) -> None:
        waits.append((seconds, targets(w)))
        w.advance(seconds)

    return hvballoon.connect("fake://", world=w, timeout=TIMEOUT, retry=RetryPolicy(sleep=sleep, seed=1))


def settings() -> ControllerSettings:
    return ControllerSettings(host_memory_bytes="120GiB")


def test_the_contingency_is_made_between_the_attempts_of_a_sweep_that_hangs() -> None:
    waits: list[tuple[float, dict[str, int]]] = []
    braced = {"web01": 14 * GiB, "web02": 15 * GiB, "db01": 8 * GiB}  # db01's would lower it
    with fake.world("seed") as w, session(w, waits) as hv:
        ctl = Controller(hv, Braced(12 * GiB, braced), settings())
        ctl.step()
        assert set(targets(w).values()) == {12 * GiB}
        w.faults.add(op="get_stats", kind="slow", latency=60, count=1)
        started = w.now
        decisions = ctl.step()
        # one attempt hung for the timeout; the raises were made before the session's wait,
        # and the second attempt read the VMs
        assert len(waits) == 1
        wait, during = waits[0]
        assert (during["web01"], during["web02"], during["db01"]) == (14 * GiB, 15 * GiB, 12 * GiB)
        assert w.now - started == pytest.approx(TIMEOUT + wait, abs=0.5)
        assert wait == RetryPolicy(seed=1).delays()[0]
        blind = [d for d in decisions if d.rule == "braced.blind"]
        assert [(d.vm, d.action, d.applied, d.after_bytes) for d in blind] == [
            ("web02", "raise", True, 15 * GiB),
            ("web01", "raise", True, 14 * GiB),
        ]
        assert all("attempt 1 of 3 timed out" in d.reason for d in blind)
        assert decisions[:2] == blind and blind == ctl.blind_decisions
        # the round itself then decided on what it read, and journalled both moves
        rest = decisions[2:]
        assert len(rest) == 10 and {d.rule for d in rest} == {"fixed.set"}
        assert set(targets(w).values()) == {12 * GiB}
        made = [c for c in ctl.journal.changes() if c["vm"] == "web02"]
        assert [(c["to_bytes"], c["state"]) for c in made][-2:] == [(15 * GiB, "made"), (12 * GiB, "made")]


def test_no_contingency_while_the_sweep_answers() -> None:
    waits: list[tuple[float, dict[str, int]]] = []
    with fake.world("seed") as w, session(w, waits) as hv:
        ctl = Controller(hv, Braced(12 * GiB, {"web01": 14 * GiB}), settings())
        for _ in range(3):
            decisions = ctl.step()
            assert {d.rule for d in decisions} == {"fixed.set"} and ctl.blind_decisions == []
        # a lost connection is retried at once: no time lost, nothing raised blind
        w.faults.add(op="get_stats", kind="connection_lost", count=1)
        decisions = ctl.step()
        assert len(waits) == 1 and {d.rule for d in decisions} == {"fixed.set"}
        assert set(targets(w).values()) == {12 * GiB}


def test_a_sweep_that_fails_outright_keeps_its_contingency_moves_once() -> None:
    waits: list[tuple[float, dict[str, int]]] = []
    with fake.world("seed") as w, session(w, waits) as hv:
        ctl = Controller(hv, Braced(12 * GiB, {"web01": 14 * GiB}), settings())
        ctl.step()
        w.faults.add(op="get_stats", kind="slow", latency=60, count=3)
        (rnd,) = ctl.run(rounds=1, sleep=lambda _s: None)
        # three attempts, the session's two waits between them; the raise made once, after the first
        assert not rnd.ok and rnd.error is not None and rnd.error.code == "timeout"
        assert [s for s, _ in waits] == RetryPolicy(seed=1).delays()
        assert [t["web01"] for _, t in waits] == [14 * GiB, 14 * GiB]
        assert [(d.vm, d.rule, d.applied) for d in rnd] == [("web01", "braced.blind", True)]
        assert ctl.health.moves_made == 1  # counted in the health of the failed round
        # the next sweep that hangs has no plan to act on: nothing more is raised
        w.faults.add(op="get_stats", kind="slow", latency=60, count=1)
        decisions = ctl.step()
        assert {d.rule for d in decisions} == {"fixed.set"}


def test_other_policies_plan_no_contingency() -> None:
    with hvballoon.connect("fake://seed") as hv:
        for name in ("static", "mom", "proxmox"):
            ctl = Controller(hv, name, settings(), dry_run=True)
            ctl.step()
            assert ctl._contingency is None, name
