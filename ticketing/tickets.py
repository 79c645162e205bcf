"""Tickets as the sinks see them, and the transitions the city and the operator cause.

``load_ticket`` reads a ticket with its members and their registry rows (a read-only view every
sink renders from); ``close_ticket`` closes a ticket and every member incident, keeping the city's
status notes and telling a duplicate closure from a plain one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from ticketing.errors import OutboxError

__all__ = [
    "FollowUp",
    "Member",
    "TicketView",
    "classify_closure",
    "close_ticket",
    "load_ticket",
    "record_status",
]

#: Status notes that mean "merged into another request" on common 311 back ends ("Duplicate
#: request.", "Closed as duplicate of #123", "Dup").
_DUPLICATE_NOTES = re.compile(r"\bdup(licate)?s?\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Member:
    """One incident of a ticket, with what the registry says about its sensor."""

    incident_id: int
    sensor_id: str
    kind: str | None
    lat: float | None
    lon: float | None
    address: str | None
    district: str | None
    metadata: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    detections: int
    severity: str
    value: float | None
    evidence: dict[str, Any]
    rule_id: str
    sensor_state: str


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The closed ticket a follow-up refers to."""

    ticket_id: int
    reference: str
    service_request_id: str | None
    closed_at: datetime | None
    status_notes: str | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class TicketView:
    id: int
    reference: str
    problem: str
    status: str
    opened_at: datetime
    created_at: datetime
    lat: float | None
    lon: float | None
    members: list[Member] = field(default_factory=list)
    follows: FollowUp | None = None

    @property
    def primary(self) -> Member:
        """The first incident: its sensor anchors the ticket's location."""
        return self.members[0]


def load_ticket(conn: psycopg.Connection[Any], ticket_id: int) -> TicketView:
    with conn.cursor(row_factory=dict_row) as cur:
        t = cur.execute("SELECT * FROM tickets WHERE id = %s", (ticket_id,)).fetchone()
        if t is None:
            raise OutboxError(f"ticket {ticket_id} does not exist")
        rows = cur.execute(
            """SELECT i.id AS incident_id, i.sensor_id, s.kind, coalesce(i.lat, s.lat) AS lat,
                      coalesce(i.lon, s.lon) AS lon, s.address, s.district, s.metadata, i.first_seen,
                      i.last_seen, i.detections, i.severity, i.value, i.evidence, i.rule_id, i.sensor_state
               FROM ticket_members m
               JOIN incidents i ON i.id = m.incident_id
               LEFT JOIN sensors s ON s.id = i.sensor_id
               WHERE m.ticket_id = %s
               ORDER BY i.first_seen, i.id""",
            (ticket_id,),
        ).fetchall()
        follows = None
        if t["follows_ticket_id"] is not None:
            f = cur.execute(
                """SELECT id, reference, service_request_id, closed_at, status_notes, outcome
                   FROM tickets WHERE id = %s""",
                (t["follows_ticket_id"],),
            ).fetchone()
            if f is not None:
                follows = FollowUp(
                    f["id"],
                    f["reference"],
                    f["service_request_id"],
                    f["closed_at"],
                    f["status_notes"],
                    f["outcome"],
                )
    members = [
        Member(
            incident_id=r["incident_id"],
            sensor_id=r["sensor_id"],
            kind=r["kind"],
            lat=r["lat"],
            lon=r["lon"],
            address=r["address"],
            district=r["district"],
            metadata=r["metadata"] or {},
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
            detections=r["detections"],
            severity=r["severity"],
            value=r["value"],
            evidence=r["evidence"] or {},
            rule_id=r["rule_id"],
            sensor_state=r["sensor_state"],
        )
        for r in rows
    ]
    if not members:
        raise OutboxError(f"ticket {ticket_id} has no member incidents")
    return TicketView(
        id=t["id"],
        reference=t["reference"],
        problem=t["problem"],
        status=t["status"],
        opened_at=t["opened_at"],
        created_at=t["created_at"],
        lat=t["lat"],
        lon=t["lon"],
        members=members,
        follows=follows,
    )


def classify_closure(
    status_notes: str | None, duplicate_of: str | None = None
) -> Literal["closed", "duplicate"]:
    """'duplicate' when the city merged the request into another one; closed is not fixed either way."""
    if duplicate_of or (status_notes and _DUPLICATE_NOTES.search(status_notes)):
        return "duplicate"
    return "closed"


def record_status(
    conn: psycopg.Connection[Any],
    ticket_id: int,
    status: str,
    *,
    notes: str | None,
    remote_updated_at: datetime | None,
    source: Literal["outbox", "poll", "operator"],
    now: datetime,
) -> None:
    conn.execute(
        """INSERT INTO ticket_status_history (ticket_id, observed_at, status, status_notes, remote_updated_at,
                                              source)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (ticket_id, now, status, notes, remote_updated_at, source),
    )


def close_ticket(
    conn: psycopg.Connection[Any],
    ticket_id: int,
    *,
    outcome: Literal["closed", "duplicate", "cancelled"],
    notes: str | None,
    closed_at: datetime,
    now: datetime,
) -> int:
    """Close the ticket and its open member incidents; returns how many incidents closed."""
    status = "cancelled" if outcome == "cancelled" else "closed"
    conn.execute(
        """UPDATE tickets SET status = %s, outcome = %s, status_notes = coalesce(%s, status_notes),
                              closed_at = %s, updated_at = %s
           WHERE id = %s""",
        (status, outcome, notes, closed_at, now, ticket_id),
    )
    cur = conn.execute(
        """UPDATE incidents SET status = 'closed', outcome = %s, close_notes = %s, closed_at = %s,
                                updated_at = %s
           WHERE status = 'open' AND id IN (SELECT incident_id FROM ticket_members WHERE ticket_id = %s)""",
        (outcome, notes, closed_at, now, ticket_id),
    )
    return cur.rowcount
