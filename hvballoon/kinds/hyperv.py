"""Microsoft Hyper-V: Dynamic Memory (a range the host moves memory within) or static memory.

What a target means (the apply mapping):

- **Dynamic Memory** (mechanism ``dynamic_memory``): a target is the VM's **maximum**. Raising
  it is allowed up to the host's physical memory (``Get-VMHost``'s ``MemoryCapacity``; the
  fake's simulated host); while the VM is not off it may only rise (lowering is refused with
  ``maximum_only_up_while_running``, saying what is allowed instead); with the VM off it may be
  lowered, never below the startup size (``range_order``).
- **Static memory** (mechanism ``runtime_resize``): a target is the **startup** size, resized
  while the VM runs (Windows Server 2016+), up to the host's physical memory.

The facts behind the rules (shared/REFERENCE.md §6): sizes are multiples of 2 MB and at least
32 MB; ``Set-VMMemory -Buffer`` takes 5–2000 and ``-Priority`` 0–100; "Setting maximum, minimum,
and buffer settings requires Dynamic Memory to be enabled" (also when it is being turned off in
the same call); while a VM runs Dynamic Memory cannot be switched, the minimum can only be
reduced and the maximum only increased; minimum ≤ startup ≤ maximum. ``Get-VM``'s ``State``
(enum VMState) is classified by :meth:`HyperVKind.classify_state`.

>>> from hvballoon.kinds import HYPERV
>>> HYPERV.classify_state("RunningCritical")
StateInfo(power_state=<PowerState.RUNNING: 'running'>, name='RunningCritical', health='critical')
>>> HYPERV.classify_state(2).name, HYPERV.classify_state(32786).power_state.value
('Running', 'unknown')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from hvballoon.errors import InvalidRequestError, InvalidStateError
from hvballoon.kinds._base import Kind, Rule, Variant, is_off, uuid_form
from hvballoon.models import VM, ConfigUpdate, Mechanism, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import MiB, align, format_sizes

__all__ = [
    "BUFFER_PERCENT_RANGE",
    "HYPERV",
    "MINIMUM_SIZE_BYTES",
    "NO_DEMAND_NOTE",
    "PRIORITY_RANGE",
    "HyperVKind",
    "StateInfo",
    "buffered_demand",
    "not_started",
    "starts",
]

#: Set-VMMemory -Buffer: "Allowed values range from 5 to 2000".
BUFFER_PERCENT_RANGE = (5, 2000)
#: Set-VMMemory -Priority: "Allowed values range from 0 to 100".
PRIORITY_RANGE = (0, 100)
#: The lower bound of every Hyper-V memory size.
MINIMUM_SIZE_BYTES = 32 * MiB
#: ``MemoryStats.extra["stats_note"]`` of a running VM whose Get-VM shows MemoryDemand 0: its
#: guest tells the host nothing, and "Hyper-V cannot adjust the memory dynamically to respond to
#: changes in memory demand" (Microsoft's Best Practices Analyzer, "Dynamic Memory is enabled but
#: not responding on some virtual machines": expected while the VM boots).
NO_DEMAND_NOTE = (
    "MemoryDemand is 0: the guest's integration services do not report (not installed, turned off, "
    "or it is still booting), so its use is unknown and Dynamic Memory cannot balance it"
)


def starts(startup_bytes: int, host_bytes: int) -> bool:
    """Hyper-V starts a VM only with its startup memory free on the host, out of what the host
    has for VMs (``host_bytes``; it keeps a reserve for its own OS): else the start fails
    ("'<VM>' could not be started because it requires N MB of memory and the system has only
    M MB free", event 19544 in Hyper-V-VMMS/Admin; KB2962295 on the host's reserve). Dynamic
    Memory does not change it: a VM starts with its startup memory."""
    return startup_bytes <= host_bytes


def not_started(vm_name: str, startup_bytes: int, free_bytes: int) -> str:
    """What Hyper-V says of a VM it would not start (:func:`starts`), in its own words (event
    19544), the sizes in MB.

    >>> print(not_started("db01", 8 * 2**30, 6 * 2**30 + 5 * 2**20))  # doctest: +NORMALIZE_WHITESPACE
    'db01' could not be started because it requires 8192 MB of memory and the system has only
    6149 MB free (event 19544)
    """
    need, free = startup_bytes // MiB, max(0, free_bytes) // MiB
    return (
        f"{vm_name!r} could not be started because it requires {need} MB of memory and the system has only "
        f"{free} MB free (event 19544)"
    )


def buffered_demand(demand: Any, buffer_percent: Any, minimum: Any, maximum: Any) -> Any:
    """What Dynamic Memory aims to assign a VM: its demand plus its buffer, a percent of the
    demand ("if the memory committed to the guest operating system is 1000 MB and the memory
    buffer is 20%, Hyper-V will attempt to allocate an additional 20%"), in whole bytes, within
    its minimum and maximum. Plain numbers or arrays alike (the simulator sizes every VM at once;
    a plain number gives an ``int``).

    >>> buffered_demand(1000, 20, 512, 4096), buffered_demand(3000, 50, 512, 4096)
    (1200, 4096)
    """
    import numpy as np

    assigned = np.clip(np.floor(demand * (1 + buffer_percent / 100.0)), minimum, maximum)
    return int(assigned) if np.ndim(assigned) == 0 else assigned


_SIZES = ("startup_bytes", "minimum_bytes", "maximum_bytes")
#: Fields Set-VMMemory refuses unless Dynamic Memory is (and stays) on.
_DYNAMIC_ONLY = ("minimum_bytes", "maximum_bytes", "buffer_percent")
_READABLE = frozenset(
    {"configured_bytes", "current_bytes", "target_bytes", "demand_bytes", "guest_available_bytes"}
)

# -- Get-VM's State ----------------------------------------------------------------------------

#: What each VMState means for memory: the guest executes (or is about to, or still does while
#: it stops, saves or pauses) → RUNNING, so every guard rail applies; Off → STOPPED; Paused →
#: PAUSED; Saved / FastSaved / Hibernated → SUSPENDED; Other and ComponentServicing → UNKNOWN.
_MEANING: dict[str, PowerState] = {
    "Other": PowerState.UNKNOWN,
    "Running": PowerState.RUNNING,
    "Off": PowerState.STOPPED,
    "Stopping": PowerState.RUNNING,
    "Saved": PowerState.SUSPENDED,
    "Paused": PowerState.PAUSED,
    "Starting": PowerState.RUNNING,
    "Reset": PowerState.RUNNING,
    "Saving": PowerState.RUNNING,
    "Pausing": PowerState.RUNNING,
    "Resuming": PowerState.RUNNING,
    "FastSaved": PowerState.SUSPENDED,
    "FastSaving": PowerState.RUNNING,
    "ForceShutdown": PowerState.RUNNING,
    "ForceReboot": PowerState.RUNNING,
    "Hibernated": PowerState.SUSPENDED,
    "ComponentServicing": PowerState.UNKNOWN,
}
_CRITICAL = ("Running", "Off", "Stopping", "Saved", "Paused", "Starting", "Reset", "Saving", "Pausing",
             "Resuming", "FastSaved", "FastSaving")  # fmt: skip
#: The names of VMState up to ForceReboot, by number: the same on every Windows version.
_STABLE_NUMBERS: dict[int, str] = {
    1: "Other", 2: "Running", 3: "Off", 4: "Stopping", 6: "Saved", 9: "Paused", 10: "Starting",
    11: "Reset", 32773: "Saving", 32776: "Pausing", 32777: "Resuming", 32779: "FastSaved",
    32780: "FastSaving", 32781: "ForceShutdown", 32782: "ForceReboot",
}  # fmt: skip
#: Above ForceReboot the numbers differ between Windows versions: Windows Server 2019 and later
#: add Hibernated (32783) and ComponentServicing (32784) before the *Critical states, Windows
#: Server 2016 has neither, so its RunningCritical is 32783 (decompiled VMState of the current
#: Hyper-V module; Haipa/eryph's VirtualMachineState notes the shift).
_NEW_CRITICAL_BASE, _OLD_CRITICAL_BASE = 32785, 32783


def _numbered(base: int, *, with_extras: bool) -> dict[int, str]:
    table = dict(_STABLE_NUMBERS)
    if with_extras:
        table[32783], table[32784] = "Hibernated", "ComponentServicing"
    table.update({base + i: f"{name}Critical" for i, name in enumerate(_CRITICAL)})
    return table


_NUMBERS_NEW = _numbered(_NEW_CRITICAL_BASE, with_extras=True)
_NUMBERS_OLD = _numbered(_OLD_CRITICAL_BASE, with_extras=False)


@dataclass(frozen=True)
class StateInfo:
    """A Get-VM ``State`` classified: the power state, Hyper-V's name, and the VM's health."""

    power_state: PowerState
    #: Hyper-V's name of the state, or the value as given when it is not one.
    name: str
    #: "ok", "critical" (a *Critical state: the VM's health is not OK), or None (unknown).
    health: str | None


def _from_name(name: str) -> StateInfo:
    base = name.removesuffix("Critical") if name.endswith("Critical") else name
    if base not in _MEANING or (base != name and base not in _CRITICAL):
        return StateInfo(PowerState.UNKNOWN, name, None)
    power = _MEANING[base]
    if power is PowerState.UNKNOWN:  # Other, ComponentServicing: no *Critical form tells the health
        return StateInfo(power, name, None)
    return StateInfo(power, name, "critical" if base != name else "ok")


# -- the kind ----------------------------------------------------------------------------------


class HyperVKind(Kind):
    """The rules of a Hyper-V VM's memory (see the module docstring for the sources)."""

    name: ClassVar[str] = "hyperv"
    title: ClassVar[str] = "Hyper-V"
    alignment_bytes: ClassVar[int] = 2 * MiB
    ceiling_name: ClassVar[str] = "the host's maximum"
    ceiling_note: ClassVar[str] = (
        "no Hyper-V VM setting caps a target (it is the VM's maximum or its startup size): the host's "
        "physical memory does, unless a target already set is higher"
    )
    variants: ClassVar[tuple[Variant, ...]] = (
        Variant(
            name="dynamic",
            title="Hyper-V, Dynamic Memory VM",
            mechanism=Mechanism.DYNAMIC_MEMORY,
            readable=_READABLE,
            set_live=frozenset({"target", "minimum_bytes", "maximum_bytes", "buffer_percent", "priority"}),
            set_offline=frozenset(
                {
                    "target",
                    "minimum_bytes",
                    "maximum_bytes",
                    "buffer_percent",
                    "priority",
                    "startup_bytes",
                    "dynamic",
                }
            ),
            target_observable=False,
            notes=(
                "Dynamic Memory: a target is the maximum, raised up to the host's physical memory; "
                "unless the VM is off the maximum may only rise and the minimum only fall, and "
                "Dynamic Memory is switched on or off only with the VM off",
            ),
            target_field="maximum_bytes",
        ),
        Variant(
            name="static",
            title="Hyper-V, static VM",
            mechanism=Mechanism.RUNTIME_RESIZE,
            readable=_READABLE,
            set_live=frozenset({"target", "startup_bytes", "priority"}),
            set_offline=frozenset({"target", "startup_bytes", "priority", "dynamic"}),
            target_observable=True,
            notes=(
                "static memory: a target is a runtime resize of the startup memory (Windows Server "
                "2016+), up to the host's physical memory",
                "minimum, maximum and buffer exist only with Dynamic Memory: set them together with "
                "dynamic=True, VM off",
            ),
            target_field="startup_bytes",
        ),
    )
    kind_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("aligned_2MiB", InvalidRequestError, "every size and target is a multiple of 2 MiB"),
        Rule("at_least_32MiB", InvalidRequestError, "every size and target is at least 32 MiB"),
        Rule("buffer_percent_range", InvalidRequestError, "the buffer is 5 to 2000 percent"),
        Rule("priority_range", InvalidRequestError, "the priority (memory weight) is 0 to 100"),
        Rule(
            "dynamic_memory_required",
            InvalidRequestError,
            "minimum, maximum and buffer need Dynamic Memory on (and not being turned off)",
        ),
        Rule("range_order", InvalidRequestError, "minimum <= startup <= maximum (Dynamic Memory)"),
        Rule(
            "dynamic_toggle_only_when_off",
            InvalidStateError,
            "Dynamic Memory is switched on or off only with the VM off",
        ),
        Rule(
            "startup_only_when_off",
            InvalidStateError,
            "the startup size of a Dynamic Memory VM changes only with the VM off",
        ),
        Rule(
            "minimum_only_down_while_running",
            InvalidStateError,
            "unless the VM is off its minimum may only be lowered",
        ),
        Rule(
            "maximum_only_up_while_running",
            InvalidStateError,
            "unless the VM is off its maximum (a Dynamic Memory target) may only be raised",
        ),
    )
    offline_rules: ClassVar[dict[str, str]] = {
        "dynamic": "dynamic_toggle_only_when_off",
        "startup_bytes": "startup_only_when_off",
    }

    # -- states and variants ----------------------------------------------------------------

    @staticmethod
    def classify_state(value: str | int | None) -> StateInfo:
        """Get-VM's ``State`` → :class:`StateInfo`, from its name or its number.

        Windows PowerShell 5.1's ConvertTo-Json writes an enum as its number unless converted
        first. A number means what it means on every Windows version, or the state is unknown
        (``UNKNOWN``: the session then refuses to lower the VM's target unless forced).
        """
        if isinstance(value, bool) or value is None:
            return StateInfo(PowerState.UNKNOWN, "" if value is None else str(value), None)
        number: int | None = value if isinstance(value, int) else None
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None:
            return _from_name(str(value))
        new, old = _NUMBERS_NEW.get(number), _NUMBERS_OLD.get(number)
        if new is None or old is None:
            known = new or old
            return _from_name(known) if known else StateInfo(PowerState.UNKNOWN, str(number), None)
        a, b = _from_name(new), _from_name(old)
        if new == old:
            return a
        if a.power_state is not b.power_state:
            return StateInfo(PowerState.UNKNOWN, str(number), None)
        # the same power state under both numberings; the name (and maybe the health) is not known
        return StateInfo(a.power_state, str(number), a.health if a.health == b.health else None)

    @staticmethod
    def state_name(power_state: PowerState) -> str:
        """The Get-VM ``State`` name of a healthy VM in ``power_state`` (for simulators)."""
        names = {
            PowerState.RUNNING: "Running",
            PowerState.STOPPED: "Off",
            PowerState.PAUSED: "Paused",
            PowerState.SUSPENDED: "Saved",
        }
        return names.get(power_state, "Other")

    def variant_for(self, *, dynamic: bool | None) -> Variant:
        """Dynamic Memory on (or not known: the backend-wide default) or static memory."""
        return self.variant("static" if dynamic is False else "dynamic")

    @staticmethod
    def canonical_id(ref: str) -> str:
        """A VM id is a GUID, which Get-VM's ``Id`` writes in lower case without braces; one
        written in upper case or braced (as WMI and the VM's files show it) is the same VM.

        >>> HYPERV.canonical_id("{AAAAAAAA-1111-2222-3333-444444444444}")
        'aaaaaaaa-1111-2222-3333-444444444444'
        >>> HYPERV.canonical_id("web01")
        'web01'
        """
        return uuid_form(ref, braces=True) or ref

    # -- targets ----------------------------------------------------------------------------

    def target_ceiling(
        self,
        vm: VM,
        stats: MemoryStats,
        config: MemoryConfig,
        *,
        host_memory_bytes: int | None = None,
    ) -> int | None:
        """The host's physical memory (2 MiB aligned, down): a target *is* the maximum or the
        startup size, so no VM setting caps it. A target already set above it (Hyper-V's default
        Dynamic Memory maximum is 1 TiB) stays acceptable, so re-applying it is a no-op.
        ``None`` when the host's memory is not known."""
        if host_memory_bytes is None:
            return None
        ceiling = align(host_memory_bytes, self.alignment_bytes, "down")
        current = stats.target_bytes
        return max(ceiling, current) if current is not None else ceiling

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        field = self.target_field(config) or "startup_bytes"
        self.check_sizes(vm, {field: target_bytes}, what="target")
        if field != "maximum_bytes":
            return
        maximum, startup = config.maximum_bytes, config.startup_bytes
        if not is_off(vm) and maximum is not None and target_bytes < maximum:
            shown_max, shown_target = format_sizes(maximum, target_bytes)
            self.refuse(
                "maximum_only_up_while_running",
                f"{vm.name!r} uses Dynamic Memory and is {_state(vm)}: its target is the maximum "
                f"({shown_max}), which can only be raised unless the VM is off, so "
                f"{shown_target} is refused. Allowed now: a target of at least "
                f"{shown_max}; or lower the buffer or priority; or power the VM off to "
                "lower the maximum",
                vm=vm,
                maximum_bytes=maximum,
                target_bytes=target_bytes,
                allowed_min_bytes=maximum,
            )
        if startup is not None and target_bytes < startup:
            shown_startup, shown_target = format_sizes(startup, target_bytes)
            self.refuse(
                "range_order",
                f"the target of {vm.name!r} is its Dynamic Memory maximum, which cannot be below the "
                f"startup size {shown_startup} (asked {shown_target}); lower the "
                "startup size first (VM off)",
                vm=vm,
                startup_bytes=startup,
                target_bytes=target_bytes,
            )

    # -- configuration ----------------------------------------------------------------------

    def check_sizes(self, vm: VM | None, sizes: dict[str, int | None], *, what: str | None = None) -> None:
        """Every Hyper-V size: a multiple of 2 MiB and at least 32 MiB (also the backend's last
        check before it sends anything, whoever called it)."""
        least = dict.fromkeys(sizes, MINIMUM_SIZE_BYTES)  # "nearest: 0 B" would be refused too
        self.check_aligned(vm, sizes, rule="aligned_2MiB", least=least)
        for name, value in sizes.items():
            if value is not None and value < MINIMUM_SIZE_BYTES:
                label = what or name.removesuffix("_bytes")
                shown_min, shown_value = format_sizes(MINIMUM_SIZE_BYTES, value)
                self.refuse(
                    "at_least_32MiB",
                    f"the {label} of {_vm_name(vm)} must be at least {shown_min} on "
                    f"Hyper-V (asked {shown_value})",
                    vm=vm,
                    field=name,
                    asked=value,
                )

    def check_config(self, vm: VM, config: MemoryConfig) -> None:
        self._check_knobs(vm, config)
        if config.dynamic is False:  # its range is leftovers: only the startup size counts
            self.check_sizes(vm, {"startup_bytes": config.startup_bytes})
            return
        self.check_sizes(vm, {k: getattr(config, k) for k in _SIZES})
        self._check_range(vm, config, touched=None)

    def _check_knobs(self, vm: VM, values: ConfigUpdate | MemoryConfig) -> None:
        """The buffer and the priority are within Set-VMMemory's ranges."""
        for name, (lo, hi) in (("buffer_percent", BUFFER_PERCENT_RANGE), ("priority", PRIORITY_RANGE)):
            value = getattr(values, name)
            if value is not None and not lo <= value <= hi:
                self.refuse(
                    f"{name}_range",
                    f"{name} of {vm.name!r} must be within {lo}..{hi} on Hyper-V (asked {value})",
                    vm=vm,
                    asked=value,
                )

    def _check_request(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> None:
        self._check_knobs(vm, update)
        dynamic_after = update.applied_to(current).dynamic
        asked = [n for n in _DYNAMIC_ONLY if n in update.changed()]
        if asked and dynamic_after is False:
            turning_off = update.dynamic is False and current.dynamic
            self.refuse(
                "dynamic_memory_required",
                f"{', '.join(a.removesuffix('_bytes') for a in asked)} of {vm.name!r} exist only with "
                f"Dynamic Memory, which is {'being turned off' if turning_off else 'off'}: Hyper-V refuses "
                'them ("Setting maximum, minimum, and buffer settings requires Dynamic Memory to be '
                'enabled"). Allowed: the startup size and the priority, or dynamic=True with the VM off',
                vm=vm,
                fields=asked,
            )
        self.check_sizes(vm, {k: getattr(update, k) for k in _SIZES})

    def _check_range(self, vm: VM, config: MemoryConfig, *, touched: set[str] | None) -> None:
        """minimum <= startup <= maximum (Dynamic Memory); with ``touched``, only the pairs a
        change touches are held to it (``None``: every pair)."""
        lo, mid, hi = config.minimum_bytes, config.startup_bytes, config.maximum_bytes
        for a_name, a, b_name, b in (
            ("minimum", lo, "startup", mid),
            ("startup", mid, "maximum", hi),
            ("minimum", lo, "maximum", hi),
        ):
            pair = {f"{a_name}_bytes", f"{b_name}_bytes", "dynamic"}
            if touched is not None and not pair & touched:
                continue
            if a is not None and b is not None and a > b:
                shown_a, shown_b = format_sizes(a, b)
                self.refuse(
                    "range_order",
                    f"{a_name} {shown_a} would be above {b_name} {shown_b} for "
                    f"{vm.name!r}: the range must satisfy minimum <= startup <= maximum",
                    vm=vm,
                    minimum_bytes=lo,
                    startup_bytes=mid,
                    maximum_bytes=hi,
                )

    def _check_changes(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        merged = plan.applied_to(current)
        if merged.dynamic:
            self._check_range(vm, merged, touched=set(plan.changed()))
        if is_off(vm):
            return
        for name, direction, rule_id, rule, bound in (
            (
                "minimum_bytes",
                -1,
                "minimum_only_down_while_running",
                "the minimum can only be lowered",
                "at most",
            ),
            (
                "maximum_bytes",
                1,
                "maximum_only_up_while_running",
                "the maximum can only be raised",
                "at least",
            ),
        ):
            new, old = getattr(plan, name), getattr(current, name)
            if new is not None and old is not None and (new - old) * direction < 0:
                shown_old, shown_new = format_sizes(old, new)
                self.refuse(
                    rule_id,
                    f"{vm.name!r} is {_state(vm)}: {rule} unless it is off (now {shown_old}, asked "
                    f"{shown_new}). Allowed now: {bound} {shown_old}, or power the VM off",
                    vm=vm,
                    current=old,
                    asked=new,
                )


def _state(vm: VM) -> str:
    return str(vm.extra.get("state") or vm.power_state.value).lower()


def _vm_name(vm: VM | None) -> str:
    return repr(vm.name) if vm is not None else "the VM"


#: The Hyper-V kind.
HYPERV = HyperVKind()
