"""A robust expectation per time bucket, learned from completed local days.

The building block of the seasonal, peer and rise-rate detectors. Values are grouped by bucket
(hour of week, hour of day, or one bucket for everything); each bucket keeps the last ``keep``
*occurrences* (one per local day it occurs on), summarised as the occurrence's median and median
absolute deviation. The expectation of a bucket is the median of its occurrence medians; its
scale combines how far occurrences sit from each other with how much values spread within one:

    scale = 1.4826 · hypot(b_K · median |m_o − expected|, mean(b_n · s_o))

1.4826 makes a MAD estimate a normal standard deviation; ``b_n`` is the small-sample correction
of Croux and Rousseeuw (1992), without which an hour of six readings, or three days of
history, would claim a spread half the real one and every later reading would look odd.
Summaries keep the state small (a few
kilobytes per sensor, whatever the reporting rate), and a day's values only count once the day
is over: observations within one day are all scored against the same, earlier, baseline. That
is what lets a whole day be scored at once with numpy and still equal the one-by-one loop.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAD_TO_SIGMA", "CycleBaseline", "day_groups", "mad_correction"]

#: Scale factor from a median absolute deviation to a normal standard deviation.
MAD_TO_SIGMA = 1.4826
#: Croux & Rousseeuw's small-sample factors b_n for the MAD, n = 2..9; n/(n − 0.8) beyond.
_SMALL_SAMPLE = (1.196, 1.495, 1.363, 1.206, 1.200, 1.140, 1.129, 1.107)


def mad_correction(n: np.ndarray | int) -> np.ndarray:
    """The factor that makes the MAD of ``n`` normal values unbiased (1 for n < 2)."""
    n = np.asarray(n, dtype=np.int64)
    table = np.array((1.0, 1.0, *_SMALL_SAMPLE))
    large = n / np.maximum(n - 0.8, 1e-9)
    return np.where(n < 2, 1.0, np.where(n <= 9, table[np.clip(n, 0, 9)], large))


class CycleBaseline:
    """Per-bucket robust expectations over the last ``keep`` occurrences of each bucket.

    ``roll(day)`` must be called with the local day number of the observations about to be
    scored; when the day moved on, the values added during the previous day are folded in.
    """

    def __init__(self, buckets: int, keep: int, min_occurrences: int) -> None:
        self.keep = keep
        self.min_occurrences = min_occurrences
        self.medians = np.full((buckets, keep), np.nan)
        self.spreads = np.full((buckets, keep), np.nan)
        self.slot = np.zeros(buckets, dtype=np.int64)
        self.count = np.zeros(buckets, dtype=np.int64)
        self.expected = np.full(buckets, np.nan)
        self.scale = np.full(buckets, np.nan)
        self.day: int | None = None
        self._pending_b: list[np.ndarray] = []
        self._pending_v: list[np.ndarray] = []

    def roll(self, day: int) -> None:
        if self.day is not None and day != self.day:
            self._fold()
        self.day = day

    def add(self, buckets: np.ndarray, values: np.ndarray) -> None:
        if len(values):
            self._pending_b.append(np.asarray(buckets, dtype=np.int64))
            self._pending_v.append(np.asarray(values, dtype=np.float64))

    def lookup(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expectation, scale and occurrences behind them (NaN expectation: not enough yet)."""
        enough = self.count[buckets] >= self.min_occurrences
        return (
            np.where(enough, self.expected[buckets], np.nan),
            np.where(enough, self.scale[buckets], np.nan),
            self.count[buckets],
        )

    def _fold(self) -> None:
        if not self._pending_v:
            return
        b = np.concatenate(self._pending_b)
        v = np.concatenate(self._pending_v)
        self._pending_b, self._pending_v = [], []
        order = np.lexsort((v, b))
        b, v = b[order], v[order]
        touched, first, sizes = np.unique(b, return_index=True, return_counts=True)
        medians = _group_medians(v, first, sizes)
        deviations = np.abs(v - np.repeat(medians, sizes))
        # Sort the deviations within each bucket (buckets stay in place: b is already sorted).
        deviations = deviations[np.lexsort((deviations, b))]
        spreads = _group_medians(deviations, first, sizes) * mad_correction(sizes)
        slots = self.slot[touched]
        self.medians[touched, slots] = medians
        self.spreads[touched, slots] = spreads
        self.slot[touched] = (slots + 1) % self.keep
        self.count[touched] = np.minimum(self.count[touched] + 1, self.keep)
        rows = self.medians[touched]
        counts = self.count[touched]
        expected = _row_medians(rows, counts)
        between = _row_medians(np.abs(rows - expected[:, None]), counts) * mad_correction(counts)
        within = np.nanmean(self.spreads[touched], axis=1)
        self.expected[touched] = expected
        self.scale[touched] = MAD_TO_SIGMA * np.hypot(between, within)


def _group_medians(sorted_values: np.ndarray, first: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Medians of consecutive groups of sorted values (the mean of the two middle ones when even)."""
    lo = sorted_values[first + (sizes - 1) // 2]
    hi = sorted_values[first + sizes // 2]
    return (lo + hi) / 2


def _row_medians(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Medians of each row's first ``counts`` non-NaN values (NaN sorts last)."""
    ordered = np.sort(rows, axis=1)
    index = np.arange(len(rows))
    lo = ordered[index, np.maximum((counts - 1) // 2, 0)]
    hi = ordered[index, np.maximum(counts // 2, 0)]
    return np.where(counts > 0, (lo + hi) / 2, np.nan)


def day_groups(day: np.ndarray) -> list[tuple[int, int, int]]:
    """``(day, start, stop)`` index ranges of runs of equal (non-decreasing) day numbers."""
    if not len(day):
        return []
    cuts = np.flatnonzero(np.diff(day)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(day)]])
    return [(int(day[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
