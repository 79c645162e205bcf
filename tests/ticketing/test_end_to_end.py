"""Detection → incident → outbox → POST → poll → closed, through real HTTP and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from tests.ticketing.conftest import Open311Server, det, insert_detections, now_utc
from ticketing.pipeline import run_cycle
from ticketing.settings import TicketingSettings
from ticketing.sinks import Sink


def test_detection_to_closed_incident(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    now = now_utc()
    street = [det(f"lamp-{i:03d}", now - timedelta(minutes=5)) for i in range(1, 13)]
    insert_detections(conn, [*street, det("lamp-far", now - timedelta(minutes=5))])

    first = run_cycle(conn, tsettings, {"open311": sink}, now)

    assert (first.consumed, first.sent, first.dead) == (13, 2, 0)
    requests = open311.requests()
    assert len(requests) == 2
    dark_street = next(r for r in requests if "12 sensors" in r["description"])
    assert dark_street["attributes"] == {"pole_id": "P-1000", "fault": "out", "lamps": "12"}
    for i in range(1, 13):
        assert f"lamp-{i:03d}" in dark_street["description"]
    reference = conn.execute("SELECT reference FROM tickets WHERE service_request_id = %s",
                             (dark_street["service_request_id"],)).fetchone()[0]
    assert dark_street["description"].endswith(f"sense311-ref:{reference}")

    open311.staff(dark_street["service_request_id"], status="closed", status_notes="Circuit breaker replaced.")
    polled = run_cycle(conn, tsettings, {"open311": sink}, now + timedelta(minutes=1), force_poll=True)

    assert polled.closed == 1
    rows = conn.execute(
        """SELECT i.status, i.outcome, i.close_notes FROM incidents i
           JOIN ticket_members m ON m.incident_id = i.id JOIN tickets t ON t.id = m.ticket_id
           WHERE t.service_request_id = %s""",
        (dark_street["service_request_id"],),
    ).fetchall()
    assert rows == [("closed", "closed", "Circuit breaker replaced.")] * 12
    far = conn.execute("SELECT status FROM incidents WHERE sensor_id = 'lamp-far'").fetchone()
    assert far == ("open",)
    history = conn.execute(
        "SELECT h.status, h.status_notes, h.source FROM ticket_status_history h JOIN tickets t ON t.id = h.ticket_id "
        "WHERE t.service_request_id = %s ORDER BY h.id",
        (dark_street["service_request_id"],),
    ).fetchall()
    assert history == [("pending", None, "outbox"), ("open", None, "outbox"),
                       ("closed", "Circuit breaker replaced.", "poll")]
