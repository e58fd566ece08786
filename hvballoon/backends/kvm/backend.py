"""The KVM backend: hvballoon over libvirt-python (QEMU/KVM, and libvirt's test driver).

>>> import hvballoon
>>> with hvballoon.connect("test:///default") as hv:
...     (st,) = hv.get_stats()
...     st.vm.name, st.configured_bytes // 2**30, st.current_bytes // 2**30, st.mechanism.value
('test', 8, 2, 'balloon')

What it does, call by call (see ``docs/backends/kvm.md`` for the user's view):

- **Connect**: the URI goes to ``virConnectOpenAuth`` verbatim (``qemu:///system``,
  ``qemu+ssh://user@host/system``, ``qemu:///embed?root=/dir``, ``test:///default`` …); a
  password answers libvirt's credential callback; ``read_only=True`` opens ``VIR_CONNECT_RO``.
  ``qemu:///embed`` runs the QEMU driver in this process, which needs libvirt's event loop: one
  is started in a daemon thread unless the process already registered one.
- **Stats**: one ``virConnectGetAllDomainStats(STATE | BALLOON)`` for every domain (or
  ``virDomainListGetStats`` for the ones asked for). A domain whose record lacks the balloon
  group (libvirt's test driver fills none) is read with ``memoryStats()`` + ``info()``.
- **The stats period**: a guest's balloon driver reports only while a stats period is set, and
  libvirt's default is off, leaving a report frozen at boot. The first time this backend sees a
  running domain it reads its definition; if the period is off it sets it
  (``setMemoryStatsPeriod``, option ``stats_period``, default 10 s: live, and in the persistent
  definition too with ``persist=True``). Until the guest has reported since, its figures are
  ``None`` and ``stale`` is True — never zeros.
- **The host** (``get_host_stats``): one worker call reads ``getInfo``, ``getMemoryStats`` of
  all cells (total, free, buffers, cached in KiB: the host's ``/proc/meminfo``),
  ``getFreeMemory`` and KSM's node memory parameters (``shm_pages_sharing`` × the base page size
  from the capabilities, read once); a driver without one of them (the test driver has no node
  memory stats and no KSM) leaves its figures ``None``. libvirt has no host swap figures.
- **Targets**: ``setMemoryFlags(KiB, VIR_DOMAIN_AFFECT_LIVE)`` (then ``AFFECT_CONFIG`` with
  ``persist=True`` on a persistent domain, a warning on a transient one; a stopped domain
  gets ``AFFECT_CONFIG``). libvirt
  returns at once and reports no error when the balloon stalls: the session's
  ``wait_for_target`` watches ``current_bytes`` (``balloon.current``) arrive or stall. Many
  targets (``set_targets``) go in one worker call, each domain's error kept apart.
- **Marks** (``get_marks`` / ``set_mark``): one element per mark in the running domain's live
  ``<metadata>`` (``virDomainSetMetadata`` with ``VIR_DOMAIN_AFFECT_LIVE``, also with
  ``persist=True``: a mark lasts the domain's run, as a target does). A read is one listing
  of the active domains and one ``virDomainGetMetadata`` per active domain, in one worker call
  (see :mod:`hvballoon.backends.kvm._marks`).
- **Names**: a VM the session does not know yet is looked up natively
  (``lookupByUUIDString`` / ``lookupByName``), without listing every domain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from hvballoon.backend import Backend, ConnectOptions, TargetRequest
from hvballoon.errors import (
    HVBalloonError,
    PartialChangeError,
    VMNotFoundError,
)
from hvballoon.hoststats import from_sweep
from hvballoon.kinds import KVM, Kind
from hvballoon.kinds.kvm import HOTPLUG_MAXIMUM, VFIO_DEVICES, hugepage_extra
from hvballoon.marks import Marks
from hvballoon.models import VM, Capabilities, ConfigUpdate, HostStats, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import KiB, format_size

from . import SPEC, _marks
from ._connection import Link, ensure_event_loop
from ._define import BALLOON_ATTRIBUTES, still_off, with_balloon_attribute
from ._domain import (
    Freshness,
    parse_domain_xml,
    power_state,
    record_from_per_domain,
    stats_from_record,
)
from ._errors import BACKEND, CONNECTION_LOST_CODES, ERRORS, error_code
from ._host import HostReader, host_figures
from ._native import libvirt, libvirt_error, quiet_libvirt_errors
from ._options import KVMOptions

__all__ = ["CAPABILITIES", "KVMBackend"]

#: What this backend can read and change: the KVM kind's (the fake's ``kvm`` flavour has the same).
CAPABILITIES = KVM.capabilities(
    backend=BACKEND,
    notes=(
        "libvirt: a target is set with setMemoryFlags (KiB); deflate_on_oom is memballoon autodeflate",
        "guest figures need a stats period (set automatically when off; option stats_period)",
        "libvirt's test driver has no bulk balloon stats: one memoryStats()+info() per domain",
    ),
)

#: What the stats period is taken to be where a balloon reports none: the option's default.
_DEFAULT_STATS_PERIOD = KVMOptions().stats_period


@dataclass
class _Seen:
    """What this backend knows about one running domain (keyed by UUID, valid for one run)."""

    dom_id: int
    period: int | None
    armed_after: int | None = None  # last_update when the period was switched on


class KVMBackend(Backend):
    """``qemu://…``, ``qemu+ssh://…``, ``test:///…``: libvirt, passed through verbatim.

    Options (keywords of :func:`hvballoon.connect`):

    - ``read_only`` (False): open a read-only connection (libvirt's read-only socket; no root,
      libvirt group or polkit rule needed). Reading works; any change is refused by libvirt
      (PermissionDeniedError), and the stats period cannot be switched on.
    - ``persist`` (False): also write targets and stats periods into the persistent definition
      (``VIR_DOMAIN_AFFECT_CONFIG``), so they survive a restart.
    - ``stats_period`` (10): seconds; set on running domains whose period is off. 0: never set it.
    - ``event_loop`` (None: only for ``qemu:///embed``): start libvirt's default event loop
      in a daemon thread unless the process registered one already.
    - ``keepalive`` ((5, 3)): libvirt keepalive (interval s, missed count) on connections
      that support it, when an event loop runs; None turns it off.
    """

    name: ClassVar[str] = SPEC.name
    schemes: ClassVar[tuple[str, ...]] = SPEC.schemes
    options_model = KVMOptions
    options: KVMOptions
    #: Every target and configuration rule comes from the KVM kind (hvballoon.kinds.kvm).
    kind: Kind | None = KVM

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        quiet_libvirt_errors()
        self.read_only = self.options.read_only
        self.persist = self.options.persist
        event_loop = self.options.event_loop
        self.stats_period: int = self.options.stats_period
        keepalive = self.options.keepalive
        uri = opts.uri
        embedded = uri.path.rstrip("/") == "/embed"
        if event_loop or (event_loop is None and embedded):
            ensure_event_loop()
        self._link = Link(
            uri.raw,
            redacted_uri=uri.redacted,
            username=uri.username,
            password=opts.password,
            read_only=self.read_only,
            timeout=opts.timeout,
            keepalive=keepalive,
        )
        driver, host = self._link.call("identify the hypervisor", _identify)
        #: libvirt's test driver invents its balloon figures at each call (fixed last_update)
        self.synthetic_stats = driver == "TEST"
        self.driver_type: str = driver
        self._host = host
        self._seen: dict[str, _Seen] = {}
        # libvirt keeps no live balloon target (only the balloon's position): the targets this
        # backend set, by UUID, valid while the domain keeps its run id
        self._targets: dict[str, tuple[int, int]] = {}
        # the runs (UUID -> run id) whose live stats period a caller set: never switched back on
        self._chosen_periods: dict[str, int] = {}
        self._seen_lock = threading.Lock()
        self._host_reader = HostReader()  # the host's base page size, once read
        # each domain's <memballoon model> ("none": without one) as last read: at a run's first
        # sighting (a balloon device is not hot-plugged) and at each read of its configuration
        self._balloon_models: dict[str, str] = {}

    # -- plumbing --------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def vm_capabilities(self, vm: VM) -> Capabilities:
        """The kind's, less what a domain without a balloon device cannot change (the kind's
        ``withhold``): its device as last read — at its run's first sighting, or at the last
        read of its configuration — else read now (one read per domain, not one per call: a
        controller asks for every domain in every round)."""
        with self._seen_lock:
            model = self._balloon_models.get(vm.id)
        if model is None:
            config = self.get_config(vm)
        else:
            config = MemoryConfig(vm=vm, mechanism=CAPABILITIES.mechanism, extra={"balloon_model": model})
        return KVM.withhold(CAPABILITIES, config)

    @property
    def native(self) -> Any:
        """The ``libvirt.virConnect`` in use (a new one after a reconnect)."""
        return self._link.conn

    @property
    def link(self) -> Link:
        """The connection wrapper (deadlines, reconnects; ``link.reconnects`` counts them)."""
        return self._link

    def close(self) -> None:
        self._link.close()

    def _vm(self, dom: Any, state: int | None) -> VM:
        dom_id = int(dom.ID())
        return VM(
            id=dom.UUIDString(),
            name=dom.name(),
            backend=BACKEND,
            host=self._host,
            power_state=power_state(state),
            extra={"libvirt_id": dom_id if dom_id >= 0 else None},
        )

    @staticmethod
    def _lookup(conn: Any, vm: VM) -> Any:
        try:
            return conn.lookupByUUIDString(vm.id)
        except libvirt_error as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                raise VMNotFoundError(
                    f"no domain with UUID {vm.id} (it may have been destroyed or undefined)",
                    backend=BACKEND,
                    vm=vm.name,
                    native_code="VIR_ERR_NO_DOMAIN",
                ) from exc
            raise

    # -- reading ---------------------------------------------------------------------------

    def list_vms(self) -> list[VM]:
        def fetch(conn: Any) -> list[VM]:
            pairs = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
            return [self._vm(dom, rec.get("state.state")) for dom, rec in pairs]

        return self._link.call("list domains", fetch)

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        groups = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_BALLOON

        def fetch(conn: Any) -> tuple[Any, list[tuple[Any, VM, dict[str, Any]]]]:
            if vms is None:
                pairs = conn.getAllDomainStats(groups, 0)
            else:
                doms = [self._lookup(conn, v) for v in vms]
                pairs = conn.domainListGetStats(doms, groups, 0) if doms else []
            rows = []
            for dom, record in pairs:
                if "balloon.maximum" not in record:
                    # this driver does not fill the bulk balloon group: ask the domain itself
                    # (in the same worker call: one deadline and one thread hand-off per sweep)
                    record = self._per_domain_record(dom, strict=vms is not None)
                    if record is None:
                        continue  # vanished between the two calls
                rows.append((dom, self._vm(dom, record.get("state.state")), record))
            return conn, rows

        fetched_on, rows = self._link.call("read balloon stats", fetch)
        seen = self._sightings(fetched_on, rows)
        now = time.time()
        out = [
            stats_from_record(
                vm,
                record,
                target_bytes=self._target_of(vm),
                freshness=self._freshness_of(seen.get(vm.id)),
                default_period=self.stats_period or _DEFAULT_STATS_PERIOD,
                now=now,
            )
            for _dom, vm, record in rows
        ]
        if vms is not None:
            order = {v.id: i for i, v in enumerate(vms)}
            out.sort(key=lambda s: order.get(s.vm.id, len(order)))
        return out

    @staticmethod
    def _per_domain_record(dom: Any, *, strict: bool) -> dict[str, int] | None:
        try:
            info = dom.info()
            active = power_state(info[0]) in (PowerState.RUNNING, PowerState.PAUSED)
            return record_from_per_domain(info, dom.memoryStats() if active else None)
        except libvirt_error as exc:
            if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN and not strict:
                return None
            raise

    def _target_of(self, vm: VM) -> int | None:
        with self._seen_lock:
            known = self._targets.get(vm.id)
        if known is None or known[0] != vm.extra.get("libvirt_id"):
            return None
        return known[1]

    def _freshness_of(self, seen: _Seen | None) -> Freshness:
        if self.synthetic_stats:
            return Freshness(period=seen.period if seen else None, synthetic=True)
        if seen is None:
            return Freshness(period=None)
        return Freshness(period=seen.period, armed_after=seen.armed_after)

    def _sightings(self, fetched_on: Any, rows: list[tuple[Any, VM, dict[str, Any]]]) -> dict[str, _Seen]:
        """What is known about each running domain's stats period, checked once per run.

        The first sighting of a running domain (or of a new run of it) reads its XML; a period
        that is off is switched on (unless read-only, ``stats_period=0``, or a caller set it live
        for this run), and from then on
        only reports newer than the one libvirt held at that moment (``last_update``, from the
        same sweep) are trusted. All first sightings of a sweep share one worker call.
        """
        active = [r for r in rows if r[1].power_state in (PowerState.RUNNING, PowerState.PAUSED)]
        with self._seen_lock:
            known = {
                vm.id: self._seen[vm.id]
                for _d, vm, _r in active
                if vm.id in self._seen and self._seen[vm.id].dom_id == vm.extra.get("libvirt_id")
            }
        new = [r for r in active if r[1].id not in known]
        if not new:
            return known

        models: dict[str, str] = {}

        def check(conn: Any) -> dict[str, _Seen]:
            found: dict[str, _Seen] = {}
            for dom, vm, record in new:
                try:
                    # a reconnect since the sweep makes its domain objects useless: look them up
                    # again (one that vanished meanwhile is left out, like one gone since the sweep)
                    d = dom if conn is fetched_on else conn.lookupByUUIDString(vm.id)
                    xml = parse_domain_xml(d.XMLDesc(0))
                    period = xml.stats_period_seconds
                    armed_after = None
                    with self._seen_lock:
                        chosen = self._chosen_periods.get(vm.id) == vm.extra.get("libvirt_id")
                    arm = KVM.stats_period_to_arm(
                        period,
                        has_balloon=xml.has_balloon,
                        option=self.stats_period,
                        read_only=self.read_only,
                        chosen=chosen,
                    )
                    if arm is not None:
                        d.setMemoryStatsPeriod(arm, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                        if self.persist and d.isPersistent():
                            # as a target is: a second call (some drivers refuse LIVE|CONFIG)
                            d.setMemoryStatsPeriod(arm, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                        period = arm
                        armed_after = int(record.get("balloon.last-update") or 0)
                except libvirt_error as exc:
                    if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                        continue  # gone since the sweep: nothing to arm
                    raise
                dom_id = vm.extra.get("libvirt_id")
                found[vm.id] = _Seen(
                    dom_id=int(dom_id) if dom_id is not None else -1, period=period, armed_after=armed_after
                )
                models[vm.id] = xml.balloon_model or "none"
            return found

        found = self._link.call("check the stats period", check)
        with self._seen_lock:
            self._seen.update(found)
            self._balloon_models.update(models)
        return {**known, **found}

    def get_host_stats(self, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
        """The host behind the connection: its figures in one worker call, plus the VM sweep.

        Physical and free memory come from ``getMemoryStats`` of all cells (``/proc/meminfo``'s
        MemTotal, and MemFree + Buffers + Cached: what the host can hand out without swapping)
        where the driver has it, else from ``getInfo`` (whole MiB) and ``getFreeMemory`` (bytes,
        the NUMA cells' free memory). ``shared_bytes`` is what KSM saves (``shm_pages_sharing``
        pages). The raw figures of every call are kept in ``extra``.
        """
        stats = vm_stats if vm_stats is not None else self.get_stats()
        raw = self._link.call("read the host's memory", self._host_reader.read)
        at = datetime.now(timezone.utc)
        name = self._host or self.opts.uri.host or "localhost"
        figures = {name: host_figures(raw)}
        return from_sweep(stats, backend=BACKEND, default_host=name, figures=figures, collected_at=at)

    def lookup_vms(self, refs: Sequence[str]) -> list[VM]:
        """Each ref looked up as a UUID, then as a name (libvirt names are unique): one call."""

        def fetch(conn: Any) -> list[VM]:
            found: dict[str, VM] = {}
            for ref in refs:
                for lookup in (conn.lookupByUUIDString, conn.lookupByName):
                    try:
                        dom = lookup(ref)
                    except libvirt_error as exc:
                        if error_code(exc) in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_INVALID_ARG):
                            continue  # not this kind of ref, or no such domain
                        raise
                    vm = self._vm(dom, dom.state()[0])
                    found[vm.id] = vm
            return list(found.values())

        return self._link.call("look domains up", fetch)

    def get_config(self, vm: VM) -> MemoryConfig:
        (config,) = self.get_configs([vm])
        return config

    def get_configs(self, vms: list[VM] | None = None) -> list[MemoryConfig]:
        """Every definition (or those of ``vms``) read in one worker call, parsed here."""

        def fetch(conn: Any) -> list[tuple[VM, str, str | None, bool, bool]]:
            doms = conn.listAllDomains(0) if vms is None else [self._lookup(conn, v) for v in vms]
            out = []
            for dom in doms:
                try:
                    state = dom.state()[0]
                    live = dom.XMLDesc(0)
                    active = bool(dom.isActive())
                    persistent = bool(dom.isPersistent())
                    saved = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if active and persistent else None
                except libvirt_error as exc:
                    if vms is None and error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                        continue  # gone since the listing
                    raise
                out.append((self._vm(dom, state), live, saved, active, persistent))
            return out

        rows = self._link.call(
            "read the domain definitions" if vms is None or len(vms) > 1 else "read the domain definition",
            fetch,
            vm=vms[0].name if vms is not None and len(vms) == 1 else None,
        )
        return [self._config(*row) for row in rows]

    def _config(
        self, vm: VM, live_xml: str, saved_xml: str | None, active: bool, persistent: bool
    ) -> MemoryConfig:
        live = parse_domain_xml(live_xml)
        with self._seen_lock:
            self._balloon_models[vm.id] = live.balloon_model or "none"
        saved = parse_domain_xml(saved_xml) if saved_xml is not None else None
        definition = saved if saved is not None else (live if not active else None)
        return MemoryConfig(
            vm=vm,
            mechanism=CAPABILITIES.mechanism,
            startup_bytes=definition.current_memory_bytes if definition is not None else None,
            maximum_bytes=live.memory_bytes,
            minimum_bytes=live.min_guarantee_bytes,
            deflate_on_oom=live.autodeflate,
            free_page_reporting=live.free_page_reporting,
            stats_period_seconds=live.stats_period_seconds,
            extra={
                "balloon_model": live.balloon_model,
                "persistent": persistent,
                HOTPLUG_MAXIMUM: live.hotplug_maximum_bytes,
                "virtio_mem_bytes": live.virtio_mem_bytes,
                VFIO_DEVICES: live.vfio_devices,
                **hugepage_extra(live.hugepages, live.hugepage_bytes),
                # libvirt checks the nodes of the definition it would change (the persistent one)
                "numa_nodes": (definition or live).numa_nodes,
                "persistent_maximum_bytes": saved.memory_bytes if saved is not None else None,
            },
        )

    # -- marks: the running domain's metadata -----------------------------------------------

    def read_marks(self, key: str) -> Marks:
        """One listing of the active domains, then one ``virDomainGetMetadata`` each, in one
        worker call under the session's timeout; a domain whose metadata libvirt would not give
        (a permission, another program's element under the mark's namespace) is in
        ``unreadable`` with the error saying why."""
        uri = self._link.uri
        values, unreadable = self._link.call(
            "read the domains' marks", lambda conn: _marks.read_marks(conn, key, uri, self._vm)
        )
        return Marks(values, unreadable=unreadable)

    def write_mark(self, vm: VM, key: str, value: str | None) -> None:
        """One ``virDomainSetMetadata`` on the live definition (a domain found powered off has
        no mark: removing it changes nothing, setting one is refused by the kind)."""

        def write(conn: Any) -> None:
            dom = self._lookup(conn, vm)
            try:
                _marks.write_mark(dom, self._vm(dom, dom.state()[0]), key, value)
            except libvirt_error as exc:
                # stopped since its state was read: nothing left to remove
                if value is not None or error_code(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise

        what = f"remove the mark {key}" if value is None else f"set the mark {key}"
        self._link.call(what, write, vm=vm.name)

    # -- changing --------------------------------------------------------------------------

    #: The warning of a target set with ``persist=True`` on a transient domain (``virsh create``).
    TRANSIENT_NOTE = "transient domain: the target is live only, no definition to persist"

    def target_notes(
        self, vm: VM, target_bytes: int, stats: MemoryStats, config: MemoryConfig
    ) -> tuple[str, ...]:
        """``persist=True`` on a transient domain (one that exists only while it runs): there
        is no persistent definition to write the target into, so it lasts the domain's run only
        (as without ``persist``)."""
        if self.persist and config.extra.get("persistent") is False:
            return (self.TRANSIENT_NOTE,)
        return ()

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        (error,) = self.apply_targets([TargetRequest(vm, target_bytes)])
        if error is not None:
            raise error

    def apply_targets(self, targets: Sequence[TargetRequest]) -> list[HVBalloonError | None]:
        """Every target in one worker call (one deadline, one thread hand-off); a domain's own
        libvirt error is mapped for that domain and the others still go. A lost connection
        fails the whole call, which the link retries once on a new connection: every move is
        absolute, so sending them all again is safe."""

        if not targets:
            return []

        def send(conn: Any) -> list[HVBalloonError | int]:
            out: list[HVBalloonError | int] = []
            for t in targets:
                kib = t.target_bytes // KiB
                what = f"set the balloon target of {t.vm.name!r} to {format_size(t.target_bytes)}"
                try:
                    dom = self._lookup(conn, t.vm)
                    if not dom.isActive():
                        dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                        out.append(-1)
                        continue
                    dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                    if self.persist and dom.isPersistent():
                        # a second call rather than LIVE|CONFIG, which some drivers (test) refuse;
                        # the target is absolute, so a retry after a failure here is safe
                        dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                    out.append(int(dom.ID()))
                except VMNotFoundError as exc:
                    out.append(exc)
                except libvirt_error as exc:
                    if error_code(exc) in CONNECTION_LOST_CODES:
                        raise
                    error = ERRORS.map(exc, what, vm=t.vm.name, uri=self._link.uri)
                    error.__cause__ = exc
                    out.append(error)
            return out

        what = (
            f"set the balloon target to {format_size(targets[0].target_bytes)}"
            if len(targets) == 1
            else f"set {len(targets)} balloon targets"
        )
        answers = self._link.call(what, send, vm=targets[0].vm.name if len(targets) == 1 else None)
        results: list[HVBalloonError | None] = []
        with self._seen_lock:
            for t, answer in zip(targets, answers, strict=True):
                if isinstance(answer, HVBalloonError):
                    results.append(answer)
                    continue
                if answer >= 0:
                    self._targets[t.vm.id] = (answer, t.target_bytes)
                results.append(None)
        return results

    def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        steps: list[tuple[str, Callable[[Any], None]]] = []
        if plan.maximum_bytes is not None:
            kib = plan.maximum_bytes // KiB

            def set_max(conn: Any) -> None:
                flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM
                still_off(self._lookup(conn, vm), vm, "maximum_bytes").setMemoryFlags(kib, flags)

            steps.append(("maximum_bytes", set_max))
        for field, attribute in BALLOON_ATTRIBUTES.items():
            value = getattr(plan, field)
            if value is None:
                continue

            def set_attribute(
                conn: Any, attribute: str = attribute, on: bool = value, field: str = field
            ) -> None:
                dom = still_off(self._lookup(conn, vm), vm, field)
                flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
                conn.defineXML(with_balloon_attribute(dom.XMLDesc(flags), attribute, on, vm.name))

            steps.append((field, set_attribute))
        if plan.stats_period_seconds is not None:
            period = plan.stats_period_seconds

            def set_period(conn: Any) -> None:
                dom = self._lookup(conn, vm)
                if not dom.isActive():  # as it is now, not as it was read: it may have started since
                    dom.setMemoryStatsPeriod(period, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                    return
                dom.setMemoryStatsPeriod(period, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                with self._seen_lock:  # the caller's choice for this run, 0 included
                    self._chosen_periods[vm.id] = dom.ID()
                if self.persist and dom.isPersistent():
                    dom.setMemoryStatsPeriod(period, libvirt.VIR_DOMAIN_AFFECT_CONFIG)

            steps.append(("stats_period_seconds", set_period))
        applied: list[str] = []
        for name, step in steps:
            try:
                self._link.call(f"change {name}", step, vm=vm.name)
            except Exception as exc:
                # any failure after a step landed, a native one libvirt-python raised before
                # sending (an OverflowError) included, is a partial change the caller is told of
                if not applied:
                    raise
                why = exc.message if isinstance(exc, HVBalloonError) else f"{type(exc).__name__}: {exc}"
                raise PartialChangeError(
                    f"changed {', '.join(applied)} of {vm.name!r} but not {name}: {why}",
                    backend=BACKEND,
                    uri=self._link.uri,
                    vm=vm.name,
                    details={"applied": applied, "not_applied": [n for n, _ in steps if n not in applied]},
                ) from exc
            applied.append(name)
        with self._seen_lock:
            self._seen.pop(vm.id, None)  # read the period again on the next sweep


def _identify(conn: Any) -> tuple[str, str | None]:
    driver = str(conn.getType())
    try:
        host: str | None = str(conn.getHostname())
    except libvirt_error:
        host = None
    return driver, host
