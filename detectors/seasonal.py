"""Seasonal baseline: how far a reading is from its own history at this hour of the week.

The expectation is robust (median of medians, scale from median absolute deviations, see
``detectors.baseline``) per local hour of the week, learned from completed days; until a
week-hour bucket has ``min_occurrences`` past weeks, the same hour of day over the last days
stands in. The score is the robust z-score squashed onto [0, 1]: ``z² / (z² + z_half²)``, so
``z = z_half`` scores 0.5 and ``3·z_half`` scores 0.9.

``direction`` keeps one side only (``"low"``: a lamp drawing half its usual power; ``"high"``).
Readings at or below ``active_above`` are neither scored nor learned: a lamp that is off has no
power to compare (darkness is the peer-dark detector's business). ``abs_floor`` (value units)
and ``rel_floor`` (share of the expectation) keep a series that never moved from calling every
wobble infinitely unusual.

>>> import numpy as np
>>> from detectors import get_detector
>>> rng = np.random.default_rng(7)
>>> t = np.arange(0, 6 * 86400, 600.0)                           # six days, every 10 minutes
>>> hour = (t % 86400) // 3600
>>> power = np.where(hour < 5, 18.0, 36.0) + rng.normal(0, 0.2, len(t))
>>> power[-6:] *= 0.5                                            # the last hour: half power
>>> d = get_detector("seasonal", period="day", direction="low", min_occurrences=3)
>>> s = d.score_series(t, power)
>>> float(s.score[:-6].max()) < 0.2, bool(s.score[-6:].min() > 0.9)
(True, True)
>>> e = s.at(len(t) - 1).evidence
>>> round(e["expected"], 1), round(e["z"], 1)
(35.9, -25.0)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from detectors.base import DEFAULT_PROTECT, Detector, squash
from detectors.baseline import CycleBaseline, day_groups
from detectors.registry import register
from detectors.timebase import check_timezone, local_clock
from sense311.errors import ConfigError

__all__ = ["SeasonalBaseline", "z_scores"]

#: Below this the scale is treated as zero (avoids dividing by rounding noise).
_TINY = 1e-9


def z_scores(
    x: np.ndarray, expected: np.ndarray, scale: np.ndarray, abs_floor: float, rel_floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Robust z-scores and the floored scale they were divided by."""
    floor = np.maximum(abs_floor, rel_floor * np.abs(expected))
    used = np.fmax(np.fmax(scale, floor), _TINY)
    return (x - expected) / used, used


def one_sided(z: np.ndarray, direction: str) -> np.ndarray:
    if direction == "low":
        return np.maximum(-z, 0.0)
    if direction == "high":
        return np.maximum(z, 0.0)
    return np.abs(z)


@register
class SeasonalBaseline(Detector):
    """Robust expectation by hour of week (hour of day until enough weeks), score by z-score."""

    name = "seasonal"
    evidence_keys = ("expected", "scale", "z", "history")

    def __init__(
        self,
        *,
        period: Literal["week", "day", "none"] = "week",
        timezone: str = "UTC",
        keep: int = 8,
        min_occurrences: int = 3,
        direction: Literal["both", "low", "high"] = "both",
        active_above: float | None = None,
        abs_floor: float = 0.0,
        rel_floor: float = 0.02,
        z_half: float = 4.0,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if period not in ("week", "day", "none"):
            raise ConfigError(f"detector 'seasonal': period must be 'week', 'day' or 'none', got {period!r}")
        if direction not in ("both", "low", "high"):
            raise ConfigError(
                f"detector 'seasonal': direction must be 'both', 'low' or 'high', got {direction!r}"
            )
        if keep < 1 or min_occurrences < 1 or min_occurrences > keep:
            raise ConfigError(
                f"detector 'seasonal': need 1 <= min_occurrences <= keep, got {min_occurrences} and {keep}"
            )
        if z_half <= 0:
            raise ConfigError(f"detector 'seasonal': z_half must be > 0, got {z_half}")
        check_timezone(timezone)
        self.period = period
        self.timezone = timezone
        self.keep = keep
        self.min_occurrences = min_occurrences
        self.direction = direction
        self.active_above = active_above
        self.abs_floor = abs_floor
        self.rel_floor = rel_floor
        self.z_half = z_half
        # Hour of day over the last days: the primary baseline for period "day", the stand-in
        # for a week-hour bucket without enough weeks behind it for period "week".
        buckets = 1 if period == "none" else 24
        self._daily = CycleBaseline(buckets, 2 * keep if period == "week" else keep, min_occurrences)
        self._weekly = CycleBaseline(168, keep, min(min_occurrences, 2)) if period == "week" else None

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = len(t)
        day, hour, week_hour = local_clock(t, self.timezone)
        daily_bucket = np.zeros(n, dtype=np.int64) if self.period == "none" else hour
        active = np.isfinite(x)
        if self.active_above is not None:
            active &= x > self.active_above
        warming = self._warming(n)
        scores = np.zeros(n)
        ev = self._nan_evidence(n)
        for d, a, b in day_groups(day):
            self._daily.roll(d)
            expected, scale, history = self._daily.lookup(daily_bucket[a:b])
            if self._weekly is not None:
                self._weekly.roll(d)
                w_exp, w_scale, w_hist = self._weekly.lookup(week_hour[a:b])
                use = np.isfinite(w_exp)
                expected = np.where(use, w_exp, expected)
                scale = np.where(use, w_scale, scale)
                history = np.where(use, w_hist, history)
            z, used = z_scores(x[a:b], expected, scale, self.abs_floor, self.rel_floor)
            ok = active[a:b] & np.isfinite(expected)
            s = np.where(ok, squash(one_sided(z, self.direction) ** 2, self.z_half**2), 0.0)
            s[warming[a:b]] = 0.0
            scores[a:b] = s
            ev["expected"][a:b] = expected
            ev["scale"][a:b] = np.where(np.isfinite(expected), used, np.nan)
            ev["z"][a:b] = np.where(ok, z, np.nan)
            ev["history"][a:b] = history
            keep = learn[a:b] & active[a:b] & (s < self.protect)
            self._daily.add(daily_bucket[a:b][keep], x[a:b][keep])
            if self._weekly is not None:
                self._weekly.add(week_hour[a:b][keep], x[a:b][keep])
        return scores, ev
