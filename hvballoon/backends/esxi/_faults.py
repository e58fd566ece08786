"""vSphere faults → hvballoon errors: one table, one context manager.

Every call the backend makes into pyvmomi runs inside ``ERRORS.mapped`` (an
:class:`~hvballoon.backend_kit.ErrorTable`). A native exception is matched by *type*, the most
specific row winning whatever the order (``NotAuthenticated`` is a ``NoPermission``,
``InvalidPowerState`` an ``InvalidState``), and re-raised as an :mod:`hvballoon.errors` class with
the native exception chained (``raise … from exc``). Messages are never parsed; anything else
pyvmomi raises is a :class:`~hvballoon.errors.BackendError`.

>>> from pyVmomi import vim
>>> from hvballoon.errors import AuthenticationError

>>> try:
...     with ERRORS.mapped("https://vc.example.com:443"):
...         raise vim.fault.InvalidLogin(msg="Cannot complete login")
... except AuthenticationError as err:
...     err.code, err.native_code, type(err.__cause__).__name__
('auth_failed', 'vim.fault.InvalidLogin', 'vim.fault.InvalidLogin')
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any

from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from hvballoon.backend_kit import ErrorRule, ErrorTable
from hvballoon.errors import (
    AuthenticationError,
    BackendError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    OperationTimeoutError,
    PermissionDeniedError,
    SessionExpiredError,
    UnsupportedOperationError,
    VMNotFoundError,
)

from . import SPEC

# pyvmomi's types are generated at run time: typed as Any at this boundary, and only here.
vim: Any = _vim
vmodl: Any = _vmodl

__all__ = ["BACKEND", "ERRORS"]

#: The backend's name, as its errors carry it.
BACKEND = SPEC.name

#: The one mapping table.
ERRORS = ErrorTable(
    BACKEND,
    [
        ErrorRule(vim.fault.NotAuthenticated, SessionExpiredError, "the vSphere session expired"),
        ErrorRule(vim.fault.InvalidLogin, AuthenticationError, "the user name or password was refused"),
        ErrorRule(
            vim.fault.NoPermission,
            PermissionDeniedError,
            "the account lacks a privilege (reading needs System.View and System.Read; "
            "changing memory needs VirtualMachine.Config.Resource, and "
            "VirtualMachine.Config.AdvancedConfig for the balloon cap)",
        ),
        ErrorRule(
            vmodl.fault.ManagedObjectNotFound,
            VMNotFoundError,
            "the object no longer exists (the VM was removed or re-registered)",
        ),
        ErrorRule(
            (vim.fault.InvalidPowerState, vim.fault.InvalidState),
            InvalidStateError,
            "the VM's state does not allow this",
        ),
        ErrorRule(
            vim.fault.TaskInProgress,
            InvalidStateError,
            "another task is running on the VM; try again when it finishes",
            retryable=True,
        ),
        ErrorRule(
            vim.fault.InsufficientResourcesFault,
            InvalidStateError,
            "the host (or the VM's resource pool) cannot back the reservation now: ESXi's admission "
            "control keeps every powered-on VM's reservation within what it has unreserved",
        ),
        ErrorRule(
            (vmodl.fault.InvalidArgument, vim.fault.InvalidVmConfig),
            InvalidRequestError,
            "vSphere refused a value",
        ),
        ErrorRule(
            (vmodl.fault.NotSupported, vmodl.fault.NotImplemented),
            UnsupportedOperationError,
            "this vSphere endpoint does not support the operation",
        ),
        ErrorRule(
            ssl.SSLCertVerificationError,
            HVConnectionError,
            "TLS certificate verification failed: give the CA that signed the server's certificate "
            "with ca_file=…, or (not recommended) verify=False",
            retryable=False,
        ),
        ErrorRule(ssl.SSLError, HVConnectionError, "the TLS handshake failed"),
        ErrorRule((TimeoutError, socket.timeout), OperationTimeoutError, "no answer within the timeout"),
        ErrorRule(
            (OSError, http.client.HTTPException, vim.fault.HostConnectFault),
            HVConnectionError,
            "the vSphere endpoint could not be reached or dropped the connection",
        ),
        ErrorRule(vmodl.MethodFault, BackendError, "vSphere reported a fault"),
    ],
    # pyvmomi's classes are named after their vSphere type ("vim.fault.InvalidLogin")
    catch=(Exception,),
    unknown="unexpected error from pyvmomi",
)
