"""What the ``hvballoon`` policy remembers of each VM, and the figures it derives from them.

:class:`VMHistory` is one VM's memory (its use, noise, largest rise, page-cache appetite, when
it was last raised, lowered or surged); :class:`Remembering` folds each round's fresh figures
into it and derives the round's :class:`_Figures` (the VM's plausible surge, shared among its
siblings, and its floor of headroom). The policy itself is :mod:`hvballoon.policy.adaptive`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hvballoon.policy.model import VMView
from hvballoon.units import format_size

if TYPE_CHECKING:
    from hvballoon.policy.buffers import BufferMemo

__all__ = ["Remembering", "VMHistory", "sibling_key"]


def _backed(v: VMView) -> int:
    """What the host backs for the VM: its host-side consumption where reported, else its
    memory less what its guest has entirely free."""
    if v.host_consumed_bytes is not None:
        return v.host_consumed_bytes
    return v.current_bytes - (v.free_bytes or 0)


def sibling_key(name: str, maximum_bytes: int) -> tuple[str, int]:
    """VMs that behave alike: the name without its trailing number, and the same size.

    >>> sibling_key("web01", 8), sibling_key("web-7", 8), sibling_key("db", 8)
    (('web', 8), ('web', 8), ('db', 8))
    """
    return _stem(name), maximum_bytes


_TRAILING_NUMBER = re.compile(r"[-_.]?\d+$")


@functools.lru_cache(maxsize=65536)
def _stem(name: str) -> str:
    """The name without its trailing number (asked several times per VM and round)."""
    return _TRAILING_NUMBER.sub("", name) or name


@dataclass(frozen=True)
class VMHistory:
    """What the policy remembers of one VM (times in the controller's seconds, sizes in bytes).

    ``lows`` and ``highs`` hold the use over the last ``rise_seconds`` / ``peak_seconds`` as
    monotonic queues (their first entry is the window's minimum / maximum); ``noise`` is the
    moving mean square of the change between two consecutive figures; ``burst_bytes`` the
    largest rise within ``rise_seconds`` it has shown, at ``burst_at``; ``cache_bytes`` the most
    memory above its use the host has backed for it (its page cache) within ``appetite_seconds``,
    at ``cache_at``.
    """

    first_at: float
    last_at: float
    used_bytes: int
    swap_in_bytes: int = 0
    lows: tuple[tuple[float, int], ...] = ()
    highs: tuple[tuple[float, int], ...] = ()
    noise: float = 0.0
    burst_bytes: int = 0
    burst_at: float = 0.0
    cache_bytes: int = 0
    cache_at: float = 0.0
    surge_at: float | None = None
    raised_at: float | None = None
    raised_used_bytes: int = 0
    lowered_at: float | None = None
    lowered_used_bytes: int = 0

    @property
    def rise_bytes(self) -> int:
        """How far its use is above its lowest of the rise window."""
        return self.used_bytes - self.lows[0][1] if self.lows else 0

    @property
    def peak_bytes(self) -> int:
        return self.highs[0][1] if self.highs else self.used_bytes


@dataclass(frozen=True)
class _State:
    vms: Mapping[str, VMHistory] = field(default_factory=dict)
    #: the headroom level kept (1: every VM its whole plausible surge), and when it was set
    level: float = 1.0
    level_at: float | None = None
    #: when a VM last surged
    surge_at: float | None = None
    #: the sibling groups (name stem, size) of the VMs surging in the wave under way
    families: frozenset[tuple[str, int]] = frozenset()
    #: when the last round was decided, how soon the one after it was asked for, and when a
    #: round last came much later than that (the controller could not read or move in time)
    decided_at: float | None = None
    asked_seconds: float | None = None
    late_at: float | None = None
    #: the raises planned for a sweep that hangs: per VM id, (its target before the round, its
    #: target after it, the raise)
    contingency: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    #: per VM id whose Dynamic Memory buffer the policy raised: what it remembers of it
    buffers: Mapping[str, BufferMemo] = field(default_factory=dict)


@dataclass
class _Figures:
    """One VM's figures in one round."""

    view: VMView
    hist: VMHistory
    used: int
    available: int
    backed: int
    surge: int
    floor_headroom: int
    settled: bool
    surging: str | None = None
    free_to_lower: bool = True
    #: given its whole plausible surge back because a wave is under way ("wave") or the rounds
    #: come late ("late")
    wave_raise: str | None = None
    #: never cut below its whole plausible surge this round (an ESXi limit while the host cannot
    #: be relied on to give a balloon back within seconds)
    whole_only: bool = False
    #: not lowered this round: a static Hyper-V VM whose memory, once given up, Dynamic Memory
    #: would hand to its own VMs before the policy could give it back
    unbacked: bool = False


Queue = tuple[tuple[float, int], ...]


def _slide(queue: Queue, now: float, used: int, seconds: float, *, rising: bool, in_order: bool) -> Queue:
    """The monotonic queue ``queue`` of ``(time, use)`` with the figure ``used`` at ``now``
    added: the entries older than ``seconds`` dropped, and those the new figure makes redundant
    (``rising``: the lows at or above it; else the highs at or below it).

    The entries are in order of time and, strictly, of use, so what is dropped is a run at each
    end and what is kept one slice: a round costs the entries it drops, not the window's length
    (a VM read every second keeps up to ``seconds`` of them, and copying them entry by entry
    was most of the policy's time per VM). A clock that went back (``in_order`` false) filters
    entry by entry instead.

    >>> _slide(((0.0, 5), (10.0, 7), (20.0, 9)), 30.0, 8, 25.0, rising=True, in_order=True)
    ((10.0, 7), (30.0, 8))
    """
    if not in_order:
        kept = [x for x in queue if now - x[0] <= seconds and (x[1] < used if rising else x[1] > used)]
        return (*kept, (now, used))
    start, end = 0, len(queue)
    while start < end and now - queue[start][0] > seconds:
        start += 1
    if rising:
        while end > start and queue[end - 1][1] >= used:
            end -= 1
    else:
        while end > start and queue[end - 1][1] <= used:
            end -= 1
    return queue[start:end] + ((now, used),)  # noqa: RUF005 (concatenation: a third faster)


class Remembering:
    """The policy's memory of each VM (a mixin of :class:`~hvballoon.policy.adaptive.HvballoonPolicy`,
    whose keywords set these knobs)."""

    surge_fraction: float
    appetite_seconds: float
    settle_seconds: float
    rise_seconds: float
    peak_seconds: float
    burst_memory_seconds: float
    min_headroom_bytes: int
    sigma: float

    def _remember(self, v: VMView, old: VMHistory | None, now: float) -> VMHistory:
        """The VM's history with this round's fresh figures added (the caller checked them)."""
        used = v.used_bytes or 0
        swap_in = v.swap_in_bytes or 0
        cache = max(0, _backed(v) - used)
        if old is None:
            return VMHistory(
                now, now, used, swap_in, ((now, used),), ((now, used),), cache_bytes=cache, cache_at=now
            )
        if cache >= old.cache_bytes or now - old.cache_at > self.appetite_seconds:
            cache_bytes, cache_at = cache, now
        elif v.current_bytes - _backed(v) < self.min_headroom_bytes // 4:
            # its page cache fills what its balloon leaves it: what it shows is the balloon, not
            # its appetite, which is still at least what it was
            cache_bytes, cache_at = old.cache_bytes, now
        else:
            cache_bytes, cache_at = old.cache_bytes, old.cache_at
        in_order = now >= old.last_at
        lows = _slide(old.lows, now, used, self.rise_seconds, rising=True, in_order=in_order)
        highs = _slide(old.highs, now, used, self.peak_seconds, rising=False, in_order=in_order)
        step = used - old.used_bytes
        noise = 0.9 * old.noise + 0.1 * step * step
        rise = used - lows[0][1]
        burst, burst_at = self._burst(old, now)
        if rise > burst:
            burst, burst_at = rise, now
        # built whole: dataclasses.replace took an eighth of the policy's time in a round of
        # 10,000 VMs. Every field is named (a test checks none is left behind)
        return VMHistory(
            first_at=old.first_at,
            last_at=now,
            used_bytes=used,
            swap_in_bytes=swap_in,
            lows=lows,
            highs=highs,
            noise=noise,
            burst_bytes=burst,
            burst_at=burst_at,
            cache_bytes=cache_bytes,
            cache_at=cache_at,
            surge_at=old.surge_at,
            raised_at=old.raised_at,
            raised_used_bytes=old.raised_used_bytes,
            lowered_at=old.lowered_at,
            lowered_used_bytes=old.lowered_used_bytes,
        )

    def _burst(self, h: VMHistory, now: float) -> tuple[int, float]:
        """The VM's largest rise, forgotten once ``burst_memory_seconds`` have passed."""
        if now - h.burst_at > self.burst_memory_seconds:
            return 0, now
        return h.burst_bytes, h.burst_at

    def _surging(self, v: VMView, old: VMHistory | None, h: VMHistory, f: _Figures) -> str | None:
        """Why the VM is surging now (``None`` if it is not)."""
        if old is None:
            return None
        if h.swap_in_bytes > old.swap_in_bytes:
            return f"it swapped in {format_size(h.swap_in_bytes - old.swap_in_bytes)}"
        step = h.used_bytes - old.used_bytes
        quiet = max(self.sigma * math.sqrt(old.noise), f.floor_headroom / 2)
        if step > quiet:
            return f"its use rose {format_size(step)} since the last figures"
        if f.available < f.floor_headroom / 3 and v.target_bytes < v.maximum_bytes:
            return f"only {format_size(max(0, f.available))} of its memory is left"
        return None

    def _figures(self, v: VMView, h: VMHistory) -> _Figures:
        used = h.used_bytes
        available = v.current_bytes - used
        backed = _backed(v)
        burst, _ = self._burst(h, h.last_at)
        surge = max(int(self.surge_fraction * v.maximum_bytes), burst)
        floor_headroom = int(max(self.min_headroom_bytes, self.sigma * math.sqrt(2 * h.noise)))
        return _Figures(
            view=v,
            hist=h,
            used=used,
            available=available,
            backed=backed,
            surge=min(surge, max(0, v.maximum_bytes - used)),
            floor_headroom=floor_headroom,
            settled=h.last_at - h.first_at >= self.settle_seconds,
        )

    def _share_among_siblings(self, figures: dict[str, _Figures], now: float) -> None:
        """A VM gets the headroom its siblings needed: the largest rise of its kind, to scale."""
        largest: dict[tuple[str, int], float] = {}
        for f in figures.values():
            key = sibling_key(f.view.name, f.view.maximum_bytes)
            burst, _ = self._burst(f.hist, now)
            largest[key] = max(largest.get(key, 0.0), burst / max(f.view.maximum_bytes, 1))
        for f in figures.values():
            share = largest.get(sibling_key(f.view.name, f.view.maximum_bytes), 0.0)
            shared = int(share * f.view.maximum_bytes)
            f.surge = max(f.surge, min(shared, max(0, f.view.maximum_bytes - f.used)))
