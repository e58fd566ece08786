"""The controller left running for months: what the world does to it between and during rounds
(a journal that can no longer be written, VMs that come and go, settings reloaded while the
hypervisor is away), and what it keeps of VMs that are gone. In this process, on the fake
backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import InvalidStateError
from hvballoon.policy import Controller
from hvballoon.policy.journal import Journal, Move
from hvballoon.policy.release import release
from hvballoon.units import GiB
from tests.support.policies import Fixed, seed_session, seed_settings, targets


def read_only(journal: Journal, on: bool = True) -> None:
    """The journal's file can no longer be written (as on a full disk or a read-only mount)."""
    journal._conn.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


class TestAJournalThatCannotBeWritten:
    def test_lowers_wait_for_it_raises_do_not_and_the_rounds_go_on(self, tmp_path: Path) -> None:
        with (
            fake.world("seed") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as journal,
        ):
            policy = Fixed(16 * GiB, {"web01": 8 * GiB})
            ctl = Controller(hv, policy, seed_settings(), journal=journal)
            first = {d.vm: d for d in ctl.attempt()}
            assert first["web01"].action == "lower" and first["web01"].applied
            read_only(journal)
            policy.per_vm = {"web01": 12 * GiB, "web02": 8 * GiB}
            rnd = ctl.attempt()
            assert rnd.ok, rnd.error
            made = {d.vm: d for d in rnd}
            # a raise never leaves a VM short: it is made without the journal
            assert made["web01"].action == "raise" and made["web01"].applied
            # a lower the journal does not hold could not be given back: not made
            assert made["web02"].action == "error" and made["web02"].error_code == "invalid_state"
            assert "cannot be written" in made["web02"].reason
            now = targets(hv)
            assert (now["web01"], now["web02"]) == (12 * GiB, 16 * GiB)
            assert [e.vm for e in ctl.lowered()] == ["web01"]  # what a release needs is still there
            read_only(journal, False)
            report = ctl.release()
            assert report.error() is None and targets(hv)["web01"] == 16 * GiB and not ctl.lowered()

    def test_a_marked_vm_loses_the_mark_when_its_lower_cannot_be_journalled(self, tmp_path: Path) -> None:
        from hvballoon.policy.release import MARK_KEY

        with (
            fake.world("seed", flavor="esxi") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as journal,
        ):
            ctl = Controller(hv, Fixed(16 * GiB, {"web01": 8 * GiB}), seed_settings(), journal=journal)
            read_only(journal)
            made = {d.vm: d for d in ctl.attempt()}
            assert made["web01"].action == "error" and made["web01"].error_code == "invalid_state"
            assert hv.capabilities.marks and hv.get_marks(MARK_KEY) == {}
            assert hv.get_config("web01").limit_bytes is None  # still unlimited

    def test_a_release_says_what_it_could_not_record(self, tmp_path: Path) -> None:
        with (
            fake.world("seed") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as journal,
        ):
            web01 = hv.resolve("web01")
            journal.intend(1, [Move(web01.id, "web01", "balloon", 16 * GiB, 8 * GiB)])
            journal.intend(1, [Move("gone-id", "old01", "balloon", 16 * GiB, 8 * GiB)])
            hv.set_target("web01", 8 * GiB)
            read_only(journal)
            report = release(hv, journal=journal)
            by_vm = {r.vm: r for r in report.vms}
            assert by_vm["web01"].action == "released" and targets(hv)["web01"] == 16 * GiB
            assert by_vm["old01"].action == "gone"
            assert all(any("could not record" in x for x in r.warnings) for r in report.vms)
            read_only(journal, False)
            assert {e.vm for e in journal.lowered()} == {"web01", "old01"}  # the next release forgets them

    def test_its_errors_are_typed_and_name_the_file(self, tmp_path: Path) -> None:
        with Journal.open(tmp_path / "j.db", uri="fake://seed") as journal:
            read_only(journal)
            with pytest.raises(InvalidStateError, match=r"j\.db.* cannot be written") as caught:
                journal.intend(1, [Move("id-1", "web01", "balloon", 16 * GiB, 8 * GiB)])
            assert caught.value.details["journal"] == str(tmp_path / "j.db")
            journal._conn.close()
            with pytest.raises(InvalidStateError, match="cannot be read"):
                journal.lowered()
        assert not isinstance(caught.value, sqlite3.Error)


class TestWhatItKeepsOfVMsThatComeAndGo:
    def test_a_vm_held_lowered_that_is_deleted_is_forgotten_after_an_hour(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        from hvballoon.policy.running import FORGET_GONE_SECONDS

        with fake.world("seed") as w, seed_session(w) as hv:
            ctl = Controller(
                hv, Fixed(16 * GiB, {"web01": 8 * GiB, "web02": 8 * GiB}), seed_settings(interval_seconds=600)
            )
            assert [d.applied for d in ctl.attempt() if d.vm in ("web01", "web02")] == [True, True]
            w.vanish(hv.resolve("web01").id)
            rounds = int(FORGET_GONE_SECONDS // 600)
            with caplog.at_level("INFO", logger="hvballoon"):
                assert all(r.ok for r in ctl.run(rounds=rounds))  # under an hour: still held
                assert {e.vm for e in ctl.lowered()} == {"web01", "web02"}
                assert all(r.ok for r in ctl.run(rounds=2))
            assert [e.vm for e in ctl.lowered()] == ["web02"]  # what exists is kept
            forgotten = [r for r in caplog.records if getattr(r, "event", None) == "forgotten"]
            assert [r.vm for r in forgotten] == ["web01"]  # type: ignore[attr-defined]
            assert ctl.journal.changes()[-1]["state"] == "released"

    def test_its_per_vm_times_are_kept_only_while_they_matter(self) -> None:
        with fake.world("seed") as w, seed_session(w) as hv:
            policy = Fixed(8 * GiB)
            ctl = Controller(hv, policy, seed_settings(interval_seconds=10, min_seconds_between_lowers=60))
            ctl.attempt()
            assert len(ctl._last_lower) >= 8  # the VMs just lowered are deferred
            policy.target = 6 * GiB
            assert all(d.rule != "fixed.set" or d.action != "lower" for d in ctl.attempt())
            list(ctl.run(rounds=8))  # 80 s later
            assert len(ctl._last_lower) <= len(hv.get_stats())
            before = len(ctl._last_lower)
            policy.target = 16 * GiB  # no more lowers: nothing new to remember
            list(ctl.run(rounds=8))
            assert before > 0 and ctl._last_lower == {}


class TestAHypervisorAwayForLong:
    def test_the_backoff_stays_at_its_bound_after_any_number_of_failures(self) -> None:
        from hvballoon.policy.health import ControllerHealth, backoff

        assert [backoff(10.0, n, 60.0) for n in (1, 3, 1024, 1025, 10**6)] == [10.0, 40.0, 60.0, 60.0, 60.0]
        assert backoff(1e-3, 10**9, 315360000.0) == 315360000.0
        h = ControllerHealth(consecutive_failures=2000)  # a day and more of failed rounds
        assert h.backoff_seconds(10.0, 60.0) == 60.0

    def test_the_controller_runs_on_through_thousands_of_failed_rounds(self) -> None:
        waits: list[float] = []
        with fake.world("seed") as w, seed_session(w) as hv:
            ctl = Controller(hv, Fixed(16 * GiB), seed_settings(interval_seconds=10, max_backoff_seconds=60))
            w.faults.add(op="get_stats", kind="connection_lost", probability=1.0)
            ctl.health.consecutive_failures = 1020  # as after some 17 hours of an outage
            rounds = list(ctl.run(rounds=10, sleep=waits.append))
            assert not any(r.ok for r in rounds) and waits == [60.0] * 9
            w.faults.clear()
            assert next(iter(ctl.run(rounds=1))).ok

    def test_a_release_after_a_round_that_lost_the_session_opens_a_new_one(self) -> None:
        opened: list[hvballoon.Hypervisor] = []

        def connect() -> hvballoon.Hypervisor:
            opened.append(seed_session(w))
            return opened[-1]

        with fake.world("seed") as w:
            with Controller(connect, Fixed(16 * GiB, {"web01": 8 * GiB}), seed_settings()) as ctl:
                assert ctl.attempt().ok and [e.vm for e in ctl.lowered()] == ["web01"]
                w.faults.add(op="get_stats", kind="connection_lost", count=3)
                assert not ctl.attempt().ok
                opened[0].close()  # the connection is dead (then SIGTERM, --release-on-exit)
                report = ctl.release()
                # the new session cannot read the 8 GiB target (libvirt keeps none), and the
                # balloon has not moved yet: the raise is sent all the same, or the balloon would
                # go on to 8 GiB after the release
                (r,) = report.vms
                assert report.error() is None and r.action == "released" and "sent again" in r.reason
                assert targets(opened[-1])["web01"] == 16 * GiB and len(opened) == 2


def test_a_release_on_exit_that_cannot_be_made_says_what_is_left_lowered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.cli import invoke

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    seed = Path(hvballoon.__file__).parent / "fake" / "scenarios" / "seed.yaml"
    scenario = tmp_path / "away.yaml"  # the hypervisor stops answering after the first round
    scenario.write_text(
        seed.read_text().replace("name: seed", "name: away", 1)
        + "faults:\n  - {op: get_stats, kind: connection_lost, after: 2, count: 1000}\n"
    )
    uri = f"fake://{scenario}?state={tmp_path / 'w.db'}"
    journal = tmp_path / "j.db"
    r = invoke("autoballoon", uri, "--rounds", "2", "--release-on-exit", "--journal", str(journal))
    assert r.returncode == 4, r.stderr
    summary = next(line for line in r.stderr.splitlines() if line.startswith("autoballoon: "))
    with Journal.open(journal, uri=uri) as j:
        held = len(j.lowered())
    assert held > 0 and f"{held} VMs held lowered" in summary  # the summary is said first
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not give back {held} VMs it lowered on exit: the connection")
    assert f"hvballoon release {uri}` gives them back" in last


def _settle_work(journal: Journal, round_no: int, moves: int) -> int:
    """The SQLite instructions (in hundreds) that settling ``moves`` moves of a round costs."""
    journal.intend(round_no, [Move(f"id-{i}", f"vm{i}", "balloon", 16 * GiB, 8 * GiB) for i in range(moves)])
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    journal._conn.set_progress_handler(tick, 100)
    try:
        journal.settle(round_no, {f"id-{i}": None for i in range(moves)})
    finally:
        journal._conn.set_progress_handler(None, 100)
    return steps[0]


def test_settling_a_round_costs_the_same_per_move_whatever_the_number_of_moves() -> None:
    # each move's outcome looked its row up by walking the change log back from its newest row
    # to that move's, past every move of the round after it: a round of 10,000 moves read 50
    # million rows (5 s)
    with Journal.open(None, uri="fake://seed") as few, Journal.open(None, uri="fake://seed") as many:
        for journal in (few, many):  # a long run: its change log full
            for r in range(1, 11):
                journal.intend(
                    r, [Move(f"id-{i}", f"vm{i}", "balloon", 16 * GiB, 8 * GiB) for i in range(1000)]
                )
        small, large = _settle_work(few, 11, 100), _settle_work(many, 11, 800)
    assert large < 1.5 * 8 * small, (small, large)
