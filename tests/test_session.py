from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import hvballoon
from hvballoon import fake
from hvballoon.errors import (
    AmbiguousVMError,
    BalloonStalledError,
    InvalidRequestError,
    InvalidStateError,
    StatsUnavailableError,
    TargetAboveMaximumError,
    TargetBelowFloorError,
    UnsupportedOperationError,
    VMNotFoundError,
    WaitTimeoutError,
)
from hvballoon.fleet import Fleet
from hvballoon.models import Mechanism
from hvballoon.retry import RetryPolicy
from hvballoon.session import GuardRails
from hvballoon.units import GiB, KiB, MiB, parse_size
from tests.support.policies import targets

INSTANT = RetryPolicy(sleep=lambda _s: None)


@pytest.fixture
def hv() -> Iterator[hvballoon.Hypervisor]:
    with hvballoon.connect("fake://seed", retry=INSTANT) as session:
        yield session


def test_floor_refusal_states_the_numbers(hv: hvballoon.Hypervisor) -> None:
    # web01 uses 3 GiB of 16 GiB: floor = 3 GiB + max(256 MiB, 1.6 GiB)
    with pytest.raises(TargetBelowFloorError) as info:
        hv.set_target("web01", "1GiB")
    d = info.value.details
    assert d["used_bytes"] == 3 * GiB
    assert d["floor_bytes"] == 3 * GiB + int(16 * GiB * 0.10)
    assert d["target_bytes"] == GiB
    assert "3 GiB" in str(info.value) and "4.6 GiB" in str(info.value)
    assert targets(hv)["web01"] == 16 * GiB


def test_refusals_carry_a_hint_each_interface_words_its_own_way(hv: hvballoon.Hypervisor) -> None:
    with pytest.raises(TargetBelowFloorError) as info:
        hv.set_target("web01", "1GiB")
    err = info.value
    assert err.hint is not None and err.hint.kind == "force"
    assert "force" not in err.message and "CLI" not in err.message  # the message is neutral
    assert "pass force=True to override" in str(err)  # Python callers read the API's words
    assert err.hint_text("cli") == "add --force to override"
    assert err.hint_text("ansible") == "set force: true to override"
    assert err.to_dict("cli")["hint"] == {"kind": "force", "text": "add --force to override"}
    assert "set force: true" in err.describe("ansible") and "force=True" not in err.describe("ansible")


def test_a_missing_password_hints_at_each_interface_s_way_to_give_one() -> None:
    from hvballoon.errors import Hint, InvalidRequestError, hint_text

    err = InvalidRequestError("the esxi backend needs a password", hint=Hint("password"))
    assert "HVBALLOON_PASSWORD" in str(err) and "password=" in str(err)
    assert "--password-stdin" in err.describe("cli") and "password=" not in err.describe("cli")
    assert "password option" in err.describe("ansible")
    assert err.to_dict()["hint"]["kind"] == "password"
    with pytest.raises(ValueError, match="interface"):
        hint_text(Hint("force"), "web")


def test_force_passes_the_floor_with_a_warning(hv: hvballoon.Hypervisor) -> None:
    change = hv.set_target("web01", "1GiB", force=True)
    assert change.changed and change.forced and change.after == {"target_bytes": GiB}
    assert any("floor" in w for w in change.warnings)
    assert hv.get_stats(["web01"])[0].target_bytes == GiB


def test_force_never_passes_the_maximum(hv: hvballoon.Hypervisor) -> None:
    with pytest.raises(TargetAboveMaximumError) as info:
        hv.set_target("web01", "17GiB", force=True)
    assert info.value.details["maximum_bytes"] == 16 * GiB


def test_refusals_show_exact_bytes_when_rounding_hides_the_difference(hv: hvballoon.Hypervisor) -> None:
    with pytest.raises(TargetAboveMaximumError) as info:
        hv.set_target("web01", 17179869185)
    assert "17,179,869,185 bytes asked, aligned up to 1 KiB" in str(info.value)
    assert "maximum 16 GiB (17,179,869,184 bytes)" in str(info.value)
    floor = 3 * GiB + int(16 * GiB * 0.10)
    target = (floor - 1) // KiB * KiB  # KiB-aligned on KVM, just below the floor
    with pytest.raises(TargetBelowFloorError) as below:
        hv.set_target("web01", target)
    assert f"{target:,} bytes" in str(below.value) and f"{floor:,} bytes" in str(below.value)
    with pytest.raises(TargetAboveMaximumError) as clear:
        hv.set_target("web01", "17GiB")
    assert "bytes" not in str(clear.value)  # a visible difference needs no byte counts


def test_custom_guard_rails() -> None:
    with hvballoon.connect("fake://seed", guard_rails=GuardRails(margin_bytes=0, margin_fraction=0)) as hv:
        assert hv.set_target("web01", "3GiB").changed
    with pytest.raises(InvalidRequestError):
        GuardRails(margin_fraction=1.5)


def test_alignment_is_upward_and_reported() -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        change = hv.set_target("web01", 6 * GiB + 1)
        assert change.after["target_bytes"] == 6 * GiB + MiB
        assert change.requested["target_bytes"] == 6 * GiB + 1
        assert change.mechanism is Mechanism.LIMIT
    with hvballoon.connect("fake://seed") as hv:
        assert hv.set_target("web01", 6 * GiB + 1).after["target_bytes"] == 6 * GiB + KiB


def test_dry_run_and_idempotence(hv: hvballoon.Hypervisor) -> None:
    dry = hv.set_target("web01", "8GiB", dry_run=True)
    assert dry.changed and dry.dry_run
    assert targets(hv)["web01"] == 16 * GiB
    assert hv.set_target("web01", "8GiB").changed
    again = hv.set_target("web01", "8GiB")
    assert not again.changed and again.before == again.after == {"target_bytes": 8 * GiB}


SCENARIO = """
name: twins
host: {physical: 64GiB}
vms:
  - {name: twin, id: a1, memory: 8GiB, used: 2GiB}
  - {name: twin, id: b2, memory: 8GiB, used: 2GiB}
  - {name: nostats, memory: 8GiB, used: 2GiB, stats_period: 0}
  - {name: nodriver, memory: 8GiB, used: 2GiB, balloon_driver: false}
  - {name: halted, memory: 8GiB, power_state: stopped}
"""


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[hvballoon.Hypervisor]:
    path = tmp_path / "twins.yaml"
    path.write_text(SCENARIO)
    with hvballoon.connect(f"fake://{path}", retry=INSTANT) as hv:
        yield hv


def test_ambiguous_name_lists_candidates(twins: hvballoon.Hypervisor) -> None:
    with pytest.raises(AmbiguousVMError) as info:
        twins.get_config("twin")
    assert sorted(info.value.details["candidates"]) == ["a1", "b2"]
    assert twins.get_config("b2").vm.id == "b2"


def test_missing_stats_refuse_unless_forced(twins: hvballoon.Hypervisor) -> None:
    (st,) = twins.get_stats(["nostats"])
    assert st.stale and st.guest_used_bytes is None and st.guest_free_bytes is None
    with pytest.raises(StatsUnavailableError, match="has not reported"):
        twins.set_target("nostats", "4GiB")
    assert twins.set_target("nostats", "4GiB", force=True).changed


def test_stats_appear_after_the_period_is_set(twins: hvballoon.Hypervisor) -> None:
    change = twins.set_config("nostats", stats_period=5)
    assert change.changed and change.after == {"stats_period_seconds": 5}
    twins.backend.world.advance(5)
    (st,) = twins.get_stats(["nostats"])
    assert not st.stale and st.guest_used_bytes == 2 * GiB


def test_wait_reports_a_stall_with_the_figure_reached(twins: hvballoon.Hypervisor) -> None:
    twins.set_target("nodriver", "4GiB", force=True)
    with pytest.raises(BalloonStalledError) as info:
        twins.wait_for_target("nodriver", timeout=60, poll_interval=1)
    assert info.value.details["reached_bytes"] == 8 * GiB
    assert info.value.details["target_bytes"] == 4 * GiB
    assert info.value.details["elapsed_seconds"] <= 6
    # a guest that never reported and whose memory never moved: its driver, not its memory
    assert info.value.details["never_reported"] is True
    assert "balloon driver may not be loaded" in info.value.message
    assert "cannot free more" not in info.value.message


def test_wait_times_out_when_still_short(twins: hvballoon.Hypervisor) -> None:
    twins.set_target("nodriver", "4GiB", force=True)
    with pytest.raises(WaitTimeoutError):
        twins.wait_for_target("nodriver", timeout=3, poll_interval=1, stall_after=100)


@pytest.mark.parametrize(("flavor", "vm", "size"), [("esxi", "web01", "12GiB"), ("hyperv", "web01", "16GiB")])
def test_wait_on_an_unobservable_target_warns_and_returns_the_stats(flavor: str, vm: str, size: str) -> None:
    """ESXi's limit and Hyper-V's Dynamic Memory cannot be watched arriving: the target is
    applied, the wait warns (a typed warning) and returns the current stats, like Ansible does."""
    with hvballoon.connect(f"fake://seed?flavor={flavor}", retry=INSTANT) as hv:
        hv.set_target(vm, size)
        with pytest.warns(hvballoon.TargetNotObservableWarning, match="cannot observe") as caught:
            st = hv.wait_for_target(vm, timeout=5)
        assert st.vm.name == vm and st.target_bytes == parse_size(size)
        assert caught[0].message.vm == vm  # type: ignore[union-attr]
        with warnings.catch_warnings():
            warnings.simplefilter("error", hvballoon.TargetNotObservableWarning)  # strict callers
            with pytest.raises(hvballoon.TargetNotObservableWarning):
                hv.wait_for_target(vm, timeout=5)


def test_wait_arrives(hv: hvballoon.Hypervisor) -> None:
    hv.set_target("web01", "8GiB")
    assert hv.wait_for_target("web01", timeout=5).current_bytes == 8 * GiB


def test_wait_says_when_the_vm_vanished(twins: hvballoon.Hypervisor) -> None:
    vm = twins.resolve("a1")
    twins.set_target(vm, "4GiB")
    twins.backend.world.guests["a1"].crashed = True
    with pytest.raises(VMNotFoundError, match="vanished"):
        twins.wait_for_target(vm, target="4GiB", timeout=5)


def test_powered_off_vm(twins: hvballoon.Hypervisor) -> None:
    (st,) = twins.get_stats(["halted"])
    assert st.stale and st.current_bytes is None
    change = twins.set_target("halted", "4GiB")  # nothing runs, so no usage floor applies
    assert change.changed and any("no usage floor" in w for w in change.warnings)
    with pytest.raises(TargetAboveMaximumError):
        twins.set_target("halted", "9GiB")


def test_set_config_ranges_and_rules() -> None:
    with hvballoon.connect("fake://seed?flavor=hyperv") as hv:
        cfg = hv.get_config("web01")
        assert cfg.dynamic and cfg.mechanism is Mechanism.DYNAMIC_MEMORY
        with pytest.raises(InvalidStateError, match="minimum can only be lowered"):
            hv.set_config("web01", minimum="2GiB")
        with pytest.raises(InvalidStateError, match="maximum can only be raised"):
            hv.set_config("web01", maximum="8GiB")
        with pytest.raises(InvalidStateError, match="power it off"):
            hv.set_config("web01", dynamic=False)
        with pytest.raises(InvalidRequestError, match="minimum <= startup <= maximum"):
            hv.set_config("web01", minimum="256MiB", maximum="200MiB")
        with pytest.raises(InvalidRequestError, match="buffer_percent"):
            hv.set_config("web01", buffer_percent=4)
        change = hv.set_config("web01", minimum="256MiB", buffer_percent=30, priority=80)
        assert change.changed and change.after["minimum_bytes"] == 256 * MiB
        assert hv.get_config("web01").buffer_percent == 30
        with pytest.raises(InvalidStateError, match="can only be raised"):
            hv.set_target("web01", "8GiB")
        static = hv.vm_capabilities("db01")
        assert static.mechanism is Mechanism.RUNTIME_RESIZE


def test_esxi_limits() -> None:
    with hvballoon.connect("fake://seed?flavor=esxi") as hv:
        assert hv.set_config("db01", reservation="4GiB", limit="12GiB").changed
        cfg = hv.get_config("db01")
        assert (cfg.reservation_bytes, cfg.limit_bytes) == (4 * GiB, 12 * GiB)
        with pytest.raises(InvalidRequestError, match="above the limit"):
            hv.set_config("db01", reservation="13GiB")
        release = hv.set_config("db01", limit="unlimited")
        assert release.after["limit_bytes"] is None and release.before["limit_bytes"] == 12 * GiB
        with pytest.raises(UnsupportedOperationError):
            hv.set_config("db01", buffer_percent=20)
        with pytest.warns(hvballoon.TargetNotObservableWarning):  # a limit is not watched arriving
            assert hv.wait_for_target("db01").vm.name == "db01"


def test_secrets_never_shown(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with hvballoon.connect("fake://seed", password="hunter2") as hv:
        texts = [repr(hv), repr(hv.backend.opts), hv.uri]
        with pytest.raises(TargetBelowFloorError) as info:
            hv.set_target("web01", "1GiB")
        texts += [str(info.value), repr(info.value), str(info.value.to_dict())]
        assert hv.backend.opts.password is not None
        assert hv.backend.opts.password.get_secret_value() == "hunter2"
    monkeypatch.setenv("HVBALLOON_PASSWORD", "hunter3")
    with hvballoon.connect("fake://seed") as hv:
        assert hv.backend.opts.password.get_secret_value() == "hunter3"
        texts.append(repr(hv.backend.opts))
    texts.append(caplog.text)
    assert not any("hunter2" in t or "hunter3" in t for t in texts)


def test_verify_off_is_warned() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hvballoon.connect("fake://seed", verify=False).close()
    assert any("verification is OFF" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    "kw",
    [
        {"timeout": 0},
        {"timeout": "10"},
        {"nonsense": 1},
        {"timeout": True},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"timeout": 1e20},  # past threading.TIMEOUT_MAX: every call's wait overflowed
    ],
)
def test_bad_connect_arguments(kw: dict) -> None:
    with pytest.raises(InvalidRequestError):
        hvballoon.connect("fake://seed", **kw)


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"retry": "x"}, "retry takes a RetryPolicy, got str"),  # was an AttributeError
        ({"retry": 3}, "retry takes a RetryPolicy, got int"),
        ({"guard_rails": {"margin_bytes": 1}}, "guard_rails takes a GuardRails, got dict"),
    ],
)
def test_connect_refuses_a_retry_policy_or_guard_rails_of_another_type(kw: dict, says: str) -> None:
    with pytest.raises(InvalidRequestError, match=says):
        hvballoon.connect("fake://seed", **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"timeout": 1e20},
        {"timeout": 0},
        {"poll_interval": float("nan")},
        {"poll_interval": 1e20},
        {"stall_after": float("nan")},
        {"stall_after": 0},
    ],
)
def test_wait_refuses_a_duration_that_is_not_a_positive_finite_number(
    hv: hvballoon.Hypervisor, kw: dict
) -> None:
    hv.set_target("web01", "8GiB")
    (name,) = kw
    with pytest.raises(InvalidRequestError, match=name):
        hv.wait_for_target("web01", **kw)


@pytest.mark.parametrize("wait_timeout", [float("nan"), float("inf"), 1e20, 0])
def test_set_targets_refuses_a_bad_wait_timeout_before_changing_anything(
    hv: hvballoon.Hypervisor, wait_timeout: float
) -> None:
    with pytest.raises(InvalidRequestError, match="wait_timeout"):
        hv.set_targets({"web01": "8GiB"}, wait=True, wait_timeout=wait_timeout)
    assert targets(hv)["web01"] == 16 * GiB


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"host_timeout": 1e20}, "host_timeout"),
        ({"host_timeout": float("nan")}, "host_timeout"),
        ({"timeout": float("inf")}, "timeout"),
    ],
)
def test_a_fleet_refuses_a_timeout_that_is_not_a_positive_finite_number(kw: dict, name: str) -> None:
    with pytest.raises(InvalidRequestError, match=name):
        Fleet(["fake://seed"], **kw)


@pytest.mark.parametrize(
    "uri",
    [
        "fake://seed?flavor=xen",
        "fake://seed?seed=x",
        "fake://seed?seed=-1",
        "fake://seed?bogus=1",
        "fake://seed?=x",
        "fake://seed?state=",
        "fake://seed/extra/path",
        "fake://user@seed",
        "fake://seed:99",
        "fake://nosuchscenario",
    ],
)
def test_bad_fake_uris(uri: str) -> None:
    with pytest.raises(hvballoon.InvalidRequestError):
        hvballoon.connect(uri)


def test_closed_session_refuses() -> None:
    hv = hvballoon.connect("fake://seed")
    hv.close()
    hv.close()
    with pytest.raises(InvalidStateError, match="closed"):
        hv.list_vms()
    with pytest.raises(InvalidStateError, match="cannot be reopened"), hv:  # at the with
        pass


def test_keyed_worlds_are_shared_then_reset() -> None:
    with fake.world("seed") as w:
        with hvballoon.connect("fake://seed") as hv:
            hv.set_target("web01", "9GiB")
        with hvballoon.connect("fake://seed") as hv:
            assert targets(hv)["web01"] == 9 * GiB
        assert w.now == 0
    with hvballoon.connect("fake://seed") as hv:
        assert targets(hv)["web01"] == 16 * GiB


def test_pytest_plugin_fixture(hvballoon_session: hvballoon.Hypervisor) -> None:
    assert len(hvballoon_session.list_vms()) == 10


@pytest.mark.hvballoon_scenario("seed", flavor="esxi")
def test_pytest_plugin_marker(hvballoon_session: hvballoon.Hypervisor) -> None:
    assert hvballoon_session.capabilities.mechanism is Mechanism.LIMIT


def test_hyperv_static_resize_then_unrelated_change() -> None:
    with hvballoon.connect("fake://seed?flavor=hyperv", retry=INSTANT) as hv:
        caps = hv.vm_capabilities("db01")
        assert caps.mechanism is Mechanism.RUNTIME_RESIZE
        assert hv.set_target("db01", "12GiB").changed
        assert hv.get_stats(["db01"])[0].configured_bytes == 12 * GiB  # a static VM: its startup size
        assert hv.set_config("db01", priority=60).changed
        # past its scenario memory: the ceiling is the simulated host's physical memory
        assert hv.set_target("db01", "17GiB").changed
        with pytest.raises(TargetAboveMaximumError) as info:
            hv.set_target("db01", "121GiB", force=True)
        assert info.value.details["maximum_bytes"] == 120 * GiB
        with pytest.raises(InvalidStateError, match="not enough memory"):  # more than is free now
            hv.set_target("db01", "100GiB")
        assert hv.get_config("db01").startup_bytes == 17 * GiB


def test_per_call_guard_rails_leave_the_session_alone(hv: hvballoon.Hypervisor) -> None:
    narrow = GuardRails(margin_bytes=0, margin_fraction=0)
    assert hv.set_target("web01", "3GiB", guard_rails=narrow).changed  # exactly what it uses
    assert hv.guard_rails == GuardRails()
    with pytest.raises(TargetBelowFloorError):
        hv.set_target("web02", "3GiB")
