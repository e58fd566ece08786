"""vSphere faults → hvballoon errors: one table, one context manager.

Every call the backend makes into pyvmomi runs inside :func:`mapped`. A native exception is
matched against :data:`FAULT_TABLE` by *type* (first match wins, so subclasses come before
their bases — ``NotAuthenticated`` is a ``NoPermission``, ``InvalidPowerState`` an
``InvalidState``) and re-raised as an :mod:`hvballoon.errors` class with the native exception
chained (``raise … from exc``). Messages are never parsed.

>>> from pyVmomi import vim
>>> from hvballoon.errors import AuthenticationError
>>> try:
...     with mapped(where="vc.example.com:443"):
...         raise vim.fault.InvalidLogin(msg="Cannot complete login")
... except AuthenticationError as err:
...     err.code, err.native_code, type(err.__cause__).__name__
('auth_failed', 'vim.fault.InvalidLogin', 'vim.fault.InvalidLogin')
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

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

# pyvmomi's types are generated at run time: typed as Any at this boundary, and only here.
vim: Any = _vim
vmodl: Any = _vmodl

__all__ = ["FAULT_TABLE", "FaultRule", "map_exception", "mapped"]

BACKEND = "esxi"


@dataclass(frozen=True)
class FaultRule:
    """One row: native exception types → an hvballoon error class and what to tell the user."""

    native: tuple[type[BaseException], ...]
    error: type[HVBalloonError]
    hint: str
    retryable: bool | None = None


#: The one mapping table, most specific types first.
FAULT_TABLE: tuple[FaultRule, ...] = (
    FaultRule(
        (vim.fault.NotAuthenticated,),
        SessionExpiredError,
        "the vSphere session expired and logging in again did not restore it",
    ),
    FaultRule((vim.fault.InvalidLogin,), AuthenticationError, "the user name or password was refused"),
    FaultRule(
        (vim.fault.NoPermission,),
        PermissionDeniedError,
        "the account lacks a privilege (reading needs System.View and System.Read; "
        "changing memory needs VirtualMachine.Config.Resource, and "
        "VirtualMachine.Config.AdvancedConfig for the balloon cap)",
    ),
    FaultRule(
        (vmodl.fault.ManagedObjectNotFound,),
        VMNotFoundError,
        "the object no longer exists (the VM was removed or re-registered)",
    ),
    FaultRule(
        (vim.fault.InvalidPowerState, vim.fault.InvalidState),
        InvalidStateError,
        "the VM's state does not allow this",
    ),
    FaultRule(
        (vim.fault.TaskInProgress,),
        InvalidStateError,
        "another task is running on the VM; try again when it finishes",
        retryable=True,
    ),
    FaultRule(
        (vmodl.fault.InvalidArgument, vim.fault.InvalidVmConfig),
        InvalidRequestError,
        "vSphere refused a value",
    ),
    FaultRule(
        (vmodl.fault.NotSupported, vmodl.fault.NotImplemented),
        UnsupportedOperationError,
        "this vSphere endpoint does not support the operation",
    ),
    FaultRule(
        (ssl.SSLCertVerificationError,),
        HVConnectionError,
        "TLS certificate verification failed: give the CA that signed the server's certificate "
        "with ca_file=…, or (not recommended) verify=False",
        retryable=False,
    ),
    FaultRule((ssl.SSLError,), HVConnectionError, "the TLS handshake failed"),
    FaultRule((TimeoutError, socket.timeout), OperationTimeoutError, "no answer within the timeout"),
    FaultRule(
        (OSError, http.client.HTTPException, vim.fault.HostConnectFault),
        HVConnectionError,
        "the vSphere endpoint could not be reached or dropped the connection",
    ),
    FaultRule((vmodl.MethodFault,), BackendError, "vSphere reported a fault"),
)


def _native_code(exc: BaseException) -> str:
    # pyvmomi's classes are named after their vSphere type ("vim.fault.InvalidLogin")
    return type(exc).__name__


def map_exception(exc: BaseException, *, where: str | None = None, vm: str | None = None) -> HVBalloonError:
    """The hvballoon error for a native exception (the caller chains it with ``from exc``)."""
    for rule in FAULT_TABLE:
        if isinstance(exc, rule.native):
            detail = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
            place = f" ({where})" if where else ""
            return rule.error(
                f"{rule.hint}{place}: {detail}",
                backend=BACKEND,
                vm=vm,
                native_code=_native_code(exc),
                retryable=rule.retryable,
            )
    return BackendError(
        f"unexpected error from pyvmomi: {type(exc).__name__}: {exc}",
        backend=BACKEND,
        vm=vm,
        native_code=_native_code(exc),
    )


@contextmanager
def mapped(*, where: str | None = None, vm: str | None = None) -> Iterator[None]:
    """Run a block whose native exceptions leave as hvballoon errors (cause chained)."""
    try:
        yield
    except HVBalloonError:
        raise
    except Exception as exc:
        raise map_exception(exc, where=where, vm=vm) from exc
