"""The webhook and dry-run sinks, through the outbox; the webhook against a real receiver on a socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from tests.ticketing.conftest import det, now_utc, ticketing_settings
from ticketing.incidents import apply_detection
from ticketing.open311.server import ServerThread
from ticketing.outbox import OutboxWorker
from ticketing.settings import WEBHOOK_SECRET_ENV
from ticketing.sinks import create_sink
from ticketing.sinks.webhook import sign, verify_signature

SECRET = "webhook-test-secret"


@dataclass
class Receiver:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    status: int = 500

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        body = await request.body()
        state.received.append((dict(request.headers), body))
        if state.fail_next:
            state.fail_next -= 1
            return Response("busy", status_code=state.status, headers={"Retry-After": "4"})
        valid = verify_signature(
            SECRET, request.headers.get("x-sense311-signature", ""), body, datetime.now(UTC)
        )
        return Response(json.dumps({"ok": valid}), status_code=200 if valid else 401)

    with ServerThread(app) as thread:
        state.url = f"{thread.url}hook"
        yield state


def test_signatures_verify_and_expire() -> None:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    header = sign(SECRET, b"{}", int(now.timestamp()))
    assert verify_signature(SECRET, header, b"{}", now)
    assert not verify_signature(SECRET, header, b"{ }", now)
    assert not verify_signature("other", header, b"{}", now)
    assert not verify_signature(SECRET, header, b"{}", now.replace(minute=10))
    assert not verify_signature(SECRET, "garbage", b"{}", now)


def test_webhook_posts_signed_json_and_retries(
    conn: psycopg.Connection[Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, SECRET)
    ts = ticketing_settings(
        "http://127.0.0.1:9/", sink="webhook", webhook={"url": receiver.url, "timeout": 2}
    )
    sink = create_sink("webhook", ts)
    t = now_utc()
    for i in range(1, 4):
        apply_detection(conn, det(f"lamp-{i:03d}", t), ts, t)
    receiver.fail_next = 1
    worker = OutboxWorker(conn, ts, {"webhook": sink})
    assert worker.drain(t).retried == 1
    state, available_at, in_doubt = conn.execute(
        "SELECT state, available_at, in_doubt FROM outbox"
    ).fetchone()
    # A 500 after the body went out: it may have arrived. Posting again is safe: same Idempotency-Key.
    assert (state, in_doubt) == ("failed", True)
    assert worker.drain(available_at).sent == 1
    sink.close()

    assert [h["idempotency-key"] for h, _ in receiver.received] == [
        h["idempotency-key"] for h, _ in receiver.received[:1]
    ] * 2
    body = receiver.bodies()[-1]
    assert body["problem"] == "lamp_out" and len(body["members"]) == 3
    assert body["description"].endswith(f"sense311-ref:{body['reference']}")
    assert conn.execute(
        "SELECT t.status, o.response->>'status' FROM tickets t JOIN outbox o ON o.ticket_id = t.id"
    ).fetchone() == ("sent", "200")


def test_webhook_needs_its_url_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from ticketing.errors import TicketingConfigError

    with pytest.raises(TicketingConfigError, match=r"needs ticketing\.webhook\.url"):
        create_sink("webhook", ticketing_settings("http://127.0.0.1:9/"))
    with pytest.raises(TicketingConfigError, match=WEBHOOK_SECRET_ENV):
        create_sink(
            "webhook", ticketing_settings("http://127.0.0.1:9/", webhook={"url": "http://127.0.0.1:9/h"})
        )


def test_webhook_4xx_is_dead_lettered(
    conn: psycopg.Connection[Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, "not-what-the-receiver-expects")
    ts = ticketing_settings("http://127.0.0.1:9/", sink="webhook", webhook={"url": receiver.url})
    sink = create_sink("webhook", ts)
    t = now_utc()
    apply_detection(conn, det("lamp-far", t), ts, t)
    assert OutboxWorker(conn, ts, {"webhook": sink}).drain(t).dead == 1
    sink.close()
    state, status, error = conn.execute("SELECT state, last_status, last_error FROM outbox").fetchone()
    assert (state, status) == ("dead", 401)
    assert error.startswith(f"POST {receiver.url} → 401")


def test_dry_run_records_and_sends_nothing(conn: psycopg.Connection[Any]) -> None:
    ts = ticketing_settings("http://127.0.0.1:9/", sink="dry_run")
    sink = create_sink("dry_run", ts)
    t = now_utc()
    for i in range(1, 13):
        apply_detection(conn, det(f"lamp-{i:03d}", t), ts, t)
    assert OutboxWorker(conn, ts, {"dry_run": sink}).drain(t).sent == 1
    state, payload, response = conn.execute("SELECT state, payload, response FROM outbox").fetchone()
    assert (state, response) == ("sent", {"dry_run": True})
    assert len(payload["members"]) == 12
    assert payload["open311"]["service_code"] == "streetlight"
    assert payload["open311"]["attributes"] == {"pole_id": "P-1000", "fault": "Light out", "lamps": "12"}
    assert conn.execute("SELECT status, service_request_id FROM tickets").fetchone() == ("sent", None)


def test_untracked_tickets_end_when_the_rules_resolve_them(conn: psycopg.Connection[Any]) -> None:
    ts = ticketing_settings("http://127.0.0.1:9/", sink="dry_run")
    sink = create_sink("dry_run", ts)
    worker = OutboxWorker(conn, ts, {"dry_run": sink})
    t = now_utc()
    apply_detection(conn, det("lamp-001", t), ts, t)
    apply_detection(conn, det("lamp-002", t), ts, t)
    worker.drain(t)
    apply_detection(conn, det("lamp-001", t + timedelta(hours=1), kind="resolution"), ts, t)
    assert conn.execute("SELECT status FROM tickets").fetchone() == ("sent",)  # lamp-002 still dark
    apply_detection(conn, det("lamp-002", t + timedelta(hours=2), kind="resolution"), ts, t)
    assert conn.execute("SELECT status, outcome FROM tickets").fetchone() == ("closed", "resolved")
    assert conn.execute("SELECT DISTINCT status, outcome FROM incidents").fetchall() == [
        ("closed", "resolved")
    ]
    # The lamp fails again: a new incident and a new ticket, not a follow-up of a city closure.
    again = apply_detection(conn, det("lamp-001", t + timedelta(days=1)), ts, t)
    assert again.ticket_action == "created"
