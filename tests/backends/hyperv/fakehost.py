"""A fake Hyper-V host behind the loopback WinRM peer: answers the backend's fixed scripts.

It is a :class:`~tests.peers.winrm.server.Router` with one route per template of
:mod:`hvballoon_hyperv._scripts`, each matching the template's *exact* text with only the data
line abstracted. It decodes the base64 JSON parameters and answers from a simulated world
(:class:`hvballoon.fake.world.World`, ``hyperv`` flavour) the way the real cmdlets would:
Get-VM/Get-VMMemory rows, Set-VMMemory with Hyper-V's own refusals, and the scripts' error
records (exit code 1).

The probe reports the world's physical memory as Get-VMHost's ``MemoryCapacity``, so the
backend's target ceiling is the host's, not the fake backend's per-VM one (a VM's scenario
memory, which no single host-wide figure can equal when VMs differ in size). Where the two
differ — a static VM resized at runtime beyond what the simulator can back it with — the host
refuses the resize, as a host short of memory does. Any other script falls through to the router's error: it does not
interpret PowerShell.

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

from hvballoon_hyperv._scripts import PROBE, READ, SET_MEMORY, Template, data_pattern, decode_data

from hvballoon.fake.scenario import Scenario, load_scenario
from hvballoon.fake.world import Guest, World
from tests.peers.winrm.server import Router

__all__ = ["PROGRESS_CLIXML", "FakeHyperVHost", "hyperv_world"]

MiB = 1024**2
PROGRESS_CLIXML = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    "</TN></Obj></Objs>\r\n"
)
_STATES = {"running": "Running", "stopped": "Off", "paused": "Paused", "suspended": "Saved"}
_SET_ID = "{},Microsoft.HyperV.PowerShell.Commands.SetVMMemory"
_VIRT_EXC = "Microsoft.HyperV.PowerShell.VirtualizationException"

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
    """The handler for :class:`~tests.peers.winrm.harness.WinRMServer`.

    ``world`` may be replaced between tests. ``calls`` counts answered scripts by template name;
    ``fail_next(template, record)`` makes the next run of a template fail with that error
    record; ``hyperv_module=False`` makes the probe report a host without the Hyper-V module;
    ``settle_seconds`` is how far the world's virtual clock moves after each Set-VMMemory;
    ``vmhost_readable=False`` makes the probe report no memory capacity (Get-VMHost refused).
    """

    def __init__(self, world: World | None = None) -> None:
        self.world = world or hyperv_world()
        self.lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.hyperv_module = True
        self.settle_seconds = 60.0
        self.vmhost_readable = True
        self._failures: dict[str, list[dict[str, str]]] = {}
        self.router = Router()
        routes: list[tuple[Template, Callable[[Any], Any]]] = [
            (PROBE, self._probe),
            (READ, self._read),
            (SET_MEMORY, self._set),
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
            params = decode_data(match["data"])
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
        return {
            "Id": g.id,
            "Name": g.name,
            "ComputerName": self.world.host.name,
            "State": _STATES.get(g.power_state, "Other"),
            "DynamicMemoryEnabled": bool(c["dynamic"]),
            "MemoryAssigned": g.current_bytes if running else 0,
            "MemoryDemand": g.used_bytes if running else 0,
            "MemoryStatus": ("OK" if g.current_bytes >= g.used_bytes else "Warning") if running else "",
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

    def _read(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        ids = params["ids"]
        wanted = None if ids is None else {str(i).lower() for i in ids}
        return [self.row(g) for g in self._guests() if wanted is None or g.id.lower() in wanted]

    def _set(self, params: dict[str, Any]) -> dict[str, Any]:
        """Set-VMMemory, with the refusals of a real host (so a client that skipped its own
        checks would see the host's error records)."""
        g = next((g for g in self._guests() if g.id.lower() == str(params["id"]).lower()), None)
        if g is None:
            raise HostRefusal(
                "HVBalloonVMNotFound",
                "ObjectNotFound",
                "Microsoft.PowerShell.Commands.WriteErrorException",
                "no virtual machine has this id",
            )
        c = g.config
        dynamic = bool(c["dynamic"])
        names = {
            "startup": "startup_bytes",
            "minimum": "minimum_bytes",
            "maximum": "maximum_bytes",
            "buffer": "buffer_percent",
            "priority": "priority",
            "dynamic": "dynamic",
        }
        changes = {names[k]: v for k, v in params.items() if k in names and v is not None}
        if params.get("target") is not None:
            changes["maximum_bytes" if dynamic else "startup_bytes"] = params["target"]
        for key in ("startup_bytes", "minimum_bytes", "maximum_bytes"):
            if key in changes and changes[key] % (2 * MiB):
                raise HostRefusal(
                    _SET_ID.format("InvalidParameter"),
                    "InvalidArgument",
                    _VIRT_EXC,
                    f"{key} is not 2 MB aligned",
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
            if changes.get("minimum_bytes", c["minimum_bytes"]) > c["minimum_bytes"] or (
                changes.get("maximum_bytes", c["maximum_bytes"]) < c["maximum_bytes"]
            ):
                raise HostRefusal(
                    _SET_ID.format("InvalidOperation"),
                    "InvalidOperation",
                    _VIRT_EXC,
                    "The minimum can only be decreased and the maximum only increased while running.",
                )
        if (
            g.power_state != "stopped"
            and not dynamic
            and changes.get("startup_bytes", c["startup_bytes"]) > max(g.memory_bytes, c["startup_bytes"])
        ):
            # A runtime resize needs the memory now. The simulator backs a VM with at most its
            # scenario memory (the fake's target ceiling), so more is refused as a host short of
            # memory refuses it.
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
        self.world.set_config(g.id, changes)
        # The simulator moves memory at a finite rate on its virtual clock; a real host settles
        # a resize in seconds. Let the world settle, so the next read sees the change applied
        # (reads never move the clock, so consecutive reads agree).
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
