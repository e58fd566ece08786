"""The simulator's step, one concern per function, vectorised over VMs and over the steps of a
block (arrays of shape ``(steps, VMs)``; a block is as many steps as nothing outside the
guests changes in: no API call, no rebalancing, no panic).

In the order :meth:`hvballoon.fake.world.World.advance` runs them each block:

1. :func:`workload_demand` — what the workloads ask for (never less than the guest's floor);
   what a guest cannot hold is not dropped here: :func:`guest_memory`'s OOM killer answers it;
2. :func:`move_balloons` — the balloon moves toward where the flavour steers it, at its rates,
   never below the guest's floor; deflate-on-OOM gives pages back instead of an OOM kill;
3. :func:`guest_memory` — inside the guest: the OOM killer beyond current + swap, swap (and
   swap-in once there is room), the page cache growing into free memory and reclaimed first;
4. :func:`swap_traffic` and :func:`new_oom_kills` — the counters a guest reports;
5. the flavour's host reclaim (:mod:`hvballoon.fake.flavors`);
6. :func:`take_reports` — what the guest driver reported, at its stats period;
7. :func:`carry_over` — the block's last step becomes the state;

then the panics of guests whose balloon stalled on their floor (:func:`stalled_guests`; a
block ends at the next one, :func:`next_panic_at`). :func:`boot` is the state a world starts in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from hvballoon.fake.state import GuestState
    from hvballoon.fake.workloads import WorkloadBlock

    Arr = npt.NDArray[np.float64]
    Mask = npt.NDArray[np.bool_]
    Index = npt.NDArray[np.intp]

__all__ = [
    "CACHE_GROWTH_RATE",
    "PAGE_BYTES",
    "SWAP_IN_RATE",
    "Buffers",
    "GuestBlock",
    "boot",
    "carry_over",
    "guest_memory",
    "held_demand",
    "move_balloons",
    "new_oom_kills",
    "next_panic_at",
    "snapshot_reports",
    "stalled_guests",
    "swap_traffic",
    "take_reports",
    "workload_demand",
]

_MiB = 1024**2
#: Bytes per second a guest reads back from its swap once it has room again.
SWAP_IN_RATE = 16 * _MiB
#: Bytes per second the page cache grows into free memory.
CACHE_GROWTH_RATE = 4 * _MiB
PAGE_BYTES = 4096


class Buffers:
    """Work arrays of one block, kept between blocks: fresh multi-megabyte arrays cost page
    faults that would dominate the arithmetic (freed at the end of a block, they let malloc
    give the heap's top back to the system, and the next block faults it in again).

    Besides the ``(steps, VMs)`` arrays, :meth:`columns` lends ``(steps, k)`` arrays for the
    work on a subset of the VMs (the guests that swap, those whose cache is squeezed).
    """

    __slots__ = (
        "_columns",
        "_flags",
        "backed",
        "cache",
        "current",
        "demand",
        "effective_demand",
        "free",
        "oom",
        "roomy",
        "short",
        "used",
    )

    #: The subset work arrays (see :meth:`columns`).
    COLUMNS = (
        "workload",
        "workload_work",
        "backlog",
        "swapped",
        "gathered",
        "cache",
        "delta",
        "swap_in",
        "swap_out",
        "thrash",
    )

    def __init__(self, rows: int, n: int) -> None:
        import numpy as np

        self.demand = np.empty((rows, n))
        self.current = np.empty((rows, n))
        self.effective_demand = np.empty((rows, n))
        self.roomy = np.empty((rows, n))
        self.used = np.empty((rows, n))
        self.cache = np.empty((rows, n))
        self.free = np.empty((rows, n))
        self.backed = np.empty((rows, n))
        self.oom = np.empty((rows, n), dtype=bool)
        self.short = np.empty((rows, n), dtype=bool)
        self._columns = {name: np.empty(rows * n) for name in self.COLUMNS}
        self._flags = np.empty(rows * n, dtype=bool)

    @property
    def rows(self) -> int:
        return int(self.demand.shape[0])

    def columns(self, name: str, k: int) -> Arr:
        """The work array ``name`` for ``k`` columns: ``(steps, k)``, contiguous (more columns
        than VMs, as a VM's several workload parts of one kind can be: a fresh array)."""
        import numpy as np

        flat = self._columns[name]
        if self.rows * k > flat.size:
            return np.empty((self.rows, k))
        return flat[: self.rows * k].reshape(self.rows, k)

    def flags(self, k: int) -> Mask:
        """A boolean ``(steps, k)`` work array (``k`` at most the number of VMs)."""
        return self._flags[: self.rows * k].reshape(self.rows, k)

    def gather(self, name: str, arr: Arr, cols: Index) -> Arr:
        """``arr[:, cols]`` into the work array ``name``."""
        import numpy as np

        out = self.columns(name, cols.size)
        np.take(arr, cols, axis=1, out=out, mode="clip")
        return out


def workload_demand(
    state: GuestState,
    workloads: list[WorkloadBlock],
    times: Arr,
    dt: float,
    rng: np.random.Generator,
    floor: Arr,
    buf: Buffers,
) -> Arr:
    """What each guest's workloads ask for at each step, never below the guest's floor.

    Not capped at what the guest can hold: that bound (its memory plus swap) moves with its
    configuration, which a policy may change (a Hyper-V static VM's runtime resize, a Dynamic
    Memory maximum raised live, ESXi's memory hot-add), and the same workloads must ask the same
    whatever the policy. What is beyond the guest's current memory plus swap is its OOM
    killer's (:func:`guest_memory`). The workloads' own parameters bound it (sizes of at most
    1 PiB: exact in float64)."""
    import numpy as np

    demand = buf.demand
    demand[:] = state.used_baseline
    for blk in workloads:
        k = len(blk.walk)
        d = blk.delta(times, dt, rng, buf.columns("workload", k), buf.columns("workload_work", k))
        if blk.unique:
            demand[:, blk.cols] += d
        else:
            np.add.at(demand, (slice(None), blk.vm), d)  # type: ignore[arg-type]
    np.floor(demand, out=demand)
    np.maximum(demand, floor, out=demand)
    return demand


def move_balloons(
    state: GuestState,
    goal: Arr,
    low: Arr,
    active: Mask,
    demand: Arr,
    dt: float,
    steps: Arr,
    out: Arr,
) -> Arr:
    """Each guest's current memory at each step: moving from where it is toward ``goal`` (not
    below ``low``) at the balloon's rates, when a driver runs. With deflate-on-OOM the balloon
    gives pages back rather than let the guest's OOM killer run."""
    import numpy as np

    moving = active & (state.balloon_driver > 0)
    cur0 = state.current
    goal = np.where(moving, np.maximum(goal, low), cur0)
    rate = np.where(goal < cur0, -np.floor(state.inflate_rate * dt), np.floor(state.deflate_rate * dt))
    cur = np.multiply(rate, steps, out=out)
    cur += cur0
    np.maximum(cur, np.minimum(goal, cur0), out=cur)
    np.minimum(cur, np.maximum(goal, cur0), out=cur)
    don = np.nonzero(moving & (state.deflate_on_oom > 0))[0]
    if don.size:
        need = np.minimum(demand[:, don] - state.swap_size[don], state.memory[don])
        cur[:, don] = np.maximum(cur[:, don], need)
    return cur


def touched_pages(state: GuestState, current: Arr, backed: Arr) -> None:
    """What the host backs for the guests that do not report the pages they free (no free page
    reporting): every page they touched stays backed until a balloon takes it, so ``backed``
    (their use and page cache at each step) becomes its running maximum since the last block,
    never above their memory at that step. In place; the others are left as they are."""
    import numpy as np

    cols = np.nonzero(state.free_page_reporting == 0)[0]
    if not cols.size:
        return
    kept = np.maximum(backed[:, cols], state.host_backed[cols])
    np.maximum.accumulate(kept, axis=0, out=kept)
    backed[:, cols] = np.minimum(kept, current[:, cols])


@dataclass
class GuestBlock:
    """Inside the guests, per step and VM: what the OOM killer left, swap, cache and free (in
    the block's work arrays: valid until the next block)."""

    effective_demand: Arr
    oom: Mask
    used: Arr
    cache: Arr
    free: Arr
    #: the columns of the guests that swap (now, or still have swap to read back)
    swapping: Index
    #: their swapped bytes per step (``swapping`` columns)
    swapped: Arr | None
    #: every guest's swapped bytes per step when asked for (``full_swap``), else one row of zeros
    guest_swapped: Arr
    #: the swap recurrence's state after the block
    swap_backlog: Arr


def held_demand(demand: Arr, current: Arr, swap_size: Arr, floor: Arr) -> Arr:
    """What a guest holds of its ``demand``: at most its ``current`` memory plus its swap, and
    none of its floor (kernel and unfreeable memory, never swapped) that its memory cannot hold —
    a guest may be given less than its floor when no balloon driver steers it (a Hyper-V Dynamic
    Memory VM without its integration services stays at its startup memory). The rest is its
    OOM killer's.

    >>> import numpy as np
    >>> MiB = 2**20
    >>> [int(x) // MiB for x in held_demand(*(np.array([v * MiB]) for v in (950, 624, 236, 920)))]
    [654]
    """
    import numpy as np

    unheld = np.maximum(np.subtract(floor, current), 0.0)
    held: Arr = np.maximum(np.minimum(np.add(current, swap_size), np.subtract(demand, unheld)), 0.0)
    return held


def guest_memory(
    state: GuestState,
    current: Arr,
    demand: Arr,
    floor: Arr,
    dt: float,
    steps: Arr,
    buf: Buffers,
    *,
    full_swap: bool,
) -> GuestBlock:
    """OOM kills beyond current + swap; what does not fit in current memory goes to swap (and
    comes back at :data:`SWAP_IN_RATE` once there is room); the page cache grows by
    :data:`CACHE_GROWTH_RATE` into free memory up to its ceiling and is reclaimed first."""
    import numpy as np

    n = state.current.shape[0]
    rows = current.shape[0]
    deff = np.add(current, state.swap_size, out=buf.effective_demand)
    np.minimum(demand, deff, out=deff)
    under = np.nonzero((current < floor).any(axis=0))[0]  # given less than their floor
    if under.size:
        deff[:, under] = held_demand(
            demand[:, under], current[:, under], state.swap_size[under], floor[under]
        )
    oom = np.greater(demand, deff, out=buf.oom)
    roomy = np.subtract(current, deff, out=buf.roomy)  # free + cache, before anything is swapped
    z0 = state.swap_backlog
    # only the guests that swap (now or still) need the swap recurrence
    sc = np.nonzero((z0 > 0) | np.less(roomy, 0.0, out=buf.short).any(axis=0))[0]
    z_last = z0.copy()
    swapped: Arr | None = None
    swp: Arr = np.zeros((1, n))
    used = buf.used
    np.copyto(used, deff)
    if sc.size:
        # z_k = max(need_k, z_{k-1} - s): the backlog falls by the swap-in rate, solved as a
        # prefix maximum; what is swapped is the backlog, capped at what the guest can swap
        s_dt = np.floor(SWAP_IN_RATE * dt)
        sk = s_dt * steps
        zs = buf.gather("backlog", roomy, sc)
        np.negative(zs, out=zs)
        np.maximum(zs, 0.0, out=zs)
        zs += sk
        np.maximum.accumulate(zs, axis=0, out=zs)
        np.maximum(zs, z0[sc], out=zs)
        zs -= sk
        swapped = buf.gather("swapped", deff, sc)
        np.subtract(swapped, floor[sc], out=swapped)
        np.minimum(zs, swapped, out=swapped)
        # at least what memory cannot hold (binds only where memory is below the floor: the
        # floor it holds is then all it has)
        need = buf.gather("gathered", roomy, sc)
        np.negative(need, out=need)
        np.maximum(swapped, need, out=swapped)
        z_last[sc] = zs[-1]
        # roomy[:, sc] += swapped; used[:, sc] -= swapped (the guests' columns are distinct)
        room = buf.gather("gathered", roomy, sc)
        room += swapped
        roomy[:, sc] = room
        use = buf.gather("gathered", used, sc)
        use -= swapped
        used[:, sc] = use
        if full_swap:
            swp = np.zeros((rows, n))
            swp[:, sc] = swapped
    cache = _page_cache(state, roomy, dt, steps, buf)
    free = np.subtract(roomy, cache, out=buf.free)
    return GuestBlock(deff, oom, used, cache, free, sc, swapped, swp, z_last)


def _page_cache(state: GuestState, roomy: Arr, dt: float, steps: Arr, buf: Buffers) -> Arr:
    """cache_k = min(room_k, cache_max, cache_{k-1} + g), solved as a prefix minimum."""
    import numpy as np

    gk = np.floor(CACHE_GROWTH_RATE * dt) * steps
    cmax = state.cache_max
    cache: Arr = np.add(state.cache, gk, out=buf.cache)
    np.minimum(cache, cmax, out=cache)
    tight = np.nonzero(roomy.min(axis=0) < cmax)[0]  # elsewhere room never binds
    if tight.size:
        ct = buf.gather("cache", roomy, tight)
        np.minimum(ct, cmax[tight], out=ct)
        ct -= gk
        np.minimum.accumulate(ct, axis=0, out=ct)
        np.minimum(ct, state.cache[tight], out=ct)
        ct += gk
        cache[:, tight] = ct
    return cache


def swap_traffic(state: GuestState, guest: GuestBlock, dt: float, buf: Buffers) -> tuple[Arr, Arr] | None:
    """Bytes swapped in and out per step, for the guests that swap; a squeezed workload that
    keeps touching what it swapped (its touch rate) thrashes while the guest has nothing free."""
    import numpy as np

    sc, swapped = guest.swapping, guest.swapped
    if swapped is None:
        return None
    s_dt = np.floor(SWAP_IN_RATE * dt)
    k = sc.size
    # the change of each step: from the state before the block, then step to step
    d_swp = buf.columns("delta", k)
    np.subtract(swapped[0], state.guest_swapped[sc], out=d_swp[0])
    np.subtract(swapped[1:], swapped[:-1], out=d_swp[1:])
    out_s = np.maximum(d_swp, 0.0, out=buf.columns("swap_out", k))
    in_s = np.negative(d_swp, out=buf.columns("swap_in", k))
    np.maximum(in_s, 0.0, out=in_s)
    np.minimum(in_s, s_dt, out=in_s)
    thrash = np.multiply(state.touch_rate[sc] * dt, swapped, out=buf.columns("thrash", k))
    np.floor(thrash, out=thrash)
    starved = np.less_equal(buf.gather("gathered", guest.free, sc), 0.0, out=buf.flags(k))
    np.multiply(thrash, starved, out=thrash)
    out_s += thrash
    in_s += thrash
    return in_s, out_s


def new_oom_kills(state: GuestState, oom: Mask, active: Mask, on_grid: Mask) -> Mask | None:
    """The steps at which each running guest's OOM killer starts killing (``None``: none).

    A kill is counted at a point of the world's grid (a multiple of its step) where the guest is
    out of memory and was not at the grid point before. Steps between grid points (the world
    advanced to a moment a reader asked for) count none: how often the world is read or advanced
    must not change how many kills it has, and a finer look would catch excursions the grid's own
    steps pass over. Sets ``state.oom_now`` to the last grid point's."""
    import numpy as np

    rows = np.nonzero(on_grid)[0]
    if not rows.size:
        return None
    grid = oom[rows] & active
    prev = np.vstack([state.oom_now[None, :] > 0, grid[:-1]])
    state.oom_now = grid[-1].astype(np.float64)
    if not grid.any():
        return None
    kills: Mask = np.zeros_like(oom)
    kills[rows] = grid & ~prev
    return kills if kills.any() else None


def take_reports(
    state: GuestState,
    active: Mask,
    t0: float,
    times: Arr,
    dt: float,
    current: Arr,
    guest: GuestBlock,
    traffic: tuple[Arr, Arr] | None,
) -> None:
    """The guest driver's last report of the block, for the guests whose stats period elapsed
    (and whose reports are not frozen): the figures of the step it reported at."""
    import numpy as np

    t1 = times[-1]
    rows = current.shape[0]
    reporting = active & (state.balloon_driver > 0) & (state.stats_period > 0)
    if not reporting.any():
        return
    anchor = state.stats_anchor
    per = np.where(reporting, state.stats_period, 1.0)
    last = anchor + np.floor((t1 - anchor) / per + 1e-9) * per
    fresh = reporting & (last > t0 + 1e-9) & (last >= state.reports_frozen_until)
    idx = np.nonzero(fresh)[0]
    if not idx.size:
        return
    j = np.clip(np.ceil((last[idx] - t0) / dt - 1e-9).astype(np.int64) - 1, 0, rows - 1)
    state.last_report[idx] = last[idx]
    state.report_total[idx] = current[j, idx]
    state.report_used[idx] = guest.used[j, idx]
    state.report_free[idx] = guest.free[j, idx]
    state.report_cache[idx] = guest.cache[j, idx]
    state.report_swap_in[idx], state.report_swap_out[idx] = state.swap_in[idx], state.swap_out[idx]
    state.report_major_faults[idx] = state.major_faults[idx]
    if traffic is None:
        return
    # counters at the report's step, for the guests that swapped in this block
    sc = guest.swapping
    pos = np.nonzero(np.isin(sc, idx))[0]
    if pos.size:
        in_s, out_s = traffic
        cols = sc[pos]
        jj = np.clip(np.ceil((last[cols] - t0) / dt - 1e-9).astype(np.int64) - 1, 0, rows - 1)
        cin = np.cumsum(in_s[:, pos], axis=0)[jj, np.arange(pos.size)]
        cout = np.cumsum(out_s[:, pos], axis=0)[jj, np.arange(pos.size)]
        state.report_swap_in[cols] += cin
        state.report_swap_out[cols] += cout
        # major faults are the pages swapped in: counted from the total, whatever the blocks
        state.report_major_faults[cols] = np.floor(state.report_swap_in[cols] / PAGE_BYTES)


def snapshot_reports(state: GuestState, idx: Index) -> None:
    """The guests ``idx`` report what they have now."""
    state.report_total[idx] = state.current[idx]
    state.report_used[idx] = state.used[idx]
    state.report_free[idx] = state.free[idx]
    state.report_cache[idx] = state.cache[idx]
    state.report_swap_in[idx] = state.swap_in[idx]
    state.report_swap_out[idx] = state.swap_out[idx]
    state.report_major_faults[idx] = state.major_faults[idx]


def carry_over(
    state: GuestState,
    active: Mask,
    current: Arr,
    demand: Arr,
    guest: GuestBlock,
    traffic: tuple[Arr, Arr] | None,
    held: Arr,
    kills: Mask | None,
) -> None:
    """The block's last step becomes the state (guests that are not running keep theirs), and
    its counters are added up."""
    import numpy as np

    keep = ~active
    s = state
    s.current = np.where(keep, s.current, current[-1])
    s.cache = np.where(keep, s.cache, guest.cache[-1])
    s.swap_backlog = np.where(keep, s.swap_backlog, guest.swap_backlog)
    s.guest_swapped = np.where(keep, s.guest_swapped, guest.effective_demand[-1] - guest.used[-1])
    s.demand = np.where(keep, s.demand, demand[-1])
    s.effective_demand = np.where(keep, s.effective_demand, guest.effective_demand[-1])
    s.used = np.where(keep, s.used, guest.used[-1])
    s.free = np.where(keep, s.free, guest.free[-1])
    s.host_backed = held[-1].copy()
    if kills is not None:
        s.oom_events += kills.sum(axis=0)
    if traffic is not None:
        sc = guest.swapping
        in_s, out_s = traffic
        sin, sout = in_s.sum(axis=0) * active[sc], out_s.sum(axis=0) * active[sc]
        s.swap_in[sc] += sin
        s.swap_out[sc] += sout
        s.major_faults[sc] = np.floor(s.swap_in[sc] / PAGE_BYTES)


def boot(state: GuestState, current: Arr, cache: Arr, floor: Arr, *, backs_assigned_memory: bool) -> None:
    """The guests' memory as the world starts: each running (or paused) VM with ``current``
    memory, demanding its ``used`` figure (what does not fit is in its swap; beyond that, its OOM
    killer's at the first step) and ``cache`` of
    page cache where it has room; the drivers with a stats period report at once.

    A paused VM's driver too: its report is the last it made before the VM was paused, which
    the hypervisor keeps. QEMU's virtio-balloon caches the guest's last stats and serves them
    with their ``last-update`` time whatever the run state (``balloon_stats_get_all``), and asks
    for the next only from a timer on the virtual clock, which stops with the vCPUs
    (``timer_new_ms(QEMU_CLOCK_VIRTUAL, balloon_stats_poll_cb, …)``, hw/virtio/virtio-balloon.c):
    the report ages until the VM runs again (:func:`take_reports` makes none for a paused VM)."""
    import numpy as np

    s = state
    act = s.running > 0
    live = act | (s.paused > 0)
    cur = np.where(live, current, 0.0)
    dem = np.where(live, np.maximum(s.used_baseline, floor), 0.0)
    deff = held_demand(dem, cur, s.swap_size, floor)
    swp = np.maximum(deff - cur, 0.0)
    cache = np.clip(np.minimum(cache, cur - deff + swp), 0.0, None)
    cache = np.minimum(cache, s.cache_max)
    s.current, s.demand, s.effective_demand, s.guest_swapped = cur, dem, deff, swp
    s.swap_backlog, s.cache = swp.copy(), cache
    s.used = deff - swp
    s.free = cur - deff + swp - cache
    s.host_backed = cur if backs_assigned_memory else cur - s.free
    s.last_report[:] = np.nan
    s.stalled_at[:] = np.nan
    s.reports_frozen_until[:] = -np.inf
    reporting = live & (s.balloon_driver > 0) & (s.stats_period > 0)
    s.last_report[reporting] = 0.0
    snapshot_reports(s, np.nonzero(reporting)[0])


# -- balloons stalled on the floor, and the panics that follow -----------------------------------


def _overinflated(state: GuestState, active: Mask, floor: Arr) -> Mask:
    """Guests whose balloon is sent below their floor and will not give way (no deflate-on-OOM)."""
    cand: Mask = active & (state.balloon_driver > 0) & (state.deflate_on_oom == 0) & (state.target < floor)
    return cand


def next_panic_at(
    state: GuestState, active: Mask, floor: Arr, now: float, dt: float, panic_delay: float
) -> float:
    """When the first over-inflated guest panics: its balloon reaches the floor (already there,
    or at its inflate rate from where it is) and stays stalled ``panic_delay`` seconds.
    ``inf`` when none will; forgets the stalls of guests no longer over-inflated."""
    import numpy as np

    cand = _overinflated(state, active, floor)
    if not cand.any():
        state.stalled_at[:] = np.nan
        return math.inf
    state.stalled_at[~cand] = np.nan
    rin = np.maximum(np.floor(state.inflate_rate * dt), 1.0)
    steps = np.ceil(np.maximum(state.current - floor, 0.0) / rin)
    stall_at = np.where(np.isnan(state.stalled_at), now + steps * dt, state.stalled_at)
    return float(np.where(cand, stall_at + panic_delay, np.inf).min())


def stalled_guests(
    state: GuestState,
    active: Mask,
    floor: Arr,
    t0: float,
    now: float,
    dt: float,
    cur0: Arr,
    panic_delay: float,
) -> Index:
    """After a block: note when over-inflated balloons reached the floor; the guests stalled
    there for ``panic_delay`` seconds (they panic)."""
    import numpy as np

    cand = _overinflated(state, active, floor)
    reached = cand & (state.current <= floor) & np.isnan(state.stalled_at)
    if reached.any():
        rin = np.maximum(np.floor(state.inflate_rate * dt), 1.0)
        steps = np.ceil(np.maximum(cur0 - floor, 0.0) / rin)
        state.stalled_at[reached] = t0 + steps[reached] * dt
    due = cand & ~np.isnan(state.stalled_at) & (now - state.stalled_at >= panic_delay - 1e-9)
    return np.nonzero(due)[0]
