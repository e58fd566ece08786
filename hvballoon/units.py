"""Byte sizes and durations: parse what people type, format what people read, align to backends.

Inside hvballoon every size is an ``int`` of bytes. :func:`parse_size` accepts IEC units
(``KiB``, ``MiB``, ``GiB``, ``TiB``, ``PiB``: powers of 1024, also spelled ``Ki``, ``Mi``,
``Gi``, ``Ti``, ``Pi`` as Kubernetes does) and SI units (``kB``, ``MB``, ``GB``, ``TB``, ``PB``:
powers of 1000 — ``8GB`` is 8,000,000,000 bytes, not 8 GiB), ``B``, or a plain integer of bytes.
A bare ``G``/``M``/``K`` is refused because it is ambiguous; so is a negative size.

>>> parse_size("4GiB")
4294967296
>>> parse_size("8GB")
8000000000
>>> parse_size("1.5 GiB"), parse_size("6 Gi")
(1610612736, 6442450944)
>>> format_size(1610612736)
'1.5 GiB'
>>> align(1000, 1024)
1024
"""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Literal, TypeGuard

from hvballoon.errors import InvalidRequestError, InvalidSizeError

__all__ = [
    "GiB",
    "KiB",
    "MiB",
    "TiB",
    "ACCEPTED_SIZE_FORMS",
    "MAX_BYTES",
    "MAX_SECONDS",
    "align",
    "format_duration",
    "format_size",
    "format_sizes",
    "is_number",
    "parse_duration",
    "parse_size",
    "parse_typed_target",
    "positive_seconds",
    "true_or_false",
]

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
PiB = 1024**5

#: The largest size accepted (8 EiB - 1): every backend stores sizes in at most 64 signed bits.
MAX_BYTES = 2**63 - 1

_UNITS: dict[str, int] = {
    "b": 1,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": TiB,
    "pib": PiB,
    "ki": KiB,
    "mi": MiB,
    "gi": GiB,
    "ti": TiB,
    "pi": PiB,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
}
_AMBIGUOUS = {"k", "m", "g", "t", "p"}

ACCEPTED_SIZE_FORMS = (
    "an integer number of bytes (e.g. 1073741824), or a number with a unit: "
    "IEC KiB, MiB, GiB, TiB, PiB or Ki, Mi, Gi, Ti, Pi (powers of 1024, e.g. '4GiB', "
    "'1.5 GiB', '512Mi') or SI kB, MB, GB, TB, PB (powers of 1000, e.g. '8GB' = "
    "8,000,000,000 bytes) or B"
)

_SIZE_RE = re.compile(r"^\s*(?P<neg>-\s*)?(?P<num>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*(?P<unit>[A-Za-z]*)\s*$")


def parse_size(value: object, *, allow_zero: bool = False, what: str = "size") -> int:
    """Parse a size into bytes.

    ``value`` may be an ``int`` (bytes) or a string such as ``"4GiB"``, ``"512 MiB"``,
    ``"8GB"`` (decimal), ``"1.5GiB"`` or ``"6 Gi"``. Fractions of a byte are rounded to the
    nearest byte.
    Raises :class:`~hvballoon.errors.InvalidSizeError`, naming the accepted forms, for
    anything else: negatives, zero (unless ``allow_zero``), NaN, ambiguous units such as
    ``"4G"``, words such as ``"4 gigs"``, or sizes beyond 8 EiB.
    """
    if isinstance(value, bool):
        raise _bad(value, what, "a boolean is not a size")
    if isinstance(value, int):
        return _check_range(value, value, what, allow_zero)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _bad(value, what, "give whole bytes as an integer or use a unit")
        return _check_range(int(value), value, what, allow_zero)
    if not isinstance(value, str):
        raise _bad(value, what, f"expected a string or an integer, not {type(value).__name__}")
    return _parse_text(value, allow_zero, what)


@functools.lru_cache(maxsize=1024)
def _parse_text(value: str, allow_zero: bool, what: str) -> int:
    """:func:`parse_size` of a string, remembered (a scenario names the same few sizes again and
    again; an error is raised anew each time, never remembered)."""
    if len(value) > 64:
        raise _bad(value[:64] + "…", what, "too long")
    m = _SIZE_RE.match(value)
    if m is None:
        raise _bad(value, what, "not a number followed by a unit")
    if m.group("neg"):
        raise _bad(value, what, "a size cannot be negative")
    unit = m.group("unit").lower()
    if unit == "":
        if "." in m.group("num"):
            raise _bad(value, what, "a plain number is whole bytes; use a unit for fractions")
        multiplier = 1
    elif unit in _UNITS:
        multiplier = _UNITS[unit]
    elif unit in _AMBIGUOUS:
        raise _bad(
            value,
            what,
            f"the unit {m.group('unit')!r} is ambiguous (1000 or 1024?): "
            f"write {m.group('unit')[0].upper()}iB for powers of 1024 or "
            f"{m.group('unit')[0].upper()}B for powers of 1000",
        )
    else:
        raise _bad(value, what, f"unknown unit {m.group('unit')!r}")
    try:
        exact = Decimal(m.group("num")) * multiplier
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise _bad(value, what, "not a number") from exc
    if exact > MAX_BYTES:
        raise _bad(value, what, "larger than 8 EiB")
    result = int(exact.to_integral_value(rounding="ROUND_HALF_UP"))
    return _check_range(result, value, what, allow_zero)


def _check_range(n: int, original: object, what: str, allow_zero: bool) -> int:
    if n < 0:
        raise _bad(original, what, "a size cannot be negative")
    if n == 0 and not allow_zero:
        raise _bad(original, what, "a size of zero is not allowed here")
    if n > MAX_BYTES:
        raise _bad(original, what, "larger than 8 EiB")
    return n


def parse_typed_target(
    value: object,
    *,
    what: str = "target",
    allow_zero: bool = False,
    noun: str = "target",
    int_bytes: bool = False,
) -> int:
    """:func:`parse_size` of a memory target a person typed (a command line, an Ansible task,
    a scenario file), refusing a number without a unit below 1 MiB (zero aside, where
    ``allow_zero`` takes it): it is read as bytes, and no guest's memory is that small — ``4``
    meant ``4GiB``. Written with a unit (``512KiB``), it is taken as asked.

    ``int_bytes=True`` is the Python API's rule: an ``int`` is a program's count of bytes and
    taken as it is; only a *string* without a unit is checked (``set_target("web01", "4")``).

    >>> parse_typed_target("4")
    Traceback (most recent call last):
    ...
    hvballoon.errors.InvalidSizeError: invalid target '4': a number without a unit is bytes, and 4 bytes is no memory target; write the unit, e.g. '4GiB' or '4MiB'
    >>> parse_typed_target("4GiB") == parse_typed_target(4 * GiB) == 4 * GiB
    True
    >>> parse_typed_target(4096, int_bytes=True)
    4096
    """
    size = parse_size(value, what=what, allow_zero=allow_zero)
    unitless = (isinstance(value, int) and not int_bytes) or (
        isinstance(value, str) and value.strip().isdigit()
    )
    if unitless and 0 < size < MiB:
        raise InvalidSizeError(
            f"invalid {what} {value!r}: a number without a unit is bytes, and {size} bytes is no memory "
            f"{noun}; write the unit, e.g. '{size}GiB' or '{size}MiB'",
            details={"value": value, "accepted": ACCEPTED_SIZE_FORMS},
        )
    return size


def _bad(value: object, what: str, why: str) -> InvalidSizeError:
    return InvalidSizeError(
        f"invalid {what} {value!r}: {why}. Accepted: {ACCEPTED_SIZE_FORMS}.",
        details={"value": value, "accepted": ACCEPTED_SIZE_FORMS},
    )


_IEC_STEPS = (("PiB", PiB), ("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))


def format_size(n: int | None, *, exact: bool = False) -> str:
    """Format bytes with IEC units: ``'1.5 GiB'``; ``None`` is ``'-'``.

    ``n`` is a number of bytes: an ``int`` (a negative one is a difference, ``'-1 GiB'``) or a
    finite ``float`` (rounded to whole bytes). A string is refused, not parsed (parse it with
    :func:`parse_size`), as are a boolean, NaN and infinity: an
    :class:`~hvballoon.errors.InvalidSizeError` naming the argument.

    By default at most two decimals are shown (a readable figure). With ``exact=True`` the
    result parses back to exactly ``n`` (the largest unit that divides it is used).

    >>> format_size(4 * GiB), format_size(1536, exact=True), format_size(1000, exact=True)
    ('4 GiB', '1.5 KiB', '1000 B')
    """
    if n is None:
        return "-"
    a = _whole(n, "format_size", signed=True)
    sign = "-" if a < 0 else ""
    a = abs(a)
    if exact:
        for name, size in _IEC_STEPS:
            # halves and quarters stay exact; anything finer is written in a smaller unit
            if a >= size and (a * 4) % size == 0:
                return f"{sign}{_trim(Decimal(a) / size)} {name}"
        return f"{sign}{a} B"
    for name, size in _IEC_STEPS:
        if a >= size:
            return f"{sign}{_trim(round(Decimal(a) / size, 2))} {name}"
    return f"{sign}{a} B"


def format_sizes(*sizes: int | None) -> tuple[str, ...]:
    """Format sizes that one message compares: each readable, with its exact byte count added
    where rounding would make two different sizes look equal.

    >>> format_sizes(17179869185, 16 * GiB)
    ('16 GiB (17,179,869,185 bytes)', '16 GiB (17,179,869,184 bytes)')
    >>> format_sizes(6 * GiB, 16 * GiB)
    ('6 GiB', '16 GiB')
    """
    shown = [format_size(n) for n in sizes]
    out = []
    for i, n in enumerate(sizes):
        hidden = n is not None and any(
            shown[j] == shown[i] and sizes[j] != n for j in range(len(sizes)) if j != i
        )
        out.append(f"{shown[i]} ({n:,} bytes)" if hidden else shown[i])
    return tuple(out)


def _trim(d: Decimal) -> str:
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def align(n: int, granularity: int, direction: Literal["up", "down"] = "up") -> int:
    """Round ``n`` bytes to a multiple of ``granularity`` (``up`` by default).

    Targets are aligned *up* in hvballoon, so an aligned target never falls below the floor a
    guard rail computed. Both are whole numbers of bytes (``int``): ``n`` not negative,
    ``granularity`` positive. A string is refused, not parsed (parse it with
    :func:`parse_size`), as are a boolean, a float and ``None``: an
    :class:`~hvballoon.errors.InvalidSizeError` naming the argument.

    >>> align(1000, 1024), align(1000, 1024, "down")
    (1024, 0)
    """
    if direction not in ("up", "down"):
        raise InvalidRequestError(f"direction must be 'up' or 'down', got {direction!r}")
    n = _whole(n, "align: n", floats=False)
    if isinstance(granularity, bool) or not isinstance(granularity, int) or granularity <= 0:
        raise InvalidSizeError(
            f"align: the alignment (granularity) must be a positive int of bytes, got {granularity!r}",
            details={"value": repr(granularity)},
        )
    down = n - n % granularity
    if direction == "down" or down == n:
        return down
    return down + granularity


def _whole(n: object, what: str, *, signed: bool = False, floats: bool = True) -> int:
    """``n`` as an ``int`` of bytes for a function that formats or computes sizes (not parses
    them): a typed error naming ``what`` for anything else."""
    kinds = "an int" + (" or a finite float" if floats else "")
    if not is_number(n) or (isinstance(n, float) and not floats):
        hint = "; parse a size string with parse_size() first" if isinstance(n, str) else ""
        raise InvalidSizeError(
            f"{what} takes a number of bytes ({kinds}), got {n!r}{hint}", details={"value": repr(n)}
        )
    if isinstance(n, float):
        if not math.isfinite(n):
            raise InvalidSizeError(
                f"{what} takes a finite number of bytes, got {n!r}", details={"value": repr(n)}
            )
        n = round(n)
    if n < 0 and not signed:
        raise InvalidSizeError(f"{what}: a size cannot be negative, got {n!r}", details={"value": n})
    return int(n)


#: The longest duration accepted: ten years (3650 days), far beyond any timeout, wait or interval
#: and any simulated horizon, yet well within what a thread wait (``threading.TIMEOUT_MAX``, about
#: 292 years on 64-bit platforms), a timer and the clock's ``time_t`` take.
MAX_SECONDS = 3650 * 86400.0

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|min|s|m|h|d)", re.ASCII)
#: a plain number of seconds: ASCII digits, a decimal point, an exponent (``float()`` alone also
#: takes other scripts' digits, underscores, "nan" and "infinity")
_SECONDS_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?", re.ASCII)


def parse_duration(value: object, *, what: str = "duration") -> float:
    """Parse ``'10s'``, ``'2h'``, ``'1h30m'``, ``'250ms'`` or a number of seconds into seconds.

    A duration is finite, not negative and at most :data:`MAX_SECONDS` (ten years); anything
    else raises :class:`~hvballoon.errors.InvalidRequestError` naming ``what``.

    >>> parse_duration("1h30m"), parse_duration("10s"), parse_duration(2.5)
    (5400.0, 10.0, 2.5)
    >>> parse_duration("1e20", what="--interval")
    Traceback (most recent call last):
    ...
    hvballoon.errors.InvalidRequestError: invalid --interval '1e20': at most 3650d (315360000 seconds)
    """
    accepted = "seconds as a number, or a number with ms, s, m, h or d (e.g. '10s', '1h30m')"
    if isinstance(value, bool):
        raise InvalidRequestError(f"invalid {what} {value!r}; accepted: {accepted}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("-"):
            raise InvalidRequestError(f"invalid {what} {value!r}: a duration cannot be negative")
        if _SECONDS_RE.fullmatch(text):
            seconds = float(text)
        elif text in ("nan", "inf", "infinity"):
            raise InvalidRequestError(f"invalid {what} {value!r}: must be finite and not negative")
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION_RE.finditer(text):
                if text[pos : m.start()].strip():
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos == 0 or text[pos:].strip():
                raise InvalidRequestError(f"invalid {what} {value!r}; accepted: {accepted}")
    else:
        raise InvalidRequestError(f"invalid {what} {value!r}; accepted: {accepted}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidRequestError(f"invalid {what} {value!r}: must be finite and not negative")
    if seconds > MAX_SECONDS:
        raise InvalidRequestError(
            f"invalid {what} {value!r}: at most {format_duration(MAX_SECONDS)} ({MAX_SECONDS:.0f} seconds)",
            details={"maximum_seconds": MAX_SECONDS},
        )
    return seconds


def is_number(value: object, *, finite: bool = False) -> TypeGuard[int | float]:
    """Whether ``value`` is a number a program gave (an ``int`` or a ``float``, not a ``bool``),
    with ``finite`` neither NaN nor infinite: the check of the Python API's numeric arguments
    before they are compared (a string or ``None`` would raise Python's ``TypeError``).

    >>> is_number(3), is_number(True), is_number("3"), is_number(float("nan"), finite=True)
    (True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not finite or math.isfinite(value)


def true_or_false(value: object, *, what: str) -> bool:
    """``value`` when it is ``True`` or ``False``; anything else is an
    :class:`~hvballoon.errors.InvalidRequestError` naming ``what`` (a flag given ``None`` or
    ``""`` would otherwise be read as false: ``dry_run=None`` changing a VM).

    >>> true_or_false(None, what="dry_run")
    Traceback (most recent call last):
    ...
    hvballoon.errors.InvalidRequestError: dry_run takes True or False, got None
    """
    if not isinstance(value, bool):
        raise InvalidRequestError(
            f"{what} takes True or False, got {value!r}", details={"value": repr(value)}
        )
    return value


def positive_seconds(value: object, *, what: str) -> float:
    """A number of seconds the Python API was given (a timeout, an interval): a positive
    ``int`` or ``float`` within :func:`parse_duration`'s bounds, as a ``float``; anything else
    (a string, a boolean, ``nan``, ``inf``, zero, more than :data:`MAX_SECONDS`) raises
    :class:`~hvballoon.errors.InvalidRequestError` naming ``what``.

    >>> positive_seconds(30, what="timeout")
    30.0
    >>> positive_seconds(float("nan"), what="timeout")
    Traceback (most recent call last):
    ...
    hvballoon.errors.InvalidRequestError: timeout must be a positive number of seconds, got nan
    """
    if not is_number(value) or not value > 0:
        raise InvalidRequestError(f"{what} must be a positive number of seconds, got {value!r}")
    return parse_duration(value, what=what)


def format_duration(seconds: float) -> str:
    """``5400`` → ``'1h30m'``; sub-minute values keep one decimal.

    ``seconds`` is a finite, non-negative ``int`` or ``float``; anything else (a string, a
    boolean, NaN) is an :class:`~hvballoon.errors.InvalidRequestError` naming it.
    """
    if not is_number(seconds, finite=True) or seconds < 0:
        raise InvalidRequestError(
            f"format_duration takes a finite, non-negative number of seconds, got {seconds!r}",
            details={"value": repr(seconds)},
        )
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    s = round(seconds)
    parts = []
    for name, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{name}")
            s %= size
    return "".join(parts)
