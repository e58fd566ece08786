"""VMware ESXi / vCenter: a target is ``config.memoryAllocation.limit`` (MB).

vSphere has no balloon-target API; a limit below what the VM consumes makes ESXi balloon, then
compress, then swap (shared/REFERENCE.md §5). The facts behind the rules:

- ``memoryMB`` is a multiple of 4 MB and changes with the VM powered off (libvirt's ESX
  driver: "max-memory must be a multiple of 4096 kilobyte", "Domain is not powered off");
  the allocation (limit, reservation, shares) is whole MB.
- Memory hot-add: a powered-on VM's memory size may change only if ``memoryHotAddEnabled`` is
  true, "and the new memory size must satisfy the constraints specified by" the hot-add
  increment and limit (vSphere Automation API, ``Vm.Hardware.Memory.UpdateSpec.size_MiB``);
  "When adding memory to a running virtual machine, the amount of memory added must be at
  least [the increment] and the total memory size of the virtual machine must be a multiple of
  [it]", the limit being "the maximum amount of memory [...] that can be added to a running
  virtual machine" (``Memory.Info``; in the SOAP API ``config.hotPlugMemoryIncrementSize`` and
  ``config.hotPlugMemoryLimit``, MB, set only with hot-add on). Memory is *added*, never taken
  away live: ``MemoryHotPlugNotSupported`` is "thrown when memory cannot be hot-added or
  hot-removed from the virtual machine", and ESXi does not hot-remove memory.
- A reservation above the limit or above the VM's memory cannot be honoured; a limit (a
  target) below the reservation neither.
- Shares levels (vSphere API ``SharesInfo``,
  https://developer.broadcom.com/xapis/virtual-infrastructure-json-api/latest/data-structures/SharesInfo):
  for memory, ``low`` = 5, ``normal`` = 10, ``high`` = 20 shares per MB of the VM's memory; the
  count is only taken as given with ``custom``.
- ``memoryReservationLockedToMax`` (community.vmware's ``memory_reservation_lock``): "If set
  true, memory resource reservation for the virtual machine will always be equal to the virtual
  machine's memory size" (vSphere API ``VirtualMachineConfigInfo``).

>>> from hvballoon.kinds import ESXI
>>> ESXI.shares_for("high", 16 * 2**30), ESXI.shares_for("normal", 16 * 2**30)
(327680, 163840)
"""

from __future__ import annotations

from typing import ClassVar, NoReturn, get_args

from hvballoon.errors import InvalidRequestError, InvalidStateError
from hvballoon.kinds._base import Kind, Rule, Variant
from hvballoon.models import VM, ConfigUpdate, Mechanism, MemoryConfig, MemoryStats, PowerState, SharesLevel
from hvballoon.units import MiB, align, format_sizes

__all__ = [
    "ESXI",
    "HEARTBEAT_MEANINGS",
    "HOT_ADD",
    "HOT_ADD_INCREMENT",
    "HOT_ADD_LIMIT",
    "NO_TOOLS_NOTE",
    "SHARES_LEVELS",
    "SHARES_PER_MB",
    "ESXiKind",
    "guest_figures_note",
    "guest_notes",
    "not_powered_on",
    "powers_on",
]

#: ``MemoryStats.extra["stats_note"]`` of a running VM whose quickStats.guestMemoryUsage is 0
#: and whose guest heartbeat is not known: no active-memory figure, for a reason vSphere does
#: not say (VMware Tools not reporting is the usual one), so its use is unknown.
NO_TOOLS_NOTE = (
    "guestMemoryUsage is 0: VMware Tools is not reporting (not installed, not running, or the guest "
    "is still booting), so its use is unknown"
)

#: The VM's guest heartbeat (``quickStats.guestHeartbeatStatus``, a ManagedEntityStatus), in
#: the vSphere API's words (VirtualMachine.guestHeartbeatStatus): what a guestMemoryUsage of 0
#: means with each.
HEARTBEAT_MEANINGS: dict[str, str] = {
    "gray": "VMware Tools is not installed or not running",
    "red": "no heartbeat, the guest operating system may have stopped responding",
    "yellow": "intermittent, though VMware Tools runs",
    "green": "VMware Tools runs, the guest responds normally",
}


def guest_figures_note(guest_memory_usage: int | None, heartbeat: str | None) -> str | None:
    """Why a running VM's guest use is unknown (its ``stats_note``), or ``None`` when it is
    known (or not read: ``None``): quickStats.guestMemoryUsage ("active guest memory") 0 is no figure. What 0
    means is not documented; the guest heartbeat says whether VMware Tools runs (gray: "VMware
    Tools are not installed or not running"), so it says why. Without a heartbeat (not read, or
    not one of vSphere's four) the reason is the usual one, :data:`NO_TOOLS_NOTE`.

    >>> guest_figures_note(4096, "gray") is None
    True
    >>> print(guest_figures_note(0, "green"))  # doctest: +NORMALIZE_WHITESPACE
    guestMemoryUsage is 0 and the guest heartbeat is green (VMware Tools runs, the guest responds
    normally): ESXi has no active-memory figure for it yet, so its use is unknown
    """
    if guest_memory_usage != 0:
        return None
    meaning = HEARTBEAT_MEANINGS.get(heartbeat or "")
    if meaning is None:
        return NO_TOOLS_NOTE
    said = f"guestMemoryUsage is 0 and the guest heartbeat is {heartbeat} ({meaning})"
    if heartbeat in ("green", "yellow"):
        return f"{said}: ESXi has no active-memory figure for it yet, so its use is unknown"
    return f"{said}, so its use is unknown"


def guest_notes(guest_memory_usage: int | None, heartbeat: object) -> dict[str, str]:
    """The ``MemoryStats.extra`` keys of a running VM's guest figures: ``guest_heartbeat`` (the
    heartbeat as its name, when read) and ``stats_note`` (:func:`guest_figures_note`, when its
    use is unknown); the esxi backend's and the fake's esxi flavour's alike.

    >>> guest_notes(4096, "green"), sorted(guest_notes(0, None))
    ({'guest_heartbeat': 'green'}, ['stats_note'])
    """
    name = None if heartbeat is None else str(heartbeat)
    note = guest_figures_note(guest_memory_usage, name)
    return {
        **({"guest_heartbeat": name} if name is not None else {}),
        **({"stats_note": note} if note is not None else {}),
    }


#: ``MemoryConfig.extra`` keys of memory hot-add: whether it is on (config.memoryHotAddEnabled),
#: the most a running VM's memory may grow to (config.hotPlugMemoryLimit) and the step it grows
#: by (config.hotPlugMemoryIncrementSize), in bytes; the two sizes are absent when not known.
HOT_ADD = "memory_hot_add"
HOT_ADD_LIMIT = "hot_add_limit_bytes"
HOT_ADD_INCREMENT = "hot_add_increment_bytes"

#: Memory shares per MB of the VM's memory, per level (vSphere API SharesInfo.level).
SHARES_PER_MB: dict[str, int] = {"low": 5, "normal": 10, "high": 20}
#: Every level; with ``custom`` the count is the one given.
SHARES_LEVELS: tuple[str, ...] = get_args(SharesLevel)
#: memoryMB is a multiple of this.
MEMORY_SIZE_STEP = 4 * MiB


def admits(asked_bytes: int, unreserved_bytes: int) -> bool:
    """ESXi's admission control, the one rule of it: memory is reserved — a VM powered on, a
    powered-on VM's reservation raised (``ReconfigVM_Task`` fails with
    ``InsufficientResourcesFault``, "an operation conflicts with a resource configuration
    policy") — only out of what is unreserved (``unreserved_bytes``: the memory the host has for
    VMs less the reservations and the overheads of the VMs powered on: "for each virtual machine
    there is also an amount of overhead memory. This extra memory commitment is included in the
    admission control calculation", vSphere Resource Management, "Admission Control").
    ``asked_bytes`` is what the change reserves: at power-on the VM's reservation plus its
    overhead (:func:`powers_on`), for a powered-on VM what its reservation rises by (its
    overhead is held already)."""
    return asked_bytes <= unreserved_bytes


def powers_on(reservation_bytes: int, overhead_bytes: int, unreserved_bytes: int) -> bool:
    """Whether ESXi powers a VM on (:func:`admits`): "the system checks the amount of CPU and
    memory resources that have not yet been reserved" and powers the VM on if "enough unreserved
    CPU and memory are available, or if there is no reservation" (vSphere Resource Management,
    "Admission Control"); otherwise the power-on fails with ``InsufficientMemoryResourcesFault``,
    "Memory resource admission control failed"."""
    return reservation_bytes <= 0 or admits(reservation_bytes + overhead_bytes, unreserved_bytes)


def not_powered_on(vm_name: str, requested_bytes: int, unreserved_bytes: int) -> str:
    """What ESXi says of a VM it would not power on (:func:`powers_on`): the fault, with its
    ``requested`` and ``unreserved`` figures (bytes in the fault; MB here).

    >>> print(not_powered_on("db01", 8 * 2**30 + 96 * 2**20, 6 * 2**30))  # doctest: +NORMALIZE_WHITESPACE
    'db01' could not be powered on: memory resource admission control failed
    (InsufficientMemoryResourcesFault): it requests 8288 MB (its reservation plus overhead) and
    6144 MB is unreserved
    """
    need, free = requested_bytes // MiB, max(0, unreserved_bytes) // MiB
    return (
        f"{vm_name!r} could not be powered on: memory resource admission control failed "
        f"(InsufficientMemoryResourcesFault): it requests {need} MB (its reservation plus overhead) and "
        f"{free} MB is unreserved"
    )


_READABLE = frozenset({
    "configured_bytes", "current_bytes", "target_bytes", "ballooned_bytes", "guest_used_bytes",
    "demand_bytes", "host_consumed_bytes", "swapped_bytes", "compressed_bytes", "shared_bytes",
})  # fmt: skip
_LIVE = frozenset(
    {"target", "limit_bytes", "reservation_bytes", "shares", "shares_level", "memory_reservation_lock"}
)


class ESXiKind(Kind):
    """The rules of a vSphere VM's memory (see the module docstring for the sources)."""

    name: ClassVar[str] = "esxi"
    title: ClassVar[str] = "ESXi"
    alignment_bytes: ClassVar[int] = MiB
    #: marks live in the VM's extraConfig (its .vmx): "If the key is already present, it will be
    #: reset with the new value provided. Otherwise, a new option is added. Keys with empty
    #: values will be removed." (vSphere API, VirtualMachineConfigSpec.extraConfig)
    marks: ClassVar[bool] = True
    variants: ClassVar[tuple[Variant, ...]] = (
        Variant(
            name="limit",
            title="ESXi / vCenter",
            mechanism=Mechanism.LIMIT,
            readable=_READABLE,
            set_live=_LIVE,
            set_offline=_LIVE | {"maximum_bytes", "balloon_cap_bytes"},
            target_observable=False,
            notes=(
                "a target is memoryAllocation.limit (MB); ESXi decides how far to inflate the balloon",
                "release a target with set_config(limit='unlimited')",
                "shares_level low / normal / high is 5 / 10 / 20 shares per MB of memory; shares=N "
                "is a custom count",
                "maximum (memoryMB) also grows on a running VM with memory hot-add on, within its "
                "hot-add limit and increment (config.extra memory_hot_add, hot_add_limit_bytes, "
                "hot_add_increment_bytes)",
            ),
            target_field="limit_bytes",
        ),
    )
    kind_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("memory_size_4MiB", InvalidRequestError, "the memory size (memoryMB) is a multiple of 4 MiB"),
        Rule("whole_MiB", InvalidRequestError, "reservation, limit and balloon cap are whole MiB"),
        Rule(
            "memory_size_only_when_off",
            InvalidStateError,
            "the memory size (memoryMB) changes only with the VM powered off, or grows on a running VM "
            "with memory hot-add on",
        ),
        Rule(
            "memory_hot_add_grow_only",
            InvalidStateError,
            "a running VM's memory size only grows (hot-add); it shrinks only with the VM powered off",
        ),
        Rule(
            "memory_hot_add_limit",
            InvalidStateError,
            "a running VM's memory size grows at most to its hot-add limit (hotPlugMemoryLimit)",
        ),
        Rule(
            "memory_hot_add_increment",
            InvalidRequestError,
            "memory is hot-added in the VM's increments (hotPlugMemoryIncrementSize): at least one, "
            "to a multiple of it",
        ),
        Rule(
            "balloon_cap_only_when_off",
            InvalidStateError,
            "the balloon cap (sched.mem.maxmemctl) changes only with the VM powered off",
        ),
        Rule("reservation_le_limit", InvalidRequestError, "the reservation is at most the limit"),
        Rule("reservation_le_memory", InvalidRequestError, "the reservation is at most the VM's memory"),
        Rule(
            "target_ge_reservation", InvalidRequestError, "a target (the limit) is at least the reservation"
        ),
        Rule(
            "shares_need_custom_level",
            InvalidRequestError,
            "a share count goes with the custom level; low / normal / high compute their own",
        ),
        Rule(
            "reservation_locked_to_max",
            InvalidRequestError,
            "with memory_reservation_lock on, the reservation is the VM's memory size",
        ),
    )
    offline_rules: ClassVar[dict[str, str]] = {
        "maximum_bytes": "memory_size_only_when_off",
        "balloon_cap_bytes": "balloon_cap_only_when_off",
    }

    @staticmethod
    def shares_for(level: str, memory_bytes: int) -> int:
        """The share count of ``level`` (low, normal, high) for a VM of ``memory_bytes``."""
        return SHARES_PER_MB[level] * (memory_bytes // MiB)

    @staticmethod
    def level_of(shares: int | None, memory_bytes: int | None, level: str | None) -> str | None:
        """The level to report: the one stored, else the level whose count ``shares`` equals."""
        if level is not None:
            return level
        if shares is None or memory_bytes is None:
            return None
        for name, per_mb in SHARES_PER_MB.items():
            if shares == per_mb * (memory_bytes // MiB):
                return name
        return "custom"

    @staticmethod
    def target_of(limit_bytes: int | None, memory_bytes: int | None) -> int | None:
        """A VM's target as ``MemoryStats.target_bytes`` gives it: its limit, but never above its
        memory size, which is all a limit left above it (set before the memory was made
        smaller, or set so) can let the VM have; the memory size when unlimited.

        >>> ESXiKind.target_of(64 * 2**30, 16 * 2**30) == ESXiKind.target_of(None, 16 * 2**30)
        True
        """
        if limit_bytes is None or memory_bytes is None:
            return memory_bytes if limit_bytes is None else limit_bytes
        return min(limit_bytes, memory_bytes)

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        reservation = config.reservation_bytes or 0
        if target_bytes < reservation:
            shown_target, shown_res = format_sizes(target_bytes, reservation)
            self.refuse(
                "target_ge_reservation",
                f"a target (limit) of {shown_target} would be below the reservation "
                f"{shown_res} of {vm.name!r}; lower the reservation first",
                vm=vm,
                target_bytes=target_bytes,
                reservation_bytes=reservation,
            )

    def live_fields(self, vm: VM, current: MemoryConfig) -> frozenset[str]:
        """A running VM with memory hot-add on may grow its memory size (checked by
        :meth:`_check_hot_add`)."""
        if vm.power_state is PowerState.RUNNING and current.extra.get(HOT_ADD):
            return frozenset({"maximum_bytes"})
        return frozenset()

    def _check_request(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> None:
        size = update.maximum_bytes
        running = vm.power_state is PowerState.RUNNING
        if size is not None and size != current.maximum_bytes and running and not current.extra.get(HOT_ADD):
            self.refuse(
                "memory_size_only_when_off",
                f"cannot change the memory size of {vm.name!r} while it is running: memory hot-add is off "
                "on it (config.memoryHotAddEnabled); power it off first (hot-add itself is turned on "
                "only with the VM powered off)",
                vm=vm,
                field="maximum_bytes",
                power_state=vm.power_state.value,
                memory_hot_add=False,
            )
        level = update.shares_level
        if update.shares is not None and level not in (None, "custom"):
            self.refuse(
                "shares_need_custom_level",
                f"shares={update.shares} is a custom count, but shares_level={level!r} computes its "
                f"own ({', '.join(f'{k} {v}' for k, v in SHARES_PER_MB.items())} per MB): give one of them",
                vm=vm,
                shares=update.shares,
                shares_level=level,
            )
        asked = update.applied_to(current)
        self._check_lock(vm, asked.memory_reservation_lock, update.reservation_bytes, asked.maximum_bytes)

    def check_config(self, vm: VM, config: MemoryConfig) -> None:
        self._check_lock(vm, config.memory_reservation_lock, config.reservation_bytes, config.maximum_bytes)
        self._check_sizes(vm, config)
        self._check_allocation(vm, config)
        limit = config.extra.get(HOT_ADD_LIMIT)
        memory = config.maximum_bytes
        if config.extra.get(HOT_ADD) and limit is not None and memory is not None and memory > limit:
            self._refuse_hot_add_limit(vm, memory, limit)

    def _check_hot_add(self, vm: VM, asked: int, current: MemoryConfig) -> None:
        """A running VM's memory size (hot-add on): it only grows, within the hot-add limit, by
        whole increments (module docstring)."""
        now = current.maximum_bytes
        if now is not None and asked < now:
            shown_asked, shown_now = format_sizes(asked, now)
            self.refuse(
                "memory_hot_add_grow_only",
                f"the memory of {vm.name!r} can only grow while it is running (hot-add; ESXi never "
                f"removes memory live): {shown_asked} is below its {shown_now}; power it off to shrink it",
                vm=vm,
                asked=asked,
                memory_bytes=now,
            )
        limit = current.extra.get(HOT_ADD_LIMIT)
        if limit is not None and asked > limit:
            self._refuse_hot_add_limit(vm, asked, limit)
        step = current.extra.get(HOT_ADD_INCREMENT)
        if step and (asked % step or (now is not None and asked - now < step)):
            least = align((now or 0) + step, step, "up")
            up = max(align(asked, step, "up"), least)
            down = align(asked, step, "down")
            nearest = [n for n in (down, up) if n >= least and (limit is None or n <= limit)]
            shown = format_sizes(step, *nearest)
            self.refuse(
                "memory_hot_add_increment",
                f"memory is hot-added to {vm.name!r} in steps of {shown[0]} (hotPlugMemoryIncrementSize): "
                f"at least one step, to a multiple of it (asked {asked} bytes"
                + (
                    f"; nearest: {' or '.join(shown[1:])})"
                    if nearest
                    else "; no size fits below its hot-add limit)"
                ),
                vm=vm,
                asked=asked,
                increment_bytes=step,
                nearest=nearest,
            )

    def _refuse_hot_add_limit(self, vm: VM, asked: int, limit: int) -> NoReturn:
        shown_asked, shown_limit = format_sizes(asked, limit)
        self.refuse(
            "memory_hot_add_limit",
            f"the memory of {vm.name!r} can grow to at most {shown_limit} while it is running (its hot-add "
            f"limit, hotPlugMemoryLimit), so {shown_asked} is refused; power it off to go beyond",
            vm=vm,
            asked=asked,
            limit_bytes=limit,
        )

    def _check_lock(self, vm: VM, locked: bool | None, reservation: int | None, memory: int | None) -> None:
        if locked and reservation is not None and memory is not None and reservation != memory:
            shown_memory, shown_res = format_sizes(memory, reservation)
            self.refuse(
                "reservation_locked_to_max",
                f"the reservation of {vm.name!r} is locked to its memory size {shown_memory} "
                f"(memory_reservation_lock), so {shown_res} is refused; turn the lock off "
                "to set another reservation",
                vm=vm,
                reservation_bytes=reservation,
                memory_bytes=memory,
            )

    def _derive(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> ConfigUpdate:
        derived: dict[str, object] = {}
        asked = update.applied_to(current)
        memory = asked.maximum_bytes
        asked_level = update.shares_level
        if update.shares is not None and asked_level is None:
            asked_level = derived["shares_level"] = "custom"  # a count of its own is a custom level
        level = asked_level if asked_level is not None else current.shares_level
        resized = asked_level is not None or update.maximum_bytes is not None
        if level is not None and level in SHARES_PER_MB and memory is not None and resized:
            derived["shares"] = self.shares_for(level, memory)
        elif level == "custom" and update.shares is None and current.shares is not None:
            derived["shares"] = current.shares
        if asked.memory_reservation_lock and memory is not None:
            derived["reservation_bytes"] = memory  # ESXi keeps a locked reservation at the memory size
        return update.model_copy(update=derived)

    def _check_changes(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        self._check_sizes(vm, plan)
        if plan.maximum_bytes is not None and "maximum_bytes" in self.live_fields(vm, current):
            self._check_hot_add(vm, plan.maximum_bytes, current)
        self._check_allocation(vm, plan.applied_to(current))

    def _check_sizes(self, vm: VM, sizes: ConfigUpdate | MemoryConfig) -> None:
        """The memory size is a multiple of 4 MiB, the allocation whole MiB."""
        maximum = sizes.maximum_bytes
        if maximum is not None and maximum % MEMORY_SIZE_STEP:
            self.refuse(
                "memory_size_4MiB",
                f"the memory size (memoryMB) of {vm.name!r} must be a multiple of 4 MiB on ESXi "
                f"(asked {maximum} bytes)",
                vm=vm,
                field="maximum_bytes",
                asked=maximum,
            )
        allocation = {k: getattr(sizes, k) for k in ("reservation_bytes", "limit_bytes", "balloon_cap_bytes")}
        # a limit is never 0 (the nearest size offered is one that is allowed)
        self.check_aligned(vm, allocation, rule="whole_MiB", least={"limit_bytes": MiB})

    def _check_allocation(self, vm: VM, after: MemoryConfig) -> None:
        """The reservation is within the limit and the memory size."""
        res = after.reservation_bytes or 0
        lim = after.limit_bytes
        if lim is not None and res > lim:
            shown_res, shown_lim = format_sizes(res, lim)
            locked = " (locked to its memory size)" if after.memory_reservation_lock else ""
            self.refuse(
                "reservation_le_limit",
                f"the reservation {shown_res} of {vm.name!r}{locked} would be above the limit {shown_lim}",
                vm=vm,
                reservation_bytes=res,
                limit_bytes=lim,
            )
        memory = after.maximum_bytes
        if memory is not None and res > memory:
            shown_res, shown_memory = format_sizes(res, memory)
            self.refuse(
                "reservation_le_memory",
                f"the reservation {shown_res} of {vm.name!r} cannot exceed its memory {shown_memory}",
                vm=vm,
                reservation_bytes=res,
                memory_bytes=memory,
            )


#: The ESXi kind.
ESXI = ESXiKind()
