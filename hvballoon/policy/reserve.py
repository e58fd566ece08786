"""How the ``hvballoon`` policy shares the host's memory out: the headroom level, the reserve
dealt out in a wave or after late rounds, and the host-floor rescue.

A mixin of :class:`~hvballoon.policy.adaptive.HvballoonPolicy` (whose keywords set its knobs);
it works on the round's :class:`~hvballoon.policy.history._Figures`.
"""

from __future__ import annotations

from hvballoon.models import Mechanism
from hvballoon.policy.history import _Figures, _State, sibling_key
from hvballoon.policy.model import HostView, Snapshot

__all__ = ["Reserving"]


# (lowest level, floor headroom, plausible surge, page cache, whole only, whole, use, maximum, minimum)
_Steering = tuple[float, int, int, int, bool, int, int, int, int]


def _beyond_cache(surge: int, backed: int, used: int) -> int:
    """What a surge takes from the host beyond the page cache the guest gives up to it (what is
    backed above its use)."""
    return max(0, surge - max(0, backed - used))


def _steer(how: _Steering, level: float) -> int:
    """:meth:`Reserving._target` of a VM at ``level``, from its :meth:`Reserving._steering`."""
    lowest, floor_headroom, surge, cache, whole_only, whole, used, top, bottom = how
    level = max(level, lowest)
    headroom = max(floor_headroom, int(level * surge))
    if level >= 1.0 or cache <= headroom or whole_only:
        return whole
    return min(top, max(bottom, used + headroom))


class Reserving:
    """The host's side of the policy: its reserve, its floor and the headroom level."""

    free_fraction: float
    wave_share: float
    max_reserve_fraction: float
    band_fraction: float
    calm_seconds: float
    surge_after_seconds: float
    wave_seconds: float
    wave_floor_fraction: float
    min_deadband_bytes: int
    min_level: float
    limit_min_level: float

    def _whole(self, f: _Figures) -> int:
        """The VM's use plus its whole plausible surge (within its bounds)."""
        v = f.view
        return min(v.maximum_bytes, max(v.minimum_bytes, f.used + max(f.floor_headroom, f.surge)))

    def _wave_reserve(self, figures: dict[str, _Figures], host: HostView) -> int:
        """What a plausible wave would take from the host: ``wave_share`` of what the VMs'
        plausible surges would take beyond their own page cache (:meth:`_exposure`), at most
        ``max_reserve_fraction`` of its memory."""
        return self._wave_part(sum(self._exposure(f, f.backed) for f in figures.values()), host)

    def _wave_part(self, exposure: int, host: HostView) -> int:
        """``wave_share`` of an exposure, at most ``max_reserve_fraction`` of the host's memory."""
        return min(int(self.wave_share * exposure), int(self.max_reserve_fraction * host.total_bytes))

    @staticmethod
    def _surge_to_back(f: _Figures) -> int | None:
        """The VM's plausible surge within its maximum, what the host would back of it before the
        page cache the guest gives up (:func:`_beyond_cache`); ``None`` for a VM that counts
        nothing: one the policy does not lower, and one whose target is a limit (ESXi reclaims
        for its host itself: sharing, ballooning by shares, compression; and a limit cut to keep
        a larger reserve is not given back within seconds when its own surge comes)."""
        v = f.view
        if not v.can_lower or v.settings.self_managed or v.mechanism is Mechanism.LIMIT:
            return None
        return min(f.surge, v.maximum_bytes - f.used)

    def _exposure(self, f: _Figures, backed: int) -> int:
        """What the VM's plausible surge would take from the host with ``backed`` backed for it
        now: a guest gives its page cache up to its own surge at no cost to the host; the rest
        the host backs within seconds, or swaps (:meth:`_surge_to_back`)."""
        surge = self._surge_to_back(f)
        return 0 if surge is None else _beyond_cache(surge, backed, f.used)

    def _reserve(self, host: HostView, wave_reserve: int) -> int:
        """The free memory the host keeps: the largest of ``free_fraction`` of its memory, its
        own reserve, and what a plausible wave would take from it (:meth:`_wave_reserve`)."""
        return max(int(self.free_fraction * host.total_bytes), host.reserve_bytes, wave_reserve)

    def _wave_floor(self, host: HostView) -> int:
        """The free memory a host keeps while a wave rises."""
        return max(int(self.wave_floor_fraction * host.total_bytes), host.reserve_bytes)

    def _below_floor(self, host: HostView) -> bool:
        """Is the host below its floor (:meth:`_wave_floor`), itself in danger (it swaps, then its
        OOM killer takes a whole VM)?"""
        return host.free_bytes < self._wave_floor(host)

    def _room(self, host: HostView) -> int:
        """The host's free memory above its floor and a band (``band_fraction`` of its memory):
        what it can give without calling for a rescue (negative: it is that much short)."""
        return host.free_bytes - self._wave_floor(host) - int(self.band_fraction * host.total_bytes)

    def _deal_out_reserve(
        self,
        figures: dict[str, _Figures],
        snapshot: Snapshot,
        families: set[tuple[str, int]],
        now: float,
        *,
        others: str,
    ) -> None:
        """A wave is under way (or rounds come late): the VMs whose headroom was cut get their
        whole plausible surge back at once, out of the host's free memory, before their own
        surge comes.

        First the siblings of the VMs surging in the wave (``families``: a wave takes a fleet of
        alike VMs), those short of the most headroom first; then every other VM whose headroom
        was cut, those short of the least first (as many VMs made whole as the memory allows),
        except one lowered within ``calm_seconds`` whose use has not risen since — ``others``
        says why (``"wave"``: the next surger may be of another kind, and a surge that rises
        within a second or two is over before a round sees it; ``"late"``: the policy's rounds
        came late, so any VM's surge may go unseen for as long). What is dealt out is what they
        could take within seconds (their missing headroom) after the surging VMs' own plausible
        surges, down to a floor of ``wave_floor_fraction`` of the host's memory (or its own
        reserve); to the others only what leaves, above that, what the VMs the hypervisor
        balances itself (Dynamic Memory: the policy cannot lower them) may still be given of
        their plausible surges — the hypervisor hands it out without asking.
        """
        host = snapshot.host
        budget = host.free_bytes - self._wave_floor(host)
        for f in figures.values():
            if f.surging is not None:
                budget -= max(0, f.view.maximum_bytes - f.used - max(0, f.available))
        keep = sum(
            max(0, min(f.view.maximum_bytes, f.used + f.surge) - f.view.current_bytes)
            for f in figures.values()
            if f.surging is None and not f.view.can_lower and not f.view.settings.self_managed
        )
        kin, rest = [], []
        for f in figures.values():
            v = f.view
            if f.surging is not None or v.settings.self_managed or not v.can_raise or not v.can_lower:
                # only headroom the policy took is dealt back (a Dynamic Memory maximum it cannot
                # lower is the hypervisor's to balance)
                continue
            missing = self._whole(f) - v.target_bytes
            if missing < max(self.min_deadband_bytes, f.surge // 4):
                continue  # it has most of its plausible surge: a move would only be noise
            if sibling_key(v.name, v.maximum_bytes) in families:
                kin.append((-missing, v.id, f, missing))
            elif not self._calming_raise(f, now):
                rest.append((missing, v.id, f, missing))
        for why, group, kept in (
            ("wave", sorted(kin, key=lambda c: c[:2]), 0),
            (others, sorted(rest, key=lambda c: c[:2]), keep),
        ):
            for _, _, f, missing in group:
                if missing > budget - kept:
                    continue
                budget -= missing
                f.wave_raise = why

    def _appetite(self, f: _Figures) -> int:
        """What the VM's page cache takes above its use (the most it has taken within
        ``appetite_seconds``): memory given to it above its use is backed up to that."""
        return max(f.hist.cache_bytes, f.backed - f.used)

    def _most_backed(self, f: _Figures) -> int:
        """The most the host backs for the VM, however high its target: its use and as much
        page cache as it takes (:meth:`_appetite`)."""
        return f.used + self._appetite(f)

    def _backed_at(self, f: _Figures, target: int) -> int:
        """What the host backs for the VM at ``target`` (:meth:`_most_backed`)."""
        return min(target, self._most_backed(f))

    def _contingency(
        self,
        figures: dict[str, _Figures],
        snapshot: Snapshot,
        planned: dict[str, int],
        now: float,
    ) -> list[tuple[_Figures, int, int]]:
        """The raises to make if the next round's sweep hangs: per VM, ``(figures, target,
        what the host backs for it)``, those most at risk first.

        A VM whose headroom was cut (its target this round below its use plus its whole
        plausible surge) is made whole again, as after late rounds, but only within what the
        host can back: what each raise costs the host is what the VM's page cache would fill of
        it (:meth:`_appetite`), and the raises together (after this round's own raises) keep the
        host's free memory a band above its floor (``wave_floor_fraction`` of its memory, or its
        own reserve), so the host needs no rescue afterwards. The siblings of VMs that surged
        within ``wave_seconds`` come first, then the VMs with the least headroom for their
        plausible surge. A VM lowered within ``calm_seconds`` whose use has not risen since is
        left alone only if it was also raised within ``calm_seconds`` (no flapping while a
        fault lasts): a VM cut lately is the one a surge unseen for seconds kills.
        """
        budget = self._room(snapshot.host)
        fill = self._backed_at
        for f in figures.values():
            target = planned.get(f.view.id, f.view.target_bytes)
            if target > f.view.target_bytes:
                # this round's own raises: a surging VM takes all it is given
                taken = target if f.surging is not None else fill(f, target)
                budget -= max(0, taken - f.backed)
        if budget <= 0:
            return []
        recent = {
            sibling_key(f.view.name, f.view.maximum_bytes)
            for f in figures.values()
            if f.surging is not None
            or (f.hist.surge_at is not None and now - f.hist.surge_at < self.wave_seconds)
        }
        ranked = []
        for f in figures.values():
            v = f.view
            if f.surging is not None or v.settings.self_managed or not v.can_raise or not v.can_lower:
                continue
            target = planned.get(v.id, v.target_bytes)
            goal = self._whole(f)
            if goal - target < max(self.min_deadband_bytes, f.surge // 4):
                continue
            raised = f.hist.raised_at is not None and now - f.hist.raised_at < self.calm_seconds
            if raised and self._calming_raise(f, now):
                continue  # raised and lowered again within the calm time: no flapping
            kin = sibling_key(v.name, v.maximum_bytes) in recent
            ranked.append(((not kin, (target - f.used) / max(f.surge, 1), v.id), f, target, goal))
        out = []
        for _, f, target, goal in sorted(ranked, key=lambda c: c[0]):
            cost = max(0, fill(f, goal) - fill(f, target))
            if cost > budget:
                continue
            budget -= cost
            out.append((f, goal, cost))
        return out

    def _calming_raise(self, f: _Figures, now: float) -> bool:
        """Lowered within ``calm_seconds`` and its use has not risen since: not raised yet."""
        h = f.hist
        rose = f.used > h.lowered_used_bytes + f.floor_headroom // 2
        return h.lowered_at is not None and now - h.lowered_at < self.calm_seconds and not rose

    def _target(self, f: _Figures, level: float) -> int:
        """Where the VM is steered at a headroom level (1: its whole plausible surge).

        A cut below its whole surge is made only on a VM whose page cache reaches above the
        cut (the most it has had within ``appetite_seconds``): cutting the headroom of a VM
        that keeps it free frees nothing the host backs, and leaves it with less to absorb a
        surge. Never on a VM the round marked ``whole_only`` (an ESXi limit while a wave rises,
        rounds come late or the host is near its floor: see :meth:`decide`), and never below
        ``min_level`` of its plausible surge (a limit: ``limit_min_level``).
        """
        return _steer(self._steering(f), level)

    def _steering(self, f: _Figures) -> _Steering:
        """What :meth:`_target` needs of a VM at any level, gathered once (:meth:`_level` tries
        a score of levels a round)."""
        v = f.view
        lowest = max(self.min_level, self.limit_min_level if v.mechanism is Mechanism.LIMIT else 0.0)
        return (
            lowest,
            f.floor_headroom,
            f.surge,
            f.hist.cache_bytes,
            f.whole_only,
            self._whole(f),
            f.used,
            v.maximum_bytes,
            v.minimum_bytes,
        )

    def _rescue(
        self,
        figures: dict[str, _Figures],
        snapshot: Snapshot,
        level: float,
        now: float,
    ) -> set[str]:
        """The VMs whose headroom is cut within the calm time because the host is below its
        floor (its own safety first): only as many as the shortfall needs after what the calm
        VMs' cuts give back, those giving back the most first; never a VM that surged within
        ``surge_after_seconds``. What the balloons of earlier rounds' lowers have still to take
        back (a VM backed above its target) counts as given back already: a rescue whose lowers
        are still under way is not made again a round later."""
        host = snapshot.host
        if not self._below_floor(host):
            return set()
        needed = -self._room(host)
        held = []
        for f in figures.values():
            v = f.view
            if f.surging is not None or not v.can_lower or v.settings.self_managed:
                continue
            needed -= max(0, f.backed - max(v.target_bytes, f.used))
            if f.unbacked:
                continue
            gain = min(f.backed, v.target_bytes) - self._target(f, level)
            if gain <= 0:
                continue
            if self._lowerable(f, now):
                needed -= gain
            elif f.hist.surge_at is None or now - f.hist.surge_at >= self.surge_after_seconds:
                held.append((-gain, v.id))
        out: set[str] = set()
        for gain, vm_id in sorted(held):
            if needed <= 0:
                break
            out.add(vm_id)
            needed += gain
        return out

    def _lowerable(self, f: _Figures, now: float, *, emergency: bool = False) -> bool:
        """May the policy lower this VM now (not surging, calm, lowerable)? In an
        ``emergency`` (chosen by :meth:`_rescue`) the calm time yields."""
        v, h = f.view, f.hist
        if f.surging is not None or not v.can_lower or v.settings.self_managed:
            return False
        if emergency:
            return True
        if h.raised_at is not None and now - h.raised_at < self.calm_seconds:
            # no lower within the calm time of a raise, unless its use fell since
            return f.used < h.raised_used_bytes - self.min_deadband_bytes
        return True

    def _level(
        self,
        st: _State,
        figures: dict[str, _Figures],
        snapshot: Snapshot,
        reserve: int,
        *,
        projected: bool = False,
    ) -> float:
        """The headroom level this round (1: every VM its whole plausible surge).

        The host's free memory at a level is projected from what each VM's page cache takes
        (the most it has taken within ``appetite_seconds``): cut headroom gives the host back
        the cache above it, headroom given back fills with cache again. Below its reserve the
        host cuts at once to the highest level that leaves it a band more than its reserve
        (so the cache growing back does not call for another cut a round later); above it, the
        level rises to the highest that leaves two bands more. Never below ``min_level``.

        ``projected``: ``reserve`` is the host's whole reserve, and its wave part is projected at
        each level as the free memory is (:meth:`_exposure` of each VM backed as at that
        level): a VM cut deep leaves the host more of its surge to back, a VM given headroom
        that its page cache fills leaves it less. Without it, a fleet cut deep in an emergency
        kept the larger reserve its own cut called for once the host had recovered, and its
        VMs less headroom than the host could give.
        """
        host = snapshot.host
        band = int(self.band_fraction * host.total_bytes)
        movable = [f for f in figures.values() if f.settled and f.surging is None and f.view.can_lower
                   and not f.view.settings.self_managed and not f.unbacked]  # fmt: skip

        if not movable:
            return st.level  # nothing to steer: the level is what it was

        # a projected reserve's fixed part: the exposure of the VMs the level does not move
        moved = {id(f) for f in movable}
        fixed = sum(self._exposure(f, f.backed) for f in figures.values() if id(f) not in moved)

        # per VM: how it is steered, what the host backs for it now, the most it would back, the
        # surge the host would back before its page cache, and its use
        steering = [
            (self._steering(f), f.backed, self._most_backed(f), self._surge_to_back(f), f.used)
            for f in movable
        ]

        def free_at(level: float) -> int:
            free, exposure = host.free_bytes, fixed
            for how, backed_now, most, surge, used in steering:
                backed = min(_steer(how, level), most)  # _backed_at
                free += backed_now - backed
                if projected and surge is not None:  # _exposure
                    exposure += _beyond_cache(surge, backed, used)
            if projected:
                # the reserve at that level: headroom a page cache fills is a surge the host
                # need not back, headroom cut is a surge it must
                free -= self._reserve(host, self._wave_part(exposure, host)) - reserve
            return free

        def highest(goal: int) -> float:
            if free_at(1.0) >= goal:
                return 1.0
            if free_at(self.min_level) < goal:
                return self.min_level
            low, high = self.min_level, 1.0
            for _ in range(16):
                mid = (low + high) / 2
                low, high = (mid, high) if free_at(mid) >= goal else (low, mid)
            return low

        if host.free_bytes < reserve:
            return min(st.level, highest(reserve + band))
        return max(st.level, highest(reserve + 2 * band))
