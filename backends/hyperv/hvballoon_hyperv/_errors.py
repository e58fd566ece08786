"""Native faults → hvballoon errors: one table, one context manager.

pywinrm raises different things for the same trouble depending on the transport and the step:
``InvalidCredentialsError`` for any 401, ``WSManFaultError`` for a SOAP fault (with the host's
``wsman_fault_code``), ``WinRMOperationTimeoutError`` for the operation-timeout fault (which is
*not* a ``WinRMError``), ``WinRMTransportError`` for other HTTP statuses, and the ``requests``
exceptions (``SSLError``, ``ConnectTimeout``, ``ReadTimeout``, ``ConnectionError``) pass straight
through. A script that fails on the host ends as :class:`RemoteScriptError`, carrying the error
record's FullyQualifiedErrorId, category and exception type.

:data:`ERROR_TABLE` maps all of them, first matching row wins; rows match on the exception's type
and, where it has one, its code (fault code, HTTP status, error id, category or exception type) —
never on message text. :class:`translate_errors` applies it at the backend's boundary and chains
the native exception (``raise … from exc``)::

    with translate_errors(uri=redacted_uri, vm="web01"):
        runner.run(SET_MEMORY, params)

>>> from winrm.exceptions import WinRMOperationTimeoutError
>>> err = map_error(WinRMOperationTimeoutError())
>>> err.code, err.retryable
('timeout', True)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import requests.exceptions as rq
import winrm.exceptions as wx

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

__all__ = [
    "ACCESS_DENIED",
    "ERROR_TABLE",
    "OPERATION_TIMEOUT",
    "SHELL_NOT_FOUND",
    "ErrorRule",
    "RemoteScriptError",
    "map_error",
    "native_codes",
    "rule_for",
    "translate_errors",
]

BACKEND = "hyperv"

#: WSManFault codes of a Windows host (decimal, as in the fault's Code attribute).
OPERATION_TIMEOUT = 2150858793  # 0x80338029 ERROR_WSMAN_OPERATION_TIMEDOUT
SHELL_NOT_FOUND = 2150858843  # 0x8033805B the shell is gone (deleted, idle timeout, service restart)
ACCESS_DENIED = 2147942405  # 0x80070005 E_ACCESSDENIED


class RemoteScriptError(Exception):
    """A script ended with a non-zero exit code (the host's error record, when it printed one).

    ``error_id`` is the FullyQualifiedErrorId (``"InvalidParameter,Microsoft.HyperV…"``),
    ``category`` the ErrorCategory name (``"ObjectNotFound"``), ``exception_type`` the .NET type.
    """

    def __init__(
        self,
        script: str,
        *,
        exit_code: int,
        error_id: str | None = None,
        category: str | None = None,
        exception_type: str | None = None,
        message: str | None = None,
    ) -> None:
        self.script = script
        self.exit_code = exit_code
        self.error_id = error_id or None
        self.category = category or None
        self.exception_type = exception_type or None
        self.remote_message = message or None
        super().__init__(
            f"script {script} failed (exit code {exit_code}, {self.error_id or 'no error record'}, "
            f"{self.category or 'no category'}): {self.remote_message or ''}"
        )

    @property
    def codes(self) -> frozenset[str]:
        """What rows match on: the error id (whole and its part before the comma), the
        category, and the exception type (full and short name)."""
        out: set[str] = set()
        if self.error_id:
            out |= {self.error_id, self.error_id.split(",", 1)[0]}
        if self.category:
            out.add(self.category)
        if self.exception_type:
            out |= {self.exception_type, self.exception_type.rsplit(".", 1)[-1]}
        return frozenset(out)


@dataclass(frozen=True)
class ErrorRule:
    """One row: a native type (and, if given, one of its codes) → an hvballoon error class."""

    native: type[BaseException]
    codes: frozenset[int | str] | None
    error: type[HVBalloonError]
    message: str
    retryable: bool | None = None


def _codes(*values: int | str) -> frozenset[int | str]:
    return frozenset(values)


#: The mapping, first match wins. Order matters where types nest (``SSLError`` and
#: ``ConnectTimeout`` are ``ConnectionError`` subclasses; ``InvalidCredentialsError`` is a
#: pywinrm ``AuthenticationError``, which is a ``WinRMError``).
ERROR_TABLE: tuple[ErrorRule, ...] = (
    # -- a script failed on the host: its error record decides -----------------------------------
    ErrorRule(RemoteScriptError, _codes("HVBalloonVMNotFound"), VMNotFoundError, "no VM has this id"),
    ErrorRule(
        RemoteScriptError,
        _codes("HVBalloonStateChanged"),
        InvalidStateError,
        "the VM changed since it was read (Dynamic Memory switched); read it again",
    ),
    ErrorRule(
        RemoteScriptError,
        _codes("CommandNotFoundException"),
        BackendError,
        "a Hyper-V cmdlet is missing on the host (install the Hyper-V PowerShell module)",
    ),
    ErrorRule(
        RemoteScriptError,
        _codes("UnauthorizedAccessException", "PermissionDenied", "SecurityError"),
        PermissionDeniedError,
        "the host refused: the account lacks Hyper-V rights (Hyper-V Administrators group)",
    ),
    ErrorRule(RemoteScriptError, _codes("ObjectNotFound"), VMNotFoundError, "the host cannot find the VM"),
    ErrorRule(
        RemoteScriptError,
        _codes("InvalidOperation", "ResourceBusy", "ResourceUnavailable", "DeviceError"),
        InvalidStateError,
        "the host refused the change in the VM's current state",
    ),
    ErrorRule(
        RemoteScriptError,
        _codes("InvalidArgument", "InvalidData", "InvalidType", "LimitsExceeded", "SyntaxError"),
        InvalidRequestError,
        "the host refused the value",
    ),
    ErrorRule(RemoteScriptError, _codes("OperationTimeout"), OperationTimeoutError, "the host timed out"),
    ErrorRule(RemoteScriptError, None, BackendError, "the host reported an error"),
    # -- pywinrm --------------------------------------------------------------------------------
    ErrorRule(wx.InvalidCredentialsError, None, AuthenticationError, "the host refused the credentials"),
    ErrorRule(wx.AuthenticationError, None, AuthenticationError, "the host refused to authenticate"),
    ErrorRule(
        wx.WinRMOperationTimeoutError,
        None,
        OperationTimeoutError,
        "the WinRM operation timed out on the host",
    ),
    ErrorRule(
        wx.WSManFaultError,
        _codes(SHELL_NOT_FOUND),
        SessionExpiredError,
        "the remote shell is gone and reopening it failed",
    ),
    ErrorRule(
        wx.WSManFaultError,
        _codes(ACCESS_DENIED),
        PermissionDeniedError,
        "WinRM denied access (the account needs remote-management rights on the host)",
    ),
    ErrorRule(wx.WSManFaultError, None, BackendError, "the WinRM service answered with a fault"),
    ErrorRule(
        wx.WinRMTransportError,
        _codes(502, 503, 504),
        HVConnectionError,
        "the WinRM service is temporarily unavailable",
    ),
    ErrorRule(wx.WinRMTransportError, None, BackendError, "unexpected HTTP status from the WinRM service"),
    ErrorRule(wx.WinRMError, None, BackendError, "WinRM client error"),
    # -- requests (the HTTP layer under pywinrm) ---------------------------------------------------
    ErrorRule(
        rq.SSLError,
        None,
        HVConnectionError,
        "TLS failed: the host's certificate could not be verified (pass ca_file=… with the CA that "
        "signed it, or connect with verify=False knowingly)",
        retryable=False,
    ),
    ErrorRule(rq.ConnectTimeout, None, HVConnectionError, "timed out connecting to the WinRM service"),
    ErrorRule(rq.Timeout, None, OperationTimeoutError, "the WinRM service did not answer in time"),
    ErrorRule(rq.ConnectionError, None, HVConnectionError, "cannot reach the WinRM service"),
    ErrorRule(rq.RequestException, None, HVConnectionError, "HTTP error talking to the WinRM service"),
    # -- malformed WS-Management responses (pywinrm parses with ElementTree, next() and assert) ----
    ErrorRule(ET.ParseError, None, BackendError, "malformed WS-Management response"),
    ErrorRule(StopIteration, None, BackendError, "malformed WS-Management response"),
    ErrorRule(AssertionError, None, BackendError, "WS-Management response for another request"),
    ErrorRule(OSError, None, HVConnectionError, "network error talking to the WinRM service"),
)


def native_codes(exc: BaseException) -> frozenset[int | str]:
    """The codes a row may match on: fault code, HTTP status, or a script's error record."""
    if isinstance(exc, RemoteScriptError):
        return frozenset(exc.codes)
    if isinstance(exc, wx.WSManFaultError):
        return frozenset({exc.wsman_fault_code}) if exc.wsman_fault_code is not None else frozenset()
    if isinstance(exc, wx.WinRMTransportError):
        try:
            return frozenset({int(exc.code)})
        except (IndexError, TypeError, ValueError):
            return frozenset()
    return frozenset()


def _native_code(exc: BaseException) -> str | int:
    if isinstance(exc, RemoteScriptError):
        return exc.error_id or exc.category or f"exit {exc.exit_code}"
    if isinstance(exc, wx.WSManFaultError) and exc.wsman_fault_code is not None:
        return exc.wsman_fault_code
    if isinstance(exc, wx.WinRMTransportError):
        codes = native_codes(exc)
        if codes:
            return next(iter(codes))
    return type(exc).__name__


def _detail(exc: BaseException) -> str:
    """What the native error adds to the message (never a secret: pywinrm and requests do not
    put credentials in their messages, and scripts only see ids and sizes)."""
    if isinstance(exc, RemoteScriptError):
        parts = [p for p in (exc.remote_message, exc.error_id) if p]
        return "; ".join(parts)
    if isinstance(exc, wx.WSManFaultError):
        return f"{exc.reason} (fault {exc.wsman_fault_code})"
    if isinstance(exc, wx.WinRMTransportError):
        return f"HTTP {_native_code(exc)}"
    if isinstance(exc, (rq.RequestException, OSError)):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def map_error(exc: BaseException, *, uri: str | None = None, vm: str | None = None) -> HVBalloonError | None:
    """The hvballoon error for ``exc`` per :data:`ERROR_TABLE` (``None``: not a native fault)."""
    rule = rule_for(exc)
    if rule is None:
        return None
    detail = _detail(exc)
    return rule.error(
        f"{rule.message}: {detail}" if detail else rule.message,
        backend=BACKEND,
        uri=uri,
        vm=vm,
        native_code=_native_code(exc),
        retryable=rule.retryable,
    )


def rule_for(exc: BaseException) -> ErrorRule | None:
    """The first row of :data:`ERROR_TABLE` that matches ``exc`` (``None``: no row)."""
    codes = native_codes(exc)
    for rule in ERROR_TABLE:
        if not isinstance(exc, rule.native):
            continue
        if rule.codes is not None and not (rule.codes & codes):
            continue
        return rule
    return None


class translate_errors:
    """Context manager: re-raise any native fault as its hvballoon error, chained.

    hvballoon errors pass through untouched; exceptions the table does not know (bugs) too.
    """

    def __init__(self, *, uri: str | None = None, vm: str | None = None) -> None:
        self.uri = uri
        self.vm = vm

    def __enter__(self) -> translate_errors:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is None or isinstance(exc, HVBalloonError) or not isinstance(exc, Exception):
            return False
        mapped = map_error(exc, uri=self.uri, vm=self.vm)
        if mapped is None:
            return False
        raise mapped from exc
