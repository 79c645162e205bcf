"""Window aggregates: (t − window, t], by event time; each window's value depends on it alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rules.aggregates import AggregateSpec, Series, window_aggregates

S = 1_000_000  # µs
T = 1_780_000_000 * S


def make(points: dict[int, list[tuple[int, float]]]) -> Series:
    """Series from {sensor: [(seconds after T, value)]}."""
    rows = sorted((s, T + dt * S, v) for s, pts in points.items() for dt, v in pts)
    return Series(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


SERIES = make({0: [(0, 1.0), (60, 3.0), (120, 2.0), (180, 6.0)], 1: [(30, 5.0)]})
WINDOW = 180 * S  # readings at 60, 120 and 180 are in (0, 180]; the one at 0 is not


@pytest.mark.parametrize(
    ("name", "level", "expected"),
    [
        ("last", None, 6.0),
        ("first", None, 3.0),
        ("min", None, 2.0),
        ("max", None, 6.0),
        ("sum", None, 11.0),
        ("mean", None, 11.0 / 3),
        ("count", None, 3.0),
        ("stddev", None, math.sqrt(((3 - 11 / 3) ** 2 + (2 - 11 / 3) ** 2 + (6 - 11 / 3) ** 2) / 3)),
        ("delta", None, 3.0),
        ("rate", None, 3.0 / 120 * 3600),  # per hour
        ("fraction_above", 2.5, (60 + 0) / 120),  # 3.0 held 60..120 s, 6.0 at t: 60 s of 120
        ("fraction_below", 2.5, 60 / 120),
        ("changes", 2.5, 2.0),  # 3→2 and 2→6 cross 2.5
    ],
)
def test_each_aggregate(name: str, level: float | None, expected: float) -> None:
    values, counts = window_aggregates(SERIES, 2, np.array([T + 180 * S]), WINDOW, AggregateSpec(name, level))
    assert values[0, 0] == pytest.approx(expected)
    assert counts[0].tolist() == [3, 1]


def test_no_readings_in_the_window_is_nan() -> None:
    values, counts = window_aggregates(SERIES, 3, np.array([T + 300 * S]), 60 * S, AggregateSpec("mean"))
    assert np.isnan(values[0]).all() and counts[0].tolist() == [0, 0, 0]


def test_the_window_is_open_at_its_start_and_closed_at_t() -> None:
    instants = np.array([T + 60 * S, T + 119 * S, T + 120 * S])
    values, _ = window_aggregates(SERIES, 2, instants, 60 * S, AggregateSpec("last"))
    assert values[:, 0].tolist() == [3.0, 3.0, 2.0]
    counts = window_aggregates(SERIES, 2, instants, 60 * S, AggregateSpec("count"))[0][:, 0]
    assert counts.tolist() == [1.0, 1.0, 1.0]  # at T+60 the reading at T is excluded


def test_rate_of_a_single_reading_is_no_data() -> None:
    values, _ = window_aggregates(SERIES, 2, np.array([T + 30 * S]), 60 * S, AggregateSpec("rate"))
    assert np.isnan(values[0, 1])


def test_a_window_value_does_not_depend_on_other_readings_fetched() -> None:
    rng = np.random.default_rng(5)
    n, minutes = 7, 600
    times = T + np.arange(minutes) * 60 * S
    rows = [(s, t, float(rng.normal() * 1e3)) for s in range(n) for t in times]
    full = Series(*(np.array(c) for c in zip(*rows, strict=True)))
    instants = T + np.arange(100, minutes, 37) * 60 * S
    window = 45 * 60 * S
    for name in ("mean", "sum", "stddev", "min", "fraction_above"):
        spec = AggregateSpec(name, 0.0 if name == "fraction_above" else None)
        together, _ = window_aggregates(full, n, instants, window, spec)
        for k, t in enumerate(instants):
            keep = (full.time > t - window) & (full.time <= t)
            alone = Series(full.sensor[keep], full.time[keep], full.value[keep])
            single, _ = window_aggregates(alone, n, np.array([t]), window, spec)
            # Bit for bit: the live evaluator fetches one window, a backtest a day of them.
            assert together[k].tobytes() == single[0].tobytes(), name
