"""Stepping a rule over instants: the code live evaluation and backtests share.

``evaluate_range`` fetches the selected sensors' readings for a run of instants, computes each
instant's window aggregates, turns them into condition / clear / no-data arrays and steps the
rule's state machines (``rules.state.run``). The live evaluator calls it with the instants that
are due (one, or a few after downtime) and the persisted state; a backtest with every instant of
its range and a fresh state. Work is split into chunks of at most ``CELL_BUDGET`` (instant,
sensor) cells; chunking cannot change a result, since each cell depends only on its own window
and the state is carried from one chunk to the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from rules.aggregates import Series, window_aggregates
from rules.errors import RulesError
from rules.instants import from_us, us
from rules.model import Rule
from rules.query import fetch_series
from rules.schedule import City
from rules.state import Event, MachineParams, MachineState, Transitions, run
from sense311.durations import format_duration
from sense311.types import Detection

__all__ = [
    "CELL_BUDGET",
    "SILENT_SUFFIX",
    "Machine",
    "evaluate_range",
    "machines_of",
    "to_detection",
]

#: (instant × sensor) cells per chunk: ~10 float/int arrays of this size are alive at once, so
#: 2M cells keep a chunk near 200 MB while a 1,000-sensor backtest still does a day per query.
CELL_BUDGET = 2_000_000
#: The machine of a ``no_data: silent`` rule that reports silence has this suffix on its id.
SILENT_SUFFIX = ":silent"


@dataclass(frozen=True, slots=True)
class Machine:
    """One state machine of a rule: its own id (the detections' rule_id), problem and timing."""

    id: str
    problem: str
    severity: str
    params: MachineParams
    watches_silence: bool


def machines_of(rule: Rule) -> list[Machine]:
    """The main machine, and for ``no_data: silent`` the one that reports the sensor silent."""
    silent = rule.silent_settings
    main = Machine(
        id=rule.id,
        problem=rule.problem,
        severity=rule.severity,
        params=MachineParams(
            for_us=us(rule.for_),
            clear_for_us=us(rule.clear_for),
            no_data="keep_last" if silent is not None else rule.no_data,
        ),
        watches_silence=False,
    )
    if silent is None:
        return [main]
    watcher = Machine(
        id=rule.id + SILENT_SUFFIX,
        problem=silent.problem,
        severity=silent.severity,
        params=MachineParams(for_us=us(silent.for_), clear_for_us=0, no_data="ok"),
        watches_silence=True,
    )
    return [main, watcher]


def _iso(t: int | None) -> str | None:
    return None if t is None else from_us(t).isoformat()


def _value(v: float) -> float | None:
    return None if math.isnan(v) else v


def to_detection(rule: Rule, machine: Machine, sensor_id: str, event: Event) -> Detection:
    """The ``Detection`` for an event. Evidence depends only on the rule and the data (never on
    when or where it was computed), so live and backtest produce equal objects."""
    evidence: dict[str, Any]
    if machine.watches_silence:
        evidence = {"metric": rule.metric, "window": format_duration(rule.window), "no_data": True}
    else:
        evidence = {
            "metric": rule.metric,
            "aggregate": str(rule.aggregate),
            "window": format_duration(rule.window),
            "condition": str(rule.condition),
            "value": _value(event.value),
        }
        if rule.clear is not None:
            evidence["clear"] = str(rule.clear)
    if event.kind == "detection":
        evidence["for"] = format_duration(from_us(event.t) - from_us(event.onset or event.t))
    else:
        evidence["detected_at"] = _iso(event.fired)
    return Detection(
        rule_id=machine.id,
        rule_version=rule.version or "",
        sensor_id=sensor_id,
        problem=machine.problem,
        kind=event.kind,
        fired_at=from_us(event.t),
        onset=from_us(event.onset) if event.onset is not None else None,
        severity=machine.severity,
        value=None if machine.watches_silence else _value(event.value),
        evidence=evidence,
    )


def _chunks(instants: np.ndarray, sensors: int) -> list[np.ndarray]:
    per = max(1, CELL_BUDGET // max(sensors, 1))
    return [instants[i : i + per] for i in range(0, len(instants), per)]


def evaluate_range(
    conn: psycopg.Connection | None,
    rule: Rule,
    city: City | None,
    sensor_count: int,
    instants: np.ndarray,
    states: dict[str, MachineState],
    emit: Callable[[Machine, Event], None],
    *,
    transitions: dict[str, Transitions] | None = None,
    series: Series | None = None,
    on_chunk: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> None:
    """Step every machine of ``rule`` through ``instants`` (int64 µs, sorted, aligned).

    Readings come from ``fetch_series`` on ``conn`` (the rule's selection table must exist in
    the current transaction), or from ``series`` when given. ``states`` maps machine id to the
    state of the ``sensor_count`` selected sensors and is updated in place. ``on_chunk`` sees
    each chunk's instants and aggregate values (reports use it).
    """
    window = us(rule.window)
    interval = us(rule.interval)
    schedule = rule.schedule
    machines = machines_of(rule)
    guard = rule.unless
    guard_window = us(rule.guard_window) if rule.guard_window is not None else 0
    shared = guard is not None and rule.guard_metric == rule.metric
    # One fetch serves the guard too when it reads the same metric (over the longer window).
    reach = max(window, guard_window) if shared else window
    for chunk in _chunks(np.asarray(instants, dtype=np.int64), sensor_count):
        if len(chunk) == 0:
            continue
        active = schedule.active(chunk, city)
        if not active.any():
            continue  # nothing can move: no need to read anything
        # Instants that open an active period (the one before them was outside the schedule).
        fresh = None if schedule.always else active & ~schedule.active(chunk - interval, city)
        data = series
        if data is None:
            if conn is None:
                raise RulesError("evaluate_range needs a connection or a series")
            data = fetch_series(
                conn, rule.metric, int(chunk[0]) - reach, int(chunk[-1]), timestamp=rule.timestamp
            )
        values, _counts = window_aggregates(data, sensor_count, chunk, window, rule.aggregate)
        nodata = np.isnan(values)
        cond = rule.condition.test(values)
        clear = rule.clear.test(values) if rule.clear is not None else ~cond
        hold = None
        if guard is not None:
            guard_data = data
            if not shared and series is None and conn is not None:
                guard_data = fetch_series(
                    conn, rule.guard_metric or rule.metric, int(chunk[0]) - guard_window, int(chunk[-1]),
                    timestamp=rule.timestamp,
                )  # fmt: skip
            guard_values, _ = window_aggregates(
                guard_data, sensor_count, chunk, guard_window, guard.aggregate
            )
            hold = guard.condition.test(guard_values)
        if on_chunk is not None:
            on_chunk(chunk, values)
        for machine in machines:

            def sink(event: Event, machine: Machine = machine) -> None:
                emit(machine, event)

            record = transitions.setdefault(machine.id, Transitions()) if transitions is not None else None
            if machine.watches_silence:
                silent = nodata  # its condition is "no data"; it never lacks data itself
                inputs = (silent, ~silent, np.zeros_like(silent))
            else:
                inputs = (cond, clear, nodata)
            run(states[machine.id], chunk, *inputs, values, active, machine.params, sink, record, hold, fresh)
