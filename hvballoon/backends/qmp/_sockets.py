"""The monitor sockets a ``qmp:///…`` URI names, and the run of a VM behind one.

A URI names one socket or a directory of them (``*.qmp``: Proxmox VE's
``/var/run/qemu-server/<vmid>.qmp``). A stopped VM's socket is gone; a restarted VM is a new
QEMU process with a new socket, told apart by the process's pid and the socket file's inode and
creation time.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from hvballoon.backend import ConnectOptions
from hvballoon.errors import InvalidURIError, PermissionDeniedError

from ._errors import BACKEND

__all__ = ["Run", "list_sockets", "run_of", "socket_path"]

_SUFFIX = ".qmp"


@dataclass(frozen=True)
class Run:
    """One run of one VM: the QEMU process behind a socket, and the socket file it made.

    A restarted VM is a new process with a new socket (its inode may be reused: its creation
    time tells them apart).
    """

    pid: int | None
    inode: int | None
    mtime_ns: int | None


def run_of(path: str, pid: int | None) -> Run:
    """The run of the QEMU process ``pid`` that serves the socket at ``path``."""
    try:
        st = os.stat(path)
    except OSError:
        return Run(pid, None, None)
    return Run(pid, st.st_ino, st.st_mtime_ns)


def socket_path(opts: ConnectOptions) -> str:
    """The directory or socket a ``qmp:///…`` URI names (checked for shape, not existence)."""
    uri = opts.uri
    if uri.host not in (None, "localhost") or uri.port is not None or uri.username is not None:
        raise InvalidURIError(
            f"{uri.redacted}: QMP sockets are local files; use qmp:///path (three slashes) and run "
            "hvballoon on the host itself (on a Proxmox node: qmp:///var/run/qemu-server)"
        )
    if uri.query:
        raise InvalidURIError(
            f"{uri.redacted}: a qmp:// URI takes no query parameters (got {', '.join(sorted(uri.query))}); "
            "options are keywords of connect(): read_only, stats_period, concurrency"
        )
    path = unquote(uri.path)
    if not path.startswith("/") or path == "/" or "\x00" in path:
        raise InvalidURIError(
            f"{uri.redacted}: expected an absolute path to a QEMU monitor socket or to a directory "
            "of them, e.g. qmp:///var/run/qemu-server or qmp:///run/vm1.qmp"
        )
    return os.path.normpath(path)


def list_sockets(directory: str) -> list[str]:
    """The ``*.qmp`` sockets in ``directory`` right now (none when it is gone)."""
    try:
        entries = sorted(Path(directory).iterdir())
    except FileNotFoundError:
        return []
    except PermissionError as exc:
        raise PermissionDeniedError(
            f"not allowed to list {directory} (run as root)", backend=BACKEND, native_code="EACCES"
        ) from exc
    out = []
    for entry in entries:
        if entry.suffix != _SUFFIX:
            continue
        try:
            if stat.S_ISSOCK(entry.stat().st_mode):
                out.append(str(entry))
        except OSError:
            continue  # vanished while listing
    return out
