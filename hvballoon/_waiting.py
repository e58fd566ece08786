"""Waiting for targets: polling (one bulk read per round) until each VM's memory reaches its
goal, stalls or times out; and the warning for a target the backend cannot observe.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from hvballoon._sessioncore import _SessionCore
from hvballoon.errors import (
    BalloonStalledError,
    HVBalloonError,
    TargetNotObservableWarning,
    VMNotFoundError,
    WaitTimeoutError,
)
from hvballoon.models import (
    VM,
    Capabilities,
    MemoryStats,
    PowerState,
)
from hvballoon.units import format_sizes

log = logging.getLogger("hvballoon")


@contextmanager
def noting_unobservable() -> Iterator[list[str]]:
    """Collect the :class:`~hvballoon.errors.TargetNotObservableWarning` messages raised in the
    block into a list (instead of printing them), for a front end that shows them its own way;
    other warnings pass through.

    >>> import hvballoon
    >>> with hvballoon.connect("fake://seed?flavor=esxi") as hv, noting_unobservable() as notes:
    ...     _ = hv.wait_for_target("web01")
    >>> "cannot observe 'web01'" in notes[0]
    True
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TargetNotObservableWarning)
        yield notes
    for w in caught:
        if issubclass(w.category, TargetNotObservableWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


#: Power states in which a VM's memory does not move: a target waits for the VM to run.
_IDLE = frozenset({PowerState.STOPPED, PowerState.PAUSED, PowerState.SUSPENDED})


def idle(vm: VM) -> bool:
    """Whether ``vm`` is known not to run (off, paused, saved): nothing moves its memory, so
    there is nothing to wait for (an unknown state is waited for)."""
    return vm.power_state in _IDLE


def awaited(caps: Capabilities, vm: VM) -> bool:
    """Whether a target applied to ``vm`` is waited for: its backend can see the memory reach it
    (``caps``: the VM's capabilities) and the VM runs (else it is applied and warned about)."""
    return caps.target_observable and not idle(vm)


class _Waiting(_SessionCore):
    """Waits for VMs' memory to reach their targets."""

    def _not_waited(self, msg: str, vm: VM, mechanism: str) -> None:
        """Say, as a log line and a :class:`~hvballoon.errors.TargetNotObservableWarning` pointing
        at the caller's caller, why ``wait_for_target`` returns without waiting."""
        log.info(msg)
        warnings.warn(
            TargetNotObservableWarning(msg, vm=vm.name, backend=self.backend_name, mechanism=mechanism),
            stacklevel=3,
        )

    def _not_running(self, vm: VM) -> str:
        return (
            f"{vm.name!r} is {vm.power_state.value}: its memory moves only while it runs, so the "
            "target is applied and there is nothing to wait for; not waiting"
        )

    def _unobservable(self, vm: VM, caps: Capabilities) -> str:
        return (
            f"the {caps.backend} backend cannot observe {vm.name!r} reaching a "
            f"{caps.mechanism.value} target (the hypervisor moves the memory within it on its "
            "own): the target is applied; not waiting"
        )

    def _wait_stats(self, vm: VM) -> MemoryStats:
        (stats,) = self._await_read([vm])
        if isinstance(stats, HVBalloonError):
            raise stats
        return stats

    def _await_read(self, vms: list[VM]) -> list[MemoryStats | HVBalloonError]:
        """Fresh stats of ``vms`` for a wait (one bulk read; VM by VM if one vanished)."""
        try:
            stats: list[MemoryStats] = self._call("get_stats", lambda: self._backend.get_stats(vms))
            by_id = {s.vm.id: s for s in stats}
            if all(vm.id in by_id for vm in vms):
                return [by_id[vm.id] for vm in vms]
        except VMNotFoundError:
            pass
        out: list[MemoryStats | HVBalloonError] = []
        for vm in vms:
            try:
                one: list[MemoryStats] = self._call(
                    "get_stats", lambda vm=vm: self._backend.get_stats([vm]), vm.name
                )
                if not one:
                    raise VMNotFoundError(f"no stats for VM {vm.name!r}: it may have vanished", vm=vm.name)
                out.append(one[0])
            except VMNotFoundError as exc:
                exc.with_context(backend=self.backend_name, uri=self.uri, vm=vm.name)
                exc.message = (
                    f"VM {vm.name!r} vanished while waiting for its target: "
                    "the guest may have crashed (over-inflated balloon?)"
                )
                out.append(exc)
        return out

    def _await(
        self,
        goals: Mapping[str, tuple[VM, int, int]],
        *,
        timeout: float,
        poll_interval: float,
        stall_after: float | None,
        done: dict[str, MemoryStats | HVBalloonError] | None = None,
    ) -> dict[str, MemoryStats | HVBalloonError]:
        """Poll (one bulk read per round) until each VM's memory is within its tolerance of its
        goal; a VM whose memory stops moving short of it for ``stall_after`` seconds stalled,
        one still moving at ``timeout`` timed out. ``goals``: key → (VM, goal, tolerance).
        Each outcome goes into ``done`` (returned) as it is known, so a caller whose wait is
        interrupted knows the ones that were."""
        stall_after = stall_after if stall_after is not None else max(5 * poll_interval, 5.0)
        clock, sleep = self._backend.monotonic, self._backend.sleep
        start = clock()
        done = {} if done is None else done
        moved: dict[str, tuple[float, int | None]] = {}
        pending = dict(goals)
        while pending:
            keys = list(pending)
            now = clock()
            for key, stats in zip(keys, self._await_read([pending[k][0] for k in keys]), strict=True):
                vm, goal, tol = pending[key]
                if isinstance(stats, HVBalloonError) or idle(stats.vm):
                    done[key] = stats  # an error, or a VM that does not run: nothing moves
                    continue
                current = stats.current_bytes
                if current is not None and abs(current - goal) <= tol:
                    done[key] = stats
                    continue
                last_at, last_value = moved.get(key, (start, None))
                if current is not None and (last_value is None or abs(current - last_value) > tol // 2):
                    last_at, last_value = (now if key in moved else start), current
                moved[key] = (last_at, last_value)
                details = {
                    "target_bytes": goal,
                    "reached_bytes": current,
                    "tolerance_bytes": tol,
                    "elapsed_seconds": round(now - start, 3),
                    "stats": stats.model_dump(mode="json"),
                }
                shown_current, shown_goal = format_sizes(current, goal)
                if now - last_at >= stall_after:
                    why = "the guest cannot free more (it may be about to swap or run out of memory)"
                    if last_at == start and _never_reported(stats):
                        # a balloon device with no driver in the guest (KVM: virtio_balloon not
                        # loaded) accepts a target and never moves; the guest never reports either
                        why = (
                            "it did not move at all, and the guest has never reported its memory: "
                            "its balloon driver may not be loaded (a target then takes nothing)"
                        )
                        details["never_reported"] = True
                    done[key] = BalloonStalledError(
                        f"the memory of {vm.name!r} stalled at {shown_current} short of the target {shown_goal}: {why}",
                        vm=vm.name,
                        backend=self.backend_name,
                        uri=self.uri,
                        details=details,
                    )
                elif now - start >= timeout - _CLOCK_SLACK:
                    how = (
                        f"was still moving after {timeout:g} s"
                        if last_at > start
                        # not "still moving": a wait shorter than a stall takes to tell
                        else f"did not move in the {timeout:g} s waited (too short to tell: a stall is "
                        f"told after {stall_after:g} s without moving)"
                    )
                    done[key] = WaitTimeoutError(
                        f"the memory of {vm.name!r} {how} ({shown_current} of target {shown_goal})",
                        vm=vm.name,
                        backend=self.backend_name,
                        uri=self.uri,
                        details=details,
                    )
            pending = {k: v for k, v in pending.items() if k not in done}
            if pending:
                sleep(min(poll_interval, max(0.0, timeout - (clock() - start))))
        return done


#: How far short of a wait's timeout its clock may end after sleeping exactly to it: a clock of
#: whole float steps (the simulator's, at 3.0 s, sleeps 0.001 s to 3.0009999999999999) ends a
#: hair short, and a sleep of that hair does not move it again (a wait that never ended).
_CLOCK_SLACK = 1e-6


def _never_reported(stats: MemoryStats) -> bool:
    """Whether the guest has never reported its memory (no report, no figure of it at all)."""
    return (
        stats.guest_report_age_seconds is None
        and stats.guest_total_bytes is None
        and stats.used_bytes is None
    )
