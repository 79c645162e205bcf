from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import ingest.values as values_module
from ingest.values import (
    MAX_ABS_VALUE,
    BadValue,
    NonFinite,
    epoch_seconds,
    get_zone,
    parse_time,
    parse_value,
)
from sense311.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (21.5, (21.5, None)),
        (-3, (-3.0, None)),
        (0, (0.0, None)),
        (True, (1.0, None)),
        (False, (0.0, None)),
        ("299.9", (299.9, None)),
        (" 12 ", (12.0, None)),
        ("+7", (7.0, None)),
        ("-.5", (-0.5, None)),
        ("1e3", (1000.0, None)),
        ("3.384 V", (3.384, "V")),
        ("25.4°C", (25.4, "°C")),
        ("88 %", (88.0, "%")),
        ("12.5 km/h", (12.5, "km/h")),
        ("1013hPa", (1013.0, "hPa")),
        ("450 µS/cm", (450.0, "µS/cm")),
        (MAX_ABS_VALUE, (MAX_ABS_VALUE, None)),
        (-(10**15), (-1e15, None)),
    ],
)
def test_parse_value_accepts(raw: object, expected: tuple[float, str | None]) -> None:
    got = parse_value(raw)
    assert got == expected
    assert type(got[0]) is float


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("No Sensor", "bad_value"),
        ("", "bad_value"),
        ("   ", "bad_value"),
        ("N/A", "bad_value"),
        ("error", "bad_value"),
        ("--", "bad_value"),
        ("nan", "non_finite"),
        ("NaN", "non_finite"),
        ("inf", "non_finite"),
        ("-Infinity", "non_finite"),
        ("1e999", "non_finite"),
        (float("nan"), "non_finite"),
        (float("inf"), "non_finite"),
        (NonFinite("NaN"), "non_finite"),
        (1e16, "out_of_range"),
        (-2e15, "out_of_range"),
        (10**400, "out_of_range"),
        ("2e15", "out_of_range"),
        (None, "bad_value"),
        ({"a": 1}, "bad_value"),
        ([1, 2], "bad_value"),
        (b"12", "bad_value"),
        ("tilt", "non_numeric"),
        ("ON", "non_numeric"),
        ("true", "non_numeric"),
        ("2024-01-01", "non_numeric"),
        ("12:30", "non_numeric"),
        ("1,5", "non_numeric"),
        ("1/2", "non_numeric"),
        ("1.2.3", "non_numeric"),
        ("0x1F", "non_numeric"),
        ("0xFF", "non_numeric"),
        ("2nd", "non_numeric"),
        ("12 V DC", "non_numeric"),
        ("m3/h 5", "non_numeric"),
        ("5 m3/h", "non_numeric"),
        ("x" * 200, "non_numeric"),
    ],
)
def test_parse_value_rejects(raw: object, reason: str) -> None:
    with pytest.raises(BadValue) as info:
        parse_value(raw)
    assert info.value.reason == reason
    assert info.value.detail and "\n" not in info.value.detail
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("raw", "expected"), [("ON", 1.0), ("off", 0.0), (" On ", 1.0), ("OFF", 0.0)])
def test_on_off_only_when_asked(raw: str, expected: float) -> None:
    assert parse_value(raw, on_off=True) == (expected, None)
    with pytest.raises(BadValue):
        parse_value(raw)


def test_on_off_flag_does_not_change_other_text() -> None:
    with pytest.raises(BadValue) as info:
        parse_value("TOGGLE", on_off=True)
    assert info.value.reason == "non_numeric"
    assert parse_value("12", on_off=True) == (12.0, None)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # epoch numbers, unit told by magnitude
        (0, utc(1970, 1, 1)),
        (1714557600, utc(2024, 5, 1, 10)),
        (1714557600.25, utc(2024, 5, 1, 10, 0, 0, 250000)),
        (99_999_999_999, utc(5138, 11, 16, 9, 46, 39)),  # last value read as seconds
        (100_000_000_000, utc(1973, 3, 3, 9, 46, 40)),  # first value read as milliseconds
        (1714557600123, utc(2024, 5, 1, 10, 0, 0, 123000)),
        (1714557600123456, utc(2024, 5, 1, 10, 0, 0, 123456)),
        (1714557600123456789, utc(2024, 5, 1, 10, 0, 0, 123456)),
        ("1714557600", utc(2024, 5, 1, 10)),
        ("1714557600.5", utc(2024, 5, 1, 10, 0, 0, 500000)),
        # RFC 3339 / ISO 8601
        ("2024-05-01T10:00:00Z", utc(2024, 5, 1, 10)),
        ("2024-05-01T10:00:00z", utc(2024, 5, 1, 10)),
        ("2024-05-01t10:00:00Z", utc(2024, 5, 1, 10)),
        ("2024-05-01 10:00:00Z", utc(2024, 5, 1, 10)),
        ("2024-05-01T10:00Z", utc(2024, 5, 1, 10)),
        ("2024-05-01T12:00:00+02:00", utc(2024, 5, 1, 10)),
        ("2024-05-01T12:00:00+0200", utc(2024, 5, 1, 10)),
        ("2024-05-01T05:30:00-04:30", utc(2024, 5, 1, 10)),
        ("2022-07-18T09:34:15.775023242+00:00", utc(2022, 7, 18, 9, 34, 15, 775023)),
        ("2016-11-25T16:24:37.295915988Z", utc(2016, 11, 25, 16, 24, 37, 295915)),
        ("2020-02-12T15:15:45.787Z", utc(2020, 2, 12, 15, 15, 45, 787000)),
        ("2024-05-01T10:00:00,5Z", utc(2024, 5, 1, 10, 0, 0, 500000)),
        ("2024-05-01T10:00:00", utc(2024, 5, 1, 10)),  # naive is UTC
        (" 2024-05-01T10:00:00Z ", utc(2024, 5, 1, 10)),
    ],
)
def test_parse_time(raw: object, expected: datetime) -> None:
    got = parse_time(raw)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (-1, "out_of_range"),
        (1e20, "out_of_range"),
        (10**30, "out_of_range"),
        (float("nan"), "non_finite"),
        (float("-inf"), "non_finite"),
        (NonFinite("Infinity"), "non_finite"),
        (True, "bad_time"),
        (None, "bad_time"),
        ({"ts": 1}, "bad_time"),
        ("yesterday", "bad_time"),
        ("", "bad_time"),
        ("2024-05-01", "bad_time"),
        ("2024-05-01T10", "bad_time"),
        ("20240501T100000Z", "bad_time"),
        ("2024-W18-3T10:00:00Z", "bad_time"),
        ("2024-13-01T10:00:00Z", "bad_time"),
        ("2024-05-01T24:00:00Z", "bad_time"),
        ("2024-05-01T10:00:00 Z garbage", "bad_time"),
        ("Tue Jan 21 2025 17:56:54 GMT+0100 (CET)", "bad_time"),
        ("9999-12-31T23:59:59-01:00", "out_of_range"),
        ("0001-01-01T00:30:00+01:00", "out_of_range"),
    ],
)
def test_parse_time_rejects(raw: object, reason: str) -> None:
    with pytest.raises(BadValue) as info:
        parse_time(raw)
    assert info.value.reason == reason
    assert "\n" not in info.value.detail


def test_naive_time_in_a_zone() -> None:
    berlin = get_zone("Europe/Berlin")
    assert parse_time("2017-02-16T10:13:52", tz=berlin) == utc(2017, 2, 16, 9, 13, 52)  # CET
    assert parse_time("2024-07-01T12:00:00", tz=berlin) == utc(2024, 7, 1, 10)  # CEST
    # 02:30 happens twice on 2024-10-27 in Berlin: the first (summer time) is taken.
    assert parse_time("2024-10-27T02:30:00", tz=berlin) == utc(2024, 10, 27, 0, 30)
    # A zone in the string wins over the configured one.
    assert parse_time("2024-07-01T12:00:00Z", tz=berlin) == utc(2024, 7, 1, 12)
    assert parse_time("2024-07-01T12:00:00", tz=timezone(timedelta(hours=-5))) == utc(2024, 7, 1, 17)


def test_get_zone() -> None:
    assert get_zone(None) is UTC
    assert get_zone("UTC") is UTC
    assert str(get_zone("America/New_York")) == "America/New_York"
    for bad in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(ConfigError, match="Invalid timezone"):
            get_zone(bad)


def test_epoch_seconds() -> None:
    assert epoch_seconds(1320078429.1) == utc(2011, 10, 31, 16, 27, 9, 100000)
    with pytest.raises(BadValue) as info:
        epoch_seconds(1e20)
    assert info.value.reason == "out_of_range"


def test_cutoffs_are_ordered() -> None:
    v = values_module
    assert v.SECONDS_BELOW < v.MILLISECONDS_BELOW < v.MICROSECONDS_BELOW < v.NANOSECONDS_BELOW
    # The seconds cut-off read as milliseconds is early 1973: no real millisecond time is below it.
    assert parse_time(v.SECONDS_BELOW).year == 1973


def test_all_is_the_public_surface() -> None:
    public = {name for name in dir(values_module) if not name.startswith("_")}
    imported = {"math", "re", "UTC", "datetime", "timedelta", "tzinfo", "lru_cache", "Any", "ZoneInfo"}
    imported |= {"ZoneInfoNotFoundError", "ConfigError", "annotations"}
    assert set(values_module.__all__) == public - imported
