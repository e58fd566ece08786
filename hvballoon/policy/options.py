"""A policy's own options from text: ``KEY=VALUE`` strings (a command line) and a mapping (a
settings file), checked against the policy's ``__init__`` signature.

Every keyword of a policy's ``__init__`` is an option. Its kind comes from its name and its
annotation: ``*_bytes`` is a size (``"384MiB"``, ``"1GiB"``, a plain integer of bytes, see
:func:`~hvballoon.units.parse_size`), ``*_seconds`` a duration (``"10m"``, ``"90s"``, a number of
seconds, see :func:`~hvballoon.units.parse_duration`), otherwise a ``bool`` (``true``/``false``,
``yes``/``no``, ``on``/``off``, ``1``/``0``), an ``int`` or a ``float``; an option whose default is
``None`` also takes ``none`` (or YAML's ``null``). No option takes a negative value, NaN or
infinity. An option of another type (MoM's ``constants``) is set from Python only.

>>> from hvballoon.policy.adaptive import HvballoonPolicy
>>> coerce_options(HvballoonPolicy, {"calm_seconds": "10m", "min_headroom_bytes": "512MiB",
...                                  "own_guard_rails": "no", "surge_fraction": 0.5})
{'calm_seconds': 600.0, 'min_headroom_bytes': 536870912, 'own_guard_rails': False, 'surge_fraction': 0.5}
>>> parse_option_pairs(["calm_seconds=60", "surge_fraction=0.4"])
{'calm_seconds': '60', 'surge_fraction': '0.4'}
>>> option_specs(HvballoonPolicy)["min_headroom_bytes"].describe()
'min_headroom_bytes (size, default 384 MiB)'
>>> format_options({"calm_seconds": 1200.0, "min_headroom_bytes": 2**30, "surge_fraction": 0.8})
'calm_seconds=20m, min_headroom_bytes=1 GiB, surge_fraction=0.8'
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hvballoon.errors import InvalidRequestError
from hvballoon.units import format_duration, format_size, parse_duration, parse_typed_target

__all__ = ["PolicyOption", "coerce_options", "format_options", "option_specs", "parse_option_pairs"]

Kind = Literal["size", "duration", "bool", "int", "float", "other"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null")


@dataclass(frozen=True)
class PolicyOption:
    """One keyword option of a policy: its name, kind, default and whether ``None`` is allowed."""

    name: str
    kind: Kind
    default: Any
    optional: bool = False

    def describe(self) -> str:
        """``'calm_seconds (duration, default 10m)'``."""
        return f"{self.name} ({self.kind}, default {self.shown_default()})"

    def shown_default(self) -> str:
        """The default as an operator would write it."""
        d = self.default
        if d is None or d is inspect.Parameter.empty:
            return "none"
        if self.kind == "size":
            return format_size(d, exact=True)
        if self.kind == "duration":
            return format_duration(float(d))
        if self.kind == "bool":
            return "true" if d else "false"
        if self.kind == "float":
            return f"{d:.4g}"
        return str(d)

    def coerce(self, value: object, policy: str) -> Any:
        """``value`` (text, or a YAML scalar) as this option's type; a typed error otherwise."""
        what = f"policy option {self.name}"
        if self.optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        if self.kind == "other":
            if value is None or isinstance(value, (str, int, float)):
                raise self._bad(value, policy, f"takes a {self._type_name()}, set from Python only")
            return value
        if value is None:
            raise self._bad(value, policy, f"takes a {self.kind}, not null")
        if self.kind == "size":
            return parse_typed_target(value, allow_zero=True, what=what, noun="size", int_bytes=True)
        if self.kind == "duration":
            return parse_duration(value, what=what)
        if self.kind == "bool":
            return self._bool(value, policy)
        return self._number(value, policy)

    def _bool(self, value: object, policy: str) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self._bad(value, policy, "not a boolean (true/false, yes/no, on/off, 1/0)")

    def _number(self, value: object, policy: str) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self._bad(value, policy, f"not a number ({self.kind})")
        number: int | float
        if self.kind == "int":
            if isinstance(value, float):
                raise self._bad(value, policy, "not a whole number")
            try:
                number = int(value.strip()) if isinstance(value, str) else value
            except ValueError:
                raise self._bad(value, policy, "not a whole number") from None
        else:
            try:
                number = float(value.strip()) if isinstance(value, str) else float(value)
            except ValueError:
                raise self._bad(value, policy, "not a number") from None
            if not math.isfinite(number):
                raise self._bad(value, policy, "must be finite (not NaN or infinity)")
        if number < 0:
            raise self._bad(value, policy, "must not be negative")
        return number

    def _type_name(self) -> str:
        d = self.default
        return type(d).__name__ if d is not None and d is not inspect.Parameter.empty else "value"

    def _bad(self, value: object, policy: str, why: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"invalid policy option {self.name}={value!r} for the {policy} policy: {why}",
            details={"policy": policy, "option": self.name, "value": repr(value)},
        )


def option_specs(cls: type) -> dict[str, PolicyOption]:
    """The options of a policy class, by name, in the order of its ``__init__``."""
    init = cls.__init__  # type: ignore[misc]
    if init is object.__init__:
        return {}
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that cannot be resolved here: judge by the default
        hints = {}
    specs = {}
    for p in inspect.signature(init).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind, optional = _kind(p.name, hints.get(p.name), p.default)
        specs[p.name] = PolicyOption(p.name, kind, p.default, optional)
    return specs


def _kind(name: str, hint: Any, default: Any) -> tuple[Kind, bool]:
    args = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else ()
    )
    optional = type(None) in args or default is None
    concrete = [a for a in args if a is not type(None)] if args else [hint]
    base = concrete[0] if len(concrete) == 1 and concrete[0] is not None else None
    if base is None and default is not None and default is not inspect.Parameter.empty:
        base = type(default)
    if name.endswith("_bytes") and base in (int, None):
        return "size", optional
    if name.endswith("_seconds") and base in (int, float, None):
        return "duration", optional
    for t, kind in ((bool, "bool"), (int, "int"), (float, "float")):
        if base is t:
            return typing.cast(Kind, kind), optional
    return "other", optional


def coerce_options(cls: type, options: Mapping[str, object], *, policy: str | None = None) -> dict[str, Any]:
    """``options`` checked against ``cls``'s keyword options and each made its option's type.

    An unknown key (or any key, for a policy without options) is an
    :class:`~hvballoon.errors.InvalidRequestError` naming it and listing the known ones.
    """
    name = policy or str(getattr(cls, "name", "") or cls.__name__)
    specs = option_specs(cls)
    out: dict[str, Any] = {}
    for key, value in options.items():
        spec = specs.get(key)
        if spec is None:
            if not specs:
                raise InvalidRequestError(
                    f"the {name} policy takes no options (got {key!r})",
                    details={"policy": name, "option": key, "known": []},
                )
            raise InvalidRequestError(
                f"unknown option {key!r} for the {name} policy; its options: {', '.join(specs)}",
                details={"policy": name, "option": key, "known": list(specs)},
            )
        out[key] = spec.coerce(value, name)
    return out


def parse_option_pairs(items: Iterable[str], *, what: str = "--policy-option") -> dict[str, str]:
    """``KEY=VALUE`` strings as a mapping; malformed ones (no ``=``, no key, a key given twice)
    are an :class:`~hvballoon.errors.InvalidRequestError`."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidRequestError(
                f"{what} takes KEY=VALUE (e.g. calm_seconds=10m), got {item!r}", details={"value": item}
            )
        if key in out:
            raise InvalidRequestError(f"{what}: {key!r} is given twice", details={"option": key})
        out[key] = value.strip()
    return out


def format_options(options: Mapping[str, Any]) -> str:
    """Options for a line of text: sizes and durations as an operator writes them."""

    def shown(key: str, value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return str(value).lower()
        if key.endswith("_bytes") and isinstance(value, int):
            return format_size(value, exact=True)
        if key.endswith("_seconds") and isinstance(value, (int, float)):
            return format_duration(float(value))
        return str(value)

    return ", ".join(f"{k}={shown(k, v)}" for k, v in options.items())
