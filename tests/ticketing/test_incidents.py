"""Incidents: one per open (problem, sensor), enforced by the database; grouping; reopen; the consumer."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from sense311.db import connect
from sense311.settings import Settings
from tests.ticketing.conftest import Open311Server, det, insert_detections, now_utc, ticketing_settings
from ticketing.incidents import apply_detection, consume_detections
from ticketing.pipeline import run_cycle
from ticketing.settings import TicketingSettings
from ticketing.sinks import Sink
from ticketing.tickets import close_ticket

OFFLINE = "http://127.0.0.1:9/"  # never contacted: these tests stop before the outbox sends


@pytest.fixture
def ts() -> TicketingSettings:
    return ticketing_settings(OFFLINE)


def counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM incidents WHERE status = 'open'), (SELECT count(*) FROM tickets),"
        " (SELECT count(*) FROM outbox)"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def test_repeated_detections_update_one_incident(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    first = apply_detection(conn, det("lamp-001", t0, evidence={"lux": 0.1}), ts, t0)
    again = apply_detection(conn, det("lamp-001", t0 + timedelta(minutes=15), evidence={"lux": 0.0}), ts, t0)
    late = apply_detection(conn, det("lamp-001", t0 + timedelta(minutes=5), evidence={"lux": 9.9}), ts, t0)
    assert (first.action, first.ticket_action) == ("opened", "created")
    assert again.action == late.action == "updated"
    assert again.incident_id == late.incident_id == first.incident_id
    row = conn.execute("SELECT detections, first_seen, last_seen, evidence, lat FROM incidents").fetchone()
    assert row == (3, t0, t0 + timedelta(minutes=15), {"lux": 0.0}, pytest.approx(52.37))
    assert counts(conn) == (1, 1, 1)


def test_the_database_refuses_a_second_open_incident(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    apply_detection(conn, det("lamp-001", t0), ts, t0)
    with pytest.raises(psycopg.errors.UniqueViolation, match="incidents_open_key"):
        conn.execute(
            """INSERT INTO incidents (problem, sensor_id, rule_id, rule_version, severity, first_seen,
                                      last_seen,
                                      created_at, updated_at)
               VALUES ('lamp_out', 'lamp-001', 'r', '1', 'low', now(), now(), now(), now())"""
        )


def test_resolution_closes_the_sensor_side_only(conn: psycopg.Connection[Any], ts: TicketingSettings) -> None:
    t0 = now_utc()
    apply_detection(conn, det("lamp-001", t0), ts, t0)
    resolved = apply_detection(conn, det("lamp-001", t0 + timedelta(hours=1), kind="resolution"), ts, t0)
    assert resolved.action == "resolved"
    assert conn.execute("SELECT status, sensor_state FROM incidents").fetchone() == ("open", "resolved")
    back = apply_detection(conn, det("lamp-001", t0 + timedelta(hours=2)), ts, t0)
    assert back.incident_id == resolved.incident_id and back.action == "updated"
    assert conn.execute("SELECT sensor_state, resolved_at FROM incidents").fetchone() == ("firing", None)
    nothing = apply_detection(conn, det("lamp-far", t0, kind="resolution"), ts, t0)
    assert nothing.action == "ignored"
    assert counts(conn) == (1, 1, 1)


def test_the_sensor_side_resolves_when_every_rule_has(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    apply_detection(conn, det("lamp-001", t0, rule_id="lamp_dark"), ts, t0)
    apply_detection(conn, det("lamp-001", t0, rule_id="lamp_dark_peers"), ts, t0)
    one = apply_detection(conn, det("lamp-001", t0 + timedelta(minutes=5), kind="resolution"), ts, t0)
    assert one.action == "updated"
    assert conn.execute("SELECT sensor_state, firing_rules FROM incidents").fetchone() == (
        "firing",
        ["lamp_dark_peers"],
    )
    again = apply_detection(conn, det("lamp-001", t0 + timedelta(minutes=6), kind="resolution"), ts, t0)
    assert again.action == "ignored"  # that rule had already resolved
    last = apply_detection(
        conn, det("lamp-001", t0 + timedelta(minutes=9), kind="resolution", rule_id="lamp_dark_peers"), ts, t0
    )
    assert last.action == "resolved"
    assert conn.execute("SELECT sensor_state, resolved_at FROM incidents").fetchone() == (
        "resolved",
        t0 + timedelta(minutes=9),
    )


def test_a_dark_street_is_one_ticket(conn: psycopg.Connection[Any], ts: TicketingSettings) -> None:
    t0 = now_utc()
    changes = [
        apply_detection(conn, det(f"lamp-{i:03d}", t0 + timedelta(seconds=i)), ts, t0) for i in range(1, 13)
    ]
    assert [c.ticket_action for c in changes] == ["created"] + ["joined"] * 11
    assert len({c.ticket_id for c in changes}) == 1
    south = apply_detection(conn, det("lamp-south", t0), ts, t0)  # 300 m away: another fault
    assert south.ticket_action == "created" and south.ticket_id != changes[0].ticket_id
    bin_change = apply_detection(conn, det("bin-001", t0, problem="bin_overflow"), ts, t0)
    assert bin_change.ticket_action == "created"
    later = apply_detection(conn, det("lamp-001", t0, problem="lamp_flicker"), ts, t0)
    assert later.ticket_action == "created"  # another problem on the same lamp is its own incident
    assert counts(conn) == (15, 4, 4)


def test_grouping_respects_the_window_and_can_be_off(conn: psycopg.Connection[Any]) -> None:
    t0 = now_utc()
    ts = ticketing_settings(OFFLINE, group_window="1h")
    first = apply_detection(conn, det("lamp-001", t0), ts, t0)
    next_day = apply_detection(conn, det("lamp-002", t0 + timedelta(hours=3)), ts, t0)
    assert next_day.ticket_id != first.ticket_id
    off = ticketing_settings(OFFLINE, group_distance_m=0)
    a = apply_detection(conn, det("lamp-005", t0), off, t0)
    b = apply_detection(conn, det("lamp-006", t0), off, t0)
    assert a.ticket_id != b.ticket_id


def test_unregistered_sensor_opens_an_ungrouped_incident(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    a = apply_detection(conn, det("ghost-1", t0), ts, t0)
    b = apply_detection(conn, det("ghost-2", t0), ts, t0)
    assert a.ticket_id != b.ticket_id
    assert conn.execute("SELECT lat FROM incidents WHERE sensor_id = 'ghost-1'").fetchone() == (None,)


def _close_by_city(
    conn: psycopg.Connection[Any], ticket_id: int, at: Any, notes: str = "Lamp replaced."
) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE tickets SET service_request_id = %s, status = 'open' WHERE id = %s",
            (f"000{ticket_id}", ticket_id),
        )
        close_ticket(conn, ticket_id, outcome="closed", notes=notes, closed_at=at, now=at)


def test_a_problem_back_within_the_cooldown_files_a_follow_up(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    street = [apply_detection(conn, det(f"lamp-{i:03d}", t0), ts, t0) for i in range(1, 13)]
    old_ticket = street[0].ticket_id
    assert old_ticket is not None
    _close_by_city(conn, old_ticket, t0 + timedelta(days=1))
    assert counts(conn)[0] == 0

    back_at = t0 + timedelta(days=3)
    returning = [apply_detection(conn, det(f"lamp-{i:03d}", back_at), ts, back_at) for i in range(1, 13)]
    assert [c.ticket_action for c in returning] == ["follow_up"] + ["joined"] * 11
    follow_up = returning[0].ticket_id
    assert conn.execute("SELECT follows_ticket_id FROM tickets WHERE id = %s", (follow_up,)).fetchone() == (
        old_ticket,
    )
    reopened = conn.execute(
        "SELECT count(*) FROM incidents WHERE status = 'open' AND reopens_id IS NOT NULL"
    ).fetchone()
    assert reopened == (12,)


def test_after_the_cooldown_it_is_a_new_unrelated_ticket(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    first = apply_detection(conn, det("lamp-far", t0), ts, t0)
    assert first.ticket_id is not None
    _close_by_city(conn, first.ticket_id, t0 + timedelta(days=1))
    much_later = t0 + timedelta(days=30)
    again = apply_detection(conn, det("lamp-far", much_later), ts, much_later)
    assert again.ticket_action == "created"
    assert conn.execute(
        "SELECT follows_ticket_id FROM tickets WHERE id = %s", (again.ticket_id,)
    ).fetchone() == (None,)


@pytest.mark.parametrize(
    ("policy", "action", "follows"), [("new", "created", False), ("ignore", "suppressed", None)]
)
def test_reopen_policies(
    conn: psycopg.Connection[Any], policy: str, action: str, follows: bool | None
) -> None:
    ts = ticketing_settings(OFFLINE, reopen=policy)
    t0 = now_utc()
    first = apply_detection(conn, det("lamp-far", t0), ts, t0)
    assert first.ticket_id is not None
    _close_by_city(conn, first.ticket_id, t0 + timedelta(hours=1))
    back = apply_detection(conn, det("lamp-far", t0 + timedelta(hours=5)), ts, t0)
    assert back.ticket_action == action
    if follows is None:
        assert back.ticket_id is None
        gone = apply_detection(conn, det("lamp-far", t0 + timedelta(hours=6), kind="resolution"), ts, t0)
        assert gone.action == "resolved"
        assert conn.execute(
            "SELECT status, outcome FROM incidents WHERE id = %s", (back.incident_id,)
        ).fetchone() == ("closed", "resolved")
    else:
        assert conn.execute(
            "SELECT follows_ticket_id FROM tickets WHERE id = %s", (back.ticket_id,)
        ).fetchone() == (None,)


def test_cancelled_tickets_are_not_reopened(conn: psycopg.Connection[Any], ts: TicketingSettings) -> None:
    t0 = now_utc()
    first = apply_detection(conn, det("lamp-far", t0), ts, t0)
    assert first.ticket_id is not None
    with conn.transaction():
        close_ticket(conn, first.ticket_id, outcome="cancelled", notes="operator", closed_at=t0, now=t0)
    again = apply_detection(conn, det("lamp-far", t0 + timedelta(hours=1)), ts, t0)
    assert again.ticket_action == "created"


def test_follow_up_through_the_server(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    t0 = now_utc()
    insert_detections(conn, [det("lamp-far", t0 - timedelta(minutes=10))])
    run_cycle(conn, tsettings, {"open311": sink}, t0)
    (first,) = open311.requests()
    open311.staff(first["service_request_id"], status="closed", status_notes="Duplicate request.")
    run_cycle(conn, tsettings, {"open311": sink}, t0 + timedelta(minutes=1), force_poll=True)
    closed = conn.execute("SELECT status, outcome, close_notes FROM incidents").fetchone()
    assert closed == ("closed", "duplicate", "Duplicate request.")

    insert_detections(conn, [det("lamp-far", t0 + timedelta(minutes=20))])
    run_cycle(conn, tsettings, {"open311": sink}, t0 + timedelta(minutes=21))
    old, new = open311.requests()
    assert old["service_request_id"] == first["service_request_id"]
    assert f"Follow-up to request {first['service_request_id']}" in new["description"]
    assert 'with notes "Duplicate request."' in new["description"]


def test_consumer_follows_its_cursor(conn: psycopg.Connection[Any], ts: TicketingSettings) -> None:
    t0 = now_utc()
    insert_detections(conn, [det(f"lamp-{i:03d}", t0) for i in range(1, 6)])
    first = consume_detections(conn, ts, t0, limit=3)
    second = consume_detections(conn, ts, t0, limit=3)
    third = consume_detections(conn, ts, t0, limit=3)
    assert (first.processed, second.processed, third.processed) == (3, 2, 0)
    assert third.last_id == second.last_id
    insert_detections(conn, [det("lamp-001", t0 + timedelta(minutes=5), kind="resolution")])
    fourth = consume_detections(conn, ts, t0)
    assert [c.action for c in fourth.changes] == ["resolved"]
    assert conn.execute("SELECT sum(detections) FROM incidents").fetchone() == (5,)


def test_consumer_waits_for_an_earlier_detection_still_in_flight(
    conn: psycopg.Connection[Any], settings: Settings, ts: TicketingSettings
) -> None:
    t0 = now_utc()
    with connect(settings, "slow-evaluator") as slow:  # not autocommit: its insert stays uncommitted
        insert_detections(slow, [det("lamp-001", t0)])
        insert_detections(conn, [det("lamp-002", t0)])  # a larger id, committed first
        with connect(settings, "impatient", autocommit=True) as impatient:
            impatient.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                consume_detections(impatient, ts, t0)
        assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
        slow.commit()
    done = consume_detections(conn, ts, t0)
    assert [c.detection_id for c in done.changes] == sorted(c.detection_id for c in done.changes)
    assert done.processed == 2


def test_consumers_in_parallel_handle_each_detection_once(
    conn: psycopg.Connection[Any], settings: Settings, ts: TicketingSettings
) -> None:
    t0 = now_utc()
    insert_detections(
        conn, [det(f"lamp-{i:03d}", t0 + timedelta(minutes=m)) for m in range(20) for i in range(1, 13)]
    )
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            with connect(settings, "consumer", autocommit=True) as c:
                while consume_detections(c, ts, t0, limit=7).processed:
                    pass
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert conn.execute("SELECT count(*), sum(detections) FROM incidents").fetchone() == (12, 240)
    assert counts(conn) == (12, 1, 1)


def _mark_sent(conn: psycopg.Connection[Any], ticket_id: int) -> None:
    conn.execute(
        "UPDATE tickets SET status = 'open', service_request_id = %s WHERE id = %s",
        (f"R{ticket_id}", ticket_id),
    )
    conn.execute("UPDATE outbox SET state = 'sent' WHERE ticket_id = %s", (ticket_id,))


def test_tickets_started_at_both_ends_of_a_street_merge(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    west = apply_detection(conn, det("lamp-001", t0), ts, t0)
    east = apply_detection(conn, det("lamp-012", t0), ts, t0)
    assert west.ticket_id != east.ticket_id
    middle = [apply_detection(conn, det(f"lamp-{i:03d}", t0), ts, t0) for i in range(2, 12)]
    assert {c.ticket_id for c in middle} == {west.ticket_id}
    assert conn.execute(
        "SELECT count(*) FROM ticket_members WHERE ticket_id = %s", (west.ticket_id,)
    ).fetchone() == (12,)
    assert conn.execute(
        "SELECT status, merged_into_id FROM tickets WHERE id = %s", (east.ticket_id,)
    ).fetchone() == ("merged", west.ticket_id)
    assert conn.execute(
        "SELECT state, last_error FROM outbox WHERE ticket_id = %s", (east.ticket_id,)
    ).fetchone() == ("cancelled", f"merged into ticket {west.ticket_id}: one fault")


def test_a_ticket_the_city_knows_is_never_merged_away(
    conn: psycopg.Connection[Any], ts: TicketingSettings
) -> None:
    t0 = now_utc()
    west = apply_detection(conn, det("lamp-001", t0), ts, t0)
    east = apply_detection(conn, det("lamp-012", t0), ts, t0)
    assert west.ticket_id is not None and east.ticket_id is not None
    _mark_sent(conn, east.ticket_id)
    for i in range(2, 12):
        apply_detection(conn, det(f"lamp-{i:03d}", t0), ts, t0)
    # The unsent west ticket merges into the east one the city already has.
    assert conn.execute("SELECT ticket_id, count(*) FROM ticket_members GROUP BY ticket_id").fetchall() == [
        (east.ticket_id, 12)
    ]
    assert conn.execute("SELECT status FROM tickets WHERE id = %s", (west.ticket_id,)).fetchone() == (
        "merged",
    )


def test_two_sent_tickets_stay_apart(conn: psycopg.Connection[Any], ts: TicketingSettings) -> None:
    t0 = now_utc()
    west = apply_detection(conn, det("lamp-001", t0), ts, t0)
    east = apply_detection(conn, det("lamp-012", t0), ts, t0)
    assert west.ticket_id is not None and east.ticket_id is not None
    _mark_sent(conn, west.ticket_id)
    _mark_sent(conn, east.ticket_id)
    apply_detection(conn, det("lamp-006", t0), ts, t0)
    statuses = conn.execute("SELECT status FROM tickets ORDER BY id").fetchall()
    assert statuses == [("open",), ("open",)]
