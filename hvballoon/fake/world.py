"""The simulated world behind ``fake://``: a host, its guests and a virtual clock.

The world knows nothing of hvballoon's API models or errors wire format (moto's "models"); the
fake backend (:mod:`hvballoon.fake.backend`) is the stateless adapter that exposes it the way
each real backend would. Time only moves when :meth:`World.advance` is called, so runs are
deterministic.

>>> from hvballoon.fake.scenario import load_scenario
>>> w = World.from_scenario(load_scenario("seed"))
>>> len(w.guests), w.host.physical_bytes // 2**30, w.promised_bytes // 2**30
(10, 120, 160)
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from hvballoon.fake.scenario import Scenario, VMSpec

__all__ = ["Guest", "Host", "World"]

_NAMESPACE = uuid.UUID("6f1c1d1e-9d1b-4a52-9d39-7c2b1a0e5b11")
_MiB = 1024**2


@dataclass
class Host:
    name: str
    physical_bytes: int
    overhead_bytes: int = 0
    reserve_bytes: int = 0


@dataclass
class Guest:
    """One guest's state. Sizes in bytes; times in virtual seconds."""

    id: str
    name: str
    memory_bytes: int  # configured maximum
    current_bytes: int  # what the guest has now (balloon-adjusted / assigned)
    target_bytes: int
    used_bytes: int
    cache_bytes: int
    unfreeable_bytes: int
    swap_bytes: int
    power_state: str = "running"
    stats_period: int = 10
    last_report_at: float | None = None
    swap_in_bytes: int = 0
    swap_out_bytes: int = 0
    major_faults: int = 0
    balloon_driver: bool = True
    crashed: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.power_state == "running"

    @property
    def free_bytes(self) -> int:
        return max(0, self.current_bytes - self.used_bytes - self.cache_bytes)

    @property
    def ballooned_bytes(self) -> int:
        return max(0, self.memory_bytes - self.current_bytes)


class World:
    """A host and its guests, advanced by a virtual clock. Thread-safe (one lock)."""

    def __init__(self, scenario: Scenario, *, flavor: str | None = None, seed: int | None = None) -> None:
        self.scenario = scenario
        self.flavor = flavor or scenario.flavor
        self.seed = scenario.seed if seed is None else seed
        self.now = 0.0
        self.lock = threading.RLock()
        self.host = Host(
            scenario.host.name, scenario.host.physical, scenario.host.overhead, scenario.host.reserve
        )
        self.guests: dict[str, Guest] = {}
        self.events: list[dict[str, Any]] = []
        for spec in scenario.vms:
            guest = self._guest_from_spec(spec)
            self.guests[guest.id] = guest
        self._report(force=True)

    @classmethod
    def from_scenario(cls, scenario: Scenario, **kw: Any) -> World:
        return cls(scenario, **kw)

    @property
    def promised_bytes(self) -> int:
        return sum(g.memory_bytes for g in self.guests.values())

    def _guest_from_spec(self, spec: VMSpec) -> Guest:
        gid = spec.id or str(uuid.uuid5(_NAMESPACE, f"{self.scenario.name}/{spec.name}"))
        target = spec.target if spec.target is not None else spec.memory
        config: dict[str, Any] = {
            "minimum_bytes": spec.minimum,
            "startup_bytes": spec.startup,
            "maximum_bytes": spec.maximum,
            "dynamic": spec.dynamic,
            "buffer_percent": spec.buffer_percent,
            "priority": spec.priority,
            "reservation_bytes": spec.reservation,
            "limit_bytes": spec.limit,
            "shares": spec.shares,
            "balloon_cap_bytes": spec.balloon_cap,
            "deflate_on_oom": spec.deflate_on_oom,
        }
        if self.flavor == "hyperv":
            dynamic = True if spec.dynamic is None else spec.dynamic
            config["dynamic"] = dynamic
            config["startup_bytes"] = spec.startup or (spec.memory // 2 if dynamic else spec.memory)
            config["minimum_bytes"] = spec.minimum or (512 * _MiB if dynamic else config["startup_bytes"])
            config["maximum_bytes"] = spec.maximum or spec.memory
            config["buffer_percent"] = spec.buffer_percent or 20
            config["priority"] = 50 if spec.priority is None else spec.priority
            target = config["maximum_bytes"] if dynamic else config["startup_bytes"]
        elif self.flavor == "esxi":
            config["reservation_bytes"] = spec.reservation or 0
            config["shares"] = spec.shares or spec.memory // _MiB * 10  # "normal": 10 per MB
            target = spec.limit if spec.limit is not None else spec.memory
        else:
            config["maximum_bytes"] = spec.maximum or spec.memory
        power = spec.power_state
        guest = Guest(
            id=gid,
            name=spec.name,
            memory_bytes=spec.memory,
            current_bytes=target if power == "running" else 0,
            target_bytes=target,
            used_bytes=spec.used if power == "running" else 0,
            cache_bytes=spec.cache if power == "running" else 0,
            unfreeable_bytes=spec.unfreeable,
            swap_bytes=spec.swap,
            power_state=power,
            stats_period=spec.stats_period,
            balloon_driver=spec.balloon_driver,
            config=config,
            workload=spec.workload.model_dump(),
        )
        self._settle(guest)
        return guest

    # -- time --------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self.lock:
            self.now += seconds
            for g in self.guests.values():
                self._settle(g)
            self._report()

    def _report(self, *, force: bool = False) -> None:
        for g in self.guests.values():
            if not g.running or not g.balloon_driver or g.stats_period <= 0:
                continue
            if force or g.last_report_at is None or self.now - g.last_report_at >= g.stats_period:
                g.last_report_at = self.now

    # -- memory ------------------------------------------------------------------------

    def _settle(self, g: Guest) -> None:
        """First version: targets arrive at once; cache shrinks to fit, then the guest swaps."""
        if not g.running:
            return
        if self.flavor == "hyperv" and g.config.get("dynamic"):
            want = int(g.used_bytes * (1 + (g.config["buffer_percent"] or 0) / 100))
            g.current_bytes = min(g.config["maximum_bytes"], max(g.config["minimum_bytes"], want))
        else:
            g.current_bytes = g.target_bytes if g.balloon_driver else g.memory_bytes
        room = g.current_bytes - g.used_bytes
        if room < g.cache_bytes:
            g.cache_bytes = max(0, room)
        if room < 0:
            g.swap_out_bytes += -room

    def set_target(self, guest_id: str, target_bytes: int) -> None:
        with self.lock:
            g = self.guests[guest_id]
            g.target_bytes = target_bytes
            self._settle(g)

    def set_config(self, guest_id: str, changes: dict[str, Any]) -> None:
        with self.lock:
            g = self.guests[guest_id]
            for k, v in changes.items():
                if k == "stats_period_seconds":
                    g.stats_period = int(v)
                    self._report()
                else:
                    g.config[k] = v
            if self.flavor == "esxi" and "limit_bytes" in changes:
                g.target_bytes = (
                    changes["limit_bytes"] if changes["limit_bytes"] is not None else g.memory_bytes
                )
            if self.flavor == "hyperv":
                if "maximum_bytes" in changes and g.config.get("dynamic"):
                    g.target_bytes = g.config["maximum_bytes"]
                if "startup_bytes" in changes and not g.config.get("dynamic"):
                    g.target_bytes = g.config["startup_bytes"]
            if "maximum_bytes" in changes and self.flavor == "kvm":
                g.memory_bytes = changes["maximum_bytes"]
            self._settle(g)

    def report_age(self, g: Guest) -> float | None:
        if g.last_report_at is None:
            return None
        return self.now - g.last_report_at

    def snapshot(self) -> dict[str, Any]:
        """A plain-data picture of the host and guests (for recording and debugging)."""
        with self.lock:
            return {
                "now": self.now,
                "host": vars(self.host).copy(),
                "guests": {
                    g.name: {k: v for k, v in vars(g).items() if k not in {"config", "workload"}}
                    for g in self.guests.values()
                },
            }
