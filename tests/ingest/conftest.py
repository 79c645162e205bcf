"""Fixtures for ingest tests: a migrated schema with registered sensors, and running workers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from ingest.worker import IngestWorker
from sense311.db import connect, migrate
from sense311.settings import Settings, load_settings

SENSORS = [
    # id, kind, gateway, metadata
    ("bin-001", "bin", "gw-a", '{"depth_mm": 1000}'),
    ("bin-002", "bin", "gw-a", '{"depth_mm": 1200}'),
    ("lamp-001", "streetlight", "gw-b", "{}"),
    ("0101010101010101", "bin", None, '{"depth_mm": 1500}'),
    ("a84041000181c61a", "streetlight", None, "{}"),
]


def ingest_routes(prefix: str) -> list[dict[str, Any]]:
    return [
        {"pattern": f"{prefix}gateways/{{gateway}}/json", "decoder": "json"},
        {"pattern": f"{prefix}gateways/{{gateway}}/senml", "decoder": "senml"},
        {"pattern": f"{prefix}application/+/device/{{sensor_id}}/event/+", "decoder": "chirpstack_v4"},
        {"pattern": f"{prefix}v3/+/devices/+/+", "decoder": "ttn_v3"},
        {"pattern": f"{prefix}zigbee2mqtt/bridge/#", "ignore": True},
        {"pattern": f"{prefix}zigbee2mqtt/{{sensor_id...}}", "decoder": "flat_json"},
    ]


def make_settings(database_url: str, schema: str, mqtt_url: str, prefix: str, **ingest: Any) -> Settings:
    return load_settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        storage={"schema": schema, "partition_width": "7d"},
        mqtt={"client_id": f"test-ingest-{uuid.uuid4().hex[:8]}"},
        ingest={"routes": ingest_routes(prefix), "flush_interval": "50ms", **ingest},
        metrics_port=0,
    )


@pytest.fixture
def ingest_settings(database_url: str, db_schema: str, mqtt_url: str, topic_prefix: str) -> Settings:
    settings = make_settings(database_url, db_schema, mqtt_url, topic_prefix)
    with connect(settings, autocommit=True) as conn:
        migrate(conn, settings)
        register(conn, SENSORS)
    return settings


def register(conn: psycopg.Connection, sensors: list[tuple[str, str, str | None, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO sensors (id, kind, gateway, metadata) VALUES (%s, %s, %s, %s)", sensors)


@contextmanager
def running_worker(settings: Settings, **kwargs: Any) -> Iterator[IngestWorker]:
    worker = IngestWorker(settings, **kwargs)
    worker.start(timeout=30)
    errors: list[BaseException] = []

    def _run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=_run, name="ingest-test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "the ingest worker did not stop within 30 s"
        if errors:
            raise errors[0]


@pytest.fixture
def worker_factory() -> Callable[..., Any]:
    return running_worker
