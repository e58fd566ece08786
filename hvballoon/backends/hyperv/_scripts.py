"""The fixed PowerShell scripts the Hyper-V backend runs, and how their parameters travel.

**No caller value is ever spliced into script source.** Every script is a module constant with one
placeholder, :data:`DATA_MARKER`, on a fixed line that decodes its parameters::

    $p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('<base64>')) | ConvertFrom-Json

The placeholder is replaced by the base64 of UTF-8 JSON, whose alphabet (``A-Z a-z 0-9 + / =``)
cannot close the single-quoted string, so a VM id or name made of quotes (including the
typographic ``‘ ’ ‚ ‛`` PowerShell also accepts), ``$()``, backticks, semicolons or newlines is
only ever data. :func:`render` checks the alphabet anyway before it substitutes.

A template that carries many VMs (:data:`SET_TARGETS`) compresses its JSON first (raw DEFLATE,
RFC 1951, which .NET's ``System.IO.Compression.DeflateStream`` reads): a command line holds only
8,191 characters, and the script travels as base64 of UTF-16, so every character of data costs
2⅔ of them. Compressed, some 50 VMs fit in one command; more are split (:func:`fits` says
whether a command fits before anything is sent).

Each script sets ``$ErrorActionPreference = 'Stop'`` and prints exactly one JSON document: the
result with exit code 0, or ``{"error": {...}}`` (the error record's FullyQualifiedErrorId,
category and exception type) with exit code 1. Non-ASCII characters in the output are written as
``\\uXXXX`` escapes, so the result survives any console codepage (the shell is opened with 65001
as well). PowerShell 5.1 writes progress records to stderr even on success: the exit code and the
JSON decide, never stderr.

>>> script = render(READ, {"ids": ["x'; Remove-VM *; '"], "names": None})
>>> "Remove-VM" in script, len(script) < 3000
(False, True)
>>> decode_data(data_of(READ, script))
{'ids': ["x'; Remove-VM *; '"], 'names': None}
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DATA_MARKER",
    "HOST",
    "MAX_COMMAND_LINE",
    "POWERSHELL_ARGS",
    "PROBE",
    "READ",
    "SET_MEMORY",
    "SET_TARGETS",
    "TEMPLATES",
    "Template",
    "command_line_length",
    "data_of",
    "decode_data",
    "encode_command",
    "encode_data",
    "fits",
    "render",
]

#: The placeholder of the data line; only base64 text ever replaces it.
DATA_MARKER = "@HVB_DATA@"

#: cmd.exe refuses longer command lines ("The command line is too long.").
MAX_COMMAND_LINE = 8191

#: How the script is started: no profile (no user code runs first), no prompts.
POWERSHELL_ARGS: tuple[str, ...] = ("-NoLogo", "-NoProfile", "-NonInteractive", "-EncodedCommand")
_EXECUTABLE = "powershell.exe"

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

# Written tight (they open every script, and a script's characters cost 2⅔ each on the command
# line): Out-Json prints one JSON document with non-ASCII escaped; Err is an error record.
_HEAD = """$ErrorActionPreference = 'Stop'
$ProgressPreference='SilentlyContinue'
function Out-Json($o){$j=ConvertTo-Json -InputObject $o -Depth 4 -Compress
[Console]::Out.Write([regex]::Replace($j,'[^\\x00-\\x7f]',{param($m) '\\u{0:x4}' -f [int][char]$m.Value}))}
function Err($e){[ordered]@{id=[string]$e.FullyQualifiedErrorId;category=[string]$e.CategoryInfo.Category;type=$e.Exception.GetType().FullName;message=[string]$e.Exception.Message}}
try {
"""

#: The data line: base64 of UTF-8 JSON, or of its raw DEFLATE compression.
_PLAIN_DATA = (
    f"$p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{DATA_MARKER}')) | ConvertFrom-Json\n"
)
_DEFLATED_DATA = (
    "$z=[IO.Compression.DeflateStream]::new([IO.MemoryStream]::new([Convert]::FromBase64String("
    f"'{DATA_MARKER}')),[IO.Compression.CompressionMode]::Decompress)\n"
    "$p=[IO.StreamReader]::new($z,[Text.Encoding]::UTF8).ReadToEnd()|ConvertFrom-Json\n"
)
_PROLOGUE = _HEAD + _PLAIN_DATA

_EPILOGUE = """Out-Json $r
exit 0
} catch {
Out-Json @{ error = Err $_ }
exit 1
}"""

# One VM as the scripts report it: Get-VM's memory properties plus Get-VMMemory's buffer and
# priority. Enums and GUIDs become strings (ConvertTo-Json would write the enum's number).
_ROW = """[ordered]@{ Id = $v.Id.ToString(); Name = $v.Name; ComputerName = $v.ComputerName; State = $v.State.ToString()
  DynamicMemoryEnabled = [bool]$v.DynamicMemoryEnabled; MemoryAssigned = $v.MemoryAssigned; MemoryDemand = $v.MemoryDemand
  MemoryStatus = [string]$v.MemoryStatus; MemoryStartup = $v.MemoryStartup; MemoryMinimum = $v.MemoryMinimum
  MemoryMaximum = $v.MemoryMaximum; Buffer = $m.Buffer; Priority = $m.Priority }"""


@dataclass(frozen=True)
class Template:
    """A fixed script: ``name`` for logs and errors, ``text`` with one :data:`DATA_MARKER`;
    ``deflated`` when its data line decompresses the JSON."""

    name: str
    text: str
    deflated: bool = False

    def __post_init__(self) -> None:
        if self.text.count(DATA_MARKER) != 1:
            raise ValueError(f"template {self.name} must hold exactly one data marker")

    def decode(self, data: str) -> Any:
        """The parameters back from this template's data line."""
        return decode_data(data, deflated=self.deflated)


#: Cheap check at connect time: who answers, which PowerShell, is the Hyper-V module there, and
#: how much memory the host has (Get-VMHost's MemoryCapacity, bytes; null if it cannot be read).
PROBE = Template(
    "probe",
    _PROLOGUE
    + """$c = @(Get-Command -Name 'Get-VM', 'Get-VMMemory', 'Set-VMMemory' -ErrorAction SilentlyContinue)
$cap = $null
if ($c.Count -eq 3) { try { $cap = [int64](Get-VMHost).MemoryCapacity } catch { $cap = $null } }
$r = [ordered]@{ host = $env:COMPUTERNAME; powershell = $PSVersionTable.PSVersion.ToString(); hyperv = ($c.Count -eq 3); memory_capacity = $cap }
"""
    + _EPILOGUE,
)

#: Every VM (``ids`` and ``names`` null), or the VMs whose Id is in ``ids`` or whose Name is in
#: ``names`` (PowerShell compares names case-insensitively; the caller keeps exact matches): one
#: command, one Get-VMMemory call.
READ = Template(
    "read",
    _PROLOGUE
    + """$vms = @(Get-VM)
if ($null -ne $p.ids -or $null -ne $p.names) { $vms = @($vms | Where-Object { $p.ids -contains $_.Id.ToString() -or $p.names -contains $_.Name }) }
$mem = @{}
if ($vms.Count) { foreach ($x in @(Get-VMMemory -VM $vms)) { $mem[$x.VMId.ToString()] = $x } }
$r = @(foreach ($v in $vms) { $m = $mem[$v.Id.ToString()]
"""
    + _ROW
    + """ })
"""
    + _EPILOGUE,
)

#: The host's memory and (``vms`` true) every VM, in one command. Get-VMHost's MemoryCapacity
#: is bytes; Win32_OperatingSystem's FreePhysicalMemory ("physical memory currently unused and
#: available"), SizeStoredInPagingFiles and FreeSpaceInPagingFiles are kilobytes (units
#: qualifier "kilobytes", Microsoft Learn, Win32_OperatingSystem class): the backend scales them.
HOST = Template(
    "host",
    _PROLOGUE
    + """$h = Get-VMHost
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$vms = @()
if ($p.vms) { $vms = @(Get-VM) }
$mem = @{}
if ($vms.Count) { foreach ($x in @(Get-VMMemory -VM $vms)) { $mem[$x.VMId.ToString()] = $x } }
$rows = @(foreach ($v in $vms) { $m = $mem[$v.Id.ToString()]
"""
    + _ROW
    + """ })
$r = [ordered]@{ Name = $h.Name; MemoryCapacity = [int64]$h.MemoryCapacity; FreePhysicalMemory = [int64]$os.FreePhysicalMemory
  SizeStoredInPagingFiles = [int64]$os.SizeStoredInPagingFiles; FreeSpaceInPagingFiles = [int64]$os.FreeSpaceInPagingFiles; VMs = $rows }
"""
    + _EPILOGUE,
)

#: One Set-VMMemory call for VM ``id`` (all changes at once), then the VM read back. With
#: ``dynamic_is`` nothing is changed unless Dynamic Memory is still in that state (a target is
#: the maximum of a Dynamic Memory VM and the startup size of a static one: the caller chose the
#: field from what it read).
SET_MEMORY = Template(
    "set_memory",
    _PROLOGUE
    + """$v = Get-VM -Id $p.id -ErrorAction SilentlyContinue
if (-not $v) { Write-Error -Message 'no virtual machine has this id' -Category ObjectNotFound -ErrorId 'HVBalloonVMNotFound' }
if ($null -ne $p.dynamic_is -and [bool]$v.DynamicMemoryEnabled -ne [bool]$p.dynamic_is) { Write-Error -Message 'Dynamic Memory was switched since the VM was read' -Category InvalidOperation -ErrorId 'HVBalloonStateChanged' }
$a = @{ VM = $v }
if ($null -ne $p.dynamic) { $a['DynamicMemoryEnabled'] = [bool]$p.dynamic }
if ($null -ne $p.startup) { $a['StartupBytes'] = [int64]$p.startup }
if ($null -ne $p.minimum) { $a['MinimumBytes'] = [int64]$p.minimum }
if ($null -ne $p.maximum) { $a['MaximumBytes'] = [int64]$p.maximum }
if ($null -ne $p.buffer) { $a['Buffer'] = [int32]$p.buffer }
if ($null -ne $p.priority) { $a['Priority'] = [int32]$p.priority }
Set-VMMemory @a
$v = Get-VM -Id $p.id
$m = Get-VMMemory -VM $v
$r = """
    + _ROW
    + "\n"
    + _EPILOGUE,
)

#: Many targets in one command: ``t`` is a list of ``{"i": VM id, "x" or "s": target in MiB}``:
#: ``x`` sets the maximum of a Dynamic Memory VM, ``s`` the startup size of a static one — the
#: field the Hyper-V kind names for the VM as it was read (sizes are 2 MiB multiples, so MiB is
#: exact and short). As in :data:`SET_MEMORY`, nothing is changed on a VM whose Dynamic Memory was
#: switched since. Each VM in its own try, then read back as ``{"i", "d": Dynamic Memory, "s":
#: startup, "x": maximum}`` (bytes); a VM's failure is its own error record, told by its ErrorId
#: (the table in :mod:`hvballoon.backends.hyperv._errors` matches it; no category is spent on it).
SET_TARGETS = Template(
    "set_targets",
    _HEAD
    + _DEFLATED_DATA
    # written tight: every character of the script costs 2⅔ on the command line
    + """$r=@(foreach($t in $p.t){try{
$v=Get-VM -Id $t.i -EA 0
if(!$v){Write-Error 'no VM has this id' -ErrorId HVBalloonVMNotFound}
$x=$null -ne $t.x
if([bool]$v.DynamicMemoryEnabled -ne $x){Write-Error 'Dynamic Memory switched since the VM was read' -ErrorId HVBalloonStateChanged}
if($x){Set-VMMemory -VM $v -MaximumBytes ([int64]$t.x*1MB)}else{Set-VMMemory -VM $v -StartupBytes ([int64]$t.s*1MB)}
$v=Get-VM -Id $t.i
@{i=$t.i;d=[bool]$v.DynamicMemoryEnabled;s=$v.MemoryStartup;x=$v.MemoryMaximum}
}catch{@{i=$t.i;error=Err $_}}})
"""
    + _EPILOGUE,
    deflated=True,
)

#: Every template, by name.
TEMPLATES: dict[str, Template] = {t.name: t for t in (PROBE, READ, SET_MEMORY, HOST, SET_TARGETS)}


def encode_data(params: dict[str, Any], *, deflated: bool = False) -> str:
    """The base64 of the parameters' UTF-8 JSON, raw-DEFLATE-compressed when ``deflated`` (what
    replaces :data:`DATA_MARKER`)."""
    raw = json.dumps(params, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if deflated:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # -15: no zlib header, as DeflateStream reads
        raw = packer.compress(raw) + packer.flush()
    return base64.b64encode(raw).decode("ascii")


def decode_data(data: str, *, deflated: bool = False) -> Any:
    """The parameters back from a data line's base64 (what the script's first lines do)."""
    raw = base64.b64decode(data, validate=True)
    if deflated:
        raw = zlib.decompress(raw, -15)
    return json.loads(raw.decode("utf-8"))


def fits(template: Template, params: dict[str, Any]) -> bool:
    """Whether ``template`` with ``params`` fits on one command line (nothing is sent)."""
    command, arguments = encode_command(render(template, params))
    return command_line_length(command, arguments) <= MAX_COMMAND_LINE


def render(template: Template, params: dict[str, Any]) -> str:
    """The script to run: the template with its data line filled in."""
    data = encode_data(params, deflated=template.deflated)
    if not _BASE64.fullmatch(data):  # cannot happen; the whole design rests on it, so check
        raise ValueError("encoded parameters are not plain base64")
    return template.text.replace(DATA_MARKER, data)


def data_pattern(template: Template) -> re.Pattern[str]:
    """A regex that matches exactly ``template`` with any base64 data (group ``data``)."""
    head, _, tail = template.text.partition(DATA_MARKER)
    return re.compile(re.escape(head) + r"(?P<data>[A-Za-z0-9+/]*={0,2})" + re.escape(tail), re.DOTALL)


def data_of(template: Template, script: str) -> str:
    """The base64 data of a rendered ``template`` (``ValueError`` if the script is not one)."""
    match = data_pattern(template).fullmatch(script)
    if match is None:
        raise ValueError(f"not a rendered {template.name} script")
    return match["data"]


def encode_command(script: str) -> tuple[str, list[str]]:
    """The command and arguments that run ``script`` (``-EncodedCommand``: base64 of UTF-16LE)."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return _EXECUTABLE, [*POWERSHELL_ARGS, encoded]


def command_line_length(command: str, arguments: list[str]) -> int:
    """Characters of the command line cmd.exe will see."""
    return len(command) + sum(1 + len(a) for a in arguments)
