"""The libvirt error table: one test per row (every code of it), plus errors provoked for real."""

from __future__ import annotations

from pathlib import Path

import pytest

import hvballoon
from hvballoon.backends.kvm._errors import ERRORS, fake_error
from hvballoon.errors import (
    BackendError,
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    OperationTimeoutError,
    PermissionDeniedError,
    VMNotFoundError,
)
from hvballoon.models import VM, PowerState
from hvballoon.session import Hypervisor

libvirt = pytest.importorskip("libvirt")

ROWS = [
    pytest.param(name, rule, id=name)
    for rule in ERRORS.rules
    for name in sorted(rule.codes or ())
    if hasattr(libvirt, name)
]


@pytest.mark.parametrize(("name", "rule"), ROWS)
def test_every_row_of_the_table(name: str, rule: object) -> None:
    code = getattr(libvirt, name)
    native = fake_error(code, "some libvirt message")
    with pytest.raises(HVBalloonError) as info, ERRORS.mapped("do something", vm="web01"):
        raise native
    err = info.value
    assert type(err) is rule.error  # type: ignore[attr-defined]
    assert err.native_code == name
    assert err.__cause__ is native and err.native is native
    assert err.backend == "kvm" and err.vm == "web01"
    expected_retry = rule.retryable if rule.retryable is not None else rule.error.default_retryable  # type: ignore[attr-defined]
    assert err.retryable is expected_retry
    assert "some libvirt message" in err.message


def test_a_code_outside_the_table_is_a_backend_error_with_its_name() -> None:
    native = fake_error(libvirt.VIR_ERR_XML_DETAIL, "bad xml")
    err = ERRORS.map(native, "define")
    assert type(err) is BackendError and err.native_code == "VIR_ERR_XML_DETAIL"
    assert err.message == "define: libvirt reported an error: bad xml"


def test_an_error_without_a_code_is_a_backend_error() -> None:
    native = libvirt.libvirtError("no code at all")
    native.err = None
    err = ERRORS.map(native, "call")
    assert type(err) is BackendError and err.native_code is None


def test_an_error_level_is_not_taken_for_a_code() -> None:
    # VIR_ERR_NO_MEMORY (2) shares its number with the error *level* VIR_ERR_ERROR
    assert ERRORS.map(fake_error(libvirt.VIR_ERR_NO_MEMORY, "oom"), "x").native_code == "VIR_ERR_NO_MEMORY"


def test_a_deadline_past_is_a_timeout_row() -> None:
    from hvballoon.backend_kit import DeadlineExceeded

    err = ERRORS.map(DeadlineExceeded("qemu:///system", 0.5), "read")
    assert type(err) is OperationTimeoutError and err.retryable and "within 0.5 s" in err.message


def test_the_message_text_is_never_used_to_choose() -> None:
    # a "not found" message with an unrelated code is not a VMNotFoundError
    err = ERRORS.map(fake_error(libvirt.VIR_ERR_OPERATION_FAILED, "Domain not found"), "x")
    assert type(err) is BackendError


# -- provoked for real, through the backend, against the test driver ------------------------


def test_unknown_domain_is_vm_not_found(hv: Hypervisor) -> None:
    ghost = VM(id="00000000-0000-0000-0000-000000000001", name="ghost", backend="kvm")
    with pytest.raises(VMNotFoundError) as info:
        hv.backend.get_config(ghost)
    assert info.value.native_code == "VIR_ERR_NO_DOMAIN"
    assert isinstance(info.value.__cause__, libvirt.libvirtError)


def test_above_maximum_reaching_libvirt_is_invalid_request(hv: Hypervisor) -> None:
    # the session refuses this first; straight to the backend, libvirt's own refusal is mapped
    vm = hv.resolve("test")
    with pytest.raises(InvalidRequestError) as info:
        hv.backend.apply_target(vm, 64 * 2**30)
    assert info.value.native_code == "VIR_ERR_INVALID_ARG"


def test_read_only_connection_refuses_changes() -> None:
    with (
        hvballoon.connect("test:///default", read_only=True) as hv,
        pytest.raises(PermissionDeniedError) as info,
    ):
        hv.set_target("test", "3GiB")
    assert info.value.native_code == "VIR_ERR_OPERATION_DENIED"


def test_live_stats_of_a_stopped_domain_is_invalid_state(node_hv: Hypervisor) -> None:
    off = node_hv.resolve("off01")
    assert off.power_state is PowerState.STOPPED
    dom = node_hv.native.lookupByUUIDString(off.id)
    with pytest.raises(InvalidStateError) as info, ERRORS.mapped("read stats", vm="off01"):
        dom.memoryStats()
    assert info.value.native_code == "VIR_ERR_OPERATION_INVALID"


def test_no_daemon_is_a_connection_error(tmp_path: Path) -> None:
    # a daemon socket that is missing (VIR_ERR_SYSTEM_ERROR). The URI names the socket: a plain
    # qemu:///system in a process where the real-guest tests have loaded libvirt's embedded QEMU
    # driver goes to that driver, which answers "Missing URI parameter 'root'" instead
    uri = f"qemu+unix:///system?socket={tmp_path / 'virtqemud-sock'}"
    with pytest.raises(HVConnectionError) as info:
        hvballoon.connect(uri, retry=hvballoon.RetryPolicy(max_attempts=1), timeout=10)
    assert info.value.retryable
    assert info.value.uri == uri
