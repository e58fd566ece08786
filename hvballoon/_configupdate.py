"""What ``set_config`` asks for (:class:`ConfigUpdate`) and how each interface spells its
options (:class:`ConfigOption`): the API's keywords, the ``hvballoon config`` command's flags,
the Ansible modules' options and the docs, all read from the fields' declarations.

:mod:`hvballoon.models` re-exports every public name here.

>>> ConfigUpdate.from_keywords({"minimum": "2GiB", "priority": 80}).changed()
('minimum_bytes', 'priority')
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from pydantic import Field, ValidationError, model_validator

from hvballoon._modelbase import MAX_INT32, Frozen, SharesLevel
from hvballoon._modelkeys import suggest
from hvballoon.errors import InvalidRequestError, InvalidSizeError
from hvballoon.units import parse_typed_target

if TYPE_CHECKING:
    from hvballoon.models import MemoryConfig

__all__ = ["CONFIG_FIELDS", "ConfigKind", "ConfigOption", "ConfigUpdate", "OptionStyle"]


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


class ConfigUpdate(Frozen):
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
    def from_keywords(cls, values: Mapping[str, Any], *, int_bytes: bool = True) -> ConfigUpdate:
        """The update ``set_config(**values)`` asks for, from what a caller typed: sizes parsed
        (``"4GiB"``, bytes; ``limit="unlimited"``), integers, booleans and choices checked.
        ``None`` means "leave as it is". Raises :class:`~hvballoon.errors.InvalidRequestError`
        (or its :class:`~hvballoon.errors.InvalidSizeError`) naming the option. A size given as
        an ``int`` is a program's bytes; ``int_bytes=False`` holds it to the rule of a size a
        person typed (an Ansible task's ``minimum: 4``: a unit left out, see
        :func:`~hvballoon.units.parse_typed_target`).

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
                data.update(by_keyword[keyword].parse(value, int_bytes=int_bytes))
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

    def parse(self, value: Any, *, int_bytes: bool = True) -> dict[str, Any]:
        """``{ConfigUpdate field: value}`` for what a caller gave (not ``None``); raises
        :class:`~hvballoon.errors.InvalidRequestError` naming the option when it is malformed
        (``int_bytes``: see :meth:`ConfigUpdate.from_keywords`)."""
        kw = self.keyword
        if self.kind == "size":
            if self.unlimited and isinstance(value, str) and value.strip().lower() in _NO_VALUE_WORDS:
                # None (null) leaves an option alone: the word must not remove a limit instead
                raise InvalidSizeError(
                    f"invalid {kw} {value!r}: to remove the limit say 'unlimited' (or -1); "
                    f"to leave it as it is, leave {kw} out",
                    details={"option": kw},
                )
            if self.unlimited and (
                (isinstance(value, str) and value.strip().lower() in _UNLIMITED)
                # -1 as vSphere (and community.vmware's mem_limit) writes it, a YAML integer too
                or (type(value) is int and value == -1)
            ):
                return {"unlimited_limit": True}
            return {
                self.field: parse_typed_target(
                    value, what=kw, allow_zero=self.lowest == 0, noun="size", int_bytes=int_bytes
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
_UNLIMITED = frozenset({"unlimited", "-1"})
#: Words for "no value" that read like "no limit" but, like a null, say nothing (refused)
_NO_VALUE_WORDS = frozenset({"none", "null"})


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
