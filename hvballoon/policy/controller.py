"""The controller: every interval, read all VMs' stats in one call, ask the policy, apply.

It uses the public session API only (``get_stats``, ``get_configs``, ``vm_capabilities``,
``set_targets``), so it runs on every backend, and every move goes through the session's guard
rails. A round costs one stats sweep (and the hosts' own figures), a bulk read of the
configurations it does not have yet (they are cached, and read again after
``config_refresh_seconds``, or for a VM whose target was just moved or whose move failed) and at
most two bulk ``set_targets`` calls (the raises, then the lowers), which plan on the sweep's
figures and those configurations instead of reading the VMs again (``set_targets(figures=…)``:
a VM whose figures the guard rails no longer trust is read again), then one ``set_config`` per
Dynamic Memory buffer the policy changes. Each round yields one
:class:`~hvballoon.policy.model.Decision` per VM (and one per buffer changed), after one per raise the controller made while
the round's sweep hung (the last plan's contingency, :attr:`Plan.contingency
<hvballoon.policy.base.Plan.contingency>`: when an attempt of the sweep times out, the controller
makes those raises before the next attempt instead of staying blind through the retries).

Left running (:meth:`Controller.run`), it never leaves things worse than it found them:

- a round whose sweep fails (a timeout, a lost connection) is skipped — logged, counted in
  :attr:`Controller.health`, and the next one waits longer (the pace the rounds kept, doubled
  per failure in a row, at most ``max_backoff_seconds``); a move that fails is that VM's ``error`` decision, and
  stale or missing figures never lower a VM;
- given a session *factory* (``Controller(lambda: hvballoon.connect(uri), …)``) rather than a
  session, it opens a new session when the old one is broken (a lost connection or an expired
  session, or two failed rounds in a row);
- before each change it records what it changes from and to in its
  :class:`~hvballoon.policy.journal.Journal` (on backends whose VMs keep marks, ESXi and KVM, it also
  marks a VM it lowers with what it had, :data:`~hvballoon.policy.release.MARK_KEY`), and after
  ``max_failed_rounds`` failed rounds in a row it gives back everything it lowered (*fails open*)
  and keeps trying.

The class ties together what a round reads (:mod:`hvballoon.policy._snapshot`: the sweep and
configurations built into the policy's inputs), what it does with the policy's proposals
(:mod:`hvballoon.policy._moves`: vetting, journalling, applying, the decisions) and the run loop
with its failure handling (:mod:`hvballoon.policy.running`). A session over several hosts (a
vCenter) is decided host by host, each on its own memory (:mod:`hvballoon.policy._hosts`).

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
from hvballoon._results import first_few
from hvballoon._vmindex import SUGGESTED_MISSES
from hvballoon.errors import HVBalloonError, InvalidRequestError, InvalidStateError
from hvballoon.models import HostStats, Mechanism, MemoryConfig, MemoryStats
from hvballoon.policy._hosts import HostStates, Part, decide_by_host, host_figures
from hvballoon.policy._moves import _Contingency, _Moves, _Pending
from hvballoon.policy._snapshot import _Snapshots
from hvballoon.policy.base import Plan, Policy, get_policy, policy_options
from hvballoon.policy.health import ControllerHealth
from hvballoon.policy.journal import Journal, Lowered, Move
from hvballoon.policy.model import ControllerSettings, Decision, Proposal
from hvballoon.policy.running import Round, _Running
from hvballoon.session import GuardRails, Hypervisor
from hvballoon.units import format_sizes

if TYPE_CHECKING:
    from hvballoon.fleet import HostResult

__all__ = ["Controller", "Round", "SessionFactory"]

log = logging.getLogger("hvballoon.policy")

#: What opens a session: the controller calls it to connect, and again to replace a broken one.
SessionFactory = Callable[[], Hypervisor]


class Controller(_Snapshots, _Moves, _Running):
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
        self.settings = settings or ControllerSettings()
        #: The policy's own options in force (from ``settings.policy_options``, converted).
        self.policy_options: dict[str, Any] = {}
        self.policy = self._policy(policy, self.settings)
        self.dry_run = dry_run
        self.config_refresh_seconds = config_refresh_seconds
        self._by_host = HostStates({None: self.policy.initial_state()})
        self.round = 0
        self.health = ControllerHealth()
        self._journal = journal
        self._marks = marks
        self._marks_read = False
        self._marks_unread: dict[str, str] = {}
        #: VM id -> when its mark was last read to tell a restart under the same run key
        self._marks_checked: dict[str, float] = {}
        self._configs: dict[str, MemoryConfig] = {}
        self._configs_at: float | None = None
        self._last_lower: dict[str, float] = {}
        self._hosts: list[HostStats] = []
        self._parts: list[Part] = []
        self._held: dict[str, Proposal] = {}
        self._blind_hosts: set[str] = set()
        self._settings_checked = False
        #: the problems of the settings last said, and the VM names they were checked against
        self._unfit: set[str] = set()
        self._names_checked: frozenset[str] | None = None
        self._asked_round_seconds: float | None = None
        self._period_tried: dict[str, float] = {}
        self._followed: dict[str, str] = {}
        self._missing_since: dict[str, float] = {}
        self._waited_seconds = 0.0
        self._broken = False
        self._release_pending = False
        self._release_tries = 0
        self._uri: str | None = self._hv.uri if self._hv is not None else None
        self._contingency: _Contingency | None = None
        self._unrecorded: dict[str, Move] = {}
        self.blind_decisions: list[Decision] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: The last round's sweep as the exporter shows one (VMs, hosts, or the error).
        self.last_sweep: HostResult | None = None
        #: The last round :meth:`attempt` made (its decisions, or its error, and the release made
        #: then after too many failed rounds in a row, if one was).
        self.last_round: Round | None = None
        #: Per host, the figures the policy decided it on in the last round that was decided
        #: (:func:`hvballoon.policy._hosts.host_figures`: reserve, shortfall, headroom level...).
        self.host_figures: dict[str, dict[str, float]] = {}

    def _policy(self, policy: str | Policy, settings: ControllerSettings) -> Policy:
        """The policy ``settings.policy_options`` configure (checked: nothing changes on an
        error); a policy object given keeps its own options."""
        if isinstance(policy, Policy):
            if settings.policy_options:
                raise InvalidRequestError(
                    f"policy_options configure a policy given by name; the {policy.name} policy "
                    "object given has its own options",
                    details={"options": sorted(settings.policy_options)},
                )
            return policy
        options = policy_options(policy, settings.policy_options)
        built = get_policy(policy, **options)
        self.policy_options = options
        return built

    def reconfigure(self, settings: ControllerSettings) -> None:
        """Put ``settings`` in force from the next round.

        When their ``policy_options`` differ from those in force, the policy is built again
        with them (of the same name); what it learned, which lives in :attr:`state` (and
        :attr:`host_states` on a session over several hosts), is kept.
        Options the policy refuses raise :class:`~hvballoon.errors.InvalidRequestError` and
        change nothing, the settings included.
        """
        if settings.policy_options != self.settings.policy_options:
            self.policy = self._policy(self.policy.name, settings)
        if settings.vms != self.settings.vms:
            self._settings_checked = False  # the next round checks them, unless check_settings() does
        self.settings = settings

    @property
    def state(self) -> Any:
        """What the policy learned (its state), of the session's one host or, on a session over
        several hosts, of the VMs whose host is unknown (:attr:`host_states` holds each host's)."""
        return self._by_host.states.get(None)

    @state.setter
    def state(self, value: Any) -> None:
        self._by_host.states[None] = value

    @property
    def host_states(self) -> dict[str, Any]:
        """What the policy learned of each host, by name, while the session has several hosts
        (see :mod:`hvballoon.policy._hosts`); empty on one host."""
        return {k: v for k, v in self._by_host.states.items() if k is not None}

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

    # -- one round ------------------------------------------------------------------------

    def check_settings(self, stats: list[MemoryStats] | None = None) -> list[str]:
        """What the per-VM settings cannot do on this hypervisor, one sentence each: a VM named
        that does not exist (a typo leaves the intended VM unprotected; a close name is
        suggested) and a floor above the VM's maximum (it can never be honoured). Empty when
        all is well. The first :meth:`step` warns (``UserWarning``) about them unless this was
        called first; a later round whose VMs' names changed (a VM renamed, deleted or created)
        logs what is newly wrong (``"event": "settings_unfit"``).
        """
        import difflib

        if not self.settings.vms:
            self._settings_checked = True
            return []
        stats = stats if stats is not None else self.hv.get_stats()
        self._settings_checked = True
        self._names_checked = frozenset(s.vm.name for s in stats)
        by_key = {key: s for s in stats for key in (s.vm.name, s.vm.id)}
        renamed = {self._followed[s.vm.id]: s.vm.name for s in stats if s.vm.id in self._followed}
        names = sorted({s.vm.name for s in stats})
        problems = []
        unknown = 0
        for key, vm_settings in self.settings.vms.items():
            st = by_key.get(key)
            if st is None and key in renamed:
                problems.append(
                    f"the settings name a VM {key!r} that is now named {renamed[key]!r} on "
                    f"{self.hv.uri}: they still apply to it, by its id, while this controller runs; "
                    "rename the entry to keep them after a restart"
                )
                continue
            if st is None:
                # close names for the first few only: each is a pass over every VM's name
                unknown += 1
                close = (
                    sorted(difflib.get_close_matches(key, names, n=3)) if unknown <= SUGGESTED_MISSES else []
                )
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
        self._unfit = set(problems)
        return problems

    def advice(self, configs: list[MemoryConfig] | None = None) -> list[str]:
        """What would make ballooning on this hypervisor safer, one sentence each (``autoballoon
        --check`` shows them); empty when there is nothing to say. Today one: the balloons that
        may be lowered and have no deflate-on-OOM (KVM), naming them. A surge that rises within a
        second or two is over before any round can give memory back; with deflate-on-OOM the
        guest takes it back from its balloon instead of killing a process. A policy that never
        lowers (:attr:`Policy.lowers <hvballoon.policy.base.Policy.lowers>`: ``static``) gets no
        advice; a hypervisor whose configurations cannot be read gets none either.
        """
        if not self.policy.lowers:
            return []
        if configs is None:
            try:
                configs = self.hv.get_configs()
            except HVBalloonError:
                return []
        skipped = {key for key, vm in self.settings.vms.items() if vm.exclude or vm.self_managed}
        bare = sorted(
            c.vm.name
            for c in configs
            if c.mechanism is Mechanism.BALLOON
            and c.deflate_on_oom is False
            and not {c.vm.name, c.vm.id, self._followed.get(c.vm.id)} & skipped
        )
        if not bare:
            return []
        shown = first_few(bare)
        return [
            f"{len(bare)} VM{'s' if len(bare) > 1 else ''} the policy may lower "
            f"{'have' if len(bare) > 1 else 'has'} no deflate-on-OOM ({shown}): a surge that rises "
            "within a second or two, before a round can give memory back, kills a process in a "
            "guest whose headroom was cut; with it on, the guest takes the memory back from its "
            "balloon instead, at the price of targets the guest may override (`hvballoon config URI "
            "VM --deflate-on-oom` while the VM is off; see the KVM backend's page)"
        ]

    def step(self) -> list[Decision]:
        """One round: read, decide, apply (or, in a dry run, check). Returns the decisions."""
        # a round on thousands of VMs allocates in bulk, without cycles (see hvballoon._gc)
        with collector_paused():
            return self._step()

    def _step(self) -> list[Decision]:
        started = time.monotonic()
        self.blind_decisions = []
        snap, caps_by_id, stats = self.snapshot()
        self._swept(stats, self._hosts, time.monotonic() - started)
        if not self._marks_read and not self.dry_run:
            self._adopt_marks(stats)
        self._forget_gone(stats, snap.at_seconds)
        self._forget_lapsed(stats)
        if not self._settings_checked:
            for problem in self.check_settings(stats):
                log.info(problem)
                warnings.warn(problem, stacklevel=2)
        elif self.settings.vms and self._names_checked != frozenset(s.vm.name for s in stats):
            self._settings_still_fit(stats)
        at = stats[0].collected_at if stats else datetime.now(timezone.utc)
        plan: Plan = decide_by_host(self.policy, self._parts, self._by_host)
        self._asked_round_seconds = plan.next_round_seconds
        self.host_figures = host_figures(plan.proposals, self._hosts)
        decisions: list[Decision] = []
        pending: list[_Pending] = []
        proposals = plan.by_vm()
        for v in snap.vms:
            proposal = (
                proposals.get(v.id)
                or self._held.get(v.id)
                or Proposal(
                    vm_id=v.id, rule=f"{self.policy.name}.hold", reason="the policy has nothing to say"
                )
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
        if plan.buffers:
            decisions.extend(self._apply_buffers(at, plan.buffers, {v.id: v for v in snap.vms}, read))
        self._keep_contingency(plan.contingency, snap.vms, caps_by_id, read, decisions)
        self.round += 1
        # the raises made while this round's sweep hung come first: they were made first
        return [*self.blind_decisions, *decisions]

    def _settings_still_fit(self, stats: list[MemoryStats]) -> None:
        """The VMs' names changed since the settings were checked (a VM renamed, deleted or
        created): a VM the settings name by a name it no longer has is not excluded, floored or
        held as self-managed any more. What is newly wrong is said (``"event": "settings_unfit"``)."""
        said = self._unfit
        for problem in self.check_settings(stats):
            if problem not in said:
                log.warning("%s", problem, extra={"event": "settings_unfit", "round": self.round})

    def _swept(self, stats: list[MemoryStats], hosts: list[HostStats], seconds: float) -> None:
        from hvballoon.fleet import HostResult

        hv = self.hv
        self.last_sweep = HostResult(
            uri=hv.uri, stats=stats, elapsed_seconds=seconds, backend=hv.backend_name, hosts=hosts
        )
