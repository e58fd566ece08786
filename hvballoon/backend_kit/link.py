"""One way to call a hypervisor: a deadline on every call, errors mapped, one reconnect.

A :class:`Link` owns a backend's native connection (a ``virConnect``, a vSphere session, a WinRM
shell, a QMP monitor) the way libcloud's ``Connection`` does for its drivers; a backend says only
what is special about its own:

- :meth:`Link.connect` — open the native connection;
- :meth:`Link.lost` — whether a native error means the connection itself is gone (a restarted
  daemon, an expired session, a deleted shell), so that opening it again may cure it;
- :meth:`Link.reconnect` — restore it (default: :meth:`Link.disconnect`, then :meth:`Link.connect`);
- :meth:`Link.disconnect` — release it (errors while closing are logged, never raised);
- :meth:`Link.after_loss` — reword the error when the call failed again after reconnecting;
- ``deadline`` — how a call is bounded in time: :class:`Inline` when the library puts a timeout
  on every socket itself, :class:`WorkerThread` when it has none (libvirt).

Every call then goes through :meth:`Link.call` with the same signature on every backend::

    link.call("read balloon stats", lambda conn: conn.getAllDomainStats(groups, 0), vm=None)

It runs ``fn(native)`` within the deadline; hvballoon errors ``fn`` raises pass through; native
errors are mapped by the backend's :class:`~hvballoon.backend_kit.rules.ErrorTable`; a lost
connection is restored once and ``fn`` run once more — safe, because every operation a backend
sends is absolute ("target = 6 GiB", never "shrink by 1 GiB"). Failing again is an error whose
message says so (retryable when it is a connection error). A call past its deadline is an
:class:`~hvballoon.errors.OperationTimeoutError` (retryable) with ``details["timeout_seconds"]``:
we stopped waiting, but the call may still complete on the host.

:class:`AsyncLink` is the same for asyncio libraries (``qemu.qmp``), with ``async`` hooks.
``persistent = False`` makes a link open a fresh connection for every call and close it after
(QEMU serves one monitor client at a time, so holding the socket would lock others out).

>>> from hvballoon.backend_kit.rules import ErrorRule, ErrorTable
>>> from hvballoon.errors import HVConnectionError
>>> class Flaky(Link[list]):
...     def connect(self) -> list:
...         self.opened = getattr(self, "opened", 0) + 1
...         return ["alive"]
...     def lost(self, exc: BaseException, native: list | None) -> bool:
...         return isinstance(exc, ConnectionResetError)
>>> table = ErrorTable("demo", [ErrorRule(OSError, HVConnectionError, "the host dropped the call")])
>>> link = Flaky(table, where="demo://host", timeout=5)
>>> calls = []
>>> def once_reset(conn: list) -> str:
...     calls.append(1)
...     if len(calls) == 1:
...         raise ConnectionResetError(104, "reset")
...     return conn[0]
>>> link.call("read", once_reset), link.reconnects, link.opened
('alive', 1, 2)
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Generic, NoReturn, Protocol, TypeVar

from hvballoon.backend_kit.rules import ErrorTable
from hvballoon.errors import HVBalloonError, HVConnectionError, OperationTimeoutError

__all__ = ["AsyncLink", "Deadline", "DeadlineExceeded", "Inline", "Link", "WorkerThread"]

log = logging.getLogger("hvballoon.backend_kit")

N = TypeVar("N")
T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """A call ran past its deadline (mapped like any ``TimeoutError`` by the backend's table)."""

    def __init__(self, where: str, timeout: float) -> None:
        super().__init__(f"no answer from {where} within {timeout:g} s")
        self.timeout = timeout


# -- deadlines ---------------------------------------------------------------------------------


class Inline:
    """Run the call in the caller's thread: the library bounds every request itself."""

    def run(self, fn: Callable[[], T], *, timeout: float, where: str) -> T:
        return fn()

    def close(self) -> None:
        """Nothing to release."""


class _Worker:
    """One daemon thread running submitted calls in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the waiting caller
                fut.set_exception(exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut

    def retire(self) -> None:
        """Let the thread end once its current call returns (if it ever does)."""
        self._jobs.put(None)


class WorkerThread:
    """Run each call in a worker thread and wait for it at most ``timeout`` seconds.

    For a library with no per-call timeout. What a timeout means, honestly: *we stopped
    waiting*. The call cannot be cancelled and may still complete; the stuck worker is abandoned
    (a daemon thread) and a fresh one serves the next call. Calls must not nest (a call made
    from inside another would wait for the worker it runs on).
    """

    def __init__(self, name: str = "hvballoon-call") -> None:
        self._name = name
        self._worker = _Worker(name)

    def run(self, fn: Callable[[], T], *, timeout: float, where: str) -> T:
        fut = self._worker.submit(fn)
        try:
            return fut.result(timeout=timeout)
        except FutureTimeout:
            fut.cancel()
            self._worker.retire()
            self._worker = _Worker(self._name)
            raise DeadlineExceeded(where, timeout) from None

    def close(self) -> None:
        self._worker.retire()


class Deadline(Protocol):
    """How a call is bounded in time (:class:`Inline`, :class:`WorkerThread`)."""

    def run(self, fn: Callable[[], T], *, timeout: float, where: str) -> T:
        """``fn()``, or :class:`DeadlineExceeded` once ``timeout`` seconds have passed."""

    def close(self) -> None:
        """Release what the deadline holds (a worker thread)."""


# -- what both links share -----------------------------------------------------------------------


class _Base(Generic[N]):
    #: False: a fresh native connection for every call, closed after it.
    persistent: bool = True
    #: What a connection error after reconnecting adds to its message.
    again: str = "and again after reconnecting once"

    def __init__(self, errors: ErrorTable, *, where: str, timeout: float, uri: str | None = None) -> None:
        self.errors = errors
        self.where = where
        self.uri = uri
        self.timeout = float(timeout)
        #: how often a lost connection was restored (for tests and benchmarks)
        self.reconnects = 0
        self._native: N | None = None

    @property
    def native(self) -> N | None:
        """The open native connection (``None`` before a lazy link's first call, after
        :meth:`close`, and always for a link that is not ``persistent``)."""
        return self._native

    def lost(self, exc: BaseException, native: N | None) -> bool:
        """Whether ``exc`` means the connection itself is gone (default: never)."""
        return False

    def after_loss(self, error: HVBalloonError, exc: BaseException) -> HVBalloonError:
        """The error of a call that failed again after the connection was restored.

        By default a connection error says so and stays retryable (the next attempt opens a new
        connection); any other error is the call's own answer and is left as it is.
        """
        if isinstance(error, HVConnectionError):
            error.retryable = True
            error.message = f"{error.message} ({self.again})"
        return error

    def _error_for(self, exc: Exception, what: str, vm: str | None, *, second: bool) -> BaseException:
        """What to raise for ``exc``: an hvballoon error (the caller chains it), or ``exc`` itself
        when it is not a native fault (a bug stays a bug)."""
        if isinstance(exc, HVBalloonError):
            return exc.with_context(backend=self.errors.backend, uri=self.uri, vm=vm)
        if isinstance(exc, DeadlineExceeded):
            if self.errors.rule_for(exc) is None:
                error: HVBalloonError = OperationTimeoutError(
                    f"{what}: {exc}", backend=self.errors.backend, uri=self.uri, vm=vm
                )
            else:
                error = self.errors.map(exc, what, vm=vm, uri=self.uri)
            error.message += "; the call may still complete on the host (it is absolute: retrying is safe)"
            error.retryable = True
            error.details["timeout_seconds"] = exc.timeout
            return error
        if not self.errors.catches(exc):
            return exc
        error = self.errors.map(exc, what, vm=vm, uri=self.uri)
        return self.after_loss(error, exc) if second else error

    def _note_loss(self, exc: BaseException, what: str) -> None:
        self.reconnects += 1
        log.info(
            "the connection to %s was lost during %s (%s): reconnecting once",
            self.where,
            what,
            type(exc).__name__,
        )


def _raise(error: BaseException, exc: BaseException) -> NoReturn:
    if error is exc:
        raise exc
    raise error from exc


class Link(_Base[N]):
    """A native connection with deadlines, mapped errors and one transparent reconnect.

    ``errors`` maps the library's exceptions; ``where`` names the endpoint in messages (never a
    secret); ``timeout`` bounds each call; ``uri`` (redacted) goes on every error. With
    ``lazy=False`` the connection opens in the constructor (its errors mapped), otherwise on the
    first call. Calls run one at a time unless ``serialize=False`` (for a thread-safe library).
    """

    def __init__(
        self,
        errors: ErrorTable,
        *,
        where: str,
        timeout: float,
        uri: str | None = None,
        deadline: Deadline | None = None,
        lazy: bool = True,
        serialize: bool = True,
    ) -> None:
        super().__init__(errors, where=where, timeout=timeout, uri=uri)
        self.deadline: Deadline = deadline if deadline is not None else Inline()
        self._lock: AbstractContextManager[Any] = threading.RLock() if serialize else nullcontext()
        self._reconnect_lock = threading.Lock()
        if not lazy:
            try:
                self._native = self._within("connect", self.connect, vm=None, second=False)
            except BaseException:
                self.deadline.close()
                raise

    # -- what a backend says ------------------------------------------------------------------------

    def connect(self) -> N:
        """Open the native connection."""
        raise NotImplementedError

    def reconnect(self, native: N | None, exc: BaseException) -> N:
        """Restore a lost connection (default: close it, then open a new one)."""
        if native is not None:
            self._disconnect_quietly(native)
        return self.connect()

    def disconnect(self, native: N) -> None:
        """Release the native connection."""

    # -- calling ----------------------------------------------------------------------------------

    def _within(self, what: str, fn: Callable[[], T], *, vm: str | None, second: bool) -> T:
        try:
            return self.deadline.run(fn, timeout=self.timeout, where=self.where)
        except Exception as exc:
            _raise(self._error_for(exc, what, vm, second=second), exc)

    def _attempt(self, fn: Callable[[N], T], used: list[N]) -> T:
        native = self._native
        if native is None:
            native = self.connect()
            if self.persistent:
                self._native = native
        used.append(native)
        try:
            return fn(native)
        finally:
            if not self.persistent:
                self._disconnect_quietly(native)

    def call(self, what: str, fn: Callable[[N], T], *, vm: str | None = None) -> T:
        """Run ``fn(native)`` within the deadline, native errors mapped, reconnecting once if the
        connection was lost. ``fn`` must be safe to run twice and must look up what it needs on
        the connection it is given (objects of the old one are useless after a reconnect)."""
        with self._lock:
            used: list[N] = []  # the connection the attempt ran on (once it has one)
            try:
                return self.deadline.run(
                    lambda: self._attempt(fn, used), timeout=self.timeout, where=self.where
                )
            except Exception as exc:
                native = used[0] if used else None
                if isinstance(exc, (HVBalloonError, DeadlineExceeded)) or not self.lost(exc, native):
                    _raise(self._error_for(exc, what, vm, second=False), exc)
                first = exc
            self._note_loss(first, what)
            if self.persistent:
                with self._reconnect_lock:
                    if self._native is native:  # not restored by another thread meanwhile
                        self._native = self._within(
                            what, lambda: self.reconnect(native, first), vm=vm, second=True
                        )
            return self._within(what, lambda: self._attempt(fn, []), vm=vm, second=True)

    def _disconnect_quietly(self, native: N) -> None:
        try:
            self.disconnect(native)
        except Exception as exc:  # closing must not fail: the connection may already be gone
            log.debug("closing the connection to %s failed: %s", self.where, exc)

    def close(self) -> None:
        """Release the connection and the deadline's worker. Safe to call twice."""
        with self._lock:
            native, self._native = self._native, None
            if native is not None:
                self._disconnect_quietly(native)
            self.deadline.close()


class AsyncLink(_Base[N]):
    """:class:`Link` for an asyncio library: ``await link.call(what, fn, vm=…)``, where ``fn``
    returns an awaitable and the hooks are coroutines. The deadline is ``asyncio.wait_for`` over
    the whole call (``timeout``, or a shorter one given to :meth:`call`)."""

    async def connect(self) -> N:
        """Open the native connection."""
        raise NotImplementedError

    async def reconnect(self, native: N | None, exc: BaseException) -> N:
        """Restore a lost connection (default: close it, then open a new one)."""
        if native is not None:
            await self._disconnect_quietly(native)
        return await self.connect()

    async def disconnect(self, native: N) -> None:
        """Release the native connection."""

    async def _attempt(self, fn: Callable[[N], Awaitable[T]], restore: BaseException | None) -> T:
        native = self._native
        if restore is not None and self.persistent:
            native = self._native = await self.reconnect(native, restore)
        elif native is None:
            native = await self.connect()
            if self.persistent:
                self._native = native
        try:
            return await fn(native)
        finally:
            if not self.persistent:
                await self._disconnect_quietly(native)

    async def call(
        self,
        what: str,
        fn: Callable[[N], Awaitable[T]],
        *,
        vm: str | None = None,
        timeout: float | None = None,
    ) -> T:
        """Run ``fn(native)`` within the deadline, native errors mapped, reconnecting once if the
        connection was lost (``fn`` must be safe to run twice)."""
        limit = self.timeout if timeout is None else min(self.timeout, timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        restore: BaseException | None = None
        while True:
            native = self._native
            try:
                try:
                    return await asyncio.wait_for(
                        self._attempt(fn, restore), max(0.001, deadline - loop.time())
                    )
                except asyncio.TimeoutError:
                    raise DeadlineExceeded(self.where, limit) from None
            except Exception as exc:
                second = restore is not None
                if (
                    second
                    or isinstance(exc, (HVBalloonError, DeadlineExceeded))
                    or not self.lost(exc, native)
                ):
                    _raise(self._error_for(exc, what, vm, second=second), exc)
                restore = exc
                self._note_loss(exc, what)

    async def _disconnect_quietly(self, native: N) -> None:
        try:
            await self.disconnect(native)
        except Exception as exc:  # closing must not fail: the connection may already be gone
            log.debug("closing the connection to %s failed: %s", self.where, exc)

    async def close(self) -> None:
        """Release the connection. Safe to call twice."""
        native, self._native = self._native, None
        if native is not None:
            await self._disconnect_quietly(native)
