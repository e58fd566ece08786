"""How often a controller round reads the hypervisor: once (its sweep), its moves planned on
that sweep's figures while the guard rails trust them; figures grown too old or stale are read
again, only for those VMs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import hvballoon
from hvballoon.errors import OperationTimeoutError
from hvballoon.policy import Controller, ControllerSettings
from hvballoon.retry import RetryPolicy
from hvballoon.session import GuardRails
from hvballoon.units import GiB
from tests.support.calls import counted, spy_reads
from tests.support.policies import Fixed

INSTANT = RetryPolicy(sleep=lambda _s: None)


def settings() -> ControllerSettings:
    return ControllerSettings(host_memory_bytes="120GiB")


@pytest.fixture
def hv() -> Iterator[hvballoon.Hypervisor]:
    with hvballoon.connect("fake://seed", retry=INSTANT) as session:
        yield session


def test_a_round_with_raises_and_lowers_reads_the_hypervisor_once(hv: hvballoon.Hypervisor) -> None:
    policy = Fixed(10 * GiB)
    ctl = Controller(hv, policy, settings())
    calls = counted(hv)
    assert {d.action for d in ctl.step()} == {"lower"}
    # the first round: the sweep, every configuration (due), the lowers
    assert calls == {"get_stats": 1, "get_configs": 1, "apply_targets": 1}
    calls.clear()
    policy.per_vm = {"web01": 14 * GiB, "web02": 8 * GiB}
    hv.backend.sleep(10)
    moved = {d.vm: d.action for d in ctl.step() if d.applied}
    assert moved == {"web01": "raise", "web02": "lower"}
    # nothing due: the sweep, then the raises and the lowers on its figures
    assert calls == {"get_stats": 1, "apply_targets": 2}


def test_a_dry_run_round_reads_once_too(hv: hvballoon.Hypervisor) -> None:
    ctl = Controller(hv, Fixed(10 * GiB), settings(), dry_run=True)
    ctl.step()
    calls = counted(hv)
    hv.backend.sleep(10)
    assert {d.action for d in ctl.step()} == {"lower"}
    assert calls == {"get_stats": 1}


def test_figures_grown_too_old_during_the_round_are_read_again() -> None:
    rails = GuardRails(max_stats_age_seconds=20)
    with hvballoon.connect("fake://seed", retry=INSTANT, guard_rails=rails) as hv:
        policy = Fixed(10 * GiB)
        ctl = Controller(hv, policy, settings())
        ctl.step()
        reads = spy_reads(hv)
        policy.per_vm = {"web01": 14 * GiB, "web02": 8 * GiB}
        # the raise hangs 25 s (under the call timeout): the sweep is older than 20 s when
        # the lowers are checked, so web02 is read again (and only web02)
        hv.backend.world.faults.add(op="set_target", kind="slow", latency=25, vm="web01")
        hv.backend.sleep(10)
        moved = {d.vm: d.action for d in ctl.step() if d.applied}
        assert moved == {"web01": "raise", "web02": "lower"}
        assert reads == [["web02"]]
        reads.clear()
        policy.per_vm = {"web01": 13 * GiB, "web02": 9 * GiB}
        hv.backend.sleep(10)
        ctl.step()
        assert reads == []  # no hang: the sweep's figures were young enough


def test_a_stale_guest_is_read_again_before_it_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nflavor: kvm\nhost: {name: host01, physical: 32GiB}\nvms:\n"
        "  - {name: a, memory: 16GiB, used: 3GiB, cache: 1GiB, stats_period: 0}\n"
        "  - {name: b, memory: 16GiB, used: 3GiB, cache: 1GiB}\n"
    )
    with hvballoon.connect(f"fake://{path}", retry=INSTANT) as hv:
        hv.set_targets({"a": "12GiB"}, force=True)
        ctl = Controller(hv, Fixed(14 * GiB), settings())
        reads = spy_reads(hv)
        moved = {d.vm: d.action for d in ctl.step() if d.applied}
        assert moved == {"a": "raise", "b": "lower"}
        assert reads == [["a"]]  # a's figures are stale; b's were trusted


def test_a_read_that_would_hang_no_longer_touches_the_round(hv: hvballoon.Hypervisor) -> None:
    ctl = Controller(hv, Fixed(10 * GiB), settings())
    # every stats read after the first (the sweep) hangs past the call timeout, retries included
    fault = hv.backend.world.faults.add(op="get_stats", kind="slow", latency=40, after=1, count=3)
    began = hv.backend.monotonic()
    decisions = ctl.step()
    assert {(d.action, d.applied) for d in decisions} == {("lower", True)}
    assert hv.backend.monotonic() == began  # no simulated second was lost waiting
    assert (fault.seen, fault.fired) == (1, 0)  # the round read stats once: the sweep
    # the same fault on a set_targets that reads: the 3 attempts time out, 30 s each
    res = hv.set_targets({"web01": "9GiB"})
    assert isinstance(res["web01"], OperationTimeoutError) and fault.fired == 3
    assert hv.backend.monotonic() == began + 90


def test_the_first_round_sets_the_stats_periods_with_one_read_of_the_configurations() -> None:
    """A policy that wants another guest stats period has it set on every VM in the first round
    in one ``set_configs``: one bulk read of the configurations besides the round's own, not one
    read per VM (at 10,000 VMs, 10,000 reads before the first decision). A VM refused keeps its
    period; the others change all the same."""
    with hvballoon.connect("fake://seed", retry=INSTANT) as hv:
        w = hv.native
        w.faults.add(op="set_config", kind="permission_denied", vm="web02", rate=1.0)
        names = [vm.name for vm in hv.list_vms()]
        calls = counted(hv)
        Controller(
            hv, Fixed(16 * GiB), ControllerSettings(host_memory_bytes="120GiB", stats_period_seconds=2)
        ).step()
        assert calls["get_config"] + calls["get_configs"] == 2  # the round's, and the periods'
        assert calls["apply_config"] == len(names)
        periods = {c.vm.name: c.stats_period_seconds for c in hv.get_configs()}
        assert periods == {name: 10 if name == "web02" else 2 for name in names}


def test_setting_the_stats_periods_leaves_the_vms_known_to_the_session() -> None:
    """A changed stats period shows in no VM row: the session still knows the VMs after the
    first round sets it on every one, and the marks of the round's lowers name them without a
    look-up each (on the fake a look-up scans every VM: the first round at 10,000 VMs was
    quadratic). A change that a VM row does show (Hyper-V's Dynamic Memory) is still looked up."""
    with hvballoon.connect("fake://seed", retry=INSTANT) as hv:
        calls = counted(hv)
        decisions = Controller(
            hv, Fixed(6 * GiB), ControllerSettings(host_memory_bytes="120GiB", stats_period_seconds=2)
        ).step()
        assert calls["apply_config"] == 10 and any(d.action == "lower" for d in decisions)
        assert calls["lookup_vms"] == calls["list_vms"] == 0
    with hvballoon.connect("fake://seed?flavor=hyperv", retry=INSTANT) as hv:
        hv.native.power_off(hv.list_vms()[0].id)
        vm = hv.list_vms()[0]  # the session knows it, off
        hv.set_config(vm.name, dynamic=not vm.extra["dynamic"])
        calls = counted(hv)
        assert hv.resolve(vm.id).extra["dynamic"] is not vm.extra["dynamic"]
        assert calls["lookup_vms"] == 1
