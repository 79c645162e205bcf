"""The batch writer: one transaction per flush, COPY in, duplicates ignored.

Each flush:

1. creates missing partitions when the batch reaches outside the range known to exist
   (plain PostgreSQL; a no-op on TimescaleDB);
2. COPYs the rows (binary) into a temporary staging table;
3. ``INSERT … SELECT … ON CONFLICT DO NOTHING`` into ``readings`` — a redelivered message or a
   duplicate uplink is a no-op, which is what makes at-least-once delivery store exactly once;
4. upserts ``latest_readings`` from the staging rows, newest per (sensor, metric), in key
   order so two workers lock rows in the same order and cannot deadlock;
5. inserts the dead letters and auto-registered sensors;
6. commits. Only then does the worker acknowledge the batch's MQTT messages.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from ingest.pipeline import Batch, DeadLetter
from sense311.db.connection import connect
from sense311.db.errors import is_transient, translate
from sense311.db.storage import ensure_partitions
from sense311.settings import Settings

__all__ = ["FLUSH_ROWS", "BatchWriter", "WriteResult"]

log = logging.getLogger(__name__)

#: Default rows per flush. bench/ingest.py: past ~2,000 rows the per-transaction overhead is
#: under 10% of the COPY time, and larger batches only add ack latency.
FLUSH_ROWS = 5000

#: time_bucket()'s origin (2000-01-03 00:00 UTC, a Monday), which partitions are aligned to.
_BUCKET_ORIGIN = 946857600

_STAGE = """CREATE TEMP TABLE IF NOT EXISTS readings_stage (
    time timestamptz NOT NULL, sensor_id text NOT NULL, metric text NOT NULL,
    value double precision NOT NULL, received_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS"""
_COPY = "COPY readings_stage (time, sensor_id, metric, value, received_at) FROM STDIN (FORMAT BINARY)"
_TYPES = ["timestamptz", "text", "text", "float8", "timestamptz"]
_INSERT = """INSERT INTO readings (time, sensor_id, metric, value, received_at)
SELECT time, sensor_id, metric, value, received_at FROM readings_stage
ON CONFLICT ON CONSTRAINT readings_key DO NOTHING"""
_LATEST = """INSERT INTO latest_readings (sensor_id, metric, time, value, received_at)
SELECT DISTINCT ON (sensor_id, metric) sensor_id, metric, time, value, received_at
FROM readings_stage ORDER BY sensor_id, metric, time DESC
ON CONFLICT (sensor_id, metric) DO UPDATE
SET time = excluded.time, value = excluded.value, received_at = excluded.received_at
WHERE latest_readings.time < excluded.time"""
_DEAD = """INSERT INTO dead_letters
    (received_at, topic, payload, reason, detail, format, sensor_id, gateway_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
_REGISTER = """INSERT INTO sensors (id, kind, gateway, metadata) VALUES (%s, 'unknown', %s, %s)
ON CONFLICT (id) DO NOTHING"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    rows: int
    inserted: int
    dead_letters: int
    seconds: float


class BatchWriter:
    """Owns one connection; reconnects on the next write after a failure."""

    def __init__(self, settings: Settings, application: str = "sense311-ingest") -> None:
        self.settings = settings
        self.application = application
        self._conn: psycopg.Connection | None = None
        self._partitions: set[int] = set()  # aligned partition indexes known to exist

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, self.application)
            self._conn.execute(_STAGE)
            self._conn.commit()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _ensure_partitions(self, conn: psycopg.Connection, rows: list[tuple]) -> None:
        """Create the partitions a batch needs, unless this writer already knows they exist.

        Known partitions are remembered by their aligned start, so live data and a backfill
        interleaving in one stream do not send every batch through the partition DDL lock.
        """
        width = self.settings.storage.partition_width
        seconds = width.total_seconds()
        lo = min(r[0] for r in rows)
        hi = max(r[0] for r in rows)
        first = int((lo.timestamp() - _BUCKET_ORIGIN) // seconds)
        last = int((hi.timestamp() - _BUCKET_ORIGIN) // seconds)
        needed = range(first, last + 1)
        if all(i in self._partitions for i in needed):
            return
        ensure_partitions(conn, lo, hi, width)
        self._partitions.update(needed)

    def write(self, batch: Batch) -> WriteResult:
        """Write and commit ``batch``; raises ``TransientDatabaseError`` / ``DatabaseError``."""
        started = time.perf_counter()
        try:
            conn = self.conn
            with conn.transaction():
                inserted = 0
                if batch.auto_register:
                    with conn.cursor() as cur:
                        cur.executemany(
                            _REGISTER,
                            [
                                (sid, gw, Jsonb({"auto_registered": True}))
                                for sid, gw in batch.auto_register.items()
                            ],
                        )
                if batch.rows:
                    self._ensure_partitions(conn, batch.rows)
                    with conn.cursor() as cur:
                        with cur.copy(_COPY) as copy:
                            copy.set_types(_TYPES)
                            write_row = copy.write_row
                            for row in batch.rows:
                                write_row(row)
                        cur.execute(_INSERT)
                        inserted = cur.rowcount
                        cur.execute(_LATEST)
                if batch.dead_letters:
                    self._write_dead(conn, batch.dead_letters)
        except psycopg.Error as exc:
            if is_transient(exc) or conn_broken(self._conn):
                self._discard_connection()
                self._partitions.clear()
            raise translate(exc, f"batch of {len(batch.rows)} readings not committed") from exc
        return WriteResult(len(batch.rows), inserted, len(batch.dead_letters), time.perf_counter() - started)

    @staticmethod
    def _write_dead(conn: psycopg.Connection, dead: list[DeadLetter]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                _DEAD,
                [
                    (
                        d.received_at,
                        d.topic,
                        d.payload,
                        d.reason,
                        d.detail,
                        d.format,
                        d.sensor_id,
                        d.gateway_id,
                    )
                    for d in dead
                ],
            )

    def write_dead_letters(self, dead: list[DeadLetter]) -> None:
        with self.conn.transaction():
            self._write_dead(self.conn, dead)


def conn_broken(conn: psycopg.Connection | None) -> bool:
    return conn is None or conn.closed or conn.broken
