"""Storage maintenance that depends on the mode: policies, partitions, retention, ``db info``.

TimescaleDB does retention, compression and the hourly rollup itself once its policies are
set; on plain PostgreSQL sense311 creates partitions ahead of time (and on demand, for
backfills) and drops the ones past retention. Both are driven by ``StorageSettings``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from sense311.db.capabilities import timescaledb_version
from sense311.db.migrate import applied_versions, storage_mode
from sense311.settings import Settings

__all__ = [
    "StorageInfo",
    "apply_policies",
    "drop_expired_partitions",
    "ensure_partitions",
    "maintain",
    "storage_info",
]

log = logging.getLogger(__name__)

#: The continuous aggregate is refreshed over this much recent history on every run; late
#: readings older than this reach the rollup only through a manual refresh.
CAGG_REFRESH_WINDOW = timedelta(days=3)


def _interval(value: timedelta) -> str:
    return f"{int(value.total_seconds())} seconds"


def apply_policies(conn: psycopg.Connection, settings: Settings) -> None:
    """(Re)apply the TimescaleDB policies from settings. Idempotent; a no-op on plain PostgreSQL."""
    if storage_mode(conn) != "timescaledb":
        return
    st = settings.storage
    with conn.transaction():
        conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
        conn.execute("SELECT add_retention_policy('readings', %s::interval)", (_interval(st.retention),))
        conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
        conn.execute(
            "SELECT add_compression_policy('readings', %s::interval)", (_interval(st.compress_after),)
        )
        conn.execute("SELECT remove_continuous_aggregate_policy('readings_hourly', if_not_exists => true)")
        conn.execute(
            "SELECT add_continuous_aggregate_policy('readings_hourly', start_offset => %s::interval, "
            "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes')",
            (_interval(CAGG_REFRESH_WINDOW),),
        )


def ensure_partitions(conn: psycopg.Connection, lo: datetime, hi: datetime, width: timedelta) -> int:
    """Create the partitions covering [lo, hi]; returns how many were created (0 on TimescaleDB)."""
    row = conn.execute(
        "SELECT ensure_readings_partitions(%s, %s, %s::interval)", (lo, hi, _interval(width))
    ).fetchone()
    return int(row[0]) if row else 0


def drop_expired_partitions(conn: psycopg.Connection, retention: timedelta, now: datetime) -> list[str]:
    """Drop plain partitions whose whole range is older than ``now - retention``."""
    if storage_mode(conn) != "postgres":
        return []
    cutoff = now - retention
    rows = conn.execute(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'readings'::regclass"""
    ).fetchall()
    dropped = []
    for name, bound in rows:
        # bound: FOR VALUES FROM ('…') TO ('…')
        upper = bound.rsplit("TO ('", 1)[1].rstrip("')")
        end = conn.execute("SELECT %s::timestamptz", (upper,)).fetchone()[0]
        if end <= cutoff:
            conn.execute(f'DROP TABLE "{name}"')
            dropped.append(name)
    return dropped


def maintain(conn: psycopg.Connection, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Partitions ahead and retention on plain PostgreSQL (TimescaleDB runs its own jobs)."""
    now = now or datetime.now(UTC)
    st = settings.storage
    created = ensure_partitions(conn, now - st.partition_width, now + st.partitions_ahead, st.partition_width)
    dropped = drop_expired_partitions(conn, st.retention, now)
    if created or dropped:
        log.info("storage maintenance: %d partitions created, %d dropped", created, len(dropped))
    return {"created": created, "dropped": len(dropped)}


@dataclass
class StorageInfo:
    schema: str
    mode: str | None
    server_version: str
    timescaledb: str | None
    migrations: list[int] = field(default_factory=list)
    partitions: int = 0
    readings_estimate: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None


def storage_info(conn: psycopg.Connection, settings: Settings) -> StorageInfo:
    mode = storage_mode(conn)
    info = StorageInfo(
        schema=settings.storage.db_schema,
        mode=mode,
        server_version=conn.info.parameter_status("server_version") or "?",
        timescaledb=timescaledb_version(conn),
        migrations=sorted(applied_versions(conn)),
    )
    if mode is None:
        return info
    if mode == "timescaledb":
        info.partitions = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'readings' AND hypertable_schema = %s",
            (settings.storage.db_schema,),
        ).fetchone()[0]
    else:
        info.partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass"
        ).fetchone()[0]
    info.readings_estimate = conn.execute(
        """SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_class c
           WHERE c.oid = 'readings'::regclass
              OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'readings'::regclass)"""
    ).fetchone()[0]
    info.readings_estimate = max(info.readings_estimate, 0)
    info.oldest, info.newest = conn.execute("SELECT min(time), max(time) FROM readings").fetchone()
    return info
