"""QMP and socket errors → hvballoon errors: one table, one context manager.

A QMP conversation fails in three ways. QEMU answers a command with an error object, whose
``class`` (``GenericError``, ``DeviceNotActive``, ``CommandNotFound``, …) ``qemu.qmp`` raises as
:class:`~qemu.qmp.ExecuteError` (``.error_class``); the monitor socket fails (``FileNotFoundError``
when the socket is gone, ``ConnectionRefusedError`` when nothing listens on it any more,
``PermissionError`` on a root-owned socket); or the conversation breaks (the server hangs up
mid-call: ``ExecInterruptedError``, ``EOFError``, ``ConnectionResetError``; it does not speak
QMP: ``qemu.qmp``'s ``ProtocolError``; it does not answer in time: ``TimeoutError``).
``qemu.qmp`` wraps a failure while connecting in ``ConnectError``; its root cause (``.exc``)
is what is mapped.

:data:`ERROR_TABLE` maps each of them; a QMP error class is matched first, then the exception's
type by its most specific class (its MRO), never its message. :func:`mapped` applies it at the
boundary and chains the native error (``raise … from exc``)::

    "GenericError"                               → InvalidRequestError
    "DeviceNotActive" / "DeviceNotFound"         → UnsupportedOperationError (no balloon device)
    "CommandNotFound" / "KVMMissingCap"          → UnsupportedOperationError
    FileNotFoundError / ConnectionRefusedError   → VMNotFoundError (the VM stopped)
    PermissionError                              → PermissionDeniedError
    TimeoutError                                 → OperationTimeoutError (retryable)
    ExecInterruptedError / EOFError / reset      → HVConnectionError (retryable)
    ProtocolError (not a QMP server)             → HVConnectionError (not retryable)
    any other OSError                            → HVConnectionError (retryable)
    any other QMP error class or QMPError        → BackendError (native_code = the class)

>>> from hvballoon.errors import UnsupportedOperationError
>>> try:
...     with mapped("set the balloon target", vm="101"):
...         raise qmp_error("DeviceNotActive", "No balloon device has been activated")
... except UnsupportedOperationError as err:
...     err.code, err.native_code, err.vm
('unsupported', 'DeviceNotActive', '101')
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, Message, QMPError
from qemu.qmp.error import ProtocolError
from qemu.qmp.models import ErrorResponse

from hvballoon.errors import (
    BackendError,
    HVBalloonError,
    HVConnectionError,
    InvalidRequestError,
    OperationTimeoutError,
    PermissionDeniedError,
    UnsupportedOperationError,
    VMNotFoundError,
)

__all__ = [
    "BACKEND",
    "ERROR_TABLE",
    "ErrorRule",
    "connection_lost",
    "map_error",
    "mapped",
    "native_code",
    "qmp_error",
    "rule_for",
    "vm_gone",
]

BACKEND = "qmp"


@dataclass(frozen=True)
class ErrorRule:
    """One row: a QMP error class (a string) or an exception type → an hvballoon error."""

    match: str | type[BaseException]
    error: type[HVBalloonError]
    hint: str
    retryable: bool | None = None


_STOPPED = "the VM is not running (its QEMU exited, or it was never started)"

#: The one mapping table.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule("GenericError", InvalidRequestError, "QEMU refused the command"),
    ErrorRule(
        "DeviceNotActive",
        UnsupportedOperationError,
        "the VM has no balloon device (-device virtio-balloon-pci): its memory cannot be changed while it runs",
    ),
    ErrorRule("DeviceNotFound", UnsupportedOperationError, "QEMU has no such device (was it unplugged?)"),
    ErrorRule(
        "CommandNotFound",
        UnsupportedOperationError,
        "this QEMU does not know the command (too old, or the socket is not a QEMU monitor)",
    ),
    ErrorRule(
        "KVMMissingCap", UnsupportedOperationError, "the host's KVM lacks a capability the command needs"
    ),
    ErrorRule(FileNotFoundError, VMNotFoundError, f"the monitor socket is gone: {_STOPPED}"),
    ErrorRule(
        ConnectionRefusedError, VMNotFoundError, f"nothing listens on the monitor socket any more: {_STOPPED}"
    ),
    ErrorRule(
        PermissionError,
        PermissionDeniedError,
        "not allowed to connect to the monitor socket (QEMU's sockets are usually root's: on a Proxmox "
        "node, run as root)",
    ),
    ErrorRule(
        TimeoutError,
        OperationTimeoutError,
        "the monitor did not answer in time (QEMU serves one QMP client at a time: is another one "
        "holding this socket?)",
    ),
    ErrorRule(ExecInterruptedError, HVConnectionError, "the connection to the monitor was lost mid-call"),
    ErrorRule(EOFError, HVConnectionError, "the monitor hung up"),
    ErrorRule(ConnectionResetError, HVConnectionError, "the monitor reset the connection"),
    ErrorRule(BrokenPipeError, HVConnectionError, "the monitor closed the connection"),
    ErrorRule(
        ProtocolError,
        HVConnectionError,
        "the socket does not speak QMP (is it a guest-agent or serial socket?)",
        retryable=False,
    ),
    ErrorRule(OSError, HVConnectionError, "the monitor socket failed"),
)

_BY_CLASS: dict[str, ErrorRule] = {r.match: r for r in ERROR_TABLE if isinstance(r.match, str)}
_BY_TYPE: dict[type[BaseException], ErrorRule] = {
    r.match: r for r in ERROR_TABLE if isinstance(r.match, type)
}
# asyncio's own TimeoutError is a separate class before Python 3.11
_BY_TYPE.setdefault(asyncio.TimeoutError, _BY_TYPE[TimeoutError])

#: What means "this VM's QEMU is gone" (the socket vanished or refuses): never retried.
_GONE: tuple[type[BaseException], ...] = (FileNotFoundError, ConnectionRefusedError)
#: What means "the connection broke": the call is tried once more on a new connection.
_LOST: tuple[type[BaseException], ...] = (
    ExecInterruptedError,
    EOFError,
    ConnectionResetError,
    BrokenPipeError,
)


def _root(exc: BaseException) -> BaseException:
    """The root cause of a ``ConnectError`` (which only says *when* it failed)."""
    while isinstance(exc, ConnectError):
        exc = exc.exc
    return exc


def rule_for(exc: BaseException) -> ErrorRule | None:
    """The row for ``exc``: its QMP error class, else its most specific type with a row."""
    exc = _root(exc)
    if isinstance(exc, ExecuteError):
        return _BY_CLASS.get(exc.error_class)
    for cls in type(exc).__mro__:
        if cls in _BY_TYPE:
            return _BY_TYPE[cls]
    return None


def native_code(exc: BaseException) -> str:
    """QEMU's error class, the errno's name (``"ECONNREFUSED"``) or the exception type's name."""
    exc = _root(exc)
    if isinstance(exc, ExecuteError):
        return exc.error_class
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


def vm_gone(exc: BaseException) -> bool:
    """The socket is missing or refuses connections: the VM's QEMU is not running."""
    return isinstance(_root(exc), _GONE)


def connection_lost(exc: BaseException) -> bool:
    """The conversation broke (it may succeed on a new connection)."""
    return isinstance(_root(exc), _LOST)


def map_error(exc: BaseException, what: str, *, vm: str | None = None) -> HVBalloonError:
    """The hvballoon error for a native one raised while doing ``what`` (the caller chains it)."""
    rule = rule_for(exc)
    root = _root(exc)
    detail = str(root) or type(root).__name__
    if rule is None:
        return BackendError(
            f"{what}: QEMU reported an error: {detail}", backend=BACKEND, vm=vm, native_code=native_code(exc)
        )
    return rule.error(
        f"{what}: {rule.hint}: {detail}",
        backend=BACKEND,
        vm=vm,
        native_code=native_code(exc),
        retryable=rule.retryable,
    )


@contextmanager
def mapped(what: str, *, vm: str | None = None) -> Iterator[None]:
    """Run a block whose QMP and socket errors leave as hvballoon errors, the native one chained."""
    try:
        yield
    except (QMPError, OSError, EOFError, asyncio.TimeoutError) as exc:
        raise map_error(exc, what, vm=vm) from exc


def qmp_error(error_class: str, desc: str, command: str = "balloon") -> ExecuteError:
    """An :class:`~qemu.qmp.ExecuteError` as ``qemu.qmp`` raises it for QEMU's error object.

    Built from the wire form QEMU sends (``{"error": {"class": …, "desc": …}}``): for tests and docs.
    """
    received = Message({"error": {"class": error_class, "desc": desc}})
    return ExecuteError(ErrorResponse(received), Message({"execute": command}), received)
