"""What each kind of hypervisor can read and change: one declaration, shared by the real backend
and the fake's flavour of the same kind, so the fake cannot drift from the real thing.

>>> caps = declared("kvm", backend="kvm")
>>> caps.mechanism.value, caps.alignment_bytes, "guest_used_bytes" in caps.readable
('balloon', 1024, True)
"""

from __future__ import annotations

from typing import Any, Literal

from hvballoon.models import Capabilities, Mechanism
from hvballoon.units import KiB, MiB

__all__ = ["KINDS", "declared"]

Kind = Literal["kvm", "esxi", "hyperv-dynamic", "hyperv-static"]

_HYPERV_READABLE = frozenset(
    {"configured_bytes", "current_bytes", "target_bytes", "demand_bytes", "guest_available_bytes"}
)

_KINDS: dict[str, dict[str, Any]] = {
    # libvirt: the virtio-balloon target (setMemoryFlags, KiB) and the guest driver's stats
    "kvm": {
        "mechanism": Mechanism.BALLOON,
        "readable": frozenset({
            "configured_bytes", "current_bytes", "target_bytes", "ballooned_bytes",
            "guest_total_bytes", "guest_used_bytes", "guest_free_bytes", "guest_available_bytes",
            "guest_cache_bytes", "swap_in_bytes", "swap_out_bytes", "major_faults",
            "host_consumed_bytes",
        }),
        "set_live": frozenset({"target", "stats_period_seconds"}),
        "set_offline": frozenset({"target", "maximum_bytes", "deflate_on_oom", "stats_period_seconds"}),
        "alignment_bytes": KiB,
        "target_observable": True,
    },
    # vSphere: memoryAllocation.limit (MB); ESXi decides the balloon; quickStats
    "esxi": {
        "mechanism": Mechanism.LIMIT,
        "readable": frozenset({
            "configured_bytes", "current_bytes", "target_bytes", "ballooned_bytes",
            "guest_used_bytes", "demand_bytes", "host_consumed_bytes", "swapped_bytes",
            "compressed_bytes", "shared_bytes",
        }),
        "set_live": frozenset({"target", "limit_bytes", "reservation_bytes", "shares"}),
        "set_offline": frozenset(
            {"target", "limit_bytes", "reservation_bytes", "shares", "maximum_bytes", "balloon_cap_bytes"}
        ),
        "alignment_bytes": MiB,
        "target_observable": False,
    },
    # Hyper-V Dynamic Memory: a target is the maximum (while running: only upwards)
    "hyperv-dynamic": {
        "mechanism": Mechanism.DYNAMIC_MEMORY,
        "readable": _HYPERV_READABLE,
        "set_live": frozenset({"target", "minimum_bytes", "maximum_bytes", "buffer_percent", "priority"}),
        "set_offline": frozenset(
            {"target", "minimum_bytes", "maximum_bytes", "buffer_percent", "priority", "startup_bytes",
             "dynamic"}
        ),
        "alignment_bytes": 2 * MiB,
        "target_observable": False,
    },
    # Hyper-V static memory: a target is a runtime resize of the startup size
    "hyperv-static": {
        "mechanism": Mechanism.RUNTIME_RESIZE,
        "readable": _HYPERV_READABLE,
        "set_live": frozenset({"target", "startup_bytes", "priority"}),
        "set_offline": frozenset(
            {"target", "startup_bytes", "priority", "dynamic", "minimum_bytes", "maximum_bytes",
             "buffer_percent"}
        ),
        "alignment_bytes": 2 * MiB,
        "target_observable": True,
    },
}  # fmt: skip

#: The kinds that have a declaration.
KINDS: tuple[str, ...] = tuple(_KINDS)


def declared(kind: Kind | str, *, backend: str, notes: tuple[str, ...] = ()) -> Capabilities:
    """The declared :class:`~hvballoon.Capabilities` of ``kind``, labelled with ``backend``."""
    return Capabilities(backend=backend, bulk_stats=True, notes=notes, **_KINDS[kind])
