"""Backtests: run the live state machine over the historical instants of a period.

``backtest(conn, ruleset, start, end)`` steps every enabled rule through the aligned instants of
``[start, end]`` from a normal state, with the very code the live evaluator runs
(``rules.engine.evaluate_range``), reading readings as they are stored now. It reports every
detection and resolution, the spans each sensor spent pending, firing and recovering, the
incidents and tickets they would produce (``rules.incidents``), and per-rule counts. Readings
that arrived later than a rule's ``lateness`` were not seen live when their instant was
evaluated but are seen here: that is the one way a backtest can differ from what ran live.

Times are aware UTC datetimes; speeds are in sensor-steps (one sensor at one instant) per second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from rules.engine import Machine, evaluate_range, machines_of, to_detection
from rules.incidents import Incident, Ticket, build_incidents, group_tickets
from rules.instants import aligned_range, from_us
from rules.loader import RuleSet
from rules.query import select_sensors
from rules.state import NORMAL, STATE_NAMES, Event, MachineState, Transitions
from sense311.errors import ConfigError
from sense311.types import Detection

__all__ = ["BacktestResult", "RuleSummary", "Span", "backtest", "detection_key"]


def detection_key(d: Detection) -> tuple[str, str, str, datetime, str]:
    """A detection's identity: (rule id, rule version, sensor, fired_at, kind)."""
    return (d.rule_id, d.rule_version, d.sensor_id, d.fired_at, d.kind)


@dataclass
class RuleSummary:
    rule_id: str
    version: str
    problem: str
    sensors: int = 0
    instants: int = 0
    detections: int = 0
    resolutions: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "version": self.version,
            "problem": self.problem,
            "sensors": self.sensors,
            "instants": self.instants,
            "detections": self.detections,
            "resolutions": self.resolutions,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class Span:
    """A sensor's stay in one non-normal state of a machine, ``[start, end)`` (end None: still there)."""

    rule_id: str
    sensor_id: str
    state: str
    start: datetime
    end: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "sensor_id": self.sensor_id,
            "state": self.state,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
        }


@dataclass
class BacktestResult:
    start: datetime
    end: datetime
    rules: list[RuleSummary] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    #: rule id → its definition as loaded (for reports).
    definitions: dict[str, Any] = field(default_factory=dict)
    sensor_steps: int = 0
    seconds: float = 0.0
    #: Set by callers that score against a ground truth.
    score: dict[str, Any] | None = None

    @property
    def steps_per_second(self) -> float:
        return self.sensor_steps / self.seconds if self.seconds > 0 else float("inf")

    def identities(self) -> set[tuple[str, str, str, datetime, str]]:
        return {detection_key(d) for d in self.detections}

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rules": [r.to_json() for r in self.rules],
            "detections": [_detection_json(d) for d in self.detections],
            "incidents": [i.to_json() for i in self.incidents],
            "tickets": [t.to_json() for t in self.tickets],
            "sensor_steps": self.sensor_steps,
            "seconds": round(self.seconds, 3),
            "sensor_steps_per_second": round(self.steps_per_second, 1) if self.seconds > 0 else None,
            "score": self.score,
        }


def _detection_json(d: Detection) -> dict[str, Any]:
    return {
        "rule_id": d.rule_id,
        "rule_version": d.rule_version,
        "sensor_id": d.sensor_id,
        "problem": d.problem,
        "kind": d.kind,
        "fired_at": d.fired_at.isoformat(),
        "onset": d.onset.isoformat() if d.onset else None,
        "severity": d.severity,
        "value": d.value,
        "evidence": d.evidence,
    }


def _spans(machine: str, record: Transitions | None, sensor_ids: list[str]) -> list[Span]:
    if record is None or not record.t:
        return []
    t = np.concatenate(record.t)
    sensor = np.concatenate(record.sensor)
    new = np.concatenate(record.new)
    order = np.lexsort((t, sensor))
    out: list[Span] = []
    opened: dict[int, tuple[int, int]] = {}
    for i in order:
        s, at, code = int(sensor[i]), int(t[i]), int(new[i])
        if s in opened:
            state, since = opened.pop(s)
            out.append(Span(machine, sensor_ids[s], STATE_NAMES[state], from_us(since), from_us(at)))
        if code != NORMAL:
            opened[s] = (code, at)
    for s, (state, since) in opened.items():
        out.append(Span(machine, sensor_ids[s], STATE_NAMES[state], from_us(since), None))
    return out


def backtest(
    conn: psycopg.Connection,
    ruleset: RuleSet,
    start: datetime,
    end: datetime,
    *,
    rule_ids: list[str] | None = None,
    spans: bool = True,
) -> BacktestResult:
    """Every detection and resolution the enabled rules would have made over ``[start, end]``.

    ``spans`` records each sensor's pending/firing/recovering spans (for reports). Each rule
    runs in its own read transaction.
    """
    if end <= start:
        raise ConfigError(
            f"the backtest's end ({end.isoformat()}) must be after its start ({start.isoformat()})"
        )
    result = BacktestResult(start, end)
    began = time.perf_counter()
    for rule in ruleset.only(rule_ids).enabled:
        rule_began = time.perf_counter()
        summary = RuleSummary(rule.id, rule.version or "", rule.problem)
        instants = aligned_range(start, end, rule.interval)
        machines = machines_of(rule)
        events: list[tuple[Machine, Event]] = []
        records: dict[str, Transitions] | None = {} if spans else None
        with conn.transaction():
            sensor_ids = select_sensors(conn, rule.select)
            states = {m.id: MachineState.normal(len(sensor_ids)) for m in machines}
            evaluate_range(
                conn,
                rule,
                ruleset.city,
                len(sensor_ids),
                instants,
                states,
                lambda m, e, sink=events: sink.append((m, e)),
                transitions=records,
            )
        detections = [to_detection(rule, m, sensor_ids[e.sensor], e) for m, e in events]
        result.detections.extend(detections)
        if records is not None:
            for m in machines:
                result.spans.extend(_spans(m.id, records.get(m.id), sensor_ids))
        summary.sensors = len(sensor_ids)
        summary.instants = len(instants)
        summary.detections = sum(1 for d in detections if d.kind == "detection")
        summary.resolutions = len(detections) - summary.detections
        summary.seconds = time.perf_counter() - rule_began
        result.sensor_steps += summary.sensors * summary.instants
        result.rules.append(summary)
        result.definitions[rule.id] = rule
    result.detections.sort(key=lambda d: (d.fired_at, d.rule_id, d.sensor_id, d.kind))
    result.incidents = build_incidents(result.detections)
    locations = _locations(conn, sorted({i.sensor_id for i in result.incidents}))
    result.tickets = group_tickets(result.incidents, locations)
    result.seconds = time.perf_counter() - began
    return result


def _locations(conn: psycopg.Connection, sensor_ids: list[str]) -> dict[str, tuple[float, float]]:
    if not sensor_ids:
        return {}
    rows = conn.execute(
        "SELECT id, lat, lon FROM sensors WHERE id = ANY(%s) AND lat IS NOT NULL AND lon IS NOT NULL",
        (sensor_ids,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}
