"""Command-line parts of ticketing, registered by ``sense311/cli.py``.

``tickets_app`` (``sense311 tickets …``): ``list`` the outbox by state, ``show`` one row, ``retry``
or ``cancel`` one, ``run`` the ticketing loop. ``open311_server`` is the ``sense311 open311-server``
command. Errors are one line on stderr, exit code 1 (runtime) or 2 (settings, usage).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sense311.errors import Sense311Error
from sense311.settings import Settings, load_settings
from ticketing.outbox import STATES, cancel_row, get_row, list_rows, retry_row
from ticketing.settings import API_KEY_ENV, TicketingSettings

__all__ = ["open311_server", "tickets_app"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds `tickets run` waits after a round that found nothing to do.
IDLE_SECONDS = 1.0
#: Width of the error column in `tickets list`.
ERROR_COLUMN = 60

tickets_app = typer.Typer(
    help="The ticket outbox: list, show, retry or cancel rows; run the ticketing loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click errors: one "Error: …" line a script can read, not a box.
    rich_markup_mode=None,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Settings file (.yaml or .toml); default $SENSE311_CONFIG.", show_default=False
    ),
]


def _one_line_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Sense311Error as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _settings(config: Path | None) -> tuple[Settings, TicketingSettings]:
    settings = load_settings(config)
    return settings, TicketingSettings.from_settings(settings)


@contextmanager
def _connection(settings: Settings, application: str) -> Iterator[Any]:
    from sense311.db import connect

    with connect(settings, application, autocommit=True) as conn:
        yield conn


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@tickets_app.command("list")
@_one_line_errors
def list_cmd(
    config: ConfigOption = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help=f"Only rows in this state (repeatable): {', '.join(STATES)}."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest rows shown at most.")] = 50,
) -> None:
    """List outbox rows: pending, sending, failed, sent, dead, cancelled."""
    for s in state or []:
        if s not in STATES:
            raise typer.BadParameter(f"{s!r} is not one of: {', '.join(STATES)}", param_hint="'--state'")
    settings, _ = _settings(config)
    with _connection(settings, "sense311-tickets") as conn:
        rows = list_rows(conn, state or None, limit)
    if not rows:
        typer.echo("no outbox rows" + (f" in state {', '.join(state)}" if state else ""))
        return
    typer.echo(
        f"{'id':>6}  {'state':<9} {'tries':>5}  {'next / sent':<19}  {'ticket':<22} {'problem':<14} "
        f"{'n':>3}  {'request':<12} last error"
    )
    for r in rows:
        when = r["sent_at"] if r["state"] == "sent" else r["available_at"]
        error = (r["last_error"] or "").replace("\n", " ")
        error = error[: ERROR_COLUMN - 1] + "…" if len(error) > ERROR_COLUMN else error
        request = r["service_request_id"] or (f"token {r['token']}" if r["token"] else "-")
        doubt = "?" if r["in_doubt"] else " "
        typer.echo(
            f"{r['id']:>6}  {r['state']:<9} {r['attempts']:>4}{doubt}  {_when(when):<19}  "
            f"{r['reference']:<22} "
            f"{r['problem'][:14]:<14} {r['members']:>3}  {request:<12} {error}"
        )


@tickets_app.command("show")
@_one_line_errors
def show_cmd(
    row_id: Annotated[int, typer.Argument(help="Outbox row id.")], config: ConfigOption = None
) -> None:
    """Show one outbox row: what was (or would be) sent and what came back."""
    settings, _ = _settings(config)
    with _connection(settings, "sense311-tickets") as conn:
        row = get_row(conn, row_id)
    typer.echo(json.dumps(row, default=str, indent=2, ensure_ascii=False))


@tickets_app.command("retry")
@_one_line_errors
def retry_cmd(
    row_id: Annotated[int, typer.Argument(help="Outbox row id.")], config: ConfigOption = None
) -> None:
    """Send a failed or dead row again now (it reconciles first if an earlier attempt may have arrived)."""
    settings, _ = _settings(config)
    with _connection(settings, "sense311-tickets") as conn:
        retry_row(conn, row_id, datetime.now(UTC))
    typer.echo(f"outbox row {row_id} is pending again")


@tickets_app.command("cancel")
@_one_line_errors
def cancel_cmd(
    row_id: Annotated[int, typer.Argument(help="Outbox row id.")], config: ConfigOption = None
) -> None:
    """Never send this row: its ticket is cancelled and its incidents close."""
    settings, _ = _settings(config)
    with _connection(settings, "sense311-tickets") as conn:
        cancel_row(conn, row_id, datetime.now(UTC))
    typer.echo(f"outbox row {row_id} cancelled")


@tickets_app.command("run")
@_one_line_errors
def run_cmd(
    config: ConfigOption = None,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
) -> None:
    """Consume detections, send the outbox and poll ticket statuses, until interrupted."""
    from ticketing.pipeline import run_cycle
    from ticketing.sinks import create_sink

    settings, ticketing = _settings(config)
    sink = create_sink(ticketing.sink, ticketing)
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.set())
    try:
        with _connection(settings, "sense311-ticketing") as conn:
            while True:
                result = run_cycle(conn, ticketing, {sink.name: sink}, datetime.now(UTC))
                if result.busy or once:
                    typer.echo(
                        f"consumed {result.consumed} detections; sent {result.sent}, "
                        f"retrying {result.retried}, "
                        f"dead {result.dead}; polled {result.polled}, closed {result.closed}"
                    )
                if once or stop.wait(0 if result.busy else IDLE_SECONDS):
                    break
    finally:
        sink.close()


@_one_line_errors
def open311_server(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on.", show_default=False)
    ] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535, show_default=False)] = None,
    schema: Annotated[
        str | None, typer.Option("--schema", help="Schema for the server's tables.", show_default=False)
    ] = None,
    misbehave: Annotated[
        str | None,
        typer.Option(
            "--misbehave",
            help="Faults to inject, e.g. 'xml_only,fail_after_create=2,rate_limit=3:1.5'.",
            show_default=False,
        ),
    ] = None,
    create_key: Annotated[
        str | None,
        typer.Option(
            "--create-key",
            metavar="NAME",
            help="Create an api key called NAME, print it once and exit.",
            show_default=False,
        ),
    ] = None,
    staff: Annotated[
        bool, typer.Option("--staff", help="With --create-key: a staff key (may update requests).")
    ] = False,
) -> None:
    """Serve Open311 GeoReport v2 from PostgreSQL (the demo's and the tests' 311 back end)."""
    import psycopg
    import uvicorn

    from sense311.errors import ConfigError
    from ticketing.open311 import store
    from ticketing.open311.misbehave import Misbehaviour
    from ticketing.open311.server import _conninfo, create_app

    settings, ticketing = _settings(config)
    server = ticketing.server
    updates = {k: v for k, v in (("host", host), ("port", port), ("db_schema", schema)) if v is not None}
    server = server.model_copy(update=updates)
    now = datetime.now(UTC)
    try:
        with psycopg.connect(
            _conninfo(settings.database_url.get_secret_value(), server.db_schema, 30), autocommit=True
        ) as conn:
            store.install(conn, server.db_schema, store.DEFAULT_SERVICES, now)
            if create_key:
                key = store.add_api_key(conn, create_key, now, role="staff" if staff else "client")
                typer.echo(key)
                return
            env_key = os.environ.get(API_KEY_ENV)
            if env_key:
                # The demo's client and server read the same variable; registering it here is what
                # makes `sense311 demo` work without a key ceremony.
                store.add_api_key(conn, "environment", now, key=env_key)
    except psycopg.Error as exc:
        raise ConfigError(f"Open311 server: cannot prepare schema {server.db_schema}: {exc}") from exc
    app = create_app(
        settings,
        server.db_schema,
        settings=server,
        misbehave=Misbehaviour.parse(misbehave) if misbehave else None,
    )
    typer.echo(f"Open311 GeoReport v2 on http://{server.host}:{server.port}/ (schema {server.db_schema})")
    uvicorn.run(app, host=server.host, port=server.port, log_level=settings.log_level.lower())
