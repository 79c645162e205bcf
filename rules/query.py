"""What a rule reads from the database: its sensors, and their readings over an event-time range.

One query per rule and range, whatever the number of sensors: the selected sensors go into a
temporary table (numbered in id order), and the readings come back as a few rows of three arrays
(``array_agg`` of sensor numbers, times and values) in PostgreSQL's binary array format, which
numpy reads in place: no Python object per reading, nor per sensor. (A binary
``COPY`` was measured 4–5× slower: the server sends one message per row and each costs a
Python call; see ``bench/rules.py``.)

Readings are windowed by event time (``time``), or by arrival (``received_at``) for rules with
``timestamp: received``. Metrics named ``detector.<name>`` read ``detector_scores(time, sensor_id,
detector, score)`` when that table exists; until a detector writes it, such a rule sees no data.
Both queries must run inside a transaction: the selection table is dropped at commit. A NaN
value is no measurement and is not read.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from rules.aggregates import Series
from rules.errors import RulesError
from rules.instants import from_us
from rules.model import ANY_METRIC, DETECTOR_PREFIX, Selector

__all__ = ["SELECTION_TABLE", "fetch_series", "select_sensors", "table_exists"]

#: The per-transaction temporary table holding the current rule's sensors.
SELECTION_TABLE = "_rule_selection"
#: PostgreSQL's timestamps count microseconds from 2000-01-01 UTC; ours from 1970-01-01.
_PG_EPOCH_US = 946_684_800_000_000
#: Sensors per result row: each row holds three arrays (sensor numbers, times, values) for a
#: group of sensors, few rows to parse, and no array near PostgreSQL's 1 GB limit.
SENSORS_PER_ROW = 1024
#: A one-dimensional binary array: ndim, has-nulls flag, element type, size, lower bound.
_ARRAY_HEADER = 20
#: Each element of a binary int8 / float8 / timestamptz array: its length (8), then its bytes.
_SENSOR_ELEMENT = np.dtype([("length", ">i4"), ("item", ">i4")])
_TIME_ELEMENT = np.dtype([("length", ">i4"), ("item", ">i8")])
_VALUE_ELEMENT = np.dtype([("length", ">i4"), ("item", ">f8")])
#: Sorting and hashing 100,000 sensor ids in memory instead of spilling to disk.
WORK_MEM = "64MB"


def _where(selector: Selector) -> tuple[sql.Composable, list[object]]:
    clauses: list[sql.Composable] = []
    params: list[object] = []
    for column in ("kind", "district"):
        values = getattr(selector, column)
        if values:
            clauses.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
            params.append(list(values))
    if selector.tags:
        clauses.append(sql.SQL("tags @> %s::text[]"))
        params.append(list(selector.tags))
    if selector.ids:
        clauses.append(sql.SQL("id = ANY(%s)"))
        params.append(list(selector.ids))
    if not clauses:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(clauses), params


def table_exists(conn: psycopg.Connection, name: str) -> bool:
    """True when ``name`` resolves on the connection's search_path."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def select_sensors(conn: psycopg.Connection, selector: Selector) -> list[str]:
    """The ids of the sensors ``selector`` matches, sorted; also left in ``SELECTION_TABLE``.

    Sensor number ``i`` in the readings ``fetch_series`` returns is ``ids[i]``.
    """
    where, params = _where(selector)
    table = sql.Identifier(SELECTION_TABLE)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(table))
    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (id text, idx int4) ON COMMIT DROP").format(table))
    # Filling the table returns its rows: one round trip fewer than reading them back.
    rows = conn.execute(
        sql.SQL(
            'INSERT INTO {} SELECT id, (row_number() OVER (ORDER BY id COLLATE "C") - 1)::int4 '
            "FROM sensors WHERE {} RETURNING idx, id"
        ).format(table, where),
        params,
    ).fetchall()
    ids: list[str] = [""] * len(rows)
    for idx, sensor_id in rows:
        ids[idx] = sensor_id
    return ids


def _elements(blobs: list[bytes], dtype: np.dtype) -> np.ndarray:
    body = b"".join(memoryview(b)[_ARRAY_HEADER:] for b in blobs)
    items = np.frombuffer(body, dtype=dtype)
    if len(items) and (items["length"] != dtype["item"].itemsize).any():
        raise RulesError("unexpected binary array layout from the database (a NULL element?)")
    return items["item"]


def _parse_arrays(rows: list[tuple[bytes, bytes, bytes]], ties: bool) -> Series:
    if not rows:
        return Series.empty()
    sensor = _elements([r[0] for r in rows], _SENSOR_ELEMENT).astype(np.int64)
    time = _elements([r[1] for r in rows], _TIME_ELEMENT).astype(np.int64) + _PG_EPOCH_US
    value = _elements([r[2] for r in rows], _VALUE_ELEMENT).astype(np.float64)
    # (sensor, time) order; ties (several metrics at one time with metric '*') by value, so the
    # order — and with it every sum — never depends on how the server returned the rows.
    order = np.lexsort((value, time, sensor) if ties else (time, sensor))
    return Series(sensor[order], time[order], value[order])


def fetch_series(
    conn: psycopg.Connection, metric: str, lo_us: int, hi_us: int, *, timestamp: str = "event"
) -> Series:
    """Readings of ``metric`` for the selected sensors with ``lo < time <= hi`` (µs since the
    epoch, UTC). ``timestamp="received"`` windows and returns the time readings arrived instead."""
    selection = sql.Identifier(SELECTION_TABLE)
    lo, hi = from_us(lo_us), from_us(hi_us)
    detector = metric[len(DETECTOR_PREFIX) :] if metric.startswith(DETECTOR_PREFIX) else None
    if detector is not None:
        if not table_exists(conn, "detector_scores"):
            return Series.empty()
        source = sql.SQL(
            "SELECT sensor_id, time AS t, score AS value FROM detector_scores "
            "WHERE detector = {} AND time > {} AND time <= {} "
            "AND score IS NOT NULL AND score <> 'NaN'::float8"
        ).format(sql.Literal(detector), sql.Literal(lo), sql.Literal(hi))
    else:
        which = (
            sql.SQL("TRUE") if metric == ANY_METRIC else sql.SQL("metric = {}").format(sql.Literal(metric))
        )
        column = sql.Identifier("received_at" if timestamp == "received" else "time")
        source = sql.SQL(
            "SELECT sensor_id, {col} AS t, value FROM readings "
            "WHERE {which} AND {col} > {lo} AND {col} <= {hi} AND value <> 'NaN'::float8"
        ).format(col=column, which=which, lo=sql.Literal(lo), hi=sql.Literal(hi))
    query = sql.SQL(
        "SELECT array_send(array_agg(s.idx)), array_send(array_agg(r.t)), array_send(array_agg(r.value)) "
        "FROM ({source}) r JOIN {sel} s ON s.id = r.sensor_id GROUP BY s.idx / {per}"
    ).format(source=source, sel=selection, per=sql.Literal(SENSORS_PER_ROW))
    with conn.cursor(binary=True) as cur:
        cur.execute(query)
        rows = cur.fetchall()
    # One metric has one reading per (sensor, time) (the readings key); '*' may have several.
    return _parse_arrays(rows, ties=metric == ANY_METRIC)
