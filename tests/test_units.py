from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hvballoon.errors import InvalidRequestError, InvalidSizeError
from hvballoon.units import (
    MAX_BYTES,
    GiB,
    KiB,
    MiB,
    align,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * GiB),
        ("512MiB", 512 * MiB),
        ("8GB", 8_000_000_000),
        ("1.5GiB", 1536 * MiB),
        ("1.5 GiB", 1536 * MiB),
        (" 2 gib ", 2 * GiB),
        ("1kB", 1000),
        ("1KiB", KiB),
        ("1TB", 10**12),
        ("100B", 100),
        ("1073741824", GiB),
        (1073741824, GiB),
        (2048.0, 2048),
        (".5GiB", 512 * MiB),
    ],
)
def test_parses_accepted_forms(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "4 gigs",
        "4G",
        "4g",
        "4M",
        "4K",
        "4Gi",
        "-1GiB",
        "-5",
        "nan",
        "nan GiB",
        "inf",
        "GiB",
        "",
        "   ",
        "4 GiB GiB",
        "4,5GiB",
        "1e9",
        "0x10",
        "1.5",
        "4GiB;rm",
        "99999999999EiB",
        "9" * 30,
        "10000000PiB",
        -1,
        0,
        0.5,
        float("nan"),
        float("inf"),
        True,
        None,
        [1],
        "４GiB",
    ],
)
def test_refuses_malformed_sizes_with_accepted_forms(bad: object) -> None:
    with pytest.raises(InvalidSizeError) as info:
        parse_size(bad)
    assert "Accepted:" in str(info.value)
    assert info.value.code == "invalid_size"
    assert isinstance(info.value, InvalidRequestError)


def test_ambiguous_unit_names_both_spellings() -> None:
    with pytest.raises(InvalidSizeError, match="GiB for powers of 1024 or GB for powers of 1000"):
        parse_size("4G")


def test_zero_only_where_allowed() -> None:
    assert parse_size("0B", allow_zero=True) == 0
    with pytest.raises(InvalidSizeError, match="zero"):
        parse_size("0GiB")


def test_overflow_is_refused() -> None:
    assert parse_size(MAX_BYTES) == MAX_BYTES
    with pytest.raises(InvalidSizeError, match="8 EiB"):
        parse_size(MAX_BYTES + 1)


@given(st.integers(min_value=1, max_value=MAX_BYTES))
def test_exact_format_round_trips(n: int) -> None:
    assert parse_size(format_size(n, exact=True)) == n


@given(st.integers(min_value=1, max_value=2**60))
def test_readable_format_is_close(n: int) -> None:
    back = parse_size(format_size(n))
    assert math.isclose(back, n, rel_tol=0.01, abs_tol=1)


@given(st.integers(min_value=1, max_value=2**50), st.sampled_from(["KiB", "MiB", "GiB", "kB", "MB", "GB"]))
def test_unit_multiplication(k: int, unit: str) -> None:
    factor = {"KiB": KiB, "MiB": MiB, "GiB": GiB, "kB": 1000, "MB": 10**6, "GB": 10**9}[unit]
    if k * factor <= MAX_BYTES:
        assert parse_size(f"{k}{unit}") == k * factor


@given(st.integers(min_value=0, max_value=2**62), st.sampled_from([1, KiB, MiB, 2 * MiB, 4 * MiB]))
def test_align(n: int, g: int) -> None:
    up, down = align(n, g, "up"), align(n, g, "down")
    assert up % g == 0 and down % g == 0
    assert down <= n <= up and up - down in (0, g)


def test_align_rejects_bad_granularity() -> None:
    with pytest.raises(InvalidRequestError):
        align(10, 0)


def test_format_none_and_small() -> None:
    assert format_size(None) == "-"
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(16 * GiB) == "16 GiB"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("2h", 7200),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("3", 3),
        (4.5, 4.5),
        ("1d", 86400),
        ("2min", 120),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10 parsecs", "-1s", "s", "1h junk", True, None, "nan", float("inf")])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(InvalidRequestError):
        parse_duration(bad)


def test_format_duration() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(12) == "12s"
