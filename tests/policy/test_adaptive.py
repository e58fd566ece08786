"""Our policy as a pure function: settling, headroom for a plausible surge, siblings, the host's
reserve, surges given back at once, quick rounds while exposed, calm hands."""

from __future__ import annotations

from typing import Any

from hvballoon.models import Mechanism
from hvballoon.policy.adaptive import HvballoonPolicy, sibling_key
from hvballoon.policy.base import Plan
from hvballoon.policy.model import HostView, Snapshot, VMSettings, VMView
from hvballoon.units import GiB, MiB, format_size

SETTLE = 300.0


def lowering(**options: Any) -> HvballoonPolicy:
    """The policy as these tests study its lowers, raises, reserve and waves: on a host of one or
    a few VMs that it could back whole, which the default leaves alone (``hold_when_uncommitted``,
    ``tests/policy/test_uncommitted.py``); here that hold is set aside, as on an overcommitted host."""
    return HvballoonPolicy(**{"hold_when_uncommitted": False, **options})


def vm(
    target: float, used: float, *, swap_in: int = 0, vm_id: str = "a", name: str = "a", **kw: Any
) -> VMView:
    return VMView(
        id=vm_id,
        name=name,
        mechanism=kw.pop("mechanism", Mechanism.BALLOON),
        maximum_bytes=kw.pop("maximum_bytes", 16 * GiB),
        current_bytes=int(target * GiB),
        target_bytes=int(target * GiB),
        used_bytes=int(used * GiB),
        swap_in_bytes=swap_in,
        **kw,
    )


def snap(at: float, *vms: VMView, host_used: float = 40) -> Snapshot:
    return Snapshot(
        at_seconds=at,
        fast_interval_seconds=1.0,
        host=HostView(total_bytes=110 * GiB, used_bytes=int(host_used * GiB)),
        vms=vms,
    )


def run(policy: HvballoonPolicy, rounds: list[tuple[float, list[VMView], float]]) -> list[Plan]:
    """Rounds of ``(time, VMs, host use in GiB)``; the plans in order."""
    state, out = policy.initial_state(), []
    for at, views, host_used in rounds:
        plan = policy.decide(snap(at, *views, host_used=host_used), state)
        state = plan.state
        out.append(plan)
    return out


def watched(
    views: list[VMView], *, host_used: float = 40, every: float = 1.0
) -> list[tuple[float, list[VMView], float]]:
    """The same VMs for the settling time."""
    return [(k * every, views, host_used) for k in range(int(SETTLE / every) + 1)]


def test_a_vm_is_lowered_to_its_use_plus_its_whole_plausible_surge_from_the_first_round() -> None:
    p = run(lowering(), [(0, [vm(16, 3)], 40)])[0].for_vm("a")
    # use + a plausible surge of 60 % of its size, the host having the memory
    assert p is not None and p.rule == "hvballoon.lower"
    assert p.target_bytes == 3 * GiB + int(0.6 * 16 * GiB)


def test_headroom_is_cut_only_once_a_vm_has_been_watched() -> None:
    cached = vm(16, 3, host_consumed_bytes=16 * GiB)
    plans = run(lowering(), watched([cached], host_used=108))
    first, last = plans[0].for_vm("a"), plans[-1].for_vm("a")
    assert first is not None and first.target_bytes == 3 * GiB + int(0.6 * 16 * GiB)
    assert last is not None and last.target_bytes is not None and last.target_bytes < first.target_bytes


def test_a_vm_rising_beyond_its_noise_gets_its_whole_size_back_at_once() -> None:
    policy = lowering()
    steady = watched([vm(12.6, 3)])
    plans = run(policy, [*steady, (SETTLE + 2, [vm(12.6, 8)], 40)])
    p = plans[-1].for_vm("a")
    assert p is not None and p.rule == "hvballoon.surge" and p.target_bytes == 16 * GiB
    assert "rose" in p.reason
    # a surge asks for quick rounds
    assert plans[-1].next_round_seconds == 1.0


def test_swap_in_is_a_surge() -> None:
    plans = run(lowering(), [(0, [vm(8, 4)], 40), (10, [vm(8, 4, swap_in=10 * MiB)], 40)])
    p = plans[-1].for_vm("a")
    assert p is not None and p.rule == "hvballoon.surge" and "swapped in" in p.reason


def test_after_a_surge_it_is_not_lowered_within_the_calm_time_unless_its_use_fell() -> None:
    policy = lowering()
    rounds = [*watched([vm(12.6, 3)]), (SETTLE + 2, [vm(12.6, 8)], 40)]
    rounds += [(SETTLE + 2 + 10 * k, [vm(16, 8)], 40) for k in range(1, 30)]
    plans = run(policy, rounds)
    after = [p.for_vm("a") for p in plans[-29:]]
    assert all(p is not None and p.target_bytes is None for p in after), [p.rule for p in after if p]
    # its use fell by more than the dead band: it may be lowered again, before the calm time
    plans = run(policy, [*rounds, (SETTLE + 300, [vm(16, 3)], 40)])
    p = plans[-1].for_vm("a")
    assert p is not None and p.rule == "hvballoon.lower"


def test_a_vm_gets_the_headroom_its_siblings_needed() -> None:
    policy = lowering(surge_fraction=0.2)
    web02 = vm(16, 2, vm_id="b", name="web02")
    rounds = [(k * 10.0, [vm(16, 2, name="web01"), web02], 40.0) for k in range(31)]
    # web01 rises by 10 GiB within a minute; web02 has shown no variability
    rounds.append((310.0, [vm(16, 12, name="web01"), web02], 50.0))
    plans = run(policy, rounds)
    alone = run(lowering(surge_fraction=0.2), [(t, [web02], h) for t, _, h in rounds])
    p, q = plans[-1].for_vm("b"), alone[-1].for_vm("b")
    assert p is not None and q is not None
    assert q.inputs["plausible_surge_bytes"] == int(0.2 * 16 * GiB)
    assert p.inputs["plausible_surge_bytes"] >= 10 * GiB
    assert sibling_key("web01", 16 * GiB) == sibling_key("web02", 16 * GiB) != sibling_key("web02", 8 * GiB)


def test_a_host_short_of_its_reserve_cuts_headroom_where_page_cache_takes_it() -> None:
    # a VM that uses 3 GiB and whose page cache fills the rest: the host backs all 16 GiB
    cached = vm(16, 3, host_consumed_bytes=16 * GiB)
    roomy = run(lowering(), watched([cached], host_used=40))[-1].for_vm("a")
    short = run(lowering(), watched([cached], host_used=105))[-1]
    p = short.for_vm("a")
    assert roomy is not None and p is not None
    assert p.rule == "hvballoon.lower" and p.target_bytes is not None and roomy.target_bytes is not None
    assert p.target_bytes < roomy.target_bytes
    assert p.inputs["headroom_level"] < 1 and p.inputs["host_short_bytes"] > 0
    assert short.next_round_seconds == 1.0


def test_a_host_short_while_no_vm_is_watched_yet_cuts_only_what_it_needs_once_they_are() -> None:
    # four VMs whose page cache fills them, on a host short of its reserve from the first round:
    # before the VMs have been watched there is nothing to steer, which is no reason to remember
    # the lowest headroom level for the first round that can steer them
    fleet = [vm(16, 3, vm_id=n, name=n, host_consumed_bytes=16 * GiB) for n in "abcd"]
    last = run(lowering(), watched(fleet, host_used=100))[-1]
    for n in "abcd":
        p = last.for_vm(n)
        assert p is not None and p.rule == "hvballoon.lower" and p.target_bytes is not None
        # the host lacks ~15 GiB: a little below each VM's whole plausible surge, not its use
        assert p.target_bytes > 11 * GiB, format_size(p.target_bytes)
        assert p.inputs["headroom_level"] > 0.5


def test_the_reserve_covers_what_a_plausible_wave_would_take_from_the_host() -> None:
    # nine VMs whose headroom is free (their surge would take 9.6 GiB each from the host) and one
    # whose page cache fills it; the host has 25 GiB free, more than a fifth of its 110 GiB
    fleet = [vm(12.6, 3, vm_id=f"w{k}", name=f"web{k:02}", host_consumed_bytes=3 * GiB) for k in range(9)]
    fleet.append(vm(16, 3, vm_id="c", name="cache01", host_consumed_bytes=16 * GiB))
    last = run(lowering(), watched(fleet, host_used=85))[-1]
    p = last.for_vm("c")
    assert p is not None and p.rule == "hvballoon.lower" and p.target_bytes is not None
    # a third of the 86.4 GiB their surges would take: more than the fifth of the host
    assert (
        p.inputs["host_reserve_bytes"]
        == p.inputs["host_wave_reserve_bytes"]
        == int(9 * int(0.6 * 16 * GiB) / 3)
    )
    assert p.inputs["headroom_level"] < 1 and p.target_bytes < 3 * GiB + int(0.6 * 16 * GiB)
    # a reserve of a fifth only: the page cache keeps its whole plausible surge
    calm = run(lowering(wave_share=0), watched(fleet, host_used=85))[-1].for_vm("c")
    assert calm is not None and calm.inputs["host_reserve_bytes"] == int(0.2 * 110 * GiB)
    assert calm.target_bytes == 3 * GiB + int(0.6 * 16 * GiB)
    # ESXi reclaims for its host itself: limits do not count
    limits = [v.model_copy(update={"mechanism": Mechanism.LIMIT}) for v in fleet]
    esxi = run(lowering(), watched(limits, host_used=85))[-1].for_vm("c")
    assert esxi is not None and esxi.inputs["host_reserve_bytes"] == int(0.2 * 110 * GiB)
    # and never more than max_reserve_fraction of the host's memory
    capped = run(lowering(max_reserve_fraction=0.22), watched(fleet, host_used=85))[-1].for_vm("c")
    assert capped is not None and capped.inputs["host_reserve_bytes"] == int(0.22 * 110 * GiB)


def test_an_esxi_limit_keeps_the_whole_plausible_surge_while_the_host_is_near_its_floor() -> None:
    # the same VM, page cache filling it, on a host near its floor (5 GiB free of 110): a KVM
    # balloon is cut into its headroom (it deflates within seconds when a surge comes), an ESXi
    # limit is not (ESXi enforces a limit at its own next allocation and gives a balloon back
    # only once it has room)
    def last(host_used: float, mechanism: Mechanism) -> Any:
        views = [vm(16, 3, host_consumed_bytes=16 * GiB, mechanism=mechanism)]
        # rounds every second, as the policy asks (rounds that come late are treated apart)
        return run(lowering(), watched(views, host_used=host_used, every=1.0))[-1].for_vm("a")

    whole = 3 * GiB + int(0.6 * 16 * GiB)
    cut, kept = last(105, Mechanism.BALLOON), last(105, Mechanism.LIMIT)
    assert cut.rule == "hvballoon.lower" and cut.target_bytes < whole and cut.inputs["headroom_level"] < 1
    # the limit still comes down to use + its whole plausible surge, no further
    assert kept.rule == "hvballoon.lower" and kept.target_bytes == whole
    # short of its reserve but well above its floor, ESXi has room to give a balloon back: the
    # limit is cut like the balloon
    roomier = last(93, Mechanism.LIMIT)
    assert roomier.inputs["host_short_bytes"] > 0 and roomier.target_bytes < whole


def test_an_esxi_limit_keeps_half_its_plausible_surge_however_short_the_host() -> None:
    # ESXi applies a raised limit only at its next reallocation and gives a balloon back only
    # once it has room: a limit is never cut below use + half its plausible surge, where a
    # balloon beside it (deflated within seconds) is cut deeper
    def cut(mechanism: Mechanism, **options: float) -> int:
        views = [vm(16, 3, host_consumed_bytes=16 * GiB, mechanism=mechanism)]
        p = run(lowering(**options), watched(views, host_used=100))[-1].for_vm("a")
        assert p is not None and p.rule == "hvballoon.lower" and p.inputs["host_short_bytes"] > 0
        return p.target_bytes or 0

    half = 3 * GiB + int(0.5 * 0.6 * 16 * GiB)
    assert cut(Mechanism.BALLOON) < half <= cut(Mechanism.LIMIT)
    # the share is an option: at 0 a limit is cut like a balloon
    assert cut(Mechanism.LIMIT, limit_min_level=0.0) == cut(Mechanism.BALLOON)
    import pytest

    with pytest.raises(ValueError, match="limit_min_level"):
        lowering(limit_min_level=1.5)


def test_a_calm_host_waits_its_regular_interval() -> None:
    # once lowered to use + its whole plausible surge, nothing is exposed
    plans = run(lowering(), [*watched([vm(16, 3)]), (SETTLE + 10, [vm(12.6, 3)], 40)])
    assert plans[-1].next_round_seconds is None


def test_self_managed_is_given_its_maximum_and_never_lowered() -> None:
    settings = VMSettings(self_managed=True)
    p = run(lowering(), [(0, [vm(12, 3, settings=settings)], 40)])[0].for_vm("a")
    assert p is not None and p.rule == "hvballoon.self_managed" and p.target_bytes == 16 * GiB
    p = run(lowering(), watched([vm(16, 3, settings=settings)]))[-1].for_vm("a")
    assert p is not None and p.target_bytes is None


def test_dynamic_memory_is_not_lowered() -> None:
    dm = vm(16, 3, mechanism=Mechanism.DYNAMIC_MEMORY, can_lower=False)
    p = run(lowering(), watched([dm]))[-1].for_vm("a")
    assert p is not None and p.target_bytes is None and p.rule == "hvballoon.mechanism"


def test_missing_figures_hold() -> None:
    v = VMView(
        id="a", name="a", mechanism=Mechanism.BALLOON, maximum_bytes=GiB, current_bytes=GiB, target_bytes=GiB
    )
    p = run(lowering(), [(0, [v], 40)])[0].for_vm("a")
    assert p is not None and p.target_bytes is None and "never lower blind" in p.reason


def test_our_policy_narrows_only_the_proportional_margin() -> None:
    from hvballoon.session import GuardRails

    session = GuardRails()
    rails = lowering().guard_rails(session)
    assert rails.margin_fraction == 0
    assert rails.margin_bytes == session.margin_bytes
    assert rails.max_stats_age_seconds == session.max_stats_age_seconds
    assert lowering(own_guard_rails=False).guard_rails(session) is session


def test_bad_knobs_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="surge_fraction"):
        lowering(surge_fraction=1.5)
    with pytest.raises(ValueError, match="free_fraction"):
        lowering(free_fraction=1.0)
    with pytest.raises(ValueError, match="wave_share"):
        lowering(wave_share=-0.1)
    with pytest.raises(ValueError, match="max_reserve_fraction"):
        lowering(max_reserve_fraction=1.0)


def test_a_wave_deals_the_reserve_out_to_the_siblings_of_the_surging_vms() -> None:
    def fleet(web01_used: float, targets: dict[str, float]) -> list[VMView]:
        names = ("web01", "web02", "web03", "batch01")
        return [
            vm(
                targets.get(n, 16),
                web01_used if n == "web01" else 3,
                vm_id=n,
                name=n,
                host_consumed_bytes=16 * GiB,  # page cache fills them: cutting headroom frees memory
            )
            for n in names
        ]

    policy = lowering()
    # a host short of its reserve: every VM's headroom is cut to the same level
    plans = run(policy, [(k * 1.0, fleet(3, {}), 110) for k in range(SETTLE_ROUNDS)])
    cut = {n: plans[-1].for_vm(n) for n in ("web01", "web02", "web03", "batch01")}
    assert all(p is not None and p.rule == "hvballoon.lower" for p in cut.values())
    lowered = {n: p.target_bytes / GiB for n, p in cut.items() if p is not None and p.target_bytes}
    state = plans[-1].state
    # web01 surges by 6 GiB; the host has memory free again
    plan = policy.decide(snap(SETTLE + 12, *fleet(9, lowered), host_used=60), state)
    by = {n: plan.for_vm(n) for n in ("web01", "web02", "web03", "batch01")}
    assert by["web01"] is not None and by["web01"].rule == "hvballoon.surge"
    for sibling in ("web02", "web03"):
        p = by[sibling]
        assert p is not None and p.rule == "hvballoon.wave", p
        assert p.target_bytes == 3 * GiB + p.inputs["plausible_surge_bytes"]
    # a VM of another kind keeps what it has: the wave is not its
    assert by["batch01"] is not None and by["batch01"].rule != "hvballoon.wave"
    assert plan.next_round_seconds == 1.0


KINDS = ("web01", "api01", "batch01", "cache01")


def _cached_fleet(
    targets: dict[str, float], *, used: float = 3, names: tuple[str, ...] = KINDS
) -> list[VMView]:
    """Alike-sized VMs (by default four of different kinds) whose page cache fills them
    (cutting their headroom frees memory the host backs)."""
    return [
        vm(targets.get(n, 16), used, vm_id=n, name=n, host_consumed_bytes=int(targets.get(n, 16) * GiB))
        for n in names
    ]


def _cut_fleet(policy: HvballoonPolicy, names: tuple[str, ...] = KINDS) -> tuple[dict[str, float], Any]:
    """The fleet watched on a host short of its reserve: every VM's headroom cut."""
    plans = run(policy, [(k * 1.0, _cached_fleet({}, names=names), 110) for k in range(SETTLE_ROUNDS)])
    targets = {}
    for n in names:
        p = plans[-1].for_vm(n)
        assert p is not None and p.rule == "hvballoon.lower" and p.target_bytes is not None
        targets[n] = p.target_bytes / GiB
    return targets, plans[-1].state


def test_rounds_that_come_late_deal_the_reserve_out_to_every_cut_vm() -> None:
    policy = lowering(calm_seconds=5)  # the cut is not within the calm time any more
    targets, state = _cut_fleet(policy)
    # the host has memory free again; the next round comes 1 s after the one before (on time)
    on_time = policy.decide(snap(SETTLE + 1, *_cached_fleet(targets), host_used=60), state)
    assert all((p.rule != "hvballoon.late") for p in on_time.proposals)
    # ... or 9 s after, where 1 s was asked for: a surge could have gone unseen that long
    late = policy.decide(snap(SETTLE + 9, *_cached_fleet(targets), host_used=60), state)
    raised = [p for p in late.proposals if p.rule == "hvballoon.late"]
    assert len(raised) == 4
    for p in raised:
        assert p.target_bytes == 3 * GiB + p.inputs["plausible_surge_bytes"]
        assert p.inputs["host_reserve_bytes"] < int(0.2 * 110 * GiB)  # only the floor is kept
    assert late.next_round_seconds == 1.0
    # the memory dealt out is bounded by what is free above the floor: a host with less free
    # memory makes fewer VMs whole
    tighter = policy.decide(snap(SETTLE + 9, *_cached_fleet(targets), host_used=97), state)
    assert 0 < sum(p.rule == "hvballoon.late" for p in tighter.proposals) < 4


def test_a_wave_deals_the_reserve_out_to_the_surgers_siblings_first_then_to_every_cut_vm() -> None:
    policy = lowering(calm_seconds=0.5)  # the cut a second ago is not within the calm time
    names = ("web01", "web02", "api01", "batch01")
    targets, state = _cut_fleet(policy, names)

    def fleet(*surging: str) -> list[VMView]:
        views = _cached_fleet(targets, names=names)
        return [
            vm(targets[v.name], 9, vm_id=v.id, name=v.name, host_consumed_bytes=v.host_consumed_bytes)
            if v.name in surging
            else v
            for v in views
        ]

    def dealt(plan: Plan) -> set[str]:
        out = set()
        for p in plan.proposals:
            if p.rule == "hvballoon.wave" and p.target_bytes is not None:
                assert p.target_bytes == 3 * GiB + p.inputs["plausible_surge_bytes"]
                out.add(p.vm_id)
        return out

    # web01 surges on a host with memory free again, on time: its sibling web02 is the likeliest
    # next, and a VM of another kind may be too (its surge may rise within a second or two)
    roomy = policy.decide(snap(SETTLE + 1, *fleet("web01"), host_used=60), state)
    assert roomy.for_vm("web01").rule == "hvballoon.surge"  # type: ignore[union-attr]
    assert dealt(roomy) == {"web02", "api01", "batch01"}
    # with room above the host's floor for web01's surge and one more VM, the sibling comes first
    missing = 3 * GiB + roomy.for_vm("web02").inputs["plausible_surge_bytes"] - int(targets["web02"] * GiB)  # type: ignore[union-attr]
    floor, own = int(0.05 * 110 * GiB), 7 * GiB  # web01 may take its whole size (16 GiB) less its 9
    used = (110 * GiB - floor - own - missing - GiB // 2) / GiB
    tight = policy.decide(snap(SETTLE + 1, *fleet("web01"), host_used=used), state)
    assert dealt(tight) == {"web02"}
    # two kinds surging: the siblings of both, and the VM of a third kind
    both = policy.decide(snap(SETTLE + 1, *fleet("web01", "api01"), host_used=60), state)
    assert dealt(both) == {"web02", "batch01"}


def test_a_wave_leaves_the_others_what_the_hypervisor_may_still_hand_out_itself() -> None:
    policy = lowering(calm_seconds=0.5)
    names = ("web01", "web02", "api01", "batch01")
    targets, state = _cut_fleet(policy, names)
    surging = [
        vm(targets[v.name], 9, vm_id=v.id, name=v.name, host_consumed_bytes=v.host_consumed_bytes)
        if v.name == "web01"
        else v
        for v in _cached_fleet(targets, names=names)
    ]
    # a Dynamic Memory VM beside them: Hyper-V gives it memory as its use rises, without asking;
    # its plausible surge (60 % of 64 GiB) would take 37.4 GiB more of the host
    dm = vm(8, 7, vm_id="sql01", name="sql01", maximum_bytes=64 * GiB, mechanism=Mechanism.DYNAMIC_MEMORY,
            can_lower=False)  # fmt: skip
    plan = policy.decide(snap(SETTLE + 1, *surging, dm, host_used=60), state)
    dealt = {p.vm_id for p in plan.proposals if p.rule == "hvballoon.wave" and p.target_bytes is not None}
    assert dealt == {"web02"}  # the sibling still; the other kinds not out of what sql01 may take
    without = policy.decide(snap(SETTLE + 1, *surging, host_used=60), state)
    assert {
        p.vm_id for p in without.proposals if p.rule == "hvballoon.wave" and p.target_bytes is not None
    } == {
        "web02",
        "api01",
        "batch01",
    }


def _web01_surges() -> tuple[HvballoonPolicy, Any, list[VMView]]:
    """The cached fleet watched on a host with room; then web01 surging by 6 GiB."""
    policy = lowering()
    plans = run(policy, [(k * 1.0, _cached_fleet({}), 60) for k in range(SETTLE_ROUNDS)])
    fleet = _cached_fleet({})
    fleet[0] = vm(16, 9, vm_id="web01", name="web01", host_consumed_bytes=16 * GiB)
    return policy, plans[-1].state, fleet


def test_no_headroom_is_cut_while_a_wave_rises() -> None:
    policy, state, fleet = _web01_surges()
    # web01 surges and the host is short of its reserve (but above its floor): nobody else's
    # headroom is cut while the wave rises
    plan = policy.decide(snap(SETTLE_ROUNDS, *fleet, host_used=95), state)
    assert plan.for_vm("web01") is not None and plan.for_vm("web01").rule == "hvballoon.surge"  # type: ignore[union-attr]
    for n in ("api01", "batch01", "cache01"):
        p = plan.for_vm(n)
        assert p is not None and p.target_bytes is None and p.rule == "hvballoon.wave", p
    # without the surge, the same host cuts them
    calm = policy.decide(snap(SETTLE_ROUNDS, *_cached_fleet({}), host_used=95), state)
    assert any(p.rule == "hvballoon.lower" for p in calm.proposals)


def test_a_wave_that_takes_the_host_below_its_floor_cuts_the_calm_vms_page_cache() -> None:
    policy, state, fleet = _web01_surges()
    # the surge takes the host below its floor (5 % of 110 GiB): its OOM killer is next, so the
    # calm VMs give their page cache up, wave or not; the surging VM keeps its whole size
    plan = policy.decide(snap(SETTLE_ROUNDS, *fleet, host_used=106), state)
    surging = plan.for_vm("web01")
    assert surging is not None and surging.rule == "hvballoon.surge"
    for n in ("api01", "batch01", "cache01"):
        p = plan.for_vm(n)
        assert p is not None and p.rule == "hvballoon.lower" and p.target_bytes is not None, p
        assert p.target_bytes < 16 * GiB  # the page cache above its goal is given up


SETTLE_ROUNDS = int(SETTLE) + 1


def test_a_host_below_its_floor_cuts_only_as_many_calm_vms_as_it_needs() -> None:
    policy = lowering(calm_seconds=5)
    targets, state = _cut_fleet(policy)
    late = policy.decide(snap(SETTLE + 9, *_cached_fleet(targets), host_used=60), state)
    raised = {p.vm_id: p.target_bytes / GiB for p in late.proposals if p.target_bytes is not None}
    assert len(raised) == 4
    # a second later the page caches have filled what was given back and the host is below its
    # floor (5 % of 110 GiB): the raised VMs are in their calm time, yet some are cut, not all
    now = {**targets, **raised}
    below = policy.decide(snap(SETTLE + 10, *_cached_fleet(now), host_used=106), late.state)
    rules = [p.rule for p in below.proposals]
    assert 0 < rules.count("hvballoon.lower") < 4, rules
    assert "hvballoon.calming" in rules


def test_a_rescue_under_way_is_not_made_again_while_its_balloons_inflate() -> None:
    policy = lowering(calm_seconds=5)
    targets, state = _cut_fleet(policy)
    late = policy.decide(snap(SETTLE + 9, *_cached_fleet(targets), host_used=60), state)
    now = {**targets, **{p.vm_id: p.target_bytes / GiB for p in late.proposals if p.target_bytes is not None}}
    below = policy.decide(snap(SETTLE + 10, *_cached_fleet(now), host_used=106), late.state)
    cut = {p.vm_id: p.target_bytes for p in below.proposals if p.rule == "hvballoon.lower"}
    assert 0 < len(cut) < 4
    # a second later their balloons are still inflating: they hold what they held and the host
    # is as short as it was; what they are about to give back covers it, so no other VM is cut
    inflating = [
        v.model_copy(update={"target_bytes": cut[v.id]}) if v.id in cut else v for v in _cached_fleet(now)
    ]
    again = policy.decide(snap(SETTLE + 11, *inflating, host_used=106), below.state)
    assert [p.vm_id for p in again.proposals if p.rule == "hvballoon.lower"] == []
    # once they have given it back, a host still below its floor is defended again
    done = [
        v.model_copy(
            update={"target_bytes": cut[v.id], "current_bytes": cut[v.id], "host_consumed_bytes": cut[v.id]}
        )
        if v.id in cut
        else v
        for v in _cached_fleet(now)
    ]
    still = policy.decide(snap(SETTLE + 12, *done, host_used=106), again.state)
    assert {p.vm_id for p in still.proposals if p.rule == "hvballoon.lower"} - set(cut)


def test_a_page_cache_squeezed_by_its_balloon_keeps_its_appetite() -> None:
    policy = lowering(appetite_seconds=600)
    # its page cache took all 13 GiB above its 3 GiB of use; then it is held at 8 GiB
    first = [(0.0, [vm(16, 3, host_consumed_bytes=16 * GiB)], 40.0)]
    squeezed = run(
        policy, first + [(k * 10.0, [vm(8, 3, host_consumed_bytes=8 * GiB)], 40.0) for k in range(1, 100)]
    )
    # its cache fills what the balloon leaves: its appetite is still 13 GiB after the 600 s
    assert squeezed[-1].state.vms["a"].cache_bytes == 13 * GiB
    # a guest that leaves 4 GiB of what it has free shows an appetite of its own: forgotten
    roomy = run(
        policy, first + [(k * 10.0, [vm(8, 3, host_consumed_bytes=4 * GiB)], 40.0) for k in range(1, 100)]
    )
    assert roomy[-1].state.vms["a"].cache_bytes == 1 * GiB


def test_a_sweep_that_hangs_makes_cut_vms_whole_within_what_the_host_can_back() -> None:
    # four alike VMs whose page caches took 5 GiB above their 4 GiB of use, cut to 6 GiB since;
    # the host is short of its reserve, so the round cuts them further
    names = [f"web0{k}" for k in range(1, 5)]
    roomy = [vm(16, 4, vm_id=n, name=n, host_consumed_bytes=9 * GiB) for n in names]
    cut = [vm(6, 4, vm_id=n, name=n, host_consumed_bytes=6 * GiB) for n in names]
    whole = int(4 * GiB + 0.6 * 16 * GiB)  # use + a plausible surge of 60 % of 16 GiB
    floor, band = int(0.05 * 110 * GiB), int(0.025 * 110 * GiB)
    for host_used, made_whole in ((94.0, 1), (90.0, 2), (103.0, 0)):
        policy = lowering(late_seconds=1e9)  # these rounds jump in time: none is late
        plan = run(policy, [*watched(roomy), (SETTLE + 700, cut, host_used)])[-1]
        planned = {p.vm_id: p.target_bytes for p in plan.proposals}
        assert {p.rule for p in plan.proposals} == {"hvballoon.lower"}
        assert all(planned[n] is not None and planned[n] < 6 * GiB for n in names)
        # what each raise costs the host: the page cache it would fill (up to use + 5 GiB)
        costs = [
            min(p.target_bytes or 0, 9 * GiB) - min(planned[p.vm_id] or 0, 9 * GiB) for p in plan.contingency
        ]
        assert costs == [p.inputs["host_backed_cost_bytes"] for p in plan.contingency]
        assert all(p.rule == "hvballoon.blind" and p.target_bytes == whole for p in plan.contingency)
        # as many as the budget allows, and the host keeps a band above its floor afterwards
        assert len(plan.contingency) == made_whole, host_used
        free = int((110 - host_used) * GiB)
        assert free - sum(costs) >= floor + band or not costs, host_used
        # and one more would not fit (each costs use + 5 GiB - its cut target of 4.375 GiB)
        assert free - sum(costs) - (9 * GiB - int(4.375 * GiB)) < floor + band, host_used


def test_a_raise_made_while_a_sweep_hung_counts_as_a_raise_of_the_policy() -> None:
    names = [f"web0{k}" for k in range(1, 5)]
    roomy = [vm(16, 4, vm_id=n, name=n, host_consumed_bytes=9 * GiB) for n in names]
    cut = [vm(6, 4, vm_id=n, name=n, host_consumed_bytes=6 * GiB) for n in names]
    policy = lowering(late_seconds=1e9)
    rounds = [*watched(roomy), (SETTLE + 700, cut, 94.0)]
    (braced,) = run(policy, rounds)[-1].contingency
    whole = braced.target_bytes or 0
    # the controller made it; the round after sees it there (the others where the round left them)
    after = [
        vm(whole / GiB, 4, vm_id=n, name=n, host_consumed_bytes=6 * GiB)
        if n == braced.vm_id
        else vm(4.375, 4, vm_id=n, name=n, host_consumed_bytes=4 * GiB)
        for n in names
    ]
    plan = run(policy, [*rounds, (SETTLE + 715, after, 94.0)])[-1]
    p = plan.for_vm(braced.vm_id)
    # the host is still short of its reserve, yet the raised VM is not cut within the calm time
    assert p is not None and p.target_bytes is None and p.rule == "hvballoon.calming", p
    # without the contingency in its memory, the same round would cut it again
    fresh = lowering(late_seconds=1e9)
    q = run(fresh, [*watched(roomy), (SETTLE + 715, after, 94.0)])[-1].for_vm(braced.vm_id)
    assert q is not None and q.rule == "hvballoon.lower"


def test_min_level_keeps_that_share_of_the_plausible_surge_in_every_guest() -> None:
    # a host short of its reserve cuts cached VMs' headroom deep by default; with min_level the
    # cut stops at that share of each VM's plausible surge, and the level reported says so
    deep, _ = _cut_fleet(lowering())
    half, state = _cut_fleet(lowering(min_level=0.5))
    for n in KINDS:
        assert deep[n] < half[n]
    plan = lowering(min_level=0.5).decide(snap(SETTLE + 1, *_cached_fleet(half), host_used=110), state)
    for n in KINDS:
        p = plan.for_vm(n)
        assert p is not None
        surge = p.inputs["plausible_surge_bytes"]
        assert half[n] * GiB >= 3 * GiB + 0.5 * surge - MiB
        assert p.inputs["headroom_level"] >= 0.5
        assert p.target_bytes is None or p.target_bytes >= 3 * GiB + 0.5 * surge - MiB
    import pytest

    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_level"):
            lowering(min_level=bad)


def test_the_reserve_is_weighed_at_the_level_that_would_keep_it() -> None:
    # nine VMs whose headroom is free and one whose page cache took 13 GiB, cut to its use plus
    # the least headroom while the host was short; then the host has 40 GiB free. Headroom given
    # back to the cached VM fills with its page cache, which its own surge would take without
    # the host backing it: the wave reserve shrinks as the level rises, and the level rises
    # further than a reserve weighed at the deep cut allows
    webs = [vm(12.6, 3, vm_id=f"w{k}", name=f"web{k:02}", host_consumed_bytes=3 * GiB) for k in range(9)]
    policy = lowering()
    plans = run(
        policy,
        watched([*webs, vm(16, 3, vm_id="c", name="cache01", host_consumed_bytes=16 * GiB)], host_used=104),
    )
    cut = plans[-1].for_vm("c")
    assert cut is not None and cut.rule == "hvballoon.lower" and cut.inputs["headroom_level"] == 0
    state, target = plans[-1].state, cut.target_bytes or 0
    for k in range(1, 40):
        low = vm(target / GiB, 3, vm_id="c", name="cache01", host_consumed_bytes=target)
        plan = policy.decide(snap(SETTLE + k, *webs, low, host_used=70), state)
        state = plan.state
    p = plan.for_vm("c")
    assert p is not None
    surge, level = p.inputs["plausible_surge_bytes"], p.inputs["headroom_level"]
    # the host's free memory at that level (the page cache filling the headroom) keeps the
    # reserve at that level (a third of the surges beyond page cache) and two bands
    free_at = 40 * GiB - (level * surge - (target - 3 * GiB))
    reserve_at = (9 * surge + (1 - level) * surge) / 3
    assert free_at >= reserve_at + 2 * 0.025 * 110 * GiB - 64 * MiB
    # weighed at the deep cut, the reserve (31.9 GiB) would have held it near 0.31
    assert level > 0.4


def test_a_round_remembers_what_it_did_not_see_change() -> None:
    """Adding a round's figures keeps every field of the VM's history that the figures do not
    change (the raise, the lower, the surge, when it was first seen): each one named, none left
    behind by a field added later."""
    import dataclasses

    from hvballoon.policy.history import VMHistory

    seen = {"last_at", "used_bytes", "swap_in_bytes", "lows", "highs", "noise", "burst_bytes"}
    seen |= {"burst_at", "cache_bytes", "cache_at"}
    old = VMHistory(
        first_at=1.0,
        last_at=2.0,
        used_bytes=3 * GiB,
        surge_at=1.5,
        raised_at=1.25,
        raised_used_bytes=2 * GiB,
        lowered_at=1.75,
        lowered_used_bytes=GiB,
    )
    defaults = VMHistory(first_at=0.0, last_at=0.0, used_bytes=0)
    kept = [f.name for f in dataclasses.fields(VMHistory) if f.name not in seen]
    # the history above sets every field a round keeps to a value of its own
    assert all(getattr(old, name) != getattr(defaults, name) for name in kept)
    new = lowering()._remember(vm(8, 4), old, 3.0)
    assert {name: getattr(new, name) for name in kept} == {name: getattr(old, name) for name in kept}
    assert new.last_at == 3.0 and new.used_bytes == 4 * GiB
