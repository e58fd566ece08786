"""The fake backend: the adapter that shows a :class:`~hvballoon.fake.world.World` to the API.

It holds no state of its own. Each flavour (``?flavor=kvm|esxi|hyperv``) exposes the world the
way the real backend does: the same fields filled and left ``None``, and — because the flavour
holds the same :mod:`hvballoon.kinds` object as the real backend — the same capabilities,
mechanism, alignment, target ceiling and rules, refused with the same typed errors and rule ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from hvballoon.backend import Backend, ConnectOptions, TargetRequest, check_ca_file
from hvballoon.backend_kit import BackendOptions
from hvballoon.errors import (
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    InvalidURIError,
    OperationTimeoutError,
    PermissionDeniedError,
    SessionExpiredError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.fake import _registry
from hvballoon.fake.views import VIEWS, FlavorView, Seen
from hvballoon.fake.world import Guest, World
from hvballoon.hoststats import from_sweep
from hvballoon.kinds import KINDS, Kind, Variant
from hvballoon.kinds.kvm import DEFAULT_STATS_PERIOD, StatsPeriodOption
from hvballoon.marks import Marks
from hvballoon.models import VM, Capabilities, ConfigUpdate, HostStats, MemoryConfig, MemoryStats, PowerState

if TYPE_CHECKING:
    from hvballoon.fake.store import WorldStore

__all__ = ["FakeBackend"]

_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _stamp(w: World) -> datetime:
    """The world's clock as the time its figures are stamped with (``collected_at``)."""
    return _EPOCH + timedelta(seconds=w.now)


_POWER = {s.value: s for s in PowerState}


def _check_origin(
    store: WorldStore, uri: str, ref: str, *, flavor: str | None, seed: int | None, speed: float | None
) -> None:
    """Refuse a URI that names something other than what the persisted world was made from: a
    state file outlives the URI it was created with, and serving the old world under another
    scenario or flavour would silently run a test against the wrong VMs. A parameter left out of
    the URI means "whatever the world is"."""
    from hvballoon.fake.catalog import load_scenario

    origin = store.origin
    asked: dict[str, Any] = {
        "scenario": _registry.canonical_ref(ref),
        "flavor": flavor,
        "seed": seed,
        "speed": speed,
    }
    if origin.get("scenario") is None:  # a state file from before origins: compare by name
        try:
            same = load_scenario(ref).name == origin.get("scenario_name")
        except HVBalloonError:
            same = False
        asked["scenario"] = None if same else ref
    mismatch = [k for k, v in asked.items() if v is not None and v != origin.get(k)]
    if not mismatch:
        return

    def describe(values: dict[str, Any]) -> str:
        parts = []
        for key, value in values.items():
            if key == "speed":
                parts.append("a virtual clock" if value is None else f"speed {value:g}")
            else:
                parts.append(f"{key} {value}")
        return ", ".join(parts)

    world = {
        "scenario": origin.get("scenario") or origin.get("scenario_name"),
        "flavor": origin.get("flavor"),
        "seed": origin.get("seed"),
        "speed": origin.get("speed"),
    }
    wanted = {k: asked[k] for k in mismatch}
    raise InvalidURIError(
        f"the fake world persisted in {store.path} was made from {describe(world)}, but {uri} "
        f"asks for {describe(wanted)}: a persisted world keeps what it was made from. Drop those "
        "parameters (or give the ones above) to open it, or name another state file (or delete "
        "this one) to start a new world",
        uri=uri,
        details={"state": store.path, "mismatch": mismatch, "world": world, "asked": wanted},
    )


class FakeOptions(BackendOptions):
    """``world``: a :class:`World` to steer (instead of the URI's scenario); ``stats_period``:
    as the kvm and qmp backends' option, the period (seconds) switched on where a running
    guest's is off, 0 for never (the ``kvm`` flavour only: the other backends have no such
    option)."""

    world: Any = None
    stats_period: StatsPeriodOption = DEFAULT_STATS_PERIOD


class FakeBackend(Backend):
    """``fake://`` — a simulated hypervisor for tests, demos and CI.

    URIs: ``fake://`` (the ``seed`` world), ``fake://NAME`` (a built-in scenario),
    ``fake:///path/to/scenario.yaml``; query ``flavor=kvm|esxi|hyperv``, ``seed=N``,
    ``state=/path/world.db`` (a world persisted in SQLite, shared by processes) and
    ``speed=X`` (the clock follows real time, X times faster). Options: ``world=`` (a
    :class:`World` to steer) and, on the ``kvm`` flavour, the kvm backend's ``stats_period``.
    """

    name: ClassVar[str] = "fake"
    schemes: ClassVar[tuple[str, ...]] = ("fake",)
    options_model: ClassVar[type[BackendOptions]] = FakeOptions
    options: FakeOptions
    kind: Kind

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        #: the targets this session set on running VMs, for a flavour whose hypervisor keeps
        #: none it could read back (:attr:`FlavorView.reads_live_target`: libvirt)
        # the live targets this session set, by VM: (its run then, the target), valid while it
        # keeps that run (libvirt's domain ID), as the libvirt backend keeps them
        self._session_targets: dict[str, tuple[int | None, int]] = {}
        #: the running VMs this session has seen (a stats period that is off is switched on at
        #: the first sighting, as the kvm and qmp backends do: :meth:`FlavorView.period_to_arm`),
        #: those whose period the caller set while they ran (never switched back on), and the
        #: time of each armed guest's last report then (that report is the frozen one)
        #: (all by VM and run: a VM that starts again is a new domain to the backends)
        self._sighted: set[tuple[str, int | None]] = set()
        self._chosen_periods: set[tuple[str, int | None]] = set()
        self._armed_after: dict[tuple[str, int | None], float] = {}
        uri = opts.uri
        unknown = set(uri.query) - {"flavor", "seed", "state", "speed"}
        if unknown:
            named = ", ".join(repr(k) if k.strip() else "a parameter without a name" for k in sorted(unknown))
            raise InvalidURIError(
                f"unknown fake:// parameter(s) {named}; accepted: flavor, seed, speed, state",
                uri=uri.redacted,
            )
        if uri.username is not None or uri.port is not None:
            raise InvalidURIError(
                f"a fake:// URI has no user or port: {uri.redacted}; e.g. fake://seed, fake:///path/x.yaml",
                uri=uri.redacted,
            )
        if uri.host and uri.path not in ("", "/"):
            raise InvalidURIError(
                f"{uri.redacted} names a scenario both by name and by path; give one: fake://NAME or "
                "fake:///path/to/scenario.yaml",
                uri=uri.redacted,
            )
        if "state" in uri.query and not uri.query["state"].strip():
            raise InvalidURIError(
                f"state= needs the path of the world's state file in {uri.redacted}", uri=uri.redacted
            )
        flavor = uri.query.get("flavor")
        if flavor is not None and flavor not in KINDS:
            raise InvalidURIError(
                f"unknown flavor {flavor!r} in {uri.redacted}; accepted: esxi, hyperv, kvm",
                uri=uri.redacted,
            )
        seed: int | None = None
        if "seed" in uri.query:
            try:
                seed = int(uri.query["seed"])
            except ValueError:
                seed = -1
            if seed < 0:
                raise InvalidURIError(
                    f"seed must be a non-negative integer in {uri.redacted}", uri=uri.redacted
                )
        speed: float | None = None
        if "speed" in uri.query:
            try:
                speed = float(uri.query["speed"])
            except ValueError:
                speed = -1.0
            if not speed > 0 or speed != speed or speed == float("inf"):
                raise InvalidURIError(f"speed must be a positive number in {uri.redacted}")
        # no TLS here, but the options a real hypervisor takes are checked as it checks them
        check_ca_file(opts.ca_file)
        world = self.options.world
        if world is not None and not isinstance(world, World):
            raise InvalidRequestError("the world= option takes a hvballoon.fake World")
        self._store: WorldStore | None = None
        self._world: World | None = None
        state = uri.query.get("state")
        if world is not None:
            self._world = world
        elif state:
            from hvballoon.fake.store import WorldStore

            ref = _registry.scenario_ref(uri)
            self._store = WorldStore(
                state,
                lambda: _registry.new_world(ref, flavor=flavor, seed=seed, speed=speed),
                scenario_ref=_registry.canonical_ref(ref),
            )
            try:
                _check_origin(self._store, uri.redacted, ref, flavor=flavor, seed=seed, speed=speed)
            except InvalidURIError:
                self._store.close()
                raise
        else:
            self._world = _registry.world_for(uri, flavor=flavor, seed=seed, speed=speed, opts=opts)
        try:
            with self._tx("connect") as w:
                self.flavor = w.flavor
                self._host = w.host.name
                #: The hypervisor kind this flavour shows (the real backend of that kind holds the same).
                self.kind = w.kind
        except HVBalloonError:
            if self._store is None and world is None and self._world is not None:
                # a connect retried is the same connection: its next attempt meets this world,
                # its scripted fault counted
                _registry.connect_failed(opts, self._world)
            raise
        #: How the real backend of that kind shows a guest (the fields it fills and leaves None).
        self.view: FlavorView = VIEWS[self.kind.name]
        if "stats_period" in opts.options and not self.view.has_stats_period_option:
            raise InvalidRequestError(
                f"the fake's {self.flavor} flavour takes no stats_period option (the {self.flavor} "
                "backend has none: only KVM balloons have a stats period)",
                backend=self.name,
                uri=uri.redacted,
            )
        # each variant's capabilities, built once (read for every VM in every round), as the
        # real backends hold theirs as constants
        self._capabilities = {
            v.name: self.kind.capabilities(backend=self.name, variant=v.name) for v in self.kind.variants
        }

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _tx(self, op: str | None, vm: VM | None = None, *, write: bool = True) -> Iterator[World]:
        """The world for one operation (locked; loaded and saved when persisted), after the
        clock caught up with real time (wall-clock mode) and the scripted faults had their say.
        ``write=False``: a question that changes nothing (no scripted fault either), asked of a
        persisted world without saving it — the world loaded once is kept while no other
        process changes it, so that asking it once per VM costs nothing per VM."""
        if self._store is not None:
            with self._store.transaction(write=write) as stored, stored.lock:
                stored.sync()
                if op is not None:
                    self._fault(stored, op, vm)
                yield stored
            return
        w = self._world
        assert w is not None
        with w.lock:
            w.sync()
            if op is not None:
                self._fault(w, op, vm)
            yield w

    def _fault(self, w: World, op: str, vm: VM | None) -> None:
        rule = w.faults.hit(op, vm.name if vm is not None else None, now=w.now)
        if rule is None:
            return
        where = f"during {op}" + (f" on {vm.name!r}" if vm is not None else "")
        kind = rule.kind
        if kind == "slow":
            if w.clock == "wall":
                time.sleep(min(rule.latency, self.opts.timeout) / w.speed)
            else:
                w.advance(min(rule.latency, self.opts.timeout))
            if rule.latency > self.opts.timeout:
                raise OperationTimeoutError(
                    f"the call did not answer within {self.opts.timeout:g} s {where} (scripted slow call)",
                    native_code="slow",
                )
            return
        if kind == "stats_stale":
            ids = [vm.id] if vm is not None else None
            if rule.vm is not None and vm is None:
                ids = [g.id for g in w.guests.values() if g.name == rule.vm]
            w.freeze_reports(ids, rule.duration)
            return
        if kind == "vm_vanished":
            victims = [g for g in w.guests.values() if not g.crashed]
            if vm is not None:
                victims = [g for g in victims if g.id == vm.id]
            elif rule.vm is not None:
                victims = [g for g in victims if g.name == rule.vm]
            if victims:
                w.vanish(victims[0].id)
            if vm is not None:
                raise VMNotFoundError(
                    f"VM {vm.name!r} vanished {where}", vm=vm.name, native_code="vm_vanished"
                )
            return
        if kind == "no_balloon_driver":
            if op == "set_target" and vm is not None:
                raise UnsupportedOperationError(
                    f"cannot change the memory of {vm.name!r}: the guest has no balloon driver running",
                    vm=vm.name,
                    native_code="no_balloon_driver",
                )
            for g in w.guests.values():
                if (vm is None and rule.vm in (None, g.name)) or (vm is not None and g.id == vm.id):
                    w.stop_balloon_driver(g.id)
            return
        raise _fault_error(kind, where)

    @property
    def world(self) -> World:
        """The world (for a persisted one: a copy as of now; change it through the API)."""
        if self._world is not None:
            return self._world
        with self._tx(None) as w:
            return w

    @property
    def store(self) -> WorldStore | None:
        return self._store

    @property
    def native(self) -> World:
        return self.world

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def ephemeral(self) -> bool:
        """A world in memory ends with the process; one persisted (``state=``) does not."""
        return self._store is None

    def monotonic(self) -> float:
        with self._tx(None) as w:
            return w.now

    def now(self) -> datetime:
        with self._tx(None) as w:
            return _stamp(w)

    def sleep(self, seconds: float) -> None:
        with self._tx(None) as w:
            if w.clock != "wall":
                w.advance(seconds)
                return
            speed = w.speed
        # a world on the wall clock: wait outside the transaction, so that other sessions of a
        # persisted world (other processes) are not held off for the whole wait
        time.sleep(seconds / speed)
        with self._tx(None) as w:
            w.sync()

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities[self.kind.variant().name]

    def vm_capabilities(self, vm: VM) -> Capabilities:
        """The variant's capabilities less what the kind withholds from this VM's configuration
        (a KVM domain without a balloon device), as the real backends answer."""
        with self._tx(None, write=False) as w:
            g = w.guests.get(vm.id)
            if (g is None or g.crashed) and len(self.kind.variants) == 1:
                # gone: the kind's, as a real backend answers from what it last saw; the next
                # read says the VM vanished
                return self.capabilities
            g = self._guest(w, vm)
            return self.kind.withhold(self._capabilities[self._variant(g).name], self._config(g, vm))

    def _variant(self, g: Guest) -> Variant:
        dynamic = g.config.get("dynamic")
        return self.kind.variant_for(dynamic=None if dynamic is None else bool(dynamic))

    def _guest(self, w: World, vm: VM) -> Guest:
        g = w.guests.get(vm.id)
        if g is None or g.crashed:
            raise VMNotFoundError(f"VM {vm.name!r} ({vm.id}) does not exist", vm=vm.name, backend=self.name)
        return g

    def _vm(self, g: Guest) -> VM:
        power = _POWER.get(g.power_state, PowerState.UNKNOWN)
        extra: dict[str, Any] = {"flavor": self.flavor, **self.view.vm_extra(g, power)}
        return VM(id=g.id, name=g.name, backend=self.name, host=self._host, power_state=power, extra=extra)

    # -- reading ---------------------------------------------------------------------------

    def list_vms(self) -> list[VM]:
        with self._tx("list_vms") as w:
            return [self._vm(g) for g in w.guests.values() if not g.crashed]

    def lookup_vms(self, refs: Sequence[str]) -> list[VM]:
        """Like the real backends' native look-ups: only the VMs named (one call, no listing)."""
        with self._tx("list_vms") as w:
            # by id, then by name, from the world's index: the cost of what is named, not of every VM
            found = {}
            for ref in dict.fromkeys(refs):
                g = w.guests.get(ref)
                if g is not None:
                    found[g.index] = g
                for g in w.named(ref):
                    found[g.index] = g
            return [self._vm(g) for _, g in sorted(found.items()) if not g.crashed]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        with self._tx("get_stats", vms[0] if vms and len(vms) == 1 else None) as w:
            guests = (
                [g for g in w.guests.values() if not g.crashed]
                if vms is None
                else [self._guest(w, v) for v in vms]
            )
            at = _stamp(w)
            return [self._stats(w, g, at) for g in guests]

    def get_host_stats(self, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
        """The simulated host, every byte accounted (:meth:`World.accounting`), and its VMs'
        sums, shown the way the flavour's real backend shows them (:meth:`FlavorView.host_figures`)."""
        with self._tx("get_host_stats") as w:
            at = _stamp(w)
            if vm_stats is None:
                vm_stats = [self._stats(w, g, at) for g in w.guests.values() if not g.crashed]
            acc = w.accounting()["host"]
            host = w.host
            figures: dict[str, Any] = {
                "physical_bytes": acc["physical"],
                "free_bytes": acc["free"],
                "extra": {
                    # physical = overhead + resident + compression_cache + free, to the byte
                    # (the host's own overhead and its VMs'; hypervisor_overhead_bytes is what
                    # the flavour's real backend shows of it, if anything)
                    "overhead_bytes": acc["overheads"],
                    "resident_bytes": acc["resident"],
                    "compression_cache_bytes": acc["compression_cache"],
                    "compressed_bytes": acc["compressed"],
                    # what the simulated host swapped, whether or not the flavour can show it
                    "host_swapped_bytes": acc["swapped"],
                    "reserve_bytes": host.reserve_bytes,
                    "flavor": self.flavor,
                    # KVM: the huge-page pool (its part no VM fills is in none of the above)
                    **self.view.host_extra(w),
                },
            }
            running = [g for g in w.guests.values() if g.running and not g.crashed]
            vm_overheads = sum(self.view.vm_overhead(w, g) for g in running)
            figures.update(self.view.host_figures(acc, host.swap_bytes, vm_overheads=vm_overheads))
            return from_sweep(
                vm_stats,
                backend=self.name,
                default_host=host.name,
                figures={host.name: figures},
                collected_at=at,
            )

    def _stats(self, w: World, g: Guest, at: datetime, vm: VM | None = None) -> MemoryStats:
        common: dict[str, Any] = {
            "vm": vm or self._vm(g),
            "mechanism": self._variant(g).mechanism,
            "collected_at": at,
            "configured_bytes": self.view.configured_bytes(g),
        }
        session_target = None
        if not self.view.reads_live_target:
            if g.power_state in ("running", "paused"):
                known = self._session_targets.get(g.id)
                session_target = known[1] if known is not None and known[0] == g.run else None
            else:  # a domain that stops forgets its live target; the definition's shows
                self._session_targets.pop(g.id, None)
        seen = Seen(target_bytes=session_target, armed_after=self._sighting(w, g))
        if not g.running:
            return self.view.idle_stats(w, g, common, seen=seen)
        return self.view.running_stats(w, g, common, seen=seen)

    def _sighting(self, w: World, g: Guest) -> float | None:
        """A running (or paused) VM read for the first time in this session: its stats period
        switched on where the real backend would (only while it runs: a stopped VM's is its
        definition's). Returns the time of the report it held when armed, if any."""
        key = (g.id, g.run)
        if g.power_state in ("running", "paused") and key not in self._sighted:
            self._sighted.add(key)
            arm = self.view.period_to_arm(
                g, option=self.options.stats_period, chosen=key in self._chosen_periods
            )
            if arm is not None:
                last = g.last_report_at
                w.set_config(g.id, ConfigUpdate(stats_period_seconds=arm))
                if last is not None:
                    self._armed_after[key] = last
        return self._armed_after.get(key)

    def get_config(self, vm: VM) -> MemoryConfig:
        with self._tx("get_config", vm) as w:
            return self._config(self._guest(w, vm))

    def get_configs(self, vms: list[VM] | None = None) -> list[MemoryConfig]:
        with self._tx("get_config", vms[0] if vms and len(vms) == 1 else None) as w:
            guests = (
                [g for g in w.guests.values() if not g.crashed]
                if vms is None
                else [self._guest(w, v) for v in vms]
            )
            return [self._config(g) for g in guests]

    def get_stats_and_configs(self, vms: list[VM]) -> list[tuple[MemoryStats, MemoryConfig]]:
        """Both in one transaction (the scripted faults of both reads have their say)."""
        one = vms[0] if len(vms) == 1 else None
        with self._tx("get_stats", one) as w:
            self._fault(w, "get_config", one)
            guests = [self._guest(w, v) for v in vms]
            at = _stamp(w)
            out = []
            for g in guests:
                vm = self._vm(g)
                out.append((self._stats(w, g, at, vm), self._config(g, vm)))
            return out

    # -- marks (the session offers them only where the kind declares them: ESXi, KVM) --------

    def read_marks(self, key: str) -> Marks:
        """Read with the configurations (scripted ``get_config`` faults apply to the whole
        read); a scripted ``get_marks`` fault that fires on a VM leaves that VM's marks unread
        (in ``unreadable``, with the fault's error), as an ESXi VM whose ``extraConfig`` the
        server would not give."""
        with self._tx("get_config") as w:
            out: dict[str, str] = {}
            unreadable: dict[str, HVBalloonError] = {}
            for g in w.guests.values():
                if g.crashed:
                    continue
                rule = w.faults.hit("get_marks", g.name, now=w.now, exact=True)
                if rule is not None:
                    unreadable[g.id] = _fault_error(
                        rule.kind, f"during get_marks on {g.name!r}"
                    ).with_context(backend=self.name, vm=g.name)
                    continue
                value = (g.config.get("marks") or {}).get(key)
                if value is not None:
                    out[g.id] = str(value)
            return Marks(out, unreadable=unreadable)

    def write_mark(self, vm: VM, key: str, value: str | None) -> None:
        """A change of the configuration (scripted ``set_config`` faults apply); where a mark
        lasts one run (KVM), a powered-off VM has none: the kind says what that means."""
        with self._tx("set_config", vm) as w:
            g = self._guest(w, vm)
            if self.kind.mark_kept(self._vm(g), value):
                w.set_mark(g.id, key, value)

    def _config(self, g: Guest, vm: VM | None = None) -> MemoryConfig:
        return self.view.config(g, {"vm": vm or self._vm(g), "mechanism": self._variant(g).mechanism})

    # -- changing: every rule comes from the kind (Backend.check_target / plan_config) ---------

    def target_ceiling(self, vm: VM, stats: MemoryStats, config: MemoryConfig) -> int | None:
        with self._tx(None, write=False) as w:
            physical = w.host.physical_bytes
        return self.kind.target_ceiling(vm, stats, config, host_memory_bytes=physical)

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        with self._tx("set_target", vm) as w:
            self._move(w, vm, target_bytes)

    def apply_targets(self, targets: Sequence[TargetRequest]) -> list[HVBalloonError | None]:
        """Every move in one step of the world (each VM's scripted faults still apply to it)."""
        out: list[HVBalloonError | None] = []
        with self._tx(None) as w:
            for t in targets:
                try:
                    self._fault(w, "set_target", t.vm)
                    self._move(w, t.vm, t.target_bytes)
                except HVBalloonError as exc:
                    out.append(exc.with_context(backend=self.name, vm=t.vm.name))
                else:
                    out.append(None)
        return out

    def _move(self, w: World, vm: VM, target_bytes: int) -> None:
        g = self._guest(w, vm)
        field = self.kind.target_field(self._config(g))
        if field is None:
            w.set_target(g.id, target_bytes)
            if g.power_state in ("running", "paused"):
                self._session_targets[g.id] = (g.run, target_bytes)
            return
        move = ConfigUpdate.from_fields({field: target_bytes})
        self.view.check_resize(w, g, move, backend=self.name)
        w.set_config(g.id, move)

    def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        with self._tx("set_config", vm) as w:
            g = self._guest(w, vm)
            self.view.check_resize(w, g, plan, backend=self.name)
            w.set_config(g.id, plan)
            if plan.stats_period_seconds is not None and g.power_state in ("running", "paused"):
                self._chosen_periods.add((g.id, g.run))  # the caller's choice for this run, 0 included


#: The error each scripted fault kind that fails a call raises.
_FAULT_ERRORS: dict[str, tuple[Callable[..., HVBalloonError], str]] = {
    "connection_lost": (HVConnectionError, "the connection to the hypervisor was lost"),
    "timeout": (OperationTimeoutError, "the hypervisor did not answer in time"),
    "session_expired": (SessionExpiredError, "the session expired and could not be re-established"),
    "permission_denied": (PermissionDeniedError, "the account lacks the privilege for this operation"),
}


def _fault_error(kind: str, where: str) -> HVBalloonError:
    """The error of a scripted fault of ``kind`` that fails a call (``where``: which)."""
    cls, message = _FAULT_ERRORS[kind]
    return cls(f"{message} {where} (scripted fault)", native_code=kind)
