"""Zero loss, zero duplicates: worker killed mid-stream, database away, two workers sharing.

These tests count every message, so they use a private Mosquitto with deploy/mosquitto.conf: a
broker with Mosquitto's defaults silently drops QoS 1 messages past 1000 queued for a session,
which is exactly the loss the shipped configuration exists to prevent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from sense311.db import connect, migrate
from sense311.settings import Settings
from tests.ingest.conftest import SENSORS, make_settings, register, running_worker
from tests.util import publish_all, wait_for


def _messages(prefix: str, n: int, start: float) -> list[tuple[str, bytes]]:
    topic = f"{prefix}gateways/gw-a/json"
    return [
        (
            topic,
            json.dumps(
                {
                    "sensor_id": "bin-001",
                    "ts": round(start + i * 0.01, 3),
                    "metrics": {"battery": i % 100, "temperature": (i % 50) / 2},
                }
            ).encode(),
        )
        for i in range(n)
    ]


def _count(settings: Settings) -> int:
    with connect(settings, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]


def _prepare(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        migrate(conn, settings)
        register(conn, SENSORS)


def _spawn_ingest(settings: Settings, tmp_path: Path, name: str) -> subprocess.Popen:
    config = tmp_path / f"{name}.json.yaml"
    data = settings.model_dump(mode="json", by_alias=True, exclude={"database_url", "mqtt_url"})
    config.write_text(json.dumps(data))
    env = {
        **os.environ,
        "SENSE311_DATABASE_URL": settings.database_url.get_secret_value(),
        "SENSE311_MQTT_URL": settings.mqtt_url.get_secret_value(),
    }
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "sense311.cli", "--config", str(config), "ingest"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_subscribed(settings: Settings, url: str, prefix: str) -> None:
    """The worker is ready when a probe message it can only dead-letter shows up."""
    topic = f"{prefix}gateways/probe/json"

    def probed() -> bool:
        publish_all(url, [(topic, b"probe")])
        with connect(settings, autocommit=True) as conn:
            return bool(
                conn.execute("SELECT count(*) FROM dead_letters WHERE topic = %s", (topic,)).fetchone()[0]
            )

    wait_for(probed, timeout=60, what="ingest subscribed", poll=0.3)


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(
    database_url: str, db_schema: str, mosquitto_private, topic_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, db_schema, mosquitto_private.url, topic_prefix)
    _prepare(settings)
    n = 4000
    first = _spawn_ingest(settings, tmp_path, "first")
    try:
        _wait_subscribed(settings, mosquitto_private.url, topic_prefix)
        msgs = _messages(topic_prefix, n, time.time() - 3600)
        publisher = threading.Thread(target=publish_all, args=(mosquitto_private.url, msgs), daemon=True)
        publisher.start()
        wait_for(lambda: _count(settings) >= 1000, what="a quarter of the stream stored")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    stored_at_kill = _count(settings)
    publisher.join(120)
    assert not publisher.is_alive()
    second = _spawn_ingest(settings, tmp_path, "second")
    try:
        wait_for(lambda: _count(settings) >= 2 * n, timeout=120, what=f"{2 * n} readings")
        # Stay a moment longer: redelivered messages must not add rows.
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    print(f"killed with {stored_at_kill} readings stored; after restart {_count(settings)} of {2 * n}")
    assert _count(settings) == 2 * n
    with connect(settings, autocommit=True) as conn:
        batteries = conn.execute(
            "SELECT count(DISTINCT time) FROM readings WHERE metric = 'battery'"
        ).fetchone()[0]
    assert batteries == n


@pytest.mark.slow
def test_database_down_for_seconds_then_back_loses_nothing(
    database_url: str, db_schema: str, mosquitto_private, topic_prefix: str, tcp_proxy
) -> None:
    mqtt_url = mosquitto_private.url
    parts = urlsplit(database_url)
    proxy = tcp_proxy(parts.hostname, parts.port or 5432)
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@{proxy.host}:{proxy.port}"))
    if parts.password:
        proxied = urlunsplit(
            parts._replace(netloc=f"{parts.username}:{parts.password}@{proxy.host}:{proxy.port}")
        )
    settings = make_settings(proxied, db_schema, mqtt_url, topic_prefix, retry_max_delay="1s")
    _prepare(settings)
    n = 1500
    msgs = _messages(topic_prefix, n, time.time() - 3600)
    with running_worker(settings) as worker:
        publish_all(mqtt_url, msgs[:500])
        wait_for(lambda: _count(settings) == 1000, what="the first 500 messages stored")
        proxy.stop()
        publish_all(mqtt_url, msgs[500:])
        wait_for(lambda: worker.stats.retries >= 2, what="the worker retrying while the database is away")
        assert worker.stats.acked == 500, "nothing may be acknowledged while the database is down"
        proxy.start()
        wait_for(lambda: _count(settings) == 2 * n, timeout=60, what=f"{2 * n} readings after the outage")
        wait_for(lambda: worker.stats.acked == n, what="every message acknowledged")
    print(f"database outage: {worker.stats.retries} retries, {_count(settings)} readings of {2 * n}")
    assert _count(settings) == 2 * n


def test_two_workers_share_one_subscription(
    database_url: str, db_schema: str, mosquitto_private, topic_prefix: str
) -> None:
    mqtt_url = mosquitto_private.url
    settings = make_settings(database_url, db_schema, mqtt_url, topic_prefix)
    _prepare(settings)
    group = f"g{uuid.uuid4().hex[:8]}"
    n = 2000
    with (
        running_worker(settings, client_id=f"{settings.mqtt.client_id}-0", shared_group=group) as w0,
        running_worker(settings, client_id=f"{settings.mqtt.client_id}-1", shared_group=group) as w1,
    ):
        publish_all(mqtt_url, _messages(topic_prefix, n, time.time() - 3600))
        wait_for(lambda: _count(settings) == 2 * n, what=f"{2 * n} readings")
        wait_for(lambda: w0.stats.acked + w1.stats.acked == n, what="every message acknowledged once")
    print(f"shared subscription: worker 0 took {w0.stats.received}, worker 1 took {w1.stats.received}")
    assert w0.stats.received > 0 and w1.stats.received > 0
    assert w0.stats.received + w1.stats.received == n
    assert _count(settings) == 2 * n


@pytest.mark.slow
def test_cli_workers_share_the_load(
    database_url: str, db_schema: str, mosquitto_private, topic_prefix: str, tmp_path: Path
) -> None:
    mqtt_url = mosquitto_private.url
    settings = make_settings(database_url, db_schema, mqtt_url, topic_prefix)
    _prepare(settings)
    config = tmp_path / "workers.yaml"
    data = settings.model_dump(mode="json", by_alias=True, exclude={"database_url", "mqtt_url"})
    config.write_text(json.dumps(data))
    env = {**os.environ, "SENSE311_DATABASE_URL": database_url, "SENSE311_MQTT_URL": mqtt_url}
    group = f"g{uuid.uuid4().hex[:8]}"
    log = (tmp_path / "workers.log").open("wb")
    command = [sys.executable, "-m", "sense311.cli", "--config", str(config)]
    command += ["ingest", "--workers", "2", "--group", group]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_subscribed(settings, mqtt_url, topic_prefix)
        # Both workers must be subscribed before the load starts, or one takes it all.
        wait_for(lambda: (tmp_path / "workers.log").read_text().count("subscribed to") == 2, what="2 workers")
        n = 1000
        publish_all(mqtt_url, _messages(topic_prefix, n, time.time() - 3600))
        wait_for(lambda: _count(settings) == 2 * n, what=f"{2 * n} readings from two workers")
        proc.send_signal(signal.SIGTERM)
        # The CLI kills a worker that has not stopped after its grace period (with its stacks logged).
        code = proc.wait(60)
        assert code == 0, (tmp_path / "workers.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "workers.log").read_text()
    assert "ingest worker 1 stopped" in text and "ingest worker 2 stopped" in text, text
    assert _count(settings) == 2 * n
