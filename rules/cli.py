"""``sense311 rules …``: check rule files, backtest them, compare two versions, run them live.

::

    sense311 rules check rules/                      # every problem as file:line: 'field': message
    sense311 rules backtest builtin:city --from 2026-03-01 --to 2026-03-08 \\
        --ground-truth truth.jsonl --json result.json --report report.html
    sense311 rules diff old/ new/ --from 2026-03-01 --to 2026-03-08
    sense311 rules backtest new/ --compare old/ --from … --to …
    sense311 rules run rules/                        # the live evaluator (APScheduler)

Errors are one line on stderr, ``Error: …``, with exit code 2 for bad rule files or options and
1 for runtime failures. Times given without a zone are UTC. This module wires the rules package
to the simulator's scoring (``--ground-truth``), like the main CLI wires packages together.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from rules.backtest import BacktestResult, backtest
from rules.errors import RuleFileError
from rules.incidents import Ticket, match_incidents
from rules.loader import RuleSet, RuleSource, load_rules
from sense311.durations import parse_duration
from sense311.errors import ConfigError, Sense311Error
from sense311.settings import Settings, load_settings

__all__ = ["rules_app"]

log = logging.getLogger(__name__)

rules_app = typer.Typer(
    name="rules",
    help="Check, backtest, compare and run rule files.",
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
FromOption = Annotated[str, typer.Option("--from", help="Start, ISO 8601 (UTC when no zone is given).")]
ToOption = Annotated[str, typer.Option("--to", help="End, ISO 8601 (UTC when no zone is given).")]
RuleOption = Annotated[
    list[str] | None, typer.Option("--rule", "-r", help="Only this rule id (repeatable).", show_default=False)
]


def _fail(exc: Sense311Error) -> typer.Exit:
    typer.echo(f"Error: {exc}", err=True)
    return typer.Exit(exc.exit_code)


def _time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"Invalid value for '{option}': expected an ISO 8601 time like 2026-03-01 or 2026-03-01T12:00Z, "
            f"got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _load(path: str) -> RuleSet:
    return load_rules(path)


def _connect(settings: Settings) -> Any:
    from sense311.db import connect

    return connect(settings, "sense311-rules-cli", autocommit=True)


def _write(path: Path, text: str) -> None:
    if str(path) == "-":
        typer.echo(text)
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


@rules_app.command("check")
def check_cmd(
    paths: Annotated[list[str], typer.Argument(help="Rule files or directories (or builtin:<pack>).")],
) -> None:
    """Validate rule files: every problem as file:line: 'field': message (exit 2 if any)."""
    try:
        ruleset = load_rules(*paths)
    except RuleFileError as exc:
        for problem in exc.problems:
            typer.echo(f"Error: {problem}", err=True)
        raise typer.Exit(exc.exit_code) from None
    files = len(ruleset.files)
    typer.echo(f"ok: {len(ruleset)} rules in {files} file{'s' if files != 1 else ''}")
    for rule in ruleset:
        state = "" if rule.enabled else " (disabled)"
        typer.echo(f"  {rule.id:<28} {rule.version}  {rule.problem}{state}")


def _ground_truth(path: Path) -> tuple[Any, Any]:
    try:
        from simulators.ground_truth import read_ground_truth
        from simulators.scoring import score
    except ImportError as exc:  # pragma: no cover - the simulator ships with sense311
        raise ConfigError(f"--ground-truth needs the simulators package: {exc}") from exc
    if not path.exists():
        raise ConfigError(f"Invalid value for '--ground-truth': {path} does not exist")
    return read_ground_truth(path), score


def _score(
    result: BacktestResult, ruleset: RuleSet, truth: Any, score: Any, grace: timedelta
) -> dict[str, Any]:
    """Precision, recall and time to detection per fault kind the backtested rules target, over
    the episodes that overlap the backtest's period."""
    mapping: dict[str, set[str]] = {}
    for summary in result.rules:
        rule = ruleset.get(summary.rule_id)
        if rule.targets:
            mapping.setdefault(rule.problem, set()).update(rule.targets)
    episodes = [e for e in truth.episodes if e.start < result.end and e.end > result.start]
    detections = [(d.sensor_id, d.problem, d.fired_at) for d in result.detections if d.kind == "detection"]
    report = score(episodes, detections, mapping={k: sorted(v) for k, v in mapping.items()}, grace=grace)
    data = report.to_json()
    targeted = {k for v in mapping.values() for k in v}
    data["kinds"] = {k: v for k, v in data["kinds"].items() if k in targeted}
    return data


def _print_result(result: BacktestResult) -> None:
    typer.echo(
        f"{result.start:%Y-%m-%d %H:%M} – {result.end:%Y-%m-%d %H:%M} UTC: "
        f"{result.sensor_steps:,} sensor-steps "
        f"in {result.seconds:.1f} s ({result.steps_per_second:,.0f}/s)"
    )
    typer.echo(f"{'rule':<28} {'version':<13} {'sensors':>8} {'detections':>11} {'resolutions':>12}")
    for r in result.rules:
        typer.echo(f"{r.rule_id:<28} {r.version:<13} {r.sensors:>8} {r.detections:>11} {r.resolutions:>12}")
    typer.echo(f"incidents: {len(result.incidents)}, tickets: {len(result.tickets)}")
    if result.score:
        typer.echo(f"{'fault kind':<22} {'episodes':>8} {'recall':>7} {'precision':>9} {'median TTD':>11}")
        for kind, s in result.score["kinds"].items():
            typer.echo(
                f"{kind:<22} {s['episodes']:>8} {_ratio(s['recall']):>7} {_ratio(s['precision']):>9} "
                f"{_seconds(s['median_ttd_s']):>11}"
            )


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value / 60:.1f} min"


def _ticket_line(sign: str, t: Ticket) -> str:
    return f"{sign} {t.opened_at:%Y-%m-%d %H:%M} {t.problem:<18} {', '.join(t.sensors)}"


def _compare(old: BacktestResult, new: BacktestResult) -> dict[str, Any]:
    gone, appeared, kept = match_incidents(old.incidents, new.incidents)
    shifted = [(a, b) for a, b in kept if a.opened_at != b.opened_at]
    return {
        "disappeared": [i.to_json() for i in gone],
        "appeared": [i.to_json() for i in appeared],
        "kept": len(kept),
        "shifted": [
            {
                "problem": a.problem,
                "sensor_id": a.sensor_id,
                "old": a.opened_at.isoformat(),
                "new": b.opened_at.isoformat(),
            }
            for a, b in shifted
        ],
        "tickets": {"old": len(old.tickets), "new": len(new.tickets)},
    }


def _print_compare(diff: dict[str, Any]) -> None:
    typer.echo(
        f"tickets: {diff['tickets']['old']} → {diff['tickets']['new']}; incidents kept {diff['kept']}, "
        f"appeared {len(diff['appeared'])}, disappeared {len(diff['disappeared'])}, "
        f"opened at another time {len(diff['shifted'])}"
    )
    for i in diff["appeared"]:
        typer.echo(f"+ {i['opened_at']} {i['problem']:<18} {i['sensor_id']}")
    for i in diff["disappeared"]:
        typer.echo(f"- {i['opened_at']} {i['problem']:<18} {i['sensor_id']}")
    for s in diff["shifted"]:
        typer.echo(f"~ {s['problem']:<18} {s['sensor_id']}: {s['old']} → {s['new']}")


def _compare_html(diff: dict[str, Any]) -> str:
    import html

    rows = [("+", i["opened_at"], i["problem"], i["sensor_id"]) for i in diff["appeared"]]
    rows += [("−", i["opened_at"], i["problem"], i["sensor_id"]) for i in diff["disappeared"]]
    rows += [("~", f"{s['old']} → {s['new']}", s["problem"], s["sensor_id"]) for s in diff["shifted"]]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f"<p>tickets {diff['tickets']['old']} → {diff['tickets']['new']}</p>"
        f"<table><thead><tr><th></th><th>opened</th><th>problem</th><th>sensor</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


@rules_app.command("backtest")
def backtest_cmd(
    rules: Annotated[str, typer.Argument(help="Rule file or directory (or builtin:<pack>).")],
    start: FromOption,
    end: ToOption,
    rule: RuleOption = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the machine-readable result here ('-': stdout).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
    ] = None,
    ground_truth: Annotated[
        Path | None, typer.Option("--ground-truth", help="A simulator ground-truth file to score against.")
    ] = None,
    grace: Annotated[
        str, typer.Option("--grace", help="How long after an episode ends a detection still counts.")
    ] = "1h",
    compare: Annotated[
        str | None, typer.Option("--compare", help="Older rules: show which tickets appear or disappear.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run rules over stored history: detections, incidents, tickets, and scores."""
    try:
        since, until = _time(start, "--from"), _time(end, "--to")
        ruleset = _load(rules)
        old_rules = _load(compare) if compare else None
        truth, scorer = _ground_truth(ground_truth) if ground_truth else (None, None)
        try:
            grace_td = parse_duration(grace)
        except ValueError as exc:
            raise ConfigError(f"Invalid value for '--grace': {exc}") from None
        settings = _settings(config)
        with _connect(settings) as conn:
            result = _run_backtest(conn, ruleset, since, until, rule)
            if truth is not None:
                result.score = _score(result, ruleset, truth, scorer, grace_td)
            diff = None
            if old_rules is not None:
                old = _run_backtest(conn, old_rules, since, until, rule)
                diff = _compare(old, result)
            if report is not None:
                from rules.report import Episode, collect_plots, render_report

                episodes = []
                if truth is not None:
                    episodes = [Episode(e.kind, tuple(e.sensors), e.start, e.end) for e in truth.episodes]
                plots = collect_plots(conn, ruleset, result, episodes)
                compare_html = _compare_html(diff) if diff is not None else None
                _write(report, render_report(result, plots, compare=compare_html))
    except Sense311Error as exc:
        raise _fail(exc) from None
    except ValueError as exc:
        raise _fail(ConfigError(str(exc))) from None
    if json_out is not None:
        data = result.to_json()
        if diff is not None:
            data["compare"] = diff
        _write(json_out, json.dumps(data, indent=2, sort_keys=True))
    if str(json_out) != "-":
        _print_result(result)
        if diff is not None:
            _print_compare(diff)


def _run_backtest(
    conn: Any, ruleset: RuleSet, since: datetime, until: datetime, rule_ids: list[str] | None
) -> BacktestResult:
    return backtest(conn, ruleset, since, until, rule_ids=rule_ids)


@rules_app.command("diff")
def diff_cmd(
    old: Annotated[str, typer.Argument(help="The older rules (file, directory or builtin:<pack>).")],
    new: Annotated[str, typer.Argument(help="The newer rules.")],
    start: FromOption,
    end: ToOption,
    rule: RuleOption = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the comparison here ('-': stdout).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Which tickets appear or disappear between two versions of the rules over a period."""
    try:
        since, until = _time(start, "--from"), _time(end, "--to")
        old_rules, new_rules = _load(old), _load(new)
        with _connect(_settings(config)) as conn:
            diff = _compare(
                _run_backtest(conn, old_rules, since, until, rule),
                _run_backtest(conn, new_rules, since, until, rule),
            )
    except Sense311Error as exc:
        raise _fail(exc) from None
    if json_out is not None:
        _write(json_out, json.dumps(diff, indent=2, sort_keys=True))
    if str(json_out) != "-":
        _print_compare(diff)


@rules_app.command("evaluate")
def evaluate_cmd(
    rules: Annotated[str, typer.Argument(help="Rule file or directory (or builtin:<pack>).")],
    now: Annotated[
        str | None, typer.Option("--now", help="Evaluate as if the clock read this (default: now).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Evaluate every due instant once and exit (for cron, or to catch up by hand)."""
    from rules.evaluator import evaluate_due

    try:
        at = _time(now, "--now") if now else datetime.now(UTC)
        ruleset = _load(rules)
        with _connect(_settings(config)) as conn:
            report = evaluate_due(conn, ruleset, at)
    except Sense311Error as exc:
        raise _fail(exc) from None
    for r in report.runs:
        status = (
            f"error: {r.error}" if r.error else f"{len(r.instants)} instant(s), {len(r.detections)} event(s)"
        )
        typer.echo(f"{r.rule_id:<28} {status}")
    if report.errors:
        raise typer.Exit(1)


@rules_app.command("run")
def run_cmd(
    rules: Annotated[str, typer.Argument(help="Rule file or directory (or builtin:<pack>).")],
    tick: Annotated[str, typer.Option("--tick", help="How often to look for due instants.")] = "10s",
    config: ConfigOption = None,
) -> None:
    """Run the live evaluator until interrupted; edited rule files are reloaded (bad edits are ignored)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    from rules.service import RuleService

    try:
        settings = _settings(config)
        try:
            tick_td = parse_duration(tick)
        except ValueError as exc:
            raise ConfigError(f"Invalid value for '--tick': {exc}") from None
        service = RuleService(settings, RuleSource(rules), tick=tick_td)
        service.start()
    except Sense311Error as exc:
        raise _fail(exc) from None
    scheduler = BlockingScheduler(timezone=UTC)
    service.schedule(scheduler)
    typer.echo(f"evaluating {len(service.source.current or ())} rules every {tick}; Ctrl-C stops", err=True)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown(wait=False)
    sys.exit(0)
