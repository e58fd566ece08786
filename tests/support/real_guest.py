"""What the real-guest tests of the KVM (libvirt) and QMP backends share.

Both boot the same tiny Linux guest (``tests/support/kvm_guest``) with a real virtio-balloon
driver — under libvirt's embedded QEMU, or under bare QEMU over QMP — and check the same
things: polling helpers, the figures that move on their own between two reads of a live guest,
and the guard rail against a forced over-inflation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from hvballoon.errors import BalloonStalledError, TargetBelowFloorError, VMNotFoundError
from hvballoon.models import MemoryStats
from hvballoon.session import Hypervisor
from tests.support.kvm_guest.channel import GuestChannel

__all__ = [
    "GUEST_VOLATILE_FIELDS",
    "MiB",
    "fresh",
    "kept_as_found",
    "one",
    "over_inflation_is_typed",
    "poll",
    "report",
]

T = TypeVar("T")
MiB = 2**20

#: MemoryStats fields a live guest changes between a bulk read and a per-VM read.
GUEST_VOLATILE_FIELDS: frozenset[str] = frozenset(
    {
        "collected_at",
        "guest_report_age_seconds",
        "extra",
        "stale",
        "host_consumed_bytes",
        "guest_used_bytes",
        "guest_free_bytes",
        "guest_available_bytes",
        "guest_cache_bytes",
        "guest_total_bytes",
        "major_faults",
        "swap_in_bytes",
        "swap_out_bytes",
        "pressure_ratio",
        "used_bytes",
    }
)


def report(backend: str, label: str, seconds: float) -> None:
    """A timing line (``pytest -s`` shows them)."""
    print(f"\n[{backend}-backend timing] {label}: {seconds:.2f} s")


def poll(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """``fn()`` once it is truthy; AssertionError after ``timeout`` seconds."""
    start = time.monotonic()
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def one(hv: Hypervisor, name: str) -> MemoryStats:
    return hv.get_stats([name])[0]


def fresh(hv: Hypervisor, name: str, *, since: float | None = None, timeout: float = 30) -> MemoryStats:
    """The guest's stats once fresh (and, with ``since``, reported at or after that host time).

    Reports carry whole seconds: to be sure a report was made after something happened, pass
    ``since=time.time() + 1``.
    """

    def ready() -> MemoryStats | None:
        st = one(hv, name)
        if st.stale or st.guest_used_bytes is None:
            return None
        if since is not None and st.extra.get("last_update", 0) < int(since):
            return None
        return st

    return poll(ready, timeout, f"fresh balloon stats of {name}")


def over_inflation_is_typed(hv: Hypervisor, guest: GuestChannel, guest_mib: int, backend: str) -> None:
    """300 MiB the guest cannot free (tmpfs, no swap) and a 128 MiB target.

    The default guard rail refuses it, with the numbers, and sends nothing. Forced, the
    hypervisor accepts it without a word; the balloon stalls where the guest runs dry, and the
    guest may then die of it. ``wait_for_target`` must say which, as a typed error, in bounded time.
    """
    name = guest.name
    fresh(hv, name)
    guest.tmpfs(300)
    st = fresh(hv, name, since=time.time() + 1)
    assert st.guest_used_bytes is not None and st.guest_used_bytes > 250 * MiB  # the tmpfs counts
    with pytest.raises(TargetBelowFloorError) as refused:
        hv.set_target(name, "128MiB")
    details = refused.value.details
    assert details["used_bytes"] == st.guest_used_bytes
    assert details["floor_bytes"] > details["used_bytes"] > details["target_bytes"] == 128 * MiB
    assert one(hv, name).current_bytes == guest_mib * MiB  # nothing was sent
    forced = hv.set_target(name, "128MiB", force=True)
    assert forced.forced and any("floor" in w for w in forced.warnings)
    start = time.monotonic()
    with pytest.raises((BalloonStalledError, VMNotFoundError)) as outcome:
        hv.wait_for_target(name, timeout=90, poll_interval=0.25, stall_after=3)
    waited = time.monotonic() - start
    err = outcome.value
    if isinstance(err, BalloonStalledError):
        reached = err.details["reached_bytes"]
        report(backend, f"forced over-inflation: stalled at {reached / MiB:.0f} MiB after", waited)
        assert 128 * MiB + 64 * MiB < reached < guest_mib * MiB
        assert err.details["target_bytes"] == 128 * MiB
    else:
        report(backend, "forced over-inflation: the guest died (panic) after", waited)
        assert "vanished" in err.message
    assert waited < 60


@contextlib.contextmanager
def kept_as_found(hv: Hypervisor, guest: GuestChannel, guest_mib: int) -> Iterator[Hypervisor]:
    """A session on a guest with fresh stats, whose stats period and full memory are given back
    afterwards, whatever the block did (for the shared suites run on one module-wide guest)."""
    fresh(hv, guest.name)
    period = hv.get_config(guest.name).stats_period_seconds
    yield hv
    if hv.get_config(guest.name).stats_period_seconds != period and period is not None:
        hv.set_config(guest.name, stats_period=period)
        fresh(hv, guest.name, since=time.time() + 1)
    if one(hv, guest.name).current_bytes != guest_mib * MiB:
        hv.set_target(guest.name, guest_mib * MiB, force=True)
        hv.wait_for_target(guest.name, timeout=60, poll_interval=0.1)
        poll(
            lambda: guest.meminfo()["MemTotal"] > guest_mib * 1024 * 3 // 4,
            30,
            "the guest to get its memory back",
        )
