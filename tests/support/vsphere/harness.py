"""Start and stop a vCenter simulator populated with a test's VMs and memory figures.

The simulator is govmomi's ``simulator`` package (Debian: ``golang-github-vmware-govmomi-dev``,
source under ``/usr/share/gocode``) driven by the small Go program in ``vcsim/main.go``, built
in GOPATH mode and cached under ``<repo>/.cache/vcsim/``. Typical use::

    from tests.support.require import require
    from tests.support.vsphere.harness import VcsimServer, prerequisites

    def test_something():
        reasons = prerequisites()
        require(not reasons, "; ".join(reasons))
        vms = [{"name": "web01", "memoryMB": 16384,
                "memoryAllocation": {"reservation": 0, "limit": -1,
                                     "shares": {"level": "normal", "shares": 163840}},
                "quickStats": {"guestMemoryUsage": 4096, "balloonedMemory": 512}}]
        with VcsimServer(vms, https=True) as peer:
            si = SmartConnect(host=peer.host, port=peer.port, user=peer.username,
                              pwd=peer.password, sslContext=peer.ssl_context())
            ...
            assert peer.counts()["RetrievePropertiesEx"] == 1

One VM dict (every key but ``name`` optional; sizes in MB like the vSphere API, except
``quickStats.compressedMemory`` which is KB as in the API)::

    {
      "name": "web01",
      "powerState": "poweredOn",           # or "poweredOff", "suspended" (default poweredOn)
      "memoryMB": 16384,                   # config.hardware.memoryMB, summary.config.memorySizeMB
      "memoryAllocation": {                # config.memoryAllocation, stored as given
        "reservation": 0, "limit": -1,     # -1 = unlimited
        "shares": {"level": "normal", "shares": 163840},
        "expandableReservation": false, "overheadLimit": 0
      },
      "quickStats": {                      # summary.quickStats: any field of govmomi's
        "guestMemoryUsage": 4096,          # VirtualMachineQuickStats (an unknown one is an
        "hostMemoryUsage": 8300,           # error; activeMemory is not in govmomi 0.24)
        "balloonedMemory": 512, "swappedMemory": 0, "compressedMemory": 2048,
        "sharedMemory": 100, "privateMemory": 8000, "consumedOverheadMemory": 90,
        "grantedMemory": 8400, "guestHeartbeatStatus": "green"
      },
      "memoryHotAddEnabled": true,         # config.memoryHotAddEnabled: a powered-on VM's memoryMB
      "hotPlugMemoryLimit": 65536,         # then only grows, to at most config.hotPlugMemoryLimit
      "hotPlugMemoryIncrementSize": 128,   # by config.hotPlugMemoryIncrementSize steps (MB), or
                                           # ReconfigVM_Task fails with MemoryHotPlugNotSupported
      "extraConfig": {"sched.mem.maxmemctl": "1330"},
      "host": 1,                           # runs on host 1 (moref order; default: the model's pick)
      "template": false,                   # config.template (true: reconfiguring it is NotSupported)
      "connectionState": "connected",      # runtime.connectionState: or disconnected, inaccessible,
                                           # invalid, orphaned
      "unreadable": ["config.memoryAllocation"]  # paths the account may not read: answered in
    }                                      # missingSet with a NoPermission fault

Per-host figures (``host_figures``, one dict per host in moref order, MB like the API)::

    {"memoryMB": 131072,                   # hardware.memorySize (sent in bytes)
     "overallMemoryUsage": 90000,          # summary.quickStats.overallMemoryUsage (0: as a
                                           # host that does not report; absent: the default 1404)
     "disconnected": true}                 # runtime.connectionState disconnected, and no memory
                                           # size nor usage reported (both 0), as vCenter shows
                                           # a host it lost

What the simulator does that a backend author must know:

- A VM's name is stored escaped as vCenter stores it ("/" as %2f, "\\" as %5c, "%" as %25;
  vSphere API, ManagedEntity.name): give the figures the name as typed; ``vm(name)`` takes it
  as typed too, and reports it as stored.
- It never sends zero-valued numbers (Go ``omitempty``): pyvmomi reads them as ``None``.
  ``memoryAllocation.reservation`` and ``limit`` are pointers and do come back as 0.
- A powered-on VM's ``memoryMB`` changes as vSphere allows it (memory hot-add on; only growing,
  within the limit, by the increment), which govmomi's simulator does not check: the harness
  refuses the rest with ``MemoryHotPlugNotSupported`` (at the call, not in the task).
- ``ReconfigVM_Task`` with a ``memoryAllocation`` replaces the whole allocation object: fields
  left unset (reservation, shares) read back unset. A real vCenter keeps them; send the full
  allocation.
- Tasks complete before ``ReconfigVM_Task`` returns, unless ``task_delay`` (seconds) asks them
  to read as running that long after the call, as a real vCenter's do.
- ``RetrievePropertiesEx`` honours ``options.maxObjects`` (and ``page_size``, a server-side cap
  applied even when the client asks for no limit, as a real vCenter may);
  ``ContinueRetrievePropertiesEx`` and ``CancelRetrievePropertiesEx`` work, with tokens bound
  to the session that made them.
- ``expire_sessions()`` terminates every session issued so far: the next call fails with
  ``vim.fault.NotAuthenticated`` until the client logs in again.
- pyvmomi's lazy attribute access (``vm.name``) is the ``Fetch`` method, one round trip each.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import importlib
import ipaddress
import json
import os
import secrets
import selectors
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.peer_guard import note_started

__all__ = ["VcsimServer", "build_vcsim", "generate_cert", "prerequisites"]

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_DIR = Path(__file__).resolve().parent / "vcsim"
CACHE_DIR = REPO_ROOT / ".cache" / "vcsim"
#: Where Debian installs Go library source for GOPATH builds.
GOPATH = Path(os.environ.get("HVBALLOON_VCSIM_GOPATH", "/usr/share/gocode"))
GOVMOMI_DIR = GOPATH / "src" / "github.com" / "vmware" / "govmomi"
SETUP_HINT = "run scripts/setup.d/esxi.sh as root"

BUILD_TIMEOUT = 600.0


def prerequisites() -> list[str]:
    """What is missing to build and talk to the simulator ([] when nothing is)."""
    reasons = []
    if shutil.which("go") is None:
        reasons.append(f"the Go toolchain is not installed (Debian: golang-go; {SETUP_HINT})")
    if not (GOVMOMI_DIR / "simulator").is_dir():
        reasons.append(
            f"govmomi's source is not in {GOVMOMI_DIR} "
            f"(Debian: golang-github-vmware-govmomi-dev; {SETUP_HINT})"
        )
    try:
        importlib.import_module("pyVmomi")
    except ModuleNotFoundError as exc:
        if exc.name == "pyVmomi":
            reasons.append(f"pyvmomi is not installed: pip install pyvmomi ({SETUP_HINT})")
        else:
            reasons.append(f"pyvmomi is installed but broken: {exc}")
    except Exception as exc:  # installed but failing to import is broken, not missing
        reasons.append(f"pyvmomi is installed but broken: {type(exc).__name__}: {exc}")
    if _cryptography() is None and shutil.which("openssl") is None:
        reasons.append(
            "neither the cryptography package nor the openssl command is available "
            f"for the test certificate ({SETUP_HINT})"
        )
    return reasons


# ---------------------------------------------------------------------------------------------
# Building


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=str(GOPATH),
        GO111MODULE="off",  # Debian's Go libraries are GOPATH source trees, not modules
        GOFLAGS="",
        CGO_ENABLED="0",  # a static binary; no C compiler needed
    )
    if not any(env.get(var) for var in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        # Go's own cache (~/.cache/go-build) is shared by clones; without a home, keep ours.
        env["GOCACHE"] = str(CACHE_DIR / "go-build")
    return env


def _build_key() -> str:
    go_version = subprocess.run(
        ["go", "version"], env=_go_env(), capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    digest = hashlib.sha256()
    for part in (
        (SOURCE_DIR / "main.go").read_bytes(),
        go_version.encode(),
        _govmomi_fingerprint().encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _govmomi_fingerprint() -> str:
    """The installed govmomi source's identity: package version if dpkg knows it, else mtimes."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "golang-github-vmware-govmomi-dev"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode == 0 and out.stdout:
            return out.stdout
    except OSError:
        pass
    simulator = GOVMOMI_DIR / "simulator"
    return ",".join(f"{p.name}:{p.stat().st_mtime_ns}" for p in sorted(simulator.glob("*.go")))


def build_vcsim() -> Path:
    """Build ``vcsim/main.go`` (or reuse the cached binary) and return the binary's path.

    The cache key is a hash of main.go, ``go version`` and the govmomi package version, so a
    change to any of them rebuilds. The build writes to a temporary name and renames it into
    place, so concurrent test processes never run a half-written binary.
    """
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    binary = CACHE_DIR / f"vcsim-{_build_key()}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    fd, tmp_name = tempfile.mkstemp(prefix=binary.name + ".", suffix=".tmp", dir=CACHE_DIR)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run(
            ["go", "build", "-o", str(tmp), "."],
            cwd=SOURCE_DIR,
            env=_go_env(),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"go build of {SOURCE_DIR} failed:\n{proc.stderr.strip()}")
        tmp.chmod(0o755)
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    for old in CACHE_DIR.glob("vcsim-*"):  # binaries of earlier sources
        if old != binary and old.is_file() and not old.name.endswith(".tmp"):
            old.unlink(missing_ok=True)
    return binary


# ---------------------------------------------------------------------------------------------
# Certificates


def _cryptography() -> Any:
    try:
        from cryptography import x509  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401
    except Exception:
        return None
    import cryptography

    return cryptography


def generate_cert(directory: Path | str, address: str) -> tuple[Path, Path]:
    """Write a self-signed ECDSA P-256 certificate for ``address`` and its key into ``directory``.

    The certificate names the address as an IP subjectAltName (a host name otherwise) and is
    its own trust anchor: give the certificate file to ``ssl.SSLContext.load_verify_locations``.
    Uses the ``cryptography`` package when it imports, else the ``openssl`` command.
    Returns ``(cert_path, key_path)``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "vcsim-cert.pem", directory / "vcsim-key.pem"
    if _cryptography() is not None:
        _generate_cert_cryptography(cert_path, key_path, address)
    else:
        _generate_cert_openssl(cert_path, key_path, address)
    key_path.chmod(0o600)
    return cert_path, key_path


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _generate_cert_cryptography(cert_path: Path, key_path: Path, address: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    san: x509.GeneralName = (
        x509.IPAddress(ipaddress.ip_address(address)) if _is_ip(address) else x509.DNSName(address)
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _generate_cert_openssl(cert_path: Path, key_path: Path, address: str) -> None:
    # A config of our own, so that the system openssl.cnf's defaults add nothing unexpected.
    san = f"IP:{address}" if _is_ip(address) else f"DNS:{address}"
    config = cert_path.with_suffix(".cnf")
    config.write_text(
        "[req]\n"
        "distinguished_name = dn\n"
        "x509_extensions = ext\n"
        "prompt = no\n"
        "[dn]\n"
        f"CN = {address}\n"
        "[ext]\n"
        "basicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, digitalSignature, keyCertSign\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = {san}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    try:
        proc = subprocess.run(
            [
                "openssl", "req", "-x509", "-new", "-config", str(config),
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-sha256", "-days", "30",
                "-keyout", str(key_path), "-out", str(cert_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    finally:
        config.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl could not make the test certificate: {proc.stderr.strip()}")


# ---------------------------------------------------------------------------------------------
# The server


class VcsimServer:
    """A running simulator, as a context manager; the object itself is the handle.

    ``vms`` are the VM dicts described in the module docstring (at least one); ``hosts`` is the
    number of ESXi hosts in the one cluster (at least as many as ``host_figures``, the per-host
    memory figures); ``page_size`` caps every PropertyCollector page
    (``None``: only the client's ``maxObjects`` does); ``task_delay`` makes tasks read as running
    that many seconds after their call returned; ``inventory`` shapes a larger inventory than one
    cluster, as vcsim's flags do (``{"datacenters": 2, "standaloneHosts": 1, "clusters": 1,
    "apps": 1, "folders": 1}``: per datacenter, standalone hosts and clusters of ``hosts``
    hosts, vApps per cluster, datacenters in folders), every compute resource and vApp with
    ``len(vms)`` VMs, the figures' VMs first (in moref order), the others under the simulator's
    names (``DC1_C0_RP0_VM0``). The server listens on ``address`` (by
    default 127.0.0.2, which pyvmomi does not treat as localhost, so certificate checks stay
    on) at a port the simulator picks itself, so there is no race for a free port.
    """

    def __init__(
        self,
        vms: Sequence[Mapping[str, Any]],
        *,
        https: bool = False,
        address: str = "127.0.0.2",
        hosts: int = 1,
        host_memory_mb: int | None = None,
        host_figures: Sequence[Mapping[str, Any]] | None = None,
        page_size: int | None = None,
        task_delay: float = 0.0,
        inventory: Mapping[str, int] | None = None,
        username: str = "hvballoon",
        password: str | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        if not vms:
            raise ValueError("VcsimServer needs at least one VM")
        self.vms = [dict(vm) for vm in vms]
        self.https = https
        self.address = address
        self.hosts = hosts
        self.host_memory_mb = host_memory_mb
        self.host_figures = [dict(h) for h in host_figures or ()]
        self.page_size = page_size
        self.task_delay = task_delay
        self.inventory = dict(inventory) if inventory is not None else None
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.startup_timeout = startup_timeout

        self.url = ""
        self.host = address
        self.port = 0
        self.ca_file: Path | None = None
        #: seconds from starting the process to its ready line, and the part spent building
        #: the inventory inside the simulator (as it reports it)
        self.start_seconds = 0.0
        self.setup_seconds = 0.0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_path: Path | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> VcsimServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        note_started("vSphere simulator")
        binary = build_vcsim()
        self._dir = Path(tempfile.mkdtemp(prefix="hvballoon-vcsim-"))
        try:
            self._start(binary, self._dir)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: Path, workdir: Path) -> None:
        config = workdir / "figures.json"
        figures: dict[str, Any] = {"hosts": self.hosts, "vms": self.vms}
        if self.host_memory_mb is not None:
            figures["hostMemoryMB"] = self.host_memory_mb
        if self.host_figures:
            figures["hostFigures"] = self.host_figures
        if self.inventory is not None:
            figures["inventory"] = self.inventory
        config.write_text(json.dumps(figures))
        args = [
            str(binary),
            "-config", str(config),
            "-listen", f"{self.address}:0",
            "-username", self.username,
            "-password", self.password,
            "-exit-on-stdin-eof",
        ]  # fmt: skip
        if self.page_size:
            args += ["-page-size", str(self.page_size)]
        if self.task_delay:
            args += ["-task-delay", f"{int(self.task_delay * 1000)}ms"]
        if self.https:
            cert, key = generate_cert(workdir, self.address)
            args += ["-cert", str(cert), "-key", str(key)]
            self.ca_file = cert
        # The simulator's datastores are temporary directories: keep them inside ours, so they
        # go away with it even if the simulator is killed.
        tmp = workdir / "tmp"
        tmp.mkdir()
        env = dict(os.environ, TMPDIR=str(tmp))
        self._stderr_path = workdir / "vcsim.log"
        began = time.monotonic()
        with self._stderr_path.open("wb") as stderr:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env
            )
        ready = self._read_ready_line(began + self.startup_timeout)
        self.start_seconds = time.monotonic() - began
        self.setup_seconds = float(ready.get("setup_seconds", 0.0))
        self.url = ready["url"]
        self.host = ready["host"]
        self.port = int(ready["port"])

    def _read_ready_line(self, deadline: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(
                        f"the simulator did not start within {self.startup_timeout:g} s{self._log_tail()}"
                    )
                if not sel.select(timeout=min(left, 0.5)):
                    if self._proc.poll() is not None:
                        break
                    continue
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
        line = buf.split(b"\n", 1)[0]
        if not line:
            self._proc.wait(timeout=5)
            raise RuntimeError(
                f"the simulator exited with status {self._proc.returncode} before it was ready"
                f"{self._log_tail()}"
            )
        return dict(json.loads(line))

    def _log_tail(self) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        text = self._stderr_path.read_text(errors="replace").strip()
        return f":\n{text[-4000:]}" if text else ""

    def log(self) -> str:
        """The simulator's stderr so far (for failure messages)."""
        return self._log_tail().lstrip(":\n")

    def stop(self) -> None:
        """Stop the simulator (closing its stdin; then SIGTERM; then SIGKILL) and clean up."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # the simulator exits at EOF on stdin
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- clients ----------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's certificate (https only)."""
        if self.ca_file is None:
            raise RuntimeError("this simulator serves plain http")
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx

    def _request(self, method: str, path: str) -> Any:
        conn: http.client.HTTPConnection
        if self.https:
            if self._ssl is None:
                self._ssl = self.ssl_context()
            conn = http.client.HTTPSConnection(self.host, self.port, context=self._ssl, timeout=30)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path)
            res = conn.getresponse()
            body = res.read()
        finally:
            conn.close()
        if res.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {res.status}: {body.decode(errors='replace')}")
        return json.loads(body)

    def counts(self) -> dict[str, int]:
        """SOAP requests received per method name since start or the last reset."""
        return {str(k): int(v) for k, v in self._request("GET", "/_counts").items()}

    def reset_counts(self) -> None:
        self._request("POST", "/_counts/reset")

    def expire_sessions(self) -> int:
        """Terminate every session issued so far; returns how many were still alive."""
        return int(self._request("POST", "/_expire_sessions")["expired"])

    def vm(self, name: str) -> dict[str, Any]:
        """A VM's current memory configuration, read inside the simulator (no SOAP, not counted).

        ``{"name", "moref", "powerState", "memoryMB",
        "memoryAllocation": {"reservation", "limit", "shares": {"level", "shares"}},
        "extraConfig": {key: value}}``;
        allocation fields the simulator holds as unset are ``None``.
        """
        from urllib.parse import quote

        return dict(self._request("GET", f"/_vm?name={quote(name)}"))
