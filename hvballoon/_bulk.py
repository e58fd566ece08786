"""Applying targets: many VMs planned first, then moved in one bulk call (retryable failures
sent again), then optionally waited for; one :class:`~hvballoon.TargetResults` per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from hvballoon._guardrails import GuardRails
from hvballoon._planning import _TargetPlanning
from hvballoon._results import (
    TargetResults,
    TargetsInterrupted,
    held_back,
    interrupt_held,
    keyed_pairs,
    log_changes,
    named_twice,
)
from hvballoon._sessioncore import VMRef
from hvballoon._waiting import _Waiting, awaited, idle
from hvballoon.backend import TargetRequest
from hvballoon.errors import (
    BackendError,
    HVBalloonError,
    InvalidRequestError,
)
from hvballoon.models import (
    VM,
    Change,
    MemoryConfig,
    MemoryStats,
)
from hvballoon.units import MiB, format_size, parse_typed_target

log = logging.getLogger("hvballoon")


_Pair = tuple[MemoryStats, MemoryConfig]


def _pair_vm(pair: _Pair) -> VM:
    return pair[0].vm


class _BulkTargets(_TargetPlanning, _Waiting):
    """Plans, applies and waits for many targets at once (``set_target`` is one VM of it)."""

    def _target_items(self, targets: Any) -> list[tuple[str, VMRef, int | str]]:
        try:
            return keyed_pairs(targets, call="set_targets", value="size")
        except HVBalloonError as exc:  # a VM named twice: said with the session's context
            raise exc.with_context(backend=self.backend_name, uri=self.uri) from None

    def _set_targets(
        self,
        items: list[tuple[str, VMRef, int | str]],
        *,
        force: bool,
        dry_run: bool,
        guard_rails: GuardRails | None,
        skip_invalid: bool,
        wait_timeout: float | None = None,
        figures: dict[str, _Pair] | None = None,
        on_applied: Callable[[TargetResults], object] | None = None,
    ) -> TargetResults:
        if guard_rails is not None and not isinstance(guard_rails, GuardRails):
            raise InvalidRequestError(f"guard_rails takes a GuardRails, got {type(guard_rails).__name__}")
        rails = guard_rails if guard_rails is not None else self.guard_rails
        results: dict[str, Change | HVBalloonError] = {}
        requested: dict[str, int] = {}
        for key, _ref, size in items:
            try:
                requested[key] = parse_typed_target(
                    size, what=f"target of {key}" if len(items) > 1 else "target", int_bytes=True
                )
            except HVBalloonError as exc:
                results[key] = exc.with_context(backend=self.backend_name, uri=self.uri, vm=key)
        keys = [key for key, _, _ in items if key not in results]
        ref_of = {key: ref for key, ref, _ in items}
        # 1. every VM resolved, read fresh (one bulk read; the caller's own figures where they
        # are fresh) and checked before anything is sent
        try:
            reads = self._read_for_targets([ref_of[k] for k in keys], figures, rails)
        except HVBalloonError as exc:
            reads = [exc] * len(keys)
        twice = named_twice(
            (k, r[0].vm) for k, r in zip(keys, reads, strict=True) if not isinstance(r, HVBalloonError)
        )
        planned: dict[str, tuple[Change, int]] = {}
        unread: set[str] = set()  # VMs whose target the hypervisor does not report (libvirt's)
        for key, read in zip(keys, reads, strict=True):
            if isinstance(read, HVBalloonError):
                results[key] = read
                continue
            stats, config = read
            if key in twice:
                results[key] = twice[key].with_context(backend=self.backend_name, uri=self.uri)
                continue
            try:
                change, target = self._plan_target(stats, config, requested[key], force, rails, dry_run)
            except HVBalloonError as exc:
                results[key] = exc.with_context(backend=self.backend_name, uri=self.uri, vm=stats.vm.name)
            else:
                results[key] = change
                planned[key] = (change, target)
                if stats.target_bytes is None:
                    unread.add(key)
        order = [key for key, _, _ in items]
        refused = [key for key in order if isinstance(results[key], HVBalloonError)]
        if refused and not skip_invalid:
            results.update(held_back({k: c for k, (c, _) in planned.items()}, refused, len(order)))
            return self._results(results, order, applied=False)
        if dry_run:
            return self._results(results, order, applied=False)
        # 2. apply, in one bulk call (retryable failures are sent again, bounded)
        # a target the hypervisor does not report is sent even where the balloon already is:
        # it may be moving to another one (set by another session), and it is unchanged only
        # once sent (the Change still says unchanged: nothing the caller sees moves)
        moves = {k: (c, t) for k, (c, t) in planned.items() if c.changed or k in unread}
        made: set[str] | None = None  # known once the apply has answered
        waiting = False
        stats_reached: dict[str, MemoryStats] = {}
        try:
            # a Ctrl-C is held until the call in flight answers: whatever it applied is reported
            with interrupt_held() as held:
                failures, not_sent = self._apply_many(
                    {k: TargetRequest(c.vm, t) for k, (c, t) in moves.items()}, held
                )
                made = {k for k, (c, _t) in moves.items() if k not in failures and c.changed}
                for key, error in failures.items():
                    results[key] = error
                moved: list[tuple[Any, ...]] = []
                for key, (change, target) in planned.items():
                    if key not in failures:
                        self._targets[change.vm.id] = target
                        if key in made:
                            moved.append((change.vm.name, format_size(target), change.mechanism.value))
                log_changes(log, "set target of %s to %s (%s)", moved, "set the targets")
            if held:  # Ctrl-C while applying: what was applied is said, nothing waited for
                done = self._results(results, order, applied=True, made=made)
                raise TargetsInterrupted(done, waiting=False, not_sent=not_sent)
            if wait_timeout is not None:
                waiting = True
                if on_applied is not None:  # what was applied, before the wait
                    on_applied(self._results(results, order, applied=True, made=made))
                self._wait_changes(
                    results,
                    {k: planned[k] for k in planned if k not in failures},
                    wait_timeout,
                    stats_reached,
                )
        except TargetsInterrupted:
            raise
        except KeyboardInterrupt as exc:  # applied: the caller is told what, not left guessing
            if made is None:  # not held (another SIGINT handler than Python's): nothing is known
                raise
            reached = {k: stats_reached[k] for k in order if k in stats_reached}
            done = self._results(results, order, applied=True, made=made, stats=reached)
            raise TargetsInterrupted(done, waiting=waiting) from exc
        return self._results(results, order, applied=True, made=made, stats=stats_reached)

    def _figure_items(self, figures: Any) -> dict[str, _Pair] | None:
        """The caller's ``figures`` of ``set_targets`` checked: per VM id, its pair."""
        if figures is None:
            return None
        if isinstance(figures, (str, bytes, Mapping)) or not isinstance(figures, Iterable):
            raise InvalidRequestError(
                "figures is a list of (MemoryStats, MemoryConfig) pairs, one per VM, "
                f"got {type(figures).__name__}"
            )
        out: dict[str, _Pair] = {}
        for pair in figures:
            if not (
                isinstance(pair, (tuple, list))
                and len(pair) == 2
                and isinstance(pair[0], MemoryStats)
                and isinstance(pair[1], MemoryConfig)
            ):
                got = (
                    f"({', '.join(type(p).__name__ for p in pair)})"
                    if isinstance(pair, (tuple, list))
                    else type(pair).__name__
                )
                raise InvalidRequestError(
                    f"each of figures is one VM's (MemoryStats, MemoryConfig) pair, got {got}"
                )
            stats, config = pair
            vm = stats.vm
            if config.vm.id != vm.id:
                raise InvalidRequestError(
                    f"figures pair the stats of {vm.name!r} ({vm.id}) with the configuration of "
                    f"{config.vm.name!r} ({config.vm.id})"
                )
            if vm.backend != self.backend_name:
                raise InvalidRequestError(
                    f"figures of {vm.name!r} come from the {vm.backend} backend, not this "
                    f"{self.backend_name} session"
                )
            if vm.id in out:
                raise InvalidRequestError(f"figures give VM {vm.name!r} ({vm.id}) twice: give each VM once")
            out[vm.id] = (stats, config)
        return out

    def _read_for_targets(
        self, refs: list[VMRef], figures: dict[str, _Pair] | None, rails: GuardRails
    ) -> list[_Pair | HVBalloonError]:
        """Per ref, its stats and configuration: the caller's own (``figures``) where the guard
        rails would trust them now (:meth:`GuardRails.trusts`, aged by the time since they were
        read), the others in one fresh bulk read."""

        def fresh(some: list[VMRef]) -> list[_Pair | HVBalloonError]:
            return self._read_fresh(
                "get_stats_and_configs", some, self._backend.get_stats_and_configs, _pair_vm
            )

        if not figures:
            return fresh(refs)
        out: list[_Pair | HVBalloonError | None] = []
        now = self._backend.now()
        for res in self._resolve(refs):
            if isinstance(res, HVBalloonError):
                out.append(res)
                continue
            pair = figures.get(res.vm.id)
            if pair is None:
                out.append(None)
                continue
            stats = pair[0]
            trusted = rails.trusts(stats, read_seconds_ago=(now - stats.collected_at).total_seconds())
            # a VM named by a name must still bear it in the figures
            renamed = res.name is not None and stats.vm.name != res.name
            out.append(pair if trusted and not renamed else None)
        rest = [i for i, row in enumerate(out) if row is None]
        if rest:
            for i, row in zip(rest, fresh([refs[i] for i in rest]), strict=True):
                out[i] = row
        return cast("list[_Pair | HVBalloonError]", out)

    def _results(
        self,
        results: dict[str, Change | HVBalloonError],
        order: list[str],
        *,
        applied: bool,
        made: set[str] | None = None,
        stats: dict[str, MemoryStats] | None = None,
    ) -> TargetResults:
        return TargetResults(
            {k: results[k] for k in order},
            applied=applied,
            made=made,
            stats=stats,
            backend=self.backend_name,
            uri=self.uri,
        )

    def _apply_many(
        self, moves: dict[str, TargetRequest], held: list[int]
    ) -> tuple[dict[str, HVBalloonError], list[str]]:
        """Send the moves in bulk; the ones that fail retryably are sent again (they are
        absolute), within the retry policy. Returns the errors of the ones that failed, and the
        keys a Ctrl-C (``held``: one arrived) kept from being sent again."""
        failures: dict[str, HVBalloonError] = {}
        pending = dict(moves)
        delays = self.retry.delays()
        attempt = 0
        while pending:
            keys = list(pending)
            answers = self._send_targets(keys, [pending[k] for k in keys])
            again: dict[str, TargetRequest] = {}
            for key, answer in zip(keys, answers, strict=True):
                if answer is None:
                    failures.pop(key, None)
                    continue
                answer.with_context(backend=self.backend_name, uri=self.uri, vm=pending[key].vm.name)
                failures[key] = answer
                if answer.retryable:
                    again[key] = pending[key]
            if not again or attempt >= len(delays):
                break
            if not held:
                log.info("sending %d target(s) again after a retryable failure", len(again))
                self.retry.sleep(delays[attempt])
            if held:
                return failures, list(again)
            attempt += 1
            pending = again
        return failures, []

    def _send_targets(self, keys: list[str], batch: list[TargetRequest]) -> list[HVBalloonError | None]:
        """One bulk call: an answer per key (a failure of the whole call is each key's)."""
        try:
            answers: list[HVBalloonError | None] = self._call(
                "set_target", lambda: self._backend.apply_targets(batch)
            )
            if len(answers) != len(keys):
                raise BackendError(
                    f"the {self.backend_name} backend answered {len(answers)} results for {len(keys)} targets",
                    backend=self.backend_name,
                    uri=self.uri,
                )
        except HVBalloonError as exc:
            answers = [exc] * len(keys)
        return answers

    def _wait_changes(
        self,
        results: dict[str, Change | HVBalloonError],
        planned: dict[str, tuple[Change, int]],
        timeout: float,
        reached: dict[str, MemoryStats],
    ) -> None:
        """Wait for every applied target the backend can observe; warn about the others. Each
        VM's stats go into ``reached`` as it arrives (interrupted, it holds those that had)."""
        goals: dict[str, tuple[VM, int, int]] = {}
        unobservable: dict[str, VM] = {}
        for key, (change, target) in planned.items():
            caps = self._backend.vm_capabilities(change.vm)
            if not awaited(caps, change.vm):
                # as wait_for_target: applied, said so, and its stats right after the change
                note = (
                    self._not_running(change.vm) if idle(change.vm) else self._unobservable(change.vm, caps)
                )
                results[key] = change.model_copy(update={"warnings": (*change.warnings, note)})
                unobservable[key] = change.vm
                continue
            goals[key] = (change.vm, target, max(caps.alignment_bytes, 2 * MiB, target // 200))
        if unobservable:
            now = self._await_read(list(unobservable.values()))
            reached.update(
                (k, st) for k, st in zip(unobservable, now, strict=True) if isinstance(st, MemoryStats)
            )
        outcomes: dict[str, MemoryStats | HVBalloonError] = {}
        try:
            self._await(goals, timeout=timeout, poll_interval=1.0, stall_after=None, done=outcomes)
        finally:  # also when interrupted: what had arrived (or failed) by then
            for key, outcome in outcomes.items():
                if isinstance(outcome, HVBalloonError):
                    outcome.details.setdefault("change", cast(Change, results[key]).model_dump(mode="json"))
                    results[key] = outcome
                else:
                    reached[key] = outcome
