"""``hvballoon``: our policy, designed from the hazards of ballooning.

* **A floor from observed use.** A VM keeps what it used at its recent peak (or what its trend
  says it will use a minute from now, if that is more) plus a headroom. For its first
  ``settle_seconds`` (five minutes) the headroom is the session's proportional margin:
  ``max(10 % of its maximum, 512 MiB, 3 σ of its use, 2 × its largest rise in one round)``.
  Once it has been watched that long, the headroom is what its own variability asks for:
  ``max(256 MiB, 3 σ of its one-round changes over the two rounds a reaction takes, 2 × its
  largest rise in one round)`` — a steady VM keeps the session's absolute margin, a noisy one
  more. Page cache above the floor is reclaimed: it is the memory a balloon can take without
  hurting (the guest drops it before it swaps).
* **Its own guard rails**: because it sizes each VM's headroom itself, the policy asks the
  controller to check its lowers against the session's guard rails without their proportional
  margin (:meth:`HvballoonPolicy.guard_rails`): the absolute margin (256 MiB) and the refusal
  of stale or missing figures stay, checked by the session at the call.
* **Fast deflation.** When a VM's use rises faster than its headroom can absorb before the
  next round, when it swaps in, or when its free memory falls below half its headroom, its
  target jumps straight to its maximum (a *surge*); it is not squeezed again for
  ``calm_seconds``.
* **Cautious inflation.** Targets come down by at most ``lower_step_fraction`` of the maximum
  per round, and only on VMs that have been calm for ``calm_seconds``.
* **Spike allowance.** A host with memory to spare lends it as extra headroom (up to
  ``spike_fraction`` of each VM's maximum), so a sudden spike lands in memory the guest already
  has — but only while the host stays below ``lend_below`` (85 %) of its memory: lent memory
  fills with page cache, which the host must back, so lending on a full host only makes it swap.
* **A host reserve sized for simultaneous spikes**: the configured reserve plus the sum of the
  largest bursts the ``simultaneous`` busiest VMs showed. When the host's free memory is below
  it, idle memory is reclaimed faster, lowest priority first.
* **Self-managed memory is left alone**: a JVM heap or a database buffer pool looks idle to the
  guest but is not; such VMs get their maximum back and are never lowered.
* **It never fights the mechanism**: where the live rules forbid lowering (Hyper-V Dynamic
  Memory) it only raises, and says so.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hvballoon.policy.base import Plan, Policy
from hvballoon.policy.model import Proposal, Snapshot, VMView
from hvballoon.units import MiB, format_size

if TYPE_CHECKING:
    from hvballoon.session import GuardRails

__all__ = ["HvballoonPolicy", "VMHistory"]


@dataclass(frozen=True)
class VMHistory:
    """What the policy remembers of one VM: samples of ``(time, used, swap_in)``."""

    samples: tuple[tuple[float, int, int], ...] = ()
    surge_at: float | None = None
    last_lower_at: float | None = None


@dataclass(frozen=True)
class _State:
    vms: Mapping[str, VMHistory] = field(default_factory=dict)


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope (bytes per second) of ``(time, value)`` points."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    if den <= 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in points) / den


class HvballoonPolicy(Policy):
    """hvballoon's own policy (see the module docstring); every knob is a keyword."""

    name = "hvballoon"
    summary = "floor from observed use and its variability, fast deflation, cautious inflation"

    def __init__(
        self,
        *,
        window_seconds: float = 900.0,
        peak_seconds: float = 300.0,
        trend_seconds: float = 120.0,
        horizon_seconds: float = 60.0,
        headroom_fraction: float = 0.10,
        min_headroom_bytes: int = 512 * MiB,
        settle_seconds: float = 300.0,
        settled_headroom_fraction: float = 0.0,
        settled_min_headroom_bytes: int = 256 * MiB,
        reaction_rounds: float = 2.0,
        own_guard_rails: bool = True,
        sigma: float = 3.0,
        calm_seconds: float = 300.0,
        lower_step_fraction: float = 0.05,
        simultaneous: int = 2,
        spike_fraction: float = 0.15,
        lend_below: float = 0.85,
        raise_slack_bytes: int = 256 * MiB,
    ) -> None:
        self.settle_seconds = settle_seconds
        self.settled_headroom_fraction = settled_headroom_fraction
        self.settled_min_headroom_bytes = settled_min_headroom_bytes
        self.reaction_rounds = reaction_rounds
        self.own_guard_rails = own_guard_rails
        self.window_seconds = window_seconds
        self.peak_seconds = peak_seconds
        self.spike_fraction = spike_fraction
        self.lend_below = lend_below
        self.raise_slack_bytes = raise_slack_bytes
        self.trend_seconds = trend_seconds
        self.horizon_seconds = horizon_seconds
        self.headroom_fraction = headroom_fraction
        self.min_headroom_bytes = min_headroom_bytes
        self.sigma = sigma
        self.calm_seconds = calm_seconds
        self.lower_step_fraction = lower_step_fraction
        self.simultaneous = simultaneous

    def initial_state(self) -> Any:
        return _State()

    def guard_rails(self, session: GuardRails) -> GuardRails:
        """The session's absolute margin without its proportional one: the headroom above it is
        sized per VM from what the VM has shown (and is the proportional margin until then)."""
        if not self.own_guard_rails or session.margin_fraction == 0:
            return session
        return dataclasses.replace(session, margin_fraction=0.0)

    # -- per VM figures -------------------------------------------------------------------

    def _history(self, v: VMView, old: VMHistory | None, now: float) -> VMHistory:
        old = old or VMHistory()
        samples = deque(s for s in old.samples if now - s[0] <= self.window_seconds)
        if v.used_bytes is not None:
            samples.append((now, v.used_bytes, v.swap_in_bytes or 0))
        return VMHistory(tuple(samples), old.surge_at, old.last_lower_at)

    def _figures(self, v: VMView, h: VMHistory, interval: float) -> dict[str, Any]:
        used = v.used_bytes or 0
        samples = h.samples or ((0.0, used, 0),)
        uses = [s[1] for s in samples]
        n = len(uses)
        mean = sum(uses) / n
        sigma = math.sqrt(max(0.0, sum(u * u for u in uses) / n - mean * mean))
        rises = [b - a for a, b in itertools.pairwise(uses)]
        max_rise = max(0, *rises) if rises else 0
        last_rise = rises[-1] if rises else 0
        last = samples[-1][0]
        recent = [(t, u) for t, u, _ in samples if last - t <= self.trend_seconds]
        slope = max(0.0, _slope(recent))
        swapped_in = n >= 2 and samples[-1][2] > samples[-2][2]
        # how far its use moves within the time a reaction takes (a round or two): the spread
        # of its one-round changes, scaled to the reaction time
        if rises:
            mr = sum(rises) / len(rises)
            rise_sigma = math.sqrt(max(0.0, sum(r * r for r in rises) / len(rises) - mr * mr))
        else:
            rise_sigma = 0.0
        settled = last - samples[0][0] >= self.settle_seconds
        if settled:
            # watched long enough: the headroom is what its variability asks for, above the
            # session's absolute margin
            fraction, least = self.settled_headroom_fraction, self.settled_min_headroom_bytes
            spread = self.sigma * rise_sigma * math.sqrt(self.reaction_rounds)
        else:
            # not yet: the session's proportional margin, and the spread of its use
            fraction, least = self.headroom_fraction, self.min_headroom_bytes
            spread = self.sigma * sigma
        headroom = int(
            max(
                fraction * v.maximum_bytes,
                least,
                spread,
                2 * max_rise,
                v.guard_floor_bytes - used if v.guard_floor_bytes is not None else 0,
            )
        )
        projected = used + slope * max(self.horizon_seconds, 3 * interval)
        peak = max(s[1] for s in samples if last - s[0] <= self.peak_seconds)
        # a host short of memory keeps only the last minute's peak
        short_peak = max(s[1] for s in samples if last - s[0] <= 60.0)
        return {
            "used_bytes": used,
            "peak_bytes": peak,
            "sigma_bytes": int(sigma),
            "rise_sigma_bytes": int(rise_sigma),
            "settled": settled,
            "trend_bytes_per_second": round(slope, 1),
            "headroom_bytes": headroom,
            "floor_bytes": int(max(peak, projected)) + headroom,
            "tight_floor_bytes": int(max(short_peak, projected)) + headroom,
            "last_rise_bytes": last_rise,
            "swapped_in": swapped_in,
            "burst_bytes": max(max(uses) - min(uses), 2 * max_rise),
        }

    def _spike_allowance(self, snapshot: Snapshot, figures: dict[str, dict[str, Any]], reserve: int) -> int:
        """Extra headroom per VM: what the host can spare beyond every floor and the reserve."""
        host = snapshot.host
        running = [v for v in snapshot.vms if v.running]
        backing = sum(
            v.host_consumed_bytes if v.host_consumed_bytes is not None else v.current_bytes for v in running
        )
        overhead = max(0, host.used_bytes - backing)
        committed = 0
        shared = 0
        for v in running:
            f = figures.get(v.id)
            if f is None or v.settings.self_managed or not v.can_lower:
                committed += max(v.target_bytes, v.current_bytes) if f is None else v.target_bytes
            else:
                committed += f["floor_bytes"]
                shared += 1
        # lend only while the host stays below ``lend_below`` of its memory: the lent memory
        # fills with page cache, which the host then has to back
        ceiling = min(host.total_bytes - reserve, int(self.lend_below * host.total_bytes))
        spare = ceiling - overhead - committed
        return max(0, spare // shared) if shared else 0

    # -- the round ------------------------------------------------------------------------

    def decide(self, snapshot: Snapshot, state: Any) -> Plan:
        st: _State = state if isinstance(state, _State) else _State()
        now, interval = snapshot.at_seconds, snapshot.interval_seconds
        histories: dict[str, VMHistory] = {}
        figures: dict[str, dict[str, Any]] = {}
        for v in snapshot.vms:
            if not v.running:
                continue
            hist = self._history(v, st.vms.get(v.id), now)
            histories[v.id] = hist
            if v.used_bytes is not None and not v.stale:
                figures[v.id] = self._figures(v, hist, interval)

        bursts = sorted((f["burst_bytes"] for f in figures.values()), reverse=True)
        reserve = snapshot.host.reserve_bytes + sum(bursts[: self.simultaneous])
        tight = snapshot.host.free_bytes < reserve
        if tight:
            for f in figures.values():
                f["floor_bytes"] = f["tight_floor_bytes"]
        # a host with memory to spare lends it as extra headroom, so a spike has room to land
        # before the next round; a full host lends none
        allowance = self._spike_allowance(snapshot, figures, reserve)
        for v in snapshot.vms:
            if v.id in figures:
                extra = min(allowance, int(self.spike_fraction * v.maximum_bytes))
                figures[v.id]["spike_allowance_bytes"] = extra
                figures[v.id]["floor_bytes"] += extra
        host_inputs = {
            "host_free_bytes": snapshot.host.free_bytes,
            "host_reserve_bytes": reserve,
            "host_tight": tight,
        }

        proposals: list[Proposal] = []
        for v in snapshot.vms:
            h = histories.get(v.id)
            fig = figures.get(v.id)
            if h is None or fig is None:
                why = "not running" if not v.running else "no fresh guest figures: never lower blind"
                proposals.append(Proposal(vm_id=v.id, rule="hvballoon.no_stats", reason=why))
                continue
            inputs = {**fig, **host_inputs}
            proposal, h = self._one(v, h, fig, tight, now, interval, inputs)
            histories[v.id] = h
            proposals.append(proposal)
        return Plan(tuple(proposals), _State(histories))

    def _one(
        self,
        v: VMView,
        h: VMHistory,
        f: dict[str, Any],
        tight: bool,
        now: float,
        interval: float,
        inputs: dict[str, Any],
    ) -> tuple[Proposal, VMHistory]:
        top = v.maximum_bytes
        current_target = v.target_bytes
        if v.settings.self_managed:
            if current_target < top and v.can_raise:
                return Proposal(
                    vm_id=v.id,
                    target_bytes=top,
                    rule="hvballoon.self_managed",
                    reason="manages its own memory (JVM heap / buffer pool): given its full size back",
                    inputs=inputs,
                ), h
            return Proposal(
                vm_id=v.id,
                rule="hvballoon.self_managed",
                reason="manages its own memory: never lowered",
                inputs=inputs,
            ), h

        used, headroom = f["used_bytes"], f["headroom_bytes"]
        free_now = v.current_bytes - used
        surge_why = None
        if f["swapped_in"]:
            surge_why = "it swapped in since the last round"
        elif f["last_rise_bytes"] > headroom / 2:
            surge_why = f"its use rose {format_size(f['last_rise_bytes'])} in one round"
        elif free_now < headroom / 2 and current_target < top:
            surge_why = f"only {format_size(max(0, free_now))} is left free"
        if surge_why is not None:
            h = VMHistory(h.samples, now, h.last_lower_at)
            if current_target < top and v.can_raise:
                return Proposal(
                    vm_id=v.id,
                    target_bytes=top,
                    rule="hvballoon.surge",
                    reason=f"demand surge ({surge_why}): deflate fully at once; no lowering for "
                    f"{self.calm_seconds:g} s",
                    inputs=inputs,
                ), h

        floor = min(max(f["floor_bytes"], v.minimum_bytes), top)
        if floor > current_target:
            # a little above the floor, so the next small rise does not call again
            floor = min(floor + (64 * MiB if tight else self.raise_slack_bytes), top)
            if not v.can_raise:
                return Proposal(
                    vm_id=v.id,
                    rule="hvballoon.cannot_raise",
                    reason="needs more memory but its mechanism cannot raise it now",
                    inputs=inputs,
                ), h
            return Proposal(
                vm_id=v.id,
                target_bytes=floor,
                rule="hvballoon.raise",
                reason=f"use {format_size(used)} (peak {format_size(f['peak_bytes'])}, trend "
                f"{format_size(int(f['trend_bytes_per_second'] * 60))}/min) + headroom "
                f"{format_size(headroom)} + spike allowance {format_size(f['spike_allowance_bytes'])} "
                "is above the target: raise at once",
                inputs=inputs,
            ), h

        if h.surge_at is not None and now - h.surge_at < self.calm_seconds:
            return Proposal(
                vm_id=v.id,
                rule="hvballoon.calming",
                reason=f"surged {now - h.surge_at:.0f} s ago: not lowered until calm for {self.calm_seconds:g} s",
                inputs=inputs,
            ), h
        if not v.can_lower:
            return Proposal(
                vm_id=v.id,
                rule="hvballoon.mechanism",
                reason="the hypervisor balances this VM itself and its target cannot be lowered live",
                inputs=inputs,
            ), h
        # below the reserve, reclaim faster, the more so the lower the VM's priority
        speed = 1 + (100 - v.settings.priority) / 50 if tight else 1
        step = int(self.lower_step_fraction * top * speed)
        gap = current_target - floor
        if gap < (64 * MiB if tight else max(step // 4, self.raise_slack_bytes)):
            return Proposal(
                vm_id=v.id,
                rule="hvballoon.hold",
                reason=f"at its floor: use {format_size(used)} + headroom {format_size(headroom)}",
                inputs=inputs,
            ), h
        target = current_target - min(step, gap)
        h = VMHistory(h.samples, h.surge_at, now)
        return Proposal(
            vm_id=v.id,
            target_bytes=target,
            rule="hvballoon.lower",
            reason=f"{format_size(gap)} above its floor (use {format_size(used)}, peak "
            f"{format_size(f['peak_bytes'])}, headroom {format_size(headroom)}, spike allowance "
            f"{format_size(f['spike_allowance_bytes'])}): reclaim at most "
            f"{format_size(step)} per round" + (" (host below its reserve: faster)" if tight else ""),
            inputs=inputs,
        ), h
