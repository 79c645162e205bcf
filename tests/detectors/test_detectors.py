"""Each detector on synthetic series with known anomalies, and the same series without them."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from detectors import available_detectors, get_detector
from detectors.registry import detector_class
from tests.detectors.synth import DAY, T0, clean_series, fill_level, peer_rows


@pytest.mark.parametrize("name", available_detectors())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(detector_class(name).__module__)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_seasonal_finds_half_power_and_does_not_learn_it() -> None:
    t = T0 + np.arange(0, 8 * DAY, 600.0)
    hour = ((t - T0) % DAY) // 3600
    lit = (hour >= 20) | (hour < 6)
    rng = np.random.default_rng(1)
    power = np.where(lit, np.where(hour < 5, 18.0, 36.0) * (1 + 0.01 * rng.normal(size=len(t))), 0.0)
    faulty = power.copy()
    night = (t >= T0 + 6 * DAY + 20 * 3600) & lit
    faulty[night] *= 0.5
    d = get_detector("seasonal", period="day", direction="low", active_above=1.0)
    s = d.score_series(t, faulty)
    assert s.score[night].min() > 0.9
    assert s.score[~night].max() < 0.3
    # A week of half power later: still flagged, because flagged readings were never learned.
    assert d.update_one(float(t[-1] + 7 * DAY), 18.0).score > 0.9


def test_learn_false_keeps_a_labelled_fault_out_of_the_baseline() -> None:
    t, x = clean_series(2, days=8)
    x = x.copy()
    fault = (t >= T0 + 2 * DAY) & (t < T0 + 5 * DAY)  # three labelled days of a +30 offset
    x[fault] += 30.0
    again = t >= T0 + 7 * DAY  # the same fault, unlabelled, on the last day
    x[again] += 30.0
    # protect=1.0 turns self-protection off, so only the labels keep the fault out.
    guarded = get_detector("seasonal", period="day", protect=1.0)
    naive = get_detector("seasonal", period="day", protect=1.0)
    g = guarded.score_series(t, x, learn=~fault).score
    n = naive.score_series(t, x).score
    quiet = (t >= T0 + 5 * DAY) & ~again
    assert g[quiet].max() < 0.5
    assert g[again].min() > 0.9
    # A baseline that learned the fault has a wider spread: the same fault scores lower.
    assert n[again].mean() < g[again].mean()


def test_stuck_air_monitor_and_quiet_clean_one() -> None:
    t, x = clean_series(3, days=6, step=60.0)
    frozen = x.copy()
    frozen[-180:] = frozen[-181]
    s = get_detector("stuck").score_series(t, frozen)
    assert s.score[-1] > 0.9 and s.at(len(t) - 1).evidence["run_readings"] == 181
    assert get_detector("stuck").score_series(t, x).score.max() < 0.3


def test_spike_confirmed_by_the_next_reading_and_steps_are_not_spikes() -> None:
    t, x = clean_series(4, days=2)
    x = x.copy()
    x[150] += 60.0
    x[200:] += 25.0  # a step that stays
    s = get_detector("spike").score_series(t, x)
    assert int(np.argmax(s.score)) == 151 and s.score[151] > 0.9
    assert s.score[190:].max() < 0.5
    assert s.at(151).evidence["lag_s"] == 600.0


def test_level_shift_catches_a_slow_drift() -> None:
    t, x = clean_series(5, days=8)
    drift = np.clip((t - (T0 + 6 * DAY)) / 3600, 0, None) * 0.5  # half a standard deviation per hour
    s = get_detector("level_shift", period="day").score_series(t, x + drift)
    start = np.searchsorted(t, T0 + 6 * DAY)
    assert s.score[:start].max() < 0.3
    assert s.score[start + 36 :].min() > 0.5  # six hours in
    assert s.score[start + 72 :].min() > 0.8  # twelve hours in


def test_rise_rate_three_times_faster() -> None:
    t, x = fill_level(6, days=8, bags_per_h=1.5)
    _, fast = fill_level(6, days=8, bags_per_h=4.5)
    late = t >= T0 + 7 * DAY + 8 * 3600
    mixed = np.where(late, fast - fast[np.argmax(late)] + x[np.argmax(late)], x)
    clean = get_detector("rise_rate", period="day").score_series(t, x).score
    faulty = get_detector("rise_rate", period="day").score_series(t, np.minimum(mixed, 0.92)).score
    assert clean.max() < 0.35
    assert faulty[late].max() > 0.5


def test_peer_difference_ignores_what_the_street_shares() -> None:
    t, rows = peer_rows(7, days=8)
    rows = rows.copy()
    rows[:, :] += np.where(t > T0 + 6 * DAY, 20.0, 0.0)[:, None]  # the whole street jumps: nobody is odd
    d = get_detector("peer", baseline={"period": "day"})
    assert d.score_series(t, rows).score.max() < 0.5
    rows[-30:, 0] += 15.0  # one sensor leaves the others
    d = get_detector("peer", baseline={"period": "day"})
    assert d.score_series(t, rows).score[-30:].min() > 0.85


def test_peer_dark_needs_enough_lit_neighbours() -> None:
    rows = np.array([[0.0, 36.0, np.nan, np.nan], [0.0, 36.0, 35.0, 0.0], [36.0, 36.0, 35.0, 0.0]])
    s = get_detector("peer_dark", min_peers=2).score_series([0.0, 60.0, 120.0], rows)
    assert s.score.tolist() == [0.0, pytest.approx(2 / 3), 0.0]


def test_silent_learns_each_cadence() -> None:
    minutely = T0 + np.arange(0, 2 * DAY, 60.0)
    hourly = T0 + np.arange(0, 3 * DAY, 3600.0)
    fast, slow = get_detector("silent"), get_detector("silent")
    fast.score_series(minutely, np.ones(len(minutely)))
    slow.score_series(hourly, np.ones(len(hourly)))
    # Twenty minutes without a word: alarming for the minutely sensor, nothing for the hourly one.
    assert fast.score_idle(float(minutely[-1] + 1200)).score > 0.6
    assert slow.score_idle(float(hourly[-1] + 1200)).score == 0.0


def test_forest_shared_fit_then_per_sensor_scores() -> None:
    series = [clean_series(seed, days=3) for seed in range(4)]
    forest = get_detector("forest", window=24, stride=1, grace_period=144, seed=3).fit(series)
    t, x = clean_series(9, days=3)
    odd = x.copy()
    odd[-36:] = 90.0
    d = forest.clone()
    d._model, d._calibration = forest._model, forest._calibration
    s = d.score_series(t, odd)
    assert s.score[144:-36].mean() < 0.05
    assert s.score[-12:].min() > s.score[144:-36].max()
