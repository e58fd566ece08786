"""What a guest's workloads ask beyond what it can hold is never dropped: it is an OOM kill.

A guest asked for more than its memory plus its swap runs out: Linux's OOM killer kills a
process, and Windows refuses commits beyond its commit limit (RAM plus page file), so the
application asking fails. The simulator counts either as an OOM kill. What the workloads ask
depends on them alone, not on the VM's configured size, which a policy may move (a Hyper-V
static VM's runtime resize, a Dynamic Memory maximum raised live, ESXi's memory hot-add): the
same workloads ask the same whatever the policy, and what they lose is the physics' answer.
"""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon.fake.scenario import parse_scenario
from hvballoon.fake.world import Block, World
from hvballoon.policy.simulated import simulated_controller, simulated_round
from hvballoon.units import GiB

#: 2 GiB in use, then 4 GiB more from the first minute on (rising over two minutes)
SURGE = {"kind": "spike", "params": {"at": "60s", "duration": "10m", "size": "4GiB", "rise": "2m"}}


def _world(flavor: str, **vm: Any) -> World:
    spec = {"name": "over", "memory": "4GiB", "used": "2GiB", "swap": "1GiB", "workload": SURGE, **vm}
    scenario = {"name": "beyond", "flavor": flavor, "host": {"physical": "32GiB"}, "vms": [{**spec}]}
    return World(parse_scenario(scenario), strict=True)


def _asked(w: World) -> dict[float, float]:
    """What the VM's workloads ask at each simulated step from now on (filled as it runs)."""
    seen: dict[float, float] = {}

    def observe(world: World, block: Block) -> None:
        for t, d in zip(block.times.tolist(), block.demand[:, 0].tolist(), strict=True):
            seen[round(t, 6)] = d

    w.observe(observe)
    return seen


def test_a_kvm_guest_at_full_size_asked_beyond_memory_and_swap_is_oom_killed() -> None:
    w = _world("kvm")
    asked = _asked(w)
    w.advance(300)
    g = w.guest("over")
    assert g.current_bytes == g.memory_bytes == 4 * GiB  # no balloon: it holds all it may
    assert max(asked.values()) == 6 * GiB  # what its workloads ask, whole
    assert g.demand_bytes == 5 * GiB  # what survives the OOM killer: memory plus swap
    assert g.oom_events == 1 and [e["kind"] for e in w.events] == ["oom"]


@pytest.mark.parametrize(
    ("flavor", "vm"),
    [
        ("hyperv", {"memory": "8GiB", "dynamic": False, "startup": "4GiB"}),
        ("hyperv", {"memory": "8GiB", "maximum": "4GiB", "startup": "2GiB", "minimum": "1GiB"}),
        ("esxi", {"memory_hot_add": True}),
    ],
    ids=["hyperv-static", "hyperv-dynamic", "esxi-hot-add"],
)
def test_a_guest_asked_beyond_its_size_and_swap_is_oom_killed_whatever_its_flavour(
    flavor: str, vm: dict[str, Any]
) -> None:
    w = _world(flavor, **vm)
    asked = _asked(w)
    w.advance(300)
    g = w.guest("over")
    assert g.memory_bytes == 4 * GiB and g.current_bytes <= 4 * GiB
    assert max(asked.values()) == 6 * GiB
    assert g.oom_events == 1 and "oom" in [e["kind"] for e in w.events]
    assert g.demand_bytes <= g.current_bytes + 1 * GiB


def test_a_windows_guest_reports_its_commit_limit_where_a_linux_guest_kills_a_process() -> None:
    """The event's kind is the same (``oom``, what benchmarks count); its text is the guest's:
    Linux's OOM killer, or Windows' low virtual memory diagnosis (event 2004) with the commit
    asked and the limit (memory plus page file) it ran into."""
    texts = {}
    for flavor, vm in (("kvm", {}), ("hyperv", {"memory": "8GiB", "dynamic": False, "startup": "4GiB"})):
        w = _world(flavor, **vm)
        w.advance(300)
        (event,) = [e for e in w.events if e["kind"] == "oom"]
        texts[flavor] = event["message"]
    assert "OOM killer" in texts["kvm"]
    windows = texts["hyperv"]
    assert "OOM" not in windows and "killed" not in windows
    assert windows.startswith("Windows successfully diagnosed a low virtual memory condition")
    assert "event 2004" in windows and "commit limit of 5120 MB" in windows  # 4 GiB + 1 GiB page file
    asked = int(windows.split("commit ")[1].split(" MB")[0])
    assert 5120 < asked <= 6144


@pytest.mark.parametrize(
    ("flavor", "vm", "grow"),
    [
        ("hyperv", {"memory": "8GiB", "dynamic": False, "startup": "4GiB"}, {"target": "8GiB"}),
        (
            "hyperv",
            {"memory": "8GiB", "maximum": "4GiB", "startup": "2GiB", "minimum": "1GiB"},
            {"target": "8GiB"},
        ),
        ("esxi", {"memory_hot_add": True}, {"maximum": "8GiB"}),
    ],
    ids=["hyperv-static-resize", "hyperv-dynamic-maximum", "esxi-hot-add"],
)
def test_growing_a_running_vm_does_not_change_what_its_workloads_ask(
    flavor: str, vm: dict[str, Any], grow: dict[str, str]
) -> None:
    """The VM grown at once holds all its workloads ask (no kill); the one left at its size
    loses what is beyond it plus its swap (a kill): the same asking, step by step."""
    kept, grown = _world(flavor, **vm), _world(flavor, **vm)
    asked_kept, asked_grown = _asked(kept), _asked(grown)
    with hvballoon.connect("fake://", world=grown) as hv:
        if "target" in grow:
            hv.set_target("over", grow["target"])
        else:
            hv.set_config("over", maximum=grow["maximum"])
    kept.advance(300)
    grown.advance(300)
    assert asked_kept == asked_grown and max(asked_kept.values()) == 6 * GiB
    assert grown.guest("over").memory_bytes == 8 * GiB
    assert (kept.guest("over").oom_events, grown.guest("over").oom_events) == (1, 0)


@pytest.mark.parametrize("policy", ["static", "mom", "proxmox", "hvballoon"])
def test_every_policy_faces_the_same_asking_and_no_resize_spares_a_static_hyperv_vm_a_kill(
    policy: str,
) -> None:
    """Under a policy that never resizes (``static``) the VM loses what is beyond its startup
    size plus swap, as with no policy at all; whatever a policy does, the workloads ask the same."""
    alone = _world("hyperv", memory="8GiB", dynamic=False, startup="4GiB")
    asked_alone = _asked(alone)
    alone.advance(600)
    w = _world("hyperv", memory="8GiB", dynamic=False, startup="4GiB")
    asked = _asked(w)
    with simulated_controller(w, policy) as ctl:
        while w.now < 600:
            _, _, wait = simulated_round(w, ctl)
            w.advance(min(max(wait, 1.0), 600 - w.now))
    common = asked.keys() & asked_alone.keys()
    assert len(common) > 500
    assert {t: asked[t] for t in common} == {t: asked_alone[t] for t in common}
    assert max(asked.values()) == 6 * GiB
    assert alone.guest("over").oom_events == 1
    if policy == "static":
        assert w.guest("over").oom_events == 1 and w.guest("over").memory_bytes == 4 * GiB
