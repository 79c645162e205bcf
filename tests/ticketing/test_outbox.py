"""The outbox against a misbehaving server: retries, Retry-After, dead letters, reconciliation.

Every fault mode ends with as many requests on the server as tickets filed, each ticket holding the
id of the request that carries its marker: zero lost, zero duplicated.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from sense311.db import connect
from sense311.settings import Settings
from tests.fix_proxy import TcpProxy
from tests.ticketing.conftest import (
    STREET_LAT,
    STREET_LON,
    TEST_READ_TIMEOUT,
    Open311Server,
    det,
    now_utc,
    register,
    ticketing_settings,
)
from ticketing.incidents import apply_detection
from ticketing.open311.misbehave import Misbehaviour
from ticketing.outbox import OutboxWorker, _claim, retry_row
from ticketing.poller import poll_tickets
from ticketing.settings import API_KEY_ENV, TicketingSettings
from ticketing.sinks import Sink, create_sink
from ticketing.tickets import load_ticket

#: Lamps ~1.1 km apart, each its own ticket.
SOLO_SPACING = 0.01


def file_tickets(conn: psycopg.Connection[Any], ts: TicketingSettings, count: int, at: datetime) -> list[int]:
    register(
        conn,
        [
            (
                f"solo-{i:03d}",
                "streetlight",
                STREET_LAT - 0.05 - i * SOLO_SPACING,
                STREET_LON,
                f"Solo {i}",
                {"pole_id": f"S-{i}"},
            )
            for i in range(count)
        ],
    )
    ids = []
    for i in range(count):
        change = apply_detection(conn, det(f"solo-{i:03d}", at), ts, at)
        assert change.ticket_action == "created"
        ids.append(change.ticket_id)
    return [i for i in ids if i is not None]


def outbox(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT state, attempts, in_doubt, available_at, last_status, last_error FROM outbox ORDER BY id"
    ).fetchall()


def assert_exactly_once(conn: psycopg.Connection[Any], open311: Open311Server, tickets: list[int]) -> None:
    requests = open311.requests()
    assert len(requests) == len(tickets), f"{len(requests)} requests for {len(tickets)} tickets"
    by_marker = {}
    for r in requests:
        marker = r["description"].rsplit("sense311-ref:", 1)[1]
        assert marker not in by_marker, f"{marker} filed twice"
        by_marker[marker] = r["service_request_id"]
    rows = conn.execute(
        "SELECT reference, service_request_id, status FROM tickets WHERE id = ANY(%s)", (tickets,)
    ).fetchall()
    for reference, request_id, status in rows:
        assert status == "open", f"ticket {reference} is {status}"
        assert by_marker[reference] == request_id


def token_only(m: Misbehaviour) -> None:
    m.token_only = True
    m.token_lookups_before_ready = 1


def xml_only(m: Misbehaviour) -> None:
    m.xml_only = True


#: fault → (how to arm it, POSTs the server should see for 5 tickets, tickets found by reconciliation);
#: None where the count depends on which calls the fault happens to hit.
FAULTS: dict[str, tuple[Callable[[Misbehaviour], None], int | None, int | None]] = {
    "500 after creating": (lambda m: m.fail_after_create(2, 500), 5, 2),
    "502 after creating": (lambda m: m.fail_after_create(1, 502), 5, 1),
    "503 before creating, Retry-After": (lambda m: m.fail_before_create(2, 503, retry_after=20), 7, 0),
    "500 before creating": (lambda m: m.fail_before_create(2, 500), 7, 0),
    "429 on every call": (lambda m: m.rate_limit(4, retry_after=15), None, 0),
    "timeout after creating": (lambda m: m.delay_after_create(1, seconds=TEST_READ_TIMEOUT + 1.0), 5, 1),
    "garbage answers": (lambda m: m.garbage(3), None, None),
    "token-only answers": (token_only, 5, 0),
    "XML only": (xml_only, 5, 0),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_fault_mode_files_each_ticket_exactly_once(
    conn: psycopg.Connection[Any],
    tsettings: TicketingSettings,
    sink: Sink,
    open311: Open311Server,
    fault: str,
) -> None:
    t = now_utc()
    tickets = file_tickets(conn, tsettings, 5, t)
    arm, posts, reconciled = FAULTS[fault]
    arm(open311.misbehave)
    worker = OutboxWorker(conn, tsettings, {"open311": sink}, rng=random.Random(7))
    for _ in range(20):
        worker.drain(t)
        poll_tickets(conn, sink, tsettings, t, force=True)
        done = conn.execute("SELECT count(*) FROM tickets WHERE status = 'open'").fetchone()
        if done == (len(tickets),):
            break
        t += timedelta(minutes=2)
    assert [row[0] for row in outbox(conn)] == ["sent"] * len(tickets)
    assert_exactly_once(conn, open311, tickets)
    assert open311.misbehave.requests_created == len(tickets)
    if posts is not None:
        assert open311.misbehave.posts_received == posts
    if reconciled is not None:
        found = conn.execute("SELECT count(*) FROM outbox WHERE response->>'reconciled' = 'true'").fetchone()
        assert found == (reconciled,)


def test_429_waits_for_retry_after(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    t = now_utc()
    file_tickets(conn, tsettings, 1, t)
    open311.misbehave.rate_limit(1, retry_after=30, scope="post")
    worker = OutboxWorker(conn, tsettings, {"open311": sink})
    assert worker.drain(t).retried == 1
    ((state, attempts, in_doubt, available_at, status, error),) = outbox(conn)
    assert (state, attempts, in_doubt, status) == ("failed", 1, False, 429)
    assert available_at == t + timedelta(seconds=30)
    assert "retry in 30 s" in error
    assert worker.drain(t + timedelta(seconds=29)).claimed == 0
    assert worker.drain(t + timedelta(seconds=30)).sent == 1
    assert open311.misbehave.posts_received == 2


def test_503_on_post_waits_then_searches_before_posting_again(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    t = now_utc()
    tickets = file_tickets(conn, tsettings, 1, t)
    open311.misbehave.fail_before_create(1, 503, retry_after=20)
    worker = OutboxWorker(conn, tsettings, {"open311": sink})
    worker.drain(t)
    ((state, _, in_doubt, available_at, status, _),) = outbox(conn)
    assert (state, in_doubt, status, available_at) == ("failed", True, 503, t + timedelta(seconds=20))
    assert worker.drain(t + timedelta(seconds=20)).sent == 1
    assert_exactly_once(conn, open311, tickets)


def test_ambiguous_post_found_by_its_marker(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    t = now_utc()
    tickets = file_tickets(conn, tsettings, 1, t)
    open311.misbehave.fail_after_create(1, 500)
    result = OutboxWorker(conn, tsettings, {"open311": sink}).drain(t)
    assert result.sent == 1
    response = conn.execute("SELECT response FROM outbox").fetchone()[0]
    assert response["reconciled"] is True
    assert open311.misbehave.posts_received == 1
    assert_exactly_once(conn, open311, tickets)


@pytest.mark.parametrize(("status", "expected"), [(400, 400), (403, 403), (404, 404)])
def test_permanent_errors_are_dead_lettered_with_the_servers_message(
    conn: psycopg.Connection[Any],
    tsettings: TicketingSettings,
    sink: Sink,
    open311: Open311Server,
    status: int,
    expected: int,
) -> None:
    t = now_utc()
    tickets = file_tickets(conn, tsettings, 1, t)
    reference = conn.execute("SELECT reference FROM tickets").fetchone()[0]
    open311.misbehave.fail_before_create(1, status)
    worker = OutboxWorker(conn, tsettings, {"open311": sink})
    assert worker.drain(t).dead == 1
    ((state, attempts, _, _, last_status, error),) = outbox(conn)
    assert (state, attempts, last_status) == ("dead", 1, expected)
    assert error == (
        f"POST {open311.url}requests.json → {status}: the service request system is unavailable "
        f"[ref {reference}]"
    )
    assert conn.execute("SELECT status FROM tickets").fetchone() == ("failed",)
    assert worker.drain(t + timedelta(days=1)).claimed == 0  # never retried by itself

    retry_row(conn, conn.execute("SELECT id FROM outbox").fetchone()[0], t + timedelta(days=1))
    assert worker.drain(t + timedelta(days=1)).sent == 1
    assert_exactly_once(conn, open311, tickets)


def test_a_wrong_api_key_is_dead_lettered(
    conn: psycopg.Connection[Any],
    tsettings: TicketingSettings,
    open311: Open311Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "revoked")
    ts = ticketing_settings(open311.url)
    sink = create_sink("open311", ts)
    t = now_utc()
    file_tickets(conn, ts, 1, t)
    OutboxWorker(conn, ts, {"open311": sink}).drain(t)
    sink.close()
    ((state, _, _, _, status, error),) = outbox(conn)
    assert (state, status) == ("dead", 403)
    assert "Invalid api_key received -- can't proceed with create_request." in error


def test_a_required_attribute_without_a_value_names_its_source(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    t = now_utc()
    apply_detection(conn, det("lamp-nopole", t), tsettings, t)
    apply_detection(conn, det("bin-001", t, problem="bin_full"), tsettings, t)
    OutboxWorker(conn, tsettings, {"open311": sink}).drain(t)
    (first, second) = outbox(conn)
    assert first[0] == "dead" and first[4] is None
    assert "attribute 'pole_id' of service 'streetlight' is required" in first[5]
    assert "pole_id from sensor.metadata.pole_id of sensor lamp-nopole: empty" in first[5]
    assert second[0] == "dead"
    assert "no Open311 service is mapped for problem 'bin_full'" in second[5]
    assert "add ticketing.services.bin_full.service_code (mapped: bin_overflow, lamp_out)" in second[5]
    assert open311.misbehave.posts_received == 0


def test_a_crashed_worker_is_reconciled_after_its_lease(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    t = now_utc()
    tickets = file_tickets(conn, tsettings, 1, t)
    # A worker claims the row, POSTs, and dies before recording the result.
    row = _claim(conn, ["open311"], t, tsettings.send_lease)
    assert row is not None and not row.in_doubt
    ticket = load_ticket(conn, row.ticket_id)
    sink.deliver(ticket, sink.render(ticket), in_doubt=False, now=t)
    assert len(open311.requests()) == 1

    worker = OutboxWorker(conn, tsettings, {"open311": sink})
    assert worker.drain(t + tsettings.send_lease - timedelta(seconds=1)).claimed == 0  # still leased
    assert worker.drain(t + tsettings.send_lease).sent == 1
    assert conn.execute("SELECT attempts, in_doubt, response->>'reconciled' FROM outbox").fetchone() == (
        2,
        False,
        "true",
    )
    assert open311.misbehave.posts_received == 1
    assert_exactly_once(conn, open311, tickets)


def test_a_stale_worker_cannot_overwrite_a_newer_attempt(
    conn: psycopg.Connection[Any], tsettings: TicketingSettings, sink: Sink, open311: Open311Server
) -> None:
    t = now_utc()
    file_tickets(conn, tsettings, 1, t)
    slow = _claim(conn, ["open311"], t, tsettings.send_lease)
    assert slow is not None
    worker = OutboxWorker(conn, tsettings, {"open311": sink})
    assert worker.drain(t + tsettings.send_lease).sent == 1  # claimed again after the lease, sent
    assert worker._process(slow, t + tsettings.send_lease) == "stale"
    assert conn.execute("SELECT state, attempts FROM outbox").fetchone() == ("sent", 2)


def test_an_unreachable_server_delays_tickets_without_losing_them(
    conn: psycopg.Connection[Any],
    open311: Open311Server,
    tcp_proxy: Callable[[str, int], TcpProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, port = open311.url.removeprefix("http://").rstrip("/").split(":")
    proxy = tcp_proxy(host, int(port))
    monkeypatch.setenv(API_KEY_ENV, open311.api_key)
    ts = ticketing_settings(f"http://{proxy.host}:{proxy.port}/")
    sink = create_sink("open311", ts)
    t = now_utc()
    tickets = file_tickets(conn, ts, 3, t)
    worker = OutboxWorker(conn, ts, {"open311": sink})
    proxy.stop()
    for _ in range(3):
        worker.drain(t)
        t += timedelta(minutes=2)
    states = outbox(conn)
    assert {s[0] for s in states} == {"failed"} and all(not s[2] for s in states)  # not sent: not in doubt
    assert all("not sent (ConnectError" in s[5] for s in states)
    proxy.start()
    assert worker.drain(t).sent == 3
    sink.close()
    assert_exactly_once(conn, open311, tickets)


def test_backoff_grows_with_jitter_up_to_the_cap(conn: psycopg.Connection[Any]) -> None:
    ts = ticketing_settings("http://127.0.0.1:9/", retry_base="10s", retry_cap="1m")
    sink = create_sink("open311", ts)
    t = now_utc()
    file_tickets(conn, ts, 1, t)
    worker = OutboxWorker(conn, ts, {"open311": sink}, rng=random.Random(1))
    delays = []
    for _ in range(6):
        worker.drain(t)
        available_at = conn.execute("SELECT available_at FROM outbox").fetchone()[0]
        delays.append((available_at - t).total_seconds())
        t = available_at
    sink.close()
    for n, delay in enumerate(delays):
        ceiling = min(60.0, 10.0 * 2**n)
        assert ceiling / 2 <= delay <= ceiling, (n, delay)


def test_rows_past_give_up_after_are_dead_lettered(conn: psycopg.Connection[Any]) -> None:
    ts = ticketing_settings("http://127.0.0.1:9/", give_up_after="1h")
    sink = create_sink("open311", ts)
    t = now_utc()
    file_tickets(conn, ts, 1, t)
    worker = OutboxWorker(conn, ts, {"open311": sink})
    worker.drain(t)
    worker.drain(t + timedelta(hours=2))
    sink.close()
    ((state, attempts, _, _, _, error),) = outbox(conn)
    assert (state, attempts) == ("dead", 2)
    assert error.startswith("gave up after 2 attempts over 2h (give_up_after 1h): GET http://127.0.0.1:9/")


def test_the_hold_lets_a_whole_street_join_before_sending(
    conn: psycopg.Connection[Any], open311: Open311Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_ENV, open311.api_key)
    ts = ticketing_settings(open311.url, group_hold="2m")
    sink = create_sink("open311", ts)
    t = now_utc()
    worker = OutboxWorker(conn, ts, {"open311": sink})
    apply_detection(conn, det("lamp-001", t), ts, t)
    assert worker.drain(t).claimed == 0
    for i in range(2, 13):
        apply_detection(conn, det(f"lamp-{i:03d}", t + timedelta(seconds=30)), ts, t + timedelta(seconds=30))
    assert worker.drain(t + timedelta(minutes=2)).sent == 1
    sink.close()
    (request,) = open311.requests()
    assert request["attributes"]["lamps"] == "12"
    assert "Street light out: 12 sensors near Lindenstraat 1 (Centrum)" in request["description"]


def test_two_workers_send_each_row_once(
    conn: psycopg.Connection[Any], settings: Settings, tsettings: TicketingSettings, open311: Open311Server
) -> None:
    t = now_utc()
    tickets = file_tickets(conn, tsettings, 30, t)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work() -> None:
        sink = create_sink("open311", tsettings)
        try:
            with connect(settings, "worker", autocommit=True) as c:
                start.wait()
                OutboxWorker(c, tsettings, {"open311": sink}).drain(t)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            sink.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert open311.misbehave.posts_received == 30
    assert_exactly_once(conn, open311, tickets)
