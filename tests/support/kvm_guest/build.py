"""Build (once) the test guest: Debian's cloud kernel plus a busybox initramfs.

The kernel comes from the package ``linux-image-cloud-amd64`` depends on, fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` (installing it would pull in
initramfs-tools and udev). Only ``vmlinuz`` and the virtio modules needed for the balloon are
kept. The initramfs (gzip'd cpio "newc", written here in Python so no ``cpio`` is needed and
device nodes need no root) holds busybox-static, the modules and ``init.sh`` as ``/init``.

Everything is cached under ``<repo>/.cache/kvm-guest/``: the kernel per version, the image per
(kernel version, init script, busybox, module list). A warm call costs a few stat() calls and
hashing ~2 MB.

Run ``python -m tests.support.kvm_guest.build`` to build and print the paths.
"""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[3]
CACHE_DIR = REPO_ROOT / ".cache" / "kvm-guest"
INIT_SCRIPT = Path(__file__).with_name("init.sh")
BUSYBOX = Path("/bin/busybox")
META_PACKAGE = "linux-image-cloud-amd64"
APT_LISTS = "/var/lib/apt/lists"
# The modules the balloon needs; their dependencies (virtio, virtio_ring, the PCI helpers) are
# found from each module's own ``depends=`` field, since the unpacked package has no
# modules.dep (depmod runs at install time).
WANTED_MODULES = ("virtio_pci", "virtio_balloon")
FORMAT_VERSION = 1  # bump when the layout of the image changes


class GuestBuildError(RuntimeError):
    """The guest image could not be built; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    kernel_version: str
    modules: tuple[str, ...]


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable with no program interpreter (so it runs in the initramfs)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # ELF64 only: the guest is x86_64
            return False
        order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[0x20:0x28], order)
        phentsize = int.from_bytes(head[0x36:0x38], order)
        phnum = int.from_bytes(head[0x38:0x3A], order)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    pt_interp = 3
    return all(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], order) != pt_interp
        for i in range(phnum)
    )


def _run(*cmd: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise GuestBuildError(f"{cmd[0]} is not installed") from exc
    if proc.returncode != 0:
        raise GuestBuildError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def resolve_kernel_package() -> str:
    """The versioned kernel package (``linux-image-<ver>-cloud-amd64``) the meta package wants.

    ``apt-cache`` takes ~0.6 s, so the answer is remembered until apt's lists change.
    """
    override = os.environ.get("HVB_KVM_GUEST_KERNEL_PACKAGE")
    if override:
        return override
    try:
        lists_stamp = os.stat(APT_LISTS).st_mtime_ns
    except OSError:
        lists_stamp = None
    memo = CACHE_DIR / "resolved.json"
    try:
        remembered = json.loads(memo.read_text())
        if lists_stamp is not None and remembered["lists_stamp"] == lists_stamp:
            return str(remembered["package"])
    except (OSError, ValueError, KeyError):
        pass
    out = _run("apt-cache", "depends", "--important", META_PACKAGE)
    for line in out.splitlines():
        m = re.match(r"\s*\|?Depends:\s*(linux-image-\S+-cloud-amd64)\s*$", line)
        if m:
            memo.write_text(json.dumps({"lists_stamp": lists_stamp, "package": m.group(1)}))
            return m.group(1)
    raise GuestBuildError(f"cannot find the kernel package {META_PACKAGE} depends on:\n{out}")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _decompressed(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.zst"):
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    return data


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def _module_depends(blob: bytes) -> list[str]:
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", blob)
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def _fetch_kernel(package: str) -> Path:
    """Unpacked kernel for ``package`` under the cache: ``vmlinuz`` and ``modules/*.ko``."""
    version = package.removeprefix("linux-image-")
    dest = CACHE_DIR / f"kernel-{version}"
    if (dest / "complete").exists():
        return dest
    work = Path(tempfile.mkdtemp(prefix="kernel-", dir=CACHE_DIR))
    try:
        # _apt cannot write into a root-only directory; let it, so apt needs no fallback.
        work.chmod(0o777)
        _run("apt-get", "download", package, cwd=work)
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise GuestBuildError(f"apt-get download {package} gave {debs}")
        tree = work / "tree"
        _run("dpkg-deb", "-x", str(debs[0]), str(tree))
        vmlinuz = next(iter((tree / "boot").glob("vmlinuz-*")), None)
        if vmlinuz is None:
            raise GuestBuildError(f"{package} has no /boot/vmlinuz-*")
        # Debian ships 6.1's modules uncompressed; later kernels may compress them.
        kos = {
            _module_name(p): p
            for p in (tree / "lib" / "modules").glob("*/kernel/**/*.ko*")
            if re.search(r"\.ko(\.xz|\.zst|\.gz)?$", p.name)
        }
        staged = work / "out"
        (staged / "modules").mkdir(parents=True)
        shutil.copy2(vmlinuz, staged / "vmlinuz")
        order: list[str] = []
        deps: dict[str, list[str]] = {}

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in chain:
                raise GuestBuildError(f"module dependency cycle: {(*chain, name)}")
            if name not in kos:
                raise GuestBuildError(f"{package} has no module {name} (built in?)")
            blob = _decompressed(kos[name])
            (staged / "modules" / f"{name}.ko").write_bytes(blob)
            deps[name] = _module_depends(blob)
            for dep in deps[name]:
                visit(dep, (*chain, name))
            order.append(name)

        for wanted in WANTED_MODULES:
            visit(wanted, ())
        (staged / "modules" / "order").write_text("\n".join(order) + "\n")
        (staged / "kernel.json").write_text(
            json.dumps({"package": package, "version": version, "order": order, "deps": deps})
        )
        (staged / "complete").touch()
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Cpio:
    """A writer for the cpio "newc" format the kernel unpacks as its initramfs."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\x00"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._ino += 1
        header = b"070701" + b"".join(f"{f:08X}".encode() for f in fields)
        self._buf.write(header + encoded)
        self._pad()
        self._buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self._buf.write(b"\x00" * (-self._buf.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


def _initramfs(kernel_dir: Path, init: bytes, busybox: bytes) -> bytes:
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "run", "modules"):
        cpio.directory(d)
    # The kernel opens /dev/console before /init runs, so it must exist before devtmpfs is.
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox, 0o755)
    cpio.file("init", init, 0o755)
    mods = kernel_dir / "modules"
    for name in (mods / "order").read_text().split():
        cpio.file(f"modules/{name}.ko", (mods / f"{name}.ko").read_bytes())
    cpio.file("modules/order", (mods / "order").read_bytes())
    return gzip.compress(cpio.finish(), compresslevel=9, mtime=0)


def build_guest(*, force: bool = False) -> GuestImage:
    """Build the guest if its cache entry is missing (or ``force``) and return its paths."""
    if not BUSYBOX.exists() or not is_static_elf(BUSYBOX):
        raise GuestBuildError(f"{BUSYBOX} is missing or not static (install busybox-static)")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE_DIR / ".lock"):
        try:
            package = resolve_kernel_package()
        except GuestBuildError:
            # Offline, or apt lists gone: reuse the newest kernel already cached.
            cached = sorted(CACHE_DIR.glob("kernel-*/complete"), key=lambda p: p.stat().st_mtime)
            if not cached:
                raise
            package = "linux-image-" + cached[-1].parent.name.removeprefix("kernel-")
        kernel_dir = _fetch_kernel(package)
        meta = json.loads((kernel_dir / "kernel.json").read_text())
        init = INIT_SCRIPT.read_bytes()
        busybox = BUSYBOX.read_bytes()
        key = hashlib.sha256()
        for part in (
            str(FORMAT_VERSION).encode(),
            meta["version"].encode(),
            init,
            busybox,
            " ".join(meta["order"]).encode(),
        ):
            key.update(hashlib.sha256(part).digest())
        image_dir = CACHE_DIR / f"image-{meta['version']}-{key.hexdigest()[:16]}"
        image = GuestImage(
            kernel=kernel_dir / "vmlinuz",
            initrd=image_dir / "initrd.gz",
            kernel_version=meta["version"],
            modules=tuple(meta["order"]),
        )
        if image.initrd.exists() and not force:
            return image
        image_dir.mkdir(exist_ok=True)
        tmp = image_dir / "initrd.gz.tmp"
        tmp.write_bytes(_initramfs(kernel_dir, init, busybox))
        tmp.replace(image.initrd)
        return image


def main() -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild the initramfs")
    args = parser.parse_args()
    start = time.monotonic()
    image = build_guest(force=args.force)
    print(f"kernel   {image.kernel} ({image.kernel_version})")
    print(f"initrd   {image.initrd} ({image.initrd.stat().st_size} bytes)")
    print(f"modules  {' '.join(image.modules)}")
    print(f"took     {time.monotonic() - start:.2f} s")


if __name__ == "__main__":
    main()
