"""The per-(rule, sensor) state machine, stepped for many sensors at once. Pure: no clock, no I/O.

::

    normal ──cond──▶ pending(since) ──cond, t − since ≥ for──▶ firing ──clear──▶ recovering(since)
      ▲                 │ not cond                                ▲                 │ not clear
      └─────────────────┘                                         └─────────────────┘
      ◀──────────────────── clear, t − since ≥ clear_for (resolution) ──────────────┘

With ``for = 0`` normal goes straight to firing; with ``clear_for = 0`` firing straight to
normal. Entering firing emits a detection (fired_at t, onset = start of pending); returning to
normal emits a resolution. No data follows the machine's policy; outside the schedule nothing
moves. Live evaluation and backtests both call ``run``: that is the contract that makes their
detections identical.

Times are int64 microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FIRING",
    "NORMAL",
    "NO_DATA_POLICIES",
    "NO_TIME",
    "PENDING",
    "RECOVERING",
    "STATE_NAMES",
    "Event",
    "MachineParams",
    "MachineState",
    "Transitions",
    "run",
    "step",
]

NORMAL, PENDING, FIRING, RECOVERING = 0, 1, 2, 3
STATE_NAMES = ("normal", "pending", "firing", "recovering")
#: ``ok``: no data means the condition fails and the clear condition holds; ``alerting``: the
#: condition holds; ``keep_last``: no transition. (``silent`` rules use ``keep_last`` for their
#: main machine and run a second machine whose condition is "no data".)
NO_DATA_POLICIES = ("ok", "alerting", "keep_last")
#: Stands for "no time" in the int64 time arrays (since, onset, fired of a normal sensor).
NO_TIME = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class MachineParams:
    """``for_us`` and ``clear_for_us`` in microseconds; ``no_data`` one of NO_DATA_POLICIES."""

    for_us: int
    clear_for_us: int
    no_data: str

    def __post_init__(self) -> None:
        if self.no_data not in NO_DATA_POLICIES:
            raise ValueError(f"no_data must be one of {NO_DATA_POLICIES}, got {self.no_data!r}")
        if self.for_us < 0 or self.clear_for_us < 0:
            raise ValueError("for and clear_for must be >= 0")


@dataclass(slots=True)
class MachineState:
    """The state of N sensors: codes and times (µs; ``NO_TIME`` where not applicable)."""

    code: np.ndarray
    since: np.ndarray
    onset: np.ndarray
    fired: np.ndarray
    value: np.ndarray

    @classmethod
    def normal(cls, n: int) -> MachineState:
        return cls(
            code=np.zeros(n, dtype=np.int8),
            since=np.full(n, NO_TIME, dtype=np.int64),
            onset=np.full(n, NO_TIME, dtype=np.int64),
            fired=np.full(n, NO_TIME, dtype=np.int64),
            value=np.full(n, np.nan),
        )

    def copy(self) -> MachineState:
        return MachineState(
            self.code.copy(), self.since.copy(), self.onset.copy(), self.fired.copy(), self.value.copy()
        )


@dataclass(frozen=True, slots=True)
class Event:
    """A detection (``kind="detection"``) or resolution of sensor number ``sensor`` at instant ``t``."""

    kind: str
    sensor: int
    t: int
    onset: int | None
    fired: int | None
    value: float


@dataclass(slots=True)
class Transitions:
    """Every state change (for reports): parallel lists of instant, sensor, old and new code."""

    t: list[np.ndarray] = field(default_factory=list)
    sensor: list[np.ndarray] = field(default_factory=list)
    old: list[np.ndarray] = field(default_factory=list)
    new: list[np.ndarray] = field(default_factory=list)


def _opt(value: int) -> int | None:
    return None if value == NO_TIME else int(value)


def step(
    state: MachineState,
    t: int,
    cond: np.ndarray,
    clear: np.ndarray,
    nodata: np.ndarray,
    value: np.ndarray,
    params: MachineParams,
    emit: Callable[[Event], None],
    hold: np.ndarray | None = None,
) -> np.ndarray:
    """Advance every sensor to instant ``t`` in place; returns the indices whose state changed.

    ``cond`` and ``clear`` are the condition and clear condition on the sensor's aggregate (their
    value where ``nodata`` is true does not matter: the policy decides). Where ``hold`` is true
    (the rule's ``unless`` guard holds) nothing new starts: normal stays normal, pending returns
    to normal, and firing or recovering sensors stay as they are.
    """
    if params.no_data == "ok":
        cond = cond & ~nodata
        clear = clear | nodata
    elif params.no_data == "alerting":
        cond = cond | nodata
        clear = clear & ~nodata
    else:
        cond = cond & ~nodata  # keep_last: nothing moves without data (see ``still`` below)
    # Only sensors that are not normal, or whose condition holds, can change: most instants
    # touch a handful of a rule's sensors, so the work below runs on those alone.
    busy = np.flatnonzero((state.code != NORMAL) | cond)
    if not len(busy):
        return busy
    code = state.code[busy]
    since = state.since[busy]
    cond = cond[busy]
    clear = clear[busy]
    normal = code == NORMAL
    pending = code == PENDING
    firing = code == FIRING
    recovering = code == RECOVERING
    if params.no_data == "keep_last":
        still = nodata[busy]
        pending &= ~still
        firing &= ~still
        recovering &= ~still

    start = normal & cond
    drop = pending & ~cond
    ripe = pending & cond & (t - since >= params.for_us)
    calm = firing & clear
    relapse = recovering & ~clear
    settle = recovering & clear & (t - since >= params.clear_for_us)
    if hold is not None:
        held = hold[busy]
        free = ~held
        start &= free
        drop |= pending & held
        ripe &= free
        calm &= free
        relapse &= free
        settle &= free
    if params.for_us == 0:
        fire_now, start = start, np.zeros_like(start)
    else:
        fire_now = np.zeros_like(start)
    if params.clear_for_us == 0:
        resolve_now, calm = calm, np.zeros_like(calm)
    else:
        resolve_now = np.zeros_like(calm)

    changed = start | drop | ripe | calm | relapse | settle | fire_now | resolve_now
    if not changed.any():
        return np.empty(0, dtype=np.int64)

    onset = state.onset[busy]
    fired = state.fired[busy]
    # Detections: from pending (onset = when pending began) or at once from normal (onset = t).
    for j in np.flatnonzero(ripe | fire_now):
        i = int(busy[j])
        emit(Event("detection", i, t, int(since[j]) if ripe[j] else t, t, float(value[i])))
    for j in np.flatnonzero(settle | resolve_now):
        i = int(busy[j])
        emit(Event("resolution", i, t, _opt(onset[j]), _opt(fired[j]), float(value[i])))

    to_normal = drop | settle | resolve_now
    code[to_normal] = NORMAL
    since[to_normal] = NO_TIME
    onset[to_normal] = NO_TIME
    fired[to_normal] = NO_TIME

    code[start] = PENDING
    since[start] = t
    onset[start] = t

    fire = ripe | fire_now
    onset[fire_now] = t
    code[fire] = FIRING
    since[fire] = t
    fired[fire] = t

    code[calm] = RECOVERING
    since[calm] = t

    code[relapse] = FIRING
    since[relapse] = fired[relapse]

    state.code[busy] = code
    state.since[busy] = since
    state.onset[busy] = onset
    state.fired[busy] = fired
    moved = busy[changed]
    state.value[moved] = value[moved]
    return moved


def run(
    state: MachineState,
    instants: np.ndarray,
    cond: np.ndarray,
    clear: np.ndarray,
    nodata: np.ndarray,
    values: np.ndarray,
    active: np.ndarray,
    params: MachineParams,
    emit: Callable[[Event], None],
    transitions: Transitions | None = None,
    hold: np.ndarray | None = None,
    fresh: np.ndarray | None = None,
) -> None:
    """Step ``state`` through ``instants`` in order; arrays are shaped (K instants, N sensors).

    Instants where ``active`` is false make no transition; cells where ``hold`` is true start
    nothing (see ``step``). Where ``fresh`` is true an active period begins: pending and
    recovering sensors start counting ``for`` / ``clear_for`` again, so time outside the
    schedule never counts (a lamp pending at dawn does not fire at dusk for the night between).
    ``transitions``, when given, records every change for reports.
    """
    for k in range(len(instants)):
        if not active[k]:
            continue
        t = int(instants[k])
        if fresh is not None and fresh[k]:
            waiting = (state.code == PENDING) | (state.code == RECOVERING)
            state.since[waiting] = t
            state.onset[waiting & (state.code == PENDING)] = t
        old = state.code.copy() if transitions is not None else None
        changed = step(state, t, cond[k], clear[k], nodata[k], values[k], params, emit,
                       None if hold is None else hold[k])  # fmt: skip
        if transitions is not None and len(changed):
            transitions.t.append(np.full(len(changed), t, dtype=np.int64))
            transitions.sensor.append(changed)
            transitions.old.append(old[changed])
            transitions.new.append(state.code[changed].copy())
