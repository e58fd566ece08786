"""The shapes of the ``hvballoon`` command's ``--json`` outputs, as frozen pydantic models.

The command builds each output from these models, so what it prints is what their JSON Schema
says (``hvballoon schema NAME`` prints it; :func:`output_schemas` returns them all). The data
models (:class:`~hvballoon.VM`, :class:`~hvballoon.MemoryStats`, …) are outputs too, as are
the auto-balloon controller's :class:`~hvballoon.policy.model.Decision` lines.

- ``backends``: a list of :class:`BackendInfo`
- ``vms URI``: a list of ``VM``; ``stats URI [VM…]``: a list of ``MemoryStats``
- ``stats URI URI… [VM…]``, ``stats -i FILE``: :class:`FleetStats`
- ``watch … --json``: one :class:`WatchSweep` per line
- ``set …``: ``Change``, with ``--wait`` :class:`WaitedChange`; ``set URI VM=SIZE…``:
  :class:`TargetsReport`
- ``config URI VM``: ``MemoryConfig``, with changes ``Change``
- ``capabilities URI [VM]``: ``Capabilities``; ``host URI``: a list of ``HostStats``
- ``scenarios``: a list of :class:`ScenarioInfo`
- ``autoballoon … --json``: one ``Decision`` per line, and at the end :class:`AutoballoonSummary`
  on stderr; ``autoballoon URI --check``: :class:`AutoballoonCheck`; ``autoballoon
  --check-settings FILE``: ``ControllerSettings``; ``release URI --json``: :class:`~hvballoon.policy.release.ReleaseReport`
- ``simulate … --json``: :class:`SimulationSummary`; ``fake advance … --json``: :class:`AdvanceResult`
- any failure: :class:`ErrorReport` (the exit code is not 0)

>>> sorted(output_schemas())[:4]
['AdvanceResult', 'AutoballoonCheck', 'AutoballoonSummary', 'BackendInfo']
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hvballoon.models import Change, HostStats, MemoryStats, Timestamp, json_schemas
from hvballoon.policy.release import ReleaseReport

__all__ = [
    "AdvanceResult",
    "AutoballoonCheck",
    "AutoballoonSummary",
    "BackendInfo",
    "ErrorReport",
    "FleetStats",
    "HintReport",
    "HostSweep",
    "ScenarioInfo",
    "SimulationEvent",
    "SimulationHost",
    "SimulationSummary",
    "SimulationVM",
    "TargetRecord",
    "TargetsReport",
    "WaitedChange",
    "WatchFleet",
    "WatchHost",
    "WatchSweep",
    "output_schemas",
]


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HintReport(_Output):
    """What to do about an error: its ``kind`` and the ``text`` in the command line's words."""

    kind: str
    text: str


class ErrorReport(_Output):
    """A failure (``HVBalloonError.to_dict``): printed instead of the output, exit code ≠ 0."""

    error: str = Field(description="The error's class name.")
    code: str = Field(description="The stable error code (see docs/errors.md).")
    message: str
    retryable: bool
    backend: str | None = None
    uri: str | None = Field(default=None, description="Redacted: never a password.")
    vm: str | None = None
    native_code: str | int | None = None
    details: dict[str, Any] = Field(default_factory=dict, description="Plain JSON figures.")
    hint: HintReport | None = None


class BackendInfo(_Output):
    """One backend: whether it is installed here, and the command that installs it."""

    name: str
    schemes: list[str]
    status: str = Field(description="installed, missing or broken")
    distribution: str | None = None
    version: str | None = None
    install: str
    problem: str | None = None


class ScenarioInfo(_Output):
    """One of the simulator's built-in scenarios (use it as ``fake://NAME``)."""

    name: str
    flavor: str
    vms: int = Field(ge=1)
    physical_bytes: int = Field(gt=0)
    promised_bytes: int = Field(gt=0)
    description: str


class WaitedChange(_Output):
    """``set … --wait``: the change, and the stats once the target was reached (where it cannot
    be observed: right after the change, with a warning in ``change.warnings``). ``interrupted``
    is true when Ctrl-C stopped the wait, or the sending of the target (``stats`` is then null);
    ``set URI VM SIZE --json`` without ``--wait`` prints it too when Ctrl-C stops it while the
    target is sent."""

    change: Change
    stats: MemoryStats | None
    interrupted: bool = False


class TargetRecord(_Output):
    """One VM of ``set URI VM=SIZE…``: as named, whether it got (or, in a dry run or a refused
    batch, would get) its target, whether it really moved, its change or its error, and the
    stats it reached (``--wait``)."""

    vm: str
    ok: bool
    changed: bool
    change: Change | None
    error: ErrorReport | None
    stats: MemoryStats | None


class TargetsReport(_Output):
    """``set URI VM=SIZE…``: one record per VM (in the order given) and what the whole came to.
    ``applied`` is false after a dry run and when a refusal stopped everything; ``error`` is the
    whole's (``partial_change`` when some VMs changed and others did not). ``interrupted`` is
    true when Ctrl-C stopped ``--wait`` (the targets were applied; a record's ``stats`` is
    null where its VM's memory had not been seen reaching its target) or the apply (a VM not
    sent: its change a dry run, with a warning saying so)."""

    ok: bool
    applied: bool
    changed: bool
    exit_code: int = Field(
        description="0, else the whole error's (12: a partial change); 130 when interrupted."
    )
    error: ErrorReport | None
    results: list[TargetRecord]
    interrupted: bool = False


class HostSweep(_Output):
    """One host's part of a sweep: its stats, or the error that stopped it."""

    uri: str = Field(description="Redacted: never a password.")
    backend: str | None
    ok: bool
    elapsed_seconds: float = Field(ge=0)
    stats: list[MemoryStats]
    error: ErrorReport | None


class FleetStats(_Output):
    """``stats`` over several hosts: every host's part, and the VMs named that no host has."""

    ok: bool
    exit_code: int = Field(description="0, else the first failed host's, else 7 for missing VMs.")
    hosts: list[HostSweep]
    missing_vms: list[str]


class WatchHost(HostSweep):
    """One host in a ``watch`` sweep: as :class:`HostSweep`, with the host's memory picture
    (``host_stats``: one per hypervisor host behind the URI) or the error that stopped it."""

    host_stats: list[HostStats]
    host_error: ErrorReport | None


class WatchFleet(FleetStats):
    """A sweep of ``watch``: as :class:`FleetStats`, each host with its memory picture."""

    hosts: list[WatchHost]  # type: ignore[assignment]


class WatchSweep(WatchFleet):
    """One line of ``watch --json``: a sweep's number and time, then as :class:`WatchFleet`."""

    sweep: int = Field(ge=1)
    at: Timestamp


class SimulationHost(_Output):
    physical_bytes: int
    promised_bytes: int
    min_free_bytes: int
    peak_reclaimed_bytes: int


class SimulationVM(_Output):
    configured_bytes: int
    peak_demand_bytes: int
    min_current_bytes: int
    peak_guest_swap_bytes: int
    oom_events: int = Field(ge=0)
    power_state: str


class SimulationEvent(_Output):
    t: float = Field(description="Simulated seconds since the start.")
    vm: str | None
    kind: str = Field(description="oom, panic, host_oom, vanished, crashed")
    message: str


class SimulationSummary(_Output):
    """``simulate --json``: the run's headline figures (VMs keyed by name; a name two VMs
    share is told apart as ``name#2``). The figures cover ``duration_seconds`` of simulated
    time: less than asked when ``interrupted`` (Ctrl-C stopped it early), more by
    ``overrun_seconds`` when the last controller round's own calls ran past it."""

    scenario: str
    flavor: str
    seed: int
    duration_seconds: float = Field(description="The simulated time the run covers, from its start.")
    requested_seconds: float | None = Field(
        default=None, description="The simulated time asked (--duration)."
    )
    overrun_seconds: float = Field(
        default=0.0,
        description="How far past the time asked the run went: a controller round is never cut short, "
        "and its own calls (a call timing out, the retries' waits) take simulated time.",
    )
    step_seconds: float
    host: SimulationHost
    vms: dict[str, SimulationVM]
    events: list[SimulationEvent]
    interrupted: bool = False
    policy: str | None = Field(default=None, description="The auto-balloon policy run (--policy), if any.")
    policy_options: dict[str, Any] = Field(
        default_factory=dict, description="The policy's own options given (--policy-option), converted."
    )
    rounds: int | None = Field(default=None, description="With --policy: the controller's rounds.")
    failed_rounds: int | None = Field(
        default=None,
        description="With --policy: the rounds whose sweep could not be read (a fault of the scenario: "
        "a call that timed out, a lost connection); the controller went on with the next round.",
    )


class AdvanceResult(_Output):
    """``fake advance --json``: how far the persisted world's clock moved, and where it is."""

    uri: str
    advanced_seconds: float
    now_seconds: float


class AutoballoonSummary(_Output):
    """``autoballoon --json``, on stderr when it ends: what the controller did. A failed round
    is one whose sweep could not be read (nothing was decided); ``moves_failed`` counts the
    ``error`` decisions; ``lowered_vms`` is what it still holds lowered (its journal says
    which), ``released`` the release it made on exit (``--release-on-exit``)."""

    uri: str = Field(description="Redacted: never a password.")
    policy: str
    policy_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The policy's own options given (settings, command line), converted.",
    )
    dry_run: bool
    rounds: int = Field(ge=0)
    failed_rounds: int = Field(ge=0)
    failed_by_code: dict[str, int] = Field(default_factory=dict)
    decisions: dict[str, int] = Field(default_factory=dict, description="Decisions by action.")
    targets_changed: int = Field(ge=0)
    moves_failed: int = Field(ge=0)
    reconnects: int = Field(ge=0)
    fail_open_releases: int = Field(ge=0)
    lowered_vms: int = Field(ge=0)
    journal: str | None = Field(default=None, description="The journal file (None: kept in memory).")
    released: ReleaseReport | None = Field(default=None, description="The release made on exit.")
    stopped_by: str | None = Field(default=None, description="SIGTERM or SIGINT, if a signal stopped it.")


class AutoballoonCheck(_Output):
    """``autoballoon URI --check --json``: the command connected and opened its journal; the
    settings' problems on this hypervisor (a VM named that does not exist, a floor above a VM's
    maximum) are listed, not fatal (``--strict`` makes them an error)."""

    uri: str = Field(description="Redacted: never a password.")
    policy: str
    policy_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The policy's own options given (settings, command line), converted.",
    )
    journal: str | None = Field(description="The journal file (None: kept in memory).")
    problems: list[str] = Field(default_factory=list)
    advice: list[str] = Field(
        default_factory=list,
        description="What would make ballooning on this hypervisor safer (Controller.advice): "
        "the VMs the policy may lower without KVM's deflate-on-OOM.",
    )


def output_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every ``--json`` output, by name (the data models included)."""
    return copy.deepcopy(_output_schemas())


@functools.cache
def _output_schemas() -> dict[str, dict[str, Any]]:
    # pydantic builds each schema anew (about 0.1 s for them all): built once per process
    from hvballoon.policy.model import ControllerSettings, Decision

    models: list[type[BaseModel]] = [
        AdvanceResult,
        AutoballoonCheck,
        AutoballoonSummary,
        BackendInfo,
        ControllerSettings,
        Decision,
        ErrorReport,
        FleetStats,
        ReleaseReport,
        ScenarioInfo,
        SimulationSummary,
        TargetsReport,
        WaitedChange,
        WatchSweep,
    ]
    schemas = json_schemas()
    schemas.update({m.__name__: m.model_json_schema(mode="serialization") for m in models})
    return dict(sorted(schemas.items()))
