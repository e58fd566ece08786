"""What a controller round reads, built into the policy's inputs: one stats sweep, the
configurations (cached, read again after ``config_refresh_seconds`` or after a move), the hosts'
own figures, and each VM's :class:`~hvballoon.policy.model.VMView` within its settings and the
guard rails (:meth:`_Snapshots.snapshot`). It also keeps the guest statistics period the policy
wants on the VMs whose backend can change it live.

Part of :class:`~hvballoon.policy.Controller` (:mod:`hvballoon.policy.controller`), which ties
it to the moves (:mod:`hvballoon.policy._moves`) and the run loop
(:mod:`hvballoon.policy.running`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from hvballoon.errors import HVBalloonError, InvalidRequestError, OperationTimeoutError
from hvballoon.models import (
    VM,
    Capabilities,
    HostStats,
    Mechanism,
    MemoryConfig,
    MemoryStats,
    PowerState,
)
from hvballoon.policy._hosts import Part, blind_hosts, held, partition
from hvballoon.policy.model import ControllerSettings, HostView, Proposal, Snapshot, VMSettings, VMView

if TYPE_CHECKING:
    from hvballoon.policy.base import Policy
    from hvballoon.session import GuardRails, Hypervisor

log = logging.getLogger("hvballoon.policy")


class _Snapshots:
    """The inputs of a round; :class:`~hvballoon.policy.Controller` is one."""

    # what the controller provides (hvballoon.policy.controller)
    settings: ControllerSettings
    policy: Policy
    dry_run: bool
    config_refresh_seconds: float
    _configs: dict[str, MemoryConfig]
    _configs_at: float | None
    _hosts: list[HostStats]
    _parts: list[Part]
    #: The holds of the VMs of hosts whose physical memory is unknown (by VM id), this round.
    _held: dict[str, Proposal]
    #: The hosts whose physical memory was unknown last round (each warned of once).
    _blind_hosts: set[str]
    _period_tried: dict[str, float]
    #: VM id -> the name the settings matched it by (:meth:`_vm_settings`).
    _followed: dict[str, str]

    if TYPE_CHECKING:

        @property
        def hv(self) -> Hypervisor: ...
        @property
        def guard_rails(self) -> GuardRails: ...
        def _contingency_pending(self) -> bool: ...
        def _sweep_timed_out(self, attempt: int, attempts: int) -> None: ...

    def _vm_settings(self, vm: VM) -> VMSettings:
        """``vm``'s settings: by its name, else by its id, else by the name they matched it by
        earlier in this controller's life. Settings follow a VM renamed while the controller
        runs, by its id: renaming an excluded or self-managed VM must not hand it to the policy
        (:meth:`check_settings` says that the entry names the VM by its old name)."""
        vms = self.settings.vms
        if not vms:
            return self.settings.default_vm
        named = vms.get(vm.name)
        if named is not None:
            self._followed[vm.id] = vm.name
            return named
        key = vm.id if vm.id in vms else self._followed.get(vm.id)
        return vms.get(key, self.settings.default_vm) if key is not None else self.settings.default_vm

    def _clock(self) -> float:
        return self.hv.backend.monotonic()

    def _sweep(self) -> list[MemoryStats]:
        """Every VM's stats, in one bulk ``get_stats``.

        While the last plan holds a contingency (raises to make if the controller cannot read
        before the next round, :attr:`Plan.contingency <hvballoon.policy.base.Plan.contingency>`),
        the session's retries call back between the attempts (the same number, with the same
        waits), so that when an attempt times out the controller makes those raises before the
        next: a sweep that hangs leaves it blind for as long.
        """
        hv = self.hv
        if not self._contingency_pending():
            return hv.get_stats()
        attempts = hv.retry.max_attempts
        previous = hv.retry.before_retry  # the controller's count of the round's failed attempts

        def hung(exc: HVBalloonError, attempt: int) -> None:
            if previous is not None:
                previous(exc, attempt)
            if isinstance(exc, OperationTimeoutError):
                self._sweep_timed_out(attempt, attempts)

        return hv.get_stats(retry=dataclasses.replace(hv.retry, before_retry=hung))

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
        kind = self.hv.backend.kind
        if cfg is not None and kind is not None and caps.mechanism is Mechanism.BALLOON:
            # the kind's ceiling of a balloon target (its rule, no call to the hypervisor), where
            # it is below the maximum: a KVM domain's virtio-mem devices are part of <memory>,
            # out of a balloon's reach
            ceiling = kind.target_ceiling(s.vm, s, cfg)
            if ceiling is not None:
                top = min(top, ceiling)
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
        # why the guest's figures are missing: for good (its configuration, the kind's rule),
        # else as the backend says
        note = kind.no_figures_reason(cfg) if kind is not None and cfg is not None else None
        if note is None and (used is None or s.stale):
            said = s.extra.get("stats_note")
            note = said if isinstance(said, str) else None
        # a lower that would give the host nothing (the kind's rule: a KVM domain with VFIO)
        pinned = kind.frees_nothing_reason(cfg) if kind is not None and cfg is not None else None
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
            can_lower=can_target and not (dm and running) and pinned is None,
            can_raise=(caps.can_set("maximum_bytes", running=running) if dm else can_target),
            buffer_percent=cfg.buffer_percent if dm and cfg is not None else None,
            settings=vs,
            figures_note=note,
            frees_nothing_note=pinned,
        )

    def snapshot(self) -> tuple[Snapshot, dict[str, Capabilities], list[MemoryStats]]:
        """Read every VM (one bulk ``get_stats``) and build the policy's inputs."""
        now = self._clock()
        stats = self._sweep()
        configs = self._read_configs(stats, now)
        views: list[VMView] = []
        caps_by_id: dict[str, Capabilities] = {}
        used = self.settings.host_overhead_bytes
        by_host: dict[str | None, int] = {}
        rails = self.guard_rails
        periods: list[MemoryStats] = []  # the VMs whose stats period is to be set
        for s in stats:
            running = s.vm.power_state is PowerState.RUNNING
            if running:
                backed = (
                    s.host_consumed_bytes if s.host_consumed_bytes is not None else (s.current_bytes or 0)
                )
                used += backed
                by_host[s.vm.host] = by_host.get(s.vm.host, 0) + backed
            vs = self._vm_settings(s.vm)
            caps = self.hv.vm_capabilities(s.vm)
            caps_by_id[s.vm.id] = caps
            cfg = configs.get(s.vm.id) if running else None
            if cfg is not None and not vs.exclude and self._wants_stats_period(s, cfg, caps, now):
                periods.append(s)
            view = self._view(s, cfg, caps, vs, rails)
            if view is not None:
                views.append(view)
        self._keep_stats_periods(periods)
        host = self._host_view(stats, used)
        snap = Snapshot(
            at_seconds=now,
            interval_seconds=self.settings.interval_seconds,
            fast_interval_seconds=self.settings.fast_interval_seconds,
            host=host,
            vms=tuple(views),
        )
        self._parts = [(None, snap)]
        self._held = {}
        # the static policy never looks at the host: nothing to hold for it
        blind = blind_hosts(self._hosts) if self.policy.name != "static" else set()
        if len(self._hosts) > 1:
            vm_hosts = {s.vm.id: s.vm.host for s in stats}
            self._held = held(snap, blind, vm_hosts)
            self._parts = partition(
                snap,
                self._hosts,
                vm_hosts,
                by_host,
                overhead_bytes=self.settings.host_overhead_bytes,
                blind=blind,
            )
        self._note_blind_hosts(blind if self._held else set())
        return snap, caps_by_id, stats

    def _note_blind_hosts(self, blind: set[str]) -> None:
        """A warning once for each host whose VMs are held as its physical memory is unknown
        (until it is known again: then a note)."""
        for name in sorted(blind - self._blind_hosts):
            vms = sum(1 for p in self._held.values() if p.inputs.get("host") == name)
            log.warning(
                "the physical memory of host %s is unknown (disconnected, or not reporting): its %d "
                "VM%s held while the other hosts are decided", name, vms, " is" if vms == 1 else "s are",
                extra={"event": "host_memory_unknown", "host": name, "vms": vms},
            )  # fmt: skip
        for name in sorted(self._blind_hosts - blind):
            log.info(
                "the physical memory of host %s is known again: its VMs are decided", name,
                extra={"event": "host_memory_known", "host": name},
            )  # fmt: skip
        self._blind_hosts = blind

    @property
    def stats_period_seconds(self) -> int | None:
        """The guest statistics period the controller keeps on the VMs (``None``: theirs)."""
        wanted = self.settings.stats_period_seconds
        if wanted is None:
            wanted = self.policy.stats_period_seconds
        return wanted or None

    def _wants_stats_period(self, s: MemoryStats, cfg: MemoryConfig, caps: Capabilities, now: float) -> bool:
        """Whether to set the VM's guest statistics period to the one wanted: where its backend
        can change it live (a guest that reports every 10 s shows a surge up to 10 s late), and
        not tried since its configuration was last read (the try is noted here)."""
        wanted = self.stats_period_seconds
        period = cfg.stats_period_seconds
        if wanted is None or self.dry_run or period is None or period == wanted:
            return False
        if not caps.can_set("stats_period_seconds", running=True):
            return False
        tried = self._period_tried.get(s.vm.id)
        if tried is not None and now - tried < self.config_refresh_seconds:
            return False
        self._period_tried[s.vm.id] = now
        return True

    def _keep_stats_periods(self, stats: list[MemoryStats]) -> None:
        """Set the wanted stats period on these VMs in one ``set_configs`` (one bulk read of
        their configurations, then one change per VM: at 10,000 VMs, not 10,000 reads). A VM
        refused or failing is logged and keeps its period; the others change all the same."""
        if not stats:
            return
        wanted = self.stats_period_seconds
        try:
            results = self.hv.set_configs(
                [(s.vm, {"stats_period": wanted}) for s in stats], skip_invalid=True
            )
        except HVBalloonError as exc:  # the call as a whole (its bulk read) failed
            log.info("cannot set the stats period of %d VMs to %s s: %s", len(stats), wanted, exc)
            return
        errors = results.errors  # a property that builds its dict: once, not per VM
        for s in stats:
            error = errors.get(s.vm.id)
            if error is not None:
                log.info("cannot set the stats period of %s to %s s: %s", s.vm.name, wanted, error)
            else:
                self._configs.pop(s.vm.id, None)

    def _known_hosts_view(self, known: list[HostStats], derived_used: int) -> HostView:
        """The pooled view of the hosts whose physical memory is known (the others' VMs held):
        their used memory where each reports it, else derived from the VMs."""
        used = [h.used_bytes for h in known]
        return HostView(
            total_bytes=sum(h.physical_bytes or 0 for h in known),
            used_bytes=derived_used if None in used else sum(u or 0 for u in used),
            reserve_bytes=self.settings.host_reserve_bytes,
        )

    def _host_view(self, stats: list[MemoryStats], derived_used: int) -> HostView:
        """The host as the policies see it, from ``get_host_stats()`` (summing this round's
        sweep), unless ``host_memory_bytes`` overrides it.

        With the override, the host's use is derived from the VMs (see
        :class:`~hvballoon.policy.model.ControllerSettings`). Otherwise the hosts behind the
        session (a vCenter has several) add up to one pool: their physical memory added up, and
        their used memory where every host reports it (else derived from the VMs). With several
        hosts, :meth:`snapshot` also splits the round by host (:mod:`hvballoon.policy._hosts`):
        this pooled view is then only for the VMs whose host is unknown.
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
            if blind_hosts(hosts):  # those hosts' VMs are held (snapshot); the others decided
                return self._known_hosts_view(
                    [h for h in hosts if h.physical_bytes is not None], derived_used
                )
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
