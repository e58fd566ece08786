"""What a domain's XML says about its memory, and libvirt's stats mapped onto hvballoon's models.

Two sources feed :func:`stats_from_record`, both shaped like one record of
``virConnectGetAllDomainStats(STATE | BALLOON)`` (``"balloon.current"``, ``"balloon.maximum"``,
``"balloon.available"``, … all in KiB): the bulk call itself, or, for a driver that does not
fill the balloon group (libvirt's test driver), :func:`record_from_per_domain`, which reshapes
``virDomainMemoryStats`` (``actual``, ``last_update``, …) and ``virDomainGetInfo`` into the
same keys. One mapping, whatever the source:

==========================  =====================================================
MemoryStats field           libvirt figure (KiB → bytes)
==========================  =====================================================
configured_bytes            ``balloon.maximum`` (``<memory>``, virDomainGetMaxMemory)
current_bytes               ``balloon.current`` (memoryStats ``actual``: the balloon now)
target_bytes                the target this backend last set on the running domain
                            (libvirt keeps no live target); when off, ``<currentMemory>``
ballooned_bytes             ``balloon.maximum`` − ``balloon.current``
guest_total_bytes           ``balloon.available`` (the guest's MemTotal)
guest_free_bytes            ``balloon.unused`` (MemFree)
guest_available_bytes       ``balloon.usable`` (≈ MemAvailable)
guest_used_bytes            ``available`` − ``usable``; else ``available`` − ``unused`` − ``disk_caches``
guest_cache_bytes           ``balloon.disk_caches``
swap_in_bytes / swap_out    ``balloon.swap_in`` / ``balloon.swap_out``
major_faults                ``balloon.major_fault`` (a count, not KiB)
host_consumed_bytes         ``balloon.rss`` (the QEMU process's resident memory)
guest_report_age_seconds    now − ``balloon.last-update`` (host clock, whole seconds)
==========================  =====================================================
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hvballoon.models import VM, Mechanism, MemoryStats, PowerState
from hvballoon.virtio_balloon import Freshness, GuestReport, guest_figures

from ._native import libvirt

__all__ = [
    "DomainXML",
    "Freshness",
    "page_bytes",
    "parse_domain_xml",
    "power_state",
    "record_from_per_domain",
    "stats_from_record",
]

KiB = 1024

_UNITS = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": KiB,
    "kib": KiB,
    "mb": 1000**2,
    "m": KiB**2,
    "mib": KiB**2,
    "gb": 1000**3,
    "g": KiB**3,
    "gib": KiB**3,
    "tb": 1000**4,
    "t": KiB**4,
    "tib": KiB**4,
    "pb": 1000**5,
    "p": KiB**5,
    "pib": KiB**5,
    "eb": 1000**6,
    "e": KiB**6,
    "eib": KiB**6,
}

#: memoryStats() key → the bulk group's key.
_PER_DOMAIN_KEYS = {
    "actual": "balloon.current",
    "last_update": "balloon.last-update",
    "swap_in": "balloon.swap_in",
    "swap_out": "balloon.swap_out",
    "major_fault": "balloon.major_fault",
    "minor_fault": "balloon.minor_fault",
    "unused": "balloon.unused",
    "available": "balloon.available",
    "usable": "balloon.usable",
    "rss": "balloon.rss",
    "disk_caches": "balloon.disk_caches",
    "hugetlb_pgalloc": "balloon.hugetlb_pgalloc",
    "hugetlb_pgfail": "balloon.hugetlb_pgfail",
}


def power_state(state: int | None) -> PowerState:
    """libvirt's ``virDomainState`` → :class:`PowerState`.

    A domain that is blocked on I/O or shutting down still holds its memory: running. A crashed
    one is still active too: libvirt leaves a guest in ``VIR_DOMAIN_CRASHED`` only when its
    ``<on_crash>`` is ``preserve`` (QEMU kept, vCPUs stopped, memory held; the other actions
    destroy or restart it, and a destroyed one is ``SHUTOFF``), so it is paused, not stopped:
    its maximum cannot change and a target goes to the live balloon.
    """
    mapping = {
        libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
        libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
        libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.RUNNING,
        libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
        libvirt.VIR_DOMAIN_CRASHED: PowerState.PAUSED,
        libvirt.VIR_DOMAIN_SHUTOFF: PowerState.STOPPED,
        libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
    }
    return mapping.get(state, PowerState.UNKNOWN)


def _active(state: PowerState) -> bool:
    # a paused domain's QEMU still holds the memory and accepts a balloon target
    return state in (PowerState.RUNNING, PowerState.PAUSED)


@dataclass(frozen=True)
class DomainXML:
    """The memory-related part of a domain definition (sizes in bytes)."""

    memory_bytes: int | None
    current_memory_bytes: int | None
    hotplug_maximum_bytes: int | None
    min_guarantee_bytes: int | None
    balloon_model: str | None
    autodeflate: bool | None
    stats_period_seconds: int | None
    free_page_reporting: bool | None = None
    numa_nodes: int = 0
    #: the sizes (``<target><size>``) of the ``<memory model='virtio-mem'>`` devices, summed:
    #: part of ``<memory>``, but no balloon target may take it (libvirt moves a virtio-mem
    #: device with virDomainUpdateDeviceFlags' ``<requested>`` only)
    virtio_mem_bytes: int = 0
    #: the devices assigned through VFIO-PCI (``<hostdev>`` and ``<interface type='hostdev'>``,
    #: see :func:`vfio_devices`): QEMU pins all guest memory and its balloon discards nothing
    vfio_devices: int = 0
    #: the memory is backed by huge pages (``<memoryBacking><hugepages>``, see
    #: :func:`hugepages`): the balloon gives the host nothing back
    hugepages: bool = False
    #: the huge page size the definition names (the largest ``<page size>``), bytes; ``None``
    #: without huge pages or where it names none (the host's default huge page size)
    hugepage_bytes: int | None = None

    @property
    def has_balloon(self) -> bool:
        return self.balloon_model not in (None, "none")


def _size(elem: ET.Element | None) -> int | None:
    if elem is None or elem.text is None or not elem.text.strip():
        return None
    factor = _UNITS.get((elem.get("unit") or "KiB").lower())
    if factor is None:
        return None
    return int(elem.text.strip()) * factor


def _vfio_pci(device: ET.Element) -> bool:
    """A PCI device assigned through VFIO: libvirt's driver is VFIO unless another is named."""
    driver = device.find("driver")
    return driver is None or driver.get("name") in (None, "vfio")


def vfio_devices(root: ET.Element) -> int:
    """How many devices the domain assigns through VFIO-PCI: a ``<hostdev mode='subsystem'>``
    of type ``pci`` (driver ``vfio``, libvirt's default), a mediated one (``type='mdev'``) of
    model ``vfio-pci`` (a ``vfio-ccw`` or ``vfio-ap`` one leaves discarding on in QEMU), and an
    ``<interface type='hostdev'>`` (an SR-IOV function assigned as a NIC)."""
    found = 0
    for device in root.findall("./devices/hostdev"):
        if device.get("mode", "subsystem") != "subsystem":
            continue
        kind = device.get("type")
        if (kind == "pci" and _vfio_pci(device)) or (kind == "mdev" and device.get("model") == "vfio-pci"):
            found += 1
    for device in root.findall("./devices/interface"):
        if device.get("type") == "hostdev" and _vfio_pci(device):
            found += 1
    return found


def hugepages(root: ET.Element) -> tuple[bool, int | None]:
    """Whether the domain's memory is backed by huge pages (``<memoryBacking><hugepages>``,
    formatdomain "Memory Backing"), and the largest page size its ``<page>`` elements name
    (``size`` in ``unit``, KiB by default), ``None`` where none is named (the host's default).
    A ``<page>`` tied to some guest NUMA nodes (``nodeset``) counts as the whole domain's: the
    balloon cannot choose the nodes its pages come from."""
    element = root.find("./memoryBacking/hugepages")
    if element is None:
        return False, None
    sizes = [size for size in map(page_bytes, element.findall("page")) if size is not None]
    return True, (max(sizes) if sizes else None)


def page_bytes(page: ET.Element) -> int | None:
    """The size of a libvirt page element (a domain's ``<hugepages><page>``, the capabilities'
    ``<pages>``): ``size`` in ``unit``, KiB by default, in bytes; ``None`` where unreadable."""
    size = (page.get("size") or "").strip()
    factor = _UNITS.get((page.get("unit") or "KiB").lower())
    return int(size) * factor if size.isdigit() and factor is not None else None


def parse_domain_xml(text: str) -> DomainXML:
    """Read the memory settings out of a domain's XML (libvirt's own output: trusted)."""
    root = ET.fromstring(text)  # noqa: S314 - XML produced by libvirt, not by a user
    backed = hugepages(root)
    balloon = root.find("./devices/memballoon")
    model = balloon.get("model") if balloon is not None else None
    autodeflate = None
    reporting = None
    period = None
    if balloon is not None and model != "none":
        autodeflate = balloon.get("autodeflate") == "on"
        reporting = balloon.get("freePageReporting") == "on"
        stats = balloon.find("stats")
        period = int(stats.get("period", "0")) if stats is not None else 0
    return DomainXML(
        memory_bytes=_size(root.find("memory")),
        current_memory_bytes=_size(root.find("currentMemory")),
        hotplug_maximum_bytes=_size(root.find("maxMemory")),
        min_guarantee_bytes=_size(root.find("./memtune/min_guarantee")),
        balloon_model=model,
        autodeflate=autodeflate,
        stats_period_seconds=period,
        free_page_reporting=reporting,
        numa_nodes=len(root.findall("./cpu/numa/cell")),
        virtio_mem_bytes=sum(
            _size(device.find("./target/size")) or 0
            for device in root.findall("./devices/memory")
            if device.get("model") == "virtio-mem"
        ),
        vfio_devices=vfio_devices(root),
        hugepages=backed[0],
        hugepage_bytes=backed[1],
    )


#: The first value that cannot be a figure: libvirt's ``unsigned long long`` holding a negative
#: number (a driver that computed a size in a signed ``int`` and overflowed: libvirt's test
#: driver does for a domain of 2 TiB or more) or the ``-1`` of "not reported".
_WRAPPED = 2**63


def _figure(value: Any) -> int | None:
    """A KiB figure or count as libvirt gives it, or ``None`` where it cannot be one."""
    if value is None:
        return None
    value = int(value)
    return value if 0 <= value < _WRAPPED else None


def record_from_per_domain(info: list[int], memstats: dict[str, int] | None) -> dict[str, int]:
    """``virDomainGetInfo`` + ``virDomainMemoryStats`` reshaped as one bulk-stats record.

    A figure that cannot be one (a wrapped negative) is left out, so the balloon's size falls
    back on ``info()``'s and a guest figure is missing rather than absurd. A report whose
    ``actual`` is ``info()``'s balloon cut to 32 bits (libvirt's test driver's, for a balloon of
    2 TiB or more: 4 TiB reads 0, 5 TiB 1 TiB) is left out whole: its figures were worked out
    from that cut value, so even those that look like sizes are wrong.
    """
    record = {"state.state": int(info[0]), "balloon.maximum": int(info[1]), "balloon.current": int(info[2])}
    if memstats and _cut_to_32_bits(memstats.get("actual"), int(info[2])):
        record[_REPORT_CUT] = 1
        return record
    for key, value in (memstats or {}).items():
        figure = _figure(value)
        if key in _PER_DOMAIN_KEYS and figure is not None:
            record[_PER_DOMAIN_KEYS[key]] = figure
    return record


#: Marks a per-domain record whose balloon report was left out as cut to 32 bits.
_REPORT_CUT = "hvballoon.report_cut_to_32_bits"
_CUT_NOTE = (
    "libvirt's balloon report is this balloon's size cut to 32 bits (a driver counting KiB in"
    " an int: 2 TiB or more), so none of its figures is given"
)


def _cut_to_32_bits(actual: Any, current: int) -> bool:
    """Whether memoryStats' ``actual`` differs from ``info()``'s balloon only above bit 31."""
    return actual is not None and int(actual) != current and (current - int(actual)) % 2**32 == 0


def _b(record: dict[str, Any], key: str) -> int | None:
    value = _figure(record.get(key))
    return value * KiB if value is not None else None


def stats_from_record(
    vm: VM,
    record: dict[str, Any],
    *,
    target_bytes: int | None,
    freshness: Freshness,
    default_period: int,
    now: float,
    collected_at: datetime | None = None,
) -> MemoryStats:
    """One :class:`MemoryStats` from one bulk-shaped record (see the module's table).

    Guest figures are reported only from a report the guest made while a stats period was
    running; before that they are ``None`` and ``stale`` is True — never zeros.
    """
    at = collected_at or datetime.fromtimestamp(now, tz=timezone.utc)
    state = vm.power_state
    maximum = _b(record, "balloon.maximum")
    current = _b(record, "balloon.current")
    extra: dict[str, Any] = {"libvirt_state": record.get("state.state")}
    if not _active(state):
        # <currentMemory> of the definition: what the balloon is set to when it starts
        return MemoryStats(
            vm=vm,
            mechanism=Mechanism.BALLOON,
            collected_at=at,
            configured_bytes=maximum,
            target_bytes=current,
            stale=True,
            extra=extra,
        )
    fields: dict[str, Any] = {
        "configured_bytes": maximum,
        "current_bytes": current,
        "target_bytes": target_bytes,
        "ballooned_bytes": max(0, maximum - current) if maximum is not None and current is not None else None,
        "host_consumed_bytes": _b(record, "balloon.rss"),
    }
    guest, guest_extra, stale = guest_figures(
        _guest_report(record), freshness, default_period=default_period, now=now
    )
    fields.update(guest)
    extra.update(guest_extra)
    if record.get(_REPORT_CUT):
        extra["stats_note"] = _CUT_NOTE
    return MemoryStats(
        vm=vm, mechanism=Mechanism.BALLOON, collected_at=at, stale=stale, extra=extra, **fields
    )


def _guest_report(record: dict[str, Any]) -> GuestReport:
    """The guest's balloon report held in a bulk-shaped record (KiB → bytes)."""
    major = record.get("balloon.major_fault")
    minor = record.get("balloon.minor_fault")
    return GuestReport(
        last_update=_figure(record.get("balloon.last-update")),
        total_bytes=_b(record, "balloon.available"),
        free_bytes=_b(record, "balloon.unused"),
        available_bytes=_b(record, "balloon.usable"),
        cache_bytes=_b(record, "balloon.disk_caches"),
        swap_in_bytes=_b(record, "balloon.swap_in"),
        swap_out_bytes=_b(record, "balloon.swap_out"),
        major_faults=_figure(major),
        minor_faults=_figure(minor),
    )
