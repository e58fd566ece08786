"""QMP conversations on a private event loop, each call with a deadline.

``qemu.qmp`` is asyncio-based; hvballoon's session API is synchronous. :class:`EventLoop` runs an
event loop of its own in a daemon thread (never the caller's loop, which may not exist or may be
busy) and :meth:`EventLoop.run` hands it a coroutine, waiting at most ``timeout`` seconds (the
coroutine is cancelled then, which closes its connections).

:class:`Monitor` is one conversation with one QEMU: it connects the UNIX socket itself, so it
can read the peer's credentials (``SO_PEERCRED``: the QEMU process's pid, which identifies the
run — a restarted VM is a new process), then lets ``qemu.qmp`` take the greeting and negotiate
capabilities. Conversations are short — connect, a few pipelined commands, disconnect — because
QEMU serves one QMP client at a time: holding the socket would lock out everyone else (on a
Proxmox node, ``qm`` and ``pvestatd``).

:class:`Conversation` is the toolkit's :class:`~hvballoon.backend_kit.AsyncLink` over one socket
(not persistent: each call opens, talks and hangs up): a deadline on each call, errors mapped by
:data:`~hvballoon.backends.qmp._errors.ERRORS`, and once more on a new connection when it broke mid-call.
:func:`each_answer` holds many such conversations side by side, a few at a time, in one deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import QMPClient, QMPError

from hvballoon.backend_kit import AsyncLink
from hvballoon.errors import HVBalloonError, VMNotFoundError

from ._errors import ERRORS, connection_lost, vm_gone

__all__ = [
    "CLIENT_NAME",
    "Conversation",
    "EventLoop",
    "Monitor",
    "converse",
    "each_answer",
    "peer_pid",
    "side_by_side",
]

T = TypeVar("T")

#: The name our ``QMPClient``s log under (``qemu.qmp.protocol.hvballoon``).
CLIENT_NAME = "hvballoon"

# qemu.qmp logs every failed connection at ERROR level; each one is mapped onto a typed
# hvballoon error instead, so only our own clients' lines are kept out of the application's log
for _name in ("qemu.qmp.qmp_client", "qemu.qmp.protocol"):
    logging.getLogger(f"{_name}.{CLIENT_NAME}").setLevel(logging.CRITICAL)

# a coroutine past its deadline is cancelled; this much longer is allowed for it to unwind
_UNWIND_SECONDS = 5.0


class EventLoop:
    """An asyncio event loop running in a daemon thread of its own."""

    def __init__(self, name: str = "hvballoon-qmp") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
        """Run ``coro`` on the loop; raises ``TimeoutError`` when it takes more than ``timeout`` s."""
        if self._closed:
            coro.close()
            raise RuntimeError("the event loop is closed")
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)
        try:
            return fut.result(timeout + _UNWIND_SECONDS)
        except FutureTimeout:
            # the loop itself is stuck (a blocking call in it): stop waiting for it
            fut.cancel()
            raise TimeoutError(f"no result within {timeout:g} s") from None

    def close(self) -> None:
        """Stop the loop and its thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_UNWIND_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of a UNIX socket (Linux ``SO_PEERCRED``).

    ``None`` where the platform has no such option or the peer is in another pid namespace.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    pid = int(struct.unpack("3i", raw)[0])
    return pid if pid > 0 else None


class Monitor:
    """One open QMP conversation with one QEMU (used from inside the event loop)."""

    def __init__(self, path: str, client: QMPClient, pid: int | None) -> None:
        self.path = path
        self.client = client
        #: the QEMU process's pid, read from the socket (None when it cannot be known)
        self.pid = pid

    @classmethod
    async def open(cls, path: str) -> Monitor:
        """Connect, take the greeting and negotiate capabilities.

        Raises the socket's own ``OSError`` (``FileNotFoundError``, ``ConnectionRefusedError``,
        ``PermissionError`` …) or ``qemu.qmp``'s ``ConnectError`` for a failed greeting.
        """
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, path)
            pid = peer_pid(sock)
            client = QMPClient(CLIENT_NAME)
            await client.connect(sock)
        except BaseException:
            sock.close()
            raise
        return cls(path, client, pid)

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """One command's ``return`` value (an error answer raises ``ExecuteError``)."""
        return await self.client.execute(command, arguments)

    async def batch(
        self, commands: Sequence[tuple[str, Mapping[str, object] | None]]
    ) -> list[Any | BaseException]:
        """Several commands pipelined (sent at once, answered in order): one round trip.

        Each item is the command's value or the exception it raised (an error answer is per
        command; a broken connection fails them all).
        """
        return await asyncio.gather(*(self.client.execute(c, a) for c, a in commands), return_exceptions=True)

    async def close(self) -> None:
        """Hang up. A connection that already broke has nothing left to report."""
        with contextlib.suppress(QMPError, OSError, EOFError):
            await self.client.disconnect()


class Conversation(AsyncLink[Monitor]):
    """Calls to the QEMU behind one monitor socket, each in a conversation of its own.

    ``lost``: the conversation broke (the server hung up mid-call), which a new one may cure;
    a VM whose socket is gone when it is opened again stopped during the call.
    """

    persistent = False
    again = "and again on a new connection"

    def __init__(self, path: str, *, timeout: float) -> None:
        super().__init__(ERRORS, where=path, timeout=timeout)
        self.path = path

    async def connect(self) -> Monitor:
        return await Monitor.open(self.path)

    async def disconnect(self, native: Monitor) -> None:
        await native.close()

    def lost(self, exc: BaseException, native: Monitor | None) -> bool:
        return connection_lost(exc)

    def after_loss(self, error: HVBalloonError, exc: BaseException) -> HVBalloonError:
        if vm_gone(exc):
            error.message = f"{error.message} (the VM stopped during the call)"
            return error
        return super().after_loss(error, exc)


async def converse(
    path: str,
    body: Callable[[Monitor], Awaitable[T]],
    what: str,
    *,
    timeout: float,
    label: str | None = None,
    deadline: float | None = None,
) -> T:
    """Open ``path``, run ``body``, hang up; once more on a new connection if it broke.

    Everything ``body`` sends must be safe to send twice (reads, and absolute settings).
    ``timeout`` bounds each conversation, ``deadline`` (seconds left) the call.
    """
    link = Conversation(path, timeout=timeout)
    return await link.call(what, body, vm=label or Path(path).stem, timeout=deadline)


#: Conversations to hold side by side: ``(socket, body, label)``.
Jobs = Sequence[tuple[str, Callable[[Monitor], Awaitable[T]], str]]


async def each_answer(
    jobs: Jobs[T], what: str, *, timeout: float, concurrency: int, gone_ok: bool
) -> list[T | BaseException | None]:
    """Each ``(socket, body, label)`` conversation, ``concurrency`` at a time, in one deadline
    (``timeout``); each answer or error its own entry, in order.

    With ``gone_ok`` a VM whose socket vanished or refuses (it stopped since the directory
    was listed) is ``None``; otherwise that is a :class:`VMNotFoundError`.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    gate = asyncio.Semaphore(concurrency)

    async def one(path: str, body: Callable[[Monitor], Awaitable[T]], label: str) -> T | None:
        async with gate:
            try:
                return await converse(
                    path, body, what, timeout=timeout, label=label, deadline=end - loop.time()
                )
            except VMNotFoundError as exc:
                if gone_ok and exc.native_code in ("ENOENT", "ECONNREFUSED"):
                    return None
                raise

    return await asyncio.gather(*(one(*job) for job in jobs), return_exceptions=True)


async def side_by_side(
    jobs: Jobs[T], what: str, *, timeout: float, concurrency: int, gone_ok: bool
) -> list[T | None]:
    """:func:`each_answer`, the first error raised."""
    out: list[T | None] = []
    for result in await each_answer(jobs, what, timeout=timeout, concurrency=concurrency, gone_ok=gone_ok):
        if isinstance(result, BaseException):
            raise result
        out.append(result)
    return out
