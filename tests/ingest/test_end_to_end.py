"""Readings published to a real broker land in the real database, exactly once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from sense311.db import connect
from sense311.settings import Settings
from tests.ingest.conftest import running_worker
from tests.util import publish_all, wait_for


def _count(settings: Settings, sql: str, params: tuple = ()) -> int:
    with connect(settings, autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]


def _rows(settings: Settings) -> list[tuple]:
    with connect(settings, autocommit=True) as conn:
        return conn.execute("SELECT sensor_id, metric, value FROM readings ORDER BY 1, 2, 3").fetchall()


def _json(sensor: str, ts: float, **metrics: float) -> bytes:
    return json.dumps({"sensor_id": sensor, "ts": ts, "metrics": metrics}).encode()


def test_plain_json_is_stored_with_field_map_and_latest_value(
    ingest_settings: Settings, mqtt_url: str, topic_prefix: str
) -> None:
    now = time.time()
    topic = f"{topic_prefix}gateways/gw-a/json"
    with running_worker(ingest_settings):
        publish_all(
            mqtt_url,
            [
                (topic, _json("bin-001", now - 60, distance=250, battery=97, temperature=11.5)),
                (topic, _json("bin-001", now - 30, distance=500, battery=96, temperature=11.0)),
            ],
        )
        wait_for(
            lambda: _count(ingest_settings, "SELECT count(*) FROM readings") == 8, what="8 readings stored"
        )
    rows = _rows(ingest_settings)
    assert ("bin-001", "fill_level", 0.75) in rows and ("bin-001", "fill_level", 0.5) in rows
    assert ("bin-001", "distance_mm", 250.0) in rows
    with connect(ingest_settings, autocommit=True) as conn:
        latest = dict(
            conn.execute("SELECT metric, value FROM latest_readings WHERE sensor_id = 'bin-001'").fetchall()
        )
    assert latest == {"fill_level": 0.5, "distance_mm": 500.0, "battery": 96.0, "temperature": 11.0}


def test_duplicates_are_stored_once(ingest_settings: Settings, mqtt_url: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}gateways/gw-a/json"
    body = _json("bin-002", time.time() - 10, battery=80, temperature=9)
    with running_worker(ingest_settings) as worker:
        publish_all(mqtt_url, [(topic, body)] * 5)
        wait_for(lambda: worker.stats.received >= 5, what="5 messages received")
        wait_for(lambda: worker.stats.acked >= 5, what="5 messages acknowledged")
    assert _count(ingest_settings, "SELECT count(*) FROM readings") == 2
    assert worker.stats.inserted == 2 and worker.stats.rows == 10


def test_every_rejection_is_a_dead_letter_with_its_reason(
    ingest_settings: Settings, mqtt_url: str, topic_prefix: str
) -> None:
    now = time.time()
    gw = f"{topic_prefix}gateways/gw-a/json"
    big = _json("bin-001", now, battery=1) + b" " * 70_000
    cases = {
        "invalid_json": b"{not json",
        "unknown_sensor": _json("nobody-here", now, battery=50),
        "future_timestamp": _json("bin-001", now + 86400, battery=50),
        "too_old": _json("bin-001", now - 400 * 86400, battery=50),
        "out_of_range": _json("bin-001", now - 5, battery=250),
        "payload_too_large": big,
    }

    def dead(reason: str) -> float:
        return REGISTRY.get_sample_value("sense311_ingest_dead_letters_total", {"reason": reason}) or 0.0

    before = {reason: dead(reason) for reason in cases}
    with running_worker(ingest_settings):
        publish_all(
            mqtt_url,
            [(gw, body) for body in cases.values()]
            + [(f"{topic_prefix}gateways/gw-a/json", _json("bin-001", now - 1, temperature=12))],
        )
        wait_for(
            lambda: _count(ingest_settings, "SELECT count(*) FROM dead_letters") >= len(cases),
            what="a dead letter per case",
        )
        wait_for(
            lambda: _count(ingest_settings, "SELECT count(*) FROM readings") == 1, what="the good reading"
        )
    with connect(ingest_settings, autocommit=True) as conn:
        got = {r: (p, d) for r, p, d in conn.execute("SELECT reason, payload, detail FROM dead_letters")}
    assert set(got) == set(cases)
    for reason, body in cases.items():
        payload, detail = got[reason]
        assert detail, reason
        if reason != "payload_too_large":
            assert bytes(payload) == body, reason
    assert "battery=250" in got["out_of_range"][1]
    assert all(dead(reason) == before[reason] + 1 for reason in cases), "a Prometheus count per reason"


def test_sentinel_rejected_per_field_other_fields_kept(
    ingest_settings: Settings, mqtt_url: str, topic_prefix: str
) -> None:
    body = json.dumps(
        {
            "sensor_id": "bin-001",
            "ts": time.time() - 3,
            "metrics": {"temperature": "No Sensor", "battery": "88 %", "distance": "400"},
        }
    ).encode()
    with running_worker(ingest_settings):
        publish_all(mqtt_url, [(f"{topic_prefix}gateways/gw-a/json", body)])
        wait_for(
            lambda: _count(ingest_settings, "SELECT count(*) FROM dead_letters") == 1, what="one dead letter"
        )
        wait_for(lambda: _count(ingest_settings, "SELECT count(*) FROM readings") == 3, what="3 readings")
    rows = _rows(ingest_settings)
    assert ("bin-001", "battery", 88.0) in rows and ("bin-001", "fill_level", 0.6) in rows
    with connect(ingest_settings, autocommit=True) as conn:
        reason, detail = conn.execute("SELECT reason, detail FROM dead_letters").fetchone()
    assert "temperature" in detail and reason


def test_auto_registration_when_configured(
    database_url: str, db_schema: str, mqtt_url: str, topic_prefix: str
) -> None:
    from sense311.db import migrate
    from tests.ingest.conftest import make_settings

    settings = make_settings(database_url, db_schema, mqtt_url, topic_prefix, unknown_sensors="auto_register")
    with connect(settings, autocommit=True) as conn:
        migrate(conn, settings)
    with running_worker(settings):
        publish_all(
            mqtt_url, [(f"{topic_prefix}gateways/gw-z/json", _json("newcomer", time.time() - 2, battery=70))]
        )
        wait_for(lambda: _count(settings, "SELECT count(*) FROM readings") == 1, what="the reading")
    with connect(settings, autocommit=True) as conn:
        assert conn.execute("SELECT kind, gateway FROM sensors WHERE id = 'newcomer'").fetchone() == (
            "unknown",
            "gw-z",
        )


def test_gateway_binding_is_enforced_when_configured(
    database_url: str, db_schema: str, mqtt_url: str, topic_prefix: str
) -> None:
    from sense311.db import migrate
    from tests.ingest.conftest import SENSORS, make_settings, register

    settings = make_settings(database_url, db_schema, mqtt_url, topic_prefix, enforce_gateway=True)
    with connect(settings, autocommit=True) as conn:
        migrate(conn, settings)
        register(conn, SENSORS)
    now = time.time()
    with running_worker(settings):
        publish_all(
            mqtt_url,
            [
                (f"{topic_prefix}gateways/gw-b/json", _json("bin-001", now - 2, battery=70)),  # bound to gw-a
                (f"{topic_prefix}gateways/gw-a/json", _json("bin-001", now - 1, battery=71)),
            ],
        )
        wait_for(
            lambda: _count(settings, "SELECT count(*) FROM dead_letters WHERE reason = 'wrong_gateway'") == 1,
            what="the wrong-gateway dead letter",
        )
        wait_for(lambda: _count(settings, "SELECT count(*) FROM readings") == 1, what="the bound reading")


def test_chirpstack_uplink_through_broker(
    ingest_settings: Settings, mqtt_url: str, topic_prefix: str
) -> None:
    t = datetime.now(UTC) - timedelta(seconds=30)
    body = {
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "time": t.isoformat().replace("+00:00", "Z"),
        "deviceInfo": {"devEui": "0101010101010101", "deviceName": "bin-17"},
        "fCnt": 10,
        "fPort": 1,
        "data": "AQID",
        "object": {"distance": 750.0, "battery": 88.0},
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -57, "snr": 10.0}],
    }
    topic = f"{topic_prefix}application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"
    with running_worker(ingest_settings):
        publish_all(mqtt_url, [(topic, json.dumps(body).encode())])
        wait_for(lambda: _count(ingest_settings, "SELECT count(*) FROM readings") == 3, what="3 readings")
    rows = _rows(ingest_settings)
    assert ("0101010101010101", "fill_level", 0.5) in rows
    assert ("0101010101010101", "battery", 88.0) in rows


def test_partitions_are_created_on_demand_for_backfills(
    ingest_settings: Settings, mqtt_url: str, topic_prefix: str
) -> None:
    now = time.time()
    topic = f"{topic_prefix}gateways/gw-a/json"
    # A backfill interleaved with live data, twice: the second round finds its partitions known.
    days_back = (60, 0, 95, 60, 0, 95)
    with running_worker(ingest_settings) as worker:
        for i, back in enumerate(days_back):
            publish_all(mqtt_url, [(topic, _json("bin-001", now - back * 86400 - i, battery=40 + i))])
            wait_for(lambda n=i + 1: worker.stats.acked == n, what=f"message {i + 1} acknowledged")
    with connect(ingest_settings, autocommit=True) as conn:
        values = [r[0] for r in conn.execute("SELECT value FROM readings ORDER BY value")]
    assert values == [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]
