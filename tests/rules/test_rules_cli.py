"""``sense311 rules``: check, backtest (JSON, HTML, ground truth, compare) and diff, via CliRunner."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from rules.cli import rules_app
from sense311.settings import Settings
from tests.rules.rulehelp import T0, add_readings, add_sensors, minutes

RULES = """\
rules:
  - id: full
    problem: bin_overflow
    targets: [bin_overflow]
    select: {kind: bin}
    metric: fill_level
    aggregate: mean
    window: 5m
    condition: "> 0.9"
    for: 10m
    clear: "< 0.5"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, settings: Settings, conn: psycopg.Connection) -> psycopg.Connection:
    monkeypatch.setenv("SENSE311_DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("SENSE311_STORAGE__SCHEMA", settings.storage.db_schema)
    add_sensors(conn, ["bin-1", "bin-2", "bin-3"])
    rows = []
    for m in range(0, 240):
        t = T0 + minutes(m) + timedelta(seconds=20)
        rows.append((t, "bin-1", "fill_level", 0.95 if 30 <= m < 120 else 0.3))
        rows.append((t, "bin-2", "fill_level", 0.93 if 60 <= m < 75 else 0.2))
        rows.append((t, "bin-3", "fill_level", 0.1))
    add_readings(conn, rows)
    return conn


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


runner = CliRunner()


def test_check_lists_the_rules(tmp_path: Path) -> None:
    result = runner.invoke(rules_app, ["check", str(write(tmp_path, RULES, "r.yaml"))])
    assert result.exit_code == 0, result.output
    assert "ok: 1 rules in 1 file" in result.output and "full" in result.output


def test_check_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = write(
        tmp_path, RULES.replace("for: 10m", "for: 10").replace("aggregate: mean", "aggregate: avg"), "b.yaml"
    )
    result = runner.invoke(rules_app, ["check", str(bad)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert lines == [
        f"Error: {bad}:7: 'aggregate': unknown aggregate 'avg' (expected one of: last, first, min, max, "
        "mean, sum, count, stddev, delta, rate, fraction_above, fraction_below, changes)",
        f"Error: {bad}:10: 'for': expected a duration like '15m', got '10'",
    ]


def test_backtest_writes_json_and_a_self_contained_report(env: psycopg.Connection, tmp_path: Path) -> None:
    rules = write(tmp_path, RULES, "r.yaml")
    truth = tmp_path / "truth.jsonl"
    truth.write_text(
        json.dumps({"id": "ep-1", "kind": "bin_overflow", "category": "device", "sensors": ["bin-1"],
                    "start": "2026-06-01T12:30:00Z", "end": "2026-06-01T14:00:00Z", "params": {}}) + "\n"
        + json.dumps({"summary": {}}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    out, report = tmp_path / "r.json", tmp_path / "r.html"
    result = runner.invoke(
        rules_app,
        [
            "backtest", str(rules), "--from", "2026-06-01T12:00", "--to", "2026-06-01T15:00Z",
            "--json", str(out), "--report", str(report), "--ground-truth", str(truth),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    detections = [(d["sensor_id"], d["kind"], d["fired_at"]) for d in data["detections"]]
    assert detections == [
        ("bin-1", "detection", "2026-06-01T12:45:00+00:00"),
        ("bin-2", "detection", "2026-06-01T13:15:00+00:00"),
        ("bin-2", "resolution", "2026-06-01T13:18:00+00:00"),
        ("bin-1", "resolution", "2026-06-01T14:04:00+00:00"),
    ]
    assert data["rules"][0]["detections"] == 2 and len(data["incidents"]) == 2
    assert [t["sensors"] for t in data["tickets"]] == [["bin-1", "bin-2"]]  # 11 m apart: grouped
    kind = data["score"]["kinds"]["bin_overflow"]
    assert (kind["recall"], kind["precision"], kind["median_ttd_s"]) == (1.0, 0.5, 900.0)
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "bin-1" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "fault kind" in result.output and "bin_overflow" in result.output


def test_diff_and_compare_show_tickets_that_appear_and_disappear(
    env: psycopg.Connection, tmp_path: Path
) -> None:
    old = write(tmp_path, RULES, "old.yaml")
    new = write(tmp_path, RULES.replace("for: 10m", "for: 20m"), "new.yaml")
    result = runner.invoke(rules_app, ["diff", str(old), str(new), "--from", "2026-06-01T12:00",
                                       "--to", "2026-06-01T15:00", "--json", "-"])  # fmt: skip
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)
    assert [(i["sensor_id"], i["opened_at"]) for i in diff["disappeared"]] == [
        ("bin-2", "2026-06-01T13:15:00+00:00")
    ]
    assert diff["appeared"] == [] and diff["kept"] == 1
    assert diff["shifted"] == [
        {"problem": "bin_overflow", "sensor_id": "bin-1", "old": "2026-06-01T12:45:00+00:00",
         "new": "2026-06-01T12:55:00+00:00"}
    ]  # fmt: skip
    args = [
        "backtest",
        str(new),
        "--compare",
        str(old),
        "--from",
        "2026-06-01T12:00",
        "--to",
        "2026-06-01T15:00",
    ]
    result = runner.invoke(rules_app, args)
    assert result.exit_code == 0, result.output
    assert "- 2026-06-01T13:15:00+00:00 bin_overflow       bin-2" in result.output


def test_bad_options_are_one_line_errors(env: psycopg.Connection, tmp_path: Path) -> None:
    rules = str(write(tmp_path, RULES, "r.yaml"))
    result = runner.invoke(rules_app, ["backtest", rules, "--from", "yesterday", "--to", "2026-06-01"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: Invalid value for '--from': expected an ISO 8601 time like 2026-03-01 or 2026-03-01T12:00Z, "
        "got 'yesterday'"
    )
    result = runner.invoke(rules_app, ["backtest", rules, "--from", "2026-06-01", "--to", "2026-06-02",
                                       "--rule", "ful"])  # fmt: skip
    assert result.exit_code == 2 and "did you mean 'full'?" in result.output


def test_evaluate_once(env: psycopg.Connection, tmp_path: Path) -> None:
    rules = str(write(tmp_path, RULES.replace("for: 10m", "for: 0"), "r.yaml"))
    result = runner.invoke(rules_app, ["evaluate", rules, "--now", "2026-06-01T12:40Z"])
    assert result.exit_code == 0, result.output
    assert "full" in result.output and "1 instant(s)" in result.output
