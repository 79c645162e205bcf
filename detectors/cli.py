"""``sense311 detectors …``: train models, score instants, evaluate on a simulated city.

::

    sense311 detectors train                         # every job, on the last train_window
    sense311 detectors train --job lamp_power_low --now 2026-03-01
    sense311 detectors score                         # the instants due now, with pinned models
    sense311 detectors score --from 2026-03-01 --to 2026-03-08 --overwrite
    sense311 detectors evaluate --days 14 --train-days 7 --json result.json
    sense311 detectors models                        # versions, status, pinned, why one failed
    sense311 detectors pin lamp_power_low 3

Errors are one line on stderr, ``Error: …``: exit code 2 for bad options or settings, 1 for
runtime failures (and for a training run in which some job failed). Times without a zone are UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from detectors.settings import DetectorSettings, detector_settings
from sense311.errors import ConfigError, Sense311Error

__all__ = ["detectors_app"]

detectors_app = typer.Typer(
    name="detectors",
    help="Train detector models, score instants, evaluate detectors on a simulated city.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Settings file (.yaml or .toml); default $SENSE311_CONFIG.", show_default=False
    ),
]
JobOption = Annotated[
    list[str] | None,
    typer.Option("--job", "-j", help="Only this detector job (repeatable).", show_default=False),
]
NowOption = Annotated[
    str | None, typer.Option("--now", help="Act as if it were this time (ISO 8601); default: the clock.")
]


def _fail(exc: Sense311Error) -> typer.Exit:
    typer.echo(f"Error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


def _time(value: str | None, option: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"Invalid value for '{option}': expected an ISO 8601 time like 2026-03-01 or 2026-03-01T12:00Z, "
            f"got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _settings(config: Path | None) -> tuple[Any, DetectorSettings]:
    from sense311.settings import load_settings

    settings = load_settings(config)
    return settings, detector_settings(settings)


def _connect(settings: Any) -> Any:
    from sense311.db import connect

    return connect(settings, "sense311-detectors-cli", autocommit=True)


@detectors_app.command("train")
def train_cmd(
    config: ConfigOption = None,
    job: JobOption = None,
    now: NowOption = None,
    no_pin: Annotated[
        bool, typer.Option("--no-pin", help="Store the new versions without pinning them.")
    ] = False,
) -> None:
    """Fit every job's model on the history in the database and pin the new versions."""
    from detectors.jobs import train_models

    try:
        settings, detectors = _settings(config)
        at = _time(now, "--now")
        with _connect(settings) as conn:
            results = train_models(conn, detectors, at, jobs=job, pin=not no_pin)
    except Sense311Error as exc:
        raise _fail(exc) from None
    failed = 0
    for r in results:
        if r.status == "trained":
            typer.echo(
                f"{r.job:<18} version {r.version}: {r.series} series of {r.sensors} sensors, "
                f"{r.readings} readings, {r.seconds:.1f} s{'' if no_pin else ' (pinned)'}"
            )
        else:
            failed += 1
            typer.echo(
                f"Error: {r.job}: training failed, the previous model stays pinned: {r.error}", err=True
            )
    if failed:
        raise typer.Exit(1)


@detectors_app.command("score")
def score_cmd(
    config: ConfigOption = None,
    job: JobOption = None,
    now: NowOption = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Score a past period from here (ISO 8601).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="…to here (ISO 8601).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace scores already written.")] = False,
) -> None:
    """Write detector_scores for the due instants (or a period) with the pinned models."""
    from detectors.jobs import score_instants

    try:
        settings, detectors = _settings(config)
        at = _time(now, "--now")
        lo = _time(start, "--from") if start else None
        hi = _time(end, "--to") if end else None
        with _connect(settings) as conn:
            report = score_instants(conn, detectors, at, jobs=job, start=lo, end=hi, overwrite=overwrite)
    except Sense311Error as exc:
        raise _fail(exc) from None
    for name, count in report.instants.items():
        typer.echo(f"{name:<18} {count} instants, {report.rows.get(name, 0)} scores written")
    for name, reason in report.skipped.items():
        typer.echo(f"Error: {name}: {reason}", err=True)
    if report.skipped:
        raise typer.Exit(1)


@detectors_app.command("models")
def models_cmd(config: ConfigOption = None, job: Annotated[str | None, typer.Argument()] = None) -> None:
    """List model versions: status, training window, pinned, and why a failed one failed."""
    from detectors.store import list_models

    try:
        settings, _ = _settings(config)
        with _connect(settings) as conn:
            rows = list_models(conn, job)
    except Sense311Error as exc:
        raise _fail(exc) from None
    for r in rows:
        window = f"{r.trained_from:%Y-%m-%d %H:%M} … {r.trained_to:%Y-%m-%d %H:%M}" if r.trained_to else "-"
        mark = "*" if r.pinned else " "
        detail = r.error if r.status == "failed" else f"{r.metrics.get('series', 0)} series"
        typer.echo(f"{mark} {r.name:<18} v{r.version:<4} {r.kind:<12} {r.status:<8} {window}  {detail}")


@detectors_app.command("pin")
def pin_cmd(name: str, version: int, config: ConfigOption = None) -> None:
    """Pin another trained version of a job (e.g. to roll back)."""
    from detectors.store import pin

    try:
        settings, _ = _settings(config)
        with _connect(settings) as conn:
            pin(conn, name, version)
    except Sense311Error as exc:
        raise _fail(exc) from None
    typer.echo(f"{name}: version {version} pinned")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@detectors_app.command("evaluate")
def evaluate_cmd(
    config: ConfigOption = None,
    job: JobOption = None,
    seed: Annotated[int, typer.Option(help="Simulator seed (fleet and faults).")] = 7,
    days: Annotated[float, typer.Option(help="Days scored, after the training days.")] = 14.0,
    train_days: Annotated[
        float, typer.Option("--train-days", help="Days learned first (faults masked).")
    ] = 7.0,
    step: Annotated[float, typer.Option(help="Seconds between a sensor's reports.")] = 60.0,
    clean: Annotated[bool, typer.Option("--clean/--no-clean", help="Also run the clean fleet.")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report here.")] = None,
) -> None:
    """Precision, recall, F1 and time to detection per fault kind and per job on a simulated city."""
    from detectors.evaluation import evaluate

    try:
        _, detectors = _settings(config)
        jobs = [detectors.job(n) for n in job] if job else detectors.jobs
        report = evaluate(
            jobs, seed=seed, days=days, train_days=train_days, step=step, clean=clean,
            progress=lambda message: typer.echo(message, err=True),
        )  # fmt: skip
    except Sense311Error as exc:
        raise _fail(exc) from None
    targets = sorted({t for j in jobs for t in j.targets})
    typer.echo(f"seed {seed}, {report.sensors} sensors, {train_days:g} training days, {days:g} days scored")
    typer.echo("")
    typer.echo(
        f"{'fault kind':<22} {'episodes':>8} {'precision':>9} {'recall':>7} {'F1':>5} {'median TTD':>11}"
    )
    for k in report.kinds:
        if k.kind in targets:
            ttd = f"{k.median_ttd_s / 60:.0f} min" if k.median_ttd_s is not None else "-"
            typer.echo(
                f"{k.kind:<22} {k.episodes:>8} {_fmt(k.precision):>9} {_fmt(k.recall):>7} "
                f"{_fmt(k.f1):>5} {ttd:>11}"
            )
    typer.echo("")
    typer.echo(
        f"{'job':<16} {'detector':<12} {'threshold':>9} {'detections':>10} {'F1':>5} {'best thr':>8} "
        f"{'best F1':>7} {'clean FP/1000 sd':>16}"
    )
    for j in report.jobs:
        f1 = [k.f1 for k in j.kinds if k.kind in j.targets and k.f1 is not None]
        typer.echo(
            f"{j.job:<16} {j.detector:<12} {j.threshold:>9.2f} {j.detections:>10} "
            f"{_fmt(min(f1) if f1 else None):>5} {_fmt(j.best_threshold):>8} {_fmt(j.best_f1):>7} "
            f"{(_fmt(j.clean_rate) if clean else '-'):>16}"
        )
    for j in report.jobs:
        for k in j.kinds:
            if k.kind in j.targets:
                ttd = f"{k.median_ttd_s / 60:.0f} min" if k.median_ttd_s is not None else "-"
                typer.echo(
                    f"  {j.job:<16} → {k.kind:<22} P {_fmt(k.precision)}  R {_fmt(k.recall)}  "
                    f"F1 {_fmt(k.f1)}  "
                    f"TTD {ttd}"
                )
    if clean:
        typer.echo("")
        typer.echo(
            f"clean fleet: {report.clean_detections} false tickets in "
            f"{report.clean_sensor_days:g} sensor-days "
            f"= {report.clean_rate:.2f} per 1,000 sensor-days"
        )
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
        except OSError as exc:
            raise _fail(ConfigError(f"cannot write {json_out}: {exc.strerror}")) from None
