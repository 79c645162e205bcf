"""The registry and backfill against a real PostgreSQL (the ``db_conn`` fixture's schema)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

import sense311
from simulators import FaultRates, Simulation, backfill, build_fleet, register_fleet
from simulators.fleet import Fleet

MIGRATIONS = Path(sense311.__file__).resolve().parent / "db" / "migrations"
START = dt.datetime(2024, 3, 4, 12, tzinfo=dt.UTC)


def migrate(conn: psycopg.Connection, *names: str) -> None:
    for name in names:
        conn.execute((MIGRATIONS / name).read_text())


def test_register_fleet_is_an_idempotent_upsert(db_conn: psycopg.Connection) -> None:
    migrate(db_conn, "0001_registry.sql")
    fleet = build_fleet(4, {"bin": 4000, "light": 4000, "parking": 1200, "air": 800})
    assert register_fleet(db_conn, fleet) == 10_000
    assert register_fleet(db_conn, fleet) == 0
    sensors = fleet.sensors()
    sensors[0].metadata["depth_mm"] = 1234
    assert register_fleet(db_conn, sensors) == 1
    row = db_conn.execute(
        "SELECT id, kind, lat, lon, address, district, tags, gateway, metadata FROM sensors WHERE id = %s",
        (sensors[1].id,),
    ).fetchone()
    s = sensors[1]
    assert row == (s.id, s.kind, s.lat, s.lon, s.address, s.district, s.tags, s.gateway, s.metadata)
    assert db_conn.execute("SELECT count(*) FROM sensors WHERE 'bin' = ANY(tags)").fetchone() == (4000,)


def expected_rows(sim: Simulation, fleet: Fleet) -> set[tuple[dt.datetime, str, str, float]]:
    rows = set()
    for m in sim.messages():
        if m.malformed:
            continue
        for metric, value in m.values.items():
            rows.add((m.time, m.sensor_id, metric, value))
    return rows


def test_backfill_writes_what_ingest_would_store(db_conn: psycopg.Connection) -> None:
    migrate(db_conn, "0001_registry.sql", "0002_readings.postgres.sql")
    fleet = build_fleet(4, {"bin": 10, "light": 10, "parking": 5, "air": 5})
    register_fleet(db_conn, fleet)
    rates = FaultRates(
        {"malformed": 3.0, "duplicate": 3.0, "clock_skew": 3.0, "dropout": 3.0, "out_of_order": 3.0}
    )
    sim = Simulation(fleet, rates, START, START + dt.timedelta(hours=6), 120)
    db_conn.execute(
        "SELECT ensure_readings_partitions(%s, %s, '7 days')",
        (START - dt.timedelta(days=1), START + dt.timedelta(days=1)),
    )
    steps: list[int] = []
    report = backfill(db_conn, sim, progress=lambda done, total: steps.append(done), chunk_rows=5000)
    assert steps[-1] == sim.n_steps
    expected = expected_rows(sim, fleet)
    assert report.inserted == len(expected) == report.rows
    stored = set(db_conn.execute("SELECT time, sensor_id, metric, value FROM readings").fetchall())
    assert stored == expected
    lag = db_conn.execute("SELECT max(received_at - time), min(received_at - time) FROM readings").fetchone()
    assert lag[0] > dt.timedelta(0) > lag[1]  # delayed and clock-skewed messages
    again = backfill(db_conn, sim)
    assert again.inserted == 0 and again.rows == report.rows


def test_backfill_without_partitions_says_what_to_do(db_conn: psycopg.Connection) -> None:
    from sense311.errors import DatabaseError

    migrate(db_conn, "0001_registry.sql", "0002_readings.postgres.sql")
    fleet = build_fleet(4, {"bin": 2})
    sim = Simulation(fleet, None, START, START + dt.timedelta(hours=1), 600)
    with pytest.raises(DatabaseError, match="create the partitions for the period first"):
        backfill(db_conn, sim)
