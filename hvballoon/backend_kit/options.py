"""A backend's options and URI parameters as pydantic models: typed, strict, unknown names refused.

A backend declares the keywords :func:`hvballoon.connect` accepts for it as a
:class:`BackendOptions` model and names it in ``Backend.options_model``; the base class validates
them before the backend sees them (``Backend.option_names`` is derived from the model), so a
backend never checks an option by hand. Validation is strict: ``True``/``False`` only for a bool
(``"no"`` is refused, not taken as true), a whole number for an int (not ``True``, ``2.5`` or
``"10"``). A bad value is an :class:`~hvballoon.errors.InvalidRequestError` naming the option,
what it must be and what it got; nothing is opened.

The query parameters of a backend's URI (``?transport=ntlm&scheme=https``) are declared the same
way, as :class:`URIParameters` (their values are strings; a bad one is an
:class:`~hvballoon.errors.InvalidURIError`).

>>> from pydantic import Field
>>> class DemoOptions(BackendOptions):
...     read_only: bool = False
...     stats_period: int = Field(10, ge=0)
>>> DemoOptions.parse({"stats_period": 5}, backend="demo").stats_period
5
>>> DemoOptions.parse({"read_only": "no"}, backend="demo")
Traceback (most recent call last):
...
hvballoon.errors.InvalidRequestError: option read_only must be true or false, got 'no' [backend=demo]
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from hvballoon.errors import HVBalloonError, InvalidRequestError, InvalidURIError

__all__ = ["BackendOptions", "URIParameters", "expects"]

M = TypeVar("M", bound="BackendOptions")


def _plain(annotation: Any) -> Any:
    """``X`` of ``X | None`` (``Optional[X]``), else the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _choices(values: tuple[Any, ...]) -> str:
    names = [str(v) for v in values]
    if len(names) <= 2:
        return " or ".join(names)
    return "one of " + ", ".join(names)


_BOUNDS: tuple[tuple[type, str, str], ...] = (
    (Ge, ">=", "ge"),
    (Gt, ">", "gt"),
    (Le, "<=", "le"),
    (Lt, "<", "lt"),
)


def expects(info: FieldInfo) -> str:
    """What a field accepts, in words (its ``description`` when it has one).

    >>> from pydantic import Field
    >>> class Demo(BackendOptions):
    ...     concurrency: int = Field(16, ge=1)
    ...     read_only: bool = False
    ...     keepalive: tuple[int, int] | None = Field(None, description="(interval, count) or None")
    >>> [expects(info) for info in Demo.model_fields.values()]
    ['a whole number >= 1', 'true or false', '(interval, count) or None']
    """
    if info.description:
        return info.description
    kind = _plain(info.annotation)
    if kind is bool:
        return "true or false"
    if get_origin(kind) is Literal:
        return _choices(get_args(kind))
    if kind is int:
        bounds = [
            f"{sign} {getattr(meta, attr)}"
            for meta in info.metadata
            for cls, sign, attr in _BOUNDS
            if isinstance(meta, cls)
        ]
        return "a whole number" + (" " + " and ".join(bounds) if bounds else "")
    if kind is str:
        return "text"
    if kind is float:
        return "a number"
    return f"a {getattr(kind, '__name__', str(kind))}"


class BackendOptions(BaseModel):
    """Base of a backend's options model (``extra="forbid"``, strict, frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True)

    #: How an error names a field (``option read_only``) and which error class it is.
    _what: ClassVar[str] = "option {name}"
    _error: ClassVar[type[HVBalloonError]] = InvalidRequestError

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names the model accepts."""
        return frozenset(cls.model_fields)

    @classmethod
    def _unknown(cls, unknown: list[str], backend: str, scheme: str | None) -> str:
        accepted = ", ".join(sorted(cls.model_fields)) or "none"
        return f"unknown option(s) for the {backend} backend: {', '.join(unknown)}; accepted: {accepted}"

    @classmethod
    def _describe(
        cls, exc: ValidationError, values: Mapping[str, Any], backend: str, scheme: str | None
    ) -> str:
        unknown: list[str] = []
        problems: list[str] = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            if error["type"] == "extra_forbidden":
                unknown.append(name)
                continue
            if name not in cls.model_fields:  # a model-level rule: pydantic's words
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            what = cls._what.format(name=name)
            problems.append(f"{what} must be {expects(cls.model_fields[name])}, got {values.get(name)!r}")
        if unknown:
            problems.insert(0, cls._unknown(sorted(unknown), backend, scheme))
        return "; ".join(dict.fromkeys(problems))

    @classmethod
    def parse(
        cls: type[M],
        values: Mapping[str, Any],
        *,
        backend: str,
        uri: str | None = None,
        scheme: str | None = None,
    ) -> M:
        """The validated options, or a typed error saying every problem (nothing half-applied)."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise cls._error(
                cls._describe(exc, values, backend, scheme),
                backend=backend,
                uri=uri,
                details={"accepted": sorted(cls.model_fields)},
            ) from None


class URIParameters(BackendOptions):
    """Base of a backend's URI query parameters: the values are the URI's strings."""

    _what: ClassVar[str] = "{name}="
    _error: ClassVar[type[HVBalloonError]] = InvalidURIError

    @classmethod
    def _unknown(cls, unknown: list[str], backend: str, scheme: str | None) -> str:
        accepted = ", ".join(sorted(cls.model_fields)) or "none"
        return f"unknown {scheme or backend}:// parameter(s) {', '.join(unknown)}; accepted: {accepted}"
