"""Our policy as a pure function: floors, surges, cautious lowering, self-managed memory."""

from __future__ import annotations

from typing import Any

from hvballoon.models import Mechanism
from hvballoon.policy.adaptive import HvballoonPolicy
from hvballoon.policy.model import HostView, Snapshot, VMSettings, VMView
from hvballoon.units import GiB, MiB


def vm(target: float, used: float, *, swap_in: int = 0, **kw: Any) -> VMView:
    return VMView(
        id="a",
        name="a",
        mechanism=kw.pop("mechanism", Mechanism.BALLOON),
        maximum_bytes=16 * GiB,
        current_bytes=int(target * GiB),
        target_bytes=int(target * GiB),
        used_bytes=int(used * GiB),
        swap_in_bytes=swap_in,
        guard_floor_bytes=kw.pop("guard_floor_bytes", int(used * GiB + 1.6 * GiB)),
        **kw,
    )


def snap(at: float, *vms: VMView, host_used: float = 60) -> Snapshot:
    return Snapshot(
        at_seconds=at, host=HostView(total_bytes=110 * GiB, used_bytes=int(host_used * GiB)), vms=vms
    )


def rounds(policy: HvballoonPolicy, views: list[VMView]) -> list[Any]:
    state, out = policy.initial_state(), []
    for i, v in enumerate(views):
        plan = policy.decide(snap(i * 10.0, v), state)
        state = plan.state
        out.append(plan.for_vm("a"))
    return out


def test_lowers_cautiously_towards_use_plus_headroom() -> None:
    # without spike allowance, the floor is use + headroom
    p = rounds(HvballoonPolicy(spike_fraction=0), [vm(16, 4)])[0]
    assert p.rule == "hvballoon.lower"
    assert p.target_bytes == 16 * GiB - int(0.05 * 16 * GiB)  # 5 % of the maximum per round
    assert p.inputs["floor_bytes"] == 4 * GiB + int(1.6 * GiB)
    # and holds at the floor
    p = rounds(HvballoonPolicy(spike_fraction=0), [vm(5.7, 4)])[0]
    assert p.target_bytes is None and p.rule == "hvballoon.hold"


def test_surge_deflates_fully_and_then_waits_for_calm() -> None:
    views = [vm(6, 4), vm(6, 5.5), vm(16, 5.5), vm(16, 5.5)]
    out = rounds(HvballoonPolicy(), views)
    assert out[1].rule == "hvballoon.surge" and out[1].target_bytes == 16 * GiB
    assert "free" in out[1].reason or "rose" in out[1].reason
    assert out[3].rule == "hvballoon.calming" and out[3].target_bytes is None


def test_swap_in_is_a_surge() -> None:
    out = rounds(HvballoonPolicy(), [vm(8, 4, swap_in=0), vm(8, 4, swap_in=10 * MiB)])
    assert out[1].rule == "hvballoon.surge" and "swapped in" in out[1].reason


def test_rising_trend_raises_ahead_of_need() -> None:
    # +100 MiB every 10 s: the projected use a minute ahead is 600 MiB higher
    views = [vm(6.2, 4 + i * 100 / 1024) for i in range(6)]
    out = rounds(HvballoonPolicy(), views)
    last = out[-1]
    assert last.inputs["trend_bytes_per_second"] > 9 * MiB
    assert last.rule == "hvballoon.raise"
    assert last.target_bytes > 4.5 * GiB + 1.6 * GiB + 500 * MiB


def test_self_managed_is_given_its_maximum_and_never_lowered() -> None:
    settings = VMSettings(self_managed=True)
    p = rounds(HvballoonPolicy(), [vm(12, 3, settings=settings)])[0]
    assert p.rule == "hvballoon.self_managed" and p.target_bytes == 16 * GiB
    p = rounds(HvballoonPolicy(), [vm(16, 3, settings=settings)])[0]
    assert p.target_bytes is None


def test_dynamic_memory_is_not_lowered() -> None:
    p = rounds(HvballoonPolicy(), [vm(16, 3, mechanism=Mechanism.DYNAMIC_MEMORY, can_lower=False)])[0]
    assert p.target_bytes is None and p.rule == "hvballoon.mechanism"


def test_a_host_with_room_lends_spike_allowance() -> None:
    policy = HvballoonPolicy()
    plan = policy.decide(
        Snapshot(at_seconds=0, host=HostView(total_bytes=110 * GiB, used_bytes=20 * GiB), vms=(vm(16, 4),)),
        policy.initial_state(),
    )
    p = plan.for_vm("a")
    assert p is not None and p.inputs["spike_allowance_bytes"] == int(0.15 * 16 * GiB)


def test_missing_figures_hold() -> None:
    v = VMView(
        id="a", name="a", mechanism=Mechanism.BALLOON, maximum_bytes=GiB, current_bytes=GiB, target_bytes=GiB
    )
    p = rounds(HvballoonPolicy(), [v])[0]
    assert p.target_bytes is None and "never lower blind" in p.reason


def test_a_steady_vm_watched_long_enough_keeps_a_smaller_headroom() -> None:
    policy = HvballoonPolicy(spike_fraction=0)
    # guard floor as the controller computes it with the policy's guard rails: used + 256 MiB
    views = [vm(16, 4, guard_floor_bytes=4 * GiB + 256 * MiB) for _ in range(32)]
    out = rounds(policy, [v.model_copy(update={"target_bytes": 16 * GiB}) for v in views])
    # the first five minutes: the session's proportional margin (10 % of the maximum)
    assert out[0].inputs["settled"] is False
    assert out[0].inputs["headroom_bytes"] == int(0.10 * 16 * GiB)
    # then, steady use: the session's absolute margin is enough
    assert out[-1].inputs["settled"] is True
    assert out[-1].inputs["headroom_bytes"] == 256 * MiB
    assert out[-1].inputs["floor_bytes"] == 4 * GiB + 256 * MiB


def test_a_noisy_vm_keeps_a_headroom_sized_by_its_variability() -> None:
    policy = HvballoonPolicy(spike_fraction=0)
    wobble = [0, 300, -200, 250, -300, 100] * 6
    views = [vm(16, 6 + w / 1024, guard_floor_bytes=int((6 + w / 1024) * GiB) + 256 * MiB) for w in wobble]
    last = rounds(policy, views)[-1]
    assert last.inputs["settled"] is True
    # 2 x its largest one-round rise (550 MiB) and 3 sigma of its one-round changes over two rounds
    assert last.inputs["headroom_bytes"] >= 2 * 550 * MiB
    assert last.inputs["headroom_bytes"] >= 3 * last.inputs["rise_sigma_bytes"] * 2**0.5 - 1


def test_our_policy_narrows_only_the_proportional_margin() -> None:
    from hvballoon.session import GuardRails

    session = GuardRails()
    rails = HvballoonPolicy().guard_rails(session)
    assert rails.margin_fraction == 0
    assert rails.margin_bytes == session.margin_bytes
    assert rails.max_stats_age_seconds == session.max_stats_age_seconds
    assert HvballoonPolicy(own_guard_rails=False).guard_rails(session) is session


def test_a_busy_host_lends_no_spike_allowance() -> None:
    # lent memory fills with page cache the host must back: nothing is lent above 85 % committed
    policy = HvballoonPolicy(lend_below=0.05)
    plan = policy.decide(
        Snapshot(at_seconds=0, host=HostView(total_bytes=110 * GiB, used_bytes=20 * GiB), vms=(vm(16, 4),)),
        policy.initial_state(),
    )
    p = plan.for_vm("a")
    assert p is not None and p.inputs["spike_allowance_bytes"] == 0
