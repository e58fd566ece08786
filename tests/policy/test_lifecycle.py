"""A VM the controller lowered goes through its lifecycle while the journal holds it lowered.

On KVM a balloon target lasts the domain's run: a cold start boots the VM at its definition's
size (libvirt's test driver and the fake alike), so a lowering the journal holds from before is
over — neither shown as in force nor "given back" over what an operator set since. An ESXi
limit (and a Hyper-V size) is configuration and survives a restart; there a VM someone else
resized since it was lowered is theirs, above or below the controller's target. A lowering that
does hold is never lost.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import InvalidStateError
from hvballoon.kinds import ESXI, KVM
from hvballoon.models import VM, PowerState
from hvballoon.policy import Controller, ControllerSettings
from hvballoon.policy.journal import Journal, Move
from hvballoon.policy.release import MARK_KEY, release
from tests.support.policies import INSTANT, Fixed, seed_session, seed_settings, targets

GiB = 2**30
MiB = 2**20


def restart(w: fake.World, name: str) -> None:
    """A cold start: powered off, then on (a new run)."""
    g = w.guest(name)
    w.power_off(g.id)
    w.power_on(g.id)
    w.advance(30)


def lowered_by_controller(w: fake.World, hv: hvballoon.Hypervisor, journal: Journal) -> Controller:
    """A controller that lowered web01 to 8 GiB and left the rest at 16 GiB."""
    ctl = Controller(hv, Fixed(16 * GiB, {"web01": 8 * GiB}), seed_settings(), journal=journal)
    first = {d.vm: d for d in ctl.attempt()}
    assert first["web01"].action == "lower" and first["web01"].applied
    w.advance(30)
    return ctl


class TestAKVMRestart:
    def test_release_leaves_what_someone_set_after_a_restart(self, tmp_path: Path) -> None:
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            lowered_by_controller(w, hv, j)
            restart(w, "web01")  # back at 16 GiB, its definition's size
            with seed_session(w) as operator:  # someone sizes it on purpose afterwards
                operator.set_target("web01", "12GiB", force=True)
            with seed_session(w) as other:  # `hvballoon release` in its own process
                report = release(other, journal=j)
            (r,) = report.vms
            assert r.action == "unchanged" and "restarted since it was lowered" in r.reason
            assert targets(hv)["web01"] == 12 * GiB  # not raised to the 16 GiB it had before
            assert j.lowered() == [] and j.changes()[-1]["state"] == "lapsed"
            assert report.error() is None

    def test_the_controller_forgets_a_lowering_a_restart_ended(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            ctl = lowered_by_controller(w, hv, j)
            (held,) = j.lowered()
            restart(w, "web01")
            ctl.policy = Fixed(16 * GiB)  # the policy leaves it alone from now on
            with caplog.at_level(logging.WARNING, logger="hvballoon.policy"):
                rnd = ctl.attempt()
            assert rnd.ok
            assert j.lowered() == [] and ctl.health.lapsed == 1  # not shown as lowered any more
            pytest.importorskip("prometheus_client")
            from hvballoon.policy.metrics import ControllerMetrics

            shown = ControllerMetrics(ctl).render()
            shown = shown.decode() if isinstance(shown, bytes) else shown
            assert (
                "hvballoon_controller_lapsed_total{" in shown and "hvballoon_controller_lowered_vms{" in shown
            )
            assert any(
                line.startswith("hvballoon_controller_lowered_vms{") and line.endswith(" 0.0")
                for line in shown.splitlines()
            )
            (event,) = [r for r in caplog.records if getattr(r, "event", None) == "lapsed"]
            assert event.vm == "web01" and "restarted" in event.reason  # type: ignore[attr-defined]
            assert held.run is not None and held.run != str(hv.resolve("web01").extra["libvirt_id"])
            assert ctl.release().vms == ()  # nothing to give back, nothing raised
            assert targets(hv)["web01"] == 16 * GiB

    def test_a_restart_under_the_same_domain_id_is_told_by_the_mark_it_lost(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After the host restarts, libvirt numbers domains from 1 again: web01 runs again
        under the ID it was lowered in, back at its definition's size. Its mark, which lasts
        one run, is gone: the lowering is over (``lapsed``), not given back over it."""
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            ctl = lowered_by_controller(w, hv, j)
            (held,) = j.lowered()
            assert held.marked and hv.get_marks(MARK_KEY).keys() == {held.vm_id}
            g = w.guest("web01")
            restart(w, "web01")
            w.runs[g.index] = int(held.run or 0)  # the same ID again, in a new run
            assert hv.resolve("web01").extra["libvirt_id"] == int(held.run or 0)
            ctl.policy = Fixed(16 * GiB)  # the policy leaves it alone from now on
            with caplog.at_level(logging.WARNING, logger="hvballoon.policy"):
                assert ctl.attempt().ok
            assert j.lowered() == [] and ctl.health.lapsed == 1
            (event,) = [r for r in caplog.records if getattr(r, "event", None) == "lapsed"]
            assert "its mark is gone" in event.reason  # type: ignore[attr-defined]
            assert ctl.release().vms == () and targets(hv)["web01"] == 16 * GiB

    def test_release_leaves_what_someone_set_after_a_restart_under_the_same_domain_id(
        self, tmp_path: Path
    ) -> None:
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            lowered_by_controller(w, hv, j)
            (held,) = j.lowered()
            g = w.guest("web01")
            restart(w, "web01")
            w.runs[g.index] = int(held.run or 0)  # the host restarted: the same ID, a new run
            with seed_session(w) as operator:
                operator.set_target("web01", "12GiB", force=True)
            with seed_session(w) as other:
                report = release(other, journal=j)
            (r,) = report.vms
            assert r.action == "unchanged" and "its mark is gone" in r.reason
            assert targets(hv)["web01"] == 12 * GiB  # not raised to the 16 GiB it had before
            assert j.lowered() == [] and j.changes()[-1]["state"] == "lapsed"

    def test_a_marked_vm_still_in_its_run_is_held_while_its_balloon_is_above_its_target(
        self, tmp_path: Path
    ) -> None:
        """Above its target in the same run with its mark on (a balloon on its way down, or a
        guest that took memory back): still the controller's lowering."""
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            ctl = lowered_by_controller(w, hv, j)
            with seed_session(w) as other:  # the balloon back up, its mark and run unchanged
                other.set_target("web01", "16GiB", force=True)
            w.advance(30)
            ctl.policy = Fixed(16 * GiB, {"web01": 8 * GiB})
            ctl.config_refresh_seconds = 0  # the marks read every round
            assert ctl.attempt().ok
            assert [e.vm for e in j.lowered()] == ["web01"] and ctl.health.lapsed == 0

    def test_a_vm_back_at_its_target_in_a_new_run_stays_held(self, tmp_path: Path) -> None:
        # as a domain restored from a managed save comes back: a new ID, the balloon where it was
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            ctl = lowered_by_controller(w, hv, j)
            restart(w, "web01")
            with seed_session(w) as other:
                other.set_target("web01", "8GiB", force=True)
            w.advance(30)
            assert ctl.attempt().ok
            (entry,) = j.lowered()
            assert entry.run == str(hv.resolve("web01").extra["libvirt_id"]) and ctl.health.lapsed == 0
            assert [r.action for r in ctl.release().vms] == ["released"] and targets(hv)["web01"] == 16 * GiB

    def test_a_vm_lowered_again_after_its_restart_is_held_from_its_new_run(self, tmp_path: Path) -> None:
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            ctl = lowered_by_controller(w, hv, j)
            restart(w, "web01")
            ctl.policy = Fixed(16 * GiB, {"web01": 10 * GiB})
            assert {d.vm: d for d in ctl.attempt()}["web01"].applied
            (entry,) = j.lowered()
            assert entry.run == str(hv.resolve("web01").extra["libvirt_id"])
            assert (entry.before_bytes, entry.target_bytes) == (16 * GiB, 10 * GiB)
            report = ctl.release()  # a real lowering is given back
            assert [r.action for r in report.vms] == ["released"] and targets(hv)["web01"] == 16 * GiB

    def test_a_powered_off_vm_keeps_the_boot_size_set_for_it_and_stays_held(self, tmp_path: Path) -> None:
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            lowered_by_controller(w, hv, j)
            w.power_off(w.guest("web01").id)
            with seed_session(w) as operator:  # its boot size, on purpose, while it is off
                operator.set_target("web01", "12GiB", force=True)
            with seed_session(w) as other:
                report = release(other, journal=j)
            (r,) = report.vms
            assert r.action == "unchanged" and "powered off" in r.reason and "kept" in r.reason
            assert w.guest("web01").config["startup_bytes"] == 12 * GiB  # not set back to 16 GiB
            assert [e.vm for e in j.lowered()] == ["web01"]  # decided when it runs again
            w.power_on(w.guest("web01").id)
            w.advance(30)
            with seed_session(w) as other:
                (r,) = release(other, journal=j).vms
            assert r.action == "unchanged" and j.lowered() == []
            assert targets(hv)["web01"] == 12 * GiB


class TestTheKVMRule:
    """The KVM kind's rule on VMs as the libvirt backend lists them."""

    @staticmethod
    def vm(run: int | None, power: PowerState = PowerState.RUNNING) -> VM:
        return VM(id="u", name="web01", backend="kvm", power_state=power, extra={"libvirt_id": run})

    def test_a_new_run_back_at_its_target_still_holds_it(self) -> None:
        # restored from a save (managedsave): a new domain ID, the balloon where it was
        assert KVM.target_lapsed(self.vm(7), "3", current_bytes=8 * GiB, target_bytes=8 * GiB) is None

    def test_a_new_run_above_its_target_lapsed(self) -> None:
        why = KVM.target_lapsed(self.vm(7), "3", current_bytes=16 * GiB, target_bytes=8 * GiB)
        assert why is not None and "run 7" in why

    @pytest.mark.parametrize("run", [None, "7"])
    def test_the_same_run_or_an_unknown_one_holds(self, run: str | None) -> None:
        assert KVM.target_lapsed(self.vm(7), run, current_bytes=16 * GiB, target_bytes=8 * GiB) is None

    def test_a_vm_that_is_off_is_decided_when_it_runs(self) -> None:
        off = self.vm(None, PowerState.STOPPED)
        assert KVM.target_lapsed(off, "3", current_bytes=None, target_bytes=8 * GiB) is None
        assert KVM.target_dormant(off, "3") is not None and KVM.target_dormant(off, None) is None

    def test_a_limit_outlives_a_restart(self) -> None:
        vm = VM(id="u", name="db01", backend="esxi", power_state=PowerState.STOPPED)
        assert ESXI.run_key is None and ESXI.run_of(vm) is None and ESXI.target_dormant(vm, "3") is None


class TestSomeoneElseResized:
    @pytest.mark.parametrize("theirs", [12 * GiB, 4 * GiB])
    def test_release_leaves_a_limit_set_by_someone_else(self, tmp_path: Path, theirs: int) -> None:
        with (
            fake.world("seed", flavor="esxi") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as j,
        ):
            lowered_by_controller(w, hv, j)
            with seed_session(w) as operator:
                operator.set_target("web01", theirs, force=True)
            report = release(hv, journal=j)
            (r,) = report.vms
            assert r.action == "unchanged" and "resized by someone else" in r.reason
            assert targets(hv)["web01"] == theirs
            assert j.lowered() == [] and report.error() is None

    def test_a_lower_whose_outcome_is_unknown_is_still_given_back(self, tmp_path: Path) -> None:
        with (
            fake.world("seed", flavor="esxi") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as j,
        ):
            lowered_by_controller(w, hv, j)
            web01 = hv.resolve("web01")
            # a further lower journalled, then timed out: it may or may not have been made
            j.intend(5, [Move(web01.id, "web01", "limit", 8 * GiB, 6 * GiB)])
            j.settle(5, {web01.id: "timeout"})
            report = release(hv, journal=j)
            assert [r.action for r in report.vms] == ["released"] and targets(hv)["web01"] == 16 * GiB

    def test_two_lowers_in_a_row_that_were_not_made_do_not_hide_the_first(self, tmp_path: Path) -> None:
        with (
            fake.world("seed", flavor="esxi") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as j,
        ):
            lowered_by_controller(w, hv, j)
            web01 = hv.resolve("web01")
            for round_no, to in ((5, 6 * GiB), (6, 5 * GiB)):  # each timed out before it was made
                j.intend(round_no, [Move(web01.id, "web01", "limit", 8 * GiB, to)])
                j.settle(round_no, {web01.id: "timeout"})
            (r,) = release(hv, journal=j).vms
            assert r.action == "released" and targets(hv)["web01"] == 16 * GiB


class TestADefinitionChanged:
    def test_a_limit_vm_given_less_memory_gets_its_limit_back_as_it_was(self, tmp_path: Path) -> None:
        with (
            fake.world("seed", flavor="esxi") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as j,
        ):
            hv.set_target("web01", 12 * GiB, force=True)  # a limit of its own, before the controller
            web01 = hv.resolve("web01")
            j.intend(1, [Move(web01.id, "web01", "limit", 12 * GiB, 8 * GiB)])
            hv.set_target("web01", 8 * GiB, force=True)
            j.settle(1, {web01.id: None})
            w.power_off(web01.id)
            hv.set_config("web01", maximum=10 * GiB)  # its memory, below the limit it had
            w.power_on(web01.id)
            report = release(hv, journal=j)
            (r,) = report.vms
            # it was set to its memory size, 10 GiB: given more memory again, it was held to it
            assert r.action == "released" and r.to_bytes == 12 * GiB and "above its memory size" in r.reason
            assert hv.get_config("web01").limit_bytes == 12 * GiB
            assert hv.get_stats(["web01"])[0].target_bytes == 10 * GiB  # all it can have now
            assert report.error() is None and j.lowered() == []


class TestALimitAboveTheMemorySize:
    @pytest.mark.parametrize("source", ["journal", "marks"])
    def test_release_sets_the_limit_back_as_it_was(self, tmp_path: Path, source: str) -> None:
        # it recorded what it had as its memory size (its target), and release set a limit of
        # 16 GiB: the VM given 32 GiB later was held to 16 GiB by a limit it never had
        with (
            fake.world("seed", flavor="esxi") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "j.db", uri=hv.uri) as j,
        ):
            hv.set_config("web01", limit="24GiB")  # above its 16 GiB: its target reads 16 GiB
            ctl = lowered_by_controller(w, hv, j)
            (entry,) = j.lowered()
            assert entry.before_bytes == 24 * GiB and not entry.before_unlimited
            assert hv.get_marks(MARK_KEY)[entry.vm_id] == str(24 * GiB)
            # raised back to its memory size by the controller, it is still lowered
            ctl.policy = Fixed(16 * GiB)
            assert {d.vm: d for d in ctl.attempt()}["web01"].applied
            assert hv.get_config("web01").limit_bytes == 16 * GiB and [e.vm for e in j.lowered()] == ["web01"]
            report = release(hv, journal=j if source == "journal" else None)  # and the marks
            (r,) = report.vms
            assert (r.action, r.source, r.to_bytes) == ("released", source, 24 * GiB), r
            assert "a limit above its memory size, 16 GiB" in r.reason
            assert hv.get_config("web01").limit_bytes == 24 * GiB and hv.get_marks(MARK_KEY) == {}


class TestOnLibvirtsTestDriver:
    def test_release_after_a_restart_leaves_what_the_operator_set(self, tmp_path: Path) -> None:
        pytest.importorskip("libvirt")
        from tests.support.libvirt_xml import domain_xml, write_node_xml

        uri = write_node_xml(tmp_path / "node.xml", [domain_xml("web01", memory_mib=4096, current_mib=4096)])
        with hvballoon.connect(uri) as hv, Journal.open(tmp_path / "j.db", uri=hv.uri) as j:
            vm = hv.resolve("web01")
            j.intend(1, [Move(vm.id, "web01", "balloon", 4096 * MiB, 2048 * MiB, run=KVM.run_of(vm))])
            hv.set_target(vm, 2048 * MiB, force=True)
            j.settle(1, {vm.id: None})
            dom = hv.backend.native.lookupByUUIDString(vm.id)  # type: ignore[attr-defined]
            dom.destroy()
            dom.create()  # boots at its definition's 4 GiB, with a new domain ID
            dom.setMemoryFlags(3072 * 1024, 1)  # an operator sizes it live (VIR_DOMAIN_AFFECT_LIVE)
            (r,) = release(hv, journal=j).vms
            assert r.action == "unchanged" and "restarted" in r.reason
            assert hv.get_stats([vm])[0].current_bytes == 3072 * MiB
            assert j.lowered() == []


class TestOldJournals:
    def test_a_journal_from_before_runs_were_kept_opens_and_holds_its_vms(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        conn = sqlite3.connect(path)
        conn.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('format', '1'), ('uri', 'fake://seed'), ('created', 'x');
            CREATE TABLE lowered (vm_id TEXT PRIMARY KEY, vm TEXT NOT NULL, mechanism TEXT NOT NULL,
                before_bytes INTEGER NOT NULL, before_unlimited INTEGER NOT NULL DEFAULT 0,
                target_bytes INTEGER NOT NULL, marked INTEGER NOT NULL DEFAULT 0,
                since TEXT NOT NULL, updated TEXT NOT NULL);
            INSERT INTO lowered VALUES ('id-1', 'web01', 'balloon', 17179869184, 0, 8589934592, 0,
                '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00');
            """
        )
        conn.close()
        with Journal.open(path, uri="fake://seed") as j:
            (e,) = j.lowered()
            assert (e.vm, e.run, e.prior_bytes) == ("web01", None, None)
            j.intend(2, [Move("id-1", "web01", "balloon", 8 * GiB, 6 * GiB, run="4")])
            assert j.lowered()[0].run == "4"


class TestTheJournalFile:
    def test_a_journal_named_through_a_symbolic_link_is_held_as_the_file(self, tmp_path: Path) -> None:
        (tmp_path / "link.db").symlink_to(tmp_path / "j.db")
        with Journal.open(tmp_path / "j.db", uri="fake://seed"):
            with pytest.raises(InvalidStateError, match="in use by a running controller"):
                Journal.open(tmp_path / "link.db", uri="fake://seed")

    def test_a_journal_deleted_while_held_is_written_again(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "j.db"
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(path, uri=hv.uri) as j:
            ctl = lowered_by_controller(w, hv, j)
            for leftover in tmp_path.iterdir():  # a clean-up of the state directory
                leftover.unlink()
            with caplog.at_level(logging.WARNING, logger="hvballoon.policy"):
                assert ctl.attempt().ok
            assert any(getattr(r, "event", None) == "journal_restored" for r in caplog.records)
            assert path.exists()
            with pytest.raises(InvalidStateError, match="in use"):  # still held: no second controller
                Journal.open(path, uri=hv.uri)
        with Journal.open(path, uri="fake://seed") as again:  # what a release after it reads
            assert [e.vm for e in again.lowered()] == ["web01"]

    def test_a_journal_replaced_while_held_is_not_written_over(self, tmp_path: Path) -> None:
        path = tmp_path / "j.db"
        with fake.world("seed") as w, seed_session(w) as hv, Journal.open(path, uri=hv.uri) as j:
            ctl = lowered_by_controller(w, hv, j)
            with Journal.open(tmp_path / "other.db", uri=hv.uri, lock=False):
                pass
            (tmp_path / "other.db").replace(path)
            ctl.policy = Fixed(16 * GiB, {"web01": 8 * GiB, "web02": 8 * GiB})
            rnd = ctl.attempt()
            made = {d.vm: d for d in rnd}
            assert made["web02"].action == "error" and "replaced" in made["web02"].reason
            assert targets(hv)["web02"] == 16 * GiB  # not lowered: the journal could not hold it
            assert [e.vm for e in ctl.lowered()] == ["web01"]  # what it holds is still read
            (r,) = ctl.release().vms  # and given back, the journal's failure a warning
            assert r.action == "released" and targets(hv)["web01"] == 16 * GiB
            assert any("could not record" in warning for warning in r.warnings)


class TestTwoControllers:
    def test_a_second_controller_with_another_journal_says_it_took_the_marked_vms(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        with (
            fake.world("seed", flavor="esxi") as w,
            seed_session(w) as hv,
            Journal.open(tmp_path / "a.db", uri=hv.uri) as a,
            Journal.open(tmp_path / "b.db", uri=hv.uri) as b,
        ):
            lowered_by_controller(w, hv, a)
            second = Controller(hv, Fixed(16 * GiB, {"web01": 8 * GiB}), seed_settings(), journal=b)
            with caplog.at_level(logging.WARNING, logger="hvballoon.policy"):
                assert second.attempt().ok
            (event,) = [r for r in caplog.records if getattr(r, "event", None) == "adopted"]
            assert event.vms == ["web01"] and "another controller" in event.getMessage()  # type: ignore[attr-defined]

    def test_it_names_ten_of_the_vms_it_took_and_counts_the_others(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        # the warning named every one: a line per 10,000 VMs of a megabyte
        with (
            fake.world("dense", flavor="esxi") as w,
            hvballoon.connect("fake://dense", world=w, retry=INSTANT) as hv,
            Journal.open(tmp_path / "a.db", uri=hv.uri) as a,
            Journal.open(tmp_path / "b.db", uri=hv.uri) as b,
        ):
            lower = Fixed(16 * GiB, {s.vm.name: s.configured_bytes - GiB for s in hv.get_stats()})
            names = sorted(lower.per_vm)
            first = Controller(hv, lower, ControllerSettings(), journal=a).attempt()
            assert sum(d.applied and d.action == "lower" for d in first) == len(names) == 14
            w.advance(30)
            with caplog.at_level(logging.WARNING, logger="hvballoon.policy"):
                assert Controller(hv, lower, ControllerSettings(), journal=b).attempt().ok
            (event,) = [r for r in caplog.records if getattr(r, "event", None) == "adopted"]
            assert sorted(event.vms) == names  # type: ignore[attr-defined]
            assert f"taken as this controller's: {', '.join(names[:10])}, and 4 more. " in event.getMessage()


class TestARenamedVM:
    @pytest.mark.parametrize("setting", ["exclude", "self_managed"])
    def test_the_settings_follow_a_vm_renamed_while_running_and_it_is_said(
        self, setting: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        with fake.world("seed") as w, seed_session(w) as hv:
            settings = seed_settings(vms={"db01": {setting: True}})
            ctl = Controller(hv, Fixed(12 * GiB), settings)
            assert ctl.check_settings() == []
            assert ctl.attempt().ok
            before = targets(hv)["db01"]
            assert before > 12 * GiB and targets(hv)["web01"] == 12 * GiB  # the others were lowered
            w.rename(w.guest("db01").id, "db01-old")
            with caplog.at_level(logging.WARNING, logger="hvballoon.policy"):
                rounds = [ctl.attempt(), ctl.attempt()]
            assert all(r.ok for r in rounds)
            # renaming a VM the operator kept from the policy does not hand it to the policy
            assert targets(hv)["db01-old"] == before
            assert not [d for r in rounds for d in r if d.vm == "db01-old" and d.action == "lower"]
            unfit = [r for r in caplog.records if getattr(r, "event", None) == "settings_unfit"]
            assert len(unfit) == 1  # said once
            said = unfit[0].getMessage()
            assert "'db01'" in said and "now named 'db01-old'" in said and "still apply" in said

    def test_a_vm_renamed_while_the_controller_was_not_running_is_the_policys(self) -> None:
        with fake.world("seed") as w, seed_session(w) as hv:
            w.rename(w.guest("db01").id, "db01-old")  # before this controller saw it
            ctl = Controller(hv, Fixed(12 * GiB), seed_settings(vms={"db01": {"exclude": True}}))
            with pytest.warns(UserWarning, match="does not have"):
                assert ctl.attempt().ok
            assert targets(hv)["db01-old"] == 12 * GiB  # named by nothing: the settings cannot know it
