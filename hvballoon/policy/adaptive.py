"""``hvballoon``: our policy, designed from the hazards of ballooning, waves of demand included.

Its premise: ballooning must never leave a host worse off than not ballooning. Memory a guest
does not use costs the host nothing until the guest touches it, and the guest that has it can
absorb a surge by itself, in the instant the surge comes; memory taken away has to be given back
before the surge outruns the guest's headroom and swap. So the policy takes memory back where
the host needs it, keeps the rest as headroom, and gives it back within seconds.

* **A plausible surge per VM.** Each VM is credited with the surge it could plausibly make: the
  larger of ``surge_fraction`` of its size (a third or more of a VM's size within seconds is
  the class of wave the policy is built for), the largest rise it has shown (within a minute,
  remembered for a day), and the largest its *siblings* have shown, scaled to its size — VMs
  named alike (the name without its trailing number: ``web01``, ``web-7`` → ``web``) and of the
  same size behave alike, so a VM that has not spiked yet gets the headroom its siblings needed.
* **Headroom first, reclaim where the host needs it.** A VM is lowered to its use plus its
  plausible surge, never less while the host has the memory: what is above that is memory no
  surge of the class reaches. The host keeps a **reserve** free — the larger of
  ``free_fraction`` of its memory (the 20 % MoM and Proxmox keep) and its own configured
  reserve. Only when the host's free memory is below
  that reserve does the policy cut into headroom, and then all at one level (the same fraction
  of each VM's plausible surge, never below a small floor sized from the VM's own noise), on
  the VMs watched for ``settle_seconds`` (their noise known), choosing the level that frees what
  the host lacks from the memory the host actually backs. A page cache held down by its balloon
  (it fills all the VM is left) keeps the appetite it had: what it shows then is the balloon.
* **Fast deflation, dealt out at once.** A VM whose use rises more than its noise explains
  since the last figures, that swaps in, or that runs out of headroom, is given its whole size
  back in that round (a *surge*): the host's reserve absorbs it.
* **A wave deals the reserve out.** For ``wave_seconds`` after a surge, a wave is under way:
  the siblings of the surging VMs whose headroom was cut get their whole plausible surge back at
  once, out of the host's free memory down to ``wave_floor_fraction`` of it, and no VM's
  headroom is cut while the wave rises (a VM cut now is the next one a wave kills).
* **Late rounds are a blind spot.** A round that comes much later than the policy asked for
  (``late_seconds`` beyond it: a sweep that hung until its timeout, moves retried) means a
  surge could go unseen for as long. For ``late_memory_seconds`` after one, the policy is as
  careful as in a wave, and every VM whose headroom was cut gets its whole plausible surge back
  out of the host's free memory down to the floor (those short of the least first, so as many
  VMs as possible are whole; not one lowered within the calm time whose use has not risen).
* **The host's own floor comes first.** While the reserve is being dealt out after late rounds,
  a host below ``wave_floor_fraction`` of its memory is itself in danger (it swaps, then kills a
  VM): headroom is cut even within the calm time, but only on as many VMs as the shortfall needs
  (those giving back the most first), never on a VM that surged within ``surge_after_seconds``
  (and while a wave rises no VM is cut at all).
* **Quick rounds while exposed.** While any VM holds less than its plausible surge, the host is
  below its reserve, a surge is under way or rounds came late, the policy asks the controller for its next round
  within ``fast_interval_seconds`` (two seconds by default), and for a guest statistics period
  of :attr:`stats_period_seconds` where the backend can set it live, so a wave is seen within
  seconds rather than within a round or two of ten.
* **Calm hands.** A VM is not lowered within ``calm_seconds`` (ten minutes) of a raise unless
  its use fell, nor raised within ``calm_seconds`` of a lower unless its use rose; a lower is
  made in one step and only when it moves enough to matter (``lower_deadband_fraction`` of the
  VM's size while the host has what it needs), so a steady VM is moved a few times a day.
* **Its own guard rails.** The policy sizes every headroom itself, so it has the controller check
  its lowers against the session's guard rails without their proportional margin: the absolute
  margin (use + 256 MiB) and the refusal of stale or missing figures stay, checked by the
  session at the call.
* **Self-managed memory is left alone** (a JVM heap or a database buffer pool looks idle but is
  not: such VMs get their maximum back and are never lowered), and **it never fights the
  mechanism**: where the live rules forbid lowering (Hyper-V Dynamic Memory) it only raises.

No rule looks at a scenario's name or at the simulator's future: the policy sees the
controller's snapshot (the public API's figures) and its own history, nothing else.

>>> from hvballoon.policy.model import HostView, Snapshot, VMView
>>> from hvballoon.models import Mechanism
>>> from hvballoon.units import GiB
>>> web = VMView(id="w", name="web01", mechanism=Mechanism.BALLOON, maximum_bytes=16 * GiB,
...              current_bytes=16 * GiB, target_bytes=16 * GiB, used_bytes=3 * GiB)
>>> host = HostView(total_bytes=64 * GiB, used_bytes=30 * GiB)
>>> policy = HvballoonPolicy()
>>> plan = policy.decide(Snapshot(at_seconds=0, host=host, vms=(web,)), policy.initial_state())
>>> p = plan.for_vm("w")
>>> p.rule, round(p.target_bytes / GiB, 1)   # use 3 GiB + a plausible surge of 60 % of 16 GiB
('hvballoon.lower', 12.6)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hvballoon.policy.base import Plan, Policy
from hvballoon.policy.model import HostView, Proposal, Snapshot, VMView
from hvballoon.units import MiB, format_size

if TYPE_CHECKING:
    from hvballoon.session import GuardRails

__all__ = ["HvballoonPolicy", "VMHistory", "sibling_key"]

_DAY = 86400.0


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
    stem = re.sub(r"[-_.]?\d+$", "", name) or name
    return stem, maximum_bytes


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


class HvballoonPolicy(Policy):
    """hvballoon's own policy (see the module docstring); every knob is a keyword."""

    name = "hvballoon"
    summary = "headroom for a plausible surge, reclaim where the host needs it, surges given back at once"
    stats_period_seconds = 1

    def __init__(
        self,
        *,
        surge_fraction: float = 0.6,
        free_fraction: float = 0.20,
        band_fraction: float = 0.025,
        appetite_seconds: float = 6 * 3600.0,
        settle_seconds: float = 300.0,
        calm_seconds: float = 600.0,
        rise_seconds: float = 60.0,
        peak_seconds: float = 300.0,
        burst_memory_seconds: float = _DAY,
        min_headroom_bytes: int = 384 * MiB,
        sigma: float = 3.0,
        surge_after_seconds: float = 120.0,
        wave_seconds: float = 120.0,
        wave_floor_fraction: float = 0.05,
        late_seconds: float = 3.0,
        late_memory_seconds: float = 300.0,
        lower_deadband_fraction: float = 1 / 16,
        min_deadband_bytes: int = 512 * MiB,
        own_guard_rails: bool = True,
    ) -> None:
        if not 0 <= surge_fraction <= 1 or not 0 <= free_fraction < 1:
            raise ValueError("surge_fraction is in [0, 1] and free_fraction in [0, 1)")
        self.surge_fraction = surge_fraction
        self.free_fraction = free_fraction
        self.band_fraction = band_fraction
        self.appetite_seconds = appetite_seconds
        self.settle_seconds = settle_seconds
        self.calm_seconds = calm_seconds
        self.rise_seconds = rise_seconds
        self.peak_seconds = peak_seconds
        self.burst_memory_seconds = burst_memory_seconds
        self.min_headroom_bytes = min_headroom_bytes
        self.sigma = sigma
        self.surge_after_seconds = surge_after_seconds
        self.wave_seconds = wave_seconds
        self.wave_floor_fraction = wave_floor_fraction
        self.late_seconds = late_seconds
        self.late_memory_seconds = late_memory_seconds
        self.lower_deadband_fraction = lower_deadband_fraction
        self.min_deadband_bytes = min_deadband_bytes
        self.own_guard_rails = own_guard_rails

    def initial_state(self) -> Any:
        return _State()

    def guard_rails(self, session: GuardRails) -> GuardRails:
        """The session's absolute margin without its proportional one: the headroom above it is
        sized per VM by the policy."""
        if not self.own_guard_rails or session.margin_fraction == 0:
            return session
        return dataclasses.replace(session, margin_fraction=0.0)

    # -- memory of each VM ----------------------------------------------------------------

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
        lows = [x for x in old.lows if now - x[0] <= self.rise_seconds and x[1] < used]
        lows.append((now, used))
        highs = [x for x in old.highs if now - x[0] <= self.peak_seconds and x[1] > used]
        highs.append((now, used))
        step = used - old.used_bytes
        noise = 0.9 * old.noise + 0.1 * step * step
        rise = used - lows[0][1]
        burst, burst_at = self._burst(old, now)
        if rise > burst:
            burst, burst_at = rise, now
        return dataclasses.replace(
            old,
            last_at=now,
            used_bytes=used,
            swap_in_bytes=swap_in,
            lows=tuple(lows),
            highs=tuple(highs),
            noise=noise,
            burst_bytes=burst,
            burst_at=burst_at,
            cache_bytes=cache_bytes,
            cache_at=cache_at,
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

    # -- the round ------------------------------------------------------------------------

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        st: _State = state if isinstance(state, _State) else _State()
        now = snapshot.at_seconds
        histories: dict[str, VMHistory] = {}
        figures: dict[str, _Figures] = {}
        for v in snapshot.vms:
            old = st.vms.get(v.id)
            if not v.running or v.used_bytes is None or v.stale:
                if old is not None:
                    histories[v.id] = old
                continue
            h = self._remember(v, old, now)
            histories[v.id] = h
            f = self._figures(v, h)
            f.surging = self._surging(v, old, h, f)
            figures[v.id] = f
        self._share_among_siblings(figures, now)

        host = snapshot.host
        # the host's reserve: a fifth of its memory, or its own reserve if that is more
        reserve = max(int(self.free_fraction * host.total_bytes), host.reserve_bytes)
        surging = any(f.surging is not None for f in figures.values())
        last_surge = now if surging else st.surge_at
        wave = last_surge is not None and now - last_surge < self.wave_seconds
        # rounds that come late (a sweep that hung, moves retried): a surge may go unseen for as
        # long, so the policy is as careful as in a wave until rounds have come on time a while
        late = self._late(st, snapshot)
        late_at = now if late else st.late_at
        blind = late_at is not None and now - late_at < self.late_memory_seconds
        # the VMs a wave is likely to take next: the siblings of those surging in it
        families = {sibling_key(f.view.name, f.view.maximum_bytes) for f in figures.values() if f.surging}
        if wave:
            families |= st.families
        level = self._level(st, figures, snapshot, reserve)
        if wave or blind:
            # the reserve is there to be dealt out, not refilled from headroom: while a wave
            # rises (or a surge may go unseen) no VM's headroom is cut to keep the host's whole
            # reserve, only its floor is defended (while rounds come late the headroom level
            # rises to what the floor allows); in a wave the VMs likeliest to surge next get
            # their headroom back out of the host's free memory
            reserve = self._wave_floor(host)
            level = min(self._level(st, figures, snapshot, reserve), st.level)
            self._deal_out_reserve(figures, snapshot, families if wave else set(), now, everyone=blind)
        short = reserve - host.free_bytes
        # below the floor while the reserve is dealt out after late rounds, the host itself is in
        # danger: headroom is cut even within the calm time (while a wave rises none is cut)
        rescue = self._rescue(figures, snapshot, level, now) if blind and not wave else set()
        host_inputs = {
            "host_free_bytes": host.free_bytes,
            "host_reserve_bytes": reserve,
            "host_short_bytes": max(0, short),
            "headroom_level": round(level, 3),
        }

        proposals: list[Proposal] = []
        exposed = short > 0 or wave or blind
        for v in snapshot.vms:
            seen = figures.get(v.id)
            if seen is None:
                why = "not running" if not v.running else "no fresh guest figures: never lower blind"
                proposals.append(Proposal(vm_id=v.id, rule="hvballoon.no_stats", reason=why))
                continue
            f = seen
            in_wave = wave and f.view.can_lower and sibling_key(f.view.name, f.view.maximum_bytes) in families
            proposal, h = self._one(
                f, level, short, now, host_inputs, wave=in_wave, emergency=v.id in rescue, frozen=wave
            )
            histories[v.id] = h
            proposals.append(proposal)
            exposed = (
                exposed
                or f.surging is not None
                or (h.surge_at is not None and now - h.surge_at < self.surge_after_seconds)
                or (
                    f.view.can_lower
                    and not f.view.settings.self_managed
                    and f.settled
                    and f.available < 0.75 * f.surge
                )
            )
        asked = snapshot.fast_interval_seconds if exposed else None
        return Plan(
            tuple(proposals),
            _State(
                histories,
                level,
                now,
                last_surge,
                frozenset(families) if wave else frozenset(),
                decided_at=now,
                asked_seconds=asked,
                late_at=late_at,
            ),
            next_round_seconds=asked,
        )

    def _late(self, st: _State, snapshot: Snapshot) -> bool:
        """Did this round come much later than the policy asked (its last figures older than a
        surge of the class needs to be seen)? ``late_seconds`` beyond the wait asked for, and
        at least twice that wait."""
        if st.decided_at is None:
            return False
        expected = st.asked_seconds or snapshot.interval_seconds
        return snapshot.at_seconds - st.decided_at > expected + max(self.late_seconds, expected)

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

    def _whole(self, f: _Figures) -> int:
        """The VM's use plus its whole plausible surge (within its bounds)."""
        v = f.view
        return min(v.maximum_bytes, max(v.minimum_bytes, f.used + max(f.floor_headroom, f.surge)))

    def _wave_floor(self, host: HostView) -> int:
        """The free memory a host keeps while a wave rises."""
        return max(int(self.wave_floor_fraction * host.total_bytes), host.reserve_bytes)

    def _deal_out_reserve(
        self,
        figures: dict[str, _Figures],
        snapshot: Snapshot,
        families: set[tuple[str, int]],
        now: float,
        *,
        everyone: bool = False,
    ) -> None:
        """A wave is under way (or rounds come late): the VMs whose headroom was cut get their
        whole plausible surge back at once, out of the host's free memory, before their own
        surge comes.

        First the siblings of the VMs surging in the wave (``families``: a wave takes a fleet of
        alike VMs), those short of the most headroom first; with ``everyone`` (the policy's
        rounds came late, so any VM's surge may go unseen for as long), then every other VM
        whose headroom was cut, those short of the least first (as many VMs made whole as the
        memory allows), except one lowered within ``calm_seconds`` whose use has not risen since.
        What is dealt out is what they could take within seconds (their missing headroom) after
        the surging VMs' own plausible surges, down to a floor of ``wave_floor_fraction`` of the
        host's memory (or its own reserve).
        """
        host = snapshot.host
        budget = host.free_bytes - self._wave_floor(host)
        for f in figures.values():
            if f.surging is not None:
                budget -= max(0, f.view.maximum_bytes - f.used - max(0, f.available))
        kin, others = [], []
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
            elif everyone and not self._calming_raise(f, now):
                others.append((missing, v.id, f, missing))
        for why, group in (
            ("wave", sorted(kin, key=lambda c: c[:2])),
            ("late", sorted(others, key=lambda c: c[:2])),
        ):
            for _, _, f, missing in group:
                if missing > budget:
                    continue
                budget -= missing
                f.wave_raise = why

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
        surge.
        """
        v = f.view
        whole = self._whole(f)
        headroom = max(f.floor_headroom, int(level * f.surge))
        if level >= 1.0 or f.hist.cache_bytes <= headroom:
            return whole
        return min(v.maximum_bytes, max(v.minimum_bytes, f.used + headroom))

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
        ``surge_after_seconds``."""
        host = snapshot.host
        floor = self._wave_floor(host)
        if host.free_bytes >= floor:
            return set()
        needed = floor + int(self.band_fraction * host.total_bytes) - host.free_bytes
        held = []
        for f in figures.values():
            v = f.view
            if f.surging is not None or not v.can_lower or v.settings.self_managed:
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
    ) -> float:
        """The headroom level this round (1: every VM its whole plausible surge).

        The host's free memory at a level is projected from what each VM's page cache takes
        (the most it has taken within ``appetite_seconds``): cut headroom gives the host back
        the cache above it, headroom given back fills with cache again. Below its reserve the
        host cuts at once to the highest level that leaves it a band more than its reserve
        (so the cache growing back does not call for another cut a round later); above it, the
        level rises to the highest that leaves two bands more.
        """
        host = snapshot.host
        band = int(self.band_fraction * host.total_bytes)
        movable = [f for f in figures.values() if f.settled and f.surging is None and f.view.can_lower
                   and not f.view.settings.self_managed]  # fmt: skip

        def free_at(level: float) -> int:
            free = host.free_bytes
            for f in movable:
                appetite = max(f.hist.cache_bytes, f.backed - f.used)
                free += f.backed - min(self._target(f, level), f.used + appetite)
            return free

        def highest(goal: int) -> float:
            if free_at(1.0) >= goal:
                return 1.0
            if free_at(0.0) < goal:
                return 0.0
            low, high = 0.0, 1.0
            for _ in range(16):
                mid = (low + high) / 2
                low, high = (mid, high) if free_at(mid) >= goal else (low, mid)
            return low

        if host.free_bytes < reserve:
            return min(st.level, highest(reserve + band))
        return max(st.level, highest(reserve + 2 * band))

    def _one(
        self,
        f: _Figures,
        level: float,
        short: int,
        now: float,
        host_inputs: dict[str, Any],
        *,
        wave: bool,
        emergency: bool = False,
        frozen: bool = False,
    ) -> tuple[Proposal, VMHistory]:
        v, h = f.view, f.hist
        # while a wave rises, a VM whose use reaches into its headroom gets its whole plausible surge
        wave_goal = self._whole(f) if wave else 0
        top, current_target = v.maximum_bytes, v.target_bytes
        # a VM not watched long enough (its noise unknown) keeps its whole plausible surge
        goal = self._target(f, level) if f.settled else self._whole(f)
        inputs = {
            "used_bytes": f.used,
            "available_bytes": f.available,
            "host_backed_bytes": f.backed,
            "plausible_surge_bytes": f.surge,
            "floor_headroom_bytes": f.floor_headroom,
            "goal_bytes": goal,
            **host_inputs,
        }

        def propose(rule: str, reason: str, target: int | None = None) -> Proposal:
            return Proposal(vm_id=v.id, target_bytes=target, rule=rule, reason=reason, inputs=inputs)

        def raised(target: int) -> VMHistory:
            return dataclasses.replace(h, raised_at=now, raised_used_bytes=f.used)

        if v.settings.self_managed:
            if current_target < top and v.can_raise:
                return propose(
                    "hvballoon.self_managed",
                    "manages its own memory (JVM heap / buffer pool): given its full size back",
                    top,
                ), raised(top)
            return propose("hvballoon.self_managed", "manages its own memory: never lowered"), h

        if f.wave_raise is not None:
            goal = self._whole(f)
            why = (
                f"a wave is under way (VMs surging within {self.wave_seconds:g} s)"
                if f.wave_raise == "wave"
                else f"rounds came late within {self.late_memory_seconds:g} s (a surge may go unseen as long)"
            )
            return propose(
                f"hvballoon.{f.wave_raise}",
                f"{why}: the host's reserve dealt out, use {format_size(f.used)} + its whole plausible "
                f"surge {format_size(goal - f.used)}",
                goal,
            ), raised(goal)

        if f.surging is not None:
            h = dataclasses.replace(h, surge_at=now)
            if current_target < top and v.can_raise:
                return propose(
                    "hvballoon.surge",
                    f"demand surge ({f.surging}): its whole size back at once; not lowered again "
                    f"until its use falls or {self.calm_seconds:g} s have passed",
                    top,
                ), dataclasses.replace(h, raised_at=now, raised_used_bytes=f.used)
            return propose("hvballoon.surge", f"demand surge ({f.surging}): it already has all it may get"), h

        # its use rose into the headroom: raise to the goal (a rise of its own use is reason
        # enough, whenever it was lowered), and a little above, so the next small rise does not
        # call again
        deadband = max(self.min_deadband_bytes, int(self.lower_deadband_fraction * top))
        short_of = min(f.available, current_target - f.used)
        if short_of < 0.75 * f.floor_headroom and max(goal, wave_goal) > current_target:
            goal = min(top, max(goal + deadband // 2, wave_goal))
            if not v.can_raise:
                return propose(
                    "hvballoon.cannot_raise", "needs more memory but its mechanism cannot raise it now"
                ), h
            return propose(
                "hvballoon.raise",
                f"use {format_size(f.used)} leaves only {format_size(max(0, short_of))} below its target: "
                f"raised to use + {format_size(goal - f.used)} of headroom",
                goal,
            ), raised(goal)

        if not v.can_lower:
            return propose(
                "hvballoon.mechanism",
                "the hypervisor balances this VM itself and its target cannot be lowered live",
            ), h

        # give headroom back once the host has it again, calmly, in a few large steps
        if goal > current_target + max(deadband, f.surge // 4) and v.can_raise:
            if self._calming_raise(f, now):
                return propose(
                    "hvballoon.calming",
                    f"lowered {now - (h.lowered_at or now):.0f} s ago and its use has not risen: headroom "
                    f"given back after {self.calm_seconds:g} s",
                ), h
            return propose(
                "hvballoon.raise",
                f"the host has memory again: use {format_size(f.used)} + headroom "
                f"{format_size(goal - f.used)} (level {level:.2f} of a plausible surge of "
                f"{format_size(f.surge)})",
                goal,
            ), raised(goal)

        gap = current_target - goal
        urgent = short > 0 and f.backed > goal
        if gap <= 0 or (gap < deadband and not (urgent and gap >= self.min_deadband_bytes // 2)):
            return propose(
                "hvballoon.hold",
                f"at its goal: use {format_size(f.used)} + headroom {format_size(max(0, current_target - f.used))}",
            ), h
        if frozen:
            return propose(
                "hvballoon.wave",
                "its siblings are surging: its headroom is not cut while the wave rises"
                if wave
                else "a wave is under way: no headroom is cut until it has passed",
            ), h
        if not self._lowerable(f, now, emergency=emergency):
            since = now - (h.raised_at or now)
            return propose(
                "hvballoon.calming",
                f"raised {since:.0f} s ago and its use has not fallen: not lowered before {self.calm_seconds:g} s",
            ), h
        if short > 0:
            why = (
                f"the host is {format_size(short)} short of its reserve: headroom cut to {level:.2f} of "
                f"a plausible surge of {format_size(f.surge)}"
            )
        elif goal - f.used < f.surge:
            why = (
                f"the host keeps headroom at {level:.2f} of a plausible surge of {format_size(f.surge)} "
                f"while its page cache would fill more"
            )
        else:
            why = (
                f"use {format_size(f.used)} + a plausible surge of {format_size(f.surge)} is what it may need"
            )
        return propose("hvballoon.lower", f"{why}: lowered by {format_size(gap)}", goal), dataclasses.replace(
            h, lowered_at=now, lowered_used_bytes=f.used
        )
