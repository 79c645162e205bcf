"""Event times as the detectors see them: float seconds since the Unix epoch (UTC), and the
local hour of day / hour of week / day number that seasonal baselines bucket by.

Local time follows the city's time zone (an IANA name): street lights dim at local midnight and
bins fill by local habits, so buckets in UTC would smear across daylight-saving changes. Offsets
are looked up once per UTC hour and cached, which keeps a month of minute data to ~720 look-ups.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from sense311.errors import ConfigError

__all__ = ["DAY", "HOUR", "WEEK", "as_seconds", "check_timezone", "local_clock"]

HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
#: 1970-01-01 was a Thursday; hour-of-week counts from Monday 00:00, three days later.
_MONDAY_OFFSET_S = 3 * DAY


@lru_cache(maxsize=64)
def check_timezone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for ``name``; ``ConfigError`` naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r}: expected an IANA name like 'Europe/Amsterdam'"
        ) from None


@lru_cache(maxsize=200_000)
def _offset_of_hour(zone: str, utc_hour: int) -> int:
    when = dt.datetime.fromtimestamp(utc_hour * HOUR, tz=dt.UTC).astimezone(check_timezone(zone))
    offset = when.utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def as_seconds(timestamps: Any) -> np.ndarray:
    """Float seconds since the epoch (UTC) from floats, ``datetime64`` or aware datetimes."""
    if isinstance(timestamps, np.ndarray) and np.issubdtype(timestamps.dtype, np.datetime64):
        return timestamps.astype("datetime64[us]").astype(np.int64) / 1e6
    if isinstance(timestamps, Sequence) and timestamps and isinstance(timestamps[0], dt.datetime):
        if any(t.tzinfo is None for t in timestamps):
            raise ConfigError("timestamps must be timezone-aware datetimes (UTC), got a naive one")
        return np.array([t.timestamp() for t in timestamps], dtype=np.float64)
    out = np.asarray(timestamps, dtype=np.float64)
    if out.ndim != 1:
        raise ConfigError(f"timestamps must be one-dimensional, got shape {out.shape}")
    return out


def local_clock(seconds: np.ndarray, zone: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(local day number, hour of day 0–23, hour of week 0–167 from Monday)`` per timestamp."""
    seconds = np.asarray(seconds, dtype=np.float64)
    if not len(seconds):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    if zone == "UTC":
        local = seconds
    else:
        hours = np.floor(seconds / HOUR).astype(np.int64)
        unique, inverse = np.unique(hours, return_inverse=True)
        offsets = np.fromiter((_offset_of_hour(zone, int(h)) for h in unique), dtype=np.float64)
        local = seconds + offsets[inverse]
    day = np.floor(local / DAY).astype(np.int64)
    hour = np.floor((local - day * DAY) / HOUR).astype(np.int64)
    week_hour = np.floor(((local - _MONDAY_OFFSET_S) % WEEK) / HOUR).astype(np.int64)
    return day, np.clip(hour, 0, 23), np.clip(week_hour, 0, 167)
