"""The pipeline without broker or database: field map, validation, dead-letter grouping."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from ingest.pipeline import Message, Pipeline
from ingest.registry import Registry, SensorInfo
from sense311.errors import ConfigError
from sense311.settings import load_settings

ROUTE = {"pattern": "gw/{gateway}/json", "decoder": "json"}


def _pipeline(**ingest: object) -> Pipeline:
    settings = load_settings(ingest={"routes": [ROUTE], **ingest})
    return Pipeline(settings.ingest, settings.storage.retention)


def _registry() -> Registry:
    reg = Registry()
    reg.add(SensorInfo("bin-1", "bin", "gw-a", {"depth_mm": 2000}))
    reg.add(SensorInfo("bin-nodepth", "bin", "gw-a", {}))
    return reg


def _run(p: Pipeline, *docs: dict, topic: str = "gw/gw-a/json"):
    now = time.time()
    processed = [p.decode(Message(topic, json.dumps(d).encode(), now)) for d in docs]
    return p.finalize(processed, _registry(), datetime.now(UTC))


def _doc(sensor: str = "bin-1", **metrics: object) -> dict:
    return {"sensor_id": sensor, "ts": time.time() - 10, "metrics": metrics}


def test_field_map_scale_and_transform() -> None:
    p = _pipeline(field_map={"level_cm": {"metric": "distance_mm", "scale": 10}})
    batch = _run(p, _doc(level_cm=50, distance=500))
    got = {(r[2], r[3]) for r in batch.rows}
    assert got == {("distance_mm", 500.0), ("fill_level", 0.75)}
    assert not batch.dead_letters


def test_missing_bin_depth_is_a_dead_letter_and_distance_is_kept() -> None:
    batch = _run(_pipeline(), _doc("bin-nodepth", distance=500))
    assert [(r[2], r[3]) for r in batch.rows] == [("distance_mm", 500.0)]
    assert [d.reason for d in batch.dead_letters] == ["missing_metadata"]


@pytest.mark.parametrize(
    ("mode", "rows", "reasons"), [("keep", 2, []), ("drop", 1, []), ("dead_letter", 1, ["unmapped_field"])]
)
def test_unmapped_fields(mode: str, rows: int, reasons: list[str]) -> None:
    batch = _run(_pipeline(unmapped_fields=mode), _doc(battery=50, lid_angle=12))
    assert len(batch.rows) == rows
    assert [d.reason for d in batch.dead_letters] == reasons


def test_configured_ranges_and_grouping_of_problems() -> None:
    p = _pipeline(ranges={"noise_db": [20, 140]})
    batch = _run(p, _doc(noise=5, battery=101, temperature=20))
    assert [(r[2], r[3]) for r in batch.rows] == [("temperature", 20.0)]
    assert len(batch.dead_letters) == 1  # one row per (message, reason)
    (dead,) = batch.dead_letters
    assert dead.reason == "out_of_range" and "noise_db=5" in dead.detail and "battery=101" in dead.detail


def test_huge_values_are_not_stored() -> None:
    batch = _run(_pipeline(), _doc(pressure=1e300))
    assert not batch.rows and batch.dead_letters


def test_events_outside_the_time_window() -> None:
    p = _pipeline()
    future = {"sensor_id": "bin-1", "ts": time.time() + 3600, "metrics": {"battery": 1}}
    old = {"sensor_id": "bin-1", "ts": time.time() - 2 * 365 * 86400, "metrics": {"battery": 1}}
    batch = _run(p, future, old)
    assert sorted(d.reason for d in batch.dead_letters) == ["future_timestamp", "too_old"]


def test_no_route_and_ignored_routes() -> None:
    settings = load_settings(ingest={"routes": [ROUTE, {"pattern": "gw/+/log", "ignore": True}]})
    p = Pipeline(settings.ingest, timedelta(days=30))
    now = time.time()
    processed = [p.decode(Message("gw/a/log", b"anything", now)), p.decode(Message("elsewhere", b"{}", now))]
    batch = p.finalize(processed, _registry(), datetime.now(UTC))
    assert [d.reason for d in batch.dead_letters] == ["no_route"]


def test_unknown_decoder_and_bad_options_fail_at_start() -> None:
    with pytest.raises(ConfigError, match='did you mean "chirpstack_v4"'):
        _pipeline(routes=[{"pattern": "a/#", "decoder": "chirpstak_v4"}])
    with pytest.raises(ConfigError):
        _pipeline(routes=[{"pattern": "a/#", "decoder": "senml", "options": {"sensor_frm": "bn"}}])
