"""Rule evaluation figures: live cycle time, backtest speed, and the built-in pack's detection quality.

    python bench/rules.py live     [--sensors 100000]   # seconds per evaluation cycle, per rule
    python bench/rules.py backtest [--sensors 1000 --days 30]   # sensor-steps per second
    python bench/rules.py pack     [--days 14 --seed 7]  # precision / recall / TTD per fault kind

Uses SENSE311_TEST_DATABASE_URL (default: the local PostgreSQL) and a schema of its own per
figure (``bench_rules_<figure>``), dropped first. ``live``: every sensor is a bin reporting its
fill level every 10 minutes; a rule reads a 30-minute window (3 readings a sensor, 300,000 rows a
cycle for 100,000 sensors) and the clock advances one minute per cycle, so each cycle evaluates
one instant. ``backtest``: a 1-minute interval over 30 days of one reading per sensor every 5
minutes. ``pack``: simulates the default fleet with the simulator's default fault rates, stores
it with the simulator's backfill (as ingest would: malformed messages are not stored), backtests
``builtin:city`` and scores it against the ground truth with ``simulators.scoring``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

# Run as a script, this file's directory comes first on sys.path, where this very file would
# shadow the ``rules`` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from rules import backtest, load_rules  # noqa: E402
from rules.evaluator import evaluate_rule  # noqa: E402
from rules.loader import RuleSet  # noqa: E402
from sense311.db import connect, ensure_partitions, migrate  # noqa: E402
from sense311.durations import format_duration  # noqa: E402
from sense311.settings import Settings, load_settings  # noqa: E402

DB = os.environ.get("SENSE311_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: Loading tens of millions of rows takes longer than the default one-minute statement timeout.
STATEMENT_TIMEOUT_S = 3600
START = datetime(2026, 3, 2, tzinfo=UTC)


def fresh_schema(name: str) -> tuple[Settings, psycopg.Connection]:
    with psycopg.connect(DB, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    settings = load_settings(
        database_url=DB, storage={"schema": name, "statement_timeout": STATEMENT_TIMEOUT_S}
    )
    conn = connect(settings, "bench-rules", autocommit=True)
    migrate(conn, settings)
    return settings, conn


def rules_file(text: str) -> RuleSet:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(text)
    try:
        return load_rules(fh.name)
    finally:
        Path(fh.name).unlink()


def synthetic(conn: psycopg.Connection, sensors: int, start: datetime, end: datetime, every_s: int) -> int:
    """Bins ``b000000…`` with a fill level every ``every_s`` seconds (phases spread) in [start, end):
    a slow wave between 0.15 and 0.85, and a jump of 0.3 for five readings in every 997 — so, as
    in a real fleet, a rule is quiet for most sensors most of the time."""
    ensure_partitions(conn, start - timedelta(days=1), end + timedelta(days=1), timedelta(days=7))
    conn.execute(
        "INSERT INTO sensors (id, kind, district, lat, lon) "
        "SELECT 'b' || lpad(i::text, 6, '0'), 'bin', 'd' || (i %% 9), "
        "52.3 + (i %% 1000) * 1e-4, 4.8 + (i / 1000) * 1e-4 "
        "FROM generate_series(0, %s - 1) i",
        (sensors,),
    )
    steps = int((end - start).total_seconds() // every_s)
    # A day of steps per statement keeps each INSERT within memory and gives a progress line.
    per = max(1, 86400 // every_s)
    total = 0
    for lo in range(0, steps, per):
        hi = min(steps, lo + per)
        cur = conn.execute(
            """INSERT INTO readings (time, sensor_id, metric, value)
               SELECT %s::timestamptz + make_interval(secs => k * %s + (i * 7919) %% %s),
                      'b' || lpad(i::text, 6, '0'), 'fill_level',
                      0.5 + 0.35 * sin(k / 40.0 + i) + CASE WHEN (k + i) %% 997 < 5 THEN 0.3 ELSE 0 END
               FROM generate_series(0, %s - 1) i, generate_series(%s, %s - 1) k""",
            (start, every_s, every_s, sensors, lo, hi),
        )
        total += cur.rowcount
        print(f"  loaded {total:,} readings", file=sys.stderr, flush=True)
    conn.execute("ANALYZE readings")
    conn.execute("ANALYZE sensors")
    return total


LIVE_RULES = """
rules:
  - {id: bin-mean, problem: bin_overflow, select: {kind: bin}, metric: fill_level, aggregate: mean,
     window: 30m, condition: "> 0.9", for: 10m, clear: "< 0.6", interval: 1m, lateness: 0s}
  - {id: bin-last, problem: bin_overflow, select: {kind: bin}, metric: fill_level, aggregate: last,
     window: 30m, condition: ">= 0.99", for: 0, interval: 1m, lateness: 0s}
"""


def bench_live(sensors: int, cycles: int) -> None:
    _, conn = fresh_schema("bench_rules_live")
    now = START + timedelta(hours=2)
    t0 = time.perf_counter()
    rows = synthetic(conn, sensors, START, now + timedelta(minutes=cycles + 1), 600)
    print(f"live: {sensors:,} sensors, {rows:,} readings loaded in {time.perf_counter() - t0:.0f} s")
    ruleset = rules_file(LIVE_RULES)
    for rule in ruleset:
        evaluate_rule(conn, rule, None, now)  # first run: no watermark yet, one instant
        times = []
        events = 0
        for c in range(1, cycles + 1):
            started = time.perf_counter()
            run = evaluate_rule(conn, rule, None, now + timedelta(minutes=c))
            times.append(time.perf_counter() - started)
            events += len(run.detections)
            assert len(run.instants) == 1 and run.sensors == sensors
        print(
            f"  {rule.id} ({rule.aggregate} over {format_duration(rule.window)}): "
            f"{statistics.median(times):.3f} s per cycle "
            f"(median of {cycles}; min {min(times):.3f}, max {max(times):.3f}), {events} events"
        )
    conn.close()


BACKTEST_RULES = """
rules:
  - {id: bin-mean, problem: bin_overflow, select: {kind: bin}, metric: fill_level, aggregate: mean,
     window: 15m, condition: "> 0.9", for: 10m, clear: "< 0.6", interval: 1m}
  - {id: bin-frac, problem: bin_overflow, select: {kind: bin}, metric: fill_level,
     aggregate: fraction_above(0.9), window: 30m, condition: "> 0.5", for: 5m, interval: 1m}
"""


def bench_backtest(sensors: int, days: int) -> None:
    _, conn = fresh_schema("bench_rules_backtest")
    end = START + timedelta(days=days)
    t0 = time.perf_counter()
    rows = synthetic(conn, sensors, START - timedelta(hours=1), end, 300)
    print(
        f"backtest: {sensors:,} sensors × {days} days, {rows:,} readings loaded "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    ruleset = rules_file(BACKTEST_RULES)
    for rule in ruleset:
        result = backtest(conn, ruleset, START, end, rule_ids=[rule.id], spans=False)
        summary = result.rules[0]
        print(
            f"  {rule.id} ({rule.aggregate}, 1-minute step): {summary.instants:,} instants × "
            f"{summary.sensors:,} sensors = {result.sensor_steps:,} sensor-steps in {result.seconds:.1f} s "
            f"= {result.steps_per_second:,.0f} sensor-steps/s; {summary.detections} detections"
        )
    conn.close()


def store(conn: psycopg.Connection, simulation: object) -> int:
    """Registry and readings of a simulation, through the simulator's own backfill."""
    from simulators.backfill import backfill
    from simulators.registry import register_fleet

    register_fleet(conn, simulation.fleet)  # type: ignore[attr-defined]
    start = datetime.fromtimestamp(simulation.start_ms / 1000, UTC)  # type: ignore[attr-defined]
    end = datetime.fromtimestamp(simulation.end_ms / 1000, UTC)  # type: ignore[attr-defined]
    ensure_partitions(conn, start - timedelta(days=1), end + timedelta(days=1), timedelta(days=7))
    rows = backfill(conn, simulation).inserted  # type: ignore[arg-type]
    conn.execute("ANALYZE readings")
    return rows


def bench_pack(days: int, seed: int, keep: bool, html: Path | None) -> None:
    from simulators.faults import default_faults
    from simulators.fleet import build_fleet
    from simulators.scoring import score
    from simulators.simulation import Simulation

    end = START + timedelta(days=days)
    simulation = Simulation(build_fleet(seed=seed), default_faults(), START, end, step=60)
    schema = "bench_rules_pack"
    settings, conn = fresh_schema(schema)
    truth = simulation.ground_truth()
    if keep:
        truth.write(Path(tempfile.gettempdir()) / f"{schema}_truth.jsonl")
    t0 = time.perf_counter()
    rows = store(conn, simulation)
    print(f"pack: default fleet, seed {seed}, {days} days, default fault rates: {rows:,} readings "
          f"stored in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    ruleset = load_rules("builtin:city")
    result = backtest(conn, ruleset, START, end)
    mapping: dict[str, set[str]] = {}
    for rule in ruleset:
        mapping.setdefault(rule.problem, set()).update(rule.targets or ())
    detections = [(d.sensor_id, d.problem, d.fired_at) for d in result.detections if d.kind == "detection"]
    report = score(truth, detections, mapping={k: sorted(v) for k, v in mapping.items()})
    print(f"  backtest: {result.sensor_steps:,} sensor-steps in {result.seconds:.1f} s; "
          f"{len(result.incidents)} incidents, {len(result.tickets)} tickets")  # fmt: skip
    targeted = sorted({k for v in mapping.values() for k in v})
    print(
        f"  {'fault kind':<16} {'episodes':>8} {'detected':>8} {'recall':>7} {'precision':>9} "
        f"{'median TTD':>11}"
    )
    for kind in targeted:
        s = report.by_kind[kind]
        ttd = f"{s.median_ttd_s / 60:.1f} min" if s.median_ttd_s is not None else "–"
        print(
            f"  {kind:<16} {s.episodes:>8} {s.detected:>8} {_r(s.recall):>7} {_r(s.precision):>9} {ttd:>11}"
        )
    for summary in result.rules:
        print(
            f"  rule {summary.rule_id:<20} detections {summary.detections:>5}, "
            f"resolutions {summary.resolutions:>5}"
        )
    if html is not None:
        from rules.report import Episode, collect_plots, render_report

        result.score = report.to_json()
        result.score["kinds"] = {k: v for k, v in result.score["kinds"].items() if k in targeted}
        episodes = [Episode(e.kind, tuple(e.sensors), e.start, e.end) for e in truth.episodes]
        html.write_text(
            render_report(result, collect_plots(conn, ruleset, result, episodes)), encoding="utf-8"
        )
    conn.close()
    if not keep:
        with psycopg.connect(DB, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    del settings


def _r(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="figure")
    live = sub.add_parser("live")
    live.add_argument("--sensors", type=int, default=100_000)
    live.add_argument("--cycles", type=int, default=10)
    bt = sub.add_parser("backtest")
    bt.add_argument("--sensors", type=int, default=1000)
    bt.add_argument("--days", type=int, default=30)
    pack = sub.add_parser("pack")
    pack.add_argument("--days", type=int, default=14)
    pack.add_argument("--seed", type=int, default=7)
    pack.add_argument(
        "--keep", action="store_true", help="keep the schema and write the ground truth to a temp file"
    )
    pack.add_argument("--html", type=Path, help="also write the backtest's HTML report here")
    args = parser.parse_args()
    if args.figure in (None, "live"):
        bench_live(getattr(args, "sensors", 100_000), getattr(args, "cycles", 10))
    if args.figure in (None, "backtest"):
        bench_backtest(
            1000 if args.figure is None else args.sensors, 30 if args.figure is None else args.days
        )
    if args.figure == "pack":
        bench_pack(args.days, args.seed, args.keep, args.html)


if __name__ == "__main__":
    main()
