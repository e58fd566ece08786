"""Boot real tiny Linux guests with a real virtio-balloon driver under libvirt's embedded QEMU.

No libvirtd: the QEMU driver runs inside this process (``qemu:///embed?root=<dir>``), which
needs libvirt's default event loop registered and running in a thread. Guests are transient
domains booted straight from the kernel and initramfs built by :mod:`.build`, with 1 vCPU,
TCG (unless KVM really is usable), no disk and no network.

Each guest has two serial ports: ttyS0 is the kernel console, written to a file; ttyS1 is a
UNIX socket on which the guest's ``/init`` serves a small line protocol (see ``init.sh``)::

    with KvmGuestHarness() as h:
        g = h.boot("g1", memory_mib=512)
        g.wait_booted()
        g.domain.setMemoryStatsPeriod(2)
        g.hold(100)                       # a guest process allocates and touches 100 MiB
        print(g.meminfo()["MemTotal"])    # kB, as the guest sees it

The root directory (default ``<repo>/.cache/kvm-embed-root``, one per pytest-xdist worker:
``kvm-embed-root-gw0``, …) is kept between runs: its ``cache/`` holds QEMU's capability probe,
which makes every later first connect fast. Domains and QEMU processes a killed earlier run left
in it are destroyed when it is opened again. One process at a time can use a root: libvirt's
driver holds its pid file for the life of the process once it has opened it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from tests.support.peer_guard import note_started

from .build import BUSYBOX, REPO_ROOT, GuestImage, build_guest, is_static_elf
from .channel import KERNEL_CMDLINE, GuestChannel, GuestError, GuestGone, short_socket_path

if TYPE_CHECKING:
    import libvirt

__all__ = [
    "GuestError",
    "GuestGone",
    "GuestHandle",
    "KvmGuestHarness",
    "prerequisites",
]

DEFAULT_ROOT = REPO_ROOT / ".cache" / "kvm-embed-root"


def default_root() -> Path:
    """``HVB_KVM_EMBED_ROOT``, else :data:`DEFAULT_ROOT` with the pytest-xdist worker's name
    (``-gw1``) when there is one: each worker process needs a root of its own."""
    if "HVB_KVM_EMBED_ROOT" in os.environ:
        return Path(os.environ["HVB_KVM_EMBED_ROOT"])
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return DEFAULT_ROOT.with_name(f"{DEFAULT_ROOT.name}-{worker}") if worker else DEFAULT_ROOT


QEMU_BINARY = "qemu-system-x86_64"
QEMU_CONF = """\
# Written by the hvballoon test harness (tests/support/kvm_guest/harness.py).
user = "root"
group = "root"
# Without this QEMU's output goes through virtlogd, a daemon we do not run.
stdio_handler = "file"
remember_owner = 0
security_driver = "none"
# Otherwise cgroups are created per domain and can be left behind.
cgroup_controllers = [ ]
"""


def _libvirt_qemu_driver_present() -> bool:
    return any(Path("/usr/lib").glob("*/libvirt/connection-driver/libvirt_driver_qemu.so")) or any(
        Path("/usr/lib64/libvirt/connection-driver").glob("libvirt_driver_qemu.so")
    )


def prerequisites() -> list[str]:
    """Why a real guest cannot be booted here: empty when it can."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root (the harness runs QEMU as root through the embedded driver)")
    if shutil.which(QEMU_BINARY) is None:
        reasons.append(f"{QEMU_BINARY} missing (apt-get install qemu-system-x86)")
    if importlib.util.find_spec("libvirt") is None:
        reasons.append("libvirt-python missing (pip install libvirt-python)")
    if not _libvirt_qemu_driver_present():
        reasons.append("libvirt's QEMU driver missing (apt-get install libvirt-daemon-driver-qemu)")
    if not BUSYBOX.exists():
        reasons.append("busybox missing (apt-get install busybox-static)")
    elif not is_static_elf(BUSYBOX):
        reasons.append(f"{BUSYBOX} is not static (apt-get install busybox-static)")
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        reasons.append("no libvirt-qemu user (see scripts/setup.d/kvm.sh)")
    if not (REPO_ROOT / ".cache" / "kvm-guest").exists() and shutil.which("apt-get") is None:
        reasons.append("no cached guest kernel and no apt-get to fetch one")
    return reasons


# libvirt's default event loop: registered once per process, before the first connection,
# and run for the life of the process by a daemon thread.
_event_loop_lock = threading.Lock()
_event_loop_thread: threading.Thread | None = None


def _event_loop_registered(libvirt: Any) -> bool:
    """Whether an event loop is registered: adding a disabled timer succeeds only then."""
    try:
        timer = libvirt.virEventAddTimeout(-1, lambda *_: None, None)
    except libvirt.libvirtError:
        return False
    libvirt.virEventRemoveTimeout(timer)
    return True


def _ensure_event_loop() -> None:
    global _event_loop_thread
    import libvirt

    with _event_loop_lock:
        if _event_loop_thread is not None or _event_loop_registered(libvirt):
            # someone in this process (e.g. the backend under test) registered and runs one
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _event_loop_thread = threading.Thread(target=run, name="libvirt-event-loop", daemon=True)
        _event_loop_thread.start()


# The embedded driver binds a process to the first root it opens, for the life of the process
# (opening another fails even after the first connection is closed). Harnesses of one process
# on that root share one file lock, counted.
_process_root: Path | None = None
_roots_lock = threading.Lock()
_held_roots: dict[Path, list[Any]] = {}


def _kvm_usable() -> bool:
    # /dev/kvm alone is not enough: a software nested-virtualisation device can stand in for
    # it, on which a stock kernel barely boots. Trust only the hardware modules.
    return Path("/dev/kvm").exists() and (
        Path("/sys/module/kvm_intel").exists() or Path("/sys/module/kvm_amd").exists()
    )


class GuestHandle(GuestChannel):
    """One booted guest: its libvirt domain plus the control channel to its ``/init``."""

    def __init__(
        self,
        name: str,
        domain: libvirt.virDomain,
        console_log: Path,
        control_socket: Path,
        tmpdir: Path | None,
        pid_file: Path | None = None,
    ) -> None:
        super().__init__(name, console_log, control_socket)
        self.domain = domain
        self._tmpdir = tmpdir
        self._pid_file = pid_file

    def qemu_pid(self) -> int:
        """The pid of this guest's QEMU process, from the pid file libvirt's QEMU driver keeps in
        its state directory (``<root>/run/qemu/<name>.pid`` for the embedded driver), checked
        against the process's command line: never a QEMU of the same name that another test
        run started elsewhere on the machine."""
        if self._pid_file is None:
            raise RuntimeError(f"{self.name}: no pid file known")
        pid = int(self._pid_file.read_text(encoding="ascii").strip())
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        # libvirt starts QEMU with "-name guest=<name>,debug-threads=on"
        if f"guest={self.name}".encode() not in (part for arg in args for part in arg.split(b",")):
            raise RuntimeError(f"{self.name}: pid {pid} from {self._pid_file} is not this guest's QEMU")
        return pid

    def is_active(self) -> bool:
        import libvirt

        try:
            return bool(self.domain.isActive())
        except libvirt.libvirtError:
            return False

    def destroy(self) -> None:
        """Stop the guest's QEMU at once (no-op if it is already gone)."""
        import libvirt

        self._drop_connection()
        try:
            self.domain.destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (
                libvirt.VIR_ERR_NO_DOMAIN,
                libvirt.VIR_ERR_OPERATION_INVALID,
            ):
                raise
        with contextlib.suppress(OSError):
            self.control_socket.unlink()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


class KvmGuestHarness:
    """Owns an embedded-QEMU root, its libvirt connection and the guests booted in it."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        accel: str = "auto",
        lock_timeout: float = 600.0,
    ) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.root = self.root.resolve()
        if accel not in ("auto", "tcg", "kvm"):
            raise ValueError(f"accel must be auto, tcg or kvm, not {accel!r}")
        self.domain_type = "kvm" if accel == "kvm" or (accel == "auto" and _kvm_usable()) else "qemu"
        self.uri = f"qemu:///embed?root={self.root}"
        self.lock_timeout = lock_timeout
        self.image: GuestImage | None = None
        self.connect_seconds: float | None = None
        self._conn: libvirt.virConnect | None = None
        self._holds_root = False
        self._guests: dict[str, GuestHandle] = {}

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            raise RuntimeError("the harness is not open")
        return self._conn

    def __enter__(self) -> KvmGuestHarness:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _take_lock(self) -> bool:
        """Lock the root for this process; True if this process did not hold it already.

        libvirt locks the root too, but fails at once; waiting here lets two test processes
        take turns instead of one of them erroring out. Harnesses in the same process share
        the lock (and the root: see ``_process_root``).
        """
        with _roots_lock:
            held = _held_roots.get(self.root)
            if held is not None:
                held[1] += 1
                self._holds_root = True
                return False
            lock_file = open(self.root.with_name(self.root.name + ".lock"), "a")  # noqa: SIM115
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        lock_file.close()
                        raise TimeoutError(f"{self.root} stayed in use by another process") from None
                    time.sleep(0.2)
            _held_roots[self.root] = [lock_file, 1]
            self._holds_root = True
            return True

    def _release_lock(self) -> None:
        if not self._holds_root:
            return
        self._holds_root = False
        with _roots_lock:
            held = _held_roots[self.root]
            held[1] -= 1
            if held[1] == 0:
                held[0].close()
                del _held_roots[self.root]

    def open(self) -> None:
        if self._conn is not None:
            return
        reasons = prerequisites()
        if reasons:
            raise RuntimeError("cannot run real KVM guests here: " + "; ".join(reasons))
        import libvirt

        note_started("libvirt's embedded QEMU driver")

        global _process_root
        if _process_root is not None and _process_root != self.root:
            raise RuntimeError(
                f"libvirt's embedded QEMU driver is bound to {_process_root} for the life of this"
                f" process; it cannot also open {self.root}: share one harness root per process"
            )
        self.image = build_guest()
        self.root.mkdir(parents=True, exist_ok=True)
        first_in_process = self._take_lock()
        try:
            (self.root / "etc").mkdir(exist_ok=True)
            conf = self.root / "etc" / "qemu.conf"
            if not conf.exists() or conf.read_text() != QEMU_CONF:
                conf.write_text(QEMU_CONF)
            (self.root / "guests").mkdir(exist_ok=True)
            _ensure_event_loop()
            start = time.monotonic()
            self._conn = libvirt.open(self.uri)
            _process_root = self.root
            self.connect_seconds = time.monotonic() - start
            if first_in_process:
                # Not while another harness of this process has guests running here.
                self._clean_stale()
        except BaseException:
            self.close()
            raise

    def _clean_stale(self) -> None:
        """Destroy whatever an earlier, killed run left running in this root."""
        import libvirt

        for dom in self.conn.listAllDomains():
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        # A QEMU libvirt no longer knows about (its state files lost) still names the root
        # on its command line: only those are ours to kill.
        marker = os.fsencode(str(self.root) + "/")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            argv0 = cmdline.split(b"\x00", 1)[0]
            if os.path.basename(argv0).startswith(b"qemu-system") and marker in cmdline:
                with contextlib.suppress(OSError):
                    os.kill(int(proc.name), signal.SIGKILL)
        for stale in (self.root / "guests").iterdir():
            shutil.rmtree(stale, ignore_errors=True)

    def detach(self) -> None:
        """Close the connection but leave the guests running: a later process opening the same
        root finds them (libvirt reconnects to their QEMUs). The embedded driver stays bound to
        this process until it exits, so only a process that ends after this hands them over."""
        self._guests.clear()
        self.close()

    def close(self) -> None:
        """Destroy every guest booted here and close the connection."""
        try:
            self.destroy(*self._guests.values())
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            self._release_lock()

    def domain_xml(
        self,
        name: str,
        *,
        memory_mib: int,
        autodeflate: bool,
        stats_period: int | None,
        console_log: Path,
        control_socket: Path,
        dimm_mib: int = 0,
        cmdline_extra: str = "",
    ) -> str:
        assert self.image is not None
        balloon_attrs = " autodeflate='on'" if autodeflate else ""
        stats = f"<stats period='{int(stats_period)}'/>" if stats_period is not None else ""
        total, hotplug, cpu, features, dimm = int(memory_mib), "", "", "", ""
        if dimm_mib:
            # memory hotplug: a ceiling with slots, one guest NUMA cell (libvirt requires one),
            # ACPI (QEMU's pc-dimm needs it), and one DIMM plugged at boot; <memory> counts it
            total += int(dimm_mib)
            hotplug = f"<maxMemory slots='2' unit='MiB'>{4 * total}</maxMemory>"
            cpu = f"<cpu><numa><cell id='0' cpus='0' memory='{int(memory_mib)}' unit='MiB'/></numa></cpu>"
            features = "<features><acpi/></features>"
            dimm = (
                f"<memory model='dimm'><target><size unit='MiB'>{int(dimm_mib)}</size>"
                "<node>0</node></target></memory>"
            )
        cmdline = f"{KERNEL_CMDLINE} {cmdline_extra}".strip()
        return f"""\
<domain type='{self.domain_type}'>
  <name>{escape(name)}</name>
  {hotplug}<memory unit='MiB'>{total}</memory>
  <currentMemory unit='MiB'>{total}</currentMemory>
  <vcpu>1</vcpu>{cpu}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(self.image.kernel))}</kernel>
    <initrd>{escape(str(self.image.initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>{features}
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path={quoteattr(str(console_log))}/>
      <target port='0'/>
    </serial>
    <serial type='unix'>
      <source mode='bind' path={quoteattr(str(control_socket))}/>
      <target port='1'/>
    </serial>
    {dimm}<memballoon model='virtio'{balloon_attrs}>{stats}</memballoon>
  </devices>
</domain>
"""

    def boot(
        self,
        name: str,
        memory_mib: int = 512,
        *,
        autodeflate: bool = False,
        stats_period: int | None = None,
        wait: bool = False,
        timeout: float = 60.0,
        dimm_mib: int = 0,
        cmdline_extra: str = "",
    ) -> GuestHandle:
        """Start a transient guest; with ``wait`` also wait until its ``/init`` answers.

        ``stats_period`` puts ``<stats period=.../>`` in the XML; left None, balloon
        statistics stay off until someone calls ``setMemoryStatsPeriod`` (as on a real host).
        ``dimm_mib`` plugs a DIMM of that size at boot (memory hotplug: ``<maxMemory>``, one
        NUMA cell, ACPI) on top of ``memory_mib``; ``cmdline_extra`` is added to the kernel's
        command line (``module_blacklist=virtio_balloon``: a guest without its balloon driver).
        """
        import libvirt

        if name in self._guests:
            raise ValueError(f"a guest named {name!r} is already running")
        gdir = self.root / "guests" / name
        shutil.rmtree(gdir, ignore_errors=True)
        gdir.mkdir(parents=True)
        console_log = gdir / "console.log"
        control_socket, tmpdir = short_socket_path(gdir / "ctl.sock")
        xml = self.domain_xml(
            name,
            memory_mib=memory_mib,
            autodeflate=autodeflate,
            stats_period=stats_period,
            console_log=console_log,
            control_socket=control_socket,
            dimm_mib=dimm_mib,
            cmdline_extra=cmdline_extra,
        )
        try:
            dom = self.conn.createXML(xml, 0)
        except libvirt.libvirtError:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        pid_file = self.root / "run" / "qemu" / f"{name}.pid"  # the driver's state directory
        guest = GuestHandle(name, dom, console_log, control_socket, tmpdir, pid_file)
        self._guests[name] = guest
        if wait:
            try:
                guest.wait_booted(timeout)
            except BaseException:
                self.destroy(guest)
                raise
        return guest

    def destroy(self, *guests: GuestHandle) -> None:
        """Destroy these guests, side by side (each destroy waits for its QEMU to be reaped)."""
        guests = tuple(guests)
        for guest in guests:
            self._guests.pop(guest.name, None)
        errors: list[BaseException] = []

        def one(guest: GuestHandle) -> None:
            try:
                guest.destroy()
            except Exception as exc:  # keep destroying the others
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(g,)) for g in guests[1:]]
        for t in threads:
            t.start()
        if guests:
            one(guests[0])
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    @contextlib.contextmanager
    def guest(self, name: str, memory_mib: int = 512, **kwargs: Any) -> Iterator[GuestHandle]:
        """A booted guest (waited for) that is destroyed when the block ends."""
        g = self.boot(name, memory_mib, wait=True, **kwargs)
        try:
            yield g
        finally:
            self.destroy(g)
