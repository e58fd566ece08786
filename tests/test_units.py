from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hvballoon.errors import InvalidRequestError, InvalidSizeError
from hvballoon.units import (
    MAX_BYTES,
    MAX_SECONDS,
    GiB,
    KiB,
    MiB,
    align,
    format_duration,
    format_size,
    format_sizes,
    parse_duration,
    parse_size,
    positive_seconds,
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
        ("6 Gi", 6 * GiB),
        ("512Mi", 512 * MiB),
        ("4Ki", 4 * KiB),
        ("1Ti", 1024 * GiB),
        ("1.5Gi", 1536 * MiB),
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
        "4T",
        "-1GiB",
        "-1 Gi",
        "+1GiB",
        "--1GiB",
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


@pytest.mark.parametrize("bad", ["-1GiB", "-1", "-0.5 GiB", " -4 MiB", "-.5GiB"])
def test_negative_sizes_say_so(bad: str) -> None:
    with pytest.raises(InvalidSizeError, match="cannot be negative") as info:
        parse_size(bad)
    assert info.value.details["value"] == bad


def test_error_details_are_json_native() -> None:
    """``details["value"]`` is the value given (a str stays a str), not its Python repr."""
    import json

    with pytest.raises(InvalidSizeError) as info:
        parse_size("8G")
    assert info.value.details["value"] == "8G"
    assert json.loads(json.dumps(info.value.to_dict()))["details"]["value"] == "8G"
    with pytest.raises(InvalidSizeError) as info:
        parse_size(object())
    json.dumps(info.value.to_dict())  # an arbitrary object is described, never leaks as a repr


_IEC = {
    "KiB": KiB,
    "MiB": MiB,
    "GiB": GiB,
    "TiB": 1024 * GiB,
    "Ki": KiB,
    "Mi": MiB,
    "Gi": GiB,
    "Ti": 1024 * GiB,
}
_SI = {"kB": 1000, "MB": 10**6, "GB": 10**9, "TB": 10**12}


@given(
    st.integers(min_value=1, max_value=2**40),
    st.sampled_from(sorted({**_IEC, **_SI})),
    st.sampled_from(["", " ", "  "]),
)
def test_every_unit_spelling_multiplies(k: int, unit: str, space: str) -> None:
    factor = {**_IEC, **_SI}[unit]
    if k * factor <= MAX_BYTES:
        assert parse_size(f"{k}{space}{unit}") == k * factor


@given(st.integers(min_value=1, max_value=2**40), st.sampled_from(["K", "M", "G", "T", "k", "m", "g", "t"]))
def test_a_bare_prefix_is_always_ambiguous(k: int, prefix: str) -> None:
    with pytest.raises(InvalidSizeError, match="ambiguous"):
        parse_size(f"{k}{prefix}")


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_invalid_size(text: str) -> None:
    """No input crashes the parser: it returns a positive byte count or a typed error."""
    try:
        n = parse_size(text)
    except InvalidSizeError as exc:
        assert "Accepted:" in exc.message
    else:
        assert isinstance(n, int) and 0 < n <= MAX_BYTES


@given(st.integers(min_value=1, max_value=2**50), st.sampled_from(["B", "KiB", "Gi", "GB", ""]))
def test_a_minus_sign_is_always_refused_as_negative(k: int, unit: str) -> None:
    with pytest.raises(InvalidSizeError, match="cannot be negative"):
        parse_size(f"-{k}{unit}")


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
        (".5s", 0.5),  # as a size takes ".5GiB"
        ("1.s", 1),
        ("1e3", 1000),
        (" 10 s ", 10),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad",
    # float() alone takes other scripts' digits, underscores, "infinity" and a leading "+"
    [
        "",
        "10 parsecs",
        "-1s",
        "s",
        "1h junk",
        True,
        None,
        "nan",
        float("inf"),
        "infinity",
        "١٠",
        "1_000",
        "+5",
        "1e",
    ],
)
def test_bad_durations(bad: object) -> None:
    with pytest.raises(InvalidRequestError):
        parse_duration(bad)


@pytest.mark.parametrize("long", ["1e20", 1e20, "3651d", MAX_SECONDS + 1, 2**63, "99999999999999999999h"])
def test_a_duration_past_ten_years_is_refused_naming_the_option(long: object) -> None:
    # above threading.TIMEOUT_MAX a thread wait raised OverflowError (timestamp out of range)
    with pytest.raises(InvalidRequestError, match=r"invalid --interval .*at most 3650d") as info:
        parse_duration(long, what="--interval")
    assert info.value.details == {"maximum_seconds": MAX_SECONDS}


def test_ten_years_is_the_longest_duration() -> None:
    assert MAX_SECONDS == 3650 * 86400 < threading.TIMEOUT_MAX
    assert parse_duration("3650d") == parse_duration(MAX_SECONDS) == MAX_SECONDS


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 1e20, "30s", None, True])
def test_the_api_takes_a_positive_number_of_seconds(bad: object) -> None:
    with pytest.raises(InvalidRequestError, match="timeout"):
        positive_seconds(bad, what="timeout")
    assert positive_seconds(30, what="timeout") == 30.0
    assert positive_seconds(MAX_SECONDS, what="timeout") == MAX_SECONDS


def test_format_duration() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(12) == "12s"


@given(st.lists(st.integers(min_value=0, max_value=MAX_BYTES), min_size=1, max_size=5))
def test_compared_sizes_never_look_equal_when_they_differ(sizes: list[int]) -> None:
    shown = format_sizes(*sizes)
    assert len(shown) == len(sizes)
    for i, a in enumerate(sizes):
        for j, b in enumerate(sizes):
            assert (shown[i] == shown[j]) == (a == b), (sizes, shown)


def test_compared_sizes_stay_readable_when_rounding_hides_nothing() -> None:
    assert format_sizes(6 * GiB, 16 * GiB) == ("6 GiB", "16 GiB")
    assert format_sizes(16 * GiB + 1, 16 * GiB) == (
        "16 GiB (17,179,869,185 bytes)",
        "16 GiB (17,179,869,184 bytes)",
    )
    assert format_sizes(None, GiB) == ("-", "1 GiB")
