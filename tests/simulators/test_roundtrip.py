"""Every simulator format through the real broker and the ingest decoders into the database.

The encoders are written from the formats' documentation and never import ``ingest``; the
decoders are written the same way. Values that come out of the database must be the values
the simulator meant, so a mistake on either side shows up here.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from sense311.db import connect, migrate
from sense311.settings import load_settings
from simulators import Simulation
from simulators.encoders import FORMATS, TIME_FAITHFUL, get_encoder
from simulators.fieldmap import IGNORED, INGEST_FIELD_MAP
from simulators.fleet import build_fleet
from simulators.registry import register_fleet
from tests.ingest.conftest import running_worker
from tests.util import publish_all, wait_for

_ON_OFF = {"options": {"on_off": True}}
#: Each format's topic shape as a route pattern (the simulator's own topics, behind a prefix).
ROUTES = {
    "json": ("sensors/json/{sensor_id}", "json", {}),
    "senml": ("sensors/senml/+", "senml", {}),
    "chirpstack_v4": ("application/+/device/{sensor_id}/event/+", "chirpstack_v4", _ON_OFF),
    "chirpstack_v3": ("application/+/device/{sensor_id}/event/+", "chirpstack_v3", _ON_OFF),
    "chirpstack_v3_pbjson": ("application/+/device/{sensor_id}/event/+", "chirpstack_v3", _ON_OFF),
    "ttn_v3": ("v3/+/devices/+/+", "ttn_v3", _ON_OFF),
    "zigbee2mqtt": ("zigbee2mqtt/{sensor_id...}", "flat_json", {"sensor_alias": "zigbee_name"}),
}
#: Encoders round to what real devices send (whole millimetres, 0.1 W …); the rest must match.
TOLERANCE = {"fill_level": 2e-3, "distance_mm": 0.51, "energy_wh": 0.051, "power_w": 0.051}


def test_every_format_is_routed() -> None:
    assert set(ROUTES) == set(FORMATS)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_format_round_trip(
    fmt: str, database_url: str, db_schema: str, mqtt_url: str, topic_prefix: str
) -> None:
    pattern, decoder, extra = ROUTES[fmt]
    field_map = dict(INGEST_FIELD_MAP[fmt]) | {name: None for name in IGNORED[fmt]}
    settings = load_settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        storage={"schema": db_schema},
        mqtt={"client_id": f"test-rt-{uuid.uuid4().hex[:8]}"},
        ingest={
            "routes": [
                {"pattern": topic_prefix + pattern, "decoder": decoder, "field_map": field_map, **extra}
            ],
            "flush_interval": "50ms",
            "unmapped_fields": "dead_letter",
        },
        metrics_port=0,
    )
    fleet = build_fleet(seed=5, counts={"bin": 2, "light": 2, "parking": 1, "air": 1})
    end = datetime.fromtimestamp((time.time() // 600) * 600, UTC) - timedelta(hours=1)
    sim = Simulation(fleet, None, end - timedelta(minutes=30), end, timedelta(minutes=10))
    messages = list(sim.messages())
    encoder = get_encoder(fmt, fleet, topic_prefix)
    with connect(settings, autocommit=True) as conn:
        migrate(conn, settings)
        register_fleet(conn, fleet)
    wire = [pair for m in messages for pair in encoder.encode(m)]
    with running_worker(settings) as worker:
        publish_all(mqtt_url, wire)
        wait_for(lambda: worker.stats.acked >= len(wire), what=f"{len(wire)} {fmt} messages acknowledged")
    with connect(settings, autocommit=True) as conn:
        dead = conn.execute("SELECT reason, detail FROM dead_letters").fetchall()
        rows = conn.execute("SELECT sensor_id, metric, time, value FROM readings").fetchall()
    assert dead == [], f"{fmt}: {dead[:3]}"
    expected: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for m in messages:
        for metric, value in m.values.items():
            expected[(m.sensor_id, metric)].append((m.time, float(value)))
    stored: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for sid, metric, t, value in rows:
        stored[(sid, metric)].append((t, value))
    assert {sid for sid, _ in stored} == {s.id for s in fleet.sensors()}, "every sensor arrived"
    for key, got in stored.items():
        assert key in expected, f"{fmt}: unexpected metric {key}"
        want = expected[key]
        assert len(got) == len(want), f"{fmt} {key}: {len(got)} rows, expected {len(want)}"
        tol = TOLERANCE.get(key[1], 1e-6)
        if fmt in TIME_FAITHFUL:
            want_at = dict(want)
            for t, value in got:
                assert t in want_at, f"{fmt} {key}: no reading at {t}"
                assert math.isclose(value, want_at[t], rel_tol=1e-6, abs_tol=tol), (
                    fmt,
                    key,
                    t,
                    value,
                    want_at[t],
                )
        else:
            # Zigbee2MQTT carries no time: compare the values in arrival order.
            for (_, value), (_, w) in zip(sorted(got), sorted(want), strict=True):
                assert math.isclose(value, w, rel_tol=1e-6, abs_tol=tol), (fmt, key, value, w)
