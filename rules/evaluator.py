"""Live evaluation: catch each rule up to the clock passed in, persisting state with detections.

For each enabled rule, in one transaction: take the rule's advisory lock (two evaluators never
step the same rule at once), read its watermark, list the due instants (``rules.instants``),
load the persisted state, step the instants (``rules.engine``, the code backtests run), then
write the changed states, the detections and resolutions (``ON CONFLICT DO NOTHING``) and the
new watermark, and commit. A crash before the commit leaves everything as it was and the next
run redoes the same instants with the same result; after the commit nothing is redone. So a
restart neither resets a pending ``for`` nor fires twice.

A rule that fails (bad data, lost connection) is rolled back, logged with its id, version and
instant, and reported; the other rules go on. Nothing here reads the clock: ``now`` is an
argument (the service passes the wall clock, tests pass what they like).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import psycopg

from rules.engine import Machine, evaluate_range, machines_of, to_detection
from rules.errors import EvaluationError, RulesError
from rules.instants import due_instants, from_us, to_us
from rules.loader import RuleSet
from rules.model import Rule
from rules.query import select_sensors
from rules.schedule import City
from rules.state import NO_TIME, NORMAL, STATE_NAMES, Event, MachineState
from sense311.errors import Sense311Error
from sense311.types import Detection

__all__ = [
    "DEFAULT_MAX_CATCH_UP",
    "DEFAULT_MAX_INSTANTS",
    "EvaluationReport",
    "RuleRun",
    "evaluate_due",
    "evaluate_rule",
    "load_states",
]

log = logging.getLogger(__name__)

#: After downtime longer than this, older instants are skipped rather than replayed: a day of
#: missed instants is what a live catch-up still does in seconds; more is a backtest's job.
DEFAULT_MAX_CATCH_UP = timedelta(days=1)
#: Instants one run evaluates per rule; the rest are due on the next tick, oldest first.
DEFAULT_MAX_INSTANTS = 1440
_CODES = {name: code for code, name in enumerate(STATE_NAMES)}


@dataclass
class RuleRun:
    """What one rule did in one ``evaluate_due`` call."""

    rule_id: str
    rule_version: str
    instants: list[datetime] = field(default_factory=list)
    sensors: int = 0
    detections: list[Detection] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class EvaluationReport:
    runs: list[RuleRun] = field(default_factory=list)

    @property
    def detections(self) -> list[Detection]:
        return [d for r in self.runs for d in r.detections]

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.runs if r.error]


def _lock(conn: psycopg.Connection, rule_id: str) -> None:
    # Keyed by schema and rule, so deployments sharing a server never wait on each other.
    conn.execute(
        "SELECT pg_advisory_xact_lock("
        "hashtextextended('sense311.rules.' || current_schema() || '.' || %s, 0))",
        (rule_id,),
    )


def load_states(
    conn: psycopg.Connection, machines: list[Machine], sensor_ids: list[str]
) -> dict[str, MachineState]:
    """Persisted state for the selected sensors (normal where no row exists)."""
    index = {sid: i for i, sid in enumerate(sensor_ids)}
    states = {m.id: MachineState.normal(len(sensor_ids)) for m in machines}
    rows = conn.execute(
        "SELECT rule_id, sensor_id, state, since, onset, fired_at, value "
        "FROM rule_state WHERE rule_id = ANY(%s)",
        ([m.id for m in machines],),
    ).fetchall()
    for rule_id, sensor_id, state, since, onset, fired_at, value in rows:
        i = index.get(sensor_id)
        if i is None:
            continue  # no longer selected: its state stays as it was
        st = states[rule_id]
        st.code[i] = _CODES[state]
        st.since[i] = to_us(since)
        st.onset[i] = to_us(onset) if onset is not None else NO_TIME
        st.fired[i] = to_us(fired_at) if fired_at is not None else NO_TIME
        st.value[i] = value if value is not None else np.nan
    return states


def _save_states(
    conn: psycopg.Connection,
    rule: Rule,
    machines: list[Machine],
    sensor_ids: list[str],
    before: dict[str, MachineState],
    after: dict[str, MachineState],
) -> None:
    def t(v: int) -> datetime | None:
        return None if v == NO_TIME else from_us(int(v))

    upserts = []
    deletes = []
    for m in machines:
        a, b = before[m.id], after[m.id]
        changed = np.flatnonzero(
            (a.code != b.code) | (a.since != b.since) | (a.onset != b.onset) | (a.fired != b.fired)
        )
        for i in changed:
            if b.code[i] == NORMAL:
                deletes.append((m.id, sensor_ids[i]))
            else:
                value = float(b.value[i])
                upserts.append(
                    (m.id, sensor_ids[i], STATE_NAMES[b.code[i]], t(b.since[i]), t(b.onset[i]), t(b.fired[i]),
                     None if np.isnan(value) else value, rule.version)
                )  # fmt: skip
    with conn.cursor() as cur:
        if deletes:
            cur.executemany("DELETE FROM rule_state WHERE rule_id = %s AND sensor_id = %s", deletes)
        if upserts:
            cur.executemany(
                """INSERT INTO rule_state
                     (rule_id, sensor_id, state, since, onset, fired_at, value, rule_version)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (rule_id, sensor_id) DO UPDATE SET
                     state = EXCLUDED.state, since = EXCLUDED.since, onset = EXCLUDED.onset,
                     fired_at = EXCLUDED.fired_at, value = EXCLUDED.value,
                     rule_version = EXCLUDED.rule_version, updated_at = now()""",
                upserts,
            )


def _insert_detections(conn: psycopg.Connection, detections: list[Detection]) -> None:
    if not detections:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO detections (rule_id, rule_version, sensor_id, problem, kind, fired_at, onset,
                                      severity, value, evidence)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT ON CONSTRAINT detections_key DO NOTHING""",
            [
                (d.rule_id, d.rule_version, d.sensor_id, d.problem, d.kind, d.fired_at, d.onset, d.severity,
                 d.value, json.dumps(d.evidence, sort_keys=True))
                for d in detections
            ],
        )  # fmt: skip


def evaluate_rule(
    conn: psycopg.Connection,
    rule: Rule,
    city: City | None,
    now: datetime,
    *,
    max_catch_up: timedelta | None = DEFAULT_MAX_CATCH_UP,
    limit: int | None = DEFAULT_MAX_INSTANTS,
) -> RuleRun:
    """Evaluate ``rule``'s due instants at wall clock ``now`` in one transaction."""
    result = RuleRun(rule.id, rule.version or "")
    with conn.transaction():
        _lock(conn, rule.id)
        row = conn.execute("SELECT watermark FROM rule_watermarks WHERE rule_id = %s", (rule.id,)).fetchone()
        watermark = row[0] if row else None
        due = due_instants(
            watermark, now, rule.interval, rule.lateness, max_catch_up=max_catch_up, limit=limit
        )
        if not due:
            return result
        if watermark is not None and to_us(due[0]) - to_us(watermark) > rule.interval.total_seconds() * 1e6:
            log.warning(
                "rule %s: skipped instants after %s (catch-up is bounded to %s)",
                rule.id, watermark.isoformat(), max_catch_up,
            )  # fmt: skip
        result.instants = due
        try:
            sensor_ids = select_sensors(conn, rule.select)
            result.sensors = len(sensor_ids)
            machines = machines_of(rule)
            states = load_states(conn, machines, sensor_ids)
            before = {k: v.copy() for k, v in states.items()}
            events: list[tuple[Machine, Event]] = []
            instants = np.array([to_us(t) for t in due], dtype=np.int64)
            evaluate_range(
                conn, rule, city, len(sensor_ids), instants, states, lambda m, e: events.append((m, e))
            )
            result.detections = [to_detection(rule, m, sensor_ids[e.sensor], e) for m, e in events]
            _save_states(conn, rule, machines, sensor_ids, before, states)
            _insert_detections(conn, result.detections)
        except (psycopg.Error, ValueError, RulesError) as exc:
            # Rolled back by the transaction block: the same instants are due again next time.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EvaluationError(first, rule_id=rule.id, rule_version=rule.version or "",
                                  instant=due[0]) from exc  # fmt: skip
        conn.execute(
            """INSERT INTO rule_watermarks (rule_id, watermark, rule_version, interval_s)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (rule_id) DO UPDATE SET watermark = EXCLUDED.watermark,
                 rule_version = EXCLUDED.rule_version, interval_s = EXCLUDED.interval_s,
                 updated_at = now()""",
            (rule.id, due[-1], rule.version, rule.interval.total_seconds()),
        )
    return result


def evaluate_due(
    conn: psycopg.Connection,
    ruleset: RuleSet,
    now: datetime,
    *,
    max_catch_up: timedelta | None = DEFAULT_MAX_CATCH_UP,
    limit: int | None = DEFAULT_MAX_INSTANTS,
) -> EvaluationReport:
    """Evaluate every enabled rule's due instants at wall clock ``now`` (aware, UTC).

    One failing rule is logged and reported in its ``RuleRun.error``; the others go on.
    """
    report = EvaluationReport()
    for rule in ruleset.enabled:
        started = time.perf_counter()
        try:
            run = evaluate_rule(conn, rule, ruleset.city, now, max_catch_up=max_catch_up, limit=limit)
        except EvaluationError as exc:
            log.error("%s", exc)
            run = RuleRun(rule.id, rule.version or "", error=str(exc))
        except (psycopg.Error, Sense311Error) as exc:
            error = EvaluationError(str(exc).strip().splitlines()[0], rule_id=rule.id,
                                    rule_version=rule.version or "", instant=None)  # fmt: skip
            log.error("%s", error)
            run = RuleRun(rule.id, rule.version or "", error=str(error))
        run.seconds = time.perf_counter() - started
        report.runs.append(run)
    return report
