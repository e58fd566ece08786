"""The real-KVM-guest test peer, proved with the raw libvirt API (no hvballoon code).

One guest (512 MiB, TCG, virtio-balloon) is booted for the module and shared by the tests that
leave it as they found it; the over-inflation tests, which may kill their guest, get their own.
Timings are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.support.kvm_guest.harness import GuestGone, GuestHandle, KvmGuestHarness, prerequisites
from tests.support.require import require

pytestmark = [pytest.mark.peer, pytest.mark.slow]

T = TypeVar("T")

MIB = 1024  # KiB per MiB: libvirt and /proc/meminfo both count in KiB ("kB")
GUEST_MIB = 512
STATS_PERIOD = 2


def _poll(
    fn: Callable[[], T], timeout: float, what: str, interval: float = 0.05
) -> tuple[T, float]:
    """Call ``fn`` until it returns something truthy; that value and the seconds it took."""
    start = time.monotonic()
    while True:
        value = fn()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _report(label: str, seconds: float) -> None:
    print(f"\n[kvm-guest timing] {label}: {seconds:.2f} s")


def _actual(guest: GuestHandle) -> int:
    return int(guest.domain.memoryStats()["actual"])


def _set_target(guest: GuestHandle, mib: int) -> None:
    import libvirt

    guest.domain.setMemoryFlags(mib * MIB, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def _wait_stall(guest: GuestHandle, quiet: float = 1.0, timeout: float = 20.0) -> int:
    """Wait until the balloon stops moving; where it stopped (KiB)."""
    last, since, start = _actual(guest), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() - start > timeout:
            raise AssertionError("the balloon never settled")
        time.sleep(0.1)
        now = _actual(guest)
        if now != last:
            last, since = now, time.monotonic()
    return last


@pytest.fixture(scope="module")
def harness() -> Iterator[KvmGuestHarness]:
    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))
    start = time.monotonic()
    with KvmGuestHarness() as h:
        _report("harness open (guest build + first connect)", time.monotonic() - start)
        yield h


@pytest.fixture(scope="module")
def guest(harness: KvmGuestHarness) -> Iterator[GuestHandle]:
    start = time.monotonic()
    g = harness.boot("hvb-peer-main", GUEST_MIB)
    try:
        _report("createXML", time.monotonic() - start)
        g.wait_booted(90)
        _report("boot until /init answers", time.monotonic() - start)
        yield g
    finally:
        harness.destroy(g)


@pytest.fixture
def stats_on(guest: GuestHandle) -> GuestHandle:
    """The shared guest with live balloon statistics (period 2 s)."""
    import libvirt

    guest.domain.setMemoryStatsPeriod(STATS_PERIOD, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    return guest


def test_guest_runs_the_balloon_driver(guest: GuestHandle) -> None:
    guest.ping()
    drivers = guest.command("run ls /sys/bus/virtio/drivers")
    assert "virtio_balloon" in drivers.split()
    assert guest.domain.isActive()


def test_stats_are_a_frozen_snapshot_until_a_period_is_set(guest: GuestHandle) -> None:
    """The driver reports once when it loads; only a stats period makes reports repeat."""
    import libvirt

    dom = guest.domain
    dom.setMemoryStatsPeriod(0, libvirt.VIR_DOMAIN_AFFECT_LIVE)  # off, as after boot
    frozen = dom.memoryStats()
    # Not empty: the values are from the driver's load at boot (or the last report).
    assert {"actual", "available", "unused", "usable", "last_update", "rss"} <= frozen.keys()
    assert frozen["actual"] == GUEST_MIB * MIB
    free_before = guest.meminfo()["MemFree"]
    guest.hold(32)
    try:
        assert free_before - guest.meminfo()["MemFree"] >= 31 * MIB
        time.sleep(0.5)
        still = dom.memoryStats()
        assert still["last_update"] == frozen["last_update"]
        assert still["unused"] == frozen["unused"]

        dom.setMemoryStatsPeriod(STATS_PERIOD, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        fresh, took = _poll(
            lambda: (st := dom.memoryStats())["last_update"] > frozen["last_update"] and st,
            STATS_PERIOD * 2 + 1,
            "a fresh balloon report",
        )
        _report("setMemoryStatsPeriod until a fresh report", took)
        assert abs(fresh["unused"] - guest.meminfo()["MemFree"]) < 4 * MIB
    finally:
        guest.release()


def test_stats_match_guest_meminfo(stats_on: GuestHandle) -> None:
    dom = stats_on.domain

    def consistent() -> tuple[dict[str, int], dict[str, int]] | None:  # None: not yet
        stats, info = dom.memoryStats(), stats_on.meminfo()
        if (
            stats["available"] == info["MemTotal"]
            and abs(stats["unused"] - info["MemFree"]) < 4 * MIB
            and abs(stats["usable"] - info["MemAvailable"]) < 4 * MIB
        ):
            return stats, info
        return None

    # The figures are as of the guest's last report (every STATS_PERIOD s), so wait for one
    # report after whatever the guest did last. Then available is MemTotal to the KiB
    # (tolerance 0); unused/usable are MemFree/MemAvailable give or take the few pages an
    # idle guest moves between its report and our read.
    found, _ = _poll(consistent, STATS_PERIOD * 2 + 1, "stats == /proc/meminfo", 0.25)
    assert found is not None
    stats, info = found
    assert GUEST_MIB * MIB * 0.85 < info["MemTotal"] < GUEST_MIB * MIB
    assert stats["actual"] == GUEST_MIB * MIB


def test_inflate_and_deflate(stats_on: GuestHandle) -> None:
    total_before = stats_on.meminfo()["MemTotal"]
    start = time.monotonic()
    _set_target(stats_on, 256)
    _, took = _poll(lambda: _actual(stats_on) == 256 * MIB, 30, "inflation to 256 MiB")
    _report("inflate 512 -> 256 MiB", took)
    total_inflated = stats_on.meminfo()["MemTotal"]
    assert total_before - total_inflated == (GUEST_MIB - 256) * MIB
    _, _lag = _poll(
        lambda: stats_on.domain.memoryStats()["available"] == total_inflated,
        STATS_PERIOD * 2 + 1,
        "available to follow the balloon",
    )
    _report("inflate until 'available' follows", time.monotonic() - start)

    start = time.monotonic()
    _set_target(stats_on, GUEST_MIB)
    _, took = _poll(lambda: _actual(stats_on) == GUEST_MIB * MIB, 30, "deflation to 512 MiB")
    _report("deflate 256 -> 512 MiB", took)
    assert stats_on.meminfo()["MemTotal"] == total_before


def test_hold_uses_anonymous_memory(stats_on: GuestHandle) -> None:
    base = stats_on.meminfo()
    start = time.monotonic()
    pid = stats_on.hold(64)
    _report("hold 64 MiB", time.monotonic() - start)
    try:
        held = stats_on.meminfo()
        assert stats_on.status()["hold_pids"] == [pid]
        grown = held["AnonPages"] - base["AnonPages"]
        assert 64 * MIB <= grown < 68 * MIB
        assert base["MemFree"] - held["MemFree"] >= 63 * MIB
        assert held["Shmem"] - base["Shmem"] < 2 * MIB
    finally:
        stats_on.release()
    after = stats_on.meminfo()
    assert after["AnonPages"] - base["AnonPages"] < 2 * MIB


def test_tmpfs_uses_memory_the_guest_cannot_free(stats_on: GuestHandle) -> None:
    dom = stats_on.domain
    base = stats_on.meminfo()
    start = time.monotonic()
    stats_on.tmpfs(64)
    _report("tmpfs 64 MiB", time.monotonic() - start)
    try:
        filled = stats_on.meminfo()
        assert stats_on.status()["tmpfs_kib"] == 64 * MIB
        assert abs(filled["Shmem"] - base["Shmem"] - 64 * MIB) < MIB
        # Unlike page cache, tmpfs pages do not count as available: there is no swap.
        assert base["MemAvailable"] - filled["MemAvailable"] >= 63 * MIB
        _poll(
            lambda: abs(dom.memoryStats()["usable"] - filled["MemAvailable"]) < 4 * MIB,
            STATS_PERIOD * 2 + 1,
            "usable to follow MemAvailable",
        )
    finally:
        stats_on.release()
    assert stats_on.meminfo()["Shmem"] - base["Shmem"] < 2 * MIB


def test_overinflation_oom_kills_an_ordinary_process(stats_on: GuestHandle) -> None:
    """Past what is free, the balloon stalls with no error; the OOM killer then frees it."""
    pid = stats_on.hold(300)
    try:
        _set_target(stats_on, 128)
        stalled = _wait_stall(stats_on)
        _report(f"balloon stalled at {stalled // MIB} MiB (target 128)", 0)
        assert stalled > 300 * MIB
        assert stats_on.domain.isActive()
        # Any allocation now runs the guest out of memory; the OOM killer picks the holder.
        stats_on.hold(8)
        _, took = _poll(lambda: _actual(stats_on) == 128 * MIB, 30, "the balloon to reach 128 MiB")
        _report("after the OOM kill, balloon reached 128 MiB", took)
        assert pid not in stats_on.status()["hold_pids"]
        assert f"Killed process {pid} (awk)" in stats_on.console_log.read_text(errors="replace")
    finally:
        _set_target(stats_on, GUEST_MIB)
        _poll(lambda: _actual(stats_on) == GUEST_MIB * MIB, 30, "deflation")
        stats_on.release()
    total = stats_on.meminfo()["MemTotal"]
    _poll(
        lambda: stats_on.domain.memoryStats()["available"] == total,
        STATS_PERIOD * 2 + 1,
        "available to follow the deflation",
    )


@pytest.fixture(scope="module")
def tmpfs_guests(harness: KvmGuestHarness) -> Iterator[dict[str, GuestHandle]]:
    """Two more guests, booted side by side: one without and one with autodeflate."""
    start = time.monotonic()
    guests = {
        "plain": harness.boot("hvb-peer-plain", GUEST_MIB, stats_period=1),
        "autodeflate": harness.boot(
            "hvb-peer-autodeflate", GUEST_MIB, autodeflate=True, stats_period=1
        ),
    }
    try:
        for g in guests.values():
            g.wait_booted(90)
        _report("two more guests booted side by side", time.monotonic() - start)
        yield guests
    finally:
        harness.destroy(*guests.values())


def test_overinflation_against_tmpfs_panics_the_guest(tmpfs_guests: dict[str, GuestHandle]) -> None:
    g = tmpfs_guests["plain"]
    g.tmpfs(300)
    _set_target(g, 128)
    stalled = _wait_stall(g)
    assert stalled > 300 * MIB
    assert g.domain.isActive()  # the stall itself is silent
    # The next allocation finds nothing to reclaim and nothing the OOM killer may kill.
    with pytest.raises(GuestGone):
        g.hold(8)
    assert g.wait_gone(10)
    assert "System is deadlocked on memory" in (g.kernel_panic() or "")


def test_overinflation_against_tmpfs_with_autodeflate_survives(
    tmpfs_guests: dict[str, GuestHandle],
) -> None:
    g = tmpfs_guests["autodeflate"]
    g.tmpfs(300)
    _set_target(g, 128)
    stalled = _wait_stall(g)
    assert stalled > 300 * MIB
    # Under pressure the driver gives pages back instead of letting the guest die.
    g.hold(8)
    assert g.domain.isActive()
    assert g.meminfo()["MemTotal"] > 300 * MIB
    assert g.kernel_panic() is None
