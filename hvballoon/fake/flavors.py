"""What differs between the simulated hypervisors: one object per kind (the world's flavour).

Each flavour holds its :mod:`hvballoon.kinds` object — the same one the real backend of that
kind holds — and says how that hypervisor treats memory:

- **KVM**: the balloon goes wherever its target says, even past what the guest can free (it
  stalls there; without deflate-on-OOM the guest panics), and the host swaps QEMU's memory when
  the guests' touched pages do not fit; its OOM killer kills the largest VM when swap is full.
- **ESXi**: a target is a limit; ESXi decides each balloon (within the limit, ``sched.mem.maxmemctl``
  and Mem.CtlMaxPercent), by shares, and reclaims by page sharing, compression and swap, never
  below a VM's reservation.
- **Hyper-V**: Dynamic Memory hands memory out by demand, buffer and priority within each VM's
  range (its maximum is its configured size); a static VM has exactly its startup memory; the
  host backs all of it.

>>> FLAVORS["esxi"].kind.name, FLAVORS["hyperv"].backs_assigned_memory
('esxi', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hvballoon.kinds import ESXI, HYPERV, KVM, Kind
from hvballoon.kinds.esxi import HOT_ADD, HOT_ADD_INCREMENT, HOT_ADD_LIMIT, not_powered_on, powers_on
from hvballoon.kinds.hyperv import MINIMUM_SIZE_BYTES, buffered_demand, not_started, starts
from hvballoon.kinds.kvm import (
    HOTPLUG_MAXIMUM,
    HUGEPAGE_BYTES,
    HUGEPAGES,
    VFIO_DEVICES,
    below_one_huge_page,
    hugepages_needed,
    hugepages_short,
    vfio_cannot_pin,
)
from hvballoon.units import format_sizes

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from hvballoon.fake.scenario import Scenario, VMSpec
    from hvballoon.fake.state import GuestState
    from hvballoon.fake.world import World
    from hvballoon.models import ConfigUpdate

    Arr = npt.NDArray[np.float64]
    Mask = npt.NDArray[np.bool_]

__all__ = [
    "FLAVORS",
    "FLAVOR_PHYSICS",
    "ESXiFlavor",
    "Flavor",
    "FlavorPhysics",
    "HyperVFlavor",
    "KVMFlavor",
    "Reclaim",
]

_MiB = 1024**2
_GiB = 1024**3


@dataclass(frozen=True)
class FlavorPhysics:
    """Per-flavour constants (bytes per second; bytes; seconds)."""

    inflate_rate: int
    deflate_rate: int
    vm_overhead: int
    rebalance_period: float | None = None


@dataclass
class Reclaim:
    """What the host reclaimed, per step (rows) and VM (columns), and what it has free."""

    host_swapped: Arr
    compressed: Arr
    shared: Arr
    compression_cache: Arr
    host_free: Arr


class Flavor:
    """How one kind of hypervisor treats its guests' memory in the simulation."""

    kind: ClassVar[Kind]
    physics: ClassVar[FlavorPhysics]
    #: The host backs all the memory a VM is assigned (Hyper-V), not only the pages it touched.
    backs_assigned_memory: ClassVar[bool] = False
    #: A suspended VM keeps its memory on the host, as a paused one does (KVM's pmsuspended:
    #: the guest suspended itself to RAM and its QEMU process holds it); otherwise a suspended
    #: VM's memory is on disk (ESXi's suspend, Hyper-V's saved state) and it holds none.
    suspended_holds_memory: ClassVar[bool] = False
    #: The balloon goes to any target, even below what the guest can free, where it stalls and
    #: (without deflate-on-OOM) the guest panics; the host's OOM killer kills a VM when host
    #: swap is full. Otherwise the hypervisor decides the balloon and never goes that far.
    balloon_obeys_target: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.kind.name

    # -- building ------------------------------------------------------------------------------

    def config(self, spec: VMSpec) -> dict[str, Any]:
        """A VM's configuration as this hypervisor shows it (its defaults filled in)."""
        return {
            "minimum_bytes": spec.minimum,
            "startup_bytes": spec.startup,
            "maximum_bytes": spec.maximum,
            "dynamic": spec.dynamic,
            "buffer_percent": spec.buffer_percent,
            "priority": spec.priority,
            "reservation_bytes": spec.reservation,
            "limit_bytes": spec.limit,
            "shares": spec.shares,
            "balloon_cap_bytes": spec.balloon_cap,
            "deflate_on_oom": spec.deflate_on_oom,
            "free_page_reporting": spec.free_page_reporting,
            "balloon_device": spec.balloon_device,
        }

    def configured_memory(self, spec: VMSpec, config: dict[str, Any]) -> float:
        """The VM's configured size: the most it may ever hold (what its balloon is measured
        from). By default the scenario's ``memory``."""
        return float(spec.memory)

    def initial_target(self, spec: VMSpec, config: dict[str, Any]) -> float:
        raise NotImplementedError

    def initial_current(self, world: World, floor: Arr) -> Arr:
        """What each VM holds at time zero: a scenario starts from a running steady state, not
        a boot."""
        raise NotImplementedError

    # -- each block ----------------------------------------------------------------------------

    def steer(self, world: World, floor: Arr) -> tuple[Arr, Arr]:
        """Where each guest's current memory is steered this block, and the floor of a decrease."""
        raise NotImplementedError

    def reclaim(self, world: World, held: Arr) -> Reclaim:
        """The host's reclaim when what its guests hold (per step and VM) plus the overheads do
        not fit in physical memory less the reserve. Sets ``world.pressure_bytes``."""
        import numpy as np

        h = world.host
        base = h.overhead_bytes + world.overheads()
        if world.hugepage_pool:  # the pool's pages no VM backs: the host's, never free
            base += world.hugepage_pool_idle_bytes()
        avail = h.physical_bytes - h.reserve_bytes
        total = held.sum(axis=1)
        parts = self._reclaim(world, held, total, base, avail)
        rows = held.shape[0]
        if parts is None:
            zero = np.zeros((1, world.n))
            parts = (zero, zero, zero, zero)
            host_free = h.physical_bytes - base - total
        else:
            hsw, comp, shr, zpool = parts
            resident = held - hsw - comp - shr
            host_free = h.physical_bytes - base - resident.sum(axis=1) - zpool.sum(axis=1)
        hsw, comp, shr, zpool = (np.broadcast_to(p, (rows, world.n)) for p in parts)
        return Reclaim(hsw, comp, shr, zpool, host_free)

    def _reclaim(
        self, world: World, held: Arr, total: Arr, base: float, avail: float
    ) -> tuple[Arr, Arr, Arr, Arr] | None:
        """Host-swapped, compressed, shared and compression-cache bytes (``None``: nothing),
        from what each VM holds (``total``: the sum per step). By default the host swaps each
        VM's memory in proportion to what it holds."""
        import numpy as np

        ex = np.maximum(total + base - avail, 0.0)[:, None]
        world.pressure_bytes = float(total[-1] + base - avail)
        if not ex.any():
            return None
        pinned = np.nonzero(world.state.pinned > 0)[0]
        if pinned.size:  # memory pinned for DMA is never swapped out
            held = held.copy()
            held[:, pinned] = 0.0
            total = held.sum(axis=1)
        tot = np.maximum(total[:, None], 1.0)
        hsw = np.minimum(np.ceil(ex * held / tot), held)
        zero = np.zeros((1, world.n))
        return hsw, zero, zero, zero

    # -- changes ------------------------------------------------------------------------------

    def apply_config(
        self, state: GuestState, i: int, plan: ConfigUpdate, config: dict[str, Any], power_state: str
    ) -> None:
        """What a configuration change (already in ``config``) moves in the simulation, on a VM
        in ``power_state``."""
        if plan.maximum_bytes is not None:
            state.memory[i] = plan.maximum_bytes  # libvirt maxMemory, ESXi memoryMB

    def apply_target(
        self, state: GuestState, i: int, target: int, config: dict[str, Any], power_state: str
    ) -> None:
        """What a target that is not a configuration field (a balloon's) moves besides the
        target itself (already set); ``power_state`` is the VM's (``running``, ``stopped``,
        ``paused`` or ``suspended``)."""

    def powered_off(self, state: GuestState, i: int, config: dict[str, Any]) -> None:
        """What the hypervisor forgets of a VM it powers off (its configuration stays)."""

    def start_refusal(self, world: World, i: int) -> str | None:
        """Why the hypervisor would not start the stopped VM ``i`` now, in its own words
        (``None``: it starts). By default it starts."""
        return None

    def hugepage_pool(self, scenario: Scenario) -> dict[int, int]:
        """The host's huge-page pool: pages of each size (bytes). By default none."""
        return {}

    def not_running(self, world: World, current: Arr) -> tuple[int, str] | None:
        """The first VM running at the start that the hypervisor would not have started, with
        what it says (``None``: every one starts), the VMs holding ``current`` once started.
        By default any world it can hold (swapping or killing) is one it may be in."""
        return None

    def out_of_memory(self, asked_bytes: float, limit_bytes: float) -> str:
        """What a guest logs when its workloads ask ``asked_bytes``, beyond its memory plus swap
        (``limit_bytes``): the text of the world's ``oom`` event. By default a Linux guest's:
        the kernel's OOM killer kills a process."""
        return "Out of memory: the OOM killer killed a process"

    def __repr__(self) -> str:
        return f"<Flavor {self.name}>"


class KVMFlavor(Flavor):
    """QEMU/KVM: the virtio-balloon goes where its target says, at the guest driver's rates."""

    kind: ClassVar[Kind] = KVM
    #: The balloon of a QEMU guest under TCG inflated 256 MiB in 0.33-0.55 s and deflated
    #: faster; with KVM acceleration it is several times quicker (set host.balloon.inflate_rate
    #: to model a slow guest).
    physics: ClassVar[FlavorPhysics] = FlavorPhysics(
        inflate_rate=2 * _GiB, deflate_rate=4 * _GiB, vm_overhead=64 * _MiB
    )
    balloon_obeys_target: ClassVar[bool] = True
    #: libvirt's VIR_DOMAIN_PMSUSPENDED is a guest suspended by its own power management to RAM
    #: (virDomainPMSuspendForDuration's VIR_NODE_SUSPEND_TARGET_MEM, ACPI S3): the domain stays
    #: active and QEMU keeps every page it backed until the guest wakes up.
    suspended_holds_memory: ClassVar[bool] = True

    def config(self, spec: VMSpec) -> dict[str, Any]:
        config = super().config(spec)
        # libvirt's <memory> is the most a balloon can give back (currentMemory is at most it);
        # ``maximum`` is a Hyper-V setting, not libvirt's
        config["maximum_bytes"] = spec.memory
        # the definition's <currentMemory>: the size the domain boots with (its balloon target
        # at start), which libvirt reports as the boot size
        config["startup_bytes"] = spec.target if spec.target is not None else spec.memory
        if spec.numa_nodes:
            config["numa_nodes"] = spec.numa_nodes
        if spec.hotplug_maximum is not None:
            config[HOTPLUG_MAXIMUM] = spec.hotplug_maximum
        if spec.vfio_devices:
            # QEMU maps all its memory for the devices' DMA, pinned, and turns off discarding
            # guest RAM: its balloon frees nothing on the host (kinds.kvm.balloon_frees_host_memory)
            config[VFIO_DEVICES] = spec.vfio_devices
        if spec.hugepages is not None:
            # its memory comes from the host's huge-page pool: a huge page goes back only once the
            # balloon holds all of it, and then to the pool (kinds.kvm.balloon_frees_host_memory)
            config[HUGEPAGES] = True
            config[HUGEPAGE_BYTES] = spec.hugepages
        # the persistent definition's <stats period>: what a domain has again when it stops
        config["defined_stats_period"] = spec.stats_period
        return config

    def initial_target(self, spec: VMSpec, config: dict[str, Any]) -> float:
        return float(spec.target if spec.target is not None else spec.memory)

    def initial_current(self, world: World, floor: Arr) -> Arr:
        import numpy as np

        s = world.state
        return np.maximum(np.minimum(s.target, s.memory), floor)

    def apply_config(
        self, state: GuestState, i: int, plan: ConfigUpdate, config: dict[str, Any], power_state: str
    ) -> None:
        """A new maximum (``<memory>``, only on a stopped domain) takes ``<currentMemory>`` down
        with it: libvirt never keeps the boot size, the target of a stopped domain, above it.
        A stats period set on a stopped domain is its definition's; on an active one only the
        live domain's (the backend's default, ``persist=False``), forgotten when it stops."""
        super().apply_config(state, i, plan, config, power_state)
        if plan.maximum_bytes is not None:
            state.target[i] = min(float(state.target[i]), float(plan.maximum_bytes))
            config["startup_bytes"] = min(int(config["startup_bytes"]), plan.maximum_bytes)
        if plan.stats_period_seconds is not None and power_state == "stopped":
            config["defined_stats_period"] = plan.stats_period_seconds

    def apply_target(
        self, state: GuestState, i: int, target: int, config: dict[str, Any], power_state: str
    ) -> None:
        """A target set on a domain that is shut off is its definition's ``<currentMemory>``:
        the size it boots with. Every other domain is active in libvirt's sense (its QEMU
        process holds the memory), a suspended one too — ``pmsuspended``, suspended by the
        guest to RAM; a domain saved to disk is shut off — so its target is its live balloon's."""
        if power_state == "stopped":
            config["startup_bytes"] = target

    def powered_off(self, state: GuestState, i: int, config: dict[str, Any]) -> None:
        """libvirt forgets the live balloon target of a domain that stops: its definition's
        ``<currentMemory>`` is its target again; so is its definition's stats period."""
        state.target[i] = float(config["startup_bytes"])
        state.stats_period[i] = config.get("defined_stats_period", state.stats_period[i])

    def hugepage_pool(self, scenario: Scenario) -> dict[int, int]:
        """The host's huge-page pool (``host.hugepage_pool``), by default exactly the pages its
        VMs backed by huge pages need (:func:`~hvballoon.kinds.kvm.hugepages_needed`), running
        or not: the pool is reserved at boot, whoever uses it."""
        given = scenario.host.hugepage_pool
        if given is not None:
            return {page: size // page for page, size in sorted(given.items()) if size}
        pool: dict[int, int] = {}
        for spec in scenario.vms:
            if spec.hugepages is not None:
                pool[spec.hugepages] = pool.get(spec.hugepages, 0) + hugepages_needed(
                    spec.memory, spec.hugepages
                )
        return dict(sorted(pool.items()))

    def start_refusal(self, world: World, i: int) -> str | None:
        """A domain backed by huge pages starts only with its pages free in the host's pool of
        its page size (the kind's rule), and never below one page (QEMU's); one with devices
        assigned through VFIO only if the host can hold its memory pinned beside what is pinned
        already (its own memory, the huge-page pool, the other VFIO domains)."""
        config = world.configs[i]
        page = config.get(HUGEPAGE_BYTES)
        if not config.get(HUGEPAGES) or not page:
            if not config.get(VFIO_DEVICES):
                return None
            return vfio_cannot_pin(world.names[i], int(world.state.memory[i]), world.pinnable_bytes())
        memory = int(world.state.memory[i])
        below = below_one_huge_page(memory, page)
        if below is not None:
            return f"{world.names[i]!r} could not be started: {below}"
        free = world.hugepages_free().get(page, 0)
        return hugepages_short(world.names[i], page, hugepages_needed(memory, page), free)

    def steer(self, world: World, floor: Arr) -> tuple[Arr, Arr]:
        """The balloon goes to its target; QEMU clamps a target above the VM's memory to it
        (a balloon is never negative)."""
        import numpy as np

        s = world.state
        return np.minimum(s.target, s.memory), floor


#: ESXi: the configuration key of the part of a guest's use it holds but does not touch
#: (scenario ``idle_held``): what ESXi's active estimate misses; absent: none.
IDLE_HELD = "idle_held"
#: ESXi: intra-VM page sharing (mostly zero pages), as a fraction of what a VM holds.
SHARE_FRACTION = 0.05
#: ESXi: Mem.MemZipMaxPct, the compression cache's share of a VM.
ZIP_FRACTION = 0.10
#: ESXi: Mem.CtlMaxPercent, how much of a VM its balloon may take.
CTL_MAX_PERCENT = 0.65


def active_bytes(used: Any, idle_held: Any) -> Any:
    """ESXi's active estimate of a guest's use (``guestMemoryUsage``): ``used`` less the part
    ``idle_held`` (a share, 0 without the scenario's ``idle_held``) it holds but does not touch,
    which sampling sees as idle; bytes, a number or an array. One formula for what the fake's
    ESXi reports and what its reclaim judges idle by.

    >>> active_bytes(10 * 2**30, 0.4) // 2**20, active_bytes(10 * 2**30, 0.0) == 10 * 2**30
    (6144, True)
    """
    import numpy as np

    if isinstance(used, np.ndarray):
        return used - np.trunc(used * idle_held)
    return used - int(used * idle_held)


def idle_held_shares(world: World) -> Arr:
    """Each VM's ``idle_held`` share (0 where the scenario gives none), read once per world:
    it is a scenario figure no call changes."""
    import numpy as np

    if world.idle_held is None:
        world.idle_held = np.array([float(c.get(IDLE_HELD) or 0.0) for c in world.configs])
    return world.idle_held


def esxi_unreserved_bytes(world: World) -> int:
    """What ESXi's admission control has left (:func:`~hvballoon.kinds.esxi.admits`): the
    host's memory less its own overhead, less the reservations and overheads of the VMs that
    hold memory (running or paused)."""
    s, h = world.state, world.host
    live = world.active() | ((s.paused > 0) & (s.crashed == 0))
    committed = float(((s.reservation + s.overhead) * live).sum())
    return int(h.physical_bytes - h.overhead_bytes - committed)


class ESXiFlavor(Flavor):
    """VMware ESXi: a target is a limit; the host decides balloons and reclaims in its order."""

    kind: ClassVar[Kind] = ESXI
    #: conservative assumptions
    physics: ClassVar[FlavorPhysics] = FlavorPhysics(
        256 * _MiB, _GiB, vm_overhead=96 * _MiB, rebalance_period=15.0
    )

    def config(self, spec: VMSpec) -> dict[str, Any]:
        config = super().config(spec)
        level = spec.shares_level or ("custom" if spec.shares else "normal")
        config["shares_level"] = level
        config["shares"] = spec.shares if level == "custom" else ESXI.shares_for(level, spec.memory)
        config["memory_reservation_lock"] = spec.memory_reservation_lock
        # a locked reservation is the memory size (memoryReservationLockedToMax)
        config["reservation_bytes"] = spec.memory if spec.memory_reservation_lock else spec.reservation or 0
        config[HOT_ADD] = spec.memory_hot_add
        config[HOT_ADD_LIMIT] = spec.hot_add_limit
        config[HOT_ADD_INCREMENT] = spec.hot_add_increment
        if spec.idle_held:
            config[IDLE_HELD] = spec.idle_held
        return config

    def initial_target(self, spec: VMSpec, config: dict[str, Any]) -> float:
        return float(spec.limit if spec.limit is not None else spec.memory)

    def initial_current(self, world: World, floor: Arr) -> Arr:
        current: Arr = world.state.memory.copy()
        return current

    def steer(self, world: World, floor: Arr) -> tuple[Arr, Arr]:
        """The balloon ESXi wants for each VM: what is over its limit, plus its part of the
        host's shortage (by idle memory above its reservation, over shares; given back the
        same way when the host has room), capped by ``sched.mem.maxmemctl``,
        Mem.CtlMaxPercent, its reservation (ESXi never reclaims a VM below it) and the guest's
        floor."""
        import numpy as np

        s, act = world.state, world.active()
        mem, cur = s.memory, s.current
        balloon = np.where(act, mem - cur, 0.0)
        over_limit = np.maximum(s.host_backed - s.limit, 0.0)
        pressure = world.pressure_bytes
        res = np.minimum(s.reservation, mem)
        # ESXi judges idle memory by its active estimate (the idle memory tax: "if a virtual
        # machine is not actively using all of its currently allocated memory, ESXi charges
        # more for idle memory than for memory that is in use", vSphere Resource Management),
        # not by what the guest holds: memory a guest holds but does not touch is idle to it
        active = active_bytes(s.used, idle_held_shares(world))
        # memory within the reservation is not the host's to take: it counts as busy
        idle = np.minimum(cur - 0.75 * active, cur - res)
        idle = np.maximum(idle, 0.0) * act * (1000.0 / np.maximum(s.shares, 1.0))
        extra = np.zeros(world.n)
        if pressure > 0 and idle.sum() > 0:
            extra = pressure * idle / idle.sum()
        elif pressure < 0 and balloon.sum() > 0:
            give = -pressure * balloon / balloon.sum()
            headroom = np.where(np.isinf(s.limit), np.inf, np.maximum(s.limit - s.host_backed, 0.0))
            extra = -np.minimum(give, headroom)
        cap = np.minimum(
            np.minimum(s.balloon_cap, np.floor(CTL_MAX_PERCENT * mem)), mem - np.maximum(floor, res)
        )
        want = np.clip(np.floor(balloon + over_limit + extra), 0.0, np.maximum(cap, 0.0))
        return np.where(act, mem - want, cur), floor

    def _reclaim(
        self, world: World, held: Arr, total: Arr, base: float, avail: float
    ) -> tuple[Arr, Arr, Arr, Arr] | None:
        """Memory over a VM's limit is reclaimed from it whatever the host has; a shortage of
        the host in order: page sharing, (the balloons: decided by :meth:`steer`),
        compression (2:1, up to :data:`ZIP_FRACTION` of a VM), swap — never taking a VM's
        memory below its reservation (what it holds there stays resident, or shared)."""
        import numpy as np

        over = np.maximum(held - world.state.limit, 0.0)
        rest = held - over
        ex0 = rest.sum(axis=1) + base - avail
        ex = np.maximum(ex0, 0.0)[:, None]
        world.pressure_bytes = float(ex0[-1])
        if not (ex.any() or over.any()):
            return None
        shareable = np.floor(SHARE_FRACTION * rest)
        tot_sh = np.maximum(shareable.sum(axis=1, keepdims=True), 1.0)
        shr = np.minimum(np.ceil(np.minimum(ex / tot_sh, 1.0) * shareable), shareable)
        ex = np.maximum(ex - shr.sum(axis=1, keepdims=True), 0.0)
        world.pressure_bytes = float(ex[-1, 0]) if ex0[-1] > 0 else float(ex0[-1])
        rest = rest - shr
        # what may be compressed or swapped: what each VM holds above its reservation
        room = np.maximum(rest - np.maximum(world.state.reservation - shr, 0.0), 0.0)
        tot_room = np.maximum(room.sum(axis=1, keepdims=True), 1.0)
        need = over + np.minimum(np.ceil(ex * room / tot_room), room)
        # compress what is not swapped: 2 x zpool + (need - zpool) must fit in held - shared
        zpool = np.minimum(np.minimum(need, np.floor(ZIP_FRACTION * held / 2)), held - shr - need)
        return need - zpool, 2 * zpool, shr, zpool

    def apply_config(
        self, state: GuestState, i: int, plan: ConfigUpdate, config: dict[str, Any], power_state: str
    ) -> None:
        """A target is the limit (none: the VM's memory); a new memory size moves an unlimited
        VM's target with it."""
        if plan.limit_bytes is not None:
            state.target[i] = plan.limit_bytes
        elif plan.unlimited_limit:
            state.target[i] = state.memory[i]
        if plan.maximum_bytes is not None and config.get("memory_reservation_lock"):
            config["reservation_bytes"] = plan.maximum_bytes  # locked to the memory size
        super().apply_config(state, i, plan, config, power_state)
        if plan.maximum_bytes is not None and config.get("limit_bytes") is None:
            state.target[i] = plan.maximum_bytes

    def start_refusal(self, world: World, i: int) -> str | None:
        """ESXi's admission control (the kind's rule): a VM with a reservation powers on only
        with its reservation plus its overhead unreserved, out of the host's memory less its own
        overhead, less the reservations and overheads of the VMs that hold memory."""
        s = world.state
        unreserved = esxi_unreserved_bytes(world)
        reservation, overhead = int(s.reservation[i]), int(s.overhead[i])
        if powers_on(reservation, overhead, unreserved):
            return None
        return not_powered_on(world.names[i], reservation + overhead, unreserved)


#: Hyper-V's defaults for a new VM (New-VM): what a scenario leaves out.
DM_DEFAULT_MINIMUM = 512 * _MiB
DM_DEFAULT_BUFFER_PERCENT = 20
DM_DEFAULT_PRIORITY = 50


class HyperVFlavor(Flavor):
    """Microsoft Hyper-V: Dynamic Memory by demand, buffer and priority; static memory."""

    kind: ClassVar[Kind] = HYPERV
    #: conservative assumptions
    physics: ClassVar[FlavorPhysics] = FlavorPhysics(
        512 * _MiB, _GiB, vm_overhead=32 * _MiB, rebalance_period=5.0
    )
    backs_assigned_memory: ClassVar[bool] = True

    def config(self, spec: VMSpec) -> dict[str, Any]:
        config = super().config(spec)
        dynamic = True if spec.dynamic is None else spec.dynamic
        config["dynamic"] = dynamic
        # Dynamic Memory's default startup: half the memory, a size Hyper-V takes (2 MiB steps)
        half = max(MINIMUM_SIZE_BYTES, spec.memory // 2 // HYPERV.alignment_bytes * HYPERV.alignment_bytes)
        config["startup_bytes"] = spec.startup or (min(half, spec.memory) if dynamic else spec.memory)
        # a static VM keeps Hyper-V's default range as leftovers (512 MiB .. its memory)
        config["minimum_bytes"] = spec.minimum or min(DM_DEFAULT_MINIMUM, config["startup_bytes"])
        config["maximum_bytes"] = spec.maximum or spec.memory
        config["buffer_percent"] = spec.buffer_percent or DM_DEFAULT_BUFFER_PERCENT
        config["priority"] = DM_DEFAULT_PRIORITY if spec.priority is None else spec.priority
        return config

    def initial_target(self, spec: VMSpec, config: dict[str, Any]) -> float:
        return float(config["maximum_bytes"] if config["dynamic"] else config["startup_bytes"])

    def configured_memory(self, spec: VMSpec, config: dict[str, Any]) -> float:
        """Get-VM's configured size: a Dynamic Memory VM may be given up to its maximum (which
        may exceed its startup memory); a static VM has exactly its startup memory."""
        return float(config["maximum_bytes"] if config["dynamic"] else config["startup_bytes"])

    def initial_current(self, world: World, floor: Arr) -> Arr:
        """A scenario starts from a running steady state, not a boot: a Dynamic Memory VM holds
        what Hyper-V's balancing gives it for the demand it has at time zero (its use plus
        buffer, within its minimum and maximum, trimmed by priority when the host is short, as
        :meth:`steer` decides), never less than the guest cannot free; a static VM its startup
        memory."""
        import numpy as np

        s = world.state
        live = (s.running > 0) | (s.paused > 0)
        demand = np.maximum(s.used_baseline, floor)
        want = np.floor(self._balanced(world, demand, live, s.startup))
        balanced = (s.dynamic > 0) & (s.balloon_driver > 0)
        current: Arr = np.where(balanced, np.minimum(np.maximum(want, floor), s.memory), s.startup)
        return current

    def _balanced(self, world: World, demand: Arr, live: Mask, held: Arr) -> Arr:
        """What Dynamic Memory aims to give each ``live`` VM for ``demand``: demand plus buffer
        within its range, the lowest priorities trimmed first when the host cannot give every
        VM that (their buffers, then down to their minimum); a static VM its startup memory.

        A Dynamic Memory VM whose guest runs no integration services (scenario
        ``balloon_driver: false``; or not yet: it is booting) keeps what it ``held`` (from its
        start: its startup memory): "Hyper-V cannot adjust the memory dynamically to respond to
        changes in memory demand" without the guest's Dynamic Memory driver (Microsoft's Best
        Practices Analyzer, "Dynamic Memory is enabled but not responding on some virtual
        machines"), and the startup memory is what a Dynamic Memory VM starts with."""
        import numpy as np

        s = world.state
        dyn = (s.dynamic > 0) & live & (s.balloon_driver > 0)
        d_now = demand
        want_dm = buffered_demand(d_now, s.dm_buffer_percent, s.dm_minimum, s.dm_maximum)
        want: Arr = np.where(dyn, want_dm, np.where(s.dynamic > 0, held, s.startup)) * live
        h = world.host
        avail = h.physical_bytes - h.overhead_bytes - h.reserve_bytes - world.overheads()
        short = want.sum() - avail
        if short > 0:
            # take from the lowest priority first: buffers, then down to the minimum; within a
            # priority, from every VM in proportion to what it has to give (the balancer evens
            # out its VMs' memory pressure, it does not strip one VM and spare its peers)
            levels = np.unique(s.dm_priority[dyn])
            for trimmed_to in (np.clip(d_now, s.dm_minimum, s.dm_maximum), s.dm_minimum):
                for level in levels:
                    room = np.where(dyn & (s.dm_priority == level), np.maximum(want - trimmed_to, 0.0), 0.0)
                    total = room.sum()
                    if total > 0:
                        take = min(short, total)
                        want -= room * (take / total)
                        short -= take
                    if short <= 0:
                        break
                if short <= 0:
                    break
        return want

    def steer(self, world: World, floor: Arr) -> tuple[Arr, Arr]:
        """What Dynamic Memory gives each VM: its demand plus buffer, within its range; when
        the host is short, the lowest priorities are trimmed first (their buffers, then down to
        their minimum), and memory the host does not have free is granted to the highest
        priorities first — among VMs of one priority, in proportion to what each has to give or
        asks (the balancer evens out their memory pressure). A static VM keeps its startup
        memory: Hyper-V does not balance it."""
        import numpy as np

        s, act = world.state, world.active()
        want = self._balanced(world, s.effective_demand, act, s.current)
        h = world.host
        avail = h.physical_bytes - h.overhead_bytes - h.reserve_bytes - world.overheads()
        cur = s.current
        held = np.where(act, cur, s.host_backed * (s.paused > 0)).sum()
        free = max(0.0, avail - held)
        inc = np.maximum(want - cur, 0.0) * act
        if inc.sum() > free:
            # what the host has free goes to the highest priorities first, within a priority in
            # proportion to what each VM asks
            grant = np.zeros_like(inc)
            for level in np.unique(s.dm_priority[inc > 0])[::-1]:
                asks = np.where((inc > 0) & (s.dm_priority == level), inc, 0.0)
                total = asks.sum()
                given = min(free, total)
                grant += asks * (given / total)
                free -= given
            want = np.where(inc > 0, cur + grant, want)
        # a runtime resize takes from a static VM only what its guest can free (not what it
        # uses); it never adds memory beyond the VM's startup size
        low = np.where(s.dynamic > 0, floor, np.minimum(np.maximum(floor, s.used), cur))
        return np.where(act, np.floor(want), cur), low

    def apply_config(
        self, state: GuestState, i: int, plan: ConfigUpdate, config: dict[str, Any], power_state: str
    ) -> None:
        """A target is the maximum (Dynamic Memory) or the startup size (static), also right
        after Dynamic Memory is switched on or off (the VM's target is then the other field).
        The VM's configured size follows: while it runs it only grows (a runtime resize down
        leaves what it took ballooned out of the VM's size)."""
        if plan.dynamic is not None or plan.maximum_bytes is not None or plan.startup_bytes is not None:
            state.target[i] = config["maximum_bytes"] if config.get("dynamic") else config["startup_bytes"]
        size = float(config["maximum_bytes"] if config.get("dynamic") else config["startup_bytes"])
        live = state.running[i] > 0 or state.paused[i] > 0
        state.memory[i] = max(float(state.memory[i]), size) if live else size

    def start_refusal(self, world: World, i: int) -> str | None:
        """Hyper-V starts a VM only with its startup memory free (the kind's rule): free is the
        host's memory less its own overhead and the reserve it keeps for itself (what Dynamic
        Memory never hands out either), the overheads of the VMs that hold memory and what they
        hold now (it backs all it assigned them)."""
        s, h = world.state, world.host
        live = world.active() | ((s.paused > 0) & (s.crashed == 0))
        held = float((s.host_backed * live).sum())
        free = int(h.physical_bytes - h.overhead_bytes - h.reserve_bytes - world.overheads() - held)
        startup = int(world.configs[i]["startup_bytes"])
        return None if starts(startup, free) else not_started(world.names[i], startup, free)

    def not_running(self, world: World, current: Arr) -> tuple[int, str] | None:
        """Hyper-V starts VMs one after another, each only with its startup memory free (the
        kind's rule), and pages no VM's memory out to make room (Smart Paging only bridges a
        restart below the startup memory): a world whose VMs run at the start is one Hyper-V could
        be in only if, started in turn, each found its startup memory free beside what the VMs
        before it hold (``current``: a static VM its startup memory, a Dynamic Memory VM what its
        balancing gives it) and their overheads."""
        import numpy as np

        s, h = world.state, world.host
        room = float(h.physical_bytes - h.overhead_bytes - h.reserve_bytes)
        for i in np.nonzero((s.running > 0) | (s.paused > 0))[0]:
            startup = int(world.configs[i]["startup_bytes"])
            if not starts(startup, int(room)):
                return int(i), not_started(world.names[i], startup, int(room))
            held = float(current[i]) + float(s.overhead[i])
            if held > room:  # started, its guest holds more than Hyper-V has left to assign
                shown_held, shown_room = format_sizes(int(held), int(room))
                return int(i), (
                    f"{world.names[i]!r} would hold {shown_held} with its overhead where the host has only "
                    f"{shown_room} left for it (Hyper-V assigns a VM only memory it has free)"
                )
            room -= held
        return None

    def out_of_memory(self, asked_bytes: float, limit_bytes: float) -> str:
        """A Windows guest has no OOM killer: it refuses a commit beyond its commit limit (its
        memory plus its page files), and Windows' Resource Exhaustion Detector logs event 2004
        in the System log ("Windows successfully diagnosed a low virtual memory condition",
        Level Warning, keyword "Events related to exhaustion of system commit limit (virtual
        memory)"; Microsoft's "Detecting Low Virtual Memory Conditions in Windows 2008 and R2"),
        naming the programs that committed the most. The simulated guest has no programs: its
        workloads' commit charge stands in for them, the sizes in MB."""
        asked, limit = int(asked_bytes) // _MiB, int(limit_bytes) // _MiB
        return (
            "Windows successfully diagnosed a low virtual memory condition (Resource-Exhaustion-Detector, "
            f"event 2004): the workloads asked to commit {asked} MB, beyond the commit limit of {limit} MB "
            "(memory plus page file); the commits beyond it failed"
        )


#: Every flavour, by its kind's name.
FLAVORS: dict[str, Flavor] = {f.name: f for f in (KVMFlavor(), ESXiFlavor(), HyperVFlavor())}
#: Their constants, by name.
FLAVOR_PHYSICS: dict[str, FlavorPhysics] = {name: f.physics for name, f in FLAVORS.items()}
