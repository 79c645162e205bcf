"""Liveness, readiness (database and broker), Prometheus metrics, rate limits, dead letters."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from sense311.api import ApiServer, ApiSettings, create_app
from sense311.api.ratelimit import RateLimiter
from sense311.settings import load_settings
from tests.api.conftest import HTTP_TIMEOUT, T0, Api


def test_healthz_and_readyz(api_server: Callable[..., Api]) -> None:
    connected = {"broker": True}
    api = api_server(app_kwargs={"broker_ready": lambda: connected["broker"]})
    assert api.http.get("/healthz").json()["status"] == "ok"
    ready = api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["ok"] is True

    connected["broker"] = False
    down = api.http.get("/readyz")
    assert down.status_code == 503
    assert down.json()["error"] == "not ready: broker: not connected to the MQTT broker"


def test_a_broker_check_that_raises_means_not_ready(api_server: Callable[..., Api]) -> None:
    def broken() -> bool:
        raise ConnectionError("socket closed")

    api = api_server(app_kwargs={"broker_ready": broken})
    body = api.http.get("/readyz").json()
    assert body["checks"]["broker"]["detail"] == "the check raised ConnectionError: socket closed"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readyz_fails_fast_when_the_database_is_unreachable() -> None:
    settings = load_settings(database_url=f"postgresql://postgres@127.0.0.1:{_closed_port()}/nowhere")
    app = create_app(settings, api=ApiSettings(readiness_timeout=1.0, db_timeout=1.0))
    with ApiServer(app) as server, httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        assert http.get("/healthz").status_code == 200
        began = time.monotonic()
        response = http.get("/readyz")
        assert time.monotonic() - began < 5
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "not ready: database: no connection within 1 s"
        assert body["checks"]["database"]["ok"] is False
        # Data requests say the same, as a 503 with Retry-After.
        listing = http.get("/api/v1/sensors")
        assert listing.status_code == 503 and listing.headers["Retry-After"] == "5"
        assert listing.json()["error"].startswith("database unavailable: no connection within 1 s")


def test_metrics_count_requests_by_route(api: Api) -> None:
    for _ in range(3):
        api.http.get("/api/v1/sensors/some/sensor")
    text = api.http.get("/metrics").text
    assert (
        'sense311_api_requests_total{method="GET",route="/api/v1/sensors/{sensor_id:path}",status="404"}'
        in text
    )
    assert "sense311_api_request_duration_seconds_bucket" in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


def test_rate_limit_answers_429_with_retry_after(api_server: Callable[..., Api]) -> None:
    api = api_server(rate_limit_per_minute=60, rate_limit_burst=3)
    statuses = [api.http.get("/api/v1/sensors").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = api.http.get("/api/v1/sensors")
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["error"] == "rate limit of 60 requests per minute exceeded; retry in 1 s"
    # A token has its own bucket; health checks are never limited.
    assert api.http.get("/api/v1/sensors", headers=api.auth("read")).status_code == 200
    assert api.http.get("/healthz").status_code == 200
    # Bad tokens are charged to the address, so they cannot dodge the limit.
    assert api.http.get("/api/v1/sensors", headers={"Authorization": "Bearer s311_x"}).status_code == 429


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=120, burst=2, clock=lambda: now[0], max_clients=2)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    now[0] = 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("b") == 0.0 and limiter.take("c") == 0.0  # "a" is dropped: a fresh bucket next time
    assert limiter.take("a") == 0.0
    assert RateLimiter(per_minute=0, burst=1).take("x") == 0.0


def test_dead_letters_by_reason(api: Api) -> None:
    rows = [
        (T0, "city/bins/1", b'{"fill": "x"', "bad_json", "line 1", "json", None),
        (T0 + timedelta(minutes=1), "city/bins/2", b"\xff\xfe", "bad_json", "not UTF-8", "json", None),
        (
            T0 + timedelta(minutes=2),
            "city/bins/3",
            b'{"sensor_id": "zz"}',
            "unknown_sensor",
            "",
            "json",
            "zz",
        ),
    ]
    for row in rows:
        api.db.execute(
            """INSERT INTO dead_letters (received_at, topic, payload, reason, detail, format, sensor_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            row,
        )
    reasons = api.http.get("/api/v1/dead-letters/reasons").json()
    assert [(r["reason"], r["count"]) for r in reasons] == [("bad_json", 2), ("unknown_sensor", 1)]
    listed = api.http.get("/api/v1/dead-letters", params={"reason": "bad_json"}).json()
    assert listed["total"] == 2 and [d["topic"] for d in listed["items"]] == ["city/bins/2", "city/bins/1"]
    assert listed["items"][0]["payload_preview"] == "\ufffd\ufffd" and listed["items"][0]["payload_size"] == 2
    one = api.http.get(f"/api/v1/dead-letters/{listed['items'][1]['id']}").json()
    assert one["payload_text"] == '{"fill": "x"' and one["payload_base64"] == "eyJmaWxsIjogIngi"
    assert api.http.get("/api/v1/dead-letters/987654").status_code == 404
