"""Write a simulated period straight into ``readings``, without MQTT: fast history for tests,
backtests and demos.

Each report becomes one row per canonical metric ``(time, sensor_id, metric, value,
received_at)``. What ingest would do to the same messages is mirrored: malformed messages are
not stored (ingest dead-letters them), a duplicate is the same row again (skipped by the table's
unique key), a clock-skewed message is stored at the time it carries, and ``received_at`` is
when it would have arrived (late for delayed messages). Rows are built as numpy records in
PostgreSQL's binary COPY format, copied into a temporary table and moved into ``readings``
with ``INSERT … ON CONFLICT DO NOTHING``, one transaction per chunk, so a rerun adds nothing.
The move inserts in key order (sensor, metric, time): the unique index then grows at its
right edge per series instead of being hit at random, which keeps large backfills from
becoming index-bound once the index outgrows shared buffers.

The caller creates the partitions covering the period (``ensure_readings_partitions``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psycopg

from sense311.errors import DatabaseError
from simulators.kinds import METRICS
from simulators.simulation import Simulation

__all__ = ["CHUNK_ROWS", "BackfillReport", "backfill"]

#: Rows per COPY + INSERT transaction: large enough that statement overhead vanishes, small
#: enough that a chunk's arrays stay a few tens of MB.
CHUNK_ROWS = 500_000
#: PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
_PG_EPOCH_MS = 946_684_800_000
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_ROW = np.dtype(
    [
        ("ncols", ">i2"),
        ("l_time", ">i4"),
        ("time", ">i8"),
        ("l_sensor", ">i4"),
        ("sensor", ">i4"),
        ("l_metric", ">i4"),
        ("metric", ">i2"),
        ("l_value", ">i4"),
        ("value", ">f8"),
        ("l_received", ">i4"),
        ("received", ">i8"),
    ]
)

_STAGE = """
DROP TABLE IF EXISTS pg_temp.sim_readings_stage;
CREATE TEMP TABLE sim_readings_stage (
    time timestamptz, sensor int4, metric int2, value float8, received_at timestamptz
) ON COMMIT DROP
"""

_MOVE = """
INSERT INTO readings (time, sensor_id, metric, value, received_at)
SELECT s.time, (%(ids)s::text[])[s.sensor + 1], (%(metrics)s::text[])[s.metric + 1], s.value, s.received_at
FROM sim_readings_stage s
ORDER BY 2, 3, 1
ON CONFLICT DO NOTHING
"""


@dataclass(slots=True)
class BackfillReport:
    """What a backfill wrote: rows offered, rows new to the table, and messages they came from."""

    rows: int = 0
    inserted: int = 0
    messages: int = 0


def _records(sim: Simulation, metric_names: list[str]) -> Callable[..., np.ndarray]:
    fleet = sim.fleet
    metric_index = {m: i for i, m in enumerate(metric_names)}

    def build(batch) -> np.ndarray:  # type: ignore[no-untyped-def]
        parts = []
        for kind, group in fleet.groups.items():
            if not group.n:
                continue
            rows = np.arange(group.start, group.stop)
            keep = batch.present[rows] & ~batch.malformed[rows]
            if not keep.any():
                continue
            sel = rows[keep]
            local = sel - group.start
            metrics = METRICS[kind]
            n, m = len(sel), len(metrics)
            rec = np.empty(n * m, dtype=_ROW)
            rec["ncols"] = 5
            rec["l_time"], rec["l_sensor"], rec["l_metric"], rec["l_value"], rec["l_received"] = 8, 4, 2, 8, 8
            rec["time"] = np.repeat((batch.time_ms[sel] - _PG_EPOCH_MS) * 1000, m)
            rec["sensor"] = np.repeat(sel, m)
            rec["metric"] = np.tile([metric_index[x] for x in metrics], n)
            rec["value"] = batch.values[kind][local].reshape(-1)
            arrived = batch.true_time_ms[sel] + batch.delay[sel] * sim.step_ms
            rec["received"] = np.repeat((arrived - _PG_EPOCH_MS) * 1000, m)
            parts.append(rec)
        # np.concatenate would turn the big-endian fields native: keep the wire byte order.
        return np.concatenate(parts).astype(_ROW, copy=False) if parts else np.empty(0, dtype=_ROW)

    return build


def backfill(
    conn: psycopg.Connection,
    sim: Simulation,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> BackfillReport:
    """Write every reading of ``sim`` into ``readings``; ``progress(done_steps, total_steps)``."""
    metric_names = sorted({m for metrics in METRICS.values() for m in metrics})
    build = _records(sim, metric_names)
    report = BackfillReport()
    pending: list[np.ndarray] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if not pending_rows:
            return
        data = np.concatenate(pending).astype(_ROW, copy=False)
        try:
            with conn.transaction(), conn.cursor() as cur:
                for statement in _STAGE.split(";"):
                    cur.execute(statement)
                with cur.copy("COPY sim_readings_stage FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(_SIGNATURE + data.tobytes() + _TRAILER)
                cur.execute(_MOVE, {"ids": sim.fleet.ids, "metrics": metric_names})
                report.inserted += cur.rowcount
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not write {len(data)} readings into table 'readings': {exc}; "
                "create the partitions for the period first (ensure_readings_partitions)"
            ) from exc
        report.rows += len(data)
        pending, pending_rows = [], 0

    for batch in sim.batches():
        rec = build(batch)
        report.messages += int((batch.present & ~batch.malformed).sum())
        if len(rec):
            pending.append(rec)
            pending_rows += len(rec)
        if pending_rows >= chunk_rows:
            flush()
        if progress is not None:
            progress(batch.k + 1, sim.n_steps)
    flush()
    return report
