"""The live rule service: APScheduler ticks, the evaluator catches up.

APScheduler only says "now"; which instants are due is ``rules.instants``' business, so a tick
that runs late, twice or not at all changes nothing but latency (``coalesce=True``,
``max_instances=1``: missed ticks collapse into one, and ticks never overlap). Every tick first
reloads the rule files if they changed — an invalid edit is logged and the last good rule set
keeps running — then evaluates every due instant of every rule. ``_tick_now`` is the one place
the rules package reads the wall clock.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from rules.errors import RuleFileError
from rules.evaluator import EvaluationReport, evaluate_due
from rules.loader import RuleSource
from sense311.db import connect
from sense311.errors import ConfigError, DatabaseError
from sense311.settings import Settings

__all__ = ["DEFAULT_TICK", "JOB_ID", "RuleService"]

log = logging.getLogger(__name__)

#: How often the scheduler asks for due instants: an instant is evaluated at most this long
#: after it became due (t + lateness). Ticks with nothing due cost one query per rule.
DEFAULT_TICK = timedelta(seconds=10)
JOB_ID = "sense311-rules"


class RuleService:
    """Evaluates a rule source against the database on every tick."""

    def __init__(self, settings: Settings, source: RuleSource, *, tick: timedelta = DEFAULT_TICK) -> None:
        if tick <= timedelta(0):
            raise ConfigError(f"Invalid value for 'tick': expected a duration > 0, got {tick}")
        self.settings = settings
        self.source = source
        self.tick_interval = tick
        self.last_report: EvaluationReport | None = None

    def start(self) -> None:
        """Load the rules; a bad rule set at start-up is an error (there is no last good one)."""
        self.source.load()

    def tick(self, now: datetime) -> EvaluationReport | None:
        """Reload the rules if their files changed, then evaluate what is due at ``now`` (UTC)."""
        try:
            self.source.reload()
        except RuleFileError as exc:  # pragma: no cover - reload() logs and keeps the old set
            log.error("%s", exc)
        ruleset = self.source.current
        if ruleset is None:
            log.error("no valid rule set loaded; nothing evaluated")
            return None
        try:
            with connect(self.settings, "sense311-rules", autocommit=True) as conn:
                report = evaluate_due(conn, ruleset, now)
        except DatabaseError as exc:
            # The watermarks did not move: the same instants are due on the next tick.
            log.error("rule evaluation at %s skipped: %s", now.isoformat(), exc)
            return None
        self.last_report = report
        for run in report.runs:
            if run.detections:
                log.info(
                    "rule %s: %d instant(s), %d sensors, %d detection(s)/resolution(s)",
                    run.rule_id, len(run.instants), run.sensors, len(run.detections),
                )  # fmt: skip
        return report

    def _tick_now(self) -> None:
        self.tick(datetime.now(UTC))

    def schedule(self, scheduler: Any) -> Any:
        """Add the tick job to an APScheduler 3 scheduler; returns the job."""
        return scheduler.add_job(
            self._tick_now,
            "interval",
            seconds=self.tick_interval.total_seconds(),
            id=JOB_ID,
            coalesce=True,
            max_instances=1,
            # A tick that starts late is still worth running: it only catches up.
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),
        )
