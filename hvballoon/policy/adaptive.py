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
* **Nothing taken back from a host that could hold every VM whole** (``hold_when_uncommitted``,
  on by default): while the host could back every running VM at its whole size (its maximum,
  from what the host backs for it now) and keep its configured reserve, no VM is lowered and a
  VM lowered before gets its size back (rule ``hvballoon.uncommitted``): memory taken back would
  lie free, and a surge beyond the plausible one, faster than a round, would find it gone.
* **Headroom first, reclaim where the host needs it.** A VM is lowered to its use plus its
  plausible surge, never less while the host has the memory: what is above that is memory no
  surge of the class reaches. The host keeps a **reserve** free — the largest of
  ``free_fraction`` of its memory (the 20 % MoM and Proxmox keep), its own configured
  reserve, and what a plausible wave would take from it: ``wave_share`` of what the VMs'
  plausible surges would take beyond their own page cache (a guest gives its page cache up to
  its own surge at no cost to the host; the rest the host must back within seconds), at most
  ``max_reserve_fraction`` of its memory (ESXi limits not counted: ESXi reclaims for its host
  itself). Only when the host's free memory is below
  that reserve does the policy cut into headroom, and then all at one level (the same fraction
  of each VM's plausible surge, never below a small floor sized from the VM's own noise, nor
  below ``min_level``: 0 by default; a fleet whose surges rise within a second or two, before
  any round can see them, is safer with more left in the guests, see the policies page), on
  the VMs watched for ``settle_seconds`` (their noise known), choosing the level that frees what
  the host lacks from the memory the host actually backs. A page cache held down by its balloon
  (it fills all the VM is left) keeps the appetite it had: what it shows then is the balloon.
  A VM whose target is a limit (ESXi) is not cut below its whole plausible surge while a wave
  rises, rounds come late or the host is near its floor (``wave_floor_fraction`` and a band):
  ESXi enforces a limit at its own next allocation (by ballooning what the VM holds over it)
  and gives a balloon back only when it has room again, so a surge that outruns a limit then is
  not given its memory back within seconds; ESXi's own reclaim (sharing, ballooning idle memory
  by shares, compression) keeps the host. For the same reason a limit is never cut below half its
  plausible surge (``limit_min_level``), however short the host: a surge that rises within a
  second or two would meet the limit for up to ESXi's next reallocation.
* **Fast deflation, dealt out at once.** A VM whose use rises more than its noise explains
  since the last figures, that swaps in, or that runs out of headroom, is given its whole size
  back in that round (a *surge*): the host's reserve absorbs it.
* **No raise the host cannot back**, when asked (``hold_unbacked_raises``, off by default;
  :mod:`hvballoon.policy.backing`).
  A raise no surge calls for (a VM whose use reached into its headroom, headroom given back, a
  host that looks able to hold every VM whole) is made only out of the host's free memory above
  its floor and a band, the most urgent first, as far as it goes (rule ``hvballoon.unbackable``
  for what does not fit): on KVM a raise lets the guest touch pages the host must back, then
  swap, then kill a whole VM for; on ESXi a raised limit lets the VM claim memory the others
  lose to ESXi's balloon.
* **No lower that frees nothing the host backs**, when asked (``hold_unfilled_lowers``, off
  by default; :mod:`hvballoon.policy.filling`). A lower is made only where it frees at least
  half ``min_deadband_bytes`` of what the host backs for the VM or its page cache filled within
  ``appetite_seconds`` (rule ``hvballoon.unfilled`` otherwise): a lower above that takes
  headroom from the guest and gives the host nothing now.
* **A wave deals the reserve out.** For ``wave_seconds`` after a surge, a wave is under way:
  the siblings of the surging VMs whose headroom was cut get their whole plausible surge back at
  once, out of the host's free memory down to ``wave_floor_fraction`` of it, and no VM's
  headroom is cut while the wave rises (a VM cut now is the next one a wave kills) unless the
  wave takes the host below that floor: then the host itself is in danger (it swaps, then its
  OOM killer takes a whole VM), and the VMs neither surging nor raised within the calm time give
  their page cache up, down to the level the floor needs. Then every other VM whose headroom
  was cut gets it back too, as after late rounds (a wave may take VMs of another kind next, and
  a surge that rises within a second or two is over before any round sees it), leaving the host
  what the VMs the hypervisor balances itself (Hyper-V Dynamic Memory) may still be given of
  their plausible surges.
* **Late rounds are a blind spot.** A round that comes much later than the policy asked for
  (``late_seconds`` beyond it: a sweep that hung until its timeout, moves retried) means a
  surge could go unseen for as long. For ``late_memory_seconds`` after one, the policy is as
  careful as in a wave, and every VM whose headroom was cut gets its whole plausible surge back
  out of the host's free memory down to the floor (those short of the least first, so as many
  VMs as possible are whole; not one lowered within the calm time whose use has not risen).
* **A sweep that hangs is met while it hangs.** Each round the policy also plans what to do if
  the controller cannot read before the next one (:attr:`Plan.contingency
  <hvballoon.policy.base.Plan.contingency>`, made by the controller when an attempt of the next
  sweep times out, rule ``hvballoon.blind``): the VMs whose headroom is cut get their whole
  plausible surge back, but only as far as the host can back it — each raise costs the host
  what the VM's page cache would fill of it (the most it has taken within
  ``appetite_seconds``), and the raises together, after the round's own, leave the host a band
  (``band_fraction``) above its floor, so it needs no rescue afterwards. The siblings of VMs
  that surged within ``wave_seconds`` come first, then those with the least headroom for their
  plausible surge; a VM cut within the calm time is included (it is the one an unseen surge
  kills) unless it was also raised within it (no flapping while a fault lasts). A VM raised so
  counts as raised (the calm time holds it).
* **The host's own floor comes first.** While the reserve is being dealt out after late rounds,
  a host below ``wave_floor_fraction`` of its memory is itself in danger (it swaps, then kills a
  VM): headroom is cut even within the calm time, but only on as many VMs as the shortfall needs
  (those giving back the most first), never on a VM that surged within ``surge_after_seconds``
  (while a wave rises, only the calm VMs are cut, as above). What earlier rounds' lowers have
  still to take back counts as given: a balloon inflates over seconds, and a rescue is not made
  again while the one before is under way.
* **Quick rounds while exposed.** While any VM holds less than its plausible surge, the host is
  below its reserve, a surge is under way or rounds came late, the policy asks the controller for its next round
  within ``fast_interval_seconds`` (one second by default), and for a guest statistics period
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
* **A static Hyper-V VM is lowered only where it could be given its memory back.** Hyper-V
  resizes a static VM at run time only with the memory free on the host, and Dynamic Memory
  hands what is free above the host's reserve to its VMs whose demand plus buffer exceeds what
  they are assigned, within seconds, and keeps it while their demand lasts. So while the host's
  free memory above its reserve is less than what Dynamic Memory is about to hand out, a static
  VM is not lowered (rule ``hvballoon.unbacked``; the headroom level counts it as not moving):
  what it gave up would be the Dynamic Memory VMs', and a raise back, when its own use rises,
  would find no memory free — where ``static`` would have left it its memory.
* **Dynamic Memory buffers for a wave.** Hyper-V balances a Dynamic Memory VM itself, giving it
  its demand plus a buffer every few seconds, which a surge of seconds outruns: when a VM
  surges, the buffers of its Dynamic Memory siblings are raised to cover their plausible surge,
  out of the host's free memory, and given back once the family has been calm for
  ``calm_seconds`` (:mod:`hvballoon.policy.buffers`; :attr:`Plan.buffers
  <hvballoon.policy.base.Plan.buffers>`, applied by the controller through ``set_config``).
  Ahead of any surge too (the first VM of a wave rises before a sibling calls for it): a share
  (``buffer_ahead_fraction``) of the host's free memory above its floor and band is dealt out as
  buffers, evenly, each up to its VM's plausible surge, and only raised (Dynamic Memory trims
  buffers itself when the host is short); not beside a static VM the policy may lower.

No rule looks at a scenario's name or at the simulator's future: the policy sees the
controller's snapshot (the public API's figures) and its own history, nothing else.

>>> from hvballoon.policy.model import HostView, Snapshot, VMView
>>> from hvballoon.models import Mechanism
>>> from hvballoon.units import GiB
>>> web = VMView(id="w", name="web01", mechanism=Mechanism.BALLOON, maximum_bytes=16 * GiB,
...              current_bytes=16 * GiB, target_bytes=16 * GiB, used_bytes=3 * GiB,
...              host_consumed_bytes=4 * GiB)
>>> policy = HvballoonPolicy()
>>> def decide(host):
...     plan = policy.decide(Snapshot(at_seconds=0, host=host, vms=(web,)), policy.initial_state())
...     return plan.for_vm("w")
>>> decide(HostView(total_bytes=64 * GiB, used_bytes=30 * GiB)).rule   # room for all 16 GiB
'hvballoon.uncommitted'
>>> p = decide(HostView(total_bytes=64 * GiB, used_bytes=50 * GiB, reserve_bytes=4 * GiB))
>>> p.rule, round(p.target_bytes / GiB, 1)   # use 3 GiB + a plausible surge of 60 % of 16 GiB
('hvballoon.lower', 12.6)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from hvballoon.models import Mechanism
from hvballoon.policy.backing import Backing
from hvballoon.policy.base import Plan, Policy
from hvballoon.policy.buffers import Buffering
from hvballoon.policy.filling import UNFILLED, Filling
from hvballoon.policy.history import Remembering, VMHistory, _Figures, _State, sibling_key
from hvballoon.policy.model import Proposal, Snapshot
from hvballoon.policy.reserve import Reserving
from hvballoon.units import MiB, format_size

if TYPE_CHECKING:
    from hvballoon.session import GuardRails

__all__ = ["HvballoonPolicy", "VMHistory", "sibling_key"]

_DAY = 86400.0


class HvballoonPolicy(Remembering, Reserving, Backing, Buffering, Filling, Policy):
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
        wave_share: float = 1 / 3,
        max_reserve_fraction: float = 0.4,
        late_seconds: float = 3.0,
        late_memory_seconds: float = 300.0,
        lower_deadband_fraction: float = 1 / 16,
        min_deadband_bytes: int = 512 * MiB,
        min_level: float = 0.0,
        limit_min_level: float = 0.5,
        own_guard_rails: bool = True,
        hold_when_uncommitted: bool = True,
        hold_above_reserve_fraction: float | None = None,
        hold_unbacked_raises: bool = False,
        hold_unfilled_lowers: bool = False,
        buffer_ahead_fraction: float = 0.8,
    ) -> None:
        """Every option can also be set from ``hvballoon autoballoon --policy-option KEY=VALUE``
        and the settings file's ``policy_options:`` (see :mod:`hvballoon.policy.options`).

        Args:
            surge_fraction: The least surge each VM is credited with, as a fraction of its size.
            free_fraction: The host's reserve is at least this fraction of its memory.
            band_fraction: The band (of host memory) above the floor that raises planned for a sweep that hangs leave.
            appetite_seconds: How long a page cache's largest fill is remembered (what a raise costs the host).
            settle_seconds: How long a VM is watched (its noise learned) before its headroom may be cut.
            calm_seconds: No lower this soon after a raise unless its use fell, nor a raise after a lower unless it rose.
            rise_seconds: The window a VM's rise is measured over (its largest rise is its own surge).
            peak_seconds: The window a VM's recent peak of use is kept over.
            burst_memory_seconds: How long a VM's largest rise is remembered.
            min_headroom_bytes: The least headroom a VM is left above its use when the host is short.
            sigma: Standard deviations of a VM's noise that a rise must exceed to count as a surge.
            surge_after_seconds: A VM that surged this recently is not cut to defend the host's floor.
            wave_seconds: How long after a surge a wave is under way (the reserve is dealt out).
            wave_floor_fraction: The host's floor (of its memory) the reserve is dealt out down to.
            wave_share: The share of the VMs' plausible surges (beyond their page cache) the reserve holds.
            max_reserve_fraction: The reserve is at most this fraction of the host's memory.
            late_seconds: A round this much later than asked for is late (a surge may have gone unseen).
            late_memory_seconds: How long after a late round the policy stays as careful as in a wave.
            lower_deadband_fraction: A lower smaller than this fraction of the VM's size is not made (on a host short of its reserve, one of half `min_deadband_bytes` is, unless the VM's last lower is still under way: the guest holds more than its target).
            min_deadband_bytes: A move smaller than this is not made.
            min_level: The least share of its plausible surge a VM keeps as headroom however short the host is (0: cut as deep as the host needs; 0.5 for fleets whose surges rise within a second or two).
            limit_min_level: The least share of its plausible surge a VM whose target is a limit (ESXi) keeps as headroom: ESXi applies a raised limit only at its next reallocation and gives a balloon back only once the host has room, so a limit cut deeper is not undone within seconds.
            own_guard_rails: Check lowers against the session's absolute margin only (the policy sizes the headroom).
            hold_when_uncommitted: Take nothing back while the host could back every running VM at its whole size and keep its reserve.
            hold_above_reserve_fraction: Lower no VM while the host's free memory is above its reserve plus this fraction of its memory (``None``: off).
            hold_unbacked_raises: Raise a VM no surge calls for only out of the host's free memory above its floor and band, the most urgent first (off: measured, not the default).
            hold_unfilled_lowers: Lower a VM only where that frees memory the host backs for it or its page cache filled within ``appetite_seconds`` (off: measured, not the default).
            buffer_ahead_fraction: The share of the host's free memory above its floor and band, with what the buffers hold, dealt out ahead of a surge as Dynamic Memory buffers, evenly, each up to its VM's plausible surge; only raised, and not beside a static VM (0: off).
        """
        if not 0 <= surge_fraction <= 1 or not 0 <= free_fraction < 1:
            raise ValueError("surge_fraction is in [0, 1] and free_fraction in [0, 1)")
        if not 0 <= wave_share <= 1 or not 0 <= max_reserve_fraction < 1:
            raise ValueError("wave_share is in [0, 1] and max_reserve_fraction in [0, 1)")
        if not 0 <= min_level <= 1 or not 0 <= limit_min_level <= 1:
            raise ValueError("min_level and limit_min_level are in [0, 1]")
        for name, fraction in (
            ("band_fraction", band_fraction),
            ("wave_floor_fraction", wave_floor_fraction),
            ("lower_deadband_fraction", lower_deadband_fraction),
        ):
            if not 0 <= fraction < 1:
                raise ValueError(f"{name} is in [0, 1)")
        if not 0 <= buffer_ahead_fraction <= 1:
            raise ValueError("buffer_ahead_fraction is in [0, 1]")
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
        self.wave_share = wave_share
        self.max_reserve_fraction = max_reserve_fraction
        self.late_seconds = late_seconds
        self.late_memory_seconds = late_memory_seconds
        self.lower_deadband_fraction = lower_deadband_fraction
        self.min_deadband_bytes = min_deadband_bytes
        self.min_level = min_level
        self.limit_min_level = limit_min_level
        self.own_guard_rails = own_guard_rails
        self.hold_when_uncommitted = hold_when_uncommitted
        if hold_above_reserve_fraction is not None and not 0 <= hold_above_reserve_fraction < 1:
            raise ValueError("hold_above_reserve_fraction is in [0, 1)")
        self.hold_above_reserve_fraction = hold_above_reserve_fraction
        self.hold_unbacked_raises = hold_unbacked_raises
        self.hold_unfilled_lowers = hold_unfilled_lowers
        self.buffer_ahead_fraction = buffer_ahead_fraction

    def initial_state(self) -> Any:
        return _State()

    def carry(self, state: Any, source: Any, vm_ids: Collection[str]) -> Any:
        """A VM that moved host keeps its history (its use, noise, surges, cache appetite, its
        last raise and lower), its buffer memo and its planned blind raise; the host's headroom
        level and wave stay with the host."""
        st = state if isinstance(state, _State) else _State()
        if not isinstance(source, _State):
            return st
        ids = set(vm_ids)
        vms = {**st.vms, **{k: h for k, h in source.vms.items() if k in ids}}
        buffers = {**st.buffers, **{k: b for k, b in source.buffers.items() if k in ids}}
        contingency = {**st.contingency, **{k: c for k, c in source.contingency.items() if k in ids}}
        return dataclasses.replace(st, vms=vms, buffers=buffers, contingency=contingency)

    def guard_rails(self, session: GuardRails) -> GuardRails:
        """The session's absolute margin without its proportional one: the headroom above it is
        sized per VM by the policy."""
        if not self.own_guard_rails or session.margin_fraction == 0:
            return session
        return dataclasses.replace(session, margin_fraction=0.0)

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
            braced = st.contingency.get(v.id)
            if (
                old is not None
                and braced is not None
                and v.target_bytes > max(braced[0], braced[1])
                and 2 * v.target_bytes > braced[1] + braced[2]
            ):
                # the controller made the raise planned for a sweep that hangs: a raise of ours
                h = dataclasses.replace(h, raised_at=now, raised_used_bytes=old.used_bytes)
            histories[v.id] = h
            f = self._figures(v, h)
            f.surging = self._surging(v, old, h, f)
            figures[v.id] = f
        self._share_among_siblings(figures, now)

        host = snapshot.host
        # a static Hyper-V VM is lowered only while what it gives up would stay free to give back
        static_room = self._static_room(figures, host)
        wave_reserve = self._wave_reserve(figures, host)
        reserve = full_reserve = self._reserve(host, wave_reserve)
        surging = any(f.surging is not None for f in figures.values())
        last_surge = now if surging else st.surge_at
        wave = last_surge is not None and now - last_surge < self.wave_seconds
        # rounds that come late (a sweep that hung, moves retried): a surge may go unseen for as
        # long, so the policy is as careful as in a wave until rounds have come on time a while
        late = self._late(st, snapshot)
        late_at = now if late else st.late_at
        blind = late_at is not None and now - late_at < self.late_memory_seconds
        # ESXi enforces a limit at its own next allocation, ballooning what a VM holds over it,
        # and gives a balloon back only once the host has room: while a wave rises, rounds come
        # late or the host is near its floor, a surge that outruns a limit is not given its
        # memory back within seconds, so limits keep the whole plausible surge
        if wave or blind or self._room(host) < 0:
            for f in figures.values():
                f.whole_only = f.view.mechanism is Mechanism.LIMIT
        # the VMs a wave is likely to take next: the siblings of those surging in it
        families = {sibling_key(f.view.name, f.view.maximum_bytes) for f in figures.values() if f.surging}
        if wave:
            families |= st.families
        level = self._level(st, figures, snapshot, reserve, projected=True)
        if wave or blind:
            # the reserve is there to be dealt out, not refilled from headroom: while a wave
            # rises (or a surge may go unseen) no VM's headroom is cut to keep the host's whole
            # reserve, only its floor is defended (while rounds come late the headroom level
            # rises to what the floor allows); in a wave the VMs likeliest to surge next get
            # their headroom back out of the host's free memory
            reserve = self._wave_floor(host)
            level = min(self._level(st, figures, snapshot, reserve), st.level)
            # the siblings of the surging VMs first (a wave takes a fleet of alike VMs), then any
            # other VM whose headroom was cut: the first surger of another kind rises within a
            # second or two, before any round can see it, with only what it was left
            self._deal_out_reserve(
                figures,
                snapshot,
                families if wave else set(),
                now,
                others="late" if blind else "wave",
            )
        short = reserve - host.free_bytes
        # a host below its floor is itself in danger: after late rounds headroom is cut even
        # within the calm time (the rescue); while a wave rises, where no headroom is cut above
        # the floor, the VMs neither surging nor raised within the calm time give their cache up
        rescue = self._rescue(figures, snapshot, level, now) if blind and not wave else set()
        frozen = wave and not self._below_floor(host)
        host_inputs = {
            "host_free_bytes": host.free_bytes,
            "host_reserve_bytes": reserve,
            "host_wave_reserve_bytes": wave_reserve,
            "host_short_bytes": max(0, short),
            "headroom_level": round(level, 3),
        }

        # a host that could back every running VM at its whole size and keep its reserve
        # has nothing to gain from a balloon: memory taken back would lie free, and a surge
        # beyond the plausible one, faster than a round, would find it gone
        whole = self._holds_every_vm_whole(snapshot) if self.hold_when_uncommitted else None
        if whole is not None:
            host_inputs["host_room_with_every_vm_whole_bytes"] = whole
        if static_room is not None:
            host_inputs["host_room_for_static_bytes"] = static_room
        if self.hold_above_reserve_fraction is not None:
            # what the host has free beyond its own reserve and a band: a lower would take back
            # memory the host does not need, and a surge beyond the plausible one would find it gone
            host_inputs["host_spare_bytes"] = (
                host.free_bytes - full_reserve - int(self.hold_above_reserve_fraction * host.total_bytes)
            )
        proposals: list[Proposal] = []
        exposed = short > 0 or wave or blind
        for v in snapshot.vms:
            seen = figures.get(v.id)
            if seen is None:
                why = "not running" if not v.running else "no fresh guest figures: never lower blind"
                if v.running and v.figures_note:
                    why = f"no fresh guest figures, never lower blind: {v.figures_note}"
                proposals.append(Proposal(vm_id=v.id, rule="hvballoon.no_stats", reason=why))
                continue
            f = seen
            in_wave = wave and f.view.can_lower and sibling_key(f.view.name, f.view.maximum_bytes) in families
            proposal, h = self._one(
                f, level, short, now, host_inputs, wave=in_wave, emergency=v.id in rescue, frozen=frozen,
                whole=whole is not None,
            )  # fmt: skip
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
        # a raise the host cannot back makes it swap, then kill a whole VM: held, its raise not
        # remembered (asked for again next round)
        for vm_id in self._bound_raises(proposals, figures, host):
            histories[vm_id] = figures[vm_id].hist
        asked = snapshot.fast_interval_seconds if exposed else None
        planned = {p.vm_id: p.target_bytes for p in proposals if p.target_bytes is not None}
        contingency = [
            Proposal(
                vm_id=f.view.id,
                target_bytes=goal,
                rule="hvballoon.blind",
                reason=(
                    f"the sweep hung (no figures before the next round): use {format_size(f.used)} + its "
                    f"whole plausible surge {format_size(goal - f.used)}, out of the host's free memory "
                    f"above its floor ({format_size(cost)} of it backed for its page cache)"
                ),
                inputs={
                    "used_bytes": f.used,
                    "plausible_surge_bytes": f.surge,
                    "host_backed_cost_bytes": cost,
                },
            )
            for f, goal, cost in self._contingency(figures, snapshot, planned, now)
        ]
        # the buffers raised for a wave come out of what the round's own raises leave the host
        raises = sum(
            max(0, p.target_bytes - figures[p.vm_id].view.target_bytes)
            for p in proposals
            if p.target_bytes is not None and figures[p.vm_id].view.mechanism is not Mechanism.DYNAMIC_MEMORY
        )
        # buffers ahead of a surge only where no static VM stands beside the Dynamic Memory VMs:
        # there the host's free memory is what a static VM's lower needs to stay free
        # (_static_room), and buffers raised ahead cost its lowest priority swap (docs)
        buffers, kept = self._buffers(
            figures, histories, st.buffers, now, self._room(host) - raises, ahead=static_room is None
        )
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
                contingency={
                    p.vm_id: (
                        snapshot.vm(p.vm_id).target_bytes,
                        planned.get(p.vm_id, snapshot.vm(p.vm_id).target_bytes),
                        p.target_bytes or 0,
                    )
                    for p in contingency
                },
                buffers=kept,
            ),
            next_round_seconds=asked,
            contingency=tuple(contingency),
            buffers=tuple(buffers),
        )

    @staticmethod
    def _holds_every_vm_whole(snapshot: Snapshot) -> int | None:
        """The host's room above its reserve were every running VM backed at its whole size
        (its maximum, from what the host backs for it now), when that is room (``None`` when the
        host could not hold them all: it is overcommitted, and balloons are what let it be)."""
        host = snapshot.host
        grow = 0
        for v in snapshot.vms:
            if v.running:
                backed = v.host_consumed_bytes if v.host_consumed_bytes is not None else v.current_bytes
                grow += max(0, v.maximum_bytes - backed)
        room = host.total_bytes - host.reserve_bytes - host.used_bytes - grow
        return room if room >= 0 else None

    def _late(self, st: _State, snapshot: Snapshot) -> bool:
        """Did this round come much later than the policy asked (its last figures older than a
        surge of the class needs to be seen)? ``late_seconds`` beyond the wait asked for, and
        at least twice that wait."""
        if st.decided_at is None:
            return False
        expected = st.asked_seconds or snapshot.interval_seconds
        return snapshot.at_seconds - st.decided_at > expected + max(self.late_seconds, expected)

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
        whole: bool = False,
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

        if whole:
            why = (
                "the host could back every running VM at its whole size and keep its reserve "
                f"({format_size(int(host_inputs['host_room_with_every_vm_whole_bytes']))} to spare): "
                "nothing is gained by taking memory back"
            )
            if f.surging is not None:
                # remembered all the same: its siblings' buffers, and its calm time once the host
                # is committed again, follow from it
                h = dataclasses.replace(h, surge_at=now)
            if current_target < top and v.can_raise:
                return propose("hvballoon.uncommitted", f"{why}: given its full size back", top), raised(top)
            return propose("hvballoon.uncommitted", f"{why}: not lowered"), h

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
        # a host short of its reserve takes a small cut too, unless the VM's last lower is still
        # under way (the guest holds more than its target): a deeper target frees nothing
        # sooner, and a host whose free memory does not show what the lower gives (one paging
        # memory back in as it is freed) would have it deepened by a sliver every round
        urgent = short > 0 and f.backed > goal and v.current_bytes <= current_target
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
        if f.unbacked:
            return propose(
                "hvballoon.unbacked",
                f"static memory on a host with {format_size(max(0, host_inputs['host_room_for_static_bytes']))} "
                "free above its reserve beyond what Dynamic Memory is about to hand its VMs: what it "
                "gave up would be theirs, and a raise back would find no memory free",
            ), h
        spare = host_inputs.get("host_spare_bytes")
        if spare is not None and spare >= 0 and not emergency:
            return propose(
                "hvballoon.spare",
                f"the host has {format_size(spare)} free above its reserve and band: nothing it needs "
                "is gained by taking memory back",
            ), h
        if not emergency and self._unfilled(f, goal):
            return propose(
                UNFILLED,
                f"a lower to {format_size(goal)} would free nothing the host backs for it (it backs "
                f"{format_size(f.backed)}, its page cache fills at most {format_size(f.hist.cache_bytes)}): "
                "its headroom is kept for a surge",
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
