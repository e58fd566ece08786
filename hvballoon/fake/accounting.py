"""Where every byte of the simulated world is, and the identities that must hold.

Per guest: ``current = used + cache + free`` and the balloon is ``memory - current``. On the
host: ``physical = overheads + resident + compression cache + free``, where a guest's resident
memory is what the host backs less what it swapped, compressed and shares.

>>> from hvballoon.fake.scenario import load_scenario
>>> from hvballoon.fake.world import World
>>> acc = World(load_scenario("seed")).accounting()
>>> acc["host"]["conserved"], acc["guests"]["web01"]["configured"] // 2**30
(True, 16)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from hvballoon.fake.flavors import Reclaim
    from hvballoon.fake.physics import GuestBlock
    from hvballoon.fake.world import World

    Arr = npt.NDArray[np.float64]

__all__ = ["SimulationError", "account", "check_block"]


class SimulationError(AssertionError):
    """An internal invariant broke (only checked when the world is ``strict``)."""


def account(world: World) -> dict[str, Any]:
    """Per guest (by label): balloon, used, cache, free, swap, what the host backs and did to
    it; for the host: where its physical memory is, and whether that adds up."""
    s, h = world.state, world.host
    guests = {}
    for g in world.guests.values():
        i = g.index
        guests[g.label] = {
            "configured": int(s.memory[i]),
            "balloon": g.ballooned_bytes,
            "current": int(s.current[i]),
            "used": int(s.used[i]),
            "cache": int(s.cache[i]),
            "free": int(s.free[i]),
            "guest_swapped": int(s.guest_swapped[i]),
            "demand": int(s.effective_demand[i]),
            "host_backed": int(s.host_backed[i]),
            "host_resident": g.host_resident_bytes,
            "host_swapped": int(s.host_swapped[i]),
            "compressed": int(s.compressed[i]),
            "shared": int(s.shared[i]),
            "oom_events": int(s.oom_events[i]),
            "power_state": g.power_state,
        }
    overheads = int(h.overhead_bytes + world.overheads())
    resident = sum(int(g.host_resident_bytes) for g in world.guests.values())
    zpool = int(s.compression_cache.sum())
    # KVM: the huge-page pool's part no VM fills (a host without a pool has no such key)
    pool_idle = int(world.hugepage_pool_idle_bytes()) if world.hugepage_pool else None
    total = overheads + resident + zpool + (pool_idle or 0) + world.host_free_bytes
    host: dict[str, Any] = {
        "physical": h.physical_bytes,
        "overheads": overheads,
        "resident": resident,
        "compression_cache": zpool,
        "free": world.host_free_bytes,
        "swapped": int(s.host_swapped.sum()),
        "compressed": int(s.compressed.sum()),
        "shared": int(s.shared.sum()),
        "conserved": total == h.physical_bytes and world.host_free_bytes >= 0,
    }
    if pool_idle is not None:
        host["hugepage_pool_idle"] = pool_idle
    return {"now": world.now, "guests": guests, "host": host}


def check_block(
    world: World,
    current: Arr,
    guest: GuestBlock,
    held: Arr,
    reclaim: Reclaim,
    active: npt.NDArray[np.bool_],
) -> None:
    """Raise :class:`SimulationError` when a step of a block breaks an identity (``strict``)."""
    import numpy as np

    s = world.state
    floor = s.floor
    colsum = active[None, :]
    cur, deff, swp, cache, free = (
        current,
        guest.effective_demand,
        guest.guest_swapped,
        guest.cache,
        guest.free,
    )
    hsw, comp, shr, zpool = (
        reclaim.host_swapped,
        reclaim.compressed,
        reclaim.shared,
        reclaim.compression_cache,
    )
    problems = []
    for name, arr in (
        ("cur", cur),
        ("swap", swp),
        ("cache", cache),
        ("free", free),
        ("host_free", reclaim.host_free),
        ("host_swap", hsw),
        ("compressed", comp),
        ("shared", shr),
    ):
        arr = np.asarray(arr)
        if ((arr < 0) & (colsum if arr.ndim == 2 else True)).any():
            problems.append(f"negative {name}")
    if ((cur > s.memory) & colsum).any():
        problems.append("a VM holds more than its configured memory")
    if ((swp > s.swap_size) & colsum).any():
        problems.append("guest swap above its size")
    if ((cur < floor) & colsum & (s.balloon_driver > 0)).any():
        problems.append("balloon took more than the guest can free")
    used = deff - swp
    if (np.abs((used + cache + free) - cur) * colsum).max() > 0:
        problems.append("guest memory not conserved")
    resident = held - hsw - comp - shr
    if (resident < 0).any():
        problems.append("negative host resident memory")
    h = world.host
    total = (
        h.overhead_bytes + world.overheads() + resident.sum(axis=1) + zpool.sum(axis=1) + reclaim.host_free
    )
    if world.hugepage_pool:
        total = total + world.hugepage_pool_idle_bytes()
    if np.abs(total - h.physical_bytes).max() > 0.5:
        problems.append("host memory not conserved")
    if problems:
        raise SimulationError(f"at t={world.now}: " + "; ".join(problems))
