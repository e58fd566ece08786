"""The host and one guest of the simulated world, as plain objects over its state.

>>> from hvballoon.fake.scenario import load_scenario
>>> from hvballoon.fake.world import World
>>> w = World(load_scenario("seed"))
>>> g = w.guest("db01")
>>> g.memory_bytes // 2**30, g.running, g.report()["total"] // 2**30
(16, True, 16)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hvballoon.models import ConfigUpdate

if TYPE_CHECKING:
    from hvballoon.fake.world import World

__all__ = ["Guest", "Host"]


@dataclass
class Host:
    name: str
    physical_bytes: int
    overhead_bytes: int = 0
    reserve_bytes: int = 0
    swap_bytes: int = 0


class Guest:
    """A view of one guest in the world's state (sizes in bytes, times in virtual seconds)."""

    __slots__ = ("_i", "_w", "config", "id", "label", "name")

    def __init__(self, world: World, index: int) -> None:
        self._w = world
        self._i = index
        self.id = world.ids[index]
        self.name = world.names[index]
        self.label = world.labels[index]  # the name, made unique (``name#2``) where it is shared
        self.config: dict[str, Any] = world.configs[index]

    @property
    def index(self) -> int:
        return self._i

    @property
    def power_state(self) -> str:
        return "stopped" if self.crashed else self._w.power[self._i]

    @property
    def running(self) -> bool:
        return self.power_state == "running"

    @property
    def run(self) -> int | None:
        """The VM's run (libvirt's domain ID): a new one each time it starts, ``None`` while it
        is off."""
        return None if self.crashed else self._w.runs[self._i]

    @property
    def crashed(self) -> bool:
        return bool(self._w.state.crashed[self._i])

    @crashed.setter
    def crashed(self, value: bool) -> None:
        if value:
            self._w.crash(self._i, reason="crashed")
        else:
            self._w.state.crashed[self._i] = 0.0

    @property
    def memory_bytes(self) -> int:
        return int(self._w.state.memory[self._i])

    @property
    def current_bytes(self) -> int:
        return int(self._w.state.current[self._i])

    @property
    def target_bytes(self) -> int:
        return int(self._w.state.target[self._i])

    @property
    def demand_bytes(self) -> int:
        return int(self._w.state.effective_demand[self._i])

    @property
    def used_bytes(self) -> int:
        return int(self._w.state.used[self._i])

    @property
    def cache_bytes(self) -> int:
        return int(self._w.state.cache[self._i])

    @property
    def free_bytes(self) -> int:
        return int(self._w.state.free[self._i])

    @property
    def ballooned_bytes(self) -> int:
        return max(0, self.memory_bytes - self.current_bytes) if self.running else 0

    @property
    def unfreeable_bytes(self) -> int:
        return int(self._w.state.unfreeable[self._i])

    @property
    def kernel_bytes(self) -> int:
        return int(self._w.state.kernel[self._i])

    @property
    def swap_bytes(self) -> int:
        return int(self._w.state.swap_size[self._i])

    @property
    def guest_swapped_bytes(self) -> int:
        return int(self._w.state.guest_swapped[self._i])

    @property
    def swap_in_bytes(self) -> int:
        return int(self._w.state.swap_in[self._i])

    @property
    def swap_out_bytes(self) -> int:
        return int(self._w.state.swap_out[self._i])

    @property
    def major_faults(self) -> int:
        return int(self._w.state.major_faults[self._i])

    @property
    def oom_events(self) -> int:
        return int(self._w.state.oom_events[self._i])

    @property
    def host_backed_bytes(self) -> int:
        return int(self._w.state.host_backed[self._i])

    @property
    def host_swapped_bytes(self) -> int:
        return int(self._w.state.host_swapped[self._i])

    @property
    def compressed_bytes(self) -> int:
        return int(self._w.state.compressed[self._i])

    @property
    def shared_bytes(self) -> int:
        return int(self._w.state.shared[self._i])

    @property
    def compression_cache_bytes(self) -> int:
        """ESXi: the host memory the VM's compression cache holds (its compressed pages, half
        their size); 0 elsewhere."""
        return int(self._w.state.compression_cache[self._i])

    @property
    def host_resident_bytes(self) -> int:
        return max(
            0, self.host_backed_bytes - self.host_swapped_bytes - self.compressed_bytes - self.shared_bytes
        )

    @property
    def balloon_driver(self) -> bool:
        return bool(self._w.state.balloon_driver[self._i])

    @property
    def stats_period(self) -> int:
        return int(self._w.state.stats_period[self._i])

    @stats_period.setter
    def stats_period(self, value: int) -> None:
        self._w.set_config(self.id, ConfigUpdate(stats_period_seconds=int(value)))

    @property
    def last_report_at(self) -> float | None:
        v = float(self._w.state.last_report[self._i])
        return None if math.isnan(v) else v

    def report(self) -> dict[str, int] | None:
        """The guest driver's last report (``None`` until it has reported)."""
        if self.last_report_at is None:
            return None
        s, i = self._w.state, self._i
        return {
            "total": int(s.report_total[i]),
            "used": int(s.report_used[i]),
            "free": int(s.report_free[i]),
            "cache": int(s.report_cache[i]),
            "swin": int(s.report_swap_in[i]),
            "swout": int(s.report_swap_out[i]),
            "majf": int(s.report_major_faults[i]),
        }

    def __repr__(self) -> str:
        return f"<Guest {self.name} {self.power_state} current={self.current_bytes}>"
