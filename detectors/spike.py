"""Spikes: a single wild reading that the next reading takes back.

The reference is the median of the ``window`` readings before the candidate, its scale their
median absolute deviation (floored by ``abs_floor`` and ``rel_floor`` × |median|). Reading
``i − 1`` is a spike when it sits far from the reference *and* reading ``i`` is back within
``back_z`` scales of it; the score at ``i`` is then ``z² / (z² + z_half²)`` of reading ``i − 1``.
Waiting one reading is what tells a spike from a level change (a bin being emptied, a lamp
switching on): those stay where they jumped. The score stays causal — it uses readings up to
``i`` — and is reported one reading late, which the evidence's ``lag_s`` states.

A rolling median moves only when half its window does, so the spikes themselves barely shift
the reference; ``protect`` is therefore not needed and not used here.

>>> import numpy as np
>>> from detectors import get_detector
>>> t = np.arange(200) * 60.0
>>> x = 50 + np.sin(t / 3000.0)
>>> x[120] = 95.0                                         # one wild reading
>>> s = get_detector("spike").score_series(t, x)
>>> int(np.argmax(s.score)), round(float(s.score.max()), 2), round(s.at(121).evidence["z"])
(121, 0.98, 43)
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import DEFAULT_PROTECT, Detector, squash
from detectors.registry import register
from detectors.seasonal import z_scores
from sense311.errors import ConfigError

__all__ = ["Spike"]


@register
class Spike(Detector):
    """Hampel-style spikes, confirmed by the next reading coming back."""

    name = "spike"
    evidence_keys = ("expected", "scale", "z", "spike_value", "lag_s")

    def __init__(
        self,
        *,
        window: int = 30,
        min_window: int = 10,
        back_z: float = 3.0,
        abs_floor: float = 0.0,
        rel_floor: float = 0.02,
        z_half: float = 6.0,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if not 2 <= min_window <= window:
            raise ConfigError(
                f"detector 'spike': need 2 <= min_window <= window, got {min_window} and {window}"
            )
        if back_z <= 0 or z_half <= 0:
            raise ConfigError(f"detector 'spike': back_z and z_half must be > 0, got {back_z} and {z_half}")
        self.window = window
        self.min_window = min_window
        self.back_z = back_z
        self.abs_floor = abs_floor
        self.rel_floor = rel_floor
        self.z_half = z_half
        self._buf_x = np.zeros(0)  # the last window + 1 finite readings
        self._buf_t = np.zeros(0)

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        del learn  # the rolling median is its own protection
        n = len(t)
        scores = np.zeros(n)
        ev = self._nan_evidence(n)
        warming = self._warming(n)
        ok = np.flatnonzero(np.isfinite(x))
        if not len(ok):
            return scores, ev
        w = self.window
        allx = np.concatenate([self._buf_x, x[ok]])
        allt = np.concatenate([self._buf_t, t[ok]])
        # Position p in allx is judged at p + 1: candidate allx[p], reference allx[p − w : p].
        pad = np.concatenate([np.full(w, np.nan), allx])
        windows = sliding_window_view(pad, w)[: len(allx)]  # windows[p] = allx[p − w : p]
        first = len(self._buf_x)  # allx index of this chunk's first reading
        cand = np.arange(first - 1, len(allx) - 1)  # candidates judged by this chunk's readings
        valid = cand >= 0
        cand_c = np.maximum(cand, 0)
        win = windows[cand_c]
        filled = np.sum(np.isfinite(win), axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # windows still empty at the start
            ref = np.nanmedian(win, axis=1) if len(win) else np.zeros(0)
            mad = np.nanmedian(np.abs(win - ref[:, None]), axis=1) if len(win) else np.zeros(0)
        z, scale = z_scores(allx[cand_c], ref, 1.4826 * mad, self.abs_floor, self.rel_floor)
        back = np.abs(allx[first:] - ref) / scale < self.back_z
        usable = valid & (filled >= self.min_window) & back
        s = np.where(usable, squash(z**2, self.z_half**2), 0.0)
        s[warming[ok]] = 0.0
        scores[ok] = s
        ev["expected"][ok] = np.where(valid, ref, np.nan)
        ev["scale"][ok] = np.where(valid, scale, np.nan)
        ev["z"][ok] = np.where(usable, z, np.nan)
        ev["spike_value"][ok] = np.where(usable, allx[cand_c], np.nan)
        ev["lag_s"][ok] = np.where(usable, allt[first:] - allt[cand_c], np.nan)
        self._buf_x = allx[-(w + 1) :]
        self._buf_t = allt[-(w + 1) :]
        return scores, ev
