"""Register a small street of lamps and store their power readings, for database tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from sense311.db import ensure_partitions

__all__ = ["LAMPS", "START", "STEP", "add_street"]

#: A Monday, away from any DST change.
START = datetime(2026, 6, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
LAMPS = [f"lamp-{i}" for i in range(6)]


def add_street(
    conn: psycopg.Connection, days: int = 4, half_power: tuple[str, datetime] | None = None, seed: int = 1
) -> None:
    """Six lamps 35 m apart, lit 20:00–06:00 UTC at 36 W (18 W dimmed 00:00–05:00), every 10 minutes.

    ``half_power`` = (lamp, from): that lamp draws half its power from then on.
    """
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, lat, lon, metadata) VALUES (%s, 'light', %s, 4.89, %s)",
            [(lamp, 52.37 + i * 0.000315, json.dumps({"street": "Main"})) for i, lamp in enumerate(LAMPS)],
        )
    rng = np.random.default_rng(seed)
    steps = int(timedelta(days=days) / STEP)
    rows = []
    for k in range(steps):
        at = START + k * STEP
        hour = at.hour
        lit = hour >= 20 or hour < 6
        power = (18.0 if hour < 5 else 36.0) if lit else 0.0
        for lamp in LAMPS:
            value = round(power * (1 + 0.01 * rng.normal()), 1) if lit else 0.0
            if half_power and lamp == half_power[0] and at >= half_power[1]:
                value = round(value * 0.5, 1)
            rows.append((at, lamp, "power_w", value))
    ensure_partitions(conn, START - timedelta(days=1), START + timedelta(days=days + 1), timedelta(days=7))
    with conn.cursor() as cur, cur.copy("COPY readings (time, sensor_id, metric, value) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
