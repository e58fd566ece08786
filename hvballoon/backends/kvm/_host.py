"""The host behind a libvirt connection: its memory figures, read in one worker call.

Physical and free memory come from ``getMemoryStats`` of all cells (``/proc/meminfo``'s
MemTotal, and MemFree + Buffers + Cached: what the host can hand out without swapping) where
the driver has it, else from ``getInfo`` (whole MiB) and ``getFreeMemory`` (bytes, the NUMA
cells' free memory). ``shared_bytes`` is what KSM saves (``shm_pages_sharing`` × the base page
size from the capabilities, read once). A driver without one of these calls (the test driver
has no node memory stats and no KSM) leaves its figures ``None``.

The huge-page pool (docs/backends/kvm.md): its pages are in MemTotal but never in MemFree, nor
in what a balloon frees. The capabilities' NUMA cells say how many pages of each huge size each
cell holds (``<cell><pages size='2048'>N</pages>``; read once, with the base page size), and
``getFreePages`` (virNodeGetFreePages: one call, only where there is a pool) how many are free.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hvballoon.kinds.kvm import hugepage_pool_extra
from hvballoon.units import KiB, MiB

from ._domain import page_bytes
from ._errors import error_code
from ._native import libvirt, libvirt_error

__all__ = ["HostReader", "HugePagePools", "host_figures"]


class HostReader:
    """Reads the host's raw figures (:func:`host_figures` maps them); the base page size is
    read once per connection."""

    def __init__(self) -> None:
        self.page_bytes: int | None = None
        self.pools: HugePagePools | None = None

    def read(self, conn: Any) -> dict[str, Any]:
        """Every call's raw answer (``None`` for a call this driver does not implement)."""
        if self.page_bytes is None:
            capabilities = _optional(conn.getCapabilities)
            if capabilities is not None:
                self.page_bytes = _base_page_bytes(capabilities)
                self.pools = _huge_page_pools(capabilities)
        pools = self.pools
        return {
            "hugepage_pools": pools,
            "hugepages_free": _optional(lambda: _free_huge_pages(conn, pools))
            if pools and pools.pages
            else None,
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
    sizes = [size for size in map(page_bytes, root.findall("./host/cpu/pages")) if size is not None]
    return min(sizes) if sizes else None


@dataclass(frozen=True)
class HugePagePools:
    """The host's huge-page pools from its capabilities: pages of each huge size (bytes), summed
    over the NUMA cells, and how many cells there are (``getFreePages`` asks each)."""

    pages: dict[int, int]
    cells: int


def _huge_page_pools(capabilities_xml: str) -> HugePagePools | None:
    """Pages of each size above a cell's base one (its smallest) in the capabilities' NUMA cells
    (``<topology><cells><cell><pages unit='KiB' size='2048'>512</pages>``, the base pages first:
    every page of the cell), ``None`` where the capabilities list no cell pages (unknown)."""
    root = ET.fromstring(capabilities_xml)  # noqa: S314 - libvirt's own output
    cells = root.findall("./host/topology/cells/cell")
    pages: dict[int, int] = {}
    listed = False
    for cell in cells:
        counts: dict[int, int] = {}
        for page in cell.findall("pages"):
            size, count = page_bytes(page), (page.text or "").strip()
            if size is not None and count.isdigit():
                counts[size] = int(count)
        listed = listed or bool(counts)
        for size_bytes, n in counts.items():
            if size_bytes > min(counts):
                pages[size_bytes] = pages.get(size_bytes, 0) + n
    if not listed:
        return None
    return HugePagePools(pages={size: n for size, n in sorted(pages.items()) if n}, cells=len(cells))


def _free_huge_pages(conn: Any, pools: HugePagePools) -> dict[int, int] | None:
    """Free pages of each pool's size, summed over the cells (``getFreePages``, KiB sizes);
    ``None`` where the driver answers for no cell (the test driver answers nothing)."""
    sizes = list(pools.pages)
    answer = conn.getFreePages([size // KiB for size in sizes], 0, max(pools.cells, 1), 0)
    if not answer:
        return None
    free = dict.fromkeys(sizes, 0)
    for per_cell in answer.values():
        for size_kib, count in per_cell.items():
            if int(size_kib) * KiB in free:
                free[int(size_kib) * KiB] += int(count)
    return free


def _pool_figures(pools: HugePagePools | None, free: dict[int, int] | None) -> dict[str, Any]:
    """The huge-page pool's figures for ``HostStats.extra`` (the kind's shape, which the fake
    shares): bytes in the pools, bytes free in them (``None``: unknown; 0 with no pool), and
    each size's pages."""
    return hugepage_pool_extra(None if pools is None else pools.pages, free)


def host_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """HostStats figures from :meth:`HostReader.read`'s answers (KiB, MiB and bytes)."""
    info, node, cells_free, ksm = raw["info"], raw["memory_stats"], raw["cells_free"], raw["ksm"]
    extra: dict[str, Any] = {
        "node_info_memory_bytes": int(info[1]) * MiB,
        "numa_cells": int(info[4]),
        "cells_free_bytes": int(cells_free) if cells_free is not None else None,
        **_pool_figures(raw.get("hugepage_pools"), raw.get("hugepages_free")),
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
