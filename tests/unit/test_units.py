from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netmon.units import format_bytes, format_rate, parse_rate


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (10 * 1024**2, "10.0 MB"),
        (1024**3, "1.0 GB"),
        (1024**4, "1.0 TB"),
        (1024**5, "1.0 PB"),
        (3 * 1024**6, "3072.0 PB"),
    ],
)
def test_format_bytes(value: float, text: str) -> None:
    assert format_bytes(value) == text


def test_format_bytes_never_shows_1024_of_a_unit() -> None:
    for value in (1024 * 1024 - 1, 1024**2 - 10, 1024**3 - 1):
        text = format_bytes(value)
        assert not text.startswith("1024.0"), text


def test_format_rate() -> None:
    assert format_rate(2048) == "2.0 KB/s"
    assert format_rate(0.4) == "0 B/s"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10M", 10485760.0),
        ("10MB/s", 10485760.0),
        ("10 MiB/s", 10485760.0),
        ("10485760", 10485760.0),
        ("1.5K", 1536.0),
        ("2g", 2 * 1024.0**3),
        ("1T", 1024.0**4),
        ("0", 0.0),
        (" 5 KB ", 5120.0),
        ("100B/s", 100.0),
    ],
)
def test_parse_rate(text: str, value: float) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize(
    "text",
    ["ten", "-5", "", "10X", "1e6", "inf", "nan", "10 M B", "/s", "9" * 400, "9" * 309 + "T"],
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_parse_and_format_agree_on_units() -> None:
    assert format_rate(parse_rate("10M")) == "10.0 MB/s"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (math.nan, "? B"),
        (math.inf, "inf B"),
        (-math.inf, "-inf B"),
        (-5, "-5 B"),
        (10**4000, "inf B"),
        (2**64 - 1, "16384.0 PB"),
        (1e308, "8.88e+292 PB"),
    ],
)
def test_format_bytes_of_odd_values(value: float, text: str) -> None:
    assert format_bytes(value) == text


@given(st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400)))
def test_formatting_never_raises(value: float) -> None:
    for text in (format_bytes(value), format_rate(value)):
        assert text and "\n" not in text and len(text) <= 20
