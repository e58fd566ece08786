"""Real QEMU processes with a QMP monitor socket, started directly (no libvirt).

Two kinds, both plain ``qemu-system-x86_64`` with ``-qmp unix:<dir>/<name>.qmp,server=on,wait=off``:

- :func:`start_bare`: a paused (``-S``) machine that never runs a guest — a ``microvm`` with
  just a ``virtio-balloon-device`` (or none), ~27 MB resident, up in ~50 ms. Enough for what QEMU
  itself answers (identity, memory sizes, the balloon's ``actual``, QMP errors, a socket that
  goes away) and for measuring what a sweep of many VMs costs.
- :class:`QmpGuestHarness`: the same tiny Linux guest as the KVM backend's real-guest tests (the
  kernel and busybox initramfs of :mod:`tests.support.kvm_guest.build`, its ``/init`` reached
  through :class:`~tests.support.kvm_guest.channel.GuestChannel`), booted under TCG with a
  ``virtio-balloon-pci`` whose driver really inflates and deflates.

Every QEMU is started with ``PR_SET_PDEATHSIG`` so that it dies with the process that started
it (start QEMUs from a thread that lives as long as they should: the main thread).

::

    with QmpGuestHarness() as h:
        g = h.boot("g1", memory_mib=512, wait=True)
        print(h.directory, g.qmp_socket)   # connect hvballoon to qmp://<h.directory>
        print(g.meminfo()["MemTotal"])
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.kvm_guest.build import BUSYBOX, REPO_ROOT, GuestImage, build_guest, is_static_elf
from tests.support.kvm_guest.channel import KERNEL_CMDLINE, GuestChannel
from tests.support.peer_guard import note_started

__all__ = [
    "QEMU_BINARY",
    "QemuProcess",
    "QmpGuest",
    "QmpGuestHarness",
    "prerequisites",
    "start_bare",
]

QEMU_BINARY = "qemu-system-x86_64"
_PR_SET_PDEATHSIG = 1


def prerequisites(*, guest: bool) -> list[str]:
    """Why QEMU (``guest=True``: and the tiny guest) cannot run here: empty when it can."""
    reasons = []
    if shutil.which(QEMU_BINARY) is None:
        reasons.append(f"{QEMU_BINARY} missing (apt-get install qemu-system-x86)")
    try:
        import qemu.qmp  # noqa: F401
    except ImportError:
        reasons.append("qemu.qmp missing (pip install qemu.qmp)")
    if guest:
        if not BUSYBOX.exists():
            reasons.append("busybox missing (apt-get install busybox-static)")
        elif not is_static_elf(BUSYBOX):
            reasons.append(f"{BUSYBOX} is not static (apt-get install busybox-static)")
        if not (REPO_ROOT / ".cache" / "kvm-guest").exists() and shutil.which("apt-get") is None:
            reasons.append("no cached guest kernel and no apt-get to fetch one")
    return reasons


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class QemuProcess:
    """One ``qemu-system-x86_64`` process and its QMP socket."""

    def __init__(self, name: str, argv: Sequence[str], qmp_socket: Path, log: Path) -> None:
        self.name = name
        self.qmp_socket = qmp_socket
        self.log = log
        note_started(f"QEMU process {name}")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_socket(self, timeout: float = 30.0) -> None:
        """Wait until QEMU listens on its QMP socket (accepts a connection, not just has the file).

        QEMU binds the socket file before it listens on it: in between, a connection is refused,
        which the backend rightly reads as a VM that has stopped.
        """
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if not self.running():
                raise RuntimeError(
                    f"{self.name}: QEMU exited: {self.log.read_text(errors='replace')[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no QMP socket after {timeout} s")
            time.sleep(0.01)

    def _accepts(self) -> bool:
        if not self.qmp_socket.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(self.qmp_socket))
            except OSError:
                return False
        return True

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Send ``sig`` (default: SIGKILL, which leaves the socket file behind) and reap QEMU."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def stop(self) -> None:
        """Quit QEMU cleanly (SIGTERM): it removes its socket on the way out."""
        self.kill(signal.SIGTERM)
        if self.running():
            self.kill()


def start_bare(
    directory: Path,
    name: str,
    *,
    memory_mib: int = 64,
    balloon: bool = True,
    balloon_id: str | None = None,
    qemu_name: str | None = None,
    uuid: str | None = None,
    machine: str = "microvm",
    extra: Sequence[str] = (),
    wait: bool = True,
) -> QemuProcess:
    """A paused QEMU (``-S``, no guest ever runs) with its QMP socket at ``<directory>/<name>.qmp``.

    ``machine="microvm"`` takes a ``virtio-balloon-device``; any PCI machine (``"pc"``) a
    ``virtio-balloon-pci``.
    """
    sock = directory / f"{name}.qmp"
    device = "virtio-balloon-device" if machine == "microvm" else "virtio-balloon-pci"
    argv = [
        QEMU_BINARY,
        "-M",
        machine,
        "-accel",
        "tcg",
        "-S",
        "-m",
        f"{memory_mib}M",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-qmp",
        f"unix:{sock},server=on,wait=off",
    ]
    if qemu_name is not None:
        argv += ["-name", qemu_name]
    if uuid is not None:
        argv += ["-uuid", uuid]
    if balloon:
        argv += ["-device", device + (f",id={balloon_id}" if balloon_id else "")]
    argv += list(extra)
    process = QemuProcess(name, argv, sock, directory / f".{name}.log")
    if wait:
        process.wait_socket()
    return process


class QmpGuest(GuestChannel):
    """A booted tiny guest: its QEMU process, its QMP socket and its ``/init`` control channel."""

    def __init__(self, name: str, process: QemuProcess, console_log: Path, control_socket: Path, uuid: str):
        super().__init__(name, console_log, control_socket)
        self.process = process
        self.qmp_socket = process.qmp_socket
        self.uuid = uuid

    def is_active(self) -> bool:
        return self.process.running()

    def destroy(self) -> None:
        self._drop_connection()
        self.process.kill()
        with contextlib.suppress(OSError):
            self.qmp_socket.unlink()


class QmpGuestHarness:
    """Tiny guests under bare QEMU (TCG), their QMP sockets side by side in :attr:`directory`."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own = directory is None
        # UNIX socket paths are limited to 108 bytes: keep the directory short
        self.directory = Path(directory or tempfile.mkdtemp(prefix="hvb-qmp-"))
        self.image: GuestImage | None = None
        self._guests: dict[str, QmpGuest] = {}

    @property
    def uri(self) -> str:
        """``qmp:///<directory>``: every guest of this harness."""
        return f"qmp://{self.directory}"

    def __enter__(self) -> QmpGuestHarness:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        reasons = prerequisites(guest=True)
        if reasons:
            raise RuntimeError("cannot run the QMP test guest here: " + "; ".join(reasons))
        self.image = build_guest()
        self.directory.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.destroy(*self._guests.values())
        if self._own:
            shutil.rmtree(self.directory, ignore_errors=True)

    def boot(
        self,
        name: str,
        memory_mib: int = 512,
        *,
        deflate_on_oom: bool = False,
        wait: bool = False,
        timeout: float = 90.0,
    ) -> QmpGuest:
        """Start a guest (balloon ``balloon0``, stats period off as QEMU starts it)."""
        assert self.image is not None, "the harness is not open"
        if name in self._guests:
            raise ValueError(f"a guest named {name!r} is already running")
        gdir = self.directory / f".{name}"
        shutil.rmtree(gdir, ignore_errors=True)
        gdir.mkdir()
        console, control = gdir / "console.log", gdir / "ctl.sock"
        uuid = str(uuidlib.uuid4())
        balloon = "virtio-balloon-pci,id=balloon0" + (",deflate-on-oom=on" if deflate_on_oom else "")
        argv = [
            QEMU_BINARY,
            "-accel",
            "tcg",
            "-M",
            "pc",
            "-m",
            f"{int(memory_mib)}M",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",  # with panic=-1: a guest whose kernel panics makes QEMU exit
            "-name",
            name,
            "-uuid",
            uuid,
            "-kernel",
            str(self.image.kernel),
            "-initrd",
            str(self.image.initrd),
            "-append",
            KERNEL_CMDLINE,
            "-chardev",
            f"file,id=console,path={console}",
            "-serial",
            "chardev:console",
            "-chardev",
            f"socket,id=control,path={control},server=on,wait=off",
            "-serial",
            "chardev:control",
            "-qmp",
            f"unix:{self.directory / name}.qmp,server=on,wait=off",
            "-device",
            balloon,
        ]
        process = QemuProcess(name, argv, self.directory / f"{name}.qmp", gdir / "qemu.log")
        guest = QmpGuest(name, process, console, control, uuid)
        self._guests[name] = guest
        try:
            process.wait_socket()
            if wait:
                guest.wait_booted(timeout)
        except BaseException:
            self.destroy(guest)
            raise
        return guest

    def destroy(self, *guests: QmpGuest) -> None:
        for guest in guests:
            self._guests.pop(guest.name, None)
            guest.destroy()

    @contextlib.contextmanager
    def guest(self, name: str, memory_mib: int = 512, **kwargs: Any) -> Iterator[QmpGuest]:
        """A booted guest (waited for) that is destroyed when the block ends."""
        g = self.boot(name, memory_mib, wait=True, **kwargs)
        try:
            yield g
        finally:
            self.destroy(g)
