"""Live evaluation against PostgreSQL: persisted state, restarts, late data, catch-up, isolation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from rules import backtest, evaluate_due
from rules.evaluator import evaluate_rule
from sense311.db import connect
from sense311.settings import Settings
from tests.rules.rulehelp import (
    T0,
    add_readings,
    add_sensors,
    detections_in_db,
    minutes,
    rules_from,
    state_rows,
)

FULL = """
rules:
  - id: full
    problem: bin_overflow
    select: {kind: bin}
    metric: fill_level
    aggregate: mean
    window: 5m
    condition: "> 0.9"
    for: 30m
    clear: "< 0.5"
    interval: 1m
    lateness: 2m
"""


def fill(conn: psycopg.Connection, sensor: str, start: int, end: int, value: float) -> None:
    """One reading a minute (at :30 s) from minute ``start`` to ``end`` (exclusive) after T0."""
    add_readings(
        conn,
        [(T0 + minutes(m) + timedelta(seconds=30), sensor, "fill_level", value) for m in range(start, end)],
    )


def evaluate(conn: psycopg.Connection, ruleset, minute: float):
    report = evaluate_due(conn, ruleset, T0 + minutes(minute))
    assert not report.errors, report.errors
    return report


def test_restart_in_the_middle_of_pending_neither_resets_for_nor_fires_twice(
    conn: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    ruleset = rules_from(tmp_path, FULL)
    add_sensors(conn, ["bin-1", "bin-2"])
    fill(conn, "bin-1", 0, 10, 0.2)
    fill(conn, "bin-1", 10, 90, 0.95)
    fill(conn, "bin-2", 0, 90, 0.3)
    evaluate(conn, ruleset, 2)  # first run: instant T0 only
    evaluate(conn, ruleset, 22)  # pending since minute 15, when the 5-minute window holds only 0.95s
    assert state_rows(conn)[("full", "bin-1")] == ("pending", T0 + minutes(15))

    # "Restart": a new process, a new connection, the rules loaded again.
    with connect(settings, "restarted", autocommit=True) as other:
        reloaded = rules_from(tmp_path, FULL)
        report = evaluate_due(other, reloaded, T0 + minutes(46))
        assert report.detections == []  # 15 + 30 = 45, evaluated from 47 on (lateness)
        report = evaluate_due(other, reloaded, T0 + minutes(47))
        [detection] = report.detections
        assert detection.fired_at == T0 + minutes(45) and detection.onset == T0 + minutes(15)
        assert detection.sensor_id == "bin-1" and detection.evidence["for"] == "30m"
        # The same clock again, or an earlier one: nothing is due, nothing fires twice.
        assert evaluate_due(other, reloaded, T0 + minutes(47)).detections == []
        assert evaluate_due(other, reloaded, T0 + minutes(30)).runs[0].instants == []
    assert len(detections_in_db(conn)) == 1


def test_a_crash_before_commit_redoes_the_same_instants(conn: psycopg.Connection, tmp_path: Path) -> None:
    ruleset = rules_from(tmp_path, FULL.replace("for: 30m", "for: 0"))
    add_sensors(conn, ["bin-1"])
    fill(conn, "bin-1", 0, 5, 0.2)
    fill(conn, "bin-1", 5, 30, 0.95)
    evaluate(conn, ruleset, 2)
    # The transaction is rolled back, as a crash before the commit would leave it.
    with pytest.raises(RuntimeError), conn.transaction():
        run = evaluate_rule(conn, ruleset.get("full"), None, T0 + minutes(12))
        assert len(run.detections) == 1
        raise RuntimeError("crash")
    assert detections_in_db(conn) == set() and state_rows(conn) == {}
    first = evaluate(conn, ruleset, 12).detections
    assert len(first) == 1 and detections_in_db(conn) == {
        (d.rule_id, d.rule_version, d.sensor_id, d.fired_at, d.kind) for d in first
    }
    assert evaluate(conn, ruleset, 12).detections == []


def test_late_data_within_lateness_is_seen(conn: psycopg.Connection, tmp_path: Path) -> None:
    ruleset = rules_from(tmp_path, FULL.replace("for: 30m", "for: 0").replace("window: 5m", "window: 1m"))
    add_sensors(conn, ["bin-1"])
    fill(conn, "bin-1", 0, 10, 0.2)
    evaluate(conn, ruleset, 11)  # evaluates up to minute 9
    # A reading for minute 10 arrives 90 s late: within the 2 minutes of lateness.
    add_readings(conn, [(T0 + minutes(10) + timedelta(seconds=30), "bin-1", "fill_level", 0.99)])
    report = evaluate(conn, ruleset, 13)
    assert [d.fired_at for d in report.detections] == [T0 + minutes(11)]


def test_an_instant_is_not_evaluated_before_t_plus_lateness(conn: psycopg.Connection, tmp_path: Path) -> None:
    ruleset = rules_from(tmp_path, FULL)
    add_sensors(conn, ["bin-1"])
    evaluate(conn, ruleset, 2)
    report = evaluate_due(conn, ruleset, T0 + minutes(12) - timedelta(microseconds=1))
    assert report.runs[0].instants[-1] == T0 + minutes(9)
    report = evaluate_due(conn, ruleset, T0 + minutes(12))
    assert report.runs[0].instants == [T0 + minutes(10)]


def test_data_later_than_lateness_is_not_applied_retroactively(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    ruleset = rules_from(tmp_path, FULL.replace("for: 30m", "for: 0").replace("window: 5m", "window: 1m"))
    add_sensors(conn, ["bin-1"])
    fill(conn, "bin-1", 0, 10, 0.2)
    evaluate(conn, ruleset, 20)
    add_readings(conn, [(T0 + minutes(10) + timedelta(seconds=30), "bin-1", "fill_level", 0.99)])
    assert evaluate(conn, ruleset, 21).detections == []  # instant 11 was evaluated already
    # A backtest reads the history as it is now, and sees it: the documented difference.
    replay = backtest(conn, ruleset, T0, T0 + minutes(19)).detections
    assert [d.fired_at for d in replay if d.kind == "detection"] == [T0 + minutes(11)]


def test_catch_up_after_downtime_equals_running_all_along(
    conn: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    ruleset = rules_from(tmp_path, FULL.replace("for: 30m", "for: 3m").replace('    clear: "< 0.5"\n', ""))
    add_sensors(conn, ["a", "b"])
    for m in range(0, 180):
        value = 0.95 if (m // 20) % 2 else 0.1
        add_readings(conn, [(T0 + minutes(m) + timedelta(seconds=10), "a", "fill_level", value)])
    fill(conn, "b", 0, 180, 0.5)
    evaluate(conn, ruleset, 2)
    evaluate(conn, ruleset, 150)  # 148 instants in one run
    caught_up = detections_in_db(conn)
    assert len(caught_up) > 4
    assert caught_up == backtest(conn, ruleset, T0, T0 + minutes(148)).identities()


def test_a_failing_rule_does_not_stop_the_others(conn: psycopg.Connection, tmp_path: Path) -> None:
    one = FULL.replace("for: 30m", "for: 0")
    text = one + one.replace("rules:\n", "").replace("id: full", "id: also")
    ruleset = rules_from(tmp_path, text)
    add_sensors(conn, ["bin-1"])
    fill(conn, "bin-1", 0, 5, 0.2)
    fill(conn, "bin-1", 5, 10, 0.95)
    conn.execute(
        """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
           CREATE TRIGGER refuse BEFORE INSERT ON detections FOR EACH ROW
           WHEN (NEW.rule_id = 'full') EXECUTE FUNCTION refuse()"""
    )
    evaluate(conn, ruleset, 2)
    report = evaluate_due(conn, ruleset, T0 + minutes(40))
    failed = {r.rule_id: r.error for r in report.runs}
    assert (
        failed["full"] is not None
        and "rule full" in failed["full"]
        and "at 2026-06-01T12:01" in failed["full"]
    )
    assert failed["also"] is None
    assert {d[0] for d in detections_in_db(conn)} == {"also"}


def test_silent_sensors_are_a_problem_of_their_own(conn: psycopg.Connection, tmp_path: Path) -> None:
    ruleset = rules_from(
        tmp_path,
        FULL.replace("for: 30m", "for: 0").replace("lateness: 2m", "lateness: 0s\n    no_data: silent\n"
                                                    "    silent: {problem: bin_silent, for: 10m}"),
    )  # fmt: skip
    add_sensors(conn, ["bin-1"])
    fill(conn, "bin-1", 0, 20, 0.2)
    fill(conn, "bin-1", 40, 60, 0.95)
    evaluate(conn, ruleset, 0)
    report = evaluate(conn, ruleset, 59)
    got = sorted((d.rule_id, d.problem, d.kind, d.fired_at) for d in report.detections)
    # Silent from minute 25 (no reading in the 5-minute window), reported 10 minutes later; the
    # main machine keeps its state through the silence.
    assert got == [
        ("full", "bin_overflow", "detection", T0 + minutes(41)),
        ("full:silent", "bin_silent", "detection", T0 + minutes(35)),
        ("full:silent", "bin_silent", "resolution", T0 + minutes(41)),
    ]


def test_detector_scores_are_read_when_the_table_exists(conn: psycopg.Connection, tmp_path: Path) -> None:
    text = FULL.replace("metric: fill_level", "metric: detector.iforest").replace("for: 30m", "for: 0")
    ruleset = rules_from(tmp_path, text.replace('clear: "< 0.5"\n', "no_data: alerting\n"))
    add_sensors(conn, ["bin-1"])
    # Before the detectors' migration there is no such table: no data (here: alerting, so it fires).
    conn.execute("DROP TABLE IF EXISTS detector_scores")
    assert [d.kind for d in evaluate(conn, ruleset, 2).detections] == ["detection"]
    conn.execute(
        "CREATE TABLE detector_scores (time timestamptz, sensor_id text, detector text, score float8)"
    )
    conn.execute(
        "INSERT INTO detector_scores SELECT %s + m * interval '1 minute', 'bin-1', 'iforest', 0.1 "
        "FROM generate_series(0, 30) m",
        (T0,),
    )
    report = evaluate(conn, ruleset, 10)
    assert [d.kind for d in report.detections] == ["resolution"]


def test_state_is_stored_only_while_not_normal(conn: psycopg.Connection, tmp_path: Path) -> None:
    ruleset = rules_from(tmp_path, FULL.replace("for: 30m", "for: 2m"))
    add_sensors(conn, [f"bin-{i}" for i in range(50)])
    fill(conn, "bin-7", 0, 30, 0.95)
    evaluate(conn, ruleset, 2)
    evaluate(conn, ruleset, 20)
    assert list(state_rows(conn)) == [("full", "bin-7")]
    watermark = conn.execute("SELECT watermark FROM rule_watermarks WHERE rule_id = 'full'").fetchone()[0]
    assert watermark == T0 + minutes(18)


def test_received_time_windows_ignore_a_wrong_clock(conn: psycopg.Connection, tmp_path: Path) -> None:
    text = """
    rules:
      - {id: by-event, problem: sensor_silent, metric: "*", aggregate: count, window: 2m, condition: "< 1",
         no_data: alerting, for: 0, lateness: 0s}
      - {id: by-arrival, problem: sensor_silent, metric: "*", aggregate: count, window: 2m, condition: "< 1",
         no_data: alerting, for: 0, lateness: 0s, timestamp: received}
    """
    ruleset = rules_from(tmp_path, text)
    add_sensors(conn, ["bin-1"])
    # Reports every minute; from minute 10 the device's clock is an hour behind.
    rows = []
    for m in range(40):
        arrived = T0 + minutes(m) + timedelta(seconds=20)
        carried = arrived - timedelta(hours=1) if m >= 10 else arrived
        rows.append((carried, arrived, m))
    add_readings(conn, [(c, "bin-1", "fill_level", 0.5) for c, _, _ in rows])
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE readings SET received_at = %s WHERE sensor_id = 'bin-1' AND time = %s",
            [(a, c) for c, a, _ in rows],
        )
    evaluate(conn, ruleset, 2)
    report = evaluate(conn, ruleset, 39)
    assert {(d.rule_id, d.fired_at) for d in report.detections} == {("by-event", T0 + minutes(12))}


def test_unless_inhibits_new_problems(conn: psycopg.Connection, tmp_path: Path) -> None:
    text = FULL.replace("for: 30m", "for: 0").replace(
        "lateness: 2m",
        "lateness: 0s\n    unless: {metric: voltage, aggregate: min, window: 5m, condition: '< 100'}",
    )
    ruleset = rules_from(tmp_path, text)
    add_sensors(conn, ["a", "b"])
    fill(conn, "a", 0, 30, 0.95)
    fill(conn, "b", 0, 30, 0.95)
    add_readings(conn, [(T0 + minutes(m) + timedelta(seconds=30), "a", "voltage", 0.0) for m in range(30)])
    evaluate(conn, ruleset, 0)
    report = evaluate(conn, ruleset, 20)
    assert [d.sensor_id for d in report.detections] == ["b"]
