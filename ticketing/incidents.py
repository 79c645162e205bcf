"""Detections → incidents → tickets.

An incident is one problem on one sensor. The first detection opens it; further detections of the
same open problem update it (last seen, evidence, count); the rule's resolution closes its sensor
side; the city closing the ticket closes it. At most one incident per (problem, sensor) is open:
the partial unique index ``incidents_open_key`` enforces it whoever races, and the upsert below
turns the race into an update.

Ticket decisions for one problem (join a nearby open ticket — merging the unsent tickets an
incident turns out to bridge —, reopen a recently closed one, or open a new ticket and its outbox
row) run under a per-problem transaction lock, so two evaluators filing incidents of one dark
street at once, in any order, still produce one ticket.

Every function takes ``now`` (UTC, the wall clock of the caller) and leaves event times to the
detections. Connections must be in autocommit mode: each call is its own transaction (or a
savepoint inside the caller's).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sense311.errors import ConfigError
from sense311.types import Detection
from ticketing.grouping import Candidate, tickets_in_reach
from ticketing.settings import TicketingSettings

__all__ = [
    "DEFAULT_CONSUMER",
    "Change",
    "ConsumeResult",
    "apply_detection",
    "consume_detections",
    "new_reference",
]

log = logging.getLogger(__name__)

DEFAULT_CONSUMER = "ticketing"
#: Ticket states in which a ticket still takes new members (the city has not closed it).
GROUPABLE = ("pending", "submitted", "open", "sent")
#: Random bytes in a reference: 64 bits make a collision between two deployments sharing one
#: endpoint negligible, so a marker found on the server is ours.
REFERENCE_BYTES = 8

_DETECTION_COLUMNS = (
    "id, rule_id, rule_version, sensor_id, problem, kind, fired_at, onset, severity, value, evidence"
)


@dataclass(frozen=True, slots=True)
class Change:
    """What one detection did."""

    detection_id: int | None
    incident_id: int | None
    action: Literal["opened", "updated", "resolved", "ignored"]
    ticket_id: int | None = None
    ticket_action: Literal["created", "joined", "follow_up", "suppressed"] | None = None


@dataclass(frozen=True, slots=True)
class ConsumeResult:
    processed: int
    last_id: int
    changes: list[Change]


def new_reference(prefix: str) -> str:
    """A ticket reference such as ``S311-9f2c4e1a7b3d5f60``: random, stored, reused on every retry."""
    return f"{prefix}-{secrets.token_hex(REFERENCE_BYTES)}"


def _require_autocommit(conn: psycopg.Connection[Any], what: str) -> None:
    if not conn.autocommit:
        raise ConfigError(f"{what} needs an autocommit connection: it manages its own transactions")


def _lock_problem(conn: psycopg.Connection[Any], problem: str) -> None:
    # Transaction-scoped; keyed by schema too, so deployments sharing a database don't contend.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('sense311.ticketing'),"
        " hashtext(current_schema() || ':' || %s))",
        (problem,),
    )


def apply_detection(
    conn: psycopg.Connection[Any],
    detection: Detection,
    settings: TicketingSettings,
    now: datetime,
    *,
    detection_id: int | None = None,
) -> Change:
    """Open, update or resolve the incident ``detection`` is about, and file or group its ticket."""
    with conn.transaction():
        _lock_problem(conn, detection.problem)
        if detection.kind == "resolution":
            return _resolve(conn, detection, now, detection_id)
        if detection.kind != "detection":
            log.warning("detection %s has unknown kind %r; ignored", detection_id, detection.kind)
            return Change(detection_id, None, "ignored")
        return _detect(conn, detection, settings, now, detection_id)


_UPSERT = """
INSERT INTO incidents (problem, sensor_id, rule_id, rule_version, severity, onset, first_seen, last_seen,
                       value, evidence, lat, lon, firing_rules, last_detection_id, created_at, updated_at)
SELECT %(problem)s, %(sensor_id)s, %(rule_id)s, %(rule_version)s, %(severity)s, %(onset)s, %(at)s, %(at)s,
       %(value)s, %(evidence)s, s.lat, s.lon, ARRAY[%(rule_id)s], %(detection_id)s, %(now)s, %(now)s
FROM (SELECT 1) AS one LEFT JOIN sensors s ON s.id = %(sensor_id)s
ON CONFLICT (problem, sensor_id) WHERE status = 'open' DO UPDATE SET
    detections = incidents.detections + 1,
    first_seen = least(incidents.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(incidents.last_seen, EXCLUDED.last_seen),
    -- A detection older than the latest one (replayed, or from a slower evaluator) keeps the
    -- newer evidence.
    evidence = CASE WHEN EXCLUDED.last_seen >= incidents.last_seen THEN EXCLUDED.evidence
                    ELSE incidents.evidence END,
    value = CASE WHEN EXCLUDED.last_seen >= incidents.last_seen THEN EXCLUDED.value ELSE incidents.value END,
    severity = CASE WHEN EXCLUDED.last_seen >= incidents.last_seen THEN EXCLUDED.severity
                    ELSE incidents.severity END,
    firing_rules = CASE WHEN %(rule_id)s = ANY(incidents.firing_rules) THEN incidents.firing_rules
                        ELSE incidents.firing_rules || EXCLUDED.firing_rules END,
    sensor_state = 'firing',
    resolved_at = NULL,
    last_detection_id = coalesce(EXCLUDED.last_detection_id, incidents.last_detection_id),
    updated_at = EXCLUDED.updated_at
RETURNING id, (xmax = 0) AS inserted, lat, lon
"""


def _detect(
    conn: psycopg.Connection[Any],
    d: Detection,
    settings: TicketingSettings,
    now: datetime,
    detection_id: int | None,
) -> Change:
    row = conn.execute(
        _UPSERT,
        {
            "problem": d.problem,
            "sensor_id": d.sensor_id,
            "rule_id": d.rule_id,
            "rule_version": d.rule_version,
            "severity": d.severity,
            "onset": d.onset,
            "at": d.fired_at,
            "value": d.value,
            "evidence": Jsonb(d.evidence),
            "detection_id": detection_id,
            "now": now,
        },
    ).fetchone()
    assert row is not None
    incident_id, inserted, lat, lon = row
    if not inserted:
        return Change(detection_id, incident_id, "updated")

    previous = _recent_closure(conn, d, settings)
    if previous is not None:
        conn.execute("UPDATE incidents SET reopens_id = %s WHERE id = %s", (previous[0], incident_id))

    in_reach = _tickets_in_reach(conn, d, lat, lon, settings)
    if in_reach:
        ticket_id = _merge(conn, in_reach, now)
        _add_member(conn, ticket_id, incident_id, now)
        return Change(detection_id, incident_id, "opened", ticket_id, "joined")

    follows: int | None = None
    action: Literal["created", "follow_up"] = "created"
    if previous is not None:
        if settings.reopen == "ignore":
            return Change(detection_id, incident_id, "opened", None, "suppressed")
        if settings.reopen == "follow_up":
            follows, action = previous[1], "follow_up"
    ticket_id = _create_ticket(conn, d, lat, lon, follows, settings, now)
    _add_member(conn, ticket_id, incident_id, now)
    return Change(detection_id, incident_id, "opened", ticket_id, action)


def _tickets_in_reach(
    conn: psycopg.Connection[Any],
    d: Detection,
    lat: float | None,
    lon: float | None,
    settings: TicketingSettings,
) -> list[int]:
    if lat is None or lon is None:
        return []
    window = settings.group_window
    rows = conn.execute(
        """SELECT t.id, t.opened_at, i.lat, i.lon
           FROM tickets t
           JOIN ticket_members m ON m.ticket_id = t.id
           JOIN incidents i ON i.id = m.incident_id
           WHERE t.problem = %s AND t.status = ANY(%s) AND t.opened_at BETWEEN %s AND %s""",
        (d.problem, list(GROUPABLE), d.fired_at - window, d.fired_at + window),
    ).fetchall()
    candidates = [Candidate(r[0], r[1], r[2], r[3]) for r in rows]
    return tickets_in_reach(
        candidates, lat, lon, d.fired_at, distance=settings.group_distance_m, window=window
    )


def _merge(conn: psycopg.Connection[Any], ticket_ids: list[int], now: datetime) -> int:
    """The ticket an incident reaching all of ``ticket_ids`` joins, after merging what can be merged.

    A ticket the city may already know (sent, or its outbox row in flight or in doubt) is never
    merged away: it absorbs the others instead, and two such tickets stay apart.
    """
    if len(ticket_ids) == 1:
        return ticket_ids[0]
    # Outbox rows before tickets: the order the outbox worker locks them in, so neither waits in a cycle.
    conn.execute("SELECT id FROM outbox WHERE ticket_id = ANY(%s) ORDER BY id FOR UPDATE", (ticket_ids,))
    rows = conn.execute(
        """SELECT t.id, t.opened_at,
                  t.status = 'pending' AND o.state IN ('pending', 'failed') AND NOT o.in_doubt AS movable
           FROM tickets t JOIN outbox o ON o.ticket_id = t.id AND o.action = 'create'
           WHERE t.id = ANY(%s)
           ORDER BY t.opened_at, t.id
           FOR UPDATE OF t""",
        (ticket_ids,),
    ).fetchall()
    fixed = [r for r in rows if not r[2]]
    target = (fixed or rows)[0][0]
    for ticket_id, _, movable in rows:
        if ticket_id == target or not movable:
            continue
        conn.execute("UPDATE ticket_members SET ticket_id = %s WHERE ticket_id = %s", (target, ticket_id))
        conn.execute(
            """UPDATE outbox SET state = 'cancelled', last_error = %s, updated_at = %s
               WHERE ticket_id = %s AND action = 'create'""",
            (f"merged into ticket {target}: one fault", now, ticket_id),
        )
        conn.execute(
            "UPDATE tickets SET status = 'merged', merged_into_id = %s, updated_at = %s WHERE id = %s",
            (target, now, ticket_id),
        )
        conn.execute(
            "UPDATE tickets SET opened_at = least(opened_at, (SELECT opened_at FROM tickets WHERE id = %s)) "
            "WHERE id = %s",
            (ticket_id, target),
        )
        conn.execute(
            """INSERT INTO ticket_status_history (ticket_id, observed_at, status, status_notes, source)
               VALUES (%s, %s, 'merged', %s, 'outbox')""",
            (ticket_id, now, f"merged into ticket {target}"),
        )
    return target


def _recent_closure(
    conn: psycopg.Connection[Any], d: Detection, settings: TicketingSettings
) -> tuple[int, int] | None:
    """(incident, ticket) closed by the city for this problem and sensor within the cooldown."""
    row = conn.execute(
        """SELECT i.id, t.id, t.closed_at
           FROM incidents i
           JOIN ticket_members m ON m.incident_id = i.id
           JOIN tickets t ON t.id = m.ticket_id
           WHERE i.problem = %s AND i.sensor_id = %s AND i.status = 'closed'
             AND t.status = 'closed' AND t.outcome IN ('closed', 'duplicate')
           ORDER BY t.closed_at DESC NULLS LAST
           LIMIT 1""",
        (d.problem, d.sensor_id),
    ).fetchone()
    if row is None or row[2] is None:
        return None
    if d.fired_at - row[2] > settings.cooldown:
        return None
    return row[0], row[1]


def _create_ticket(
    conn: psycopg.Connection[Any],
    d: Detection,
    lat: float | None,
    lon: float | None,
    follows: int | None,
    settings: TicketingSettings,
    now: datetime,
) -> int:
    row = conn.execute(
        """INSERT INTO tickets (problem, reference, follows_ticket_id, lat, lon, opened_at, sink,
                               created_at, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (
            d.problem,
            new_reference(settings.reference_prefix),
            follows,
            lat,
            lon,
            d.fired_at,
            settings.sink,
            now,
            now,
        ),
    ).fetchone()
    assert row is not None
    ticket_id = int(row[0])
    # The outbox row commits with the ticket or not at all: a ticket is never lost between the two.
    conn.execute(
        """INSERT INTO outbox (ticket_id, sink, available_at, created_at, updated_at)
           VALUES (%s, %s, %s, %s, %s)""",
        (ticket_id, settings.sink, now + settings.group_hold, now, now),
    )
    conn.execute(
        """INSERT INTO ticket_status_history (ticket_id, observed_at, status, source)
           VALUES (%s, %s, 'pending', 'outbox')""",
        (ticket_id, now),
    )
    return ticket_id


def _add_member(conn: psycopg.Connection[Any], ticket_id: int, incident_id: int, now: datetime) -> None:
    conn.execute(
        "INSERT INTO ticket_members (ticket_id, incident_id, joined_at) VALUES (%s, %s, %s)",
        (ticket_id, incident_id, now),
    )


def _resolve(conn: psycopg.Connection[Any], d: Detection, now: datetime, detection_id: int | None) -> Change:
    # Several rules may report one problem (a lamp dark by its own reading and by its neighbours'):
    # the sensor side resolves when the last of them does.
    row = conn.execute(
        """UPDATE incidents SET firing_rules = array_remove(firing_rules, %(rule_id)s),
                                sensor_state = CASE WHEN firing_rules = ARRAY[%(rule_id)s]::text[]
                                                    THEN 'resolved' ELSE sensor_state END,
                                resolved_at = CASE WHEN firing_rules = ARRAY[%(rule_id)s]::text[]
                                                   THEN %(at)s ELSE resolved_at END,
                                updated_at = %(now)s,
                                last_detection_id = coalesce(%(detection_id)s, last_detection_id)
           WHERE problem = %(problem)s AND sensor_id = %(sensor_id)s AND status = 'open'
             AND %(rule_id)s = ANY(firing_rules)
           RETURNING id, sensor_state,
                     (SELECT ticket_id FROM ticket_members m WHERE m.incident_id = incidents.id)""",
        {
            "at": d.fired_at,
            "now": now,
            "problem": d.problem,
            "sensor_id": d.sensor_id,
            "rule_id": d.rule_id,
            "detection_id": detection_id,
        },
    ).fetchone()
    if row is None:
        return Change(detection_id, None, "ignored")
    incident_id, sensor_state, ticket_id = row
    if sensor_state != "resolved":
        return Change(detection_id, incident_id, "updated", ticket_id)
    ticket_status = None
    if ticket_id is not None:
        found = conn.execute("SELECT status FROM tickets WHERE id = %s", (ticket_id,)).fetchone()
        ticket_status = found[0] if found else None
    # Nothing at the other end will ever close it: recorded without a ticket (reopen policy
    # 'ignore'), or delivered to a sink that reports no status ('sent': webhook, dry run). The
    # rules' resolution is then the end of the incident.
    if ticket_id is None or ticket_status == "sent":
        conn.execute(
            """UPDATE incidents SET status = 'closed', outcome = 'resolved', closed_at = %s, updated_at = %s
               WHERE id = %s""",
            (d.fired_at, now, incident_id),
        )
    if ticket_status == "sent":
        closed = conn.execute(
            """UPDATE tickets SET status = 'closed', outcome = 'resolved', closed_at = %(at)s,
                                  updated_at = %(now)s
               WHERE id = %(id)s AND NOT EXISTS (
                   SELECT 1 FROM ticket_members m JOIN incidents i ON i.id = m.incident_id
                   WHERE m.ticket_id = %(id)s AND i.status = 'open')""",
            {"at": d.fired_at, "now": now, "id": ticket_id},
        )
        if closed.rowcount:
            conn.execute(
                """INSERT INTO ticket_status_history (ticket_id, observed_at, status, status_notes, source)
                   VALUES (%s, %s, 'closed', 'every incident resolved by the rules', 'outbox')""",
                (ticket_id, now),
            )
    return Change(detection_id, incident_id, "resolved", ticket_id)


def _barrier(conn: psycopg.Connection[Any]) -> int:
    """The highest detection id below which every insert has committed or rolled back (see 0005)."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('sense311.detections'), hashtext(current_schema()))"
        )
        row = conn.execute(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('detections', 'id')::regclass)"
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _detection(row: dict[str, Any]) -> Detection:
    return Detection(
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        sensor_id=row["sensor_id"],
        problem=row["problem"],
        kind=row["kind"],
        fired_at=row["fired_at"],
        onset=row["onset"],
        severity=row["severity"],
        value=row["value"],
        evidence=row["evidence"] or {},
    )


def consume_detections(
    conn: psycopg.Connection[Any],
    settings: TicketingSettings,
    now: datetime,
    *,
    name: str = DEFAULT_CONSUMER,
    limit: int | None = None,
) -> ConsumeResult:
    """Handle the detections after the cursor ``name``, in id order, in one transaction.

    Two consumers with the same name serialise on the cursor row; the barrier makes sure no
    detection with a smaller id can still commit after the cursor has passed it.
    """
    _require_autocommit(conn, "consume_detections()")
    batch = limit or settings.consume_batch
    bound = _barrier(conn)
    with conn.transaction():
        conn.execute(
            "INSERT INTO ticketing_cursor (name, updated_at) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
            (name, now),
        )
        cursor_row = conn.execute(
            "SELECT last_id FROM ticketing_cursor WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        assert cursor_row is not None
        last = int(cursor_row[0])
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {_DETECTION_COLUMNS} FROM detections"
                " WHERE id > %s AND id <= %s ORDER BY id LIMIT %s",
                (last, bound, batch),
            ).fetchall()
        changes = [apply_detection(conn, _detection(r), settings, now, detection_id=r["id"]) for r in rows]
        # A short batch saw every committed id up to the bound; the missing ones were rolled back.
        new_last = rows[-1]["id"] if len(rows) == batch else max(last, bound)
        conn.execute(
            "UPDATE ticketing_cursor SET last_id = %s, updated_at = %s WHERE name = %s", (new_last, now, name)
        )
    return ConsumeResult(processed=len(rows), last_id=new_last, changes=changes)
