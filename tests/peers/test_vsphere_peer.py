"""The vSphere simulator peer, proven with raw pyvmomi (no hvballoon code).

These tests pin down what the ESXi backend's tests rely on: TLS with verification on, bulk
reads through one RetrievePropertiesEx over a ContainerView, paging with
ContinueRetrievePropertiesEx, memoryAllocation changes through ReconfigVM_Task, request
counts, and session expiry.
"""

from __future__ import annotations

import math
import os
import shutil
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.require import require
from tests.support.vsphere.harness import VcsimServer, generate_cert, prerequisites

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    reasons = prerequisites()
    require(not reasons, "; ".join(reasons))


#: Sessions opened by :func:`_connect` in the current test, logged out and closed after it.
_OPENED: list[Any] = []


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    """Log out of every session a test opened and close its connections (pyvmomi keeps them
    pooled until the garbage collector warns about them)."""
    yield
    from pyVim.connect import Disconnect

    while _OPENED:
        si = _OPENED.pop()
        try:
            Disconnect(si)
        except Exception:  # the simulator may be gone already: closing the sockets is enough
            pass
        finally:
            si._stub.DropConnections()


def _vm(name: str, **extra: Any) -> dict[str, Any]:
    vm: dict[str, Any] = {
        "name": name,
        "powerState": "poweredOn",
        "memoryMB": 16384,
        "memoryAllocation": {
            "reservation": 2048,
            "limit": -1,
            "shares": {"level": "normal", "shares": 163840},
        },
        "quickStats": {
            "guestMemoryUsage": 4096,
            "hostMemoryUsage": 8300,
            "balloonedMemory": 512,
            "swappedMemory": 0,  # comes back as None
            "compressedMemory": 2048,  # KB
            "sharedMemory": 100,
            "privateMemory": 8000,
            "consumedOverheadMemory": 90,
        },
    }
    vm.update(extra)
    return vm


VMS = [
    _vm("web01"),
    _vm(
        "web02",
        quickStats={"guestMemoryUsage": 1000, "hostMemoryUsage": 2000, "balloonedMemory": 0},
    ),
    _vm(
        "db01",
        memoryMB=32768,
        memoryAllocation={
            "reservation": 0,
            "limit": 24576,
            "shares": {"level": "custom", "shares": 5000},
        },
    ),
    _vm("idle01", powerState="poweredOff", quickStats={}),
    _vm("app01"),
    _vm("app02"),
    _vm(
        "app03",
        memoryMB=4096,
        memoryHotAddEnabled=True,
        hotPlugMemoryLimit=16384,
        hotPlugMemoryIncrementSize=128,
    ),
]

QUICKSTATS_MB = [
    "guestMemoryUsage",
    "hostMemoryUsage",
    "balloonedMemory",
    "swappedMemory",
    "compressedMemory",
    "sharedMemory",
    "privateMemory",
    "consumedOverheadMemory",
]


@pytest.fixture(scope="module")
def http_peer() -> Iterator[VcsimServer]:
    with VcsimServer(VMS, hosts=2) as peer:
        yield peer


@pytest.fixture(scope="module")
def https_peer() -> Iterator[VcsimServer]:
    with VcsimServer(VMS, https=True) as peer:
        yield peer


def _connect(peer: VcsimServer) -> Any:
    from pyVim.connect import SmartConnect

    if peer.https:
        si = SmartConnect(
            host=peer.host,
            port=peer.port,
            user=peer.username,
            pwd=peer.password,
            sslContext=peer.ssl_context(),
        )
    else:
        si = SmartConnect(
            host=peer.host, port=peer.port, user=peer.username, pwd=peer.password, protocol="http"
        )
    _OPENED.append(si)
    return si


class Sweep:
    """One RetrievePropertiesEx over a ContainerView of every VirtualMachine (+ Continue…)."""

    def __init__(self, si: Any) -> None:
        from pyVmomi import vim

        self.content = si.RetrieveContent()
        self.pc = self.content.propertyCollector
        self.view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [vim.VirtualMachine], True
        )

    def spec(self, paths: list[str]) -> Any:
        from pyVmomi import vim, vmodl

        pcq = vmodl.query.PropertyCollector
        traverse = pcq.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        return pcq.FilterSpec(
            objectSet=[pcq.ObjectSpec(obj=self.view, skip=True, selectSet=[traverse])],
            propSet=[pcq.PropertySpec(type=vim.VirtualMachine, pathSet=paths)],
        )

    def pages(self, paths: list[str], max_objects: int | None = None) -> list[Any]:
        from pyVmomi import vmodl

        options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=max_objects)
        result = self.pc.RetrievePropertiesEx([self.spec(paths)], options)
        pages = [result]
        while result is not None and result.token:
            result = self.pc.ContinueRetrievePropertiesEx(result.token)
            pages.append(result)
        return pages

    def rows(self, paths: list[str], max_objects: int | None = None) -> dict[str, dict[str, Any]]:
        rows = {}
        for page in self.pages(paths, max_objects):
            for obj in page.objects if page is not None else []:
                props = {p.name: p.val for p in obj.propSet}
                rows[props["name"]] = props
        return rows


PATHS = [
    "name",
    "runtime.powerState",
    "summary.runtime.powerState",
    "config.hardware.memoryMB",
    "summary.config.memorySizeMB",
    "config.memoryAllocation",
    "summary.quickStats",
]


# -- connecting -------------------------------------------------------------------------------


def test_http_login(http_peer: VcsimServer) -> None:
    si = _connect(http_peer)
    assert si.content.about.apiType == "VirtualCenter"
    assert http_peer.url == f"http://{http_peer.host}:{http_peer.port}/sdk"
    assert http_peer.host == "127.0.0.2"


def test_wrong_password_is_invalid_login(http_peer: VcsimServer) -> None:
    from pyVmomi import SoapStubAdapter, vim

    # SmartConnect would do the same, but leave its connection open when the login fails
    stub = SoapStubAdapter(host=http_peer.host, port=-http_peer.port)  # a negative port: http
    try:
        content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
        with pytest.raises(vim.fault.InvalidLogin):
            content.sessionManager.Login(http_peer.username, "wrong", None)
    finally:
        stub.DropConnections()


def test_https_with_verification_on(https_peer: VcsimServer) -> None:
    ctx = https_peer.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    si = _connect(https_peer)
    assert si.content.about.apiType == "VirtualCenter"
    assert https_peer.url.startswith("https://127.0.0.2:")


def test_https_default_verification_rejects_the_unknown_certificate(https_peer: VcsimServer) -> None:
    from pyVim.connect import SmartConnect

    # 127.0.0.2 is not one of the names for which pyvmomi quietly turns verification off.
    with pytest.raises(ssl.SSLCertVerificationError):
        SmartConnect(host=https_peer.host, port=https_peer.port, user=https_peer.username,
                     pwd=https_peer.password)  # fmt: skip
    with pytest.raises(ssl.SSLCertVerificationError):
        SmartConnect(host=https_peer.host, port=https_peer.port, user=https_peer.username,
                     pwd=https_peer.password, sslContext=ssl.create_default_context())  # fmt: skip


@pytest.mark.parametrize("tool", ["cryptography", "openssl"])
def test_certificate_is_ecdsa_and_names_the_address(tool: str, tmp_path: Any) -> None:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.vsphere import harness

    if tool == "openssl":
        require(shutil.which("openssl") is not None, "the openssl command is not installed")
        cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
        harness._generate_cert_openssl(cert_path, key_path, "127.0.0.2")
    else:
        cert_path, key_path = generate_cert(tmp_path, "127.0.0.2")
        assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.2"]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    # the pair loads, and a client trusting the certificate accepts it for that address
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    ssl.create_default_context(cafile=str(cert_path))


# -- reading the figures ------------------------------------------------------------------------


def test_figures_come_back_in_one_round_trip(http_peer: VcsimServer) -> None:
    sweep = Sweep(_connect(http_peer))
    http_peer.reset_counts()
    rows = sweep.rows(PATHS)
    assert http_peer.counts() == {"RetrievePropertiesEx": 1}

    assert sorted(rows) == sorted(vm["name"] for vm in VMS)
    for vm in VMS:
        row = rows[vm["name"]]
        assert row["runtime.powerState"] == vm["powerState"]
        assert row["summary.runtime.powerState"] == vm["powerState"]
        assert row["config.hardware.memoryMB"] == vm["memoryMB"]
        assert row["summary.config.memorySizeMB"] == vm["memoryMB"]
        alloc = row["config.memoryAllocation"]
        want = vm["memoryAllocation"]
        assert (alloc.reservation, alloc.limit) == (want["reservation"], want["limit"])
        assert (alloc.shares.level, alloc.shares.shares) == (
            want["shares"]["level"],
            want["shares"]["shares"],
        )
        qs = row["summary.quickStats"]
        for field in QUICKSTATS_MB:
            value = vm["quickStats"].get(field)
            # The simulator never sends a zero (or unset) number: pyvmomi reads it as None.
            assert getattr(qs, field) == (value or None), (vm["name"], field)


def test_zero_allocation_fields_do_come_back(http_peer: VcsimServer) -> None:
    rows = Sweep(_connect(http_peer)).rows(["name", "config.memoryAllocation"])
    assert rows["db01"]["config.memoryAllocation"].reservation == 0


def test_paging_returns_every_vm_once(http_peer: VcsimServer) -> None:
    sweep = Sweep(_connect(http_peer))
    http_peer.reset_counts()
    pages = sweep.pages(["name"], max_objects=2)
    assert http_peer.counts() == {"RetrievePropertiesEx": 1, "ContinueRetrievePropertiesEx": 3}
    assert [len(p.objects) for p in pages] == [2, 2, 2, 1]
    assert [bool(p.token) for p in pages] == [True, True, True, False]
    names = [o.propSet[0].val for p in pages for o in p.objects]
    assert sorted(names) == sorted(vm["name"] for vm in VMS)


def test_a_page_as_large_as_the_result_has_no_token(http_peer: VcsimServer) -> None:
    pages = Sweep(_connect(http_peer)).pages(["name"], max_objects=len(VMS))
    assert len(pages) == 1
    assert not pages[0].token


def test_token_is_single_use_and_cancel_works(http_peer: VcsimServer) -> None:
    from pyVmomi import vmodl

    sweep = Sweep(_connect(http_peer))
    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=3)
    first = sweep.pc.RetrievePropertiesEx([sweep.spec(["name"])], options)
    second = sweep.pc.ContinueRetrievePropertiesEx(first.token)
    with pytest.raises(vmodl.fault.InvalidArgument):
        sweep.pc.ContinueRetrievePropertiesEx(first.token)
    sweep.pc.CancelRetrievePropertiesEx(second.token)
    with pytest.raises(vmodl.fault.InvalidArgument):
        sweep.pc.ContinueRetrievePropertiesEx(second.token)


def test_server_side_page_size_pages_even_without_max_objects() -> None:
    with VcsimServer(VMS, page_size=3) as peer:
        sweep = Sweep(_connect(peer))
        assert [len(p.objects) for p in sweep.pages(["name"])] == [3, 3, 1]
        # the smaller of the two limits wins
        assert [len(p.objects) for p in sweep.pages(["name"], max_objects=5)] == [3, 3, 1]
        assert [len(p.objects) for p in sweep.pages(["name"], max_objects=2)] == [2, 2, 2, 1]


def test_lazy_attribute_access_costs_a_round_trip_each(http_peer: VcsimServer) -> None:
    sweep = Sweep(_connect(http_peer))
    vms = list(sweep.view.view)
    http_peer.reset_counts()
    names = [vm.name for vm in vms]
    assert sorted(names) == sorted(vm["name"] for vm in VMS)
    assert http_peer.counts() == {"Fetch": len(VMS)}


# -- changing the allocation --------------------------------------------------------------------


def _vm_ref(sweep: Sweep, name: str) -> Any:
    return next(vm for vm in sweep.view.view if vm.name == name)


def _reconfigure(vm: Any, spec: Any) -> None:
    from pyVmomi import vim

    task = vm.ReconfigVM_Task(spec=spec)
    deadline = time.monotonic() + 30
    while task.info.state not in (vim.TaskInfo.State.success, vim.TaskInfo.State.error):
        assert time.monotonic() < deadline, "ReconfigVM_Task did not finish"
        time.sleep(0.05)
    assert task.info.state == vim.TaskInfo.State.success, task.info.error


def test_reconfigure_with_the_full_allocation_changes_only_the_limit(
    https_peer: VcsimServer,
) -> None:
    from pyVmomi import vim

    sweep = Sweep(_connect(https_peer))
    vm = _vm_ref(sweep, "app01")
    alloc = sweep.rows(["name", "config.memoryAllocation"])["app01"]["config.memoryAllocation"]
    alloc.limit = 6144
    https_peer.reset_counts()
    _reconfigure(vm, vim.vm.ConfigSpec(memoryAllocation=alloc))
    assert https_peer.counts()["ReconfigVM_Task"] == 1

    assert https_peer.vm("app01")["memoryAllocation"] == {
        "reservation": 2048,
        "limit": 6144,
        "shares": {"level": "normal", "shares": 163840},
    }
    after = sweep.rows(["name", "config.memoryAllocation"])["app01"]["config.memoryAllocation"]
    assert (after.reservation, after.limit, after.shares.level, after.shares.shares) == (
        2048,
        6144,
        "normal",
        163840,
    )
    # releasing the balloon target: back to unlimited
    alloc.limit = -1
    _reconfigure(vm, vim.vm.ConfigSpec(memoryAllocation=alloc))
    assert https_peer.vm("app01")["memoryAllocation"]["limit"] == -1


def test_reconfigure_with_only_a_limit_replaces_the_whole_allocation(
    https_peer: VcsimServer,
) -> None:
    """A simulator quirk (a real vCenter keeps the unset fields): send the full allocation."""
    from pyVmomi import vim

    sweep = Sweep(_connect(https_peer))
    _reconfigure(
        _vm_ref(sweep, "app02"),
        vim.vm.ConfigSpec(memoryAllocation=vim.ResourceAllocationInfo(limit=4096)),
    )
    assert https_peer.vm("app02")["memoryAllocation"] == {
        "reservation": None,
        "limit": 4096,
        "shares": None,
    }


def test_a_powered_on_vm_s_memory_changes_only_as_hot_add_allows(http_peer: VcsimServer) -> None:
    """govmomi's simulator takes any memoryMB in any power state; the harness holds a powered-on
    VM to vSphere's memory hot-add (only with it on, only growing, within the limit, by whole
    increments: MemoryHotPlugNotSupported otherwise), and nothing changes when it refuses."""
    from pyVmomi import vim

    si = _connect(http_peer)
    sweep = Sweep(si)
    rows = sweep.rows(["name", *(f"config.{p}" for p in _HOT_ADD_PATHS)])
    assert [rows["app03"][f"config.{p}"] for p in _HOT_ADD_PATHS] == [True, 16384, 128]
    assert not rows["web01"].get("config.hotPlugMemoryLimit")  # unset (the simulator sends 0)
    refused = [
        ("web01", 20480),  # hot-add off
        ("app03", 4096 - 128),  # memory is not hot-removed
        ("app03", 16384 + 128),  # above the limit
        ("app03", 4096 + 64),  # not a whole increment
    ]
    for name, size in refused:
        before = http_peer.vm(name)["memoryMB"]
        with pytest.raises(vim.fault.MemoryHotPlugNotSupported):
            _vm_ref(sweep, name).ReconfigVM_Task(spec=vim.vm.ConfigSpec(memoryMB=size))
        assert http_peer.vm(name)["memoryMB"] == before, (name, size)
    _reconfigure(_vm_ref(sweep, "app03"), vim.vm.ConfigSpec(memoryMB=4096 + 1024))
    assert http_peer.vm("app03")["memoryMB"] == 4096 + 1024
    _reconfigure(_vm_ref(sweep, "idle01"), vim.vm.ConfigSpec(memoryMB=8192))  # powered off: any size
    assert http_peer.vm("idle01")["memoryMB"] == 8192
    _reconfigure(_vm_ref(sweep, "idle01"), vim.vm.ConfigSpec(memoryMB=16384))  # as the other tests know it


_HOT_ADD_PATHS = ["memoryHotAddEnabled", "hotPlugMemoryLimit", "hotPlugMemoryIncrementSize"]


# -- sessions -----------------------------------------------------------------------------------


def test_session_expiry_then_login_again(http_peer: VcsimServer) -> None:
    from pyVmomi import vim

    si = _connect(http_peer)
    sweep = Sweep(si)
    assert len(sweep.rows(["name"])) == len(VMS)

    assert http_peer.expire_sessions() >= 1
    with pytest.raises(vim.fault.NotAuthenticated):
        sweep.rows(["name"])
    with pytest.raises(vim.fault.NotAuthenticated):
        sweep.content.viewManager.CreateContainerView(sweep.content.rootFolder, [vim.VirtualMachine], True)

    # The same stub logs in again (the new cookie replaces the dead one) and carries on; the
    # old session's view died with it.
    sweep.content.sessionManager.Login(http_peer.username, http_peer.password)
    assert len(Sweep(si).rows(["name"])) == len(VMS)


def test_a_bad_figure_fails_the_start_with_the_simulator_s_reason() -> None:
    # activeMemory (vSphere API 7.0.3) is not in this govmomi's VirtualMachineQuickStats.
    with pytest.raises(RuntimeError, match="activeMemory"):
        VcsimServer([_vm("bad01", quickStats={"activeMemory": 100})]).start()
    with pytest.raises(RuntimeError, match="unknown powerState"):
        VcsimServer([_vm("bad02", powerState="on")]).start()


def test_stop_ends_the_process_and_removes_its_files() -> None:
    peer = VcsimServer([_vm("only01")])
    with peer:
        assert peer._proc is not None and peer._dir is not None
        pid, workdir = peer._proc.pid, peer._dir
        assert peer.vm("only01")["memoryMB"] == 16384
    assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
    assert not workdir.exists()


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


# -- scale --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_thousand_vms_in_one_sweep() -> None:
    vms = [
        _vm(f"vm{i:04d}", quickStats={"guestMemoryUsage": 1000 + i, "balloonedMemory": i % 7})
        for i in range(1000)
    ]
    with VcsimServer(vms, hosts=4) as peer:
        sweep = Sweep(_connect(peer))
        peer.reset_counts()
        began = time.perf_counter()
        rows = sweep.rows(PATHS)
        one_call = time.perf_counter() - began
        assert peer.counts() == {"RetrievePropertiesEx": 1}
        assert len(rows) == 1000
        assert rows["vm0123"]["summary.quickStats"].guestMemoryUsage == 1123

        peer.reset_counts()
        began = time.perf_counter()
        paged = sweep.rows(PATHS, max_objects=100)
        paged_time = time.perf_counter() - began
        assert peer.counts() == {
            "RetrievePropertiesEx": 1,
            "ContinueRetrievePropertiesEx": math.ceil(1000 / 100) - 1,
        }
        assert paged.keys() == rows.keys()
        print(
            f"\n1000 VMs: start {peer.start_seconds:.2f}s (inventory {peer.setup_seconds:.2f}s), "
            f"one RetrievePropertiesEx {one_call:.2f}s, 10 pages {paged_time:.2f}s"
        )


# -- several hosts, each with its own memory figures -------------------------------------------


def test_hosts_serve_their_own_figures_and_vms_sit_where_placed() -> None:
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    figures = [
        {"memoryMB": 65536, "overallMemoryUsage": 30000},
        {"memoryMB": 131072, "overallMemoryUsage": 90000},
        {"memoryMB": 49152, "overallMemoryUsage": 0},
    ]
    vms = [_vm("a", host=0), _vm("b", host=1), _vm("c", host=1), _vm("d", host=2, powerState="poweredOff")]
    with VcsimServer(vms, hosts=3, host_figures=figures) as peer:
        si = _connect(peer)
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        hosts = sorted(view.view, key=lambda h: int(h._moId.split("-")[-1]))
        assert len(hosts) == 3
        for host, fig in zip(hosts, figures, strict=True):
            assert host.hardware.memorySize == fig["memoryMB"] << 20  # bytes on the wire
            assert host.summary.hardware.memorySize == fig["memoryMB"] << 20
            # a zero quickStat inside a whole object is omitted by the simulator (read as unset)
            assert (host.summary.quickStats.overallMemoryUsage or 0) == fig["overallMemoryUsage"]
        placed = {tuple(sorted(vm.name for vm in host.vm)) for host in hosts}
        assert placed == {("a",), ("b", "c"), ("d",)}
        vm_view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        where = {vm.name: vm.runtime.host._moId for vm in vm_view.view}
        assert where == {"a": hosts[0]._moId, "b": hosts[1]._moId, "c": hosts[1]._moId, "d": hosts[2]._moId}
        assert {vm.name: vm.summary.runtime.host._moId for vm in vm_view.view} == where
        Disconnect(si)
