"""Silent sensor: a gap much longer than the sensor's own reporting cadence.

The cadence is learned per sensor: the median interval between its readings over the last
``keep`` days (robust to the odd retransmission or lost uplink). A gap of ``g`` seconds scores
``m / (m + m_half)`` with ``m = g / cadence − 1``: a sensor that reports every minute and falls
silent for ten is as suspect as one reporting hourly that misses ten hours.

At a reading, the score judges the gap that reading just closed. Between readings,
``score_idle(now)`` judges the gap still open: that is what the scoring job writes for a sensor
that sent nothing in an evaluation interval. Gaps scored at or above ``protect`` are not
learned.

>>> import numpy as np
>>> from detectors import get_detector
>>> t = np.concatenate([np.arange(0, 2 * 86400, 60.0), [2 * 86400 + 1800.0]])
>>> d = get_detector("silent")
>>> s = d.score_series(t, np.ones(len(t)))
>>> round(float(s.score[-1]), 2), s.at(len(t) - 1).evidence["cadence_s"]
(0.75, 60.0)
>>> round(d.score_idle(2 * 86400 + 1800.0 + 600).score, 2)   # ten minutes later, still nothing
0.47
"""

from __future__ import annotations

import copy

import numpy as np

from detectors.base import DEFAULT_PROTECT, Detector, Scored, squash
from detectors.baseline import CycleBaseline, day_groups
from detectors.registry import register
from detectors.timebase import local_clock
from sense311.errors import ConfigError

__all__ = ["Silent"]


@register
class Silent(Detector):
    """Gaps judged against the sensor's learned reporting cadence."""

    name = "silent"
    evidence_keys = ("gap_s", "cadence_s")

    def __init__(
        self,
        *,
        keep: int = 7,
        min_days: int = 1,
        m_half: float = 10.0,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if not 1 <= min_days <= keep or m_half <= 0:
            raise ConfigError(
                f"detector 'silent': need 1 <= min_days <= keep and m_half > 0, "
                f"got {min_days}, {keep}, {m_half}"
            )
        self.keep = keep
        self.min_days = min_days
        self.m_half = m_half
        self._cadence = CycleBaseline(1, keep, min_days)
        self._prev_t = np.nan

    def _score_gaps(self, gap: np.ndarray, cadence: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = gap / cadence - 1.0
        return np.where(np.isfinite(cadence) & (cadence > 0), squash(m, self.m_half), 0.0)

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        del x  # only the times matter
        n = len(t)
        gap = np.diff(np.concatenate([[self._prev_t], t]))
        day, _, _ = local_clock(t, "UTC")
        warming = self._warming(n)
        scores = np.zeros(n)
        ev = self._nan_evidence(n)
        zero = np.zeros(n, dtype=np.int64)
        for d, a, b in day_groups(day):
            self._cadence.roll(d)
            cadence, _, _ = self._cadence.lookup(zero[a:b])
            s = self._score_gaps(gap[a:b], cadence)
            s[warming[a:b]] = 0.0
            scores[a:b] = s
            ev["gap_s"][a:b] = gap[a:b]
            ev["cadence_s"][a:b] = cadence
            keep = learn[a:b] & np.isfinite(gap[a:b]) & (s < self.protect)
            self._cadence.add(zero[a:b][keep], gap[a:b][keep])
        self._prev_t = float(t[-1])
        return scores, ev

    def score_idle(self, t: float) -> Scored | None:
        """The score of the gap still open at ``t`` (UTC seconds) since the last reading."""
        if not np.isfinite(self._prev_t) or t <= self._prev_t:
            return None
        table = copy.deepcopy(self._cadence)
        table.roll(int(local_clock(np.array([t]), "UTC")[0][0]))
        cadence, _, _ = table.lookup(np.zeros(1, dtype=np.int64))
        gap = np.array([t - self._prev_t])
        score = float(self._score_gaps(gap, cadence)[0])
        evidence = {"gap_s": float(gap[0])}
        if np.isfinite(cadence[0]):
            evidence["cadence_s"] = float(cadence[0])
        return Scored(score, evidence)
