"""What a controller round does with the policy's proposals: each is vetted against the VM's
settings, its mechanism's rules, the guard rails and the rate limits (:meth:`_Moves._vet`); the
moves left are journalled (and the VMs lowered for the first time marked, where VMs keep marks)
and made in one bulk ``set_targets`` for the raises and one for the lowers (:meth:`_Moves._apply`);
every VM gets its :class:`~hvballoon.policy.model.Decision`. The Dynamic Memory buffers the
policy asks for are set after the moves, one ``set_config`` each (:meth:`_Moves._apply_buffers`).

Part of :class:`~hvballoon.policy.Controller` (:mod:`hvballoon.policy.controller`), which ties
it to the inputs (:mod:`hvballoon.policy._snapshot`) and the run loop
(:mod:`hvballoon.policy.running`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hvballoon.errors import GuardRailError, HVBalloonError, InvalidStateError, UnsupportedOperationError
from hvballoon.models import Capabilities, Change, Mechanism, MemoryConfig, MemoryStats
from hvballoon.policy.journal import Move
from hvballoon.policy.model import Action, BufferProposal, ControllerSettings, Decision, Proposal, VMView
from hvballoon.units import align, format_size

if TYPE_CHECKING:
    from hvballoon.policy.base import Policy
    from hvballoon.policy.journal import Journal
    from hvballoon.session import GuardRails, Hypervisor

log = logging.getLogger("hvballoon.policy")


class _Pending:
    """A move the controller intends to make, before the rate limits and the call."""

    def __init__(self, view: VMView, proposal: Proposal, target: int, notes: list[str]) -> None:
        self.view = view
        self.proposal = proposal
        self.target = target
        self.notes = notes
        #: a raise made though the journal could not record it
        self.unjournalled = False

    @property
    def delta(self) -> int:
        return self.target - self.view.target_bytes


@dataclass(frozen=True)
class _Contingency:
    """The raises a round's plan holds for a sweep that hangs, with what vets them: the round's
    views, capabilities and figures as its own moves left them."""

    proposals: tuple[Proposal, ...]
    views: dict[str, VMView]
    caps: dict[str, Capabilities]
    read: dict[str, MemoryStats]


class _Moves:
    """Vetting and applying a round's proposals; :class:`~hvballoon.policy.Controller` is one."""

    # what the controller provides (hvballoon.policy.controller)
    settings: ControllerSettings
    policy: Policy
    dry_run: bool
    round: int
    _configs: dict[str, MemoryConfig]
    _last_lower: dict[str, float]
    _contingency: _Contingency | None
    #: Raises made while the journal could not be written, by VM id: recorded once it can be
    #: (a release tells the controller's own targets from someone else's by the journal)
    _unrecorded: dict[str, Move]
    #: VMs whose marks could not be read (VM id → why) that the journal does not hold: a
    #: controller may have lowered them already, so they are not lowered (read again each round)
    _marks_unread: dict[str, str]
    #: The moves made while the last round's sweep hung (the plan's contingency), as decisions.
    blind_decisions: list[Decision]

    if TYPE_CHECKING:

        @property
        def hv(self) -> Hypervisor: ...
        @property
        def guard_rails(self) -> GuardRails: ...
        @property
        def journal(self) -> Journal: ...
        @property
        def marks(self) -> bool: ...
        def _clock(self) -> float: ...

    def _vet(
        self, v: VMView, p: Proposal, caps: Capabilities, now: float
    ) -> _Pending | tuple[Action, str, str]:
        """Apply the per-VM settings, the mechanism's rules and the rate limits to a proposal."""
        vs = v.settings
        if vs.exclude:
            return "skip", "controller.excluded", "excluded by its settings"
        if not v.running:
            return "skip", "controller.not_running", "not running"
        if p.target_bytes is None:
            return "hold", p.rule, p.reason
        notes: list[str] = []
        target = p.target_bytes
        if target > v.maximum_bytes:
            target = v.maximum_bytes
            notes.append(f"capped at {format_size(target)}")
        if target < v.minimum_bytes:
            target = v.minimum_bytes
            notes.append(f"kept at its floor {format_size(target)}")
        lowering = target < v.target_bytes
        unknown = v.stale or v.used_bytes is None
        if v.mechanism is Mechanism.DYNAMIC_MEMORY and v.running and target <= v.target_bytes and unknown:
            # no demand from the guest (no integration services, or still booting): Dynamic
            # Memory does not balance it either, it keeps its startup memory
            return (
                "hold",
                "controller.stale_figures",
                f"{p.reason}; not applied: Hyper-V reports no memory demand for it (its integration "
                "services do not run, or it is still booting), so Dynamic Memory cannot balance it and "
                "how much it can give is unknown",
            )
        if v.mechanism is Mechanism.DYNAMIC_MEMORY and v.running and target <= v.target_bytes:
            return (
                "hold",
                "controller.dynamic_memory",
                f"{p.reason}; nothing to apply: Hyper-V Dynamic Memory assigns memory up to its maximum "
                f"{format_size(v.target_bytes)} itself (the maximum can only be raised while it runs)",
            )
        if lowering and v.id in self._marks_unread:
            return (
                "hold",
                "controller.marks_unreadable",
                f"{p.reason}; not applied: its marks could not be read ({self._marks_unread[v.id]}), so "
                "whether a controller lowered it already, and what it had before, is unknown",
            )
        if lowering and vs.self_managed:
            return "skip", "controller.self_managed", f"{p.reason}; not applied: it manages its own memory"
        if lowering and v.frees_nothing_note:
            # whatever the policy: a lower would take memory from the guest and give the host none
            return (
                "hold",
                "controller.balloon_frees_nothing",
                f"{p.reason}; not applied: {v.frees_nothing_note}",
            )
        if lowering and unknown:
            # whatever the policy or the settings say: a guest whose use is unknown is not lowered
            return (
                "hold",
                "controller.stale_figures",
                f"{p.reason}; not applied: the guest's figures are {'stale' if v.stale else 'missing'}, "
                "so how much it can give is unknown",
            )
        if lowering and not v.can_lower:
            why = (
                "Hyper-V Dynamic Memory balances it within its range and its maximum can only be "
                "raised while it runs"
                if v.mechanism is Mechanism.DYNAMIC_MEMORY
                else f"its mechanism ({v.mechanism.value}) cannot lower it now"
            )
            return "skip", "controller.mechanism", f"{p.reason}; not applied: {why}"
        if not lowering and target > v.target_bytes and not v.can_raise:
            return "skip", "controller.mechanism", f"{p.reason}; not applied: cannot be raised now"
        guard = v.guard_floor_bytes if self.settings.respect_guard_rails else None
        if lowering and guard is not None and target < guard:
            target = guard
            notes.append(f"kept at the guard-rail floor {format_size(target)}")
            lowering = target < v.target_bytes
            if not lowering:
                return "hold", "controller.guard_rail", f"{p.reason}; held at the guard-rail floor"
        step = (
            self.settings.max_lower_bytes_per_round if lowering else self.settings.max_raise_bytes_per_round
        )
        if step is not None and abs(target - v.target_bytes) > step:
            target = v.target_bytes - step if lowering else v.target_bytes + step
            notes.append(f"rate-limited to {format_size(step)} per round")
        if lowering and self.settings.min_seconds_between_lowers:
            last = self._last_lower.get(v.id)
            if last is not None and now - last < self.settings.min_seconds_between_lowers:
                return (
                    "hold",
                    "controller.rate_limit",
                    f"{p.reason}; deferred: lowered {now - last:.0f} s ago "
                    f"(at most once per {self.settings.min_seconds_between_lowers:g} s)",
                )
        step_bytes = caps.alignment_bytes
        target = align(target, step_bytes, "up" if lowering else "down")
        # a ceiling or floor between two steps holds: the ceiling aligned down, the floor up
        # (the floor wins where no step lies between them)
        if target > v.maximum_bytes:
            target = align(v.maximum_bytes, step_bytes, "down")
        if target < v.minimum_bytes:
            target = align(v.minimum_bytes, step_bytes, "up")
        if target == v.target_bytes:
            return "hold", p.rule, p.reason
        return _Pending(v, p, target, notes)

    def _apply(
        self,
        at: datetime,
        batch: list[_Pending],
        now: float,
        read: dict[str, MemoryStats],
        *,
        lowering: bool,
    ) -> list[Decision]:
        """One bulk ``set_targets`` for the batch (all raises, or all lowers); each VM's
        refusal or failure is its own and leaves the others' moves alone. The session plans
        them on this round's figures (``read``, the sweep, and the configurations held) while
        its guard rails trust them, so a healthy round reads the hypervisor once.

        Before anything is sent, the moves are in the journal (and a VM lowered for the first
        time carries its mark, where VMs keep marks: one that cannot be marked is not lowered).
        """
        if not batch:
            return []
        action: Action = "lower" if lowering else "raise"
        out: list[Decision] = []
        unjournalled: set[str] = set()
        if not self.dry_run:
            self.record_unrecorded()
            batch, failed = self._record(batch, lowering, read)
            unjournalled = {p.view.id for p in batch if p.unjournalled}
            out.extend(
                self._decision(
                    at,
                    p.view,
                    p.proposal,
                    "error",
                    p.proposal.rule,
                    f"{p.proposal.reason}; not applied: {exc.message}",
                    proposed=p.target,
                    error=exc.code,
                )
                for p, exc in failed
            )
            if not batch:
                return out
        # a raise cannot take a guest below its floor, so it needs no fresh stats; a lower goes
        # through the guard rails unless told otherwise
        force = not lowering or not self.settings.respect_guard_rails
        figures = [
            (read[p.view.id], self._configs[p.view.id])
            for p in batch
            if p.view.id in read and p.view.id in self._configs
        ]
        try:
            results = self.hv.set_targets(
                [(p.view.id, p.target) for p in batch],
                dry_run=self.dry_run,
                force=force,
                guard_rails=self.guard_rails,
                skip_invalid=True,
                figures=figures,
            )
            outcome: dict[str, Change | HVBalloonError] = {p.view.id: results[p.view.id] for p in batch}
            made = set(results.made)
        except HVBalloonError as exc:  # nothing could be sent at all: every VM's move failed
            outcome, made = {p.view.id: exc for p in batch}, set()
        settled: dict[str, str | None] = {}
        for p in batch:
            v = p.view
            reason = p.proposal.reason + (f" ({'; '.join(p.notes)})" if p.notes else "")
            result = outcome[v.id]
            if isinstance(result, HVBalloonError):
                settled[v.id] = result.code
                self._configs.pop(v.id, None)  # read it again: the failure may say it changed
                refused = isinstance(result, (GuardRailError, InvalidStateError, UnsupportedOperationError))
                if not refused:
                    log.warning(
                        "cannot move %s: %s", v.name, result,
                        extra={"event": "move_failed", "vm": v.name, "code": result.code, "round": self.round},
                    )  # fmt: skip
                out.append(
                    self._decision(
                        at, v, p.proposal, "refused" if refused else "error", p.proposal.rule,
                        f"{reason}; {'refused' if refused else 'failed'}: {result.message}",
                        proposed=p.target, error=result.code,
                    )
                )  # fmt: skip
                continue
            settled[v.id] = None
            applied = v.id in made
            if applied and v.id in unjournalled:
                self._unrecorded[v.id] = Move(v.id, v.name, v.mechanism.value, v.target_bytes, p.target)
            if applied:
                if result.mechanism is not Mechanism.BALLOON:
                    # the target lives in the configuration (a limit, a maximum, a startup size)
                    self._configs.pop(v.id, None)
                if lowering:
                    self._last_lower[v.id] = now
            out.append(
                self._decision(
                    at, v, p.proposal, action, p.proposal.rule, reason,
                    proposed=p.target, after=int(result.after.get("target_bytes", p.target)), applied=applied,
                )
            )  # fmt: skip
        if not self.dry_run:
            self._settle(settled)
        return out

    # -- a sweep that hangs ------------------------------------------------------------------

    def _keep_contingency(
        self,
        proposals: tuple[Proposal, ...],
        views: tuple[VMView, ...],
        caps: dict[str, Capabilities],
        read: dict[str, MemoryStats],
        decisions: list[Decision],
    ) -> None:
        """Keep the plan's contingency for the next sweep, with the round's figures updated to
        the targets its own moves set."""
        if not proposals:
            self._contingency = None
            return
        moved = {d.vm_id: d.after_bytes for d in decisions if d.applied and d.after_bytes is not None}
        by_id: dict[str, VMView] = {}
        figures: dict[str, MemoryStats] = {}
        for v in views:
            after = moved.get(v.id)
            by_id[v.id] = v if after is None else v.model_copy(update={"target_bytes": after})
            st = read.get(v.id)
            if st is not None:
                figures[v.id] = st if after is None else st.model_copy(update={"target_bytes": after})
        self._contingency = _Contingency(proposals, by_id, caps, figures)

    def _contingency_pending(self) -> bool:
        return self._contingency is not None

    def _sweep_timed_out(self, attempt: int, attempts: int) -> None:
        """An attempt of the sweep timed out: make the last plan's contingency raises now (once
        per plan), vetted as any move. A VM whose figures the controller no longer holds (its
        move failed, or its target lives in a configuration just changed) is left alone: reading
        it again could hang as the sweep did."""
        c, self._contingency = self._contingency, None
        if c is None:
            return
        now = self._clock()
        at = self.hv.backend.now()
        pending: list[_Pending] = []
        for p in c.proposals:
            v, caps = c.views.get(p.vm_id), c.caps.get(p.vm_id)
            if v is None or caps is None or p.target_bytes is None or p.target_bytes <= v.target_bytes:
                continue
            if p.vm_id not in c.read or p.vm_id not in self._configs:
                continue
            why = f"{p.reason}; made while the sweep hung (attempt {attempt} of {attempts} timed out)"
            result = self._vet(v, p.model_copy(update={"reason": why}), caps, now)
            if isinstance(result, _Pending) and result.delta > 0:
                pending.append(result)
        if not pending:
            return
        pending.sort(key=lambda p: -p.delta)
        limit = self.settings.max_changes_per_round
        moves = pending if limit is None else pending[:limit]
        log.warning(
            "the sweep timed out (attempt %d of %d): raising %d VMs the policy planned for it",
            attempt, attempts, len(moves),
            extra={"event": "sweep_timed_out", "round": self.round, "raised": len(moves)},
        )  # fmt: skip
        self.blind_decisions.extend(self._apply(at, moves, now, c.read, lowering=False))

    # -- the journal and the marks ---------------------------------------------------------

    def _record(
        self, batch: list[_Pending], lowering: bool, read: dict[str, MemoryStats]
    ) -> tuple[list[_Pending], list[tuple[_Pending, HVBalloonError]]]:
        """Mark the VMs lowered for the first time (where VMs keep marks), then journal every
        move (with the VM's run, where a target lasts only one: ``read``'s VMs say it): what
        goes ahead, and what could not be marked (it is not lowered)."""
        from hvballoon.policy.release import MARK_KEY, mark_value

        journal = self.journal
        kind = self.hv.backend.kind
        try:
            known = {e.vm_id: e for e in journal.lowered()}
        except HVBalloonError as exc:
            return self._unjournalled(batch, exc, [], lowering)
        marks = lowering and self.marks
        ahead: list[_Pending] = []
        failed: list[tuple[_Pending, HVBalloonError]] = []
        moves: list[Move] = []
        for p in batch:
            v = p.view
            st = read.get(v.id)
            unlimited = False
            marked = False
            before: int | None = None  # what it had, where that is not its target (a limit above it)
            if lowering and v.id not in known:
                cfg = self._configs.get(v.id) if v.mechanism is Mechanism.LIMIT else None
                unlimited = cfg is not None and cfg.limit_bytes is None
                # an ESXi limit above the memory size: its target reads as the memory size, and
                # release sets the limit back as it was
                if cfg is not None and cfg.limit_bytes is not None and cfg.limit_bytes > v.target_bytes:
                    before = cfg.limit_bytes
                if marks:
                    try:
                        value = mark_value(v.target_bytes if before is None else before, unlimited=unlimited)
                        self.hv.set_mark(v.id, MARK_KEY, value)
                    except HVBalloonError as exc:
                        log.warning(
                            "cannot mark %s before lowering it, so it is not lowered: %s", v.name, exc,
                            extra={"event": "mark_failed", "vm": v.name, "code": exc.code},
                        )  # fmt: skip
                        failed.append((p, exc))
                        continue
                    marked = True
            run = kind.run_of(st.vm) if kind is not None and st is not None else None
            moves.append(
                Move(
                    v.id, v.name, v.mechanism.value, v.target_bytes, p.target, unlimited, marked, run, before
                )
            )
            ahead.append(p)
        if moves:
            try:
                journal.intend(self.round, moves)
            except HVBalloonError as exc:
                ahead, unjournalled = self._unjournalled(
                    ahead, exc, [m.vm_id for m in moves if m.marked], lowering
                )
                return ahead, failed + unjournalled
        return ahead, failed

    def record_unrecorded(self) -> None:
        """Journal the raises made while it could not be written (:attr:`_unrecorded`), now that
        it may be: each is the controller's target of that VM from then on."""
        if not self._unrecorded:
            return
        moves = list(self._unrecorded.values())
        try:
            self.journal.intend(self.round, moves)
            self.journal.settle(self.round, {m.vm_id: None for m in moves})
        except HVBalloonError:
            return  # tried again at the next move, and before a release
        self._unrecorded.clear()

    def _unjournalled(
        self, batch: list[_Pending], exc: HVBalloonError, marked: list[str], lowering: bool
    ) -> tuple[list[_Pending], list[tuple[_Pending, HVBalloonError]]]:
        """The journal cannot be written (or read): no VM is lowered that it does not hold —
        each lower fails with ``exc``, and the marks just set for them are taken off again —
        while the raises go ahead (a raise never leaves a VM short; the journal still holds a
        lowered VM raised so, and a release finds it given back already)."""
        from hvballoon.policy.release import MARK_KEY

        for vm_id in marked:
            try:
                self.hv.set_mark(vm_id, MARK_KEY, None)
            except HVBalloonError as mark_exc:
                log.warning("cannot remove the mark of %s: %s", vm_id, mark_exc)
        if batch:
            log.error(
                "%s %d VMs the journal does not hold: %s",
                "not lowering" if lowering else "raising", len(batch), exc.message,
                extra={"event": "journal_failed", "code": exc.code, "round": self.round},
            )  # fmt: skip
        if not lowering:
            for p in batch:
                p.unjournalled = True
            return batch, []
        return [], [(p, exc) for p in batch]

    def _settle(self, outcomes: dict[str, str | None]) -> None:
        """Journal how the moves ended; a VM given back all it had loses its mark."""
        from hvballoon.policy.release import MARK_KEY

        if not outcomes:
            return
        journal = self.journal
        try:
            marked = {e.vm_id for e in journal.lowered() if e.marked}
            given_back = journal.settle(self.round, outcomes)
        except HVBalloonError as exc:
            # the moves are made; the journal holds them as intended (a lowered VM with the
            # target asked for), which is what a release needs
            log.error(
                "cannot record how %d moves ended: %s", len(outcomes), exc.message,
                extra={"event": "journal_failed", "code": exc.code, "round": self.round},
            )  # fmt: skip
            return
        for vm_id in given_back:
            if vm_id in marked:
                try:
                    self.hv.set_mark(vm_id, MARK_KEY, None)
                except HVBalloonError as exc:
                    log.warning("cannot remove the mark of %s: %s", vm_id, exc)

    def _apply_buffers(
        self,
        at: datetime,
        proposals: tuple[BufferProposal, ...],
        views: dict[str, VMView],
        read: dict[str, MemoryStats],
    ) -> list[Decision]:
        """Set the Dynamic Memory buffers the policy asks for, one ``set_config`` each (checked
        by the session against Hyper-V's rules; in a dry run, only checked): a decision per
        buffer that changes, ``raise`` or ``lower`` of the buffer, ``error`` when the call fails
        (the VM keeps its buffer). Not journalled: a buffer is not memory taken from the VM (the
        host trims buffers first when it is short), and the policy gives it back itself."""
        out: list[Decision] = []
        for bp in proposals:
            v, st = views.get(bp.vm_id), read.get(bp.vm_id)
            if v is None or st is None or v.buffer_percent is None or v.settings.exclude or not v.running:
                continue
            before = v.buffer_percent
            if bp.buffer_percent == before:
                continue
            action: Action = "raise" if bp.buffer_percent > before else "lower"
            shown = Proposal(
                vm_id=v.id,
                rule=bp.rule,
                reason=bp.reason,
                inputs={**bp.inputs, "buffer_percent_before": before, "buffer_percent": bp.buffer_percent},
            )
            try:
                self.hv.set_config(st.vm, buffer_percent=bp.buffer_percent, dry_run=self.dry_run)
            except HVBalloonError as exc:
                log.warning(
                    "cannot set the buffer of %s to %s %%: %s", v.name, bp.buffer_percent, exc,
                    extra={"event": "buffer_failed", "vm": v.name, "code": exc.code},
                )  # fmt: skip
                out.append(
                    self._decision(
                        at, v, shown, "error", bp.rule, f"{bp.reason}; not applied: {exc}", error=exc.code
                    )
                )
                continue
            if not self.dry_run:
                self._configs.pop(v.id, None)  # read again next round
            out.append(self._decision(at, v, shown, action, bp.rule, bp.reason, applied=not self.dry_run))
        return out

    def _decision(
        self,
        at: datetime,
        v: VMView,
        p: Proposal,
        action: Action,
        rule: str,
        reason: str,
        *,
        proposed: int | None = None,
        after: int | None = None,
        applied: bool = False,
        error: str | None = None,
    ) -> Decision:
        return Decision(
            at=at,
            round=self.round,
            policy=self.policy.name,
            vm=v.name,
            vm_id=v.id,
            mechanism=v.mechanism,
            action=action,
            before_bytes=v.target_bytes,
            after_bytes=after if after is not None else v.target_bytes,
            proposed_bytes=proposed if proposed is not None else p.target_bytes,
            applied=applied,
            dry_run=self.dry_run,
            rule=rule,
            reason=reason,
            inputs={
                "current_bytes": v.current_bytes,
                "used_bytes": v.used_bytes,
                "maximum_bytes": v.maximum_bytes,
                **p.inputs,
            },
            error_code=error,
        )
