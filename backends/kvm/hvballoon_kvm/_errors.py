"""libvirt errors → hvballoon errors: one table, one context manager.

libvirt reports every failure as ``libvirt.libvirtError`` carrying a numeric code
(``err.get_error_code()``, the ``VIR_ERR_*`` constants). :data:`ERROR_TABLE` maps those codes
onto :mod:`hvballoon.errors`; :func:`mapped` applies it at the boundary and chains the native
error (``raise … from exc``). The message text is shown to the user but never matched on.

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

>>> from hvballoon.errors import VMNotFoundError
>>> try:
...     with mapped("look up a domain", vm="web01"):
...         raise fake_error(libvirt.VIR_ERR_NO_DOMAIN, "Domain not found")
... except VMNotFoundError as err:
...     err.code, err.native_code, err.vm
('vm_not_found', 'VIR_ERR_NO_DOMAIN', 'web01')
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hvballoon.errors import (
    AuthenticationError,
    BackendError,
    Hint,
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    InvalidStateError,
    OperationTimeoutError,
    PermissionDeniedError,
    UnsupportedOperationError,
    VMNotFoundError,
)

from ._native import libvirt, libvirt_error

__all__ = [
    "CONNECTION_LOST_CODES",
    "ERROR_TABLE",
    "ErrorRule",
    "error_code",
    "fake_error",
    "map_error",
    "mapped",
]

BACKEND = "kvm"


@dataclass(frozen=True)
class ErrorRule:
    """One row: libvirt error codes → an hvballoon error class and what to tell the user."""

    codes: tuple[str, ...]
    error: type[HVBalloonError]
    hint: str
    retryable: bool | None = None
    #: what the caller can do, worded by each interface (see hvballoon.errors.Hint)
    next_step: str | None = None


#: The one mapping table. Codes are named (``"VIR_ERR_NO_DOMAIN"``) and resolved against the
#: installed libvirt-python, so a constant an old libvirt lacks is simply skipped.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule(("VIR_ERR_NO_DOMAIN",), VMNotFoundError, "no such domain (it may have been destroyed)"),
    ErrorRule(
        ("VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE"),
        AuthenticationError,
        "libvirt refused the credentials (check the user in the URI and the password)",
        next_step="password",
    ),
    ErrorRule(
        ("VIR_ERR_OPERATION_DENIED", "VIR_ERR_ACCESS_DENIED"),
        PermissionDeniedError,
        "not allowed on this connection (a read-only connection cannot change memory; "
        "read-write needs root, the libvirt group or a polkit rule)",
    ),
    ErrorRule(
        ("VIR_ERR_NO_CONNECT",),
        HVConnectionError,
        "libvirt has no driver for this URI (is the right libvirt driver package installed?)",
        retryable=False,
    ),
    ErrorRule(
        (
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
        HVConnectionError,
        "the libvirt daemon could not be reached or the connection dropped",
    ),
    ErrorRule(
        ("VIR_ERR_OPERATION_TIMEOUT", "VIR_ERR_AGENT_UNRESPONSIVE"),
        OperationTimeoutError,
        "libvirt timed out waiting for the hypervisor or the guest",
    ),
    ErrorRule(
        ("VIR_ERR_RESOURCE_BUSY",),
        InvalidStateError,
        "the domain is busy with another job; try again",
        retryable=True,
    ),
    ErrorRule(
        ("VIR_ERR_OPERATION_INVALID",),
        InvalidStateError,
        "the domain's state does not allow this (is it running? persistent?)",
    ),
    ErrorRule(("VIR_ERR_INVALID_ARG",), InvalidRequestError, "libvirt refused a value"),
    ErrorRule(
        ("VIR_ERR_NO_SUPPORT", "VIR_ERR_ARGUMENT_UNSUPPORTED", "VIR_ERR_OPERATION_UNSUPPORTED"),
        UnsupportedOperationError,
        "this libvirt driver does not support the operation",
    ),
)

#: Codes that mean the connection itself is gone: the backend reconnects once, transparently.
CONNECTION_LOST_CODES: frozenset[int] = frozenset(
    getattr(libvirt, name)
    for name in ("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC", "VIR_ERR_INVALID_CONN", "VIR_ERR_NO_CLIENT")
    if hasattr(libvirt, name)
)

_BY_CODE: dict[int, tuple[str, ErrorRule]] = {
    getattr(libvirt, name): (name, rule)
    for rule in ERROR_TABLE
    for name in rule.codes
    if hasattr(libvirt, name)
}


def error_code(exc: BaseException) -> int | None:
    """The ``VIR_ERR_*`` code of a libvirt error (``None`` if it carries none)."""
    get = getattr(exc, "get_error_code", None)
    code = get() if callable(get) else None
    return code if isinstance(code, int) else None


def _code_name(code: int | None) -> str | int | None:
    if code is None:
        return None
    for name in dir(libvirt):
        if name.startswith("VIR_ERR_") and getattr(libvirt, name) == code:
            return name
    return code


def map_error(exc: BaseException, what: str, *, vm: str | None = None) -> HVBalloonError:
    """The hvballoon error for a libvirt error raised while doing ``what``.

    The caller chains it (``raise map_error(exc, …) from exc``).
    """
    code = error_code(exc)
    detail = str(exc) or type(exc).__name__
    if code is not None and code in _BY_CODE:
        name, rule = _BY_CODE[code]
        return rule.error(
            f"{what}: {rule.hint}: {detail}",
            backend=BACKEND,
            vm=vm,
            native_code=name,
            retryable=rule.retryable,
            hint=Hint(rule.next_step) if rule.next_step else None,
        )
    return BackendError(
        f"{what}: libvirt reported an error: {detail}",
        backend=BACKEND,
        vm=vm,
        native_code=_code_name(code),
    )


@contextmanager
def mapped(what: str, *, vm: str | None = None) -> Iterator[None]:
    """Run a block whose libvirt errors leave as hvballoon errors, the native one chained."""
    try:
        yield
    except libvirt_error as exc:
        raise map_error(exc, what, vm=vm) from exc


def fake_error(code: int, message: str = "simulated libvirt error") -> Exception:
    """A ``libvirt.libvirtError`` carrying ``code``, as libvirt would raise it (for tests and docs).

    libvirtError reads the thread's last libvirt error when built; this sets the fields itself.
    """
    exc = libvirt_error(message)
    exc.err = (code, 0, message, 2, None, None, None, -1, -1)  # type: ignore[attr-defined]
    return exc
