"""Scenarios: the validated description of a fake world (YAML or JSON).

A scenario names a host and its VMs with their memory figures. Sizes use the same spellings as
everywhere in hvballoon (``16GiB``, ``512MiB``, ``8GB``). Errors name the file, the path inside
it and the problem.

.. code-block:: yaml

    name: tiny
    flavor: kvm
    host: {name: host01, physical: 32GiB}
    vms:
      - {name: web01, memory: 8GiB, used: 3GiB}
      - {name: db01, memory: 16GiB, used: 10GiB, cache: 2GiB, stats_period: 10}
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from hvballoon._modelkeys import did_you_mean, suggest
from hvballoon.errors import HVBalloonError, ScenarioError
from hvballoon.fake.flavors import FLAVORS
from hvballoon.fake.flavors import Flavor as HypervisorFlavor
from hvballoon.fake.workloads import TYPED_SIZES, Duration, Size, validate_params
from hvballoon.kinds.esxi import HOT_ADD, HOT_ADD_INCREMENT, HOT_ADD_LIMIT, not_powered_on
from hvballoon.kinds.esxi import powers_on as esxi_powers_on
from hvballoon.kinds.hyperv import BUFFER_PERCENT_RANGE, PRIORITY_RANGE
from hvballoon.kinds.hyperv import starts as hyperv_starts
from hvballoon.kinds.kvm import (
    HOTPLUG_MAXIMUM,
    below_one_huge_page,
    hugepages_needed,
    hugepages_short,
    vfio_cannot_pin,
)
from hvballoon.models import MAX_INT32, VM, MemoryConfig, PowerState, SharesLevel
from hvballoon.units import format_sizes

__all__ = [
    "BalloonSpec",
    "FaultSpec",
    "Flavor",
    "HostSpec",
    "Scenario",
    "VMSpec",
    "WorkloadSpec",
    "builtin_scenarios",
    "check_flavor",
    "load_scenario",
]

Flavor = Literal["kvm", "esxi", "hyperv"]


def _fraction(value: object) -> object:
    """A share of something: ``40%`` or ``0.4`` (a bool is neither)."""
    if isinstance(value, bool):
        raise ValueError("a fraction is a percentage (40%) or a number from 0 to 1, not a boolean")
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"a fraction is a percentage (40%) or a number from 0 to 1, got {value!r}"
            ) from None
    return value


#: A share of something, given as ``40%`` or ``0.4``.
Fraction = Annotated[float, BeforeValidator(_fraction)]


def _text(value: object) -> object:
    """A name or an id, which YAML reads as something else when it is not quoted: ``off`` and
    ``no`` are booleans, ``42`` and ``1.10`` numbers (``007`` loses its zeros), ``2024-01-01``
    a date; refused saying what it was read as, rather than "should be a valid string"."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        read = f"the boolean {str(value).lower()} (unquoted, YAML reads off, no, yes, on as booleans)"
    elif isinstance(value, (int, float)):
        read = f"the number {value!r}"
    elif isinstance(value, (list, dict)):
        read = f"a {'list' if isinstance(value, list) else 'mapping'}"
    else:
        read = f"a {type(value).__name__} ({value})"
    raise ValueError(f"a name or id is text, but this was read as {read}: quote it")


#: A name or id: text, and only text.
Text = Annotated[str, BeforeValidator(_text)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkloadSpec(_Spec):
    """How a guest's memory demand behaves over time (see :mod:`hvballoon.fake.workloads`)."""

    kind: Literal["constant", "diurnal", "ramp", "spike", "random_walk", "jvm", "database", "mixed"] = (
        "constant"
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params(self, info: ValidationInfo) -> WorkloadSpec:
        validate_params(self.kind, self.params, info.context)
        return self


class BalloonSpec(_Spec):
    """Balloon driver physics; unset rates take the flavour's defaults (per second)."""

    inflate_rate: Size | None = Field(default=None, description="Bytes per second the balloon inflates.")
    deflate_rate: Size | None = Field(default=None, description="Bytes per second it deflates.")
    panic_delay: Duration = Field(
        default=4.0, ge=0, description="Seconds from a balloon stalled on unfreeable memory to the panic."
    )


#: The shortest ``host.rebalance_period``: every rebalancing ends a block of simulated steps, so
#: a shorter period only makes a run slower (ESXi decides every 15 s, Hyper-V every 5 s).
MIN_REBALANCE_PERIOD = 1.0


class HostSpec(_Spec):
    name: Text = "host01"
    physical: Size = Field(description="Physical memory of the host.")
    overhead: Size = Field(default=0, description="Memory the hypervisor itself uses.")
    reserve: Size = Field(default=0, description="Memory the host keeps free.")
    swap: Size | None = Field(
        default=None, description="Host swap space (KVM); default: a quarter of physical."
    )
    balloon: BalloonSpec = Field(default_factory=BalloonSpec)
    rebalance_period: Duration | None = Field(
        default=None,
        ge=MIN_REBALANCE_PERIOD,
        description="How often ESXi / Hyper-V re-decide balloons (15 s / 5 s); at least 1 s, not on KVM.",
    )
    hugepage_pool: dict[Size, Size] | None = Field(
        default=None,
        description="KVM: the host's huge-page pool, its size for each page size ({2MiB: 16GiB}), reserved "
        "at boot (nr_hugepages): part of physical memory, never free; a VM backed by huge pages takes its "
        "pages from it when it starts and gives them back when it stops. Default: exactly the pages the "
        "scenario's huge-page VMs need.",
    )

    @model_validator(mode="after")
    def _fits(self) -> HostSpec:
        if self.physical <= 0:
            raise ValueError("physical must be above zero")
        if self.overhead + self.reserve >= self.physical:
            raise ValueError("overhead + reserve leave no memory for VMs")
        for page, size in (self.hugepage_pool or {}).items():
            if not _is_page_size(page):
                raise ValueError(
                    f"hugepage_pool: each key is a huge page size (2MiB, 1GiB: a power of two from 64KiB "
                    f"to 16GiB), got {page} bytes"
                )
            if size < 0 or size % page:
                shown_size, shown_page = format_sizes(size, page)
                raise ValueError(f"hugepage_pool: {shown_size} is not a whole number of {shown_page} pages")
        pool = sum((self.hugepage_pool or {}).values())
        if pool > self.physical - self.overhead:
            raise ValueError("hugepage_pool is more than the host's memory less its overhead")
        return self


class FaultSpec(_Spec):
    """A scripted fault (see :mod:`hvballoon.fake.faults`)."""

    op: str = "*"
    kind: str
    count: int | None = Field(default=None, ge=1)
    after: int = Field(default=0, ge=0)
    probability: float | None = Field(default=None, gt=0, le=1)
    vm: Text | None = None
    latency: Duration = 0.0
    duration: Duration = 300.0
    at: Duration | None = Field(default=None, description="Fires only from this simulated time on.")
    until: Duration | None = Field(default=None, description="Fires only before this simulated time.")
    rate: float | None = Field(
        default=None, gt=0, le=1, description="Fire on this fraction of the calls, evenly."
    )
    burst: int = Field(default=1, ge=1, description="Each firing lasts this many attempts of the call.")

    @model_validator(mode="after")
    def _known(self) -> FaultSpec:
        from hvballoon.fake.faults import check_fault

        check_fault(self.op, self.kind)
        if self.at is not None and self.until is not None and self.until <= self.at:
            raise ValueError("until must be after at")
        if self.rate is not None and self.probability is not None:
            raise ValueError("give either rate or probability, not both")
        return self


class VMSpec(_Spec):
    name: Text = Field(min_length=1, max_length=255)
    id: Annotated[str, StringConstraints(min_length=1), BeforeValidator(_text)] | None = None
    memory: Size = Field(description="Configured (maximum) memory.")
    used: Size = Field(default=0, description="Guest memory in use (excluding cache) at the start.")
    cache: Size = Field(default=0, description="Guest page cache at the start.")
    unfreeable: Size = Field(default=0, description="Memory the guest cannot free (pinned, tmpfs).")
    swap: Size = Field(default=0, description="Guest swap space.")
    power_state: Literal["running", "stopped", "paused", "suspended"] = "running"
    kernel: Size | None = Field(default=None, description="Kernel baseline (part of used; never freed).")
    cache_max: Size | None = Field(
        default=None, description="Page cache the guest grows to; default 2x cache."
    )
    stats_period: int = Field(
        default=10, ge=0, le=MAX_INT32, description="KVM balloon stats period; 0 = off."
    )
    target: Size | None = Field(default=None, description="Initial target; default: memory.")
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    # flavour-specific knobs (ignored where the flavour has no such thing)
    dynamic: bool | None = None
    minimum: Size | None = None
    startup: Size | None = None
    maximum: Size | None = None
    buffer_percent: int | None = Field(default=None, ge=BUFFER_PERCENT_RANGE[0], le=BUFFER_PERCENT_RANGE[1])
    priority: int | None = Field(default=None, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])
    reservation: Size | None = None
    limit: Size | None = None
    shares: int | None = Field(default=None, gt=0, le=MAX_INT32, description="ESXi: a custom share count.")
    shares_level: SharesLevel | None = Field(
        default=None, description="ESXi: low / normal / high (per MB of memory) or custom; default normal."
    )
    memory_reservation_lock: bool = Field(
        default=False, description="ESXi: the reservation is locked to the memory size."
    )
    balloon_cap: Size | None = None
    idle_held: Fraction | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="ESXi: the part of the guest's use it holds but does not touch (an idle JVM heap, a "
        "database's buffer pool), 40% or 0.4, under 100%: ESXi's active estimate (guestMemoryUsage) "
        "reads it as not in use; the guest holds it all the same.",
    )
    memory_hot_add: bool = Field(
        default=False,
        description="ESXi: memory hot-add is on (config.memoryHotAddEnabled): the memory size grows while "
        "the VM runs.",
    )
    hot_add_limit: Size | None = Field(
        default=None,
        description="ESXi, with memory_hot_add: the most the memory of the running VM may grow to "
        "(config.hotPlugMemoryLimit); unset: not known, not checked.",
    )
    hot_add_increment: Size | None = Field(
        default=None,
        description="ESXi, with memory_hot_add: memory is hot-added in steps of this, to a multiple of it "
        "(config.hotPlugMemoryIncrementSize); unset: not known, not checked.",
    )
    deflate_on_oom: bool = False
    free_page_reporting: bool = Field(
        default=True,
        description="KVM: the guest reports the pages it frees and the host drops them (memballoon "
        "freePageReporting); false: the host keeps backing every page the guest touched until a "
        "balloon takes it.",
    )
    balloon_driver: bool = Field(
        default=True,
        description="The guest's memory driver runs (KVM: virtio-balloon; ESXi: VMware Tools; Hyper-V: "
        "integration services); false: the guest tells the host nothing, its use is unknown and the "
        "hypervisor does not move its memory.",
    )
    balloon_device: bool = Field(
        default=True, description="KVM: the domain has a balloon device (<memballoon model='none'> if not)."
    )
    numa_nodes: int = Field(
        default=0,
        ge=0,
        le=256,
        description="KVM: guest NUMA nodes (<cpu><numa><cell>); with any, the maximum cannot change.",
    )
    hotplug_maximum: Size | None = Field(
        default=None,
        description="KVM: the hotplug ceiling (<maxMemory>), at least memory; the maximum never goes above it.",
    )
    vfio_devices: int = Field(
        default=0,
        ge=0,
        le=64,
        description="KVM: devices assigned through VFIO (PCI passthrough); with any, QEMU pins the guest's "
        "memory and its balloon gives the host nothing back (the controller never lowers it).",
    )
    hugepages: Size | None = Field(
        default=None,
        description="KVM: the huge page size backing the guest's memory (<memoryBacking><hugepages>), "
        "e.g. 2MiB or 1GiB: a power of two from 64 KiB to 16 GiB. The host holds all its memory from "
        "its huge-page pool and its balloon gives the host nothing back (the controller never lowers it).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> VMSpec:
        if self.memory <= 0:
            raise ValueError("memory must be above zero")
        if self.used + self.cache > self.memory:
            raise ValueError("used + cache exceed memory")
        if self.unfreeable > self.used:
            raise ValueError("unfreeable memory is part of used memory: it cannot exceed used")
        if self.kernel is not None and self.kernel + self.unfreeable > max(self.used, 1):
            raise ValueError("kernel + unfreeable memory are part of used memory: they cannot exceed used")
        if self.target is not None and self.target > self.memory:
            raise ValueError("target is above memory")
        if self.hugepages is not None and not _is_page_size(self.hugepages):
            raise ValueError(
                f"hugepages is a huge page size (2MiB, 1GiB: a power of two from 64KiB to 16GiB), "
                f"got {self.hugepages} bytes"
            )
        if self.shares is not None and self.shares_level not in (None, "custom"):
            raise ValueError("shares is a custom count: give it with shares_level custom (or no level)")
        if self.shares_level == "custom" and self.shares is None:
            raise ValueError("shares_level custom needs shares (the count)")
        if not self.memory_hot_add and (self.hot_add_limit is not None or self.hot_add_increment is not None):
            raise ValueError("hot_add_limit and hot_add_increment go with memory_hot_add: true")
        if self.hot_add_increment is not None and self.hot_add_increment <= 0:
            raise ValueError("hot_add_increment must be above zero")
        lo, mid, hi = self.minimum, self.startup, self.maximum
        if lo is not None and mid is not None and lo > mid:
            raise ValueError("minimum is above startup")
        if mid is not None and hi is not None and mid > hi:
            raise ValueError("startup is above maximum")
        return self


def _is_page_size(size: int) -> bool:
    """A huge page size some architecture has: a power of two from 64 KiB (arm64) to 16 GiB
    (ppc64, arm64); x86 has 2 MiB and 1 GiB."""
    return 64 * 1024 <= size <= 16 * 2**30 and size & (size - 1) == 0


#: The shortest simulation step. The world's clock keeps time to the microsecond (a moment
#: within a microsecond of a multiple of the step is on its grid), so a step near that has no
#: grid at all, and one far below it never ends a run: a step of a nanosecond is ten billion
#: steps for a controller's round of ten seconds.
MIN_STEP = 0.001


class Scenario(_Spec):
    name: Text
    description: str = ""
    flavor: Flavor = "kvm"
    seed: int = Field(default=0, ge=0, description="Random seed of the world's draws.")
    step: Duration = Field(
        default=1.0, ge=MIN_STEP, le=60, description="Simulation step in seconds, from 1 ms to 60 s."
    )
    host: HostSpec
    vms: list[VMSpec] = Field(min_length=1)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Scenario:
        ids = [v.id for v in self.vms if v.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("VM ids must be unique")
        return self

    @property
    def promised_bytes(self) -> int:
        return sum(v.memory for v in self.vms)


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and e["loc"]:
            msg += did_you_mean(Scenario, e["loc"])
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


#: What a scenario file holds that is not a mapping, in the words of YAML and JSON.
_KIND_OF: dict[type, str] = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def parse_scenario(data: Any, *, source: str = "<scenario>", typed: bool = False) -> Scenario:
    """Validate already-loaded scenario data, its VMs against its flavour's rules
    (:func:`check_flavor`); errors name ``source`` and the path. ``typed``: the data is a file
    a person wrote, where a size without a unit below 1 MiB (``used: 3``) is a unit left out,
    refused (in data a program builds, an integer is bytes, as everywhere in hvballoon)."""
    if not isinstance(data, (Mapping, Scenario)):
        held = (
            "nothing (it is empty)" if data is None else f"a {_KIND_OF.get(type(data), type(data).__name__)}"
        )
        raise ScenarioError(
            f"invalid scenario {source}: it holds {held}; a scenario is a mapping with name, host and vms",
            details={"source": source},
        )
    try:
        scenario = Scenario.model_validate(data, context=TYPED_SIZES if typed else None)
    except ValidationError as exc:
        raise ScenarioError(
            f"invalid scenario {source}: {_format_errors(exc)}", details={"source": source}
        ) from None
    check_flavor(scenario, source=source)
    _check_fault_vms(scenario, source)
    return scenario


def _check_fault_vms(scenario: Scenario, source: str) -> None:
    """A fault rule's ``vm`` names a VM of the scenario: one that names none (a typo) would
    never fire on a call on a VM, leaving a test sure of a failure it never met."""
    names = {v.name for v in scenario.vms}
    for i, rule in enumerate(scenario.faults):
        if rule.vm is not None and rule.vm not in names:
            raise ScenarioError(
                f"invalid scenario {source}: faults.{i}.vm: no VM of the scenario is named "
                f"{rule.vm!r}{suggest(rule.vm, names)}",
                details={"source": source, "path": f"faults.{i}.vm"},
            )


def check_flavor(scenario: Scenario, flavor: str | None = None, *, source: str | None = None) -> None:
    """Refuse what ``scenario`` asks of the hypervisor ``flavor`` (default: its own) that this
    hypervisor's rules refuse or its simulation cannot hold, with a :class:`ScenarioError` naming
    the path (``vms.N``) and the rule.

    Each VM's configuration, with the defaults the flavour fills in (a Hyper-V VM's startup
    size, minimum and maximum; an ESXi VM's reservation), is checked by the rules of the
    flavour's kind (:meth:`hvballoon.kinds.Kind.check_config`: the rules the real backend holds
    a change to), the figures the scenario gives as given. Then what only the scenario format
    says: KVM's and ESXi's ``maximum`` is the VM's memory size, which ``memory`` sets; a Hyper-V
    VM's startup size and Dynamic Memory maximum are within ``memory``, and a static one holds
    its ``used`` memory within its startup size; KVM does not rebalance (no
    ``host.rebalance_period``). The loader checks a scenario for its own flavour, a world made
    for another one (``fake://x?flavor=esxi``) for that one.
    """
    name = flavor or scenario.flavor
    key = (id(scenario), name)
    with _CHECKED_LOCK:
        if _CHECKED.get(key) is scenario:  # the loader checked it, a world made from it checks again
            return
    hv = FLAVORS[name]
    where = source or (f"{scenario.name!r}" + (f" as {name}" if name != scenario.flavor else ""))
    if name == "kvm" and scenario.host.rebalance_period is not None:
        _refuse(
            where,
            "host.rebalance_period",
            "KVM does not rebalance its guests' memory (a balloon goes where its target says): "
            "leave it out, or pick the esxi or hyperv flavor",
            name,
        )
    for i, spec in enumerate(scenario.vms):
        problem = _vm_problem(hv, spec)
        if problem is not None:
            field, message, rule = problem
            _refuse(where, f"vms.{i}{field}", message, name, rule)
    if name == "kvm":
        _check_pinned(scenario, hv, where, name)
    if name == "esxi":
        # the VMs powered on, powered on one after the other as ESXi would admit them: a
        # reservation as the flavour holds it (a locked one is the memory size) with the VM's
        # overhead, out of what the VMs before it left unreserved
        unreserved = scenario.host.physical - scenario.host.overhead
        overhead = hv.physics.vm_overhead
        for i, spec in enumerate(scenario.vms):
            if spec.power_state not in ("running", "paused"):
                continue
            reservation = int(hv.config(spec)["reservation_bytes"])
            if not esxi_powers_on(reservation, overhead, unreserved):
                _refuse(
                    where, f"vms.{i}", not_powered_on(spec.name, reservation + overhead, unreserved), name
                )
            unreserved -= reservation + overhead
    if name == "hyperv":
        # what the host has for its VMs: its memory less its own overhead and the reserve it
        # keeps for itself (Dynamic Memory hands neither out)
        room = scenario.host.physical - scenario.host.overhead - scenario.host.reserve
        for i, spec in enumerate(scenario.vms):
            startup = int(hv.config(spec)["startup_bytes"])
            if spec.power_state in ("running", "paused") and not hyperv_starts(startup, room):
                shown_startup, shown_room = format_sizes(startup, room)
                _refuse(
                    where,
                    f"vms.{i}.{'startup' if spec.startup is not None else 'memory'}",
                    f"its startup memory {shown_startup} is more than the host's {shown_room} for its VMs "
                    "(its memory less its overhead and its reserve): Hyper-V would not start it (not enough "
                    "memory in the system)",
                    name,
                )
    with _CHECKED_LOCK:
        _CHECKED[key] = scenario  # kept alive while remembered, so its id is not another's
        while len(_CHECKED) > 16:
            del _CHECKED[next(iter(_CHECKED))]


def _check_pinned(scenario: Scenario, hv: HypervisorFlavor, where: str, name: str) -> None:
    """KVM: a VM backed by huge pages that QEMU would not start (smaller than one page), VMs
    running at the start whose pages the host's pool cannot supply, and VMs running at the start
    with devices assigned through VFIO whose memory the host cannot hold pinned, started in
    turn."""
    free = dict(hv.hugepage_pool(scenario))
    pool = sum(page * n for page, n in free.items())
    if scenario.host.hugepage_pool is None and pool > scenario.host.physical - scenario.host.overhead:
        # the default pool is what the huge-page VMs need, running or not: one the host's memory
        # cannot hold is refused as a given one is (HostSpec)
        shown_pool, shown_room = format_sizes(pool, scenario.host.physical - scenario.host.overhead)
        _refuse(
            where,
            "host.hugepage_pool",
            f"the default huge-page pool, the {shown_pool} the huge-page VMs need (running or not), "
            f"is more than the host's {shown_room} (its memory less its overhead): give "
            "host.hugepage_pool, or back fewer VMs by huge pages",
            name,
        )
    for i, spec in enumerate(scenario.vms):
        if spec.hugepages is None:
            continue
        below = below_one_huge_page(spec.memory, spec.hugepages)
        if below is not None:
            _refuse(where, f"vms.{i}.memory", f"QEMU would not start it: {below}", name)
        if spec.power_state not in ("running", "paused"):
            continue
        need = hugepages_needed(spec.memory, spec.hugepages)
        short = hugepages_short(spec.name, spec.hugepages, need, free.get(spec.hugepages, 0))
        if short is not None:
            _refuse(where, f"vms.{i}.hugepages", short + ": host.hugepage_pool is too small", name)
        free[spec.hugepages] -= need
    # VMs with devices assigned through VFIO running at the start, in turn: each pins its whole
    # memory, out of what the host's own memory and its huge-page pool (pinned too) leave
    pinnable = scenario.host.physical - scenario.host.overhead - pool
    for i, spec in enumerate(scenario.vms):
        if (
            not spec.vfio_devices
            or spec.hugepages is not None
            or spec.power_state not in ("running", "paused")
        ):
            continue
        unpinned = vfio_cannot_pin(spec.name, spec.memory, pinnable)
        if unpinned is not None:
            _refuse(where, f"vms.{i}.vfio_devices", unpinned + ": the host's memory cannot hold it", name)
        pinnable -= spec.memory


#: the scenarios :func:`check_flavor` passed lately, by (id, flavour): a frozen scenario does not
#: change, and checking one of 10,000 VMs costs a third of building its world
_CHECKED: dict[tuple[int, str], Scenario] = {}
_CHECKED_LOCK = threading.Lock()


def _vm_problem(hv: HypervisorFlavor, spec: VMSpec) -> tuple[str, str, str | None] | None:
    """What ``hv`` refuses of ``spec``: (the field path below the VM, the problem, the kind's rule)."""
    name, memory = hv.name, spec.memory
    if name in ("kvm", "esxi") and spec.maximum is not None and spec.maximum != memory:
        shown_max, shown_memory = format_sizes(spec.maximum, memory)
        size = "libvirt's <memory>" if name == "kvm" else "memoryMB"
        return (
            ".maximum",
            f"on {hv.kind.title} the maximum is the VM's memory size ({size}), which memory sets: "
            f"leave maximum out or make it memory (maximum {shown_max}, memory {shown_memory})",
            None,
        )
    config = hv.config(spec)
    # the figures the scenario gives are checked as given (the flavour takes a locked ESXi
    # reservation as the memory size: one given beside the lock must be that)
    config.update({k: v for k, v in HypervisorFlavor.config(hv, spec).items() if v is not None})
    if name == "hyperv":
        for field, what in (("startup", "startup size"), ("maximum", "Dynamic Memory maximum")):
            value = config[f"{field}_bytes"]
            if value > memory:
                shown_value, shown_memory = format_sizes(value, memory)
                return (
                    f".{field}",
                    f"the {what} {shown_value} is above memory {shown_memory}, the most the guest can hold",
                    None,
                )
    else:
        config["maximum_bytes"] = memory  # KVM's and ESXi's memory size
    vm = VM(id=spec.id or spec.name, name=spec.name, backend="fake", power_state=PowerState(spec.power_state))
    mechanism = hv.kind.variant_for(dynamic=config.get("dynamic")).mechanism
    fields = {k: v for k, v in config.items() if k in MemoryConfig.model_fields}
    # what the kind reads from a configuration's extra (ESXi's memory hot-add)
    extra = {
        k: config[k]
        for k in (HOT_ADD, HOT_ADD_LIMIT, HOT_ADD_INCREMENT, HOTPLUG_MAXIMUM)
        if config.get(k) is not None
    }
    try:
        hv.kind.check_config(vm, MemoryConfig(vm=vm, mechanism=mechanism, extra=extra, **fields))
    except HVBalloonError as err:
        source = _source(spec, err)  # the field the scenario wrote, not the kind's name for it
        message = _from_memory(err) if source == "memory" else err.message
        return f".{source}" if source else "", message, err.details.get("rule")
    if name == "hyperv" and config["dynamic"] is not False and spec.used > config["maximum_bytes"]:
        shown_used, shown_max = format_sizes(spec.used, config["maximum_bytes"])
        return (
            ".used",
            f"a Dynamic Memory VM holds at most its maximum, {shown_max}: it cannot hold its use of {shown_used}",
            None,
        )
    if name == "hyperv" and config["dynamic"] is False and spec.used > config["startup_bytes"]:
        shown_used, shown_startup = format_sizes(spec.used, config["startup_bytes"])
        return (
            ".used",
            f"a static VM (dynamic: false) has its startup memory, {shown_startup}: it cannot hold "
            f"its use of {shown_used}",
            None,
        )
    return None


def _source(spec: VMSpec, err: HVBalloonError) -> str | None:
    """The field of ``spec`` the size a kind refused came from: the one it names where the
    scenario gives it (``startup``: also KVM's ``target``), else ``memory`` where the flavour
    made it of the memory (a Hyper-V maximum not given, KVM's and ESXi's memory size), else
    ``None`` (the VM as a whole)."""
    field, asked = err.details.get("field"), err.details.get("asked")
    if not isinstance(field, str) or asked is None:
        return None
    name = field.removesuffix("_bytes")
    for given in (name, "target") if name == "startup" else (name,):
        if given in VMSpec.model_fields and getattr(spec, given) == asked:
            return given
    return "memory" if spec.memory == asked else None


def _from_memory(err: HVBalloonError) -> str:
    """A kind's refusal of a size the flavour made of ``memory``, said as the user wrote it."""
    label = str(err.details["field"]).removesuffix("_bytes")
    if label not in err.message:  # the kind says memory itself (ESXi's memory size)
        return err.message
    return f"memory sets the {label} when none is given: {err.message}"


def _refuse(where: str, path: str, message: str, flavor: str, rule: str | None = None) -> NoReturn:
    why = f" ({flavor} rule {rule})" if rule else f" ({flavor})"
    raise ScenarioError(
        f"invalid scenario {where}: {path}: {message}{why}",
        details={"source": where, "path": path, "flavor": flavor, **({"rule": rule} if rule else {})},
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (``seed``) or a YAML/JSON file by path (generated wave
    scenarios by name too: :func:`hvballoon.fake.catalog.load_scenario`)."""
    if isinstance(name_or_path, str) and name_or_path in builtin_scenarios():
        source = f"built-in scenario {name_or_path!r}"
        return parse_scenario(copy.deepcopy(_builtin_data(name_or_path)), source=source, typed=True)
    path = Path(name_or_path)
    source = str(path)
    if path.is_dir():
        raise ScenarioError(
            f"cannot read scenario {source}: it is a directory; name a YAML or JSON file",
            details={"source": source},
        )
    if not path.is_file():
        known = ", ".join(builtin_scenarios())
        raise ScenarioError(
            f"no scenario {str(name_or_path)!r}: not a built-in ({known}), not a generated wave "
            "scenario (waves-<seed>, waves-<seed>-esxi, waves-<seed>-hyperv) and no such file",
            details={"source": source},
        )
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ScenarioError(
            f"cannot read scenario {source}: {exc.strerror or exc}", details={"source": source}
        ) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"cannot read scenario {source}: not UTF-8 text (byte {exc.start})", details={"source": source}
        ) from None
    data = _load_text(text, source, json_only=source.endswith(".json"))
    return parse_scenario(data, source=source, typed=True)


@functools.cache
def _builtin_data(name: str) -> Any:
    """A built-in scenario's YAML, read once per process (every ``fake://seed`` connection
    builds its world from it; the validation after it is cheap, the YAML parser is not). The
    caller gets a copy: nothing it does reaches the next one."""
    text = resources.files("hvballoon.fake").joinpath(f"scenarios/{name}.yaml").read_text("utf-8")
    return _load_text(text, f"built-in scenario {name!r}", json_only=False)


def _load_text(text: str, source: str, *, json_only: bool) -> Any:
    """The data of a scenario's text; a key given twice in one mapping (which the parsers
    would settle silently, the last one winning) is refused as the parsers' own errors are."""
    from hvballoon._yamltext import load_json, load_yaml

    what = "JSON" if json_only else "YAML"
    try:
        return load_json(text) if json_only else load_yaml(text)
    except RecursionError:
        raise ScenarioError(
            f"invalid scenario {source}: nested too deeply", details={"source": source}
        ) from None
    except ValueError as exc:
        raise ScenarioError(
            f"invalid scenario {source}: not valid {what}: {exc}", details={"source": source}
        ) from None


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with hvballoon."""
    folder = resources.files("hvballoon.fake").joinpath("scenarios")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
