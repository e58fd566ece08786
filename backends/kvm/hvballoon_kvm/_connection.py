"""The libvirt connection: opening it, a deadline on every call, and one transparent reconnect.

libvirt has no per-call timeout. :class:`Link` runs each call in a worker thread and waits for
it at most ``timeout`` seconds. What a timeout means, honestly: *we stopped waiting*. The call
itself cannot be cancelled and may still complete on the hypervisor (a ``setMemoryFlags`` may
be applied late); the error is retryable because every operation the backend sends is
absolute ("target = 6 GiB", never "shrink by 1 GiB"), so sending it again is safe. The worker
that is stuck is abandoned (a daemon thread) and a fresh one serves the next call.

When libvirt reports the connection gone (the daemon restarted, "client socket is closed",
``isAlive()`` false), the call is retried once on a newly opened connection; if that fails
too, :class:`~hvballoon.errors.HVConnectionError` (retryable) says so.

Remote connections also get libvirt keepalive (``setKeepAlive``) when an event loop runs in
the process, so a dead peer is noticed by libvirt itself rather than only by the deadline.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from pydantic import SecretStr

from hvballoon.errors import HVBalloonError, HVConnectionError, OperationTimeoutError

from ._errors import BACKEND, CONNECTION_LOST_CODES, error_code, map_error
from ._native import libvirt, libvirt_error

__all__ = ["Link", "ensure_event_loop", "event_loop_registered"]

log = logging.getLogger("hvballoon.kvm")

T = TypeVar("T")

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def event_loop_registered() -> bool:
    """Whether some libvirt event loop implementation is registered in this process.

    libvirt offers no query for this; adding a disabled timer succeeds only when one is.
    """
    try:
        timer = libvirt.virEventAddTimeout(-1, lambda *_: None, None)
    except libvirt_error:
        return False
    if isinstance(timer, int) and timer >= 0:
        libvirt.virEventRemoveTimeout(timer)
        return True
    return False


def ensure_event_loop() -> bool:
    """Register libvirt's default event loop and run it in a daemon thread, unless one exists.

    Returns True if this call started it. An application (or a test harness) that registered
    its own loop first keeps it: running two would make libvirt refuse to run either. Whoever
    registers a loop must also run it.
    """
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None or event_loop_registered():
            return False
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _loop_thread = threading.Thread(target=run, name="hvballoon-libvirt-events", daemon=True)
        _loop_thread.start()
        return True


class _Worker:
    """One daemon thread running submitted calls in order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hvballoon-libvirt-call", daemon=True)
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


class _Lost(Exception):
    """Internal: the connection is gone (carries the native error, if any)."""

    def __init__(self, native: BaseException | None) -> None:
        super().__init__("connection lost")
        self.native = native


class Link:
    """A libvirt connection with deadlines and one transparent reconnect.

    ``uri`` goes to libvirt verbatim. ``password`` answers libvirt's credential callback
    (``VIR_CRED_PASSPHRASE``; ``username`` answers ``VIR_CRED_AUTHNAME``). ``read_only`` opens
    with ``VIR_CONNECT_RO`` (the daemon's read-only socket: no root or polkit needed, and any
    change is refused by libvirt).
    """

    def __init__(
        self,
        uri: str,
        *,
        redacted_uri: str,
        username: str | None,
        password: SecretStr | None,
        read_only: bool,
        timeout: float,
        keepalive: tuple[int, int] | None,
    ) -> None:
        self.uri = uri
        self.redacted_uri = redacted_uri
        self.read_only = read_only
        self.timeout = timeout
        self._username = username
        self._password = password
        self._keepalive = keepalive
        self._worker = _Worker()
        self._lock = threading.Lock()
        self._conn: Any = None
        self.reconnects = 0
        self._conn = self._call_with_deadline("connect", self._open)

    # -- opening ---------------------------------------------------------------------------

    def _auth_callback(self, creds: list[list[Any]], _data: object) -> int:
        for cred in creds:
            kind = cred[0]
            if kind == libvirt.VIR_CRED_AUTHNAME:
                cred[4] = self._username or cred[3] or ""
            elif kind in (libvirt.VIR_CRED_PASSPHRASE, libvirt.VIR_CRED_NOECHOPROMPT):
                if self._password is None:
                    return -1  # libvirt turns this into VIR_ERR_AUTH_FAILED
                cred[4] = self._password.get_secret_value()
            else:
                return -1
        return 0

    def _open(self) -> Any:
        flags = libvirt.VIR_CONNECT_RO if self.read_only else 0
        auth = [
            [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE, libvirt.VIR_CRED_NOECHOPROMPT],
            self._auth_callback,
            None,
        ]
        try:
            conn = libvirt.openAuth(self.uri, auth, flags)
        except libvirt_error as exc:
            raise map_error(exc, f"connect to {self.redacted_uri}") from exc
        if self._keepalive is not None and event_loop_registered():
            try:
                conn.setKeepAlive(*self._keepalive)
            except libvirt_error:
                log.debug("keepalive not supported by the driver of %s", self.redacted_uri)
        return conn

    # -- calling ---------------------------------------------------------------------------

    @property
    def conn(self) -> Any:
        """The current ``virConnect`` (replaced after a reconnect)."""
        return self._conn

    def _call_with_deadline(self, what: str, fn: Callable[[], T]) -> T:
        fut = self._worker.submit(fn)
        try:
            return fut.result(timeout=self.timeout)
        except FutureTimeout:
            fut.cancel()
            self._worker.retire()
            self._worker = _Worker()
            raise OperationTimeoutError(
                f"{what}: no answer from {self.redacted_uri} within {self.timeout:g} s; "
                "the call may still complete on the host (it is absolute, so retrying is safe)",
                backend=BACKEND,
                details={"timeout_seconds": self.timeout},
            ) from None

    def _attempt(self, what: str, fn: Callable[[Any], T], vm: str | None) -> T:
        conn = self._conn

        def body() -> T:
            try:
                return fn(conn)
            except libvirt_error as exc:
                code = error_code(exc)
                if code in CONNECTION_LOST_CODES and not _alive(conn):
                    raise _Lost(exc) from exc
                raise map_error(exc, what, vm=vm) from exc

        if conn is None:
            raise _Lost(None)
        return self._call_with_deadline(what, body)

    def call(self, what: str, fn: Callable[[Any], T], *, vm: str | None = None) -> T:
        """Run ``fn(conn)`` with a deadline; libvirt errors mapped; one reconnect if the link died.

        ``fn`` must look its domains up from the ``conn`` it is given (a domain object of the
        old connection is useless after a reconnect) and must be safe to run twice.
        """
        with self._lock:
            try:
                return self._attempt(what, fn, vm)
            except _Lost as first:
                log.warning("libvirt connection to %s lost; reconnecting once", self.redacted_uri)
                self._drop()
                try:
                    self._conn = self._call_with_deadline("reconnect", self._open)
                    self.reconnects += 1
                    return self._attempt(what, fn, vm)
                except _Lost as second:
                    cause = second.native or first.native
                    raise HVConnectionError(
                        f"{what}: the connection to {self.redacted_uri} was lost and reconnecting "
                        "once did not restore it",
                        backend=BACKEND,
                        vm=vm,
                        native_code=error_code(cause) if cause is not None else None,
                        retryable=True,
                    ) from cause
                except HVBalloonError as exc:
                    if isinstance(exc, HVConnectionError):
                        exc.retryable = True
                    raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt_error:
                pass  # already dead: nothing to release

    def close(self) -> None:
        """Close the connection and let the worker thread go. Safe to call twice."""
        with self._lock:
            self._drop()
            self._worker.retire()


def _alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt_error:
        return False
