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

Where things are:

- :mod:`~hvballoon.fake.state` — the state: one named array per quantity, one element per VM;
- :mod:`~hvballoon.fake.physics` — a block of steps, one concern per function (demand, the
  balloon, the guest's swap, cache and OOM killer, reports, panics);
- :mod:`~hvballoon.fake.flavors` — what differs between hypervisors (one object per kind: how
  memory is steered, backed and reclaimed, what a configuration change moves);
- :mod:`~hvballoon.fake.accounting` — where every byte is, and the identities checked in
  ``strict`` mode;
- :mod:`~hvballoon.fake.store` (persistence) and :mod:`~hvballoon.fake.record` (time series),
  which use the world; the world does not know them: a recorder watches it through
  :meth:`World.observe`.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hvballoon.errors import ScenarioError
from hvballoon.fake.accounting import SimulationError, account, check_block
from hvballoon.fake.faults import FaultPlan
from hvballoon.fake.flavors import FLAVOR_PHYSICS, FLAVORS, Flavor, FlavorPhysics
from hvballoon.fake.guest import Guest, Host
from hvballoon.fake.physics import (
    Buffers,
    boot,
    carry_over,
    guest_memory,
    held_demand,
    move_balloons,
    new_oom_kills,
    next_panic_at,
    snapshot_reports,
    stalled_guests,
    swap_traffic,
    take_reports,
    touched_pages,
    workload_demand,
)
from hvballoon.fake.scenario import Scenario, VMSpec, check_flavor
from hvballoon.fake.state import GuestState
from hvballoon.fake.workloads import WorkloadBlock, components
from hvballoon.kinds.kvm import HUGEPAGE_BYTES, HUGEPAGES, VFIO_DEVICES, hugepages_needed

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from hvballoon.kinds import Kind
    from hvballoon.models import ConfigUpdate

    Arr = npt.NDArray[np.float64]
    Mask = npt.NDArray[np.bool_]

__all__ = [
    "FLAVOR_PHYSICS",
    "Block",
    "Guest",
    "Host",
    "Observer",
    "SimulationError",
    "StartRefusedError",
    "World",
]

_NAMESPACE = uuid.UUID("6f1c1d1e-9d1b-4a52-9d39-7c2b1a0e5b11")
_MAX_EVENTS = 10_000
_NEVER = 1 << 30
#: How close to a multiple of the world's step a moment is on its grid (seconds).
_ON_GRID = 1e-6
_CRASHES = {
    "panic": "Kernel panic - not syncing: System is deadlocked on memory (balloon inflated past "
    "what the guest can free)",
    "host_oom": "the host ran out of memory and swap: its OOM killer killed the VM's QEMU process",
    "vanished": "the VM was deleted",
    "crashed": "the VM crashed",
}


def _first_runs(power: Sequence[str]) -> list[int | None]:
    """Each VM's run as a world starts: the VMs that hold memory numbered from 1 (libvirt's
    domain IDs), the stopped ones none.

    >>> _first_runs(["running", "stopped", "paused"])
    [1, None, 2]
    """
    runs: list[int | None] = []
    n = 0
    for state in power:
        if state == "stopped":
            runs.append(None)
        else:
            n += 1
            runs.append(n)
    return runs


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


class StartRefusedError(ValueError):
    """The hypervisor would not start the VM (Hyper-V: its startup memory is not free on the
    host; ESXi: admission control); the world logged it as a ``start_failed`` event and nothing
    changed."""

    def __init__(self, vm: str, message: str) -> None:
        super().__init__(message)
        self.vm = vm


@dataclass(frozen=True)
class Block:
    """One block of simulated steps as an observer sees it: rows are steps, columns VMs.

    ``reclaimed`` is what the host swapped, compressed and shares; ``guest_swapped`` is a single
    row of zeros when no guest swapped; ``oom_kills`` (the steps at which a guest's OOM killer
    started killing) is ``None`` when none did. The arrays are the block's work arrays: copy
    what you keep beyond the call.
    """

    times: Arr
    demand: Arr
    current: Arr
    guest_swapped: Arr
    oom_kills: Mask | None
    host_free: Arr
    reclaimed: Arr
    active: Mask


#: Called with the world and each block it simulated, before the block's last step becomes the
#: state (``world.state`` still holds the state before the block).
Observer = Callable[["World", Block], None]


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
        if self.flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {self.flavor!r}; accepted: esxi, hyperv, kvm")
        check_flavor(scenario, self.flavor)  # what this flavour refuses: ScenarioError naming vms.N
        if clock not in ("virtual", "wall"):
            raise ValueError("clock is 'virtual' or 'wall'")
        if not speed > 0:
            raise ValueError("speed must be above zero")
        if seed is not None and not (hasattr(seed, "__index__") and seed.__index__() >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        #: how this flavour's hypervisor treats memory (its kind's rules included)
        self.hypervisor: Flavor = FLAVORS[self.flavor]
        self.seed = scenario.seed if seed is None else seed
        self.clock, self.speed, self.strict = clock, float(speed), strict
        self.now = 0.0
        self.step = float(scenario.step)
        self.lock = threading.RLock()
        self.wall_origin: tuple[float, float] | None = None
        hs = scenario.host
        self.rebalance_period = hs.rebalance_period or self.physics.rebalance_period
        self.panic_delay = float(hs.balloon.panic_delay)
        self.host = Host(
            hs.name, hs.physical, hs.overhead, hs.reserve, hs.physical // 4 if hs.swap is None else hs.swap
        )
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.faults = FaultPlan(seed=self.seed)
        for f in scenario.faults:
            self.faults.add(**f.model_dump())
        self.events: list[dict[str, Any]] = []
        self.observers: list[Observer] = []
        self._buf: Buffers | None = None
        #: a hypervisor that rebalances periodically (ESXi, Hyper-V) decides its balloons at
        #: fixed times of the simulated clock (multiples of its period), whatever reads the
        #: world in between: the decision in force, and when the next one is due
        self._steered: tuple[Arr, Arr] | None = None
        self._next_rebalance = 0.0
        self.version = 0
        self.host_free_bytes = 0
        self.pressure_bytes = 0.0
        specs = scenario.vms
        self.n = len(specs)
        self.names = [s.name for s in specs]
        #: unique per VM: its name, or ``name#2``, ``name#3``… for the later VMs of a shared name
        self.labels = _labels(self.names)
        # a VM without an id gets a stable one from its label (the first of a name: its name)
        self.ids = [
            s.id or str(uuid.uuid5(_NAMESPACE, f"{scenario.name}/{label}"))
            for s, label in zip(specs, self.labels, strict=True)
        ]
        self.power = [s.power_state for s in specs]
        #: each VM's run (libvirt's domain ID: a new one at each start; None while it is off)
        self.runs: list[int | None] = _first_runs(self.power)
        self.configs = [self.hypervisor.config(s) for s in specs]
        #: ESXi: each VM's ``idle_held`` share, read from the configurations when first needed
        self.idle_held: Arr | None = None
        #: KVM: the host's huge-page pool (pages of each size, bytes) and the VMs it backs
        self.hugepage_pool: dict[int, int] = self.hypervisor.hugepage_pool(scenario)
        self._hugepage_vms = [
            (i, int(c[HUGEPAGE_BYTES]))
            for i, c in enumerate(self.configs)
            if c.get(HUGEPAGES) and c.get(HUGEPAGE_BYTES)
        ]
        self.state = GuestState.zeros(self.n)
        self._fill_state(specs)
        #: the workloads, grouped by kind (their random walks are state too)
        self.workloads = self._build_workloads(specs)
        self.guests = {gid: Guest(self, i) for i, gid in enumerate(self.ids)}
        #: the guests by name (a name may be shared), kept by :meth:`rename`: a look-up by name
        #: costs what it finds, not a pass over every VM (the guests are never added or removed:
        #: a VM deleted is crashed, ``vanished``)
        self._named: dict[str, list[Guest]] = {}
        for g in self.guests.values():
            self._named.setdefault(g.name, []).append(g)
        floor = self.state.floor
        current = self.hypervisor.initial_current(self, floor)
        refused = self.hypervisor.not_running(self, current)
        if refused is not None:
            i, why = refused
            raise ScenarioError(
                f"invalid scenario {scenario.name!r}: vms.{i}.power_state: running at the start, but "
                f"{why}, after the VMs before it started ({self.flavor})",
                details={"source": scenario.name, "path": f"vms.{i}.power_state", "flavor": self.flavor},
            )
        boot(
            self.state,
            current,
            np.array([float(s.cache) for s in specs]),
            floor,
            backs_assigned_memory=self.hypervisor.backs_assigned_memory,
        )
        pinned = np.nonzero(self.state.pinned > 0)[0]
        live = (self.state.running > 0) | (self.state.paused > 0)
        self.state.host_backed[pinned] = np.where(live[pinned], self.state.memory[pinned], 0.0)
        self._host_reclaim_now()

    @classmethod
    def from_scenario(cls, scenario: Scenario, **kw: Any) -> World:
        return cls(scenario, **kw)

    @property
    def kind(self) -> Kind:
        """The hypervisor kind this world simulates (the real backend of that kind holds it too)."""
        return self.hypervisor.kind

    @property
    def physics(self) -> FlavorPhysics:
        """The flavour's constants (balloon rates, per-VM overhead, rebalancing period)."""
        return self.hypervisor.physics

    # -- building --------------------------------------------------------------------------

    def _fill_state(self, specs: list[VMSpec]) -> None:
        balloon = self.scenario.host.balloon
        for i, spec in enumerate(specs):
            config = self.configs[i]
            target = self.hypervisor.initial_target(spec, config)
            memory = self.hypervisor.configured_memory(spec, config)
            self.state.set_vm(
                i,
                spec,
                physics=self.physics,
                balloon=balloon,
                target=target,
                memory=memory,
                suspended_holds_memory=self.hypervisor.suspended_holds_memory,
            )
            self.state.set_config(i, self.configs[i])

    def _build_workloads(self, specs: list[VMSpec]) -> list[WorkloadBlock]:
        by_kind: dict[str, list[Any]] = {}
        for i, s in enumerate(specs):
            for comp in components(i, s.workload.kind, s.workload.params):
                if comp.kind != "constant":
                    by_kind.setdefault(comp.kind, []).append(comp)
        st = self.state
        return [
            WorkloadBlock(
                kind, comps, st.used_baseline, st.kernel + st.unfreeable, st.memory, grid_seconds=self.step
            )
            for kind, comps in sorted(by_kind.items())
        ]

    # -- public properties -----------------------------------------------------------------

    @property
    def promised_bytes(self) -> int:
        return int(self.state.memory.sum())

    def guest(self, name_or_id: str) -> Guest:
        """A guest by id or name."""
        if name_or_id in self.guests:
            return self.guests[name_or_id]
        named = self._named.get(name_or_id)
        if named:
            return named[0]
        raise KeyError(name_or_id)

    def named(self, name: str) -> list[Guest]:
        """The guests called ``name`` (crashed ones too), in the world's order: from the index
        :meth:`rename` keeps, not a pass over every VM."""
        return list(self._named.get(name, ()))

    def event(self, kind: str, vm: str | None, message: str, at: float | None = None) -> None:
        self.events.append({"t": self.now if at is None else at, "vm": vm, "kind": kind, "message": message})
        if len(self.events) > _MAX_EVENTS:
            del self.events[: len(self.events) - _MAX_EVENTS]

    def observe(self, observer: Observer) -> None:
        """Call ``observer`` with every block simulated from now on (a recorder, a probe)."""
        with self.lock:
            self.observers.append(observer)

    def active(self) -> Mask:
        """The guests that run (not crashed)."""
        s = self.state
        return (s.running > 0) & (s.crashed == 0)  # type: ignore[no-any-return]

    def overheads(self) -> float:
        """The hypervisor's per-VM overheads of the VMs that hold memory (running or paused)."""
        s = self.state
        live = self.active() | ((s.paused > 0) & (s.crashed == 0))
        return float((s.overhead * live).sum())

    def _hugepage_holders(self) -> list[tuple[int, int]]:
        """KVM: the VMs backed by huge pages that hold their pages now, with their page size
        (running or paused: their QEMU process maps them; a stopped or gone one gave them back)."""
        s = self.state
        return [
            (i, page)
            for i, page in self._hugepage_vms
            if (s.running[i] > 0 or s.paused[i] > 0) and s.crashed[i] == 0
        ]

    def hugepages_free(self) -> dict[int, int]:
        """KVM: the huge pages of each size the host's pool has free now."""
        free = dict(self.hugepage_pool)
        for i, page in self._hugepage_holders():
            free[page] = free.get(page, 0) - hugepages_needed(int(self.state.memory[i]), page)
        return free

    def pinnable_bytes(self) -> int:
        """KVM: the memory the host could still hold pinned: its own memory less its overhead,
        its huge-page pool and the memory of the live VMs with devices assigned through VFIO
        (pinned whole; pages never swapped)."""
        s, h = self.state, self.host
        pool = sum(page * n for page, n in self.hugepage_pool.items())
        vfio = sum(
            float(s.memory[i])
            for i, c in enumerate(self.configs)
            if c.get(VFIO_DEVICES)
            and not c.get(HUGEPAGES)
            and (s.running[i] > 0 or s.paused[i] > 0)
            and s.crashed[i] == 0
        )
        return int(h.physical_bytes - h.overhead_bytes - pool - vfio)

    def hugepage_pool_idle_bytes(self) -> float:
        """KVM: what the huge-page pool holds that no VM's memory fills (its free pages, and the
        tail of a last page a VM's size does not fill): the host's, outside its free memory."""
        pool = sum(page * n for page, n in self.hugepage_pool.items())
        held = sum(float(self.state.memory[i]) for i, _ in self._hugepage_holders())
        return max(pool - held, 0.0)

    # -- time ------------------------------------------------------------------------------

    def sync(self) -> None:
        """Wall-clock mode: advance by the real time elapsed since the last sync, times speed."""
        if self.clock != "wall":
            return
        with self.lock:
            real = time.time()
            if self.wall_origin is None:
                self.wall_origin = (real, self.now)
                return
            t0, n0 = self.wall_origin
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
                to_grid = self._to_grid()
                if to_grid:  # back onto the grid first, whatever the reader's moments were
                    dt, rows = min(to_grid, remaining), 1
                elif remaining >= self.step - 1e-9:
                    dt = self.step
                    rows = math.floor(remaining / dt + 1e-9)
                else:
                    dt, rows = remaining, 1
                rows = min(rows, max_rows)
                if self.rebalance_period is not None:
                    # a block ends where the hypervisor's next rebalancing is due
                    due = self._next_rebalance - self.now
                    if self._steered is None or due <= 1e-9:  # this block rebalances first
                        due = self._after_rebalance() - self.now
                    if 1e-9 < due < dt - 1e-9:
                        dt, rows = due, 1
                    elif due > 1e-9:
                        rows = min(rows, max(1, math.floor(due / dt + 1e-9)))
                rows = min(rows, self._rows_to_next_panic(dt))
                self._run(rows, dt)
            self.now = end if abs(end - self.now) < 1e-6 else self.now
            self.version += 1

    def _to_grid(self) -> float:
        """Seconds from now to the next point of the world's grid (multiples of its step from
        time 0), 0 when now is on it. Every run passes through every grid point, so the steps
        between them that a reader's moments add do not shift the ones after."""
        k = round(self.now / self.step)
        if abs(self.now - k * self.step) <= _ON_GRID:
            return 0.0
        return (math.floor(self.now / self.step) + 1) * self.step - self.now

    def _rows_to_next_panic(self, dt: float) -> int:
        """Rows until the earliest pending panic, so a crash lands on a block boundary."""
        if not self.hypervisor.balloon_obeys_target:
            return _NEVER
        s = self.state
        at = next_panic_at(s, self.active(), s.floor, self.now, dt, self.panic_delay)
        if at == math.inf:
            return _NEVER
        return max(1, math.ceil((at - self.now) / dt - 1e-9))

    def _buffers(self, rows: int) -> Buffers:
        buf = self._buf
        if buf is None or buf.rows != rows:
            buf = self._buf = Buffers(rows, self.n)
        return buf

    def _run(self, rows: int, dt: float) -> None:
        """One block of ``rows`` steps of ``dt`` seconds (see :mod:`hvballoon.fake.physics`)."""
        import numpy as np

        s, hv = self.state, self.hypervisor
        t0 = self.now
        times = t0 + dt * np.arange(1, rows + 1, dtype=np.float64)
        steps = np.arange(1, rows + 1, dtype=np.float64)[:, None]
        act = self.active()
        floor = s.floor
        buf = self._buffers(rows)
        grid = times / self.step
        on_grid = np.abs(grid - np.round(grid)) <= _ON_GRID / self.step
        drawn = self._workload_draws() if rows > 1 and hv.balloon_obeys_target else None  # see below

        demand = workload_demand(s, self.workloads, times, dt, self.rng, floor, buf)
        goal, low = self._steer(floor)
        cur0 = s.current
        current = move_balloons(s, goal, low, act, demand, dt, steps, buf.current)
        full_swap = self.strict or bool(self.observers)
        guest = guest_memory(s, current, demand, floor, dt, steps, buf, full_swap=full_swap)
        if hv.backs_assigned_memory:
            backed = current
        else:
            backed = np.add(guest.used, guest.cache, out=buf.backed)
            touched_pages(s, current, backed)
            pinned = np.nonzero(s.pinned > 0)[0]
            if pinned.size:  # held whole, whatever the balloon took from the guest
                backed[:, pinned] = s.memory[pinned]
        # the host: what the guests hold, plus overheads, must fit; the rest is reclaimed
        if act.all():
            held = backed
        else:
            held = np.where(act, backed, s.host_backed * ((s.paused > 0) & (s.crashed == 0)))
        reclaim = hv.reclaim(self, held)
        if drawn is not None:
            # the host's OOM killer acts at the first point of the grid where the host's swap
            # is full, not at the end of whatever block the reader's moments made: the block
            # ends there, drawn again (the workloads' draws put back), and the rest follows
            out = np.nonzero(on_grid[:-1] & (reclaim.host_swapped[:-1].sum(axis=1) > self.host.swap_bytes))[0]
            if out.size:
                self._put_back_draws(drawn)
                self._run(int(out[0]) + 1, dt)
                return
        traffic = swap_traffic(s, guest, dt, buf)
        kills = new_oom_kills(s, guest.oom, act, on_grid)
        if kills is not None:
            for j, i in zip(*np.nonzero(kills), strict=True):
                # at a kill the guest holds all it can: its memory plus swap (its limit)
                text = hv.out_of_memory(float(demand[j, i]), float(guest.effective_demand[j, i]))
                self.event("oom", self.names[i], text, float(times[j]))
        if self.strict:
            check_block(self, current, guest, held, reclaim, act)
        take_reports(s, act, t0, times, dt, current, guest, traffic)
        if self.observers:
            block = Block(
                times,
                demand,
                current,
                guest.guest_swapped,
                kills,
                reclaim.host_free,
                reclaim.host_swapped + reclaim.compressed + reclaim.shared,
                act,
            )
            for observer in self.observers:
                observer(self, block)
        carry_over(s, act, current, demand, guest, traffic, held, kills)
        s.host_swapped = np.array(reclaim.host_swapped[-1], dtype=np.float64)
        s.compressed = np.array(reclaim.compressed[-1], dtype=np.float64)
        s.shared = np.array(reclaim.shared[-1], dtype=np.float64)
        s.compression_cache = np.array(reclaim.compression_cache[-1], dtype=np.float64)
        self.host_free_bytes = int(reclaim.host_free[-1])
        self.now = float(times[-1])
        self._after_block(t0, dt, cur0)

    def _steer(self, floor: Arr) -> tuple[Arr, Arr]:
        """Where the hypervisor steers each guest's memory this block. One that rebalances
        every ``rebalance_period`` seconds decides at multiples of it and holds that decision in
        between, so the physics do not depend on how often the world is read or advanced."""
        period = self.rebalance_period
        if period is None:
            return self.hypervisor.steer(self, floor)
        if self._steered is None or self.now >= self._next_rebalance - 1e-9:
            goal, low = self.hypervisor.steer(self, floor)
            self._steered = (goal.copy(), low.copy())
            self._next_rebalance = self._after_rebalance()
        return self._steered

    def _after_rebalance(self) -> float:
        """When the rebalancing after one due now is due."""
        period = self.rebalance_period
        assert period is not None
        return (math.floor(self.now / period + 1e-9) + 1) * period

    def _workload_draws(self) -> tuple[Any, list[tuple[Any, int]]]:
        """Where the workloads' draws stand (the generator, the walks): to draw a block again."""
        return self.rng.bit_generator.state, [(b.walk.copy(), b.walk_at) for b in self.workloads]

    def _put_back_draws(self, drawn: tuple[Any, list[tuple[Any, int]]]) -> None:
        self.rng.bit_generator.state = drawn[0]
        for b, (walk, at) in zip(self.workloads, drawn[1], strict=True):
            b.walk, b.walk_at = walk, at

    def _host_reclaim_now(self) -> None:
        import numpy as np

        s, act = self.state, self.active()
        held = np.where(act, s.host_backed, s.host_backed * (s.paused > 0))[None, :]
        r = self.hypervisor.reclaim(self, held)
        s.host_swapped = r.host_swapped[0].copy()
        s.compressed = r.compressed[0].copy()
        s.shared = r.shared[0].copy()
        s.compression_cache = r.compression_cache[0].copy()
        self.host_free_bytes = int(r.host_free[0])

    def _after_block(self, t0: float, dt: float, cur0: Arr) -> None:
        """Panics of over-inflated guests; the host's OOM killer when its swap is full."""
        import numpy as np

        if not self.hypervisor.balloon_obeys_target:
            return
        s = self.state
        due = stalled_guests(s, self.active(), s.floor, t0, self.now, dt, cur0, self.panic_delay)
        for i in due:
            self.crash(int(i), reason="panic")
        # the host's OOM killer kills until what is left fits (as Linux's does, one process after
        # another within moments), not one VM per block: how many die must not depend on how the
        # world is advanced (one 60 s call or sixty 1 s calls). It acts at points of the grid
        # (a block that would pass one with the swap full ends there): a reader's moment between
        # two does not bring it forward
        if self._to_grid():
            return
        while s.host_swapped.sum() > self.host.swap_bytes:  # running VMs first, then paused ones
            alive = self.active() if self.active().any() else (s.paused > 0) & (s.crashed == 0)
            if not alive.any():
                break
            victim = int(np.argmax(np.where(alive, s.host_backed, -1.0)))
            self.crash(victim, reason="host_oom")

    def crash(self, i: int, *, reason: str) -> None:
        """The guest is gone: a panic, the host's OOM killer, or a test that says so."""
        s = self.state
        if s.crashed[i]:
            return
        s.crashed[i] = 1.0
        s.release(i)
        self.event(reason, self.names[i], _CRASHES.get(reason, reason))
        self._host_reclaim_now()
        self.version += 1

    # -- changes from the API --------------------------------------------------------------

    def set_target(self, guest_id: str, target_bytes: int) -> None:
        with self.lock:
            g = self.guests[guest_id]
            i, s = g.index, self.state
            s.target[i] = target_bytes
            self.hypervisor.apply_target(s, i, target_bytes, g.config, g.power_state)
            if target_bytes >= s.kernel[i] + s.unfreeable[i]:
                s.stalled_at[i] = math.nan
            self.version += 1

    def set_config(self, guest_id: str, update: ConfigUpdate) -> None:
        """Change the VM's configuration as ``update`` says (what the host does on a request)."""
        with self.lock:
            g = self.guests[guest_id]
            i, s = g.index, self.state
            for k, v in update.fields().items():
                if k == "stats_period_seconds":
                    period = int(v)
                    if period != s.stats_period[i]:
                        s.stats_period[i] = period
                        s.stats_anchor[i] = self.now
                else:
                    g.config[k] = v
            self.hypervisor.apply_config(s, i, update, g.config, g.power_state)
            s.set_config(i, g.config)
            self.version += 1

    def rename(self, guest_id: str, name: str) -> None:
        """The VM is renamed behind the caller's back (an operator, another tool)."""
        with self.lock:
            g = self.guests[guest_id]
            was = self._named.get(g.name, [])
            if g in was:
                was.remove(g)
            if not was:
                self._named.pop(g.name, None)
            self.names[g.index] = name
            g.name = name
            now_named = self._named.setdefault(name, [])
            now_named.append(g)
            now_named.sort(key=lambda other: other.index)
            self.version += 1

    def power_off(self, guest_id: str) -> None:
        """The VM is powered off behind the caller's back: it keeps its configuration and
        holds no memory until it runs again."""
        with self.lock:
            g = self.guests[guest_id]
            i, s = g.index, self.state
            s.release(i)
            self.hypervisor.powered_off(s, i, g.config)
            s.running[i] = 0.0
            s.paused[i] = 0.0
            s.last_report[i] = math.nan
            self.power[i] = "stopped"
            self.runs[i] = None
            if self.kind.marks_last_one_run:  # KVM: the live definition, its marks with it, is gone
                g.config.pop("marks", None)
            self.event("power_off", self.names[i], "the VM was powered off")
            self._host_reclaim_now()
            self.version += 1

    def power_on(self, guest_id: str) -> None:
        """The VM is started behind the caller's back (an operator, the host's autostart): a
        cold start in a new run. It boots at its definition's size — on KVM the definition's
        ``<currentMemory>`` is its balloon target again (a live target set before it stopped is
        gone); an ESXi limit and Hyper-V's sizes are configuration and stay — with its
        workload's baseline use, no page cache yet, reporting at once if its driver does.

        One the hypervisor would not start (Hyper-V: its startup memory is not free on the host
        now, event 19544; ESXi: its reservation plus overhead is not unreserved, admission
        control) stays stopped: the refusal is logged as a ``start_failed`` event, as
        the hypervisor logs it whoever asked, and raised (:class:`StartRefusedError`) to the
        caller who asked."""
        import numpy as np

        with self.lock:
            g = self.guests[guest_id]
            i, s = g.index, self.state
            if g.crashed:
                raise ValueError(f"VM {g.name!r} is gone: it cannot be started")
            if self.power[i] != "stopped":
                raise ValueError(f"VM {g.name!r} is {self.power[i]}: only a stopped VM is started")
            refusal = self.hypervisor.start_refusal(self, i)
            if refusal is not None:
                self.event("start_failed", self.names[i], refusal)
                self.version += 1
                raise StartRefusedError(self.names[i], refusal)
            s.running[i], s.paused[i] = 1.0, 0.0
            self.power[i] = "running"
            self.runs[i] = max((r for r in self.runs if r is not None), default=0) + 1
            floor = s.floor
            current = float(self.hypervisor.initial_current(self, floor)[i])
            demand = float(max(s.used_baseline[i], floor[i]))
            held = float(held_demand(np.array(demand), np.array(current), s.swap_size[i], floor[i]))
            swapped = max(held - current, 0.0)
            s.current[i], s.demand[i], s.effective_demand[i] = current, demand, held
            s.guest_swapped[i] = s.swap_backlog[i] = swapped
            s.cache[i] = 0.0
            s.used[i] = held - swapped
            s.free[i] = current - held + swapped
            s.host_backed[i] = current if self.hypervisor.backs_assigned_memory else current - s.free[i]
            s.stalled_at[i] = math.nan
            s.reports_frozen_until[i] = -math.inf
            s.last_report[i] = math.nan
            if s.balloon_driver[i] > 0 and s.stats_period[i] > 0:
                s.last_report[i] = self.now
                snapshot_reports(s, np.array([i]))
            self.event("power_on", self.names[i], "the VM was started")
            self._host_reclaim_now()
            self.version += 1

    def set_mark(self, guest_id: str, key: str, value: str | None) -> None:
        """Keep (or, with ``None``, drop) a note in the VM's configuration, as an ESXi VM keeps
        an extraConfig key: it survives with the VM, whoever reads it — on KVM for the VM's run
        only (the running domain's metadata: :meth:`power_off` drops it)."""
        with self.lock:
            marks = dict(self.guests[guest_id].config.get("marks") or {})
            if value is None:
                marks.pop(key, None)
            else:
                marks[key] = value
            self.guests[guest_id].config["marks"] = marks
            self.version += 1

    def vanish(self, guest_id: str) -> None:
        """The VM disappears (deleted behind the caller's back)."""
        with self.lock:
            self.crash(self.guests[guest_id].index, reason="vanished")

    def stop_balloon_driver(self, guest_id: str) -> None:
        """The guest's balloon driver stops (unloaded, crashed): its balloon no longer moves."""
        with self.lock:
            self.state.balloon_driver[self.guests[guest_id].index] = 0.0

    def freeze_reports(self, guest_ids: list[str] | None, seconds: float) -> None:
        """The guest drivers stop reporting for ``seconds`` (their stats go stale)."""
        with self.lock:
            idx = [self.guests[g].index for g in guest_ids] if guest_ids else list(range(self.n))
            self.state.reports_frozen_until[idx] = self.now + seconds

    def report_age(self, g: Guest) -> float | None:
        last = g.last_report_at
        return None if last is None else max(0.0, self.now - last)

    # -- pictures --------------------------------------------------------------------------

    def accounting(self) -> dict[str, Any]:
        """Where every byte is now: per guest (balloon, used, cache, free, swap) and on the host
        (see :mod:`hvballoon.fake.accounting`)."""
        with self.lock:
            return account(self)

    def snapshot(self) -> dict[str, Any]:
        """A plain-data picture of the host and guests (for debugging)."""
        acc = self.accounting()
        return {
            "now": self.now,
            "host": vars(self.host).copy(),
            "guests": acc["guests"],
            "events": list(self.events),
        }
