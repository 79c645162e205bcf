"""/api/v1/readings: one sensor's stored readings, raw or in time buckets.

Ranges are inclusive at both ends, in UTC (a time without a zone is UTC). Buckets come from
``time_bucket``, which behaves the same on TimescaleDB and on plain PostgreSQL (0002), so the
same request gives the same buckets on both.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query
from psycopg.rows import dict_row
from pydantic import BaseModel

from sense311.api.auth import require
from sense311.api.context import AppContext, get_context, get_db
from sense311.api.errors import ERROR_RESPONSES, Invalid
from sense311.api.models import IsoTime, Text, resolve_range
from sense311.durations import format_duration, parse_duration

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1", tags=["readings"], responses=ERROR_RESPONSES, dependencies=[Depends(require("read"))]
)
Db = Annotated[psycopg.Connection[Any], Depends(get_db)]
Ctx = Annotated[AppContext, Depends(get_context)]

#: The range a request without ``start`` covers, back from ``end``.
DEFAULT_RANGE = timedelta(hours=24)
MIN_BUCKET = timedelta(seconds=1)
MAX_BUCKET = timedelta(days=366)

SensorQ = Annotated[Text, Query(min_length=1, max_length=200, description="The sensor's id.")]
StartQ = Annotated[IsoTime | None, Query(description="ISO 8601; default: 24 h before end.")]
EndQ = Annotated[IsoTime | None, Query(description="ISO 8601; default: now.")]


class Reading(BaseModel):
    time: datetime
    metric: str
    value: float


class Readings(BaseModel):
    sensor_id: str
    start: datetime
    end: datetime
    items: list[Reading]
    #: True when more readings matched than ``limit``: narrow the range or use buckets.
    truncated: bool


class Bucket(BaseModel):
    bucket: datetime
    avg: float
    min: float
    max: float
    count: int


class Buckets(BaseModel):
    sensor_id: str
    metric: str
    interval: str
    start: datetime
    end: datetime
    items: list[Bucket]


@router.get("/readings", summary="Raw readings of a sensor")
def readings(
    ctx: Ctx,
    db: Db,
    sensor_id: SensorQ,
    metric: Annotated[list[Text] | None, Query(description="Only these metrics (repeatable).")] = None,
    start: StartQ = None,
    end: EndQ = None,
    limit: Annotated[int, Query(ge=1, description="Rows at most (api.max_readings caps it).")] = 1000,
    order: Annotated[
        Literal["asc", "desc"], Query(description="By time; desc gives the latest rows.")
    ] = "asc",
) -> Readings:
    """The sensor's readings in ``[start, end]``, by time, at most ``limit`` rows."""
    if limit > ctx.api.max_readings:
        raise Invalid(
            f"query parameter 'limit': at most {ctx.api.max_readings} rows, got {limit}; use buckets"
        )
    since, until = resolve_range(start, end, now=ctx.clock(), default=DEFAULT_RANGE)
    direction = "DESC" if order == "desc" else "ASC"
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT time, metric, value FROM readings
                WHERE sensor_id = %(sensor)s AND time >= %(since)s AND time <= %(until)s
                  AND (%(metrics)s::text[] IS NULL OR metric = ANY(%(metrics)s))
                ORDER BY time {direction}, metric
                LIMIT %(limit)s""",
            {"sensor": sensor_id, "since": since, "until": until, "metrics": metric, "limit": limit + 1},
        ).fetchall()
    return Readings(
        sensor_id=sensor_id,
        start=since,
        end=until,
        items=[Reading(**r) for r in rows[:limit]],
        truncated=len(rows) > limit,
    )


@router.get("/readings/buckets", summary="Readings of a sensor's metric in time buckets")
def buckets(
    ctx: Ctx,
    db: Db,
    sensor_id: SensorQ,
    metric: Annotated[Text, Query(min_length=1, max_length=200)],
    start: StartQ = None,
    end: EndQ = None,
    interval: Annotated[str, Query(description="Bucket width, e.g. '5m', '1h', '1d'.")] = "1h",
) -> Buckets:
    """avg, min, max and count of the metric per ``time_bucket(interval, time)``; no empty buckets."""
    try:
        width = parse_duration(interval)
    except ValueError as exc:
        raise Invalid(f"query parameter 'interval': {exc}") from None
    if not MIN_BUCKET <= width <= MAX_BUCKET:
        raise Invalid(f"query parameter 'interval': expected 1s to 366d, got '{format_duration(width)}'")
    since, until = resolve_range(start, end, now=ctx.clock(), default=DEFAULT_RANGE)
    count = (until - since) / width
    if count > ctx.api.max_readings:
        raise Invalid(
            f"{count:.0f} buckets of {format_duration(width)} in the range; at most {ctx.api.max_readings}: "
            "widen the interval or narrow the range"
        )
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT time_bucket(%(width)s::interval, time) AS bucket, avg(value) AS avg, min(value) AS min,
                      max(value) AS max, count(*) AS count
               FROM readings
               WHERE sensor_id = %(sensor)s AND metric = %(metric)s
                 AND time >= %(since)s AND time <= %(until)s
               GROUP BY 1 ORDER BY 1""",
            {"width": width, "sensor": sensor_id, "metric": metric, "since": since, "until": until},
        ).fetchall()
    return Buckets(
        sensor_id=sensor_id,
        metric=metric,
        interval=format_duration(width),
        start=since,
        end=until,
        items=[Bucket(**r) for r in rows],
    )
