"""The hypervisor kinds: one rule set each, every rule covered by a conformance case, and the
backends (real and fake) that hold each kind declaring exactly its capabilities."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest

import hvballoon
from hvballoon.errors import HVBalloonError, InvalidRequestError
from hvballoon.kinds import ESXI, HYPERV, KINDS, KVM, Kind, get_kind
from hvballoon.kinds.esxi import SHARES_PER_MB
from hvballoon.models import VM, ConfigUpdate, Mechanism, MemoryConfig, PowerState
from hvballoon.testing.cases import CASES, cases_for, rules_scenario
from tests.support.source import imports_in

GiB, MiB = 1024**3, 1024**2
ROOT = Path(__file__).resolve().parents[1]


def test_registry() -> None:
    assert set(KINDS) == {"kvm", "esxi", "hyperv"} and get_kind("kvm") is KVM
    with pytest.raises(KeyError, match="known: kvm, esxi, hyperv"):
        get_kind("xen")
    assert hvballoon.kinds.__all__ == sorted(hvballoon.kinds.__all__)


@pytest.mark.parametrize("kind", KINDS.values(), ids=str)
def test_every_rule_has_a_conformance_case_and_every_case_a_rule(kind: Kind) -> None:
    covered = {c.rule for c in CASES[kind.name] if c.rule is not None}
    assert covered == set(kind.rules), f"rules without a case: {set(kind.rules) - covered}"
    assert any(c.rule is None for c in CASES[kind.name]), "allowed changes are cases too"
    ids = [c.id for c in CASES[kind.name]]
    assert len(ids) == len(set(ids))
    assert cases_for(kind.name, frozenset({"running"})) == [
        c for c in CASES[kind.name] if c.need.key == "running"
    ]


@pytest.mark.parametrize("kind", KINDS.values(), ids=str)
def test_rules_raise_their_declared_class_with_their_id(kind: Kind) -> None:
    vm = VM(id="1", name="vm", backend="x")
    for rule in kind.rules.values():
        with pytest.raises(rule.error) as info:
            kind.refuse(rule.id, "no", vm=vm, asked=1)
        assert type(info.value) is rule.error
        assert info.value.details == {"rule": rule.id, "kind": kind.name, "asked": 1}
        with pytest.raises(KeyError):
            kind.refuse(rule.id + "_nope", "no")


@pytest.mark.parametrize("kind", KINDS.values(), ids=str)
def test_every_flavour_and_backend_of_a_kind_declares_the_kind(kind: Kind) -> None:
    fields = ("mechanism", "readable", "set_live", "set_offline", "alignment_bytes", "target_observable")
    expected = kind.capabilities(backend="x")
    with hvballoon.connect(f"fake://?flavor={kind.name}") as fake:
        assert fake.backend.kind is kind
        assert {f: getattr(fake.capabilities, f) for f in fields} == {f: getattr(expected, f) for f in fields}
    module = {
        "kvm": "hvballoon.backends.kvm.backend",
        "esxi": "hvballoon.backends.esxi.backend",
        "hyperv": "hvballoon.backends.hyperv.backend",
    }
    try:
        real = importlib.import_module(module[kind.name])
    except ImportError:
        return  # the backend's library is not installed here; its own tests say so
    classes = [c for c in vars(real).values() if isinstance(c, type) and getattr(c, "kind", None) is kind]
    assert len(classes) == 1, f"{module[kind.name]} holds the kind"
    caps = getattr(real, "CAPABILITIES", None) or real.DYNAMIC_CAPABILITIES
    assert {f: getattr(caps, f) for f in fields} == {f: getattr(expected, f) for f in fields}


def test_kvm_kind_serves_any_backend_name() -> None:
    # a QEMU backend without libvirt (qmp://) declares itself through the same kind
    caps = KVM.capabilities(backend="qmp", notes=("QMP",), readable=frozenset({"current_bytes"}))
    assert (caps.backend, caps.mechanism, caps.readable, caps.notes[-1]) == (
        "qmp",
        Mechanism.BALLOON,
        frozenset({"current_bytes"}),
        "QMP",
    )


# -- Hyper-V states ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "power", "health"),
    [
        ("Running", PowerState.RUNNING, "ok"),
        ("RunningCritical", PowerState.RUNNING, "critical"),
        ("OffCritical", PowerState.STOPPED, "critical"),
        ("Starting", PowerState.RUNNING, "ok"),
        ("Hibernated", PowerState.SUSPENDED, "ok"),
        (2, PowerState.RUNNING, "ok"),
        ("3", PowerState.STOPPED, "ok"),
        (32785, PowerState.RUNNING, "critical"),  # RunningCritical, or StoppingCritical on 2016
        (32783, PowerState.UNKNOWN, None),  # Hibernated, or RunningCritical on 2016
        (32795, PowerState.SUSPENDED, "critical"),  # only FastSavedCritical
        ("Other", PowerState.UNKNOWN, None),
        ("ForceShutdownCritical", PowerState.UNKNOWN, None),  # no such state
        ("running", PowerState.UNKNOWN, None),  # names are exact
        ("", PowerState.UNKNOWN, None),
        (None, PowerState.UNKNOWN, None),
        (True, PowerState.UNKNOWN, None),
        (-2, PowerState.UNKNOWN, None),
        (7, PowerState.UNKNOWN, None),
        (2.0, PowerState.UNKNOWN, None),
    ],
)
def test_hyperv_states(value: Any, power: PowerState, health: str | None) -> None:
    info = HYPERV.classify_state(value)
    assert (info.power_state, info.health) == (power, health)


# -- ESXi shares and the reservation lock -------------------------------------------------------


def _esxi_config(**kw: Any) -> tuple[VM, MemoryConfig]:
    vm = VM(id="1", name="db01", backend="x", power_state=PowerState.STOPPED)
    base: dict[str, Any] = {
        "maximum_bytes": 16 * GiB,
        "reservation_bytes": 0,
        "limit_bytes": None,
        "shares": 163840,
        "shares_level": "normal",
        "memory_reservation_lock": False,
    }
    return vm, MemoryConfig(vm=vm, mechanism=Mechanism.LIMIT, **{**base, **kw})


def test_esxi_ratios_are_vsphere_s() -> None:
    assert SHARES_PER_MB == {"low": 5, "normal": 10, "high": 20}


@pytest.mark.parametrize(
    ("requested", "current", "changes"),
    [
        ({"shares_level": "low"}, {}, {"shares_level": "low", "shares": 5 * 16384}),
        ({"shares": 4000}, {}, {"shares_level": "custom", "shares": 4000}),
        ({"shares_level": "custom"}, {}, {"shares_level": "custom"}),  # keeps the count
        ({"maximum_bytes": 8 * GiB}, {}, {"maximum_bytes": 8 * GiB, "shares": 10 * 8192}),
        ({"maximum_bytes": 8 * GiB}, {"shares": 777, "shares_level": "custom"}, {"maximum_bytes": 8 * GiB}),
        ({"memory_reservation_lock": True}, {}, {"memory_reservation_lock": True, "reservation_bytes": 16 * GiB}),
        ({"maximum_bytes": 8 * GiB}, {"memory_reservation_lock": True, "reservation_bytes": 16 * GiB},
         {"maximum_bytes": 8 * GiB, "shares": 81920, "reservation_bytes": 8 * GiB}),
        ({"memory_reservation_lock": False, "reservation_bytes": GiB},
         {"memory_reservation_lock": True, "reservation_bytes": 16 * GiB},
         {"memory_reservation_lock": False, "reservation_bytes": GiB}),
        ({"shares_level": "normal"}, {}, {}),  # idempotent
    ],
)  # fmt: skip
def test_esxi_derived_changes(
    requested: dict[str, Any], current: dict[str, Any], changes: dict[str, Any]
) -> None:
    vm, cfg = _esxi_config(**current)
    plan = ESXI.plan_config(vm, ConfigUpdate.from_fields(requested), cfg)
    assert isinstance(plan, ConfigUpdate) and plan.fields() == changes
    assert plan.changed() == tuple(f for f in ConfigUpdate.model_fields if f in changes)


@pytest.mark.parametrize(
    ("requested", "current", "rule"),
    [
        ({"memory_reservation_lock": True}, {"limit_bytes": 8 * GiB}, "reservation_le_limit"),
        ({"reservation_bytes": GiB}, {"memory_reservation_lock": True, "reservation_bytes": 16 * GiB},
         "reservation_locked_to_max"),
        ({"shares": 10, "shares_level": "high"}, {}, "shares_need_custom_level"),
        ({"limit_bytes": GiB + 1}, {}, "whole_MiB"),
        ({"maximum_bytes": 16 * GiB + 2 * MiB}, {}, "memory_size_4MiB"),
    ],
)  # fmt: skip
def test_esxi_refusals(requested: dict[str, Any], current: dict[str, Any], rule: str) -> None:
    vm, cfg = _esxi_config(**current)
    with pytest.raises(HVBalloonError) as info:
        ESXI.plan_config(vm, ConfigUpdate.from_fields(requested), cfg)
    assert info.value.details["rule"] == rule and type(info.value) is ESXI.rule(rule).error


def test_a_locked_reservation_above_the_limit_says_where_the_reservation_comes_from() -> None:
    vm, cfg = _esxi_config(limit_bytes=8 * GiB)
    with pytest.raises(
        HVBalloonError, match=r"16 GiB of 'db01' \(locked to its memory size\) would be above"
    ):
        ESXI.plan_config(vm, ConfigUpdate.from_fields({"memory_reservation_lock": True}), cfg)
    with pytest.raises(HVBalloonError) as info:
        ESXI.plan_config(vm, ConfigUpdate.from_fields({"reservation_bytes": 9 * GiB}), cfg)
    assert "locked" not in str(info.value)


# -- the session's parsing of the new fields ---------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"shares_level": "extreme"},
        {"shares_level": 20},
        {"shares_level": ""},
        {"memory_reservation_lock": "yes"},
        {"memory_reservation_lock": 1},
    ],
)
def test_bad_values_are_typed_errors_and_change_nothing(kw: dict[str, Any]) -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        before = hv.get_config("db01")
        with pytest.raises(InvalidRequestError):
            hv.set_config("db01", **kw)
        assert hv.get_config("db01") == before


def test_scenarios_for_the_rules_offer_every_need() -> None:
    from hvballoon.fake.world import World

    for name in KINDS:
        world = World(rules_scenario(name), flavor=name)
        with hvballoon.connect(f"fake://?flavor={name}", world=world) as hv:
            offered = set()
            for vm in hv.list_vms():
                cfg = hv.get_config(vm)
                offered |= {c.need.key for c in CASES[name] if c.need.matches(vm, cfg, name)}
        assert offered == {c.need.key for c in CASES[name]}, name


# -- the test peers model the real hosts without hvballoon's rules ------------------------------


@pytest.mark.parametrize(
    "path",
    ["tests/support/hyperv/fakehost.py", "tests/support/winrm/server.py", "tests/support/winrm/harness.py"],
)
def test_the_winrm_peer_imports_no_rule(path: str) -> None:
    statements = imports_in(ROOT / path)
    imported = {node.module or "" for node in statements if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in statements if isinstance(node, ast.Import) for alias in node.names
    }
    assert not {m for m in imported if m.startswith(("hvballoon.kinds", "hvballoon.backends.hyperv.backend"))}


# -- a whole configuration (the fake's scenario loader) ---------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "rule"),
    [
        (ESXI, {"maximum_bytes": 4 * GiB, "reservation_bytes": 8 * GiB, "limit_bytes": GiB}, "reservation_le_limit"),
        (ESXI, {"maximum_bytes": 4 * GiB, "reservation_bytes": 8 * GiB}, "reservation_le_memory"),
        (ESXI, {"maximum_bytes": 4 * GiB, "memory_reservation_lock": True, "reservation_bytes": GiB},
         "reservation_locked_to_max"),
        (ESXI, {"maximum_bytes": 4 * GiB + 2 * MiB}, "memory_size_4MiB"),
        (HYPERV, {"dynamic": True, "minimum_bytes": 8 * GiB, "startup_bytes": 2 * GiB, "maximum_bytes": 2 * GiB},
         "range_order"),
        (HYPERV, {"dynamic": True, "startup_bytes": 2 * GiB, "maximum_bytes": 16 * MiB}, "at_least_32MiB"),
        (HYPERV, {"dynamic": False, "startup_bytes": GiB + MiB}, "aligned_2MiB"),
        (HYPERV, {"dynamic": True, "startup_bytes": GiB, "buffer_percent": 3}, "buffer_percent_range"),
        (KVM, {"maximum_bytes": GiB + 1}, "whole_KiB"),
        (ESXI, {"maximum_bytes": 4 * GiB, "reservation_bytes": 4 * GiB, "limit_bytes": 4 * GiB}, None),
        # a static VM's range is leftovers: only its startup size counts
        (HYPERV, {"dynamic": False, "minimum_bytes": 8 * GiB, "startup_bytes": 2 * GiB, "maximum_bytes": GiB},
         None),
    ],
)  # fmt: skip
def test_check_config_holds_a_whole_configuration_to_the_rules(
    kind: Kind, fields: dict[str, Any], rule: str | None
) -> None:
    vm = VM(id="1", name="v", backend="mine", power_state=PowerState.RUNNING)
    mechanism = kind.variant_for(dynamic=fields.get("dynamic")).mechanism
    config = MemoryConfig(vm=vm, mechanism=mechanism, **fields)
    if rule is None:
        kind.check_config(vm, config)
        return
    with pytest.raises(HVBalloonError) as info:
        kind.check_config(vm, config)
    assert info.value.details["rule"] == rule and type(info.value) is kind.rule(rule).error


@pytest.mark.parametrize(
    ("kind", "rule"),
    [(HYPERV, "aligned_2MiB"), (KVM, "whole_KiB"), (ESXI, "whole_MiB")],
    ids=["hyperv", "kvm", "esxi"],
)
def test_an_unaligned_size_names_two_nearest_sizes_that_read_apart(kind: Kind, rule: str) -> None:
    vm = VM(id="1", name="v", backend="mine", power_state=PowerState.STOPPED)
    asked = 3 * GiB + 1  # both neighbours read "3 GiB" when rounded
    with pytest.raises(InvalidRequestError) as info:
        kind.check_aligned(vm, {"startup_bytes": asked}, rule=rule)
    down, up = info.value.details["down"], info.value.details["up"]
    assert down < asked < up
    assert f"{down:,} bytes" in info.value.message and f"{up:,} bytes" in info.value.message


@pytest.mark.parametrize(
    ("flavor", "named"),
    [
        ("hyperv", "the host's maximum 120 GiB: no Hyper-V VM setting caps a target"),
        ("kvm", "the VM's maximum 16 GiB"),
    ],
)
def test_a_target_above_the_ceiling_names_what_the_ceiling_is(flavor: str, named: str) -> None:
    # on Hyper-V no VM setting caps a target (it is the maximum or the startup size): the host does
    with hvballoon.connect(f"fake://seed?flavor={flavor}") as hv:
        with pytest.raises(hvballoon.TargetAboveMaximumError) as info:
            hv.set_target("web01", "100TiB", force=True)
    assert named in info.value.message


def test_a_frozen_vm_is_refused_with_its_reason() -> None:
    """A VM nothing of which can change (an ESXi template) is refused with why and what to do,
    not with a list of what is settable (nothing)."""
    from hvballoon.errors import UnsupportedOperationError
    from hvballoon.kinds import check_settable

    vm, _cfg = _esxi_config()
    caps = ESXI.capabilities(backend="esxi").model_copy(
        update={
            "set_live": frozenset(),
            "set_offline": frozenset(),
            "frozen_reason": "it is a template; convert it",
        }
    )
    for names in (["target"], ["limit_bytes", "reservation_bytes"]):
        with pytest.raises(UnsupportedOperationError) as info:
            check_settable(caps, names, vm)
        assert info.value.message.endswith("of 'db01': it is a template; convert it")
        assert info.value.details["rule"] == "not_supported" and "settable" not in info.value.message


def _running_hot_add(**extra: Any) -> tuple[VM, MemoryConfig]:
    """A running 16 GiB ESXi VM (normal shares) with the hot-add settings ``extra``."""
    vm, cfg = _esxi_config()
    vm = vm.model_copy(update={"power_state": PowerState.RUNNING})
    return vm, cfg.model_copy(update={"vm": vm, "extra": extra})


HOT_ADD_ON = {"memory_hot_add": True, "hot_add_limit_bytes": 64 * GiB, "hot_add_increment_bytes": 128 * MiB}


@pytest.mark.parametrize(
    ("extra", "asked", "changes"),
    [
        (HOT_ADD_ON, 20 * GiB, {"maximum_bytes": 20 * GiB, "shares": 10 * 20480}),
        (HOT_ADD_ON, 64 * GiB, {"maximum_bytes": 64 * GiB, "shares": 10 * 65536}),
        (HOT_ADD_ON, 16 * GiB + 128 * MiB, {"maximum_bytes": 16 * GiB + 128 * MiB, "shares": 10 * 16512}),
        ({"memory_hot_add": True}, 16 * GiB + 4 * MiB, {"maximum_bytes": 16 * GiB + 4 * MiB, "shares": 10 * 16388}),
        (HOT_ADD_ON, 16 * GiB, {}),  # restated: nothing to do
    ],
)  # fmt: skip
def test_esxi_a_running_vm_with_hot_add_grows_its_memory(
    extra: dict[str, Any], asked: int, changes: dict[str, Any]
) -> None:
    vm, cfg = _running_hot_add(**extra)
    assert ESXI.plan_config(vm, ConfigUpdate(maximum_bytes=asked), cfg).fields() == changes


@pytest.mark.parametrize(
    ("extra", "power", "asked", "rule", "says"),
    [
        ({}, PowerState.RUNNING, 20 * GiB, "memory_size_only_when_off", "memory hot-add is off"),
        ({"memory_hot_add": False}, PowerState.RUNNING, 8 * GiB, "memory_size_only_when_off", "power it off"),
        (HOT_ADD_ON, PowerState.SUSPENDED, 20 * GiB, "memory_size_only_when_off", "suspended"),
        (HOT_ADD_ON, PowerState.UNKNOWN, 20 * GiB, "memory_size_only_when_off", "unknown"),
        (HOT_ADD_ON, PowerState.RUNNING, 8 * GiB, "memory_hot_add_grow_only", "can only grow"),
        (HOT_ADD_ON, PowerState.RUNNING, 16 * GiB - 128 * MiB, "memory_hot_add_grow_only", "power it off"),
        (HOT_ADD_ON, PowerState.RUNNING, 64 * GiB + 128 * MiB, "memory_hot_add_limit", "at most 64 GiB"),
        (HOT_ADD_ON, PowerState.RUNNING, 16 * GiB + 64 * MiB, "memory_hot_add_increment", "steps of 128 MiB"),
        (HOT_ADD_ON, PowerState.RUNNING, 20 * GiB + 4 * MiB, "memory_hot_add_increment", "20 GiB or 20.12 GiB"),
        (HOT_ADD_ON, PowerState.RUNNING, 20 * GiB + 2 * MiB, "memory_size_4MiB", "multiple of 4 MiB"),
    ],
)  # fmt: skip
def test_esxi_hot_add_refusals(
    extra: dict[str, Any], power: PowerState, asked: int, rule: str, says: str
) -> None:
    """Each refusal of a live memory size has its own rule (and says why); nothing is planned."""
    vm, cfg = _running_hot_add(**extra)
    vm = vm.model_copy(update={"power_state": power})
    with pytest.raises(HVBalloonError) as info:
        ESXI.plan_config(vm, ConfigUpdate(maximum_bytes=asked), cfg.model_copy(update={"vm": vm}))
    assert info.value.details["rule"] == rule and type(info.value) is ESXI.rule(rule).error
    assert says in info.value.message, info.value.message


def test_esxi_a_hot_add_increment_the_current_size_is_not_a_multiple_of() -> None:
    """At least one increment is added, and the total is a multiple of it: from a size that is
    not one, the nearest sizes named are ones that would be accepted."""
    vm, cfg = _running_hot_add(**HOT_ADD_ON)
    cfg = cfg.model_copy(
        update={"maximum_bytes": 16 * GiB + 100 * MiB, "shares": None, "shares_level": "custom"}
    )
    for asked in (16 * GiB + 128 * MiB, 16 * GiB + 132 * MiB):
        with pytest.raises(HVBalloonError) as info:
            ESXI.plan_config(vm, ConfigUpdate(maximum_bytes=asked), cfg)
        assert info.value.details["rule"] == "memory_hot_add_increment"
        assert min(info.value.details["nearest"]) == 16 * GiB + 256 * MiB
    assert ESXI.plan_config(vm, ConfigUpdate(maximum_bytes=16 * GiB + 256 * MiB), cfg).maximum_bytes


def test_esxi_a_scenario_vm_above_its_hot_add_limit_is_refused() -> None:
    vm, cfg = _running_hot_add(memory_hot_add=True, hot_add_limit_bytes=8 * GiB)
    with pytest.raises(HVBalloonError) as info:
        ESXI.check_config(vm, cfg)
    assert info.value.details["rule"] == "memory_hot_add_limit"


def test_esxi_zero_guest_memory_usage_without_a_heartbeat_keeps_the_usual_reason() -> None:
    """Where the guest heartbeat is not read (or not one of vSphere's four), a guestMemoryUsage
    of 0 is explained as before; a usage not read at all, or above 0, needs no note."""
    from hvballoon.kinds.esxi import NO_TOOLS_NOTE, guest_figures_note

    assert guest_figures_note(0, None) == guest_figures_note(0, "unknown") == NO_TOOLS_NOTE
    assert guest_figures_note(None, "gray") is None and guest_figures_note(512, None) is None
    assert guest_figures_note(0, "gray") != NO_TOOLS_NOTE


@pytest.mark.parametrize(
    ("flavor", "update", "nearest"),
    [
        ("hyperv", {"maximum": "1MiB"}, "nearest: 32 MiB)"),
        ("hyperv", {"minimum": "1MiB"}, "nearest: 32 MiB)"),
        ("hyperv", {"startup": "3MiB"}, "nearest: 32 MiB)"),
        ("hyperv", {"maximum": "33MiB"}, "nearest: 32 MiB or 34 MiB)"),
        ("esxi", {"limit": "512KiB"}, "nearest: 1 MiB)"),
        ("esxi", {"reservation": "512KiB"}, "nearest: 0 B or 1 MiB)"),  # no reservation is one
    ],
)
def test_the_nearest_sizes_an_unaligned_size_is_told_are_allowed_ones(
    flavor: str, update: dict[str, str], nearest: str
) -> None:
    session = hvballoon.connect(f"fake://seed?flavor={flavor}")
    with pytest.raises(InvalidRequestError) as info:
        session.set_config("web01", dry_run=True, **update)
    assert info.value.message.endswith(nearest)


def test_a_kvm_maximum_below_one_kib_is_told_its_nearest_allowed_size() -> None:
    vm = VM(id="1", name="v", backend="mine", power_state=PowerState.STOPPED)
    config = MemoryConfig(vm=vm, mechanism=KVM.variant_for(dynamic=None).mechanism, maximum_bytes=512)
    with pytest.raises(InvalidRequestError) as info:
        KVM.check_config(vm, config)
    assert info.value.message.endswith("nearest: 1 KiB)") and info.value.details["down"] is None
