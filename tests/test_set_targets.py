"""Bulk target changes (``set_targets``) and name resolution from what the session knows."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon import TargetsInterrupted, fake
from hvballoon.errors import (
    AmbiguousVMError,
    BalloonStalledError,
    InvalidRequestError,
    InvalidSizeError,
    InvalidStateError,
    PartialChangeError,
    PermissionDeniedError,
    TargetAboveMaximumError,
    TargetBelowFloorError,
    VMNotFoundError,
)
from hvballoon.fake.scenario import load_scenario
from hvballoon.fake.world import World
from hvballoon.models import Change, PowerState
from hvballoon.retry import RetryPolicy
from hvballoon.units import GiB
from tests.support.calls import counted, deny_reading
from tests.support.policies import targets

INSTANT = RetryPolicy(sleep=lambda _s: None)


@pytest.fixture
def hv() -> Iterator[hvballoon.Hypervisor]:
    with hvballoon.connect("fake://seed", retry=INSTANT) as session:
        yield session


# -- one result per VM -------------------------------------------------------------------------


def test_every_vm_gets_its_change_in_the_order_given(hv: hvballoon.Hypervisor) -> None:
    web02 = hv.resolve("web02")
    res = hv.set_targets([("web03", "7GiB"), (web02, 8 * GiB), ("web01", "9GiB")])
    assert list(res) == ["web03", web02.id, "web01"]
    assert res.ok and res.applied and res.error is None and res.changed
    assert all(isinstance(c, Change) and c.changed and not c.dry_run for c in res.values())
    assert res.made == {"web03", web02.id, "web01"}
    after = targets(hv)
    assert (after["web03"], after["web02"], after["web01"]) == (7 * GiB, 8 * GiB, 9 * GiB)


def test_one_bulk_read_and_one_bulk_apply(hv: hvballoon.Hypervisor) -> None:
    hv.list_vms()
    calls = counted(hv)
    res = hv.set_targets({"web01": "7GiB", "web02": "8GiB", "app01": "9GiB", "ci01": "10GiB"})
    assert res.ok
    assert calls == Counter({"get_stats_and_configs": 1, "apply_targets": 1})


def test_when_every_vm_is_refused_nothing_is_sent_and_the_answer_says_so(hv: hvballoon.Hypervisor) -> None:
    calls = counted(hv)
    res = hv.set_targets({"web02": "1GiB", "nosuch": "4GiB"})
    assert not res.applied and res.made == set() and calls["apply_targets"] == 0


def test_a_refusal_in_the_middle_applies_nothing(hv: hvballoon.Hypervisor) -> None:
    before = targets(hv)
    res = hv.set_targets({"web01": "7GiB", "web02": "1GiB", "nosuch": "4GiB", "web03": "8GiB"})
    assert not res.applied and not res.changed and res.made == set()
    assert isinstance(res["web02"], TargetBelowFloorError)
    assert isinstance(res["nosuch"], VMNotFoundError)
    for key in ("web01", "web03"):
        change = res[key]
        assert isinstance(change, Change) and change.dry_run and change.changed
        assert any("not applied" in w for w in change.warnings)
    assert targets(hv) == before
    error = res.error
    assert isinstance(error, TargetBelowFloorError)  # the first failure's class, all failures named
    assert error.message.startswith("nothing was changed: 2 of 4 VMs failed")
    assert "web02" in error.message and "nosuch" in error.message
    assert set(error.details["errors"]) == {"web02", "nosuch"}


def test_a_message_names_the_first_ten_and_counts_the_others_after_the_same_separator() -> None:
    from hvballoon._results import NAMED_IN_MESSAGE, first_few

    names = [f"vm{i:02d}" for i in range(NAMED_IN_MESSAGE + 3)]
    assert NAMED_IN_MESSAGE == 10
    assert first_few([]) == ""
    assert first_few(names[:2]) == "vm00, vm01"
    assert first_few(names[:10]) == ", ".join(names[:10])  # all ten, nothing counted
    assert first_few(names[:11]) == ", ".join(names[:10]) + ", and 1 more"
    assert first_few(names, "; ") == "; ".join(names[:10]) + "; and 3 more"
    shown: list[str] = []
    spelled = first_few(names, show=lambda n: shown.append(n) or repr(n))
    assert spelled == ", ".join(map(repr, names[:10])) + ", and 3 more"
    assert shown == names[:10]  # only the ones named are spelled out (a suggestion costs a pass)


def test_the_interrupted_wait_counts_the_vms_it_does_not_name_as_every_message_does() -> None:
    # it wrote its own "and N more", without the comma the error messages have
    from hvballoon._results import TargetResults, TargetsInterrupted
    from hvballoon.cli.targets import _stopped_waiting

    keys = [f"vm{i:02d}" for i in range(12)]
    stop = TargetsInterrupted(TargetResults(dict.fromkeys(keys, InvalidStateError("x")), applied=True))
    said = _stopped_waiting(stop)
    assert said.endswith("failed: " + ", ".join(keys[:10]) + ", and 2 more"), said


def test_ctrl_c_while_applying_is_held_until_the_call_answers_and_says_what_it_applied() -> None:
    # a Ctrl-C inside the bulk call broke it off: web01 was applied, and no one was told
    with hvballoon.connect("fake://seed?speed=1", retry=INSTANT) as hv:
        faults = hv.backend.world.faults  # type: ignore[attr-defined]
        slow = faults.add(op="set_target", kind="slow", latency=2, vm="web02")  # 2 s of real time
        faults.add(op="set_target", kind="timeout", vm="web03")  # retryable: it would go again

        def ctrl_c_in_web02_s_call() -> None:
            while not slow.fired:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C does, to the main thread

        threading.Thread(target=ctrl_c_in_web02_s_call, daemon=True).start()
        with pytest.raises(TargetsInterrupted) as info:
            hv.set_targets({"web01": "8GiB", "web02": "7GiB", "web03": "6GiB"}, wait=True)
        stop = info.value
        assert not stop.waiting and stop.not_sent == ["web03"] and stop.not_reached == []
        assert stop.results.applied and stop.results.made == {"web01", "web02"}
        assert stop.results["web03"].code == "timeout"  # type: ignore[union-attr]
        held = targets(hv)  # what the hypervisor holds is what was said
        assert (held["web01"], held["web02"], held["web03"]) == (8 * GiB, 7 * GiB, 16 * GiB)


def test_the_whole_s_error_names_a_few_failures_and_counts_the_others(hv: hvballoon.Hypervisor) -> None:
    # it named every failure: refusing 10,000 VMs wrote a line of more than a megabyte
    few = hv.set_targets({"web01": "1GiB", **{f"nosuch{i:03d}": "4GiB" for i in range(29)}}).error
    many = hv.set_targets({"web01": "1GiB", **{f"nosuch{i:03d}": "4GiB" for i in range(299)}}).error
    assert few is not None and many is not None
    assert many.message.startswith("nothing was changed: 300 of 300 VMs failed: web01: ")
    assert "nosuch008" in many.message and "nosuch009" not in many.message
    assert many.message.endswith("; and 290 more") and few.message.endswith("; and 20 more")
    assert len(many.message) == len(few.message) + 3  # three counts, one more digit each
    assert len(many.details["errors"]) == 300  # every one, where a program reads them
    partial = hv.set_targets(
        {"web01": "7GiB", **{f"nosuch{i:03d}": "4GiB" for i in range(20)}}, skip_invalid=True
    )
    assert partial.error is not None and partial.error.message.endswith("; and 10 more")


def test_skip_invalid_applies_the_others_and_says_partial(hv: hvballoon.Hypervisor) -> None:
    res = hv.set_targets({"web01": "7GiB", "web02": "99GiB", "web03": "8GiB"}, skip_invalid=True)
    assert res.applied and res.made == {"web01", "web03"}
    assert isinstance(res["web02"], TargetAboveMaximumError)
    error = res.error
    assert isinstance(error, PartialChangeError) and error.exit_code == 12
    assert error.details["applied"] == ["web01", "web03"] and error.details["not_applied"] == ["web02"]
    with pytest.raises(PartialChangeError):
        res.raise_for_errors()
    after = targets(hv)
    assert after["web01"] == 7 * GiB and after["web03"] == 8 * GiB and after["web02"] == 16 * GiB


def test_a_failure_while_applying_never_hides_the_others(hv: hvballoon.Hypervisor) -> None:
    hv.backend.world.faults.add(op="set_target", kind="permission_denied", vm="web02")
    res = hv.set_targets({"web01": "7GiB", "web02": "8GiB", "web03": "9GiB"})
    assert res.applied and res.made == {"web01", "web03"}
    assert isinstance(res["web02"], PermissionDeniedError) and res["web02"].vm == "web02"
    assert isinstance(res.error, PartialChangeError)
    after = targets(hv)
    assert (after["web01"], after["web02"], after["web03"]) == (7 * GiB, 16 * GiB, 9 * GiB)


def test_a_retryable_failure_is_sent_again_for_that_vm_only(hv: hvballoon.Hypervisor) -> None:
    hv.backend.world.faults.add(op="set_target", kind="connection_lost", vm="web02")
    calls = counted(hv)
    res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"})
    assert res.ok and res.made == {"web01", "web02"}
    assert calls["apply_targets"] == 2
    assert targets(hv)["web02"] == 8 * GiB


def test_retries_are_bounded() -> None:
    with hvballoon.connect("fake://seed", retry=RetryPolicy(max_attempts=2, sleep=lambda _s: None)) as hv:
        hv.backend.world.faults.add(op="set_target", kind="timeout", vm="web02", count=5)
        calls = counted(hv)
        res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"})
        assert calls["apply_targets"] == 2
        assert res.made == {"web01"} and res["web02"].code == "timeout" and res["web02"].retryable


def test_dry_run_changes_nothing_and_is_checked(hv: hvballoon.Hypervisor) -> None:
    before = targets(hv)
    calls = counted(hv)
    res = hv.set_targets({"web01": "7GiB", "web02": "8GiB"}, dry_run=True)
    assert res.ok and not res.applied and not res.made
    assert all(c.dry_run and c.changed for c in res.changes.values())
    assert calls["apply_targets"] == 0 and targets(hv) == before
    refused = hv.set_targets({"web01": "1GiB"}, dry_run=True)
    assert isinstance(refused["web01"], TargetBelowFloorError)


def test_idempotent(hv: hvballoon.Hypervisor) -> None:
    first = hv.set_targets({"web01": "7GiB", "web02": "8GiB"})
    calls = counted(hv)
    second = hv.set_targets({"web01": "7GiB", "web02": "8GiB"})
    assert first.made == {"web01", "web02"} and second.ok and not second.made
    assert all(not c.changed for c in second.changes.values())
    assert calls["apply_targets"] == 0


def test_a_target_libvirt_does_not_report_is_sent_even_where_the_balloon_is() -> None:
    """On KVM a session reads only the targets it set (libvirt keeps the balloon's position,
    not the target): another session's lower may still be on its way. Asking for where the
    balloon is now is unchanged, but sent, so that the balloon stays there."""
    with fake.world("seed"):
        with hvballoon.connect("fake://seed") as other:
            other.set_target("web01", "8GiB")  # the balloon has not moved yet
        with hvballoon.connect("fake://seed", retry=INSTANT) as hv:
            (st,) = hv.get_stats(["web01"])
            assert st.target_bytes is None and st.current_bytes == 16 * GiB
            calls = counted(hv)
            res = hv.set_targets({"web01": "16GiB"})
            assert res.ok and not res.made and not res["web01"].changed
            assert calls["apply_targets"] == 1 and targets(hv)["web01"] == 16 * GiB
            assert hv.get_stats(["web01"])[0].target_bytes == 16 * GiB  # now this session knows it
            again = counted(hv)
            assert not hv.set_targets({"web01": "16GiB"}).made and again["apply_targets"] == 0
            hv.set_target("web01", "16GiB", dry_run=True)
            assert again["apply_targets"] == 0  # a dry run sends nothing


def test_bad_sizes_and_duplicates_are_per_vm(hv: hvballoon.Hypervisor) -> None:
    web01 = hv.resolve("web01")
    res = hv.set_targets({"web01": "7GiB", web01.id: "8GiB", "web02": "8 gigs", "web03": "8GiB"})
    assert isinstance(res["web02"], InvalidSizeError) and res["web02"].vm == "web02"
    assert isinstance(res["web01"], InvalidRequestError) and "named 2 times" in res["web01"].message
    assert isinstance(res[web01.id], InvalidRequestError)
    assert not res.applied and targets(hv)["web03"] == 16 * GiB


@pytest.mark.parametrize(
    "bad",
    [
        {},
        [],
        "web01=6GiB",
        [("web01",)],
        [("web01", "6GiB"), ("web01", "7GiB")],
        {"": "6GiB"},
        [(None, "1GiB")],
    ],
)
def test_malformed_requests_are_refused_before_anything(hv: hvballoon.Hypervisor, bad: Any) -> None:
    calls = counted(hv)
    with pytest.raises(InvalidRequestError):
        hv.set_targets(bad)
    assert not calls


def test_wait_for_every_observable_target(hv: hvballoon.Hypervisor) -> None:
    res = hv.set_targets({"web01": "8GiB", "web02": "9GiB"}, wait=True, wait_timeout=120)
    assert res.ok and set(res.stats) == {"web01", "web02"}
    assert abs((res.stats["web01"].current_bytes or 0) - 8 * GiB) <= 2 * 2**20 + 8 * GiB // 200


def test_wait_warns_where_the_target_cannot_be_observed() -> None:
    with hvballoon.connect("fake://seed?flavor=esxi", retry=INSTANT) as hv:
        res = hv.set_targets({"web01": "8GiB"}, wait=True)
        change = res["web01"]
        assert res.ok and isinstance(change, Change)
        assert any("cannot observe 'web01'" in w for w in change.warnings)
        # as wait_for_target: applied, said so, and its stats right after the change
        assert res.stats["web01"].target_bytes == 8 * GiB


SCENARIO = """
name: mixed
host: {physical: 64GiB}
vms:
  - {name: twin, id: a1, memory: 8GiB, used: 2GiB}
  - {name: twin, id: b2, memory: 8GiB, used: 2GiB}
  - {name: good, memory: 8GiB, used: 2GiB}
  - {name: nodriver, memory: 8GiB, used: 2GiB, balloon_driver: false}
"""


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[hvballoon.Hypervisor]:
    path = tmp_path / "mixed.yaml"
    path.write_text(SCENARIO)
    with hvballoon.connect(f"fake://{path}", retry=INSTANT) as hv:
        yield hv


def test_a_stall_is_that_vms_error_and_the_change_is_kept(mixed: hvballoon.Hypervisor) -> None:
    res = mixed.set_targets({"good": "6GiB", "nodriver": "4GiB"}, force=True, wait=True)
    assert res.made == {"good", "nodriver"} and "good" in res.stats
    stalled = res["nodriver"]
    assert isinstance(stalled, BalloonStalledError)
    assert stalled.details["change"]["after"]["target_bytes"] == 4 * GiB
    # both targets were applied: the failure is the stall itself, not a partial change
    assert isinstance(res.error, BalloonStalledError) and "changed 2 of 2 VMs" in res.error.message


def test_an_ambiguous_name_is_that_vms_error(mixed: hvballoon.Hypervisor) -> None:
    res = mixed.set_targets({"twin": "4GiB", "good": "4GiB"})
    assert isinstance(res["twin"], AmbiguousVMError)
    assert sorted(res["twin"].details["candidates"]) == ["a1", "b2"]
    assert not res.applied


def test_set_target_is_one_vm_of_set_targets(hv: hvballoon.Hypervisor) -> None:
    calls = counted(hv)
    change = hv.set_target("web01", "7GiB")
    assert change.changed and calls["get_stats_and_configs"] == 1 and calls["apply_targets"] == 1
    with pytest.raises(TargetBelowFloorError):
        hv.set_target("web01", "1GiB")


# -- naming VMs without listing them -----------------------------------------------------------


def test_a_known_name_costs_no_lookup(hv: hvballoon.Hypervisor) -> None:
    hv.get_stats()  # a sweep feeds the index
    calls = counted(hv)
    hv.set_target("web01", "7GiB")
    hv.get_stats(["web02", "web03"])
    hv.get_config("db01")
    assert calls["list_vms"] == 0 and calls["lookup_vms"] == 0


def test_an_unknown_name_is_looked_up_natively_once(hv: hvballoon.Hypervisor) -> None:
    calls = counted(hv)
    hv.get_stats(["web01", "web02", "db01"])
    assert calls["lookup_vms"] == 1 and calls["list_vms"] == 0
    hv.get_stats(["web01"])
    assert calls["lookup_vms"] == 1
    with pytest.raises(VMNotFoundError):
        hv.get_stats(["nosuch"])
    assert calls["lookup_vms"] == 2


def test_without_native_lookup_the_session_lists(hv: hvballoon.Hypervisor, monkeypatch: Any) -> None:
    monkeypatch.setattr(hv.backend, "lookup_vms", lambda refs: None)
    calls = counted(hv)
    hv.get_stats(["web01"])
    hv.get_stats(["web02"])
    assert calls["list_vms"] == 1


def test_a_renamed_vm_is_noticed() -> None:
    world = World(load_scenario("seed"), flavor="kvm")
    with hvballoon.connect("fake://seed", world=world, retry=INSTANT) as hv:
        old = hv.resolve("web01")
        world.rename(old.id, "frontend01")
        with pytest.raises(VMNotFoundError):
            hv.set_target("web01", "7GiB")
        assert hv.set_target("frontend01", "7GiB").vm.id == old.id
        # the name now belongs to another VM: the fresh read says so, and the session follows
        other = hv.resolve("web02")
        world.rename(other.id, "web01")
        assert hv.get_stats(["web01"])[0].vm.id == other.id


def test_a_vanished_vm_is_looked_up_again() -> None:
    world = World(load_scenario("seed"), flavor="kvm")
    with hvballoon.connect("fake://seed", world=world, retry=INSTANT) as hv:
        hv.list_vms()
        web01 = hv.resolve("web01")
        world.vanish(web01.id)
        res = hv.set_targets([("web01", "7GiB"), (web01, "7GiB"), ("web02", "8GiB")])
        assert isinstance(res["web01"], VMNotFoundError)
        assert isinstance(res[web01.id], VMNotFoundError)
        assert not res.applied  # validation failed for two VMs: nothing applied


def test_power_state_comes_from_the_fresh_read() -> None:
    world = World(load_scenario("seed"), flavor="hyperv")
    with hvballoon.connect("fake://seed?flavor=hyperv", world=world, retry=INSTANT) as hv:
        cached = hv.resolve("web01")  # Dynamic Memory, running: its maximum can only rise
        assert cached.power_state is PowerState.RUNNING
        with pytest.raises(InvalidStateError):
            hv.set_target("web01", "8GiB")
        world.power_off(cached.id)
        change = hv.set_target("web01", "8GiB")  # off: any maximum goes, and no floor applies
        assert change.vm.power_state is PowerState.STOPPED
        assert any("no usage floor" in w for w in change.warnings)
        assert hv.set_config("web01", minimum="1GiB").changed  # off: the minimum may rise too


def test_name_cache_expiry(hv: hvballoon.Hypervisor) -> None:
    hv.list_vms()
    hv.name_cache_seconds = 0
    calls = counted(hv)
    hv.get_stats(["web01"])
    assert calls["lookup_vms"] == 1
    hv.get_stats([hv.resolve("web01").id])  # ids never expire
    assert calls["lookup_vms"] == 2
    with pytest.raises(InvalidRequestError):
        hv.name_cache_seconds = -1


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_one_vm_that_cannot_be_read_is_its_own_refusal(skip_invalid: bool) -> None:
    """A VM the account may not read (ESXi: its allocation in the answer's missingSet) is that
    VM's refusal: the others are read in one more bulk read, held back unless ``skip_invalid``."""
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        names = ("web01", "web02", "web03")
        before = {s.vm.name: s.target_bytes for s in hv.get_stats(list(names))}
        reads = deny_reading(hv, "web02", "get_stats_and_configs")
        res = hv.set_targets({n: "12GiB" for n in names}, skip_invalid=skip_invalid)
        assert isinstance(res["web02"], PermissionDeniedError) and res["web02"].vm == "web02"
        assert reads == [list(names), ["web01", "web03"]]
        assert res.applied is skip_invalid
        assert sorted(res.made) == (["web01", "web03"] if skip_invalid else [])
        for n in ("web01", "web03"):
            change = res[n]
            assert isinstance(change, Change) and change.dry_run is not skip_invalid
        after = {s.vm.name: s.target_bytes for s in hv.get_stats(list(names))}
        assert after["web02"] == before["web02"]
        for n in ("web01", "web03"):
            assert after[n] == (12 * GiB if skip_invalid else before[n])


def test_a_bulk_change_of_many_vms_is_one_line_at_info_and_one_per_vm_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a line per VM at INFO: a controller moving 10,000 VMs logged 10,000 lines a round
    with hvballoon.connect("fake://dense") as dense:
        names = [vm.name for vm in dense.list_vms()]
        assert len(names) == 14
        with caplog.at_level(logging.DEBUG, logger="hvballoon"):
            assert dense.set_targets({n: "15GiB" for n in names}).changed
            assert dense.set_configs([(n, {"stats_period": 3}) for n in names]).changed
            assert dense.set_targets({names[0]: "14GiB", names[1]: "14GiB"}).changed
    info = [r.getMessage() for r in caplog.records if r.name == "hvballoon" and r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.name == "hvballoon" and r.levelno == logging.DEBUG]
    assert info == [
        f"set the targets of 14 VMs: {', '.join(names[:10])}, and 4 more",
        f"changed the memory configs of 14 VMs: {', '.join(names[:10])}, and 4 more",
        f"set target of {names[0]} to 14 GiB (balloon)",  # a few VMs: a line each
        f"set target of {names[1]} to 14 GiB (balloon)",
    ]
    assert f"set target of {names[13]} to 15 GiB (balloon)" in debug
    assert f"changed memory config of {names[13]}: ['stats_period_seconds']" in debug
