"""Giving back what the auto-balloon controller lowered (``hvballoon release``).

Every VM the controller's journal (:mod:`hvballoon.policy.journal`) holds as lowered — and, on a
backend whose VMs keep marks (ESXi, KVM), every VM carrying the controller's mark
:data:`MARK_KEY` — is returned to what it had before the controller first lowered it (an ESXi
VM that had no limit gets none), or to its maximum with ``to_maximum``. It goes through the
session's API (:meth:`~hvballoon.Hypervisor.set_targets`, and ``set_config(limit=…)`` for a
limit to remove, or one to set back above the VM's memory size, which no target can reach), so
the usual checks apply; a release only ever *raises*: a VM already at
or above the value to give back is left as it is. The answer has one :class:`Released` per VM.

>>> import hvballoon
>>> from hvballoon.policy.journal import Journal, Move
>>> with hvballoon.connect("fake://seed") as hv, Journal.open(None, uri=hv.uri) as journal:
...     vm = hv.resolve("web01")
...     journal.intend(1, [Move(vm.id, "web01", "balloon", 16 * 2**30, 12 * 2**30)])
...     change = hv.set_target("web01", "12GiB")
...     report = release(hv, journal=journal)
...     [(r.vm, r.action, r.to_bytes // 2**30) for r in report.vms], journal.lowered()
([('web01', 'released', 16)], [])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from hvballoon.errors import HVBalloonError, PartialChangeError
from hvballoon.models import VM, Change, MemoryConfig, MemoryStats
from hvballoon.units import format_size, format_sizes

if TYPE_CHECKING:
    from hvballoon.marks import Marks
    from hvballoon.policy.journal import Journal, Lowered
    from hvballoon.session import Hypervisor

__all__ = ["MARK_KEY", "ReleaseReport", "Released", "mark_value", "parse_mark", "release"]

#: The mark the controller leaves on a VM it lowered (on backends whose VMs keep marks): what
#: the VM had before, in bytes, or ``unlimited``.
MARK_KEY = "hvballoon.controller.before"

Action = Literal["released", "unchanged", "gone", "error"]


def mark_value(before_bytes: int, *, unlimited: bool = False) -> str:
    """The mark's value for what a VM had: ``"unlimited"`` or its bytes.

    >>> mark_value(8 * 2**30), mark_value(0, unlimited=True)
    ('8589934592', 'unlimited')
    """
    return "unlimited" if unlimited else str(int(before_bytes))


def parse_mark(value: str) -> tuple[int | None, bool]:
    """``(bytes, unlimited)`` from a mark's value; ``ValueError`` names what is wrong.

    >>> parse_mark("8589934592"), parse_mark("unlimited")
    ((8589934592, False), (None, True))
    """
    text = value.strip()
    if text == "unlimited":
        return None, True
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"the mark {MARK_KEY} holds {value!r}, not a size in bytes or 'unlimited'")
    return int(text), False


class Released(BaseModel):
    """One VM of a release: what it had before the controller, what it was given back.

    ``action``: ``released`` (given back; in a dry run: would be), ``unchanged`` (already at or
    above it: left alone), ``gone`` (the VM no longer exists) or ``error`` (``error`` says why;
    also a VM whose marks could not be read and the journal does not hold: it may be lowered,
    so it is named, not passed over).
    ``source``: where the controller's record of it came from (``journal`` or ``marks``).
    ``to_bytes`` is ``None`` when an ESXi limit is removed (``unlimited``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vm: str
    vm_id: str
    action: Action
    source: Literal["journal", "marks"]
    before_bytes: int | None = Field(default=None, description="What it had before it was lowered.")
    unlimited: bool = Field(default=False, description="It had no limit (ESXi), and gets none back.")
    from_bytes: int | None = Field(default=None, description="Its target when released.")
    to_bytes: int | None = Field(default=None, description="The target given back (None: no limit).")
    dry_run: bool = False
    reason: str = ""
    error: dict[str, object] | None = Field(default=None, description="The error report, for action=error.")
    warnings: tuple[str, ...] = ()


class ReleaseReport(BaseModel):
    """What :func:`release` did, VM by VM (``hvballoon release --json`` prints it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    journal: str | None = Field(default=None, description="The journal read, if any.")
    marks: bool = Field(default=False, description="Whether the VMs' marks were read.")
    to_maximum: bool = False
    dry_run: bool = False
    vms: tuple[Released, ...] = ()

    @property
    def released(self) -> int:
        return sum(1 for r in self.vms if r.action == "released")

    @property
    def failed(self) -> int:
        return sum(1 for r in self.vms if r.action == "error")

    def error(self) -> HVBalloonError | None:
        """``None`` when every VM was given back (or needed nothing); when some failed:
        :class:`~hvballoon.errors.PartialChangeError` if others were released, else a
        :class:`~hvballoon.errors.HVBalloonError` of the first failure's code."""
        failed = [r for r in self.vms if r.action == "error"]
        if not failed:
            return None
        summary = "; ".join(f"{r.vm}: {(r.error or {}).get('message', r.reason)}" for r in failed)
        details = {
            "failed": [r.vm for r in failed],
            "released": [r.vm for r in self.vms if r.action == "released"],
        }
        if self.released and not self.dry_run:
            return PartialChangeError(
                f"released {self.released} of {self.released + len(failed)} VMs; not released: {summary}",
                uri=self.uri,
                details=details,
            )
        first = failed[0].error or {}
        cls = _error_class(str(first.get("code", "")))
        return cls(f"nothing was released: {summary}", uri=self.uri, details=details)


def _error_class(code: str) -> type[HVBalloonError]:
    """The error class whose ``code`` this is (the base class when none is)."""
    todo: list[type[HVBalloonError]] = [HVBalloonError]
    while todo:
        cls = todo.pop()
        if cls.code == code:
            return cls
        todo.extend(cls.__subclasses__())
    return HVBalloonError


def _entries_from_marks(hv: Hypervisor, known: set[str]) -> tuple[list[Lowered], list[Released], Marks]:
    from datetime import datetime, timezone

    from hvballoon.policy.journal import Lowered

    entries: list[Lowered] = []
    bad: list[Released] = []
    marks = hv.get_marks(MARK_KEY)
    for vm_id, exc in marks.unreadable.items():
        if vm_id in known:  # the journal says what it had
            continue
        why = (
            f"its marks could not be read ({exc.message}): it may carry the controller's mark, "
            "so it is not released"
        )
        bad.append(
            Released(
                vm=exc.vm or vm_id,
                vm_id=vm_id,
                action="error",
                source="marks",
                reason=why,
                error={**exc.to_dict(), "message": why},
            )
        )
    unknown = [vm_id for vm_id in marks if vm_id not in known]
    if not unknown:
        return entries, bad, marks
    vms, _missing = hv.find_vms(unknown)
    names = {v.id: v.name for v in vms}
    now = datetime.now(timezone.utc)
    for vm_id in unknown:
        name = names.get(vm_id, vm_id)
        try:
            before, unlimited = parse_mark(marks[vm_id])
        except ValueError as exc:
            bad.append(
                Released(
                    vm=name,
                    vm_id=vm_id,
                    action="error",
                    source="marks",
                    reason=str(exc),
                    error={"code": "invalid_request", "message": str(exc)},
                )
            )
            continue
        entries.append(
            Lowered(
                vm_id=vm_id,
                vm=name,
                mechanism="limit",
                before_bytes=before or 0,
                before_unlimited=unlimited,
                target_bytes=0,
                marked=True,
                since=now,
                updated=now,
            )
        )
    return entries, bad, marks


def release(
    hv: Hypervisor,
    *,
    journal: Journal | None = None,
    marks: bool | None = None,
    to_maximum: bool = False,
    dry_run: bool = False,
    round_no: int = 0,
) -> ReleaseReport:
    """Give back what the controller lowered on ``hv``: every VM ``journal`` holds lowered and,
    with ``marks`` (default: where the backend's VMs keep marks), every VM marked
    :data:`MARK_KEY`. Each goes back to what it had before (``to_maximum``: its maximum; an ESXi
    VM: no limit); a VM already at or above that is left alone. A VM given back is removed from
    the journal and its mark. Errors are per VM (see :meth:`ReleaseReport.error`); only a
    failure to read the VMs at all raises.
    """
    use_marks = hv.capabilities.marks if marks is None else marks
    sources: dict[str, tuple[Lowered, Literal["journal", "marks"]]] = {}
    if journal is not None:
        for entry in journal.lowered():
            sources[entry.vm_id] = (entry, "journal")
    results: list[Released] = []
    seen_marks: Marks | None = None  # the marks read, where they were
    if use_marks:
        found, bad, seen_marks = _entries_from_marks(hv, set(sources))
        results.extend(bad)
        for entry in found:
            sources[entry.vm_id] = (entry, "marks")
    report = ReleaseReport(
        uri=hv.uri,
        journal=str(journal.path) if journal is not None and journal.path is not None else None,
        marks=bool(use_marks),
        to_maximum=to_maximum,
        dry_run=dry_run,
    )
    if not sources:
        return report.model_copy(update={"vms": tuple(results)})
    vms, missing = hv.find_vms(list(sources))
    for vm_id in missing:
        entry, source = sources[vm_id]
        unrecorded: tuple[str, ...] = ()
        if journal is not None and not dry_run:
            unrecorded = _forget(journal, vm_id, entry.vm, None, round_no)
        results.append(
            Released(
                vm=entry.vm,
                vm_id=vm_id,
                action="gone",
                source=source,
                before_bytes=entry.before_bytes,
                unlimited=entry.before_unlimited,
                dry_run=dry_run,
                reason="the VM no longer exists: nothing to give back (forgotten)",
                warnings=unrecorded,
            )
        )
    stats = {s.vm.id: s for s in hv.get_stats(vms)} if vms else {}
    configs = _configs(hv, vms, to_maximum)
    moves: list[tuple[VM, int]] = []
    unlimit: list[VM] = []
    limits: list[tuple[VM, int]] = []  # ESXi limits above the memory size, set back as they were
    plans: dict[str, tuple[int | None, bool, int | None]] = {}  # vm id -> (goal, unlimited, from)
    notes: dict[str, str] = {}  # vm id -> what changed its goal
    lapsed: dict[str, str] = {}  # vm id -> why its lowering no longer holds (forgotten, not raised)
    kept: set[str] = set()  # vm ids left alone and kept in the journal (decided when they run)
    kind = hv.backend.kind
    tolerance = hv.capabilities.alignment_bytes
    for vm in vms:
        entry, source = sources[vm.id]
        st = stats.get(vm.id)
        cfg = configs.get(vm.id)
        limit_vm = st is not None and st.mechanism.value == "limit"
        unlimited = limit_vm and (entry.before_unlimited or to_maximum)
        current = _current(st, cfg, limit_vm)
        if kind is not None:
            seen = st.vm if st is not None else vm  # the sweep's: its power state and run now
            dormant = kind.target_dormant(seen, entry.run)
            if dormant is not None:
                why = f"{dormant}: left alone, and kept until it runs again"
                kept.add(vm.id)
                results.append(_done(entry, source, vm, "unchanged", (None, False, current), dry_run, why))
                continue
            # marked when lowered and known unmarked now: where a mark lasts one run, a new run
            mark_gone = seen_marks is not None and entry.marked and seen_marks.lacks(vm.id)
            gone_by = kind.target_lapsed(
                seen,
                entry.run,
                current_bytes=st.current_bytes if st is not None else None,
                target_bytes=entry.target_bytes,
                mark_gone=mark_gone,
            )
            if gone_by is not None:
                lapsed[vm.id] = gone_by
                why = f"not lowered any more: {gone_by}; left as it is (forgotten)"
                results.append(_done(entry, source, vm, "unchanged", (None, False, current), dry_run, why))
                continue
        if unlimited:
            plan: tuple[int | None, bool, int | None] = (None, True, current)
            plans[vm.id] = plan
            if cfg is not None and cfg.limit_bytes is None:
                why = "it has no limit already"
                results.append(_done(entry, source, vm, "unchanged", plan, dry_run, why))
                continue
            theirs = _resized_since(entry, _in_force(st, cfg, limit_vm), tolerance)
            if theirs is not None:
                lapsed[vm.id] = theirs
                why = f"not lowered any more: {theirs}; left as it is (forgotten)"
                results.append(_done(entry, source, vm, "unchanged", (None, False, current), dry_run, why))
                continue
            unlimit.append(vm)
            continue
        goal = _maximum(st, cfg) if to_maximum else entry.before_bytes
        if goal is None:
            results.append(
                _failed(entry, source, vm, "cannot tell its maximum: its configuration did not say")
            )
            continue
        capped = ""
        most = _ceiling(hv, vm, st, cfg)
        above = limit_vm and not to_maximum and most is not None and goal > most
        if above:
            # an ESXi limit above the memory size (set so, or the memory made smaller since):
            # a target cannot go there, the limit is set back as it was
            capped = f" (a limit above its memory size, {format_size(most or 0)}, as it had)"
        elif most is not None and goal > most:
            # redefined smaller since it was lowered: it gets back at most what it may be given
            goal = most
            capped = f" (capped at its maximum, {format_size(goal)}: it was redefined smaller)"
        plan = plans[vm.id] = (goal, False, current)
        in_force = _in_force(st, cfg, limit_vm)
        if in_force is not None and in_force >= goal:
            why = "already at or above the value to give back: left alone" + capped
            results.append(_done(entry, source, vm, "unchanged", plan, dry_run, why))
            continue
        theirs = _resized_since(entry, in_force, tolerance)
        if theirs is not None:
            lapsed[vm.id] = theirs
            why = f"not lowered any more: {theirs}; left as it is (forgotten)"
            results.append(_done(entry, source, vm, "unchanged", (None, False, current), dry_run, why))
            continue
        if above:
            limits.append((vm, goal))
        else:
            moves.append((vm, goal))
        if capped:
            notes[vm.id] = capped
    outcomes: dict[str, Change | HVBalloonError] = {}
    if moves:
        # raises only: the guard rails' floor never binds, and stale figures do not block them
        res = hv.set_targets(
            [(vm, goal) for vm, goal in moves], force=True, skip_invalid=True, dry_run=dry_run
        )
        for vm, _goal in moves:
            outcomes[vm.id] = res[vm.id]
    to_limit: list[tuple[VM, int | str]] = [*((vm, "unlimited") for vm in unlimit), *limits]
    for vm, limit in to_limit:
        try:
            outcomes[vm.id] = hv.set_config(vm, limit=limit, dry_run=dry_run)
        except HVBalloonError as exc:
            outcomes[vm.id] = exc
    for vm_id, outcome in outcomes.items():
        entry, source = sources[vm_id]
        vm = next(v for v in vms if v.id == vm_id)
        if isinstance(outcome, HVBalloonError):
            results.append(_failed(entry, source, vm, outcome.message, outcome))
            continue
        why = "given back what it had" + (" (its maximum)" if to_maximum else notes.get(vm_id, ""))
        if not outcome.changed:  # the balloon is there already, but the lower may be on its way
            why += ": its target sent again (the hypervisor does not report the one it holds)"
        results.append(_done(entry, source, vm, "released", plans[vm_id], dry_run, why))
    # forget what was given back (or needed nothing), and take its mark off
    final: list[Released] = []
    for r in results:
        if r.action in ("released", "unchanged") and not dry_run and r.vm_id not in kept:
            entry, source = sources[r.vm_id]
            if journal is not None:
                unrecorded = _forget(journal, r.vm_id, r.vm, r.to_bytes, round_no, lapsed.get(r.vm_id))
                if unrecorded:
                    r = r.model_copy(update={"warnings": (*r.warnings, *unrecorded)})
            if (entry.marked or source == "marks") and use_marks:
                try:
                    hv.set_mark(r.vm_id, MARK_KEY, None)
                except HVBalloonError as exc:
                    r = r.model_copy(
                        update={
                            "warnings": (
                                *r.warnings,
                                f"its mark {MARK_KEY} could not be removed: {exc.message}",
                            )
                        }
                    )
        final.append(r)
    order = {vm_id: i for i, vm_id in enumerate(sources)}
    final.sort(key=lambda r: order.get(r.vm_id, len(order)))
    return report.model_copy(update={"vms": tuple(final)})


def _forget(
    journal: Journal, vm_id: str, vm: str, to_bytes: int | None, round_no: int, why: str | None = None
) -> tuple[str, ...]:
    """Take the VM out of the journal (``why``: its lowering lapsed, it was not given back); a
    journal that cannot be written says so as a warning (the VM was dealt with; the journal
    still holds it lowered, and the next release finds it given back already)."""
    try:
        journal.released(vm_id, vm=vm, to_bytes=to_bytes, round_no=round_no, why=why)
    except HVBalloonError as exc:
        return (f"the journal could not record it: {exc.message}",)
    return ()


def _resized_since(entry: Lowered, in_force: int | None, tolerance: int) -> str | None:
    """Why the VM is not the controller's lowering any more, or ``None``: the value it is held
    to now is none the controller set (someone else resized it since, above or below; theirs to
    keep). A value not known, or a controller's target not known (a VM found marked), says
    nothing."""
    if in_force is None or entry.set_by_controller(in_force, tolerance) is not False:
        return None
    now, ours = format_sizes(in_force, entry.target_bytes)
    return f"it was resized by someone else since it was lowered (to {now}; the controller had set {ours})"


def _ceiling(hv: Hypervisor, vm: VM, st: MemoryStats | None, cfg: MemoryConfig | None) -> int | None:
    """The most the VM may be given now (the backend's ceiling, from its kind, where its
    configuration was read; a balloon's maximum otherwise): a VM redefined smaller since it was
    lowered gets that back, rather than a release refused for ever."""
    if st is None:
        return None
    if cfg is not None:
        return hv.backend.target_ceiling(vm, st, cfg)
    return st.configured_bytes if st.mechanism.value == "balloon" else None


def _configs(hv: Hypervisor, vms: list[VM], to_maximum: bool) -> dict[str, MemoryConfig]:
    """Configurations where they decide: every VM's for ``to_maximum``, else the limits'."""
    wanted = list(vms)
    if not to_maximum:
        wanted = [vm for vm in vms if hv.vm_capabilities(vm).mechanism.value == "limit"]
    out: dict[str, MemoryConfig] = {}
    for vm in wanted:
        try:
            out[vm.id] = hv.get_config(vm)
        except HVBalloonError:
            continue  # its move will say what is wrong
    return out


def _current(st: MemoryStats | None, cfg: MemoryConfig | None, limit_vm: bool) -> int | None:
    """What the VM is held to (:func:`_in_force`), else where its balloon is: the "from" shown."""
    in_force = _in_force(st, cfg, limit_vm)
    if in_force is None and st is not None:
        return st.current_bytes
    return in_force


def _in_force(st: MemoryStats | None, cfg: MemoryConfig | None, limit_vm: bool) -> int | None:
    """The value the hypervisor holds the VM to, ``None`` when it does not say: a balloon's
    target libvirt does not report (only the session that set it knows it) may be below where
    the balloon is now, still moving there, so the raise is sent all the same."""
    if st is None:
        return None
    if limit_vm and cfg is not None:
        return cfg.limit_bytes if cfg.limit_bytes is not None else st.configured_bytes
    return st.target_bytes


def _maximum(st: MemoryStats | None, cfg: MemoryConfig | None) -> int | None:
    if cfg is not None and cfg.maximum_bytes is not None:
        return cfg.maximum_bytes
    return st.configured_bytes if st is not None else None


def _done(
    entry: Lowered,
    source: Literal["journal", "marks"],
    vm: VM,
    action: Action,
    plan: tuple[int | None, bool, int | None],
    dry_run: bool,
    reason: str,
) -> Released:
    """A VM given back (or left alone): ``plan`` is (what it gets, whether that is no limit,
    what it has)."""
    goal, unlimited, current = plan
    return Released(
        vm=vm.name,
        vm_id=vm.id,
        action=action,
        source=source,
        before_bytes=None if entry.before_unlimited else entry.before_bytes,
        unlimited=unlimited,
        from_bytes=current,
        to_bytes=goal,
        dry_run=dry_run,
        reason=reason,
    )


def _failed(
    entry: Lowered,
    source: Literal["journal", "marks"],
    vm: VM,
    why: str,
    exc: HVBalloonError | None = None,
) -> Released:
    error = exc.to_dict() if exc is not None else {"code": "invalid_state", "message": why}
    return Released(
        vm=vm.name,
        vm_id=vm.id,
        action="error",
        source=source,
        before_bytes=None if entry.before_unlimited else entry.before_bytes,
        unlimited=entry.before_unlimited,
        reason=why,
        error=error,
    )
