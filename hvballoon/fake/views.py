"""What each flavour of the fake backend shows of a guest: one object per hypervisor kind.

The real backend of a kind fills some fields and leaves the rest ``None`` (libvirt has no
host-swap figure, vSphere no guest report, Hyper-V no guest "used"); the flavour's view shows
the world's guest the same way. Every rule (capabilities, mechanism, what a target sets) comes
from the kind (:mod:`hvballoon.kinds`), which the view holds.

>>> VIEWS["hyperv"].kind.name, VIEWS["kvm"].host_figures({"shared": 0, "swapped": 5}, 0, vm_overheads=9)
('hyperv', {'shared_bytes': 0})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hvballoon.errors import InvalidStateError
from hvballoon.fake.flavors import IDLE_HELD, active_bytes, esxi_unreserved_bytes
from hvballoon.kinds import ESXI, HYPERV, KVM, Kind
from hvballoon.kinds.esxi import HOT_ADD, HOT_ADD_INCREMENT, HOT_ADD_LIMIT, admits, guest_notes
from hvballoon.kinds.hyperv import NO_DEMAND_NOTE
from hvballoon.kinds.kvm import (
    HOTPLUG_MAXIMUM,
    HUGEPAGE_BYTES,
    HUGEPAGES,
    VFIO_DEVICES,
    hugepage_extra,
    hugepage_pool_extra,
)
from hvballoon.models import ConfigUpdate, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import format_size, format_sizes
from hvballoon.virtio_balloon import Freshness

if TYPE_CHECKING:
    from hvballoon.fake.guest import Guest
    from hvballoon.fake.world import World

__all__ = ["UNSEEN", "VIEWS", "ESXiView", "FlavorView", "HyperVView", "KVMView", "Seen"]


@dataclass(frozen=True)
class Seen:
    """What a session itself knows of a VM that the hypervisor would not show it: the target
    it set (where the hypervisor keeps none to read back, :attr:`FlavorView.reads_live_target`)
    and the time of the guest's last report when it switched the VM's stats period on (that
    report is the frozen one, :meth:`FlavorView.period_to_arm`)."""

    target_bytes: int | None = None
    armed_after: float | None = None


#: A session that knows nothing of the VM of its own.
UNSEEN = Seen()


class FlavorView:
    """How the real backend of :attr:`kind` shows a VM, its stats, configuration and host."""

    kind: ClassVar[Kind]
    #: Whether the real backend reads a running VM's target back from the hypervisor. libvirt
    #: cannot: it keeps the balloon's position (``balloon.current``), not the target asked for,
    #: so the kvm and qmp backends know only the targets their own session set (``None``
    #: otherwise); ESXi's limit and Hyper-V's maximum are configuration anyone reads.
    reads_live_target: ClassVar[bool] = True

    def vm_extra(self, g: Guest, power: PowerState) -> dict[str, Any]:
        """What the real backend's VM listing adds beside the common fields."""
        return {}

    def configured_bytes(self, g: Guest) -> int:
        return g.memory_bytes

    def running_stats(
        self,
        w: World,
        g: Guest,
        common: dict[str, Any],
        *,
        seen: Seen = UNSEEN,
    ) -> MemoryStats:
        """The stats of a running VM (``common``: its VM, mechanism, time, configured size;
        ``seen``: what the session itself knows of it, see :class:`Seen`)."""
        raise NotImplementedError

    def idle_stats(
        self,
        w: World,
        g: Guest,
        common: dict[str, Any],
        *,
        seen: Seen = UNSEEN,
    ) -> MemoryStats:
        """The stats of a VM that does not run (stopped, paused, suspended): its target only."""
        return MemoryStats(**common, target_bytes=self.shown_target(g), stale=True)

    def shown_target(self, g: Guest) -> int:
        """The target the real backend reports for the VM (by default the one it was given)."""
        return int(g.target_bytes)

    def config(self, g: Guest, common: dict[str, Any]) -> MemoryConfig:
        raise NotImplementedError

    #: Whether the real backend takes a ``stats_period`` option (the fake takes it where it does).
    has_stats_period_option: ClassVar[bool] = False

    def period_to_arm(self, g: Guest, *, option: int, chosen: bool) -> int | None:
        """The stats period the real backend sets on a running VM it sees for the first time
        (``option``: its ``stats_period`` option; ``chosen``: the session's caller set one on it
        itself), or ``None``."""
        return None

    def host_figures(self, acc: dict[str, Any], swap_bytes: int, *, vm_overheads: int) -> dict[str, Any]:
        """The host figures the real backend can read (``acc``: the world's host accounting;
        ``vm_overheads``: what its running VMs' overheads add up to)."""
        raise NotImplementedError

    def host_extra(self, w: World) -> dict[str, Any]:
        """The ``HostStats.extra`` keys of the host that the real backend reads besides its
        figures (none by default)."""
        return {}

    def check_resize(self, w: World, g: Guest, plan: ConfigUpdate, *, backend: str) -> None:
        """Refuse, as the host would, a change it cannot make now (checked after the kind's
        rules, when the request reaches the host)."""

    @staticmethod
    def vm_overhead(w: World, g: Guest) -> int:
        """What the hypervisor spends on the VM besides its memory (its process, page tables)."""
        return int(w.physics.vm_overhead)

    @classmethod
    def host_consumed(cls, w: World, g: Guest) -> int:
        return g.host_resident_bytes + cls.vm_overhead(w, g)


class KVMView(FlavorView):
    """libvirt: the balloon's figures and the guest driver's last report (at its stats period)."""

    kind: ClassVar[Kind] = KVM
    reads_live_target: ClassVar[bool] = False

    def vm_extra(self, g: Guest, power: PowerState) -> dict[str, Any]:
        # what the libvirt backend's listing adds: the domain's ID (-1, None, while shut off)
        return {"libvirt_id": g.run}

    def running_stats(
        self,
        w: World,
        g: Guest,
        common: dict[str, Any],
        *,
        seen: Seen = UNSEEN,
    ) -> MemoryStats:
        """The guest's report is trusted as the kvm and qmp backends trust a driver's report
        (:mod:`hvballoon.virtio_balloon`): stale once older than three periods and two seconds;
        not a figure at all while the stats period is off (libvirt keeps the last one, frozen).
        The target is the one the session set (libvirt keeps none it could read back)."""
        age = w.report_age(g)
        report = g.report()
        period = g.stats_period
        # a report from before the session switched the period on is the frozen one: it waits
        # for the next, as the kvm and qmp backends do (virtio_balloon.Freshness.armed_after)
        since_arming = seen.armed_after is None or (g.last_report_at or 0.0) > seen.armed_after
        counts = report is not None and period > 0 and since_arming
        fresh = counts and age is not None and age <= Freshness(period=period).stale_after(period)
        fields: dict[str, Any] = {
            "current_bytes": g.current_bytes,
            "target_bytes": seen.target_bytes,
            "ballooned_bytes": max(0, g.memory_bytes - g.current_bytes),
            "host_consumed_bytes": self.host_consumed(w, g),
            "guest_report_age_seconds": age,
            "stale": not fresh,
        }
        if report is not None and counts:
            fields.update(
                guest_total_bytes=report["total"],
                guest_used_bytes=report["used"],
                guest_free_bytes=report["free"],
                guest_available_bytes=report["free"] + report["cache"],
                guest_cache_bytes=report["cache"],
                swap_in_bytes=report["swin"],
                swap_out_bytes=report["swout"],
                major_faults=report["majf"],
            )
        return MemoryStats(**common, **fields, extra={"oom_events": g.oom_events})

    def idle_stats(
        self,
        w: World,
        g: Guest,
        common: dict[str, Any],
        *,
        seen: Seen = UNSEEN,
    ) -> MemoryStats:
        """A paused domain's QEMU still holds its memory and its balloon (libvirt reads
        ``balloon.current``); its guest reports nothing while paused, so its last report ages."""
        if g.power_state == "paused":
            return self.running_stats(w, g, common, seen=seen)
        return super().idle_stats(w, g, common)

    def config(self, g: Guest, common: dict[str, Any]) -> MemoryConfig:
        c = g.config
        balloon = bool(c.get("balloon_device", True))
        extra: dict[str, Any] = {"balloon_model": "virtio" if balloon else "none"}
        if c.get("numa_nodes"):
            extra["numa_nodes"] = c["numa_nodes"]  # guest NUMA cells: the maximum cannot change
        if c.get(HOTPLUG_MAXIMUM) is not None:
            extra[HOTPLUG_MAXIMUM] = c[HOTPLUG_MAXIMUM]  # <maxMemory>: the maximum stays at most it
        extra[VFIO_DEVICES] = int(c.get(VFIO_DEVICES) or 0)  # as the kvm backend counts them
        # <memoryBacking><hugepages>, as the kvm backend reads it (no key with ordinary pages)
        extra.update(hugepage_extra(bool(c.get(HUGEPAGES)), c.get(HUGEPAGE_BYTES)))
        # without a <memballoon> device libvirt's XML has no autodeflate, freePageReporting or
        # stats period to read: the real backend reports them None
        return MemoryConfig(
            **common,
            startup_bytes=c.get("startup_bytes") or g.memory_bytes,
            maximum_bytes=c["maximum_bytes"],
            deflate_on_oom=bool(c.get("deflate_on_oom")) if balloon else None,
            free_page_reporting=bool(c.get("free_page_reporting", True)) if balloon else None,
            stats_period_seconds=g.stats_period if balloon else None,
            extra=extra,
        )

    has_stats_period_option: ClassVar[bool] = True

    def period_to_arm(self, g: Guest, *, option: int, chosen: bool) -> int | None:
        """The kvm and qmp backends' first sighting of a run: a period that is off is switched
        on (to their ``stats_period`` option), by the KVM kind's rule."""
        return KVM.stats_period_to_arm(
            g.stats_period,
            has_balloon=bool(g.config.get("balloon_device", True)),
            option=option,
            read_only=False,
            chosen=chosen,
        )

    def host_figures(self, acc: dict[str, Any], swap_bytes: int, *, vm_overheads: int) -> dict[str, Any]:
        # no swap or overhead figures (libvirt has none to give); KSM shares nothing: the world
        # runs none
        return {"shared_bytes": acc["shared"]}

    def host_extra(self, w: World) -> dict[str, Any]:
        """The host's huge-page pool as the kvm backend reads it (the capabilities' cell pages
        and ``virNodeGetFreePages``): empty without one, never unknown."""
        return hugepage_pool_extra(w.hugepage_pool, w.hugepages_free())


class ESXiView(FlavorView):
    """vSphere: quickStats (ESXi's balloon, swap, compression and sharing; no guest report)."""

    kind: ClassVar[Kind] = ESXI

    def shown_target(self, g: Guest) -> int:
        """Its limit, never above its memory size (the kind's rule)."""
        return int(ESXI.target_of(g.target_bytes, g.memory_bytes) or 0)

    def running_stats(
        self,
        w: World,
        g: Guest,
        common: dict[str, Any],
        *,
        seen: Seen = UNSEEN,
    ) -> MemoryStats:
        """quickStats; a guest without VMware Tools running (scenario ``balloon_driver:
        false``: no vmmemctl) has ``guestMemoryUsage`` 0 and a gray guest heartbeat, which the
        esxi backend reads as unknown (its stats stale, the kind's note saying why), not as a
        guest that uses nothing; one with VMware Tools a green heartbeat."""
        used = self.active_bytes(g) if g.balloon_driver else None
        heartbeat = "green" if g.balloon_driver else "gray"
        return MemoryStats(
            **common,
            current_bytes=g.current_bytes,
            target_bytes=self.shown_target(g),
            ballooned_bytes=g.ballooned_bytes,
            guest_used_bytes=used,
            demand_bytes=used,
            stale=used is None,
            host_consumed_bytes=self.host_consumed(w, g),
            swapped_bytes=g.host_swapped_bytes,
            compressed_bytes=g.compressed_bytes,
            shared_bytes=g.shared_bytes,
            extra={
                "limit_bytes": g.config.get("limit_bytes"),
                "overhead_bytes": self.vm_overhead(w, g),
                **guest_notes(0 if used is None else used, heartbeat),
            },
        )

    @classmethod
    def host_consumed(cls, w: World, g: Guest) -> int:
        """``hostMemoryUsage``: the host memory the VM consumes, its overhead included, and its
        compression cache with it: ESXi keeps a VM's compressed pages in that VM's own cache,
        host memory charged to the VM (sized by Mem.MemZipMaxPct of the VM's memory), so the
        host's use is what its VMs consume plus its own overhead."""
        return g.host_resident_bytes + g.compression_cache_bytes + cls.vm_overhead(w, g)

    @staticmethod
    def active_bytes(g: Guest) -> int:
        """``guestMemoryUsage``, ESXi's active estimate: the guest's use less the part it holds
        but does not touch (scenario ``idle_held``), which sampling sees as idle."""
        return int(active_bytes(g.used_bytes, float(g.config.get(IDLE_HELD) or 0.0)))

    def config(self, g: Guest, common: dict[str, Any]) -> MemoryConfig:
        c = g.config
        return MemoryConfig(
            **common,
            maximum_bytes=g.memory_bytes,
            reservation_bytes=c.get("reservation_bytes"),
            limit_bytes=c.get("limit_bytes"),
            shares=c.get("shares"),
            shares_level=c.get("shares_level") or "custom",
            memory_reservation_lock=bool(c.get("memory_reservation_lock")),
            balloon_cap_bytes=c.get("balloon_cap_bytes"),
            extra=self.hot_add(c),
        )

    @staticmethod
    def hot_add(c: dict[str, Any]) -> dict[str, Any]:
        """Memory hot-add as vSphere shows it: whether it is on; its limit and increment only then."""
        on = bool(c.get(HOT_ADD))
        sizes = {k: c[k] for k in (HOT_ADD_LIMIT, HOT_ADD_INCREMENT) if on and c.get(k) is not None}
        return {HOT_ADD: on, **sizes}

    def host_figures(self, acc: dict[str, Any], swap_bytes: int, *, vm_overheads: int) -> dict[str, Any]:
        # swap used: its VMs' host-swapped memory; shared: the pages it shares; overhead: its
        # running VMs' consumedOverheadMemory (quickStats), summed as the esxi backend does
        return {
            "swap_used_bytes": acc["swapped"],
            "shared_bytes": acc["shared"],
            "hypervisor_overhead_bytes": vm_overheads,
        }

    def check_resize(self, w: World, g: Guest, plan: ConfigUpdate, *, backend: str) -> None:
        """ESXi's admission control (the kind's :func:`~hvballoon.kinds.esxi.admits`) on a
        running VM whose reservation rises (set, or locked to its memory size): the rise comes
        out of what the VMs powered on leave unreserved (their reservations and overheads), or
        the host refuses the reconfiguration (InsufficientResourcesFault)."""
        asked, now = plan.reservation_bytes, int(g.config.get("reservation_bytes") or 0)
        if asked is None or asked <= now or not g.running:
            return
        unreserved = esxi_unreserved_bytes(w)
        if not admits(asked - now, unreserved):
            shown_asked, shown_free = format_sizes(asked, max(0, unreserved))
            raise InvalidStateError(
                f"the host cannot back a reservation of {shown_asked} for {g.name!r}: its VMs powered on "
                f"leave {shown_free} unreserved (ESXi's admission control: InsufficientResourcesFault)",
                vm=g.name,
                backend=backend,
                native_code="vim.fault.InsufficientMemoryResourcesFault",  # as the esxi backend keeps it
                details={"reservation_bytes": asked, "unreserved_bytes": max(0, unreserved)},
            )


class HyperVView(FlavorView):
    """Get-VM: MemoryAssigned, MemoryDemand and MemoryStatus; no guest "used" figure."""

    kind: ClassVar[Kind] = HYPERV

    def vm_extra(self, g: Guest, power: PowerState) -> dict[str, Any]:
        # what Get-VM reports: a simulated VM is always healthy
        return {"state": HYPERV.state_name(power), "health": "ok", "dynamic": bool(g.config.get("dynamic"))}

    def configured_bytes(self, g: Guest) -> int:
        # Get-VM: a static VM has its startup memory; MemoryMinimum/Maximum are leftovers there
        if g.config.get("dynamic"):
            return int(g.config.get("maximum_bytes") or g.memory_bytes)
        return int(g.config["startup_bytes"])

    def running_stats(
        self,
        w: World,
        g: Guest,
        common: dict[str, Any],
        *,
        seen: Seen = UNSEEN,
    ) -> MemoryStats:
        dynamic = bool(g.config.get("dynamic"))
        if not g.balloon_driver:
            # no integration services in the guest (or not yet: it is booting): Get-VM's
            # MemoryDemand is 0 and its MemoryStatus empty, which the real backend reads as
            # unknown, not as a guest that uses nothing
            return MemoryStats(
                **common,
                current_bytes=g.current_bytes,
                target_bytes=g.target_bytes,
                stale=True,
                extra={"memory_status": None, "dynamic": dynamic, "stats_note": NO_DEMAND_NOTE},
            )
        demand = g.demand_bytes
        status = "OK" if g.current_bytes >= demand else ("Warning" if g.free_bytes == 0 else "Low")
        return MemoryStats(
            **common,
            current_bytes=g.current_bytes,
            target_bytes=g.target_bytes,
            demand_bytes=demand,
            # as the real backend derives it: MemoryAssigned - MemoryDemand
            guest_available_bytes=max(0, g.current_bytes - demand),
            extra={"memory_status": status, "dynamic": dynamic},
        )

    def config(self, g: Guest, common: dict[str, Any]) -> MemoryConfig:
        c = g.config
        return MemoryConfig(
            **common,
            dynamic=bool(c["dynamic"]),
            startup_bytes=c["startup_bytes"],
            minimum_bytes=c["minimum_bytes"],
            maximum_bytes=c["maximum_bytes"],
            buffer_percent=c["buffer_percent"],
            priority=c["priority"],
        )

    def host_figures(self, acc: dict[str, Any], swap_bytes: int, *, vm_overheads: int) -> dict[str, Any]:
        # its swap is its page file; it shares nothing; Get-VM reports no overhead
        return {"swap_total_bytes": swap_bytes, "swap_used_bytes": acc["swapped"]}

    def check_resize(self, w: World, g: Guest, plan: ConfigUpdate, *, backend: str) -> None:
        """A Hyper-V host resizes a running static VM only with the memory free now for its VMs
        (what it keeps for itself, the host's reserve, is not theirs: Dynamic Memory does not
        hand it out either); it refuses (after the request is sent, as the host does) what it
        cannot back, rather than take the request and grow the VM by less."""
        startup = plan.startup_bytes
        if startup is None or g.config.get("dynamic") or not g.running:
            return
        grow = startup - g.current_bytes
        free = w.host_free_bytes - w.host.reserve_bytes
        if grow > free:
            raise InvalidStateError(
                f"the host cannot resize {g.name!r} to {format_size(startup)} now: it has "
                f"{format_size(max(0, free))} free for its VMs and the VM needs {format_size(grow)} more "
                "(Failed to modify device 'Memory': not enough memory in the system)",
                vm=g.name,
                backend=backend,
                native_code="not_enough_memory",
            )  # no details: the Hyper-V backend reads none from the host's refusal


#: Every flavour's view, by its kind's name.
VIEWS: dict[str, FlavorView] = {v.kind.name: v for v in (KVMView(), ESXiView(), HyperVView())}
