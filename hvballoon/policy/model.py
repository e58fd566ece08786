"""The data the controller and the policies exchange: settings, the inputs snapshot, proposals
and the explained :class:`Decision` records. All frozen pydantic models, JSON-able.

A policy never sees a backend: it gets a :class:`Snapshot` (the host and one :class:`VMView`
per VM, already normalised across mechanisms) and answers with :class:`Proposal` objects. The
controller turns those into calls and one :class:`Decision` per VM and round.

>>> from hvballoon.policy.model import VMSettings
>>> VMSettings(floor="2GiB", self_managed=True).floor
2147483648
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from hvballoon.errors import HVBalloonError
from hvballoon.models import MAX_INT32, Mechanism, Timestamp
from hvballoon.units import format_sizes, parse_duration, parse_typed_target

__all__ = [
    "Action",
    "BufferProposal",
    "ControllerSettings",
    "Decision",
    "HostView",
    "Proposal",
    "Snapshot",
    "VMSettings",
    "VMView",
]


def _size(value: Any) -> Any:
    if value is None or isinstance(value, int):
        return value
    try:
        return parse_typed_target(value, allow_zero=True, what="size", noun="size", int_bytes=True)
    except HVBalloonError as exc:
        raise ValueError(exc.message) from None


def _seconds(value: float, info: ValidationInfo) -> float:
    try:
        return parse_duration(value, what=info.field_name or "duration")
    except HVBalloonError as exc:
        raise ValueError(exc.message) from None


Size = Annotated[int, BeforeValidator(_size)]
OptSize = Annotated[int | None, BeforeValidator(_size)]
#: A number of seconds: finite and at most :data:`~hvballoon.units.MAX_SECONDS` (ten years).
Seconds = Annotated[float, AfterValidator(_seconds)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VMSettings(_Frozen):
    """What the administrator says about one VM (matched by name or id).

    ``self_managed``: the application manages its own memory (a JVM heap, a database buffer
    pool); it looks idle to the guest OS but is not, so the controller never lowers its target.
    ``shares`` weighs the VM against the others when memory is shared out (Proxmox semantics,
    default 1000); ``priority`` (0-100, default 50) orders reclaim: low priority gives first.
    """

    exclude: bool = False
    floor: OptSize = Field(default=None, description="Never set a target below this.")
    ceiling: OptSize = Field(default=None, description="Never set a target above this.")
    shares: int = Field(default=1000, ge=0, le=50000)
    priority: int = Field(default=50, ge=0, le=100)
    self_managed: bool = False

    @model_validator(mode="after")
    def _range(self) -> VMSettings:
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ValueError("floor is above ceiling")
        return self


class ControllerSettings(_Frozen):
    """How the controller runs. Sizes accept ``"4GiB"`` spellings.

    ``host_memory_bytes``: the host's physical memory, as an override. Unset, the controller
    reads the host each round (:meth:`~hvballoon.Hypervisor.get_host_stats`: physical and used
    memory; on a session over several hosts each host's own, see :mod:`hvballoon.policy._hosts`).
    Set, the host is one and its use is derived from the VMs
    it sees: ``host_overhead_bytes`` plus, per running VM, ``host_consumed_bytes`` (else
    ``current_bytes``). ``host_reserve_bytes`` is memory the policies keep free on the host. ``policy_guard_rails`` lets the policy narrow
    the session's guard-rail margin for its lowers (see :meth:`Policy.guard_rails
    <hvballoon.policy.base.Policy.guard_rails>`). Rate limits: ``max_lower_bytes_per_round`` and
    ``max_raise_bytes_per_round`` cap one VM's move per round, ``max_changes_per_round`` the
    number of calls per round, ``min_seconds_between_lowers`` how soon a VM may be lowered again.
    Durations are seconds, finite and at most ten years (:data:`~hvballoon.units.MAX_SECONDS`).
    When a round's sweep fails, the next waits the pace the rounds kept (the interval, or the
    quick rounds' while the policy asked for them) doubled per failure in a row after the first,
    at most ``max_backoff_seconds``. However soon the pace asks for the next round, the wait
    after a round is at least ``min_wait_fraction`` of the round's own duration (a duty-cycle
    cap: a sweep of thousands of VMs that takes as long as the quick rounds' pace does not run
    back to back); after ``max_failed_rounds`` failures in a row (default: as
    many as fit in three minutes of that backoff) the controller gives back what it lowered.
    ``policy_options`` are the keyword options of the policy the controller runs (e.g.
    ``{"calm_seconds": "10m", "surge_fraction": 0.5}`` for ``hvballoon``), checked against that
    policy when the controller is built (:func:`~hvballoon.policy.base.policy_options`).
    """

    host_memory_bytes: OptSize = None
    host_overhead_bytes: Size = 0
    host_reserve_bytes: Size = 0
    interval_seconds: Seconds = Field(default=10.0, gt=0)
    fast_interval_seconds: Seconds | None = Field(
        default=1.0,
        gt=0,
        description="The shortest time between two rounds when the policy asks for quicker rounds "
        "(pressure building, a rise under way); None: every round waits interval_seconds.",
    )
    stats_period_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT32,
        description="The guest statistics period kept on the VMs whose backend can set it live "
        "(KVM, QMP); None: the policy's (hvballoon 1 s, proxmox 2 s, mom 5 s); 0: never change it.",
    )
    vms: dict[str, VMSettings] = Field(default_factory=dict)
    default_vm: VMSettings = Field(default_factory=VMSettings)
    max_lower_bytes_per_round: OptSize = None
    max_raise_bytes_per_round: OptSize = None
    max_changes_per_round: int | None = Field(default=None, ge=1)
    min_seconds_between_lowers: Seconds = Field(default=0.0, ge=0)
    min_wait_fraction: float = Field(
        default=1.0,
        ge=0,
        le=100,
        allow_inf_nan=False,
        strict=True,
        description="The duty-cycle cap: the wait after a round that read its sweep is at least this "
        "fraction of the round's own duration (its calls' attempts that timed out and the retry waits "
        "left out), whatever pace the interval or the policy's quick rounds ask for. 1 (the default): "
        "rounds take at most half of the time; 0: no cap.",
    )
    max_failed_rounds: int | None = Field(
        default=None, ge=1, description="Failed rounds in a row before giving back what was lowered."
    )
    max_backoff_seconds: Seconds = Field(
        default=60.0, gt=0, description="The longest wait after failed rounds (at least the interval)."
    )
    respect_guard_rails: bool = Field(
        default=True,
        description="Lower targets through the session's guard rails (False: force, for studies only).",
    )
    policy_guard_rails: bool = Field(
        default=True,
        description="Let the policy narrow the session's guard-rail margin for its own lowers "
        "(hvballoon: the absolute margin only, with a headroom it sizes from each VM's observed "
        "variability); False keeps the session's margins.",
    )

    policy_options: dict[str, bool | int | float | str | None] = Field(
        default_factory=dict,
        description="The policy's own keyword options (hvballoon: surge_fraction, calm_seconds, "
        "min_headroom_bytes, ...), checked against the policy the controller runs; sizes and "
        "durations accept '384MiB' and '10m' spellings.",
    )

    @model_validator(mode="after")
    def _fast(self) -> ControllerSettings:
        if any(not key.strip() for key in self.policy_options):
            raise ValueError("policy_options has an empty option name")
        if self.fast_interval_seconds is not None and self.fast_interval_seconds > self.interval_seconds:
            raise ValueError(
                f"fast_interval_seconds ({self.fast_interval_seconds:g} s, the quick rounds a policy may ask "
                f"for) is above interval_seconds ({self.interval_seconds:g} s): give a longer interval or a "
                "shorter fast_interval_seconds"
            )
        if self.host_memory_bytes is not None:
            if self.host_memory_bytes <= 0:
                raise ValueError(
                    "host_memory_bytes is the host's memory: above zero (leave it out to read the host)"
                )
            kept = self.host_overhead_bytes + self.host_reserve_bytes
            if kept >= self.host_memory_bytes:
                shown = format_sizes(
                    self.host_overhead_bytes, self.host_reserve_bytes, self.host_memory_bytes
                )
                raise ValueError(
                    f"host_overhead_bytes {shown[0]} and host_reserve_bytes {shown[1]} leave nothing of "
                    f"host_memory_bytes {shown[2]} for the VMs"
                )
        return self

    def for_vm(self, name: str, vm_id: str) -> VMSettings:
        return self.vms.get(name) or self.vms.get(vm_id) or self.default_vm


class HostView(_Frozen):
    """The host as the controller derives it (see :class:`ControllerSettings`)."""

    total_bytes: int = Field(ge=0)
    used_bytes: int = Field(ge=0)
    reserve_bytes: int = Field(default=0, ge=0)

    @property
    def free_bytes(self) -> int:
        return max(0, self.total_bytes - self.used_bytes)

    @property
    def free_fraction(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0


class VMView(_Frozen):
    """One VM, normalised across mechanisms, as a policy sees it.

    ``current_bytes`` is what the guest has now; ``target_bytes`` the value being steered
    (balloon target, ESXi limit, Dynamic Memory maximum). ``maximum_bytes`` is the most the
    controller may give it (the VM's maximum, capped by the VM's ceiling); ``minimum_bytes`` the
    least (the hypervisor's minimum or the VM's floor). ``used_bytes`` is what the guest uses
    excluding cache (or its demand); ``free_bytes`` what is entirely unused. ``can_lower`` /
    ``can_raise`` say what the live rules of the mechanism allow now.
    """

    id: str
    name: str
    mechanism: Mechanism
    running: bool = True
    stale: bool = False
    maximum_bytes: int = Field(ge=0)
    minimum_bytes: int = Field(default=0, ge=0)
    current_bytes: int = Field(ge=0)
    target_bytes: int = Field(ge=0)
    used_bytes: int | None = None
    free_bytes: int | None = None
    cache_bytes: int | None = None
    demand_bytes: int | None = None
    host_consumed_bytes: int | None = None
    swap_in_bytes: int | None = None
    major_faults: int | None = None
    guard_floor_bytes: int | None = Field(
        default=None, description="The guard-rail floor a lower is checked against (used + margin), if known."
    )
    can_lower: bool = True
    can_raise: bool = True
    buffer_percent: int | None = Field(
        default=None,
        ge=0,
        description="Dynamic Memory's buffer (the percent of its demand the host adds), on a VM that has one.",
    )
    settings: VMSettings = Field(default_factory=VMSettings)
    figures_note: str | None = Field(
        default=None,
        description=(
            "Why the guest's figures are missing, where known: what its configuration lacks (the "
            "kind says: a KVM domain without a balloon device), else the backend's stats note."
        ),
    )
    frees_nothing_note: str | None = Field(
        default=None,
        description=(
            "Why lowering it would give the host nothing back, only take memory from its guest (the "
            "kind says: a KVM domain with a device assigned through VFIO): ``can_lower`` is false "
            "and the controller never lowers it (``controller.balloon_frees_nothing``)."
        ),
    )

    @property
    def unused_bytes(self) -> int | None:
        """Guest memory entirely unused (MemFree): reported, else current − used − cache."""
        if self.free_bytes is not None:
            return self.free_bytes
        if self.used_bytes is None:
            return None
        return max(0, self.current_bytes - self.used_bytes - (self.cache_bytes or 0))


class Snapshot(_Frozen):
    """Everything a policy may look at in one round."""

    at_seconds: float = Field(description="The controller's clock (monotonic seconds).")
    interval_seconds: float = Field(default=10.0, gt=0)
    fast_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How soon the controller can run again when asked (None: never sooner).",
    )
    host: HostView
    vms: tuple[VMView, ...]

    def vm(self, vm_id: str) -> VMView:
        for v in self.vms:
            if v.id == vm_id:
                return v
        raise KeyError(vm_id)


class Proposal(_Frozen):
    """A policy's answer for one VM: a new target (or ``None`` to hold) and why."""

    vm_id: str
    target_bytes: int | None = Field(default=None, ge=0)
    rule: str = Field(description="A stable name of the rule that fired, e.g. 'mom.shrink'.")
    reason: str
    inputs: dict[str, Any] = Field(default_factory=dict)


class BufferProposal(_Frozen):
    """A policy's answer for one Dynamic Memory VM's buffer (Hyper-V ``Set-VMMemory -Buffer``,
    which may change while the VM runs): the percent of its demand the host should add on top
    of it, and why. Hyper-V's rules (:mod:`hvballoon.kinds.hyperv`) are checked by the session
    at the call."""

    vm_id: str
    buffer_percent: int = Field(ge=0)
    rule: str
    reason: str
    inputs: dict[str, Any] = Field(default_factory=dict)


Action = Literal["raise", "lower", "hold", "skip", "refused", "error"]


class Decision(_Frozen):
    """One VM in one round: what the controller did (or would do) and why.

    ``action``: ``raise``/``lower`` (a target was, or in a dry run would be, moved), ``hold``
    (nothing to do), ``skip`` (the VM is excluded, stopped, without stats, or its mechanism
    does not allow the move), ``refused`` (the session's guard rails or the backend's rules
    said no) and ``error`` (the call failed). ``rule`` names the rule that decided; ``inputs``
    holds the figures it used.
    """

    at: Timestamp
    round: int = Field(ge=0)
    policy: str
    vm: str
    vm_id: str
    mechanism: Mechanism
    action: Action
    before_bytes: int | None = None
    after_bytes: int | None = None
    proposed_bytes: int | None = None
    applied: bool = False
    dry_run: bool = False
    rule: str
    reason: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    error_code: str | None = None

    @property
    def delta_bytes(self) -> int:
        if self.before_bytes is None or self.after_bytes is None:
            return 0
        return self.after_bytes - self.before_bytes
