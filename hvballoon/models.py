"""The data hvballoon returns: frozen pydantic v2 models, the same for every backend.

Every quantity is an ``int`` of bytes (or seconds) with the unit in its name. A figure the
backend cannot know is ``None`` — never ``0``. Backend-specific leftovers live in ``extra``.

>>> from hvballoon.models import VM, PowerState
>>> vm = VM(id="42", name="web01", backend="fake", power_state=PowerState.RUNNING)
>>> vm.name, vm.power_state.value
('web01', 'running')

A plain ``model_dump()`` is already JSON data (times are ISO 8601 strings, sets sorted lists),
so ``json.dumps(model.model_dump())`` works and says what ``model.model_dump_json()`` says:

>>> import json
>>> json.dumps(vm.model_dump())
'{"id": "42", "name": "web01", "backend": "fake", "host": null, "power_state": "running", "extra": {}}'
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PlainSerializer,
    WithJsonSchema,
    computed_field,
    model_validator,
)

from hvballoon._configupdate import CONFIG_FIELDS, ConfigKind, ConfigOption, ConfigUpdate, OptionStyle
from hvballoon._modelbase import MAX_INT32, Frozen, SharesLevel

__all__ = [
    "CONFIG_FIELDS",
    "MAX_INT32",
    "VM",
    "Capabilities",
    "Change",
    "ConfigKind",
    "ConfigOption",
    "ConfigUpdate",
    "HostStats",
    "MemoryConfig",
    "MemoryStats",
    "Mechanism",
    "OptionStyle",
    "PowerState",
    "SharesLevel",
    "Timestamp",
    "json_schemas",
]


def _iso8601(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


#: A time, serialized as an ISO 8601 string in every dump mode (so a plain dump is JSON data).
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso8601, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

#: A set of names, serialized as a sorted list in every dump mode (stable, JSON data).
NameSet = Annotated[
    frozenset[str],
    PlainSerializer(sorted, return_type=list[str]),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
]


class PowerState(str, Enum):
    """A VM's power state, normalised across backends."""

    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"


class Mechanism(str, Enum):
    """What "set a target" means on a backend (and per VM)."""

    #: KVM: the virtio-balloon target (libvirt ``setMemoryFlags``).
    BALLOON = "balloon"
    #: ESXi: ``memoryAllocation.limit``; ESXi inflates the balloon when the VM consumes more.
    LIMIT = "limit"
    #: Hyper-V Dynamic Memory: the host moves memory within minimum..maximum.
    DYNAMIC_MEMORY = "dynamic_memory"
    #: Hyper-V static-memory VM: runtime resize of the assigned memory.
    RUNTIME_RESIZE = "runtime_resize"
    #: Nothing can be moved on this VM.
    NONE = "none"


class VM(Frozen):
    """A virtual machine as the backend knows it."""

    id: str = Field(description="Backend-unique id (libvirt UUID, vSphere instance UUID, Hyper-V VMId).")
    name: str
    backend: str = Field(description="The backend that reported it, e.g. 'kvm', 'esxi', 'fake'.")
    host: str | None = Field(default=None, description="The hypervisor host the VM runs on.")
    power_state: PowerState = PowerState.UNKNOWN
    extra: dict[str, Any] = Field(default_factory=dict)


class MemoryStats(Frozen):
    """One VM's memory picture at ``collected_at``.

    ``current_bytes`` is what the guest has now (after the balloon, or Hyper-V's assigned
    memory); ``target_bytes`` is where the hypervisor is steering it (balloon target, ESXi
    limit, Hyper-V's assignment). ``guest_*`` figures come from the guest's own driver and are
    ``None`` until it has reported; ``stale`` says they are missing or too old to act on.

    ``used_bytes`` and ``pressure_ratio`` are derived (and serialized, so ``--json`` and Ansible
    have them); in input they are ignored and recomputed.

    >>> from datetime import datetime, timezone
    >>> vm = VM(id="1", name="sql01", backend="hyperv")
    >>> st = MemoryStats(vm=vm, mechanism=Mechanism.DYNAMIC_MEMORY,
    ...                  collected_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                  current_bytes=8 * 2**30, demand_bytes=6 * 2**30)
    >>> st.used_bytes == 6 * 2**30, st.pressure_ratio, st.model_dump()["collected_at"]
    (True, 0.75, '2026-01-01T00:00:00Z')
    """

    vm: VM
    mechanism: Mechanism
    collected_at: Timestamp
    configured_bytes: int | None = Field(default=None, ge=0, description="Configured (maximum) memory.")
    current_bytes: int | None = Field(default=None, ge=0, description="Memory the guest has now.")
    target_bytes: int | None = Field(default=None, ge=0, description="Target being steered to.")
    ballooned_bytes: int | None = Field(default=None, ge=0, description="Held by the balloon driver.")
    guest_total_bytes: int | None = Field(default=None, ge=0, description="Total memory the guest OS sees.")
    guest_used_bytes: int | None = Field(default=None, ge=0, description="Used by the guest (not cache).")
    guest_free_bytes: int | None = Field(default=None, ge=0, description="Entirely unused in the guest.")
    guest_available_bytes: int | None = Field(
        default=None, ge=0, description="Usable without swapping (free + reclaimable cache)."
    )
    guest_cache_bytes: int | None = Field(default=None, ge=0, description="Guest page cache.")
    swap_in_bytes: int | None = Field(default=None, ge=0, description="Guest swap-in, cumulative.")
    swap_out_bytes: int | None = Field(default=None, ge=0, description="Guest swap-out, cumulative.")
    major_faults: int | None = Field(default=None, ge=0, description="Guest major faults, cumulative.")
    host_consumed_bytes: int | None = Field(default=None, ge=0, description="Host memory backing the VM.")
    demand_bytes: int | None = Field(
        default=None, ge=0, description="Memory the guest needs (Hyper-V demand, ESXi active)."
    )
    swapped_bytes: int | None = Field(default=None, ge=0, description="Swapped out by the host.")
    compressed_bytes: int | None = Field(default=None, ge=0, description="Compressed by the host.")
    shared_bytes: int | None = Field(default=None, ge=0, description="Shared between VMs by the host.")
    guest_report_age_seconds: float | None = Field(
        default=None, ge=0, description="Age of the guest's last report; None if it never reported."
    )
    stale: bool = Field(default=False, description="Guest figures are missing or older than allowed.")
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # a dump read back carries the derived figures: they are recomputed, not trusted
        if isinstance(data, dict) and _DERIVED.intersection(data):
            return {k: v for k, v in data.items() if k not in _DERIVED}
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="What the guest needs, best figure first: guest used, else demand "
        "(Hyper-V has only demand). The figure to plan with on every backend."
    )
    @property
    def used_bytes(self) -> int | None:
        """What the guest needs, best figure first: guest used, else demand."""
        return self.guest_used_bytes if self.guest_used_bytes is not None else self.demand_bytes

    @computed_field(  # type: ignore[prop-decorator]
        description="Derived: demand (or guest used) / current memory. Above ~0.9 the guest is short."
    )
    @property
    def pressure_ratio(self) -> float | None:
        """Demand (else guest used) over current memory, to 4 decimals; None when unknown."""
        need = self.demand_bytes if self.demand_bytes is not None else self.guest_used_bytes
        if need is None or not self.current_bytes:
            return None
        return round(need / self.current_bytes, 4)


_DERIVED = frozenset(MemoryStats.model_computed_fields)


class MemoryConfig(Frozen):
    """A VM's memory configuration: the range and policy knobs, per backend meaning.

    KVM: ``maximum_bytes`` (maxMemory), ``startup_bytes`` (configured memory), ``minimum_bytes``
    (memtune min_guarantee), ``deflate_on_oom``, ``free_page_reporting``. ESXi: ``maximum_bytes`` (memoryMB),
    ``reservation_bytes``, ``limit_bytes`` (``None`` = unlimited), ``shares`` (the count) and
    ``shares_level`` (low / normal / high: 5 / 10 / 20 per MB of memory, or custom),
    ``memory_reservation_lock`` (memoryReservationLockedToMax: the reservation follows the
    memory size), ``balloon_cap_bytes`` (sched.mem.maxmemctl). Hyper-V: ``dynamic``, ``startup_bytes``,
    ``minimum_bytes``, ``maximum_bytes``, ``buffer_percent``, ``priority``.
    """

    vm: VM
    mechanism: Mechanism
    startup_bytes: int | None = Field(default=None, ge=0)
    minimum_bytes: int | None = Field(default=None, ge=0)
    maximum_bytes: int | None = Field(default=None, ge=0)
    dynamic: bool | None = None
    buffer_percent: int | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=0)
    reservation_bytes: int | None = Field(default=None, ge=0)
    limit_bytes: int | None = Field(default=None, ge=0, description="None: unlimited or not applicable.")
    shares: int | None = Field(default=None, ge=0)
    shares_level: SharesLevel | None = None
    memory_reservation_lock: bool | None = None
    balloon_cap_bytes: int | None = Field(default=None, ge=0)
    deflate_on_oom: bool | None = None
    free_page_reporting: bool | None = None
    stats_period_seconds: int | None = Field(default=None, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict)


class Capabilities(Frozen):
    """What a backend (or one VM on it) can read and change. Declared data, not probing.

    ``set_live`` / ``set_offline``: names that can be changed while the VM runs / only when it
    is powered off; ``"target"`` stands for :meth:`~hvballoon.Hypervisor.set_target`, the rest
    are :class:`MemoryConfig` fields.
    """

    backend: str
    mechanism: Mechanism
    bulk_stats: bool = Field(description="get_stats() for all VMs costs one round trip.")
    readable: NameSet = Field(description="MemoryStats fields this backend fills.")
    set_live: NameSet = frozenset()
    set_offline: NameSet = frozenset()
    alignment_bytes: int = Field(default=1, gt=0, description="Targets are rounded up to this.")
    target_observable: bool = Field(
        default=True, description="wait_for_target can watch the target being reached."
    )
    marks: bool = Field(
        default=False,
        description="A VM keeps hvballoon's marks in its own configuration (set_mark / get_marks): "
        "what a controller changed can be found without its journal.",
    )
    notes: tuple[str, ...] = ()
    frozen_reason: str | None = Field(
        default=None,
        description="Why nothing of this VM can change (an ESXi template), and what to do about it: "
        "every refusal of a change to it says so.",
    )
    withheld: NameSet = Field(
        default=frozenset(),
        description="What the VM's kind can change but this VM cannot, for want of what it needs (a KVM "
        "domain without a balloon device: no live target, no stats period, no balloon settings): "
        "already left out of set_live / set_offline, refused with withheld_rule.",
    )
    withheld_rule: str | None = Field(
        default=None,
        description="The rule id (err.details['rule']) of a refusal of a withheld name.",
    )
    withheld_reason: str | None = Field(
        default=None,
        description="Why the withheld names cannot change on this VM, and what to do about it: a "
        "refusal of one says so.",
    )

    def can_set(self, name: str, *, running: bool) -> bool:
        """Whether ``name`` ("target" or a config field) can be set in this power state."""
        return name in self.set_live or (not running and name in self.set_offline)


class Change(Frozen):
    """The outcome of a set operation: what was (or, with ``dry_run``, would be) changed.

    ``before``/``after`` hold the affected fields only, so Ansible's ``--diff`` falls out of it.
    """

    vm: VM
    operation: Literal["set_target", "set_config"]
    changed: bool
    dry_run: bool = False
    forced: bool = False
    mechanism: Mechanism
    before: dict[str, Any]
    after: dict[str, Any]
    requested: dict[str, Any] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class HostStats(Frozen):
    """One hypervisor host's memory picture at ``collected_at``: what it has, what its running
    VMs were promised and hold, and how it copes (ballooned, swapped, shared).

    Host figures come from the hypervisor (``None`` where it cannot know them); the ``vm_*``
    figures, ``ballooned_bytes`` and ``vms_running`` are sums over the host's *running* VMs, taken
    from the same sweep ``get_stats()`` returns (a sum is ``None`` when a running VM's figure is
    unknown, and all are while a VM's power state is unknown: it may be running). ``used_bytes + free_bytes == physical_bytes`` whenever all three are known.
    ``overcommit_ratio`` is derived: configured memory of the running VMs ÷ physical memory.

    >>> from datetime import datetime, timezone
    >>> GiB = 2**30
    >>> hs = HostStats(host="host01", backend="fake", collected_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                physical_bytes=120 * GiB, vm_configured_bytes=160 * GiB, vms_running=10)
    >>> hs.overcommit_ratio
    1.3333
    >>> HostStats.model_validate(hs.model_dump()) == hs   # the derived ratio is not an input
    True
    """

    host: str = Field(description="The hypervisor host's name (an ESXi host, the libvirt host, ...).")
    backend: str = Field(description="The backend that reported it, e.g. 'kvm', 'esxi', 'fake'.")
    collected_at: Timestamp
    physical_bytes: int | None = Field(default=None, ge=0, description="Physical memory of the host.")
    free_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Memory the host can hand out without reclaiming any from its VMs: unused, plus "
        "the page cache it can drop where the backend tells them apart.",
    )
    used_bytes: int | None = Field(default=None, ge=0, description="physical_bytes - free_bytes.")
    hypervisor_overhead_bytes: int | None = Field(
        default=None, ge=0, description="Memory the hypervisor spends besides guest memory, where known."
    )
    swap_total_bytes: int | None = Field(default=None, ge=0, description="The host's swap space.")
    swap_used_bytes: int | None = Field(
        default=None, ge=0, description="Memory the host has swapped out (VM memory, or its page files)."
    )
    shared_bytes: int | None = Field(
        default=None, ge=0, description="Memory saved by page sharing (KSM, ESXi transparent page sharing)."
    )
    ballooned_bytes: int | None = Field(
        default=None, ge=0, description="Held by the balloon drivers of the running VMs (their sum)."
    )
    vm_configured_bytes: int | None = Field(
        default=None, ge=0, description="What the running VMs were promised (sum of their configured memory)."
    )
    vm_current_bytes: int | None = Field(
        default=None, ge=0, description="What the running VMs have now (sum of their current memory)."
    )
    vms_running: int | None = Field(default=None, ge=0, description="Running VMs on the host.")
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _ignore_derived(cls, data: Any) -> Any:
        # a dump carries the computed ratio; it is derived, never an input
        if isinstance(data, dict) and "overcommit_ratio" in data:
            data = {k: v for k, v in data.items() if k != "overcommit_ratio"}
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="Derived: vm_configured_bytes / physical_bytes (4 decimals); above 1 the host is overcommitted."
    )
    @property
    def overcommit_ratio(self) -> float | None:
        if self.vm_configured_bytes is None or not self.physical_bytes:
            return None
        return round(self.vm_configured_bytes / self.physical_bytes, 4)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every public model (what ``--json`` output validates against)."""
    models: list[type[BaseModel]] = [VM, MemoryStats, MemoryConfig, Capabilities, Change, HostStats]
    return {m.__name__: m.model_json_schema(mode="serialization") for m in models}


def dumps(obj: BaseModel | list[BaseModel] | dict[str, Any], *, indent: int | None = 2) -> str:
    """JSON text for a model, a list of models or a plain dict (used by ``--json``)."""
    if isinstance(obj, BaseModel):
        data: Any = obj.model_dump(mode="json")
    elif isinstance(obj, list):
        data = [o.model_dump(mode="json") for o in obj]
    else:
        data = obj
    return json.dumps(data, indent=indent, sort_keys=False)
