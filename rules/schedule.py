"""When a rule is active: by the sun's position over the city, by local wall-clock windows, or both.

Outside its schedule a rule makes no transition (a lamp found dark at night stays firing through
the day until a night shows it lit). Both parts are functions of the instant alone, so live and
backtest agree:

* ``sun: night`` — from the moment the setting sun's centre passes ``dusk`` degrees until the
  rising sun passes ``dawn`` degrees (both default −0.833°, the standard sunset and sunrise; −6°
  is civil twilight). Different elevations make the night asymmetric: a street-light rule can
  start at sunset yet stop well before the photocells switch lamps off at dawn. ``sun: day`` is
  the complement. Computed per local date with ``astral``; where the sun never crosses the
  elevation that day (polar summer/winter) the whole day is light or dark. Elevations are
  geometric (no refraction): −0.833° is then exactly the standard sunrise and sunset, the
  0.833° being refraction at the horizon plus the sun's radius.
* ``times`` — windows of local wall-clock time in the city's time zone, e.g. 22:00–06:00. A
  window whose end is before its start runs past midnight; ``days`` names the days a window
  *starts* on. Local time is taken from the IANA zone at each instant, so a window keeps its
  wall-clock meaning across a DST change (on the spring-forward night 22:00–06:00 lasts 7 hours).

Instants are int64 microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from astral import Observer, SunDirection
from astral.sun import elevation, time_at_elevation

from rules.errors import RulesError

__all__ = ["DAYS", "STANDARD_SUNSET_ELEVATION", "City", "Schedule", "TimeWindow"]

#: Day names as rule files write them, Monday first (``datetime.weekday()`` order).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: The sun's centre at the standard sunrise/sunset (refraction and the solar radius), degrees.
STANDARD_SUNSET_ELEVATION = -0.833

_DAY = dt.timedelta(days=1)
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class City:
    """Where the rule pack's city is: degrees, and an IANA time zone name."""

    lat: float
    lon: float
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``start``–``end`` local wall-clock time on ``days`` (weekday numbers, Monday = 0)."""

    start: dt.time
    end: dt.time
    days: frozenset[int] = frozenset(range(7))

    def contains(self, local: dt.datetime) -> bool:
        tod = local.time().replace(tzinfo=None, fold=0)
        if self.start <= self.end:
            return self.start <= tod < self.end and local.weekday() in self.days
        if tod >= self.start:
            return local.weekday() in self.days
        return tod < self.end and (local.weekday() - 1) % 7 in self.days


@lru_cache(maxsize=4096)
def _night_of(
    lat: float, lon: float, tz: str, dusk: float, dawn: float, day: dt.date
) -> tuple[int, int] | None:
    """The night beginning on local ``day`` (sun below ``dusk`` setting until above ``dawn``
    rising), as (start, end) µs since the epoch, or None when no night starts that day."""
    zone = ZoneInfo(tz)
    observer = Observer(latitude=lat, longitude=lon)
    try:
        start = time_at_elevation(
            observer, dusk, day, SunDirection.SETTING, tzinfo=zone, with_refraction=False
        )
    except ValueError:
        start = None
    try:
        end = time_at_elevation(
            observer, dawn, day + _DAY, SunDirection.RISING, tzinfo=zone, with_refraction=False
        )
    except ValueError:
        end = None
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    next_midnight = dt.datetime.combine(day + _DAY, dt.time(0), tzinfo=zone)
    if start is None:
        noon = dt.datetime.combine(day, dt.time(12), tzinfo=zone)
        if elevation(observer, noon, with_refraction=False) >= dusk:
            return None  # the sun stays above the elevation all day: no night starts
        start = midnight  # polar night: dark from the day's start
    if end is None:
        end = next_midnight  # no sunrise tomorrow: tomorrow's own (polar) night continues it
    return round(start.timestamp() * _US), round(end.timestamp() * _US)


def _nights(
    city: City, dusk: float, dawn: float, first: dt.date, last: dt.date
) -> tuple[np.ndarray, np.ndarray]:
    spans: list[tuple[int, int]] = []
    day = first
    while day <= last:
        night = _night_of(city.lat, city.lon, city.timezone, dusk, dawn, day)
        if night is not None and night[1] > night[0]:
            spans.append(night)
        day += _DAY
    merged: list[list[int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    starts = np.array([m[0] for m in merged], dtype=np.int64)
    ends = np.array([m[1] for m in merged], dtype=np.int64)
    return starts, ends


@dataclass(frozen=True, slots=True)
class Schedule:
    """Active when the sun condition (if any) and one of the windows (if any) hold."""

    sun: str | None = None  # "night" | "day"
    #: Degrees: night begins when the setting sun passes ``dusk`` and ends when it rises past ``dawn``.
    dusk: float = STANDARD_SUNSET_ELEVATION
    dawn: float = STANDARD_SUNSET_ELEVATION
    windows: tuple[TimeWindow, ...] = field(default=())

    @property
    def always(self) -> bool:
        return self.sun is None and not self.windows

    def active(self, instants: np.ndarray, city: City | None) -> np.ndarray:
        """Boolean per instant (int64 µs since the epoch)."""
        instants = np.asarray(instants, dtype=np.int64)
        result = np.ones(len(instants), dtype=bool)
        if self.always or len(instants) == 0:
            return result
        if city is None:
            raise RulesError("a schedule needs the city's position and time zone")
        zone = city.zone
        if self.sun is not None:
            first = dt.datetime.fromtimestamp(int(instants.min()) / _US, tz=zone).date() - _DAY
            last = dt.datetime.fromtimestamp(int(instants.max()) / _US, tz=zone).date() + _DAY
            starts, ends = _nights(city, self.dusk, self.dawn, first, last)
            j = np.searchsorted(starts, instants, side="right") - 1
            safe = np.maximum(j, 0)
            dark = (j >= 0) & (instants < ends[safe]) if len(starts) else np.zeros(len(instants), bool)
            result &= dark if self.sun == "night" else ~dark
        if self.windows:
            inside = np.fromiter(
                (
                    any(w.contains(dt.datetime.fromtimestamp(int(t) / _US, tz=zone)) for w in self.windows)
                    for t in instants
                ),
                dtype=bool,
                count=len(instants),
            )
            result &= inside
        return result
