"""Dynamic Memory buffers raised for a wave: the policy's rule (a pure function), the
controller's applying it through ``set_config``, and the simulator's Dynamic Memory balancing
equal priorities evenly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import hvballoon
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World
from hvballoon.models import Mechanism
from hvballoon.policy import Controller, ControllerSettings, Plan
from hvballoon.policy.adaptive import HvballoonPolicy
from hvballoon.policy.model import HostView, Snapshot
from hvballoon.units import GiB
from tests.support.policies import Buffers
from tests.support.policies import dynamic_memory_view as dm

SETTLE = 300.0
CALM = 600.0


class Fleet:
    """Rounds of the policy over a fleet whose buffers follow what the policy asked for."""

    def __init__(self, policy: HvballoonPolicy | None = None, host_used: float = 40) -> None:
        # the reaction to a surge alone: no buffer raised ahead of one (tests/policy/test_buffers_ahead.py)
        self.policy = policy or HvballoonPolicy(buffer_ahead_fraction=0)
        self.state = self.policy.initial_state()
        self.buffers: dict[str, int] = {}
        self.host_used = host_used

    def round(self, at: float, uses: dict[str, float]) -> Plan:
        views = tuple(dm(n, u, buffer=self.buffers.get(n, 20)) for n, u in uses.items())
        snap = Snapshot(
            at_seconds=at,
            fast_interval_seconds=1.0,
            host=HostView(total_bytes=110 * GiB, used_bytes=int(self.host_used * GiB)),
            vms=views,
        )
        plan = self.policy.decide(snap, self.state)
        self.state = plan.state
        for b in plan.buffers:
            self.buffers[b.vm_id] = b.buffer_percent
        return plan

    def settle(self, uses: dict[str, float], until: float = SETTLE) -> None:
        for k in range(int(until) + 1):
            self.round(float(k), uses)


CALM_USES = {"web01": 4.0, "web02": 4.0, "web03": 4.0, "db01": 6.0}


def test_a_surge_raises_the_buffers_of_its_siblings_to_cover_their_plausible_surge() -> None:
    fleet = Fleet()
    fleet.settle(CALM_USES)
    plan = fleet.round(SETTLE + 1, {**CALM_USES, "web01": 10.0})
    raised = {b.vm_id: b for b in plan.buffers}
    # its siblings (not the surging VM itself, being given its memory already, nor another kind)
    assert set(raised) == {"web02", "web03"}
    # a plausible surge of 60 % of 16 GiB over a demand of 4 GiB
    assert raised["web02"].buffer_percent == math.ceil(100 * 0.6 * 16 / 4)
    assert raised["web02"].rule == "hvballoon.buffer" and "surged" in raised["web02"].reason


def test_the_buffers_come_back_once_the_family_has_been_calm() -> None:
    fleet = Fleet()
    fleet.settle(CALM_USES)
    surge_at = SETTLE + 1
    fleet.round(surge_at, {**CALM_USES, "web01": 10.0})
    assert fleet.buffers == {"web02": 240, "web03": 240}
    after = {**CALM_USES, "web01": 10.0}
    for t in range(int(surge_at) + 1, int(surge_at + CALM), 10):
        plan = fleet.round(float(t), after)
        # calm hands: the siblings' buffers stay (the VM that surged, once its rise is over, may
        # be given a buffer for a surge it could still make)
        assert not {b.vm_id for b in plan.buffers} - {"web01"}
    assert fleet.buffers["web02"] == fleet.buffers["web03"] == 240
    plan = fleet.round(surge_at + CALM + 1, after)
    assert {b.vm_id: b.buffer_percent for b in plan.buffers if b.vm_id != "web01"} == {
        "web02": 20,
        "web03": 20,
    }
    assert all("own buffer back" in b.reason for b in plan.buffers)
    # and not raised again within the calm time of that, when the family surges again
    plan = fleet.round(surge_at + CALM + 60, {**after, "web03": 4.0, "web01": 15.9})
    assert not plan.buffers


def test_a_raise_the_host_cannot_back_is_not_made() -> None:
    fleet = Fleet(host_used=104)  # 6 GiB free of 110: nothing above the floor and band
    fleet.settle(CALM_USES)
    assert not fleet.round(SETTLE + 1, {**CALM_USES, "web01": 10.0}).buffers


def test_a_rise_while_the_vms_settle_is_not_a_surge_for_the_buffers() -> None:
    fleet = Fleet()
    fleet.settle(CALM_USES, until=20)
    assert not fleet.round(21, {**CALM_USES, "web01": 10.0}).buffers


def test_only_dynamic_memory_vms_have_their_buffer_raised() -> None:
    policy = HvballoonPolicy(buffer_ahead_fraction=0)
    state = policy.initial_state()
    for k in range(int(SETTLE) + 2):
        web01 = 10.0 if k > SETTLE else 4.0
        views = (
            dm("web01", web01),
            dm("web02", 4.0).model_copy(
                update={"mechanism": Mechanism.BALLOON, "buffer_percent": None, "can_lower": True}
            ),
        )
        snap = Snapshot(
            at_seconds=float(k),
            fast_interval_seconds=1.0,
            host=HostView(total_bytes=110 * GiB, used_bytes=40 * GiB),
            vms=views,
        )
        plan = policy.decide(snap, state)
        state = plan.state
        assert not plan.buffers


# -- the controller ------------------------------------------------------------------------


def _settings() -> ControllerSettings:
    return ControllerSettings(host_memory_bytes=128 * GiB)


def test_the_controller_sets_the_buffers_asked_for_and_records_each() -> None:
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        before = hv.get_config("web01").buffer_percent
        decisions = Controller(hv, Buffers({"web01": 150}), _settings()).step()
        assert hv.get_config("web01").buffer_percent == 150
        (d,) = [x for x in decisions if x.rule == "buffers.set"]
        assert d.vm == "web01" and d.action == "raise" and d.applied and not d.dry_run
        assert d.inputs["buffer_percent_before"] == before and d.inputs["buffer_percent"] == 150
        # the VM's own decision is still there: one per VM, then one per buffer changed
        assert len(decisions) == len(hv.list_vms()) + 1


def test_the_command_line_shows_a_buffer_change_as_one() -> None:
    from hvballoon.cli.autoballoon import _line

    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        decisions = Controller(hv, Buffers({"web01": 150}), _settings()).step()
        (d,) = [x for x in decisions if x.rule == "buffers.set"]
        assert "web01: raise buffer 20 % -> 150 % [buffers.set]" in _line(d)


def test_a_dry_run_checks_the_buffer_and_changes_nothing() -> None:
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        before = hv.get_config("web01").buffer_percent
        decisions = Controller(hv, Buffers({"web01": 150}), _settings(), dry_run=True).step()
        (d,) = [x for x in decisions if x.rule == "buffers.set"]
        assert d.action == "raise" and not d.applied and d.dry_run
        assert hv.get_config("web01").buffer_percent == before


def test_a_buffer_the_hypervisor_refuses_is_an_error_decision_and_changes_nothing() -> None:
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        before = {n: hv.get_config(n).buffer_percent for n in ("web01", "web02")}
        decisions = Controller(hv, Buffers({"web01": 5000, "web02": 60}), _settings()).step()
        by_vm = {x.vm: x for x in decisions if x.rule == "buffers.set"}
        assert by_vm["web01"].action == "error" and not by_vm["web01"].applied
        assert by_vm["web01"].error_code and "2000" in by_vm["web01"].reason
        assert hv.get_config("web01").buffer_percent == before["web01"]
        # the other buffer is set all the same
        assert by_vm["web02"].applied and hv.get_config("web02").buffer_percent == 60


def test_a_buffer_for_a_vm_without_dynamic_memory_is_ignored() -> None:
    with hvballoon.connect("fake://seed") as hv:
        decisions = Controller(hv, Buffers({"web01": 150}), _settings()).step()
        assert not [x for x in decisions if x.rule == "buffers.set"]
        assert hv.get_config("web01").buffer_percent is None


# -- the simulator ----------------------------------------------------------------------------

EVEN = """
name: even
flavor: hyperv
host: {name: hv01, physical: 30GiB, overhead: 2GiB, reserve: 2GiB}
vms:
"""


@pytest.mark.parametrize("order", [("a", "b", "c"), ("c", "b", "a")])
def test_dynamic_memory_trims_vms_of_one_priority_evenly(tmp_path: Path, order: tuple[str, ...]) -> None:
    """Three VMs of one priority whose buffers (500 %) do not all fit: each keeps the same share
    of its buffer, whatever their order (the balancer evens out their memory pressure)."""
    text = EVEN + "".join(
        f"  - {{name: {n}, memory: 16GiB, used: 2GiB, cache: 0, swap: 1GiB, dynamic: true, "
        f"minimum: 1GiB, startup: 2GiB, maximum: 16GiB, buffer_percent: 500, priority: 50}}\n"
        for n in order
    )
    w = World(parse_scenario(__import__("yaml").safe_load(text), source="even"))
    w.advance(120)
    cur = {n: w.state.current[i] for i, n in enumerate(w.names)}
    demand = {n: w.state.effective_demand[i] for i, n in enumerate(w.names)}
    wants = [demand[n] * 6 for n in order]
    assert sum(wants) > 26 * GiB  # they do not all fit
    shares = [(cur[n] - demand[n]) / (5 * demand[n]) for n in order]
    assert min(shares) > 0.2 and max(shares) - min(shares) < 0.02, shares
