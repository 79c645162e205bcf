"""A clean fleet behaves like the real thing: bins fill and get emptied, lamps follow the sun."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

import numpy as np
import pytest

from simulators.fleet import Fleet
from simulators.kinds.bins import CLEAN_FILL_CAP, collection_times
from simulators.kinds.lights import DIM_LEVEL, DRIVER_FLOOR
from tests.simulators.simhelp import STEP_S, Run, sun_elevation

STEP_MS = int(STEP_S * 1000)
#: Sunset and sunrise: the sun's upper limb on the horizon, its centre 0.833° below it.
HORIZON_DEG = -0.833
#: Photocells switch on after sunset and off before sunrise; allow for the sun's position over
#: the city centre versus a lamp a kilometre away (a few seconds of time).
LIT_MARGIN_DEG = 0.05


def test_a_clean_fleet_has_no_episodes_and_every_sensor_reports_every_step(
    clean_run: Run, fleet: Fleet
) -> None:
    assert clean_run.truth.episodes == []
    assert clean_run.truth.summary["completed"] is True
    counts = Counter(m.sensor_id for m in clean_run.messages)
    assert set(counts) == set(fleet.ids)
    assert set(counts.values()) == {clean_run.sim.n_steps}
    assert not any(m.malformed or m.duplicate or m.delayed_steps for m in clean_run.messages)
    assert all(m.time_ms == m.true_time_ms for m in clean_run.messages)


def test_report_times_spread_over_the_step_and_stay_in_the_period(clean_run: Run, fleet: Fleet) -> None:
    sim = clean_run.sim
    offsets = {(m.true_time_ms - sim.start_ms) % STEP_MS for m in clean_run.messages}
    assert len(offsets) > len(fleet) // 2
    assert all(sim.start_ms <= m.time_ms < sim.end_ms for m in clean_run.messages)


def test_bin_fill_is_a_ratio_consistent_with_the_distance(clean_run: Run, fleet: Fleet) -> None:
    for s in fleet.sensors():
        if s.kind != "bin":
            continue
        depth = s.metadata["depth_mm"]
        for m in clean_run.series(s.id):
            v = m.values
            assert 0.0 <= v["fill_level"] <= CLEAN_FILL_CAP + 0.001
            assert 30 <= v["distance_mm"] <= depth
            assert v["fill_level"] == pytest.approx(1 - v["distance_mm"] / depth, abs=1e-4)
            assert 0 <= v["battery"] <= 100
            assert -15 < v["temperature"] < 30


def test_bins_only_empty_at_their_collections(clean_run: Run, fleet: Fleet) -> None:
    group = fleet.groups["bin"]
    schedule = collection_times(group, clean_run.sim.ctx)
    emptied = 0
    for row, sensor_id in enumerate(group.ids):
        times = schedule[row]
        series = clean_run.series(sensor_id)
        for before, after in itertools.pairwise(series):
            drop = after.values["fill_level"] < before.values["fill_level"]
            collected = bool(((times > before.true_time_ms) & (times <= after.true_time_ms)).any())
            if drop:
                assert collected, f"bin {sensor_id} emptied at {after.time} without a collection"
                emptied += 1
    # Every bin is collected at least once in two weekdays except on some residential routes.
    assert emptied >= group.n // 2


def test_bins_fill_faster_by_day_than_by_night(clean_run: Run, fleet: Fleet) -> None:
    rise = Counter()
    for sensor_id in fleet.groups["bin"].ids:
        series = clean_run.series(sensor_id)
        for before, after in itertools.pairwise(series):
            delta = after.values["fill_level"] - before.values["fill_level"]
            if delta > 0:
                hour = after.time.astimezone(fleet.city.zone).hour
                rise["night" if hour < 6 else "day" if 9 <= hour < 21 else "other"] += delta
    assert rise["day"] > 3 * rise["night"] > 0


def test_lamps_are_lit_only_while_the_sun_is_down(clean_run: Run, fleet: Fleet) -> None:
    lit = dark = 0
    for sensor_id in fleet.groups["light"].ids:
        for m in clean_run.series(sensor_id):
            if m.values["lamp_on"]:
                lit += 1
                assert sun_elevation(fleet, m.time_ms) < HORIZON_DEG + LIT_MARGIN_DEG, m
                assert m.values["power_w"] > 0
            else:
                dark += 1
                assert m.values["power_w"] == 0 and m.values["dim_level"] == 0
    assert lit > 0 and dark > 0


def test_every_lamp_is_lit_in_the_middle_of_the_night_and_dark_at_noon(clean_run: Run, fleet: Fleet) -> None:
    zone = fleet.city.zone
    for sensor_id in fleet.groups["light"].ids:
        for m in clean_run.series(sensor_id):
            hour = m.time.astimezone(zone).hour
            if hour in (22, 23, 1, 2, 3):
                assert m.values["lamp_on"] == 1.0
            if hour in (11, 12, 13):
                assert m.values["lamp_on"] == 0.0


def test_lamps_dim_after_midnight(clean_run: Run, fleet: Fleet) -> None:
    zone = fleet.city.zone
    rated = {s.id: s.metadata["rated_power_w"] for s in fleet.sensors() if s.kind == "light"}
    for sensor_id, watts in rated.items():
        for m in clean_run.series(sensor_id):
            if not m.values["lamp_on"]:
                continue
            dimmed = m.time.astimezone(zone).hour < 5
            level = DIM_LEVEL if dimmed else 1.0
            assert m.values["dim_level"] == level
            expected = watts * (DRIVER_FLOOR + (1 - DRIVER_FLOOR) * level)
            assert m.values["power_w"] == pytest.approx(expected, rel=0.05)


def test_energy_counts_power_times_time(clean_run: Run, fleet: Fleet) -> None:
    for sensor_id in fleet.groups["light"].ids:
        series = clean_run.series(sensor_id)
        for before, after in itertools.pairwise(series):
            assert after.true_time_ms - before.true_time_ms == STEP_MS
            increment = after.values["energy_wh"] - before.values["energy_wh"]
            # The meter integrates the reported power over the interval; both are rounded to 0.1.
            assert increment == pytest.approx(after.values["power_w"] * STEP_S / 3600, abs=0.11)


def test_lamps_of_a_circuit_see_the_same_mains(clean_run: Run, fleet: Fleet) -> None:
    for _, members in fleet.circuits():
        if len(members) < 2:
            continue
        volts = [np.mean([m.values["voltage"] for m in clean_run.series(fleet.ids[g])]) for g in members]
        assert max(volts) - min(volts) < 0.5
        assert all(220 < v < 240 for v in volts)


def test_parking_follows_the_day(clean_run: Run, fleet: Fleet) -> None:
    values = [m.values["occupied"] for i in fleet.groups["parking"].ids for m in clean_run.series(i)]
    assert set(values) == {0.0, 1.0}
    assert 0.2 < np.mean(values) < 0.95
    changes = sum(
        a.values["occupied"] != b.values["occupied"]
        for i in fleet.groups["parking"].ids
        for a, b in zip(clean_run.series(i), clean_run.series(i)[1:], strict=False)
    )
    assert changes > len(fleet.groups["parking"].ids)  # cars come and go


def test_air_is_plausible_and_louder_in_rush_hour(clean_run: Run, fleet: Fleet) -> None:
    zone = fleet.city.zone
    by_hour: dict[int, list[float]] = {}
    for sensor_id in fleet.groups["air"].ids:
        for m in clean_run.series(sensor_id):
            v = m.values
            assert 1 <= v["pm25"] < 200 and 1 <= v["no2"] < 300 and 30 <= v["noise_db"] <= 120
            by_hour.setdefault(m.time.astimezone(zone).hour, []).append(v["noise_db"])
    assert np.mean(by_hour[8]) > np.mean(by_hour[3]) + 5


def test_a_period_not_a_multiple_of_the_step_ends_on_time(fleet: Fleet) -> None:
    from simulators import Simulation

    start = dt.datetime(2024, 3, 4, 12, tzinfo=dt.UTC)
    sim = Simulation(fleet, None, start, start + dt.timedelta(minutes=7), 300)
    assert sim.n_steps == 2
    assert all(m.time_ms < sim.end_ms for m in sim.messages())
