"""The controller: every interval, read all VMs' stats in one call, ask the policy, apply.

It uses the public session API only (``get_stats``, ``get_configs``, ``vm_capabilities``,
``set_targets``), so it runs on every backend, and every move goes through the session's guard
rails. A round costs one stats sweep (and the hosts' own figures), a bulk read of the
configurations it does not have yet (they are cached, and read again after
``config_refresh_seconds``, or for a VM whose target was just moved or whose move failed) and at
most two bulk ``set_targets`` calls (the raises, then the lowers), which plan on the sweep's
figures and those configurations instead of reading the VMs again (``set_targets(figures=…)``:
a VM whose figures the guard rails no longer trust is read again). Each round yields one
:class:`~hvballoon.policy.model.Decision` per VM.

Left running (:meth:`Controller.run`), it never leaves things worse than it found them:

- a round whose sweep fails (a timeout, a lost connection) is skipped — logged, counted in
  :attr:`Controller.health`, and the next one waits longer (the interval doubled per failure in a
  row, at most ``max_backoff_seconds``); a move that fails is that VM's ``error`` decision, and
  stale or missing figures never lower a VM;
- given a session *factory* (``Controller(lambda: hvballoon.connect(uri), …)``) rather than a
  session, it opens a new session when the old one is broken (a lost connection or an expired
  session, or two failed rounds in a row);
- before each change it records what it changes from and to in its
  :class:`~hvballoon.policy.journal.Journal` (on backends whose VMs keep marks, ESXi, it also
  marks a VM it lowers with what it had, :data:`~hvballoon.policy.release.MARK_KEY`), and after
  ``max_failed_rounds`` failed rounds in a row it gives back everything it lowered (*fails open*)
  and keeps trying.

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

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from hvballoon._gc import collector_paused
from hvballoon.errors import (
    GuardRailError,
    HVBalloonError,
    InvalidRequestError,
    InvalidStateError,
    UnsupportedOperationError,
)
from hvballoon.models import Capabilities, Change, HostStats, Mechanism, MemoryConfig, MemoryStats, PowerState
from hvballoon.policy.base import Plan, Policy, get_policy
from hvballoon.policy.health import ControllerHealth
from hvballoon.policy.journal import Journal, Lowered, Move
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
from hvballoon.policy.running import Round, _Running
from hvballoon.session import GuardRails, Hypervisor
from hvballoon.units import align, format_size, format_sizes

if TYPE_CHECKING:
    from hvballoon.fleet import HostResult

__all__ = ["Controller", "Round", "SessionFactory"]

log = logging.getLogger("hvballoon.policy")

#: What opens a session: the controller calls it to connect, and again to replace a broken one.
SessionFactory = Callable[[], Hypervisor]


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


class Controller(_Running):
    """Moves targets on one hypervisor session by a policy.

    ``hv`` is a session, or a :data:`SessionFactory` the controller opens its sessions with
    (and then owns: :meth:`close` closes the last); only with a factory can it replace a broken
    session. ``policy`` is a name (``static``, ``mom``, ``proxmox``, ``hvballoon``) or a
    :class:`~hvballoon.policy.base.Policy`. With ``dry_run=True`` every decision is computed and
    checked by the session (``set_target(..., dry_run=True)``) and nothing changes (nothing is
    journalled or marked either). ``journal`` records what the controller lowers (an in-memory
    one when not given: a release then works only in this process); a controller started on a
    journal resumes from it. ``marks`` (default: where the backend's VMs keep marks) marks the
    VMs it lowers, and reads the marks it finds as its own when it starts.
    """

    def __init__(
        self,
        hv: Hypervisor | SessionFactory,
        policy: str | Policy = "hvballoon",
        settings: ControllerSettings | None = None,
        *,
        dry_run: bool = False,
        config_refresh_seconds: float = 300.0,
        journal: Journal | None = None,
        marks: bool | None = None,
    ) -> None:
        if isinstance(hv, Hypervisor):
            self._hv: Hypervisor | None = hv
            self._factory: SessionFactory | None = None
        elif callable(hv):
            self._hv = None
            self._factory = hv
        else:
            raise InvalidRequestError(
                f"a controller takes a session or a function that opens one, got {type(hv).__name__}"
            )
        self.policy = get_policy(policy)
        self.settings = settings or ControllerSettings()
        self.dry_run = dry_run
        self.config_refresh_seconds = config_refresh_seconds
        self.state: Any = self.policy.initial_state()
        self.round = 0
        self.health = ControllerHealth()
        self._journal = journal
        self._marks = marks
        self._marks_read = False
        self._configs: dict[str, MemoryConfig] = {}
        self._configs_at: float | None = None
        self._last_lower: dict[str, float] = {}
        self._hosts: list[HostStats] = []
        self._settings_checked = False
        self._asked_round_seconds: float | None = None
        self._period_tried: dict[str, float] = {}
        self._broken = False
        self._release_pending = False
        self._uri: str | None = self._hv.uri if self._hv is not None else None
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: The last round's sweep as the exporter shows one (VMs, hosts, or the error).
        self.last_sweep: HostResult | None = None

    # -- the session ----------------------------------------------------------------------

    @property
    def hv(self) -> Hypervisor:
        """The session rounds run on (opened through the factory when there is none yet)."""
        if self._hv is None:
            if self._factory is None:  # pragma: no cover - a session or a factory is required
                raise InvalidStateError("the controller has no session")
            self._hv = self._factory()
            self._uri = self._hv.uri
        return self._hv

    @property
    def uri(self) -> str:
        """The URI (redacted) of the hypervisor the controller runs on (empty until a factory
        has opened a session)."""
        return self._uri or ""

    @property
    def journal(self) -> Journal:
        """The journal of what the controller lowered (in memory unless one was given)."""
        if self._journal is None:
            self._journal = Journal.open(None, uri=self.uri)
        return self._journal

    @property
    def marks(self) -> bool:
        """Whether the VMs the controller lowers are marked (default: where VMs keep marks)."""
        return self.hv.capabilities.marks if self._marks is None else self._marks

    def lowered(self) -> list[Lowered]:
        """The VMs the controller lowered and has not given back (from its journal)."""
        return self.journal.lowered()

    def close(self) -> None:
        """Close the session the controller opened through its factory (a session it was given
        stays open: it belongs to the caller)."""
        if self._factory is not None and self._hv is not None:
            with contextlib.suppress(HVBalloonError):
                self._hv.close()
            self._hv = None

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reconnect(self) -> None:
        """A new session in place of the broken one. The old one is kept until the new one is
        open (its clock still paces the rounds), then closed."""
        assert self._factory is not None
        new = self._factory()
        old, self._hv = self._hv, new
        self._uri = new.uri
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self._broken = False
        self._configs, self._configs_at = {}, None
        self.health.reconnects += 1
        log.warning("opened a new session on %s", new.uri, extra={"event": "reconnected", "uri": new.uri})

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
            cfg = configs.get(s.vm.id) if running else None
            if cfg is not None and not vs.exclude:
                self._keep_stats_period(s, cfg, caps, now)
            view = self._view(s, cfg, caps, vs, rails)
            if view is not None:
                views.append(view)
        host = self._host_view(stats, used)
        snap = Snapshot(
            at_seconds=now,
            interval_seconds=self.settings.interval_seconds,
            fast_interval_seconds=self.settings.fast_interval_seconds,
            host=host,
            vms=tuple(views),
        )
        return snap, caps_by_id, stats

    @property
    def stats_period_seconds(self) -> int | None:
        """The guest statistics period the controller keeps on the VMs (``None``: theirs)."""
        wanted = self.settings.stats_period_seconds
        if wanted is None:
            wanted = self.policy.stats_period_seconds
        return wanted or None

    def _keep_stats_period(self, s: MemoryStats, cfg: MemoryConfig, caps: Capabilities, now: float) -> None:
        """Set the VM's guest statistics period to the one wanted, where its backend can change
        it live (a guest that reports every 10 s shows a surge up to 10 s late). Tried once per
        configuration read; a refusal is logged and the VM keeps its period."""
        wanted = self.stats_period_seconds
        period = cfg.stats_period_seconds
        if wanted is None or self.dry_run or period is None or period == wanted:
            return
        if not caps.can_set("stats_period_seconds", running=True):
            return
        tried = self._period_tried.get(s.vm.id)
        if tried is not None and now - tried < self.config_refresh_seconds:
            return
        self._period_tried[s.vm.id] = now
        try:
            self.hv.set_config(s.vm, stats_period=wanted)
        except HVBalloonError as exc:
            log.info("cannot set the stats period of %s to %s s: %s", s.vm.name, wanted, exc)
            return
        self._configs.pop(s.vm.id, None)

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
        self._hosts = []
        if override is not None:
            return HostView(total_bytes=override, used_bytes=derived_used, reserve_bytes=reserve)
        hosts = self._hosts = self.hv.get_host_stats(vm_stats=stats)
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
        started = time.monotonic()
        snap, caps_by_id, stats = self.snapshot()
        self._swept(stats, self._hosts, time.monotonic() - started)
        if not self._marks_read and not self.dry_run:
            self._adopt_marks(stats)
        if not self._settings_checked:
            for problem in self.check_settings(stats):
                log.info(problem)
                warnings.warn(problem, stacklevel=2)
        at = stats[0].collected_at if stats else datetime.now(timezone.utc)
        plan: Plan = self.policy.decide(snap, self.state)
        self.state = plan.state
        self._asked_round_seconds = plan.next_round_seconds
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
        read = {s.vm.id: s for s in stats}
        raises = [p for p in moves if p.delta > 0]
        decisions.extend(self._apply(at, raises, snap.at_seconds, read, lowering=False))
        lowers = [p for p in moves if p.delta < 0]
        decisions.extend(self._apply(at, lowers, snap.at_seconds, read, lowering=True))
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
        if lowering and (v.stale or v.used_bytes is None):
            # whatever the policy or the settings say: a guest whose use is unknown is not lowered
            return (
                "hold",
                "controller.stale_figures",
                f"{p.reason}; not applied: the guest's figures are {'stale' if v.stale else 'missing'}, "
                "so how much it can give is unknown",
            )
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

    def _apply(
        self,
        at: datetime,
        batch: list[_Pending],
        now: float,
        read: dict[str, MemoryStats],
        *,
        lowering: bool,
    ) -> list[Decision]:
        """One bulk ``set_targets`` for the batch (all raises, or all lowers); each VM's
        refusal or failure is its own and leaves the others' moves alone. The session plans
        them on this round's figures (``read``, the sweep, and the configurations held) while
        its guard rails trust them, so a healthy round reads the hypervisor once.

        Before anything is sent, the moves are in the journal (and a VM lowered for the first
        time carries its mark, where VMs keep marks: one that cannot be marked is not lowered).
        """
        if not batch:
            return []
        action: Action = "lower" if lowering else "raise"
        out: list[Decision] = []
        if not self.dry_run:
            batch, failed = self._record(batch, lowering)
            out.extend(
                self._decision(
                    at,
                    p.view,
                    p.proposal,
                    "error",
                    p.proposal.rule,
                    f"{p.proposal.reason}; not applied: {exc.message}",
                    proposed=p.target,
                    error=exc.code,
                )
                for p, exc in failed
            )
            if not batch:
                return out
        # a raise cannot take a guest below its floor, so it needs no fresh stats; a lower goes
        # through the guard rails unless told otherwise
        force = not lowering or not self.settings.respect_guard_rails
        figures = [
            (read[p.view.id], self._configs[p.view.id])
            for p in batch
            if p.view.id in read and p.view.id in self._configs
        ]
        try:
            results = self.hv.set_targets(
                [(p.view.id, p.target) for p in batch],
                dry_run=self.dry_run,
                force=force,
                guard_rails=self.guard_rails,
                skip_invalid=True,
                figures=figures,
            )
            outcome: dict[str, Change | HVBalloonError] = {p.view.id: results[p.view.id] for p in batch}
            made = set(results.made)
        except HVBalloonError as exc:  # nothing could be sent at all: every VM's move failed
            outcome, made = {p.view.id: exc for p in batch}, set()
        settled: dict[str, str | None] = {}
        for p in batch:
            v = p.view
            reason = p.proposal.reason + (f" ({'; '.join(p.notes)})" if p.notes else "")
            result = outcome[v.id]
            if isinstance(result, HVBalloonError):
                settled[v.id] = result.code
                self._configs.pop(v.id, None)  # read it again: the failure may say it changed
                refused = isinstance(result, (GuardRailError, InvalidStateError, UnsupportedOperationError))
                if not refused:
                    log.warning(
                        "cannot move %s: %s", v.name, result,
                        extra={"event": "move_failed", "vm": v.name, "code": result.code, "round": self.round},
                    )  # fmt: skip
                out.append(
                    self._decision(
                        at, v, p.proposal, "refused" if refused else "error", p.proposal.rule,
                        f"{reason}; {'refused' if refused else 'failed'}: {result.message}",
                        proposed=p.target, error=result.code,
                    )
                )  # fmt: skip
                continue
            settled[v.id] = None
            applied = v.id in made
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
        if not self.dry_run:
            self._settle(settled)
        return out

    # -- the journal and the marks ---------------------------------------------------------

    def _record(
        self, batch: list[_Pending], lowering: bool
    ) -> tuple[list[_Pending], list[tuple[_Pending, HVBalloonError]]]:
        """Mark the VMs lowered for the first time (where VMs keep marks), then journal every
        move: what goes ahead, and what could not be marked (it is not lowered)."""
        from hvballoon.policy.release import MARK_KEY, mark_value

        journal = self.journal
        known = {e.vm_id: e for e in journal.lowered()}
        marks = lowering and self.marks
        ahead: list[_Pending] = []
        failed: list[tuple[_Pending, HVBalloonError]] = []
        moves: list[Move] = []
        for p in batch:
            v = p.view
            unlimited = False
            marked = False
            if lowering and v.id not in known:
                cfg = self._configs.get(v.id)
                unlimited = v.mechanism is Mechanism.LIMIT and cfg is not None and cfg.limit_bytes is None
                if marks:
                    try:
                        self.hv.set_mark(v.id, MARK_KEY, mark_value(v.target_bytes, unlimited=unlimited))
                    except HVBalloonError as exc:
                        log.warning(
                            "cannot mark %s before lowering it, so it is not lowered: %s", v.name, exc,
                            extra={"event": "mark_failed", "vm": v.name, "code": exc.code},
                        )  # fmt: skip
                        failed.append((p, exc))
                        continue
                    marked = True
            moves.append(Move(v.id, v.name, v.mechanism.value, v.target_bytes, p.target, unlimited, marked))
            ahead.append(p)
        if moves:
            journal.intend(self.round, moves)
        return ahead, failed

    def _settle(self, outcomes: dict[str, str | None]) -> None:
        """Journal how the moves ended; a VM given back all it had loses its mark."""
        from hvballoon.policy.release import MARK_KEY

        if not outcomes:
            return
        journal = self.journal
        marked = {e.vm_id for e in journal.lowered() if e.marked}
        for vm_id in journal.settle(self.round, outcomes):
            if vm_id in marked:
                try:
                    self.hv.set_mark(vm_id, MARK_KEY, None)
                except HVBalloonError as exc:
                    log.warning("cannot remove the mark of %s: %s", vm_id, exc)

    def _swept(self, stats: list[MemoryStats], hosts: list[HostStats], seconds: float) -> None:
        from hvballoon.fleet import HostResult

        hv = self.hv
        self.last_sweep = HostResult(
            uri=hv.uri, stats=stats, elapsed_seconds=seconds, backend=hv.backend_name, hosts=hosts
        )

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
