"""What the detector jobs read from the database: sensors from the registry, readings per series.

Readings come back through one binary ``COPY`` that numpy parses in place (no Python object per
row): a training run reads weeks of minute data for thousands of sensors. Series are sorted by
event time with duplicate times dropped, the order detectors require.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import psycopg
from psycopg import sql

from sense311.db.errors import translate
from sense311.types import Sensor

__all__ = ["Series", "fetch_series", "select_sensors"]

#: ``(times in UTC seconds, values)`` keyed by (sensor id, metric).
Series = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
#: PostgreSQL's timestamps count microseconds from 2000-01-01 UTC.
_PG_EPOCH_S = 946_684_800.0
_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("len_sensor", ">i4"),
        ("sensor", ">i4"),
        ("len_metric", ">i4"),
        ("metric", ">i4"),
        ("len_time", ">i4"),
        ("time", ">i8"),
        ("len_value", ">i4"),
        ("value", ">f8"),
    ]
)


def select_sensors(conn: psycopg.Connection, kinds: list[str]) -> list[Sensor]:
    """Registry entries of the given kinds (every sensor when ``kinds`` is empty), sorted by id."""
    where = sql.SQL("WHERE kind = ANY(%s)") if kinds else sql.SQL("")
    query = sql.SQL(
        "SELECT id, kind, lat, lon, address, district, tags, gateway, metadata FROM sensors {} ORDER BY id"
    ).format(where)
    try:
        rows = conn.execute(query, [kinds] if kinds else []).fetchall()
    except psycopg.Error as exc:
        raise translate(exc, "cannot read the sensor registry") from exc
    return [Sensor(*row) for row in rows]


def fetch_series(
    conn: psycopg.Connection, sensor_ids: list[str], metrics: list[str], lo: datetime, hi: datetime
) -> Series:
    """Readings with ``lo < time <= hi`` of ``sensor_ids`` × ``metrics``; ``"*"`` means any metric
    (its series holds each distinct reading time once, value 1)."""
    if not sensor_ids or not metrics:
        return {}
    any_metric = "*" in metrics
    named = [m for m in metrics if m != "*"]
    metrics_array = sql.SQL("{}::text[]").format(sql.Literal(named))
    metric_sql = sql.SQL("TRUE") if any_metric else sql.SQL("r.metric = ANY({})").format(metrics_array)
    # COPY takes no bind parameters: the values go in as literals, quoted by psycopg.
    query = sql.SQL(
        "SELECT s.idx::int4, (COALESCE(array_position({metrics}, r.metric), 0) - 1)::int4, r.time, r.value "
        "FROM readings r JOIN unnest({ids}::text[]) WITH ORDINALITY AS s(id, idx) ON s.id = r.sensor_id "
        "WHERE {where} AND r.time > {lo} AND r.time <= {hi}"
    ).format(
        metrics=metrics_array,
        ids=sql.Literal(sensor_ids),
        where=metric_sql,
        lo=sql.Literal(lo),
        hi=sql.Literal(hi),
    )
    chunks: list[bytes] = []
    try:
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy,
        ):
            for block in copy:
                chunks.append(bytes(block))
    except psycopg.Error as exc:
        raise translate(exc, f"cannot read readings of {len(sensor_ids)} sensors") from exc
    rows = _parse(b"".join(chunks))
    sensor = rows["sensor"].astype(np.int64) - 1
    metric = rows["metric"].astype(np.int64)
    t = rows["time"].astype(np.int64) / 1e6 + _PG_EPOCH_S
    value = rows["value"].astype(np.float64)
    out: Series = {}
    order = np.lexsort((t, metric, sensor))
    sensor, metric, t, value = sensor[order], metric[order], t[order], value[order]
    for i, sensor_id in enumerate(sensor_ids):
        lo_i, hi_i = np.searchsorted(sensor, [i, i + 1])
        if lo_i == hi_i:
            continue
        s_metric, s_t, s_v = metric[lo_i:hi_i], t[lo_i:hi_i], value[lo_i:hi_i]
        for j, name in enumerate(named):
            sel = s_metric == j
            if sel.any():
                out[(sensor_id, name)] = _unique(s_t[sel], s_v[sel])
        if any_metric:
            times = np.unique(s_t)
            out[(sensor_id, "*")] = (times, np.ones(len(times)))
    return out


def _unique(t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.concatenate([[True], np.diff(t) > 0])
    return t[keep], x[keep]


def _parse(buf: bytes) -> np.ndarray:
    if not buf:
        return np.zeros(0, dtype=_ROW)
    if not buf.startswith(_SIGNATURE):
        raise ValueError("unexpected COPY BINARY header")
    ext = int.from_bytes(buf[15:19], "big")
    body = memoryview(buf)[19 + ext : len(buf) - 2]
    rows = np.frombuffer(body, dtype=_ROW)
    if len(rows) and (rows["fields"] != 4).any():
        raise ValueError("unexpected COPY BINARY row layout")
    return rows
