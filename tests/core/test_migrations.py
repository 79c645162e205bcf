"""Migrations: idempotent, recorded, safe from two processes, and the storage modes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sense311.db import (
    connect,
    ensure_partitions,
    has_timescaledb,
    maintain,
    migrate,
    storage_info,
    storage_mode,
)
from sense311.db.migrate import discover
from sense311.errors import NotSupportedError
from sense311.settings import Settings, load_settings


@pytest.fixture
def settings(database_url: str, db_schema: str) -> Settings:
    return load_settings(database_url=database_url, storage={"schema": db_schema, "retention": "60d"})


def test_migrate_is_idempotent_and_recorded(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        first = migrate(conn, settings)
        second = migrate(conn, settings)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert first.applied and not second.applied
    assert versions == sorted(discover())
    assert second.already == len(versions)


def test_two_processes_migrating_at_once(settings: Settings) -> None:
    results, errors = [], []

    def run() -> None:
        try:
            with connect(settings, autocommit=True) as conn:
                results.append(migrate(conn, settings))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    applied = [r.applied for r in results]
    assert sum(1 for a in applied if a) == 1, applied


def test_plain_postgres_mode_partitions_and_time_bucket(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"mode": "postgres"})}
    )
    with connect(settings, autocommit=True) as conn:
        assert migrate(conn, settings).mode == "postgres"
        assert storage_mode(conn) == "postgres"
        # Far enough ahead that migrate() has not created these partitions already.
        now = (datetime.now(UTC) + timedelta(days=100)).replace(minute=0, second=0, microsecond=0)
        created = maintain(conn, settings, now=now)["created"]
        assert created >= 3
        assert (
            ensure_partitions(conn, now - timedelta(days=50), now - timedelta(days=40), timedelta(days=7))
            >= 2
        )
        conn.execute(
            "INSERT INTO readings (time, sensor_id, metric, value) "
            "VALUES (%s, 's', 'm', 1), (%s, 's', 'm', 3)",
            (now - timedelta(minutes=50), now - timedelta(minutes=10)),
        )
        bucket = conn.execute(
            "SELECT time_bucket('1 hour', time), avg(value) FROM readings GROUP BY 1"
        ).fetchall()
        assert bucket == [(now - timedelta(hours=1), 2.0)]
        # Monday-aligned weeks, like TimescaleDB.
        week = conn.execute("SELECT time_bucket('7 days', %s::timestamptz)", (now,)).fetchone()[0]
        assert week.weekday() == 0
        hourly = conn.execute("SELECT avg, count FROM readings_hourly").fetchall()
        assert hourly == [(2.0, 2)]
        # Retention drops whole partitions past the horizon.
        later = maintain(conn, settings, now=now + timedelta(days=120))
        assert later["dropped"] >= 2
        info = storage_info(conn, settings)
    assert info.mode == "postgres" and info.partitions > 0


def test_duplicate_readings_are_refused_by_the_key(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        migrate(conn, settings)
        t = datetime.now(UTC)
        conn.execute("INSERT INTO readings (time, sensor_id, metric, value) VALUES (%s, 's', 'm', 1)", (t,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO readings (time, sensor_id, metric, value) VALUES (%s, 's', 'm', 2)", (t,)
            )


def test_timescaledb_mode(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        try:
            has_timescaledb(conn, check=True)
        except NotSupportedError as exc:
            pytest.skip(str(exc))
        settings = settings.model_copy(
            update={"storage": settings.storage.model_copy(update={"mode": "timescaledb"})}
        )
        assert migrate(conn, settings).mode == "timescaledb"
        from sense311.db import apply_policies

        apply_policies(conn, settings)
        jobs = conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_schema = %s",
            (settings.storage.db_schema,),
        ).fetchall()
        names = {j[0] for j in jobs}
        assert {"policy_retention", "policy_compression"} <= names


def test_insisting_on_timescaledb_without_it_is_a_clear_error(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        if has_timescaledb(conn):
            pytest.skip("TimescaleDB is available here")
        settings = settings.model_copy(
            update={"storage": settings.storage.model_copy(update={"mode": "timescaledb"})}
        )
        with pytest.raises(NotSupportedError, match="TimescaleDB is not installed on PostgreSQL"):
            migrate(conn, settings)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sense311.cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_db_migrate_and_info(database_url: str, db_schema: str) -> None:
    env = {
        "SENSE311_DATABASE_URL": database_url,
        "SENSE311_STORAGE__SCHEMA": db_schema,
        "SENSE311_LOG_LEVEL": "ERROR",
    }
    result = _cli("db", "info", **env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: schema {db_schema} is not migrated yet: run 'sense311 db migrate'"
    ]
    result = _cli("db", "migrate", **env)
    assert result.returncode == 0, result.stderr
    assert "applied 0001_registry.sql" in result.stdout
    result = _cli("db", "info", **env)
    assert result.returncode == 0
    assert "plain PostgreSQL" in result.stdout or "TimescaleDB" in result.stdout


def test_cli_errors_are_one_line_without_secrets() -> None:
    result = _cli("db", "info", SENSE311_DATABASE_URL="postgresql://u:topsecret@127.0.0.1:1/x")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: cannot connect to the database at postgresql://u:***@"
    )
    assert "topsecret" not in result.stderr
    result = _cli("db", "info", SENSE311_MQTT_URL="http://nope")
    assert result.returncode == 2 and "invalid setting mqtt_url" in result.stderr
