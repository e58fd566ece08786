"""Dynamic Memory buffers raised ahead of a surge: a share of the host's free memory dealt out
as buffers before any VM surges (the first VM of a wave rises faster than Hyper-V's balancing
follows, and no sibling has surged yet to call for its buffer)."""

from __future__ import annotations

import math

import pytest
import yaml

from hvballoon.fake.scenario import parse_scenario
from hvballoon.models import Mechanism
from hvballoon.policy import Plan
from hvballoon.policy.adaptive import HvballoonPolicy
from hvballoon.policy.model import HostView, Snapshot, VMView
from hvballoon.units import GiB
from tests.support.policies import dynamic_memory_view as dm
from tests.support.policies import run_simulated

TOTAL = 110 * GiB


def round_of(policy: HvballoonPolicy, state: object, at: float, uses: dict[str, float], buffers: dict[str, int],
             others: float) -> Plan:  # fmt: skip
    """A round on a host of 110 GiB whose Dynamic Memory VMs hold their demand plus buffer and
    the rest of it ``others`` GiB."""
    views: tuple[VMView, ...] = tuple(dm(n, u, buffer=buffers.get(n, 20)) for n, u in uses.items())
    held = sum(v.current_bytes for v in views)
    snap = Snapshot(
        at_seconds=at,
        fast_interval_seconds=1.0,
        host=HostView(total_bytes=TOTAL, used_bytes=int(others * GiB) + held),
        vms=views,
    )
    return policy.decide(snap, state)


USES = {"web01": 4.0, "web02": 4.0, "db01": 6.0, "app01": 2.0}  # 16 GiB, 19.2 with their buffers
FLOOR_AND_BAND = int(0.05 * TOTAL) + int(0.025 * TOTAL)


def test_buffers_are_raised_ahead_out_of_a_share_of_the_hosts_free_memory() -> None:
    policy = HvballoonPolicy()
    plan = round_of(policy, policy.initial_state(), 0.0, USES, {}, others=70.8)  # 20 GiB free
    ahead = {b.vm_id: b for b in plan.buffers}
    assert set(ahead) == set(USES)
    assert all(b.rule == "hvballoon.buffer_ahead" and "ahead of a surge" in b.reason for b in ahead.values())
    # 80 % of what is free above the floor (5 %) and band (2.5 %) and what the buffers hold
    # (20 % of 16 GiB), shared by four VMs
    pot = 20 * GiB - FLOOR_AND_BAND + 0.2 * 16 * GiB
    share = 0.8 * pot / 4
    given = {n: USES[n] * GiB * ahead[n].buffer_percent / 100 for n in USES}
    assert all(share <= given[n] <= share + USES[n] * GiB / 100 for n in USES), given  # a point's rounding


def test_a_buffer_raised_ahead_covers_the_plausible_surge_at_most() -> None:
    policy = HvballoonPolicy()
    plan = round_of(policy, policy.initial_state(), 0.0, USES, {}, others=10)  # 80 GiB free
    ahead = {b.vm_id: b.buffer_percent for b in plan.buffers}
    # a plausible surge of 60 % of 16 GiB
    assert ahead == {n: math.ceil(100 * 0.6 * 16 / u) for n, u in USES.items()}


def test_none_when_off_or_the_host_has_nothing_above_its_floor_and_band() -> None:
    off = HvballoonPolicy(buffer_ahead_fraction=0)
    assert not round_of(off, off.initial_state(), 0.0, USES, {}, others=10).buffers
    policy = HvballoonPolicy()
    assert not round_of(policy, policy.initial_state(), 0.0, USES, {}, others=84).buffers


def test_only_dynamic_memory_vms_get_a_buffer_ahead() -> None:
    policy = HvballoonPolicy()
    views = (
        dm("web01", 4.0),
        dm("web02", 4.0).model_copy(
            update={"mechanism": Mechanism.BALLOON, "buffer_percent": None, "can_lower": True}
        ),
    )
    snap = Snapshot(
        at_seconds=0.0,
        fast_interval_seconds=1.0,
        host=HostView(total_bytes=TOTAL, used_bytes=40 * GiB),
        vms=views,
    )
    assert [b.vm_id for b in policy.decide(snap, policy.initial_state()).buffers] == ["web01"]


def test_none_beside_a_static_vm_the_policy_may_lower() -> None:
    """There the host's free memory is what the static VM's lower needs to stay free."""
    policy = HvballoonPolicy()
    static = dm("dc01", 3.0, host_has=8.0).model_copy(
        update={
            "mechanism": Mechanism.RUNTIME_RESIZE,
            "buffer_percent": None,
            "can_lower": True,
            "target_bytes": 8 * GiB,
        }
    )
    views = (dm("web01", 4.0), dm("web02", 4.0), static)
    snap = Snapshot(
        at_seconds=0.0,
        fast_interval_seconds=1.0,
        host=HostView(total_bytes=TOTAL, used_bytes=30 * GiB),
        vms=views,
    )
    assert not policy.decide(snap, policy.initial_state()).buffers
    # the same VMs without it: their buffers raised ahead
    snap = snap.model_copy(update={"vms": views[:2]})
    assert {b.rule for b in policy.decide(snap, policy.initial_state()).buffers} == {"hvballoon.buffer_ahead"}


def test_the_buffers_hold_still_once_dealt_out() -> None:
    policy = HvballoonPolicy()
    buffers: dict[str, int] = {}
    plan = round_of(policy, policy.initial_state(), 0.0, USES, buffers, others=70.8)
    buffers.update({b.vm_id: b.buffer_percent for b in plan.buffers})
    assert set(buffers) == set(USES)
    # Dynamic Memory has handed them out: the host's free memory is what is left, and the same
    # share is asked again (nothing more: the rest stays free)
    plan = round_of(policy, plan.state, 1.0, USES, buffers, others=70.8)
    assert not plan.buffers
    # the host fills: nothing is taken back (Dynamic Memory trims buffers itself when short)
    for k, others in enumerate((75, 80, 85), start=2):
        plan = round_of(policy, plan.state, float(k), USES, buffers, others=others)
        assert not plan.buffers
    # a little more free memory again: a step of less than ten points is not made
    plan = round_of(policy, plan.state, 10.0, USES, buffers, others=70)
    assert not plan.buffers


def test_the_surging_vm_gets_no_buffer_ahead() -> None:
    policy = HvballoonPolicy(buffer_ahead_fraction=0)  # settle without buffers ahead
    state = policy.initial_state()
    for k in range(310):
        state = round_of(policy, state, float(k), USES, {}, others=40).state
    policy.buffer_ahead_fraction = 0.8
    plan = round_of(policy, state, 310.0, {**USES, "web01": 10.0}, {}, others=40)
    rules = {b.vm_id: b.rule for b in plan.buffers}
    assert "web01" not in rules
    # its sibling's buffer is raised for the wave (the reaction), the others' ahead
    assert rules["web02"] == "hvballoon.buffer"
    assert rules["db01"] == rules["app01"] == "hvballoon.buffer_ahead"


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_the_fraction_is_checked(fraction: float) -> None:
    with pytest.raises(ValueError, match="buffer_ahead_fraction"):
        HvballoonPolicy(buffer_ahead_fraction=fraction)


# -- the simulator: the first VM of a wave --------------------------------------------------

FIRST = """
name: first-of-a-wave
flavor: hyperv
host: {name: hv01, physical: 64GiB, overhead: 2GiB, reserve: 2GiB, swap: 0}
vms:
  - {name: app01, memory: 16GiB, used: 3GiB, cache: 0, swap: 512MiB, dynamic: true, minimum: 1GiB, startup: 4GiB,
     maximum: 16GiB, buffer_percent: 20, priority: 50,
     workload: {kind: spike, params: {at: 20m, duration: 10m, size: 6GiB, rise: 1s}}}
  - {name: app02, memory: 16GiB, used: 3GiB, cache: 0, swap: 512MiB, dynamic: true, minimum: 1GiB, startup: 4GiB,
     maximum: 16GiB, buffer_percent: 20, priority: 50}
  - {name: db01, memory: 16GiB, used: 6GiB, cache: 0, swap: 512MiB, dynamic: true, minimum: 1GiB, startup: 8GiB,
     maximum: 16GiB, buffer_percent: 20, priority: 50}
"""


def _kills(fraction: float) -> list[tuple[float, str]]:
    scenario = parse_scenario(yaml.safe_load(FIRST), source="first-of-a-wave")
    world, _decisions = run_simulated(scenario, "hvballoon", 30, {"buffer_ahead_fraction": fraction})
    return [(e["t"], e["vm"]) for e in world.events if e["kind"] in ("oom", "panic", "host_oom")]


def test_the_first_vm_of_a_wave_finds_its_buffer_there() -> None:
    """A VM that had never surged rises by 6 GiB within a second: Dynamic Memory's 20 % buffer
    (0.6 GiB) and its 5-second balancing do not follow, and it is out of memory; with its buffer
    raised ahead out of the host's free memory, the surge lands in memory it already holds."""
    assert [vm for _t, vm in _kills(0.0)] == ["app01"]
    assert _kills(0.8) == []
