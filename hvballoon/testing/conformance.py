"""The conformance suite every backend must pass (fsspec's abstract-tests pattern).

Inherit :class:`BackendConformance` in a test module and provide a ``hv`` fixture that yields a
connected :class:`hvballoon.Hypervisor` whose VMs the tests may change (a fresh one per test,
or one whose changes are undone)::

    import pytest
    import hvballoon
    from hvballoon.testing.conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def hv(self):
            with hvballoon.connect("mine://host") as session:
                yield session

Class attributes tune it for peers whose figures move on their own (a real guest):
``volatile_fields`` are not compared between bulk and per-VM reads, ``wait_timeout`` bounds
``wait_for_target``, ``host_volatile_fields`` are the VM sums of :class:`~hvballoon.HostStats`
not compared with a separate sweep (a real guest's balloon may move between two reads).

A backend of a built-in hypervisor kind also inherits :class:`KindRuleTests`: every rule its
kind documents, and the changes it allows, one parametrized test each (the cases are in
:mod:`hvballoon.testing.cases`), on VMs in the states each case needs::

    class TestMyKVMRules(KindRuleTests):
        kind_name = "kvm"
        rule_needs = frozenset({"running", "off", "running/no-balloon"})  # what the peer offers

        @pytest.fixture
        def hv(self):
            ...  # a session whose VMs include one per need; changes may be applied
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from hvballoon.errors import (
    HVBalloonError,
    InvalidRequestError,
    InvalidStateError,
    PartialChangeError,
    TargetAboveMaximumError,
    TargetBelowFloorError,
    TargetNotObservableWarning,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.models import (
    CONFIG_FIELDS,
    VM,
    Capabilities,
    Change,
    ConfigUpdate,
    HostStats,
    MemoryConfig,
    MemoryStats,
    PowerState,
)
from hvballoon.session import Hypervisor
from hvballoon.testing.cases import Call, Case, cases_for
from hvballoon.units import MiB, align

__all__ = [
    "BackendConformance",
    "BulkTargetTests",
    "CapabilityTests",
    "ConfigTests",
    "ErrorTests",
    "HostStatsTests",
    "KindRuleTests",
    "ListingTests",
    "RestingVMTests",
    "StatsTests",
    "TargetTests",
]

_SIZE_FIELDS = [n for n, f in MemoryStats.model_fields.items() if n.endswith("_bytes")]
#: What a guest reports of itself (none of it without a running guest).
_GUEST_FIGURES = [
    n for n in MemoryStats.model_fields if n.startswith(("guest_", "swap_")) or n == "major_faults"
]
#: ``set_config`` keywords with a sample value, by the config field they set.
_SAMPLE_CONFIG: dict[str, dict[str, Any]] = {o.field: {o.keyword: o.sample} for o in ConfigUpdate.options()}


class _Base:
    volatile_fields: ClassVar[frozenset[str]] = frozenset(
        {"collected_at", "guest_report_age_seconds", "extra"}
    )
    wait_timeout: ClassVar[float] = 60.0
    host_volatile_fields: ClassVar[frozenset[str]] = frozenset()

    @staticmethod
    def running_vms(hv: Hypervisor) -> list[VM]:
        return [v for v in hv.list_vms() if v.power_state is PowerState.RUNNING]

    @staticmethod
    def movable(hv: Hypervisor) -> list[tuple[VM, MemoryStats, MemoryConfig, Capabilities]]:
        """Running VMs with fresh stats whose target can be set live."""
        out = []
        for st in hv.get_stats():
            if st.vm.power_state is not PowerState.RUNNING or st.stale or st.used_bytes is None:
                continue
            caps = hv.vm_capabilities(st.vm)
            if caps.can_set("target", running=True):
                out.append((st.vm, st, hv.get_config(st.vm), caps))
        return out

    @classmethod
    def goals(cls, hv: Hypervisor) -> Iterator[tuple[VM, MemoryStats, Capabilities, int]]:
        """Each movable VM with room to move, and a new target in the middle of its window."""
        for vm, st, cfg, caps in cls.movable(hv):
            lo, hi = cls.window(hv, st, cfg, caps)
            if lo >= hi:
                continue
            goal = align(lo + (hi - lo) // 2, caps.alignment_bytes, "up")
            yield vm, st, caps, (hi if goal == st.target_bytes else goal)

    @staticmethod
    def window(hv: Hypervisor, st: MemoryStats, cfg: MemoryConfig, caps: Capabilities) -> tuple[int, int]:
        used = st.used_bytes
        assert used is not None
        floor = hv.guard_rails.floor(used, st.configured_bytes)
        maximum = hv.backend.target_ceiling(st.vm, st, cfg)
        assert maximum is not None, f"no ceiling known for {st.vm.name}"
        return align(floor, caps.alignment_bytes, "up"), maximum


class ListingTests(_Base):
    def test_vms_listed_with_unique_ids(self, hv: Hypervisor) -> None:
        vms = hv.list_vms()
        assert vms, "the peer must have at least one VM"
        ids = [v.id for v in vms]
        assert len(ids) == len(set(ids))
        assert all(v.name and v.backend == hv.backend_name for v in vms)

    def test_resolve_by_name_id_and_vm(self, hv: Hypervisor) -> None:
        vm = hv.list_vms()[0]
        assert hv.resolve(vm.id).id == vm.id
        assert hv.resolve(vm).id == vm.id
        if [v.name for v in hv.list_vms()].count(vm.name) == 1:
            assert hv.resolve(vm.name).id == vm.id


class StatsTests(_Base):
    def test_bulk_stats_cover_every_vm_once(self, hv: Hypervisor) -> None:
        ids = sorted(v.id for v in hv.list_vms())
        assert sorted(s.vm.id for s in hv.get_stats()) == ids

    def test_bulk_equals_per_vm(self, hv: Hypervisor) -> None:
        bulk = {s.vm.id: s for s in hv.get_stats()}
        for vm in hv.list_vms():
            (one,) = hv.get_stats([vm])
            a = bulk[vm.id].model_dump(exclude=set(self.volatile_fields))
            b = one.model_dump(exclude=set(self.volatile_fields))
            assert a == b, f"bulk and per-VM stats differ for {vm.name}"

    def test_sizes_are_bytes_and_unknown_is_none(self, hv: Hypervisor) -> None:
        caps = hv.capabilities
        for st in hv.get_stats():
            vcaps = hv.vm_capabilities(st.vm)
            readable = caps.readable | vcaps.readable
            for name in _SIZE_FIELDS:
                value = getattr(st, name)
                if name not in readable:
                    assert value is None, f"{name} is not declared readable but has {value!r}"
                elif value is not None:
                    assert isinstance(value, int) and value >= 0
            if st.configured_bytes is not None:
                # a KiB or MB figure left unconverted would be absurdly small
                assert st.configured_bytes >= 16 * MiB, f"configured_bytes of {st.vm.name} is not in bytes"
                for name in ("current_bytes", "guest_used_bytes", "guest_total_bytes"):
                    value = getattr(st, name)
                    if value is not None:
                        assert value <= st.configured_bytes * 1.05 + 64 * MiB, f"{name} exceeds configured"
            if st.vm.power_state is PowerState.RUNNING and not st.stale:
                assert st.used_bytes is not None, "fresh stats of a running VM must say what it uses"

    def test_config_of_every_vm(self, hv: Hypervisor) -> None:
        for vm in hv.list_vms():
            cfg = hv.get_config(vm)
            assert isinstance(cfg, MemoryConfig) and cfg.vm.id == vm.id


class CapabilityTests(_Base):
    def test_capabilities_are_declared(self, hv: Hypervisor) -> None:
        caps = hv.capabilities
        assert isinstance(caps, Capabilities)
        assert caps.readable <= set(MemoryStats.model_fields)
        assert caps.set_live | caps.set_offline <= {"target", *CONFIG_FIELDS}
        assert caps.alignment_bytes >= 1

    def test_declared_unsupported_config_raises(self, hv: Hypervisor) -> None:
        kind = hv.backend.kind
        for vm in hv.list_vms():
            caps = hv.vm_capabilities(vm)
            for name in sorted(set(CONFIG_FIELDS) - caps.set_live - caps.set_offline):
                with pytest.raises(HVBalloonError) as info:
                    hv.set_config(vm, **_SAMPLE_CONFIG[name])
                err = info.value
                if not isinstance(err, UnsupportedOperationError):
                    # a field the kind refuses with a rule of its own (Hyper-V: the range of a
                    # static VM needs Dynamic Memory), with that rule's error class
                    assert kind is not None, f"{name}: {err!r}"
                    assert type(err) is kind.rule(err.details["rule"]).error, f"{name}: {err!r}"


class TargetTests(_Base):
    def test_set_target_is_idempotent(self, hv: Hypervisor) -> None:
        vm, st, cfg, caps = self.movable(hv)[0]
        lo, hi = self.window(hv, st, cfg, caps)
        current = st.target_bytes
        if current is None or not lo <= current <= hi or current % caps.alignment_bytes:
            current = hi
        first = hv.set_target(vm, current)
        second = hv.set_target(vm, current)
        assert second.changed is False
        assert second.before == second.after == first.after

    def first_accepted(
        self, hv: Hypervisor, *, dry_run: bool
    ) -> tuple[VM, MemoryStats, int, Change, Capabilities]:
        """Set a mid-window target on the first VM whose live rules accept one."""
        for vm, st, caps, goal in self.goals(hv):
            try:
                change = hv.set_target(vm, goal, dry_run=dry_run)
            except InvalidStateError:
                continue  # a live-change rule of this VM (e.g. Hyper-V Dynamic Memory)
            return vm, st, goal, change, caps
        raise AssertionError("no VM accepted a target inside its safe window")

    def test_set_target_applies_and_reads_back(self, hv: Hypervisor) -> None:
        vm, _, goal, change, caps = self.first_accepted(hv, dry_run=False)
        assert isinstance(change, Change) and change.changed and change.after["target_bytes"] == goal
        if caps.target_observable:
            reached = hv.wait_for_target(vm, timeout=self.wait_timeout)
            assert abs((reached.current_bytes or 0) - goal) <= max(caps.alignment_bytes, 2 * MiB, goal // 200)
        (after,) = hv.get_stats([vm])
        assert after.target_bytes == goal
        assert hv.set_target(vm, goal).changed is False

    def test_a_wait_warns_exactly_when_it_cannot_watch(self, hv: Hypervisor) -> None:
        """Where the capabilities say a target cannot be observed, waiting returns the stats at
        once with a TargetNotObservableWarning; elsewhere it watches, without that warning."""
        vm = self.running_vms(hv)[0]
        caps = hv.vm_capabilities(vm)
        (st,) = hv.get_stats([vm])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reached = hv.wait_for_target(vm, target=st.current_bytes, timeout=self.wait_timeout)
        told = [w.message for w in caught if issubclass(w.category, TargetNotObservableWarning)]
        assert reached.vm.id == vm.id
        if caps.target_observable:
            assert told == []
        else:
            assert len(told) == 1 and getattr(told[0], "vm", None) == vm.name

    def test_above_maximum_is_refused_even_forced(self, hv: Hypervisor) -> None:
        vm, st, cfg, caps = self.movable(hv)[0]
        _, hi = self.window(hv, st, cfg, caps)
        for force in (False, True):
            with pytest.raises(TargetAboveMaximumError) as info:
                hv.set_target(vm, hi + 1024 * MiB, force=force)
            assert info.value.details["maximum_bytes"] == hi
            assert info.value.details["rule"] == "target_above_maximum"
        assert hv.get_stats([vm])[0].target_bytes == st.target_bytes

    def test_below_floor_is_refused_without_force(self, hv: Hypervisor) -> None:
        vm, st, cfg, caps = self.movable(hv)[0]
        lo, _ = self.window(hv, st, cfg, caps)
        low = max(caps.alignment_bytes, align(lo // 4, caps.alignment_bytes, "down"))
        with pytest.raises(TargetBelowFloorError) as info:
            hv.set_target(vm, low)
        details = info.value.details
        assert details["rule"] == "below_floor" and details["target_bytes"] == low
        # the floor is what the guest used when the session read it (a real guest's use moves
        # between two reads, so it is checked against the refusal's own figures)
        assert details["floor_bytes"] == details["used_bytes"] + details["margin_bytes"] > low
        assert (
            details["margin_bytes"]
            == hv.guard_rails.floor(details["used_bytes"], st.configured_bytes) - details["used_bytes"]
        )
        if "guest_used_bytes" not in self.volatile_fields and "demand_bytes" not in self.volatile_fields:
            assert details["used_bytes"] == st.used_bytes
        assert hv.get_stats([vm])[0].target_bytes == st.target_bytes

    def test_dry_run_changes_nothing(self, hv: Hypervisor) -> None:
        vm, st, goal, change, _ = self.first_accepted(hv, dry_run=True)
        assert change.dry_run and change.changed and change.after["target_bytes"] == goal
        assert hv.get_stats([vm])[0].target_bytes == st.target_bytes

    def test_a_dry_run_plans_what_the_change_does(self, hv: Hypervisor) -> None:
        """The same target as a dry run and then for real: the plan is the change (but for the
        dry-run flag), and a second plan sees nothing left to do."""
        vm, _, goal, plan, _ = self.first_accepted(hv, dry_run=True)
        done = hv.set_target(vm, goal)

        def said(ch: Change) -> tuple[Any, ...]:
            # what the guest has now moves on its own between two calls
            moving = ("current_bytes", "used_bytes")
            sides = [{k: v for k, v in d.items() if k not in moving} for d in (ch.before, ch.after)]
            return ch.changed, ch.forced, ch.mechanism, *sides

        assert said(plan) == said(done)
        again = hv.set_target(vm, goal, dry_run=True)
        assert not again.changed and said(again)[3] == said(again)[4] == said(done)[4]


class HostStatsTests(_Base):
    """The host picture's invariants: its figures agree with each other and with the VM sweep."""

    @staticmethod
    def by_host(hosts: list[HostStats], stats: list[MemoryStats]) -> dict[str, list[MemoryStats]]:
        """The sweep's VMs per host (one host: all of them, whatever name they give it)."""
        if len(hosts) == 1:
            return {hosts[0].host: stats}
        return {h.host: [s for s in stats if s.vm.host == h.host] for h in hosts}

    def test_host_figures_are_consistent(self, hv: Hypervisor) -> None:
        hosts = hv.get_host_stats()
        assert hosts, "every connection has at least one host"
        assert len({h.host for h in hosts}) == len(hosts), "host names are unique"
        for h in hosts:
            assert isinstance(h, HostStats) and h.host and h.backend == hv.backend_name
            assert h.collected_at.tzinfo is not None
            if h.physical_bytes is not None:
                assert h.physical_bytes >= 64 * MiB, f"physical_bytes of {h.host} is not in bytes"
                for name in ("free_bytes", "used_bytes", "hypervisor_overhead_bytes"):
                    value = getattr(h, name)
                    assert value is None or value <= h.physical_bytes, f"{name} exceeds physical"
                if h.free_bytes is not None and h.used_bytes is not None:
                    assert h.used_bytes + h.free_bytes == h.physical_bytes, "used + free != physical"
            if h.swap_total_bytes is not None and h.swap_used_bytes is not None:
                assert h.swap_used_bytes <= h.swap_total_bytes
            if h.vm_configured_bytes is not None and h.physical_bytes:
                assert h.overcommit_ratio == round(h.vm_configured_bytes / h.physical_bytes, 4)
            else:
                assert h.overcommit_ratio is None
            assert HostStats.model_validate(h.model_dump()) == h

    def test_a_huge_page_pool_is_told_whole(self, hv: Hypervisor) -> None:
        """A host that tells its huge-page pool (``extra["hugepage_pool_bytes"]``, the kvm
        backend's keys) tells its free part too, and each size's pages add up to it."""
        for h in hv.get_host_stats():
            if "hugepage_pool_bytes" not in h.extra:
                continue
            pool, free = h.extra["hugepage_pool_bytes"], h.extra.get("hugepage_pool_free_bytes", "missing")
            assert free != "missing", f"{h.host} tells its pool but not its free part"
            if pool is None:
                continue
            pools = h.extra["hugepage_pools"]
            assert all(set(p) == {"page_bytes", "pages", "free_pages"} for p in pools), pools
            assert sum(p["page_bytes"] * p["pages"] for p in pools) == pool
            if free is not None:
                assert 0 <= free <= pool
                assert free == sum(p["page_bytes"] * p["free_pages"] for p in pools)
                assert all(0 <= p["free_pages"] <= p["pages"] for p in pools), pools

    def test_vm_sums_match_the_sweep(self, hv: Hypervisor) -> None:
        hosts = hv.get_host_stats()
        stats = hv.get_stats()
        sums = {
            "vm_configured_bytes": "configured_bytes",
            "vm_current_bytes": "current_bytes",
            "ballooned_bytes": "ballooned_bytes",
        }
        groups = self.by_host(hosts, stats)
        placed = sum(1 for g in groups.values() for s in g if s.vm.power_state is PowerState.RUNNING)
        assert placed == sum(1 for s in stats if s.vm.power_state is PowerState.RUNNING), (
            "every running VM belongs to a host"
        )
        for h in hosts:
            running = [s for s in groups[h.host] if s.vm.power_state is PowerState.RUNNING]
            unknown = any(s.vm.power_state is PowerState.UNKNOWN for s in groups[h.host])
            assert h.vms_running == (None if unknown else len(running)), f"vms_running of {h.host}"
            for host_field, vm_field in sums.items():
                if host_field in self.host_volatile_fields:
                    continue
                values = [getattr(s, vm_field) for s in running]
                expected = None if None in values or unknown else sum(v for v in values if v is not None)
                assert getattr(h, host_field) == expected, f"{host_field} of {h.host} != the sweep's sum"

    def test_a_given_sweep_is_summed_not_read_again(self, hv: Hypervisor) -> None:
        stats = hv.get_stats()
        fresh = {h.host: h for h in hv.get_host_stats()}
        given = hv.get_host_stats(vm_stats=stats)
        assert {h.host for h in given} == set(fresh)
        groups = self.by_host(given, stats)
        for h in given:
            running = [s for s in groups[h.host] if s.vm.power_state is PowerState.RUNNING]
            unknown = any(s.vm.power_state is PowerState.UNKNOWN for s in groups[h.host])
            assert h.vms_running == (None if unknown else len(running))
            values = [s.configured_bytes for s in running]
            expected = None if None in values or unknown else sum(v or 0 for v in values)
            assert h.vm_configured_bytes == expected
            assert h.physical_bytes == fresh[h.host].physical_bytes
        with pytest.raises(InvalidRequestError):
            hv.get_host_stats(vm_stats=["not a sweep"])  # type: ignore[list-item]


class BulkTargetTests(_Base):
    """``set_targets``: one result per VM, everything checked before anything is applied."""

    @classmethod
    def accepted(cls, hv: Hypervisor, count: int) -> list[tuple[VM, int, int | None]]:
        """Up to ``count`` VMs with a new target their guard rails and live rules accept (a dry
        run says so): ``(vm, goal, target now)``."""
        out: list[tuple[VM, int, int | None]] = []
        for vm, st, _caps, goal in cls.goals(hv):
            try:
                if not hv.set_target(vm, goal, dry_run=True).changed:
                    continue
            except HVBalloonError:
                continue  # a live-change rule of this VM (e.g. Hyper-V Dynamic Memory)
            out.append((vm, goal, st.target_bytes))
            if len(out) == count:
                break
        assert out, "no VM accepted a target inside its safe window"
        return out

    @staticmethod
    def targets_now(hv: Hypervisor, vms: list[VM]) -> list[int | None]:
        return [s.target_bytes for s in hv.get_stats(vms)]

    def test_set_targets_gives_one_result_per_vm(self, hv: Hypervisor) -> None:
        picked = self.accepted(hv, 3)
        res = hv.set_targets([(vm, goal) for vm, goal, _ in picked])
        assert list(res) == [vm.id for vm, _, _ in picked]
        assert res.ok and res.applied and res.error is None
        for vm, goal, _ in picked:
            change = res[vm.id]
            assert isinstance(change, Change) and change.changed and change.after["target_bytes"] == goal
        assert res.made == {vm.id for vm, _, _ in picked}
        assert self.targets_now(hv, [vm for vm, _, _ in picked]) == [goal for _, goal, _ in picked]

    def test_a_refusal_in_the_middle_changes_nothing_else(self, hv: Hypervisor) -> None:
        picked = self.accepted(hv, 2)
        (first, goal, _), rest = picked[0], picked[1:]
        ghost = "no-such-vm-\u2019; $(rm -rf /)"
        request: list[tuple[VM | str, int | str]] = [(first, goal), (ghost, "1GiB")]
        request += [(vm, g) for vm, g, _ in rest]
        res = hv.set_targets(request)
        assert not res.applied and not res.made and not res.ok
        assert isinstance(res[ghost], VMNotFoundError)
        assert res.error is not None and res.error.code == "vm_not_found"
        for vm, _, _ in picked:
            change = res[vm.id]
            assert isinstance(change, Change) and change.dry_run
            assert any("not applied" in w for w in change.warnings)
        assert self.targets_now(hv, [vm for vm, _, _ in picked]) == [b for _, _, b in picked]

    def test_set_targets_skip_invalid_applies_the_others(self, hv: Hypervisor) -> None:
        (vm, goal, _), *_ = self.accepted(hv, 1)
        res = hv.set_targets([(vm, goal), ("no-such-vm", "1GiB")], skip_invalid=True)
        assert res.applied and res.made == {vm.id}
        assert isinstance(res.error, PartialChangeError) and res.error.details["not_applied"] == [
            "no-such-vm"
        ]
        assert self.targets_now(hv, [vm]) == [goal]

    def test_set_targets_dry_run_changes_nothing(self, hv: Hypervisor) -> None:
        picked = self.accepted(hv, 3)
        res = hv.set_targets([(vm, goal) for vm, goal, _ in picked], dry_run=True)
        assert res.ok and not res.applied and not res.made
        assert all(isinstance(c, Change) and c.dry_run and c.changed for c in res.values())
        assert self.targets_now(hv, [vm for vm, _, _ in picked]) == [b for _, _, b in picked]

    def test_set_targets_is_idempotent(self, hv: Hypervisor) -> None:
        picked = self.accepted(hv, 3)
        request = [(vm, goal) for vm, goal, _ in picked]
        first = hv.set_targets(request)
        second = hv.set_targets(request)
        assert first.ok and second.ok and not second.made
        for vm, goal, _ in picked:
            change = second[vm.id]
            assert isinstance(change, Change) and not change.changed
            assert change.before == change.after == {"target_bytes": goal}


class ConfigTests(_Base):
    def test_empty_config_change_is_refused(self, hv: Hypervisor) -> None:
        with pytest.raises(InvalidRequestError):
            hv.set_config(hv.list_vms()[0])


class ErrorTests(_Base):
    def test_unknown_vm(self, hv: Hypervisor) -> None:
        ghost = "no-such-vm-\u2019; $(rm -rf /)"
        with pytest.raises(VMNotFoundError):
            hv.get_stats([ghost])
        with pytest.raises(VMNotFoundError):
            hv.get_config(ghost)
        with pytest.raises(VMNotFoundError):
            hv.vm_capabilities(ghost)
        with pytest.raises(VMNotFoundError):
            hv.set_target(ghost, "1GiB")

    def test_only_hvballoon_errors_escape(self, hv: Hypervisor) -> None:
        vm = hv.list_vms()[0]
        bad_calls: list[Callable[[], object]] = [
            lambda: hv.set_target(vm, "4 gigs"),
            lambda: hv.set_target(vm, "4G"),
            lambda: hv.set_target(vm, -1),
            lambda: hv.set_target(vm, "nan GiB"),
            lambda: hv.set_target(vm, 10**30),
            lambda: hv.set_target("", "1GiB"),
            lambda: hv.set_config(vm, buffer_percent=1),
            lambda: hv.set_config(vm, priority=101),
            lambda: hv.set_config(vm, minimum="lots"),
            lambda: hv.wait_for_target(vm, timeout=-1),
        ]
        for call in bad_calls:
            with pytest.raises(HVBalloonError):
                call()


class RestingVMTests(_Base):
    """For a peer that has a VM powered off or suspended (opt in: the suite's other tests ask
    for no such VM, and a test that skips proves nothing)."""

    def test_a_vm_that_does_not_run_reports_no_guest_figures(self, hv: Hypervisor) -> None:
        """A VM powered off or suspended runs no guest: its guest figures are unknown (``None``,
        not ``0``) and its stats stale, while the hypervisor's own (configured) stay known."""
        resting = [
            s for s in hv.get_stats() if s.vm.power_state in (PowerState.STOPPED, PowerState.SUSPENDED)
        ]
        assert resting, "the peer of these tests needs a VM powered off or suspended"
        for st in resting:
            known = [n for n in _GUEST_FIGURES if getattr(st, n) is not None]
            assert known == [], f"{st.vm.name} ({st.vm.power_state.value}) reports {known}"
            assert st.stale and st.configured_bytes is not None, st


class BackendConformance(
    ListingTests,
    StatsTests,
    HostStatsTests,
    CapabilityTests,
    TargetTests,
    BulkTargetTests,
    ConfigTests,
    ErrorTests,
):
    """Everything above. Provide a ``hv`` fixture."""


class KindRuleTests(_Base):
    """The rules of one hypervisor kind (:mod:`hvballoon.kinds`), case by case.

    Set ``kind_name`` (the backend's ``kind.name``) and provide a ``hv`` fixture whose VMs
    include one for every need of the cases (:func:`hvballoon.testing.cases.rules_scenario`
    builds such a fake world); ``rule_needs`` lists the needs the peer offers when it cannot
    offer them all (a real guest that runs: ``{"running"}``). Every case either is refused with
    its rule's error class and ``details["rule"]``, changing nothing, or applies and reads back.
    """

    kind_name: ClassVar[str]
    #: Need keys the peer offers (``None``: all of them).
    rule_needs: ClassVar[frozenset[str] | None] = None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "rule_case" in metafunc.fixturenames:
            found = cases_for(self.kind_name, self.rule_needs)
            assert found, f"no case of kind {self.kind_name!r} for the needs {sorted(self.rule_needs or ())}"
            metafunc.parametrize("rule_case", found, ids=[c.id for c in found])

    @staticmethod
    def _vm_for(hv: Hypervisor, case: Case) -> tuple[VM, MemoryConfig, MemoryStats]:
        for vm in hv.list_vms():
            cfg = hv.get_config(vm)
            if case.need.matches(vm, cfg, case.kind):
                (st,) = hv.get_stats([vm])
                return vm, cfg, st
        raise AssertionError(
            f"the peer offers no VM for {case.need.key!r} (case {case.id}): add one, or leave the need "
            "out of rule_needs"
        )

    @staticmethod
    def _floor(hv: Hypervisor, st: MemoryStats, alignment: int) -> int:
        used = st.used_bytes
        if used is None or st.vm.power_state is not PowerState.RUNNING:
            return alignment
        return align(hv.guard_rails.floor(used, st.configured_bytes), alignment, "up")

    @staticmethod
    def _do(hv: Hypervisor, vm: VM, call: Call) -> Change | None:
        if call.op == "mark":
            hv.set_mark(vm, call.kwargs["key"], call.kwargs["value"])
            return None
        if call.op == "config":
            return hv.set_config(vm, **call.kwargs)
        kw = dict(call.kwargs)
        return hv.set_target(vm, kw.pop("size"), **kw)

    def test_the_backend_follows_the_kind(self, hv: Hypervisor) -> None:
        kind = hv.backend.kind
        assert kind is not None and kind.name == self.kind_name
        assert hv.capabilities.model_dump(
            exclude={"backend", "notes", "readable", "bulk_stats", "marks"}
        ) == (
            kind.capabilities(backend=hv.backend_name).model_dump(
                exclude={"backend", "notes", "readable", "bulk_stats", "marks"}
            )
        )
        # a backend may reach a kind that keeps marks through an interface without a place for
        # them (QEMU's monitor), never the other way round
        assert hv.capabilities.marks <= kind.marks
        assert hv.capabilities.readable <= kind.variant().readable

    def test_a_domain_without_a_balloon_device_has_no_balloon_settings(self, hv: Hypervisor) -> None:
        """KVM: a domain with ``<memballoon model='none'/>`` has no stats period, deflate-on-OOM
        or free page reporting to report — ``None``, not off (other kinds have no balloon device
        to speak of)."""
        if self.kind_name != "kvm":
            return
        for vm in hv.list_vms():
            cfg = hv.get_config(vm)
            if cfg.extra.get("balloon_model") == "none":
                settings = (cfg.stats_period_seconds, cfg.deflate_on_oom, cfg.free_page_reporting)
                assert settings == (None, None, None), f"{vm.name}: {settings}"

    def test_a_domain_without_a_balloon_device_takes_no_live_target(self, hv: Hypervisor) -> None:
        """KVM: the capabilities of a running domain with ``<memballoon model='none'/>`` say what
        it can do — no live target, no stats period — and why, as its refusals do (other
        kinds have no balloon device to speak of)."""
        if self.kind_name != "kvm":
            return
        found = 0
        for vm in self.running_vms(hv):
            if hv.get_config(vm).extra.get("balloon_model") != "none":
                continue
            caps = hv.vm_capabilities(vm)
            assert not caps.can_set("target", running=True), f"{vm.name}: {sorted(caps.set_live)}"
            assert not caps.can_set("stats_period_seconds", running=True), vm.name
            assert {"target", "stats_period_seconds"} <= caps.withheld, vm.name
            assert caps.withheld_rule == "no_balloon_device" and caps.withheld_reason, vm.name
            found += 1
        if self.rule_needs is None or "running/no-balloon" in self.rule_needs:
            assert found, "no running domain without a balloon device"

    def test_each_vm_has_what_its_kind_gives_its_configuration(self, hv: Hypervisor) -> None:
        """``vm_capabilities`` of every VM is its kind's answer for the VM's configuration (its
        variant, less what the kind withholds from it), on the fake and on the real peers."""
        kind = hv.backend.kind
        assert kind is not None
        compared = {
            "mechanism", "set_live", "set_offline", "alignment_bytes", "target_observable",
            "withheld", "withheld_rule", "withheld_reason",
        }  # fmt: skip
        for vm in hv.list_vms():
            got = hv.vm_capabilities(vm)
            if got.frozen_reason is not None:
                continue  # nothing of it changes (an ESXi template): the backend's own answer
            want = kind.vm_capabilities(hv.get_config(vm), backend=hv.backend_name)
            assert got.model_dump(include=compared) == want.model_dump(include=compared), vm.name

    def test_restating_an_offline_only_field_changes_nothing(self, hv: Hypervisor) -> None:
        """A field that changes only with the VM off, asked at the value it has, is a no-op in any
        power state (an idempotent request on a running VM is not refused)."""
        kind = hv.backend.kind
        assert kind is not None
        running = 0
        for vm in hv.list_vms():
            cfg = hv.get_config(vm)
            variant = kind.variant_of(cfg)
            for name in sorted(variant.set_offline - variant.set_live - {"target"}):
                value = getattr(cfg, name, None)
                if value is None:
                    continue
                change = hv.set_config(vm, **{name.removesuffix("_bytes"): value})
                assert not change.changed, f"{vm.name}: {name}={value!r}: {change}"
                running += vm.power_state is PowerState.RUNNING
            assert hv.get_config(vm).model_dump(exclude={"vm"}) == cfg.model_dump(exclude={"vm"}), vm.name
        assert running, "no running VM with an offline-only field to restate"

    def _mark_case(self, hv: Hypervisor, vm: VM, cfg: MemoryConfig, case: Case, call: Call) -> None:
        """A mark set (and read back, then removed) or refused with the rule's error, leaving
        the VM unmarked; a backend without marks says so."""
        key, value = call.kwargs["key"], call.kwargs["value"]
        if not hv.capabilities.marks:
            with pytest.raises(UnsupportedOperationError, match="keeps no marks"):
                self._do(hv, vm, call)
            return
        if case.rule is None:
            self._do(hv, vm, call)
            assert hv.get_marks(key).get(vm.id) == value, f"{case.id}: the mark does not read back"
            hv.set_mark(vm, key, None)
            assert vm.id not in hv.get_marks(key), f"{case.id}: the mark was not removed"
            return
        self._refused(hv, vm, call, case)
        marks = hv.get_marks(key)
        assert marks.complete and vm.id not in marks, case.id
        assert hv.get_config(vm).model_dump(exclude={"vm"}) == cfg.model_dump(exclude={"vm"}), case.id

    def _refused(self, hv: Hypervisor, vm: VM, call: Call, case: Case) -> None:
        """``call`` is refused by the case's rule: its error class and id, naming the VM and the
        backend."""
        rule = hv.backend.kind.rule(case.rule)  # type: ignore[union-attr,arg-type]
        with pytest.raises(HVBalloonError) as info:
            self._do(hv, vm, call)
        err = info.value
        assert type(err) is rule.error, f"{case.id}: {type(err).__name__} {err.message}"
        assert err.details.get("rule") == rule.id, f"{case.id}: {err.details} {err.message}"
        assert err.vm == vm.name and err.backend == hv.backend_name

    def test_rule_case(self, hv: Hypervisor, rule_case: Case) -> None:
        kind = hv.backend.kind
        assert kind is not None and kind.name == rule_case.kind == self.kind_name
        vm, cfg, st = self._vm_for(hv, rule_case)
        if rule_case.setup is not None:
            prepared = self._do(hv, vm, rule_case.setup(cfg, st, self._floor(hv, st, kind.alignment_bytes)))
            assert prepared is not None and prepared.changed, f"the setup of {rule_case.id} changed nothing"
            cfg, (st,) = hv.get_config(vm), hv.get_stats([vm])
        call = rule_case.call(cfg, st, self._floor(hv, st, kind.alignment_bytes))
        if call.op == "mark":
            self._mark_case(hv, vm, cfg, rule_case, call)
            return
        if rule_case.rule is None:
            change = self._do(hv, vm, call)
            assert change is not None and change.changed, f"{rule_case.id}: the case must change something"
            if call.op == "config":
                after = hv.get_config(vm)
                for name, value in change.after.items():
                    assert getattr(after, name) == value, (
                        f"{rule_case.id}: {name} reads back {getattr(after, name)}"
                    )
            else:
                (after_st,) = hv.get_stats([vm])
                assert after_st.target_bytes == change.after["target_bytes"], rule_case.id
            if rule_case.expect is not None:
                wrong = rule_case.expect(hv.get_config(vm), hv.get_stats([vm])[0])
                assert wrong is None, f"{rule_case.id}: {wrong}"
            return
        self._refused(hv, vm, call, rule_case)
        assert hv.get_config(vm).model_dump(exclude={"vm"}) == cfg.model_dump(exclude={"vm"}), rule_case.id
