"""The state machine, transition by transition (the table of DESIGN.md "Rule semantics")."""

from __future__ import annotations

import numpy as np
import pytest

from rules.state import FIRING, NORMAL, PENDING, RECOVERING, Event, MachineParams, MachineState, run, step

MIN = 60_000_000  # µs
T = 1_780_000_000 * 1_000_000 // MIN * MIN


def one(code: int, since: int | None = None, fired: int | None = None) -> MachineState:
    st = MachineState.normal(1)
    st.code[0] = code
    if since is not None:
        st.since[0] = since
        st.onset[0] = since
    if fired is not None:
        st.fired[0] = fired
    return st


def go(
    st: MachineState, t: int, cond: bool, clear: bool | None = None, nodata: bool = False, **params
) -> list[Event]:
    p = MachineParams(for_us=params.get("for_us", 5 * MIN), clear_for_us=params.get("clear_for_us", 3 * MIN),
                      no_data=params.get("no_data", "ok"))  # fmt: skip
    events: list[Event] = []
    clear_value = (not cond) if clear is None else clear
    step(
        st,
        t,
        np.array([cond]),
        np.array([clear_value]),
        np.array([nodata]),
        np.array([1.5]),
        p,
        events.append,
    )
    return events


# (name, state before, since, fired, condition, clear, offset, params) → (state after, since after, event)
FOR0 = {"for_us": 0}
CLEAR0 = {"clear_for_us": 0}
TABLE = [
    ("normal holds → pending", NORMAL, None, None, True, None, 0, {}, PENDING, 0, None),
    ("normal holds, for 0 → firing", NORMAL, None, None, True, None, 0, FOR0, FIRING, 0, "detection"),
    ("normal fails → normal", NORMAL, None, None, False, None, 0, {}, NORMAL, None, None),
    ("pending fails → normal", PENDING, -2, None, False, None, 0, {}, NORMAL, None, None),
    ("pending holds, short → pending", PENDING, -4, None, True, None, 0, {}, PENDING, -4, None),
    ("pending holds, for reached → firing", PENDING, -5, None, True, None, 0, {}, FIRING, 0, "detection"),
    ("firing clear → recovering", FIRING, -9, -9, False, True, 0, {}, RECOVERING, 0, None),
    ("clear_for 0 → normal", FIRING, -9, -9, False, True, 0, CLEAR0, NORMAL, None, "resolution"),
    ("firing not clear → firing", FIRING, -9, -9, True, False, 0, {}, FIRING, -9, None),
    ("recovering clear fails → firing", RECOVERING, -1, -9, True, False, 0, {}, FIRING, -9, None),
    ("recovering clear, short → recovering", RECOVERING, -2, -9, False, True, 0, {}, RECOVERING, -2, None),
    ("recovering clear, clear_for reached → normal", RECOVERING, -3, -9, False, True, 0, {}, NORMAL, None,
     "resolution"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "since", "fired", "cond", "clear", "offset", "params", "after", "since_after", "event"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_transition(before, since, fired, cond, clear, offset, params, after, since_after, event) -> None:
    t = T + offset * MIN
    st = one(before, None if since is None else T + since * MIN, None if fired is None else T + fired * MIN)
    events = go(st, t, cond, clear, **params)
    assert st.code[0] == after
    if since_after is not None:
        assert st.since[0] == T + since_after * MIN
    assert [e.kind for e in events] == ([event] if event else [])


def test_detection_carries_onset_and_resolution_the_detection_time() -> None:
    st = one(NORMAL)
    go(st, T, True)
    [detection] = go(st, T + 5 * MIN, True)
    assert (detection.t, detection.onset, detection.fired) == (T + 5 * MIN, T, T + 5 * MIN)
    go(st, T + 6 * MIN, False)
    [resolution] = go(st, T + 9 * MIN, False)
    assert resolution.kind == "resolution" and resolution.fired == T + 5 * MIN and resolution.t == T + 9 * MIN


def series(conds, clears=None, nodata=None, active=None, **params) -> tuple[list[int], list[tuple[str, int]]]:
    """Run one sensor through minutes 0..n-1; returns its state codes and events (kind, minute)."""
    n = len(conds)
    st = MachineState.normal(1)
    p = MachineParams(
        params.get("for_us", 3 * MIN), params.get("clear_for_us", 2 * MIN), params.get("no_data", "ok")
    )
    events: list[Event] = []
    codes = []
    cond = np.array(conds, dtype=bool)[:, None]
    clear = ~cond if clears is None else np.array(clears, dtype=bool)[:, None]
    nd = np.zeros((n, 1), bool) if nodata is None else np.array(nodata, dtype=bool)[:, None]
    act = np.ones(n, bool) if active is None else np.array(active, dtype=bool)
    for k in range(n):
        run(st, np.array([T + k * MIN]), cond[k : k + 1], clear[k : k + 1], nd[k : k + 1], np.zeros((1, 1)),
            act[k : k + 1], p, events.append)  # fmt: skip
        codes.append(int(st.code[0]))
    return codes, [(e.kind, (e.t - T) // MIN) for e in events]


def test_for_and_clear_for_count_instants_not_readings() -> None:
    codes, events = series([1, 1, 1, 1, 1, 0, 0, 0, 0])
    assert events == [("detection", 3), ("resolution", 7)]
    assert codes == [PENDING, PENDING, PENDING, FIRING, FIRING, RECOVERING, RECOVERING, NORMAL, NORMAL]


def test_a_blip_during_pending_restarts_for() -> None:
    _, events = series([1, 1, 0, 1, 1, 1, 1])
    assert events == [("detection", 6)]


def test_hysteresis_the_clear_condition_not_the_condition_ends_firing() -> None:
    # value: 0.95 0.95 0.95 0.95 0.8 0.8 0.5 0.5 0.5 with condition > 0.9 and clear < 0.6
    values = [0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.5, 0.5, 0.5]
    conds = [v > 0.9 for v in values]
    clears = [v < 0.6 for v in values]
    codes, events = series(conds, clears)
    assert events == [("detection", 3), ("resolution", 8)]
    assert codes[4:6] == [FIRING, FIRING]  # condition fails, clear does not: still firing


def test_recovering_relapses_without_a_new_detection() -> None:
    _, events = series([1, 1, 1, 1, 0, 1, 0, 0, 0])
    assert events == [("detection", 3), ("resolution", 8)]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("ok", [("detection", 3), ("resolution", 6)]),  # no data clears (after clear_for)
        ("alerting", [("detection", 3)]),  # no data keeps it firing
        ("keep_last", [("detection", 3)]),  # no transition at all
    ],
)
def test_no_data_while_firing(mode: str, expected: list) -> None:
    conds = [1, 1, 1, 1, 0, 0, 0]
    nodata = [0, 0, 0, 0, 1, 1, 1]
    _, events = series(conds, nodata=nodata, no_data=mode)
    assert events == expected


@pytest.mark.parametrize(
    ("mode", "codes"),
    [
        ("ok", [NORMAL, NORMAL, NORMAL, NORMAL]),
        ("alerting", [PENDING, PENDING, PENDING, FIRING]),
        ("keep_last", [NORMAL, NORMAL, NORMAL, NORMAL]),
    ],
)
def test_no_data_from_normal(mode: str, codes: list[int]) -> None:
    got, _ = series([0, 0, 0, 0], nodata=[1, 1, 1, 1], no_data=mode)
    assert got == codes


def test_keep_last_holds_pending_across_a_gap() -> None:
    codes, events = series([1, 0, 0, 1, 1], nodata=[0, 1, 1, 0, 0], no_data="keep_last")
    assert codes[:3] == [PENDING, PENDING, PENDING]
    assert events == [("detection", 3)]


def test_outside_the_schedule_nothing_moves() -> None:
    codes, events = series([1, 1, 1, 1, 0, 0, 0, 0], active=[1, 1, 1, 1, 0, 0, 0, 1])
    assert events == [("detection", 3)]
    assert codes[4:7] == [FIRING, FIRING, FIRING] and codes[7] == RECOVERING


def test_many_sensors_step_independently() -> None:
    st = MachineState.normal(3)
    p = MachineParams(0, 0, "ok")
    events: list[Event] = []
    step(st, T, np.array([True, False, True]), np.array([False, True, False]), np.zeros(3, bool),
         np.array([1.0, 2.0, 3.0]), p, events.append)  # fmt: skip
    assert [(e.sensor, e.value) for e in events] == [(0, 1.0), (2, 3.0)]
    assert st.code.tolist() == [FIRING, NORMAL, FIRING]


def test_unless_starts_nothing_but_resolves_nothing() -> None:
    st = MachineState.normal(3)
    st.code[:] = [NORMAL, PENDING, FIRING]
    st.since[:] = T - 10 * MIN
    st.fired[2] = T - 10 * MIN
    p = MachineParams(5 * MIN, 0, "ok")
    events: list[Event] = []
    hold = np.array([True, True, True])
    cond = np.array([True, True, False])
    step(st, T, cond, ~cond, np.zeros(3, bool), np.zeros(3), p, events.append, hold)
    assert st.code.tolist() == [NORMAL, NORMAL, FIRING] and events == []


def test_for_counts_only_time_inside_the_schedule() -> None:
    # Pending at the last active instant; the schedule closes; when it opens again the sensor must
    # hold the condition for `for` anew rather than fire for the hours in between.
    conds = [0, 1, 1, 1, 1, 1, 1, 1]
    active = [1, 1, 0, 0, 1, 1, 1, 1]
    st = MachineState.normal(1)
    p = MachineParams(3 * MIN, 0, "ok")
    events: list[Event] = []
    n = len(conds)
    cond = np.array(conds, dtype=bool)[:, None]
    act = np.array(active, dtype=bool)
    fresh = act & ~np.concatenate(([True], act[:-1]))
    instants = np.array([T + k * MIN for k in range(n)])
    run(st, instants, cond, ~cond, np.zeros((n, 1), bool), np.zeros((n, 1)), act, p, events.append,
        None, None, fresh)  # fmt: skip
    assert [((e.t - T) // MIN, (e.onset - T) // MIN) for e in events] == [(7, 4)]
