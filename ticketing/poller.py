"""Status polling: tokens become request ids, and a request the city closes closes its incidents.

311 back ends do not call back, so open tickets are polled: in batches of ids
(``service_request_id=a,b,c``) or, when the sink supports it, with ``updated_after`` from the
oldest last poll. A closure keeps the city's status notes and says whether it was a duplicate —
closed is not the same as fixed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ticketing.errors import Open311Error
from ticketing.settings import TicketingSettings
from ticketing.sinks import RemoteStatus, Sink
from ticketing.tickets import classify_closure, close_ticket, record_status

__all__ = ["PollResult", "poll_tickets"]

log = logging.getLogger(__name__)

#: ``updated_after`` starts this far before the oldest last poll: the server's clock may lag ours.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(slots=True)
class PollResult:
    tokens: int = 0
    checked: int = 0
    changed: int = 0
    closed: int = 0
    errors: int = 0


def _exchange_tokens(
    conn: psycopg.Connection[Any], sink: Sink, now: datetime, due_before: datetime, result: PollResult
) -> None:
    rows = conn.execute(
        "SELECT id, token FROM tickets WHERE sink = %s AND status = 'submitted' AND token IS NOT NULL "
        "AND service_request_id IS NULL AND (polled_at IS NULL OR polled_at <= %s) ORDER BY id",
        (sink.name, due_before),
    ).fetchall()
    for ticket_id, token in rows:
        try:
            remote_id = sink.exchange_token(token)
        except Open311Error as exc:
            log.info("token %s of ticket %d not exchanged yet: %s", token, ticket_id, exc)
            result.errors += 1
            continue
        conn.execute("UPDATE tickets SET polled_at = %s WHERE id = %s", (now, ticket_id))
        if remote_id is None:
            continue
        with conn.transaction():
            conn.execute(
                "UPDATE tickets SET service_request_id = %s, status = 'open', remote_status = 'open',"
                " updated_at = %s "
                "WHERE id = %s AND status = 'submitted'",
                (remote_id, now, ticket_id),
            )
            record_status(
                conn,
                ticket_id,
                "open",
                notes=f"token {token} is request {remote_id}",
                remote_updated_at=None,
                source="poll",
                now=now,
            )
        result.tokens += 1


def _apply(
    conn: psycopg.Connection[Any],
    ticket: dict[str, Any],
    remote: RemoteStatus,
    now: datetime,
    result: PollResult,
) -> None:
    status = remote.status.lower()
    changed = status != ticket["remote_status"] or (remote.notes or None) != (ticket["status_notes"] or None)
    with conn.transaction():
        if changed:
            record_status(
                conn,
                ticket["id"],
                status,
                notes=remote.notes,
                remote_updated_at=remote.updated_at,
                source="poll",
                now=now,
            )
            result.changed += 1
        conn.execute(
            """UPDATE tickets SET remote_status = %s, status_notes = %s, remote_updated_at = %s,
                                  polled_at = %s,
                                  updated_at = %s
               WHERE id = %s""",
            (status, remote.notes, remote.updated_at, now, now, ticket["id"]),
        )
        if status == "closed":
            outcome = classify_closure(remote.notes, remote.duplicate_of)
            closed = close_ticket(
                conn,
                ticket["id"],
                outcome=outcome,
                notes=remote.notes,
                closed_at=remote.updated_at or now,
                now=now,
            )
            result.closed += 1
            log.info(
                "request %s closed by the city (%s%s): ticket %d and %d incidents closed",
                remote.remote_id,
                outcome,
                f': "{remote.notes}"' if remote.notes else "",
                ticket["id"],
                closed,
            )


def poll_tickets(
    conn: psycopg.Connection[Any],
    sink: Sink,
    settings: TicketingSettings,
    now: datetime,
    *,
    force: bool = False,
) -> PollResult:
    """One polling round for ``sink``'s open tickets not polled within ``poll_interval``.

    ``force`` polls every open ticket, however recently it was asked for.
    """
    result = PollResult()
    if not sink.tracks_status:
        return result
    due_before = now if force else now - settings.poll_interval
    _exchange_tokens(conn, sink, now, due_before, result)
    with conn.cursor(row_factory=dict_row) as cur:
        tickets = cur.execute(
            """SELECT id, service_request_id, remote_status, status_notes, polled_at, sent_at FROM tickets
               WHERE sink = %s AND status = 'open' AND service_request_id IS NOT NULL
                 AND (polled_at IS NULL OR polled_at <= %s)
               ORDER BY polled_at NULLS FIRST, id""",
            (sink.name, due_before),
        ).fetchall()
    if not tickets:
        return result
    by_id = {t["service_request_id"]: t for t in tickets}
    try:
        oldest = min((t["polled_at"] or t["sent_at"] or now) for t in tickets)
        remote = sink.changed_since(oldest - CLOCK_SKEW)
        if remote is None:
            remote = sink.statuses(list(by_id))
    except Open311Error as exc:
        log.warning("status poll of %d %s tickets failed: %s", len(tickets), sink.name, exc)
        result.errors += 1
        return result
    seen = set()
    for r in remote:
        ticket = by_id.get(r.remote_id)
        if ticket is None or r.remote_id in seen:
            continue
        seen.add(r.remote_id)
        _apply(conn, ticket, r, now, result)
    result.checked = len(seen)
    quiet = [t["id"] for rid, t in by_id.items() if rid not in seen]
    if quiet:
        # Unchanged since the last poll (updated_after) or not returned: polled all the same.
        conn.execute("UPDATE tickets SET polled_at = %s WHERE id = ANY(%s)", (now, quiet))
    return result
