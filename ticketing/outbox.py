"""The transactional outbox: ticket rows written with their incidents, sent by workers.

A worker claims one due row at a time (``FOR UPDATE SKIP LOCKED``, so workers never share one)
and leases it: the row is ``sending`` until the lease passes, and a crashed worker's row is
claimed again afterwards — *in doubt*, so its next attempt reconciles before posting. Results are
written only if the row is still the one this worker claimed (state and attempt count), so a late
worker cannot overwrite a newer attempt.

Outcomes: sent; ``failed`` and retried with exponential backoff and jitter (sense311.retry.Backoff)
no sooner than the server's Retry-After; ``dead`` after a permanent error, with the server's
message, or once a row is older than ``give_up_after``. Dead rows stay until an operator retries
or cancels them (``sense311 tickets retry|cancel``): nothing is dropped.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sense311.durations import format_duration
from sense311.retry import Backoff
from ticketing.errors import (
    AmbiguousError,
    MappingError,
    Open311Error,
    OutboxError,
    PermanentError,
    RateLimited,
)
from ticketing.settings import TicketingSettings
from ticketing.sinks import Delivery, Sink
from ticketing.tickets import close_ticket, load_ticket, record_status

__all__ = [
    "STATES",
    "OutboxRow",
    "OutboxWorker",
    "WorkResult",
    "cancel_row",
    "get_row",
    "list_rows",
    "retry_row",
]

log = logging.getLogger(__name__)

STATES = ("pending", "sending", "failed", "sent", "dead", "cancelled")
#: Characters of an error message kept on the row.
ERROR_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    ticket_id: int
    sink: str
    state: str
    attempts: int
    in_doubt: bool
    available_at: datetime
    created_at: datetime


@dataclass(slots=True)
class WorkResult:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    stale: int = 0
    rows: list[int] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.dead + self.stale


def _claim(
    conn: psycopg.Connection[Any], sinks: list[str], now: datetime, lease: timedelta
) -> OutboxRow | None:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT id, state FROM outbox
               WHERE sink = ANY(%(sinks)s)
                 AND ((state IN ('pending', 'failed') AND available_at <= %(now)s)
                      OR (state = 'sending' AND lease_until <= %(now)s))
               ORDER BY available_at, id
               LIMIT 1
               FOR UPDATE SKIP LOCKED""",
            {"sinks": sinks, "now": now},
        ).fetchone()
        if row is None:
            return None
        if row["state"] == "sending":
            log.warning("outbox row %d: its worker's lease ran out mid-send; retrying in doubt", row["id"])
        claimed = cur.execute(
            """UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_until = %s,
                                 updated_at = %s,
                                 in_doubt = in_doubt OR state = 'sending'
               WHERE id = %s
               RETURNING id, ticket_id, sink, state, attempts, in_doubt, available_at, created_at""",
            (now + lease, now, row["id"]),
        ).fetchone()
    assert claimed is not None
    return OutboxRow(**claimed)


class OutboxWorker:
    """Sends due outbox rows through their sinks. One worker per connection; run as many as needed.

    ``conn`` must be autocommit (the worker commits each step itself). ``rng`` makes the backoff
    jitter repeatable in tests.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        settings: TicketingSettings,
        sinks: Mapping[str, Sink],
        *,
        rng: random.Random | None = None,
    ) -> None:
        if not conn.autocommit:
            raise OutboxError("OutboxWorker needs an autocommit connection: it commits each step itself")
        self._conn = conn
        self._settings = settings
        self._sinks = dict(sinks)
        self._rng = rng or random.Random()

    def run_once(self, now: datetime) -> tuple[int, str] | None:
        """Claim and send one due row; (row id, outcome) or None when nothing is due."""
        row = _claim(self._conn, list(self._sinks), now, self._settings.send_lease)
        if row is None:
            return None
        return row.id, self._process(row, now)

    def drain(self, now: datetime, limit: int | None = None) -> WorkResult:
        """Send rows until none is due at ``now`` (or ``limit`` rows were handled)."""
        result = WorkResult()
        while limit is None or result.claimed < limit:
            done = self.run_once(now)
            if done is None:
                break
            row_id, outcome = done
            result.rows.append(row_id)
            setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    # -- one row --------------------------------------------------------------------------------------

    def _process(self, row: OutboxRow, now: datetime) -> str:
        sink = self._sinks[row.sink]
        payload: dict[str, Any] | None = None
        try:
            ticket = load_ticket(self._conn, row.ticket_id)
            payload = sink.render(ticket)
            delivery = sink.deliver(ticket, payload, in_doubt=row.in_doubt, now=now)
        except (MappingError, PermanentError, OutboxError) as exc:
            return self._dead(row, now, payload, exc)
        except Open311Error as exc:
            return self._retry(row, now, payload, exc)
        return self._sent(row, now, payload, delivery, sink)

    def _guarded(self, row: OutboxRow, sql: str, params: dict[str, Any]) -> bool:
        params = {**params, "id": row.id, "attempts": row.attempts}
        cur = self._conn.execute(
            sql + " WHERE id = %(id)s AND state = 'sending' AND attempts = %(attempts)s", params
        )
        if cur.rowcount == 0:
            log.warning(
                "outbox row %d was claimed again while attempt %d ran; its result is not recorded",
                row.id,
                row.attempts,
            )
            return False
        return True

    def _sent(
        self, row: OutboxRow, now: datetime, payload: dict[str, Any] | None, delivery: Delivery, sink: Sink
    ) -> str:
        if delivery.remote_id:
            status = "open"
        elif delivery.token:
            status = "submitted"
        else:
            status = "sent"
        try:
            with self._conn.transaction():
                ok = self._guarded(
                    row,
                    """UPDATE outbox SET state = 'sent', sent_at = %(now)s, updated_at = %(now)s,
                                         lease_until = NULL,
                                         in_doubt = false, payload = %(payload)s, response = %(response)s,
                                         last_error = NULL, last_status = NULL""",
                    {"now": now, "payload": Jsonb(payload), "response": Jsonb(delivery.response)},
                )
                if not ok:
                    return "stale"
                self._conn.execute(
                    """UPDATE tickets SET status = %s, service_request_id = %s, token = %s, service_code = %s,
                                          remote_status = %s, sent_at = %s, updated_at = %s
                       WHERE id = %s""",
                    (
                        status,
                        delivery.remote_id,
                        delivery.token,
                        (payload or {}).get("service_code"),
                        "open" if sink.tracks_status else None,
                        now,
                        now,
                        row.ticket_id,
                    ),
                )
                record_status(
                    self._conn,
                    row.ticket_id,
                    status,
                    notes=None,
                    remote_updated_at=None,
                    source="outbox",
                    now=now,
                )
        except psycopg.errors.UniqueViolation as exc:
            # Another ticket already holds this remote id: a reconciliation matched the wrong request.
            return self._dead(
                row,
                now,
                payload,
                OutboxError(
                    f"request {delivery.remote_id} already belongs to another ticket; not recorded twice: "
                    f"{exc.diag.message_primary}"
                ),
            )
        log.info(
            "outbox row %d: ticket %d %s%s",
            row.id,
            row.ticket_id,
            f"filed as {delivery.remote_id}"
            if delivery.remote_id
            else f"submitted, token {delivery.token}"
            if delivery.token
            else "delivered",
            " (found by reconciliation)" if delivery.reconciled else "",
        )
        return "sent"

    def _retry(self, row: OutboxRow, now: datetime, payload: dict[str, Any] | None, exc: Open311Error) -> str:
        age = now - row.created_at
        if age > self._settings.give_up_after:
            return self._dead(row, now, payload, exc, gave_up=True)
        backoff = Backoff(
            base=self._settings.retry_base.total_seconds(),
            cap=self._settings.retry_cap.total_seconds(),
            rng=self._rng,
        )
        backoff.attempts = max(0, row.attempts - 1)
        delay = backoff.next_delay(minimum=exc.retry_after or 0.0)
        in_doubt = row.in_doubt or isinstance(exc, AmbiguousError)
        with self._conn.transaction():
            ok = self._guarded(
                row,
                """UPDATE outbox SET state = 'failed', available_at = %(at)s, lease_until = NULL,
                                     updated_at = %(now)s, in_doubt = %(in_doubt)s, last_status = %(status)s,
                                     last_error = %(error)s,
                                     payload = coalesce(%(payload)s, payload)""",
                {
                    "at": now + timedelta(seconds=delay),
                    "now": now,
                    "in_doubt": in_doubt,
                    "status": exc.status,
                    "error": str(exc)[:ERROR_LIMIT],
                    "payload": Jsonb(payload) if payload is not None else None,
                },
            )
        if not ok:
            return "stale"
        kind = (
            "rate limited"
            if isinstance(exc, RateLimited)
            else "ambiguous"
            if isinstance(exc, AmbiguousError)
            else "failed"
        )
        log.info("outbox row %d attempt %d %s; retry in %.1f s: %s", row.id, row.attempts, kind, delay, exc)
        return "retried"

    def _dead(
        self,
        row: OutboxRow,
        now: datetime,
        payload: dict[str, Any] | None,
        exc: Exception,
        gave_up: bool = False,
    ) -> str:
        message = str(exc)
        if gave_up:
            message = (
                f"gave up after {row.attempts} attempts over {format_duration(now - row.created_at)} "
                f"(give_up_after {format_duration(self._settings.give_up_after)}): {message}"
            )
        status = getattr(exc, "status", None)
        with self._conn.transaction():
            ok = self._guarded(
                row,
                """UPDATE outbox SET state = 'dead', lease_until = NULL, updated_at = %(now)s,
                                     last_status = %(status)s,
                                     last_error = %(error)s, payload = coalesce(%(payload)s, payload)""",
                {
                    "now": now,
                    "status": status,
                    "error": message[:ERROR_LIMIT],
                    "payload": Jsonb(payload) if payload is not None else None,
                },
            )
            if not ok:
                return "stale"
            self._conn.execute(
                "UPDATE tickets SET status = 'failed', updated_at = %s WHERE id = %s", (now, row.ticket_id)
            )
            record_status(
                self._conn,
                row.ticket_id,
                "failed",
                notes=message[:ERROR_LIMIT],
                remote_updated_at=None,
                source="outbox",
                now=now,
            )
        log.error("outbox row %d (ticket %d) dead-lettered: %s", row.id, row.ticket_id, message)
        return "dead"


# -- operator actions ---------------------------------------------------------------------------------------


def list_rows(
    conn: psycopg.Connection[Any], states: list[str] | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Rows with their ticket, newest first; ``states`` filters."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT o.id, o.state, o.sink, o.attempts, o.in_doubt, o.available_at, o.created_at,
                      o.updated_at, o.sent_at, o.last_status, o.last_error, o.ticket_id, t.problem,
                      t.reference, t.status AS ticket_status, t.service_request_id, t.token,
                      (SELECT count(*) FROM ticket_members m WHERE m.ticket_id = t.id) AS members
               FROM outbox o JOIN tickets t ON t.id = o.ticket_id
               WHERE %(states)s::text[] IS NULL OR o.state = ANY(%(states)s)
               ORDER BY o.id DESC
               LIMIT %(limit)s""",
            {"states": states, "limit": limit},
        ).fetchall()


def get_row(conn: psycopg.Connection[Any], row_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT o.*, t.problem, t.reference, t.status AS ticket_status, t.service_request_id
               FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE o.id = %s""",
            (row_id,),
        ).fetchone()
    if row is None:
        raise OutboxError(f"outbox row {row_id} does not exist (see 'sense311 tickets list')")
    return row


def retry_row(conn: psycopg.Connection[Any], row_id: int, now: datetime) -> None:
    """Make a failed or dead row due now (a pending one too). The next attempt reconciles if in doubt."""
    with conn.transaction():
        row = conn.execute(
            "SELECT state, ticket_id FROM outbox WHERE id = %s FOR UPDATE", (row_id,)
        ).fetchone()
        if row is None:
            raise OutboxError(f"outbox row {row_id} does not exist (see 'sense311 tickets list')")
        state, ticket_id = row
        if state not in ("pending", "failed", "dead"):
            raise OutboxError(
                f"outbox row {row_id} is {state}; only pending, failed or dead rows can be retried"
            )
        conn.execute(
            "UPDATE outbox SET state = 'pending', available_at = %s, updated_at = %s WHERE id = %s",
            (now, now, row_id),
        )
        if state == "dead":
            conn.execute(
                "UPDATE tickets SET status = 'pending', updated_at = %s WHERE id = %s", (now, ticket_id)
            )
            record_status(
                conn,
                ticket_id,
                "pending",
                notes="retried by an operator",
                remote_updated_at=None,
                source="operator",
                now=now,
            )


def cancel_row(conn: psycopg.Connection[Any], row_id: int, now: datetime) -> None:
    """Give up on a row that is not sent: its ticket is cancelled and its incidents close.

    Closing the incidents is what lets the same problem file a new ticket later; a cancelled row
    is final.
    """
    with conn.transaction():
        row = conn.execute(
            "SELECT state, ticket_id FROM outbox WHERE id = %s FOR UPDATE", (row_id,)
        ).fetchone()
        if row is None:
            raise OutboxError(f"outbox row {row_id} does not exist (see 'sense311 tickets list')")
        state, ticket_id = row
        if state not in ("pending", "failed", "dead"):
            hint = "; wait for its attempt to finish" if state == "sending" else ""
            raise OutboxError(
                f"outbox row {row_id} is {state}; only pending, failed or dead rows can be cancelled{hint}"
            )
        conn.execute("UPDATE outbox SET state = 'cancelled', updated_at = %s WHERE id = %s", (now, row_id))
        close_ticket(
            conn, ticket_id, outcome="cancelled", notes="cancelled by an operator", closed_at=now, now=now
        )
        record_status(
            conn,
            ticket_id,
            "cancelled",
            notes="cancelled by an operator",
            remote_updated_at=None,
            source="operator",
            now=now,
        )
