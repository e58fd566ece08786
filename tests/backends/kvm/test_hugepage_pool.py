"""The host's huge-page pool in its memory picture (``HostStats.extra``): its pages are part of
MemTotal and never of MemFree, so an operator sees why "free" leaves them out. The pool's size
comes from the capabilities' NUMA cells (read once, with the base page size), its free pages
from ``getFreePages`` (one call, only where there is a pool)."""

from __future__ import annotations

from typing import Any

import pytest

import hvballoon
from hvballoon.backends.kvm._host import HostReader, host_figures

pytest.importorskip("libvirt")

KiB, MiB, GiB = 2**10, 2**20, 2**30


def _capabilities(cells: list[dict[int, int]]) -> str:
    """Capabilities XML as the QEMU driver writes it: each cell's pages, the base size first."""
    body = "".join(
        f"<cell id='{i}'><memory unit='KiB'>16777216</memory>"
        + "".join(f"<pages unit='KiB' size='{kib}'>{n}</pages>" for kib, n in pages.items())
        + "</cell>"
        for i, pages in enumerate(cells)
    )
    return (
        "<capabilities><host><cpu><arch>x86_64</arch><pages unit='KiB' size='4'/>"
        "<pages unit='KiB' size='2048'/><pages unit='KiB' size='1048576'/></cpu>"
        f"<topology><cells num='{len(cells)}'>{body}</cells></topology></host></capabilities>"
    )


class _Conn:
    """The calls HostReader makes, answered as a QEMU host with ``cells`` would; counts them."""

    def __init__(self, cells: list[dict[int, int]], free: dict[int, dict[int, int]] | None) -> None:
        self.cells, self.free, self.calls = cells, free, {"getCapabilities": 0, "getFreePages": 0}

    def getCapabilities(self) -> str:
        self.calls["getCapabilities"] += 1
        return _capabilities(self.cells)

    def getFreePages(self, pages: list[int], start: int, count: int, flags: int = 0) -> dict[int, Any]:
        self.calls["getFreePages"] += 1
        assert start == 0 and count == len(self.cells) and flags == 0
        assert all(p > 4 for p in pages)  # huge sizes only
        return {cell: {p: per[p] for p in pages if p in per} for cell, per in (self.free or {}).items()}

    def getInfo(self) -> list[Any]:
        return ["x86_64", 32768, 8, 2000, 2, 1, 4, 1]

    def getMemoryStats(self, cell: int, flags: int) -> dict[str, int]:
        return {"total": 32 * GiB // KiB, "free": 8 * GiB // KiB, "buffers": 0, "cached": 0}

    def getFreeMemory(self) -> int:
        return 8 * GiB

    def getMemoryParameters(self, flags: int) -> dict[str, int]:
        return {}


def test_the_pool_and_its_free_pages_are_in_the_hosts_figures() -> None:
    # 2 cells: 4096 pages of 2 MiB on each (16 GiB), 2 pages of 1 GiB on cell 1
    cells = [{4: 1000, 2048: 4096, 1048576: 0}, {4: 1000, 2048: 4096, 1048576: 2}]
    conn = _Conn(cells, free={0: {2048: 100, 1048576: 0}, 1: {2048: 28, 1048576: 1}})
    reader = HostReader()
    figures = host_figures(reader.read(conn))
    extra = figures["extra"]
    assert extra["hugepage_pool_bytes"] == 8192 * 2 * MiB + 2 * GiB
    assert extra["hugepage_pool_free_bytes"] == 128 * 2 * MiB + 1 * GiB
    assert extra["hugepage_pools"] == [
        {"page_bytes": 2 * MiB, "pages": 8192, "free_pages": 128},
        {"page_bytes": GiB, "pages": 2, "free_pages": 1},
    ]
    # what the host can hand out is MemFree + Buffers + Cached: the pool's free pages are not in it
    assert figures["free_bytes"] == 8 * GiB
    reader.read(conn)
    assert conn.calls == {"getCapabilities": 1, "getFreePages": 2}  # the pool's size once, free each read


def test_a_host_without_a_pool_says_it_is_empty_and_asks_for_no_free_pages() -> None:
    conn = _Conn([{4: 1000, 2048: 0, 1048576: 0}], free=None)
    extra = host_figures(HostReader().read(conn))["extra"]
    assert (extra["hugepage_pool_bytes"], extra["hugepage_pool_free_bytes"], extra["hugepage_pools"]) == (
        0,
        0,
        [],
    )
    assert conn.calls["getFreePages"] == 0


def test_a_driver_that_answers_no_free_pages_leaves_them_unknown() -> None:
    conn = _Conn([{4: 1000, 2048: 512}], free={})
    extra = host_figures(HostReader().read(conn))["extra"]
    assert extra["hugepage_pool_bytes"] == GiB and extra["hugepage_pool_free_bytes"] is None
    assert extra["hugepage_pools"] == [{"page_bytes": 2 * MiB, "pages": 512, "free_pages": None}]


def test_capabilities_without_cell_pages_leave_the_pool_unknown() -> None:
    class _Old(_Conn):
        def getCapabilities(self) -> str:
            return "<capabilities><host><cpu><pages unit='KiB' size='4'/></cpu></host></capabilities>"

    extra = host_figures(HostReader().read(_Old([], free=None)))["extra"]
    assert extra["hugepage_pool_bytes"] is None and extra["hugepage_pool_free_bytes"] is None


def test_the_test_drivers_host_has_an_empty_pool() -> None:
    """libvirt's test driver lists 2 MiB and 1 GiB pages in both its cells, none in a pool (its
    second cell's base pages are 8 KiB: not huge pages)."""
    with hvballoon.connect("test:///default") as hv:
        (h,) = hv.get_host_stats()
    assert (
        h.extra["hugepage_pool_bytes"],
        h.extra["hugepage_pool_free_bytes"],
        h.extra["hugepage_pools"],
    ) == (
        0,
        0,
        [],
    )


def test_hvballoon_host_says_the_pool_is_not_in_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line under the host table says how big the pool is and that free leaves it out; none for
    a host without a pool. (The test driver's host has none: its capabilities are given one.)"""
    from click.testing import CliRunner

    from hvballoon.backends.kvm import _host
    from hvballoon.cli import main

    plain = CliRunner().invoke(main, ["host", "test:///default"])
    assert plain.exit_code == 0 and "huge-page pool" not in plain.output
    monkeypatch.setattr(_host, "_huge_page_pools", lambda xml: _host.HugePagePools({2 * MiB: 512}, 2))
    shown = CliRunner().invoke(main, ["host", "test:///default"])
    assert shown.exit_code == 0, shown.output
    (line,) = [x for x in shown.output.splitlines() if "huge-page pool" in x]
    assert "a huge-page pool of 1 GiB, in physical but never in free" in line  # free pages unknown here


def test_the_pool_line_says_its_free_pages_where_known() -> None:
    from datetime import datetime, timezone

    from hvballoon.cli.host import pool_footnotes
    from hvballoon.models import HostStats

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    pooled = HostStats(
        host="kvm01",
        backend="kvm",
        collected_at=at,
        extra={"hugepage_pool_bytes": 16 * GiB, "hugepage_pool_free_bytes": 2 * GiB},
    )
    empty = HostStats(host="kvm02", backend="kvm", collected_at=at, extra={"hugepage_pool_bytes": 0})
    assert pool_footnotes([pooled, empty]) == [
        "kvm01: a huge-page pool of 16 GiB, 2 GiB of it free, in physical but never in free (only guests "
        "backed by huge pages use it)"
    ]
