"""Window aggregates for many sensors and many instants at once, identical live and in backtests.

For instant ``t`` a sensor's value is the aggregate of its readings in ``(t − window, t]``. The
live evaluator asks for one instant (or a few, when catching up), a backtest for a day of
instants at a time; both call ``window_aggregates`` and each cell's result depends only on the
readings inside its own window, folded in time order. That is what makes "live = backtest"
exact rather than approximate: a mean is the same sum, in the same order, whichever other
readings were fetched alongside (a running prefix sum would not be: its rounding depends on
everything before the window). Counts and durations are integers, so their prefix sums are exact.

No readings in the window — or an aggregate that is undefined for them (``rate`` of a single
reading) — gives NaN: **no data**.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rules.errors import RulesError

__all__ = ["AGGREGATES", "AggregateSpec", "Series", "window_aggregates"]

#: name → (takes a level, what it computes). Units: the metric's, except where stated.
AGGREGATES: dict[str, tuple[bool, str]] = {
    "last": (False, "the latest reading"),
    "first": (False, "the earliest reading in the window"),
    "min": (False, "the smallest reading"),
    "max": (False, "the largest reading"),
    "mean": (False, "the arithmetic mean of the readings"),
    "sum": (False, "the sum of the readings"),
    "count": (False, "how many readings there are"),
    "stddev": (False, "the population standard deviation of the readings"),
    "delta": (False, "last − first"),
    "rate": (False, "(last − first) per hour between the first and the last reading"),
    "fraction_above": (True, "share of the time from the first reading to t spent above the level (0..1)"),
    "fraction_below": (True, "share of the time from the first reading to t spent below the level (0..1)"),
    "changes": (True, "how many times consecutive readings crossed the level"),
}

_US_PER_HOUR = 3_600_000_000
#: Largest key the (sensor, time) search can form without overflowing int64.
_KEY_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """An aggregate and its level (for ``fraction_above``, ``fraction_below`` and ``changes``)."""

    name: str
    level: float | None = None

    def __str__(self) -> str:
        return f"{self.name}({self.level:g})" if self.level is not None else self.name


@dataclass(frozen=True, slots=True)
class Series:
    """Readings of many sensors: sorted by ``(sensor, time)``.

    ``sensor`` indexes the caller's sensor list (int64), ``time`` is microseconds since the
    epoch (UTC, int64), ``value`` float64.
    """

    sensor: np.ndarray
    time: np.ndarray
    value: np.ndarray

    @classmethod
    def empty(cls) -> Series:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    def __len__(self) -> int:
        return len(self.time)


def _counts_up_to(series: Series, n: int, first: int, step: int, k: int, shift: int) -> np.ndarray:
    """For evenly spaced instants ``first + j·step``: how many readings of each sensor have
    ``time + shift <= instant j``, shaped (N, K). Integer counting, exact: each reading first
    counts at instant ``ceil((time + shift − first) / step)``."""
    start = -((first - series.time - shift) // step)  # ceil division on integers
    start = np.clip(start, 0, k)  # k: never within the instants
    cells = np.bincount(series.sensor * (k + 1) + start, minlength=n * (k + 1)).reshape(n, k + 1)
    return np.cumsum(cells[:, :k], axis=1)


def _slices(series: Series, n: int, instants: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds ``[lo, hi)`` of each (instant, sensor) window, each shaped (K, N)."""
    k = len(instants)
    step = int(instants[1] - instants[0]) if k > 1 else 1
    if k == 1 or (step > 0 and (np.diff(instants) == step).all()):
        # Evenly spaced (always, from the evaluator and backtests): count instead of searching.
        offsets = np.searchsorted(series.sensor, np.arange(n), side="left")
        hi = offsets[:, None] + _counts_up_to(series, n, int(instants[0]), step, k, 0)
        lo = offsets[:, None] + _counts_up_to(series, n, int(instants[0]), step, k, window)
        return lo.T, hi.T
    base = int(instants[0]) - window
    span = int(instants[-1]) - base + 1
    if len(series):
        tmin = int(series.time.min())
        tmax = int(series.time.max())
        base = min(base, tmin)
        span = max(int(instants[-1]), tmax) - base + 1
    if n * span >= _KEY_LIMIT:
        raise RulesError(f"{n} sensors over {span / 1e6:.0f} s is too large for one pass; split the instants")
    key = series.sensor.astype(np.int64) * span + (series.time - base)
    # Queries laid out sensor by sensor are ascending, which lets searchsorted resume from the
    # previous answer instead of starting each search afresh (several times faster).
    q_hi = (np.arange(n, dtype=np.int64)[:, None] * span + (instants[None, :] - base)).ravel()
    hi = np.searchsorted(key, q_hi, side="right").reshape(n, -1).T
    lo = np.searchsorted(key, q_hi - window, side="right").reshape(n, -1).T
    return lo, hi


def _fold(values: np.ndarray, lo: np.ndarray, count: np.ndarray, kind: str, centre: np.ndarray | None = None):
    """Fold each cell's readings in time order: the same additions in the same order, always.

    Cells are visited longest first so step ``j`` touches a prefix of them (a slice, not a mask).
    """
    longest = int(count.max()) if len(count) else 0
    # Longest first; a stable sort keeps each sensor's cells together. A 16-bit key lets numpy
    # radix-sort it (several times faster than sorting int64).
    key = (longest - count).astype(np.uint16) if longest < 2**16 else -count
    order = np.argsort(key, kind="stable")
    lo_s = lo[order]
    n_s = count[order]
    acc = np.empty(len(order), dtype=np.float64)
    if len(order) == 0:
        return acc
    first = values[lo_s]
    if kind == "sumsq":
        first = (first - centre[order]) ** 2
    acc[:] = first
    # number of cells with more than j readings, for each j
    longest = int(n_s[0])
    widths = np.searchsorted(-n_s, -np.arange(1, longest), side="left")
    for j in range(1, longest):
        width = int(widths[j - 1])
        v = values[lo_s[:width] + j]
        if kind == "sum":
            acc[:width] += v
        elif kind == "sumsq":
            d = v - centre[order[:width]]
            acc[:width] += d * d
        elif kind == "min":
            np.minimum(acc[:width], v, out=acc[:width])
        else:
            np.maximum(acc[:width], v, out=acc[:width])
    out = np.empty_like(acc)
    out[order] = acc
    return out


def window_aggregates(
    series: Series, n: int, instants: np.ndarray, window: int, spec: AggregateSpec
) -> tuple[np.ndarray, np.ndarray]:
    """``(values, counts)`` shaped (K instants, N sensors).

    ``instants`` are int64 microseconds (sorted), ``window`` microseconds. ``values`` is NaN
    where there is no data; ``counts`` is how many readings each window holds.
    """
    instants = np.asarray(instants, dtype=np.int64)
    k = len(instants)
    if k == 0 or n == 0:
        return np.full((k, n), np.nan), np.zeros((k, n), dtype=np.int64)
    lo, hi = _slices(series, n, instants, window)
    # Work sensor by sensor, (N, K): neighbouring cells then read neighbouring readings.
    lo, hi = np.ascontiguousarray(lo.T), np.ascontiguousarray(hi.T)
    count = hi - lo
    out = np.full((n, k), np.nan)
    has = count > 0
    if not has.any():
        return out.T, count.T
    t_cell = np.broadcast_to(instants[None, :], (n, k))[has]
    clo, chi, cn = lo[has], hi[has], count[has]
    v, tm = series.value, series.time
    name = spec.name
    if name == "count":
        res = cn.astype(np.float64)
    elif name == "last":
        res = v[chi - 1]
    elif name == "first":
        res = v[clo]
    elif name == "delta":
        res = v[chi - 1] - v[clo]
    elif name == "rate":
        dt = tm[chi - 1] - tm[clo]
        with np.errstate(divide="ignore", invalid="ignore"):
            res = np.where(dt > 0, (v[chi - 1] - v[clo]) / np.maximum(dt, 1) * _US_PER_HOUR, np.nan)
    elif name in ("min", "max"):
        res = _fold(v, clo, cn, name)
    elif name in ("sum", "mean", "stddev"):
        total = _fold(v, clo, cn, "sum")
        if name == "sum":
            res = total
        else:
            mean = total / cn
            res = mean if name == "mean" else np.sqrt(_fold(v, clo, cn, "sumsq", centre=mean) / cn)
    elif name in ("fraction_above", "fraction_below", "changes"):
        res = _level_aggregate(series, spec, clo, chi, t_cell)
    else:
        raise RulesError(f"unknown aggregate {name!r}")
    out[has] = res
    return out.T, count.T


def _level_aggregate(
    series: Series, spec: AggregateSpec, clo: np.ndarray, chi: np.ndarray, t_cell: np.ndarray
) -> np.ndarray:
    """Time above/below a level, or level crossings, from exact integer prefix sums."""
    v, tm, sensor = series.value, series.time, series.sensor
    level = float(spec.level if spec.level is not None else 0.0)
    side = v < level if spec.name == "fraction_below" else v > level
    same_next = np.zeros(len(v), dtype=bool)
    same_next[:-1] = sensor[1:] == sensor[:-1]
    if spec.name == "changes":
        crossing = np.zeros(len(v), dtype=np.int64)
        crossing[:-1] = (side[1:] != side[:-1]) & same_next[:-1]
        prefix = np.concatenate(([0], np.cumsum(crossing)))
        # crossings between consecutive readings lo..hi-1 are those starting at lo..hi-2
        return (prefix[chi - 1] - prefix[clo]).astype(np.float64)
    held = np.zeros(len(v), dtype=np.int64)
    held[:-1] = np.where(same_next[:-1] & side[:-1], tm[1:] - tm[:-1], 0)
    prefix = np.concatenate(([0], np.cumsum(held)))
    inside = prefix[chi - 1] - prefix[clo]
    last = chi - 1
    inside = inside + np.where(side[last], t_cell - tm[last], 0)
    total = t_cell - tm[clo]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(total > 0, inside / np.maximum(total, 1), side[last].astype(np.float64))
    return frac
