"""The host behind a libvirt connection: its memory figures, read in one worker call.

Physical and free memory come from ``getMemoryStats`` of all cells (``/proc/meminfo``'s
MemTotal, and MemFree + Buffers + Cached: what the host can hand out without swapping) where
the driver has it, else from ``getInfo`` (whole MiB) and ``getFreeMemory`` (bytes, the NUMA
cells' free memory). ``shared_bytes`` is what KSM saves (``shm_pages_sharing`` × the base page
size from the capabilities, read once). A driver without one of these calls (the test driver
has no node memory stats and no KSM) leaves its figures ``None``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, TypeVar

from hvballoon.units import KiB, MiB

from ._errors import error_code
from ._native import libvirt, libvirt_error

__all__ = ["HostReader", "host_figures"]


class HostReader:
    """Reads the host's raw figures (:func:`host_figures` maps them); the base page size is
    read once per connection."""

    def __init__(self) -> None:
        self.page_bytes: int | None = None

    def read(self, conn: Any) -> dict[str, Any]:
        """Every call's raw answer (``None`` for a call this driver does not implement)."""
        if self.page_bytes is None:
            self.page_bytes = _optional(lambda: _base_page_bytes(conn.getCapabilities()))
        return {
            "info": conn.getInfo(),
            "memory_stats": _optional(
                lambda: conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
            ),
            "cells_free": _optional(conn.getFreeMemory),
            "ksm": _optional(lambda: conn.getMemoryParameters(0)),
            "page_bytes": self.page_bytes,
        }


#: What a driver that lacks a host call answers (the test driver has no node memory stats).
_UNSUPPORTED_CODES = frozenset(
    {
        libvirt.VIR_ERR_NO_SUPPORT,
        libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
        getattr(libvirt, "VIR_ERR_OPERATION_UNSUPPORTED", libvirt.VIR_ERR_NO_SUPPORT),
    }
)

T = TypeVar("T")


def _optional(call: Callable[[], T]) -> T | None:
    """``call()``, or ``None`` when this driver does not implement it (any other error raises)."""
    try:
        return call()
    except libvirt_error as exc:
        if error_code(exc) in _UNSUPPORTED_CODES:
            return None
        raise


def _base_page_bytes(capabilities_xml: str) -> int | None:
    """The host's smallest page size (``<host><cpu><pages unit='KiB' size='4'/>``), in bytes."""
    root = ET.fromstring(capabilities_xml)  # noqa: S314 - libvirt's own output
    sizes = []
    for page in root.findall("./host/cpu/pages"):
        unit, size = (page.get("unit") or "KiB"), page.get("size")
        if size is not None and size.isdigit() and unit in ("KiB", "K"):
            sizes.append(int(size) * KiB)
    return min(sizes) if sizes else None


def host_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """HostStats figures from :meth:`HostReader.read`'s answers (KiB, MiB and bytes)."""
    info, node, cells_free, ksm = raw["info"], raw["memory_stats"], raw["cells_free"], raw["ksm"]
    extra: dict[str, Any] = {
        "node_info_memory_bytes": int(info[1]) * MiB,
        "numa_cells": int(info[4]),
        "cells_free_bytes": int(cells_free) if cells_free is not None else None,
    }
    figures: dict[str, Any] = {"extra": extra}
    if node and "total" in node and "free" in node:
        cache = sum(int(node.get(k, 0)) for k in ("buffers", "cached")) * KiB
        figures["physical_bytes"] = int(node["total"]) * KiB
        figures["free_bytes"] = int(node["free"]) * KiB + cache
        extra.update(source="getMemoryStats", unused_bytes=int(node["free"]) * KiB, cache_bytes=cache)
    else:
        figures["physical_bytes"] = int(info[1]) * MiB
        figures["free_bytes"] = int(cells_free) if cells_free is not None else None
        extra["source"] = "getInfo+getFreeMemory"
    if ksm:
        extra.update({f"ksm_{k.removeprefix('shm_')}": v for k, v in ksm.items()})
        sharing, page = ksm.get("shm_pages_sharing"), raw["page_bytes"]
        if sharing is not None and page is not None:
            figures["shared_bytes"] = int(sharing) * page
    return figures
