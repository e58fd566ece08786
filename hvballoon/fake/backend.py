"""The fake backend: the adapter that shows a :class:`~hvballoon.fake.world.World` to the API.

It holds no state of its own. Each flavour (``?flavor=kvm|esxi|hyperv``) exposes the world the
way the real backend does: the same fields filled and left ``None``, the same mechanism, the
same alignment and the same live-change rules.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from hvballoon.backend import Backend, ConnectOptions
from hvballoon.errors import (
    InvalidRequestError,
    InvalidStateError,
    InvalidURIError,
    TargetAboveMaximumError,
    VMNotFoundError,
)
from hvballoon.fake import _registry
from hvballoon.fake.world import Guest, World
from hvballoon.models import VM, Capabilities, Mechanism, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import KiB, MiB, format_size

__all__ = ["FakeBackend"]

_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)

_KVM_READABLE = frozenset(
    {
        "configured_bytes",
        "current_bytes",
        "target_bytes",
        "ballooned_bytes",
        "guest_total_bytes",
        "guest_used_bytes",
        "guest_free_bytes",
        "guest_available_bytes",
        "guest_cache_bytes",
        "swap_in_bytes",
        "swap_out_bytes",
        "major_faults",
        "host_consumed_bytes",
    }
)
_ESXI_READABLE = frozenset(
    {
        "configured_bytes",
        "current_bytes",
        "target_bytes",
        "ballooned_bytes",
        "guest_used_bytes",
        "demand_bytes",
        "host_consumed_bytes",
        "swapped_bytes",
        "compressed_bytes",
        "shared_bytes",
    }
)
_HYPERV_READABLE = frozenset(
    {
        "configured_bytes",
        "current_bytes",
        "target_bytes",
        "demand_bytes",
        "guest_available_bytes",
    }
)

FLAVOR_CAPABILITIES: dict[str, Capabilities] = {
    "kvm": Capabilities(
        backend="fake",
        mechanism=Mechanism.BALLOON,
        bulk_stats=True,
        readable=_KVM_READABLE,
        set_live=frozenset({"target", "stats_period_seconds"}),
        set_offline=frozenset({"target", "maximum_bytes", "deflate_on_oom", "stats_period_seconds"}),
        alignment_bytes=KiB,
        notes=("flavor kvm: a virtio-balloon target, in KiB, like libvirt",),
    ),
    "esxi": Capabilities(
        backend="fake",
        mechanism=Mechanism.LIMIT,
        bulk_stats=True,
        readable=_ESXI_READABLE,
        set_live=frozenset({"target", "limit_bytes", "reservation_bytes", "shares"}),
        set_offline=frozenset(
            {"target", "limit_bytes", "reservation_bytes", "shares", "maximum_bytes", "balloon_cap_bytes"}
        ),
        alignment_bytes=MiB,
        target_observable=False,
        notes=("flavor esxi: a target is memoryAllocation.limit (MB); ESXi decides the balloon",),
    ),
}
_HYPERV_DM = Capabilities(
    backend="fake",
    mechanism=Mechanism.DYNAMIC_MEMORY,
    bulk_stats=True,
    readable=_HYPERV_READABLE,
    set_live=frozenset({"target", "minimum_bytes", "maximum_bytes", "buffer_percent", "priority"}),
    set_offline=frozenset(
        {"target", "minimum_bytes", "maximum_bytes", "buffer_percent", "priority", "startup_bytes", "dynamic"}
    ),
    alignment_bytes=2 * MiB,
    target_observable=False,
    notes=("Dynamic Memory: a target is the maximum; while running it may only be raised",),
)
_HYPERV_STATIC = Capabilities(
    backend="fake",
    mechanism=Mechanism.RUNTIME_RESIZE,
    bulk_stats=True,
    readable=_HYPERV_READABLE,
    set_live=frozenset({"target", "startup_bytes", "priority"}),
    set_offline=frozenset(
        {"target", "startup_bytes", "priority", "dynamic", "minimum_bytes", "maximum_bytes", "buffer_percent"}
    ),
    alignment_bytes=2 * MiB,
    notes=("static memory: a target is a runtime resize of the startup memory",),
)
FLAVOR_CAPABILITIES["hyperv"] = _HYPERV_DM

_POWER = {s.value: s for s in PowerState}


class FakeBackend(Backend):
    """``fake://`` — a simulated hypervisor for tests, demos and CI.

    URIs: ``fake://`` (the ``seed`` world), ``fake://NAME`` (a built-in scenario),
    ``fake:///path/to/scenario.yaml``; query ``flavor=kvm|esxi|hyperv`` and ``seed=N``.
    """

    name: ClassVar[str] = "fake"
    schemes: ClassVar[tuple[str, ...]] = ("fake",)
    option_names: ClassVar[frozenset[str]] = frozenset({"world"})

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        uri = opts.uri
        unknown = set(uri.query) - {"flavor", "seed", "state"}
        if unknown:
            raise InvalidURIError(
                f"unknown fake:// parameter(s) {', '.join(sorted(unknown))}; accepted: flavor, seed, state",
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
        world = opts.options.get("world")
        if world is not None and not isinstance(world, World):
            raise InvalidRequestError("the world= option takes a hvballoon.fake World")
        self.world: World = world or _registry.world_for(uri, flavor=flavor, seed=seed)
        self.flavor = self.world.flavor
        self._host = self.world.host.name

    # -- plumbing --------------------------------------------------------------------------

    @property
    def native(self) -> World:
        return self.world

    def monotonic(self) -> float:
        return self.world.now

    def sleep(self, seconds: float) -> None:
        self.world.advance(seconds)

    @property
    def capabilities(self) -> Capabilities:
        return FLAVOR_CAPABILITIES[self.flavor]

    def vm_capabilities(self, vm: VM) -> Capabilities:
        if self.flavor == "hyperv":
            g = self._guest(vm)
            return _HYPERV_DM if g.config.get("dynamic") else _HYPERV_STATIC
        return self.capabilities

    def _guest(self, vm: VM) -> Guest:
        g = self.world.guests.get(vm.id)
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
        with self.world.lock:
            return [self._vm(g) for g in self.world.guests.values() if not g.crashed]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        with self.world.lock:
            guests = (
                [g for g in self.world.guests.values() if not g.crashed]
                if vms is None
                else [self._guest(v) for v in vms]
            )
            at = _EPOCH + timedelta(seconds=self.world.now)
            return [self._stats(g, at) for g in guests]

    def _stats(self, g: Guest, at: datetime) -> MemoryStats:
        vm = self._vm(g)
        caps = self.vm_capabilities(vm)
        common: dict[str, Any] = {
            "vm": vm,
            "mechanism": caps.mechanism,
            "collected_at": at,
            "configured_bytes": g.memory_bytes,
        }
        if not g.running:
            return MemoryStats(**common, target_bytes=g.target_bytes, stale=True)
        if self.flavor == "kvm":
            age = self.world.report_age(g)
            reported = age is not None
            fields: dict[str, Any] = {
                "current_bytes": g.current_bytes,
                "target_bytes": g.target_bytes,
                "ballooned_bytes": g.ballooned_bytes,
                "host_consumed_bytes": g.used_bytes + g.cache_bytes + 64 * MiB,
                "guest_report_age_seconds": age,
                "stale": not reported or (age is not None and age > 3 * max(g.stats_period, 1)),
            }
            if reported:
                fields.update(
                    guest_total_bytes=g.current_bytes,
                    guest_used_bytes=g.used_bytes,
                    guest_free_bytes=g.free_bytes,
                    guest_available_bytes=g.free_bytes + g.cache_bytes,
                    guest_cache_bytes=g.cache_bytes,
                    swap_in_bytes=g.swap_in_bytes,
                    swap_out_bytes=g.swap_out_bytes,
                    major_faults=g.major_faults,
                )
            return MemoryStats(**common, **fields)
        if self.flavor == "esxi":
            limit = g.config.get("limit_bytes")
            touched = g.used_bytes + g.cache_bytes
            ballooned = max(0, touched - limit) if limit is not None else 0
            return MemoryStats(
                **common,
                current_bytes=g.memory_bytes - ballooned,
                target_bytes=g.target_bytes,
                ballooned_bytes=ballooned,
                guest_used_bytes=g.used_bytes,
                demand_bytes=g.used_bytes,
                host_consumed_bytes=min(touched, limit) if limit is not None else touched,
                swapped_bytes=0,
                compressed_bytes=0,
                shared_bytes=0,
                extra={"limit_bytes": limit},
            )
        # hyperv: Get-VM's MemoryAssigned / MemoryDemand; no guest "used" figure
        common["configured_bytes"] = g.config.get("maximum_bytes") or g.memory_bytes
        return MemoryStats(
            **common,
            current_bytes=g.current_bytes,
            target_bytes=g.target_bytes,
            demand_bytes=g.used_bytes,
            guest_available_bytes=max(0, g.current_bytes - g.used_bytes),
            extra={
                "memory_status": "OK" if g.current_bytes >= g.used_bytes else "Warning",
                "dynamic": bool(g.config.get("dynamic")),
            },
        )

    def get_config(self, vm: VM) -> MemoryConfig:
        with self.world.lock:
            g = self._guest(vm)
            c = g.config
            caps = self.vm_capabilities(vm)
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

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        g = self._guest(vm)
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
                details={"rule": "maximum_only_up_while_running", "maximum_bytes": g.config["maximum_bytes"]},
            )
        if self.flavor == "kvm" and target_bytes > g.config["maximum_bytes"]:
            raise TargetAboveMaximumError(
                f"target above the maximum {format_size(g.config['maximum_bytes'])}",
                vm=vm.name,
                backend=self.name,
            )

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        g = self._guest(vm)
        if self.flavor == "esxi":
            self.world.set_config(g.id, {"limit_bytes": target_bytes})
        elif self.flavor == "hyperv":
            key = "maximum_bytes" if g.config.get("dynamic") else "startup_bytes"
            self.world.set_config(g.id, {key: target_bytes})
        else:
            self.world.set_target(g.id, target_bytes)

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
        g = self._guest(vm)
        self.world.set_config(g.id, changes)
