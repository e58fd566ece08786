"""The controller against the fake backend: dry runs, explanations, guard rails, settings,
rate limits and each mechanism's rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import InvalidRequestError, TargetBelowFloorError
from hvballoon.policy import Controller, ControllerSettings, Plan, Snapshot, VMSettings
from hvballoon.policy.adaptive import HvballoonPolicy
from hvballoon.session import GuardRails
from hvballoon.units import GiB, MiB
from tests.support.policies import Fixed, targets

HOST = "120GiB"


def settled() -> HvballoonPolicy:
    """Our policy without its settling time: it lowers from the first round."""
    return HvballoonPolicy(settle_seconds=0)


def settings(**kw: Any) -> ControllerSettings:
    kw.setdefault("host_memory_bytes", HOST)
    return ControllerSettings(**kw)


def test_dry_run_changes_nothing_and_says_what_it_would_do() -> None:
    with hvballoon.connect("fake://seed") as hv:
        before = targets(hv)
        ctl = Controller(hv, settled(), settings(), dry_run=True)
        for _ in ctl.run(rounds=5):
            pass
        decisions = ctl.step()
        assert targets(hv) == before
        lowered = [d for d in decisions if d.action == "lower"]
        assert lowered, "the policy should want to reclaim idle memory on seed"
        for d in lowered:
            assert d.dry_run and not d.applied
            assert d.proposed_bytes is not None and d.proposed_bytes < d.before_bytes  # type: ignore[operator]


def test_every_decision_is_explained_and_json_able() -> None:
    with hvballoon.connect("fake://seed") as hv:
        decisions = Controller(hv, settled(), settings()).step()
    assert {d.vm for d in decisions} == {v.name for v in hvballoon.connect("fake://seed").list_vms()}
    for d in decisions:
        assert d.reason and d.rule.startswith(("hvballoon.", "controller."))
        data = json.loads(d.model_dump_json())
        assert data["vm"] == d.vm and "inputs" in data and "used_bytes" in data["inputs"]
        if d.action == "lower":
            assert d.applied and d.after_bytes < d.before_bytes  # type: ignore[operator]
            assert "surge" in d.reason and d.inputs["plausible_surge_bytes"] > 0


def test_applied_moves_reach_the_hypervisor() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, settled(), settings())
        decisions = ctl.step()
        now = targets(hv)
        for d in decisions:
            assert now[d.vm] == d.after_bytes


def test_guard_rails_hold_a_policy_that_asks_too_much() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, Fixed(1 * GiB), settings())
        decisions = {d.vm: d for d in ctl.step()}
        web01 = decisions["web01"]
        # web01 uses 3 GiB: the session's floor is 3 GiB + max(256 MiB, 10 % of 16 GiB)
        floor = 3 * GiB + int(16 * GiB * 0.10)
        assert web01.action == "lower"
        assert web01.after_bytes is not None and web01.after_bytes >= floor
        assert "guard-rail floor" in web01.reason
        for s in hv.get_stats():
            assert s.target_bytes is not None and s.used_bytes is not None
            assert s.target_bytes >= s.used_bytes + int(16 * GiB * 0.10)


def test_guard_rails_can_be_turned_off_for_studies() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, Fixed(1 * GiB), settings(respect_guard_rails=False))
        web01 = next(d for d in ctl.step() if d.vm == "web01")
        assert web01.after_bytes == 1 * GiB


class Narrow(Fixed):
    """A fixed policy that sizes its own headroom, so it narrows the session's margin."""

    def guard_rails(self, session: GuardRails) -> GuardRails:
        return dataclasses.replace(session, margin_fraction=0.0)


def test_a_policy_may_narrow_the_guard_rails_for_its_own_lowers() -> None:
    with hvballoon.connect("fake://seed") as hv:
        session_rails = hv.guard_rails
        ctl = Controller(hv, Narrow(1 * GiB), settings())
        assert ctl.guard_rails.margin_fraction == 0 and ctl.guard_rails.margin_bytes == 256 * MiB
        web01 = next(d for d in ctl.step() if d.vm == "web01")
        # web01 uses 3 GiB: the narrowed floor is 3 GiB + 256 MiB, still checked by the session
        assert web01.action == "lower" and web01.applied
        assert web01.after_bytes == 3 * GiB + 256 * MiB
        assert "guard-rail floor" in web01.reason
        # the session gets its own guard rails back
        assert hv.guard_rails is session_rails
        with pytest.raises(TargetBelowFloorError):
            hv.set_target("web01", 3 * GiB + 256 * MiB)


def test_the_session_margins_hold_when_the_policy_may_not_narrow_them() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, Narrow(1 * GiB), settings(policy_guard_rails=False))
        assert ctl.guard_rails is hv.guard_rails
        web01 = next(d for d in ctl.step() if d.vm == "web01")
        floor = 3 * GiB + int(16 * GiB * 0.10)
        assert web01.after_bytes is not None and floor <= web01.after_bytes < floor + 4 * MiB


def test_narrowed_guard_rails_keep_the_sessions_other_checks() -> None:
    # the absolute margin and the refusal of old reports stay: nothing is lowered blind
    with hvballoon.connect("fake://seed") as hv:
        rails = Controller(hv, "hvballoon", settings()).guard_rails
        assert rails.max_stats_age_seconds == hv.guard_rails.max_stats_age_seconds
        assert rails.margin_bytes == hv.guard_rails.margin_bytes and rails.margin_fraction == 0


def test_excluded_floor_and_ceiling_settings() -> None:
    per_vm = {
        "web01": VMSettings(exclude=True),
        "web02": VMSettings(floor="10GiB"),
        "web03": VMSettings(ceiling="12GiB"),
    }
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, Fixed(6 * GiB, {"web03": 16 * GiB}), settings(vms=per_vm))
        d = {x.vm: x for x in ctl.step()}
        assert d["web01"].action == "skip" and d["web01"].rule == "controller.excluded"
        assert d["web02"].after_bytes == 10 * GiB
        assert d["web03"].after_bytes == 12 * GiB
        t = targets(hv)
        assert t["web01"] == 16 * GiB and t["web02"] == 10 * GiB and t["web03"] == 12 * GiB


@pytest.mark.parametrize(("flavor", "step"), [("kvm", 1024), ("esxi", MiB)])
def test_a_floor_or_ceiling_between_two_steps_is_kept_when_the_target_is_aligned(
    flavor: str, step: int
) -> None:
    # a target is aligned to the kind's step: a lower up, a raise down; a ceiling or floor that
    # is not a multiple of the step must still hold (the ceiling aligned down, the floor up)
    ceiling, floor = 12 * GiB + 100, 10 * GiB + 100
    per_vm = {"web03": VMSettings(ceiling=ceiling)}
    with hvballoon.connect(f"fake://seed?flavor={flavor}") as hv:
        ctl = Controller(hv, Fixed(6 * GiB, {"web03": 16 * GiB}), settings(vms=per_vm))
        d = {x.vm: x for x in ctl.step()}
        assert d["web03"].action == "lower" and d["web03"].after_bytes == 12 * GiB  # not 12 GiB + a step
        assert d["web02"].after_bytes == 6 * GiB
        # web02 at 6 GiB is then given a floor above it: raised to the floor, aligned up
        ctl.reconfigure(settings(vms={**per_vm, "web02": VMSettings(floor=floor)}))
        d = {x.vm: x for x in ctl.step()}
        assert d["web02"].action == "raise" and d["web02"].after_bytes == 10 * GiB + step  # not 10 GiB
        assert targets(hv)["web02"] >= floor and targets(hv)["web03"] <= ceiling


def test_self_managed_vms_are_never_squeezed() -> None:
    per_vm = {"jvm01": VMSettings(self_managed=True), "db01": VMSettings(self_managed=True)}
    for policy in ("hvballoon", "mom", "proxmox", Fixed(6 * GiB)):
        with hvballoon.connect("fake://seed") as hv:
            ctl = Controller(hv, policy, settings(vms=per_vm, host_memory_bytes="60GiB"))
            for decisions in ctl.run(rounds=20):
                for d in decisions:
                    if d.vm in per_vm:
                        assert d.action not in ("lower",), d
            t = targets(hv)
            assert t["jvm01"] == 16 * GiB and t["db01"] == 16 * GiB


def test_self_managed_vm_gets_its_memory_back() -> None:
    with hvballoon.connect("fake://seed") as hv:
        hv.set_target("jvm01", "12GiB")
        ctl = Controller(hv, "hvballoon", settings(vms={"jvm01": VMSettings(self_managed=True)}))
        d = next(x for x in ctl.step() if x.vm == "jvm01")
        assert d.action == "raise" and d.after_bytes == 16 * GiB
        assert d.rule == "hvballoon.self_managed"


def test_rate_limit_per_round_holds() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, Fixed(6 * GiB), settings(max_lower_bytes_per_round="512MiB"))
        for decisions in ctl.run(rounds=3):
            for d in decisions:
                assert d.before_bytes is not None and d.after_bytes is not None
                assert d.before_bytes - d.after_bytes <= 512 * MiB
        assert targets(hv)["web01"] == 16 * GiB - 3 * 512 * MiB


def test_rate_limit_changes_per_round_and_time_between_lowers() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, Fixed(6 * GiB), settings(max_changes_per_round=3))
        decisions = ctl.step()
        assert sum(d.applied for d in decisions) == 3
        assert sum(d.rule == "controller.rate_limit" for d in decisions) == 7
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(
            hv, Fixed(6 * GiB), settings(max_lower_bytes_per_round="1GiB", min_seconds_between_lowers=60)
        )
        rounds = list(ctl.run(rounds=6))  # every 10 s of virtual time
        lowered = [sum(d.action == "lower" for d in r) for r in rounds]
        assert lowered == [10, 0, 0, 0, 0, 0]
        assert "deferred" in rounds[1][0].reason


def test_raises_go_first_and_are_not_slowed_by_lower_limits() -> None:
    with hvballoon.connect("fake://seed") as hv:
        hv.set_target("web01", "8GiB")
        ctl = Controller(
            hv,
            Fixed(6 * GiB, {"web01": 16 * GiB}),
            settings(max_changes_per_round=1, max_lower_bytes_per_round="1GiB"),
        )
        d = {x.vm: x for x in ctl.step()}
        assert d["web01"].action == "raise" and d["web01"].after_bytes == 16 * GiB


def test_static_never_moves_and_needs_no_host_figure() -> None:
    with hvballoon.connect("fake://seed") as hv:
        before = targets(hv)
        ctl = Controller(hv, "static")
        for decisions in ctl.run(rounds=3):
            assert all(d.action == "hold" for d in decisions)
        assert targets(hv) == before


def test_the_host_comes_from_get_host_stats_each_round() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(hv, "mom")
        snap, _, stats = ctl.snapshot()
        (host,) = hv.get_host_stats(vm_stats=stats)
        assert snap.host.total_bytes == host.physical_bytes == 120 * GiB
        assert snap.host.used_bytes == host.used_bytes
        hv.backend.world.advance(3600)  # the host moves: the next round sees it
        snap2, _, stats2 = ctl.snapshot()
        assert (
            snap2.host.used_bytes == hv.get_host_stats(vm_stats=stats2)[0].used_bytes != snap.host.used_bytes
        )


def test_host_memory_setting_overrides_the_host_figures() -> None:
    with hvballoon.connect("fake://seed") as hv:
        ctl = Controller(
            hv, "mom", ControllerSettings(host_memory_bytes="200GiB", host_overhead_bytes="1GiB")
        )
        snap, _, stats = ctl.snapshot()
        assert snap.host.total_bytes == 200 * GiB
        consumed = sum(s.host_consumed_bytes or 0 for s in stats if s.vm.power_state.value == "running")
        assert snap.host.used_bytes == GiB + consumed


def test_a_host_without_physical_memory_needs_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from hvballoon.backend import Backend

    with hvballoon.connect("fake://seed") as hv:
        # a backend that knows no host figure: the hook's default, summing the sweep only
        monkeypatch.setattr(
            hv.backend, "get_host_stats", lambda vm_stats=None: Backend.get_host_stats(hv.backend, vm_stats)
        )
        assert hv.get_host_stats()[0].physical_bytes is None
        with pytest.raises(InvalidRequestError, match="host_memory_bytes") as info:
            Controller(hv, "mom").step()
        assert "--host-memory" in info.value.message
        assert all(d.action == "hold" for d in Controller(hv, "static").step())
        assert Controller(hv, "mom", settings(), dry_run=True).step()


def test_esxi_moves_limits() -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        ctl = Controller(hv, settled(), settings())
        decisions = [d for d in ctl.step() if d.action == "lower"]
        assert decisions and all(d.mechanism.value == "limit" for d in decisions)
        web01 = next(d for d in decisions if d.vm == "web01")
        assert hv.get_config("web01").limit_bytes == web01.after_bytes
        assert web01.after_bytes is not None and web01.after_bytes % MiB == 0


def test_hyperv_dynamic_memory_is_only_raised_while_running() -> None:
    per_vm = {"web01": VMSettings(ceiling="20GiB")}
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        ctl = Controller(hv, Fixed(4 * GiB, {"web01": 20 * GiB}), settings(vms=per_vm))
        d = {x.vm: x for x in ctl.step()}
        # lowering the maximum of a running DM VM is against the live rules: held, explained
        assert d["web02"].action == "hold" and d["web02"].rule == "controller.dynamic_memory"
        assert "Dynamic Memory" in d["web02"].reason
        assert hv.get_config("web02").maximum_bytes == 16 * GiB
        # raising it (up to the VM's ceiling) is allowed, through set_config
        assert d["web01"].action == "raise" and d["web01"].applied
        assert hv.get_config("web01").maximum_bytes == 20 * GiB


def test_hyperv_dynamic_memory_vm_without_integration_services_is_held_for_its_unknown_use(
    tmp_path: Path,
) -> None:
    # Get-VM shows MemoryDemand 0: Dynamic Memory does not balance the VM, and its use is unknown
    with hvballoon.connect(tiny(tmp_path, "hyperv", ", dynamic: true, balloon_driver: false")) as hv:
        d = {x.vm: x for x in Controller(hv, Fixed(4 * GiB), settings()).step()}
        assert d["a"].action == "hold" and d["a"].rule == "controller.stale_figures"
        assert "integration services" in d["a"].reason and "cannot balance" in d["a"].reason
        assert d["b"].rule == "controller.dynamic_memory"  # the one that reports: balanced by Hyper-V
        assert hv.get_config("a").maximum_bytes == 16 * GiB


TINY = """
name: tiny
flavor: {flavor}
host: {{name: host01, physical: 32GiB}}
vms:
  - {{name: a, memory: 16GiB, used: 3GiB, cache: 1GiB, swap: 2GiB{extra}}}
  - {{name: b, memory: 16GiB, used: 3GiB, cache: 1GiB, swap: 2GiB}}
"""


def tiny(tmp_path: Path, flavor: str = "kvm", extra: str = "") -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(flavor=flavor, extra=extra))
    return f"fake://{path}"


def test_hyperv_static_vm_is_resized(tmp_path: Path) -> None:
    with hvballoon.connect(tiny(tmp_path, "hyperv", ", dynamic: false")) as hv:
        d = {x.vm: x for x in Controller(hv, Fixed(12 * GiB), settings()).step()}
        assert d["a"].mechanism.value == "runtime_resize" and d["a"].action == "lower"
        assert hv.get_config("a").startup_bytes == 12 * GiB
        assert d["b"].mechanism.value == "dynamic_memory" and d["b"].action == "hold"


def test_stale_guest_is_never_lowered(tmp_path: Path) -> None:
    with hvballoon.connect(tiny(tmp_path, extra=", stats_period: 0")) as hv:
        # two VMs of 16 GiB on 24 GiB: overcommitted, so the policy takes back what b does not use
        d = {x.vm: x for x in Controller(hv, settled(), settings(host_memory_bytes="24GiB")).step()}
        assert d["a"].action == "hold" and "fresh" in d["a"].reason
        assert d["b"].action == "lower"


class Calls:
    """Counts the session calls a controller round makes (and the VMs each bulk read names)."""

    def __init__(self, hv: hvballoon.Hypervisor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, Any]] = []
        for name in ("get_configs", "get_config", "set_targets", "set_target", "set_config"):
            original = getattr(hv, name)

            def counted(*args: Any, _name: str = name, _fn: Any = original, **kw: Any) -> Any:
                self.log.append((_name, args[0] if args else None))
                return _fn(*args, **kw)

            monkeypatch.setattr(hv, name, counted)

    def names(self) -> list[str]:
        return [name for name, _ in self.log]

    def take(self) -> list[tuple[str, Any]]:
        out, self.log = self.log, []
        return out


def test_a_round_reads_configs_in_bulk_and_moves_through_set_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    with hvballoon.connect("fake://seed") as hv:
        calls = Calls(hv, monkeypatch)
        policy = Fixed(10 * GiB)
        ctl = Controller(hv, policy, settings())
        assert {d.action for d in ctl.step()} == {"lower"}
        round1 = calls.take()
        # one bulk read of every configuration, and every lower in one bulk call
        assert [name for name, _ in round1] == ["get_configs", "set_targets"]
        assert round1[0][1] is None and len(round1[1][1]) == 10
        policy.per_vm = {"web01": 14 * GiB, "web02": 8 * GiB}
        decisions = {d.vm: d.action for d in ctl.step()}
        assert decisions["web01"] == "raise" and decisions["web02"] == "lower"
        # balloon targets do not live in the configuration: nothing is read again; the raises,
        # then the lowers, each in one bulk call
        round2 = calls.take()
        assert [name for name, _ in round2] == ["set_targets", "set_targets"]
        assert [[vm for vm, _ in moves] for _, moves in round2] == [
            [hv.resolve("web01").id],
            [hv.resolve("web02").id],
        ]
        assert targets(hv)["web01"] == 14 * GiB and targets(hv)["web02"] == 8 * GiB


def test_configs_are_read_again_after_the_refresh_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    with hvballoon.connect("fake://seed") as hv:
        calls = Calls(hv, monkeypatch)
        ctl = Controller(hv, "static", settings(), config_refresh_seconds=0)
        ctl.step()
        ctl.step()
        assert calls.names() == ["get_configs", "get_configs"]


def test_a_vm_whose_target_lives_in_its_configuration_is_read_again_after_a_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        calls = Calls(hv, monkeypatch)
        ctl = Controller(hv, Fixed(12 * GiB, {"web01": 10 * GiB}), settings())
        applied = {d.vm: d.vm_id for d in ctl.step() if d.applied}
        assert "web01" in applied and hv.get_config("web01").limit_bytes == 10 * GiB
        moved = set(applied.values())
        calls.take()
        ctl.step()  # the limits just set are read back, in one bulk read of those VMs only
        [(_, vms)] = [c for c in calls.take() if c[0] == "get_configs"]
        assert {vm.id for vm in vms} == moved


class Hurried(Fixed):
    """Asks for its next round in ``asked`` seconds, and a guest stats period of 2 s."""

    stats_period_seconds = 2

    def __init__(self, asked: float | None) -> None:
        super().__init__(16 * GiB)
        self.asked = asked

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        plan = super().decide(snapshot, state)
        return dataclasses.replace(plan, next_round_seconds=self.asked)


def test_a_policy_asks_for_quick_rounds_down_to_the_fast_interval() -> None:
    with hvballoon.connect("fake://seed") as hv:
        for asked, fast, expected in ((None, 1.0, 10.0), (3.0, 1.0, 3.0), (0.1, 1.0, 1.0), (0.1, None, 10.0)):
            ctl = Controller(hv, Hurried(asked), settings(fast_interval_seconds=fast))
            ctl.step()
            assert ctl.next_round_seconds == expected, (asked, fast)
        # run() waits what it asks, on the backend's clock (the simulator's)
        world = hv.native
        ctl = Controller(hv, Hurried(2.0), settings())
        start = world.now
        for _ in ctl.run(rounds=3):
            pass
        assert world.now - start == pytest.approx(4.0, abs=0.5)


def test_the_controller_keeps_the_policys_stats_period_where_it_can_be_set_live() -> None:
    with hvballoon.connect("fake://seed") as hv:
        assert {c.stats_period_seconds for c in map(hv.get_config, ("web01", "db01"))} == {10}
        Controller(hv, Hurried(None), settings()).step()
        assert {c.stats_period_seconds for c in map(hv.get_config, ("web01", "db01"))} == {2}
        # the settings override the policy's; 0 leaves the VMs' own
        Controller(hv, Hurried(None), settings(stats_period_seconds=5)).step()
        assert hv.get_config("web01").stats_period_seconds == 5
        Controller(hv, Hurried(None), settings(stats_period_seconds=0)).step()
        assert hv.get_config("web01").stats_period_seconds == 5
        # a dry run changes nothing
        Controller(hv, Hurried(None), settings(), dry_run=True).step()
        assert hv.get_config("web01").stats_period_seconds == 5
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:  # no stats period to set there
        decisions = Controller(hv, Hurried(None), settings()).step()
        assert not any(d.action == "error" for d in decisions)


def test_a_fast_interval_above_the_interval_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"fast_interval_seconds .* is above interval_seconds"):
        settings(interval_seconds=5, fast_interval_seconds=6)
    with pytest.raises(ValidationError):
        settings(fast_interval_seconds=0)
    assert settings(fast_interval_seconds=None).fast_interval_seconds is None


def _valves_world() -> Any:
    from hvballoon.fake.scenario import parse_scenario
    from hvballoon.fake.world import World

    vms = [{"name": f"web{i:02d}", "memory": "4GiB", "used": "1GiB"} for i in range(1, 11)]
    vms[2]["deflate_on_oom"] = True
    return World(parse_scenario({"name": "valves", "host": {"physical": "64GiB"}, "vms": vms}))


def test_the_advice_names_the_balloons_the_policy_may_lower_without_deflate_on_oom() -> None:
    settings = ControllerSettings(
        vms={"web01": VMSettings(exclude=True), "web02": VMSettings(self_managed=True)}
    )
    with hvballoon.connect("fake://", world=_valves_world()) as hv:
        (advice,) = Controller(hv, "hvballoon", settings).advice()
        # web03 has it on; web01 is never touched and web02 never lowered
        assert advice.startswith(
            "7 VMs the policy may lower have no deflate-on-OOM (web04, web05, web06, web07, web08, web09, web10): "
        )
        assert "--deflate-on-oom" in advice
        (every,) = Controller(hv, "mom", ControllerSettings()).advice()
        assert "9 VMs" in every and "(web01, web02, web04, web05, web06, web07, web08, web09, web10)" in every
        assert Controller(hv, "static", ControllerSettings()).advice() == []  # it lowers nothing


@pytest.mark.parametrize("flavor", ["esxi", "hyperv"])
def test_no_advice_where_the_hypervisor_has_no_such_valve(flavor: str) -> None:
    with hvballoon.connect(f"fake://seed?flavor={flavor}") as hv:
        assert Controller(hv, "hvballoon", ControllerSettings()).advice() == []
