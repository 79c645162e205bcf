"""Rules (list, validate, backtest) and detectors (models, latest scores) over HTTP."""

from __future__ import annotations

from datetime import timedelta

from psycopg.types.json import Jsonb

from detectors.store import save_failed, save_trained
from tests.api.conftest import T0, Api, add_readings, add_sensors

GOOD = """\
rules:
  - id: full-bin
    problem: bin_overflow
    select: {kind: bin}
    metric: fill_level
    aggregate: min
    window: 5m
    condition: ">= 0.95"
    for: 10m
"""

BAD = """\
rules:
  - id: full-bin
    problem: bin_overflow
    metric: fill_level
    window: 5m
    condition: ">= 0.95"
    for: 15
    severty: high
"""


def test_the_loaded_rule_set_is_listed(api: Api) -> None:
    body = api.http.get("/api/v1/rules").json()
    assert body["files"] == ["builtin:city"] and body["city"]["timezone"] == "Europe/Amsterdam"
    rule = next(r for r in body["rules"] if r["id"] == "bin-overflow")
    assert rule["file"] == "builtin:city" and rule["line"] > 0 and len(rule["version"]) == 12
    assert rule["definition"]["metric"] == "fill_level"
    assert body["reload_error"] is None


def test_validate_a_posted_rule_file(api: Api) -> None:
    headers = {"Content-Type": "application/yaml"}
    good = api.http.post("/api/v1/rules/validate", content=GOOD, headers=headers).json()
    assert good["valid"] is True and good["problems"] == []
    assert [(r["id"], r["file"], r["line"]) for r in good["rules"]] == [("full-bin", "rules.yaml", 2)]

    bad = api.http.post(
        "/api/v1/rules/validate", params={"filename": "bins.yaml"}, content=BAD, headers=headers
    )
    assert bad.status_code == 200
    problems = bad.json()["problems"]
    assert bad.json()["valid"] is False
    assert {(p["file"], p["line"], p["field"]) for p in problems} == {
        ("bins.yaml", 7, "for"),
        ("bins.yaml", 8, "severty"),
    }
    assert any("did you mean 'severity'" in p["message"] for p in problems)

    syntax = api.http.post("/api/v1/rules/validate", content="rules: [\n", headers=headers).json()
    assert syntax["valid"] is False and "invalid YAML" in syntax["problems"][0]["message"]
    wrong_type = api.http.post(
        "/api/v1/rules/validate", content="{}", headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415


def test_backtest_returns_the_rules_json(api: Api) -> None:
    add_sensors(
        api.db, {"id": "bin-1", "kind": "bin", "lat": 52.37, "lon": 4.89}, {"id": "bin-2", "kind": "bin"}
    )
    rows = [
        (T0 + timedelta(minutes=i), "bin-1", "fill_level", 0.99 if 10 <= i < 40 else 0.5) for i in range(60)
    ]
    rows += [(T0 + timedelta(minutes=i), "bin-2", "fill_level", 0.3) for i in range(60)]
    add_readings(api.db, rows)
    period = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}

    refused = api.http.post(
        "/api/v1/rules/backtest", json={**period, "rules_yaml": GOOD}, headers=api.auth("read")
    )
    assert refused.status_code == 403

    response = api.http.post(
        "/api/v1/rules/backtest", json={**period, "rules_yaml": GOOD}, headers=api.auth("write")
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert [(d["rule_id"], d["sensor_id"], d["kind"]) for d in result["detections"]] == [
        ("full-bin", "bin-1", "detection"),
        ("full-bin", "bin-1", "resolution"),
    ]
    assert (
        result["rules"][0]["sensors"] == 2 and len(result["incidents"]) == 1 and len(result["tickets"]) == 1
    )

    loaded = api.http.post(
        "/api/v1/rules/backtest", json={**period, "rule_ids": ["bin-overflow"]}, headers=api.auth("write")
    )
    assert loaded.status_code == 200 and [r["rule_id"] for r in loaded.json()["rules"]] == ["bin-overflow"]

    typo = api.http.post(
        "/api/v1/rules/backtest", json={**period, "rule_ids": ["bin-overflw"]}, headers=api.auth("write")
    )
    assert typo.status_code == 422 and "did you mean 'bin-overflow'" in typo.json()["error"]
    long = {"start": T0.isoformat(), "end": (T0 + timedelta(days=40)).isoformat()}
    too_long = api.http.post("/api/v1/rules/backtest", json=long, headers=api.auth("write"))
    assert too_long.status_code == 422 and "at most 31d" in too_long.json()["error"]
    invalid = api.http.post(
        "/api/v1/rules/backtest", json={**period, "rules_yaml": BAD}, headers=api.auth("write")
    )
    assert invalid.status_code == 422 and invalid.json()["error"].startswith(
        "rules_yaml is invalid: line 7: 'for':"
    )


def test_detector_models_and_latest_scores(api: Api) -> None:
    common = {
        "kind": "seasonal",
        "params": {"period": "day"},
        "trained_from": T0 - timedelta(days=7),
        "trained_to": T0,
    }
    with api.db.transaction():
        save_trained(
            api.db, name="fill-seasonal", metrics={"sensors": 2}, model={"state": 1}, now=T0, **common
        )
        save_failed(api.db, name="fill-seasonal", error="too few readings", now=T0, **common)
    api.db.execute(
        "INSERT INTO detector_watermarks (detector, watermark, updated_at) VALUES ('spikes', %s, %s)",
        (T0, T0),
    )
    api.db.execute(
        """INSERT INTO detector_scores (time, sensor_id, detector, score, evidence, model_version)
           VALUES (%s, 'bin-1', 'fill-seasonal', 0.2, %s, '1'), (%s, 'bin-1', 'fill-seasonal', 0.9, %s, '1'),
                  (%s, 'bin-1', 'spikes', 0.1, '{}', NULL), (%s, 'bin-2', 'spikes', 0.7, '{}', NULL)""",
        (T0, Jsonb({}), T0 + timedelta(minutes=1), Jsonb({"z": 4.2}), T0, T0),
    )
    body = api.http.get("/api/v1/detectors").json()
    assert "seasonal" in body["available"]
    [job] = body["jobs"]
    assert job["name"] == "fill-seasonal" and job["pinned_version"] == 1
    assert [(v["version"], v["status"]) for v in job["versions"]] == [(2, "failed"), (1, "trained")]
    assert job["versions"][0]["error"] == "too few readings"

    scores = api.http.get("/api/v1/detectors/scores", params={"sensor_id": "bin-1"}).json()
    assert [(s["detector"], s["score"], s["evidence"]) for s in scores["scores"]] == [
        ("fill-seasonal", 0.9, {"z": 4.2}),
        ("spikes", 0.1, {}),
    ]
