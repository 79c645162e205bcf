"""Sunset and sunrise for the city, as a table of nights that vectorised code can look up.

Street lights switch on when the sun has set and off before it rises; the table lists, for
every local date of the simulated period (one day of margin on each side), the night from that
date's sunset to the next date's sunrise in UTC epoch milliseconds. Sunrise and sunset are the
standard ones (sun centre 0.833° below the horizon), from ``astral``. Where the sun never sets
or never rises (polar summer or winter) the day is all light or all night.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from astral import Observer
from astral.sun import elevation, sunrise, sunset

from simulators.city import CityConfig

__all__ = ["NightTable"]

_DAY = dt.timedelta(days=1)


def _ms(t: dt.datetime) -> int:
    return round(t.timestamp() * 1000)


class NightTable:
    """The nights covering ``[start_ms, end_ms]`` (UTC epoch ms) for ``city``.

    ``starts[j]``/``ends[j]`` are sunset and the following sunrise of night ``j``, sorted.
    """

    def __init__(self, city: CityConfig, start_ms: int, end_ms: int) -> None:
        zone = city.zone
        observer = Observer(latitude=city.lat, longitude=city.lon)
        first = dt.datetime.fromtimestamp(start_ms / 1000, tz=zone).date() - _DAY
        last = dt.datetime.fromtimestamp(end_ms / 1000, tz=zone).date() + _DAY
        intervals: list[tuple[int, int]] = []
        day = first
        while day <= last:
            intervals.extend(self._nights_of(observer, day, zone))
            day += _DAY
        merged: list[list[int]] = []
        for lo, hi in sorted(intervals):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.starts = np.array([m[0] for m in merged], dtype=np.int64)
        self.ends = np.array([m[1] for m in merged], dtype=np.int64)

    @staticmethod
    def _nights_of(observer: Observer, day: dt.date, zone: dt.tzinfo) -> list[tuple[int, int]]:
        """The night that begins at ``day``'s sunset (or all of ``day`` in polar night)."""
        try:
            set_at = sunset(observer, day, tzinfo=zone)
            rise_next = sunrise(observer, day + _DAY, tzinfo=zone)
            return [(_ms(set_at), _ms(rise_next))]
        except ValueError:
            noon = dt.datetime.combine(day, dt.time(12), tzinfo=zone)
            if elevation(observer, noon) > 0:
                return []  # midnight sun: no night that day
            midnight = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
            return [(_ms(midnight), _ms(midnight + _DAY))]

    def night_index(self, t_ms: np.ndarray) -> np.ndarray:
        """Index of the latest night that began at or before each time (-1 if none)."""
        return np.searchsorted(self.starts, t_ms, side="right") - 1

    def is_dark(
        self, t_ms: np.ndarray, on_delay_ms: np.ndarray | int = 0, off_advance_ms: np.ndarray | int = 0
    ) -> np.ndarray:
        """True where a lamp switched on ``on_delay_ms`` after sunset and off ``off_advance_ms``
        before sunrise is lit at ``t_ms``."""
        j = self.night_index(t_ms)
        safe = np.maximum(j, 0)
        lit = (t_ms >= self.starts[safe] + on_delay_ms) & (t_ms < self.ends[safe] - off_advance_ms)
        return lit & (j >= 0)

    def sun_down(self, t_ms: np.ndarray) -> np.ndarray:
        """True where the sun is below the horizon at ``t_ms``."""
        return self.is_dark(np.asarray(t_ms, dtype=np.int64))
