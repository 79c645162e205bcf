"""Rise rate: a level rising much faster than it usually does at this hour.

For fill levels and counters that go up by deposits and down by emptying (bins, tanks), the
interesting speed is how fast the level *rises*. The detector first takes a causal median of
the last ``filter_width`` readings (a lone false echo cannot pass it), then sums the rises of
that filtered series over the trailing ``window`` seconds — drops, i.e. emptying, are ignored —
and divides by the window in hours: the rise per hour. That rate is then judged, high side
only, by a seasonal baseline (``detectors.seasonal``) of the sensor's own rates: a bin filling
three times faster than it ever does on a Tuesday afternoon stands out even if it is not full.

Deposits come in lumps, so on quiet hours most days see no rise at all and the robust spread of
the history is nearly zero; ``abs_floor`` (level units per hour; the default suits fill levels
0–1, where it is one 2 % bag every two hours) keeps a single bag from looking like a flood.

>>> import numpy as np
>>> from detectors import get_detector
>>> t = np.arange(0, 8 * 86400, 600.0)
>>> rate = np.full(len(t), 0.006)                          # fill per 10 minutes
>>> rate[-36:] *= 3                                        # the last six hours: three times faster
>>> filled = np.cumsum(rate)
>>> level = filled - filled[(t // 86400 * 144).astype(int)]  # emptied every midnight
>>> d = get_detector("rise_rate", period="day", window=3 * 3600)
>>> s = d.score_series(t, level)
>>> float(s.score[:-36].max()) < 0.2, bool(s.score[-1] > 0.8)
(True, True)
>>> round(s.at(len(t) - 1).evidence["rise_per_h"], 3), round(s.at(len(t) - 1).evidence["expected"], 3)
(0.108, 0.036)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import DEFAULT_PROTECT, Detector
from detectors.registry import register
from detectors.seasonal import SeasonalBaseline
from detectors.timebase import HOUR
from sense311.errors import ConfigError

__all__ = ["RiseRate"]


@register
class RiseRate(Detector):
    """Rise per hour over a trailing window, judged by a seasonal baseline (high side)."""

    name = "rise_rate"
    evidence_keys = ("rise_per_h", "expected", "scale", "z")

    def __init__(
        self,
        *,
        window: float = 6 * HOUR,
        filter_width: int = 5,
        period: Literal["week", "day", "none"] = "week",
        timezone: str = "UTC",
        keep: int = 8,
        min_occurrences: int = 3,
        abs_floor: float = 0.01,
        rel_floor: float = 0.25,
        z_half: float = 3.0,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if window <= 0 or filter_width < 1:
            raise ConfigError(
                f"detector 'rise_rate': need window > 0 s and filter_width >= 1, "
                f"got {window} and {filter_width}"
            )
        self.window = window
        self.filter_width = filter_width
        self.period = period
        self.timezone = timezone
        self.keep = keep
        self.min_occurrences = min_occurrences
        self.abs_floor = abs_floor
        self.rel_floor = rel_floor
        self.z_half = z_half
        self._inner = SeasonalBaseline(
            period=period,
            timezone=timezone,
            keep=keep,
            min_occurrences=min_occurrences,
            direction="high",
            abs_floor=abs_floor,
            rel_floor=rel_floor,
            z_half=z_half,
            protect=protect,
        )
        self._raw = np.zeros(0)  # the last filter_width - 1 finite readings
        self._last_f = np.nan  # the last filtered value
        self._cum = 0.0  # rises summed since the first reading
        self._hist_t = np.zeros(0)  # times and running sums within the last window
        self._hist_c = np.zeros(0)

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
        tt, xx = t[ok], x[ok]
        k = self.filter_width
        raw = np.concatenate([self._raw, xx])
        pad = (
            np.concatenate([np.full(k - 1 - len(self._raw), np.nan), raw]) if len(self._raw) < k - 1 else raw
        )
        with np.errstate(all="ignore"):
            filtered = np.nanmedian(sliding_window_view(pad, k), axis=1)
        rises = np.maximum(np.diff(np.concatenate([[self._last_f], filtered])), 0.0)
        rises = np.where(np.isfinite(rises), rises, 0.0)
        cum = np.cumsum(np.concatenate([[self._cum], rises]))[1:]
        all_t = np.concatenate([self._hist_t, tt])
        all_c = np.concatenate([self._hist_c, cum])
        # The running sum just before the window: at the last reading at or before t − window.
        j = np.searchsorted(all_t, tt - self.window, side="right") - 1
        covered = j >= 0
        base = np.where(covered, all_c[np.maximum(j, 0)], np.nan)
        rate = (cum - base) / (self.window / HOUR)
        inner = self._inner.score_series(tt, rate, learn=learn[ok] & covered)
        s = inner.score.copy()
        s[warming[ok]] = 0.0
        scores[ok] = s
        ev["rise_per_h"][ok] = rate
        ev["expected"][ok] = inner.evidence["expected"]
        ev["scale"][ok] = inner.evidence["scale"]
        ev["z"][ok] = inner.evidence["z"]
        self._raw = raw[-(k - 1) :] if k > 1 else np.zeros(0)
        self._last_f = float(filtered[-1])
        self._cum = float(cum[-1])
        keep = all_t > tt[-1] - self.window - 1e-9
        # Keep one reading at or before the window's start, so the next chunk can find it.
        first = max(int(np.argmax(keep)) - 1, 0) if keep.any() else len(all_t) - 1
        self._hist_t, self._hist_c = all_t[first:], all_c[first:]
        return scores, ev
