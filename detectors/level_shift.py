"""Level shift and drift: a two-sided CUSUM of robust z-scores against the seasonal baseline.

Each reading's z-score against its hour's robust expectation (see ``detectors.seasonal``) feeds
two cumulative sums, one for readings persistently above and one for readings persistently
below, each forgiving ``slack`` standard deviations per reading::

    S⁺ ← max(0, S⁺ + z − slack)        S⁻ ← max(0, S⁻ − z − slack)

A single odd reading barely moves them; a shift of a fraction of a standard deviation, or a
slow drift, adds up until it stands out. The score is ``S / (S + s_half)`` with ``S`` the
larger sum. Readings scored at or above ``protect`` are not learned, so a drifting sensor does
not drag its own baseline along.

>>> import numpy as np
>>> from detectors import get_detector
>>> rng = np.random.default_rng(5)
>>> t = np.arange(0, 5 * 86400, 600.0)
>>> x = 40 + 5 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 1, len(t))
>>> x[-72:] += np.linspace(0, 6, 72)                      # drifts away over the last 12 hours
>>> d = get_detector("level_shift", period="day", min_occurrences=3)
>>> s = d.score_series(t, x)
>>> float(s.score[:-72].max()) < 0.3, bool(s.score[-1] > 0.8)
(True, True)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from detectors.base import DEFAULT_PROTECT, Detector, squash
from detectors.baseline import CycleBaseline, day_groups
from detectors.registry import register
from detectors.seasonal import z_scores
from detectors.timebase import check_timezone, local_clock
from sense311.errors import ConfigError

__all__ = ["LevelShift"]


@register
class LevelShift(Detector):
    """Two-sided CUSUM over seasonal robust z-scores."""

    name = "level_shift"
    evidence_keys = ("expected", "scale", "z", "cusum_up", "cusum_down")

    def __init__(
        self,
        *,
        period: Literal["day", "none"] = "day",
        timezone: str = "UTC",
        keep: int = 8,
        min_occurrences: int = 3,
        slack: float = 1.0,
        s_half: float = 20.0,
        abs_floor: float = 0.0,
        rel_floor: float = 0.0,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if period not in ("day", "none"):
            raise ConfigError(f"detector 'level_shift': period must be 'day' or 'none', got {period!r}")
        if slack < 0 or s_half <= 0:
            raise ConfigError(
                f"detector 'level_shift': need slack >= 0 and s_half > 0, got {slack} and {s_half}"
            )
        if not 1 <= min_occurrences <= keep:
            raise ConfigError(
                f"detector 'level_shift': need 1 <= min_occurrences <= keep, got {min_occurrences} and {keep}"
            )
        check_timezone(timezone)
        self.period = period
        self.timezone = timezone
        self.keep = keep
        self.min_occurrences = min_occurrences
        self.slack = slack
        self.s_half = s_half
        self.abs_floor = abs_floor
        self.rel_floor = rel_floor
        self._baseline = CycleBaseline(24 if period == "day" else 1, keep, min_occurrences)
        # Running sums and their running minima: S = C − min(0, min C) is the CUSUM recursion
        # in closed form, which numpy computes with cumsum and minimum.accumulate.
        self._c_up = 0.0
        self._m_up = 0.0
        self._c_down = 0.0
        self._m_down = 0.0

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = len(t)
        day, hour, _ = local_clock(t, self.timezone)
        bucket = hour if self.period == "day" else np.zeros(n, dtype=np.int64)
        finite = np.isfinite(x)
        warming = self._warming(n)
        scores = np.zeros(n)
        ev = self._nan_evidence(n)
        for d, a, b in day_groups(day):
            self._baseline.roll(d)
            expected, scale, _ = self._baseline.lookup(bucket[a:b])
            z, used = z_scores(x[a:b], expected, scale, self.abs_floor, self.rel_floor)
            known = finite[a:b] & np.isfinite(z)
            zz = np.where(known, z, 0.0)
            up = np.where(known, zz - self.slack, 0.0)
            down = np.where(known, -zz - self.slack, 0.0)
            c_up = np.cumsum(np.concatenate([[self._c_up], up]))[1:]
            c_down = np.cumsum(np.concatenate([[self._c_down], down]))[1:]
            m_up = np.minimum(np.minimum.accumulate(c_up), self._m_up)
            m_down = np.minimum(np.minimum.accumulate(c_down), self._m_down)
            s_up = c_up - m_up
            s_down = c_down - m_down
            s = squash(np.maximum(s_up, s_down), self.s_half)
            s[warming[a:b]] = 0.0
            scores[a:b] = s
            ev["expected"][a:b] = expected
            ev["scale"][a:b] = np.where(np.isfinite(expected), used, np.nan)
            ev["z"][a:b] = np.where(known, z, np.nan)
            ev["cusum_up"][a:b] = s_up
            ev["cusum_down"][a:b] = s_down
            self._c_up, self._m_up = float(c_up[-1]), float(m_up[-1])
            self._c_down, self._m_down = float(c_down[-1]), float(m_down[-1])
            keep = learn[a:b] & finite[a:b] & (s < self.protect)
            self._baseline.add(bucket[a:b][keep], x[a:b][keep])
        return scores, ev
