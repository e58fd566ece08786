"""VMs whose marks could not be read are not known to be unmarked: ``get_marks`` names them,
a release from the marks names them as not released (typed per VM, exit code, ``--json``), and
the controller does not lower them as if no controller had. On the fake's ESXi flavour, with a
scripted ``get_marks`` fault (a VM whose ``extraConfig`` the account may not read)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import PartialChangeError, PermissionDeniedError
from hvballoon.fake.faults import FaultPlan
from hvballoon.fake.store import WorldStore
from hvballoon.policy import Controller
from hvballoon.policy.release import MARK_KEY, release
from hvballoon.units import GiB
from tests.support.cli import invoke
from tests.support.policies import Fixed, seed_session, seed_settings


def test_get_marks_names_the_vms_whose_marks_it_could_not_read() -> None:
    with fake.world("seed", flavor="esxi") as w, seed_session(w) as hv:
        web01, db01 = hv.resolve("web01"), hv.resolve("db01")
        hv.set_mark("web01", MARK_KEY, "unlimited")
        hv.set_mark("db01", MARK_KEY, str(16 * GiB))
        w.faults.add(op="get_marks", kind="permission_denied", vm="db01", count=1)
        marks = hv.get_marks(MARK_KEY)
        assert dict(marks) == {web01.id: "unlimited"}  # db01's is not known, not absent
        assert not marks.complete and list(marks.unreadable) == [db01.id]
        error = marks.unreadable[db01.id]
        assert isinstance(error, PermissionDeniedError)
        assert (error.vm, error.backend, error.uri) == ("db01", "fake", hv.uri)
        again = hv.get_marks(MARK_KEY)  # the rule fired once: read the next time
        assert again.complete and again == {web01.id: "unlimited", db01.id: str(16 * GiB)}


def test_a_get_marks_fault_is_one_that_fails_a_read() -> None:
    with pytest.raises(ValueError, match="a get_marks fault is one of"):
        FaultPlan().add(op="get_marks", kind="slow")


def test_a_release_from_marks_names_a_vm_it_could_not_read_as_not_released() -> None:
    with fake.world("seed", flavor="esxi") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())  # its journal in memory: lost
        list(ctl.run(rounds=1))
        lowered = {n for n, t in ((g.name, g.target_bytes) for g in w.guests.values()) if t == 12 * GiB}
        assert "db01" in lowered and len(lowered) == 10
        w.faults.add(op="get_marks", kind="permission_denied", vm="db01", count=1)
        report = release(hv)
        actions = {r.vm: r.action for r in report.vms}
        assert actions == {**dict.fromkeys(lowered - {"db01"}, "released"), "db01": "error"}
        db01 = next(r for r in report.vms if r.vm == "db01")
        assert db01.source == "marks" and db01.error is not None
        assert db01.error["code"] == "permission_denied" and "not released" in db01.reason
        error = report.error()
        assert isinstance(error, PartialChangeError) and error.details["failed"] == ["db01"]
        # left as it was, mark and all: the next release gives it back
        assert hv.get_config("db01").limit_bytes == 12 * GiB
        assert hv.resolve("db01").id in hv.get_marks(MARK_KEY)
        assert {r.vm: r.action for r in release(hv).vms} == {"db01": "released"}


def test_the_command_exits_with_the_vms_error_when_nothing_else_was_lowered(tmp_path: Path) -> None:
    uri = f"fake://seed?flavor=esxi&state={tmp_path / 'w.db'}"
    with hvballoon.connect(uri) as hv:
        hv.set_config("db01", limit="12GiB")
        hv.set_mark("db01", MARK_KEY, "unlimited")  # as the controller leaves it
    store = WorldStore(str(tmp_path / "w.db"), lambda: pytest.fail("the world exists"))
    with store.transaction() as w:
        w.faults.add(op="get_marks", kind="permission_denied", vm="db01", count=1)
    store.close()
    r = invoke("release", uri, "--from-marks", "--json")
    assert r.returncode == 6, r.stderr  # permission_denied's exit code: nothing was released
    report = json.loads(r.stdout)
    assert [(v["vm"], v["action"], v["error"]["code"]) for v in report["vms"]] == [
        ("db01", "error", "permission_denied")
    ]
    with hvballoon.connect(uri) as hv:
        assert hv.get_config("db01").limit_bytes == 12 * GiB  # nothing changed


def test_the_controller_does_not_lower_a_vm_whose_marks_it_could_not_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A VM another controller lowered (journal lost) whose mark cannot be read is held until
    it can: lowered again as unmarked, its mark would be overwritten with the lowered limit."""
    with fake.world("seed", flavor="esxi") as w, seed_session(w) as hv:
        hv.set_config("db01", limit="13GiB")
        hv.set_mark("db01", MARK_KEY, "unlimited")  # the earlier controller's
        w.faults.add(op="get_marks", kind="permission_denied", vm="db01", count=2)
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())
        with caplog.at_level(logging.INFO, logger="hvballoon.policy"):
            rounds = [{d.vm: d for d in ctl.step()} for _ in range(3)]
        first, second, third = (r["db01"] for r in rounds)
        assert (first.action, first.rule) == ("hold", "controller.marks_unreadable")
        assert "marks could not be read" in first.reason and not first.applied
        assert (second.action, second.rule) == ("hold", "controller.marks_unreadable")
        assert rounds[0]["web01"].action == "lower" and rounds[0]["web01"].applied  # the others go on
        warned = [r for r in caplog.records if getattr(r, "event", None) == "marks_unreadable"]
        assert len(warned) == 1 and warned[0].vm == "db01"  # type: ignore[attr-defined]
        # read at last: adopted with what its mark says, lowered as the controller's
        assert third.action == "lower" and third.applied
        entry = next(e for e in ctl.lowered() if e.vm == "db01")
        assert entry.before_unlimited and entry.marked
        assert hv.get_marks(MARK_KEY)[hv.resolve("db01").id] == "unlimited"  # not overwritten
