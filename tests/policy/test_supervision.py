"""The controller left running on a hypervisor that fails: failed sweeps skip a round (counted,
with backoff), failed moves are the VM's own, stale figures never lower, broken sessions are
replaced through a factory, and after too many failed rounds in a row it gives back what it
lowered (fail open). All on the fake backend with scripted faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import HVConnectionError, InvalidRequestError, InvalidStateError
from hvballoon.policy import Controller, ControllerSettings
from hvballoon.policy.health import default_max_failed_rounds
from hvballoon.policy.journal import Journal, Move
from hvballoon.policy.release import MARK_KEY, parse_mark, release
from hvballoon.units import GiB
from tests.support.policies import Fixed, seed_session, seed_settings, targets


def test_a_failed_sweep_skips_the_round_counts_it_and_backs_off() -> None:
    waits: list[float] = []
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings(interval_seconds=10, max_backoff_seconds=35))
        w.faults.add(op="get_stats", kind="timeout", count=9)  # three rounds' worth of attempts
        rounds = list(ctl.run(rounds=5, sleep=waits.append))
        assert [r.ok for r in rounds] == [False, False, False, True, True]
        assert [r.error.code for r in rounds[:3] if r.error] == ["timeout"] * 3
        assert [len(r) for r in rounds] == [0, 0, 0, 10, 10]
        assert [r.number for r in rounds] == [0, 1, 2, 3, 4]
        # the interval after one failure, doubled after each more, at most 35 s; then the interval
        assert waits[:3] == [10.0, 20.0, 35.0]
        assert waits[3] == pytest.approx(10.0, abs=1.0)
        h = ctl.health
        assert (h.rounds, h.failed_rounds, h.failed_by_code, h.consecutive_failures) == (
            5,
            3,
            {"timeout": 3},
            0,
        )
        assert h.last_success_at is not None
        # nothing moved during the failed rounds, and the rounds that worked lowered every VM
        assert all(t == 12 * GiB for t in targets(hv).values())


def test_a_failed_move_is_that_vms_decision_never_the_rounds_end() -> None:
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())
        w.faults.add(op="set_target", kind="connection_lost", vm="web02", rate=1.0)
        (rnd,) = ctl.run(rounds=1)
        assert rnd.ok
        by_vm = {d.vm: d for d in rnd}
        assert by_vm["web02"].action == "error" and by_vm["web02"].error_code == "connection_failed"
        assert not by_vm["web02"].applied
        assert all(d.action == "lower" and d.applied for name, d in by_vm.items() if name != "web02")
        assert ctl.health.moves_failed == 1
        assert targets(hv)["web02"] == 16 * GiB
        # the journal says what was asked; web02's move is recorded as failed
        states = {c["vm"]: c["state"] for c in ctl.journal.changes()}
        assert states["web02"] == "failed" and states["web01"] == "made"


def test_a_bulk_call_that_fails_whole_makes_each_move_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())

        def down(*_a: Any, **_k: Any) -> Any:
            raise HVConnectionError("the connection to the hypervisor was lost")

        monkeypatch.setattr(hv, "set_targets", down)
        (rnd,) = ctl.run(rounds=1)
        assert rnd.ok and {d.action for d in rnd} == {"error"}


@pytest.mark.parametrize("respect_guard_rails", [True, False])
def test_stale_or_missing_figures_never_lower_a_vm(respect_guard_rails: bool) -> None:
    with fake.world("seed") as w, seed_session(w) as hv:
        w.faults.add(op="get_stats", kind="stats_stale", vm="web03", duration=3600, count=1)
        hv.get_stats()
        w.advance(600)
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings(respect_guard_rails=respect_guard_rails))
        by_vm = {d.vm: d for d in ctl.step()}
        assert by_vm["web03"].action == "hold" and by_vm["web03"].rule == "controller.stale_figures"
        assert by_vm["web01"].action == "lower"
        assert targets(hv)["web03"] == 16 * GiB


def test_after_too_many_failed_rounds_it_gives_back_what_it_lowered_and_tries_on() -> None:
    waits: list[float] = []
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings(max_failed_rounds=3))
        assert [r.ok for r in ctl.run(rounds=1)] == [True]
        assert len(ctl.lowered()) == 10
        # the host figures stop answering: the sweep fails, the VMs can still be moved
        rule = w.faults.add(op="get_host_stats", kind="timeout", rate=1.0)
        ctl.settings = seed_settings(max_failed_rounds=3, host_memory_bytes=None)
        rounds = list(ctl.run(rounds=4, sleep=waits.append))
        assert [r.ok for r in rounds] == [False] * 4
        assert [r.released is not None for r in rounds] == [False, False, True, False]
        report = rounds[2].released
        assert report is not None and report.released == 10 and report.failed == 0
        assert all(t == 16 * GiB for t in targets(hv).values())
        assert ctl.lowered() == [] and ctl.health.fail_open and ctl.health.fail_open_releases == 1
        # it keeps trying; once the host answers, it runs (and lowers) again
        w.faults.rules.remove(rule)
        (again,) = ctl.run(rounds=1)
        assert again.ok and not ctl.health.fail_open and len(ctl.lowered()) == 10


def test_a_release_that_cannot_be_made_yet_is_made_when_the_hypervisor_answers_again() -> None:
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings(max_failed_rounds=2))
        list(ctl.run(rounds=1))
        rule = w.faults.add(op="get_stats", kind="timeout", rate=1.0)  # the release needs it too
        rounds = list(ctl.run(rounds=3, sleep=lambda _s: None))
        assert [r.ok for r in rounds] == [False] * 3 and all(r.released is None for r in rounds)
        assert ctl.health.fail_open and len(ctl.lowered()) == 10
        w.faults.rules.remove(rule)
        (back,) = ctl.run(rounds=1, sleep=lambda _s: None)
        # the pending release first, then the round itself (which lowers again)
        assert back.released is not None and back.released.released == 10
        assert back.ok and ctl.health.fail_open_releases == 1


def test_the_default_failed_rounds_fit_in_a_few_minutes_whatever_the_interval() -> None:
    assert default_max_failed_rounds(10, 60) == 5
    assert default_max_failed_rounds(1, 60) == 8  # 1+2+4+8+16+32+60+60 s
    assert default_max_failed_rounds(120, 120) == 3  # never fewer than three
    ctl = Controller(lambda: hvballoon.connect("fake://seed"), "static", ControllerSettings())
    assert ctl.max_failed_rounds == 5
    ctl.settings = ControllerSettings(max_failed_rounds=7)
    assert ctl.max_failed_rounds == 7
    ctl.close()


def test_a_broken_session_is_replaced_through_the_factory() -> None:
    opened: list[hvballoon.Hypervisor] = []
    with fake.world("seed") as w:

        def connect() -> hvballoon.Hypervisor:
            hv = seed_session(w)
            opened.append(hv)
            return hv

        with Controller(connect, Fixed(12 * GiB), seed_settings()) as ctl:
            assert [r.ok for r in ctl.run(rounds=1)] == [True] and len(opened) == 1
            rule = w.faults.add(op="get_stats", kind="connection_lost", rate=1.0)
            rounds = list(ctl.run(rounds=3, sleep=lambda _s: None))
            assert [r.ok for r in rounds] == [False] * 3
            assert [r.reconnected for r in rounds] == [False, True, True]
            assert len(opened) == 3 and ctl.health.reconnects == 2
            assert opened[0]._closed and opened[1]._closed and not opened[2]._closed
            w.faults.rules.remove(rule)
            (rnd,) = ctl.run(rounds=1)
            assert rnd.ok and rnd.reconnected and len(opened) == 4
        assert opened[-1]._closed  # the controller closes the session it opened


def test_a_factory_that_cannot_connect_fails_the_round_and_is_tried_again() -> None:
    calls = 0
    with fake.world("seed") as w:

        def connect() -> hvballoon.Hypervisor:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise HVConnectionError("the hypervisor does not answer")
            return seed_session(w)

        with Controller(connect, Fixed(12 * GiB), seed_settings()) as ctl:
            rounds = list(ctl.run(rounds=3, sleep=lambda _s: None))
        assert [r.ok for r in rounds] == [False, False, True]
        assert [r.error.code for r in rounds if r.error] == ["connection_failed"] * 2


def test_without_a_factory_the_session_is_kept() -> None:
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())
        w.faults.add(op="get_stats", kind="connection_lost", rate=1.0)
        rounds = list(ctl.run(rounds=3, sleep=lambda _s: None))
        assert not any(r.reconnected for r in rounds) and ctl.hv is hv


def test_the_journal_records_before_each_change_and_a_new_controller_resumes(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with fake.world("seed") as w, seed_session(w) as hv:
        uri = hv.uri
        with Journal.open(path, uri=uri) as journal:
            ctl = Controller(hv, Fixed(12 * GiB, {"web01": 8 * GiB}), seed_settings(), journal=journal)
            list(ctl.run(rounds=1))
            entries = {e.vm: e for e in journal.lowered()}
            assert entries["web01"].before_bytes == 16 * GiB and entries["web01"].target_bytes == 8 * GiB
            # raised back to what it had: no longer lowered
            ctl.policy = Fixed(12 * GiB, {"web01": 16 * GiB})
            list(ctl.run(rounds=1))
            assert "web01" not in {e.vm for e in journal.lowered()}
            ctl.policy = Fixed(12 * GiB, {"web01": 10 * GiB})
            list(ctl.run(rounds=1))
        # the controller is gone (never released): another one resumes from the journal
        with Journal.open(path, uri=uri) as journal:
            resumed = Controller(hv, "static", seed_settings(), journal=journal)
            assert {e.vm: e.before_bytes for e in resumed.lowered()}["web01"] == 16 * GiB
            report = resumed.release()
            assert report.released == 10 and journal.lowered() == []
        assert all(t == 16 * GiB for t in targets(hv).values())


def test_a_dry_run_journals_and_marks_nothing(tmp_path: Path) -> None:
    with (
        fake.world("seed", flavor="esxi") as w,
        seed_session(w) as hv,
        Journal.open(tmp_path / "j.db", uri=hv.uri) as j,
    ):
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings(), journal=j, dry_run=True)
        list(ctl.run(rounds=2))
        assert j.lowered() == [] and j.changes() == [] and hv.get_marks(MARK_KEY) == {}


def test_esxi_limits_are_marked_with_what_they_replaced_and_found_without_the_journal() -> None:
    with fake.world("seed", flavor="esxi") as w, seed_session(w) as hv:
        db01 = hv.resolve("db01")
        hv.set_config("db01", limit="14GiB")  # a limit of the administrator's
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())
        list(ctl.run(rounds=1))
        marks = hv.get_marks(MARK_KEY)
        assert len(marks) == 10
        assert marks[db01.id] == str(14 * GiB)
        assert marks[hv.resolve("web01").id] == "unlimited"
        # a controller without the journal (lost) finds what was lowered by the marks
        fresh = Controller(hv, Fixed(12 * GiB), seed_settings())
        list(fresh.run(rounds=1))
        found = {e.vm: e for e in fresh.lowered()}
        assert len(found) == 10 and found["web01"].before_unlimited and found["db01"].before_bytes == 14 * GiB
        report = fresh.release()
        assert report.released == 10
        assert hv.get_config("web01").limit_bytes is None  # no limit, as before
        assert hv.get_config("db01").limit_bytes == 14 * GiB  # the administrator's, as before
        assert hv.get_marks(MARK_KEY) == {}


@pytest.mark.parametrize("value", ["", "abc", "-1", "0", "12GiB", "1e9", "unlimited please"])
def test_a_garbled_mark_is_named_and_that_vm_left_out(value: str) -> None:
    with pytest.raises(ValueError, match=MARK_KEY):
        parse_mark(value)
    with fake.world("seed", flavor="esxi") as w, seed_session(w) as hv:
        hv.set_mark("web01", MARK_KEY, "unlimited")
        hv.set_config("web01", limit="12GiB")
        w.set_mark(hv.resolve("web02").id, MARK_KEY, value)  # written behind hvballoon's back
        ctl = Controller(hv, "static", seed_settings())
        list(ctl.run(rounds=1))  # adopts the marks it can read
        assert [e.vm for e in ctl.lowered()] == ["web01"]
        report = release(hv, journal=None, marks=True)
        assert {r.vm: r.action for r in report.vms} == {"web01": "released", "web02": "error"}
        assert MARK_KEY in next(r for r in report.vms if r.vm == "web02").reason


def test_a_vm_that_cannot_be_marked_is_not_lowered() -> None:
    with fake.world("seed", flavor="esxi") as w, seed_session(w) as hv:
        w.faults.add(op="set_config", kind="permission_denied", vm="web02", rate=1.0)
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())
        by_vm = {d.vm: d for d in ctl.step()}
        assert by_vm["web02"].action == "error" and "not applied" in by_vm["web02"].reason
        assert by_vm["web02"].error_code == "permission_denied"
        assert targets(hv)["web02"] == 16 * GiB
        assert "web02" not in {e.vm for e in ctl.lowered()}


def test_stop_ends_the_run_after_the_round_under_way() -> None:
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, Fixed(12 * GiB), seed_settings())
        seen = []
        for rnd in ctl.run():
            seen.append(rnd)
            if len(seen) == 3:
                ctl.stop()
        assert len(seen) == 3 and ctl.stopping


def test_a_controller_needs_a_session_or_a_factory() -> None:
    with pytest.raises(InvalidRequestError, match="a session or a function"):
        Controller("fake://seed", "static")  # type: ignore[arg-type]


class TestJournal:
    def test_a_journal_belongs_to_one_uri_and_one_controller_at_a_time(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        with Journal.open(path, uri="fake://seed") as j:
            with pytest.raises(InvalidStateError, match="in use by a running controller") as info:
                Journal.open(path, uri="fake://seed")
            assert info.value.details["holder"].startswith("pid ")
            j.intend(1, [Move("id", "web01", "balloon", 16 * GiB, 8 * GiB)])
        with pytest.raises(InvalidRequestError, match="belongs to the controller of fake://seed"):
            Journal.open(path, uri="qemu:///system")
        with Journal.open(path, uri="fake://seed", lock=False) as j:  # the lock is free again
            assert [e.vm for e in j.lowered()] == ["web01"]

    @pytest.mark.parametrize("content", [b"not a database at all" * 100, b""])
    def test_a_file_that_is_not_a_journal_is_refused(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "x.db"
        path.write_bytes(content)
        if content:
            with pytest.raises(InvalidRequestError, match="is not a hvballoon journal"):
                Journal.open(path, uri="fake://seed")
        else:  # an empty file is a new journal
            Journal.open(path, uri="fake://seed").close()

    def test_other_databases_and_paths_are_refused(self, tmp_path: Path) -> None:
        import sqlite3

        other = tmp_path / "other.db"
        sqlite3.connect(other).execute("CREATE TABLE meta (key TEXT, value TEXT)").connection.commit()
        sqlite3.connect(other).execute("INSERT INTO meta VALUES ('format', '99')").connection.commit()
        with pytest.raises(InvalidRequestError, match="not a hvballoon journal"):
            Journal.open(other, uri="fake://seed")
        with pytest.raises(InvalidRequestError, match="is a directory"):
            Journal.open(tmp_path, uri="fake://seed")
        with pytest.raises(InvalidRequestError, match="no journal at"):
            Journal.open(tmp_path / "none.db", uri="fake://seed", create=False)
        blocked = tmp_path / "file"
        blocked.write_text("")
        with pytest.raises(InvalidRequestError, match="cannot create the journal's directory"):
            Journal.open(blocked / "sub" / "j.db", uri="fake://seed")

    def test_the_default_path_is_per_uri_under_the_state_directory_and_never_holds_a_password(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        from hvballoon.policy.journal import default_journal_path, state_directory

        monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'systemd'}:{tmp_path / 'second'}")
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
        assert state_directory() == tmp_path / "systemd"
        monkeypatch.delenv("STATE_DIRECTORY")
        monkeypatch.setattr("os.geteuid", lambda: 0)
        assert state_directory() == tmp_path / "xdg" / "hvballoon"  # set explicitly: even for root
        monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
        assert state_directory() == Path("/var/lib/hvballoon")
        monkeypatch.setattr("os.geteuid", lambda: 1000)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert state_directory() == tmp_path / "home" / ".local" / "state" / "hvballoon"
        a, b = default_journal_path("esxi://root@esx01"), default_journal_path("esxi://root@esx02")
        assert a != b and a.parent.name == "journal"
        assert "hunter2" not in str(default_journal_path("esxi://root:hunter2@esx01"))

    def test_the_change_log_is_pruned(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("hvballoon.policy.journal.KEEP_CHANGES", 5)
        with Journal.open(None, uri="fake://seed") as j:
            for i in range(12):
                j.intend(i, [Move("id", "web01", "balloon", 16 * GiB, (8 + i % 2) * GiB)])
            assert [c["round"] for c in j.changes()] == [7, 8, 9, 10, 11]
            assert len(j.lowered()) == 1
