"""The port of MoM's default balloon rules against the rules as published (doc/balloon.rules).

Each expected value is worked out by hand from the rules in the test's comment.
"""

from __future__ import annotations

import pytest

from hvballoon.models import Mechanism
from hvballoon.policy.model import HostView, Snapshot, VMView
from hvballoon.policy.mom import MomConstants, MomGuest, MomPolicy, mom_round
from hvballoon.units import GiB, MiB


def guest(cur: float, used: float, maximum: float = 16, minimum: float = 0) -> MomGuest:
    """A guest in GiB whose averages equal its current figures (``used`` = cur − unused)."""
    return MomGuest(
        balloon_cur=int(cur * GiB),
        balloon_max=int(maximum * GiB),
        balloon_min=int(minimum * GiB),
        avg_balloon_cur=cur * GiB,
        avg_mem_unused=(cur - used) * GiB,
    )


def gib(result: dict[str, tuple[int, str]]) -> dict[str, tuple[float, str]]:
    return {k: (round(v / GiB, 4), rule) for k, (v, rule) in result.items()}


def test_no_pressure_grows_by_five_percent() -> None:
    # host free 50 % >= 20 %: grow = max(8 × 1.05, 4 + 0.2 × 8) = max(8.4, 5.6)
    assert gib(mom_round(0.50, {"g": guest(8, 4)})) == {"g": (8.4, "mom.grow")}


def test_grow_jumps_to_used_plus_twenty_percent() -> None:
    # grow = max(8 × 1.05, 7.9 + 1.6) = 9.5
    assert gib(mom_round(0.50, {"g": guest(8, 7.9)})) == {"g": (9.5, "mom.grow")}


def test_grow_is_capped_at_the_maximum_and_stops_there() -> None:
    assert gib(mom_round(0.50, {"g": guest(15.5, 4)})) == {"g": (16.0, "mom.grow")}
    assert mom_round(0.50, {"g": guest(16, 4)}) == {}


def test_grow_dead_band_is_a_quarter_percent_of_current() -> None:
    # 0.0025 × 15.99 GiB ≈ 41 MiB: growing by 10 MiB to the maximum is not worth a call
    cur = 16 - 10 / 1024
    assert mom_round(0.50, {"g": guest(cur, 4)}) == {}


def test_pressure_shrinks_by_five_percent() -> None:
    # host free 10 %: guest free% = 0.2 × 0.10 / 0.20 = 0.10; floor = 4 + 0.1 × 16 = 5.6;
    # shrink = max(16 × 0.95, 5.6) = 15.2
    assert gib(mom_round(0.10, {"g": guest(16, 4)})) == {"g": (15.2, "mom.shrink")}


def test_shrink_stops_at_used_plus_scaled_free() -> None:
    # host free 10 %: floor = 6 + 0.1 × 6.5 = 6.65 > 6.5 × 0.95, and above current: no shrink
    assert mom_round(0.10, {"g": guest(6.5, 6)}) == {}
    # floor = 5 + 0.1 × 6.5 = 5.65 > 6.5 × 0.95 = 6.175? no: 6.175 wins
    assert gib(mom_round(0.10, {"g": guest(6.5, 5)})) == {"g": (6.175, "mom.shrink")}
    # floor = 5.8 + 0.65 = 6.45 > 6.175: shrink to the floor
    assert gib(mom_round(0.10, {"g": guest(6.5, 5.8)})) == {"g": (6.45, "mom.shrink")}


def test_critical_pressure_makes_guest_free_negative() -> None:
    # host free 4 % <= 5 %: guest free% = 0.04 - 0.05 = -0.01: floor = 6 - 0.01 × 6.2 = 5.938,
    # which is below what the guest uses: MoM forces it to swap on purpose
    assert gib(mom_round(0.04, {"g": guest(6.2, 6)})) == {"g": (5.938, "mom.shrink")}


def test_min_guarantee_is_a_floor_and_the_qos_rule_restores_it() -> None:
    # at 8.2 GiB: floor = max(8, 4 + 0.1 × 8.2) = 8 > 8.2 × 0.95 = 7.79: the min_guarantee wins
    assert gib(mom_round(0.10, {"g": guest(8.2, 4, minimum=8)})) == {"g": (8.0, "mom.shrink")}
    # below its min_guarantee: the QoS rule sets it back, whatever the balloon rules said
    assert gib(mom_round(0.10, {"g": guest(7, 4, minimum=8)})) == {"g": (8.0, "mom.qos_min_guarantee")}
    no_qos = MomConstants(qos_min_guarantee=False)
    assert mom_round(0.10, {"g": guest(7, 4, minimum=8)}, no_qos) == {}


def test_threshold_is_strictly_below_twenty_percent() -> None:
    assert mom_round(0.20, {"g": guest(16, 4)}) == {}  # not under pressure, already at max
    assert mom_round(0.1999, {"g": guest(16, 4)})["g"][1] == "mom.shrink"


def _snap(host_used_gib: float, *vms: VMView, at: float = 0) -> Snapshot:
    return Snapshot(
        at_seconds=at, host=HostView(total_bytes=100 * GiB, used_bytes=int(host_used_gib * GiB)), vms=vms
    )


def _vm(cur: float, free: float, maximum: float = 16) -> VMView:
    return VMView(
        id="g",
        name="g",
        mechanism=Mechanism.BALLOON,
        maximum_bytes=int(maximum * GiB),
        current_bytes=int(cur * GiB),
        target_bytes=int(cur * GiB),
        used_bytes=int((cur - free) * GiB),
        free_bytes=int(free * GiB),
    )


def test_policy_uses_moving_averages_over_ten_samples() -> None:
    policy = MomPolicy()
    state = policy.initial_state()
    # nine rounds with the host at 50 % free, then one at 0 % free: the average is 45 %: grow
    for i in range(9):
        plan = policy.decide(_snap(50, _vm(8, 4), at=i * 10), state)
        state = plan.state
    plan = policy.decide(_snap(100, _vm(8, 4), at=90), state)
    p = plan.for_vm("g")
    assert p is not None and p.rule == "mom.grow"
    assert p.inputs["host_free_fraction"] == pytest.approx(0.45)
    # and the policy did not mutate the state it was given
    assert len(state.host_free) == 9


def test_policy_skips_guests_without_memory_information() -> None:
    vm = VMView(
        id="g", name="g", mechanism=Mechanism.BALLOON, maximum_bytes=GiB, current_bytes=GiB, target_bytes=GiB
    )
    plan = MomPolicy().decide(_snap(95, vm), None)
    p = plan.for_vm("g")
    assert p is not None and p.target_bytes is None and p.rule == "mom.no_stats"


def test_policy_explains_a_shrink() -> None:
    plan = MomPolicy().decide(_snap(90, _vm(16, 12)), None)
    p = plan.for_vm("g")
    assert p is not None and p.rule == "mom.shrink"
    assert p.target_bytes == pytest.approx(15.2 * GiB, abs=MiB)
    assert "10.0%" in p.reason and p.inputs["balloon_cur_bytes"] == 16 * GiB
