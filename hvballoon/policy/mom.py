"""``mom``: the default balloon rules of oVirt's Memory Overcommitment Manager, reproduced.

MoM evaluates its policy every 10 s on moving averages of the last 10 samples:

* ``host_free = avg(host free) / host total``. Below 20 % the host is under pressure and every
  guest is shrunk; otherwise every ballooned guest is grown.
* shrink: the guest keeps ``used + free% × current`` where ``free%`` is 20 % scaled by the
  pressure (``0.20 × host_free / 0.20``) or, when ``host_free ≤ 5 %`` (critical), ``host_free −
  0.05`` — negative, which deliberately forces the guest to swap. The floor is never below the
  guest's ``min_guarantee``. A step is at most 5 % of the current size, never grows, and is only
  taken when it moves more than 0.25 % of the current size.
* grow: only a guest below its maximum: ``max(current × 1.05, used + 20 % × current)``, capped
  at the maximum, again with the 0.25 % dead-band.
* the QoS rule appended by oVirt: a guest below its ``min_guarantee`` is set back to it.

``used`` is MoM's ``balloon_cur − mem_unused``: it counts the guest's page cache as used.
:func:`mom_round` is the pure rule set; :class:`MomPolicy` feeds it from a snapshot.

>>> from hvballoon.units import GiB
>>> g = MomGuest(balloon_cur=8 * GiB, balloon_max=16 * GiB, avg_balloon_cur=8 * GiB, avg_mem_unused=4 * GiB)
>>> target, rule = mom_round(0.50, {"vm": g})["vm"]
>>> round(target / GiB, 2), rule
(8.4, 'mom.grow')
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from hvballoon.policy.base import Plan, Policy
from hvballoon.policy.model import Proposal, Snapshot
from hvballoon.units import format_size

__all__ = ["MomConstants", "MomGuest", "MomPolicy", "mom_round"]


@dataclass(frozen=True)
class MomConstants:
    """The constants of MoM's ``balloon.rules`` (the same as in vdsm's shipped policy)."""

    pressure_threshold: float = 0.20
    pressure_critical: float = 0.05
    min_guest_free_percent: float = 0.20
    max_balloon_change_percent: float = 0.05
    min_balloon_change_percent: float = 0.0025
    #: oVirt appends the QoS rule: a guest below its min_guarantee goes back up to it.
    qos_min_guarantee: bool = True


@dataclass(frozen=True)
class MomGuest:
    """One guest as MoM sees it (bytes). ``avg_*`` are the moving averages MoM's StatAvg gives."""

    balloon_cur: int
    balloon_max: int
    avg_balloon_cur: float
    avg_mem_unused: float
    balloon_min: int = 0


def mom_round(
    host_free_fraction: float, guests: Mapping[str, MomGuest], c: MomConstants = MomConstants()
) -> dict[str, tuple[int, str]]:
    """One evaluation of the rules: ``{guest: (new target, rule)}`` for the guests that move."""
    out: dict[str, tuple[int, str]] = {}
    shrinking = host_free_fraction < c.pressure_threshold
    if host_free_fraction <= c.pressure_critical:
        free_pct = host_free_fraction - 0.05
    else:
        free_pct = c.min_guest_free_percent * (host_free_fraction / c.pressure_threshold)
    for key, g in guests.items():
        cur = g.balloon_cur
        used = g.avg_balloon_cur - g.avg_mem_unused

        def big_enough(value: float, cur: int = cur) -> bool:
            return abs(value - cur) > c.min_balloon_change_percent * cur

        if shrinking:
            floor = max(g.balloon_min, used + free_pct * cur)
            size = max(cur * (1 - c.max_balloon_change_percent), floor)
            if size <= cur and big_enough(size):
                out[key] = (int(size), "mom.shrink")
        elif cur < g.balloon_max:
            floor = max(g.balloon_min, used + c.min_guest_free_percent * cur)
            size = min(max(cur * (1 + c.max_balloon_change_percent), floor), g.balloon_max)
            if big_enough(size):
                out[key] = (int(size), "mom.grow")
        if c.qos_min_guarantee and g.balloon_min and cur < g.balloon_min:
            # the QoS rule runs after the balloon rules and wins
            out[key] = (g.balloon_min, "mom.qos_min_guarantee")
    return out


@dataclass(frozen=True)
class _MomState:
    host_free: tuple[int, ...] = ()
    samples: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)


class MomPolicy(Policy):
    """MoM's default balloon policy; ``history`` samples feed its moving averages (MoM: 10)."""

    name = "mom"
    summary = "oVirt MoM's default balloon rules (host free 20 %/5 %, ≤ 5 % per round)"
    #: MoM's guest collector sets the stats period to its guest-monitor-interval (5 s)
    stats_period_seconds = 5

    def __init__(self, *, history: int = 10, constants: MomConstants | None = None) -> None:
        if history < 1:
            raise ValueError("history is at least 1 (the samples MoM averages over)")
        self.history = history
        self.constants = constants or MomConstants()

    def initial_state(self) -> Any:
        return _MomState()

    def carry(self, state: Any, source: Any, vm_ids: Collection[str]) -> Any:
        """A VM that moved host keeps its samples; the host's free-memory samples stay."""
        st: _MomState = state if isinstance(state, _MomState) else self.initial_state()
        if not isinstance(source, _MomState):
            return st
        moved = {i: source.samples[i] for i in vm_ids if i in source.samples}
        return _MomState(st.host_free, {**st.samples, **moved}) if moved else st

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        st: _MomState = state if isinstance(state, _MomState) else self.initial_state()
        host_free = deque(st.host_free, maxlen=self.history)
        host_free.append(snapshot.host.free_bytes)
        samples: dict[str, tuple[tuple[int, int], ...]] = {}
        guests: dict[str, MomGuest] = {}
        notes: dict[str, str] = {}
        for v in snapshot.vms:
            unused = v.unused_bytes
            if not v.running or v.stale or unused is None:
                # vdsm: "Memory information is missing, ballooning for ... disabled"
                notes[v.id] = "memory information is missing: MoM does not balloon this guest"
                continue
            hist = deque(st.samples.get(v.id, ()), maxlen=self.history)
            hist.append((v.current_bytes, unused))
            samples[v.id] = tuple(hist)
            guests[v.id] = MomGuest(
                balloon_cur=v.current_bytes,
                balloon_max=v.maximum_bytes,
                balloon_min=v.minimum_bytes,
                avg_balloon_cur=sum(s[0] for s in hist) / len(hist),
                avg_mem_unused=sum(s[1] for s in hist) / len(hist),
            )
        total = snapshot.host.total_bytes
        free_fraction = (sum(host_free) / len(host_free)) / total if total else 0.0
        moves = mom_round(free_fraction, guests, self.constants)
        c = self.constants
        mode = (
            "critical"
            if free_fraction <= c.pressure_critical
            else "pressure"
            if free_fraction < c.pressure_threshold
            else "no pressure"
        )
        proposals = []
        for v in snapshot.vms:
            g = guests.get(v.id)
            if g is None:
                proposals.append(Proposal(vm_id=v.id, rule="mom.no_stats", reason=notes[v.id]))
                continue
            inputs = {
                "host_free_fraction": round(free_fraction, 4),
                "guest_used_bytes": int(g.avg_balloon_cur - g.avg_mem_unused),
                "balloon_cur_bytes": g.balloon_cur,
                "balloon_max_bytes": g.balloon_max,
                "balloon_min_bytes": g.balloon_min,
            }
            move = moves.get(v.id)
            if move is None:
                reason = (
                    f"host free {free_fraction:.1%} ({mode}): no change worth more than "
                    f"{c.min_balloon_change_percent:.2%} of {format_size(g.balloon_cur)}"
                )
                proposals.append(Proposal(vm_id=v.id, rule="mom.hold", reason=reason, inputs=inputs))
                continue
            target, rule = move
            if rule == "mom.shrink":
                reason = (
                    f"host free {free_fraction:.1%} < {c.pressure_threshold:.0%} ({mode}): shrink by at most "
                    f"{c.max_balloon_change_percent:.0%}, keeping used {format_size(int(inputs['guest_used_bytes']))} "
                    "plus the pressure-scaled free share"
                )
            elif rule == "mom.grow":
                reason = (
                    f"host free {free_fraction:.1%} ≥ {c.pressure_threshold:.0%}: grow by "
                    f"{c.max_balloon_change_percent:.0%} (at least used + {c.min_guest_free_percent:.0%} free), "
                    "up to the maximum"
                )
            else:
                reason = f"below its min_guarantee {format_size(g.balloon_min)}: set back to it (QoS rule)"
            proposals.append(
                Proposal(vm_id=v.id, target_bytes=target, rule=rule, reason=reason, inputs=inputs)
            )
        return Plan(tuple(proposals), _MomState(tuple(host_free), samples))
