"""The controller: every interval, read all VMs' stats in one call, ask the policy, apply.

It uses the public session API only (``get_stats``, ``get_configs``, ``vm_capabilities``,
``set_targets``), so it runs on every backend, and every move goes through the session's guard
rails. A round costs one stats sweep (and the hosts' own figures), a bulk read of the
configurations it does not have yet (they are cached, and read again after
``config_refresh_seconds``, or for a VM whose target was just moved or whose move failed) and at
most two bulk ``set_targets`` calls (the raises, then the lowers). Each round yields one
:class:`~hvballoon.policy.model.Decision` per VM.

>>> import hvballoon
>>> from hvballoon.policy import Controller, ControllerSettings
>>> with hvballoon.connect("fake://seed") as hv:
...     ctl = Controller(hv, "hvballoon", dry_run=True)   # the host's memory: get_host_stats()
...     decisions = ctl.step()
...     lowered = [d for d in decisions if d.action == "lower"]
...     len(decisions), len(lowered) > 0, all(not d.applied for d in decisions)
(10, True, True)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from hvballoon._gc import collector_paused
from hvballoon.errors import (
    GuardRailError,
    HVBalloonError,
    InvalidRequestError,
    InvalidStateError,
    UnsupportedOperationError,
)
from hvballoon.models import Capabilities, Mechanism, MemoryConfig, MemoryStats, PowerState
from hvballoon.policy.base import Plan, Policy, get_policy
from hvballoon.policy.model import (
    Action,
    ControllerSettings,
    Decision,
    HostView,
    Proposal,
    Snapshot,
    VMSettings,
    VMView,
)
from hvballoon.session import GuardRails, Hypervisor
from hvballoon.units import align, format_size, format_sizes

__all__ = ["Controller"]

log = logging.getLogger("hvballoon.policy")


class _Pending:
    """A move the controller intends to make, before the rate limits and the call."""

    def __init__(self, view: VMView, proposal: Proposal, target: int, notes: list[str]) -> None:
        self.view = view
        self.proposal = proposal
        self.target = target
        self.notes = notes

    @property
    def delta(self) -> int:
        return self.target - self.view.target_bytes


class Controller:
    """Moves targets on one hypervisor session by a policy.

    ``policy`` is a name (``static``, ``mom``, ``proxmox``, ``hvballoon``) or a
    :class:`~hvballoon.policy.base.Policy`. With ``dry_run=True`` every decision is computed and
    checked by the session (``set_target(..., dry_run=True)``) and nothing changes.
    """

    def __init__(
        self,
        hv: Hypervisor,
        policy: str | Policy = "hvballoon",
        settings: ControllerSettings | None = None,
        *,
        dry_run: bool = False,
        config_refresh_seconds: float = 300.0,
    ) -> None:
        self.hv = hv
        self.policy = get_policy(policy)
        self.settings = settings or ControllerSettings()
        self.dry_run = dry_run
        self.config_refresh_seconds = config_refresh_seconds
        self.state: Any = self.policy.initial_state()
        self.round = 0
        self._configs: dict[str, MemoryConfig] = {}
        self._configs_at: float | None = None
        self._last_lower: dict[str, float] = {}
        self._settings_checked = False

    # -- guard rails ----------------------------------------------------------------------

    @property
    def guard_rails(self) -> GuardRails:
        """The guard rails the controller's lowers are checked against.

        The session's own, unless the policy narrows them (:meth:`Policy.guard_rails`) and
        ``policy_guard_rails`` lets it.
        """
        session = self.hv.guard_rails
        if not self.settings.policy_guard_rails:
            return session
        return self.policy.guard_rails(session)

    # -- inputs ---------------------------------------------------------------------------

    def _clock(self) -> float:
        return self.hv.backend.monotonic()

    def _read_configs(self, stats: list[MemoryStats], now: float) -> dict[str, MemoryConfig]:
        """The running VMs' configurations: cached; every VM's in one bulk read each
        ``config_refresh_seconds``, and the ones missing (new VMs, or forgotten after a move or
        an error) in one bulk read."""
        if self._configs_at is None or now - self._configs_at >= self.config_refresh_seconds:
            try:
                self._configs = {c.vm.id: c for c in self.hv.get_configs()}
                self._configs_at = now
            except HVBalloonError as exc:
                log.warning("cannot read the configurations: %s", exc)
        missing = [
            s.vm for s in stats if s.vm.power_state is PowerState.RUNNING and s.vm.id not in self._configs
        ]
        if missing:
            try:
                found = self.hv.get_configs(missing)
            except HVBalloonError:
                # one of them cannot be read (it vanished?): the others still can, one by one
                found = []
                for vm in missing:
                    try:
                        found.append(self.hv.get_config(vm))
                    except HVBalloonError as exc:
                        log.warning("cannot read the config of %s: %s", vm.name, exc)
            self._configs.update((c.vm.id, c) for c in found)
        return self._configs

    def _view(
        self,
        s: MemoryStats,
        cfg: MemoryConfig | None,
        caps: Capabilities,
        vs: VMSettings,
        rails: GuardRails,
    ) -> VMView | None:
        running = s.vm.power_state is PowerState.RUNNING
        maximum = (cfg.maximum_bytes if cfg is not None else None) or s.configured_bytes
        current = s.current_bytes
        if maximum is None or current is None:
            return None
        target = s.target_bytes if s.target_bytes is not None else current
        dm = caps.mechanism is Mechanism.DYNAMIC_MEMORY
        top = maximum
        if vs.ceiling is not None:
            # Dynamic Memory's maximum may be raised live, so a ceiling above it is reachable
            top = vs.ceiling if dm else min(maximum, vs.ceiling)
        minimum = 0
        if cfg is not None:
            # KVM's min_guarantee, Dynamic Memory's minimum, ESXi's reservation (a static
            # Hyper-V VM's "minimum" is only its startup size and binds nothing)
            if caps.mechanism in (Mechanism.BALLOON, Mechanism.DYNAMIC_MEMORY):
                minimum = cfg.minimum_bytes or 0
            elif caps.mechanism is Mechanism.LIMIT:
                minimum = cfg.reservation_bytes or 0
        if vs.floor is not None:
            minimum = max(minimum, vs.floor)
        used = s.used_bytes
        guard = rails.floor(used, s.configured_bytes) if used is not None else None
        can_target = caps.can_set("target", running=running)
        return VMView(
            id=s.vm.id,
            name=s.vm.name,
            mechanism=caps.mechanism,
            running=running,
            stale=s.stale,
            maximum_bytes=max(top, 0),
            minimum_bytes=min(minimum, max(top, 0)),
            current_bytes=current,
            target_bytes=target,
            used_bytes=used,
            free_bytes=s.guest_free_bytes,
            cache_bytes=s.guest_cache_bytes,
            demand_bytes=s.demand_bytes,
            host_consumed_bytes=s.host_consumed_bytes,
            swap_in_bytes=s.swap_in_bytes,
            major_faults=s.major_faults,
            guard_floor_bytes=guard,
            can_lower=can_target and not (dm and running),
            can_raise=(caps.can_set("maximum_bytes", running=running) if dm else can_target),
            settings=vs,
        )

    def snapshot(self) -> tuple[Snapshot, dict[str, Capabilities], list[MemoryStats]]:
        """Read every VM (one bulk ``get_stats``) and build the policy's inputs."""
        now = self._clock()
        stats = self.hv.get_stats()
        configs = self._read_configs(stats, now)
        views: list[VMView] = []
        caps_by_id: dict[str, Capabilities] = {}
        used = self.settings.host_overhead_bytes
        rails = self.guard_rails
        for s in stats:
            running = s.vm.power_state is PowerState.RUNNING
            if running:
                used += s.host_consumed_bytes if s.host_consumed_bytes is not None else (s.current_bytes or 0)
            vs = self.settings.for_vm(s.vm.name, s.vm.id)
            caps = self.hv.vm_capabilities(s.vm)
            caps_by_id[s.vm.id] = caps
            view = self._view(s, configs.get(s.vm.id) if running else None, caps, vs, rails)
            if view is not None:
                views.append(view)
        host = self._host_view(stats, used)
        snap = Snapshot(
            at_seconds=now, interval_seconds=self.settings.interval_seconds, host=host, vms=tuple(views)
        )
        return snap, caps_by_id, stats

    def _host_view(self, stats: list[MemoryStats], derived_used: int) -> HostView:
        """The host as the policies see it, from ``get_host_stats()`` (summing this round's
        sweep), unless ``host_memory_bytes`` overrides it.

        With the override, the host's use is derived from the VMs (see
        :class:`~hvballoon.policy.model.ControllerSettings`). Otherwise the hosts behind the
        session (a vCenter has several) count as one pool: their physical memory added up, and
        their used memory where every host reports it (else derived from the VMs).
        """
        reserve = self.settings.host_reserve_bytes
        override = self.settings.host_memory_bytes
        if override is not None:
            return HostView(total_bytes=override, used_bytes=derived_used, reserve_bytes=reserve)
        hosts = self.hv.get_host_stats(vm_stats=stats)
        physical = [h.physical_bytes for h in hosts]
        if not hosts or None in physical:
            if self.policy.name == "static":  # it never looks at the host
                return HostView(total_bytes=derived_used, used_bytes=derived_used, reserve_bytes=reserve)
            raise InvalidRequestError(
                f"the {self.policy.name} policy needs the host's physical memory, and the "
                f"{self.hv.backend_name} backend did not report it for "
                f"{', '.join(h.host for h in hosts if h.physical_bytes is None) or self.hv.uri}: "
                "set host_memory_bytes (CLI: --host-memory 128GiB)"
            )
        used = [h.used_bytes for h in hosts]
        return HostView(
            total_bytes=sum(p or 0 for p in physical),
            used_bytes=derived_used if None in used else sum(u or 0 for u in used),
            reserve_bytes=reserve,
        )

    # -- one round ------------------------------------------------------------------------

    def check_settings(self, stats: list[MemoryStats] | None = None) -> list[str]:
        """What the per-VM settings cannot do on this hypervisor, one sentence each: a VM named
        that does not exist (a typo leaves the intended VM unprotected; a close name is
        suggested) and a floor above the VM's maximum (it can never be honoured). Empty when
        all is well. The first :meth:`step` warns (``UserWarning``) about them unless this was
        called first.
        """
        import difflib

        self._settings_checked = True
        if not self.settings.vms:
            return []
        stats = stats if stats is not None else self.hv.get_stats()
        by_key = {key: s for s in stats for key in (s.vm.name, s.vm.id)}
        names = sorted({s.vm.name for s in stats})
        problems = []
        for key, vm_settings in self.settings.vms.items():
            st = by_key.get(key)
            if st is None:
                close = sorted(difflib.get_close_matches(key, names, n=3))
                guess = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
                problems.append(
                    f"the settings name a VM {key!r} that {self.hv.uri} does not have{guess}: "
                    "they apply to nothing"
                )
                continue
            floor, maximum = vm_settings.floor, st.configured_bytes
            if floor is not None and maximum is not None and floor > maximum:
                shown_floor, shown_max = format_sizes(floor, maximum)
                problems.append(
                    f"the floor {shown_floor} for {key!r} is above its maximum {shown_max}: "
                    "it can never be honoured"
                )
        return problems

    def step(self) -> list[Decision]:
        """One round: read, decide, apply (or, in a dry run, check). Returns the decisions."""
        # a round on thousands of VMs allocates in bulk, without cycles (see hvballoon._gc)
        with collector_paused():
            return self._step()

    def _step(self) -> list[Decision]:
        snap, caps_by_id, stats = self.snapshot()
        if not self._settings_checked:
            for problem in self.check_settings(stats):
                log.info(problem)
                warnings.warn(problem, stacklevel=2)
        at = stats[0].collected_at if stats else datetime.now(timezone.utc)
        plan: Plan = self.policy.decide(snap, self.state)
        self.state = plan.state
        decisions: list[Decision] = []
        pending: list[_Pending] = []
        proposals = plan.by_vm()
        for v in snap.vms:
            proposal = proposals.get(v.id) or Proposal(
                vm_id=v.id, rule=f"{self.policy.name}.hold", reason="the policy has nothing to say"
            )
            result = self._vet(v, proposal, caps_by_id[v.id], snap.at_seconds)
            if isinstance(result, _Pending):
                pending.append(result)
            else:
                action, rule, reason = result
                decisions.append(self._decision(at, v, proposal, action, rule, reason))
        # raises first (a guest short of memory cannot wait), the biggest first; then lowers,
        # lowest priority first
        pending.sort(key=lambda p: (p.delta < 0, -p.delta if p.delta > 0 else p.view.settings.priority))
        limit = self.settings.max_changes_per_round
        moves = pending if limit is None else pending[:limit]
        for p in pending[len(moves) :]:
            decisions.append(
                self._decision(
                    at,
                    p.view,
                    p.proposal,
                    "hold",
                    "controller.rate_limit",
                    f"{p.proposal.reason}; deferred: at most {limit} changes per round",
                    proposed=p.target,
                )
            )
        decisions.extend(self._apply(at, [p for p in moves if p.delta > 0], snap.at_seconds, lowering=False))
        decisions.extend(self._apply(at, [p for p in moves if p.delta < 0], snap.at_seconds, lowering=True))
        order = {v.id: i for i, v in enumerate(snap.vms)}
        decisions.sort(key=lambda d: order.get(d.vm_id, 0))
        self.round += 1
        return decisions

    def _vet(
        self, v: VMView, p: Proposal, caps: Capabilities, now: float
    ) -> _Pending | tuple[Action, str, str]:
        """Apply the per-VM settings, the mechanism's rules and the rate limits to a proposal."""
        vs = v.settings
        if vs.exclude:
            return "skip", "controller.excluded", "excluded by its settings"
        if not v.running:
            return "skip", "controller.not_running", "not running"
        if p.target_bytes is None:
            return "hold", p.rule, p.reason
        notes: list[str] = []
        target = p.target_bytes
        if target > v.maximum_bytes:
            target = v.maximum_bytes
            notes.append(f"capped at {format_size(target)}")
        if target < v.minimum_bytes:
            target = v.minimum_bytes
            notes.append(f"kept at its floor {format_size(target)}")
        lowering = target < v.target_bytes
        if v.mechanism is Mechanism.DYNAMIC_MEMORY and v.running and target <= v.target_bytes:
            return (
                "hold",
                "controller.dynamic_memory",
                f"{p.reason}; nothing to apply: Hyper-V Dynamic Memory assigns memory up to its maximum "
                f"{format_size(v.target_bytes)} itself (the maximum can only be raised while it runs)",
            )
        if lowering and vs.self_managed:
            return "skip", "controller.self_managed", f"{p.reason}; not applied: it manages its own memory"
        if lowering and not v.can_lower:
            why = (
                "Hyper-V Dynamic Memory balances it within its range and its maximum can only be "
                "raised while it runs"
                if v.mechanism is Mechanism.DYNAMIC_MEMORY
                else f"its mechanism ({v.mechanism.value}) cannot lower it now"
            )
            return "skip", "controller.mechanism", f"{p.reason}; not applied: {why}"
        if not lowering and target > v.target_bytes and not v.can_raise:
            return "skip", "controller.mechanism", f"{p.reason}; not applied: cannot be raised now"
        guard = v.guard_floor_bytes if self.settings.respect_guard_rails else None
        if lowering and guard is not None and target < guard:
            target = guard
            notes.append(f"kept at the guard-rail floor {format_size(target)}")
            lowering = target < v.target_bytes
            if not lowering:
                return "hold", "controller.guard_rail", f"{p.reason}; held at the guard-rail floor"
        step = (
            self.settings.max_lower_bytes_per_round if lowering else self.settings.max_raise_bytes_per_round
        )
        if step is not None and abs(target - v.target_bytes) > step:
            target = v.target_bytes - step if lowering else v.target_bytes + step
            notes.append(f"rate-limited to {format_size(step)} per round")
        if lowering and self.settings.min_seconds_between_lowers:
            last = self._last_lower.get(v.id)
            if last is not None and now - last < self.settings.min_seconds_between_lowers:
                return (
                    "hold",
                    "controller.rate_limit",
                    f"{p.reason}; deferred: lowered {now - last:.0f} s ago "
                    f"(at most once per {self.settings.min_seconds_between_lowers:g} s)",
                )
        target = align(target, caps.alignment_bytes, "up" if lowering else "down")
        if target == v.target_bytes:
            return "hold", p.rule, p.reason
        return _Pending(v, p, target, notes)

    def _apply(self, at: datetime, batch: list[_Pending], now: float, *, lowering: bool) -> list[Decision]:
        """One bulk ``set_targets`` for the batch (all raises, or all lowers); each VM's
        refusal or failure is its own and leaves the others' moves alone."""
        if not batch:
            return []
        # a raise cannot take a guest below its floor, so it needs no fresh stats; a lower goes
        # through the guard rails unless told otherwise
        force = not lowering or not self.settings.respect_guard_rails
        results = self.hv.set_targets(
            [(p.view.id, p.target) for p in batch],
            dry_run=self.dry_run,
            force=force,
            guard_rails=self.guard_rails,
            skip_invalid=True,
        )
        action: Action = "lower" if lowering else "raise"
        out = []
        for p in batch:
            v = p.view
            reason = p.proposal.reason + (f" ({'; '.join(p.notes)})" if p.notes else "")
            result = results[v.id]
            if isinstance(result, HVBalloonError):
                self._configs.pop(v.id, None)  # read it again: the failure may say it changed
                refused = isinstance(result, (GuardRailError, InvalidStateError, UnsupportedOperationError))
                if not refused:
                    log.warning("cannot move %s: %s", v.name, result)
                out.append(
                    self._decision(
                        at, v, p.proposal, "refused" if refused else "error", p.proposal.rule,
                        f"{reason}; {'refused' if refused else 'failed'}: {result.message}",
                        proposed=p.target, error=result.code,
                    )
                )  # fmt: skip
                continue
            applied = v.id in results.made
            if applied:
                if result.mechanism is not Mechanism.BALLOON:
                    # the target lives in the configuration (a limit, a maximum, a startup size)
                    self._configs.pop(v.id, None)
                if lowering:
                    self._last_lower[v.id] = now
            out.append(
                self._decision(
                    at, v, p.proposal, action, p.proposal.rule, reason,
                    proposed=p.target, after=int(result.after.get("target_bytes", p.target)), applied=applied,
                )
            )  # fmt: skip
        return out

    def _decision(
        self,
        at: datetime,
        v: VMView,
        p: Proposal,
        action: Action,
        rule: str,
        reason: str,
        *,
        proposed: int | None = None,
        after: int | None = None,
        applied: bool = False,
        error: str | None = None,
    ) -> Decision:
        return Decision(
            at=at,
            round=self.round,
            policy=self.policy.name,
            vm=v.name,
            vm_id=v.id,
            mechanism=v.mechanism,
            action=action,
            before_bytes=v.target_bytes,
            after_bytes=after if after is not None else v.target_bytes,
            proposed_bytes=proposed if proposed is not None else p.target_bytes,
            applied=applied,
            dry_run=self.dry_run,
            rule=rule,
            reason=reason,
            inputs={
                "current_bytes": v.current_bytes,
                "used_bytes": v.used_bytes,
                "maximum_bytes": v.maximum_bytes,
                **p.inputs,
            },
            error_code=error,
        )

    # -- running --------------------------------------------------------------------------

    def run(
        self,
        *,
        rounds: int | None = None,
        sleep: Callable[[float], None] | None = None,
        on_round: Callable[[list[Decision]], None] | None = None,
    ) -> Iterator[list[Decision]]:
        """Rounds every ``interval_seconds`` (forever unless ``rounds``), yielding decisions.

        ``sleep`` defaults to the backend's own (real time, or the simulator's virtual clock).
        """
        pause = sleep or self.hv.backend.sleep
        n = 0
        while rounds is None or n < rounds:
            started = self._clock()
            decisions = self.step()
            if on_round is not None:
                on_round(decisions)
            yield decisions
            n += 1
            if rounds is not None and n >= rounds:
                break
            spent = self._clock() - started
            pause(max(0.0, self.settings.interval_seconds - spent))
