"""An ESXi guest that holds memory it does not touch (scenario ``idle_held``): ESXi's active
estimate (``guestMemoryUsage``, the esxi backend's ``guest_used_bytes``) reads that part as not in
use, while the guest holds it all the same — what the host backs (``hostMemoryUsage``), ESXi's own
reclaim and the guest's physics are those of the memory it really holds."""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon.errors import ScenarioError
from hvballoon.fake.randomized import random_scenario
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import World

GiB = 2**30
MiB = 2**20


def _data(idle_held: object = None, flavor: str = "esxi", physical: str = "32GiB") -> dict[str, Any]:
    jvm: dict[str, Any] = {"name": "jvm01", "memory": "8GiB", "used": "6GiB"}
    if idle_held is not None:
        jvm["idle_held"] = idle_held
    return {
        "name": "idle",
        "flavor": flavor,
        "host": {"name": "h", "physical": physical, "swap": "8GiB"},
        "vms": [jvm, {"name": "web01", "memory": "8GiB", "used": "2GiB"}],
    }


def _stats(w: World) -> dict[str, Any]:
    with hvballoon.connect("fake://", world=w) as hv:
        return {s.vm.name: s for s in hv.get_stats()}


@pytest.mark.parametrize("value", ["40%", 0.4, "0.4", " 40 % "])
def test_idle_held_is_a_percentage_or_a_fraction(value: object) -> None:
    jvm = parse_scenario(_data(value)).vms[0]
    assert jvm.idle_held == pytest.approx(0.4)


@pytest.mark.parametrize("value", ["lots", True, -0.1, "-5%", "100%", 1, 1.5, "40 percent", [0.4]])
def test_a_malformed_idle_held_is_refused(value: object) -> None:
    """Not a share under the whole: a typed error naming the field, and no world; the same VM
    with 40 % is taken."""
    with pytest.raises(ScenarioError, match="idle_held") as refused:
        parse_scenario(_data(value))
    assert "Extra inputs" not in refused.value.message
    assert parse_scenario(_data("40%")).vms[0].idle_held == pytest.approx(0.4)


def test_esxi_reads_the_untouched_part_as_not_in_use_and_the_host_backs_it_all() -> None:
    plain, idle = (
        World(parse_scenario(_data()), strict=True),
        World(parse_scenario(_data("40%")), strict=True),
    )
    for w in (plain, idle):
        w.advance(60)
    a, b = _stats(plain)["jvm01"], _stats(idle)["jvm01"]
    held = plain.guest("jvm01").used_bytes
    assert idle.guest("jvm01").used_bytes == held  # the guest holds the same
    assert a.guest_used_bytes == a.demand_bytes == held
    assert b.guest_used_bytes == b.demand_bytes == held - int(held * 0.4)  # active: 60 % of it
    assert b.host_consumed_bytes == a.host_consumed_bytes  # consumed: what the host backs
    assert not b.stale
    assert _stats(idle)["web01"].guest_used_bytes == _stats(plain)["web01"].guest_used_bytes


def test_a_limit_below_what_the_guest_holds_makes_it_swap_whatever_esxi_reads() -> None:
    """Lowered to just above its active figure, the guest swaps as a guest whose use is its
    active figure would not: ESXi's reclaim and the guest work on what it holds."""
    w = World(parse_scenario(_data("50%")), strict=True)
    w.advance(30)
    active = _stats(w)["jvm01"].guest_used_bytes
    assert active is not None and active < 4 * GiB
    with hvballoon.connect("fake://", world=w) as hv:
        hv.set_target("jvm01", 4 * GiB)
        w.advance(600)
    jvm = w.guest("jvm01")
    assert jvm.current_bytes <= 4 * GiB + 64 * MiB
    assert jvm.guest_swapped_bytes > 0 or jvm.oom_events > 0


def test_idle_held_is_ignored_off_esxi() -> None:
    """A knob of another flavour: a KVM or Hyper-V guest reports what it uses as before."""
    for flavor in ("kvm", "hyperv"):
        plain, idle = World(parse_scenario(_data(None, flavor))), World(parse_scenario(_data("40%", flavor)))
        for w in (plain, idle):
            w.advance(60)
        a, b = _stats(plain)["jvm01"], _stats(idle)["jvm01"]
        assert (b.guest_used_bytes, b.demand_bytes) == (a.guest_used_bytes, a.demand_bytes), flavor


@pytest.mark.parametrize("seeds", [12, pytest.param(30, marks=pytest.mark.slow)])
def test_random_worlds_draw_idle_held_only_when_asked_and_are_otherwise_the_same(seeds: int) -> None:
    """The option draws from a stream of its own: the seed's world is unchanged besides the
    ESXi guests' idle_held, and without the option no VM has any. The first 12 seeds (the inner
    loop) mark nine VMs on four ESXi hosts, and draw KVM and Hyper-V hosts too."""
    drawn = 0
    for seed in range(seeds):
        plain, idle = random_scenario(seed), random_scenario(seed, idle_held=True)
        assert all(v.idle_held is None for v in plain.vms)
        assert [v.model_copy(update={"idle_held": None}) for v in idle.vms] == list(plain.vms)
        assert idle.model_copy(update={"vms": plain.vms}) == plain  # its faults, step, host too
        marked = [v.idle_held for v in idle.vms if v.idle_held is not None]
        assert idle.flavor == "esxi" or not marked  # an ESXi setting
        assert all(0.2 <= f <= 0.7 for f in marked)
        drawn += len(marked)
    assert drawn > 0


def test_esxi_balloons_a_guest_whose_use_is_partly_idle_harder() -> None:
    """Under pressure ESXi's idle memory tax takes from the VM whose memory is idle by its active
    estimate: of two VMs alike but for the part one holds and does not touch, that one's
    balloon grows first and larger (and without ``idle_held`` the two are ballooned alike)."""

    def balloons(idle_held: object) -> tuple[int, int]:
        vm = {"memory": "8GiB", "used": "6GiB"}
        data = {
            "name": "tax",
            "flavor": "esxi",
            "host": {"name": "h", "physical": "11GiB", "swap": "8GiB"},
            "vms": [{"name": "a", **vm, "idle_held": idle_held}, {"name": "b", **vm}],
        }
        if idle_held is None:
            del data["vms"][0]["idle_held"]
        w = World(parse_scenario(data), strict=True)
        w.advance(300)
        return w.guest("a").ballooned_bytes, w.guest("b").ballooned_bytes

    alike_a, alike_b = balloons(None)
    assert alike_a == alike_b
    idle_a, idle_b = balloons("60%")
    assert idle_a > idle_b + 512 * MiB, (idle_a, idle_b)
