"""What QEMU's monitor says about a VM, mapped onto hvballoon's models.

One conversation (see ``backend.py``) fills a :class:`Reading` with QEMU's own answers, all in
bytes; :func:`stats_from_reading` maps it (the guest report's freshness and figures are judged
by :mod:`hvballoon.virtio_balloon`, as for the KVM backend):

==========================  =============================================================
MemoryStats field           QMP source (bytes)
==========================  =============================================================
configured_bytes            ``query-memory-size-summary``: ``base-memory`` + ``plugged-memory``
current_bytes               ``query-balloon`` ``actual`` (no balloon device: configured)
target_bytes                the target this backend last sent to this QEMU process (QEMU
                            does not report a target)
ballooned_bytes             configured − actual
guest_total_bytes           ``guest-stats`` ``stat-total-memory`` (the guest's MemTotal)
guest_free_bytes            ``stat-free-memory`` (MemFree)
guest_available_bytes       ``stat-available-memory`` (MemAvailable)
guest_used_bytes            total − available; else total − free − ``stat-disk-caches``
guest_cache_bytes           ``stat-disk-caches``
swap_in/out_bytes           ``stat-swap-in`` / ``stat-swap-out``
major_faults                ``stat-major-faults`` (a count)
host_consumed_bytes         the QEMU process's resident memory (``/proc/<pid>/statm``)
guest_report_age_seconds    now − ``guest-stats`` ``last-update`` (host clock, seconds)
==========================  =============================================================

QEMU reports a statistic the guest did not send as -1: it is ``None`` here.

>>> r = Reading(path="/run/qemu-server/101.qmp", pid=None, name=None,
...             uuid="00000000-0000-0000-0000-000000000000", status="running",
...             base_memory=2**30, plugged_memory=0, actual=768 * 2**20)
>>> vm = vm_from_reading(r, host="pve1")
>>> vm.name, vm.id, vm.power_state.value
('101', '/run/qemu-server/101.qmp', 'running')
>>> from hvballoon.virtio_balloon import Freshness
>>> st = stats_from_reading(vm, r, target_bytes=None, freshness=Freshness(2), default_period=10, now=0.0)
>>> st.configured_bytes // 2**20, st.current_bytes // 2**20, st.ballooned_bytes // 2**20, st.stale
(1024, 768, 256, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

from hvballoon.errors import BackendError
from hvballoon.kinds.kvm import VFIO_DEVICES
from hvballoon.models import VM, Mechanism, MemoryConfig, MemoryStats, PowerState
from hvballoon.virtio_balloon import Freshness, GuestReport, guest_figures

from ._errors import BACKEND

__all__ = [
    "balloon_model",
    "NIL_UUID",
    "Reading",
    "checked_answer",
    "config_from_reading",
    "guest_report",
    "local_host_figures",
    "power_state",
    "resident_bytes",
    "stats_from_reading",
    "vm_from_reading",
]

#: What ``query-uuid`` answers for a QEMU started without ``-uuid``.
NIL_UUID = "00000000-0000-0000-0000-000000000000"

#: ``query-status`` → PowerState. A QEMU whose guest is off (``-no-shutdown``) still runs (and
#: holds the memory) but the guest is stopped; every state in which the vCPUs are merely stopped
#: is paused — a panicked guest's too, as libvirt keeps it crashed (QEMU's memory and balloon
#: still there) and the kvm backend reads a crashed domain as paused.
_STATES: dict[str, PowerState] = {
    "running": PowerState.RUNNING,
    "suspended": PowerState.SUSPENDED,
    "shutdown": PowerState.STOPPED,
    **{
        s: PowerState.PAUSED
        for s in (
            "guest-panicked",
            "paused",
            "prelaunch",
            "inmigrate",
            "postmigrate",
            "finish-migrate",
            "save-vm",
            "restore-vm",
            "debug",
            "io-error",
            "internal-error",
            "watchdog",
            "colo",
        )
    },
}


#: What QEMU's QAPI schema says the queries the backend reads answer: an object whose members,
#: where present, have these types (``qapi/misc.json`` ``NameInfo``, ``UuidInfo``;
#: ``qapi/run-state.json`` ``StatusInfo``; ``qapi/machine.json`` ``MemoryInfo``,
#: ``BalloonInfo``). Sizes are ``size`` (uint64) and ``int`` (int64): never negative here.
_ANSWERS: dict[str, dict[str, type]] = {
    "query-name": {"name": str},
    "query-uuid": {"UUID": str},
    "query-status": {"status": str},
    "query-memory-size-summary": {"base-memory": int, "plugged-memory": int},
    "query-balloon": {"actual": int},
}


def _fits(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64
    return isinstance(value, kind)


def checked_answer(command: str, value: Any, *, vm: str | None) -> Any:
    """``value``, QEMU's answer to ``command``, if it has the shape QMP's schema gives it.

    A peer that answers otherwise (a broken or foreign QMP server) gets a
    :class:`~hvballoon.errors.BackendError` (``native_code`` ``malformed_reply``) naming the
    command and what was wrong, never a Python error from deep inside the backend.
    """
    shape = _ANSWERS.get(command)
    if shape is None:
        return value
    problem = None
    if not isinstance(value, Mapping):
        problem = f"a JSON {type(value).__name__} instead of an object"
    else:
        for member, kind in shape.items():
            got = value.get(member)
            if got is not None and not _fits(got, kind):
                problem = f"{member!r} is {got!r}"
                break
    if problem is not None:
        raise BackendError(
            f"QEMU's answer to {command} is not what QMP specifies ({problem})",
            backend=BACKEND,
            vm=vm,
            native_code="malformed_reply",
        )
    return value


def power_state(status: str | None) -> PowerState:
    """QEMU's run state (``query-status`` ``status``) as a :class:`PowerState`."""
    return _STATES.get(status or "", PowerState.UNKNOWN)


@dataclass(frozen=True)
class Reading:
    """What one conversation with one QEMU read: QEMU's answers as it gave them (bytes)."""

    path: str
    pid: int | None
    name: str | None
    uuid: str | None
    status: str | None
    base_memory: int | None = None
    plugged_memory: int | None = None
    actual: int | None = None
    has_balloon: bool = True
    balloon_path: str | None = None
    balloon_type: str | None = None
    period: int | None = None
    guest_stats: Mapping[str, Any] | None = None
    rss_bytes: int | None = None
    deflate_on_oom: bool | None = None
    free_page_reporting: bool | None = None
    #: devices assigned through VFIO-PCI in QEMU's device trees (None: not listed by this read)
    vfio_devices: int | None = None

    @property
    def vm_id(self) -> str:
        """The VM's id: its SMBIOS UUID, or (no ``-uuid`` given) the monitor socket's path."""
        if self.uuid and self.uuid != NIL_UUID:
            return self.uuid
        return self.path

    @property
    def configured_bytes(self) -> int | None:
        if self.base_memory is None:
            return None
        return self.base_memory + (self.plugged_memory or 0)


def vm_from_reading(reading: Reading, *, host: str | None) -> VM:
    """The :class:`VM`: named by ``-name``, else by the socket's file name (a Proxmox vmid)."""
    return VM(
        id=reading.vm_id,
        name=reading.name or PurePath(reading.path).stem,
        backend=BACKEND,
        host=host,
        power_state=power_state(reading.status),
        extra={"socket": reading.path, "qemu_pid": reading.pid},
    )


def _count(stats: Mapping[str, Any], key: str) -> int | None:
    value = stats.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def guest_report(answer: Mapping[str, Any] | None) -> GuestReport:
    """The guest's report in a ``qom-get … guest-stats`` answer (``None``: none read)."""
    if not answer:
        return GuestReport(last_update=None)
    stats = answer.get("stats")
    stats = stats if isinstance(stats, Mapping) else {}
    last = answer.get("last-update")
    return GuestReport(
        last_update=last if isinstance(last, int) and not isinstance(last, bool) else None,
        total_bytes=_count(stats, "stat-total-memory"),
        free_bytes=_count(stats, "stat-free-memory"),
        available_bytes=_count(stats, "stat-available-memory"),
        cache_bytes=_count(stats, "stat-disk-caches"),
        swap_in_bytes=_count(stats, "stat-swap-in"),
        swap_out_bytes=_count(stats, "stat-swap-out"),
        major_faults=_count(stats, "stat-major-faults"),
        minor_faults=_count(stats, "stat-minor-faults"),
    )


def resident_bytes(pid: int | None) -> int | None:
    """The resident memory of a local process (``/proc/<pid>/statm``); ``None`` if unreadable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            fields = fh.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def stats_from_reading(
    vm: VM,
    reading: Reading,
    *,
    target_bytes: int | None,
    freshness: Freshness,
    default_period: int,
    now: float,
) -> MemoryStats:
    """One :class:`MemoryStats` from one :class:`Reading` (see the module's table)."""
    configured = reading.configured_bytes
    current = reading.actual if reading.has_balloon else configured
    extra: dict[str, Any] = {"qemu_status": reading.status, "balloon": reading.has_balloon}
    fields: dict[str, Any] = {
        "configured_bytes": configured,
        "current_bytes": current,
        "target_bytes": target_bytes,
        "ballooned_bytes": max(0, configured - current)
        if configured is not None and current is not None
        else None,
        "host_consumed_bytes": reading.rss_bytes,
    }
    if reading.has_balloon and reading.balloon_path is None:
        extra["stats_note"] = "the balloon device was not found in QEMU's object tree: no guest figures"
    guest, guest_extra, stale = guest_figures(
        guest_report(reading.guest_stats if reading.balloon_path else None),
        freshness,
        default_period=default_period,
        now=now,
    )
    fields.update(guest)
    extra = {**guest_extra, **extra}
    return MemoryStats(
        vm=vm,
        mechanism=Mechanism.BALLOON,
        collected_at=datetime.fromtimestamp(now, tz=timezone.utc),
        stale=stale,
        extra=extra,
        **fields,
    )


def balloon_model(reading: Reading) -> str:
    """The KVM kind's name for the VM's balloon device ("none": no balloon; hvballoon.kinds.kvm)."""
    return (reading.balloon_type or "virtio-balloon") if reading.has_balloon else "none"


def config_from_reading(vm: VM, reading: Reading) -> MemoryConfig:
    """The :class:`MemoryConfig`: QEMU's ``-m`` size, the hot-plugged memory, the balloon's settings."""
    return MemoryConfig(
        vm=vm,
        mechanism=Mechanism.BALLOON,
        startup_bytes=reading.base_memory,
        maximum_bytes=reading.configured_bytes,
        deflate_on_oom=reading.deflate_on_oom,
        free_page_reporting=reading.free_page_reporting,
        stats_period_seconds=reading.period if reading.has_balloon else None,
        extra={
            "balloon": reading.has_balloon,
            "balloon_model": balloon_model(reading),
            # the KVM kind's count: its balloon frees nothing on the host while one is attached
            VFIO_DEVICES: reading.vfio_devices,
            "balloon_qom_path": reading.balloon_path,
            "plugged_memory_bytes": reading.plugged_memory,
            "socket": reading.path,
        },
    )


def _meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes (its "kB" are KiB)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0]) * (1024 if fields[1:2] == ["kB"] else 1)
    return out


def _read_or_empty(path: str) -> str:
    """A kernel file's text, or ``""`` where it cannot be read."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except OSError:
        return ""


def local_host_figures(meminfo: str | None = None, ksm_pages_sharing: str | None = None) -> dict[str, Any]:
    """:class:`~hvballoon.HostStats` figures of this machine — where QMP sockets are, QEMU runs.

    From ``/proc/meminfo``: ``physical_bytes`` is MemTotal; ``free_bytes`` MemFree + Buffers +
    Cached (what the host can hand out without swapping, as libvirt's node memory stats count
    it); swap from SwapTotal and SwapFree. ``shared_bytes`` is what KSM saves
    (``/sys/kernel/mm/ksm/pages_sharing`` pages). ``None`` where a file cannot be read.
    The arguments replace the files' contents (for tests).
    """
    if meminfo is None:
        meminfo = _read_or_empty("/proc/meminfo")
    if ksm_pages_sharing is None:
        ksm_pages_sharing = _read_or_empty("/sys/kernel/mm/ksm/pages_sharing")
    mem = _meminfo(meminfo)
    figures: dict[str, Any] = {"extra": {"source": "/proc/meminfo"}}
    if "MemTotal" in mem and "MemFree" in mem:
        cache = mem.get("Buffers", 0) + mem.get("Cached", 0)
        figures["physical_bytes"] = mem["MemTotal"]
        figures["free_bytes"] = min(mem["MemTotal"], mem["MemFree"] + cache)
        figures["extra"].update(
            unused_bytes=mem["MemFree"], cache_bytes=cache, mem_available_bytes=mem.get("MemAvailable")
        )
    if "SwapTotal" in mem and "SwapFree" in mem:
        figures["swap_total_bytes"] = mem["SwapTotal"]
        figures["swap_used_bytes"] = max(0, mem["SwapTotal"] - mem["SwapFree"])
    sharing = ksm_pages_sharing.strip()
    if sharing.isdigit():
        figures["shared_bytes"] = int(sharing) * os.sysconf("SC_PAGE_SIZE")
        figures["extra"]["ksm_pages_sharing"] = int(sharing)
    return figures
