"""The configuration plug-in surface: backends receive ``ConfigUpdate`` models, never dicts.

The session hands the caller's :class:`ConfigUpdate` to ``Backend.plan_config``; the plan that
comes back — a ``ConfigUpdate`` of only the fields that change, derived ones included — is what
``check_config`` sees and ``apply_config`` receives.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from hvballoon._uri import parse_uri
from hvballoon.backend import Backend, ConnectOptions
from hvballoon.errors import InvalidRequestError, InvalidStateError, UnsupportedOperationError
from hvballoon.kinds import ESXI, HYPERV, KVM
from hvballoon.models import (
    VM,
    Capabilities,
    ConfigUpdate,
    Mechanism,
    MemoryConfig,
    MemoryStats,
    PowerState,
)
from hvballoon.session import Hypervisor
from hvballoon.units import GiB, MiB

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)

# -- the model's helpers -----------------------------------------------------------------------


def _config(**kw: Any) -> MemoryConfig:
    vm = VM(id="1", name="db01", backend="mine", power_state=PowerState.RUNNING)
    return MemoryConfig(vm=vm, mechanism=Mechanism.LIMIT, **kw)


def test_changed_names_the_memory_config_fields_in_declaration_order() -> None:
    update = ConfigUpdate(shares=4000, maximum_bytes=8 * GiB, unlimited_limit=True)
    assert update.changed() == ("maximum_bytes", "shares", "limit_bytes")
    assert ConfigUpdate().changed() == ()
    assert set(update.changed()) <= set(MemoryConfig.model_fields)


def test_a_limit_and_no_limit_at_once_is_refused() -> None:
    with pytest.raises(ValidationError, match="not both"):
        ConfigUpdate(limit_bytes=GiB, unlimited_limit=True)
    with pytest.raises(InvalidRequestError, match="not both"):
        ConfigUpdate.from_fields({"limit_bytes": GiB, "unlimited_limit": True})


def test_from_fields_is_the_inverse_of_fields() -> None:
    for update in (
        ConfigUpdate(priority=80, unlimited_limit=True),
        ConfigUpdate(limit_bytes=4 * GiB, shares_level="high"),
        ConfigUpdate(dynamic=False, stats_period_seconds=0),
    ):
        assert ConfigUpdate.from_fields(update.fields()) == update
    assert ConfigUpdate.from_fields({"limit_bytes": None}).unlimited_limit is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"maximum": GiB}, "not a configuration field: maximum"),
        ({"vm": "x", "mechanism": "limit"}, "not a configuration field: mechanism, vm"),
        ({"maximum_bytes": 0}, "maximum: Input should be greater than 0"),
        ({"priority": -1}, "priority: Input should be greater than or equal to 0"),
        ({"priority": "high"}, "priority: Input should be a valid integer"),
        ({"shares_level": "huge"}, "shares_level: Input should be 'low', 'normal', 'high' or 'custom'"),
    ],
)
def test_from_fields_refuses_malformed_values_with_a_typed_error(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ConfigUpdate.from_fields(fields)
    assert message in info.value.message


def test_applied_to_and_changes_from_read_against_the_current_config() -> None:
    current = _config(maximum_bytes=16 * GiB, limit_bytes=8 * GiB, priority=50)
    update = ConfigUpdate(maximum_bytes=16 * GiB, priority=80, unlimited_limit=True)
    after = update.applied_to(current)
    assert (after.maximum_bytes, after.priority, after.limit_bytes) == (16 * GiB, 80, None)
    assert after.vm == current.vm and current.limit_bytes == 8 * GiB  # current is untouched
    plan = update.changes_from(current)
    assert plan.changed() == ("priority", "limit_bytes") and plan.unlimited_limit
    assert plan.maximum_bytes is None and plan.limit_bytes is None
    assert plan.model_fields_set == {"priority", "unlimited_limit"}
    unlimited = _config(maximum_bytes=16 * GiB)  # already without a limit: nothing to remove
    assert ConfigUpdate(unlimited_limit=True).changes_from(unlimited).changed() == ()


# -- the kinds return typed plans ---------------------------------------------------------------


def test_each_kind_plans_with_the_model() -> None:
    vm = VM(id="1", name="db01", backend="mine", power_state=PowerState.STOPPED)
    kvm = MemoryConfig(
        vm=vm,
        mechanism=Mechanism.BALLOON,
        maximum_bytes=8 * GiB,
        stats_period_seconds=5,
        extra={"balloon_model": "virtio"},
    )
    esxi = MemoryConfig(
        vm=vm,
        mechanism=Mechanism.LIMIT,
        maximum_bytes=16 * GiB,
        limit_bytes=8 * GiB,
        reservation_bytes=0,
        shares=163840,
        shares_level="normal",
        memory_reservation_lock=False,
    )
    hyperv = MemoryConfig(
        vm=vm,
        mechanism=Mechanism.DYNAMIC_MEMORY,
        dynamic=True,
        startup_bytes=4 * GiB,
        minimum_bytes=GiB,
        maximum_bytes=16 * GiB,
        buffer_percent=20,
        priority=50,
    )
    plans = {
        "kvm": KVM.plan_config(vm, ConfigUpdate(stats_period_seconds=5, maximum_bytes=12 * GiB,
                                                  free_page_reporting=True), kvm),
        "esxi": ESXI.plan_config(vm, ConfigUpdate(shares_level="high", unlimited_limit=True), esxi),
        "hyperv": HYPERV.plan_config(vm, ConfigUpdate(maximum_bytes=16 * GiB, priority=90), hyperv),
    }  # fmt: skip
    assert all(isinstance(p, ConfigUpdate) for p in plans.values())
    assert plans["kvm"].changed() == ("maximum_bytes", "free_page_reporting")  # the period already is 5
    assert plans["esxi"].changed() == ("shares", "shares_level", "limit_bytes")
    assert (plans["esxi"].shares, plans["esxi"].unlimited_limit) == (20 * 16384, True)
    assert plans["hyperv"].changed() == ("priority",)


# -- a backend without a kind: check_config and apply_config see the plan ------------------------


class _Ledger(Backend):
    """A third-party backend without a kind: its own rule in ``check_config``, and an
    ``apply_config`` that reads the plan's attributes."""

    name: ClassVar[str] = "ledger"
    schemes: ClassVar[tuple[str, ...]] = ("ledger",)

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        self.vm = VM(id="1", name="db01", backend="ledger", power_state=PowerState.RUNNING)
        self.config = MemoryConfig(vm=self.vm, mechanism=Mechanism.LIMIT, maximum_bytes=16 * GiB,
                                   limit_bytes=8 * GiB, priority=50)  # fmt: skip
        self.checked: list[ConfigUpdate] = []
        self.applied: list[ConfigUpdate] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            backend="ledger",
            mechanism=Mechanism.LIMIT,
            bulk_stats=True,
            readable=frozenset({"configured_bytes"}),
            set_live=frozenset({"target", "limit_bytes", "priority"}),
            set_offline=frozenset({"maximum_bytes"}),
        )

    def list_vms(self) -> list[VM]:
        return [self.vm]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        return [
            MemoryStats(vm=self.vm, mechanism=Mechanism.LIMIT, collected_at=AT, configured_bytes=16 * GiB)
        ]

    def get_config(self, vm: VM) -> MemoryConfig:
        return self.config

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        raise AssertionError("not used")

    def check_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig, *, running: bool) -> None:
        self.checked.append(plan)
        if plan.limit_bytes is not None and plan.limit_bytes % MiB:
            raise InvalidRequestError("the limit is whole MiB on a ledger", details={"rule": "ledger_MiB"})

    def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        self.applied.append(plan)
        self.config = plan.applied_to(current)


@pytest.fixture
def ledger() -> Any:
    uri = parse_uri("ledger://books")
    backend = _Ledger(ConnectOptions(uri, password=None, timeout=5, verify=True, ca_file=None, options={}))
    with Hypervisor(backend, uri=uri) as hv:
        yield hv, backend


def test_a_backend_without_a_kind_gets_the_plan_not_the_request(ledger: Any) -> None:
    hv, backend = ledger
    change = hv.set_config("db01", priority=80, limit="unlimited", maximum=None)
    assert change.changed and change.after == {"priority": 80, "limit_bytes": None}
    assert backend.checked == backend.applied == [ConfigUpdate(priority=80, unlimited_limit=True)]
    assert backend.config.limit_bytes is None and backend.config.priority == 80


def test_an_idempotent_request_plans_nothing_and_sends_nothing(ledger: Any) -> None:
    hv, backend = ledger
    change = hv.set_config("db01", priority=50, limit="8GiB")
    assert not change.changed and backend.checked == [] and backend.applied == []


def test_its_own_rule_and_the_declared_capabilities_refuse_before_sending(ledger: Any) -> None:
    hv, backend = ledger
    with pytest.raises(InvalidRequestError) as info:
        hv.set_config("db01", limit=4 * GiB + 1)
    assert info.value.details["rule"] == "ledger_MiB"
    assert backend.checked == [ConfigUpdate(limit_bytes=4 * GiB + 1)]
    with pytest.raises(InvalidStateError) as state:
        hv.set_config("db01", maximum="32GiB")  # offline only, and the VM runs
    assert state.value.details["rule"] == "only_when_off"
    with pytest.raises(UnsupportedOperationError):
        hv.set_config("db01", buffer_percent=20)
    assert backend.applied == [] and len(backend.checked) == 1
    assert hv.set_config("db01", limit="4GiB", dry_run=True).changed and backend.applied == []
