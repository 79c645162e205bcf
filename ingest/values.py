"""Turn payload values into floats and payload times into aware UTC datetimes.

Only unambiguous values become numbers::

    parse_value(21.5)          -> (21.5, None)
    parse_value(True)          -> (1.0, None)
    parse_value(" 12 ")        -> (12.0, None)
    parse_value("3.384 V")     -> (3.384, "V")
    parse_value("25.4°C")      -> (25.4, "°C")
    parse_value("ON", on_off=True) -> (1.0, None)
    parse_value("No Sensor")   -> BadValue(reason="bad_value")
    parse_value("tilt")        -> BadValue(reason="non_numeric")

Everything else raises ``BadValue``; decoders turn it into a ``FieldReject`` so
the other fields of the message are kept. Reasons:

``bad_value``     sentinel strings ("No Sensor", "N/A", "error", ""), null, objects, lists
``non_numeric``   free text ("tilt", "Machine Room"), SenML data values
``non_finite``    NaN / Infinity (JSON literals, "nan", "inf", 1e999)
``out_of_range``  \\|x\\| > 1e15, or a time outside 1970..9999
``bad_time``      a time string that is not ISO 8601 / RFC 3339
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sense311.errors import ConfigError

__all__ = [
    "MAX_ABS_VALUE",
    "MICROSECONDS_BELOW",
    "MILLISECONDS_BELOW",
    "NANOSECONDS_BELOW",
    "SECONDS_BELOW",
    "BadValue",
    "NonFinite",
    "epoch_seconds",
    "get_zone",
    "parse_time",
    "parse_value",
]

#: Largest magnitude accepted as a measurement. Beyond it a float has no integer
#: precision left and no city sensor reports such a figure: it is a corrupt or
#: uninitialised register, not a reading.
MAX_ABS_VALUE = 1e15

#: Strings longer than this are text, never a number with a unit; not running the
#: regular expression on them keeps a long free-text field cheap.
_MAX_NUMBER_TEXT = 64

_SENTINELS = frozenset(
    {"", "n/a", "na", "no sensor", "none", "null", "nil", "error", "err", "unknown", "undefined"}
    | {"-", "--", "---", "?"}
)
_NON_FINITE_TEXT = frozenset(
    {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
)
# Ordinals look like a number with a unit ("2nd") but are not measurements.
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})

# A decimal number, then optionally a unit: up to 16 characters without spaces
# or decimal digits, not starting with a sign, dot, comma, colon or slash, so
# dates ("2024-01-01"), times ("12:30"), decimal commas ("1,5"), fractions
# ("1/2"), versions ("1.2.3") and hex ("0x1F") stay text.
_NUMBER_RE = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"(?:\s*([^\s\d+\-.,:;/][^\s\d]{0,15}))?"
)


class BadValue(ValueError):
    """A value that is not a usable measurement or time; ``reason`` is the reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class NonFinite:
    """Stands for a ``NaN``/``Infinity`` literal in JSON.

    Python's ``json`` module accepts those literals and returns float NaN; the
    decoders map them to this marker instead, so no code path can take one for a
    number by accident, and ``parse_value`` rejects it per field.
    """

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return self.literal


def parse_value(value: Any, *, on_off: bool = False) -> tuple[float, str | None]:
    """Return ``(number, unit)`` for a payload value, or raise ``BadValue``.

    ``on_off`` lets "ON"/"OFF" (any case) count as 1.0/0.0; it is off by default
    because only some keys (a relay ``state``) mean a switch by it.
    """
    kind = type(value)
    if kind is float:
        if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return value, None
        raise _out_of_bounds(value)
    if kind is int:
        if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return float(value), None
        raise BadValue("out_of_range", f"{_digits(value)} is beyond ±{MAX_ABS_VALUE:g}")
    if kind is bool:
        return (1.0 if value else 0.0), None
    if kind is str:
        return _parse_text(value, on_off)
    if value is None:
        raise BadValue("bad_value", "null")
    if kind is NonFinite:
        raise BadValue("non_finite", f"JSON literal {value.literal}")
    if kind is dict:
        raise BadValue("bad_value", f"an object with {len(value)} keys, not a number")
    if kind is list:
        raise BadValue("bad_value", f"a list of {len(value)} items, not a number")
    raise BadValue("bad_value", f"a {kind.__name__}, not a number")


def _digits(value: int) -> str:
    # str() of a huge int is slow and may exceed the interpreter's digit limit.
    return f"an integer of {value.bit_length()} bits" if value.bit_length() > 64 else str(value)


def _out_of_bounds(value: float) -> BadValue:
    if math.isfinite(value):
        return BadValue("out_of_range", f"{value!r} is beyond ±{MAX_ABS_VALUE:g}")
    return BadValue("non_finite", repr(value))


def _parse_text(text: str, on_off: bool) -> tuple[float, str | None]:
    stripped = text.strip()
    if len(stripped) > _MAX_NUMBER_TEXT:
        raise BadValue("non_numeric", f"text of {len(stripped)} characters")
    folded = stripped.casefold()
    if folded in _SENTINELS:
        raise BadValue("bad_value", f"sentinel {text!r}")
    if folded in _NON_FINITE_TEXT:
        raise BadValue("non_finite", repr(text))
    if on_off:
        if folded == "on":
            return 1.0, None
        if folded == "off":
            return 0.0, None
    match = _NUMBER_RE.fullmatch(stripped)
    if match is None or folded.lstrip("+-").startswith("0x"):
        raise BadValue("non_numeric", f"not a number: {text!r}")
    unit = match.group(2)
    if unit is not None and unit.casefold() in _ORDINAL_SUFFIXES:
        raise BadValue("non_numeric", f"not a number: {text!r}")
    number = float(match.group(1))
    if -MAX_ABS_VALUE <= number <= MAX_ABS_VALUE:
        return number, unit
    raise _out_of_bounds(number)


# --- times -------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Cut-offs that tell the unit of a numeric epoch time by its magnitude. Below
#: 1e11 it is seconds (1e11 s is the year 5138); below 1e14 milliseconds (1e11 ms
#: is 1973-03-03, so no plausible millisecond time is taken for seconds); below
#: 1e17 microseconds; below 1e20 nanoseconds. Larger values are out of range.
SECONDS_BELOW = 1e11
MILLISECONDS_BELOW = 1e14
MICROSECONDS_BELOW = 1e17
NANOSECONDS_BELOW = 1e20

# RFC 3339 / ISO 8601 extended format, date and time required; seconds, fraction
# (any number of digits: ChirpStack and The Things Stack send nanoseconds) and a
# zone ("Z", "+01:00", "+0100", "+01") optional.
_ISO_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)
_EPOCH_TEXT_RE = re.compile(r"\d+(?:\.\d*)?")


def parse_time(value: Any, *, tz: tzinfo | None = None) -> datetime:
    """Return an aware UTC datetime for an epoch number or an ISO 8601 string.

    Numbers (and digit-only strings) are epoch times whose unit is told by
    magnitude, see ``SECONDS_BELOW`` and the cut-offs after it. Strings are
    ISO 8601 / RFC 3339 with a date and a time; a fraction finer than a
    microsecond is truncated. A string without a zone is in ``tz`` (UTC when
    ``None``); a local time that occurs twice at a DST change is taken as the
    first occurrence (``fold=0``). Raises ``BadValue``.
    """
    kind = type(value)
    if kind is str:
        return _parse_time_text(value, tz)
    if kind is int or kind is float:
        return _from_epoch(value)
    if kind is NonFinite:
        raise BadValue("non_finite", f"time is the JSON literal {value.literal}")
    if value is None:
        raise BadValue("bad_time", "time is null")
    raise BadValue("bad_time", f"time is a {kind.__name__}, not a number or an ISO 8601 string")


def epoch_seconds(seconds: float) -> datetime:
    """Return the aware UTC datetime ``seconds`` after 1970-01-01T00:00Z (no unit guessing)."""
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise BadValue("out_of_range", f"epoch time {seconds!r} s is outside the years 1..9999") from None


def _from_epoch(number: float) -> datetime:
    if isinstance(number, float) and not math.isfinite(number):
        raise BadValue("non_finite", f"time {number!r}")
    if number < 0:
        raise BadValue("out_of_range", f"epoch time {_number_text(number)} is before 1970")
    if number >= NANOSECONDS_BELOW:
        raise BadValue("out_of_range", f"epoch time {_number_text(number)} is too large for s, ms, µs or ns")
    if number < SECONDS_BELOW:
        return _EPOCH + timedelta(seconds=number)
    if number < MILLISECONDS_BELOW:
        return _EPOCH + timedelta(milliseconds=number)
    if number < MICROSECONDS_BELOW:
        return _EPOCH + timedelta(microseconds=number)
    if isinstance(number, int):
        # Integer nanoseconds keep their precision; truncate like ISO fractions.
        return _EPOCH + timedelta(microseconds=number // 1000)
    return _EPOCH + timedelta(microseconds=number / 1000)


def _number_text(number: float) -> str:
    return _digits(number) if isinstance(number, int) else repr(number)


def _parse_time_text(text: str, tz: tzinfo | None) -> datetime:
    stripped = text.strip()
    parsed: datetime | None = None
    # Fast path for the common RFC 3339 shape; the C parser is ten times cheaper
    # than the regular expression below, which only runs for the rest.
    if (
        len(stripped) >= 16
        and stripped[10] == "T"
        and stripped[4] == stripped[7] == "-"
        and stripped[13] == ":"
    ):
        try:
            parsed = datetime.fromisoformat(stripped)
        except ValueError:
            parsed = None
    if parsed is None:
        if _EPOCH_TEXT_RE.fullmatch(stripped):
            return _from_epoch(int(stripped) if stripped.isdigit() else float(stripped))
        if not _ISO_RE.fullmatch(stripped):
            shown = stripped if len(stripped) <= 40 else stripped[:40] + "…"
            raise BadValue("bad_time", f"not an ISO 8601 date and time: {shown!r}")
        try:
            parsed = datetime.fromisoformat(stripped.upper())
        except ValueError as exc:
            raise BadValue("bad_time", f"{stripped!r}: {exc}") from None
    zone = parsed.tzinfo
    if zone is UTC:  # fromisoformat gives the UTC singleton for "Z" and "+00:00"
        return parsed
    if zone is None:
        parsed = parsed.replace(tzinfo=tz or UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise BadValue("out_of_range", f"{stripped!r} is outside the years 1..9999 in UTC") from None


@lru_cache(maxsize=64)
def get_zone(name: str | None) -> tzinfo:
    """Return the zone for an IANA name ("Europe/Berlin"); ``None`` and "UTC" give UTC.

    Raises ``ConfigError`` for an unknown name: it is a setting, checked when the
    decoder options are checked, not a property of one message.
    """
    if name is None or name in ("UTC", "Z", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f'Invalid timezone {name!r}: expected an IANA zone name like "Europe/Berlin" or "UTC"'
        ) from None
