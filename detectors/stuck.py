"""Stuck / flat-line: a sensor whose value stopped changing for longer than its habits allow.

The detector learns how often each sensor's value changes, per local hour of day (changes per
hour of reporting, over the last ``keep`` days). A flat run — consecutive readings within
``tolerance`` of each other — is judged by the number of changes the sensor would normally have
made in that time, ``E`` (the learned rate integrated over the run). Under a Poisson model the
chance of a run that flat is ``exp(−E)``; the score is ``E / (E + e_half)``. A noisy air monitor
changes every minute, so five identical readings already say a lot; a bin's level changes only
when a bag goes in, so it may sit still all night without raising an eyebrow.

Intervals longer than ``max_gap`` seconds (the sensor was silent) neither add to ``E`` nor
teach the rates: silence is the silent-sensor detector's business. While a run scores at or
above ``protect`` its intervals are not learned, so a stuck sensor cannot teach the detector
that stillness is normal.

>>> import numpy as np
>>> from detectors import get_detector
>>> rng = np.random.default_rng(3)
>>> t = np.arange(0, 4 * 86400, 300.0)                    # four days, every 5 minutes
>>> x = np.round(20 + rng.normal(0, 1.5, len(t)), 1)
>>> x[-24:] = x[-25]                                      # frozen for the last two hours
>>> s = get_detector("stuck", min_days=2).score_series(t, x)
>>> float(s.score[:-24].max()) < 0.5, bool(s.score[-1] > 0.7)
(True, True)
>>> round(s.at(len(t) - 1).evidence["run_s"])
7200
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from detectors.base import DEFAULT_PROTECT, Detector, squash
from detectors.baseline import day_groups
from detectors.registry import register
from detectors.timebase import HOUR, check_timezone, local_clock
from sense311.errors import ConfigError

__all__ = ["FlatLine"]


class _RateTable:
    """Changes and exposure (s) per bucket and completed day, over the last ``keep`` days."""

    def __init__(self, buckets: int, keep: int, min_days: int) -> None:
        self.keep = keep
        self.min_days = min_days
        self.changes = np.zeros((buckets, keep))
        self.exposure = np.zeros((buckets, keep))
        self.slot = 0
        self.days = 0
        self.rate = np.full(buckets, np.nan)  # changes per hour
        self.day: int | None = None
        self._today_c = np.zeros(buckets)
        self._today_e = np.zeros(buckets)

    def roll(self, day: int) -> None:
        if self.day is not None and day != self.day:
            self.changes[:, self.slot] = self._today_c
            self.exposure[:, self.slot] = self._today_e
            self.slot = (self.slot + 1) % self.keep
            self.days = min(self.days + 1, self.keep)
            self._today_c = np.zeros_like(self._today_c)
            self._today_e = np.zeros_like(self._today_e)
            exposure_h = self.exposure.sum(axis=1) / HOUR
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = self.changes.sum(axis=1) / exposure_h
            self.rate = np.where((exposure_h > 0) & (self.days >= self.min_days), rate, np.nan)
        self.day = day

    def add(self, buckets: np.ndarray, changed: np.ndarray, dt: np.ndarray) -> None:
        np.add.at(self._today_c, buckets, changed.astype(np.float64))
        np.add.at(self._today_e, buckets, dt)


@register
class FlatLine(Detector):
    """Flat runs judged by the changes the sensor would normally have made meanwhile."""

    name = "stuck"
    evidence_keys = ("run_s", "run_readings", "expected_changes", "value")

    def __init__(
        self,
        *,
        tolerance: float = 0.0,
        period: Literal["day", "none"] = "day",
        timezone: str = "UTC",
        keep: int = 14,
        min_days: int = 3,
        max_gap: float = 3600.0,
        e_half: float = 10.0,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if period not in ("day", "none"):
            raise ConfigError(f"detector 'stuck': period must be 'day' or 'none', got {period!r}")
        if tolerance < 0 or max_gap <= 0 or e_half <= 0:
            raise ConfigError(
                f"detector 'stuck': need tolerance >= 0, max_gap > 0 s and e_half > 0, "
                f"got {tolerance}, {max_gap}, {e_half}"
            )
        if not 1 <= min_days <= keep:
            raise ConfigError(f"detector 'stuck': need 1 <= min_days <= keep, got {min_days} and {keep}")
        check_timezone(timezone)
        self.tolerance = tolerance
        self.period = period
        self.timezone = timezone
        self.keep = keep
        self.min_days = min_days
        self.max_gap = max_gap
        self.e_half = e_half
        self._table = _RateTable(24 if period == "day" else 1, keep, min_days)
        self._prev_t = np.nan
        self._prev_x = np.nan
        self._cum = 0.0  # expected changes summed since the first observation
        self._run_cum = 0.0  # ... at the start of the current run
        self._run_t = np.nan
        self._run_n = 0

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = len(t)
        scores = np.zeros(n)
        ev = self._nan_evidence(n)
        warming = self._warming(n)
        ok = np.flatnonzero(np.isfinite(x))
        if not len(ok):
            return scores, ev
        tt, xx, ll, warm = t[ok], x[ok], learn[ok], warming[ok]
        prev_t = np.concatenate([[self._prev_t], tt[:-1]])
        prev_x = np.concatenate([[self._prev_x], xx[:-1]])
        dt = tt - prev_t
        changed = ~(np.abs(xx - prev_x) <= self.tolerance)  # the first ever reading starts a run
        counted = np.isfinite(dt) & (dt <= self.max_gap)
        day, hour, _ = local_clock(tt, self.timezone)
        bucket = hour if self.period == "day" else np.zeros(len(tt), dtype=np.int64)
        out_s = np.zeros(len(tt))
        out_e = np.zeros(len(tt))
        out_run_t = np.zeros(len(tt))
        out_run_n = np.zeros(len(tt))
        for d, a, b in day_groups(day):
            self._table.roll(d)
            rate = self._table.rate[bucket[a:b]]
            inc = np.where(counted[a:b] & np.isfinite(rate), np.nan_to_num(rate) * dt[a:b] / HOUR, 0.0)
            cum = np.cumsum(np.concatenate([[self._cum], inc]))[1:]
            idx = np.where(changed[a:b], np.arange(b - a), -1)
            last = np.maximum.accumulate(idx)
            started = last >= 0
            run_cum = np.where(started, cum[np.maximum(last, 0)], self._run_cum)
            run_t = np.where(started, tt[a:b][np.maximum(last, 0)], self._run_t)
            run_n = np.where(started, np.arange(b - a) - last, self._run_n + np.arange(1, b - a + 1))
            expected = cum - run_cum
            s = squash(expected, self.e_half)
            s[warm[a:b]] = 0.0
            out_s[a:b], out_e[a:b], out_run_t[a:b], out_run_n[a:b] = s, expected, run_t, run_n
            keep = ll[a:b] & counted[a:b] & (s < self.protect)
            self._table.add(bucket[a:b][keep], changed[a:b][keep], dt[a:b][keep])
            self._cum = float(cum[-1])
            self._run_cum = float(run_cum[-1])
            self._run_t = float(run_t[-1])
            self._run_n = int(run_n[-1])
        self._prev_t, self._prev_x = float(tt[-1]), float(xx[-1])
        scores[ok] = out_s
        ev["run_s"][ok] = tt - out_run_t
        ev["run_readings"][ok] = out_run_n + 1
        ev["expected_changes"][ok] = out_e
        ev["value"][ok] = xx
        return scores, ev
