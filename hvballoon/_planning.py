"""Planning a target: the guard rails (the usage floor of :class:`~hvballoon.GuardRails`, an
unknown power state, the VM's maximum) and the backend's rules, applied to figures read just now,
before anything is sent.
"""

from __future__ import annotations

from typing import Any

from hvballoon._guardrails import GuardRails
from hvballoon._sessioncore import _SessionCore
from hvballoon.errors import (
    GuardRailError,
    Hint,
    StatsUnavailableError,
    TargetAboveMaximumError,
    TargetBelowFloorError,
)
from hvballoon.kinds import Kind, check_settable
from hvballoon.models import (
    VM,
    Change,
    MemoryConfig,
    MemoryStats,
    PowerState,
)
from hvballoon.units import align, format_size, format_sizes


class _TargetPlanning(_SessionCore):
    """Checks one requested target against the guard rails and the backend's rules."""

    def _plan_target(
        self,
        stats: MemoryStats,
        config: MemoryConfig,
        requested: int,
        force: bool,
        rails: GuardRails,
        dry_run: bool,
    ) -> tuple[Change, int]:
        """The guard rails and the backend's rules on one target, from figures read just now
        (the VM's power state included): the :class:`Change`, or the typed refusal."""
        vm = stats.vm
        caps = self._backend.vm_capabilities(vm)
        running = vm.power_state is PowerState.RUNNING
        self._with_context(lambda: check_settable(caps, ["target"], vm), vm)
        target = align(requested, caps.alignment_bytes, "up")
        maximum = self._backend.target_ceiling(vm, stats, config)
        numbers: dict[str, Any] = {"requested_bytes": requested, "target_bytes": target}
        if maximum is not None and target > maximum:
            shown_target, shown_max = format_sizes(target, maximum)
            if requested != target:  # say what alignment did to the size asked
                note = f"{requested:,} bytes asked, aligned up to {format_size(caps.alignment_bytes, exact=True)}"
                shown_target = (
                    f"{shown_target[:-1]}; {note})"
                    if shown_target.endswith(")")
                    else f"{shown_target} ({note})"
                )
            kind = self._backend.kind or Kind
            note = f": {kind.ceiling_note}" if kind.ceiling_note else ""
            raise TargetAboveMaximumError(
                f"target {shown_target} is above {kind.ceiling_name} {shown_max}{note}",
                vm=vm.name,
                backend=self.backend_name,
                uri=self.uri,
                details={**numbers, "maximum_bytes": maximum, "rule": "target_above_maximum"},
            )
        before = stats.target_bytes if stats.target_bytes is not None else stats.current_bytes
        warnings_: list[str] = []
        if vm.power_state is PowerState.UNKNOWN:
            # a guard rail is never skipped because the state is unknown: lowering needs force
            lowering = before is None or target < before
            if lowering and not force:
                raise GuardRailError(
                    f"refusing to lower the target of {vm.name!r}: its power state is unknown "
                    f"({vm.extra.get('state') or 'not reported'}), so whether a guest is using the "
                    "memory is unknown",
                    hint=Hint("force"),
                    vm=vm.name,
                    backend=self.backend_name,
                    uri=self.uri,
                    details={**numbers, "rule": "unknown_power_state", "before_bytes": before},
                )
            if lowering:
                warnings_.append(f"forced while the power state of {vm.name!r} is unknown")
        elif not running:
            # no guest is using memory: the floor applies when it runs (and the guard rails then)
            warnings_.append(f"{vm.name!r} is {vm.power_state.value}: no usage floor applies")
        elif not force:
            self._check_floor(vm, target, stats, numbers, rails)
        else:
            floor = self._floor_or_none(stats, rails)
            if floor is not None and target < floor:
                shown_floor, shown_used = format_sizes(floor, stats.used_bytes)
                warnings_.append(
                    f"forced below the floor {shown_floor} (guest uses {shown_used}): the guest may swap or crash"
                )
        self._backend.check_target(vm, target, stats, config)
        warnings_.extend(self._backend.target_notes(vm, target, stats, config))
        change = Change(
            vm=vm,
            operation="set_target",
            changed=before != target,
            dry_run=dry_run,
            forced=force,
            mechanism=caps.mechanism,
            before={"target_bytes": before},
            after={"target_bytes": target},
            requested={"target_bytes": requested},
            warnings=tuple(warnings_),
        )
        return change, target

    def _floor_or_none(self, stats: MemoryStats, rails: GuardRails) -> int | None:
        used = stats.used_bytes
        if used is None:
            return None
        return rails.floor(used, stats.configured_bytes)

    def _check_floor(
        self, vm: VM, target: int, stats: MemoryStats, numbers: dict[str, Any], rails: GuardRails
    ) -> None:
        used = stats.used_bytes
        age = stats.guest_report_age_seconds
        if used is None or not rails.trusts(stats):
            why = "has not reported its memory use" if used is None else "reported stale figures"
            if used is not None and age is not None:
                why += f" (last report {age:.0f} s ago)"
            raise StatsUnavailableError(
                f"refusing to set a target for {vm.name!r}: the guest {why}, so the safe floor is unknown",
                hint=Hint("fresh_stats"),
                vm=vm.name,
                backend=self.backend_name,
                uri=self.uri,
                details={**numbers, "guest_report_age_seconds": age, "rule": "stats_unavailable"},
            )
        floor = rails.floor(used, stats.configured_bytes)
        if target < floor:
            margin = floor - used
            shown_target, shown_floor = format_sizes(target, floor)
            raise TargetBelowFloorError(
                f"target {shown_target} for {vm.name!r} is below the safe floor "
                f"{shown_floor} (guest uses {format_size(used)} + margin {format_size(margin)}): "
                "the guest would swap or crash",
                hint=Hint("force"),
                vm=vm.name,
                backend=self.backend_name,
                uri=self.uri,
                details={
                    **numbers,
                    "used_bytes": used,
                    "margin_bytes": margin,
                    "floor_bytes": floor,
                    "rule": "below_floor",
                },
            )
