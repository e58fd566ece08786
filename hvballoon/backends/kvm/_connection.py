"""The libvirt connection: opening it, a deadline on every call, and one transparent reconnect.

:class:`Link` is the toolkit's :class:`hvballoon.backend_kit.Link` for libvirt, which has no
per-call timeout: each call runs in a worker thread (:class:`~hvballoon.backend_kit.WorkerThread`)
and is waited for at most ``timeout`` seconds. What a timeout means, honestly: *we stopped
waiting*. The call itself cannot be cancelled and may still complete on the hypervisor (a
``setMemoryFlags`` may be applied late); the error is retryable because every operation the
backend sends is absolute ("target = 6 GiB", never "shrink by 1 GiB"), so sending it again is
safe.

When libvirt reports the connection gone (the daemon restarted, "client socket is closed",
``isAlive()`` false), the call is retried once on a newly opened connection; if that fails
too, :class:`~hvballoon.errors.HVConnectionError` (retryable) says so.

Remote connections also get libvirt keepalive (``setKeepAlive``) when an event loop runs in
the process, so a dead peer is noticed by libvirt itself rather than only by the deadline.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import SecretStr

from hvballoon import backend_kit as kit

from ._errors import CONNECTION_LOST_CODES, ERRORS, error_code
from ._native import libvirt, libvirt_error

__all__ = ["Link", "ensure_event_loop", "event_loop_registered"]

log = logging.getLogger("hvballoon.kvm")

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


class Link(kit.Link[Any]):
    """A libvirt connection with deadlines and one transparent reconnect.

    ``uri`` goes to libvirt verbatim. ``password`` answers libvirt's credential callback
    (``VIR_CRED_PASSPHRASE``; ``username`` answers ``VIR_CRED_AUTHNAME``). ``read_only`` opens
    with ``VIR_CONNECT_RO`` (the daemon's read-only socket: no root or polkit needed, and any
    change is refused by libvirt). The connection opens in the constructor.
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
        self.raw_uri = uri
        self.redacted_uri = redacted_uri
        self.read_only = read_only
        self._username = username
        self._password = password
        self._keepalive = keepalive
        super().__init__(
            ERRORS,
            where=redacted_uri,
            timeout=timeout,
            uri=redacted_uri,
            deadline=kit.WorkerThread("hvballoon-libvirt-call"),
            lazy=False,
        )

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

    def connect(self) -> Any:
        flags = libvirt.VIR_CONNECT_RO if self.read_only else 0
        auth = [
            [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE, libvirt.VIR_CRED_NOECHOPROMPT],
            self._auth_callback,
            None,
        ]
        conn = libvirt.openAuth(self.raw_uri, auth, flags)
        if self._keepalive is not None and event_loop_registered():
            try:
                conn.setKeepAlive(*self._keepalive)
            except libvirt_error:
                log.debug("keepalive not supported by the driver of %s", self.redacted_uri)
        return conn

    def lost(self, exc: BaseException, native: Any) -> bool:
        """libvirt says the connection is gone, and the connection agrees (``isAlive()``)."""
        return error_code(exc) in CONNECTION_LOST_CODES and native is not None and not _alive(native)

    def disconnect(self, native: Any) -> None:
        native.close()

    @property
    def conn(self) -> Any:
        """The current ``virConnect`` (replaced after a reconnect)."""
        return self.native


def _alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt_error:
        return False
