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

:data:`ERRORS` maps each of them (an :class:`~hvballoon.backend_kit.ErrorTable`: a QMP error
class is a code of ``ExecuteError``, and the most specific row wins — ``ConnectionRefusedError``
is an ``OSError``, but the VM is gone, not the link), never by its message; ``ERRORS.mapped``
applies it at the boundary and chains the native error (``raise … from exc``)::

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
...     with ERRORS.mapped("set the balloon target", vm="101"):
...         raise qmp_error("DeviceNotActive", "No balloon device has been activated")
... except UnsupportedOperationError as err:
...     err.code, err.native_code, err.vm
('unsupported', 'DeviceNotActive', '101')
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, Message, QMPError
from qemu.qmp.error import ProtocolError
from qemu.qmp.models import ErrorResponse

from hvballoon.backend_kit import ErrorRule, ErrorTable
from hvballoon.errors import (
    HVConnectionError,
    InvalidRequestError,
    OperationTimeoutError,
    PermissionDeniedError,
    UnsupportedOperationError,
    VMNotFoundError,
)

from . import SPEC

__all__ = ["BACKEND", "ERRORS", "connection_lost", "native_code", "qmp_error", "vm_gone"]

#: The backend's name, as its errors carry it.
BACKEND = SPEC.name

_STOPPED = "the VM is not running (its QEMU exited, or it was never started)"


def _class(*names: str) -> frozenset[str]:
    return frozenset(names)


def _root(exc: BaseException) -> BaseException:
    """The root cause of a ``ConnectError`` (which only says *when* it failed)."""
    while isinstance(exc, ConnectError):
        exc = exc.exc
    return exc


def _error_class(exc: BaseException) -> Sequence[str]:
    """The QMP error class of QEMU's answer: what a row names."""
    return (exc.error_class,) if isinstance(exc, ExecuteError) else ()


def native_code(exc: BaseException) -> str:
    """QEMU's error class, the errno's name (``"ECONNREFUSED"``) or the exception type's name."""
    exc = _root(exc)
    if isinstance(exc, ExecuteError):
        return exc.error_class
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


#: The one mapping table.
ERRORS = ErrorTable(
    BACKEND,
    [
        ErrorRule(
            ExecuteError, InvalidRequestError, "QEMU refused the command", codes=_class("GenericError")
        ),
        ErrorRule(
            ExecuteError,
            UnsupportedOperationError,
            "the VM has no balloon device (-device virtio-balloon-pci): its memory cannot be changed while "
            "it runs",
            codes=_class("DeviceNotActive"),
        ),
        ErrorRule(
            ExecuteError,
            UnsupportedOperationError,
            "QEMU has no such device (was it unplugged?)",
            codes=_class("DeviceNotFound"),
        ),
        ErrorRule(
            ExecuteError,
            UnsupportedOperationError,
            "this QEMU does not know the command (too old, or the socket is not a QEMU monitor)",
            codes=_class("CommandNotFound"),
        ),
        ErrorRule(
            ExecuteError,
            UnsupportedOperationError,
            "the host's KVM lacks a capability the command needs",
            codes=_class("KVMMissingCap"),
        ),
        ErrorRule(FileNotFoundError, VMNotFoundError, f"the monitor socket is gone: {_STOPPED}"),
        ErrorRule(
            ConnectionRefusedError,
            VMNotFoundError,
            f"nothing listens on the monitor socket any more: {_STOPPED}",
        ),
        ErrorRule(
            PermissionError,
            PermissionDeniedError,
            "not allowed to connect to the monitor socket (QEMU's sockets are usually root's: on a Proxmox "
            "node, run as root)",
        ),
        ErrorRule(
            # asyncio's own TimeoutError is a separate class before Python 3.11
            (TimeoutError, asyncio.TimeoutError),
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
    ],
    codes=_error_class,
    native_code=native_code,
    detail=lambda exc: str(exc) or type(exc).__name__,
    unwrap=_root,
    catch=(QMPError, OSError, EOFError, asyncio.TimeoutError),
    unknown="QEMU reported an error",
)

#: What means "this VM's QEMU is gone" (the socket vanished or refuses): never retried.
_GONE: tuple[type[BaseException], ...] = (FileNotFoundError, ConnectionRefusedError)
#: What means "the connection broke": the call is tried once more on a new connection.
_LOST: tuple[type[BaseException], ...] = (
    ExecInterruptedError,
    EOFError,
    ConnectionResetError,
    BrokenPipeError,
)


def vm_gone(exc: BaseException) -> bool:
    """The socket is missing or refuses connections: the VM's QEMU is not running."""
    return isinstance(_root(exc), _GONE)


def connection_lost(exc: BaseException) -> bool:
    """The conversation broke (it may succeed on a new connection)."""
    return isinstance(_root(exc), _LOST)


def qmp_error(error_class: str, desc: str, command: str = "balloon") -> ExecuteError:
    """An :class:`~qemu.qmp.ExecuteError` as ``qemu.qmp`` raises it for QEMU's error object.

    Built from the wire form QEMU sends (``{"error": {"class": …, "desc": …}}``): for tests and docs.
    """
    received = Message({"error": {"class": error_class, "desc": desc}})
    return ExecuteError(ErrorResponse(received), Message({"execute": command}), received)
