"""The Hyper-V backend against the loopback WinRM peer: injection, TLS, credentials, shell reuse
and recycling, request counts, the Dynamic Memory rules, and fidelity to the fake's flavour."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

import hvballoon
from hvballoon.backends.hyperv._errors import SHELL_NOT_FOUND, RemoteScriptError
from hvballoon.backends.hyperv._scripts import TEMPLATES, data_of, data_pattern
from hvballoon.errors import (
    AuthenticationError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    SessionExpiredError,
    TargetAboveMaximumError,
    UnsupportedOperationError,
)
from hvballoon.models import ConfigUpdate, Mechanism, PowerState
from tests.support.hyperv import scenarios
from tests.support.hyperv.fakehost import hyperv_world
from tests.support.hyperv.peer import PASSWORD, Peer, start_peer

pytestmark = pytest.mark.peer  # every test talks to the loopback WinRM server

GiB = 1024**3
MiB = 1024**2


def only_templates(peer: Peer) -> None:
    """Every command the host saw is one of the fixed templates with base64 data."""
    for record in peer.server.history:
        assert any(data_pattern(t).fullmatch(record.script) for t in TEMPLATES.values()), record.script


# -- injection ----------------------------------------------------------------------------------


def test_hostile_names_round_trip_and_act_on_the_right_vm(peer: Peer) -> None:
    peer.host.world = hyperv_world(scenarios.hostile())
    with peer.connect() as hv:
        vms = hv.list_vms()
        assert sorted(v.name for v in vms) == sorted([*scenarios.HOSTILE_NAMES, "id-is-hostile"])
        before = {v.id: hv.get_config(v).priority for v in vms}
        for i, name in enumerate(scenarios.HOSTILE_NAMES):
            change = hv.set_config(name, priority=i + 1)
            assert change.changed and change.vm.name == name
            assert hv.get_config(name).priority == i + 1
            (st,) = hv.get_stats([name])
            assert st.vm.name == name
        hostile_id = hv.resolve(scenarios.HOSTILE_ID)
        assert hostile_id.name == "id-is-hostile"
        hv.set_config(hostile_id, priority=99)
        after = {v.id: hv.get_config(v).priority for v in vms}
    expected = {**before, scenarios.HOSTILE_ID: 99}
    for vm in vms:
        if vm.name in scenarios.HOSTILE_NAMES:
            expected[vm.id] = scenarios.HOSTILE_NAMES.index(vm.name) + 1
    assert after == expected  # each change landed on its own VM and nowhere else
    only_templates(peer)
    sent = [
        t.decode(data_of(t, r.script))
        for r in peer.server.history
        for t in TEMPLATES.values()
        if data_pattern(t).fullmatch(r.script)
    ]
    assert {"id": scenarios.HOSTILE_ID, "priority": 99} in sent
    for record in peer.server.history:
        for name in (*scenarios.HOSTILE_NAMES[1:], scenarios.HOSTILE_ID):
            assert name not in record.script


def test_shell_uses_utf8_codepage(peer: Peer) -> None:
    peer.host.world = hyperv_world(scenarios.hostile())
    with peer.connect() as hv:
        assert [s.codepage for s in peer.server.shells.values()] == [65001]
        assert all(s.noprofile for s in peer.server.shells.values())
        names = {v.name for v in hv.list_vms()}
    assert "Überprüfung \u2013 \u0432\u043c-1 \u2713 東京 \U0001f600" in names


# -- credentials and TLS ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_bad_credentials_are_an_authentication_error(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for p in start_peer(transport, False):
        with pytest.raises(AuthenticationError) as info:
            p.connect(password="wrong-Pa55word")
        assert info.value.code == "auth_failed" and not info.value.retryable
        assert p.host.calls == {}
        assert "wrong-Pa55word" not in str(info.value) + repr(info.value) + str(info.value.to_dict())
    assert "wrong-Pa55word" not in caplog.text and PASSWORD not in caplog.text


def test_tls_is_verified_by_default() -> None:
    for p in start_peer("ntlm", True):
        with pytest.raises(HVConnectionError) as info:
            p.connect(ca_file=None)
        assert info.value.retryable is False and "ca_file" in info.value.message
        import requests

        assert isinstance(info.value.__cause__, requests.exceptions.SSLError)
        assert p.server.counts() == {}
        with p.connect() as hv:  # ca_file=the test CA
            assert len(hv.list_vms()) == 10
        with (
            pytest.warns(UserWarning, match="verification is OFF"),
            p.connect(ca_file=None, verify=False) as hv,
        ):
            assert len(hv.list_vms()) == 10


def test_secrets_never_show(peer: Peer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with peer.connect() as hv:
        hv.get_stats()
        backend = hv.backend
        shown = repr(hv) + repr(backend.opts) + repr(backend.runner) + hv.uri  # type: ignore[attr-defined]
    assert PASSWORD not in shown + caplog.text


# -- requests and shells ------------------------------------------------------------------------


def test_sweep_costs_one_command_whatever_the_vm_count(peer: Peer) -> None:
    costs = {}
    for count in (10, 200):
        peer.host.world = hyperv_world(scenarios.sweep(count))
        with peer.connect() as hv:
            peer.server.reset_counts()
            stats = hv.get_stats()
            costs[count] = (peer.server.counts(), peer.server.stats().get("http_requests"))
            assert len(stats) == count
            assert peer.host.calls["read"] >= 1
    assert costs[10] == costs[200]
    assert costs[10][0] == {"Command": 1, "Receive": 1, "Signal": 1}


def test_one_shell_per_session_three_requests_per_command(peer: Peer) -> None:
    peer.host.world = hyperv_world()
    peer.server.reset_counts()
    with peer.connect() as hv:
        hv.get_stats()
        hv.get_config("web01")
        hv.set_config("web01", priority=70)
        commands = peer.server.counts()["Command"]
        assert peer.server.counts() == {
            "Create": 1,
            "Command": commands,
            "Receive": commands,
            "Signal": commands,
        }
        runner = hv.backend.runner  # type: ignore[attr-defined]
        assert runner.counts["shells_opened"] == 1 and runner.counts["commands"] == commands
    assert peer.server.counts()["Delete"] == 1 and peer.server.shells == {}


def test_expired_shell_is_reopened_once_transparently(basic_peer: Peer) -> None:
    with basic_peer.connect() as hv:
        hv.get_stats()
        old = basic_peer.server.expire_shells()
        assert len(hv.get_stats()) == 10
        assert list(basic_peer.server.shells) != old
        assert hv.backend.runner.counts["recycled"] == 1  # type: ignore[attr-defined]


def test_shell_lost_twice_is_a_retryable_session_expired(basic_peer: Peer) -> None:
    with basic_peer.connect() as hv:
        basic_peer.server.fail_next("Command", SHELL_NOT_FOUND, times=2)
        with pytest.raises(SessionExpiredError) as info:
            hv.get_stats()
        assert info.value.retryable and isinstance(info.value, HVConnectionError)
        assert len(hv.get_stats()) == 10  # and the session goes on


def test_ntlm_connection_loss_is_recovered() -> None:
    # NTLM over HTTP seals each body with the connection's key: once the server drops the idle
    # connection, the next request is refused with 401 — a new client and shell fix it.
    for p in start_peer("ntlm", False, connection_timeout_seconds=0.2):
        with p.connect() as hv:
            hv.get_stats()
            time.sleep(0.5)
            assert len(hv.get_stats()) == 10
            assert hv.backend.runner.counts["recycled"] == 1  # type: ignore[attr-defined]


def test_long_id_lists_are_filtered_locally_in_one_command(basic_peer: Peer) -> None:
    basic_peer.host.world = hyperv_world(scenarios.sweep(100))
    with basic_peer.connect() as hv:
        vms = hv.list_vms()
        basic_peer.server.reset_counts()
        stats = hv.get_stats(vms[::-1])
        assert [s.vm.id for s in stats] == [v.id for v in vms[::-1]]
        assert basic_peer.server.counts()["Command"] == 1


# -- fidelity to the fake's hyperv flavour ------------------------------------------------------


def test_figures_match_the_fake_flavour(peer: Peer) -> None:
    world = hyperv_world(scenarios.rules())
    peer.host.world = world
    fake = hvballoon.connect("fake://?flavor=hyperv", world=world)
    with peer.connect() as hv, fake:
        skip = {"vm", "collected_at", "extra"}
        real_stats = {s.vm.id: s for s in hv.get_stats()}
        for st in fake.get_stats():
            mine = real_stats[st.vm.id]
            assert mine.model_dump(exclude=skip) == st.model_dump(exclude=skip), st.vm.name
            assert mine.vm.name == st.vm.name and mine.vm.power_state == st.vm.power_state
        for vm in fake.list_vms():
            a = hv.get_config(vm.id).model_dump(exclude={"vm"})
            b = fake.get_config(vm.id).model_dump(exclude={"vm"})
            assert a == b, vm.name
            mine_caps, fake_caps = hv.vm_capabilities(vm.id), fake.vm_capabilities(vm.id)
            assert mine_caps.model_dump(exclude={"backend", "notes"}) == fake_caps.model_dump(
                exclude={"backend", "notes"}
            )


def test_a_vm_that_pages_reads_its_whole_demand_like_the_fake_flavour(basic_peer: Peer) -> None:
    """MemoryDemand is what the guest needs, paged-out memory included (what Dynamic Memory
    balances on), not only what it holds: a VM squeezed under its maximum demands more than it
    is assigned, and has nothing available."""
    world = hyperv_world(scenarios.squeezed())
    world.advance(120)
    basic_peer.host.world = world
    fake = hvballoon.connect("fake://?flavor=hyperv", world=world)
    with basic_peer.connect() as hv, fake:
        (mine,), (st,) = hv.get_stats(["capped"]), fake.get_stats(["capped"])
        assert st.current_bytes == 2 * GiB and st.demand_bytes == 3 * GiB and st.guest_available_bytes == 0
        skip = {"vm", "collected_at", "extra"}
        assert mine.model_dump(exclude=skip) == st.model_dump(exclude=skip)


def test_static_vm_is_configured_with_its_startup_size(peer: Peer) -> None:
    peer.host.world = hyperv_world(scenarios.rules())
    with peer.connect() as hv:
        cfg = hv.get_config("static-small")
        (st,) = hv.get_stats(["static-small"])
    # MemoryMinimum / MemoryMaximum of a static VM are leftovers: the VM runs with its startup
    assert (cfg.startup_bytes, cfg.minimum_bytes, cfg.maximum_bytes) == (4 * GiB, 512 * MiB, 8 * GiB)
    assert st.configured_bytes == st.target_bytes == 4 * GiB


def test_ceiling_is_the_host_capacity_like_the_fake(peer: Peer) -> None:
    # One rule (hvballoon.kinds.hyperv): the host's memory — Get-VMHost's MemoryCapacity here,
    # the simulated host's physical memory on the fake — caps every target.
    world = hyperv_world(scenarios.rules())
    peer.host.world = world
    fake = hvballoon.connect("fake://?flavor=hyperv", world=world)
    with peer.connect() as hv, fake:
        capacity = world.host.physical_bytes
        assert hv.backend.host_memory_bytes == capacity  # type: ignore[attr-defined]
        for st in hv.get_stats():
            cfg = hv.get_config(st.vm)
            (fake_st,) = fake.get_stats([st.vm.id])
            mine = hv.backend.target_ceiling(st.vm, st, cfg)
            theirs = fake.backend.target_ceiling(fake_st.vm, fake_st, fake.get_config(st.vm.id))
            assert mine == theirs == capacity, st.vm.name


def test_target_above_the_host_is_refused_even_forced(rules_hv: tuple[Any, Peer]) -> None:
    hv, peer = rules_hv
    for name in ("dm-on", "static-on", "dm-off"):
        with pytest.raises(TargetAboveMaximumError) as info:
            hv.set_target(name, 64 * GiB + 2 * MiB, force=True)
        assert info.value.details["maximum_bytes"] == 64 * GiB
        assert "above the host's maximum 64 GiB" in info.value.message
    refused_locally(peer)
    # not capped by the VM's own maximum: a running Dynamic Memory VM's maximum rises past it
    assert hv.set_target("dm-on", "24GiB").after == {"target_bytes": 24 * GiB}
    assert hv.get_config("dm-on").maximum_bytes == 24 * GiB


def test_a_target_already_above_the_host_stays_acceptable(rules_hv: tuple[Any, Peer]) -> None:
    # Hyper-V's default Dynamic Memory maximum is 1 TiB, more than most hosts have.
    hv, _ = rules_hv
    hv.set_config("dm-off", maximum="1TiB")
    assert hv.set_target("dm-off", "1TiB").changed is False
    with pytest.raises(TargetAboveMaximumError) as info:
        hv.set_target("dm-off", 1024 * GiB + 2 * MiB)
    assert info.value.details["maximum_bytes"] == 1024 * GiB


def test_static_resize_beyond_what_the_host_can_back_is_refused_by_the_host(
    rules_hv: tuple[Any, Peer],
) -> None:
    hv, peer = rules_hv
    with pytest.raises(InvalidStateError) as info:
        hv.set_target("static-on", "60GiB")  # below the host's 64 GiB; more than it has free
    assert isinstance(info.value.__cause__, RemoteScriptError)
    assert peer.host.calls["set_targets"] == 1
    assert hv.get_config("static-on").startup_bytes == 8 * GiB
    assert hv.set_target("static-on", "12GiB").changed  # past its scenario memory: the host has room


def test_unknown_capacity_means_no_ceiling(basic_peer: Peer, caplog: pytest.LogCaptureFixture) -> None:
    basic_peer.host.world = hyperv_world(scenarios.rules())
    basic_peer.host.vmhost_readable = False
    with basic_peer.connect() as hv:
        assert "memory capacity" in caplog.text
        (st,) = hv.get_stats(["dm-off"])
        assert hv.backend.target_ceiling(st.vm, st, hv.get_config("dm-off")) is None
        assert hv.set_target("dm-off", "32GiB").changed


# -- the Dynamic Memory rules -------------------------------------------------------------------


@pytest.fixture
def rules_hv(basic_peer: Peer) -> Iterator[tuple[Any, Peer]]:
    basic_peer.host.world = hyperv_world(scenarios.rules())
    with basic_peer.connect() as hv:
        yield hv, basic_peer


def refused_locally(peer: Peer) -> None:
    sent = peer.host.calls["set_memory"] + peer.host.calls["set_targets"]
    assert sent == 0, "a refused change must never be sent"


def test_mechanisms_are_declared_per_vm(rules_hv: tuple[Any, Peer]) -> None:
    hv, _ = rules_hv
    assert hv.vm_capabilities("dm-on").mechanism is Mechanism.DYNAMIC_MEMORY
    assert hv.vm_capabilities("static-on").mechanism is Mechanism.RUNTIME_RESIZE
    assert hv.capabilities.mechanism is Mechanism.DYNAMIC_MEMORY and hv.capabilities.bulk_stats
    st = {s.vm.name: s for s in hv.get_stats()}
    assert st["dm-on"].target_bytes == hv.get_config("dm-on").maximum_bytes
    assert st["static-on"].target_bytes == hv.get_config("static-on").startup_bytes
    assert st["dm-off"].stale and st["dm-off"].current_bytes is None
    assert st["dm-paused"].vm.power_state is PowerState.PAUSED


def test_running_dm_target_below_maximum_is_refused(rules_hv: tuple[Any, Peer]) -> None:
    hv, peer = rules_hv
    with pytest.raises(InvalidStateError) as info:
        hv.set_target("dm-on", "12GiB")
    assert info.value.details["rule"] == "maximum_only_up_while_running"
    assert info.value.details["allowed_min_bytes"] == 16 * GiB
    assert "Allowed now" in info.value.message
    refused_locally(peer)


def test_running_dm_maximum_only_up_minimum_only_down(rules_hv: tuple[Any, Peer]) -> None:
    hv, peer = rules_hv
    for kw, rule in (
        ({"maximum": "12GiB"}, "maximum_only_up_while_running"),
        ({"minimum": "1GiB"}, "minimum_only_down_while_running"),
    ):
        with pytest.raises(InvalidStateError) as info:
            hv.set_config("dm-on", **kw)
        assert info.value.details["rule"] == rule and "Allowed now" in info.value.message
    with pytest.raises(InvalidStateError):
        hv.set_config("dm-on", dynamic=False)
    with pytest.raises(InvalidStateError):
        hv.set_config("dm-on", startup="4GiB")
    refused_locally(peer)
    assert hv.set_config("dm-on", maximum="20GiB", minimum="256MiB", buffer_percent=30, priority=90).changed
    cfg = hv.get_config("dm-on")
    assert (cfg.maximum_bytes, cfg.minimum_bytes, cfg.buffer_percent, cfg.priority) == (
        20 * GiB,
        256 * MiB,
        30,
        90,
    )
    assert hv.get_stats(["dm-on"])[0].target_bytes == 20 * GiB


def test_paused_vm_follows_the_live_rules(rules_hv: tuple[Any, Peer]) -> None:
    hv, peer = rules_hv
    with pytest.raises(InvalidStateError) as info:
        hv.set_config("dm-paused", dynamic=False)
    assert info.value.details["rule"] == "dynamic_toggle_only_when_off"
    with pytest.raises(InvalidStateError):
        hv.set_config("dm-paused", maximum="4GiB")
    refused_locally(peer)


def test_vms_that_are_off_take_any_valid_range(rules_hv: tuple[Any, Peer]) -> None:
    hv, _ = rules_hv
    assert hv.set_config("dm-off", maximum="6GiB", minimum="1GiB", startup="2GiB").changed
    change = hv.set_target("dm-off", "4GiB")  # no guest runs, so no usage floor: no force needed
    assert change.after == {"target_bytes": 4 * GiB} and not change.forced
    assert any("no usage floor" in w for w in change.warnings)
    assert hv.get_config("dm-off").maximum_bytes == 4 * GiB
    assert hv.set_target("static-off", "2GiB").changed
    assert hv.get_config("static-off").startup_bytes == 2 * GiB
    assert hv.set_config("static-off", dynamic=True, minimum="512MiB", maximum="8GiB", startup="4GiB").changed
    assert hv.vm_capabilities("static-off").mechanism is Mechanism.DYNAMIC_MEMORY


def test_static_vm_is_resized_at_runtime(rules_hv: tuple[Any, Peer]) -> None:
    hv, _ = rules_hv
    change = hv.set_target("static-on", "6GiB")
    assert change.mechanism is Mechanism.RUNTIME_RESIZE and change.changed
    cfg = hv.get_config("static-on")
    assert cfg.startup_bytes == 6 * GiB and cfg.dynamic is False
    assert hv.get_stats(["static-on"])[0].current_bytes == 6 * GiB
    with pytest.raises(InvalidRequestError) as info:
        hv.set_config("static-on", minimum="1GiB")  # the range is for Dynamic Memory only
    assert info.value.details["rule"] == "dynamic_memory_required"


def test_values_are_validated_before_sending(rules_hv: tuple[Any, Peer]) -> None:
    hv, peer = rules_hv
    with pytest.raises(InvalidRequestError) as info:
        hv.set_config("dm-on", maximum=20 * GiB + MiB)
    assert info.value.details["rule"] == "aligned_2MiB"
    assert "20 GiB" in info.value.message or "20.00 GiB" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        hv.set_config("dm-off", minimum="16MiB")
    assert info.value.details["rule"] == "at_least_32MiB"
    with pytest.raises(InvalidRequestError):
        hv.set_config("dm-off", minimum="6GiB", startup="4GiB")  # minimum <= startup <= maximum
    with pytest.raises(InvalidRequestError):
        hv.set_config("dm-on", buffer_percent=4)
    with pytest.raises(InvalidRequestError):
        hv.set_config("dm-on", priority=101)
    with pytest.raises(UnsupportedOperationError):
        hv.set_config("dm-on", shares=1000)
    with pytest.raises(InvalidRequestError):
        hv.set_target("dm-off", "1GiB")  # a DM maximum below the startup size
    refused_locally(peer)


def test_alignment_is_enforced_whatever_the_state_or_the_path(rules_hv: tuple[Any, Peer]) -> None:
    hv, peer = rules_hv
    for name in ("dm-off", "static-off", "static-on"):
        with pytest.raises(InvalidRequestError) as info:
            hv.set_config(name, startup=2 * GiB + MiB)
        assert info.value.details["rule"] == "aligned_2MiB", name
    vm = hv.resolve("static-off")
    with pytest.raises(InvalidRequestError) as info:
        hv.backend.apply_target(vm, 2 * GiB + MiB)  # a caller that skips the session's checks
    assert info.value.details["rule"] == "aligned_2MiB"
    with pytest.raises(InvalidRequestError):
        hv.backend.apply_config(vm, ConfigUpdate(maximum_bytes=6 * GiB + 4096), hv.get_config(vm))
    refused_locally(peer)


def test_host_refusal_is_mapped_when_checks_are_bypassed(rules_hv: tuple[Any, Peer]) -> None:
    # What the host says when a client skips the checks (the backend never does): its error
    # record arrives as a typed error with the native record kept as the cause.
    hv, peer = rules_hv
    vm = hv.resolve("dm-on")
    current = hv.get_config(vm)
    with pytest.raises(InvalidStateError) as info:
        hv.backend.apply_config(vm, ConfigUpdate(minimum_bytes=current.minimum_bytes * 2), current)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteScriptError) and cause.category == "InvalidOperation"
    assert info.value.native_code == "InvalidOperation,Microsoft.HyperV.PowerShell.Commands.SetVMMemory"
    assert peer.host.calls["set_memory"] == 1
    assert hv.get_config(vm) == current


# -- defect 1: buffer / minimum / maximum need Dynamic Memory -----------------------------------


@pytest.mark.parametrize(
    ("vm", "kw"),
    [
        ("static-on", {"buffer_percent": 30}),
        ("static-off", {"maximum": "8GiB"}),
        ("static-off", {"minimum": "512MiB", "priority": 10}),
        ("dm-off", {"dynamic": False, "buffer_percent": 30}),  # being turned off in the same call
    ],
)
def test_range_without_dynamic_memory_is_refused_before_sending(
    rules_hv: tuple[Any, Peer], vm: str, kw: dict[str, Any]
) -> None:
    hv, peer = rules_hv
    before = hv.get_config(vm)
    with pytest.raises(InvalidRequestError) as info:
        hv.set_config(vm, **kw)
    assert info.value.details["rule"] == "dynamic_memory_required"
    assert "requires Dynamic Memory to be enabled" in info.value.message
    refused_locally(peer)
    assert hv.get_config(vm) == before


def test_static_capabilities_no_longer_declare_the_range(rules_hv: tuple[Any, Peer]) -> None:
    hv, _ = rules_hv
    caps = hv.vm_capabilities("static-off")
    assert not {"minimum_bytes", "maximum_bytes", "buffer_percent"} & (caps.set_live | caps.set_offline)
    # with Dynamic Memory switched on in the same change (VM off) the range is settable
    assert hv.set_config(
        "static-off", dynamic=True, minimum="512MiB", maximum="8GiB", buffer_percent=30
    ).changed


@pytest.mark.parametrize(
    ("vm", "change"),
    [
        ("static-on", {"buffer_percent": 30}),
        ("static-off", {"maximum_bytes": 8 * GiB}),
        ("dm-off", {"dynamic": False, "minimum_bytes": 512 * MiB}),
    ],
)
def test_the_host_itself_refuses_the_range_without_dynamic_memory(
    rules_hv: tuple[Any, Peer], vm: str, change: dict[str, Any]
) -> None:
    # A client that skips the checks reaches the host, which refuses as Set-VMMemory does.
    hv, peer = rules_hv
    target = hv.resolve(vm)
    current = hv.get_config(target)
    with pytest.raises(InvalidRequestError) as info:
        hv.backend.apply_config(target, ConfigUpdate.from_fields(change), current)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteScriptError) and cause.category == "InvalidArgument"
    assert "requires Dynamic Memory to be enabled" in str(cause)
    assert peer.host.calls["set_memory"] == 1
    assert hv.get_config(target) == current


# -- defect 2: every Get-VM State, by name and by number ----------------------------------------

#: name -> (power state, health); the documented VMState values (shared/REFERENCE.md §6)
DOCUMENTED_STATES: dict[str, tuple[PowerState, str | None]] = {
    "Other": (PowerState.UNKNOWN, None),
    "Running": (PowerState.RUNNING, "ok"),
    "Off": (PowerState.STOPPED, "ok"),
    "Stopping": (PowerState.RUNNING, "ok"),
    "Saved": (PowerState.SUSPENDED, "ok"),
    "Paused": (PowerState.PAUSED, "ok"),
    "Starting": (PowerState.RUNNING, "ok"),
    "Reset": (PowerState.RUNNING, "ok"),
    "Saving": (PowerState.RUNNING, "ok"),
    "Pausing": (PowerState.RUNNING, "ok"),
    "Resuming": (PowerState.RUNNING, "ok"),
    "FastSaved": (PowerState.SUSPENDED, "ok"),
    "FastSaving": (PowerState.RUNNING, "ok"),
    "ForceShutdown": (PowerState.RUNNING, "ok"),
    "ForceReboot": (PowerState.RUNNING, "ok"),
    "Hibernated": (PowerState.SUSPENDED, "ok"),
    "ComponentServicing": (PowerState.UNKNOWN, None),
    "RunningCritical": (PowerState.RUNNING, "critical"),
    "OffCritical": (PowerState.STOPPED, "critical"),
    "StoppingCritical": (PowerState.RUNNING, "critical"),
    "SavedCritical": (PowerState.SUSPENDED, "critical"),
    "PausedCritical": (PowerState.PAUSED, "critical"),
    "StartingCritical": (PowerState.RUNNING, "critical"),
    "ResetCritical": (PowerState.RUNNING, "critical"),
    "SavingCritical": (PowerState.RUNNING, "critical"),
    "PausingCritical": (PowerState.RUNNING, "critical"),
    "ResumingCritical": (PowerState.RUNNING, "critical"),
    "FastSavedCritical": (PowerState.SUSPENDED, "critical"),
    "FastSavingCritical": (PowerState.RUNNING, "critical"),
}


def test_every_state_name_is_classified(rules_hv: tuple[Any, Peer]) -> None:
    from tests.support.hyperv.fakehost import VM_STATE_NUMBERS

    hv, peer = rules_hv
    assert set(DOCUMENTED_STATES) == set(VM_STATE_NUMBERS)
    vm = hv.resolve("dm-on")
    for name, (power, health) in DOCUMENTED_STATES.items():
        peer.host.states[vm.id] = name
        (listed,) = [v for v in hv.list_vms() if v.id == vm.id]
        assert (listed.power_state, listed.extra["health"], listed.extra["state"]) == (power, health, name)


def test_state_numbers_are_classified_or_unknown(rules_hv: tuple[Any, Peer]) -> None:
    # Windows PowerShell 5.1 writes an enum as its number. Up to ForceReboot the numbers are the
    # same on every Windows version; above, Windows Server 2016 numbers the *Critical states two
    # lower, so a number whose meaning differs between versions is an unknown state.
    from tests.support.hyperv.fakehost import VM_STATE_NUMBERS

    hv, peer = rules_hv
    peer.host.enums_as_numbers = True
    vm = hv.resolve("dm-on")
    unknown_by_version = {"Hibernated", "ComponentServicing", "OffCritical", "StoppingCritical",
                          "SavedCritical", "PausedCritical", "PausingCritical"}  # fmt: skip
    seen = {}
    for name, number in VM_STATE_NUMBERS.items():
        peer.host.states[vm.id] = name
        (listed,) = [v for v in hv.list_vms() if v.id == vm.id]
        seen[name] = listed.power_state
        if number <= 32782 or name == "FastSavedCritical" or name == "FastSavingCritical":
            assert (listed.power_state, listed.extra["state"]) == (DOCUMENTED_STATES[name][0], name), name
        elif name in unknown_by_version:
            assert listed.power_state is PowerState.UNKNOWN, name
        else:  # the same power state under both numberings
            assert listed.power_state is DOCUMENTED_STATES[name][0], name
    assert seen["RunningCritical"] is PowerState.RUNNING  # 32785: RunningCritical or StoppingCritical


def test_a_critical_running_vm_keeps_its_guard_rail(rules_hv: tuple[Any, Peer]) -> None:
    # The defect: RunningCritical became UNKNOWN, "not running", and the floor was skipped.
    hv, peer = rules_hv
    vm = hv.resolve("static-on")
    peer.host.states[vm.id] = "RunningCritical"
    (st,) = hv.get_stats([vm.id])
    assert st.vm.power_state is PowerState.RUNNING and st.used_bytes is not None
    with pytest.raises(hvballoon.errors.TargetBelowFloorError):
        hv.set_target(vm.id, "1GiB")
    refused_locally(peer)


@pytest.mark.parametrize("state", ["Other", "ComponentServicing", 32786, "Frobnicating"])
def test_an_unknown_state_never_skips_the_guard_rail(rules_hv: tuple[Any, Peer], state: str | int) -> None:
    hv, peer = rules_hv
    vm = hv.resolve("static-on")
    peer.host.states[vm.id] = state
    (listed,) = [v for v in hv.list_vms() if v.id == vm.id]
    assert listed.power_state is PowerState.UNKNOWN
    with pytest.raises(hvballoon.errors.GuardRailError) as info:
        hv.set_target(vm.id, "4GiB")
    assert info.value.code == "guard_rail" and info.value.details["rule"] == "unknown_power_state"
    refused_locally(peer)
    assert hv.set_target(vm.id, "10GiB").changed  # raising is not a hazard
    forced = hv.set_target(vm.id, "4GiB", force=True)
    assert forced.changed and any("unknown" in w for w in forced.warnings)
    assert hv.get_config(vm.id).startup_bytes == 4 * GiB


def test_a_target_never_lands_on_the_wrong_field(rules_hv: tuple[Any, Peer]) -> None:
    # The target's field comes from the VM as read (static: the startup size). If Dynamic Memory
    # was switched on behind the session's back, the host refuses instead of setting the startup
    # size of what is now a Dynamic Memory VM.
    hv, peer = rules_hv
    stale = hv.resolve("static-off")
    peer.host.world.set_config(stale.id, ConfigUpdate(dynamic=True))
    before = hv.get_config(stale.id)
    with pytest.raises(InvalidStateError) as info:
        hv.backend.apply_target(stale, 6 * GiB)
    assert info.value.native_code == "HVBalloonStateChanged"
    assert hv.get_config(stale.id) == before
    assert hv.set_target("static-off", "10GiB").changed  # a fresh read sets the maximum
    assert hv.get_config("static-off").maximum_bytes == 10 * GiB
