"""``Hypervisor.set_configs``: many VMs read in one bulk read, all planned by the rules of
``set_config`` before any is changed, one result per VM."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

import hvballoon
from hvballoon import TargetsInterrupted, fake
from hvballoon.errors import InvalidRequestError, PartialChangeError, VMNotFoundError
from tests.support.calls import counted, deny_reading

GiB = 2**30
ESXI = "fake://seed?flavor=esxi"
HYPERV = "fake://seed?flavor=hyperv"


def _reservations(hv: hvballoon.Hypervisor, *names: str) -> dict[str, int | None]:
    return {c.vm.name: c.reservation_bytes for c in hv.get_configs(list(names))}


def test_one_bulk_read_then_one_change_per_vm() -> None:
    with hvballoon.connect(ESXI) as hv:
        hv.list_vms()
        calls = counted(hv)
        res = hv.set_configs({name: {"reservation": "2GiB"} for name in ("web01", "web02", "web03")})
        assert res.ok and res.applied and sorted(res.made) == ["web01", "web02", "web03"]
        assert calls["get_configs"] == 1 and calls["get_config"] == 0 and calls["apply_config"] == 3
        assert _reservations(hv, "web01", "web02", "web03") == dict.fromkeys(
            ("web01", "web02", "web03"), 2 * GiB
        )


def test_each_vm_gets_the_change_set_config_would_make() -> None:
    asked = {"web01": {"buffer_percent": 35, "priority": 70}, "web02": {"maximum": "20GiB"}}
    with fake.world("seed", flavor="hyperv") as w:
        with hvballoon.connect("fake://seed", world=w) as hv:
            single = {name: hv.set_config(name, dry_run=True, **fields) for name, fields in asked.items()}
            res = hv.set_configs(asked, dry_run=True)
    for name, change in single.items():
        bulk = res[name]
        assert not isinstance(bulk, Exception)
        assert (bulk.before, bulk.after, bulk.changed, bulk.dry_run) == (
            change.before,
            change.after,
            change.changed,
            True,
        )
    assert not res.applied and res.made == frozenset()


def test_a_vm_refused_by_its_rules_changes_none() -> None:
    with hvballoon.connect(ESXI) as hv:
        res = hv.set_configs(
            [("web01", {"reservation": "2GiB"}), ("web02", {"reservation": "8GiB", "limit": "1GiB"})]
        )
        assert not res.ok and not res.applied and res.made == frozenset()
        assert isinstance(res["web02"], InvalidRequestError)
        assert res["web02"].details["rule"] == "reservation_le_limit"
        web01 = res["web01"]
        assert not isinstance(web01, Exception) and web01.dry_run and web01.changed
        assert any("not applied" in w and "web02" in w for w in web01.warnings)
        assert _reservations(hv, "web01", "web02") == {"web01": 0, "web02": 0}
        res = hv.set_configs(
            [("web01", {"reservation": "2GiB"}), ("web02", {"reservation": "8GiB", "limit": "1GiB"})],
            skip_invalid=True,
        )
        assert res.applied and sorted(res.made) == ["web01"]
        assert _reservations(hv, "web01", "web02") == {"web01": 2 * GiB, "web02": 0}


def test_a_missing_vm_changes_none() -> None:
    with hvballoon.connect(ESXI) as hv:
        res = hv.set_configs({"web01": {"reservation": "2GiB"}, "web99": {"reservation": "2GiB"}})
        assert isinstance(res["web99"], VMNotFoundError) and not res.applied
        assert _reservations(hv, "web01") == {"web01": 0}


def test_a_failure_while_applying_is_a_partial_change_and_does_not_stop_the_others() -> None:
    with fake.world("seed", flavor="esxi") as w:
        w.faults.add(op="set_config", kind="permission_denied", vm="web02")
        with hvballoon.connect("fake://seed", world=w, retry=hvballoon.RetryPolicy(max_attempts=1)) as hv:
            res = hv.set_configs({name: {"reservation": "2GiB"} for name in ("web01", "web02", "web03")})
            assert res.applied and sorted(res.made) == ["web01", "web03"]
            assert isinstance(res.error, PartialChangeError)
            assert res["web02"].code == "permission_denied"  # type: ignore[union-attr]
            assert _reservations(hv, "web01", "web02", "web03") == {
                "web01": 2 * GiB,
                "web02": 0,
                "web03": 2 * GiB,
            }


def test_an_unchanged_vm_is_not_sent() -> None:
    with hvballoon.connect(ESXI) as hv:
        hv.set_config("web01", reservation="2GiB")
        calls = counted(hv)
        res = hv.set_configs({"web01": {"reservation": "2GiB"}, "web02": {"reservation": "2GiB"}})
        assert res.ok and sorted(res.made) == ["web02"] and calls["apply_config"] == 1
        assert not res["web01"].changed  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ({}, "at least one VM"),
        ([], "at least one VM"),
        ("web01", "a mapping"),
        ([("web01", {"reservation": "1GiB"}), ("web01", {"limit": "2GiB"})], "named twice"),
        ({"": {"reservation": "1GiB"}}, "non-empty name"),
        ([(3, {"reservation": "1GiB"})], "non-empty name"),
    ],
)
def test_a_malformed_request_is_refused_whole(configs: Any, message: str) -> None:
    with hvballoon.connect(ESXI) as hv:
        calls = counted(hv)
        with pytest.raises(InvalidRequestError, match=message):
            hv.set_configs(configs)
        assert calls["apply_config"] == 0


@pytest.mark.parametrize(
    ("call", "asked"),
    [("set_targets", "6GiB"), ("set_configs", {"limit": "6GiB"})],
)
def test_a_vm_named_twice_is_said_with_the_same_context_by_both_bulk_calls(call: str, asked: Any) -> None:
    with hvballoon.connect(ESXI) as hv:
        with pytest.raises(InvalidRequestError, match="named twice") as info:
            getattr(hv, call)([("web01", asked), ("web01", asked)])
    assert (info.value.backend, info.value.vm) == ("fake", "web01")
    assert str(info.value).endswith("[backend=fake, vm=web01]")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("2GiB", "is a mapping"),
        ({}, "no field to change"),
        ({"reservation": None}, "no field to change"),
        ({"reservaton": "2GiB"}, "unknown config option"),
        ({"reservation": "two gigs"}, "reservation"),
        ({"shares": -5}, "shares"),
    ],
)
def test_malformed_options_of_one_vm_refuse_it_and_change_none(fields: Any, message: str) -> None:
    with hvballoon.connect(ESXI) as hv:
        res = hv.set_configs({"web01": {"reservation": "2GiB"}, "web02": fields})
        error = res["web02"]
        assert isinstance(error, hvballoon.HVBalloonError) and message in str(error)
        assert error.vm == "web02" and not res.applied
        assert _reservations(hv, "web01") == {"web01": 0}


def test_the_same_vm_by_name_and_by_id_is_refused() -> None:
    with hvballoon.connect(ESXI) as hv:
        vm = hv.resolve("web01")
        res = hv.set_configs([("web01", {"reservation": "1GiB"}), (vm.id, {"reservation": "2GiB"})])
        assert not res.applied
        for key in ("web01", vm.id):
            assert isinstance(res[key], InvalidRequestError) and "named 2 times" in str(res[key])
        assert _reservations(hv, "web01") == {"web01": 0}


def test_a_closed_session_refuses() -> None:
    hv = hvballoon.connect(HYPERV)
    hv.close()
    with pytest.raises(hvballoon.InvalidStateError):
        hv.set_configs({"web01": {"buffer_percent": 30}})


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_one_vm_that_cannot_be_read_is_its_own_refusal(skip_invalid: bool) -> None:
    """A VM the account may not read fails alone: the others are read (in one more bulk read),
    held back unless ``skip_invalid``, and changed with it."""
    from hvballoon.errors import PermissionDeniedError

    with hvballoon.connect(ESXI) as hv:
        names = ("web01", "web02", "web03")
        reads = deny_reading(hv, "web02", "get_configs")
        res = hv.set_configs({n: {"reservation": "2GiB"} for n in names}, skip_invalid=skip_invalid)
        assert isinstance(res["web02"], PermissionDeniedError) and res["web02"].vm == "web02"
        assert reads == [list(names), ["web01", "web03"]]
        if skip_invalid:
            assert res.applied and sorted(res.made) == ["web01", "web03"]
        else:
            assert not res.applied and res.made == frozenset()
            for n in ("web01", "web03"):
                change = res[n]
                assert not isinstance(change, Exception) and change.dry_run
                assert any("1 of 3 VMs were refused (web02)" in w for w in change.warnings)
        hv.backend.__dict__.pop("get_configs")
        after = 2 * GiB if skip_invalid else 0
        assert _reservations(hv, "web01", "web03") == {"web01": after, "web03": after}


def test_ctrl_c_while_applying_is_held_until_the_vm_in_flight_answers_and_the_rest_are_not_sent() -> None:
    # it broke off the change in flight and said only "interrupted": which VMs had changed?
    with hvballoon.connect("fake://seed?flavor=esxi&speed=1") as hv:
        faults = hv.backend.world.faults  # type: ignore[attr-defined]
        slow = faults.add(op="set_config", kind="slow", latency=2, vm="web02")  # 2 s of real time

        def ctrl_c_in_web02_s_change() -> None:
            while not slow.fired:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C does, to the main thread

        threading.Thread(target=ctrl_c_in_web02_s_change, daemon=True).start()
        with pytest.raises(TargetsInterrupted) as info:
            hv.set_configs({name: {"reservation": "2GiB"} for name in ("web01", "web02", "web03")})
        stop = info.value
        assert not stop.waiting and stop.not_sent == ["web03"]
        assert stop.results.applied and stop.results.made == {"web01", "web02"} and stop.results.ok
        web03 = stop.results["web03"]
        assert not isinstance(web03, Exception) and web03.dry_run and web03.changed
        assert web03.warnings == ("not applied: interrupted (Ctrl-C) before it was sent",)
        # what the hypervisor holds is what was said
        assert _reservations(hv, "web01", "web02", "web03") == {
            "web01": 2 * GiB,
            "web02": 2 * GiB,
            "web03": 0,
        }
