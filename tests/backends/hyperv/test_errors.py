"""The error table, row by row, and the same faults end to end through the WinRM peer."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
import requests.exceptions as rq
import winrm.exceptions as wx

from hvballoon.backends.hyperv._errors import (
    ACCESS_DENIED,
    ERRORS,
    OPERATION_TIMEOUT,
    SHELL_NOT_FOUND,
    CommandTooLongError,
    RemoteScriptError,
)
from hvballoon.backends.hyperv._scripts import READ, SET_MEMORY, Template
from hvballoon.errors import (
    AuthenticationError,
    BackendError,
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    OperationTimeoutError,
    PermissionDeniedError,
    SessionExpiredError,
    VMNotFoundError,
)
from tests.support.hyperv.peer import Peer, start_peer


def script_error(error_id: str = "", category: str = "", exception_type: str = "") -> RemoteScriptError:
    return RemoteScriptError(
        "read", exit_code=1, error_id=error_id, category=category, exception_type=exception_type, message="m"
    )


def fault(code: int) -> wx.WSManFaultError:
    return wx.WSManFaultError(500, "Bad HTTP response", "<fault/>", "reason", wsman_fault_code=code)


# (native example, expected class, expected retryable): at least one per row of ERROR_TABLE.
EXAMPLES: list[tuple[BaseException, type[HVBalloonError], bool]] = [
    (script_error("HVBalloonVMNotFound", "ObjectNotFound"), VMNotFoundError, False),
    (script_error("HVBalloonStateChanged", "NotSpecified"), InvalidStateError, False),
    (
        script_error(
            "CommandNotFoundException",
            "ObjectNotFound",
            "System.Management.Automation.CommandNotFoundException",
        ),
        BackendError,
        False,
    ),
    (
        script_error("x,Microsoft.HyperV.PowerShell.Commands.SetVMMemory", "PermissionDenied"),
        PermissionDeniedError,
        False,
    ),
    (
        script_error("InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM", "ObjectNotFound"),
        VMNotFoundError,
        False,
    ),
    (
        script_error("InvalidOperation,Microsoft.HyperV.PowerShell.Commands.SetVMMemory", "InvalidOperation"),
        InvalidStateError,
        False,
    ),
    (
        script_error("InvalidParameter,Microsoft.HyperV.PowerShell.Commands.SetVMMemory", "InvalidArgument"),
        InvalidRequestError,
        False,
    ),
    (script_error("Timeout", "OperationTimeout"), OperationTimeoutError, True),
    (script_error("Boom", "NotSpecified", "System.Exception"), BackendError, False),
    (wx.InvalidCredentialsError("rejected"), AuthenticationError, False),
    (wx.BasicAuthDisabledError("basic is off"), AuthenticationError, False),
    (wx.WinRMOperationTimeoutError(), OperationTimeoutError, True),
    (fault(SHELL_NOT_FOUND), SessionExpiredError, True),
    (fault(ACCESS_DENIED), PermissionDeniedError, False),
    (fault(2150858770), BackendError, False),
    (wx.WinRMTransportError("http", 503, ""), HVConnectionError, True),
    (wx.WinRMTransportError("http", 404, ""), BackendError, False),
    (
        wx.WinRMError("requested auth method is kerberos, but pykerberos is not installed"),
        BackendError,
        False,
    ),
    (rq.SSLError("CERTIFICATE_VERIFY_FAILED"), HVConnectionError, False),
    (rq.ConnectTimeout("connect timed out"), HVConnectionError, True),
    (rq.ReadTimeout("read timed out"), OperationTimeoutError, True),
    (rq.ConnectionError("refused"), HVConnectionError, True),
    (rq.ChunkedEncodingError("broken chunk"), HVConnectionError, True),
    (ET.ParseError("no element found"), BackendError, False),
    (StopIteration(), BackendError, False),
    (AssertionError("RelatesTo mismatch"), BackendError, False),
    (ConnectionResetError(104, "reset"), HVConnectionError, True),
    (TimeoutError("timed out"), OperationTimeoutError, True),
    (CommandTooLongError("a 9000-character command line"), InvalidRequestError, False),
]


def test_every_row_has_an_example() -> None:
    assert {ERRORS.rule_for(native) for native, _, _ in EXAMPLES} == set(ERRORS.rules)


@pytest.mark.parametrize(
    ("native", "expected", "retryable"),
    EXAMPLES,
    ids=[f"{i:02d}-{type(e[0]).__name__}" for i, e in enumerate(EXAMPLES)],
)
def test_row(native: BaseException, expected: type[HVBalloonError], retryable: bool) -> None:
    with pytest.raises(HVBalloonError) as info, ERRORS.mapped(uri="hyperv://admin@hv01/", vm="web01"):
        raise native
    err = info.value
    assert type(err) is expected and err.retryable is retryable
    assert err.__cause__ is native and err.native is native
    assert (err.backend, err.uri, err.vm) == ("hyperv", "hyperv://admin@hv01/", "web01")
    assert err.native_code is not None


def test_hvballoon_errors_and_bugs_pass_through() -> None:
    own = VMNotFoundError("gone")
    with pytest.raises(VMNotFoundError) as info, ERRORS.mapped():
        raise own
    assert info.value is own
    with pytest.raises(KeyError), ERRORS.mapped():
        raise KeyError("a bug stays a bug")
    assert not ERRORS.catches(KeyError("x"))


def test_a_script_error_id_beats_its_exception_type_and_its_category() -> None:
    # the most specific code wins whatever the order of the rows
    err = script_error("HVBalloonVMNotFound", "PermissionDenied", "System.UnauthorizedAccessException")
    assert type(ERRORS.map(err)) is VMNotFoundError
    err = script_error("Other,x", "ObjectNotFound", "System.UnauthorizedAccessException")
    assert type(ERRORS.map(err)) is PermissionDeniedError


# -- end to end -----------------------------------------------------------------------------------


@pytest.mark.peer
def test_wsman_access_denied(basic_peer: Peer) -> None:
    with basic_peer.connect() as hv:
        basic_peer.server.fail_next("Command", ACCESS_DENIED, reason="Access is denied.")
        with pytest.raises(PermissionDeniedError) as info:
            hv.get_stats()
        assert info.value.native_code == ACCESS_DENIED


@pytest.mark.peer
def test_operation_timeout_at_connect(basic_peer: Peer) -> None:
    basic_peer.server.fail_next("Create", OPERATION_TIMEOUT)
    with pytest.raises(OperationTimeoutError) as info:
        basic_peer.connect()
    assert isinstance(info.value.__cause__, wx.WinRMOperationTimeoutError)


@pytest.mark.peer
def test_a_command_that_never_finishes_is_abandoned_at_the_timeout(basic_peer: Peer) -> None:
    with basic_peer.connect(timeout=1.0) as hv:
        basic_peer.server.fail_next("Receive", OPERATION_TIMEOUT, times=100_000)
        started = time.monotonic()
        with pytest.raises(OperationTimeoutError):
            hv.get_stats()
        assert 1.0 <= time.monotonic() - started < 5.0


def test_unreachable_host() -> None:
    import socket

    import hvballoon
    from hvballoon.retry import RetryPolicy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HVConnectionError) as info:
        hvballoon.connect(
            f"hyperv://admin@127.0.0.1:{port}/?transport=basic&scheme=http",
            password="x",
            timeout=2,
            retry=RetryPolicy(max_attempts=1),
        )
    assert info.value.retryable and isinstance(info.value.__cause__, rq.ConnectionError)


@pytest.mark.peer
@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            {
                "id": "AccessDenied,Microsoft.HyperV.PowerShell.Commands.GetVM",
                "category": "PermissionDenied",
                "type": "Microsoft.HyperV.PowerShell.VirtualizationException",
            },
            PermissionDeniedError,
        ),
        (
            {
                "id": "CommandNotFoundException",
                "category": "ObjectNotFound",
                "type": "System.Management.Automation.CommandNotFoundException",
            },
            BackendError,
        ),
    ],
    ids=["permission", "no-hyperv-module"],
)
def test_script_error_records(
    basic_peer: Peer, record: dict[str, str], expected: type[HVBalloonError]
) -> None:
    with basic_peer.connect() as hv:
        basic_peer.host.fail_next(READ, record)
        with pytest.raises(expected) as info:
            hv.list_vms()
        assert info.value.native_code == record["id"]


@pytest.mark.peer
def test_vm_vanished_before_the_change(basic_peer: Peer) -> None:
    with basic_peer.connect() as hv:
        basic_peer.host.fail_next(
            SET_MEMORY,
            {"id": "HVBalloonVMNotFound", "category": "ObjectNotFound", "type": "x", "message": "gone"},
        )
        with pytest.raises(VMNotFoundError) as info:
            hv.set_config("web01", priority=10)
        assert info.value.vm == "web01"


@pytest.mark.peer
def test_host_without_hyperv_module() -> None:
    for p in start_peer("basic", False):
        p.host.hyperv_module = False
        with pytest.raises(BackendError, match="Hyper-V PowerShell module"):
            p.connect()
        assert p.server.shells == {}  # the probe's shell was deleted


@pytest.mark.peer
def test_the_host_answers_only_the_fixed_templates(basic_peer: Peer) -> None:
    with basic_peer.connect() as hv:
        runner = hv.backend.runner  # type: ignore[attr-defined]
        rogue = Template("rogue", "Write-Output '@HVB_DATA@'")
        with pytest.raises(RemoteScriptError) as info:
            runner.run(rogue, {})
        assert info.value.error_id is None and "no handler route" in (info.value.remote_message or "")
        with pytest.raises(BackendError), ERRORS.mapped():
            runner.run(rogue, {})


@pytest.mark.peer
def test_too_long_a_command_is_never_sent(basic_peer: Peer) -> None:
    with basic_peer.connect() as hv:
        basic_peer.server.reset_counts()
        with pytest.raises(CommandTooLongError):
            hv.backend.runner.run(READ, {"ids": ["x" * 5000]})  # type: ignore[attr-defined]
        assert basic_peer.server.counts() == {}
