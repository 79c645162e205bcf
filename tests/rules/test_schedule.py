"""Schedules: the sun over the city, and local wall-clock windows that survive DST changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
from astral import Observer
from astral.sun import sunrise, sunset

from rules.schedule import City, Schedule, TimeWindow

AMS = City(52.37, 4.89, "Europe/Amsterdam")
ZONE = ZoneInfo("Europe/Amsterdam")
NIGHT = Schedule(windows=(TimeWindow(dt.time(22), dt.time(6)),))


def us(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000


def active_minutes(schedule: Schedule, day_start_utc: dt.datetime, hours: int) -> list[dt.datetime]:
    instants = np.array([us(day_start_utc + dt.timedelta(minutes=m)) for m in range(hours * 60)])
    mask = schedule.active(instants, AMS)
    return [day_start_utc + dt.timedelta(minutes=int(m)) for m in np.flatnonzero(mask)]


def test_spring_forward_night_window_keeps_wall_clock_meaning() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST. 22:00–06:00 local is 21:00Z–04:00Z: 7 hours.
    on = active_minutes(NIGHT, dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), 24)
    assert on[0] == dt.datetime(2026, 3, 28, 21, 0, tzinfo=dt.UTC)
    assert on[-1] == dt.datetime(2026, 3, 29, 3, 59, tzinfo=dt.UTC)
    assert len(on) == 7 * 60


def test_fall_back_night_window_lasts_nine_hours() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET. 22:00 CEST = 20:00Z, 06:00 CET = 05:00Z.
    on = active_minutes(NIGHT, dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC), 24)
    assert on[0] == dt.datetime(2026, 10, 24, 20, 0, tzinfo=dt.UTC)
    assert on[-1] == dt.datetime(2026, 10, 25, 4, 59, tzinfo=dt.UTC)
    assert len(on) == 9 * 60


def test_the_repeated_hour_counts_twice_and_the_missing_one_never() -> None:
    window = Schedule(windows=(TimeWindow(dt.time(2, 15), dt.time(2, 45)),))
    spring = active_minutes(window, dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), 24)
    autumn = active_minutes(window, dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC), 24)
    assert spring == []
    assert len(autumn) == 60  # 02:15–02:45 CEST and again CET


def test_days_name_the_day_a_window_starts() -> None:
    fri_night = Schedule(windows=(TimeWindow(dt.time(22), dt.time(6), frozenset({4})),))
    friday = dt.datetime(2026, 6, 5, 23, 0, tzinfo=ZONE)
    saturday_early = dt.datetime(2026, 6, 6, 5, 0, tzinfo=ZONE)
    saturday_late = dt.datetime(2026, 6, 6, 23, 0, tzinfo=ZONE)
    got = fri_night.active(np.array([us(friday), us(saturday_early), us(saturday_late)]), AMS)
    assert got.tolist() == [True, True, False]


def test_night_by_the_sun_across_the_spring_dst_change() -> None:
    observer = Observer(52.37, 4.89)
    night = Schedule(sun="night")
    for day in (dt.date(2026, 3, 28), dt.date(2026, 3, 29)):
        down = sunset(observer, day, tzinfo=ZONE)
        up = sunrise(observer, day + dt.timedelta(days=1), tzinfo=ZONE)
        three = dt.timedelta(minutes=3)
        probes = [down - three, down + three, up - three, up + three]
        assert night.active(np.array([us(p) for p in probes]), AMS).tolist() == [False, True, True, False]


def test_asymmetric_night_ends_before_dawn() -> None:
    observer = Observer(52.37, 4.89)
    day = dt.date(2026, 6, 1)
    up = sunrise(observer, day + dt.timedelta(days=1), tzinfo=ZONE)
    late = Schedule(sun="night", dusk=-0.833, dawn=-4.0)
    probe = us(up - dt.timedelta(minutes=5))
    assert Schedule(sun="night").active(np.array([probe]), AMS).tolist() == [True]
    assert late.active(np.array([probe]), AMS).tolist() == [False]
    assert Schedule(sun="day", dusk=-0.833, dawn=-4.0).active(np.array([probe]), AMS).tolist() == [True]


def test_polar_night_and_midnight_sun() -> None:
    tromso = City(69.65, 18.96, "Europe/Oslo")
    winter = us(dt.datetime(2026, 12, 21, 12, tzinfo=dt.UTC))
    summer = us(dt.datetime(2026, 6, 21, 0, tzinfo=dt.UTC))
    night = Schedule(sun="night")
    assert night.active(np.array([winter, summer]), tromso).tolist() == [True, False]
