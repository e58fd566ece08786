"""The fake backend: the adapter that shows a :class:`~hvballoon.fake.world.World` to the API.

It holds no state of its own. Each flavour (``?flavor=kvm|esxi|hyperv``) exposes the world the
way the real backend does: the same fields filled and left ``None``, the same mechanism, the
same alignment and the same live-change rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from hvballoon.backend import Backend, ConnectOptions
from hvballoon.declarations import declared
from hvballoon.errors import (
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    InvalidURIError,
    OperationTimeoutError,
    PermissionDeniedError,
    SessionExpiredError,
    TargetAboveMaximumError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.fake import _registry
from hvballoon.fake.world import Guest, World
from hvballoon.models import VM, Capabilities, Mechanism, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import MiB, format_size

if TYPE_CHECKING:
    from hvballoon.fake.store import WorldStore

__all__ = ["FakeBackend"]

_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)

FLAVOR_CAPABILITIES: dict[str, Capabilities] = {
    "kvm": declared(
        "kvm", backend="fake", notes=("flavor kvm: a virtio-balloon target, in KiB, like libvirt",)
    ),
    "esxi": declared(
        "esxi",
        backend="fake",
        notes=("flavor esxi: a target is memoryAllocation.limit (MB); ESXi decides the balloon",),
    ),
}
_HYPERV_DM = declared(
    "hyperv-dynamic",
    backend="fake",
    notes=("Dynamic Memory: a target is the maximum; while running it may only be raised",),
)
_HYPERV_STATIC = declared(
    "hyperv-static",
    backend="fake",
    notes=("static memory: a target is a runtime resize of the startup memory",),
)
FLAVOR_CAPABILITIES["hyperv"] = _HYPERV_DM

_POWER = {s.value: s for s in PowerState}


class FakeBackend(Backend):
    """``fake://`` — a simulated hypervisor for tests, demos and CI.

    URIs: ``fake://`` (the ``seed`` world), ``fake://NAME`` (a built-in scenario),
    ``fake:///path/to/scenario.yaml``; query ``flavor=kvm|esxi|hyperv``, ``seed=N``,
    ``state=/path/world.db`` (a world persisted in SQLite, shared by processes) and
    ``speed=X`` (the clock follows real time, X times faster).
    """

    name: ClassVar[str] = "fake"
    schemes: ClassVar[tuple[str, ...]] = ("fake",)
    option_names: ClassVar[frozenset[str]] = frozenset({"world"})

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        uri = opts.uri
        unknown = set(uri.query) - {"flavor", "seed", "state", "speed"}
        if unknown:
            raise InvalidURIError(
                f"unknown fake:// parameter(s) {', '.join(sorted(unknown))}; accepted: flavor, seed, speed, state",
                uri=uri.redacted,
            )
        flavor = uri.query.get("flavor")
        if flavor is not None and flavor not in FLAVOR_CAPABILITIES:
            raise InvalidURIError(
                f"unknown flavor {flavor!r} in {uri.redacted}; accepted: esxi, hyperv, kvm",
                uri=uri.redacted,
            )
        seed: int | None = None
        if "seed" in uri.query:
            try:
                seed = int(uri.query["seed"])
            except ValueError:
                raise InvalidURIError(f"seed must be an integer in {uri.redacted}") from None
        speed: float | None = None
        if "speed" in uri.query:
            try:
                speed = float(uri.query["speed"])
            except ValueError:
                speed = -1.0
            if not speed > 0 or speed != speed or speed == float("inf"):
                raise InvalidURIError(f"speed must be a positive number in {uri.redacted}")
        world = opts.options.get("world")
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
                state, lambda: _registry.new_world(ref, flavor=flavor, seed=seed, speed=speed)
            )
        else:
            self._world = _registry.world_for(uri, flavor=flavor, seed=seed, speed=speed)
        with self._tx("connect") as w:
            self.flavor = w.flavor
            self._host = w.host.name

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _tx(self, op: str | None, vm: VM | None = None) -> Iterator[World]:
        """The world for one operation (locked; loaded and saved when persisted), after the
        clock caught up with real time (wall-clock mode) and the scripted faults had their say."""
        if self._store is not None:
            with self._store.transaction() as stored, stored.lock:
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
        rule = w.faults.hit(op, vm.name if vm is not None else None)
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
                    w.a["driver"][g.index] = 0.0
            return
        errors: dict[str, Callable[[str], HVBalloonError]] = {
            "connection_lost": lambda m: HVConnectionError(m, native_code=kind),
            "timeout": lambda m: OperationTimeoutError(m, native_code=kind),
            "session_expired": lambda m: SessionExpiredError(m, native_code=kind),
            "permission_denied": lambda m: PermissionDeniedError(m, native_code=kind),
        }
        messages = {
            "connection_lost": "the connection to the hypervisor was lost",
            "timeout": "the hypervisor did not answer in time",
            "session_expired": "the session expired and could not be re-established",
            "permission_denied": "the account lacks the privilege for this operation",
        }
        raise errors[kind](f"{messages[kind]} {where} (scripted fault)")

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

    def monotonic(self) -> float:
        with self._tx(None) as w:
            return w.now

    def sleep(self, seconds: float) -> None:
        with self._tx(None) as w:
            if w.clock == "wall":
                time.sleep(seconds / w.speed)
                w.sync()
            else:
                w.advance(seconds)

    @property
    def capabilities(self) -> Capabilities:
        return FLAVOR_CAPABILITIES[self.flavor]

    def vm_capabilities(self, vm: VM) -> Capabilities:
        if self.flavor == "hyperv":
            with self._tx(None) as w:
                g = self._guest(w, vm)
                return _HYPERV_DM if g.config.get("dynamic") else _HYPERV_STATIC
        return self.capabilities

    def _guest(self, w: World, vm: VM) -> Guest:
        g = w.guests.get(vm.id)
        if g is None or g.crashed:
            raise VMNotFoundError(f"VM {vm.name!r} ({vm.id}) does not exist", vm=vm.name, backend=self.name)
        return g

    def _vm(self, g: Guest) -> VM:
        return VM(
            id=g.id,
            name=g.name,
            backend=self.name,
            host=self._host,
            power_state=_POWER.get(g.power_state, PowerState.UNKNOWN),
            extra={"flavor": self.flavor},
        )

    # -- reading ---------------------------------------------------------------------------

    def list_vms(self) -> list[VM]:
        with self._tx("list_vms") as w:
            return [self._vm(g) for g in w.guests.values() if not g.crashed]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        with self._tx("get_stats", vms[0] if vms and len(vms) == 1 else None) as w:
            guests = (
                [g for g in w.guests.values() if not g.crashed]
                if vms is None
                else [self._guest(w, v) for v in vms]
            )
            at = _EPOCH + timedelta(seconds=w.now)
            return [self._stats(w, g, at) for g in guests]

    def _stats(self, w: World, g: Guest, at: datetime) -> MemoryStats:
        vm = self._vm(g)
        dynamic = bool(g.config.get("dynamic"))
        mechanism = (
            (Mechanism.DYNAMIC_MEMORY if dynamic else Mechanism.RUNTIME_RESIZE)
            if self.flavor == "hyperv"
            else FLAVOR_CAPABILITIES[self.flavor].mechanism
        )
        common: dict[str, Any] = {
            "vm": vm,
            "mechanism": mechanism,
            "collected_at": at,
            "configured_bytes": g.memory_bytes,
        }
        if not g.running:
            return MemoryStats(**common, target_bytes=g.target_bytes, stale=True)
        overhead = int(w.physics.vm_overhead)
        if self.flavor == "kvm":
            age = w.report_age(g)
            report = g.report()
            fields: dict[str, Any] = {
                "current_bytes": g.current_bytes,
                "target_bytes": g.target_bytes,
                "ballooned_bytes": g.ballooned_bytes,
                "host_consumed_bytes": g.host_resident_bytes + overhead,
                "guest_report_age_seconds": age,
                "stale": report is None or (age is not None and age > 3 * max(g.stats_period, 1)),
            }
            if report is not None:
                fields.update(
                    guest_total_bytes=report["total"],
                    guest_used_bytes=report["used"],
                    guest_free_bytes=report["free"],
                    guest_available_bytes=report["free"] + report["cache"],
                    guest_cache_bytes=report["cache"],
                    swap_in_bytes=report["swin"],
                    swap_out_bytes=report["swout"],
                    major_faults=report["majf"],
                )
            return MemoryStats(**common, **fields, extra={"oom_events": g.oom_events})
        if self.flavor == "esxi":
            limit = g.config.get("limit_bytes")
            return MemoryStats(
                **common,
                current_bytes=g.current_bytes,
                target_bytes=g.target_bytes,
                ballooned_bytes=g.ballooned_bytes,
                guest_used_bytes=g.used_bytes,
                demand_bytes=g.used_bytes,
                host_consumed_bytes=g.host_resident_bytes + overhead,
                swapped_bytes=g.host_swapped_bytes,
                compressed_bytes=g.compressed_bytes,
                shared_bytes=g.shared_bytes,
                extra={"limit_bytes": limit},
            )
        # hyperv: Get-VM's MemoryAssigned / MemoryDemand; no guest "used" figure
        # Get-VM: a static VM has its startup memory; MemoryMinimum/Maximum are leftovers there
        common["configured_bytes"] = (
            (g.config.get("maximum_bytes") or g.memory_bytes) if dynamic else g.config["startup_bytes"]
        )
        demand = g.demand_bytes
        status = "OK" if g.current_bytes >= demand else ("Warning" if g.free_bytes == 0 else "Low")
        return MemoryStats(
            **common,
            current_bytes=g.current_bytes,
            target_bytes=g.target_bytes,
            demand_bytes=demand,
            guest_available_bytes=g.free_bytes + g.cache_bytes,
            extra={"memory_status": status, "dynamic": dynamic},
        )

    def get_config(self, vm: VM) -> MemoryConfig:
        with self._tx("get_config", vm) as w:
            g = self._guest(w, vm)
            c = g.config
            caps = (
                (_HYPERV_DM if c.get("dynamic") else _HYPERV_STATIC)
                if self.flavor == "hyperv"
                else self.capabilities
            )
            base: dict[str, Any] = {"vm": self._vm(g), "mechanism": caps.mechanism}
            if self.flavor == "kvm":
                return MemoryConfig(
                    **base,
                    startup_bytes=g.memory_bytes,
                    maximum_bytes=c["maximum_bytes"],
                    deflate_on_oom=bool(c.get("deflate_on_oom")),
                    stats_period_seconds=g.stats_period,
                )
            if self.flavor == "esxi":
                return MemoryConfig(
                    **base,
                    maximum_bytes=g.memory_bytes,
                    reservation_bytes=c.get("reservation_bytes"),
                    limit_bytes=c.get("limit_bytes"),
                    shares=c.get("shares"),
                    shares_level="custom" if c.get("shares") else "normal",
                    balloon_cap_bytes=c.get("balloon_cap_bytes"),
                )
            return MemoryConfig(
                **base,
                dynamic=c["dynamic"],
                startup_bytes=c["startup_bytes"],
                minimum_bytes=c["minimum_bytes"],
                maximum_bytes=c["maximum_bytes"],
                buffer_percent=c["buffer_percent"],
                priority=c["priority"],
            )

    # -- changing --------------------------------------------------------------------------

    def target_ceiling(self, vm: VM, stats: MemoryStats, config: MemoryConfig) -> int | None:
        if self.flavor == "hyperv":
            # the target is the maximum (Dynamic Memory) or the startup size (static): neither is
            # capped by a VM setting; the simulated host gives a VM at most its scenario memory
            with self._tx(None) as w:
                return self._guest(w, vm).memory_bytes
        return super().target_ceiling(vm, stats, config)

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        with self._tx(None) as w:
            g = self._guest(w, vm)
            if (
                self.flavor == "hyperv"
                and g.config.get("dynamic")
                and g.running
                and target_bytes < g.config["maximum_bytes"]
            ):
                raise InvalidStateError(
                    f"{vm.name!r} uses Dynamic Memory and is running: its maximum "
                    f"({format_size(g.config['maximum_bytes'])}) can only be raised while it runs, "
                    f"so a target of {format_size(target_bytes)} is refused. Allowed now: a target "
                    f"of at least {format_size(g.config['maximum_bytes'])}, or lower the buffer or "
                    "priority, or change the range with the VM off",
                    vm=vm.name,
                    backend=self.name,
                    details={
                        "rule": "maximum_only_up_while_running",
                        "maximum_bytes": g.config["maximum_bytes"],
                    },
                )
            if self.flavor == "kvm" and target_bytes > g.config["maximum_bytes"]:
                raise TargetAboveMaximumError(
                    f"target above the maximum {format_size(g.config['maximum_bytes'])}",
                    vm=vm.name,
                    backend=self.name,
                )

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        with self._tx("set_target", vm) as w:
            g = self._guest(w, vm)
            if self.flavor == "esxi":
                w.set_config(g.id, {"limit_bytes": target_bytes})
            elif self.flavor == "hyperv":
                key = "maximum_bytes" if g.config.get("dynamic") else "startup_bytes"
                w.set_config(g.id, {key: target_bytes})
            else:
                w.set_target(g.id, target_bytes)

    def check_config(self, vm: VM, changes: dict[str, Any], current: MemoryConfig, *, running: bool) -> None:
        if self.flavor == "hyperv" and running:
            rules = (
                ("minimum_bytes", -1, "the minimum can only be lowered"),
                ("maximum_bytes", 1, "the maximum can only be raised"),
            )
            for name, direction, rule in rules:
                new, old = changes.get(name), getattr(current, name)
                if new is not None and old is not None and (new - old) * direction < 0:
                    raise InvalidStateError(
                        f"{vm.name!r} is running: {rule} while it runs "
                        f"(now {format_size(old)}, asked {format_size(new)})",
                        vm=vm.name,
                        backend=self.name,
                        details={"rule": name, "current": old, "asked": new},
                    )
            for name in ("minimum_bytes", "maximum_bytes", "startup_bytes"):
                if name in changes and changes[name] is not None and changes[name] % (2 * MiB):
                    raise InvalidRequestError(f"{name} must be a multiple of 2 MiB on Hyper-V")
        if self.flavor == "esxi":
            res = changes.get("reservation_bytes", current.reservation_bytes) or 0
            lim = changes.get("limit_bytes", current.limit_bytes)
            if lim is not None and res > lim:
                raise InvalidRequestError(
                    f"reservation {format_size(res)} would be above the limit {format_size(lim)}",
                    vm=vm.name,
                    backend=self.name,
                )
            if current.maximum_bytes is not None and res > current.maximum_bytes:
                raise InvalidRequestError("the reservation cannot exceed the VM's memory", vm=vm.name)

    def apply_config(self, vm: VM, changes: dict[str, Any], current: MemoryConfig) -> None:
        with self._tx("set_config", vm) as w:
            g = self._guest(w, vm)
            w.set_config(g.id, changes)
