"""Evaluation instants: which instants are due, as a pure function of the clock passed in.

Instants are aligned to the rule's interval in UTC (``t = k · interval`` since the Unix epoch),
so the live evaluator and a backtest step exactly the same instants whatever time each starts.
At wall-clock ``now`` the live evaluator may evaluate every instant up to
``floor((now − lateness) / interval) · interval`` — never a later one, so readings up to
``lateness`` late are in the database when their instant is evaluated.

Times are timezone-aware UTC datetimes; internally, integer microseconds since the epoch
(exact arithmetic: no instant is lost or duplicated to rounding).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

__all__ = [
    "aligned_range",
    "due_instants",
    "from_us",
    "latest_due",
    "to_us",
    "us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000


def to_us(t: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (naive ones are refused)."""
    if t.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {t.isoformat()}")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


def from_us(value: int) -> datetime:
    """The UTC datetime of ``value`` microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=int(value))


def us(duration: timedelta) -> int:
    """A duration in whole microseconds."""
    return (duration.days * 86_400 + duration.seconds) * _US + duration.microseconds


def _check_interval(interval: timedelta) -> int:
    step = us(interval)
    if step <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")
    return step


def latest_due(now: datetime, interval: timedelta, lateness: timedelta) -> datetime:
    """``floor((now − lateness) / interval) · interval``: the latest instant that may be evaluated."""
    step = _check_interval(interval)
    return from_us(((to_us(now) - us(lateness)) // step) * step)


def due_instants(
    watermark: datetime | None,
    now: datetime,
    interval: timedelta,
    lateness: timedelta,
    *,
    max_catch_up: timedelta | None = None,
    limit: int | None = None,
) -> list[datetime]:
    """The instants to evaluate now, oldest first.

    ``watermark`` is the last instant already evaluated (None: never; then only the latest due
    instant is evaluated: a new rule does not replay history, that is what backtests are for).
    After downtime every missed instant is returned, in order, so a restart changes nothing —
    except that instants more than ``max_catch_up`` before the latest due one are skipped
    (bounded catch-up), and at most ``limit`` instants are returned per call (the rest are due
    on the next call). A watermark not on the interval's grid (the interval changed) continues
    at the next aligned instant after it.
    """
    step = _check_interval(interval)
    last = ((to_us(now) - us(lateness)) // step) * step
    if watermark is None:
        return [from_us(last)]
    first = (to_us(watermark) // step + 1) * step
    if max_catch_up is not None:
        floor = last - (us(max_catch_up) // step) * step
        first = max(first, floor)
    if first > last:
        return []
    count = (last - first) // step + 1
    if limit is not None:
        count = min(count, max(limit, 0))
    return [from_us(first + i * step) for i in range(count)]


def aligned_range(start: datetime, end: datetime, interval: timedelta) -> np.ndarray:
    """Every aligned instant in ``[start, end]`` as int64 microseconds since the epoch."""
    step = _check_interval(interval)
    first = -(-to_us(start) // step) * step
    last = (to_us(end) // step) * step
    if last < first:
        return np.empty(0, dtype=np.int64)
    return np.arange(first, last + step, step, dtype=np.int64)
