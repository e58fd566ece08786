"""Native faults → hvballoon errors: one table, one context manager.

pywinrm raises different things for the same trouble depending on the transport and the step:
``InvalidCredentialsError`` for any 401, ``WSManFaultError`` for a SOAP fault (with the host's
``wsman_fault_code``), ``WinRMOperationTimeoutError`` for the operation-timeout fault (which is
*not* a ``WinRMError``), ``WinRMTransportError`` for other HTTP statuses, and the ``requests``
exceptions (``SSLError``, ``ConnectTimeout``, ``ReadTimeout``, ``ConnectionError``) pass straight
through. A script that fails on the host ends as :class:`RemoteScriptError`, carrying the error
record's FullyQualifiedErrorId, category and exception type.

:data:`ERRORS` (an :class:`~hvballoon.backend_kit.ErrorTable`) maps all of them; rows match on
the exception's type and, where it has one, its code (fault code, HTTP status, error id, category
or exception type) — never on message text. The most specific row wins whatever the order: a row
naming a code beats one naming none, a script's error id beats its exception type, which beats
its category; then the nearest type (``SSLError`` and ``ConnectTimeout`` are ``ConnectionError``
subclasses; ``InvalidCredentialsError`` is a pywinrm ``AuthenticationError``, a ``WinRMError``).
``ERRORS.mapped`` applies it at the backend's boundary and chains the native exception
(``raise … from exc``); the backend's link (:mod:`hvballoon.backends.hyperv._client`) does that on every
command::

    with ERRORS.mapped("set the memory", uri=redacted_uri, vm="web01"):
        runner.run(SET_MEMORY, params)

>>> from winrm.exceptions import WinRMOperationTimeoutError
>>> err = ERRORS.map(WinRMOperationTimeoutError())
>>> err.code, err.retryable
('timeout', True)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

import requests.exceptions as rq
import winrm.exceptions as wx

from hvballoon.backend_kit import Code, ErrorRule, ErrorTable
from hvballoon.errors import (
    AuthenticationError,
    BackendError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    OperationTimeoutError,
    PermissionDeniedError,
    SessionExpiredError,
    VMNotFoundError,
)

from . import SPEC

__all__ = [
    "ACCESS_DENIED",
    "BACKEND",
    "ERRORS",
    "OPERATION_TIMEOUT",
    "SHELL_NOT_FOUND",
    "CommandTooLongError",
    "RemoteScriptError",
    "native_codes",
]

#: The backend's name, as its errors carry it.
BACKEND = SPEC.name

#: WSManFault codes of a Windows host (decimal, as in the fault's Code attribute).
OPERATION_TIMEOUT = 2150858793  # 0x80338029 ERROR_WSMAN_OPERATION_TIMEDOUT
SHELL_NOT_FOUND = 2150858843  # 0x8033805B the shell is gone (deleted, idle timeout, service restart)
ACCESS_DENIED = 2147942405  # 0x80070005 E_ACCESSDENIED


class CommandTooLongError(ValueError):
    """A rendered command would exceed cmd.exe's command-line limit (never sent)."""


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
    def codes(self) -> tuple[str, ...]:
        """What rows match on, most specific first: the error id (whole, then its part before the
        comma), the exception type (full, then short name), then the category."""
        out: list[str] = []
        if self.error_id:
            out += [self.error_id, self.error_id.split(",", 1)[0]]
        if self.exception_type:
            out += [self.exception_type, self.exception_type.rsplit(".", 1)[-1]]
        if self.category:
            out.append(self.category)
        return tuple(dict.fromkeys(out))


def _codes(*values: Code) -> frozenset[Code]:
    return frozenset(values)


def native_codes(exc: BaseException) -> Sequence[Code]:
    """The codes a row may match on, most specific first: fault code, HTTP status, or a script's
    error record."""
    if isinstance(exc, RemoteScriptError):
        return exc.codes
    if isinstance(exc, wx.WSManFaultError):
        return (exc.wsman_fault_code,) if exc.wsman_fault_code is not None else ()
    if isinstance(exc, wx.WinRMTransportError):
        try:
            return (int(exc.code),)
        except (IndexError, TypeError, ValueError):
            return ()
    return ()


def _native_code(exc: BaseException) -> Code:
    if isinstance(exc, RemoteScriptError):
        return exc.error_id or exc.category or f"exit {exc.exit_code}"
    codes = native_codes(exc)
    return codes[0] if codes else type(exc).__name__


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
    if isinstance(exc, (rq.RequestException, OSError, CommandTooLongError)):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


#: The one mapping table. Native faults it has no row for (bugs) pass through unmapped.
ERRORS = ErrorTable(
    BACKEND,
    [
        # -- a script failed on the host: its error record decides -----------------------------------
        ErrorRule(
            RemoteScriptError, VMNotFoundError, "no VM has this id", codes=_codes("HVBalloonVMNotFound")
        ),
        ErrorRule(
            RemoteScriptError,
            InvalidStateError,
            "the VM changed since it was read (Dynamic Memory switched); read it again",
            codes=_codes("HVBalloonStateChanged"),
        ),
        ErrorRule(
            RemoteScriptError,
            BackendError,
            "a Hyper-V cmdlet is missing on the host (install the Hyper-V PowerShell module)",
            codes=_codes("CommandNotFoundException"),
        ),
        ErrorRule(
            RemoteScriptError,
            PermissionDeniedError,
            "the host refused: the account lacks Hyper-V rights (Hyper-V Administrators group)",
            codes=_codes("UnauthorizedAccessException", "PermissionDenied", "SecurityError"),
        ),
        ErrorRule(
            RemoteScriptError, VMNotFoundError, "the host cannot find the VM", codes=_codes("ObjectNotFound")
        ),
        ErrorRule(
            RemoteScriptError,
            InvalidStateError,
            "the host refused the change in the VM's current state",
            codes=_codes("InvalidOperation", "ResourceBusy", "ResourceUnavailable", "DeviceError"),
        ),
        ErrorRule(
            RemoteScriptError,
            InvalidRequestError,
            "the host refused the value",
            codes=_codes("InvalidArgument", "InvalidData", "InvalidType", "LimitsExceeded", "SyntaxError"),
        ),
        ErrorRule(
            RemoteScriptError, OperationTimeoutError, "the host timed out", codes=_codes("OperationTimeout")
        ),
        ErrorRule(RemoteScriptError, BackendError, "the host reported an error"),
        # -- pywinrm --------------------------------------------------------------------------------
        ErrorRule(wx.InvalidCredentialsError, AuthenticationError, "the host refused the credentials"),
        ErrorRule(wx.AuthenticationError, AuthenticationError, "the host refused to authenticate"),
        ErrorRule(
            wx.WinRMOperationTimeoutError, OperationTimeoutError, "the WinRM operation timed out on the host"
        ),
        ErrorRule(
            wx.WSManFaultError,
            SessionExpiredError,
            "the remote shell is gone and reopening it failed",
            codes=_codes(SHELL_NOT_FOUND),
        ),
        ErrorRule(
            wx.WSManFaultError,
            PermissionDeniedError,
            "WinRM denied access (the account needs remote-management rights on the host)",
            codes=_codes(ACCESS_DENIED),
        ),
        ErrorRule(wx.WSManFaultError, BackendError, "the WinRM service answered with a fault"),
        ErrorRule(
            wx.WinRMTransportError,
            HVConnectionError,
            "the WinRM service is temporarily unavailable",
            codes=_codes(502, 503, 504),
        ),
        ErrorRule(wx.WinRMTransportError, BackendError, "unexpected HTTP status from the WinRM service"),
        ErrorRule(wx.WinRMError, BackendError, "WinRM client error"),
        # -- requests (the HTTP layer under pywinrm) ---------------------------------------------------
        ErrorRule(
            rq.SSLError,
            HVConnectionError,
            "TLS failed: the host's certificate could not be verified (pass ca_file=… with the CA that "
            "signed it, or connect with verify=False knowingly)",
            retryable=False,
        ),
        ErrorRule(rq.ConnectTimeout, HVConnectionError, "timed out connecting to the WinRM service"),
        ErrorRule(rq.Timeout, OperationTimeoutError, "the WinRM service did not answer in time"),
        ErrorRule(rq.ConnectionError, HVConnectionError, "cannot reach the WinRM service"),
        ErrorRule(rq.RequestException, HVConnectionError, "HTTP error talking to the WinRM service"),
        # -- malformed WS-Management responses (pywinrm parses with ElementTree, next() and assert) ----
        ErrorRule(ET.ParseError, BackendError, "malformed WS-Management response"),
        ErrorRule(StopIteration, BackendError, "malformed WS-Management response"),
        ErrorRule(AssertionError, BackendError, "WS-Management response for another request"),
        ErrorRule(OSError, HVConnectionError, "network error talking to the WinRM service"),
        ErrorRule(TimeoutError, OperationTimeoutError, "the WinRM service did not answer in time"),
        ErrorRule(
            CommandTooLongError,
            InvalidRequestError,
            "too much for one command (cmd.exe's command line is limited); nothing was sent",
        ),
    ],
    codes=native_codes,
    native_code=_native_code,
    detail=_detail,
)
