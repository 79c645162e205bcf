"""/api/v1/dead-letters: the messages ingest refused, by reason, with their raw bytes."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Query
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel

from sense311.api.auth import require
from sense311.api.context import AppContext, get_context, get_db
from sense311.api.errors import ERROR_RESPONSES, Invalid, NotFound
from sense311.api.models import IsoTime, Page, Text, utc

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["dead letters"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require("read"))],
)
Db = Annotated[psycopg.Connection[Any], Depends(get_db)]
Ctx = Annotated[AppContext, Depends(get_context)]

#: Bytes of payload shown in a listing: enough to recognise a message, small enough for pages of 1000.
PREVIEW_BYTES = 200
MAX_OFFSET = 2**31 - 1

StartQ = Annotated[IsoTime | None, Query(description="received_at ≥ start (ISO 8601).")]
EndQ = Annotated[IsoTime | None, Query(description="received_at ≤ end (ISO 8601).")]


class DeadLetter(BaseModel):
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    format: str | None
    sensor_id: str | None
    gateway_id: str | None
    payload_size: int
    #: The payload's first bytes as text (undecodable bytes replaced).
    payload_preview: str


class DeadLetterDetail(DeadLetter):
    payload_base64: str
    #: The whole payload as text when it is UTF-8, else None.
    payload_text: str | None


class ReasonCount(BaseModel):
    reason: str
    count: int
    last_received_at: datetime


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    try:
        return (utc(start) if start else None, utc(end) if end else None)
    except OverflowError:
        raise Invalid("'start' or 'end' is out of the supported range of dates") from None


def _letter(row: dict[str, Any]) -> dict[str, Any]:
    payload = bytes(row.pop("payload"))
    row["payload_size"] = len(payload)
    row["payload_preview"] = payload[:PREVIEW_BYTES].decode("utf-8", errors="replace")
    return row


@router.get("/dead-letters", summary="List dead letters")
def list_dead_letters(
    ctx: Ctx,
    db: Db,
    reason: Annotated[list[Text] | None, Query(description="Only these reasons (repeatable).")] = None,
    sensor_id: Annotated[Text | None, Query(max_length=200)] = None,
    start: StartQ = None,
    end: EndQ = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[DeadLetter]:
    """Refused messages, newest first."""
    if limit > ctx.api.max_page_size:
        raise Invalid(f"query parameter 'limit': at most {ctx.api.max_page_size} items per page, got {limit}")
    since, until = _range(start, end)
    clauses = [
        ("reason = ANY(%s)", reason or None),
        ("sensor_id = %s", sensor_id),
        ("received_at >= %s", since),
        ("received_at <= %s", until),
    ]
    where = sql.SQL(" AND ").join([sql.SQL("true")] + [sql.SQL(c) for c, v in clauses if v is not None])
    params = [v for _, v in clauses if v is not None]
    with db.cursor(row_factory=dict_row) as cur:
        total = cur.execute(
            sql.SQL("SELECT count(*) AS n FROM dead_letters WHERE {}").format(where), params
        ).fetchone()
        rows = cur.execute(
            sql.SQL(
                "SELECT id, received_at, topic, reason, detail, format, sensor_id, gateway_id, "
                "substring(payload FROM 1 FOR %s) AS payload, length(payload) AS size "
                "FROM dead_letters WHERE {} ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s"
            ).format(where),
            [PREVIEW_BYTES, *params, limit, offset],
        ).fetchall()
    items = []
    for r in rows:
        size = r.pop("size")
        letter = _letter(r)
        letter["payload_size"] = size
        items.append(DeadLetter(**letter))
    return Page[DeadLetter](items=items, total=total["n"] if total else 0, limit=limit, offset=offset)


@router.get("/dead-letters/reasons", summary="Dead letters counted by reason")
def dead_letter_reasons(db: Db, start: StartQ = None, end: EndQ = None) -> list[ReasonCount]:
    since, until = _range(start, end)
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT reason, count(*) AS count, max(received_at) AS last_received_at FROM dead_letters
               WHERE (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)
                 AND (%(until)s::timestamptz IS NULL OR received_at <= %(until)s)
               GROUP BY reason ORDER BY count(*) DESC, reason""",
            {"since": since, "until": until},
        ).fetchall()
    return [ReasonCount(**r) for r in rows]


@router.get("/dead-letters/{letter_id}", summary="One dead letter with its whole payload")
def get_dead_letter(db: Db, letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> DeadLetterDetail:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT id, received_at, topic, reason, detail, format, sensor_id, gateway_id, payload "
            "FROM dead_letters WHERE id = %s",
            (letter_id,),
        ).fetchone()
    if row is None:
        raise NotFound(f"no dead letter {letter_id}")
    payload = bytes(row["payload"])
    try:
        text: str | None = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return DeadLetterDetail(
        **_letter(row), payload_base64=base64.b64encode(payload).decode("ascii"), payload_text=text
    )
