"""What a rule reads from the database: its sensors, and their readings over an event-time range.

One query per rule and range, whatever the number of sensors: the selected sensors go into a
temporary table (numbered in id order), and the readings of all of them come back through one
binary ``COPY`` that numpy parses in place — about 34 bytes a reading and no Python object per
row, which is what keeps a 100,000-sensor cycle within its budget (see ``bench/rules.py``).

Metrics named ``detector.<name>`` read ``detector_scores(time, sensor_id, detector, score)`` when
that table exists; until a detector writes it, such a rule sees no data. Both queries must run
inside a transaction: the selection table is dropped at commit.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from rules.aggregates import Series
from rules.instants import from_us
from rules.model import ANY_METRIC, Rule, Selector

__all__ = ["SELECTION_TABLE", "fetch_series", "select_sensors", "table_exists"]

#: The per-transaction temporary table holding the current rule's sensors.
SELECTION_TABLE = "_rule_selection"
#: PostgreSQL's timestamps count microseconds from 2000-01-01 UTC; ours from 1970-01-01.
_PG_EPOCH_US = 946_684_800_000_000
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("len_sensor", ">i4"),
        ("sensor", ">i4"),
        ("len_time", ">i4"),
        ("time", ">i8"),
        ("len_value", ">i4"),
        ("value", ">f8"),
    ]
)
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
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(SELECTION_TABLE)))
    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} ON COMMIT DROP AS "
            'SELECT id, (row_number() OVER (ORDER BY id COLLATE "C") - 1)::int4 AS idx '
            "FROM sensors WHERE {}"
        ).format(sql.Identifier(SELECTION_TABLE), where),
        params,
    )
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(SELECTION_TABLE)))
    rows = conn.execute(sql.SQL("SELECT id FROM {} ORDER BY idx").format(sql.Identifier(SELECTION_TABLE)))
    return [r[0] for r in rows.fetchall()]


def _parse_copy(buf: bytes) -> Series:
    if not buf.startswith(_SIGNATURE):
        raise ValueError("unexpected COPY BINARY header")
    ext = int.from_bytes(buf[15:19], "big")
    body = memoryview(buf)[19 + ext : len(buf) - 2]
    rows = np.frombuffer(body, dtype=_ROW)
    if len(rows) and (rows["fields"] != 3).any():
        raise ValueError("unexpected COPY BINARY row layout")
    sensor = rows["sensor"].astype(np.int64)
    time = rows["time"].astype(np.int64) + _PG_EPOCH_US
    value = rows["value"].astype(np.float64)
    # (sensor, time) order; ties (several metrics at one time with metric '*') by value, so the
    # order — and with it every sum — never depends on how the server returned the rows.
    order = np.lexsort((value, time, sensor))
    return Series(sensor[order], time[order], value[order])


def fetch_series(conn: psycopg.Connection, rule: Rule, lo_us: int, hi_us: int) -> Series:
    """Readings of the selected sensors with ``lo < time <= hi`` (µs since the epoch, UTC)."""
    selection = sql.Identifier(SELECTION_TABLE)
    lo, hi = from_us(lo_us), from_us(hi_us)
    detector = rule.detector
    if detector is not None:
        if not table_exists(conn, "detector_scores"):
            return Series.empty()
        query = sql.SQL(
            "SELECT s.idx, d.time, d.score FROM detector_scores d JOIN {} s ON s.id = d.sensor_id "
            "WHERE d.detector = {} AND d.time > {} AND d.time <= {} AND d.score IS NOT NULL"
        ).format(selection, sql.Literal(detector), sql.Literal(lo), sql.Literal(hi))
    else:
        metric = (
            sql.SQL("TRUE")
            if rule.metric == ANY_METRIC
            else sql.SQL("r.metric = {}").format(sql.Literal(rule.metric))
        )
        query = sql.SQL(
            "SELECT s.idx, r.time, r.value FROM readings r JOIN {} s ON s.id = r.sensor_id "
            "WHERE {} AND r.time > {} AND r.time <= {}"
        ).format(selection, metric, sql.Literal(lo), sql.Literal(hi))
    chunks: list[bytes] = []
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)) as copy:
        for block in copy:
            chunks.append(bytes(block))
    return _parse_copy(b"".join(chunks))
