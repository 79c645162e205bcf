"""Window forest: scikit-learn's IsolationForest on features of the recent window.

Each reading is described by its last ``window`` readings, relative to the sensor's own
reference (the median, robust scale and median reporting interval of its first
``grace_period`` readings):

==============  ==============================================================================
feature         meaning
==============  ==============================================================================
``level``       window median − reference median, in reference scales
``slope``       second half's mean − first half's mean, in reference scales
``spread``      log(1 + window MAD / reference scale)
``changes``     share of consecutive readings that differ by more than ``tolerance``
``step``        log(1 + median size of those changes / reference scale)
``duty``        share of readings above the reference median (on/off duty cycle)
``tod_sin/cos`` local time of day on the unit circle
``gap``         log(longest interval in the window / reference interval)
==============  ==============================================================================

The forest is meant to be shared by every sensor of one kind and metric: ``fit(series)`` trains
it on many sensors' history (fault episodes masked out), and each sensor's detector then scores
its own windows with it. A detector that was never fitted trains a forest on its own first
``grace_period`` readings. The isolation score ``s`` (0.5 ordinary, near 1 isolated) is mapped to
``(s − q) / (1 − q)`` clipped to [0, 1], with ``q`` the ``calibration_quantile`` of the training
scores, so training-like windows score 0. Forests are trained, not updated online, so
``protect`` plays no part. Features are computed every ``stride`` readings (the score in between
repeats the last one): an IsolationForest is the costliest part of scoring.

>>> import numpy as np
>>> from detectors import get_detector
>>> rng = np.random.default_rng(2)
>>> t = np.arange(0, 3 * 86400, 300.0)
>>> x = 20 + 5 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 0.5, len(t))
>>> x[-48:] = 31.0                                         # stuck at a wrong value for four hours
>>> d = get_detector("forest", window=24, stride=1, grace_period=576, seed=1)
>>> s = d.score_series(t, x)
>>> round(float(s.score[576:-48].max()), 2), round(float(s.score[-48:].max()), 2)   # clean, stuck
(0.06, 0.22)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import DEFAULT_PROTECT, Detector
from detectors.baseline import MAD_TO_SIGMA
from detectors.registry import register
from detectors.timebase import HOUR, check_timezone, local_clock
from sense311.errors import ConfigError

__all__ = ["FEATURES", "WindowForest"]

FEATURES = ("level", "slope", "spread", "changes", "step", "duty", "tod_sin", "tod_cos", "gap")
#: Rows a forest is fitted on at most: IsolationForest subsamples ``max_samples`` rows per tree
#: anyway, so more rows only cost memory.
MAX_FIT_ROWS = 100_000
#: Smallest reference scale, as a share of |median| (and 1e-6 absolute): a flat reference must not
#: turn every later wobble into an infinite level.
_REL_SCALE_FLOOR = 0.01


def _reference(t: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    median = float(np.median(x))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(x - median)))
    if scale <= 0:
        scale = float(np.std(x))
    scale = max(scale, _REL_SCALE_FLOOR * abs(median), 1e-6)
    cadence = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    return median, scale, max(cadence, 1e-3)


def _features(
    t: np.ndarray,
    x: np.ndarray,
    rows: np.ndarray,
    window: int,
    tolerance: float,
    ref: tuple[float, float, float],
    timezone: str,
) -> np.ndarray:
    """Feature rows for the windows ending at indices ``rows`` (each >= window − 1)."""
    median, scale, cadence = ref
    wx = sliding_window_view(x, window)[rows - window + 1]
    wt = sliding_window_view(t, window)[rows - window + 1]
    half = window // 2
    w_med = np.median(wx, axis=1)
    level = (w_med - median) / scale
    slope = (wx[:, half:].mean(axis=1) - wx[:, :half].mean(axis=1)) / scale
    spread = np.log1p(np.median(np.abs(wx - w_med[:, None]), axis=1) / scale)
    diffs = np.abs(np.diff(wx, axis=1))
    moved = diffs > tolerance
    changes = moved.mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a window without any change
        step_size = np.nanmedian(np.where(moved, diffs, np.nan), axis=1)
    step = np.log1p(np.nan_to_num(step_size, nan=0.0) / scale)
    duty = (wx > median).mean(axis=1)
    _, hour, _ = local_clock(t[rows], timezone)
    frac = ((t[rows] % HOUR) / HOUR + hour) / 24.0
    gap = np.log(np.maximum(np.diff(wt, axis=1).max(axis=1), 1e-3) / cadence)
    return np.column_stack(
        [level, slope, spread, changes, step, duty, np.sin(2 * np.pi * frac), np.cos(2 * np.pi * frac), gap]
    )


@register
class WindowForest(Detector):
    """IsolationForest on window features, shared per sensor kind and metric."""

    name = "forest"
    evidence_keys = ("isolation", *FEATURES)

    def __init__(
        self,
        *,
        window: int = 60,
        stride: int = 10,
        tolerance: float = 0.0,
        timezone: str = "UTC",
        n_estimators: int = 100,
        max_samples: int = 256,
        calibration_quantile: float = 0.995,
        grace_period: int = 1440,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if window < 4 or stride < 1 or n_estimators < 1 or max_samples < 2:
            raise ConfigError(
                f"detector 'forest': need window >= 4, stride >= 1, n_estimators >= 1 and max_samples >= 2, "
                f"got {window}, {stride}, {n_estimators}, {max_samples}"
            )
        if not 0.5 <= calibration_quantile < 1:
            raise ConfigError(
                f"detector 'forest': calibration_quantile must be in [0.5, 1), got {calibration_quantile}"
            )
        if grace_period < window:
            raise ConfigError(
                f"detector 'forest': grace_period ({grace_period}) must be >= window ({window})"
            )
        check_timezone(timezone)
        self.window = window
        self.stride = stride
        self.tolerance = tolerance
        self.timezone = timezone
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.calibration_quantile = calibration_quantile
        self._model: Any = None
        self._calibration = 0.5
        self._ref: tuple[float, float, float] | None = None
        self._warm_t = np.zeros(0)  # the first grace_period readings, until the reference is set
        self._warm_x = np.zeros(0)
        self._buf_t = np.zeros(0)  # the last window - 1 readings
        self._buf_x = np.zeros(0)
        self._count = 0  # finite readings seen
        self._last = 0.0
        self._last_ev = np.full(len(self.evidence_keys), np.nan)

    @property
    def fitted(self) -> bool:
        return self._model is not None

    def fit(self, series: Sequence[tuple[Any, Any]], learn: Sequence[Any] | None = None) -> WindowForest:
        """Train the shared forest on many series ``[(timestamps, values), …]``; returns self.

        Each series is described relative to its own first ``grace_period`` readings, as it
        will be when scored; windows ending on a reading with ``learn`` false are left out.
        """
        from detectors.timebase import as_seconds

        blocks = []
        for i, (ts, xs) in enumerate(series):
            t = as_seconds(ts)
            x = np.asarray(xs, dtype=np.float64)
            keep = np.isfinite(x)
            mask = np.ones(len(x), dtype=bool) if learn is None else np.asarray(learn[i], dtype=bool)
            t, x, mask = t[keep], x[keep], mask[keep]
            if len(x) <= self.grace_period:
                continue
            ref = _reference(t[: self.grace_period], x[: self.grace_period])
            rows = np.arange(self.window - 1, len(x))
            rows = rows[mask[rows]]
            if len(rows):
                blocks.append(_features(t, x, rows, self.window, self.tolerance, ref, self.timezone))
        if not blocks:
            raise ConfigError(
                f"detector 'forest': no series longer than grace_period ({self.grace_period} readings) "
                "to fit on"
            )
        self._fit_rows(np.concatenate(blocks))
        return self

    def _fit_rows(self, rows: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        rng = np.random.default_rng(self.seed)
        if len(rows) > MAX_FIT_ROWS:
            rows = rows[np.sort(rng.choice(len(rows), MAX_FIT_ROWS, replace=False))]
        model = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(rows)),
            random_state=self.seed,
            n_jobs=1,
        )
        model.fit(rows)
        self._model = model
        self._calibration = float(np.quantile(-model.score_samples(rows), self.calibration_quantile))

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        del learn  # forests are trained, not updated online
        n = len(t)
        self._warming(n)
        scores = np.zeros(n)
        ev = self._nan_evidence(n)
        ok = np.flatnonzero(np.isfinite(x))
        if not len(ok):
            return scores, ev
        tt, xx = t[ok], x[ok]
        start = 0
        if self._ref is None:
            need = self.grace_period - len(self._warm_x)
            take = min(need, len(xx))
            self._warm_t = np.concatenate([self._warm_t, tt[:take]])
            self._warm_x = np.concatenate([self._warm_x, xx[:take]])
            start = take
            if len(self._warm_x) >= self.grace_period:
                self._ref = _reference(self._warm_t, self._warm_x)
                if self._model is None:
                    rows = np.arange(self.window - 1, len(self._warm_x))
                    self._fit_rows(
                        _features(self._warm_t, self._warm_x, rows, self.window, self.tolerance, self._ref,
                                  self.timezone)
                    )  # fmt: skip
                self._warm_t = self._warm_x = np.zeros(0)
        out_s = np.zeros(len(xx))
        out_ev = np.full((len(xx), len(self.evidence_keys)), np.nan)
        all_t = np.concatenate([self._buf_t, tt])
        all_x = np.concatenate([self._buf_x, xx])
        offset = len(self._buf_t)
        counts = self._count + np.arange(len(xx))
        if start < len(xx) and self._ref is not None:
            idx = np.arange(start, len(xx))
            due = idx[(counts[idx] % self.stride == 0) & (idx + offset >= self.window - 1)]
            if len(due):
                feats = _features(
                    all_t, all_x, due + offset, self.window, self.tolerance, self._ref, self.timezone
                )
                iso = -self._model.score_samples(feats)
                q = self._calibration
                s = np.clip((iso - q) / (1.0 - q), 0.0, 1.0)
                out_s[due] = s
                out_ev[due] = np.column_stack([iso, feats])
            # Between due readings the score repeats the last one computed.
            marks = np.full(len(xx), -1)
            marks[due] = due
            last = np.maximum.accumulate(marks)
            carry = idx[last[idx] < 0]
            out_s[carry] = self._last
            out_ev[carry] = self._last_ev
            filled = idx[last[idx] >= 0]
            out_s[filled] = out_s[last[filled]]
            out_ev[filled] = out_ev[last[filled]]
            self._last = float(out_s[-1])
            self._last_ev = out_ev[-1].copy()
        self._count += len(xx)
        keep = self.window - 1
        self._buf_t, self._buf_x = all_t[max(len(all_t) - keep, 0) :], all_x[max(len(all_x) - keep, 0) :]
        scores[ok] = out_s
        for j, key in enumerate(self.evidence_keys):
            ev[key][ok] = out_ev[:, j]
        return scores, ev
