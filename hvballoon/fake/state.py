"""The simulated world's state: one numpy array per quantity, one element per VM.

Sizes are bytes, times virtual seconds (floats, holding whole numbers of bytes). The model, per
guest (``kernel`` and ``unfreeable`` are what the guest can never give to a balloon: its
*floor*)::

    memory = balloon + current              current = used + cache + free
    used = kernel + unfreeable + resident anonymous
    effective_demand = resident anonymous + guest_swapped + kernel + unfreeable

>>> state = GuestState.zeros(3)
>>> state.current.shape, len(GuestState.names()) > 50
((3,), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from hvballoon.fake.workloads import touch_rate
from hvballoon.kinds.kvm import HUGEPAGES, VFIO_DEVICES

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from hvballoon.fake.flavors import FlavorPhysics
    from hvballoon.fake.scenario import BalloonSpec, VMSpec

    Arr = npt.NDArray[np.float64]

_MiB = 1024**2

__all__ = ["GuestState"]

#: What a VM that stops holding memory (crashed, gone, powered off) gives back: its memory and
#: everything the host did to it.
_HELD = (
    "current",
    "cache",
    "swap_backlog",
    "guest_swapped",
    "demand",
    "effective_demand",
    "used",
    "free",
    "host_backed",
    "host_swapped",
    "compressed",
    "shared",
    "compression_cache",
)


@dataclass(eq=False)
class GuestState:
    """Every per-VM quantity of the simulation (saved with the world, see :mod:`.store`)."""

    # -- what the scenario says of each VM (constant while it runs) -------------------------
    #: configured memory, the most the VM may hold: libvirt ``<memory>``, ESXi memoryMB,
    #: Hyper-V's Dynamic Memory maximum or a static VM's startup memory (its largest while it
    #: runs: a runtime resize down leaves the rest ballooned out)
    memory: Arr
    #: the guest kernel's baseline: never freeable
    kernel: Arr
    #: application memory the guest cannot free either (pinned, mlocked)
    unfreeable: Arr
    #: the guest's swap space
    swap_size: Arr
    #: the page cache's ceiling
    cache_max: Arr
    #: per second: how much of what a squeezed workload swapped it touches again
    touch_rate: Arr
    #: the scenario's ``used``: what the workloads' demand moves around
    used_baseline: Arr
    #: host memory per VM the hypervisor uses beside the guest's (QEMU, VMX, worker process)
    overhead: Arr
    #: balloon speeds, bytes per second
    inflate_rate: Arr
    deflate_rate: Arr

    # -- the balloon and the guest's memory --------------------------------------------------
    #: where the balloon is sent (KVM target; ESXi: the limit; Hyper-V: maximum or startup)
    target: Arr
    #: what the guest has now (configured less the balloon, or what Hyper-V assigned)
    current: Arr
    cache: Arr
    #: what the guest has pushed out to swap and not yet read back, before the cap at what
    #: it can swap (the swap recurrence's state)
    swap_backlog: Arr
    guest_swapped: Arr
    #: what the workloads ask for
    demand: Arr
    #: the demand that survives the OOM killer (at most current + swap)
    effective_demand: Arr
    used: Arr
    free: Arr
    #: guest memory the host backs (touched pages; Hyper-V: all it assigned)
    host_backed: Arr

    # -- counters ------------------------------------------------------------------------------
    swap_in: Arr
    swap_out: Arr
    major_faults: Arr
    oom_events: Arr
    #: 1 while the guest was out of memory at the last point of the world's grid (an OOM kill
    #: is counted at the grid point where it starts)
    oom_now: Arr

    # -- what the host reclaimed ---------------------------------------------------------------
    host_swapped: Arr
    compressed: Arr
    shared: Arr
    #: ESXi's compression cache: where compressed pages live (half their size)
    compression_cache: Arr

    # -- power and the balloon driver (1.0 / 0.0) ----------------------------------------------
    running: Arr
    crashed: Arr
    paused: Arr
    balloon_driver: Arr
    deflate_on_oom: Arr
    #: the guest reports freed pages and the host drops them (else it backs every page touched)
    free_page_reporting: Arr
    #: the host holds all the VM's memory pinned (KVM with VFIO devices, or backed by huge pages:
    #: reserved from the host's pool when mapped, never swapped, a page given back returning to
    #: the pool): whatever its balloon takes from the guest stays backed, none of it swapped out
    pinned: Arr

    # -- the guest driver's reports (KVM's stats period) ---------------------------------------
    stats_period: Arr
    #: the time reports are counted from (when the period was last set)
    stats_anchor: Arr
    #: NaN until the first report
    last_report: Arr
    #: no report before this (a scripted stats_stale fault)
    reports_frozen_until: Arr
    #: when an over-inflated balloon stalled on the guest's floor (NaN: it has not)
    stalled_at: Arr
    report_total: Arr
    report_used: Arr
    report_free: Arr
    report_cache: Arr
    report_swap_in: Arr
    report_swap_out: Arr
    report_major_faults: Arr

    # -- the configuration the simulation reads (copied from each VM's config dict) ----------
    #: ESXi's limit (inf: unlimited)
    limit: Arr
    #: ESXi's sched.mem.maxmemctl (inf: none)
    balloon_cap: Arr
    #: ESXi's reservation: never reclaimed (0: none)
    reservation: Arr
    shares: Arr
    #: Hyper-V: Dynamic Memory on (1.0) or static memory
    dynamic: Arr
    dm_minimum: Arr
    dm_maximum: Arr
    dm_buffer_percent: Arr
    dm_priority: Arr
    startup: Arr

    @classmethod
    def zeros(cls, n: int) -> GuestState:
        import numpy as np

        return cls(**{name: np.zeros(n) for name in cls.names()})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every field, in declaration order."""
        return _NAMES

    def arrays(self) -> dict[str, Arr]:
        return {name: getattr(self, name) for name in _NAMES}

    @property
    def floor(self) -> Arr:
        """What a balloon can never take: the kernel and the unfreeable memory."""
        return self.kernel + self.unfreeable

    def set_vm(
        self,
        i: int,
        spec: VMSpec,
        *,
        physics: FlavorPhysics,
        balloon: BalloonSpec,
        target: float,
        memory: float | None = None,
        suspended_holds_memory: bool = False,
    ) -> None:
        """VM ``i`` as the scenario describes it (the flavour's defaults where it says nothing;
        ``memory``: its configured size as the flavour has it, default the scenario's; a
        suspended VM holds its memory as a paused one does where ``suspended_holds_memory``)."""
        kernel = (
            spec.kernel
            if spec.kernel is not None
            else min(max(0, spec.used - spec.unfreeable), 128 * _MiB + spec.memory // 128)
        )
        size = spec.memory if memory is None else memory
        # what the guest can never free is at most what it has (a Hyper-V VM's configured size
        # can be below the scenario's memory: a small static startup, a low maximum)
        unfreeable = min(spec.unfreeable, size)
        self.memory[i] = size
        self.kernel[i] = min(kernel, size - unfreeable)
        self.unfreeable[i] = unfreeable
        self.swap_size[i] = spec.swap
        self.cache_max[i] = min(size, spec.cache_max if spec.cache_max is not None else 2 * spec.cache)
        self.touch_rate[i] = touch_rate(spec.workload.kind, spec.workload.params)
        self.used_baseline[i] = spec.used
        self.overhead[i] = physics.vm_overhead
        self.inflate_rate[i] = balloon.inflate_rate or physics.inflate_rate
        self.deflate_rate[i] = balloon.deflate_rate or physics.deflate_rate
        self.balloon_driver[i] = spec.balloon_driver and spec.balloon_device
        self.deflate_on_oom[i] = spec.deflate_on_oom
        self.stats_period[i] = spec.stats_period
        self.running[i] = spec.power_state == "running"
        self.paused[i] = spec.power_state == "paused" or (
            spec.power_state == "suspended" and suspended_holds_memory
        )
        self.target[i] = target

    def set_config(self, i: int, config: dict[str, Any]) -> None:
        """Copy VM ``i``'s configuration (its config dict) into the arrays the simulation reads."""
        c, inf = config, math.inf
        self.limit[i] = inf if c.get("limit_bytes") is None else c["limit_bytes"]
        self.balloon_cap[i] = inf if c.get("balloon_cap_bytes") is None else c["balloon_cap_bytes"]
        self.reservation[i] = c.get("reservation_bytes") or 0
        self.shares[i] = c.get("shares") or 1000
        self.dynamic[i] = bool(c.get("dynamic"))
        self.dm_minimum[i] = c.get("minimum_bytes") or 0
        self.dm_maximum[i] = c.get("maximum_bytes") or self.memory[i]
        self.dm_buffer_percent[i] = c.get("buffer_percent") or 0
        self.dm_priority[i] = 50 if c.get("priority") is None else c["priority"]
        self.startup[i] = c.get("startup_bytes") or self.memory[i]
        self.deflate_on_oom[i] = bool(c.get("deflate_on_oom"))
        self.free_page_reporting[i] = bool(c.get("free_page_reporting", True))
        self.pinned[i] = bool(c.get(VFIO_DEVICES)) or bool(c.get(HUGEPAGES))

    def release(self, i: int) -> None:
        """VM ``i`` holds no memory any more, and nothing of it is reclaimed or stalled."""
        for name in _HELD:
            getattr(self, name)[i] = 0.0
        self.stalled_at[i] = math.nan


_NAMES: tuple[str, ...] = tuple(f.name for f in fields(GuestState))
