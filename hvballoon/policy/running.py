"""The controller left running: :meth:`~hvballoon.policy.Controller.run` and the failure handling
around each round (:meth:`~hvballoon.policy.Controller.attempt`), apart from what a round does
(:mod:`hvballoon.policy.controller`, :mod:`hvballoon.policy._snapshot`, :mod:`hvballoon.policy._moves`).

A round whose sweep fails is a failed :class:`Round` (counted, and the next waits longer); a
broken session is replaced through the controller's factory; after ``max_failed_rounds`` failures
in a row the controller gives back what it lowered (fails open) and tries on. :meth:`stop` and
:meth:`wake` are safe from a signal handler or another thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from hvballoon._results import first_few
from hvballoon.backend import Backend
from hvballoon.errors import HVBalloonError, HVConnectionError, OperationTimeoutError, SessionExpiredError
from hvballoon.policy.health import ControllerHealth, default_max_failed_rounds
from hvballoon.policy.journal import Lowered
from hvballoon.policy.model import ControllerSettings, Decision

if TYPE_CHECKING:
    from hvballoon.fleet import HostResult
    from hvballoon.kinds import Kind
    from hvballoon.models import MemoryStats
    from hvballoon.policy.journal import Journal
    from hvballoon.policy.release import ReleaseReport
    from hvballoon.session import Hypervisor

__all__ = ["FORGET_GONE_SECONDS", "Round"]

log = logging.getLogger("hvballoon.policy")

#: A VM the controller holds lowered that no sweep has shown for this long (on the controller's
#: clock), and that the hypervisor then says does not exist, is forgotten — as ``hvballoon
#: release`` forgets a VM that is gone: a VM deleted does not stay in the journal for good.
FORGET_GONE_SECONDS = 3600.0


@dataclass(frozen=True)
class Round:
    """One round of :meth:`Controller.run`: its decisions, or the error that made it fail.

    It reads as the list of its decisions (``for d in round``, ``len(round)``, ``round[0]``).
    A failed round (``error`` set: its sweep could not be read) has none but the raises made
    while its sweep hung (the plan's contingency, see :attr:`Plan.contingency
    <hvballoon.policy.base.Plan.contingency>`); ``released`` is the release the controller made
    after too many failed rounds in a row, if it made one then.
    """

    number: int
    decisions: tuple[Decision, ...] = ()
    error: HVBalloonError | None = None
    duration_seconds: float = 0.0
    consecutive_failures: int = 0
    reconnected: bool = False
    released: ReleaseReport | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __iter__(self) -> Iterator[Decision]:
        return iter(self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    def __getitem__(self, index: int) -> Decision:
        return self.decisions[index]


class _Running:
    """The run loop and its failure handling; :class:`~hvballoon.policy.Controller` is one."""

    # what the controller provides (hvballoon.policy.controller)
    settings: ControllerSettings
    health: ControllerHealth
    dry_run: bool
    round: int
    last_sweep: HostResult | None
    _hv: Hypervisor | None
    _factory: Callable[[], Hypervisor] | None
    _broken: bool
    _release_pending: bool
    #: the releases after too many failed rounds that failed in a row
    _release_tries: int
    _stop: threading.Event
    _wake: threading.Event
    _marks_read: bool
    _marks_unread: dict[str, str]
    _marks_checked: dict[str, float]
    _asked_round_seconds: float | None
    _last_lower: dict[str, float]
    _period_tried: dict[str, float]
    _missing_since: dict[str, float]
    _followed: dict[str, str]
    _waited_seconds: float
    config_refresh_seconds: float
    blind_decisions: list[Decision]
    last_round: Round | None

    if TYPE_CHECKING:

        @property
        def hv(self) -> Hypervisor: ...
        @property
        def uri(self) -> str: ...
        @property
        def journal(self) -> Journal: ...
        @property
        def marks(self) -> bool: ...
        def step(self) -> list[Decision]: ...
        def _reconnect(self) -> None: ...
        def record_unrecorded(self) -> None: ...

    @property
    def max_failed_rounds(self) -> int:
        """Failed rounds in a row after which the controller fails open (the settings', else the
        rounds that fit in three minutes of backoff from the pace the rounds kept:
        :attr:`backoff_base_seconds`)."""
        explicit = self.settings.max_failed_rounds
        if explicit is not None:
            return explicit
        return default_max_failed_rounds(self.backoff_base_seconds, self._max_backoff())

    @property
    def backoff_base_seconds(self) -> float:
        """The wait after the first failed round in a row, doubled per failure after it: the
        pace the last plan kept (:attr:`next_round_seconds` — the interval, or the quick rounds'
        while the policy asked for them). A host the policy watches every second while a wave
        rises is not left ten seconds unwatched for one sweep that failed; an outage still backs
        off to ``max_backoff_seconds`` and fails open after three minutes of it."""
        return self.next_round_seconds

    def _max_backoff(self) -> float:
        return max(self.settings.interval_seconds, self.settings.max_backoff_seconds)

    def release(self, *, to_maximum: bool = False) -> ReleaseReport:
        """Give back everything the controller lowered (see :func:`hvballoon.policy.release.release`)."""
        from hvballoon.policy.release import release

        if self._broken and self._factory is not None:
            # the last round lost the session (a SIGTERM right after, say): a release on it
            # would fail however well the hypervisor answers now
            self._reconnect()
        if not self.dry_run:
            self.record_unrecorded()  # the raises the journal could not record are the controller's
        report = release(
            self.hv, journal=self.journal, marks=self.marks, to_maximum=to_maximum, round_no=self.round
        )
        log.info(
            "released %d VMs (%d failed)", report.released, report.failed,
            extra={"event": "released", "released": report.released, "failed": report.failed},
        )  # fmt: skip
        return report

    def attempt(self) -> Round:
        """One round that an hvballoon error never escapes: its sweep failing makes it a failed
        round (counted in :attr:`health`); a broken session is replaced (with a factory) before
        the next; after :attr:`max_failed_rounds` failures in a row the controller releases what
        it lowered, and again each round until that works."""
        number = self.round
        started = time.monotonic()
        reconnected = False
        released: ReleaseReport | None = None
        self.blind_decisions = []
        self._waited_seconds = 0.0
        try:
            if self._broken and self._factory is not None:
                self._reconnect()
                reconnected = True
            if self._release_pending:
                try:
                    with self._retries_said_by_the_round(self.hv):
                        released = self._fail_open()
                except HVBalloonError as exc:  # the round may still work: it is tried anyway
                    # tried each round while the outage lasts: said at the first try and at each
                    # doubling of the tries (the others at debug level), as the failed rounds are
                    self._release_tries += 1
                    n = self._release_tries
                    log.log(
                        logging.DEBUG if n & (n - 1) else logging.WARNING,
                        "cannot give back what the controller lowered yet (%d tries): %s", n, exc,
                        extra={"event": "release_failed", "code": exc.code, "tries": n},
                    )  # fmt: skip
            with self._failures_timed(self.hv):
                decisions = self.step()
        except HVBalloonError as exc:
            seconds = time.monotonic() - started
            self.round += 1
            h = self.health
            same = h.consecutive_failures > 0 and h.last_error_code == exc.code
            h.failed(exc.code, seconds, exc.message)
            blind = tuple(self.blind_decisions)
            h.counted(blind)
            self.last_sweep = self._failed_sweep(exc, seconds)
            if self._factory is not None and (
                isinstance(exc, (HVConnectionError, SessionExpiredError)) or h.consecutive_failures >= 2
            ):
                self._broken = True
            # an outage is said when it starts, when its error changes and at each doubling of
            # its length (1, 2, 4, 8… rounds in a row), not once per round: an hour of it at the
            # longest backoff is a few lines (the others at debug level), and its end is said too
            n = h.consecutive_failures
            log.log(
                logging.DEBUG if same and n & (n - 1) else logging.WARNING,
                "round %d failed (%d in a row): %s", number, n, exc,
                extra={
                    "event": "round_failed", "round": number, "code": exc.code,
                    "consecutive_failures": h.consecutive_failures,
                },
            )  # fmt: skip
            if h.consecutive_failures >= self.max_failed_rounds and not h.fail_open and not self.dry_run:
                h.fail_open = True
                self._release_pending = True
                log.error(
                    "%d rounds failed in a row: giving back what the controller lowered, and trying on",
                    h.consecutive_failures,
                    extra={
                        "event": "fail_open",
                        "round": number,
                        "consecutive_failures": h.consecutive_failures,
                    },
                )
                if released is None and not self._broken:
                    with contextlib.suppress(HVBalloonError), self._retries_said_by_the_round(self.hv):
                        released = self._fail_open()
            self.last_round = Round(
                number,
                blind,
                exc,
                seconds,
                h.consecutive_failures,
                reconnected=reconnected,
                released=released,
            )
            return self.last_round
        seconds = time.monotonic() - started
        failures = self.health.consecutive_failures
        self.health.succeeded(decisions, seconds)
        if failures:
            log.warning(
                "round %d read the hypervisor again, after %d failed round%s in a row", number, failures,
                "s" if failures > 1 else "",
                extra={"event": "recovered", "round": number, "failed_rounds": failures},
            )  # fmt: skip
        self._release_pending = False  # it sees again: the rounds decide what each VM gets
        self._release_tries = 0
        self.last_round = Round(
            number, tuple(decisions), None, seconds, 0, reconnected=reconnected, released=released
        )
        return self.last_round

    @contextlib.contextmanager
    def _failures_timed(self, hv: Hypervisor) -> Iterator[None]:
        """While a round runs, count in ``_waited_seconds`` what its calls spent on attempts
        that timed out (the session's timeout each) and on the retry waits after failed
        attempts: not the round's work, left out of the duty-cycle cap (:meth:`wait_after`).
        The session's retry policy is its own again after the round."""
        retry = hv.retry
        timeout = getattr(getattr(hv.backend, "opts", None), "timeout", None)
        hung = float(timeout) if isinstance(timeout, (int, float)) and 0 < timeout < math.inf else 0.0

        def sleep(seconds: float) -> None:
            self._waited_seconds += seconds
            retry.sleep(seconds)

        def failed(exc: HVBalloonError, attempt: int) -> None:
            if isinstance(exc, OperationTimeoutError):
                self._waited_seconds += hung
            if retry.before_retry is not None:
                retry.before_retry(exc, attempt)

        # the round says its failures (at its first and at each doubling): each retry at debug level
        hv.retry = dataclasses.replace(retry, sleep=sleep, before_retry=failed, log_level=logging.DEBUG)
        try:
            yield
        finally:
            hv.retry = retry

    @contextlib.contextmanager
    def _retries_said_by_the_round(self, hv: Hypervisor) -> Iterator[None]:
        """The session's retries logged at debug level while the block runs (the fail-open
        release, tried each round of an outage, is said by the round at its doublings)."""
        retry = hv.retry
        hv.retry = dataclasses.replace(retry, log_level=logging.DEBUG)
        try:
            yield
        finally:
            hv.retry = retry

    def _fail_open(self) -> ReleaseReport | None:
        """The release after too many failed rounds; pending until it works for every VM."""
        if not self.journal.lowered() and not self.marks:
            self._release_pending = False
            return None
        report = self.release()
        if report.failed == 0:
            self._release_pending = False
        if report.released or report.failed == 0:
            self.health.fail_open_releases += 1
        log.warning(
            "gave back %d VMs after too many failed rounds in a row%s",
            report.released,
            f" ({report.failed} could not be given back yet)" if report.failed else "",
            extra={"event": "fail_open_released", "released": report.released, "failed": report.failed},
        )
        return report

    def _failed_sweep(self, exc: HVBalloonError, seconds: float) -> HostResult:
        from hvballoon.fleet import HostResult

        hv = self._hv
        return HostResult(
            uri=self.uri,
            error=exc,
            elapsed_seconds=seconds,
            backend=hv.backend_name if hv is not None else None,
        )

    def stop(self) -> None:
        """Ask :meth:`run` to stop after the round under way (safe from a signal handler or
        another thread); a wait between rounds ends at once."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        """End the wait between two rounds now (the next round starts at once)."""
        self._wake.set()

    def _pause(self, seconds: float) -> None:
        """Wait between rounds: on the simulator's clock for a simulated hypervisor, else in
        real time, cut short by :meth:`stop` or :meth:`wake`."""
        hv = self._hv
        if hv is not None and type(hv.backend).sleep is not Backend.sleep:
            if not self._wake.is_set():
                hv.backend.sleep(seconds)
        else:
            self._wake.wait(seconds)
        self._wake.clear()

    def run(
        self,
        *,
        rounds: int | None = None,
        sleep: Callable[[float], None] | None = None,
        on_round: Callable[[Round], None] | None = None,
        before_round: Callable[[], None] | None = None,
    ) -> Iterator[Round]:
        """Rounds every ``interval_seconds`` (forever unless ``rounds``, or until :meth:`stop`;
        sooner while the policy asks for it, see ``next_round_seconds``), each yielded as a :class:`Round` (which reads as its list of decisions). A failed round
        is yielded too, and the next waits longer (:meth:`attempt`).

        ``sleep`` replaces the wait between rounds (default: the backend's clock — real time, or
        the simulator's virtual one — cut short by :meth:`stop`); ``before_round`` runs before
        each round (to apply new settings, say).
        """
        n = 0
        while (rounds is None or n < rounds) and not self._stop.is_set():
            if before_round is not None:
                before_round()
            started = time.monotonic()
            clock_started = self._safe_clock()
            rnd = self.attempt()
            if on_round is not None:
                on_round(rnd)
            yield rnd
            n += 1
            if (rounds is not None and n >= rounds) or self._stop.is_set():
                break
            clock_now = self._safe_clock()
            spent = (
                clock_now - clock_started
                if clock_now is not None and clock_started is not None
                else time.monotonic() - started
            )
            (sleep or self._pause)(self.wait_after(rnd, spent))

    def _safe_clock(self) -> float | None:
        hv = self._hv
        if hv is None:
            return None
        try:
            return hv.backend.monotonic()
        except HVBalloonError:
            return None

    def wait_after(self, rnd: Round, spent: float) -> float:
        """Seconds to wait after ``rnd``, which took ``spent`` seconds, before the next round:
        the rest of :attr:`next_round_seconds` after a round that read its sweep, and at least
        ``min_wait_fraction`` of what the round worked (``spent`` less its calls' attempts that
        timed out and the retry waits after failed attempts: the duty-cycle cap); after a failed
        one, the backoff of :attr:`health` (:attr:`backoff_base_seconds`, doubled per failure in a
        row after the first). The service loop and the simulator's rounds both wait this."""
        if rnd.ok:
            worked = max(0.0, spent - self._waited_seconds)
            return max(0.0, self.next_round_seconds - spent, self.settings.min_wait_fraction * worked)
        return self.health.backoff_seconds(self.backoff_base_seconds, self._max_backoff())

    @property
    def next_round_seconds(self) -> float:
        """Seconds from the start of the last round to the next: ``interval_seconds``, or
        sooner when the last plan asked for it (never sooner than ``fast_interval_seconds``)."""
        interval = self.settings.interval_seconds
        asked, fastest = self._asked_round_seconds, self.settings.fast_interval_seconds
        if asked is None or fastest is None:
            return interval
        return min(interval, max(fastest, asked))

    def _forget_gone(self, stats: list[MemoryStats], now: float) -> None:
        """Keep what the controller holds per VM bounded by the VMs there are, however many
        come and go over months: the times of past lowers and stats-period changes are kept
        only while they still matter, and a VM held lowered that is gone — missing from every
        sweep for :data:`FORGET_GONE_SECONDS`, then not found by the hypervisor — leaves the
        journal (``"event": "forgotten"``), as a release would have it."""
        between = self.settings.min_seconds_between_lowers or 0.0
        if self._followed:
            here = {s.vm.id for s in stats}
            self._followed = {k: name for k, name in self._followed.items() if k in here}
        if self._last_lower:
            self._last_lower = {k: t for k, t in self._last_lower.items() if now - t < between}
        if self._period_tried:
            refresh = self.config_refresh_seconds
            self._period_tried = {k: t for k, t in self._period_tried.items() if now - t < refresh}
        if self.dry_run:
            return
        present = {s.vm.id for s in stats}
        try:
            gone = {k: name for k, name in self.journal.lowered_names().items() if k not in present}
        except HVBalloonError:
            return  # said where the journal is written
        self._missing_since = {vm_id: self._missing_since.get(vm_id, now) for vm_id in gone}
        due = [vm_id for vm_id, since in self._missing_since.items() if now - since >= FORGET_GONE_SECONDS]
        if not due:
            return
        try:
            _found, missing = self.hv.find_vms(due)
        except HVBalloonError:
            return  # tried again next round
        for vm_id in missing:
            name = gone[vm_id]
            try:
                self.journal.released(vm_id, vm=name, to_bytes=None, round_no=self.round)
            except HVBalloonError:
                continue
            del self._missing_since[vm_id]
            log.info(
                "forgot %s: held lowered, it is gone (nothing to give back)", name,
                extra={"event": "forgotten", "vm": name, "vm_id": vm_id},
            )  # fmt: skip

    def _forget_lapsed(self, stats: list[MemoryStats]) -> None:
        """A VM held lowered whose lowering no longer holds — on a hypervisor whose targets last
        one run (KVM), it was restarted and booted at its definition's size — leaves the journal
        (``"event": "lapsed"``): it is neither shown as lowered nor raised by a release. One
        that comes back lowered in a new run (restored from a save) is kept, in that run."""
        kind = self.hv.backend.kind
        if self.dry_run or kind is None or kind.run_key is None:
            return
        try:
            held = self.journal.runs()
        except HVBalloonError:
            return  # said where the journal is written
        unmarked = self._marks_gone(stats, held, kind)
        for st in stats:
            if st.vm.id not in held:
                continue
            was, target, _marked = held[st.vm.id]
            run = kind.run_of(st.vm)
            if run is None or (run == was and st.vm.id not in unmarked):
                continue
            why = kind.target_lapsed(
                st.vm,
                was,
                current_bytes=st.current_bytes,
                target_bytes=target,
                mark_gone=st.vm.id in unmarked,
            )
            try:
                if why is None:
                    if run != was:
                        self.journal.rerun(st.vm.id, run)  # restored lowered: still the controller's
                    continue
                self.journal.released(st.vm.id, vm=st.vm.name, to_bytes=None, round_no=self.round, why=why)
            except HVBalloonError as exc:
                log.error(
                    "cannot record that %s is not lowered any more: %s", st.vm.name, exc.message,
                    extra={"event": "journal_failed", "code": exc.code, "round": self.round},
                )  # fmt: skip
                continue
            self.health.lapsed += 1
            log.warning(
                "%s is not lowered any more: %s (forgotten: a release leaves it as it is)", st.vm.name, why,
                extra={"event": "lapsed", "vm": st.vm.name, "vm_id": st.vm.id, "reason": why, "round": self.round},
            )  # fmt: skip

    def _marks_gone(
        self, stats: list[MemoryStats], held: Mapping[str, tuple[str, int, bool]], kind: Kind
    ) -> set[str]:
        """The VMs held lowered and marked, in the run they were lowered in by their run key,
        whose mark is gone: where a mark lasts one run (KVM), they were restarted under the same
        run key (libvirt numbers domains from 1 again after the host restarts). Only a VM back
        above its target is a suspect (a restart boots it at its definition's size), and the
        marks are read for the suspects at most once per ``config_refresh_seconds`` each: one
        ``get_marks`` in a round that has a suspect due, none otherwise."""
        from hvballoon.policy.release import MARK_KEY

        self._marks_checked = {k: t for k, t in self._marks_checked.items() if k in held}
        if not (self.marks and kind.marks_last_one_run):
            return set()
        # in the run it was lowered in, and lapsed by the kind's rule should its mark be gone
        suspects = [
            st.vm.id
            for st in stats
            if st.vm.id in held
            and held[st.vm.id][2]
            and kind.run_of(st.vm) == held[st.vm.id][0]
            and kind.target_lapsed(
                st.vm,
                held[st.vm.id][0],
                current_bytes=st.current_bytes,
                target_bytes=held[st.vm.id][1],
                mark_gone=True,
            )
            is not None
        ]
        now = time.monotonic()
        refresh = self.config_refresh_seconds
        if not any(now - self._marks_checked.get(vm_id, -math.inf) >= refresh for vm_id in suspects):
            return set()
        try:
            marks = self.hv.get_marks(MARK_KEY)
        except HVBalloonError as exc:  # read again next round
            log.info("cannot read the marks of the VMs held lowered: %s", exc.message)
            return set()
        for vm_id in suspects:
            self._marks_checked[vm_id] = now
        return {vm_id for vm_id in suspects if marks.lacks(vm_id)}

    def _note_unread(
        self, unreadable: Mapping[str, HVBalloonError], known: set[str], names: Mapping[str, Any]
    ) -> None:
        """Keep the VMs whose marks could not be read that the journal does not hold: they are
        not lowered until their marks are read (a warning once for each)."""
        unread = {vm_id: exc.message for vm_id, exc in unreadable.items() if vm_id not in known}
        for vm_id in unread.keys() - self._marks_unread.keys():
            exc = unreadable[vm_id]
            name = names[vm_id][0] if vm_id in names else (exc.vm or vm_id)
            log.warning(
                "cannot read the marks of %s: %s; it is not lowered until they are read (a controller "
                "may have lowered it already: its mark says what it had before)", name, exc.message,
                extra={"event": "marks_unreadable", "vm": name, "vm_id": vm_id, "code": exc.code},
            )  # fmt: skip
        for vm_id in self._marks_unread.keys() - unread.keys():
            log.info(
                "the marks of %s are read again", names[vm_id][0] if vm_id in names else vm_id,
                extra={"event": "marks_read", "vm_id": vm_id},
            )  # fmt: skip
        self._marks_unread = unread

    def _adopt_marks(self, stats: list[MemoryStats]) -> None:
        """Until all are read: the VMs marked by a controller (this one before a restart, its
        journal lost) are taken as lowered by this one, with what their marks say they had;
        those whose marks could not be read are not lowered meanwhile (read again each round)."""
        from hvballoon.policy.release import MARK_KEY, parse_mark

        if not self.marks:
            self._marks_read = True
            return
        found = self.hv.get_marks(MARK_KEY)
        try:
            known = {e.vm_id for e in self.journal.lowered()}
        except HVBalloonError as exc:  # read again next round
            log.error(
                "cannot read the journal: %s",
                exc.message,
                extra={"event": "journal_failed", "code": exc.code},
            )
            return
        names = {s.vm.id: (s.vm.name, s) for s in stats}
        self._note_unread(found.unreadable, known, names)
        self._marks_read = not self._marks_unread  # else read again next round
        now = datetime.now(timezone.utc)
        kind = self.hv.backend.kind
        # a mark that lasts one run (KVM) was set in the run the VM is in: so was its target
        per_run = kind is not None and kind.marks_last_one_run
        adopted = []
        for vm_id, value in found.items():
            if vm_id in known or vm_id not in names:
                continue
            try:
                before, unlimited = parse_mark(value)
            except ValueError as exc:
                log.warning("%s: %s", names[vm_id][0], exc)
                continue
            name, st = names[vm_id]
            target = st.target_bytes if st.target_bytes is not None else (st.current_bytes or 0)
            adopted.append(
                Lowered(
                    vm_id=vm_id,
                    vm=name,
                    mechanism=st.mechanism.value,
                    before_bytes=before or 0,
                    before_unlimited=unlimited,
                    target_bytes=target,
                    marked=True,
                    since=now,
                    updated=now,
                    run=kind.run_of(st.vm) if per_run and kind is not None else None,
                )
            )
        if adopted:
            try:
                self.journal.adopt(adopted)
            except HVBalloonError as exc:  # tried again next round
                self._marks_read = False
                log.error(
                    "cannot record the %d VMs found marked as lowered: %s", len(adopted), exc.message,
                    extra={"event": "journal_failed", "code": exc.code},
                )  # fmt: skip
                return
            log.warning(
                "found %d VMs marked as lowered by a controller that this journal does not hold, taken "
                "as this controller's: %s. If another controller still runs on this hypervisor (with "
                "another journal), stop one of them: two controllers move the same VMs against each "
                "other, and each gives back what the other lowered",
                len(adopted), first_few([a.vm for a in adopted]),  # every one in "vms"
                extra={"event": "adopted", "vms": [a.vm for a in adopted]},
            )  # fmt: skip
