"""Training, versioning and scoring through the database; a rule on a detector score."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from detectors import DetectorSettings, score_instants, train_models
from detectors.errors import DetectorError
from detectors.jobs import Scorer
from detectors.store import list_models, load_pinned, pin
from tests.detectors.dbhelp import LAMPS, START, add_street

JOB = {
    "name": "lamp_power_low",
    "detector": "seasonal",
    "kind": ["light"],
    "metrics": ["power_w"],
    "params": {"direction": "low", "active_above": 1.0, "period": "day", "min_occurrences": 2},
    "interval": "10m",
    "lateness": "0s",
}


def settings_with(**job: object) -> DetectorSettings:
    return DetectorSettings(jobs=[{**JOB, **job}], train_window="3d")


def versions(conn: psycopg.Connection) -> list[tuple[int, str, bool]]:
    return [(m.version, m.status, m.pinned) for m in reversed(list_models(conn, "lamp_power_low"))]


def test_train_versions_and_pins(conn: psycopg.Connection) -> None:
    add_street(conn, days=4)
    settings = settings_with()
    first = train_models(conn, settings, START + timedelta(days=3))
    assert [(r.status, r.version, r.sensors) for r in first] == [("trained", 1, 6)]
    second = train_models(conn, settings, START + timedelta(days=4))
    assert second[0].version == 2
    assert versions(conn) == [(1, "trained", False), (2, "trained", True)]
    model = load_pinned(conn, "lamp_power_low")
    assert model.trained_to == START + timedelta(days=4)
    assert model.trained_from == START + timedelta(days=1)
    assert model.kind == "seasonal" and model.params["params"]["direction"] == "low"
    assert set(model.model["states"]) == {(lamp, "power_w") for lamp in LAMPS}
    assert model.metrics["readings"] == 6 * (3 * 144 - 1)  # (day 1, day 4], the last reading at 23:50
    pin(conn, "lamp_power_low", 1)
    assert versions(conn)[0] == (1, "trained", True)


def test_a_failed_training_keeps_the_pinned_version(conn: psycopg.Connection) -> None:
    add_street(conn, days=4)
    train_models(conn, settings_with(), START + timedelta(days=3))
    # Nothing to learn from a week later: the new version fails and says why.
    failed = train_models(conn, settings_with(), START + timedelta(days=30))
    assert failed[0].status == "failed" and "no readings of power_w for 6 sensors" in (failed[0].error or "")
    assert versions(conn) == [(1, "trained", True), (2, "failed", False)]
    assert load_pinned(conn, "lamp_power_low").version == 1
    row = list_models(conn, "lamp_power_low")[0]
    assert row.error and row.error.startswith("no readings")
    with pytest.raises(DetectorError, match="failed to train; it cannot be pinned"):
        pin(conn, "lamp_power_low", 2)


def test_scoring_writes_instants_with_the_pinned_version(conn: psycopg.Connection) -> None:
    add_street(conn, days=4, half_power=("lamp-3", START + timedelta(days=3, hours=21)))
    settings = settings_with()
    train_models(conn, settings, START + timedelta(days=3))
    now = START + timedelta(days=4)
    report = score_instants(conn, settings, now)
    assert report.skipped == {} and report.instants["lamp_power_low"] == 144
    rows = conn.execute(
        "SELECT sensor_id, max(score), count(*), min(model_version) "
        "FROM detector_scores GROUP BY 1 ORDER BY 1"
    ).fetchall()
    by_lamp = {r[0]: r for r in rows}
    assert by_lamp["lamp-3"][1] > 0.9
    assert max(r[1] for lamp, r in by_lamp.items() if lamp != "lamp-3") < 0.5
    assert {r[3] for r in rows} == {"1"}
    evidence = conn.execute(
        "SELECT evidence FROM detector_scores WHERE sensor_id = 'lamp-3' ORDER BY score DESC LIMIT 1"
    ).fetchone()[0]
    assert evidence["metric"] == "power_w" and evidence["z"] < -10 and evidence["expected"] > 30
    # Nothing new is due: a second run writes nothing; the watermark is the last instant.
    again = score_instants(conn, settings, now)
    assert again.instants["lamp_power_low"] == 0
    assert conn.execute("SELECT watermark FROM detector_watermarks").fetchone()[0] == now


def test_live_runs_equal_one_catch_up(conn: psycopg.Connection) -> None:
    add_street(conn, days=4, half_power=("lamp-1", START + timedelta(days=3, hours=22)))
    settings = settings_with()
    train_models(conn, settings, START + timedelta(days=3))
    scorer = Scorer(settings)
    for hours in range(1, 25):
        score_instants(conn, settings, START + timedelta(days=3, hours=hours), scorer=scorer)
    live = conn.execute("SELECT time, sensor_id, score FROM detector_scores ORDER BY 1, 2").fetchall()
    conn.execute("DELETE FROM detector_scores")
    conn.execute("DELETE FROM detector_watermarks")
    score_instants(conn, settings, START + timedelta(days=4))
    once = conn.execute("SELECT time, sensor_id, score FROM detector_scores ORDER BY 1, 2").fetchall()
    assert live == once


def test_scoring_before_the_training_end_is_refused(conn: psycopg.Connection) -> None:
    add_street(conn, days=4)
    settings = settings_with()
    train_models(conn, settings, START + timedelta(days=3))
    report = score_instants(
        conn,
        settings,
        START + timedelta(days=4),
        start=START + timedelta(days=2),
        end=START + timedelta(days=4),
    )
    assert "before its model's training end" in report.skipped["lamp_power_low"]


def test_a_job_without_a_model_is_skipped_with_the_reason(conn: psycopg.Connection) -> None:
    report = score_instants(conn, settings_with(), START)
    assert report.skipped == {
        "lamp_power_low": (
            "detector job 'lamp_power_low' has no pinned model; run 'sense311 detectors train' first"
        )
    }


def test_a_rule_on_a_detector_score_fires_in_a_backtest(conn: psycopg.Connection, tmp_path: Path) -> None:
    from rules import backtest, load_rules

    add_street(conn, days=4, half_power=("lamp-4", START + timedelta(days=3, hours=20)))
    settings = settings_with()
    train_models(conn, settings, START + timedelta(days=3))
    score_instants(conn, settings, START + timedelta(days=4))
    path = tmp_path / "detector-rules.yaml"
    path.write_text(
        textwrap.dedent(
            """
            city: {lat: 52.37, lon: 4.89, timezone: UTC}
            rules:
              - id: lamp-power-low
                problem: partial_lamp_failure
                select: {kind: light}
                metric: detector.lamp_power_low
                aggregate: max
                window: 10m
                interval: 10m
                lateness: 0s
                condition: "> 0.9"
                for: 20m
                clear: "< 0.5"
                no_data: keep_last
            """
        ),
        encoding="utf-8",
    )
    result = backtest(conn, load_rules(path), START + timedelta(days=3), START + timedelta(days=4))
    fired = [(d.sensor_id, d.fired_at) for d in result.detections if d.kind == "detection"]
    # Pending from 20:00 (the first half-power reading), firing 20 minutes later.
    assert fired == [("lamp-4", START + timedelta(days=3, hours=20, minutes=20))]


def test_the_service_ticks_with_the_time_it_is_given(conn: psycopg.Connection, settings: object) -> None:
    from detectors.service import DetectorService

    add_street(conn, days=4)
    service = DetectorService(settings, settings_with())
    trained = service.train_tick(START + timedelta(days=3))
    assert trained is not None and trained[0].status == "trained"
    report = service.score_tick(START + timedelta(days=3, hours=1))
    assert report is not None and report.instants == {"lamp_power_low": 6}
