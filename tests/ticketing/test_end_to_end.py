"""Detection → incident → outbox → POST → poll → closed, through real HTTP and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from sense311.settings import Settings
from tests.ticketing.conftest import Open311Server, det, insert_detections, now_utc, ticketing_settings
from ticketing import cli
from ticketing.pipeline import run_cycle
from ticketing.settings import API_KEY_ENV, TicketingSettings
from ticketing.sinks import Sink, create_sink


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
    reference = conn.execute(
        "SELECT reference FROM tickets WHERE service_request_id = %s", (dark_street["service_request_id"],)
    ).fetchone()[0]
    assert dark_street["description"].endswith(f"sense311-ref:{reference}")

    open311.staff(
        dark_street["service_request_id"], status="closed", status_notes="Circuit breaker replaced."
    )
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
        "SELECT h.status, h.status_notes, h.source FROM ticket_status_history h"
        " JOIN tickets t ON t.id = h.ticket_id "
        "WHERE t.service_request_id = %s ORDER BY h.id",
        (dark_street["service_request_id"],),
    ).fetchall()
    assert history == [
        ("pending", None, "outbox"),
        ("open", None, "outbox"),
        ("closed", "Circuit breaker replaced.", "poll"),
    ]


def test_a_token_only_xml_only_server_polled_with_updated_after(
    conn: psycopg.Connection[Any], open311: Open311Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, open311.api_key)
    open311.misbehave.xml_only = True
    open311.misbehave.token_only = True
    # Asked for right after filing and once more before the city assigns the id.
    open311.misbehave.token_lookups_before_ready = 2
    ts = ticketing_settings(open311.url, open311={"use_updated_after": True})
    sink = create_sink("open311", ts)
    now = now_utc()
    insert_detections(conn, [det("bin-001", now, problem="bin_overflow", value=0.97)])

    filed = run_cycle(conn, ts, {"open311": sink}, now)
    assert filed.sent == 1
    assert conn.execute("SELECT status, token IS NOT NULL FROM tickets").fetchone() == ("submitted", True)
    run_cycle(conn, ts, {"open311": sink}, now + timedelta(minutes=1), force_poll=True)  # token not ready yet
    assert conn.execute("SELECT status FROM tickets").fetchone() == ("submitted",)
    run_cycle(conn, ts, {"open311": sink}, now + timedelta(minutes=2), force_poll=True)
    (request,) = open311.requests()
    assert request["attributes"] == {"bin_id": "B-001", "fill_level": "0.97"}
    assert conn.execute("SELECT status, service_request_id FROM tickets").fetchone() == (
        "open",
        request["service_request_id"],
    )

    open311.staff(request["service_request_id"], status="closed", status_notes="Emptied.")
    closed = run_cycle(conn, ts, {"open311": sink}, now + timedelta(minutes=3), force_poll=True)
    sink.close()
    assert closed.closed == 1
    assert conn.execute("SELECT status, outcome, close_notes FROM incidents").fetchone() == (
        "closed",
        "closed",
        "Emptied.",
    )


def test_tickets_run_once(
    conn: psycopg.Connection[Any],
    settings: Settings,
    tsettings: TicketingSettings,
    open311: Open311Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Until the ticketing section is part of sense311's settings, `run` reads the defaults; here
    # the test's settings stand in for that section.
    monkeypatch.setattr(cli, "_settings", lambda config: (settings, tsettings))
    insert_detections(conn, [det("lamp-far", now_utc())])
    result = CliRunner().invoke(cli.tickets_app, ["run", "--once"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("consumed 1 detections; sent 1, retrying 0, dead 0; polled 1, closed 0")
    assert len(open311.requests()) == 1
