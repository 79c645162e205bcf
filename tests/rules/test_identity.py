"""Live = backtest: the detections a live evaluator makes over a day are exactly a backtest's.

The live run ticks at irregular wall-clock times, restarts (new connection, rules loaded again)
in the middle of the day and is down for three hours; the backtest steps the same day in one go.
Both must produce the same (rule, version, sensor, fired_at, kind) set.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from rules import backtest, evaluate_due, load_rules
from sense311.db import connect
from sense311.settings import Settings
from tests.rules.rulehelp import (
    add_readings,
    add_sensors,
    backfill,
    detections_in_db,
    rules_from,
    seed_watermarks,
)

#: Extra rules so every aggregate and no-data mode runs in the identity check.
EXTRA = """
city: {lat: 52.37, lon: 4.89, timezone: Europe/Amsterdam}
rules:
  - {id: x-mean, problem: p_mean, metric: fill_level, aggregate: mean, window: 17m, condition: "> 0.6",
     for: 7m, clear: "< 0.4", clear_for: 4m, no_data: alerting, select: {kind: bin}}
  - {id: x-stddev, problem: p_std, metric: power_w, aggregate: stddev, window: 13m, condition: "> 5",
     for: 3m, no_data: ok, select: {kind: light}, active: {times: [{from: "20:00", to: "23:30"}]}}
  - {id: x-frac, problem: p_frac, metric: occupied, aggregate: fraction_above(0.5), window: 30m,
     condition: "between 0.4 0.6", for: 10m, clear_for: 5m, no_data: silent, interval: 5m, lateness: 3m}
  - {id: x-rate, problem: p_rate, metric: temperature, aggregate: rate, window: 20m,
     condition: "outside -2 2", for: 2m, no_data: keep_last, interval: 2m, lateness: 0s}
"""


def run_live(settings: Settings, rule_paths: list[Path | str], start: datetime, end: datetime) -> None:
    """Tick at irregular times over [start, end + 10 min], with a restart and a 3-hour outage."""
    rng = random.Random(11)
    now = start
    restart_at = start + timedelta(hours=9)
    outage = (start + timedelta(hours=14), start + timedelta(hours=17))
    conn = connect(settings, "live-1", autocommit=True)
    ruleset = load_rules(*rule_paths)
    restarted = False
    try:
        while now <= end + timedelta(minutes=10):
            if not restarted and now >= restart_at:
                conn.close()
                conn = connect(settings, "live-2", autocommit=True)
                ruleset = load_rules(*rule_paths)
                restarted = True
            if not outage[0] <= now < outage[1]:
                report = evaluate_due(conn, ruleset, now)
                assert not report.errors, report.errors
            now += timedelta(seconds=rng.randint(60, 2400))
    finally:
        conn.close()


@pytest.mark.slow
def test_a_simulated_day_live_equals_backtest(
    conn: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    simulation = pytest.importorskip("simulators.simulation")
    from simulators.faults import default_faults
    from simulators.fleet import build_fleet

    start = datetime(2026, 3, 28, 12, tzinfo=UTC)  # across the spring DST change
    end = start + timedelta(days=1)
    fleet = build_fleet(seed=3, counts={"bin": 16, "light": 40, "parking": 6, "air": 4})
    rates = default_faults()
    boosted = rates.with_rates(**{k: v * 6 for k, v in rates.rates.items()})
    backfill(conn, simulation.Simulation(fleet, boosted, start, end, step=60))
    extra = tmp_path / "extra.yaml"
    extra.write_text(EXTRA, encoding="utf-8")
    paths: list[Path | str] = ["builtin:city", extra]
    ruleset = load_rules(*paths)
    seed_watermarks(conn, ruleset, start)

    run_live(settings, paths, start, end)
    live = {d for d in detections_in_db(conn) if d[3] <= end}
    replay = backtest(conn, ruleset, start, end)
    assert replay.identities() == live
    fired = {d[0] for d in live if d[4] == "detection"}
    assert len(live) > 50 and len(fired) >= 8, sorted(fired)


def test_synthetic_readings_live_equals_backtest(
    conn: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    start = datetime(2026, 10, 24, 18, tzinfo=UTC)  # across the autumn DST change
    end = start + timedelta(hours=14)
    ids = [f"s{i:02d}" for i in range(30)]
    add_sensors(conn, ids, kind="bin")
    rng = random.Random(5)
    rows = []
    for i, sid in enumerate(ids):
        t = start - timedelta(hours=1)
        level = rng.random()
        while t < end:
            t += timedelta(seconds=rng.randint(30, 400))
            level = min(1.0, max(0.0, level + rng.gauss(0, 0.08)))
            if not (i % 7 == 0 and start + timedelta(hours=3) < t < start + timedelta(hours=4)):
                rows.append((t, sid, "fill_level", level))
    add_readings(conn, rows)
    text = """
    city: {lat: 52.37, lon: 4.89, timezone: Europe/Amsterdam}
    rules:
      - {id: hi, problem: p, metric: fill_level, aggregate: mean, window: 20m, condition: "> 0.7", for: 10m,
         clear: "< 0.5", clear_for: 5m, no_data: silent, silent: {for: 30m}, select: {kind: bin}}
      - {id: night, problem: q, metric: fill_level, aggregate: max, window: 10m, condition: "> 0.8", for: 3m,
         no_data: alerting, active: {times: [{from: "01:00", to: "04:00"}]}, interval: 30s, lateness: 45s}
    """
    ruleset = rules_from(tmp_path, text)
    seed_watermarks(conn, ruleset, start)
    run_live(settings, [tmp_path / "rules.yaml"], start, end)
    live = {d for d in detections_in_db(conn) if d[3] <= end}
    assert len(live) > 20
    assert backtest(conn, ruleset, start, end).identities() == live
