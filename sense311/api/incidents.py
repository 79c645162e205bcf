"""/api/v1/incidents, /api/v1/tickets and /api/v1/detections: what the rules found and what was filed.

Read-only views of the ticketing tables (0005) and the detections (0003). A ticket's members
come from ``ticketing.tickets.load_ticket``, the view every sink renders from, so the API shows
exactly what the city was sent. Listings are newest first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Query
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel

from sense311.api.auth import require
from sense311.api.context import AppContext, get_context, get_db
from sense311.api.errors import ERROR_RESPONSES, Invalid, NotFound
from sense311.api.models import IsoTime, Page, Text, utc
from ticketing.errors import OutboxError
from ticketing.tickets import load_ticket

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1", tags=["incidents"], responses=ERROR_RESPONSES, dependencies=[Depends(require("read"))]
)
Db = Annotated[psycopg.Connection[Any], Depends(get_db)]
Ctx = Annotated[AppContext, Depends(get_context)]

MAX_OFFSET = 2**31 - 1
MAX_ID = 2**63 - 1
#: Detections listed with one incident: its whole story for all but the noisiest sensors.
INCIDENT_DETECTIONS = 200

ProblemQ = Annotated[list[Text] | None, Query(description="Only these problems (repeatable).")]
SensorQ = Annotated[Text | None, Query(max_length=200, description="Only this sensor's.")]
LimitQ = Annotated[int, Query(ge=1, description="Items per page (at most api.max_page_size).")]
OffsetQ = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


class Incident(BaseModel):
    id: int
    problem: str
    sensor_id: str
    status: str
    sensor_state: str
    rule_id: str
    rule_version: str
    severity: str
    onset: datetime | None
    first_seen: datetime
    last_seen: datetime
    detections: int
    value: float | None
    lat: float | None
    lon: float | None
    resolved_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    ticket_id: int | None


class Detection(BaseModel):
    id: int
    rule_id: str
    rule_version: str
    sensor_id: str
    problem: str
    kind: str
    fired_at: datetime
    onset: datetime | None
    severity: str
    value: float | None
    evidence: dict[str, Any]


class Ticket(BaseModel):
    id: int
    reference: str
    problem: str
    status: str
    sink: str
    service_code: str | None
    service_request_id: str | None
    remote_status: str | None
    outcome: str | None
    lat: float | None
    lon: float | None
    opened_at: datetime
    sent_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    follows_ticket_id: int | None
    members: int


class IncidentDetail(Incident):
    evidence: dict[str, Any]
    close_notes: str | None
    reopens_id: int | None
    firing_rules: list[str]
    ticket: Ticket | None
    #: Detections and resolutions of its problem and sensor since it opened (until it closed).
    history: list[Detection]


class Member(BaseModel):
    incident_id: int
    sensor_id: str
    kind: str | None
    lat: float | None
    lon: float | None
    address: str | None
    district: str | None
    first_seen: datetime
    last_seen: datetime
    detections: int
    severity: str
    value: float | None
    evidence: dict[str, Any]
    rule_id: str
    sensor_state: str


class OutboxEntry(BaseModel):
    id: int
    sink: str
    state: str
    attempts: int
    in_doubt: bool
    available_at: datetime
    last_status: int | None
    last_error: str | None
    sent_at: datetime | None


class StatusChange(BaseModel):
    observed_at: datetime
    status: str
    status_notes: str | None
    source: str


class TicketDetail(Ticket):
    status_notes: str | None
    members_detail: list[Member]
    outbox: list[OutboxEntry]
    history: list[StatusChange]


def _limit(ctx: AppContext, limit: int) -> None:
    if limit > ctx.api.max_page_size:
        raise Invalid(f"query parameter 'limit': at most {ctx.api.max_page_size} items per page, got {limit}")


def _where(clauses: list[tuple[str, Any]]) -> tuple[sql.Composable, list[Any]]:
    parts = [sql.SQL("true")] + [sql.SQL(text) for text, value in clauses if value is not None]
    params = [value for _, value in clauses if value is not None]
    return sql.SQL(" AND ").join(parts), params


_INCIDENT = "SELECT i.*, m.ticket_id FROM incidents i LEFT JOIN ticket_members m ON m.incident_id = i.id"
_TICKET = (
    "SELECT t.*, (SELECT count(*) FROM ticket_members x WHERE x.ticket_id = t.id) AS members FROM tickets t"
)
_DETECTION_COLUMNS = (
    "id, rule_id, rule_version, sensor_id, problem, kind, fired_at, onset, severity, value, evidence"
)


@router.get("/incidents", summary="List incidents")
def list_incidents(
    ctx: Ctx,
    db: Db,
    status: Annotated[
        Literal["open", "closed"] | None, Query(description="open or closed (by the city).")
    ] = None,
    sensor_state: Annotated[
        Literal["firing", "resolved"] | None,
        Query(description="The rules' side: still firing, or back to normal."),
    ] = None,
    problem: ProblemQ = None,
    sensor_id: SensorQ = None,
    limit: LimitQ = 100,
    offset: OffsetQ = 0,
) -> Page[Incident]:
    """Incidents, newest first, with the ticket each belongs to."""
    _limit(ctx, limit)
    where, params = _where(
        [
            ("i.status = %s", status),
            ("i.sensor_state = %s", sensor_state),
            ("i.problem = ANY(%s)", problem or None),
            ("i.sensor_id = %s", sensor_id),
        ]
    )
    with db.cursor(row_factory=dict_row) as cur:
        total = cur.execute(
            sql.SQL("SELECT count(*) AS n FROM incidents i WHERE {}").format(where), params
        ).fetchone()
        rows = cur.execute(
            sql.SQL(_INCIDENT + " WHERE {} ORDER BY i.id DESC LIMIT %s OFFSET %s").format(where),
            [*params, limit, offset],
        ).fetchall()
    return Page[Incident](
        items=[Incident(**r) for r in rows], total=total["n"] if total else 0, limit=limit, offset=offset
    )


@router.get("/incidents/{incident_id}", summary="One incident with its evidence and detections")
def get_incident(db: Db, incident_id: IdPath) -> IncidentDetail:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_INCIDENT + " WHERE i.id = %s", (incident_id,)).fetchone()
        if row is None:
            raise NotFound(f"no incident {incident_id}")
        ticket = None
        if row["ticket_id"] is not None:
            found = cur.execute(_TICKET + " WHERE t.id = %s", (row["ticket_id"],)).fetchone()
            ticket = Ticket(**found) if found else None
        history = cur.execute(
            f"""SELECT {_DETECTION_COLUMNS} FROM detections
               WHERE sensor_id = %(sensor)s AND problem = %(problem)s AND fired_at >= %(since)s
                 AND (%(until)s::timestamptz IS NULL OR fired_at <= %(until)s)
               ORDER BY fired_at, id LIMIT %(limit)s""",
            {
                "sensor": row["sensor_id"],
                "problem": row["problem"],
                "since": row["onset"] or row["first_seen"],
                "until": row["closed_at"] if row["status"] == "closed" else None,
                "limit": INCIDENT_DETECTIONS,
            },
        ).fetchall()
    return IncidentDetail(
        **{k: v for k, v in row.items() if k != "firing_rules"},
        firing_rules=row.get("firing_rules") or [],
        ticket=ticket,
        history=[Detection(**h) for h in history],
    )


@router.get("/tickets", summary="List tickets")
def list_tickets(
    ctx: Ctx,
    db: Db,
    status: Annotated[
        list[Text] | None,
        Query(
            description="Only these statuses (repeatable): pending, submitted, open, sent, closed, failed, …"
        ),
    ] = None,
    problem: ProblemQ = None,
    sensor_id: Annotated[
        Text | None, Query(max_length=200, description="Only tickets with this sensor as a member.")
    ] = None,
    limit: LimitQ = 100,
    offset: OffsetQ = 0,
) -> Page[Ticket]:
    """Tickets, newest first, with their member count."""
    _limit(ctx, limit)
    where, params = _where(
        [
            ("t.status = ANY(%s)", status or None),
            ("t.problem = ANY(%s)", problem or None),
            (
                "EXISTS (SELECT 1 FROM ticket_members m JOIN incidents i ON i.id = m.incident_id "
                "WHERE m.ticket_id = t.id AND i.sensor_id = %s)",
                sensor_id,
            ),
        ]
    )
    with db.cursor(row_factory=dict_row) as cur:
        total = cur.execute(
            sql.SQL("SELECT count(*) AS n FROM tickets t WHERE {}").format(where), params
        ).fetchone()
        rows = cur.execute(
            sql.SQL(_TICKET + " WHERE {} ORDER BY t.id DESC LIMIT %s OFFSET %s").format(where),
            [*params, limit, offset],
        ).fetchall()
    return Page[Ticket](
        items=[Ticket(**r) for r in rows], total=total["n"] if total else 0, limit=limit, offset=offset
    )


@router.get("/tickets/{ticket_id}", summary="One ticket with its members, outbox and status history")
def get_ticket(db: Db, ticket_id: IdPath) -> TicketDetail:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_TICKET + " WHERE t.id = %s", (ticket_id,)).fetchone()
        if row is None:
            raise NotFound(f"no ticket {ticket_id}")
        outbox = cur.execute(
            """SELECT id, sink, state, attempts, in_doubt, available_at, last_status, last_error, sent_at
               FROM outbox WHERE ticket_id = %s ORDER BY id""",
            (ticket_id,),
        ).fetchall()
        history = cur.execute(
            """SELECT observed_at, status, status_notes, source FROM ticket_status_history
               WHERE ticket_id = %s ORDER BY observed_at, id""",
            (ticket_id,),
        ).fetchall()
    members: list[Member] = []
    if row["members"]:
        try:
            view = load_ticket(db, ticket_id)
        except OutboxError:
            # Its members moved away (a merge) between the two reads.
            view = None
        if view is not None:
            members = [Member(**{f: getattr(m, f) for f in Member.model_fields}) for m in view.members]
    return TicketDetail(
        **row,
        members_detail=members,
        outbox=[OutboxEntry(**o) for o in outbox],
        history=[StatusChange(**h) for h in history],
    )


@router.get("/detections", summary="List detections and resolutions")
def list_detections(
    ctx: Ctx,
    db: Db,
    sensor_id: SensorQ = None,
    problem: ProblemQ = None,
    rule_id: Annotated[Text | None, Query(max_length=200)] = None,
    kind: Annotated[Literal["detection", "resolution"] | None, Query()] = None,
    start: Annotated[IsoTime | None, Query(description="fired_at ≥ start (ISO 8601).")] = None,
    end: Annotated[IsoTime | None, Query(description="fired_at ≤ end (ISO 8601).")] = None,
    limit: LimitQ = 100,
    offset: OffsetQ = 0,
) -> Page[Detection]:
    """What the rules emitted, newest first."""
    _limit(ctx, limit)
    try:
        since = utc(start) if start is not None else None
        until = utc(end) if end is not None else None
    except OverflowError:
        raise Invalid("'start' or 'end' is out of the supported range of dates") from None
    where, params = _where(
        [
            ("sensor_id = %s", sensor_id),
            ("problem = ANY(%s)", problem or None),
            ("rule_id = %s", rule_id),
            ("kind = %s", kind),
            ("fired_at >= %s", since),
            ("fired_at <= %s", until),
        ]
    )
    with db.cursor(row_factory=dict_row) as cur:
        total = cur.execute(
            sql.SQL("SELECT count(*) AS n FROM detections WHERE {}").format(where), params
        ).fetchone()
        rows = cur.execute(
            sql.SQL(
                f"SELECT {_DETECTION_COLUMNS} FROM detections WHERE {{}} "
                "ORDER BY fired_at DESC, id DESC LIMIT %s OFFSET %s"
            ).format(where),
            [*params, limit, offset],
        ).fetchall()
    return Page[Detection](
        items=[Detection(**r) for r in rows], total=total["n"] if total else 0, limit=limit, offset=offset
    )
