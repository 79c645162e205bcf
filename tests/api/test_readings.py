"""Readings over HTTP: raw rows with a limit, and time buckets with avg/min/max/count."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import T0, Api, add_readings, add_sensors


def _fill(api: Api) -> None:
    add_sensors(api.db, {"id": "centrum/bin-1", "kind": "bin"})
    rows = [(T0 + timedelta(minutes=10 * i), "centrum/bin-1", "fill_level", i / 10) for i in range(12)]
    rows += [(T0 + timedelta(minutes=10 * i), "centrum/bin-1", "temperature", 20.0 + i) for i in range(12)]
    add_readings(api.db, rows)


def test_raw_readings_by_sensor_metric_and_range(api: Api) -> None:
    _fill(api)
    params = {
        "sensor_id": "centrum/bin-1",
        "metric": "fill_level",
        "start": T0.isoformat(),
        "end": (T0 + timedelta(minutes=50)).isoformat(),
    }
    body = api.http.get("/api/v1/readings", params=params).json()
    assert [r["value"] for r in body["items"]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert body["truncated"] is False and body["sensor_id"] == "centrum/bin-1"

    limited = api.http.get("/api/v1/readings", params={**params, "limit": 4, "order": "desc"}).json()
    assert [r["value"] for r in limited["items"]] == [0.5, 0.4, 0.3, 0.2] and limited["truncated"] is True

    # Both metrics without a metric filter; a time without a zone is UTC.
    naive = {
        "sensor_id": "centrum/bin-1",
        "start": "2026-03-02T12:00:00",
        "end": "2026-03-02T12:00:00.000001",
    }
    both = api.http.get("/api/v1/readings", params=naive).json()
    assert sorted(r["metric"] for r in both["items"]) == ["fill_level", "temperature"]

    backwards = api.http.get(
        "/api/v1/readings", params={**params, "start": params["end"], "end": params["start"]}
    )
    assert backwards.status_code == 422 and "must be after 'start'" in backwards.json()["error"]
    too_many = api.http.get("/api/v1/readings", params={**params, "limit": 10_001})
    assert too_many.status_code == 422 and "use buckets" in too_many.json()["error"]
    bad_time = api.http.get("/api/v1/readings", params={**params, "start": "yesterday"})
    assert bad_time.status_code == 422 and bad_time.json()["error"].startswith("query parameter 'start'")


def test_bucketed_readings(api: Api) -> None:
    _fill(api)
    params = {
        "sensor_id": "centrum/bin-1",
        "metric": "temperature",
        "start": T0.isoformat(),
        "end": (T0 + timedelta(hours=2)).isoformat(),
        "interval": "1h",
    }
    body = api.http.get("/api/v1/readings/buckets", params=params).json()
    assert body["interval"] == "1h"
    assert [(b["bucket"][:19], b["count"], b["min"], b["max"], b["avg"]) for b in body["items"]] == [
        ("2026-03-02T12:00:00", 6, 20.0, 25.0, 22.5),
        ("2026-03-02T13:00:00", 6, 26.0, 31.0, 28.5),
    ]
    half = api.http.get("/api/v1/readings/buckets", params={**params, "interval": "30m"}).json()
    assert [b["count"] for b in half["items"]] == [3, 3, 3, 3]

    for interval, message in [
        ("fortnight", "expected a duration"),
        ("0s", "expected 1s to 366d"),
        ("1s", "buckets of 1s"),
    ]:
        response = api.http.get(
            "/api/v1/readings/buckets",
            params={**params, "interval": interval, "end": (T0 + timedelta(days=1)).isoformat()},
        )
        assert response.status_code == 422 and message in response.json()["error"], (interval, response.text)
