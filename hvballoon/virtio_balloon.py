"""What a virtio-balloon driver's statistics report means: whether to trust it, and its figures.

Every backend that reads a KVM guest's balloon statistics (libvirt's ``memoryStats`` in
the KVM backend, QEMU's own ``guest-stats`` QOM property in the QMP backend) hands the
report, in bytes, to :func:`guest_figures`, so the rules below live in one place:

- the driver reports only while a *stats period* is set; with the period off it still reports
  once when it loads, so a report may exist and yet be frozen at boot. A report counts only when
  a period is running (``Freshness.period``) and, if this session switched the period on, when it
  is newer than the one held at that moment (``Freshness.armed_after``);
- a counting report older than 3 × the period + 2 s is *stale* (figures kept, marked stale);
- guest figures of a report that does not count are ``None``, never zeros;
- the guest's used memory is ``total − available`` (MemTotal − MemAvailable); without
  ``available``, ``total − free − caches``.

>>> report = GuestReport(last_update=1000, total_bytes=512 * 2**20, free_bytes=400 * 2**20,
...                      available_bytes=450 * 2**20, cache_bytes=30 * 2**20)
>>> fields, extra, stale = guest_figures(report, Freshness(period=2), default_period=10, now=1001.0)
>>> fields["guest_used_bytes"] // 2**20, fields["guest_report_age_seconds"], stale
(62, 1.0, False)
>>> fields, extra, stale = guest_figures(report, Freshness(period=0), default_period=10, now=1001.0)
>>> fields.get("guest_used_bytes"), stale, extra["stats_note"]
(None, True, "stats period off: the guest's figures are frozen since its boot")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Freshness", "GuestReport", "guest_figures"]


@dataclass(frozen=True)
class Freshness:
    """How far a guest's balloon report can be trusted (decided by the backend).

    ``period``: the stats period in force (0 = off, None = unknown); ``armed_after``: when this
    backend switched the period on, the report time (``last_update``) held then — the frozen
    boot-time report, or 0: only a later report was made since (one made in the same second as
    the boot report waits for the next period, which errs on the safe side); ``synthetic``: the
    source makes figures up at each call (libvirt's test driver).
    """

    period: int | None
    armed_after: int | None = None
    synthetic: bool = False

    def stale_after(self, default_period: int) -> float:
        """Seconds after which a report is stale: three periods and two seconds of slack."""
        period = self.period or default_period
        return 3.0 * period + 2.0


@dataclass(frozen=True)
class GuestReport:
    """One report of the guest's balloon driver, in bytes (``None``: not in the report).

    ``last_update`` is the host time (whole seconds since the epoch) the report arrived; 0 or
    ``None`` when the guest never reported.
    """

    last_update: int | None
    total_bytes: int | None = None
    free_bytes: int | None = None
    available_bytes: int | None = None
    cache_bytes: int | None = None
    swap_in_bytes: int | None = None
    swap_out_bytes: int | None = None
    major_faults: int | None = None
    minor_faults: int | None = None


def guest_figures(
    report: GuestReport, freshness: Freshness, *, default_period: int, now: float
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The :class:`~hvballoon.MemoryStats` guest fields of ``report``, its ``extra`` and ``stale``.

    The fields always include ``guest_report_age_seconds`` (``None`` when the guest never
    reported); the guest figures only when the report counts (see the module's rules).
    """
    extra: dict[str, Any] = {}
    last_update = report.last_update
    reported = last_update is not None and last_update > 0 and report.total_bytes is not None
    age: float | None = None
    counts = False  # made while a stats period was running (not the frozen boot report)
    if freshness.synthetic and report.total_bytes is not None:
        age, counts = 0.0, True
        extra["synthetic_stats"] = True
    elif reported:
        assert last_update is not None
        age = max(0.0, now - last_update)
        since_arming = freshness.armed_after is None or last_update > freshness.armed_after
        counts = bool(freshness.period) and since_arming
        if not freshness.period:
            extra["stats_note"] = "stats period off: the guest's figures are frozen since its boot"
        elif not since_arming:
            extra["stats_note"] = "stats period just enabled: waiting for the guest's first report"
    else:
        extra["stats_note"] = "the guest has not reported (no balloon driver, or it is still booting)"
    fresh = counts and age is not None and age <= freshness.stale_after(default_period)
    fields: dict[str, Any] = {"guest_report_age_seconds": age}
    if counts:
        total, available = report.total_bytes, report.available_bytes
        free, caches = report.free_bytes, report.cache_bytes
        used: int | None = None
        if total is not None and available is not None:
            used = max(0, total - available)
        elif total is not None and free is not None and caches is not None:
            used = max(0, total - free - caches)
        fields.update(
            guest_total_bytes=total,
            guest_free_bytes=free,
            guest_available_bytes=available,
            guest_used_bytes=used,
            guest_cache_bytes=caches,
            swap_in_bytes=report.swap_in_bytes,
            swap_out_bytes=report.swap_out_bytes,
            major_faults=report.major_faults,
        )
        if report.minor_faults is not None:
            extra["minor_faults"] = report.minor_faults
    if last_update is not None:
        extra["last_update"] = last_update
    extra["stats_period_seconds"] = freshness.period
    return fields, extra, not fresh
