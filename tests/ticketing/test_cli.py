"""`sense311 tickets …` and `sense311 open311-server --create-key`, through typer's CliRunner."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from sense311.settings import Settings
from tests.ticketing.conftest import det, now_utc, ticketing_settings
from ticketing.cli import open311_server, tickets_app
from ticketing.incidents import apply_detection
from ticketing.open311 import store
from ticketing.outbox import OutboxWorker
from ticketing.settings import TicketingSettings
from ticketing.sinks import create_sink


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {
        "SENSE311_DATABASE_URL": settings.database_url.get_secret_value(),
        "SENSE311_STORAGE__SCHEMA": settings.storage.db_schema,
    }


@pytest.fixture
def rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Three outbox rows: one sent (dry run), one dead (unmapped problem), one pending."""
    t = now_utc()
    dry: TicketingSettings = ticketing_settings("http://127.0.0.1:9/", sink="dry_run")
    apply_detection(conn, det("lamp-far", t), dry, t)
    apply_detection(
        conn, det("bin-001", t, problem="bin_smell"), ticketing_settings("http://127.0.0.1:9/"), t
    )
    sink = create_sink("dry_run", dry)
    OutboxWorker(conn, dry, {"dry_run": sink}).drain(t)
    open311 = ticketing_settings("http://127.0.0.1:9/")
    OutboxWorker(conn, open311, {"open311": create_sink("open311", open311)}).drain(t)
    apply_detection(conn, det("lamp-south", t), open311, t.replace(year=t.year + 1))
    ids = dict(conn.execute("SELECT state, id FROM outbox").fetchall())
    assert set(ids) == {"sent", "failed", "pending"} or set(ids) == {"sent", "dead", "pending"}
    return ids


def test_list_shows_every_state(env: dict[str, str], rows: dict[str, int]) -> None:
    result = CliRunner().invoke(tickets_app, ["list"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["id", "state", "tries", "next"]
    assert len(lines) == 4
    only_sent = CliRunner().invoke(tickets_app, ["list", "--state", "sent"], env=env)
    assert len(only_sent.output.splitlines()) == 2 and " sent " in only_sent.output
    none = CliRunner().invoke(tickets_app, ["list", "-s", "cancelled"], env=env)
    assert none.output.strip() == "no outbox rows in state cancelled"


def test_bad_state_is_a_usage_error(env: dict[str, str]) -> None:
    result = CliRunner().invoke(tickets_app, ["list", "--state", "lost"], env=env)
    assert result.exit_code == 2
    assert "'lost' is not one of: pending, sending, failed, sent, dead, cancelled" in result.output


def test_retry_and_cancel(env: dict[str, str], rows: dict[str, int], conn: psycopg.Connection[Any]) -> None:
    failed = rows.get("dead") or rows["failed"]
    result = CliRunner().invoke(tickets_app, ["retry", str(failed)], env=env)
    assert result.exit_code == 0 and result.output.strip() == f"outbox row {failed} is pending again"
    cancel = CliRunner().invoke(tickets_app, ["cancel", str(rows["pending"])], env=env)
    assert cancel.exit_code == 0 and cancel.output.strip() == f"outbox row {rows['pending']} cancelled"
    assert conn.execute(
        "SELECT t.status, i.status, i.outcome FROM outbox o JOIN tickets t ON t.id = o.ticket_id "
        "JOIN ticket_members m ON m.ticket_id = t.id JOIN incidents i ON i.id = m.incident_id"
        " WHERE o.id = %s",
        (rows["pending"],),
    ).fetchone() == ("cancelled", "closed", "cancelled")


def test_errors_are_one_line_with_exit_1(env: dict[str, str], rows: dict[str, int]) -> None:
    missing = CliRunner().invoke(tickets_app, ["retry", "999999"], env=env)
    assert missing.exit_code == 1
    assert missing.output.strip() == "Error: outbox row 999999 does not exist (see 'sense311 tickets list')"
    sent = CliRunner().invoke(tickets_app, ["cancel", str(rows["sent"])], env=env)
    assert sent.exit_code == 1
    assert sent.output.strip() == (
        f"Error: outbox row {rows['sent']} is sent; only pending, failed or dead rows can be cancelled"
    )


def test_show_prints_the_payload(env: dict[str, str], rows: dict[str, int]) -> None:
    result = CliRunner().invoke(tickets_app, ["show", str(rows["sent"])], env=env)
    assert result.exit_code == 0
    assert '"dry_run": true' in result.output and '"reference": "S311-' in result.output


def test_bad_settings_exit_2(env: dict[str, str]) -> None:
    result = CliRunner().invoke(tickets_app, ["list"], env={**env, "SENSE311_DATABASE_URL": "mysql://x"})
    assert result.exit_code == 2
    assert result.output.startswith("Error: invalid setting database_url")


def test_open311_server_creates_keys(database_url: str, server_schema: str, env: dict[str, str]) -> None:
    app = typer.Typer()
    app.command()(open311_server)
    result = CliRunner().invoke(app, ["--schema", server_schema, "--create-key", "crew", "--staff"], env=env)
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    from tests.fix_db import with_search_path

    with psycopg.connect(with_search_path(database_url, server_schema), autocommit=True) as c:
        assert store.check_api_key(c, key) == "staff"
        assert c.execute(
            "SELECT name FROM api_keys WHERE key_hash = %s", (store.hash_key(key),)
        ).fetchone() == ("crew",)
    bad = CliRunner().invoke(app, ["--schema", server_schema, "--misbehave", "explode"], env=env)
    assert bad.exit_code == 2 and "unknown fault 'explode'" in bad.output
