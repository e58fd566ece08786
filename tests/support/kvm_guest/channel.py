"""The control channel of the test guest's ``/init``, whoever runs the guest's QEMU.

The guest (built by :mod:`.build`, ``init.sh`` as ``/init``) serves a line protocol on its second
serial port, which the host exposes as a UNIX socket; its kernel console goes to a file.
:class:`GuestChannel` speaks that protocol and reads that console. It knows nothing of how the
guest was started: libvirt's embedded QEMU driver (:mod:`.harness`, for the KVM backend) or a
bare ``qemu-system-x86_64`` with a QMP socket (``tests/support/qmp_guest``, for the QMP backend)
subclass it with ``is_active`` and ``destroy``.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = [
    "KERNEL_CMDLINE",
    "GuestChannel",
    "GuestError",
    "GuestGone",
    "short_socket_path",
]

KERNEL_CMDLINE = (
    # panic=-1 reboots at once on a panic, and the guest's QEMU is told to stop on a reboot: a
    # guest that dies of over-inflation ("System is deadlocked on memory") vanishes instead of
    # hanging.
    "console=ttyS0 loglevel=4 panic=-1 8250.nr_uarts=2 mitigations=off"
)
_CTL_BEGIN = "@@HVB-BEGIN "
_CTL_END = "@@HVB-END "


class GuestError(RuntimeError):
    """A guest did not answer as expected; the message ends with its console's last lines."""


class GuestGone(GuestError):
    """The guest's QEMU went away (destroyed, or the guest kernel panicked)."""


def short_socket_path(preferred: Path) -> tuple[Path, Path | None]:
    """A UNIX socket path within the 108-byte limit, and a temporary dir to remove, if any."""
    if len(os.fsencode(preferred)) < 100:
        return preferred, None
    tmp = Path(tempfile.mkdtemp(prefix="hvb-guest-"))
    return tmp / "ctl.sock", tmp


class GuestChannel(abc.ABC):
    """One booted guest's console and control channel (subclasses say how it runs and stops)."""

    def __init__(self, name: str, console_log: Path, control_socket: Path) -> None:
        self.name = name
        self.console_log = console_log
        self.control_socket = control_socket
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = itertools.count(1)
        self._token = os.urandom(3).hex()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    @abc.abstractmethod
    def is_active(self) -> bool:
        """Whether the guest's QEMU still runs."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Stop the guest's QEMU at once (no-op if it is already gone)."""

    # --- the control channel --------------------------------------------------------------

    def console_tail(self, lines: int = 25) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def kernel_panic(self) -> str | None:
        """The guest kernel's panic line from the console, if it panicked."""
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if "Kernel panic" in line:
                return line
        return None

    def _fail(self, exc_type: type[GuestError], message: str) -> GuestError:
        panic = self.kernel_panic()
        if panic:
            message += f"\n{panic}"
        return exc_type(f"{self.name}: {message}\n--- console (last lines) ---\n{self.console_tail()}")

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.control_socket))
            except OSError:
                sock.close()
                if not self.is_active():
                    raise self._fail(GuestGone, "domain is not running") from None
                if time.monotonic() > deadline:
                    raise self._fail(GuestError, "control socket never accepted") from None
                time.sleep(0.05)
                continue
            self._sock = sock
            self._buf = b""
            return sock

    def _drop_connection(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._buf = b""

    def _exchange(self, cmd: str, deadline: float) -> tuple[int, str] | None:
        """Send one request; its (status, output), or None if no answer came by ``deadline``."""
        sock = self._connect(deadline)
        req_id = f"{self._token}-{next(self._ids)}"
        begin = f"{_CTL_BEGIN}{req_id}@@".encode()
        end_prefix = f"{_CTL_END}{req_id} ".encode()
        sock.sendall(f"{req_id} {cmd}\n".encode())
        lines: list[bytes] | None = None
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                line = line.rstrip(b"\r")
                if line == begin:
                    lines = []
                elif line.startswith(end_prefix) and line.endswith(b"@@"):
                    status = int(line[len(end_prefix) : -2])
                    return status, b"\n".join(lines or []).decode(errors="replace")
                elif lines is not None:
                    lines.append(line)
                # anything else: the tail of an answer nobody waits for any more
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            sock.settimeout(min(remaining, 0.5))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if not self.is_active():
                    self._drop_connection()
                    raise self._fail(GuestGone, f"died while running {cmd!r}") from None
                continue
            if not chunk:
                self._drop_connection()
                raise self._fail(GuestGone, f"control channel closed while running {cmd!r}")
            self._buf += chunk

    def command(self, cmd: str, timeout: float = 30.0, *, check: bool = True) -> str:
        """Run one control command in the guest and return its output (without markers)."""
        with self._lock:
            result = self._exchange(cmd, time.monotonic() + timeout)
        if result is None:
            raise self._fail(GuestError, f"no answer to {cmd!r} within {timeout} s")
        status, output = result
        if check and status != 0:
            raise self._fail(GuestError, f"{cmd!r} failed with status {status}:\n{output}")
        return output

    def wait_booted(self, timeout: float = 60.0) -> float:
        """Wait until ``/init`` answers on the control channel; the seconds it took.

        Bytes sent before the guest opened its serial port are lost, so this pings again every
        half second; answers to earlier pings are told apart by their id and skipped.
        """
        start = time.monotonic()
        deadline = start + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise self._fail(GuestError, f"not booted after {timeout} s")
                result = self._exchange("ping", min(deadline, now + 0.5))
                if result is not None and result[1].strip() == "pong":
                    return time.monotonic() - start

    def ping(self, timeout: float = 10.0) -> None:
        out = self.command("ping", timeout)
        if out.strip() != "pong":
            raise self._fail(GuestError, f"unexpected answer to ping: {out!r}")

    def meminfo(self, timeout: float = 30.0) -> dict[str, int]:
        """The guest's /proc/meminfo: values in kB (counts such as HugePages_Total as is)."""
        info = {}
        for line in self.command("meminfo", timeout).splitlines():
            key, _, rest = line.partition(":")
            fields = rest.split()
            if key and fields:
                info[key.strip()] = int(fields[0])
        if "MemTotal" not in info:
            raise self._fail(GuestError, "meminfo answer has no MemTotal")
        return info

    def hold(self, mib: int, timeout: float = 120.0) -> int:
        """Have a guest process allocate and touch ``mib`` MiB of anonymous memory; its pid.

        The OOM killer may kill it; :meth:`status` tells. Raises if it died while allocating.
        """
        out = self.command(f"hold {int(mib)}", timeout)
        return int(out.split()[0].removeprefix("pid="))

    def tmpfs(self, mib: int, timeout: float = 120.0) -> None:
        """Write ``mib`` MiB into a new file on a tmpfs: memory the guest cannot free."""
        self.command(f"tmpfs {int(mib)}", timeout)

    def release(self, timeout: float = 60.0) -> None:
        """Kill every holder and delete every tmpfs file."""
        self.command("release", timeout)

    def status(self, timeout: float = 30.0) -> dict[str, Any]:
        """``hold_mib`` (still held by live holders), ``hold_pids``, ``tmpfs_kib``."""
        result: dict[str, Any] = {}
        for line in self.command("status", timeout).splitlines():
            key, _, value = line.partition("=")
            if key == "hold_pids":
                result[key] = [int(p) for p in value.split()]
            elif key:
                result[key] = int(value)
        return result

    def dmesg(self, timeout: float = 30.0) -> str:
        return self.command("dmesg", timeout)

    # --- lifetime -----------------------------------------------------------------------

    def wait_gone(self, timeout: float = 10.0) -> bool:
        """Wait until the domain is no longer running (e.g. after a panic); whether it is."""
        deadline = time.monotonic() + timeout
        while self.is_active():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
