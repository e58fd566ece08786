"""The fault matrix: every fault kind × every operation × every backend we can inject into.

Each cell opens a session, injects one fault, runs one operation through the public API and
records how it ended:

- ``ok``: success on the first call of the faulted backend method;
- ``retried``: success after the session's bounded retries;
- ``error``: a typed :class:`~hvballoon.errors.HVBalloonError` (its ``code`` is recorded);
- ``n/a``: the fault cannot be injected into that peer (the cell says why);
- and the three verdicts that fail the matrix: ``HANG`` (the cell outlived its wall-clock
  bound), ``NATIVE`` (an exception outside hvballoon's tree escaped) and ``UNTOLD`` (after a
  change, the hypervisor holds a state the caller was not told about: a mix of before and
  after, or the change applied behind a non-retryable error).

``attempts`` counts the calls of the faulted backend method (for ``wait_for_target``, the
polls). Regenerate the committed table with::

    python -m tests.hardening.matrix --write docs/reliability.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvballoon
from hvballoon.errors import HVBalloonError, VMNotFoundError
from hvballoon.fake.faults import FAULT_KINDS
from hvballoon.models import ConfigUpdate
from hvballoon.retry import RetryPolicy
from tests.support.policies import targets

GiB = 1024**3
MiB = 1024**2

KINDS: tuple[str, ...] = FAULT_KINDS
OPS: tuple[str, ...] = ("list", "bulk_stats", "vm_stats", "set_target", "set_config", "wait_for_target")
#: the backend method whose calls a cell counts as its attempts
METHOD = {
    "list": "list_vms",
    "bulk_stats": "get_stats",
    "vm_stats": "get_stats",
    "set_target": "apply_targets",
    "set_config": "apply_config",
    "wait_for_target": "get_stats",
}
FAILING = ("HANG", "NATIVE", "UNTOLD")
START, END = "<!-- fault-matrix:start -->", "<!-- fault-matrix:end -->"


@dataclass
class Cell:
    backend: str
    kind: str
    op: str
    outcome: str = "?"
    code: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.backend, self.kind, self.op)

    def invariant(self) -> tuple[str, str | None]:
        """What must not change from run to run (timings and attempt counts of real peers may)."""
        return (self.outcome, self.code)

    def text(self) -> str:
        if self.outcome == "n/a":
            return "n/a"
        what = self.code if self.outcome == "error" else self.outcome
        return f"{what} · {self.attempts} · {self.seconds:.2f}s"


@dataclass
class Plan:
    """What a cell does around the operation: inject before it, undo after it."""

    inject: Callable[[], None] = lambda: None
    undo: Callable[[], None] = lambda: None
    na: str = ""  # non-empty: the fault cannot be injected here, and why


@dataclass
class Probe:
    """One cell's operation on one session, and the state it may change (for UNTOLD)."""

    hv: Any
    vm: str
    target: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    wait_seconds: float = 5.0

    def count_calls(self, method: str) -> None:
        backend = self.hv.backend
        original = getattr(backend, method)

        def counted(*args: Any, **kw: Any) -> Any:
            self.calls += 1
            return original(*args, **kw)

        setattr(backend, method, counted)


def _pick_target(hv: Any, vm: Any) -> int:
    """A target the guard rails and the backend's live rules accept, different from the current
    one: the first candidate a dry run accepts (lower first, then higher)."""
    (st,) = hv.get_stats([vm])
    caps = hv.vm_capabilities(vm)
    floor = hv.guard_rails.floor(st.used_bytes or 0, st.configured_bytes)
    current = st.target_bytes if st.target_bytes is not None else st.current_bytes or floor
    step = max(caps.alignment_bytes, 512 * MiB)
    low = -(-(floor + 512 * MiB) // step) * step
    candidates = [low, low + step, current + 2 * step, current + step]
    for target in candidates:
        if target == current:
            continue
        try:
            if hv.set_target(vm, target, dry_run=True).changed:
                return target
        except HVBalloonError:
            continue
    return low  # nothing is acceptable: the operation itself will say why


def _config_change(hv: Any, vm: str) -> dict[str, Any]:
    """Two live-settable fields (where there are two), both different from now."""
    cfg = hv.get_config(vm)
    caps = hv.vm_capabilities(vm)
    out: dict[str, Any] = {}
    if "priority" in caps.set_live:
        out["priority"] = 77 if cfg.priority != 77 else 66
    if "buffer_percent" in caps.set_live:
        out["buffer_percent"] = 33 if cfg.buffer_percent != 33 else 44
    if "shares" in caps.set_live:
        out["shares"] = 4321 if cfg.shares != 4321 else 1234
    if "reservation_bytes" in caps.set_live:
        out["reservation"] = 1536 * MiB if cfg.reservation_bytes != 1536 * MiB else 1024 * MiB
    if "stats_period_seconds" in caps.set_live:
        out["stats_period"] = 7 if cfg.stats_period_seconds != 7 else 9
    return out


#: ``set_config`` keyword -> the MemoryConfig field it sets.
_CONFIG_FIELDS = {o.keyword: o.field for o in ConfigUpdate.options()}


def run_op(op: str, probe: Probe) -> None:
    hv, vm = probe.hv, probe.vm
    if op == "list":
        assert hv.list_vms()
    elif op == "bulk_stats":
        assert hv.get_stats()
    elif op == "vm_stats":
        hv.get_stats([vm])
    elif op == "set_target":
        hv.set_target(vm, probe.target)
    elif op == "set_config":
        hv.set_config(vm, **probe.config)
    elif op == "wait_for_target":
        hv.wait_for_target(
            vm, target=probe.target, timeout=probe.wait_seconds, poll_interval=probe.wait_seconds / 20
        )
    else:  # pragma: no cover
        raise ValueError(op)


def _state(hv: Any, vm: str, op: str, probe: Probe) -> Any:
    if op == "set_target":
        (st,) = hv.get_stats([vm])
        cfg = hv.get_config(vm)
        target = st.target_bytes
        if hasattr(hv.backend, "world"):  # the fake: its own (kvm shows one only to the session that set it)
            target = targets(hv)[st.vm.name]
        # the limit (ESXi) or the maximum/startup (Hyper-V) is where a target lands there
        return (target, cfg.limit_bytes, cfg.maximum_bytes, cfg.startup_bytes)
    cfg = hv.get_config(vm)
    return {k: getattr(cfg, _CONFIG_FIELDS[k]) for k in probe.config}


def run_cell(
    backend: str,
    kind: str,
    op: str,
    *,
    session: Callable[[], Any],
    plan: Callable[[str, str, Probe], Plan],
    vm: str,
    bound: float,
    verify: Callable[[], Any | None] | None = None,
    wait_seconds: float = 5.0,
) -> Cell:
    """One cell. ``session()`` opens a session; ``plan`` says how to inject ``kind`` before ``op``;
    ``verify()`` opens a fault-free session to read the state after a change."""
    cell = Cell(backend, kind, op)
    result: dict[str, Any] = {}

    def body() -> None:
        hv = session()
        try:
            probe = Probe(hv, vm)
            probe.wait_seconds = wait_seconds
            if op == "set_target":
                probe.target = _pick_target(hv, vm)
            elif op == "set_config":
                probe.config = _config_change(hv, vm)
            elif op == "wait_for_target":
                # a change to wait for, made before the fault (if the VM accepts one)
                probe.target = _pick_target(hv, vm)
                with contextlib.suppress(HVBalloonError):
                    hv.set_target(vm, probe.target)
            before = _state(hv, vm, op, probe) if op in ("set_target", "set_config") else None
            p = plan(kind, op, probe)
            if p.na:
                result["na"] = p.na
                return
            probe.count_calls(METHOD[op])
            started = time.monotonic()
            try:
                p.inject()
                run_op(op, probe)
            except HVBalloonError as exc:
                result["error"] = exc
            except Exception as exc:
                result["native"] = exc
            finally:
                result["seconds"] = time.monotonic() - started
                result["calls"] = probe.calls
                with contextlib.suppress(Exception):
                    p.undo()
            if before is not None:
                result["check"] = (before, probe)
        finally:
            with contextlib.suppress(Exception):
                hv.close()
        after_hv = verify() if "check" in result and verify is not None else None
        if after_hv is not None:
            try:
                result["after"] = _state(after_hv, vm, op, result["check"][1])
            except VMNotFoundError:
                pass  # the VM is gone: nothing of it can be half-applied
            finally:
                after_hv.close()

    def guarded() -> None:
        try:
            body()
        except HVBalloonError as exc:  # in set-up: still typed, but say so
            result["setup_error"] = exc
        except BaseException as exc:
            result["setup_native"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=guarded, daemon=True, name=f"cell-{backend}-{kind}-{op}")
    thread.start()
    thread.join(bound)
    if thread.is_alive():
        cell.outcome, cell.seconds = "HANG", time.monotonic() - started
        cell.note = f"still running after {bound:g} s"
        return cell
    if "setup_native" in result or "setup_error" in result:
        exc = result.get("setup_native") or result["setup_error"]
        cell.outcome = "NATIVE" if "setup_native" in result else "error"
        cell.code = getattr(exc, "code", None)
        cell.note = f"in set-up or check: {type(exc).__name__}: {exc}"
        return cell
    if "na" in result:
        cell.outcome, cell.note = "n/a", result["na"]
        return cell
    cell.seconds = result["seconds"]
    cell.attempts = result["calls"]
    if "native" in result:
        exc = result["native"]
        cell.outcome, cell.note = "NATIVE", f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    elif "error" in result:
        cell.outcome, cell.code = "error", result["error"].code
    else:
        cell.outcome = "retried" if cell.attempts > 1 and op != "wait_for_target" else "ok"
    if "check" in result and "after" in result:
        before, probe = result["check"]
        after = result["after"]
        _judge_change(cell, op, before, after, probe, result.get("error"))
    return cell


def _judge_change(cell: Cell, op: str, before: Any, after: Any, probe: Probe, error: Any) -> None:
    if op == "set_config":
        wanted = {k: (v // 1 if isinstance(v, int) else v) for k, v in probe.config.items()}
        applied = {k for k in wanted if after[k] == wanted[k] and after[k] != before[k]}
        if error is None:
            if applied != {k for k in wanted if before[k] != wanted[k]}:
                cell.outcome, cell.note = "UNTOLD", f"success reported but only {sorted(applied)} applied"
        elif applied and applied != set(wanted):
            if error.code != "partial_change":
                cell.outcome, cell.note = "UNTOLD", f"{sorted(applied)} applied behind {error.code}"
        elif applied and not error.retryable:
            cell.outcome, cell.note = "UNTOLD", f"applied behind a non-retryable {error.code}"
        elif applied:
            cell.note = "applied although the call failed (retryable: a retry is idempotent)"
        return
    changed = after != before
    if error is None and not changed:
        cell.outcome, cell.note = "UNTOLD", "success reported but nothing changed"
    elif error is not None and changed:
        if not error.retryable:
            cell.outcome, cell.note = "UNTOLD", f"applied behind a non-retryable {error.code}"
        else:
            cell.note = "applied although the call failed (retryable: a retry is idempotent)"


# -- the fake, in its three flavours ----------------------------------------------------------

FAKE_OP = {
    "list": "list_vms",
    "bulk_stats": "get_stats",
    "vm_stats": "get_stats",
    "set_target": "set_target",
    "set_config": "set_config",
    "wait_for_target": "get_stats",
}
FAKE_TIMEOUT = 10.0


def fake_cells(flavor: str) -> Iterator[Cell]:
    from hvballoon.fake.scenario import load_scenario
    from hvballoon.fake.world import World

    # a static Hyper-V VM: web01 uses Dynamic Memory at its maximum, so no live target can move it
    vm = "db01" if flavor == "hyperv" else "web01"
    for kind in KINDS:
        for op in OPS:
            world = World(load_scenario("seed"), flavor=flavor)

            def session(world: World = world) -> Any:
                return hvballoon.connect(
                    f"fake://seed?flavor={flavor}",
                    world=world,
                    timeout=FAKE_TIMEOUT,
                    retry=RetryPolicy(max_attempts=3, sleep=lambda _s: None, seed=1),
                )

            def plan(kind: str, op: str, probe: Probe, world: World = world) -> Plan:
                if kind == "stats_stale":
                    # the drivers stop reporting, and five minutes pass: the figures are old
                    def stale() -> None:
                        world.freeze_reports(None, 3600.0)
                        world.advance(300.0)

                    return Plan(inject=stale)
                rule: dict[str, Any] = {"op": FAKE_OP[op], "kind": kind}
                if op != "list" and op != "bulk_stats":
                    rule["vm"] = vm
                if kind == "slow":
                    rule["latency"] = FAKE_TIMEOUT / 2
                if kind == "timeout":
                    rule["kind"] = "slow"  # a call that does not answer within the timeout
                    rule["latency"] = FAKE_TIMEOUT * 3
                return Plan(inject=lambda: world.faults.add(**rule), undo=world.faults.clear)

            yield run_cell(
                f"fake/{flavor}",
                kind,
                op,
                session=session,
                plan=plan,
                vm=vm,
                bound=20.0,
                verify=session,
                wait_seconds=300.0,  # virtual seconds: the fake's clock only moves when asked
            )


# -- ESXi: the vSphere simulator ---------------------------------------------------------------

ESXI_TIMEOUT = 1.0


def esxi_cells() -> Iterator[Cell]:
    from tests.support.vsphere.fleet import FLEET
    from tests.support.vsphere.harness import VcsimServer

    retry = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1, seed=1)
    vm = "web01"
    shared = VcsimServer(FLEET, https=True)
    shared.start()
    try:
        for kind in KINDS:
            for op in OPS:
                own = kind in ("connection_lost", "vm_vanished")
                peer = VcsimServer(FLEET, https=True) if own else shared
                if own:
                    peer.start()
                try:
                    yield _esxi_cell(peer, kind, op, vm, retry)
                finally:
                    if own:
                        peer.stop()
    finally:
        shared.stop()


def _esxi_cell(peer: Any, kind: str, op: str, vm: str, retry: RetryPolicy) -> Cell:
    def session() -> Any:
        return hvballoon.connect(
            f"esxi://{peer.username}@{peer.host}:{peer.port}",
            password=peer.password,
            ca_file=str(peer.ca_file),
            timeout=ESXI_TIMEOUT,
            retry=retry,
        )

    def verify() -> Any:
        return session() if peer._proc is not None else None  # a stopped peer cannot be read

    pid = peer._proc.pid

    def stop_peer() -> None:
        peer.stop()

    def freeze(seconds: float | None) -> Callable[[], None]:
        def inject() -> None:
            os.kill(pid, signal.SIGSTOP)
            _wait_stopped(pid)  # kill() returns before a thread running on another CPU stops
            if seconds is not None:
                threading.Timer(seconds, lambda: os.kill(pid, signal.SIGCONT)).start()

        return inject

    def plan(kind: str, op: str, probe: Probe) -> Plan:
        if kind == "connection_lost":
            return Plan(inject=stop_peer)
        if kind == "timeout":
            return Plan(inject=freeze(None), undo=lambda: os.kill(pid, signal.SIGCONT))
        if kind == "slow":
            return Plan(inject=freeze(ESXI_TIMEOUT / 4))
        if kind == "session_expired":
            return Plan(inject=peer.expire_sessions)
        if kind == "vm_vanished":
            if op in ("list", "bulk_stats"):
                return Plan(inject=lambda: _esxi_destroy(peer, "web02"))
            probe.vm = probe.hv.resolve(vm)  # resolved before it goes, as a caller holding a VM
            return Plan(inject=lambda: _esxi_destroy(peer, vm))
        if kind == "permission_denied":
            return Plan(na="the simulator grants every privilege to its one user")
        if kind == "stats_stale":
            return Plan(na="quickStats carry no timestamp: staleness is not observable")
        if kind == "no_balloon_driver":
            return Plan()  # the cell runs on notools01, a VM without VMware Tools (see below)
        return Plan(na="unknown kind")

    if kind == "no_balloon_driver":
        vm = "notools01"
    return run_cell("esxi (vcsim)", kind, op, session=session, plan=plan, vm=vm, bound=30.0, verify=verify)


def _wait_stopped(pid: int, timeout: float = 2.0) -> None:
    """Until every thread of ``pid`` is in the stopped state (``T`` in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                states.append(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.001)


def _esxi_destroy(peer: Any, name: str) -> None:
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim

    si = SmartConnect(
        host=peer.host, port=peer.port, user=peer.username, pwd=peer.password, sslContext=peer.ssl_context()
    )
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        for obj in view.view:
            if obj.name == name:
                if obj.runtime.powerState == "poweredOn":
                    obj.PowerOffVM_Task()
                obj.Destroy_Task()
    finally:
        Disconnect(si)


# -- Hyper-V: the loopback WinRM server with a fake Hyper-V host --------------------------------

HYPERV_TIMEOUT = 1.0


def hyperv_cells() -> Iterator[Cell]:
    from tests.support.hyperv.fakehost import hyperv_world
    from tests.support.hyperv.peer import start_peer

    for kind in KINDS:
        # one server per fault kind (a fresh world per cell); a stopped one cannot be reused
        gen = None
        for op in OPS:
            if gen is None:
                gen = start_peer("basic", False)
                peer = next(gen)
            peer.host.world = hyperv_world()
            try:
                yield _hyperv_cell(peer, kind, op)
            finally:
                if kind == "connection_lost":
                    with contextlib.suppress(StopIteration, Exception):
                        next(gen)
                    gen = None
        if gen is not None:
            with contextlib.suppress(StopIteration, Exception):
                next(gen)


class _SlowHost:
    """Wraps the fake host's handler: the next answers are delayed by ``delay`` seconds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.delay = 0.0

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if self.delay:
            time.sleep(self.delay)
        return self.inner(*args, **kw)


def _hyperv_cell(peer: Any, kind: str, op: str) -> Cell:
    from hvballoon.backends.hyperv._errors import ACCESS_DENIED
    from tests.support.winrm.server import OPERATION_TIMEOUT

    vm = "db01"  # static memory: its target is a runtime resize, observable while it moves
    server, world = peer.server, peer.host.world
    running = server._running()
    slow = _SlowHost(peer.host)
    running.handler = slow

    def clear_faults() -> None:
        with running.lock:
            running.scripted_faults.clear()

    def session() -> Any:
        return peer.connect(
            timeout=HYPERV_TIMEOUT,
            retry=RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.1, seed=1),
        )

    def verify() -> Any:
        return peer.connect(timeout=HYPERV_TIMEOUT) if server._server is not None else None

    def vanish(name: str) -> None:
        world.vanish(world.guest(name).id)

    def plan(kind: str, op: str, probe: Probe) -> Plan:
        if kind == "connection_lost":
            return Plan(inject=server.stop)
        if kind == "timeout":
            return Plan(
                inject=lambda: server.fail_next("Receive", OPERATION_TIMEOUT, times=100_000),
                undo=clear_faults,
            )
        if kind == "slow":

            def go() -> None:
                slow.delay = HYPERV_TIMEOUT / 4

            return Plan(inject=go)
        if kind == "session_expired":
            return Plan(inject=server.expire_shells)
        if kind == "permission_denied":
            return Plan(
                inject=lambda: server.fail_next("Command", ACCESS_DENIED, reason="Access is denied."),
                undo=clear_faults,
            )
        if kind == "vm_vanished":
            if op in ("list", "bulk_stats"):
                return Plan(inject=lambda: vanish("web02"))
            probe.vm = probe.hv.resolve(vm)
            return Plan(inject=lambda: vanish(vm))
        if kind == "stats_stale":
            return Plan(inject=lambda: world.freeze_reports(None, 600.0))
        if kind == "no_balloon_driver":

            def no_driver() -> None:
                world.stop_balloon_driver(world.guest(vm).id)

            return Plan(inject=no_driver)
        return Plan(na="unknown kind")

    return run_cell("hyperv (WinRM)", kind, op, session=session, plan=plan, vm=vm, bound=30.0, verify=verify)


# -- KVM: libvirt's test:/// driver ------------------------------------------------------------

KVM_TIMEOUT = 5.0


def kvm_cells() -> Iterator[Cell]:
    """The KVM backend on libvirt's in-process test driver, over a node file (every connection
    gets its own copy of its domains, so no second session can read a change back: the
    after-state check does not apply here)."""
    import tempfile

    from tests.support.libvirt_xml import domain_xml, write_node_xml

    with tempfile.TemporaryDirectory(prefix="hvballoon-matrix-") as tmp:
        uri = write_node_xml(
            Path(tmp) / "node.xml",
            [
                domain_xml("web01", current_mib=3072),
                domain_xml("web02", memory_mib=8192, current_mib=8192, period=5),
                domain_xml("plain01", memory_mib=1024, balloon="none"),
            ],
        )
        for kind in KINDS:
            for op in OPS:
                yield _kvm_cell(uri, kind, op)


def _kvm_cell(uri: str, kind: str, op: str) -> Cell:
    vm = "plain01" if kind == "no_balloon_driver" else "web01"

    def session() -> Any:
        return hvballoon.connect(
            uri,
            timeout=KVM_TIMEOUT,
            retry=RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.02, seed=1),
            read_only=kind == "permission_denied",
        )

    def plan(kind: str, op: str, probe: Probe) -> Plan:
        hv = probe.hv
        if kind == "connection_lost":
            return Plan(inject=lambda: hv.native.close())  # as when libvirtd restarts
        if kind in ("permission_denied", "no_balloon_driver"):
            return Plan()  # a read-only session (VIR_CONNECT_RO) / a domain without a balloon
        if kind == "vm_vanished":
            name = "web02" if op in ("list", "bulk_stats") else vm
            if op not in ("list", "bulk_stats"):
                probe.vm = hv.resolve(vm)

            def undefine() -> None:
                dom = hv.native.lookupByName(name)
                dom.destroy()
                dom.undefine()

            return Plan(inject=undefine)
        why = {
            "timeout": "the test driver runs in-process: a call cannot be held up",
            "slow": "the test driver runs in-process: a call cannot be held up",
            "session_expired": "libvirt connections do not expire (a dead one is connection_lost)",
            "stats_stale": "the test driver reports fresh synthetic stats",
        }
        return Plan(na=why.get(kind, "unknown kind"))

    return run_cell(
        "kvm (libvirt test:///)", kind, op, session=session, plan=plan, vm=vm, bound=30.0, wait_seconds=1.0
    )


# -- the table ---------------------------------------------------------------------------------

BACKENDS: dict[str, Callable[[], Iterator[Cell]]] = {
    "fake/kvm": lambda: fake_cells("kvm"),
    "fake/esxi": lambda: fake_cells("esxi"),
    "fake/hyperv": lambda: fake_cells("hyperv"),
    "kvm (libvirt test:///)": kvm_cells,
    "esxi (vcsim)": esxi_cells,
    "hyperv (WinRM)": hyperv_cells,
}


def run(backends: list[str] | None = None) -> list[Cell]:
    out: list[Cell] = []
    for name, cells in BACKENDS.items():
        if backends is None or name in backends:
            out.extend(cells())
    return out


def render(cells: list[Cell]) -> str:
    lines = [START, ""]
    by_backend: dict[str, list[Cell]] = {}
    for c in cells:
        by_backend.setdefault(c.backend, []).append(c)
    total = {k: 0 for k in ("ok", "retried", "error", "n/a", *FAILING)}
    for c in cells:
        total[c.outcome] = total.get(c.outcome, 0) + 1
    lines.append(
        f"{len(cells)} cells: {total['ok']} ok, {total['retried']} ok after retries, "
        f"{total['error']} typed errors, {total['n/a']} not injectable; "
        f"{total['HANG']} hangs, {total['NATIVE']} native exceptions, {total['UNTOLD']} untold changes."
    )
    lines.append("")
    for backend, group in by_backend.items():
        lines += [f"### {backend}", "", "| fault | " + " | ".join(OPS) + " |", "|---" * (len(OPS) + 1) + "|"]
        grid = {(c.kind, c.op): c for c in group}
        for kind in KINDS:
            row = [grid[(kind, op)].text() if (kind, op) in grid else "" for op in OPS]
            lines.append(f"| {kind} | " + " | ".join(row) + " |")
        notes = [c for c in group if c.note]
        if notes:
            lines.append("")
            for c in notes:
                lines.append(f"- {c.kind} × {c.op}: {c.note}")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def parse(text: str) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    """The invariant part (outcome, code) of every cell in a rendered table."""
    body = text.split(START, 1)[1].split(END, 1)[0]
    out: dict[tuple[str, str, str], tuple[str, str | None]] = {}
    backend = ""
    for line in body.splitlines():
        if line.startswith("### "):
            backend = line[4:].strip()
        elif line.startswith("| ") and not line.startswith("| fault"):
            parts = [p.strip() for p in line.strip("|").split("|")]
            kind, values = parts[0], parts[1:]
            for op, value in zip(OPS, values, strict=False):
                if not value:
                    continue
                if value == "n/a":
                    out[(backend, kind, op)] = ("n/a", None)
                    continue
                what = value.split(" · ")[0]
                if what in ("ok", "retried", *FAILING):
                    out[(backend, kind, op)] = (what, None)
                else:
                    out[(backend, kind, op)] = ("error", what)
    return out


def write(path: Path, cells: list[Cell]) -> None:
    text = path.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + render(cells) + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, help="replace the table in this markdown file")
    parser.add_argument("--backend", action="append", help="only these backends (repeatable)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # e.g. "Basic over plain HTTP": expected on the test peers
    cells = run(args.backend)
    if args.write:
        write(args.write, cells)
    else:
        print(render(cells))


if __name__ == "__main__":
    main()
