"""``sense311 detectors …`` through typer's runner: output, exit codes, one-line errors."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from detectors.cli import detectors_app
from tests.detectors.dbhelp import START, add_street

runner = CliRunner()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, db_schema: str) -> None:
    monkeypatch.setenv("SENSE311_DATABASE_URL", database_url)
    monkeypatch.setenv("SENSE311_STORAGE__SCHEMA", db_schema)


def test_train_score_models_pin(conn: psycopg.Connection, env: None) -> None:
    add_street(conn, days=4)
    now = (START + timedelta(days=3)).isoformat()
    trained = runner.invoke(detectors_app, ["train", "--job", "peer_dark", "--now", now])
    assert trained.exit_code == 0, trained.output
    assert "peer_dark          version 1: 6 series of 6 sensors" in trained.output
    later = (START + timedelta(days=4)).isoformat()
    scored = runner.invoke(detectors_app, ["score", "--job", "peer_dark", "--now", later])
    assert scored.exit_code == 0, scored.output
    assert "peer_dark          287 instants" in scored.output and "scores written" in scored.output
    listed = runner.invoke(detectors_app, ["models"])
    assert listed.exit_code == 0 and "* peer_dark" in listed.output and "trained" in listed.output
    missing = runner.invoke(detectors_app, ["pin", "peer_dark", "7"])
    assert (
        missing.exit_code == 1
        and missing.output.strip() == "Error: detector job 'peer_dark' has no version 7"
    )


def test_a_failed_training_exits_1_with_the_reason(conn: psycopg.Connection, env: None) -> None:
    result = runner.invoke(detectors_app, ["train", "--job", "peer_dark", "--now", START.isoformat()])
    assert result.exit_code == 1
    assert result.output.strip().startswith(
        "Error: peer_dark: training failed, the previous model stays pinned:"
    )


def test_usage_errors_exit_2_with_one_line(env: None) -> None:
    result = runner.invoke(detectors_app, ["evaluate", "--job", "stuk"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: no detector job named 'stuk'; did you mean 'stuck'?"
    result = runner.invoke(detectors_app, ["train", "--now", "yesterday"])
    assert result.exit_code == 2 and "Invalid value for '--now'" in result.output
