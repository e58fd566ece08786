"""The fault table, row by row: with real pyvmomi faults, and provoked for real where possible."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pyVmomi import vim, vmodl

import hvballoon
from hvballoon.backend_kit import ErrorTable
from hvballoon.backends.esxi._faults import ERRORS
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
    UnsupportedOperationError,
    VMNotFoundError,
)

# (native exception, expected error, retryable)
ROWS: list[tuple[BaseException, type[HVBalloonError], bool]] = [
    (vim.fault.NotAuthenticated(msg="not authenticated"), SessionExpiredError, True),
    (vim.fault.InvalidLogin(msg="Login failure"), AuthenticationError, False),
    (
        vim.fault.NoPermission(msg="denied", privilegeId="VirtualMachine.Config.Resource"),
        PermissionDeniedError,
        False,
    ),
    (vmodl.fault.ManagedObjectNotFound(msg="gone"), VMNotFoundError, False),
    (vim.fault.InvalidPowerState(msg="powered off"), InvalidStateError, False),
    (vim.fault.InvalidState(msg="busy"), InvalidStateError, False),
    (vim.fault.TaskInProgress(msg="another task"), InvalidStateError, True),
    (
        vim.fault.InsufficientMemoryResourcesFault(msg="not enough unreserved memory"),
        InvalidStateError,
        False,
    ),
    (
        vmodl.fault.InvalidArgument(msg="bad", invalidProperty="spec.memoryAllocation"),
        InvalidRequestError,
        False,
    ),
    (vim.fault.InvalidVmConfig(msg="bad config"), InvalidRequestError, False),
    (vmodl.fault.NotSupported(msg="no"), UnsupportedOperationError, False),
    (vmodl.fault.NotImplemented(msg="no"), UnsupportedOperationError, False),
    (ssl.SSLCertVerificationError("certificate verify failed"), HVConnectionError, False),
    (ssl.SSLError("wrong version number"), HVConnectionError, True),
    (TimeoutError("timed out"), OperationTimeoutError, True),
    (ConnectionRefusedError(111, "Connection refused"), HVConnectionError, True),
    (vim.fault.HostConnectFault(msg="cannot reach"), HVConnectionError, True),
    (vim.fault.GenericVmConfigFault(msg="other"), BackendError, False),
    (RuntimeError("something unexpected"), BackendError, False),
]


@pytest.mark.parametrize(("native", "expected", "retryable"), ROWS, ids=[type(r[0]).__name__ for r in ROWS])
def test_each_row_maps_by_type_with_the_cause_chained(
    native: BaseException, expected: type[HVBalloonError], retryable: bool
) -> None:
    with pytest.raises(HVBalloonError) as info, ERRORS.mapped("vc.example:443", vm="web01"):
        raise native
    err = info.value
    assert type(err) is expected
    assert err.retryable is retryable
    assert err.__cause__ is native and err.native is native
    assert err.backend == "esxi" and err.vm == "web01"
    assert err.native_code == type(native).__name__


def test_the_most_specific_row_wins_whatever_the_order() -> None:
    """``NotAuthenticated`` is a ``NoPermission``, ``SSLCertVerificationError`` an ``SSLError`` and an
    ``OSError``: each still maps by its own row, with the rows in any order."""
    for rows in (ERRORS.rules, tuple(reversed(ERRORS.rules))):
        table = ErrorTable("esxi", rows, catch=(Exception,))
        for native, expected, retryable in ROWS:
            err = table.map(native)
            assert (type(err), err.retryable) == (expected, retryable), native


def test_the_table_is_covered_by_the_rows() -> None:
    covered = {type(native) for native, _, _ in ROWS}
    for rule in ERRORS.rules:
        assert any(issubclass(c, rule.types) for c in covered), rule


def test_messages_are_not_parsed() -> None:
    """The same type with any message maps the same way."""
    for msg in ("Login failure", "", "NoPermission: denied", "The object has already been deleted"):
        with pytest.raises(AuthenticationError), ERRORS.mapped():
            raise vim.fault.InvalidLogin(msg=msg)


# -- provoked for real, over loopback ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_a_connection_error() -> None:
    with pytest.raises(HVConnectionError) as info:
        hvballoon.connect(
            f"esxi://root@127.0.0.2:{_free_port()}",
            password="x",
            timeout=2,
            retry=hvballoon.RetryPolicy(max_attempts=1),
        )
    assert info.value.retryable and isinstance(info.value.__cause__, OSError)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.2", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        for c in held:
            c.close()
        srv.close()


def test_a_silent_server_is_a_timeout(silent_server: int) -> None:
    with pytest.raises(OperationTimeoutError) as info:
        hvballoon.connect(
            f"esxi://root@127.0.0.2:{silent_server}/?scheme=http",
            password="x",
            timeout=0.3,
            retry=hvballoon.RetryPolicy(max_attempts=1),
        )
    assert info.value.retryable


@pytest.mark.peer
def test_https_to_a_plain_http_server_is_a_tls_error(shared_peer: Any) -> None:
    with pytest.raises(HVConnectionError) as info:
        hvballoon.connect(
            f"esxi://{shared_peer.username}@{shared_peer.host}:{shared_peer.port}",
            password=shared_peer.password,
            retry=hvballoon.RetryPolicy(max_attempts=1),
        )
    assert isinstance(info.value.__cause__, ssl.SSLError)
    assert "TLS" in info.value.message
