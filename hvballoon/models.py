"""The data hvballoon returns: frozen pydantic v2 models, the same for every backend.

Every quantity is an ``int`` of bytes (or seconds) with the unit in its name. A figure the
backend cannot know is ``None`` — never ``0``. Backend-specific leftovers live in ``extra``.

>>> from hvballoon.models import VM, PowerState
>>> vm = VM(id="42", name="web01", backend="fake", power_state=PowerState.RUNNING)
>>> vm.name, vm.power_state.value
('web01', 'running')

A plain ``model_dump()`` is already JSON data (times are ISO 8601 strings, sets sorted lists),
so ``json.dumps(model.model_dump())`` works and says what ``model.model_dump_json()`` says:

>>> import json
>>> json.dumps(vm.model_dump())
'{"id": "42", "name": "web01", "backend": "fake", "host": null, "power_state": "running", "extra": {}}'
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    computed_field,
    model_validator,
)

from hvballoon._modelkeys import suggest
from hvballoon.errors import InvalidRequestError
from hvballoon.units import parse_typed_target

__all__ = [
    "CONFIG_FIELDS",
    "MAX_INT32",
    "VM",
    "Capabilities",
    "Change",
    "ConfigKind",
    "ConfigOption",
    "ConfigUpdate",
    "HostStats",
    "MemoryConfig",
    "MemoryStats",
    "Mechanism",
    "OptionStyle",
    "PowerState",
    "SharesLevel",
    "Timestamp",
    "json_schemas",
]


#: The largest count or period a hypervisor takes as a whole number: libvirt's
#: ``virDomainSetMemoryStatsPeriod`` takes a C ``int`` and vSphere's ``SharesInfo.shares`` is an
#: ``xsd:int``, both 32 bits signed (2**31 - 1 seconds is 68 years).
MAX_INT32 = 2**31 - 1

#: ESXi's shares levels (vSphere SharesInfo.level).
SharesLevel = Literal["low", "normal", "high", "custom"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


def _iso8601(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


#: A time, serialized as an ISO 8601 string in every dump mode (so a plain dump is JSON data).
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso8601, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

#: A set of names, serialized as a sorted list in every dump mode (stable, JSON data).
NameSet = Annotated[
    frozenset[str],
    PlainSerializer(sorted, return_type=list[str]),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
]


class PowerState(str, Enum):
    """A VM's power state, normalised across backends."""

    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"


class Mechanism(str, Enum):
    """What "set a target" means on a backend (and per VM)."""

    #: KVM: the virtio-balloon target (libvirt ``setMemoryFlags``).
    BALLOON = "balloon"
    #: ESXi: ``memoryAllocation.limit``; ESXi inflates the balloon when the VM consumes more.
    LIMIT = "limit"
    #: Hyper-V Dynamic Memory: the host moves memory within minimum..maximum.
    DYNAMIC_MEMORY = "dynamic_memory"
    #: Hyper-V static-memory VM: runtime resize of the assigned memory.
    RUNTIME_RESIZE = "runtime_resize"
    #: Nothing can be moved on this VM.
    NONE = "none"


class VM(_Frozen):
    """A virtual machine as the backend knows it."""

    id: str = Field(description="Backend-unique id (libvirt UUID, vSphere instance UUID, Hyper-V VMId).")
    name: str
    backend: str = Field(description="The backend that reported it, e.g. 'kvm', 'esxi', 'fake'.")
    host: str | None = Field(default=None, description="The hypervisor host the VM runs on.")
    power_state: PowerState = PowerState.UNKNOWN
    extra: dict[str, Any] = Field(default_factory=dict)


class MemoryStats(_Frozen):
    """One VM's memory picture at ``collected_at``.

    ``current_bytes`` is what the guest has now (after the balloon, or Hyper-V's assigned
    memory); ``target_bytes`` is where the hypervisor is steering it (balloon target, ESXi
    limit, Hyper-V's assignment). ``guest_*`` figures come from the guest's own driver and are
    ``None`` until it has reported; ``stale`` says they are missing or too old to act on.

    ``used_bytes`` and ``pressure_ratio`` are derived (and serialized, so ``--json`` and Ansible
    have them); in input they are ignored and recomputed.

    >>> from datetime import datetime, timezone
    >>> vm = VM(id="1", name="sql01", backend="hyperv")
    >>> st = MemoryStats(vm=vm, mechanism=Mechanism.DYNAMIC_MEMORY,
    ...                  collected_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                  current_bytes=8 * 2**30, demand_bytes=6 * 2**30)
    >>> st.used_bytes == 6 * 2**30, st.pressure_ratio, st.model_dump()["collected_at"]
    (True, 0.75, '2026-01-01T00:00:00Z')
    """

    vm: VM
    mechanism: Mechanism
    collected_at: Timestamp
    configured_bytes: int | None = Field(default=None, ge=0, description="Configured (maximum) memory.")
    current_bytes: int | None = Field(default=None, ge=0, description="Memory the guest has now.")
    target_bytes: int | None = Field(default=None, ge=0, description="Target being steered to.")
    ballooned_bytes: int | None = Field(default=None, ge=0, description="Held by the balloon driver.")
    guest_total_bytes: int | None = Field(default=None, ge=0, description="Total memory the guest OS sees.")
    guest_used_bytes: int | None = Field(default=None, ge=0, description="Used by the guest (not cache).")
    guest_free_bytes: int | None = Field(default=None, ge=0, description="Entirely unused in the guest.")
    guest_available_bytes: int | None = Field(
        default=None, ge=0, description="Usable without swapping (free + reclaimable cache)."
    )
    guest_cache_bytes: int | None = Field(default=None, ge=0, description="Guest page cache.")
    swap_in_bytes: int | None = Field(default=None, ge=0, description="Guest swap-in, cumulative.")
    swap_out_bytes: int | None = Field(default=None, ge=0, description="Guest swap-out, cumulative.")
    major_faults: int | None = Field(default=None, ge=0, description="Guest major faults, cumulative.")
    host_consumed_bytes: int | None = Field(default=None, ge=0, description="Host memory backing the VM.")
    demand_bytes: int | None = Field(
        default=None, ge=0, description="Memory the guest needs (Hyper-V demand, ESXi active)."
    )
    swapped_bytes: int | None = Field(default=None, ge=0, description="Swapped out by the host.")
    compressed_bytes: int | None = Field(default=None, ge=0, description="Compressed by the host.")
    shared_bytes: int | None = Field(default=None, ge=0, description="Shared between VMs by the host.")
    guest_report_age_seconds: float | None = Field(
        default=None, ge=0, description="Age of the guest's last report; None if it never reported."
    )
    stale: bool = Field(default=False, description="Guest figures are missing or older than allowed.")
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # a dump read back carries the derived figures: they are recomputed, not trusted
        if isinstance(data, dict) and _DERIVED.intersection(data):
            return {k: v for k, v in data.items() if k not in _DERIVED}
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="What the guest needs, best figure first: guest used, else demand "
        "(Hyper-V has only demand). The figure to plan with on every backend."
    )
    @property
    def used_bytes(self) -> int | None:
        """What the guest needs, best figure first: guest used, else demand."""
        return self.guest_used_bytes if self.guest_used_bytes is not None else self.demand_bytes

    @computed_field(  # type: ignore[prop-decorator]
        description="Derived: demand (or guest used) / current memory. Above ~0.9 the guest is short."
    )
    @property
    def pressure_ratio(self) -> float | None:
        """Demand (else guest used) over current memory, to 4 decimals; None when unknown."""
        need = self.demand_bytes if self.demand_bytes is not None else self.guest_used_bytes
        if need is None or not self.current_bytes:
            return None
        return round(need / self.current_bytes, 4)


_DERIVED = frozenset(MemoryStats.model_computed_fields)


class MemoryConfig(_Frozen):
    """A VM's memory configuration: the range and policy knobs, per backend meaning.

    KVM: ``maximum_bytes`` (maxMemory), ``startup_bytes`` (configured memory), ``minimum_bytes``
    (memtune min_guarantee), ``deflate_on_oom``, ``free_page_reporting``. ESXi: ``maximum_bytes`` (memoryMB),
    ``reservation_bytes``, ``limit_bytes`` (``None`` = unlimited), ``shares`` (the count) and
    ``shares_level`` (low / normal / high: 5 / 10 / 20 per MB of memory, or custom),
    ``memory_reservation_lock`` (memoryReservationLockedToMax: the reservation follows the
    memory size), ``balloon_cap_bytes`` (sched.mem.maxmemctl). Hyper-V: ``dynamic``, ``startup_bytes``,
    ``minimum_bytes``, ``maximum_bytes``, ``buffer_percent``, ``priority``.
    """

    vm: VM
    mechanism: Mechanism
    startup_bytes: int | None = Field(default=None, ge=0)
    minimum_bytes: int | None = Field(default=None, ge=0)
    maximum_bytes: int | None = Field(default=None, ge=0)
    dynamic: bool | None = None
    buffer_percent: int | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=0)
    reservation_bytes: int | None = Field(default=None, ge=0)
    limit_bytes: int | None = Field(default=None, ge=0, description="None: unlimited or not applicable.")
    shares: int | None = Field(default=None, ge=0)
    shares_level: SharesLevel | None = None
    memory_reservation_lock: bool | None = None
    balloon_cap_bytes: int | None = Field(default=None, ge=0)
    deflate_on_oom: bool | None = None
    free_page_reporting: bool | None = None
    stats_period_seconds: int | None = Field(default=None, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict)


#: How a caller spells a config value: a size (``"4GiB"``, bytes), an integer, true/false, or
#: one of a few words.
ConfigKind = Literal["size", "int", "bool", "choice"]

#: What each place a config option appears in calls it: the Python API (``set_config``'s
#: keyword), the ``hvballoon config`` command, an Ansible module, the docs (CLI spelling).
OptionStyle = Literal["api", "cli", "ansible", "docs"]

#: How each style quotes a value.
_QUOTE: dict[str, str] = {"api": "'{}'", "cli": "'{}'", "ansible": "V({})", "docs": "`{}`"}
_KIND_WORDING: dict[str, str] = {
    "size": "a size",
    "int": "an integer",
    "bool": "true or false",
    "choice": "one of",
}


def _option(
    keyword: str,
    kind: ConfigKind,
    help: str,
    sample: object,
    *,
    cli: str | None = None,
    unlimited: bool = False,
    **constraints: Any,
) -> Any:
    """A :class:`ConfigUpdate` field that is also a ``set_config`` option: its keyword (the
    CLI's ``--option`` and the Ansible option are spelled from it, unless ``cli`` says
    otherwise), its kind (a size may also take ``unlimited``), its help text and a sample value
    in the field's own unit. The help text may quote a value in backticks and name another
    option as ``{keyword}``: each interface renders them in its own words
    (:meth:`ConfigOption.help_text`)."""
    option: dict[str, Any] = {"keyword": keyword, "kind": kind, "unlimited": unlimited}
    if cli is not None:
        option["cli"] = cli
    extra: dict[str, Any] = {"option": option}
    return Field(default=None, description=help, examples=[sample], json_schema_extra=extra, **constraints)


class ConfigUpdate(_Frozen):
    """The validated fields a ``set_config`` call asks to change (unset fields stay as they are).

    ``unlimited_limit=True`` removes an ESXi limit (``limit_bytes`` itself must then be unset).
    Only the shape of each value is checked here, and that a count fits the 32-bit integer the
    hypervisors take (:data:`MAX_INT32`: ESXi's shares, KVM's stats period); each hypervisor
    kind checks its own bounds (:mod:`hvballoon.kinds`), e.g. Hyper-V's buffer of 5–2000 %.

    It is also what crosses the plug-in surface (:mod:`hvballoon.backend`): the session hands
    the caller's update to ``Backend.plan_config``, which returns the *plan* — a
    ``ConfigUpdate`` of only the fields that change, derived ones included (ESXi's share count
    of a level) — and ``apply_config`` receives that plan. A backend reads attributes
    (``plan.maximum_bytes``, ``plan.unlimited_limit``) and :meth:`changed`.

    Each field is declared once, here, with what every interface needs to offer it (see
    :meth:`options`): ``set_config``'s keywords, the CLI's ``config`` options, the Ansible
    ``config`` module's options and the conformance suite's samples all come from it.

    >>> update = ConfigUpdate.from_keywords({"minimum": "1GiB", "dynamic": True, "limit": "unlimited"})
    >>> update.fields()
    {'minimum_bytes': 1073741824, 'dynamic': True, 'limit_bytes': None}
    >>> minimum = ConfigUpdate.options()[1]
    >>> minimum.field, minimum.keyword, minimum.kind, minimum.cli, minimum.name("ansible")
    ('minimum_bytes', 'minimum', 'size', '--minimum', 'minimum')
    """

    startup_bytes: int | None = _option(
        "startup", "size", "Hyper-V startup memory (a static VM's memory size).", 2 * 1024**3, gt=0
    )
    minimum_bytes: int | None = _option("minimum", "size", "Hyper-V Dynamic Memory minimum.", 1024**3, gt=0)
    maximum_bytes: int | None = _option(
        "maximum",
        "size",
        "The VM's maximum memory (KVM <memory>, ESXi memoryMB, Hyper-V Dynamic Memory maximum).",
        64 * 1024**3,
        gt=0,
    )
    dynamic: bool | None = _option(
        "dynamic",
        "bool",
        "Hyper-V Dynamic Memory on or off (the VM must be off).",
        True,
        cli="--dynamic/--static",
    )
    buffer_percent: int | None = _option(
        "buffer_percent", "int", "Hyper-V memory buffer, 5 to 2000 percent.", 25, ge=0
    )
    priority: int | None = _option("priority", "int", "Hyper-V memory weight, 0 to 100.", 60, ge=0)
    reservation_bytes: int | None = _option(
        "reservation", "size", "ESXi memory reservation (`0` for none).", 1024**3, ge=0
    )
    limit_bytes: int | None = _option(
        "limit",
        "size",
        "ESXi memory limit, or `unlimited` (also `-1`, as vSphere writes it) to remove it.",
        8 * 1024**3,
        unlimited=True,
        gt=0,
    )
    unlimited_limit: bool = False
    shares: int | None = _option(
        "shares",
        "int",
        "ESXi memory shares, a custom count (the level becomes `custom`; not with a {shares_level} of "
        "`low`, `normal` or `high`).",
        2000,
        gt=0,
        le=MAX_INT32,
    )
    shares_level: SharesLevel | None = _option(
        "shares_level",
        "choice",
        "ESXi memory shares as a level: `low`, `normal` (ESXi's default) or `high` are 5, 10 or 20 "
        "shares per MB of the VM's memory; `custom` keeps the current count, or takes {shares}.",
        "high",
    )
    memory_reservation_lock: bool | None = _option(
        "memory_reservation_lock",
        "bool",
        "ESXi memoryReservationLockedToMax (community.vmware's memory_reservation_lock): keep the "
        "reservation equal to the VM's memory size, and set it so now.",
        True,
    )
    balloon_cap_bytes: int | None = _option(
        "balloon_cap",
        "size",
        "ESXi balloon cap, sched.mem.maxmemctl: the most the balloon may take (`0`: no ballooning).",
        2 * 1024**3,
        ge=0,
    )
    deflate_on_oom: bool | None = _option(
        "deflate_on_oom", "bool", "KVM virtio-balloon deflate-on-OOM (the VM must be off).", True
    )
    free_page_reporting: bool | None = _option(
        "free_page_reporting",
        "bool",
        "KVM virtio-balloon free page reporting: the guest hands pages it frees back to the host "
        "(the VM must be off).",
        True,
    )
    stats_period_seconds: int | None = _option(
        "stats_period",
        "int",
        "KVM balloon statistics period in seconds (`0` turns the guest's reports off).",
        5,
        ge=0,
        le=MAX_INT32,
    )

    @model_validator(mode="after")
    def _one_limit(self) -> ConfigUpdate:
        if self.unlimited_limit and self.limit_bytes is not None:
            raise ValueError("give limit_bytes or unlimited_limit=True (no limit), not both")
        return self

    def fields(self) -> dict[str, Any]:
        """The requested changes as ``{MemoryConfig field: value}`` (unlimited limit → None)."""
        out = {k: v for k, v in self.model_dump(exclude={"unlimited_limit"}).items() if v is not None}
        if self.unlimited_limit:
            out["limit_bytes"] = None
        return out

    def changed(self) -> tuple[str, ...]:
        """The :class:`MemoryConfig` fields this update sets, in declaration order
        (``limit_bytes`` also when it removes the limit).

        >>> ConfigUpdate(priority=80, unlimited_limit=True).changed()
        ('priority', 'limit_bytes')
        """
        return tuple(self.fields())

    def applied_to(self, current: MemoryConfig) -> MemoryConfig:
        """``current`` with this update applied: the configuration a change leads to."""
        return current.model_copy(update=self.fields())

    def changes_from(self, current: MemoryConfig) -> ConfigUpdate:
        """This update without the fields that already have their value in ``current``.

        The values are this update's own (checked when it was built), so nothing is validated
        again: a plan a kind derived keeps exactly the figures the kind computed.
        """
        values = {k: v for k, v in self.fields().items() if getattr(current, k) != v}
        if "limit_bytes" in values and values["limit_bytes"] is None:
            del values["limit_bytes"]
            values["unlimited_limit"] = True
        return ConfigUpdate.model_construct(_fields_set=set(values), **values)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ConfigUpdate:
        """The update setting ``fields`` (``{MemoryConfig field: value}``, the inverse of
        :meth:`fields`: ``limit_bytes=None`` removes the limit), validated. Raises
        :class:`~hvballoon.errors.InvalidRequestError` naming a field that is not a config
        field or a value out of its bounds.

        >>> ConfigUpdate.from_fields({"limit_bytes": None, "priority": 80}).unlimited_limit
        True
        """
        data = dict(fields)
        if "limit_bytes" in data and data["limit_bytes"] is None:
            del data["limit_bytes"]
            data["unlimited_limit"] = True
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise InvalidRequestError(f"not a configuration field: {', '.join(unknown)}")
        return cls._validated(data)

    @classmethod
    def _validated(cls, data: Mapping[str, Any]) -> ConfigUpdate:
        try:
            return cls(**data)
        except ValidationError as exc:  # a bound of the field itself: named as the caller spelt it
            keywords = {o.field: o.keyword for o in cls.options()}
            problems = "; ".join(
                ": ".join(filter(None, (".".join(keywords.get(str(p), str(p)) for p in e["loc"]), e["msg"])))
                for e in exc.errors()
            )
            raise InvalidRequestError(
                f"invalid memory configuration: {problems} "
                f"(sizes above zero, counts not negative and at most {MAX_INT32})"
            ) from None

    @classmethod
    def options(cls) -> tuple[ConfigOption, ...]:
        """Every field a caller can set, as each interface offers it, in declaration order."""
        return _config_options()

    @classmethod
    def from_keywords(cls, values: Mapping[str, Any]) -> ConfigUpdate:
        """The update ``set_config(**values)`` asks for, from what a caller typed: sizes parsed
        (``"4GiB"``, bytes; ``limit="unlimited"``), integers, booleans and choices checked.
        ``None`` means "leave as it is". Raises :class:`~hvballoon.errors.InvalidRequestError`
        (or its :class:`~hvballoon.errors.InvalidSizeError`) naming the option.

        >>> ConfigUpdate.from_keywords({"priority": "high"})
        Traceback (most recent call last):
        ...
        hvballoon.errors.InvalidRequestError: priority must be an integer, got 'high'
        """
        by_keyword = {o.keyword: o for o in cls.options()}
        unknown = sorted(set(values) - set(by_keyword), key=str)
        if unknown:
            named = ", ".join(f"{k}{suggest(str(k), by_keyword)}" for k in unknown)
            raise InvalidRequestError(
                f"unknown config option(s) {named}; accepted: {', '.join(by_keyword)}",
                details={"unknown": [str(k) for k in unknown], "accepted": list(by_keyword)},
            )
        data: dict[str, Any] = {}
        for keyword, value in values.items():
            if value is not None:
                data.update(by_keyword[keyword].parse(value))
        return cls._validated(data)


@dataclass(frozen=True)
class ConfigOption:
    """One :class:`ConfigUpdate` field as a caller sets it (read from the field's declaration)."""

    #: The field of :class:`ConfigUpdate` and :class:`MemoryConfig`, e.g. ``"minimum_bytes"``.
    field: str
    #: ``set_config``'s keyword and the Ansible option, e.g. ``"minimum"``.
    keyword: str
    kind: ConfigKind
    #: The help text, with values in backticks and ``{keyword}`` marks (see :meth:`help_text`).
    help: str
    #: A value in the field's own unit (bytes for a size) that the field accepts.
    sample: Any
    #: The ``hvballoon config`` option: ``--minimum``, or ``--on/--off`` for a boolean.
    cli: str
    #: The lowest value accepted (sizes and integers): 0 or 1.
    lowest: int | None = None
    #: The highest value accepted, where the field has a bound of its own (an integer the
    #: hypervisor takes in 32 bits: :data:`MAX_INT32`).
    highest: int | None = None
    #: The words a ``choice`` accepts.
    choices: tuple[str, ...] = ()
    #: A size that also accepts ``"unlimited"`` (removing the limit).
    unlimited: bool = False

    def name(self, style: OptionStyle) -> str:
        """The option as ``style`` spells it: ``minimum=``, ``--minimum``, ``minimum``."""
        if style == "api":
            return f"{self.keyword}="
        if style == "ansible":
            return self.keyword
        return self.cli.split("/")[0]

    def help_text(self, style: OptionStyle) -> str:
        """The help text in the words of ``style``: quoted values as ``'0'`` (api, cli),
        ``V(0)`` (ansible) or `` `0` `` (docs); ``{keyword}`` as that option's name there."""
        quote = _QUOTE[style]
        names = {o.keyword: o.name(style) for o in _config_options()}
        ref = {"api": "{}", "cli": "{}", "ansible": "O({})", "docs": "`{}`"}[style]
        text = re.sub(r"`([^`]+)`", lambda m: quote.format(m[1]), self.help)
        return re.sub(r"\{(\w+)\}", lambda m: ref.format(names[m[1]]), text)

    def accepts(self, style: OptionStyle = "api") -> str:
        """What the option takes, in words: ``a size``, ``one of low, normal, high, custom``
        (on the command line, a boolean is a pair of flags: ``--dynamic/--static``)."""
        quote = _QUOTE[style]
        if self.kind == "bool" and style in ("cli", "docs"):
            return "a flag (on / off)"
        words = _KIND_WORDING[self.kind]
        if self.kind == "choice":
            return f"{words} {', '.join(quote.format(c) for c in self.choices)}"
        if self.unlimited:
            return f"{words} or {quote.format('unlimited')}"
        if self.highest is not None and self.lowest is not None:
            return f"{words} from {self.lowest} to {self.highest}"
        return words

    def parse(self, value: Any) -> dict[str, Any]:
        """``{ConfigUpdate field: value}`` for what a caller gave (not ``None``); raises
        :class:`~hvballoon.errors.InvalidRequestError` naming the option when it is malformed."""
        kw = self.keyword
        if self.kind == "size":
            if self.unlimited and (
                (isinstance(value, str) and value.strip().lower() in _UNLIMITED)
                # -1 as vSphere (and community.vmware's mem_limit) writes it, a YAML integer too
                or (type(value) is int and value == -1)
            ):
                return {"unlimited_limit": True}
            return {
                self.field: parse_typed_target(
                    value, what=kw, allow_zero=self.lowest == 0, noun="size", int_bytes=True
                )
            }
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise InvalidRequestError(f"{kw} must be true or false, got {value!r}")
            return {self.field: value}
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequestError(f"{kw} must be an integer, got {value!r}")
            return {self.field: value}
        if not isinstance(value, str) or value.strip().lower() not in self.choices:
            raise InvalidRequestError(
                f"{kw} must be one of {', '.join(self.choices)}, got {value!r}",
                details={"value": value if isinstance(value, str) else repr(value)},
            )
        return {self.field: value.strip().lower()}


#: What ``limit`` accepts for "no limit".
_UNLIMITED = frozenset({"unlimited", "none", "-1"})


@functools.cache
def _config_options() -> tuple[ConfigOption, ...]:
    out = []
    for name, info in ConfigUpdate.model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, dict) or "option" not in extra:
            continue  # unlimited_limit: spelled limit="unlimited"
        meta: Any = extra["option"]
        kind: ConfigKind = meta["kind"]
        lowest = highest = None
        for constraint in info.metadata:  # the field's own bounds: gt=0 (1 and up) or ge=0; le
            gt, ge, le = (getattr(constraint, k, None) for k in ("gt", "ge", "le"))
            if isinstance(gt, int):
                lowest = gt + 1
            elif isinstance(ge, int):
                lowest = ge
            elif isinstance(le, int):
                highest = le
        choices = tuple(
            word for arg in get_args(info.annotation) if get_origin(arg) is Literal for word in get_args(arg)
        )
        dashed = meta["keyword"].replace("_", "-")
        assert info.description is not None and info.examples, name
        out.append(
            ConfigOption(
                field=name,
                keyword=meta["keyword"],
                kind=kind,
                help=info.description,
                sample=info.examples[0],
                cli=meta.get("cli") or (f"--{dashed}/--no-{dashed}" if kind == "bool" else f"--{dashed}"),
                lowest=lowest,
                highest=highest,
                choices=choices,
                unlimited=meta["unlimited"],
            )
        )
    return tuple(out)


#: Fields of :class:`MemoryConfig` that ``set_config`` can change (backends declare which).
CONFIG_FIELDS: tuple[str, ...] = tuple(sorted(o.field for o in ConfigUpdate.options()))


class Capabilities(_Frozen):
    """What a backend (or one VM on it) can read and change. Declared data, not probing.

    ``set_live`` / ``set_offline``: names that can be changed while the VM runs / only when it
    is powered off; ``"target"`` stands for :meth:`~hvballoon.Hypervisor.set_target`, the rest
    are :class:`MemoryConfig` fields.
    """

    backend: str
    mechanism: Mechanism
    bulk_stats: bool = Field(description="get_stats() for all VMs costs one round trip.")
    readable: NameSet = Field(description="MemoryStats fields this backend fills.")
    set_live: NameSet = frozenset()
    set_offline: NameSet = frozenset()
    alignment_bytes: int = Field(default=1, gt=0, description="Targets are rounded up to this.")
    target_observable: bool = Field(
        default=True, description="wait_for_target can watch the target being reached."
    )
    marks: bool = Field(
        default=False,
        description="A VM keeps hvballoon's marks in its own configuration (set_mark / get_marks): "
        "what a controller changed can be found without its journal.",
    )
    notes: tuple[str, ...] = ()
    frozen_reason: str | None = Field(
        default=None,
        description="Why nothing of this VM can change (an ESXi template), and what to do about it: "
        "every refusal of a change to it says so.",
    )
    withheld: NameSet = Field(
        default=frozenset(),
        description="What the VM's kind can change but this VM cannot, for want of what it needs (a KVM "
        "domain without a balloon device: no live target, no stats period, no balloon settings): "
        "already left out of set_live / set_offline, refused with withheld_rule.",
    )
    withheld_rule: str | None = Field(
        default=None,
        description="The rule id (err.details['rule']) of a refusal of a withheld name.",
    )
    withheld_reason: str | None = Field(
        default=None,
        description="Why the withheld names cannot change on this VM, and what to do about it: a "
        "refusal of one says so.",
    )

    def can_set(self, name: str, *, running: bool) -> bool:
        """Whether ``name`` ("target" or a config field) can be set in this power state."""
        return name in self.set_live or (not running and name in self.set_offline)


class Change(_Frozen):
    """The outcome of a set operation: what was (or, with ``dry_run``, would be) changed.

    ``before``/``after`` hold the affected fields only, so Ansible's ``--diff`` falls out of it.
    """

    vm: VM
    operation: Literal["set_target", "set_config"]
    changed: bool
    dry_run: bool = False
    forced: bool = False
    mechanism: Mechanism
    before: dict[str, Any]
    after: dict[str, Any]
    requested: dict[str, Any] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class HostStats(_Frozen):
    """One hypervisor host's memory picture at ``collected_at``: what it has, what its running
    VMs were promised and hold, and how it copes (ballooned, swapped, shared).

    Host figures come from the hypervisor (``None`` where it cannot know them); the ``vm_*``
    figures, ``ballooned_bytes`` and ``vms_running`` are sums over the host's *running* VMs, taken
    from the same sweep ``get_stats()`` returns (a sum is ``None`` when a running VM's figure is
    unknown, and all are while a VM's power state is unknown: it may be running). ``used_bytes + free_bytes == physical_bytes`` whenever all three are known.
    ``overcommit_ratio`` is derived: configured memory of the running VMs ÷ physical memory.

    >>> from datetime import datetime, timezone
    >>> GiB = 2**30
    >>> hs = HostStats(host="host01", backend="fake", collected_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                physical_bytes=120 * GiB, vm_configured_bytes=160 * GiB, vms_running=10)
    >>> hs.overcommit_ratio
    1.3333
    >>> HostStats.model_validate(hs.model_dump()) == hs   # the derived ratio is not an input
    True
    """

    host: str = Field(description="The hypervisor host's name (an ESXi host, the libvirt host, ...).")
    backend: str = Field(description="The backend that reported it, e.g. 'kvm', 'esxi', 'fake'.")
    collected_at: Timestamp
    physical_bytes: int | None = Field(default=None, ge=0, description="Physical memory of the host.")
    free_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Memory the host can hand out without reclaiming any from its VMs: unused, plus "
        "the page cache it can drop where the backend tells them apart.",
    )
    used_bytes: int | None = Field(default=None, ge=0, description="physical_bytes - free_bytes.")
    hypervisor_overhead_bytes: int | None = Field(
        default=None, ge=0, description="Memory the hypervisor spends besides guest memory, where known."
    )
    swap_total_bytes: int | None = Field(default=None, ge=0, description="The host's swap space.")
    swap_used_bytes: int | None = Field(
        default=None, ge=0, description="Memory the host has swapped out (VM memory, or its page files)."
    )
    shared_bytes: int | None = Field(
        default=None, ge=0, description="Memory saved by page sharing (KSM, ESXi transparent page sharing)."
    )
    ballooned_bytes: int | None = Field(
        default=None, ge=0, description="Held by the balloon drivers of the running VMs (their sum)."
    )
    vm_configured_bytes: int | None = Field(
        default=None, ge=0, description="What the running VMs were promised (sum of their configured memory)."
    )
    vm_current_bytes: int | None = Field(
        default=None, ge=0, description="What the running VMs have now (sum of their current memory)."
    )
    vms_running: int | None = Field(default=None, ge=0, description="Running VMs on the host.")
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _ignore_derived(cls, data: Any) -> Any:
        # a dump carries the computed ratio; it is derived, never an input
        if isinstance(data, dict) and "overcommit_ratio" in data:
            data = {k: v for k, v in data.items() if k != "overcommit_ratio"}
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="Derived: vm_configured_bytes / physical_bytes (4 decimals); above 1 the host is overcommitted."
    )
    @property
    def overcommit_ratio(self) -> float | None:
        if self.vm_configured_bytes is None or not self.physical_bytes:
            return None
        return round(self.vm_configured_bytes / self.physical_bytes, 4)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every public model (what ``--json`` output validates against)."""
    models: list[type[BaseModel]] = [VM, MemoryStats, MemoryConfig, Capabilities, Change, HostStats]
    return {m.__name__: m.model_json_schema(mode="serialization") for m in models}


def dumps(obj: BaseModel | list[BaseModel] | dict[str, Any], *, indent: int | None = 2) -> str:
    """JSON text for a model, a list of models or a plain dict (used by ``--json``)."""
    if isinstance(obj, BaseModel):
        data: Any = obj.model_dump(mode="json")
    elif isinstance(obj, list):
        data = [o.model_dump(mode="json") for o in obj]
    else:
        data = obj
    return json.dumps(data, indent=indent, sort_keys=False)
