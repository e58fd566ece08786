"""The ESXi / vCenter backend: ``esxi://user@host`` and ``vcenter://user@host/?datacenter=…``.

vSphere has no balloon-target API. ESXi inflates a VM's balloon (then compresses, then swaps)
when the VM consumes more host memory than its *limit* allows, or when the host is short. So a
target here is ``config.memoryAllocation.limit`` (MB), set through ``ReconfigVM_Task`` with the
whole allocation (reservation and shares preserved); releasing it means "unlimited" (-1)::

    import hvballoon

    with hvballoon.connect("vcenter://admin@vc.example.com/?datacenter=DC1", password=...) as hv:
        hv.get_stats()                                # one RetrievePropertiesEx for every VM
        hv.set_target("web01", "6GiB")                # limit = 6144 MB
        hv.set_config("web01", limit="unlimited")     # release

Reading costs one PropertyCollector round trip per page of ``page_size`` objects, whatever the
number of VMs; no code path reads a managed object's attributes one by one. A change reads the
VMs' stats and configuration (and their hosts' names) in one ``RetrievePropertiesEx``; many
targets (``set_targets``) are sent as one ``ReconfigVM_Task`` each, all issued before any is
awaited, then awaited together (:meth:`~hvballoon.backends.esxi._client.Client.wait_for_tasks`). A name
the session does not know yet costs one sweep of the VMs' names and ids.

Units on the wire: ``config.hardware.memoryMB``, the allocation, and every memory quickStat are
MB — except ``quickStats.compressedMemory``, which is KB; the ``mem.vmmemctltarget`` perf
counter is KB. hvballoon turns them all into bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar

from pyVmomi import vim as _vim

from hvballoon._gc import collector_paused
from hvballoon.backend import Backend, ConnectOptions, TargetRequest
from hvballoon.errors import Hint, HVBalloonError, InvalidRequestError, InvalidURIError, VMNotFoundError
from hvballoon.hoststats import from_sweep, split_by_host
from hvballoon.kinds import ESXI, Kind, check_settable
from hvballoon.kinds.esxi import SHARES_LEVELS
from hvballoon.marks import Marks
from hvballoon.models import VM, Capabilities, ConfigUpdate, HostStats, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import MiB

from . import SPEC, _props
from ._client import Client, Endpoint, VSphereLink, make_ssl_context
from ._fast import MISSING
from ._faults import ERRORS
from ._options import ESXiOptions, ESXiParameters, VCenterParameters
from ._perf import BalloonTargets
from ._props import BALLOON_CAP_KEY, balloon_cap_bytes, entity_name, limit_mb, unreadable_error
from ._root import find_root
from ._stats import HOST_USAGE, QUICKSTAT_PATHS, host_figures, mb, running, vm_stats

# pyvmomi's types are generated at run time: typed as Any at this boundary.
vim: Any = _vim

__all__ = ["CAPABILITIES", "ESXiBackend"]

log = logging.getLogger("hvballoon.esxi")

T = TypeVar("T")


#: What this backend can read and change: the ESXi kind's (the fake's ``esxi`` flavour has the same).
CAPABILITIES = ESXI.capabilities(
    backend="esxi",
    notes=("every change is one ReconfigVM_Task carrying the whole memoryAllocation",),
)

#: A template's: readable, nothing settable (vSphere reconfigures a template's name and
#: annotation only; it must be converted to a VM, MarkAsVirtualMachine, to change its memory).
TEMPLATE_CAPABILITIES = CAPABILITIES.model_copy(
    update={
        "set_live": frozenset(),
        "set_offline": frozenset(),
        "notes": (*CAPABILITIES.notes, "a template: its memory cannot change until it is converted to a VM"),
        "frozen_reason": "it is a template, and vSphere changes nothing of a template but its name and "
        "annotation; convert it to a virtual machine first (vSphere Client: Convert to Virtual Machine; "
        "API: MarkAsVirtualMachine), then change its memory",
    }
)

#: Exactly the VM property paths a listing asks for.
LIST_PATHS: tuple[str, ...] = (
    "name",
    "config.instanceUuid",
    "runtime.powerState",
    "runtime.host",
    "runtime.connectionState",
    "config.template",
)
#: Exactly the VM property paths a stats sweep asks for.
STATS_PATHS: tuple[str, ...] = (
    *LIST_PATHS,
    "config.hardware.memoryMB",
    "config.memoryAllocation",
    *QUICKSTAT_PATHS,
)
#: Exactly the host property paths ``get_host_stats`` asks for (memorySize is in bytes).
HOST_PATHS: tuple[str, ...] = ("name", "hardware.memorySize", HOST_USAGE)
CONFIG_PATHS: tuple[str, ...] = (
    *LIST_PATHS,
    "config.hardware.memoryMB",
    "config.memoryAllocation",
    "config.memoryReservationLockedToMax",
    "config.extraConfig",
    *_props.HOT_ADD_PATHS,  # whether, and how far, a running VM's memory may grow
)
#: What a change reads: the stats and the configuration, in one request.
CHANGE_PATHS: tuple[str, ...] = (*STATS_PATHS, "config.memoryReservationLockedToMax", "config.extraConfig")

_POWER = {
    "poweredOn": PowerState.RUNNING,
    "poweredOff": PowerState.STOPPED,
    "suspended": PowerState.SUSPENDED,
}

_UNLIMITED = -1


class ESXiBackend(Backend):
    """hvballoon over the vSphere API (pyvmomi), for ESXi hosts and vCenter.

    URIs: ``esxi://user@host[:port]`` and
    ``vcenter://user@host[:port]/?datacenter=DC&cluster=C`` (or ``&folder=F`` instead of
    ``cluster``) to narrow the inventory. ``?scheme=http`` speaks plain HTTP (test simulators
    only). Options: ``page_size`` (objects per PropertyCollector page, default 1000),
    ``perf_counters`` (also read ESXi's balloon target ``mem.vmmemctltarget`` for every VM in
    one ``QueryPerf``; off by default, as real-time perf queries cost the hosts more than a
    property read), ``fast_sweep`` (default on: the sweep of every VM sends its
    ``RetrievePropertiesEx`` as hand-written SOAP over the same session and reads the answer
    with ElementTree, about 3× faster than pyvmomi's deserializer; ``False`` uses pyvmomi).
    """

    name: ClassVar[str] = SPEC.name
    schemes: ClassVar[tuple[str, ...]] = SPEC.schemes
    options_model = ESXiOptions
    options: ESXiOptions
    #: Every target and configuration rule comes from the ESXi kind (hvballoon.kinds.esxi).
    kind: Kind | None = ESXI
    lookup_lists_every_vm = True  # vSphere has no look-up by name: lookup_vms sweeps them all

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        uri = opts.uri
        model = VCenterParameters if uri.scheme == "vcenter" else ESXiParameters
        params = model.parse(uri.query, backend=self.name, uri=uri.redacted, scheme=uri.scheme)
        if not uri.host:
            raise InvalidURIError(f"{uri.scheme}:// needs a host: {uri.scheme}://user@host", uri=uri.redacted)
        if not uri.username:
            raise InvalidURIError(
                f"{uri.scheme}:// needs a user name: {uri.scheme}://user@{uri.host}", uri=uri.redacted
            )
        if opts.password is None:
            raise InvalidRequestError(
                "the esxi backend needs a password", uri=uri.redacted, hint=Hint("password")
            )
        https = params.scheme == "https"
        if not https:
            log.warning(
                "%s: plain http, the password travels unencrypted (test simulators only)", uri.redacted
            )
        page_size = self.options.page_size
        self.perf_counters = self.options.perf_counters
        self.fast_sweep = self.options.fast_sweep
        endpoint = Endpoint(
            host=uri.host,
            port=uri.port or (443 if https else 80),
            https=https,
            timeout=opts.timeout,
            ssl_context=make_ssl_context(verify=opts.verify, ca_file=opts.ca_file) if https else None,
        )
        self._link = VSphereLink(
            endpoint,
            username=uri.username,
            password=opts.password.get_secret_value(),
            page_size=page_size,
            uri=uri.redacted,
        )
        self.client: Client = self._link.client
        try:
            root = self._call(lambda: find_root(self.client, uri.query, uri=uri.redacted))
            self._call(lambda: self.client.open_view(root))
        except BaseException:
            self._link.close()
            raise
        self._hosts: dict[str, str] = {}  # host moref → name
        self._morefs: dict[str, str] = {}  # VM id → moref
        self._balloon_targets = BalloonTargets(self.client, self._call, enabled=self.perf_counters)

    # -- plumbing --------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    @property
    def native(self) -> Any:
        """The pyvmomi ``vim.ServiceInstance``."""
        return self.client.si

    def close(self) -> None:
        if getattr(self, "_link", None) is not None:
            self._link.close()

    def _call(self, fn: Callable[[], T], *, vm: str | None = None) -> T:
        """``fn()`` through the link: faults mapped, an expired session logged in again once."""
        return self._link.call(self._link.where, lambda _client: fn(), vm=vm)

    # -- reading ---------------------------------------------------------------------------

    def _sweep(self, paths: Sequence[str], vms: list[VM] | None) -> list[tuple[str, dict[str, Any]]]:
        """VM rows ``(moref id, props)`` for every VM (hosts' names in the same call) or ``vms``."""
        if vms is None:
            return self._sweep_view(paths, ("name",))[0]
        c = self.client
        refs = [self._ref(vm) for vm in vms]
        # the VMs' hosts (their names) come in the same answer, through runtime.host
        spec_props = {vim.VirtualMachine: paths, vim.HostSystem: ["name"]}
        spec = c.objects_filter(refs, spec_props, follow=(vim.VirtualMachine, "runtime.host"))
        # a VM removed since it was named fails the whole call: name it when it is the only one
        rows = self._call(lambda: c.retrieve(spec), vm=vms[0].name if len(vms) == 1 else None)
        by_moref: dict[str, tuple[str, dict[str, Any]]] = {}
        for ref, values in rows:
            if isinstance(ref, vim.HostSystem):
                self._hosts[ref._moId] = entity_name(values, ref._moId)
            else:
                by_moref[ref._moId] = (ref._moId, values)
        missing = [vm for vm, ref in zip(vms, refs, strict=True) if ref._moId not in by_moref]
        if missing:
            raise VMNotFoundError(f"VM {missing[0].name!r} no longer exists", vm=missing[0].name)
        vm_rows = [by_moref[ref._moId] for ref in refs]
        for vm, (moid, values) in zip(vms, vm_rows, strict=True):
            if values.get(MISSING):
                raise unreadable_error(self._link.uri, vm.name, values[MISSING])
            self._morefs[self._id(moid, values)] = moid
        return vm_rows

    def _sweep_view(
        self, vm_paths: Sequence[str], host_paths: Sequence[str]
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
        """Every VM's and every host's rows ``(moref id, props)`` in the view: one request (and
        its pages). No ``vm_paths``: hosts only.

        The fast path (:mod:`._fast`) unless ``fast_sweep=False``; both give the same values
        where it matters (``runtime.host`` may be a pyvmomi moref or its id, the allocation a
        pyvmomi object or an :class:`~._fast.Allocation`).
        """
        c = self.client
        vm_rows: list[tuple[str, dict[str, Any]]] = []
        host_rows: list[tuple[str, dict[str, Any]]] = []
        if self.fast_sweep:
            props = [("HostSystem", tuple(host_paths))]
            if vm_paths:
                props.insert(0, ("VirtualMachine", tuple(vm_paths)))
            for kind, moid, values in self._call(lambda: c.retrieve_view_fast(props)):
                if kind == "HostSystem":
                    host_rows.append((moid, values))
                elif kind == "VirtualMachine":
                    vm_rows.append((moid, values))
        else:
            spec: dict[Any, Sequence[str]] = {vim.HostSystem: list(host_paths)}
            if vm_paths:
                spec[vim.VirtualMachine] = vm_paths
            for ref, values in self._call(lambda: c.retrieve(c.view_filter(spec))):
                (host_rows if isinstance(ref, vim.HostSystem) else vm_rows).append((ref._moId, values))
        for moid, values in host_rows:
            self._hosts[moid] = entity_name(values, moid)
        for moid, values in vm_rows:
            self._morefs[self._id(moid, values)] = moid
        # a folder's view holds VMs, not the hosts they run on: name those once (then cached)
        self._learn_hosts(values.get("runtime.host") for _, values in vm_rows)
        return vm_rows, host_rows

    def _learn_hosts(self, hosts: Iterable[Any]) -> None:
        """Names of hosts not seen yet, in one call (they are cached: hosts rarely change).
        A host is a pyvmomi moref or, from the fast sweep, its id."""
        c = self.client
        ids = {h if isinstance(h, str) else h._moId for h in hosts if h is not None}
        unknown = [vim.HostSystem(i, c.stub) for i in sorted(ids - set(self._hosts))]
        if not unknown:
            return
        rows = self._call(lambda: c.retrieve(c.objects_filter(unknown, {vim.HostSystem: ["name"]})))
        for ref, props in rows:
            self._hosts[ref._moId] = entity_name(props, ref._moId)

    def _sweep_vms(self, paths: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """Every VM of the view with ``paths`` (no hosts: one page fewer per sweep)."""
        c = self.client
        if self.fast_sweep:
            found = self._call(lambda: c.retrieve_view_fast((("VirtualMachine", tuple(paths)),)))
            rows = [(moid, values) for kind, moid, values in found if kind == "VirtualMachine"]
        else:
            refs = self._call(lambda: c.retrieve(c.view_filter({vim.VirtualMachine: paths})))
            rows = [(ref._moId, values) for ref, values in refs]
        for moid, values in rows:
            self._morefs[self._id(moid, values)] = moid
        return rows

    def _ref(self, vm: VM) -> Any:
        """The VM's moref, from the VM itself, the cache, or (once) a fresh listing."""
        moref = vm.extra.get("moref") if vm.backend == self.name else None
        moref = moref or self._morefs.get(vm.id)
        if moref is None:
            self.list_vms()
            moref = self._morefs.get(vm.id)
        if moref is None:
            raise VMNotFoundError(f"no VM with id {vm.id!r}", vm=vm.name)
        return vim.VirtualMachine(str(moref), self.client.stub)

    @staticmethod
    def _id(moid: str, props: Mapping[str, Any]) -> str:
        return str(props.get("config.instanceUuid") or moid)

    def _vm(self, moid: str, props: Mapping[str, Any]) -> VM:
        host = props.get("runtime.host")
        host_id = None if host is None else str(getattr(host, "_moId", host))
        extra: dict[str, Any] = {"moref": moid}
        power = _POWER.get(str(props.get("runtime.powerState")), PowerState.UNKNOWN)
        connection = props.get("runtime.connectionState")
        if connection is not None and str(connection) != "connected":
            # disconnected (its host is), inaccessible, invalid or orphaned: vCenter's power
            # state is its last word, not the VM's (vSphere API, VirtualMachineConnectionState)
            power = PowerState.UNKNOWN
            extra["state"] = str(connection)
        if props.get("config.template"):
            extra["template"] = True
        return VM(
            id=self._id(moid, props),
            name=entity_name(props, moid),
            backend=self.name,
            host=self._hosts.get(host_id, host_id) if host_id is not None else None,
            power_state=power,
            extra=extra,
        )

    def vm_capabilities(self, vm: VM) -> Capabilities:
        """A template's memory cannot change (vSphere refuses to reconfigure a template but for
        its name and annotation; convert it to a VM first): nothing is settable."""
        if vm.extra.get("template"):
            return TEMPLATE_CAPABILITIES
        return CAPABILITIES

    def plan_config(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> ConfigUpdate:
        if vm.extra.get("template"):
            check_settable(TEMPLATE_CAPABILITIES, update.changed(), vm)
        return super().plan_config(vm, update, current)

    def list_vms(self) -> list[VM]:
        with collector_paused():  # see hvballoon._gc: a sweep allocates in bulk, without cycles
            return [self._vm(moid, props) for moid, props in self._sweep(LIST_PATHS, None)]

    def lookup_vms(self, refs: Sequence[str]) -> list[VM]:
        """vSphere has no look-up by name: one sweep of every VM's name and id (no hosts, no
        figures: one page per ``page_size`` VMs). Every VM it saw is returned, so the session
        remembers them all; the hosts' names are read once (then cached)."""
        with collector_paused():
            rows = self._sweep_vms(LIST_PATHS)
            self._learn_hosts(props.get("runtime.host") for _, props in rows)
            return [self._vm(moid, props) for moid, props in rows]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        with collector_paused():
            rows = self._sweep(STATS_PATHS, vms)
            at = datetime.now(timezone.utc)
            targets = self._balloon_targets.read([moid for moid, props in rows if running(props)])
            return [self._stats(moid, props, at, targets.get(moid)) for moid, props in rows]

    def get_stats_and_configs(self, vms: list[VM]) -> list[tuple[MemoryStats, MemoryConfig]]:
        """One ``RetrievePropertiesEx`` for the VMs' stats, configurations and hosts' names."""
        with collector_paused():
            rows = self._sweep(CHANGE_PATHS, vms)
            at = datetime.now(timezone.utc)
            targets = self._balloon_targets.read([moid for moid, props in rows if running(props)])
            return [
                (self._stats(moid, props, at, targets.get(moid)), self._config(moid, props, hot_add=False))
                for moid, props in rows
            ]

    def get_host_stats(self, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
        """Every host in the view, with every VM, in one PropertyCollector request (and pages).

        Each host's figures: :func:`._stats.host_figures`.
        """
        if vm_stats is None:
            with collector_paused():  # see hvballoon._gc: a sweep allocates in bulk, without cycles
                vm_rows, host_rows = self._sweep_view(STATS_PATHS, HOST_PATHS)
                at = datetime.now(timezone.utc)
                vm_stats = [self._stats(moid, props, at, None) for moid, props in vm_rows]
        else:
            host_rows = self._sweep_view((), HOST_PATHS)[1]
            at = datetime.now(timezone.utc)
        # the hosts the view's VMs run on but the view does not hold (a folder=): by reference
        ids = {name: moid for moid, name in self._hosts.items()}
        outside = {ids.get(s.vm.host, s.vm.host) for s in vm_stats if s.vm.host is not None}
        outside -= {moid for moid, _ in host_rows}
        if outside:
            c = self.client
            refs = [vim.HostSystem(moid, c.stub) for moid in sorted(outside)]
            found = self._call(lambda: c.retrieve(c.objects_filter(refs, {vim.HostSystem: HOST_PATHS})))
            host_rows = [*host_rows, *((ref._moId, props) for ref, props in found)]
            self._hosts.update((ref._moId, entity_name(props, ref._moId)) for ref, props in found)
        by_host = split_by_host(vm_stats, "")
        figures = {
            self._hosts[moid]: host_figures(moid, props, by_host.get(self._hosts[moid], []))
            for moid, props in host_rows
        }
        # a VM on no host (unregistered, orphaned) is on none of the hosts; a running one always is
        placed = [s for s in vm_stats if s.vm.host is not None]
        return from_sweep(placed, backend=self.name, figures=figures, collected_at=at)

    def _stats(self, moid: str, props: Mapping[str, Any], at: datetime, target: int | None) -> MemoryStats:
        return vm_stats(self._vm(moid, props), moid, props, at, target, mechanism=CAPABILITIES.mechanism)

    # -- configuration ---------------------------------------------------------------------

    def get_config(self, vm: VM) -> MemoryConfig:
        (config,) = self.get_configs([vm])
        return config

    def get_configs(self, vms: list[VM] | None = None) -> list[MemoryConfig]:
        """Every VM's configuration (one sweep), or those of ``vms`` (one read)."""
        with collector_paused():
            return [self._config(moid, props) for moid, props in self._sweep(CONFIG_PATHS, vms)]

    def _config(self, moid: str, props: Mapping[str, Any], *, hot_add: bool = True) -> MemoryConfig:
        """``hot_add``: the hot-add paths were read (a target's read does not: not known)."""
        alloc = props.get("config.memoryAllocation")
        shares = getattr(alloc, "shares", None)
        limit = limit_mb(alloc)
        reservation = getattr(alloc, "reservation", None)
        level = str(shares.level) if shares is not None and shares.level is not None else None
        locked = props.get("config.memoryReservationLockedToMax")
        return MemoryConfig(
            vm=self._vm(moid, props),
            mechanism=CAPABILITIES.mechanism,
            maximum_bytes=mb(props.get("config.hardware.memoryMB")),
            reservation_bytes=mb(reservation),
            limit_bytes=mb(limit),
            shares=getattr(shares, "shares", None),
            shares_level=level if level in SHARES_LEVELS else None,
            memory_reservation_lock=bool(locked),
            balloon_cap_bytes=balloon_cap_bytes(props.get("config.extraConfig")),
            extra={"moref": moid, **_props.config_extra(props, hot_add=hot_add)},
        )

    # -- marks: extraConfig keys ------------------------------------------------------------

    def read_marks(self, key: str) -> Marks:
        """Every VM's ``extraConfig`` value of ``key``: one request over the view (and its
        pages), through pyvmomi (the fast sweep reads no option lists). A VM whose
        ``extraConfig`` the server would not give (in the answer's ``missingSet``: a permission
        fault, a VM being destroyed) or which has no configuration (one being created, or
        unreadable) is in ``unreadable``, with the error saying why: not "unmarked"."""
        c = self.client
        rows = self._call(
            lambda: c.retrieve(c.view_filter({vim.VirtualMachine: [*LIST_PATHS, "config.extraConfig"]}))
        )
        out: dict[str, str] = {}
        unreadable: dict[str, HVBalloonError] = {}
        for ref, props in rows:
            if not isinstance(ref, vim.VirtualMachine):
                continue
            vm_id = self._id(ref._moId, props)
            self._morefs[vm_id] = ref._moId
            why = _props.extra_config_unreadable(props, self._link.uri, entity_name(props, ref._moId))
            if why is not None:
                unreadable[vm_id] = why
                continue
            for option in props.get("config.extraConfig") or ():
                if option.key == key and str(option.value or ""):
                    out[vm_id] = str(option.value)
        return Marks(out, unreadable=unreadable)

    def write_mark(self, vm: VM, key: str, value: str | None) -> None:
        """One ``ReconfigVM_Task`` with the key (an empty value removes it, as vSphere says)."""
        self._reconfigure(vm, ConfigUpdate(), extra_config={key: value})

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        self._reconfigure(vm, ConfigUpdate(limit_bytes=target_bytes))

    def apply_targets(self, targets: Sequence[TargetRequest]) -> list[HVBalloonError | None]:
        """The allocations read fresh for all VMs in one request, then one ``ReconfigVM_Task``
        per VM (each carrying its whole allocation), all issued before any is awaited, then
        awaited together. A VM's fault (at the call or in its task) is its own."""
        out: list[HVBalloonError | None] = [None] * len(targets)
        refs: list[tuple[int, Any]] = []
        for i, t in enumerate(targets):
            try:
                refs.append((i, self._ref(t.vm)))
            except HVBalloonError as exc:
                out[i] = exc
        c = self.client
        where = c.endpoint.where

        def run() -> list[HVBalloonError | None]:
            answers = list(out)
            spec = c.objects_filter([r for _, r in refs], {vim.VirtualMachine: ["config.memoryAllocation"]})
            spec.reportMissingObjectsInResults = True
            read = {ref._moId: props for ref, props in c.retrieve(spec)}
            current = {moid: props.get("config.memoryAllocation") for moid, props in read.items()}
            unreadable = {moid: props[MISSING] for moid, props in read.items() if props.get(MISSING)}
            issued: list[tuple[int, Any]] = []
            for i, ref in refs:
                vm = targets[i].vm
                if ref._moId not in current:
                    answers[i] = VMNotFoundError(f"VM {vm.name!r} no longer exists", vm=vm.name)
                    continue
                if ref._moId in unreadable:  # sent without it, the allocation would be guessed
                    answers[i] = unreadable_error(self._link.uri, vm.name, unreadable[ref._moId])
                    continue
                alloc = _allocation(current[ref._moId], ConfigUpdate(limit_bytes=targets[i].target_bytes))
                try:
                    issued.append((i, ref.ReconfigVM_Task(spec=vim.vm.ConfigSpec(memoryAllocation=alloc))))
                except vim.fault.NotAuthenticated:
                    raise  # the whole call: log in again and send every move again (absolute)
                except Exception as exc:
                    error = ERRORS.map(exc, where, vm=vm.name, uri=self._link.uri)
                    error.__cause__ = exc
                    answers[i] = error
            ends = c.wait_for_tasks([task for _, task in issued], self.opts.timeout)
            for (i, _task), end in zip(issued, ends, strict=True):
                if end is not None:
                    error = (
                        end if isinstance(end, HVBalloonError) else ERRORS.map(end, where, uri=self._link.uri)
                    )
                    error.with_context(vm=targets[i].vm.name)
                    if error is not end:
                        error.__cause__ = end
                    answers[i] = error
            return answers

        return self._call(run) if refs else out

    def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        self._reconfigure(vm, plan)

    def _reconfigure(
        self, vm: VM, plan: ConfigUpdate, *, extra_config: Mapping[str, str | None] | None = None
    ) -> None:
        """One ``ReconfigVM_Task`` carrying every change of ``plan`` and the ``extra_config``
        keys (a mark; ``None`` removes the key), all or nothing, then wait for it.

        The allocation is read fresh and sent back *whole*: a spec carrying only ``limit``
        would leave reservation and shares to the server's mercy.
        """
        ref = self._ref(vm)
        c = self.client

        def run() -> None:
            spec = vim.vm.ConfigSpec()
            if {"limit_bytes", "reservation_bytes", "shares", "shares_level"} & set(plan.changed()):
                rows = c.retrieve(c.objects_filter([ref], {vim.VirtualMachine: ["config.memoryAllocation"]}))
                if rows and rows[0][1].get(MISSING):
                    raise unreadable_error(self._link.uri, vm.name, rows[0][1][MISSING])
                current = rows[0][1].get("config.memoryAllocation") if rows else None
                spec.memoryAllocation = _allocation(current, plan)
            if plan.memory_reservation_lock is not None:
                spec.memoryReservationLockedToMax = plan.memory_reservation_lock
            if plan.maximum_bytes is not None:
                spec.memoryMB = plan.maximum_bytes // MiB
            extra: dict[str, str | None] = dict(extra_config or {})
            if plan.balloon_cap_bytes is not None:
                extra[BALLOON_CAP_KEY] = str(plan.balloon_cap_bytes // MiB)
            if extra:
                # "Keys with empty values will be removed" (VirtualMachineConfigSpec.extraConfig)
                spec.extraConfig = [vim.option.OptionValue(key=k, value=v or "") for k, v in extra.items()]
            task = ref.ReconfigVM_Task(spec=spec)
            c.wait_for_task(task, self.opts.timeout)

        self._call(run, vm=vm.name)


def _allocation(current: Any, plan: ConfigUpdate) -> Any:
    """The whole ``ResourceAllocationInfo`` to send: the current one with ``plan`` applied
    (a spec carrying only the limit would leave reservation and shares to the server's mercy)."""
    shares = getattr(current, "shares", None)
    if shares is not None and not isinstance(shares, vim.SharesInfo):  # read by the fast sweep
        shares = vim.SharesInfo(level=shares.level, shares=shares.shares)
    alloc = vim.ResourceAllocationInfo(
        reservation=getattr(current, "reservation", None),
        limit=getattr(current, "limit", None),
        shares=shares,
        expandableReservation=getattr(current, "expandableReservation", None),
    )
    if plan.limit_bytes is not None:
        alloc.limit = -(-plan.limit_bytes // MiB)
    elif plan.unlimited_limit:
        alloc.limit = _UNLIMITED
    if plan.reservation_bytes is not None:
        alloc.reservation = plan.reservation_bytes // MiB
    if plan.shares is not None or plan.shares_level is not None:
        # the kind gives both: the level, and its count (ESXi's own for a level)
        level = plan.shares_level or getattr(alloc.shares, "level", None) or "custom"
        count = plan.shares if plan.shares is not None else getattr(alloc.shares, "shares", None)
        alloc.shares = vim.SharesInfo(level=str(level), shares=count)
    return alloc
