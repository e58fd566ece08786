"""The rule cases of each hypervisor kind, for :class:`~hvballoon.testing.conformance.KindRuleTests`.

Each :class:`Case` names a rule of a kind (:mod:`hvballoon.kinds`) — or ``None`` for a change the
kind allows — the VM it needs (a :class:`Need`: power state, variant, balloon device) and the
call to make, built from that VM's current configuration and stats. The same cases run on the
fake's flavour of a kind and on every real peer of it: a refusal must come with the rule's error
class and id and change nothing; an allowed change must apply and read back.

:func:`rules_scenario` is a fake world (also the WinRM peer's) with a VM for every need.

>>> sorted({c.rule for c in cases_for("esxi") if c.rule})[:3]
['balloon_cap_only_when_off', 'memory_hot_add_grow_only', 'memory_hot_add_increment']
>>> len(rules_scenario("hyperv").vms)
4
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hvballoon.fake.scenario import Scenario, parse_scenario
from hvballoon.kinds import KINDS
from hvballoon.kinds.esxi import HOT_ADD, HOT_ADD_INCREMENT, HOT_ADD_LIMIT
from hvballoon.kinds.kvm import HOTPLUG_MAXIMUM, HUGEPAGE_BYTES, has_balloon_device, numa_nodes
from hvballoon.models import VM, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import GiB, KiB, MiB

__all__ = ["CASES", "MARK_CASE_KEY", "Call", "Case", "Need", "cases_for", "rules_scenario"]


@dataclass(frozen=True)
class Need:
    """The VM a case needs: its power state, its kind variant, whether it has a balloon device,
    whether it has guest NUMA nodes (KVM; a case that does not ask for them needs a VM without),
    whether memory hot-add is on (ESXi; likewise)."""

    state: Literal["running", "off"] = "running"
    variant: str | None = None
    balloon: bool | None = None
    numa: bool = False
    hot_add: bool = False
    hotplug: bool = False
    hugepages: bool = False

    @property
    def key(self) -> str:
        """``running``, ``off/static``, ``running/no-balloon`` …: what a peer offers."""
        parts: list[str] = [self.state]
        if self.variant is not None:
            parts.append(self.variant)
        if self.balloon is False:
            parts.append("no-balloon")
        if self.numa:
            parts.append("numa")
        if self.hot_add:
            parts.append("hot-add")
        if self.hotplug:
            parts.append("hotplug")
        if self.hugepages:
            parts.append("hugepages")
        return "/".join(parts)

    def matches(self, vm: VM, config: MemoryConfig, kind_name: str) -> bool:
        power = PowerState.RUNNING if self.state == "running" else PowerState.STOPPED
        if vm.power_state is not power:
            return False
        if self.variant is not None and KINDS[kind_name].variant_of(config).name != self.variant:
            return False
        if (numa_nodes(config) > 0) is not self.numa:
            return False
        if bool(config.extra.get(HOT_ADD)) is not self.hot_add:
            return False
        if (config.extra.get(HOTPLUG_MAXIMUM) is not None) is not self.hotplug:
            return False
        if (config.extra.get(HUGEPAGE_BYTES) is not None) is not self.hugepages:
            return False
        return self.balloon is None or has_balloon_device(config) is self.balloon


@dataclass(frozen=True)
class Call:
    """``set_config(vm, **kwargs)``, ``set_target(vm, size, force=…)`` or
    ``set_mark(vm, key, value)``."""

    op: Literal["config", "target", "mark"]
    kwargs: dict[str, Any]


Builder = Callable[[MemoryConfig, MemoryStats, int], Call]
"""(current config, current stats, the guard rails' floor of the VM) -> the call."""

Expectation = Callable[[MemoryConfig, MemoryStats], "str | None"]
"""(config read after the change, stats read after it) -> what is wrong, or ``None``."""


@dataclass(frozen=True)
class Case:
    """One rule (or allowed change) of a kind, on a VM in a given state."""

    kind: str
    name: str
    need: Need
    call: Builder
    rule: str | None = None
    #: A change applied first (allowed), e.g. a reservation for a target to fall below.
    setup: Builder | None = None
    #: For an allowed change: what else the hypervisor moves with it, checked on the VM's
    #: configuration and stats read afterwards (a message saying what is wrong, or ``None``).
    expect: Expectation | None = None

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.rule or 'allowed'}-{self.name}"


def _config(**kw: Any) -> Builder:
    return lambda cfg, st, floor: Call("config", kw)


def _mb(n: int | None) -> int:
    assert n is not None, "the VM must report this size"
    return n


def _boot_size_is_target(cfg: MemoryConfig, st: MemoryStats) -> str | None:
    """A target set on a stopped domain is its ``<currentMemory>``: the size it boots with."""
    if cfg.startup_bytes != st.target_bytes:
        return f"the target reads {st.target_bytes} but the boot size (currentMemory) {cfg.startup_bytes}"
    return None


def _boot_size_follows_maximum(cfg: MemoryConfig, st: MemoryStats) -> str | None:
    """libvirt lowers ``<currentMemory>`` with ``<memory>`` (it is never above it): the target
    of a stopped domain, and its boot size, are the new maximum."""
    if st.target_bytes != cfg.maximum_bytes or cfg.startup_bytes != cfg.maximum_bytes:
        return (
            f"after lowering the maximum to {cfg.maximum_bytes} below the target, the target reads "
            f"{st.target_bytes} and the boot size (currentMemory) {cfg.startup_bytes}"
        )
    return None


# -- KVM ---------------------------------------------------------------------------------------

#: The mark the mark cases set (a key no controller uses).
MARK_CASE_KEY = "hvballoon.conformance.case"

_KVM = [
    Case("kvm", "maximum-live", Need("running"), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + GiB}), "maximum_only_when_off"),
    Case("kvm", "deflate-live", Need("running", balloon=True), lambda c, s, f: Call("config", {"deflate_on_oom": not c.deflate_on_oom}), "deflate_on_oom_only_when_off"),
    Case("kvm", "free-page-reporting-live", Need("running", balloon=True), lambda c, s, f: Call("config", {"free_page_reporting": not c.free_page_reporting}), "free_page_reporting_only_when_off"),
    Case("kvm", "maximum-numa", Need("off", numa=True), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + GiB}), "maximum_fixed_by_numa"),
    Case("kvm", "maximum-above-hotplug", Need("off", hotplug=True), lambda c, s, f: Call("config", {"maximum": _mb(c.extra.get(HOTPLUG_MAXIMUM)) + GiB}), "maximum_above_hotplug_maximum"),
    Case("kvm", "maximum-below-huge-page", Need("off", hugepages=True), lambda c, s, f: Call("config", {"maximum": _mb(c.extra.get(HUGEPAGE_BYTES)) // 2}), "maximum_below_huge_page"),
    Case("kvm", "maximum-not-whole-huge-pages", Need("off", hugepages=True), lambda c, s, f: Call("config", {"maximum": _mb(c.extra.get(HUGEPAGE_BYTES)) * 3 // 2})),
    Case("kvm", "maximum-byte", Need("off"), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + GiB + 512}), "whole_KiB"),
    Case("kvm", "target-no-device", Need("running", balloon=False), lambda c, s, f: Call("target", {"size": _mb(s.configured_bytes), "force": True}), "no_balloon_device"),
    Case("kvm", "deflate-no-device", Need("running", balloon=False), lambda c, s, f: Call("config", {"deflate_on_oom": True}), "no_balloon_device"),
    Case("kvm", "period-no-device", Need("running", balloon=False), lambda c, s, f: Call("config", {"stats_period": (c.stats_period_seconds or 0) + 7}), "no_balloon_device"),
    Case("kvm", "buffer", Need("running"), _config(buffer_percent=20), "not_supported"),
    Case("kvm", "period-live", Need("running", balloon=True), lambda c, s, f: Call("config", {"stats_period": (c.stats_period_seconds or 0) + 3})),
    Case("kvm", "maximum-off", Need("off"), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + GiB})),
    Case("kvm", "target-off", Need("off"), lambda c, s, f: Call("target", {"size": _mb(c.maximum_bytes) // 2}), expect=_boot_size_is_target),
    Case("kvm", "maximum-below-target-off", Need("off"), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) // 2}), setup=lambda c, s, f: Call("target", {"size": _mb(c.maximum_bytes) * 3 // 4}), expect=_boot_size_follows_maximum),
    Case("kvm", "target-live", Need("running", balloon=True), lambda c, s, f: Call("target", {"size": f + (_mb(c.maximum_bytes) - f) // 2})),
    Case("kvm", "mark-off", Need("off"), lambda c, s, f: Call("mark", {"key": MARK_CASE_KEY, "value": "1"}), "marks_only_while_running"),
    Case("kvm", "mark-live", Need("running"), lambda c, s, f: Call("mark", {"key": MARK_CASE_KEY, "value": "1"})),
]  # fmt: skip

# -- ESXi --------------------------------------------------------------------------------------

#: A running VM with memory hot-add on, its limit and increment known.
_HOT_ADD = Need("running", hot_add=True)


def _step(cfg: MemoryConfig) -> int:
    """The VM's hot-add increment (bytes)."""
    return _mb(cfg.extra.get(HOT_ADD_INCREMENT))


def _memory_shows_grown(cfg: MemoryConfig, st: MemoryStats) -> str | None:
    """Memory hot-added shows at once in the VM's figures: its configured size and, with no
    limit, its target; what the guest has besides its balloon grows with it."""
    grown = _mb(cfg.maximum_bytes)
    if st.configured_bytes != grown or (cfg.limit_bytes is None and st.target_bytes != grown):
        return f"the memory grew to {grown}, but the stats read {st.configured_bytes} configured, {st.target_bytes} target"
    if (
        st.current_bytes is not None
        and st.ballooned_bytes is not None
        and st.current_bytes != grown - st.ballooned_bytes
    ):
        return f"the guest holds {st.current_bytes} with {st.ballooned_bytes} ballooned out of {grown}"
    return None


_ESXI = [
    Case("esxi", "memory-live", Need("running"), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + 4 * GiB}), "memory_size_only_when_off"),
    Case("esxi", "cap-live", Need("running"), _config(balloon_cap="1GiB"), "balloon_cap_only_when_off"),
    Case("esxi", "memory-2MiB", Need("off"), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + 2 * MiB}), "memory_size_4MiB"),
    Case("esxi", "reservation-KiB", Need("running"), _config(reservation=GiB + 512 * KiB), "whole_MiB"),
    Case("esxi", "reservation-above-limit", Need("running"), _config(limit="4GiB", reservation="6GiB"), "reservation_le_limit"),
    Case("esxi", "reservation-above-memory", Need("running"), lambda c, s, f: Call("config", {"limit": "unlimited", "reservation": _mb(c.maximum_bytes) + GiB}), "reservation_le_memory"),
    Case("esxi", "target-below-reservation", Need("off"), lambda c, s, f: Call("target", {"size": "1GiB"}), "target_ge_reservation", setup=_config(reservation="2GiB")),
    Case("esxi", "count-and-level", Need("running"), _config(shares=1000, shares_level="high"), "shares_need_custom_level"),
    Case("esxi", "locked-reservation", Need("running"), _config(memory_reservation_lock=True, reservation="1GiB"), "reservation_locked_to_max"),
    Case("esxi", "buffer", Need("running"), _config(buffer_percent=20), "not_supported"),
    Case("esxi", "reservation-and-limit", Need("running"), _config(reservation="1GiB", limit="12GiB")),
    Case("esxi", "shares-high", Need("running"), _config(shares_level="high")),
    Case("esxi", "shares-custom", Need("running"), _config(shares=4000)),
    Case("esxi", "lock", Need("running"), _config(memory_reservation_lock=True)),
    Case("esxi", "memory-off", Need("off"), lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + 4 * GiB})),
    Case("esxi", "target-live", Need("running"), lambda c, s, f: Call("target", {"size": f + (_mb(c.maximum_bytes) - f) // 2})),
    Case("esxi", "memory-shrink-hot-add", _HOT_ADD, lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) - _step(c)}), "memory_hot_add_grow_only"),
    Case("esxi", "memory-above-hot-add-limit", _HOT_ADD, lambda c, s, f: Call("config", {"maximum": _mb(c.extra.get(HOT_ADD_LIMIT)) + _step(c)}), "memory_hot_add_limit"),
    Case("esxi", "memory-between-increments", _HOT_ADD, lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + _step(c) + 4 * MiB}), "memory_hot_add_increment"),
    Case("esxi", "memory-hot-add", _HOT_ADD, lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + 8 * _step(c)}), expect=_memory_shows_grown),
]  # fmt: skip

# -- Hyper-V -----------------------------------------------------------------------------------

_DM_ON, _DM_OFF = Need("running", "dynamic"), Need("off", "dynamic")
_ST_ON, _ST_OFF = Need("running", "static"), Need("off", "static")

_HYPERV = [
    Case("hyperv", "maximum-1MiB", _DM_ON, lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) + 2 * GiB + MiB}), "aligned_2MiB"),
    Case("hyperv", "startup-1MiB", _ST_OFF, lambda c, s, f: Call("config", {"startup": _mb(c.startup_bytes) + MiB}), "aligned_2MiB"),
    Case("hyperv", "minimum-16MiB", _DM_OFF, _config(minimum="16MiB"), "at_least_32MiB"),
    Case("hyperv", "buffer-4", _DM_ON, _config(buffer_percent=4), "buffer_percent_range"),
    Case("hyperv", "buffer-2001", _DM_ON, _config(buffer_percent=2001), "buffer_percent_range"),
    Case("hyperv", "priority-101", _DM_ON, _config(priority=101), "priority_range"),
    Case("hyperv", "static-buffer", _ST_ON, _config(buffer_percent=30), "dynamic_memory_required"),
    Case("hyperv", "static-maximum", _ST_OFF, lambda c, s, f: Call("config", {"maximum": _mb(c.startup_bytes) * 2}), "dynamic_memory_required"),
    Case("hyperv", "turning-off-with-buffer", _DM_OFF, _config(dynamic=False, buffer_percent=30), "dynamic_memory_required"),
    Case("hyperv", "minimum-above-startup", _DM_OFF, lambda c, s, f: Call("config", {"minimum": _mb(c.startup_bytes) + 2 * MiB}), "range_order"),
    Case("hyperv", "target-below-startup", _DM_OFF, lambda c, s, f: Call("target", {"size": _mb(c.startup_bytes) - 2 * MiB}), "range_order"),
    Case("hyperv", "dm-off-live", _DM_ON, _config(dynamic=False), "dynamic_toggle_only_when_off"),
    Case("hyperv", "dm-on-live", _ST_ON, _config(dynamic=True), "dynamic_toggle_only_when_off"),
    Case("hyperv", "startup-live", _DM_ON, lambda c, s, f: Call("config", {"startup": _mb(c.startup_bytes) + 2 * MiB}), "startup_only_when_off"),
    Case("hyperv", "minimum-up-live", _DM_ON, lambda c, s, f: Call("config", {"minimum": _mb(c.minimum_bytes) + 2 * MiB}), "minimum_only_down_while_running"),
    Case("hyperv", "maximum-down-live", _DM_ON, lambda c, s, f: Call("config", {"maximum": _mb(c.maximum_bytes) - 2 * MiB}), "maximum_only_up_while_running"),
    Case("hyperv", "target-down-live", _DM_ON, lambda c, s, f: Call("target", {"size": max(f, _mb(c.maximum_bytes) - 2 * GiB)}), "maximum_only_up_while_running"),
    Case("hyperv", "shares", _DM_ON, _config(shares=1000), "not_supported"),
    Case("hyperv", "target-up-live", _DM_ON, lambda c, s, f: Call("target", {"size": _mb(c.maximum_bytes) + 8 * GiB})),
    Case("hyperv", "range-live", _DM_ON, lambda c, s, f: Call("config", {"minimum": _mb(c.minimum_bytes) - 2 * MiB, "maximum": _mb(c.maximum_bytes) + 2 * GiB, "buffer_percent": 35, "priority": 70})),
    Case("hyperv", "target-down-off", _DM_OFF, lambda c, s, f: Call("target", {"size": _mb(c.startup_bytes)})),
    Case("hyperv", "static-resize", _ST_ON, lambda c, s, f: Call("target", {"size": max(f, _mb(c.startup_bytes) - 512 * MiB)})),
    Case("hyperv", "static-priority", _ST_ON, _config(priority=15)),
    Case("hyperv", "dm-on-with-range", _ST_OFF, lambda c, s, f: Call("config", {"dynamic": True, "minimum": "512MiB", "maximum": _mb(c.startup_bytes) * 2, "buffer_percent": 25})),
    Case("hyperv", "dm-off", _DM_OFF, _config(dynamic=False, priority=40)),
]  # fmt: skip

#: Every case, by kind name.
CASES: dict[str, list[Case]] = {"kvm": _KVM, "esxi": _ESXI, "hyperv": _HYPERV}


def cases_for(kind: str, needs: frozenset[str] | None = None) -> list[Case]:
    """The cases of ``kind``, only those whose need is in ``needs`` when given."""
    return [c for c in CASES[kind] if needs is None or c.need.key in needs]


def rules_scenario(flavor: str) -> Scenario:
    """A fake world with a VM for every need of the kind's cases (the fake's flavour or a peer
    answering from the simulator). Each VM uses well under its memory, so targets have room."""
    vms: list[dict[str, Any]]
    if flavor == "hyperv":
        vms = [
            {"name": "dm-on", "memory": "16GiB", "used": "3GiB", "dynamic": True},
            {"name": "dm-off", "memory": "16GiB", "used": "3GiB", "dynamic": True, "power_state": "stopped"},
            {"name": "static-on", "memory": "8GiB", "used": "2GiB", "dynamic": False},
            {
                "name": "static-off",
                "memory": "8GiB",
                "used": "2GiB",
                "dynamic": False,
                "power_state": "stopped",
            },
        ]
    elif flavor == "esxi":
        vms = [
            {"name": "on01", "memory": "16GiB", "used": "3GiB"},
            {"name": "off01", "memory": "16GiB", "used": "3GiB", "power_state": "stopped"},
            {
                "name": "grow01",
                "memory": "16GiB",
                "used": "3GiB",
                "memory_hot_add": True,
                "hot_add_limit": "64GiB",
                "hot_add_increment": "128MiB",
            },
        ]
    else:
        vms = [
            {"name": "on01", "memory": "16GiB", "used": "3GiB"},
            {"name": "off01", "memory": "16GiB", "used": "3GiB", "power_state": "stopped"},
            {"name": "plain01", "memory": "4GiB", "used": "1GiB", "balloon_device": False},
            {"name": "numa01", "memory": "8GiB", "used": "2GiB", "power_state": "stopped", "numa_nodes": 2},
            {
                "name": "hotplug01",
                "memory": "8GiB",
                "used": "2GiB",
                "power_state": "stopped",
                "hotplug_maximum": "16GiB",
            },
            {
                "name": "huge01",
                "memory": "4GiB",
                "used": "1GiB",
                "power_state": "stopped",
                "hugepages": "1GiB",
            },
        ]
    return parse_scenario(
        {
            "name": f"rules-{flavor}",
            "flavor": flavor,
            "host": {"name": "host01", "physical": "64GiB"},
            "vms": vms,
        },
        source=f"rules_scenario({flavor!r})",
    )
