"""The simulated world behind ``fake://``: a host, its guests and a clock, vectorised over VMs.

The world knows nothing of hvballoon's API models or errors (moto's "models"); the fake backend
(:mod:`hvballoon.fake.backend`) is the stateless adapter that shows it the way each real backend
would. Time moves only when :meth:`World.advance` is called (or, in wall-clock mode, when
:meth:`World.sync` catches up with real time), so runs are deterministic: the same scenario,
seed and calls give bit-identical results.

>>> from hvballoon.fake.scenario import load_scenario
>>> w = World.from_scenario(load_scenario("seed"))
>>> len(w.guests), w.host.physical_bytes // 2**30, w.promised_bytes // 2**30
(10, 120, 160)
>>> w.advance(3600)
>>> w.now, w.accounting()["host"]["conserved"]
(3600.0, True)

The model, per guest (bytes; ``K`` kernel baseline, ``U`` unfreeable, ``W`` swap space)::

    configured = balloon + current          current = used + cache + free
    used = K + U + resident anonymous        demand = resident anonymous + guest-swapped + K + U

Each step the workload sets the demand; the balloon moves toward its goal at the flavour's
rate but never below ``K + U`` (it stalls there: with a target below it and no
deflate-on-OOM the guest panics ``panic_delay`` seconds later and the VM is gone); cache is
reclaimed first, then anonymous memory goes to the guest's swap; demand beyond current + swap
is OOM-killed (an event). On the host, what the guests have touched plus overheads must fit in
physical memory less the reserve; the rest is reclaimed the flavour's way and accounted for:
KVM swaps QEMU memory; ESXi shares pages, balloons (it decides the balloon, within the limit and
``sched.mem.maxmemctl`` / 65 %), compresses (2:1, up to 10 % of a VM) and swaps; Hyper-V's
Dynamic Memory hands memory out by demand, buffer and priority, with Smart Paging only while
VMs boot beyond what fits.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hvballoon.fake.faults import FaultPlan
from hvballoon.fake.scenario import Scenario, VMSpec
from hvballoon.fake.workloads import WorkloadBlock, components, touch_rate
from hvballoon.kinds.esxi import ESXI

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Arr = npt.NDArray[np.float64]

__all__ = ["FLAVOR_PHYSICS", "Guest", "Host", "SimulationError", "StepObserver", "World"]

_NAMESPACE = uuid.UUID("6f1c1d1e-9d1b-4a52-9d39-7c2b1a0e5b11")
_MiB = 1024**2
_GiB = 1024**3
_PAGE = 4096


class StepObserver(Protocol):
    """What watches the world as it runs, set as ``World.observer`` (the recorder of
    :mod:`hvballoon.fake.record` is one): the world calls :meth:`take` with each block of steps
    it simulates, one row per step and one column per VM (the guests' swap, ``swp``, is only
    worked out step by step while an observer is set)."""

    def take(
        self,
        t: Arr,
        dem: Arr,
        cur: Arr,
        swp: Arr,
        oom: npt.NDArray[np.bool_],
        host_free: Arr,
        reclaimed: Arr,
        act: npt.NDArray[np.bool_],
    ) -> None: ...


@dataclass(frozen=True)
class FlavorPhysics:
    """Per-flavour constants (bytes per second; fractions)."""

    inflate_rate: int
    deflate_rate: int
    vm_overhead: int
    rebalance_period: float | None = None


#: The balloon of a QEMU guest under TCG inflated 256 MiB in 0.33-0.55 s and deflated faster;
#: with KVM acceleration it is several times quicker (set host.balloon.inflate_rate to model
#: a slow guest). ESXi's and Hyper-V's figures are conservative assumptions.
FLAVOR_PHYSICS: dict[str, FlavorPhysics] = {
    "kvm": FlavorPhysics(inflate_rate=2 * _GiB, deflate_rate=4 * _GiB, vm_overhead=64 * _MiB),
    "esxi": FlavorPhysics(256 * _MiB, _GiB, vm_overhead=96 * _MiB, rebalance_period=15.0),
    "hyperv": FlavorPhysics(512 * _MiB, _GiB, vm_overhead=32 * _MiB, rebalance_period=5.0),
}
_SWAP_IN_RATE = 16 * _MiB  # per second, once the guest has room again
_CACHE_GROWTH = 4 * _MiB  # per second, into free memory
_SHARE_FRACTION = 0.05  # ESXi: intra-VM page sharing (mostly zero pages)
_ZIP_FRACTION = 0.10  # ESXi: Mem.MemZipMaxPct
_CTL_MAX_PERCENT = 0.65  # ESXi: Mem.CtlMaxPercent
_MAX_EVENTS = 10_000

# per-VM state saved with the world
_STATE = [
    "mem",
    "kern",
    "unf",
    "wsize",
    "cmax",
    "touch",
    "used0",
    "ovh",
    "rin",
    "rout",
    "tgt",
    "cur",
    "cache",
    "z",
    "swp",
    "dem",
    "deff",
    "usedg",
    "free",
    "gbk",
    "swin",
    "swout",
    "majf",
    "ooms",
    "oomf",
    "hsw",
    "comp",
    "shr",
    "zpool",
    "running",
    "crashed",
    "paused",
    "driver",
    "don",
    "period",
    "anchor",
    "last_rep",
    "freeze",
    "stall",
    "rep_total",
    "rep_used",
    "rep_free",
    "rep_cache",
    "rep_swin",
    "rep_swout",
    "rep_majf",
    "limit",
    "cap",
    "shares",
    "dyn",
    "dmin",
    "dmax",
    "buf",
    "prio",
    "startup",
]


def _labels(names: list[str]) -> list[str]:
    """Names made unique: real hypervisors allow two VMs with one name, and so does the fake.

    >>> _labels(["a", "b", "a", "a"])
    ['a', 'b', 'a#2', 'a#3']
    """
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


class SimulationError(AssertionError):
    """An internal invariant broke (only checked when the world is ``strict``)."""


@dataclass
class Host:
    name: str
    physical_bytes: int
    overhead_bytes: int = 0
    reserve_bytes: int = 0
    swap_bytes: int = 0


class Guest:
    """A view of one guest in the world's arrays (sizes in bytes, times in virtual seconds)."""

    __slots__ = ("_i", "_w", "config", "id", "label", "name")

    def __init__(self, world: World, index: int) -> None:
        self._w = world
        self._i = index
        self.id = world.ids[index]
        self.name = world.names[index]
        self.label = world.labels[index]  # the name, made unique (``name#2``) where it is shared
        self.config: dict[str, Any] = world.configs[index]

    def _get(self, name: str) -> float:
        return float(self._w.a[name][self._i])

    @property
    def index(self) -> int:
        return self._i

    @property
    def power_state(self) -> str:
        return "stopped" if self.crashed else self._w.power[self._i]

    @property
    def running(self) -> bool:
        return self.power_state == "running"

    @property
    def crashed(self) -> bool:
        return bool(self._w.a["crashed"][self._i])

    @crashed.setter
    def crashed(self, value: bool) -> None:
        if value:
            self._w.crash(self._i, reason="crashed")
        else:
            self._w.a["crashed"][self._i] = 0.0

    @property
    def memory_bytes(self) -> int:
        return int(self._get("mem"))

    @property
    def current_bytes(self) -> int:
        return int(self._get("cur"))

    @property
    def target_bytes(self) -> int:
        return int(self._get("tgt"))

    @property
    def demand_bytes(self) -> int:
        return int(self._get("deff"))

    @property
    def used_bytes(self) -> int:
        return int(self._get("usedg"))

    @property
    def cache_bytes(self) -> int:
        return int(self._get("cache"))

    @property
    def free_bytes(self) -> int:
        return int(self._get("free"))

    @property
    def ballooned_bytes(self) -> int:
        return max(0, self.memory_bytes - self.current_bytes) if self.running else 0

    @property
    def unfreeable_bytes(self) -> int:
        return int(self._get("unf"))

    @property
    def kernel_bytes(self) -> int:
        return int(self._get("kern"))

    @property
    def swap_bytes(self) -> int:
        return int(self._get("wsize"))

    @property
    def guest_swapped_bytes(self) -> int:
        return int(self._get("swp"))

    @property
    def swap_in_bytes(self) -> int:
        return int(self._get("swin"))

    @property
    def swap_out_bytes(self) -> int:
        return int(self._get("swout"))

    @property
    def major_faults(self) -> int:
        return int(self._get("majf"))

    @property
    def oom_events(self) -> int:
        return int(self._get("ooms"))

    @property
    def host_backed_bytes(self) -> int:
        return int(self._get("gbk"))

    @property
    def host_swapped_bytes(self) -> int:
        return int(self._get("hsw"))

    @property
    def compressed_bytes(self) -> int:
        return int(self._get("comp"))

    @property
    def shared_bytes(self) -> int:
        return int(self._get("shr"))

    @property
    def host_resident_bytes(self) -> int:
        return max(
            0, self.host_backed_bytes - self.host_swapped_bytes - self.compressed_bytes - self.shared_bytes
        )

    @property
    def balloon_driver(self) -> bool:
        return bool(self._w.a["driver"][self._i])

    @property
    def stats_period(self) -> int:
        return int(self._get("period"))

    @stats_period.setter
    def stats_period(self, value: int) -> None:
        self._w.set_config(self.id, {"stats_period_seconds": int(value)})

    @property
    def last_report_at(self) -> float | None:
        v = self._get("last_rep")
        return None if math.isnan(v) else v

    def report(self) -> dict[str, int] | None:
        """The guest driver's last report (``None`` until it has reported)."""
        if self.last_report_at is None:
            return None
        names = ("total", "used", "free", "cache", "swin", "swout", "majf")
        return {n: int(self._get(f"rep_{n}")) for n in names}

    def __repr__(self) -> str:
        return f"<Guest {self.name} {self.power_state} current={self.current_bytes}>"


class World:
    """A host and its guests, advanced by a virtual clock. Thread-safe (one re-entrant lock).

    ``clock="wall"`` with ``speed`` makes :meth:`sync` advance the world by the real time
    elapsed times ``speed`` (the fake backend syncs before every call). ``strict=True`` checks
    the accounting identities at every simulated step (slower; for tests).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        flavor: str | None = None,
        seed: int | None = None,
        clock: str = "virtual",
        speed: float = 1.0,
        strict: bool = False,
    ) -> None:
        import numpy as np

        self.scenario = scenario
        self.flavor = flavor or scenario.flavor
        if self.flavor not in FLAVOR_PHYSICS:
            raise ValueError(f"unknown flavor {self.flavor!r}; accepted: esxi, hyperv, kvm")
        if clock not in ("virtual", "wall"):
            raise ValueError("clock is 'virtual' or 'wall'")
        if not speed > 0:
            raise ValueError("speed must be above zero")
        self.seed = scenario.seed if seed is None else seed
        self.clock, self.speed, self.strict = clock, float(speed), strict
        self.now = 0.0
        self.step = float(scenario.step)
        self.lock = threading.RLock()
        self._wall_origin: tuple[float, float] | None = None
        hs = scenario.host
        phys = FLAVOR_PHYSICS[self.flavor]
        self.physics = phys
        self.rebalance_period = hs.rebalance_period or phys.rebalance_period
        self.panic_delay = float(hs.balloon.panic_delay)
        self.host = Host(
            hs.name, hs.physical, hs.overhead, hs.reserve, hs.physical // 4 if hs.swap is None else hs.swap
        )
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.faults = FaultPlan(seed=self.seed)
        for f in scenario.faults:
            self.faults.add(**f.model_dump())
        self.events: list[dict[str, Any]] = []
        self.observer: StepObserver | None = None
        self._buf: dict[str, Arr] | None = None
        self.version = 0
        self.host_free_bytes = 0
        self.pressure_bytes = 0.0
        specs = scenario.vms
        n = len(specs)
        self.n = n
        self.names = [s.name for s in specs]
        #: unique per VM: its name, or ``name#2``, ``name#3``… for the later VMs of a shared name
        self.labels = _labels(self.names)
        # a VM without an id gets a stable one from its label (the first of a name: its name)
        self.ids = [
            s.id or str(uuid.uuid5(_NAMESPACE, f"{scenario.name}/{label}"))
            for s, label in zip(specs, self.labels, strict=True)
        ]
        self.power = [s.power_state for s in specs]
        self.configs = [self._config_from_spec(s) for s in specs]
        self.a: dict[str, Arr] = {k: np.zeros(n) for k in _STATE}
        self._init_arrays(specs)
        self._blocks = self._build_blocks(specs)
        self.guests = {gid: Guest(self, i) for i, gid in enumerate(self.ids)}
        self._init_state()

    @classmethod
    def from_scenario(cls, scenario: Scenario, **kw: Any) -> World:
        return cls(scenario, **kw)

    # -- building --------------------------------------------------------------------------

    def _config_from_spec(self, spec: VMSpec) -> dict[str, Any]:
        config: dict[str, Any] = {
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
            "balloon_device": spec.balloon_device,
        }
        if self.flavor == "hyperv":
            dynamic = True if spec.dynamic is None else spec.dynamic
            config["dynamic"] = dynamic
            config["startup_bytes"] = spec.startup or (spec.memory // 2 if dynamic else spec.memory)
            # a static VM keeps Hyper-V's default range as leftovers (512 MiB .. its memory)
            config["minimum_bytes"] = spec.minimum or min(512 * _MiB, config["startup_bytes"])
            config["maximum_bytes"] = spec.maximum or spec.memory
            config["buffer_percent"] = spec.buffer_percent or 20
            config["priority"] = 50 if spec.priority is None else spec.priority
        elif self.flavor == "esxi":
            level = spec.shares_level or ("custom" if spec.shares else "normal")
            config["shares_level"] = level
            config["shares"] = spec.shares if level == "custom" else ESXI.shares_for(level, spec.memory)
            config["memory_reservation_lock"] = spec.memory_reservation_lock
            # a locked reservation is the memory size (memoryReservationLockedToMax)
            config["reservation_bytes"] = (
                spec.memory if spec.memory_reservation_lock else spec.reservation or 0
            )
        else:
            config["maximum_bytes"] = spec.maximum or spec.memory
        return config

    def _init_arrays(self, specs: list[VMSpec]) -> None:
        a, phys, bal = self.a, self.physics, self.scenario.host.balloon
        for i, s in enumerate(specs):
            kern = (
                s.kernel
                if s.kernel is not None
                else min(max(0, s.used - s.unfreeable), 128 * _MiB + s.memory // 128)
            )
            a["mem"][i] = s.memory
            a["kern"][i] = kern
            a["unf"][i] = s.unfreeable
            a["wsize"][i] = s.swap
            a["cmax"][i] = min(s.memory, s.cache_max if s.cache_max is not None else 2 * s.cache)
            a["touch"][i] = touch_rate(s.workload.kind, s.workload.params)
            a["used0"][i] = s.used
            a["ovh"][i] = phys.vm_overhead
            a["rin"][i] = bal.inflate_rate or phys.inflate_rate
            a["rout"][i] = bal.deflate_rate or phys.deflate_rate
            a["driver"][i] = s.balloon_driver and s.balloon_device
            a["don"][i] = s.deflate_on_oom
            a["period"][i] = s.stats_period
            a["running"][i] = s.power_state == "running"
            a["paused"][i] = s.power_state == "paused"
            if self.flavor == "esxi":
                a["tgt"][i] = s.limit if s.limit is not None else s.memory
            elif self.flavor == "hyperv":
                c = self.configs[i]
                a["tgt"][i] = c["maximum_bytes"] if c["dynamic"] else c["startup_bytes"]
            else:
                a["tgt"][i] = s.target if s.target is not None else s.memory
        for i in range(self.n):
            self._sync_knobs(i)

    def _sync_knobs(self, i: int) -> None:
        """Copy one guest's config dict into the arrays the simulation reads."""
        a, c = self.a, self.configs[i]
        inf = math.inf
        a["limit"][i] = inf if c.get("limit_bytes") is None else c["limit_bytes"]
        a["cap"][i] = inf if c.get("balloon_cap_bytes") is None else c["balloon_cap_bytes"]
        a["shares"][i] = c.get("shares") or 1000
        a["dyn"][i] = bool(c.get("dynamic"))
        a["dmin"][i] = c.get("minimum_bytes") or 0
        a["dmax"][i] = c.get("maximum_bytes") or a["mem"][i]
        a["buf"][i] = c.get("buffer_percent") or 0
        a["prio"][i] = 50 if c.get("priority") is None else c["priority"]
        a["startup"][i] = c.get("startup_bytes") or a["mem"][i]
        a["don"][i] = bool(c.get("deflate_on_oom"))

    def _build_blocks(self, specs: list[VMSpec]) -> list[WorkloadBlock]:
        by_kind: dict[str, list[Any]] = {}
        for i, s in enumerate(specs):
            for comp in components(i, s.workload.kind, s.workload.params):
                if comp.kind != "constant":
                    by_kind.setdefault(comp.kind, []).append(comp)
        a = self.a
        return [
            WorkloadBlock(kind, comps, a["used0"], a["kern"] + a["unf"], a["mem"])
            for kind, comps in sorted(by_kind.items())
        ]

    def _init_state(self) -> None:
        import numpy as np

        a = self.a
        act = a["running"] > 0
        floor = a["kern"] + a["unf"]
        if self.flavor == "hyperv":
            cur = a["startup"].copy()  # a VM boots with its startup memory
        elif self.flavor == "esxi":
            cur = a["mem"].copy()
        else:
            cur = np.maximum(a["tgt"], floor)
        live = act | (a["paused"] > 0)
        cur = np.where(live, cur, 0.0)
        dem = np.where(live, np.clip(a["used0"], floor, a["mem"] + a["wsize"]), 0.0)
        deff = np.minimum(dem, cur + a["wsize"])
        swp = np.maximum(deff - cur, 0.0)
        spec_cache = np.array([float(s.cache) for s in self.scenario.vms])
        cache = np.clip(np.minimum(spec_cache, cur - deff + swp), 0.0, None)
        cache = np.minimum(cache, a["cmax"])
        a["cur"], a["dem"], a["deff"], a["swp"], a["z"], a["cache"] = cur, dem, deff, swp, swp.copy(), cache
        a["usedg"] = deff - swp
        a["free"] = cur - deff + swp - cache
        a["gbk"] = cur if self.flavor == "hyperv" else cur - a["free"]
        a["last_rep"][:] = np.nan
        a["stall"][:] = np.nan
        a["freeze"][:] = -np.inf
        reporting = act & (a["driver"] > 0) & (a["period"] > 0)
        a["last_rep"][reporting] = 0.0
        self._snapshot_reports(np.nonzero(reporting)[0])
        self._host_reclaim_now()

    def _snapshot_reports(self, idx: npt.NDArray[np.intp]) -> None:
        a = self.a
        a["rep_total"][idx] = a["cur"][idx]
        a["rep_used"][idx] = a["usedg"][idx]
        a["rep_free"][idx] = a["free"][idx]
        a["rep_cache"][idx] = a["cache"][idx]
        a["rep_swin"][idx] = a["swin"][idx]
        a["rep_swout"][idx] = a["swout"][idx]
        a["rep_majf"][idx] = a["majf"][idx]

    # -- public properties -----------------------------------------------------------------

    @property
    def promised_bytes(self) -> int:
        return int(self.a["mem"].sum())

    def guest(self, name_or_id: str) -> Guest:
        """A guest by id or name."""
        if name_or_id in self.guests:
            return self.guests[name_or_id]
        for g in self.guests.values():
            if g.name == name_or_id:
                return g
        raise KeyError(name_or_id)

    def event(self, kind: str, vm: str | None, message: str, at: float | None = None) -> None:
        self.events.append({"t": self.now if at is None else at, "vm": vm, "kind": kind, "message": message})
        if len(self.events) > _MAX_EVENTS:
            del self.events[: len(self.events) - _MAX_EVENTS]

    # -- time ------------------------------------------------------------------------------

    def sync(self) -> None:
        """Wall-clock mode: advance by the real time elapsed since the last sync, times speed."""
        if self.clock != "wall":
            return
        with self.lock:
            real = time.time()
            if self._wall_origin is None:
                self._wall_origin = (real, self.now)
                return
            t0, n0 = self._wall_origin
            goal = n0 + (real - t0) * self.speed
            if goal > self.now:
                self.advance(goal - self.now)

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward by ``seconds``, simulating every step."""
        if not seconds >= 0 or not math.isfinite(seconds):
            raise ValueError("time only moves forward, by a finite number of seconds")
        with self.lock:
            end = self.now + seconds
            max_rows = max(16, min(4096, 262144 // max(self.n, 1)))
            while end - self.now > 1e-9:
                remaining = end - self.now
                if remaining >= self.step - 1e-9:
                    dt = self.step
                    rows = math.floor(remaining / dt + 1e-9)
                else:
                    dt, rows = remaining, 1
                rows = min(rows, max_rows)
                if self.rebalance_period is not None:
                    rows = min(rows, max(1, math.floor(self.rebalance_period / dt + 1e-9)))
                rows = min(rows, self._rows_to_next_crash(dt))
                self._run(rows, dt)
            self.now = end if abs(end - self.now) < 1e-6 else self.now
            self.version += 1

    # -- the vectorised core ---------------------------------------------------------------

    def _active(self) -> npt.NDArray[np.bool_]:
        a = self.a
        return (a["running"] > 0) & (a["crashed"] == 0)  # type: ignore[no-any-return]

    def _policy(self) -> tuple[Arr, Arr]:
        """Where each guest's current memory is steered this block, and the floor of a decrease."""
        import numpy as np

        a = self.a
        floor = a["kern"] + a["unf"]
        if self.flavor == "kvm":
            return a["tgt"], floor
        if self.flavor == "esxi":
            return self._policy_esxi(floor), floor
        return self._policy_hyperv(floor), np.where(a["dyn"] > 0, floor, np.maximum(floor, a["usedg"]))

    def _policy_esxi(self, floor: Arr) -> Arr:
        import numpy as np

        a, act = self.a, self._active()
        mem, cur = a["mem"], a["cur"]
        balloon = np.where(act, mem - cur, 0.0)
        over_limit = np.maximum(a["gbk"] - a["limit"], 0.0)
        pressure = self.pressure_bytes
        idle = np.maximum(cur - 0.75 * a["usedg"], 0.0) * act * (1000.0 / np.maximum(a["shares"], 1.0))
        extra = np.zeros(self.n)
        if pressure > 0 and idle.sum() > 0:
            extra = pressure * idle / idle.sum()
        elif pressure < 0 and balloon.sum() > 0:
            give = -pressure * balloon / balloon.sum()
            headroom = np.where(np.isinf(a["limit"]), np.inf, np.maximum(a["limit"] - a["gbk"], 0.0))
            extra = -np.minimum(give, headroom)
        cap = np.minimum(np.minimum(a["cap"], np.floor(_CTL_MAX_PERCENT * mem)), mem - floor)
        want = np.clip(np.floor(balloon + over_limit + extra), 0.0, np.maximum(cap, 0.0))
        return np.where(act, mem - want, cur)

    def _policy_hyperv(self, floor: Arr) -> Arr:
        import numpy as np

        a, act = self.a, self._active()
        dyn = (a["dyn"] > 0) & act
        d_now = a["deff"]
        want_dm = np.clip(np.floor(d_now * (1 + a["buf"] / 100.0)), a["dmin"], a["dmax"])
        want = np.where(dyn, want_dm, a["startup"]) * act
        avail = (
            self.host.physical_bytes - self.host.overhead_bytes - self.host.reserve_bytes - self._overheads()
        )
        short = want.sum() - avail
        if short > 0:
            # take from the lowest priority first: buffers, then down to the minimum
            order = np.argsort(a["prio"], kind="stable")
            for trimmed_to in (np.clip(d_now, a["dmin"], a["dmax"]), a["dmin"]):
                room = np.where(dyn, np.maximum(want - trimmed_to, 0.0), 0.0)[order]
                before = np.cumsum(room) - room
                take = np.clip(short - before, 0.0, room)
                want[order] -= take
                short -= take.sum()
                if short <= 0:
                    break
        cur = a["cur"]
        held = np.where(act, cur, a["gbk"] * (a["paused"] > 0)).sum()
        free = max(0.0, avail - held)
        inc = np.maximum(want - cur, 0.0) * act
        if inc.sum() > free:
            order = np.argsort(-a["prio"], kind="stable")
            room = inc[order]
            grant = np.clip(free - (np.cumsum(room) - room), 0.0, room)
            want = np.where(inc > 0, cur, want)
            want[order] += grant
        return np.where(act, np.floor(want), cur)

    def _overheads(self) -> float:
        a = self.a
        live = self._active() | ((a["paused"] > 0) & (a["crashed"] == 0))
        return float((a["ovh"] * live).sum())

    def _rows_to_next_crash(self, dt: float) -> int:
        """Rows until the earliest pending panic, so a crash lands on a block boundary."""
        import numpy as np

        if self.flavor != "kvm":
            return 1 << 30
        a = self.a
        floor = a["kern"] + a["unf"]
        cand = self._active() & (a["driver"] > 0) & (a["don"] == 0) & (a["tgt"] < floor)
        if not cand.any():
            a["stall"][:] = np.nan
            return 1 << 30
        a["stall"][~cand] = np.nan
        rin = np.maximum(np.floor(a["rin"] * dt), 1.0)
        steps = np.ceil(np.maximum(a["cur"] - floor, 0.0) / rin)
        stall_at = np.where(np.isnan(a["stall"]), self.now + steps * dt, a["stall"])
        crash_at = np.where(cand, stall_at + self.panic_delay, np.inf).min()
        return max(1, math.ceil((float(crash_at) - self.now) / dt - 1e-9))

    def _buffers(self, rows: int) -> dict[str, Arr]:
        """Work arrays of one block, kept between blocks: fresh multi-megabyte arrays cost
        page faults that would dominate the arithmetic."""
        import numpy as np

        cached = self._buf
        if cached is None or cached["dem"].shape[0] != rows:
            names = ("dem", "cur", "deff", "roomy", "usedg", "cache", "free", "backed")
            cached = {k: np.empty((rows, self.n)) for k in names}
            cached["oom"] = np.empty((rows, self.n), dtype=bool)
            self._buf = cached
        return cached

    def _run(self, rows: int, dt: float) -> None:
        import numpy as np

        a, n = self.a, self.n
        t0 = self.now
        t = t0 + dt * np.arange(1, rows + 1, dtype=np.float64)
        kk = np.arange(1, rows + 1, dtype=np.float64)[:, None]
        act = self._active()
        floor = a["kern"] + a["unf"]
        mem, wsize = a["mem"], a["wsize"]

        buf = self._buffers(rows)
        # demand
        dem = buf["dem"]
        dem[:] = a["used0"]
        for blk in self._blocks:
            d = blk.delta(t, dt, self.rng)
            if blk.unique:
                dem[:, blk.cols] += d
            else:
                np.add.at(dem, (slice(None), blk.vm), d)  # type: ignore[arg-type]
        np.floor(dem, out=dem)
        np.maximum(dem, floor, out=dem)
        np.minimum(dem, mem + wsize, out=dem)

        # where the memory is steered, and the balloon moving at its rates
        goal, low = self._policy()
        moving = act & (a["driver"] > 0)
        cur0 = a["cur"]
        goal = np.where(moving, np.maximum(goal, low), cur0)
        rate = np.where(goal < cur0, -np.floor(a["rin"] * dt), np.floor(a["rout"] * dt))
        cur = np.multiply(rate, kk, out=buf["cur"])
        cur += cur0
        np.maximum(cur, np.minimum(goal, cur0), out=cur)
        np.minimum(cur, np.maximum(goal, cur0), out=cur)
        don = np.nonzero(moving & (a["don"] > 0))[0]
        if don.size:
            # deflate-on-OOM: the balloon gives pages back rather than let the OOM killer run
            need = np.minimum(dem[:, don] - wsize[don], mem[don])
            cur[:, don] = np.maximum(cur[:, don], need)

        # inside the guest: OOM kill beyond current + swap, swap, cache
        deff = np.add(cur, wsize, out=buf["deff"])
        np.minimum(dem, deff, out=deff)
        oom = np.greater(dem, deff, out=buf["oom"])
        roomy = np.subtract(cur, deff, out=buf["roomy"])  # free + cache, before anything is swapped
        z0, swp0 = a["z"], a["swp"]
        # only the guests that swap (now or still) need the swap recurrence
        sc = np.nonzero((z0 > 0) | (roomy < 0).any(axis=0))[0]
        swapping = sc.size > 0
        s_dt = np.floor(_SWAP_IN_RATE * dt)
        z_last = z0.copy()
        swp: Arr = np.zeros((1, n))
        usedg = buf["usedg"]
        np.copyto(usedg, deff)
        if swapping:
            sk = s_dt * kk
            zs = np.maximum(-roomy[:, sc], 0.0)
            zs += sk
            np.maximum.accumulate(zs, axis=0, out=zs)
            np.maximum(zs, z0[sc], out=zs)
            zs -= sk
            swps = np.minimum(zs, deff[:, sc] - floor[sc])
            z_last[sc] = zs[-1]
            roomy[:, sc] += swps
            usedg[:, sc] -= swps
            if self.strict or self.observer is not None:
                swp = np.zeros((rows, n))
                swp[:, sc] = swps
        # cache: grows by g a step into free memory up to cmax, reclaimed first when short:
        # cache_k = min(room_k, cmax, cache_{k-1} + g), solved as a prefix minimum
        gk = np.floor(_CACHE_GROWTH * dt) * kk
        cmax = a["cmax"]
        cache = np.add(a["cache"], gk, out=buf["cache"])
        np.minimum(cache, cmax, out=cache)
        tight = np.nonzero(roomy.min(axis=0) < cmax)[0]  # elsewhere room never binds
        if tight.size:
            ct = np.minimum(roomy[:, tight], cmax[tight])
            ct -= gk
            np.minimum.accumulate(ct, axis=0, out=ct)
            np.minimum(ct, a["cache"][tight], out=ct)
            ct += gk
            cache[:, tight] = ct
        free = np.subtract(roomy, cache, out=buf["free"])
        backed = cur if self.flavor == "hyperv" else np.add(usedg, cache, out=buf["backed"])

        # counters: swap traffic, major faults, OOM kills
        if swapping:
            d_swp = np.diff(swps, axis=0, prepend=swp0[None, sc])
            out_s = np.maximum(d_swp, 0.0)
            in_s = np.minimum(np.maximum(-d_swp, 0.0), s_dt)
            thrash = np.floor(a["touch"][sc] * dt * swps) * (free[:, sc] <= 0)
            out_s += thrash
            in_s += thrash
        if oom.any():
            prev = np.vstack([a["oomf"][None, :] > 0, oom[:-1]])
            new_oom = (oom & ~prev) & act
            for j, i in zip(*np.nonzero(new_oom), strict=True):
                self.event(
                    "oom", self.names[i], "Out of memory: the OOM killer killed a process", float(t[j])
                )
            a["ooms"] += new_oom.sum(axis=0)
        # host: what the guests touched, plus overheads, must fit; reclaim the rest
        if act.all():
            held = backed
        else:
            held = np.where(act, backed, a["gbk"] * ((a["paused"] > 0) & (a["crashed"] == 0)))
        hsw, comp, shr, zpool, host_free = self._host_reclaim(held, act)

        if self.strict:
            self._check(cur, deff, dem, swp, cache, free, held, hsw, comp, shr, zpool, host_free, act)

        # guest driver reports (KVM stats period)
        t1 = t[-1]
        reporting = act & (a["driver"] > 0) & (a["period"] > 0)
        if reporting.any():
            per = np.where(reporting, a["period"], 1.0)
            last = a["anchor"] + np.floor((t1 - a["anchor"]) / per + 1e-9) * per
            fresh = reporting & (last > t0 + 1e-9) & (last >= a["freeze"])
            idx = np.nonzero(fresh)[0]
            if idx.size:
                j = np.clip(np.ceil((last[idx] - t0) / dt - 1e-9).astype(np.int64) - 1, 0, rows - 1)
                a["last_rep"][idx] = last[idx]
                a["rep_total"][idx] = cur[j, idx]
                a["rep_used"][idx] = usedg[j, idx]
                a["rep_free"][idx] = free[j, idx]
                a["rep_cache"][idx] = cache[j, idx]
                a["rep_swin"][idx], a["rep_swout"][idx] = a["swin"][idx], a["swout"][idx]
                a["rep_majf"][idx] = a["majf"][idx]
                if swapping:
                    # counters at the report's step, for the guests that swapped in this block
                    pos = np.nonzero(np.isin(sc, idx))[0]
                    if pos.size:
                        cols = sc[pos]
                        jj = np.clip(np.ceil((last[cols] - t0) / dt - 1e-9).astype(np.int64) - 1, 0, rows - 1)
                        cin = np.cumsum(in_s[:, pos], axis=0)[jj, np.arange(pos.size)]
                        cout = np.cumsum(out_s[:, pos], axis=0)[jj, np.arange(pos.size)]
                        a["rep_swin"][cols] += cin
                        a["rep_swout"][cols] += cout
                        a["rep_majf"][cols] += np.floor(cin / _PAGE)

        if self.observer is not None:
            self.observer.take(t, dem, cur, swp, oom, host_free, hsw + comp + shr, act)

        # carry the last row over
        last_row = -1
        keep = ~act
        a["cur"] = np.where(keep, cur0, cur[last_row])
        a["cache"] = np.where(keep, a["cache"], cache[last_row])
        a["z"] = np.where(keep, z0, z_last)
        a["swp"] = np.where(keep, swp0, deff[last_row] - usedg[last_row])
        a["dem"] = np.where(keep, a["dem"], dem[last_row])
        a["deff"] = np.where(keep, a["deff"], deff[last_row])
        a["usedg"] = np.where(keep, a["usedg"], usedg[last_row])
        a["free"] = np.where(keep, a["free"], free[last_row])
        a["gbk"] = held[last_row].copy()
        a["oomf"] = (oom[last_row] & act).astype(np.float64)
        if swapping:
            sin, sout = in_s.sum(axis=0) * act[sc], out_s.sum(axis=0) * act[sc]
            a["swin"][sc] += sin
            a["swout"][sc] += sout
            a["majf"][sc] += np.floor(sin / _PAGE)
        for key, arr in (("hsw", hsw), ("comp", comp), ("shr", shr), ("zpool", zpool)):
            a[key] = np.array(arr[last_row], dtype=np.float64)
        self.host_free_bytes = int(host_free[last_row])
        self.now = float(t1)
        self._after_block(t0, dt, cur0)

    def _host_reclaim(self, held: Arr, act: npt.NDArray[np.bool_]) -> tuple[Arr, Arr, Arr, Arr, Arr]:
        """Per row: host-swapped, compressed, shared and compression-cache bytes per VM, host free."""
        import numpy as np

        h = self.host
        base = h.overhead_bytes + self._overheads()
        avail = h.physical_bytes - h.reserve_bytes
        total = held.sum(axis=1)
        zero = np.zeros((1, self.n))
        hsw = comp = shr = zpool = zero
        if self.flavor == "esxi":
            over = np.maximum(held - self.a["limit"], 0.0)
            rest = held - over
            ex0 = rest.sum(axis=1) + base - avail
            ex = np.maximum(ex0, 0.0)[:, None]
            self.pressure_bytes = float(ex0[-1])
            if ex.any() or over.any():
                # reclaim order: page sharing, (balloon: decided per block), compression, swap
                shareable = np.floor(_SHARE_FRACTION * rest)
                tot_sh = np.maximum(shareable.sum(axis=1, keepdims=True), 1.0)
                shr = np.minimum(np.ceil(np.minimum(ex / tot_sh, 1.0) * shareable), shareable)
                ex = np.maximum(ex - shr.sum(axis=1, keepdims=True), 0.0)
                self.pressure_bytes = float(ex[-1, 0]) if ex0[-1] > 0 else float(ex0[-1])
                rest = rest - shr
                tot_rest = np.maximum(rest.sum(axis=1, keepdims=True), 1.0)
                need = over + np.minimum(np.ceil(ex * rest / tot_rest), rest)
                # compress what is not swapped: 2 x zpool + (need - zpool) must fit in held - shared
                zpool = np.minimum(np.minimum(need, np.floor(_ZIP_FRACTION * held / 2)), held - shr - need)
                comp = 2 * zpool
                hsw = need - zpool
        else:
            ex = np.maximum(total + base - avail, 0.0)[:, None]
            if ex.any():
                tot = np.maximum(total[:, None], 1.0)
                hsw = np.minimum(np.ceil(ex * held / tot), held)
            self.pressure_bytes = float(total[-1] + base - avail)
        if hsw is zero and comp is zero:
            host_free = h.physical_bytes - base - total
        else:
            resident = held - hsw - comp - shr
            host_free = h.physical_bytes - base - resident.sum(axis=1) - zpool.sum(axis=1)
        rows = held.shape[0]
        return (
            np.broadcast_to(hsw, (rows, self.n)),
            np.broadcast_to(comp, (rows, self.n)),
            np.broadcast_to(shr, (rows, self.n)),
            np.broadcast_to(zpool, (rows, self.n)),
            host_free,
        )

    def _host_reclaim_now(self) -> None:
        import numpy as np

        a, act = self.a, self._active()
        held = np.where(act, a["gbk"], a["gbk"] * (a["paused"] > 0))[None, :]
        hsw, comp, shr, zpool, free = self._host_reclaim(held, act)
        a["hsw"], a["comp"], a["shr"], a["zpool"] = (
            hsw[0].copy(),
            comp[0].copy(),
            shr[0].copy(),
            zpool[0].copy(),
        )
        self.host_free_bytes = int(free[0])

    def _after_block(self, t0: float, dt: float, cur0: Arr) -> None:
        """Panics of over-inflated guests; the host's OOM killer when its swap is full."""
        import numpy as np

        a = self.a
        if self.flavor != "kvm":
            return
        floor = a["kern"] + a["unf"]
        cand = self._active() & (a["driver"] > 0) & (a["don"] == 0) & (a["tgt"] < floor)
        reached = cand & (a["cur"] <= floor) & np.isnan(a["stall"])
        if reached.any():
            rin = np.maximum(np.floor(a["rin"] * dt), 1.0)
            steps = np.ceil(np.maximum(cur0 - floor, 0.0) / rin)
            a["stall"][reached] = t0 + steps[reached] * dt
        due = cand & ~np.isnan(a["stall"]) & (self.now - a["stall"] >= self.panic_delay - 1e-9)
        for i in np.nonzero(due)[0]:
            self.crash(int(i), reason="panic")
        if a["hsw"].sum() > self.host.swap_bytes:
            victim = int(np.argmax(np.where(self._active(), a["gbk"], -1.0)))
            self.crash(victim, reason="host_oom")

    def crash(self, i: int, *, reason: str) -> None:
        """The guest is gone: a panic, the host's OOM killer, or a test that says so."""
        a = self.a
        if a["crashed"][i]:
            return
        messages = {
            "panic": "Kernel panic - not syncing: System is deadlocked on memory (balloon inflated past "
            "what the guest can free)",
            "host_oom": "the host ran out of memory and swap: its OOM killer killed the VM's QEMU process",
            "vanished": "the VM was deleted",
            "crashed": "the VM crashed",
        }
        a["crashed"][i] = 1.0
        for k in (
            "cur",
            "cache",
            "z",
            "swp",
            "dem",
            "deff",
            "usedg",
            "free",
            "gbk",
            "hsw",
            "comp",
            "shr",
            "zpool",
        ):
            a[k][i] = 0.0
        a["stall"][i] = math.nan
        self.event(reason, self.names[i], messages.get(reason, reason))
        self._host_reclaim_now()
        self.version += 1

    def _check(
        self,
        cur: Arr,
        deff: Arr,
        dem: Arr,
        swp: Arr,
        cache: Arr,
        free: Arr,
        held: Arr,
        hsw: Arr,
        comp: Arr,
        shr: Arr,
        zpool: Arr,
        host_free: Arr,
        act: npt.NDArray[np.bool_],
    ) -> None:
        import numpy as np

        a = self.a
        floor = a["kern"] + a["unf"]
        colsum = act[None, :]
        problems = []
        for name, arr in (
            ("cur", cur),
            ("swap", swp),
            ("cache", cache),
            ("free", free),
            ("host_free", host_free),
            ("host_swap", hsw),
            ("compressed", comp),
            ("shared", shr),
        ):
            arr = np.asarray(arr)
            if ((arr < 0) & (colsum if arr.ndim == 2 else True)).any():
                problems.append(f"negative {name}")
        if ((swp > a["wsize"]) & colsum).any():
            problems.append("guest swap above its size")
        if ((cur < floor) & colsum & (a["driver"] > 0)).any():
            problems.append("balloon took more than the guest can free")
        used = deff - swp
        if (np.abs((used + cache + free) - cur) * colsum).max() > 0:
            problems.append("guest memory not conserved")
        resident = held - hsw - comp - shr
        if (resident < 0).any():
            problems.append("negative host resident memory")
        h = self.host
        total = h.overhead_bytes + self._overheads() + resident.sum(axis=1) + zpool.sum(axis=1) + host_free
        if np.abs(total - h.physical_bytes).max() > 0.5:
            problems.append("host memory not conserved")
        if problems:
            raise SimulationError(f"at t={self.now}: " + "; ".join(problems))

    # -- changes from the API --------------------------------------------------------------

    def set_target(self, guest_id: str, target_bytes: int) -> None:
        with self.lock:
            i = self.guests[guest_id].index
            self.a["tgt"][i] = target_bytes
            if target_bytes >= self.a["kern"][i] + self.a["unf"][i]:
                self.a["stall"][i] = math.nan
            self.version += 1

    def set_config(self, guest_id: str, changes: dict[str, Any]) -> None:
        with self.lock:
            g = self.guests[guest_id]
            i, a = g.index, self.a
            for k, v in changes.items():
                if k == "stats_period_seconds":
                    period = int(v)
                    if period != a["period"][i]:
                        a["period"][i] = period
                        a["anchor"][i] = self.now
                else:
                    g.config[k] = v
            if self.flavor == "esxi" and "limit_bytes" in changes:
                a["tgt"][i] = changes["limit_bytes"] if changes["limit_bytes"] is not None else a["mem"][i]
            if self.flavor == "hyperv":
                if "maximum_bytes" in changes and g.config.get("dynamic"):
                    a["tgt"][i] = g.config["maximum_bytes"]
                if "startup_bytes" in changes and not g.config.get("dynamic"):
                    a["tgt"][i] = g.config["startup_bytes"]
            if "maximum_bytes" in changes and self.flavor in ("kvm", "esxi"):
                # the VM's memory (libvirt maxMemory, ESXi memoryMB)
                a["mem"][i] = changes["maximum_bytes"]
                if self.flavor == "esxi" and g.config.get("limit_bytes") is None:
                    a["tgt"][i] = changes["maximum_bytes"]
            self._sync_knobs(i)
            self.version += 1

    def vanish(self, guest_id: str) -> None:
        """The VM disappears (deleted behind the caller's back)."""
        with self.lock:
            self.crash(self.guests[guest_id].index, reason="vanished")

    def freeze_reports(self, guest_ids: list[str] | None, seconds: float) -> None:
        """The guest drivers stop reporting for ``seconds`` (their stats go stale)."""
        with self.lock:
            idx = [self.guests[g].index for g in guest_ids] if guest_ids else list(range(self.n))
            self.a["freeze"][idx] = self.now + seconds

    def report_age(self, g: Guest) -> float | None:
        last = g.last_report_at
        return None if last is None else max(0.0, self.now - last)

    # -- pictures --------------------------------------------------------------------------

    def accounting(self) -> dict[str, Any]:
        """Where every byte is now: per guest (balloon, used, cache, free, swap) and on the host."""
        with self.lock:
            a, h = self.a, self.host
            guests = {}
            for g in self.guests.values():
                i = g.index
                guests[g.label] = {
                    "configured": int(a["mem"][i]),
                    "balloon": g.ballooned_bytes,
                    "current": int(a["cur"][i]),
                    "used": int(a["usedg"][i]),
                    "cache": int(a["cache"][i]),
                    "free": int(a["free"][i]),
                    "guest_swapped": int(a["swp"][i]),
                    "demand": int(a["deff"][i]),
                    "host_backed": int(a["gbk"][i]),
                    "host_resident": g.host_resident_bytes,
                    "host_swapped": int(a["hsw"][i]),
                    "compressed": int(a["comp"][i]),
                    "shared": int(a["shr"][i]),
                    "oom_events": int(a["ooms"][i]),
                    "power_state": g.power_state,
                }
            overheads = int(h.overhead_bytes + self._overheads())
            resident = sum(int(g.host_resident_bytes) for g in self.guests.values())
            zpool = int(a["zpool"].sum())
            total = overheads + resident + zpool + self.host_free_bytes
            return {
                "now": self.now,
                "guests": guests,
                "host": {
                    "physical": h.physical_bytes,
                    "overheads": overheads,
                    "resident": resident,
                    "compression_cache": zpool,
                    "free": self.host_free_bytes,
                    "swapped": int(a["hsw"].sum()),
                    "compressed": int(a["comp"].sum()),
                    "shared": int(a["shr"].sum()),
                    "conserved": total == h.physical_bytes and self.host_free_bytes >= 0,
                },
            }

    def snapshot(self) -> dict[str, Any]:
        """A plain-data picture of the host and guests (for debugging)."""
        acc = self.accounting()
        return {
            "now": self.now,
            "host": vars(self.host).copy(),
            "guests": acc["guests"],
            "events": list(self.events),
        }

    # -- persistence -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole world as bytes (JSON header + numpy arrays, no pickle)."""
        import numpy as np

        with self.lock:
            header = {
                "scenario": self.scenario.model_dump(mode="json"),
                "flavor": self.flavor,
                "seed": self.seed,
                "now": self.now,
                "clock": self.clock,
                "speed": self.speed,
                "wall_origin": self._wall_origin,
                "power": self.power,
                "configs": self.configs,
                "events": self.events,
                "faults": self.faults.to_data(),
                "rng": self.rng.bit_generator.state,
                "host_free": self.host_free_bytes,
                "pressure": self.pressure_bytes,
                "version": self.version,
            }
            buf = io.BytesIO()
            arrays = {f"a_{k}": v for k, v in self.a.items()}
            arrays.update({f"walk_{i}": b.walk for i, b in enumerate(self._blocks)})
            np.savez(buf, **arrays)  # type: ignore[arg-type]
            head = json.dumps(header, separators=(",", ":")).encode()
            return len(head).to_bytes(8, "big") + head + buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> World:
        import numpy as np

        size = int.from_bytes(data[:8], "big")
        header = json.loads(data[8 : 8 + size])
        scenario = Scenario.model_validate(header["scenario"])
        w = cls(
            scenario,
            flavor=header["flavor"],
            seed=header["seed"],
            clock=header["clock"],
            speed=header["speed"],
        )
        with np.load(io.BytesIO(data[8 + size :]), allow_pickle=False) as npz:
            for k in w.a:
                w.a[k] = npz[f"a_{k}"].copy()
            for i, b in enumerate(w._blocks):
                b.walk = npz[f"walk_{i}"].copy()
        w.now = float(header["now"])
        origin = header["wall_origin"]
        w._wall_origin = None if origin is None else (float(origin[0]), float(origin[1]))
        w.power = list(header["power"])
        w.configs[:] = header["configs"]
        for i, g in enumerate(w.guests.values()):
            g.config = w.configs[i]
        w.events = list(header["events"])
        w.faults = FaultPlan.from_data(header["faults"])
        w.rng.bit_generator.state = header["rng"]
        w.host_free_bytes = int(header["host_free"])
        w.pressure_bytes = float(header["pressure"])
        w.version = int(header["version"])
        return w
