"""libvirt errors → hvballoon errors: one table, one context manager.

libvirt reports every failure as ``libvirt.libvirtError`` carrying a numeric code
(``err.get_error_code()``, the ``VIR_ERR_*`` constants). :data:`ERRORS` (an
:class:`~hvballoon.backend_kit.ErrorTable`) maps those codes, by name, onto
:mod:`hvballoon.errors`; ``ERRORS.mapped`` applies it at the boundary and chains the native error
(``raise … from exc``). The message text is shown to the user but never matched on.

::

    VIR_ERR_NO_DOMAIN                                   → VMNotFoundError
    VIR_ERR_AUTH_FAILED / _CANCELLED / _UNAVAILABLE     → AuthenticationError
    VIR_ERR_OPERATION_DENIED / VIR_ERR_ACCESS_DENIED    → PermissionDeniedError
    VIR_ERR_SYSTEM_ERROR / _RPC / _INVALID_CONN / …     → HVConnectionError (retryable)
    VIR_ERR_NO_CONNECT                                  → HVConnectionError (not retryable)
    VIR_ERR_OPERATION_TIMEOUT / _AGENT_UNRESPONSIVE     → OperationTimeoutError (retryable)
    VIR_ERR_OPERATION_INVALID                           → InvalidStateError
    VIR_ERR_RESOURCE_BUSY                               → InvalidStateError (retryable)
    VIR_ERR_INVALID_ARG                                 → InvalidRequestError
    VIR_ERR_NO_SUPPORT / _ARGUMENT_ / _OPERATION_UNSUPPORTED → UnsupportedOperationError
    anything else                                       → BackendError (native_code = the code)
    no answer within the timeout (the worker thread)    → OperationTimeoutError (retryable)

>>> from hvballoon.errors import VMNotFoundError

>>> try:
...     with ERRORS.mapped("look up a domain", vm="web01"):
...         raise fake_error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found")
... except VMNotFoundError as err:
...     err.code, err.native_code, err.vm
('vm_not_found', 'VIR_ERR_NO_DOMAIN', 'web01')
"""

from __future__ import annotations

from collections.abc import Sequence

from hvballoon.backend_kit import ErrorRule, ErrorTable
from hvballoon.errors import (
    AuthenticationError,
    BackendError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    OperationTimeoutError,
    PermissionDeniedError,
    UnsupportedOperationError,
    VMNotFoundError,
)

from . import SPEC
from ._native import libvirt, libvirt_error

__all__ = ["BACKEND", "CONNECTION_LOST_CODES", "ERRORS", "error_code", "fake_error"]

#: The backend's name, as its errors carry it.
BACKEND = SPEC.name


def _codes(*names: str) -> frozenset[str]:
    return frozenset(names)


#: Codes are named (``"VIR_ERR_NO_DOMAIN"``) and matched against the names of the installed
#: libvirt-python's constants, so a code an old libvirt lacks is simply never seen.
_ROWS = (
    ErrorRule(
        libvirt_error,
        VMNotFoundError,
        "no such domain (it may have been destroyed)",
        codes=_codes("VIR_ERR_NO_DOMAIN"),
    ),
    ErrorRule(
        libvirt_error,
        AuthenticationError,
        "libvirt refused the credentials (check the user in the URI and the password)",
        codes=_codes("VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE"),
        next_step="password",
    ),
    ErrorRule(
        libvirt_error,
        PermissionDeniedError,
        "not allowed on this connection (a read-only connection cannot change memory; "
        "read-write needs root, the libvirt group or a polkit rule)",
        codes=_codes("VIR_ERR_OPERATION_DENIED", "VIR_ERR_ACCESS_DENIED"),
    ),
    ErrorRule(
        libvirt_error,
        HVConnectionError,
        "libvirt has no driver for this URI (is the right libvirt driver package installed?)",
        codes=_codes("VIR_ERR_NO_CONNECT"),
        retryable=False,
    ),
    ErrorRule(
        libvirt_error,
        HVConnectionError,
        "the libvirt daemon could not be reached or the connection dropped",
        codes=_codes(
            "VIR_ERR_SYSTEM_ERROR",
            "VIR_ERR_RPC",
            "VIR_ERR_INVALID_CONN",
            "VIR_ERR_NO_SERVER",
            "VIR_ERR_NO_CLIENT",
            "VIR_ERR_SSH",
            "VIR_ERR_LIBSSH",
            "VIR_ERR_GNUTLS_ERROR",
            "VIR_ERR_UNKNOWN_HOST",
        ),
    ),
    ErrorRule(
        libvirt_error,
        OperationTimeoutError,
        "libvirt timed out waiting for the hypervisor or the guest",
        codes=_codes("VIR_ERR_OPERATION_TIMEOUT", "VIR_ERR_AGENT_UNRESPONSIVE"),
    ),
    ErrorRule(
        libvirt_error,
        InvalidStateError,
        "the domain is busy with another job; try again",
        codes=_codes("VIR_ERR_RESOURCE_BUSY"),
        retryable=True,
    ),
    ErrorRule(
        libvirt_error,
        InvalidStateError,
        "the domain's state does not allow this (is it running? persistent?)",
        codes=_codes("VIR_ERR_OPERATION_INVALID"),
    ),
    ErrorRule(
        libvirt_error, InvalidRequestError, "libvirt refused a value", codes=_codes("VIR_ERR_INVALID_ARG")
    ),
    ErrorRule(
        libvirt_error,
        UnsupportedOperationError,
        "this libvirt driver does not support the operation",
        codes=_codes("VIR_ERR_NO_SUPPORT", "VIR_ERR_ARGUMENT_UNSUPPORTED", "VIR_ERR_OPERATION_UNSUPPORTED"),
    ),
    ErrorRule(libvirt_error, BackendError, "libvirt reported an error"),
    # libvirt has no timeouts of its own: a call runs in a worker thread, abandoned past the deadline
    ErrorRule(TimeoutError, OperationTimeoutError, "libvirt did not answer in time"),
)

#: Error *levels* share the VIR_ERR_ prefix (VIR_ERR_NONE, _WARNING, _ERROR): they are no codes.
_LEVELS = frozenset({"VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR"})
_NAMES: dict[int, tuple[str, ...]] = {}
for _name in sorted(dir(libvirt)):
    if _name.startswith("VIR_ERR_") and _name not in _LEVELS and isinstance(getattr(libvirt, _name), int):
        _NAMES.setdefault(getattr(libvirt, _name), ())
        _NAMES[getattr(libvirt, _name)] += (_name,)


def error_code(exc: BaseException) -> int | None:
    """The ``VIR_ERR_*`` code of a libvirt error (``None`` if it carries none)."""
    get = getattr(exc, "get_error_code", None)
    code = get() if callable(get) else None
    return code if isinstance(code, int) else None


def _code_names(exc: BaseException) -> Sequence[str]:
    code = error_code(exc)
    return _NAMES.get(code, ()) if code is not None else ()


def _native_code(exc: BaseException) -> str | int | None:
    """The code's name (``"VIR_ERR_NO_DOMAIN"``), else the bare number; None without a code."""
    code = error_code(exc)
    if code is None:
        return None if isinstance(exc, libvirt_error) else type(exc).__name__
    names = _NAMES.get(code, ())
    return names[0] if names else code


#: The one mapping table.
ERRORS = ErrorTable(
    BACKEND,
    _ROWS,
    codes=_code_names,
    native_code=_native_code,
    detail=lambda exc: str(exc) or type(exc).__name__,
)

#: Codes that mean the connection itself is gone: the backend reconnects once, transparently.
CONNECTION_LOST_CODES: frozenset[int] = frozenset(
    getattr(libvirt, name)
    for name in ("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC", "VIR_ERR_INVALID_CONN", "VIR_ERR_NO_CLIENT")
    if hasattr(libvirt, name)
)


def fake_error(code: int, message: str = "simulated libvirt error") -> Exception:
    """A ``libvirt.libvirtError`` carrying ``code``, as libvirt would raise it (for tests and docs).

    libvirtError reads the thread's last libvirt error when built; this sets the fields itself.
    """
    exc = libvirt_error(message)
    exc.err = (code, 0, message, 2, None, None, None, -1, -1)  # type: ignore[attr-defined]
    return exc
