"""KVM/QEMU: a target is the virtio-balloon target, in KiB (libvirt's ``setMemoryFlags``).

Facts (shared/REFERENCE.md §3, libvirt's QEMU and test drivers): targets and sizes are whole KiB;
a target above the maximum is refused ("cannot set memory higher than max memory"); the maximum
changes only on an inactive domain ("cannot resize the maximum memory on an active domain");
autodeflate "cannot be enabled/disabled for running domain", and free page reporting
(``<memballoon freePageReporting='on'>``, libvirt 6.9, QEMU 5.1's ``free-page-reporting``, Linux
5.7 guests) is a property of the balloon device on QEMU's command line too; without a ``<memballoon>`` device
there is no balloon to move and no stats period ("No memory balloon device configured"); the
maximum of a domain with guest NUMA nodes (``<cpu><numa><cell>``) cannot change through
``setMemoryFlags`` at all, each node having its own size ("initial memory size of a domain with
NUMA nodes cannot be modified with this API", the QEMU and test drivers alike); a maximum
above the hotplug ceiling (``<maxMemory>``) is refused ("cannot set initial memory size greater
than the maximum memory size", VIR_ERR_OPERATION_INVALID, the QEMU and test drivers alike); a
balloon target never takes a virtio-mem device's memory: libvirt's QEMU driver takes every
``<memory model='virtio-mem'>`` device's ``<size>`` off ``<memory>`` before it compares a target
("While virtio-mem is regular mem from guest POV, it can't be modified through this API",
qemuDomainSetMemoryFlags; the test driver does not), and moves such a device only through its
``<requested>`` size (virDomainUpdateDeviceFlags); a domain with a device assigned through VFIO-PCI
has all its memory pinned, and QEMU's balloon discards nothing while it is attached (hw/vfio's
``vfio_ram_block_discard_disable``, hw/virtio/virtio-balloon.c's ``virtio_balloon_inhibited``):
a lower target frees nothing on the host. Nor does it on a domain backed by huge pages
(``<memoryBacking><hugepages>``): QEMU discards a host page only once the balloon holds all of
it, tracking one partly ballooned page per inflate request (hw/virtio/virtio-balloon.c's
``balloon_inflate_page``), which Linux's driver fills with at most 256 4 KiB pages, less than one
2 MiB page; and a huge page QEMU does discard goes back to the host's huge-page pool, which no
ordinary allocation draws on (Linux's Documentation/admin-guide/mm/hugetlbpage.rst).

Used by the libvirt backend (``qemu://``, ``test://``), the fake's ``kvm`` flavour, and any other
backend that drives a QEMU balloon.

>>> from hvballoon.kinds import KVM
>>> KVM.capabilities(backend="kvm").mechanism.value, KVM.alignment_bytes
('balloon', 1024)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import Field

from hvballoon.errors import InvalidRequestError, InvalidStateError, UnsupportedOperationError
from hvballoon.kinds._base import Kind, Rule, Variant, is_off, uuid_form
from hvballoon.models import MAX_INT32, VM, Capabilities, ConfigUpdate, Mechanism, MemoryConfig, MemoryStats
from hvballoon.units import KiB, format_sizes

__all__ = [
    "DEFAULT_STATS_PERIOD",
    "HOTPLUG_MAXIMUM",
    "HUGEPAGES",
    "HUGEPAGES_NOTE",
    "HUGEPAGE_BYTES",
    "KVM",
    "NO_BALLOON_DEVICE_NOTE",
    "VFIO_DEVICES",
    "VFIO_PINNED_NOTE",
    "KVMKind",
    "StatsPeriodOption",
    "balloon_frees_host_memory",
    "has_balloon_device",
    "below_one_huge_page",
    "hugepage_extra",
    "hugepage_pool_extra",
    "hugepages_needed",
    "hugepages_short",
    "vfio_cannot_pin",
    "numa_nodes",
    "virtio_mem_bytes",
]

#: The stats period (seconds) a session switches on where a running balloon's is off (the
#: ``stats_period`` option of the kvm and qmp backends, and what the fake's kvm flavour does).
#: libvirt and QEMU leave it off unless told (formatdomain: "By default, collection is not
#: enabled"), which freezes the guest's report at boot.
DEFAULT_STATS_PERIOD = 10

#: The ``stats_period`` option itself (the kvm and qmp backends', the fake's): seconds, 0 for
#: never; libvirt takes it as a C int (``virDomainSetMemoryStatsPeriod``), QEMU's property too.
StatsPeriodOption = Annotated[int, Field(ge=0, le=MAX_INT32)]

_READABLE = frozenset({
    "configured_bytes", "current_bytes", "target_bytes", "ballooned_bytes", "guest_total_bytes",
    "guest_used_bytes", "guest_free_bytes", "guest_available_bytes", "guest_cache_bytes",
    "swap_in_bytes", "swap_out_bytes", "major_faults", "host_consumed_bytes",
})  # fmt: skip


#: Why a running domain without a balloon device is left alone, and how to give it one: without
#: ``<memballoon>`` there is nothing to report the guest's memory or to move it. libvirt adds a
#: virtio balloon to a KVM domain by default; ``model='none'`` suppresses it (formatdomain). The
#: device is not hot-plugged (Proxmox VE: "enable/disable of the device is not hotpluggable"):
#: it is added to the definition and takes effect at the domain's next start.
NO_BALLOON_DEVICE_NOTE = (
    "the domain has no balloon device (<memballoon model='none'>): nothing reports its guest's memory "
    "and nothing can move it while it runs. To manage it, give it one: in its definition (virsh edit) "
    "set <memballoon model='virtio'><stats period='10'/></memballoon>, then shut it down and start it again "
    "(a balloon device is not hot-plugged); its guest needs the virtio-balloon driver"
)


#: Settings of the balloon device itself: a domain without one has none of them.
_BALLOON_SETTINGS = frozenset({"stats_period_seconds", "deflate_on_oom", "free_page_reporting"})


def has_balloon_device(config: MemoryConfig) -> bool:
    """Whether the domain has a balloon device (``config.extra["balloon_model"]``, not "none")."""
    return config.extra.get("balloon_model") not in (None, "none")


#: ``MemoryConfig.extra`` key of how many devices a domain assigns through VFIO-PCI (a
#: ``<hostdev>`` of type ``pci``, or ``mdev`` of model ``vfio-pci``, an ``<interface
#: type='hostdev'>``).
VFIO_DEVICES = "vfio_devices"

#: Why lowering such a domain's target gives the host nothing (QEMU's source, see
#: docs/backends/kvm.md): a VFIO-PCI device maps all guest memory for DMA, pinned, and QEMU
#: turns discarding of guest RAM off for as long as it is attached (hw/vfio's
#: ``vfio_ram_block_discard_disable``); the virtio balloon then hands no page it receives back to
#: the host (hw/virtio/virtio-balloon.c, ``virtio_balloon_inhibited``). The guest loses the
#: memory, the host gains none.
VFIO_PINNED_NOTE = (
    "the domain has a device assigned through VFIO (<hostdev> or <interface type='hostdev'>): QEMU pins "
    "all its memory for the device's DMA and its balloon gives the host nothing back, so lowering its "
    "target only takes memory from its guest. Leave it out of ballooning (give it its memory) or, to "
    "reclaim memory from it, detach the device"
)


#: ``MemoryConfig.extra`` key, ``True`` on a domain whose memory is backed by huge pages
#: (``<memoryBacking><hugepages>``, formatdomain "Memory Backing"); absent on any other.
HUGEPAGES = "hugepages"

#: ``MemoryConfig.extra`` key of the huge page size such a domain's definition names (bytes: the
#: largest of its ``<page size>``), ``None`` where it names none (the host's default size).
HUGEPAGE_BYTES = "hugepage_bytes"


def hugepage_extra(hugepages: bool, page_bytes: int | None) -> dict[str, bool | int | None]:
    """The ``MemoryConfig.extra`` keys of a domain's huge-page backing, as the kvm backend and the
    fake's kvm flavour both put them: none for a domain with ordinary pages.

    >>> hugepage_extra(True, 2 * 2**20), hugepage_extra(False, None)
    ({'hugepages': True, 'hugepage_bytes': 2097152}, {})
    """
    return {HUGEPAGES: True, HUGEPAGE_BYTES: page_bytes} if hugepages else {}


def hugepages_needed(memory_bytes: int, page_bytes: int) -> int:
    """How many huge pages a domain of ``memory_bytes`` backed by pages of ``page_bytes`` takes
    from the host's pool when it starts. QEMU maps guest RAM from hugetlbfs rounded up to whole
    pages (``file_ram_alloc`` in system/physmem.c: ``memory = ROUND_UP(memory,
    block->page_size)``) and libvirt preallocates huge-page-backed memory, so a 1.5 GiB guest on
    1 GiB pages takes two; a guest smaller than one page QEMU refuses to start
    (:func:`below_one_huge_page`).

    >>> hugepages_needed(3 * 2**29, 2**30), hugepages_needed(2**30, 2 * 2**20)
    (2, 512)
    """
    return -(-memory_bytes // page_bytes)


def below_one_huge_page(memory_bytes: int, page_bytes: int) -> str | None:
    """Why QEMU would not start a domain of ``memory_bytes`` backed by pages of ``page_bytes``
    (``None``: it starts): its memory is smaller than one page — QEMU's ``file_ram_alloc``:
    "memory size 0x%x must be equal to or larger than page size 0x%x", and the domain fails to
    start.

    >>> print(below_one_huge_page(512 * 2**20, 2**30))
    memory size 0x20000000 must be equal to or larger than page size 0x40000000
    >>> below_one_huge_page(3 * 2**29, 2**30) is None
    True
    """
    if memory_bytes >= page_bytes:
        return None
    return f"memory size {memory_bytes:#x} must be equal to or larger than page size {page_bytes:#x}"


def hugepages_short(vm_name: str, page_bytes: int, needed_pages: int, free_pages: int) -> str | None:
    """What a domain backed by huge pages gets when the host's pool of its page size has fewer
    free pages than it needs (``None``: it starts). QEMU's hugetlbfs mapping fails and the domain
    does not start: libvirt's ``VIR_ERR_INTERNAL_ERROR``, "internal error: qemu unexpectedly
    closed the monitor: ... unable to map backing store for guest RAM: Cannot allocate memory"
    (the text seen on hosts whose pool was short, e.g. kubevirt/kubevirt#14854); the pool is
    never grown on demand (Linux's hugetlbpage.rst: persistent huge pages are reserved by
    ``nr_hugepages``; hvballoon never calls ``virNodeAllocPages``).

    >>> print(hugepages_short("db01", 2**21, 4096, 1024))  # doctest: +NORMALIZE_WHITESPACE
    'db01' could not be started: unable to map backing store for guest RAM: Cannot allocate memory
    (it needs 4096 pages of 2 MiB from the host's huge-page pool, 1024 are free)
    """
    if needed_pages <= free_pages:
        return None
    (size,) = format_sizes(page_bytes)
    return (
        f"{vm_name!r} could not be started: unable to map backing store for guest RAM: Cannot allocate "
        f"memory (it needs {needed_pages} pages of {size} from the host's huge-page pool, "
        f"{max(free_pages, 0)} are free)"
    )


def vfio_cannot_pin(vm_name: str, memory_bytes: int, pinnable_bytes: int) -> str | None:
    """What a domain with a device assigned through VFIO gets when the host cannot hold all its
    memory pinned (``None``: it starts). QEMU maps the whole of guest RAM for the device's DMA,
    pinned (``VFIO_IOMMU_MAP_DMA``), when the device is set up; pinned pages are never swapped,
    so ``pinnable_bytes`` is the host's memory less its own, less what other live domains keep
    pinned (their VFIO memory, the huge-page pool). Beyond it the mapping fails and the domain
    does not start: "VFIO_MAP_DMA failed: Cannot allocate memory ... memory listener
    initialization failed: Region pc.ram: vfio_dma_map(...) = -12 (Cannot allocate memory)",
    libvirt's internal error (the text seen on hosts short of memory, harvester/harvester#3135).

    >>> print(vfio_cannot_pin("gpu01", 80 * 2**30, 34 * 2**30))  # doctest: +NORMALIZE_WHITESPACE
    'gpu01' could not be started: VFIO_MAP_DMA failed: Cannot allocate memory (memory listener
    initialization failed: Region pc.ram: vfio_dma_map = -12): its 80 GiB must be pinned for the
    devices assigned through VFIO, the host can pin at most 34 GiB more
    >>> vfio_cannot_pin("gpu01", 8 * 2**30, 34 * 2**30) is None
    True
    """
    if memory_bytes <= pinnable_bytes:
        return None
    memory, pinnable = format_sizes(memory_bytes, max(pinnable_bytes, 0))
    return (
        f"{vm_name!r} could not be started: VFIO_MAP_DMA failed: Cannot allocate memory (memory listener "
        f"initialization failed: Region pc.ram: vfio_dma_map = -12): its {memory} must be pinned for the "
        f"devices assigned through VFIO, the host can pin at most {pinnable} more"
    )


def hugepage_pool_extra(
    pages: Mapping[int, int] | None, free_pages: Mapping[int, int] | None
) -> dict[str, object]:
    """The host's huge-page pool in ``HostStats.extra``, as the kvm backend and the fake's kvm
    flavour both put it (docs/backends/kvm.md, "The host"): ``pages`` of each huge size (bytes:
    count; ``None``: the capabilities list no cell pages, unknown), ``free_pages`` of each
    (``None``: unknown). ``hugepage_pool_free_bytes`` is 0 with no pool.

    >>> hugepage_pool_extra({2**21: 8}, {2**21: 2})  # doctest: +NORMALIZE_WHITESPACE
    {'hugepage_pool_bytes': 16777216, 'hugepage_pool_free_bytes': 4194304,
     'hugepage_pools': [{'page_bytes': 2097152, 'pages': 8, 'free_pages': 2}]}
    >>> hugepage_pool_extra({}, None)
    {'hugepage_pool_bytes': 0, 'hugepage_pool_free_bytes': 0, 'hugepage_pools': []}
    """
    if pages is None:
        return {"hugepage_pool_bytes": None, "hugepage_pool_free_bytes": None}
    sizes = sorted(size for size, n in pages.items() if n)
    if not sizes:
        free_bytes: int | None = 0
    elif free_pages is None:
        free_bytes = None
    else:
        free_bytes = sum(size * free_pages.get(size, 0) for size in sizes)
    return {
        "hugepage_pool_bytes": sum(size * pages[size] for size in sizes),
        "hugepage_pool_free_bytes": free_bytes,
        "hugepage_pools": [
            {
                "page_bytes": size,
                "pages": pages[size],
                "free_pages": free_pages.get(size) if free_pages is not None else None,
            }
            for size in sizes
        ],
    }


#: Why lowering a huge-page-backed domain's target gives the host nothing (sources in
#: docs/backends/kvm.md): QEMU discards a huge page only once the balloon holds every 4 KiB
#: page of it, and keeps one partly ballooned page per inflate request
#: (hw/virtio/virtio-balloon.c, ``balloon_inflate_page``); Linux's driver sends at most 256
#: pages (1 MiB) a request (``VIRTIO_BALLOON_ARRAY_PFNS_MAX``). A huge page that is discarded
#: returns to the host's huge-page pool, not to its free memory (hugetlbpage.rst).
HUGEPAGES_NOTE = (
    "the domain's memory is backed by huge pages (<memoryBacking><hugepages>): QEMU gives a huge page "
    "back only once the balloon holds all of it, which the guest's balloon driver does not do, and a huge "
    "page given back returns to the host's huge-page pool, not to its free memory; lowering its target "
    "only takes memory from its guest. Leave it out of ballooning (give it its memory) or, to reclaim "
    "memory from it, back it with ordinary pages"
)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def balloon_frees_host_memory(config: MemoryConfig) -> bool:
    """Whether a balloon target below the domain's memory gives the host memory back: not with a
    device assigned through VFIO-PCI (``config.extra["vfio_devices"]``, :data:`VFIO_PINNED_NOTE`)
    nor with memory backed by huge pages (``config.extra["hugepages"]``, :data:`HUGEPAGES_NOTE`).

    >>> from hvballoon.models import VM, Mechanism, MemoryConfig
    >>> vm = VM(id="u", name="g", backend="kvm")
    >>> balloon_frees_host_memory(MemoryConfig(vm=vm, mechanism=Mechanism.BALLOON, extra={"vfio_devices": 1}))
    False
    >>> balloon_frees_host_memory(MemoryConfig(vm=vm, mechanism=Mechanism.BALLOON, extra={"hugepages": True}))
    False
    """
    return _frees_nothing_note(config) is None


def _frees_nothing_note(config: MemoryConfig) -> str | None:
    if _positive_int(config.extra.get(VFIO_DEVICES)):
        return VFIO_PINNED_NOTE
    if config.extra.get(HUGEPAGES) is True:
        return HUGEPAGES_NOTE
    return None


def numa_nodes(config: MemoryConfig) -> int:
    """How many guest NUMA nodes the domain's definition has (``config.extra["numa_nodes"]``)."""
    nodes = config.extra.get("numa_nodes")
    return nodes if isinstance(nodes, int) and not isinstance(nodes, bool) and nodes > 0 else 0


#: ``MemoryConfig.extra`` key of a domain's hotplug ceiling, ``<maxMemory>`` (bytes).
HOTPLUG_MAXIMUM = "hotplug_maximum_bytes"


def _size_extra(config: MemoryConfig, key: str) -> int | None:
    value = config.extra.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _above_hotplug_maximum(config: MemoryConfig, maximum_bytes: int | None) -> int | None:
    """The domain's hotplug ceiling (``<maxMemory>``) when ``maximum_bytes`` is above it, else
    ``None`` (no ceiling, or none passed): the maximum libvirt refuses."""
    ceiling = _size_extra(config, HOTPLUG_MAXIMUM)
    if ceiling is None or maximum_bytes is None or maximum_bytes <= ceiling:
        return None
    return ceiling


def virtio_mem_bytes(config: MemoryConfig) -> int:
    """The sizes of the domain's virtio-mem devices, summed (``config.extra["virtio_mem_bytes"]``):
    part of its ``<memory>``, out of a balloon target's reach."""
    return _size_extra(config, "virtio_mem_bytes") or 0


class KVMKind(Kind):
    """The rules of a QEMU/KVM guest's memory (see the module docstring for the sources)."""

    name: ClassVar[str] = "kvm"
    title: ClassVar[str] = "KVM"
    alignment_bytes: ClassVar[int] = KiB
    #: libvirt keeps a live balloon target for the domain's run only (the domain's ID, new at
    #: each start); a domain that starts has its definition's ``<currentMemory>`` as target
    run_key: ClassVar[str | None] = "libvirt_id"
    #: marks live in the running domain's metadata (formatdomain "Metadata": an application's
    #: own element under its namespace, virDomainSetMetadata with VIR_DOMAIN_AFFECT_LIVE): the
    #: live definition is dropped when the domain stops, so a mark lasts the run of the domain
    #: (a domain restored from a save keeps it, as it keeps its target), exactly as a target
    #: does; a cold start, even under the same domain ID, starts without it
    marks: ClassVar[bool] = True
    marks_last_one_run: ClassVar[bool] = True
    ceiling_note: ClassVar[str] = (
        "<memory>, less any virtio-mem device's size (no balloon target takes it: libvirt moves "
        "it through the device's <requested> size)"
    )
    variants: ClassVar[tuple[Variant, ...]] = (
        Variant(
            name="balloon",
            title="KVM",
            mechanism=Mechanism.BALLOON,
            readable=_READABLE,
            set_live=frozenset({"target", "stats_period_seconds"}),
            set_offline=frozenset(
                {"target", "maximum_bytes", "deflate_on_oom", "free_page_reporting", "stats_period_seconds"}
            ),
            target_observable=True,
            notes=(
                "a target is the virtio-balloon target (KiB); the hypervisor reports no error when "
                "the balloon stalls short of it: wait_for_target watches it arrive",
                "maximum_bytes, deflate_on_oom and free_page_reporting change only the definition of a "
                "stopped domain",
            ),
        ),
    )
    kind_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("whole_KiB", InvalidRequestError, "targets and sizes are whole KiB"),
        Rule(
            "no_balloon_device",
            UnsupportedOperationError,
            "without a balloon device a running domain's memory, stats period and deflate-on-OOM "
            "cannot change",
        ),
        Rule(
            "marks_only_while_running",
            InvalidStateError,
            "a mark is kept in the running domain's live metadata, for its run: a powered-off domain "
            "has none and is not marked",
        ),
        Rule("maximum_only_when_off", InvalidStateError, "the maximum changes only with the domain off"),
        Rule(
            "maximum_above_hotplug_maximum",
            InvalidRequestError,
            "the maximum is at most the domain's hotplug ceiling (<maxMemory>): libvirt refuses more",
        ),
        Rule(
            "maximum_below_huge_page",
            InvalidRequestError,
            "a domain backed by huge pages has at least one page of memory: QEMU does not start it with less",
        ),
        Rule(
            "maximum_fixed_by_numa",
            UnsupportedOperationError,
            "the maximum of a domain with guest NUMA nodes is the sum of its nodes' sizes: libvirt "
            "cannot change it with setMemoryFlags (edit the nodes in the definition)",
        ),
        Rule(
            "deflate_on_oom_only_when_off",
            InvalidStateError,
            "deflate-on-OOM (memballoon autodeflate) changes only with the domain off",
        ),
        Rule(
            "free_page_reporting_only_when_off",
            InvalidStateError,
            "free page reporting (memballoon freePageReporting) changes only with the domain off",
        ),
    )
    offline_rules: ClassVar[dict[str, str]] = {
        "maximum_bytes": "maximum_only_when_off",
        "deflate_on_oom": "deflate_on_oom_only_when_off",
        "free_page_reporting": "free_page_reporting_only_when_off",
    }

    @staticmethod
    def canonical_id(ref: str) -> str:
        """A domain's id is its UUID, which libvirt writes in lower case
        (``virDomainGetUUIDString``) and looks up in any case (``virsh domuuid`` output pasted
        in upper case is the same domain).

        >>> KVM.canonical_id("AAAAAAAA-1111-2222-3333-444444444444")
        'aaaaaaaa-1111-2222-3333-444444444444'
        >>> KVM.canonical_id("web01")
        'web01'
        """
        return uuid_form(ref) or ref

    @staticmethod
    def stats_period_to_arm(
        period: int | None, *, has_balloon: bool, option: int, read_only: bool, chosen: bool
    ) -> int | None:
        """The stats period a session sets on a run of a domain it sees (running or paused) for
        the first time, or ``None`` to leave it: ``option`` where the balloon's period is off,
        unless the session may change nothing (read-only, ``option`` 0) or its caller set a
        period on this run itself (0 included: a choice, never switched back on). Without a
        balloon device there is no period to set. Called by the kvm and qmp backends and the
        fake's kvm flavour alike.

        >>> KVM.stats_period_to_arm(0, has_balloon=True, option=10, read_only=False, chosen=False)
        10
        >>> KVM.stats_period_to_arm(5, has_balloon=True, option=10, read_only=False, chosen=False) is None
        True
        """
        if not has_balloon or period != 0 or option <= 0 or read_only or chosen:
            return None
        return option

    def target_ceiling(
        self,
        vm: VM,
        stats: MemoryStats,
        config: MemoryConfig,
        *,
        host_memory_bytes: int | None = None,
    ) -> int | None:
        """``<memory>`` less the domain's virtio-mem devices (see the module docstring).

        >>> from datetime import datetime, timezone
        >>> from hvballoon.models import VM, Mechanism, MemoryConfig, MemoryStats
        >>> vm = VM(id="u", name="g", backend="kvm")
        >>> cfg = MemoryConfig(vm=vm, mechanism=Mechanism.BALLOON, maximum_bytes=8 * 2**30,
        ...                    extra={"virtio_mem_bytes": 4 * 2**30})
        >>> st = MemoryStats(vm=vm, mechanism=Mechanism.BALLOON, collected_at=datetime.now(timezone.utc))
        >>> KVM.target_ceiling(vm, st, cfg) // 2**30
        4
        """
        maximum = super().target_ceiling(vm, stats, config, host_memory_bytes=host_memory_bytes)
        if maximum is None:
            return None
        return max(maximum - virtio_mem_bytes(config), 0)

    def withhold(self, caps: Capabilities, config: MemoryConfig) -> Capabilities:
        """Without a balloon device a domain takes no live target and has no stats period,
        deflate-on-OOM or free page reporting, in any power state (the ``no_balloon_device``
        rule, :data:`NO_BALLOON_DEVICE_NOTE`); its definition's target (``<currentMemory>``) and
        maximum still change with it off.

        >>> from hvballoon.models import VM, Mechanism, MemoryConfig
        >>> cfg = MemoryConfig(vm=VM(id="u", name="g", backend="kvm"), mechanism=Mechanism.BALLOON,
        ...                    extra={"balloon_model": "none"})
        >>> caps = KVM.vm_capabilities(cfg, backend="kvm")
        >>> caps.can_set("target", running=True), caps.can_set("target", running=False), caps.withheld_rule
        (False, True, 'no_balloon_device')
        """
        if has_balloon_device(config):
            return caps
        withheld = (caps.set_live & {"target"}) | ((caps.set_live | caps.set_offline) & _BALLOON_SETTINGS)
        return caps.model_copy(
            update={
                "set_live": caps.set_live - withheld,
                "set_offline": caps.set_offline - _BALLOON_SETTINGS,
                "withheld": withheld,
                "withheld_rule": "no_balloon_device",
                "withheld_reason": NO_BALLOON_DEVICE_NOTE,
            }
        )

    def no_figures_reason(self, config: MemoryConfig) -> str | None:
        """A domain without a balloon device (:data:`NO_BALLOON_DEVICE_NOTE`)."""
        return None if has_balloon_device(config) else NO_BALLOON_DEVICE_NOTE

    def frees_nothing_reason(self, config: MemoryConfig) -> str | None:
        """A domain with a device assigned through VFIO-PCI (:data:`VFIO_PINNED_NOTE`) or with
        memory backed by huge pages (:data:`HUGEPAGES_NOTE`); the first that applies."""
        return _frees_nothing_note(config)

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        if not is_off(vm) and not has_balloon_device(config):
            model = config.extra.get("balloon_model") or "none"
            self.refuse(
                "no_balloon_device",
                f"{vm.name!r} has no memory balloon device (<memballoon model='{model}'>): "
                "its memory cannot be changed while it runs",
                vm=vm,
            )
        if target_bytes % KiB:
            self.refuse(
                "whole_KiB", f"KVM targets are whole KiB, got {target_bytes} bytes", vm=vm, asked=target_bytes
            )

    def check_config(self, vm: VM, config: MemoryConfig) -> None:
        self.check_aligned(vm, {"maximum_bytes": config.maximum_bytes}, rule="whole_KiB", least=_NO_ZERO)
        ceiling = _above_hotplug_maximum(config, config.maximum_bytes)
        if ceiling is not None and config.maximum_bytes is not None:
            shown_max, shown = format_sizes(config.maximum_bytes, ceiling)
            self.refuse(
                "maximum_above_hotplug_maximum",
                f"{vm.name!r} has a memory of {shown_max} above its hotplug ceiling (<maxMemory> {shown}): "
                "libvirt refuses such a definition",
                vm=vm,
                field="maximum_bytes",
            )

    def _check_request(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> None:
        # whatever the power state: powering the domain off would not help
        nodes = numa_nodes(current)
        if nodes and update.maximum_bytes is not None and update.maximum_bytes != current.maximum_bytes:
            self.refuse(
                "maximum_fixed_by_numa",
                f"the maximum of {vm.name!r} is the sum of its {nodes} guest NUMA nodes' sizes: "
                "libvirt cannot change it with setMemoryFlags (change the nodes in its definition)",
                vm=vm,
                field="maximum_bytes",
            )
        # libvirt's order: the NUMA nodes first, then the hotplug ceiling
        ceiling = _above_hotplug_maximum(current, update.maximum_bytes)
        if ceiling is not None and update.maximum_bytes is not None:
            asked, shown = format_sizes(update.maximum_bytes, ceiling)
            self.refuse(
                "maximum_above_hotplug_maximum",
                f"a maximum of {asked} for {vm.name!r} is above its hotplug ceiling (<maxMemory> "
                f"{shown}): libvirt refuses it (raise <maxMemory> in its definition first)",
                vm=vm,
                field="maximum_bytes",
                asked=update.maximum_bytes,
                hotplug_maximum_bytes=ceiling,
            )

        page = _size_extra(current, HUGEPAGE_BYTES) if current.extra.get(HUGEPAGES) is True else None
        below = below_one_huge_page(update.maximum_bytes, page) if page and update.maximum_bytes else None
        if below is not None and update.maximum_bytes is not None:
            asked, shown = format_sizes(update.maximum_bytes, page or 0)
            self.refuse(
                "maximum_below_huge_page",
                f"a maximum of {asked} for {vm.name!r} is less than one of the {shown} huge pages backing "
                f"its memory: QEMU would not start it ({below})",
                vm=vm,
                field="maximum_bytes",
                asked=update.maximum_bytes,
                hugepage_bytes=page,
            )

    def _check_changes(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        # (the balloon device's settings on a domain without one: refused as withheld, :meth:`withhold`)
        self.check_aligned(vm, {"maximum_bytes": plan.maximum_bytes}, rule="whole_KiB", least=_NO_ZERO)


#: A memory size of zero is refused (the nearest size offered instead of one that is not)
_NO_ZERO = {"maximum_bytes": KiB}

#: The KVM kind.
KVM = KVMKind()
