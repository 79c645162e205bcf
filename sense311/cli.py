"""The ``sense311`` command line.

Errors are one line on stderr (``Error: …``) with exit code 1 for runtime failures and 2 for
bad options or settings; tracebacks are for ``--debug``. This module and the service runner
are the only places that wire the packages together.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Annotated, Any

import typer

from sense311.errors import ConfigError, Sense311Error
from sense311.settings import Settings, load_settings, redact_url

__all__ = ["app", "main"]

log = logging.getLogger("sense311")

#: Seconds a worker may take to flush, commit and acknowledge after SIGTERM.
SHUTDOWN_GRACE_SECONDS = 30.0

app = typer.Typer(
    name="sense311",
    help="City sensor telemetry over MQTT into TimescaleDB, rules and detectors, Open311 service requests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema and storage.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _register_package_commands() -> None:
    """The packages' own command groups; the CLI is one of the places allowed to wire them in."""
    from detectors.cli import detectors_app
    from rules.cli import rules_app
    from ticketing.cli import open311_server, tickets_app

    app.add_typer(rules_app, name="rules")
    app.add_typer(tickets_app, name="tickets")
    app.add_typer(detectors_app, name="detectors")
    app.command("open311-server")(open311_server)


_register_package_commands()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Settings file (.yaml or .toml); default $SENSE311_CONFIG.", show_default=False
    ),
]


class _State:
    config: Path | None = None
    debug: bool = False


state = _State()


@app.callback()
def _root(
    config: ConfigOption = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    state.config = config
    state.debug = debug


def _settings(config: Path | None = None, **overrides: Any) -> Settings:
    from sense311.logs import setup_logging

    settings = load_settings(config or state.config, **overrides)
    setup_logging(settings.log_level, settings.log_format)
    return settings


# -- db -------------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate(config: ConfigOption = None) -> None:
    """Apply the missing schema migrations (idempotent; safe to run from two processes)."""
    from sense311.db import apply_policies, connect, maintain, migrate

    settings = _settings(config)
    with connect(settings, "sense311-migrate", autocommit=True) as conn:
        result = migrate(conn, settings)
        apply_policies(conn, settings)
        maintain(conn, settings)
    applied = ", ".join(result.applied) if result.applied else "none (already up to date)"
    typer.echo(f"schema {settings.storage.db_schema} ({result.mode}): applied {applied}")


@db_app.command("info")
def db_info(config: ConfigOption = None) -> None:
    """Say which storage mode is active and what the database holds."""
    from sense311.db import connect, storage_info

    settings = _settings(config)
    with connect(settings, "sense311-info", autocommit=True) as conn:
        info = storage_info(conn, settings)
    if info.mode is None:
        raise ConfigError(f"schema {info.schema} is not migrated yet: run 'sense311 db migrate'")
    mode = (
        f"TimescaleDB {info.timescaledb} (hypertable, compression, retention, continuous aggregate)"
        if info.mode == "timescaledb"
        else "plain PostgreSQL (native range partitions, time_bucket() compatibility function)"
    )
    typer.echo(f"database:   {redact_url(settings.database_url)}")
    typer.echo(f"server:     PostgreSQL {info.server_version}")
    typer.echo(f"schema:     {info.schema}")
    typer.echo(f"mode:       {mode}")
    typer.echo(f"migrations: {', '.join(f'{v:04d}' for v in info.migrations)}")
    typer.echo(f"{'chunks' if info.mode == 'timescaledb' else 'partitions'}: {info.partitions:>6}")
    typer.echo(f"readings:   ~{info.readings_estimate} ({info.oldest or '-'} … {info.newest or '-'})")
    typer.echo(f"retention:  {settings.storage.retention.days} days")


@db_app.command("maintain")
def db_maintain(config: ConfigOption = None) -> None:
    """Create partitions ahead and drop expired ones (plain PostgreSQL; TimescaleDB does its own)."""
    from sense311.db import connect, maintain

    settings = _settings(config)
    with connect(settings, "sense311-maintain", autocommit=True) as conn:
        result = maintain(conn, settings)
    typer.echo(f"partitions created: {result['created']}, dropped: {result['dropped']}")


# -- ingest ---------------------------------------------------------------------------------


def _run_worker(settings: Settings, index: int, workers: int, group: str | None) -> None:
    from ingest.worker import IngestWorker

    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port + index, addr=settings.metrics_host)
    client_id = settings.mqtt.client_id if workers == 1 else f"{settings.mqtt.client_id}-{index}"
    worker = IngestWorker(settings, client_id=client_id, shared_group=group)

    def _stop(signum: int, frame: object) -> None:
        # Only set a flag here: the loop logs and flushes. If stopping takes longer than the
        # grace period, every thread's stack goes to stderr, so a hang says where it is.
        worker.stop()
        faulthandler.dump_traceback_later(SHUTDOWN_GRACE_SECONDS / 2, exit=False)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.start()
    log.info("ingest worker %d/%d subscribed to %s", index + 1, workers, redact_url(settings.mqtt_url))
    stats = worker.run()
    faulthandler.cancel_dump_traceback_later()
    log.info(
        "ingest worker %d stopped: %d messages, %d readings stored, %d dead letters",
        index + 1,
        stats.received,
        stats.inserted,
        stats.dead_letters,
    )


def _child(settings_json: str, index: int, workers: int, group: str | None) -> None:
    from sense311.logs import setup_logging

    settings = Settings.model_validate_json(settings_json)
    setup_logging(settings.log_level, settings.log_format)
    try:
        _run_worker(settings, index, workers, group)
    except Sense311Error as exc:
        log.error("ingest worker %d: %s", index + 1, exc)
        sys.exit(exc.exit_code)


@app.command("ingest")
def ingest_cmd(
    config: ConfigOption = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, max=64, help="Processes sharing the subscription.")
    ] = 1,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Shared-subscription group ($share/GROUP/…); default with --workers > 1: sense311.",
        ),
    ] = None,
) -> None:
    """Subscribe to the gateways' topics and store their readings (ack after commit)."""
    settings = _settings(config)
    shared = group or settings.mqtt.shared_group or ("sense311" if workers > 1 else None)
    if workers == 1:
        _run_worker(settings, 0, 1, shared)
        return
    ctx = multiprocessing.get_context("spawn")
    payload = _dump_settings(settings)
    procs = [
        ctx.Process(target=_child, args=(payload, i, workers, shared), name=f"ingest-{i}")
        for i in range(workers)
    ]
    for p in procs:
        p.start()

    stopping: list[float] = []

    def _stop_all() -> None:
        if not stopping:
            stopping.append(time.monotonic())
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, lambda signum, frame: _stop_all())
    signal.signal(signal.SIGINT, lambda signum, frame: _stop_all())
    failed = 0
    while any(p.exitcode is None for p in procs):
        wait([p.sentinel for p in procs if p.exitcode is None], timeout=1.0)
        for p in procs:
            if p.exitcode not in (None, 0) and not stopping:
                # One worker failing takes the service down with a non-zero exit, so the process
                # supervisor restarts it whole; the broker redelivers what was not acknowledged.
                log.error("ingest %s exited with %s; stopping the other workers", p.name, p.exitcode)
                failed = 1
                _stop_all()
        if stopping and time.monotonic() - stopping[0] > SHUTDOWN_GRACE_SECONDS:
            for p in procs:
                if p.exitcode is None:
                    log.error(
                        "ingest %s did not stop within %.0f s; killing it", p.name, SHUTDOWN_GRACE_SECONDS
                    )
                    p.kill()
                    p.join()
                    failed = 1
    if failed or any(p.exitcode for p in procs):
        raise typer.Exit(1)


# -- simulate -------------------------------------------------------------------------------


@app.command("simulate")
def simulate_cmd(
    config: ConfigOption = None,
    seed: Annotated[int, typer.Option(help="Same seed and options, same messages and ground truth.")] = 0,
    bins: Annotated[int | None, typer.Option(help="Waste bins.", show_default=False)] = None,
    lights: Annotated[int | None, typer.Option(help="Street lights.", show_default=False)] = None,
    parking: Annotated[int | None, typer.Option(help="Parking bay sensors.", show_default=False)] = None,
    air: Annotated[int | None, typer.Option(help="Air quality / noise monitors.", show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First instant (ISO 8601, UTC if no zone).")] = None,
    end: Annotated[str | None, typer.Option(help="End of the period (exclusive).")] = None,
    duration: Annotated[
        str | None, typer.Option(help="Length of the period, e.g. 1d, 6h (default 1d).")
    ] = None,
    step: Annotated[str, typer.Option(help="Report interval of every sensor.")] = "1m",
    speed: Annotated[
        float | None,
        typer.Option(help="Simulated seconds per second (3600 = an hour a second); unset = backfill."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Gateway format of the messages.")] = "json",
    faults: Annotated[str, typer.Option(help="Fault preset: none or default.")] = "none",
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help="Rate of one fault kind, KIND=EPISODES_PER_SENSOR_DAY."),
    ] = None,
    ground_truth: Annotated[Path | None, typer.Option(help="Write the labelled fault episodes here.")] = None,
    output: Annotated[str, typer.Option(help="mqtt, db (straight into readings), file or none.")] = "mqtt",
    out_file: Annotated[Path | None, typer.Option(help="With --output file: JSON Lines of messages.")] = None,
    topic_prefix: Annotated[str, typer.Option(help="Prepended to every topic.")] = "",
    register: Annotated[
        bool, typer.Option("--register", help="Write the fleet into the registry first.")
    ] = False,
) -> None:
    """Simulate a city fleet with labelled faults, publishing like real gateways do."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from sense311.db.connection import make_conninfo
    from simulators.cli_options import parse_options
    from simulators.runner import run_simulation

    settings = _settings(config)
    rates: dict[str, float] = {}
    for item in fault or []:
        kind, sep, rate = item.partition("=")
        try:
            rates[kind.strip()] = float(rate)
        except ValueError:
            raise ConfigError(f"--fault expects KIND=RATE, got {item!r}") from None
        if not sep:
            raise ConfigError(f"--fault expects KIND=RATE, got {item!r}")
    values: dict[str, Any] = {
        "seed": seed, "start": start, "end": end, "duration": duration, "step": step, "speed": speed,
        "format": fmt, "faults": faults, "fault_rates": rates, "ground_truth": ground_truth, "output": output,
        "out_file": out_file, "topic_prefix": topic_prefix, "register": register,
        "mqtt_url": settings.mqtt_url.get_secret_value(),
        "database_url": make_conninfo(settings, "sense311-simulate"),
    }  # fmt: skip
    for name, count in (("bins", bins), ("lights", lights), ("parking", parking), ("air", air)):
        if count is not None:
            values[name] = count
    try:
        options = parse_options(**values)
    except ConfigError as exc:
        # The options model calls the rates --fault-rates; on this command line they are --fault.
        raise ConfigError(str(exc).replace("--fault-rates", "--fault")) from None
    if register or output == "db":
        from sense311.db import connect, migrate

        with connect(settings, "sense311-simulate", autocommit=True) as conn:
            migrate(conn, settings)
    columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"))
    with Progress(*columns, TimeRemainingColumn(), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("simulate", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if output == "db":
            _ensure_backfill_partitions(settings, options)
        report = run_simulation(options, progress=progress)
    typer.echo(
        f"{report.messages} messages ({report.sent} sent) over {report.steps} steps "
        f"in {report.elapsed_s:.1f} s; {report.episodes} fault episodes; {report.rows} rows written; "
        f"{report.registered} sensors registered"
    )
    for note in getattr(report, "notes", []) or []:
        typer.echo(f"note: {note}", err=True)
    if report.ground_truth is not None:
        typer.echo(f"ground truth: {report.ground_truth}")


def _ensure_backfill_partitions(settings: Settings, options: Any) -> None:
    """A backfill writes straight into readings: the partitions of its period must exist first."""
    from datetime import UTC, datetime, timedelta

    from sense311.db import connect, ensure_partitions

    end = options.end or datetime.now(UTC)
    start = options.start or end - (options.duration or timedelta(days=1))
    with connect(settings, "sense311-simulate", autocommit=True) as conn:
        ensure_partitions(
            conn, start - timedelta(days=1), end + timedelta(days=1), settings.storage.partition_width
        )


def _dump_settings(settings: Settings) -> str:
    """Settings for a child process, secrets included (they never leave this machine's pipes)."""
    data = settings.model_dump(mode="json", by_alias=True)
    data["database_url"] = settings.database_url.get_secret_value()
    data["mqtt_url"] = settings.mqtt_url.get_secret_value()
    import json

    return json.dumps(data)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors, exit 1 (runtime) or 2 (usage/settings)."""
    try:
        app(args=argv, standalone_mode=False)
    except Sense311Error as exc:
        if state.debug:
            raise
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
