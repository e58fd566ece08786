"""Building :class:`~hvballoon.models.HostStats` from a host's figures and a VM sweep.

The one place where "what the running VMs of a host add up to" is computed, so every backend
(and the default of :meth:`Backend.get_host_stats <hvballoon.backend.Backend.get_host_stats>`)
sums the same way: over the VMs whose power state is ``running``, and ``None`` as soon as one
running VM's figure is unknown, or one VM's power state is (it may be running: an undercount
shown as a fact would mislead — a host vCenter lost touch with would show no VM running). The
host figures themselves come from the backend.

>>> from datetime import datetime, timezone
>>> from hvballoon.models import VM, Mechanism, MemoryStats, PowerState
>>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> def vm(name, state=PowerState.RUNNING):
...     return MemoryStats(vm=VM(id=name, name=name, backend="mine", host="h1", power_state=state),
...                        mechanism=Mechanism.BALLOON, collected_at=at, configured_bytes=16 * 2**30,
...                        current_bytes=12 * 2**30, ballooned_bytes=4 * 2**30)
>>> (hs,) = from_sweep([vm("a"), vm("b"), vm("c", PowerState.STOPPED)], backend="mine",
...                    figures={"h1": {"physical_bytes": 24 * 2**30, "free_bytes": 2 * 2**30}})
>>> hs.vms_running, hs.ballooned_bytes // 2**30, hs.used_bytes // 2**30, hs.overcommit_ratio
(2, 8, 22, 1.3333)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from hvballoon.models import HostStats, MemoryStats, PowerState

__all__ = ["VM_TOTAL_FIELDS", "from_sweep", "host_stats", "split_by_host", "sum_running"]

#: The HostStats fields that are sums over the running VMs (never passed as host figures).
VM_TOTAL_FIELDS: frozenset[str] = frozenset(
    {"vms_running", "vm_configured_bytes", "vm_current_bytes", "ballooned_bytes"}
)


def _running(stats: Iterable[MemoryStats]) -> list[MemoryStats]:
    return [s for s in stats if s.vm.power_state is PowerState.RUNNING]


def sum_running(stats: Iterable[MemoryStats], field: str) -> int | None:
    """The sum of ``field`` over the running VMs; ``None`` if one of them does not know it.

    With no running VM the sum is 0: nothing runs, so nothing is held.
    """
    total = 0
    for s in _running(stats):
        value = getattr(s, field)
        if value is None:
            return None
        total += int(value)
    return total


def host_stats(
    vms: Iterable[MemoryStats],
    *,
    host: str,
    backend: str,
    collected_at: datetime | None = None,
    **figures: Any,
) -> HostStats:
    """One host's :class:`HostStats`: its own ``figures`` plus the sums over its running ``vms``
    (``None`` while one of ``vms`` is of unknown power state).

    ``figures`` are HostStats fields the backend read from the host (``physical_bytes``,
    ``free_bytes``, ``swap_used_bytes``, ``extra`` …); with the physical memory known, the one of
    used and free given decides the other, both capped at physical (``used + free == physical``).
    ``collected_at`` defaults to the VMs' newest, else now.
    """
    clash = VM_TOTAL_FIELDS & set(figures)
    if clash:
        raise TypeError(f"{', '.join(sorted(clash))} are sums over the VMs, not host figures")
    vms = list(vms)
    data: dict[str, Any] = dict.fromkeys(VM_TOTAL_FIELDS)  # unknown while a VM may be running
    if not any(s.vm.power_state is PowerState.UNKNOWN for s in vms):
        data = {
            "vms_running": len(_running(vms)),
            "vm_configured_bytes": sum_running(vms, "configured_bytes"),
            "vm_current_bytes": sum_running(vms, "current_bytes"),
            "ballooned_bytes": sum_running(vms, "ballooned_bytes"),
        }
    data.update(figures)
    _split_physical(data)
    if collected_at is None:
        collected_at = max((s.collected_at for s in vms), default=None) or datetime.now(timezone.utc)
    return HostStats(host=host, backend=backend, collected_at=collected_at, **data)


def _split_physical(data: dict[str, Any]) -> None:
    """Make ``used_bytes + free_bytes == physical_bytes`` hold when the physical memory is known.

    A backend reads one of used and free (the other is the rest of physical); a reading beyond
    the physical memory (two counters sampled apart, a host reporting stale figures) is capped
    at it, so neither figure exceeds physical and their sum is exact. With both given the used
    figure is kept as read (capped) and free is what it leaves.
    """
    physical, used, free = (data.get(k) for k in ("physical_bytes", "used_bytes", "free_bytes"))
    if physical is None:
        return
    if used is not None:
        used = min(max(0, int(used)), physical)
        data["used_bytes"], data["free_bytes"] = used, physical - used
    elif free is not None:
        free = min(max(0, int(free)), physical)
        data["used_bytes"], data["free_bytes"] = physical - free, free


def split_by_host(stats: Iterable[MemoryStats], default_host: str) -> dict[str, list[MemoryStats]]:
    """The sweep grouped by ``vm.host`` (VMs that name no host go to ``default_host``), in order."""
    out: dict[str, list[MemoryStats]] = {}
    for s in stats:
        out.setdefault(s.vm.host or default_host, []).append(s)
    return out


def from_sweep(
    stats: Iterable[MemoryStats],
    *,
    backend: str,
    default_host: str = "localhost",
    figures: Mapping[str, Mapping[str, Any]] | None = None,
    collected_at: datetime | None = None,
) -> list[HostStats]:
    """One :class:`HostStats` per host: every host of ``figures`` (even one without VMs) and
    every host the VMs name, with the host's figures where ``figures`` has them (else ``None``).
    """
    groups = split_by_host(stats, default_host)
    figures = figures or {}
    names = [*figures, *(h for h in groups if h not in figures)]
    if not names:
        names = [default_host]
    return [
        host_stats(
            groups.get(name, []),
            host=name,
            backend=backend,
            collected_at=collected_at,
            **figures.get(name, {}),
        )
        for name in names
    ]
