"""From vSphere's properties to hvballoon's figures: a VM's quickStats to its
:class:`~hvballoon.models.MemoryStats`, a host's summary to its figures.

Units on the wire: ``config.hardware.memoryMB``, the allocation and every memory quickStat are
MB, except ``quickStats.compressedMemory`` (KB); a host's ``hardware.memorySize`` is bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hvballoon.hoststats import sum_running
from hvballoon.kinds.esxi import ESXI, guest_notes
from hvballoon.models import VM, Mechanism, MemoryStats, PowerState
from hvballoon.units import KiB, MiB

from ._fast import MISSING
from ._props import limit_mb, scaled

__all__ = ["HOST_USAGE", "QUICKSTAT_PATHS", "host_figures", "mb", "running", "vm_stats"]

#: The quickStats read, with the unit each comes in (bytes per unit).
_QUICKSTATS: dict[str, int] = {
    "guestMemoryUsage": MiB,
    "hostMemoryUsage": MiB,
    "balloonedMemory": MiB,
    "swappedMemory": MiB,
    "compressedMemory": KiB,  # the one memory quickStat in KB
    "sharedMemory": MiB,
    "privateMemory": MiB,
    "consumedOverheadMemory": MiB,
}
_QS = "summary.quickStats."
#: The quickStats paths a stats sweep asks for (the memory fields only, and the heartbeat:
#: kinds.esxi reads it to say why a figure is missing).
QUICKSTAT_PATHS: tuple[str, ...] = tuple(_QS + name for name in (*_QUICKSTATS, "guestHeartbeatStatus"))
#: The host's used memory (MB): "Physical memory usage on the host in MB".
HOST_USAGE = "summary.quickStats.overallMemoryUsage"


def mb(value: Any) -> int | None:
    """MB (an int, or None when unset) → bytes."""
    return None if value is None else int(value) * MiB


def running(props: Mapping[str, Any]) -> bool:
    """Powered on, and reachable: the quickStats of a VM vCenter is not connected to (its host
    is not) are left over, not the VM's."""
    connection = props.get("runtime.connectionState")
    return (
        str(props.get("runtime.powerState")) == "poweredOn" and str(connection or "connected") == "connected"
    )


def vm_stats(
    vm: VM,
    moid: str,
    props: Mapping[str, Any],
    at: datetime,
    balloon_target: int | None,
    *,
    mechanism: Mechanism,
) -> MemoryStats:
    """The stats of ``vm`` (moref id ``moid``) from its swept ``props``."""
    configured = mb(props.get("config.hardware.memoryMB"))
    limit = limit_mb(props.get("config.memoryAllocation"))
    target = ESXI.target_of(limit * MiB if limit is not None else None, configured)
    # what the server would not let us read is unknown, not unset (an unreadable limit
    # is not "unlimited"): those figures are None, the stats stale, the paths named
    unreadable = sorted(props.get(MISSING) or ())
    if any(path.startswith("config.memoryAllocation") for path in unreadable):
        target = None
    marks = {"unreadable": unreadable} if unreadable else {}
    if not running(props):
        # quickStats of a VM that is not running describe nothing
        return MemoryStats(
            vm=vm,
            mechanism=mechanism,
            collected_at=at,
            configured_bytes=configured,
            target_bytes=target,
            stale=True,
            extra={"moref": moid, "limit_bytes": mb(limit), **marks},
        )
    qs = {name: scaled(props.get(_QS + name), unit) for name, unit in _QUICKSTATS.items()}
    ballooned = qs["balloonedMemory"]
    # guestMemoryUsage 0 is no figure (vSphere sends 0, not "unset"); the heartbeat says why
    used, heartbeat = qs["guestMemoryUsage"] or None, props.get(_QS + "guestHeartbeatStatus")
    current = configured - ballooned if configured is not None and ballooned is not None else None
    return MemoryStats(
        vm=vm,
        mechanism=mechanism,
        collected_at=at,
        configured_bytes=configured,
        current_bytes=max(0, current) if current is not None else None,
        target_bytes=target,
        ballooned_bytes=ballooned,
        guest_used_bytes=used,
        demand_bytes=used,
        host_consumed_bytes=qs["hostMemoryUsage"],
        swapped_bytes=qs["swappedMemory"],
        compressed_bytes=qs["compressedMemory"],
        shared_bytes=qs["sharedMemory"],
        stale=used is None or bool(unreadable),
        extra={
            "moref": moid,
            "limit_bytes": mb(limit),
            "private_bytes": qs["privateMemory"],
            "overhead_bytes": qs["consumedOverheadMemory"],
            "balloon_target_bytes": balloon_target,
            **guest_notes(qs["guestMemoryUsage"], heartbeat),
            **marks,
        },
    )


def host_figures(moid: str, props: Mapping[str, Any], vms: Sequence[MemoryStats]) -> dict[str, Any]:
    """A host's figures from its swept ``props`` and its VMs' stats.

    ``hardware.memorySize`` (bytes) is the physical memory and
    ``summary.quickStats.overallMemoryUsage`` (MB) the used memory; free is the rest.
    ESXi swaps and shares per VM, so the host's swap used, shared and overhead figures are
    the sums of its running VMs' ``swappedMemory``, ``sharedMemory`` and
    ``consumedOverheadMemory`` (``None`` when one of them is not reported).
    """
    # a live host never has or uses 0 MB: 0 (or nothing) means it is not reporting
    # (disconnected); free is what the used memory leaves of physical (hoststats)
    physical = scaled(props.get("hardware.memorySize"), 1) or None
    used = scaled(props.get(HOST_USAGE), MiB) or None
    overheads = [s.extra.get("overhead_bytes") for s in vms if s.vm.power_state is PowerState.RUNNING]
    return {
        "physical_bytes": physical,
        "used_bytes": used,
        "swap_used_bytes": sum_running(vms, "swapped_bytes"),
        "shared_bytes": sum_running(vms, "shared_bytes"),
        "hypervisor_overhead_bytes": None if None in overheads else sum(overheads),
        "extra": {"moref": moid},
    }
