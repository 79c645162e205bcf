"""Helpers the rule tests share: register sensors, store readings, write rule files."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from rules import RuleSet, load_rules
from sense311.db import ensure_partitions

__all__ = [
    "T0",
    "add_readings",
    "add_sensors",
    "backfill",
    "detections_in_db",
    "minutes",
    "rules_from",
    "seed_watermarks",
    "state_rows",
]

#: A Monday, away from any DST change.
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
#: Partition width the helpers create partitions with (plain PostgreSQL).
PARTITION_WIDTH = timedelta(days=7)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def add_sensors(
    conn: psycopg.Connection,
    ids: Iterable[str],
    kind: str = "bin",
    district: str | None = None,
    tags: list[str] | None = None,
    metadata: dict | None = None,
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, district, tags, lat, lon, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (sid, kind, district, tags or [], 52.37 + i * 1e-4, 4.89, json.dumps(metadata or {}))
                for i, sid in enumerate(ids)
            ],
        )


def add_readings(conn: psycopg.Connection, rows: Iterable[tuple[datetime, str, str, float]]) -> int:
    """Insert (time, sensor_id, metric, value) rows, creating the partitions they need."""
    rows = list(rows)
    if not rows:
        return 0
    lo = min(r[0] for r in rows)
    hi = max(r[0] for r in rows)
    ensure_partitions(conn, lo, hi, PARTITION_WIDTH)
    with conn.cursor() as cur, cur.copy("COPY readings (time, sensor_id, metric, value) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    return len(rows)


def rules_from(tmp_path: Path, text: str, name: str = "rules.yaml") -> RuleSet:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules(path)


def detections_in_db(conn: psycopg.Connection) -> set[tuple[str, str, str, datetime, str]]:
    rows = conn.execute("SELECT rule_id, rule_version, sensor_id, fired_at, kind FROM detections").fetchall()
    return {tuple(r) for r in rows}


def state_rows(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[str, datetime]]:
    rows = conn.execute("SELECT rule_id, sensor_id, state, since FROM rule_state").fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def backfill(conn: psycopg.Connection, simulation: object) -> int:
    """Store a simulation's registry and readings with the simulator's own backfill."""
    from simulators.backfill import backfill as simulator_backfill
    from simulators.registry import register_fleet

    register_fleet(conn, simulation.fleet)  # type: ignore[attr-defined]
    start = datetime.fromtimestamp(simulation.start_ms / 1000, UTC)  # type: ignore[attr-defined]
    end = datetime.fromtimestamp(simulation.end_ms / 1000, UTC)  # type: ignore[attr-defined]
    ensure_partitions(conn, start - timedelta(days=1), end + timedelta(days=1), PARTITION_WIDTH)
    return simulator_backfill(conn, simulation).inserted  # type: ignore[arg-type]


def seed_watermarks(conn: psycopg.Connection, ruleset: RuleSet, start: datetime) -> None:
    """Make live evaluation begin at ``start``, as a backtest from ``start`` does (a new rule
    otherwise begins at the latest due instant, which depends on its lateness)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rule_watermarks (rule_id, watermark, rule_version, interval_s) "
            "VALUES (%s, %s, %s, %s)",
            [(r.id, start - r.interval, r.version, r.interval.total_seconds()) for r in ruleset],
        )
