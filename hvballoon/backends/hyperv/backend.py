"""The Hyper-V backend: PowerShell over WinRM, with pywinrm.

URI: ``hyperv://user@host[:port]/?transport=ntlm|kerberos|credssp|basic[&scheme=http]``.
HTTPS on port 5986 with certificate verification is the default; ``scheme=http`` (port 5985)
only when asked. The password comes from ``connect(password=…)`` or ``HVBALLOON_PASSWORD``;
``ca_file=`` names the CA that signed the host's WinRM certificate::

    import hvballoon

    with hvballoon.connect("hyperv://CORP%5Cadmin@hv01.corp.example/?transport=ntlm",
                           ca_file="/etc/pki/corp-ca.pem") as hv:
        for st in hv.get_stats():               # one PowerShell command for every VM
            print(st.vm.name, st.current_bytes, st.demand_bytes)

What "set a target" means depends on the VM (see :meth:`HyperVBackend.vm_capabilities`):

- **Dynamic Memory** (:attr:`~hvballoon.Mechanism.DYNAMIC_MEMORY`): the target is the VM's
  maximum; Hyper-V moves the assigned memory between minimum and maximum by demand. Unless the
  VM is off the maximum may only be raised and the minimum only lowered, and Dynamic Memory can
  be switched on or off only when the VM is off.
- **Static memory** (:attr:`~hvballoon.Mechanism.RUNTIME_RESIZE`): the target is the startup
  size, which Windows Server 2016+ resizes while the VM runs (the guest must support it).

Either way no VM setting caps a target: the ceiling (:meth:`HyperVBackend.target_ceiling`) is
the host's physical memory, read once at connect (``Get-VMHost``'s ``MemoryCapacity``).

Every rule comes from the Hyper-V kind (:mod:`hvballoon.kinds.hyperv`), the object the fake's
``hyperv`` flavour holds too, and is checked before anything is sent, so a refused change names
the rule and what is allowed instead of failing on the host. Get-VM's ``State`` — every
documented value, as a name or as PowerShell 5.1's number — is classified by the kind too: the
power state, ``VM.extra["state"]`` (Hyper-V's name) and ``VM.extra["health"]``. Many targets
(``set_targets``) go in one command (:data:`~hvballoon.backends.hyperv._scripts.SET_TARGETS`, 50 VMs fit
on a command line; more are split), each VM in its own ``try`` on the host; a VM the session
does not know is looked up by name or id in one filtered ``Get-VM``. Scripts are fixed templates whose parameters
travel as base64 JSON (:mod:`hvballoon.backends.hyperv._scripts`); native faults are mapped by one table
(:mod:`hvballoon.backends.hyperv._errors`); one shell is kept open per session
(:mod:`hvballoon.backends.hyperv._client`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import unquote

import winrm.transport as winrm_transport

from hvballoon.backend import Backend, ConnectOptions, TargetRequest, check_ca_file
from hvballoon.errors import (
    BackendError,
    BackendNotInstalledError,
    Hint,
    HVBalloonError,
    InvalidRequestError,
    InvalidURIError,
    PartialChangeError,
    VMNotFoundError,
)
from hvballoon.hoststats import host_stats
from hvballoon.kinds import HYPERV, Kind, Variant
from hvballoon.kinds.hyperv import NO_DEMAND_NOTE
from hvballoon.models import VM, Capabilities, ConfigUpdate, HostStats, MemoryConfig, MemoryStats, PowerState
from hvballoon.units import KiB, MiB

from . import SPEC
from ._client import ShellLink, ShellRunner
from ._errors import ERRORS, RemoteScriptError
from ._options import HyperVParameters
from ._scripts import HOST, PROBE, READ, SET_MEMORY, SET_TARGETS, fits

__all__ = ["DYNAMIC_CAPABILITIES", "STATIC_CAPABILITIES", "HyperVBackend"]

log = logging.getLogger("hvballoon.hyperv")

#: Up to this many VMs (and this many characters of ids and names) are filtered on the host; more
#: are read in bulk and filtered here: they travel on the command line, which cmd.exe limits to
#: 8,191 characters (24 GUIDs make about 6,900 of them).
MAX_IDS_PER_READ = 24
MAX_ID_CHARS_PER_READ = 1000


#: A Dynamic Memory VM: a target is the maximum (the Hyper-V kind's "dynamic" variant).
DYNAMIC_CAPABILITIES = HYPERV.capabilities(backend="hyperv", variant="dynamic")
#: A static-memory VM: a target is a runtime resize of the startup size (Windows Server 2016+).
STATIC_CAPABILITIES = HYPERV.capabilities(backend="hyperv", variant="static")

#: MemoryConfig field → SET_MEMORY parameter.
_CONFIG_PARAMS = {
    "dynamic": "dynamic",
    "startup_bytes": "startup",
    "minimum_bytes": "minimum",
    "maximum_bytes": "maximum",
    "buffer_percent": "buffer",
    "priority": "priority",
}
#: Get-VM / Get-VMMemory property → MemoryConfig field (what SET_MEMORY reads back).
_ROW_FIELDS = {
    "DynamicMemoryEnabled": "dynamic",
    "MemoryStartup": "startup_bytes",
    "MemoryMinimum": "minimum_bytes",
    "MemoryMaximum": "maximum_bytes",
    "Buffer": "buffer_percent",
    "Priority": "priority",
}


def _int(row: dict[str, Any], key: str) -> int | None:
    value = row.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


class HyperVBackend(Backend):
    """``hyperv://`` — Hyper-V through PowerShell over WinRM (pywinrm).

    Options come from :func:`hvballoon.connect`: ``password``, ``timeout`` (every request and
    every command), ``verify`` and ``ca_file`` (TLS). :attr:`native` is the
    ``winrm.protocol.Protocol``; the open shell's id is ``backend.runner.shell_id``.
    """

    name: ClassVar[str] = SPEC.name
    schemes: ClassVar[tuple[str, ...]] = SPEC.schemes
    #: Every target and configuration rule comes from the Hyper-V kind (hvballoon.kinds.hyperv).
    kind: Kind | None = HYPERV

    def __init__(self, opts: ConnectOptions) -> None:
        super().__init__(opts)
        uri = opts.uri
        self._uri = uri.redacted
        params = HyperVParameters.parse(uri.query, backend=self.name, uri=self._uri, scheme=uri.scheme)
        if not uri.host:
            raise InvalidURIError(f"a hyperv:// URI names a host: hyperv://user@host ({self._uri})")
        transport, scheme = params.transport, params.scheme
        self._check_transport_library(transport)
        username = unquote(uri.username) if uri.username else None
        if transport != "kerberos":
            if not username:
                raise InvalidURIError(
                    f"the {transport} transport needs a user: hyperv://user@host ({self._uri})", uri=self._uri
                )
            if opts.password is None:
                raise InvalidRequestError(
                    f"the {transport} transport needs a password", uri=self._uri, hint=Hint("password")
                )
        check_ca_file(opts.ca_file)
        if transport == "basic" and scheme == "http":
            log.warning(
                "Basic authentication over plain HTTP sends the password in clear text (%s)", self._uri
            )
        port = uri.port or (5986 if scheme == "https" else 5985)
        host = f"[{uri.host}]" if ":" in uri.host else uri.host
        self.transport = transport
        self.endpoint = f"{scheme}://{host}:{port}/wsman"
        self.runner = ShellRunner(
            self.endpoint,
            transport=transport,
            username=username,
            password=opts.password,
            verify=opts.verify,
            ca_file=opts.ca_file,
            timeout=opts.timeout,
        )
        self._link = ShellLink(self.runner, uri=self._uri, timeout=opts.timeout)
        try:
            self.host_info = self._run(PROBE, {})
            if not (isinstance(self.host_info, dict) and self.host_info.get("hyperv")):
                raise BackendError(
                    f"{uri.host} answers WinRM but has no Hyper-V PowerShell module "
                    "(Install-WindowsFeature Hyper-V-PowerShell)",
                    backend=self.name,
                    uri=self._uri,
                )
        except BaseException:
            self._link.close()
            raise
        #: The host's physical memory (Get-VMHost's MemoryCapacity, read once by the probe);
        #: ``None`` when the account could not read it — then no target ceiling is known.
        self.host_memory_bytes = _int(self.host_info, "memory_capacity") or None
        if self.host_memory_bytes is None:
            log.warning(
                "could not read the memory capacity of %s (Get-VMHost): targets have no ceiling", self._uri
            )

    @staticmethod
    def _check_transport_library(transport: str) -> None:
        needs = {
            "ntlm": ("HAVE_NTLM", "pywinrm (with requests-ntlm)"),
            "kerberos": ("HAVE_KERBEROS", "'pywinrm[kerberos]'"),
            "credssp": ("HAVE_CREDSSP", "'pywinrm[credssp]'"),
        }
        if transport in needs:
            flag, package = needs[transport]
            if not getattr(winrm_transport, flag, False):
                raise BackendNotInstalledError(
                    f"the {transport} transport needs {package}; run: pip install {package}",
                    backend="hyperv",
                    details={"install": f"pip install {package}"},
                )

    # -- plumbing --------------------------------------------------------------------------------

    def _run(self, template: Any, params: dict[str, Any], vm: str | None = None) -> Any:
        return self._link.call(
            f"the {template.name} script", lambda runner: runner.run(template, params), vm=vm
        )

    @property
    def native(self) -> Any:
        """The ``winrm.protocol.Protocol`` (its shell: ``runner.shell_id``)."""
        return self.runner.protocol

    def close(self) -> None:
        self._link.close()

    @property
    def capabilities(self) -> Capabilities:
        return DYNAMIC_CAPABILITIES

    def vm_capabilities(self, vm: VM) -> Capabilities:
        """Dynamic Memory VMs and static ones differ in mechanism and live rules."""
        dynamic = vm.extra.get("dynamic")
        if not isinstance(dynamic, bool):
            dynamic = bool(self.get_config(vm).dynamic)
        return DYNAMIC_CAPABILITIES if dynamic else STATIC_CAPABILITIES

    # -- reading ---------------------------------------------------------------------------------

    def _rows(self, ids: list[str] | None, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Get-VM rows: every VM, or (filtered on the host while the filter fits on the command
        line, else here by the caller) those with these ids or names."""
        asked = [*(ids or ()), *(names or ())]
        small = (ids is not None or names is not None) and len(asked) <= MAX_IDS_PER_READ
        if small and sum(len(i) + 3 for i in asked) <= MAX_ID_CHARS_PER_READ:
            rows = self._run(READ, {"ids": ids, "names": names})
        else:
            rows = self._run(READ, {"ids": None, "names": None})
        if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("Id") for r in rows):
            raise BackendError(
                "the host's VM list is not in the expected form", backend=self.name, uri=self._uri
            )
        return rows

    def _rows_for(self, vms: list[VM]) -> list[dict[str, Any]]:
        by_id = {str(r["Id"]).lower(): r for r in self._rows([v.id for v in vms])}
        out = []
        for vm in vms:
            row = by_id.get(vm.id.lower())
            if row is None:
                raise VMNotFoundError(
                    f"VM {vm.name!r} ({vm.id}) does not exist on the host",
                    vm=vm.name,
                    backend=self.name,
                    uri=self._uri,
                )
            out.append(row)
        return out

    def _vm(self, row: dict[str, Any]) -> VM:
        state = HYPERV.classify_state(row.get("State"))
        return VM(
            id=str(row["Id"]),
            name=str(row.get("Name") or ""),
            backend=self.name,
            host=str(row["ComputerName"]) if row.get("ComputerName") else None,
            power_state=state.power_state,
            extra={
                "state": state.name,
                "health": state.health,
                "dynamic": bool(row.get("DynamicMemoryEnabled")),
            },
        )

    def list_vms(self) -> list[VM]:
        return [self._vm(r) for r in self._rows(None)]

    def lookup_vms(self, refs: Sequence[str]) -> list[VM]:
        """One filtered Get-VM for the refs (as ids and as names; ids must look like GUIDs)."""
        ids = [r for r in refs if _guid_like(r)]
        names = list(refs)
        wanted_ids = {i.lower() for i in ids}
        wanted = set(names)
        return [
            self._vm(r)
            for r in self._rows(ids or None, names)
            if str(r["Id"]).lower() in wanted_ids or r.get("Name") in wanted
        ]

    def get_stats(self, vms: list[VM] | None = None) -> list[MemoryStats]:
        rows = self._rows(None) if vms is None else self._rows_for(vms)
        at = datetime.now(timezone.utc)
        return [self._stats(r, at) for r in rows]

    def get_configs(self, vms: list[VM] | None = None) -> list[MemoryConfig]:
        rows = self._rows(None) if vms is None else self._rows_for(vms)
        return [self._config(r) for r in rows]

    def get_stats_and_configs(self, vms: list[VM]) -> list[tuple[MemoryStats, MemoryConfig]]:
        """One command: Get-VM's row holds the figures and the configuration."""
        at = datetime.now(timezone.utc)
        return [(self._stats(r, at), self._config(r)) for r in self._rows_for(vms)]

    def get_host_stats(self, vm_stats: list[MemoryStats] | None = None) -> list[HostStats]:
        """The host in one command (:data:`~hvballoon.backends.hyperv._scripts.HOST`): Get-VMHost's
        MemoryCapacity (bytes) is the physical memory, Win32_OperatingSystem's FreePhysicalMemory
        (KB) the free memory, its paging-file figures (KB) the swap; and, unless ``vm_stats`` is
        given, every VM in the same command. Hyper-V shares no pages and Get-VM reports no
        balloon, so ``shared_bytes`` and ``ballooned_bytes`` are ``None``.
        """
        answer = self._run(HOST, {"vms": vm_stats is None})
        at = datetime.now(timezone.utc)
        if not isinstance(answer, dict) or not isinstance(answer.get("VMs"), list):
            raise BackendError(
                "the host's memory is not in the expected form", backend=self.name, uri=self._uri
            )
        if vm_stats is None:
            rows = answer["VMs"]
            if not all(isinstance(r, dict) and r.get("Id") for r in rows):
                raise BackendError(
                    "the host's VM list is not in the expected form", backend=self.name, uri=self._uri
                )
            vm_stats = [self._stats(r, at) for r in rows]
        name = str(answer.get("Name") or self.host_info.get("host") or self.opts.uri.host)
        kib = {
            k: _int(answer, k)
            for k in ("FreePhysicalMemory", "SizeStoredInPagingFiles", "FreeSpaceInPagingFiles")
        }
        free, paging, paging_free = (None if v is None else v * KiB for v in kib.values())
        figures: dict[str, Any] = {
            "physical_bytes": _int(answer, "MemoryCapacity") or None,
            "free_bytes": free,
            "swap_total_bytes": paging,
            "swap_used_bytes": max(0, paging - paging_free)
            if paging is not None and paging_free is not None
            else None,
        }
        # a hyperv:// connection is one host: every VM of the sweep is its
        return [host_stats(vm_stats, host=name, backend=self.name, collected_at=at, **figures)]

    def _stats(self, row: dict[str, Any], at: datetime) -> MemoryStats:
        vm = self._vm(row)
        dynamic = bool(row.get("DynamicMemoryEnabled"))
        maximum, startup = _int(row, "MemoryMaximum"), _int(row, "MemoryStartup")
        common: dict[str, Any] = {
            "vm": vm,
            "mechanism": _variant(dynamic).mechanism,
            "collected_at": at,
            # a static VM runs with its startup size; its minimum and maximum are leftovers
            "configured_bytes": maximum if dynamic else startup,
            "target_bytes": maximum if dynamic else startup,
            "extra": {"memory_status": row.get("MemoryStatus") or None, "dynamic": dynamic},
        }
        if vm.power_state is not PowerState.RUNNING:
            return MemoryStats(**common, stale=True)
        assigned = _int(row, "MemoryAssigned")
        # MemoryDemand is 0 until the guest's integration services report: unknown, not zero.
        demand = _int(row, "MemoryDemand") or None
        available = max(0, assigned - demand) if assigned is not None and demand is not None else None
        if demand is None:
            common["extra"]["stats_note"] = NO_DEMAND_NOTE
        return MemoryStats(
            **common,
            current_bytes=assigned,
            demand_bytes=demand,
            guest_available_bytes=available,
            stale=demand is None,
        )

    def _config(self, row: dict[str, Any]) -> MemoryConfig:
        dynamic = bool(row.get("DynamicMemoryEnabled"))
        return MemoryConfig(
            vm=self._vm(row),
            mechanism=_variant(dynamic).mechanism,
            dynamic=dynamic,
            startup_bytes=_int(row, "MemoryStartup"),
            minimum_bytes=_int(row, "MemoryMinimum"),
            maximum_bytes=_int(row, "MemoryMaximum"),
            buffer_percent=_int(row, "Buffer"),
            priority=_int(row, "Priority"),
        )

    def get_config(self, vm: VM) -> MemoryConfig:
        (config,) = self.get_configs([vm])
        return config

    # -- rules: the Hyper-V kind's, checked by the base class before anything is sent --------

    def target_ceiling(self, vm: VM, stats: MemoryStats, config: MemoryConfig) -> int | None:
        """The host's physical memory (2 MiB aligned, down), read once at connect; ``None``
        when the probe could not read it. See :meth:`hvballoon.kinds.HyperVKind.target_ceiling`."""
        return HYPERV.target_ceiling(vm, stats, config, host_memory_bytes=self.host_memory_bytes)

    # -- changing --------------------------------------------------------------------------------

    def apply_target(self, vm: VM, target_bytes: int) -> None:
        """The field the kind names for the VM: the maximum (Dynamic Memory) or the startup size
        (static). The host refuses the change if Dynamic Memory was switched since the VM was
        read (``dynamic_is``), so a stale VM never gets the wrong field."""
        dynamic = vm.extra.get("dynamic")
        if not isinstance(dynamic, bool):
            dynamic = bool(self.get_config(vm).dynamic)
        field = _variant(dynamic).target_field or "startup_bytes"
        self._set(vm, {_CONFIG_PARAMS[field]: target_bytes, "dynamic_is": dynamic}, {field: target_bytes})

    def apply_targets(self, targets: Sequence[TargetRequest]) -> list[HVBalloonError | None]:
        """As few commands as the command line allows (:data:`SET_TARGETS`: 50 VMs each): each
        VM's target in the field the kind names for it as it was read (the maximum or the startup
        size; the host refuses it if Dynamic Memory was switched since), set and read back on the
        host in its own ``try``, so one VM's refusal is its own error record and the others go."""
        out: list[HVBalloonError | None] = [None] * len(targets)
        dynamic = self._dynamic_flags([t.vm for t in targets])
        moves: list[tuple[int, dict[str, Any]]] = []
        for i, t in enumerate(targets):
            try:
                # the session checked already; a direct caller must not send an invalid size either
                HYPERV.check_sizes(t.vm, {"target_bytes": t.target_bytes}, what="target")
            except HVBalloonError as exc:
                out[i] = exc
                continue
            field = _variant(dynamic[i]).target_field or "startup_bytes"
            key = "x" if field == "maximum_bytes" else "s"
            moves.append((i, {"i": t.vm.id, key: t.target_bytes // MiB}))
        for chunk in self._chunks(moves):
            rows = self._run(SET_TARGETS, {"t": [move for _, move in chunk]})
            if (
                not isinstance(rows, list)
                or len(rows) != len(chunk)
                or not all(isinstance(r, dict) for r in rows)
            ):
                raise BackendError(
                    "the host's answer to the targets is not one record per VM",
                    backend=self.name,
                    uri=self._uri,
                )
            for (i, move), row in zip(chunk, rows, strict=True):
                out[i] = self._target_outcome(targets[i], "x" in move, row)
        return out

    def _dynamic_flags(self, vms: list[VM]) -> list[bool]:
        """Whether each VM uses Dynamic Memory, as it was read (one read for those not known)."""
        known = [vm.extra.get("dynamic") for vm in vms]
        unknown = [vm for vm, flag in zip(vms, known, strict=True) if not isinstance(flag, bool)]
        read = {c.vm.id: bool(c.dynamic) for c in self.get_configs(unknown)} if unknown else {}
        return [flag if isinstance(flag, bool) else read[vm.id] for vm, flag in zip(vms, known, strict=True)]

    def _chunks(self, moves: list[tuple[int, dict[str, Any]]]) -> list[list[tuple[int, dict[str, Any]]]]:
        """The moves in as few commands as fit on a command line (in order)."""
        chunks: list[list[tuple[int, dict[str, Any]]]] = []
        current: list[tuple[int, dict[str, Any]]] = []
        for move in moves:
            if current and not fits(SET_TARGETS, {"t": [m for _, m in (*current, move)]}):
                chunks.append(current)
                current = []
            current.append(move)
        if current:
            chunks.append(current)
        return chunks

    def _target_outcome(
        self, target: TargetRequest, maximum: bool, row: dict[str, Any]
    ) -> HVBalloonError | None:
        vm = target.vm
        record = row.get("error")
        if isinstance(record, dict):
            native = RemoteScriptError(
                SET_TARGETS.name,
                exit_code=1,
                error_id=str(record.get("id") or ""),
                category=str(record.get("category") or ""),
                exception_type=str(record.get("type") or ""),
                message=str(record.get("message") or ""),
            )
            error = ERRORS.map(native, f"the {SET_TARGETS.name} script", vm=vm.name, uri=self._uri)
            error.__cause__ = native
            return error
        if str(row.get("i", "")).lower() != vm.id.lower():
            return BackendError(
                f"the host answered for another VM than {vm.name!r}",
                backend=self.name,
                uri=self._uri,
                vm=vm.name,
            )
        key, field = ("x", "maximum_bytes") if maximum else ("s", "startup_bytes")
        return self._unapplied(vm, {field: target.target_bytes}, {field: _int(row, key)})

    def _unapplied(
        self, vm: VM, expected: dict[str, Any], read_back: dict[str, Any]
    ) -> PartialChangeError | None:
        """What the host accepted but reads back otherwise (``None``: everything landed)."""
        applied = {k: v for k, v in expected.items() if read_back.get(k) == v}
        missed = {k: v for k, v in expected.items() if k not in applied}
        if not missed:
            return None
        return PartialChangeError(
            f"Hyper-V accepted the change of {vm.name!r} but reads back different values for "
            f"{', '.join(sorted(missed))}",
            vm=vm.name,
            backend=self.name,
            uri=self._uri,
            details={
                "applied": applied,
                "not_applied": missed,
                "read_back": {k: read_back.get(k) for k in missed},
            },
        )

    def apply_config(self, vm: VM, plan: ConfigUpdate, current: MemoryConfig) -> None:
        """All changes in one Set-VMMemory call; the VM is read back in the same command."""
        changes = plan.fields()  # Set-VMMemory's parameters, by field, and what must read back
        params = {_CONFIG_PARAMS[k]: v for k, v in changes.items() if k in _CONFIG_PARAMS}
        self._set(vm, params, changes)

    def _set(self, vm: VM, params: dict[str, Any], expected: dict[str, Any]) -> None:
        # the session checked already; a direct caller must not send an invalid size either
        HYPERV.check_sizes(vm, {k: v for k, v in expected.items() if k.endswith("_bytes")})
        row = self._run(SET_MEMORY, {"id": vm.id, **params}, vm=vm.name)
        if not isinstance(row, dict):
            raise BackendError("the host's answer to Set-VMMemory is not a VM", backend=self.name, vm=vm.name)
        after = self._config(row)
        error = self._unapplied(vm, expected, {k: getattr(after, k) for k in expected})
        if error is not None:
            raise error


def _guid_like(text: str) -> bool:
    """Whether ``text`` could be a VM id (Get-VM's ids are GUIDs; a name is anything)."""
    hexdigits = text.replace("-", "").strip("{}")
    return len(hexdigits) == 32 and all(c in "0123456789abcdefABCDEF" for c in hexdigits)


def _variant(dynamic: bool) -> Variant:
    return HYPERV.variant_for(dynamic=dynamic)
