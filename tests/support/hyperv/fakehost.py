"""A fake Hyper-V host behind the loopback WinRM peer: answers the backend's fixed scripts.

It is a :class:`~tests.support.winrm.server.Router` with one route per template of
:mod:`hvballoon.backends.hyperv._scripts`, each matching the template's *exact* text with only the
data line abstracted. It decodes the base64 JSON parameters and answers from a simulated world
(:class:`hvballoon.fake.world.World`, ``hyperv`` flavour) the way the real cmdlets would:
Get-VM/Get-VMMemory rows, Set-VMMemory with Hyper-V's own refusals, and the scripts' error
records (exit code 1).

The probe reports the world's physical memory as Get-VMHost's ``MemoryCapacity``. A static VM
resized at runtime beyond what the host has free is refused, as a host short of memory does.
Any other script falls through to the router's error: it does not interpret PowerShell.

It models the real host from its documented behaviour (shared/REFERENCE.md §6, Microsoft's
Set-VMMemory documentation and the decompiled cmdlet) and deliberately imports nothing of
hvballoon's rules (:mod:`hvballoon.kinds`), so a client-side check that drifts from the host is
caught. What Set-VMMemory refuses, it refuses with the same error record shape:

- ``-Buffer``, ``-MinimumBytes`` or ``-MaximumBytes`` when Dynamic Memory is off or is being
  turned off in the same call: InvalidArgument, "Setting maximum, minimum, and buffer settings
  requires Dynamic Memory to be enabled." (checked first, like the cmdlet's parameter check);
- sizes that are not multiples of 2 MB or are below 32 MB, a buffer outside 5–2000 or a
  priority outside 0–100;
- while the VM is not off: switching Dynamic Memory, a Dynamic Memory VM's startup size, a
  higher minimum or a lower maximum (InvalidOperation);
- minimum ≤ startup ≤ maximum with Dynamic Memory on.

A VM whose guest runs no integration services (the world's guest has no memory driver:
scenario ``balloon_driver: false``, or ``World.stop_balloon_driver``) reports MemoryDemand 0 and
an empty MemoryStatus while it runs: the guest tells the host nothing, and "Hyper-V cannot
adjust the memory dynamically to respond to changes in memory demand" (Microsoft's Best
Practices Analyzer, "Dynamic Memory is enabled but not responding on some virtual machines");
its MemoryAssigned is what the world holds it at.

Saved and Paused VMs are not off: Set-VMMemory takes only what it takes on a running VM there
(Dynamic Memory is switched "only when VM is in stopped state", REFERENCE.md §6). The Get-VM
rows of Off, Saved and Paused VMs have MemoryDemand 0 and an empty MemoryStatus (no guest runs
to report), and MemoryAssigned 0: Off and Saved VMs hold no memory on the host; what a real
host shows for a Paused VM, which still holds its memory, is not verified (the backend reads no
figure of a VM that does not run, so it does not reach the API).

Get-VM's ``State`` is the world's power state by name (Running, Off, Paused, Saved), or what a
test sets in :attr:`FakeHyperVHost.states` (any VMState name, e.g. ``RunningCritical``,
``Starting``, or a number); ``enums_as_numbers=True`` writes every State as its number, as
Windows PowerShell 5.1's ConvertTo-Json does for an enum that was not converted to a string
(VMState numbers of the current Hyper-V module, from its decompiled ``VMState``).

Like PowerShell 5.1 it writes a progress CLIXML record to stderr even on success, so a client
that judges by stderr fails.
"""

from __future__ import annotations

import collections
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from hvballoon.backends.hyperv._scripts import (
    HOST,
    PROBE,
    READ,
    SET_MEMORY,
    SET_TARGETS,
    Template,
    data_pattern,
)
from hvballoon.fake.scenario import Scenario, load_scenario
from hvballoon.fake.world import Guest, World
from hvballoon.models import ConfigUpdate
from tests.support.winrm.server import Router

__all__ = ["PROGRESS_CLIXML", "FakeHyperVHost", "hyperv_world"]

MiB = 1024**2
PROGRESS_CLIXML = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    "</TN></Obj></Objs>\r\n"
)
_STATES = {"running": "Running", "stopped": "Off", "paused": "Paused", "suspended": "Saved"}
#: enum VMState of the Hyper-V module (Windows Server 2019 and later; decompiled VMState.cs).
VM_STATE_NUMBERS = {
    "Other": 1, "Running": 2, "Off": 3, "Stopping": 4, "Saved": 6, "Paused": 9, "Starting": 10,
    "Reset": 11, "Saving": 32773, "Pausing": 32776, "Resuming": 32777, "FastSaved": 32779,
    "FastSaving": 32780, "ForceShutdown": 32781, "ForceReboot": 32782, "Hibernated": 32783,
    "ComponentServicing": 32784, "RunningCritical": 32785, "OffCritical": 32786,
    "StoppingCritical": 32787, "SavedCritical": 32788, "PausedCritical": 32789,
    "StartingCritical": 32790, "ResetCritical": 32791, "SavingCritical": 32792,
    "PausingCritical": 32793, "ResumingCritical": 32794, "FastSavedCritical": 32795,
    "FastSavingCritical": 32796,
}  # fmt: skip
_SET_ID = "{},Microsoft.HyperV.PowerShell.Commands.SetVMMemory"
_VIRT_EXC = "Microsoft.HyperV.PowerShell.VirtualizationException"
#: Set-VMMemory's message when buffer/minimum/maximum come without Dynamic Memory.
DM_REQUIRED = "Setting maximum, minimum, and buffer settings requires Dynamic Memory to be enabled."

Answer = tuple[str, str, int]


def hyperv_world(scenario: str | Scenario = "seed") -> World:
    """A fresh simulated world in the ``hyperv`` flavour."""
    loaded = load_scenario(scenario) if isinstance(scenario, str) else scenario
    return World(loaded, flavor="hyperv")


class HostRefusal(Exception):
    """What a cmdlet would throw: becomes the script's error record."""

    def __init__(self, error_id: str, category: str, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.record = {"id": error_id, "category": category, "type": exception_type, "message": message}


class FakeHyperVHost:
    """The handler for :class:`~tests.support.winrm.harness.WinRMServer`.

    ``world`` may be replaced between tests. ``calls`` counts answered scripts by template name;
    ``fail_next(template, record)`` makes the next run of a template fail with that error
    record; ``hyperv_module=False`` makes the probe report a host without the Hyper-V module;
    ``settle_seconds`` is how far the world's virtual clock moves after each Set-VMMemory;
    ``vmhost_readable=False`` makes the probe report no memory capacity (Get-VMHost refused);
    ``states`` maps a VM id to the ``State`` Get-VM reports for it (a name or a number);
    ``enums_as_numbers`` writes every ``State`` as its VMState number.
    """

    def __init__(self, world: World | None = None) -> None:
        self.world = world or hyperv_world()
        self.lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.hyperv_module = True
        self.settle_seconds = 60.0
        self.vmhost_readable = True
        self.states: dict[str, str | int] = {}
        self.enums_as_numbers = False
        self._failures: dict[str, list[dict[str, str]]] = {}
        self.router = Router()
        routes: list[tuple[Template, Callable[[Any], Any]]] = [
            (PROBE, self._probe),
            (READ, self._read),
            (SET_MEMORY, self._set),
            (HOST, self._host),
            (SET_TARGETS, self._set_targets),
        ]
        for template, function in routes:
            self.router.add(data_pattern(template), self._route(template, function))

    def __call__(self, script: str, *, stdin: bytes | None) -> Answer:
        return self.router(script, stdin=stdin)

    def fail_next(self, template: Template, record: dict[str, str]) -> None:
        with self.lock:
            self._failures.setdefault(template.name, []).append(record)

    def _route(self, template: Template, function: Callable[[Any], Any]) -> Callable[..., Answer]:
        def answer(match: re.Match[str], stdin: bytes | None) -> Answer:
            params = template.decode(match["data"])
            with self.lock, self.world.lock:
                self.calls[template.name] += 1
                scripted = self._failures.get(template.name)
                try:
                    if scripted:
                        raise HostRefusal(**_record_args(scripted.pop(0)))
                    result = function(params)
                except HostRefusal as refusal:
                    return _json({"error": refusal.record}), PROGRESS_CLIXML, 1
            return _json(result), PROGRESS_CLIXML, 0

        return answer

    # -- the cmdlets ----------------------------------------------------------------------------

    def row(self, g: Guest) -> dict[str, Any]:
        """One VM as Get-VM + Get-VMMemory report it (through the READ template's mapping)."""
        c = g.config
        running = g.running
        state: str | int = self.states.get(g.id, _STATES.get(g.power_state, "Other"))
        if self.enums_as_numbers and isinstance(state, str):
            state = VM_STATE_NUMBERS[state]
        # a guest without integration services (the world's guest has no memory driver: not
        # installed, turned off, or still booting) tells the host nothing of its demand: Get-VM
        # shows MemoryDemand 0 and an empty MemoryStatus while it runs
        reporting = running and g.balloon_driver
        return {
            "Id": g.id,
            "Name": g.name,
            "ComputerName": self.world.host.name,
            "State": state,
            "DynamicMemoryEnabled": bool(c["dynamic"]),
            "MemoryAssigned": g.current_bytes if running else 0,
            # what the guest needs, paged-out memory included (Dynamic Memory balances on it)
            "MemoryDemand": g.demand_bytes if reporting else 0,
            "MemoryStatus": ("OK" if g.current_bytes >= g.demand_bytes else "Warning") if reporting else "",
            "MemoryStartup": c["startup_bytes"],
            "MemoryMinimum": c["minimum_bytes"],
            "MemoryMaximum": c["maximum_bytes"],
            "Buffer": c["buffer_percent"],
            "Priority": c["priority"],
        }

    def _guests(self) -> list[Guest]:
        return [g for g in self.world.guests.values() if not g.crashed]

    def _probe(self, params: dict[str, Any]) -> dict[str, Any]:
        assert params == {}
        return {
            "host": self.world.host.name.upper(),
            "powershell": "5.1.17763.1",
            "hyperv": self.hyperv_module,
            # Get-VMHost's MemoryCapacity: the simulated host's physical memory
            "memory_capacity": (
                self.world.host.physical_bytes if self.hyperv_module and self.vmhost_readable else None
            ),
        }

    def _host(self, params: dict[str, Any]) -> dict[str, Any]:
        """Get-VMHost + Win32_OperatingSystem (+ Get-VM): the simulated host as Windows shows it.

        MemoryCapacity is bytes; FreePhysicalMemory and the paging-file sizes are whole
        kilobytes (WMI's "kilobytes" units), so the sub-KiB rest of the world's figures is lost,
        as on a real host. The page file is the world's host swap.
        """
        assert set(params) == {"vms"}
        w, h = self.world, self.world.host
        swapped = int(w.state.host_swapped.sum())
        return {
            "Name": h.name,
            "MemoryCapacity": h.physical_bytes,
            "FreePhysicalMemory": w.host_free_bytes // 1024,
            "SizeStoredInPagingFiles": h.swap_bytes // 1024,
            "FreeSpaceInPagingFiles": max(0, h.swap_bytes - swapped) // 1024,
            "VMs": [self.row(g) for g in self._guests()] if params["vms"] else [],
        }

    def _read(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        ids, names = params["ids"], params.get("names")
        if ids is None and names is None:
            return [self.row(g) for g in self._guests()]
        # PowerShell's -contains compares strings case-insensitively
        wanted_ids = {str(i).lower() for i in ids or ()}
        wanted_names = {str(n).lower() for n in names or ()}
        return [
            self.row(g)
            for g in self._guests()
            if g.id.lower() in wanted_ids or g.name.lower() in wanted_names
        ]

    def _set_targets(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """SET_TARGETS: per VM, Set-VMMemory in its own try (a refusal is that VM's error
        record): ``x`` the maximum, ``s`` the startup size, refused when Dynamic Memory is not
        what the field implies (switched since the VM was read). The record's ErrorIds are the
        script's, without categories (as it writes them)."""
        out: list[dict[str, Any]] = []
        for move in params["t"]:
            vm_id = str(move["i"])
            maximum = move.get("x") is not None
            try:
                self._guest_by_id(vm_id, tight=True)
                field = "maximum" if maximum else "startup"
                size = int(move["x" if maximum else "s"]) * MiB
                row = self._set({"id": vm_id, field: size, "dynamic_is": maximum}, settle=False, tight=True)
            except HostRefusal as refusal:
                out.append({"i": vm_id, "error": refusal.record})
                continue
            out.append(
                {
                    "i": vm_id,
                    "d": row["DynamicMemoryEnabled"],
                    "s": row["MemoryStartup"],
                    "x": row["MemoryMaximum"],
                }
            )
        self.world.advance(self.settle_seconds)  # the host settles the resizes together
        return out

    def _guest_by_id(self, vm_id: str, *, tight: bool = False) -> Guest:
        g = next((g for g in self._guests() if g.id.lower() == vm_id.lower()), None)
        if g is None:
            raise HostRefusal(
                "HVBalloonVMNotFound",
                "NotSpecified" if tight else "ObjectNotFound",
                "Microsoft.PowerShell.Commands.WriteErrorException",
                "no VM has this id" if tight else "no virtual machine has this id",
            )
        return g

    def _set(self, params: dict[str, Any], *, settle: bool = True, tight: bool = False) -> dict[str, Any]:
        """Set-VMMemory, with the refusals of a real host (so a client that skipped its own
        checks would see the host's error records)."""
        g = self._guest_by_id(str(params["id"]))
        c = g.config
        dynamic = bool(c["dynamic"])
        if params.get("dynamic_is") is not None and bool(params["dynamic_is"]) != dynamic:
            raise HostRefusal(
                "HVBalloonStateChanged",
                "NotSpecified" if tight else "InvalidOperation",
                "Microsoft.PowerShell.Commands.WriteErrorException",
                "Dynamic Memory switched since the VM was read"
                if tight
                else "Dynamic Memory was switched since the VM was read",
            )
        names = {
            "startup": "startup_bytes",
            "minimum": "minimum_bytes",
            "maximum": "maximum_bytes",
            "buffer": "buffer_percent",
            "priority": "priority",
            "dynamic": "dynamic",
        }
        changes = {names[k]: v for k, v in params.items() if k in names and v is not None}
        # the cmdlet's own parameter check comes first (SetVMMemory.ValidateParametersInternal)
        dynamic_after = bool(changes.get("dynamic", dynamic))
        if not dynamic_after and {"minimum_bytes", "maximum_bytes", "buffer_percent"} & set(changes):
            raise HostRefusal(_SET_ID.format("InvalidParameter"), "InvalidArgument", _VIRT_EXC, DM_REQUIRED)
        for key in ("startup_bytes", "minimum_bytes", "maximum_bytes"):
            if key in changes and (changes[key] % (2 * MiB) or changes[key] < 32 * MiB):
                raise HostRefusal(
                    _SET_ID.format("InvalidParameter"),
                    "InvalidArgument",
                    _VIRT_EXC,
                    f"{key} must be a multiple of 2 MB and at least 32 MB",
                )
        if not 5 <= changes.get("buffer_percent", 20) <= 2000 or not 0 <= changes.get("priority", 50) <= 100:
            raise HostRefusal(
                "ParameterArgumentValidationError,Microsoft.HyperV.PowerShell.Commands.SetVMMemory",
                "InvalidData",
                "System.Management.Automation.ParameterBindingValidationException",
                "argument out of range",
            )
        if g.power_state != "stopped":
            if "dynamic" in changes and changes["dynamic"] != dynamic:
                raise HostRefusal(
                    _SET_ID.format("InvalidOperation"),
                    "InvalidOperation",
                    _VIRT_EXC,
                    "Dynamic memory cannot be enabled or disabled while the virtual machine is running.",
                )
            if dynamic and changes.get("startup_bytes", c["startup_bytes"]) != c["startup_bytes"]:
                raise HostRefusal(
                    _SET_ID.format("InvalidOperation"),
                    "InvalidOperation",
                    _VIRT_EXC,
                    "The startup memory of a virtual machine with Dynamic Memory cannot be changed while it is running.",
                )
            if changes.get("minimum_bytes", c["minimum_bytes"]) > c["minimum_bytes"] or (
                changes.get("maximum_bytes", c["maximum_bytes"]) < c["maximum_bytes"]
            ):
                raise HostRefusal(
                    _SET_ID.format("InvalidOperation"),
                    "InvalidOperation",
                    _VIRT_EXC,
                    "The minimum can only be decreased and the maximum only increased while running.",
                )
        grow = changes.get("startup_bytes", 0) - g.current_bytes
        if "startup_bytes" in changes and g.running and not dynamic and grow > self.world.host_free_bytes:
            # A runtime resize needs the memory free on the host now.
            raise HostRefusal(
                _SET_ID.format("InvalidOperation"),
                "ResourceUnavailable",
                _VIRT_EXC,
                "Failed to modify device 'Memory': not enough memory in the system.",
            )
        merged = {**c, **changes}
        if merged["dynamic"] and not (
            merged["minimum_bytes"] <= merged["startup_bytes"] <= merged["maximum_bytes"]
        ):
            raise HostRefusal(
                _SET_ID.format("InvalidParameter"),
                "InvalidArgument",
                _VIRT_EXC,
                "minimum <= startup <= maximum does not hold",
            )
        self.world.set_config(g.id, ConfigUpdate.from_fields(changes))
        # The simulator moves memory at a finite rate on its virtual clock; a real host settles
        # a resize in seconds. Let the world settle, so the next read sees the change applied
        # (reads never move the clock, so consecutive reads agree).
        if settle:
            self.world.advance(self.settle_seconds)
        return self.row(g)


def _record_args(record: dict[str, str]) -> dict[str, str]:
    return {
        "error_id": record.get("id", ""),
        "category": record.get("category", ""),
        "exception_type": record.get("type", ""),
        "message": record.get("message", ""),
    }


def _json(document: Any) -> str:
    # The scripts escape every non-ASCII character; ensure_ascii does the same.
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"))
