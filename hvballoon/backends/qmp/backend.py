"""The QMP backend: hvballoon straight over QEMU's monitor sockets, no libvirt.

For hosts that drive QEMU themselves — Proxmox VE (``/var/run/qemu-server/<vmid>.qmp``),
hand-rolled QEMU, CI runners, appliances::

    import hvballoon

    with hvballoon.connect("qmp:///var/run/qemu-server") as hv:   # every *.qmp socket in it
        for st in hv.get_stats():
            print(st.vm.name, st.current_bytes, st.guest_used_bytes)
        hv.set_target("101", "6GiB")                            # QMP: balloon value=6442450944

What it does, call by call (see ``docs/backends/qmp.md`` for the user's view):

- **A sweep** (``list_vms``, ``get_stats``): every socket is read in its own short
  conversation — connect, greeting, ``qmp_capabilities``, the commands pipelined in one round
  trip, hang up — at most ``concurrency`` at a time, on a private event loop. QEMU serves one
  QMP client at a time, so no connection is kept open between calls.
- **Identity**: ``query-name`` (else the socket's file name: a Proxmox vmid) and ``query-uuid``
  (else, for a QEMU started without ``-uuid``, the socket's path). The QEMU process's pid, read
  from the socket itself (``SO_PEERCRED``), tells one run of a VM from the next.
- **Stats**: ``query-status``, ``query-memory-size-summary``, ``query-balloon`` and, on the
  balloon device found once per run in QEMU's object tree (``qom-list`` of
  ``/machine/peripheral`` and ``/machine/peripheral-anon``: Proxmox's ``balloon0`` or any other
  id, or none), ``qom-get`` of ``guest-stats-polling-interval`` and ``guest-stats``.
- **The stats period**: off, the guest's report is frozen at boot. The first time this backend
  sees a run of a VM with the period off it sets it (``qom-set``, option ``stats_period``,
  default 10 s) and from then on trusts only reports newer than the one QEMU held then.
- **Targets**: ``balloon`` (bytes). QEMU answers at once; ``wait_for_target`` watches
  ``query-balloon``'s ``actual`` arrive or stall.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from qemu.qmp import ExecuteError

from hvballoon.backend import Backend, ConnectOptions, TargetRequest
from hvballoon.errors import (
    HVBalloonError,
    HVConnectionError,
    InvalidURIError,
    OperationTimeoutError,
    PermissionDeniedError,
    UnsupportedOperationError,
    VMNotFoundError,
)
from hvballoon.hoststats import from_sweep
from hvballoon.kinds import KVM, Kind
from hvballoon.models import VM, Capabilities, ConfigUpdate, HostStats, MemoryConfig, MemoryStats
from hvballoon.units import format_size
from hvballoon.virtio_balloon import Freshness

from . import SPEC
from ._errors import BACKEND, ERRORS
from ._monitor import EventLoop, Monitor, converse, each_answer, side_by_side
from ._options import QMPOptions
from ._qom import (
    DEVICE_TREES,
    PERIOD,
    Command,
    balloon_properties,
    count_vfio,
    find_balloon,
    guest_answers,
    guest_queries,
)
from ._sockets import Run, list_sockets, run_of, socket_path
from ._stats import (
    Reading,
    balloon_model,
    checked_answer,
    config_from_reading,
    local_host_figures,
    resident_bytes,
    stats_from_reading,
    vm_from_reading,
)

__all__ = ["CAPABILITIES", "QMPBackend"]

log = logging.getLogger("hvballoon.qmp")

T = TypeVar("T")

#: What this backend can read and change: the KVM kind's (QEMU's virtio-balloon), as libvirt's.
CAPABILITIES = KVM.capabilities(
    backend=BACKEND,
    marks=False,  # QEMU's monitor has no place for an application's notes (libvirt's metadata)
    notes=(
        "QMP: a target is the balloon command (bytes), watched arriving through query-balloon",
        "guest figures need the balloon's stats period (set automatically when off; option stats_period)",
        "one short QMP conversation per VM and call (QEMU serves one monitor client at a time); a "
        "sweep reads the VMs of a directory side by side (option concurrency)",
        "maximum_bytes, deflate_on_oom and free_page_reporting are set on QEMU's command line: QMP "
        "cannot change them, even while the guest is off",
    ),
)

#: What the stats period is taken to be where a balloon reports none: the option's default.
_DEFAULT_STATS_PERIOD = QMPOptions().stats_period


@dataclass
class _Seen:
    """What this backend did to one run of a VM (keyed by VM id)."""

    run: Run
    armed_after: int | None = None  # the report time QEMU held when we switched the period on
    target_bytes: int | None = None  # the last target sent to this run
    balloon_model: str | None = None  # the run's balloon device as last read ("none": without)


class QMPBackend(Backend):
    """``qmp:///path/to/vm.qmp`` (one VM) or ``qmp:///path/to/dir`` (every ``*.qmp`` socket in it).

    Options (keywords of :func:`hvballoon.connect`):

    - ``read_only`` (False): never change anything — no targets, no stats period switched on
      (changes raise ``PermissionDeniedError`` before anything is sent).
    - ``stats_period`` (10): seconds; set on a VM's balloon when its period is off. 0: never.
    - ``concurrency`` (16): how many VMs a sweep talks to at once.

    ``timeout`` (of ``connect``) bounds every call: one VM's conversation, or a whole sweep.
    """

    name: ClassVar[str] = SPEC.name
    schemes: ClassVar[tuple[str, ...]] = SPEC.schemes
    options_model = QMPOptions
    options: QMPOptions
    #: Every target and configuration rule comes from the KVM kind (hvballoon.kinds.kvm).
    kind: Kind | None = KVM

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        self.read_only = self.options.read_only
        self.stats_period = self.options.stats_period
        self.concurrency = self.options.concurrency
        self.timeout = opts.timeout
        self.path = socket_path(opts)
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError as exc:
            raise HVConnectionError(
                f"no QEMU monitor socket or directory at {self.path} (is the VM running? on a Proxmox "
                "node the sockets are in /var/run/qemu-server)",
                backend=BACKEND,
                native_code="ENOENT",
                retryable=False,
            ) from exc
        except PermissionError as exc:
            raise PermissionDeniedError(
                f"not allowed to look at {self.path} (QEMU's sockets are usually root's: run as root)",
                backend=BACKEND,
                native_code="EACCES",
            ) from exc
        if stat.S_ISDIR(mode):
            self.directory: bool = True
        elif stat.S_ISSOCK(mode):
            self.directory = False
        else:
            raise InvalidURIError(f"{self.path} is neither a directory nor a UNIX socket", backend=BACKEND)
        self._host = socket.gethostname()
        self._loop = EventLoop()
        self._seen: dict[str, _Seen] = {}  # by VM id; touched only on the event loop's thread
        # per run of a VM (touched only on the event loop's thread, like _seen)
        self._balloons: dict[Run, tuple[str, str] | None] = {}  # the balloon's QOM path and type
        self._identities: dict[Run, tuple[str | None, str | None]] = {}  # -name and -uuid

    # -- plumbing --------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    @property
    def native(self) -> Any:
        """``None``: no connection outlives a call (QEMU serves one monitor client at a time)."""
        return None

    def close(self) -> None:
        self._loop.close()

    def sockets(self) -> list[str]:
        """The monitor sockets behind the URI, right now (a stopped VM's socket is gone)."""
        return list_sockets(self.path) if self.directory else [self.path]

    def _run(self, coro: Awaitable[T], what: str) -> T:
        async def wrapped() -> T:
            return await coro

        try:
            return self._loop.run(wrapped(), timeout=self.timeout + 1.0)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise OperationTimeoutError(
                f"{what}: no answer within {self.timeout:g} s", backend=BACKEND, retryable=True
            ) from exc

    # -- one conversation --------------------------------------------------------------------

    async def _converse(
        self, path: str, body: Callable[[Monitor], Awaitable[T]], what: str, *, label: str | None = None
    ) -> T:
        return await converse(path, body, what, timeout=self.timeout, label=label)

    async def _sweep(
        self, paths: Sequence[str], body: Callable[[Monitor], Awaitable[T]], what: str
    ) -> list[T | None]:
        """``body`` on every socket; ``None`` for a VM that stopped meanwhile.

        Afterwards what is kept per run is forgotten for the runs whose socket is gone.
        """
        jobs = [(p, body, Path(p).stem) for p in paths]
        out = await side_by_side(jobs, what, timeout=self.timeout, concurrency=self.concurrency, gone_ok=True)
        live = set()
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            live.add((st.st_ino, st.st_mtime_ns))
        for cache in (self._balloons, self._identities):
            for run in [r for r in cache if (r.inode, r.mtime_ns) not in live]:
                del cache[run]
        for vm_id in [k for k, v in self._seen.items() if (v.run.inode, v.run.mtime_ns) not in live]:
            del self._seen[vm_id]
        return out

    @staticmethod
    def _value(result: Any, what: str, label: str) -> Any:
        """One pipelined command's value; its error mapped (a broken connection re-raised as is)."""
        if isinstance(result, BaseException):
            if isinstance(result, ExecuteError):
                raise ERRORS.map(result, what, vm=label) from result
            raise result
        return checked_answer(what, result, vm=label)

    # -- reading -----------------------------------------------------------------------------

    async def _ask(
        self, mon: Monitor, run: Run, commands: list[Command]
    ) -> tuple[tuple[str | None, str | None], list[Any]]:
        """``commands`` pipelined, after the VM's name and UUID unless this run's are known.

        A run's identity cannot change while its QEMU lives, and the run is known from the
        socket alone (the pid read with ``SO_PEERCRED``, the socket file's inode and time).
        """
        label = Path(mon.path).stem
        identity = self._identities.get(run) if run.pid is not None else None
        if identity is not None:
            return identity, await mon.batch(commands)
        answers = await mon.batch([("query-name", None), ("query-uuid", None), *commands])
        name = self._value(answers[0], "query-name", label).get("name")
        uuid = self._value(answers[1], "query-uuid", label).get("UUID")
        if run.pid is not None:
            self._identities[run] = (name, uuid)
        return (name, uuid), answers[2:]

    async def _identify(self, mon: Monitor) -> Reading:
        """Name, id and run state only (what a listing needs)."""
        (name, uuid), (status,) = await self._ask(mon, run_of(mon.path, mon.pid), [("query-status", None)])
        return Reading(
            path=mon.path,
            pid=mon.pid,
            name=name,
            uuid=uuid,
            status=self._value(status, "query-status", Path(mon.path).stem).get("status"),
        )

    async def _read(self, mon: Monitor, *, arm: bool = True, devices: bool = False) -> tuple[Reading, _Seen]:
        """Everything the stats need, in one round trip once the run's balloon path is known;
        ``devices``: list QEMU's device trees in it all the same (the VFIO devices, which come
        and go with hot-plug, for a configuration)."""
        label = Path(mon.path).stem
        run = run_of(mon.path, mon.pid)
        known = run in self._balloons
        balloon = self._balloons.get(run)
        balloon_path, balloon_type = balloon if balloon is not None else (None, None)
        commands: list[Command] = [
            ("query-status", None),
            ("query-memory-size-summary", None),
            ("query-balloon", None),
        ]
        listed = not known or devices
        if listed:
            commands += [("qom-list", {"path": tree}) for tree in DEVICE_TREES]
        if known and balloon_path is not None:
            commands += guest_queries(balloon_path)
        (name, uuid), answers = await self._ask(mon, run, commands)
        listings = answers[3 : 3 + len(DEVICE_TREES)] if listed else []
        if listed:
            answers = answers[:3] + answers[3 + len(DEVICE_TREES) :]
        status = self._value(answers[0], "query-status", label)
        memory = self._value(answers[1], "query-memory-size-summary", label)
        has_balloon = True
        if isinstance(answers[2], ExecuteError) and answers[2].error_class == "DeviceNotActive":
            has_balloon, actual = False, None
        else:
            actual = self._value(answers[2], "query-balloon", label).get("actual")
        if not known:
            found = find_balloon(listings) if has_balloon else None
            self._balloons[run] = found
            balloon_path, balloon_type = found if found is not None else (None, None)
            tail: list[Any] = await mon.batch(guest_queries(balloon_path)) if balloon_path is not None else []
        else:
            tail = list(answers[3:])
        period, guest_stats = guest_answers(tail)
        if balloon_path is not None and period is None:
            self._balloons.pop(run, None)  # the device went away: look again next time
        reading = Reading(
            path=mon.path,
            pid=mon.pid,
            name=name,
            uuid=uuid,
            status=status.get("status"),
            base_memory=memory.get("base-memory"),
            plugged_memory=memory.get("plugged-memory"),
            actual=actual,
            has_balloon=has_balloon,
            balloon_path=balloon_path,
            balloon_type=balloon_type,
            period=period,
            guest_stats=guest_stats,
            rss_bytes=resident_bytes(mon.pid),
            vfio_devices=count_vfio(listings) if listed else None,
        )
        seen = self._seen.get(reading.vm_id)
        if seen is None or seen.run != run:
            seen = _Seen(run)
            if not arm:
                return reading, seen  # not a sighting: the next sweep arms it
            # a caller's own period on this run makes it seen already (apply_config)
            armed = KVM.stats_period_to_arm(
                period,
                has_balloon=balloon_path is not None,
                option=self.stats_period,
                read_only=self.read_only,
                chosen=False,
            )
            if armed is not None and balloon_path is not None:
                await self._set_period(mon, balloon_path, armed, label)
                last = (guest_stats or {}).get("last-update")
                seen.armed_after = last if isinstance(last, int) else 0
                reading = replace(reading, period=armed)
            self._seen[reading.vm_id] = seen
        seen.balloon_model = balloon_model(reading)
        return reading, seen

    async def _set_period(self, mon: Monitor, balloon_path: str, seconds: int, label: str) -> None:
        try:
            await mon.execute("qom-set", {"path": balloon_path, "property": PERIOD, "value": seconds})
        except ExecuteError as exc:
            raise ERRORS.map(exc, f"set the balloon's stats period to {seconds} s", vm=label) from exc

    def _stats(self, reading: Reading, seen: _Seen, now: float) -> MemoryStats:
        vm = vm_from_reading(reading, host=self._host)
        return stats_from_reading(
            vm,
            reading,
            target_bytes=seen.target_bytes,
            freshness=Freshness(period=reading.period, armed_after=seen.armed_after),
            default_period=self.stats_period or _DEFAULT_STATS_PERIOD,
            now=now,
        )

    def list_vms(self) -> list[VM]:
        readings = self._run(self._sweep(self.sockets(), self._identify, "identify the VM"), "list the VMs")
        return [vm_from_reading(r, host=self._host) for r in readings if r is not None]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        if vms is None:
            pairs = self._run(
                self._sweep(self.sockets(), self._read, "read the VM's memory"), "read the stats"
            )
        else:
            pairs = self._run(self._each_vm(vms, self._read, "read the VM's memory"), "read the stats")
        now = time.time()
        return [self._stats(reading, seen, now) for reading, seen in (p for p in pairs if p is not None)]

    async def _each_vm(
        self, vms: Sequence[VM], body: Callable[[Monitor], Awaitable[tuple[Reading, _Seen]]], what: str
    ) -> list[tuple[Reading, _Seen] | None]:
        """``body`` on each VM's own socket (checked to still be that VM), side by side."""

        def checked(vm: VM) -> Callable[[Monitor], Awaitable[tuple[Reading, _Seen]]]:
            async def run(mon: Monitor) -> tuple[Reading, _Seen]:
                pair = await body(mon)
                self._check_identity(vm, pair[0])
                return pair

            return run

        jobs = [(await self._path_of(vm), checked(vm), vm.name) for vm in vms]
        return await side_by_side(
            jobs, what, timeout=self.timeout, concurrency=self.concurrency, gone_ok=False
        )

    async def _path_of(self, vm: VM) -> str:
        """The socket of ``vm``: the one it was found on, else found again by its id."""
        path = vm.extra.get("socket")
        if isinstance(path, str):
            return path
        for reading in await self._sweep(self.sockets(), self._identify, "identify the VM"):
            if reading is not None and reading.vm_id == vm.id:
                return reading.path
        raise VMNotFoundError(
            f"no running VM with id {vm.id} behind {self.path}", backend=BACKEND, vm=vm.name
        )

    def get_host_stats(self, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
        """The node the sockets are on (QMP sockets are local): its ``/proc/meminfo`` and KSM's
        counter, plus the sums over the VM sweep. No QMP call beyond the sweep."""
        stats = vm_stats if vm_stats is not None else self.get_stats()
        return from_sweep(
            stats,
            backend=BACKEND,
            default_host=self._host,
            figures={self._host: local_host_figures()},
            collected_at=datetime.now(timezone.utc),
        )

    def vm_capabilities(self, vm: VM) -> Capabilities:
        """The kind's, less what a QEMU without a balloon device cannot change (the kind's
        ``withhold``): known from the last read of the VM's run, else read now."""
        seen = self._seen.get(vm.id)
        if seen is not None and seen.balloon_model is not None:
            config = MemoryConfig(
                vm=vm, mechanism=CAPABILITIES.mechanism, extra={"balloon_model": seen.balloon_model}
            )
        else:
            config = self.get_config(vm)
        return KVM.withhold(CAPABILITIES, config)

    def get_config(self, vm: VM) -> MemoryConfig:
        async def body(mon: Monitor) -> Reading:
            reading, _seen = await self._read(mon, arm=False, devices=True)
            self._check_identity(vm, reading)
            found = await balloon_properties(mon, reading.balloon_path)
            return replace(
                reading,
                deflate_on_oom=found["deflate-on-oom"],
                free_page_reporting=found["free-page-reporting"],
            )

        async def run() -> Reading:
            return await self._converse(
                await self._path_of(vm), body, "read the VM's memory settings", label=vm.name
            )

        reading = self._run(run(), "read the VM's memory settings")
        return config_from_reading(vm_from_reading(reading, host=self._host), reading)

    @staticmethod
    def _check_identity(vm: VM, reading: Reading) -> None:
        if reading.vm_id != vm.id:
            raise VMNotFoundError(
                f"{reading.path} now belongs to another VM ({reading.vm_id}): {vm.name!r} is not running",
                backend=BACKEND,
                vm=vm.name,
            )

    async def _verified(self, mon: Monitor, vm: VM) -> None:
        """Make sure the QEMU behind the socket is still ``vm`` before changing anything.

        A round trip of its own: the change must not travel in the same pipeline, or it would
        reach another VM that took the socket over before the check could stop it.
        """
        self._check_identity(vm, await self._identify(mon))

    # -- changing ------------------------------------------------------------------------------

    def _refuse_if_read_only(self, vm: VM) -> None:
        if self.read_only:
            raise PermissionDeniedError(
                f"this session is read-only (read_only=True): {vm.name!r} was not changed",
                backend=BACKEND,
                vm=vm.name,
            )

    def check_target(self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig) -> None:
        super().check_target(vm, target_bytes, stats, config)  # the KVM kind's rules
        self._refuse_if_read_only(vm)

    def plan_config(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> ConfigUpdate:
        plan = super().plan_config(vm, update, current)  # the KVM kind's rules
        fixed = sorted(set(plan.changed()) - {"stats_period_seconds"})
        if fixed:
            # the kind allows these on a VM whose guest is off, but QMP reaches only the running
            # QEMU: they are on its command line
            raise UnsupportedOperationError(
                f"QMP changes only the running QEMU: {', '.join(fixed)} of {vm.name!r} is set on QEMU's "
                "command line (-m, -device virtio-balloon-pci,deflate-on-oom=on; on Proxmox: qm set)",
                backend=BACKEND,
                vm=vm.name,
                details={"rule": "not_supported", "field": fixed[0]},
            )
        if plan.changed():
            self._refuse_if_read_only(vm)
        return plan

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        self._refuse_if_read_only(vm)
        what = f"set the balloon target to {format_size(target_bytes)}"

        async def run() -> None:
            await self._converse(
                await self._path_of(vm), self._balloon(vm, target_bytes), what, label=vm.name
            )

        self._run(run(), what)

    def apply_targets(self, targets: Sequence[TargetRequest]) -> list[HVBalloonError | None]:
        """Every move in its own conversation, side by side like a sweep (``concurrency`` at a
        time, within one deadline): one socket per VM is the protocol. Each VM's answer or error
        is its own; a VM not reached before the deadline gets a retryable timeout of its own.
        """
        if not targets:
            return []
        for t in targets:
            self._refuse_if_read_only(t.vm)

        async def moves() -> list[BaseException | None]:
            out: list[BaseException | None] = [None] * len(targets)
            jobs, where = [], []
            for i, t in enumerate(targets):
                try:
                    path = await self._path_of(t.vm)
                except HVBalloonError as exc:
                    out[i] = exc
                    continue
                jobs.append((path, self._balloon(t.vm, t.target_bytes), t.vm.name))
                where.append(i)
            answers = await each_answer(
                jobs,
                "set the balloon target",
                timeout=self.timeout,
                concurrency=self.concurrency,
                gone_ok=False,
            )
            for i, answer in zip(where, answers, strict=True):
                out[i] = answer if isinstance(answer, BaseException) else None
            return out

        results = self._run(moves(), f"set the balloon targets of {len(targets)} VMs")
        errors: list[HVBalloonError | None] = []
        for t, result in zip(targets, results, strict=True):
            if isinstance(result, HVBalloonError):
                errors.append(result.with_context(backend=self.name, vm=t.vm.name))
            elif result is not None:
                raise result
            else:
                errors.append(None)
        return errors

    def _balloon(self, vm: VM, target_bytes: int) -> Callable[[Monitor], Awaitable[None]]:
        """The conversation that moves ``vm``'s balloon, once it is checked to still be ``vm``."""
        what = f"set the balloon target to {format_size(target_bytes)}"

        async def body(mon: Monitor) -> None:
            await self._verified(mon, vm)
            try:
                await mon.execute("balloon", {"value": target_bytes})
            except ExecuteError as exc:
                raise ERRORS.map(exc, what, vm=vm.name) from exc
            run = run_of(mon.path, mon.pid)
            seen = self._seen.get(vm.id)
            if seen is None or seen.run != run:
                seen = self._seen[vm.id] = _Seen(run)
            seen.target_bytes = target_bytes

        return body

    def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        self._refuse_if_read_only(vm)
        period = plan.stats_period_seconds
        if period is None or set(plan.changed()) != {"stats_period_seconds"}:
            raise UnsupportedOperationError(  # plan_config refuses the rest; a direct caller too
                f"QMP changes only the balloon's stats period of {vm.name!r}, not "
                f"{', '.join(plan.changed()) or 'nothing'}",
                backend=BACKEND,
                vm=vm.name,
                details={"rule": "not_supported"},
            )
        what = f"set the balloon's stats period to {period} s"

        async def body(mon: Monitor) -> None:
            await self._verified(mon, vm)
            run = run_of(mon.path, mon.pid)
            known = self._balloons.get(run)
            path = known[0] if known is not None else current.extra.get("balloon_qom_path")
            if not isinstance(path, str):
                raise UnsupportedOperationError(
                    f"{vm.name!r} has no balloon device", backend=BACKEND, vm=vm.name
                )
            try:
                held = await mon.execute("qom-get", {"path": path, "property": "guest-stats"})
            except ExecuteError as exc:
                raise ERRORS.map(exc, what, vm=vm.name) from exc
            await self._set_period(mon, path, period, vm.name)
            seen = self._seen.get(vm.id)
            if seen is None or seen.run != run:
                seen = self._seen[vm.id] = _Seen(run)
            # from now on only reports newer than the one QEMU holds count
            last = held.get("last-update") if isinstance(held, Mapping) else None
            seen.armed_after = last if isinstance(last, int) else 0

        async def run() -> None:
            await self._converse(await self._path_of(vm), body, what, label=vm.name)

        self._run(run(), what)
