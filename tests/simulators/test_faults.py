"""Every fault kind is labelled with the right sensors and times, and shows in the data.

The faulty run and the clean run share fleet, period and noise, so a faulted reading can be
compared with what the same sensor reported at the same instant without the fault.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime

import pytest

from simulators import FAULT_KINDS, get_encoder
from simulators.encoders import FORMATS
from simulators.faults import DEVICE_FAULTS, TRANSPORT_FAULTS, Episode
from simulators.fleet import Fleet
from simulators.kinds.base import BatteryModel
from tests.simulators.simhelp import STEP_S, Run

STEP_MS = int(STEP_S * 1000)
#: Faults that change a sensor's state (not just what it reports): later comparisons with the
#: clean run are only fair on sensors without one of these earlier.
_STATEFUL = {"bin_overflow", "abnormal_fill_rate", "dead_battery"}


def episodes(run: Run, kind: str) -> list[Episode]:
    found = run.truth.by_kind(kind)
    assert found, f"no {kind} episode in the faulty run"
    return found


def inside(run: Run, e: Episode, sensor_id: str) -> list:
    return [m for m in run.series(sensor_id) if e.start_ms <= m.true_time_ms < e.end_ms]


def comparable(run: Run, e: Episode, sensor_id: str) -> bool:
    """No state-changing fault on this sensor began before ``e`` ends."""
    return not any(
        o.kind in _STATEFUL and sensor_id in o.sensors and o.start_ms < e.end_ms and o.id != e.id
        for o in run.truth.episodes
    )


def test_every_fault_kind_is_labelled_on_sensors_it_can_affect(faulty_run: Run, fleet: Fleet) -> None:
    sim = faulty_run.sim
    allowed = {**DEVICE_FAULTS, **TRANSPORT_FAULTS}
    seen = Counter(e.kind for e in faulty_run.truth.episodes)
    assert set(seen) == set(FAULT_KINDS)
    assert len({e.id for e in faulty_run.truth.episodes}) == len(faulty_run.truth.episodes)
    for e in faulty_run.truth.episodes:
        assert sim.start_ms <= e.start_ms < e.end_ms <= sim.end_ms
        assert e.sensors and all(fleet.kinds[fleet.index[s]] in allowed[e.kind] for s in e.sensors)
    assert faulty_run.truth.summary["episodes"] == {k: seen[k] for k in FAULT_KINDS}


def test_episodes_of_one_category_never_overlap_on_a_sensor(faulty_run: Run) -> None:
    busy: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for e in faulty_run.truth.episodes:
        for s in e.sensors:
            busy[(s, e.category)].append((e.start_ms, e.end_ms))
    for spans in busy.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start


def test_lamp_out_is_dark_at_night(faulty_run: Run, clean_run: Run) -> None:
    for e in episodes(faulty_run, "lamp_out"):
        (sensor,) = e.sensors
        clean = clean_run.at(sensor)
        night = [m for m in inside(faulty_run, e, sensor) if clean[m.true_time_ms].values["lamp_on"]]
        assert night, f"{e.id} covers no night"
        assert all(m.values["lamp_on"] == 0 and m.values["power_w"] == 0 for m in night)


def test_day_burner_is_lit_by_day(faulty_run: Run, clean_run: Run) -> None:
    for e in episodes(faulty_run, "day_burner"):
        (sensor,) = e.sensors
        clean = clean_run.at(sensor)
        day = [m for m in inside(faulty_run, e, sensor) if not clean[m.true_time_ms].values["lamp_on"]]
        assert day, f"{e.id} covers no daylight"
        assert all(m.values["lamp_on"] == 1 and m.values["power_w"] > 0 for m in day)


def test_flicker_switches_on_and_off_at_night(faulty_run: Run, clean_run: Run) -> None:
    for e in episodes(faulty_run, "flicker"):
        (sensor,) = e.sensors
        clean = clean_run.at(sensor)
        night = [
            m.values["lamp_on"]
            for m in inside(faulty_run, e, sensor)
            if clean[m.true_time_ms].values["lamp_on"]
        ]
        if len(night) >= 8:
            assert set(night) == {0.0, 1.0}


def test_circuit_outage_darkens_the_whole_circuit(faulty_run: Run, fleet: Fleet) -> None:
    circuits = dict(fleet.circuits())
    for e in episodes(faulty_run, "circuit_outage"):
        members = {fleet.ids[g] for g in circuits[e.params["circuit"]]}
        assert set(e.sensors) == members
        for sensor in members:
            for m in inside(faulty_run, e, sensor):
                assert m.values["lamp_on"] == 0 and m.values["voltage"] == 0


def test_partial_lamp_failure_halves_the_power(faulty_run: Run, clean_run: Run) -> None:
    for e in episodes(faulty_run, "partial_lamp_failure"):
        (sensor,) = e.sensors
        factor = e.params["power_factor"]
        clean = clean_run.at(sensor)
        lit = [m for m in inside(faulty_run, e, sensor) if m.values["lamp_on"]]
        assert lit
        for m in lit:
            assert m.values["power_w"] == pytest.approx(
                clean[m.true_time_ms].values["power_w"] * factor, abs=0.2
            )


def test_bin_overflow_stays_full_past_its_collection(faulty_run: Run) -> None:
    for e in episodes(faulty_run, "bin_overflow"):
        (sensor,) = e.sensors
        skipped = datetime.fromisoformat(e.params["skipped_collection"]).timestamp() * 1000
        assert e.start_ms <= skipped < e.end_ms or e.end_ms == faulty_run.sim.end_ms
        during = inside(faulty_run, e, sensor)
        assert during and all(m.values["fill_level"] >= 0.95 for m in during)
        after = [m for m in faulty_run.series(sensor) if m.true_time_ms >= e.end_ms]
        if after:
            assert after[0].values["fill_level"] < 0.3  # the extra pick-up empties it


def test_abnormal_fill_rate_fills_faster(faulty_run: Run, clean_run: Run) -> None:
    for e in episodes(faulty_run, "abnormal_fill_rate"):
        (sensor,) = e.sensors
        if not comparable(faulty_run, e, sensor) or e.end_ms - e.start_ms < 3 * 3_600_000:
            continue

        def rise(run: Run, e: Episode = e, sensor: str = sensor) -> float:
            fills = [m.values["fill_level"] for m in inside(run, e, sensor)]
            return sum(max(b - a, 0.0) for a, b in itertools.pairwise(fills))

        faulty = [m.values["fill_level"] for m in inside(faulty_run, e, sensor)]
        assert rise(faulty_run) >= 2.0 * rise(clean_run) or max(faulty) >= 0.9


def test_stuck_sensors_report_one_value(faulty_run: Run) -> None:
    for e in episodes(faulty_run, "stuck"):
        (sensor,) = e.sensors
        metric = e.params["metric"]
        values = {m.values[metric] for m in inside(faulty_run, e, sensor)}
        assert values == {e.params["value"]}


def test_drift_grows_with_time(faulty_run: Run, clean_run: Run) -> None:
    checked = 0
    for e in episodes(faulty_run, "drift"):
        (sensor,) = e.sensors
        if not comparable(faulty_run, e, sensor):
            continue
        metric, per_hour = e.params["metric"], e.params["per_hour"]
        clean = clean_run.at(sensor)
        for m in inside(faulty_run, e, sensor):
            value = m.values[metric]
            if metric == "distance_mm" and not 30 < value < 4500:
                continue  # clipped at the sensor's range
            hours = (m.true_time_ms - e.start_ms) / 3_600_000
            assert value - clean[m.true_time_ms].values[metric] == pytest.approx(per_hour * hours, abs=1.1)
            checked += 1
    assert checked


def test_spikes_hit_exactly_the_listed_messages(faulty_run: Run, clean_run: Run) -> None:
    for e in episodes(faulty_run, "spikes"):
        (sensor,) = e.sensors
        if not comparable(faulty_run, e, sensor):
            continue
        metric = e.params["metric"]
        listed = set(e.messages or [])
        assert listed and len(listed) == len(e.messages or [])
        clean = clean_run.at(sensor)
        for m in inside(faulty_run, e, sensor):
            expected = clean[m.true_time_ms].values[metric]
            if m.message_id in listed:
                assert abs(m.values[metric] - expected) > 0.2 * max(abs(expected), 50.0)
            else:
                assert m.values[metric] == expected


def test_dropout_silences_the_sensor(faulty_run: Run) -> None:
    for e in episodes(faulty_run, "dropout"):
        (sensor,) = e.sensors
        assert inside(faulty_run, e, sensor) == []
        assert faulty_run.series(sensor)  # it reports outside the episode


def test_dead_battery_drains_then_goes_silent_until_replaced(faulty_run: Run) -> None:
    for e in episodes(faulty_run, "dead_battery"):
        (sensor,) = e.sensors
        during = [m.values["battery"] for m in inside(faulty_run, e, sensor)]
        assert during == sorted(during, reverse=True)
        last_heard = max((m.true_time_ms for m in inside(faulty_run, e, sensor)), default=e.start_ms)
        assert e.end_ms - last_heard > STEP_MS or e.end_ms == faulty_run.sim.end_ms
        if during:
            step_drain = e.params["drain_per_hour"] * STEP_S / 3600
            assert during[-1] <= BatteryModel.CUTOFF + step_drain + 1
        after = [m for m in faulty_run.series(sensor) if m.true_time_ms >= e.end_ms]
        if after:
            assert after[0].values["battery"] == 100


def _by_id(run: Run, sensor: str) -> dict[str, list]:
    out = defaultdict(list)
    for m in run.by_sensor[sensor]:
        out[m.message_id].append(m)
    return out


def test_malformed_messages_are_listed_and_unparsable_in_every_format(faulty_run: Run, fleet: Fleet) -> None:
    encoders = [get_encoder(name, fleet) for name in FORMATS]
    for e in episodes(faulty_run, "malformed"):
        (sensor,) = e.sensors
        broken = {m.message_id for m in faulty_run.by_sensor[sensor] if m.malformed}
        assert set(e.messages or []) == broken and broken
        for m in faulty_run.by_sensor[sensor]:
            for enc in encoders:
                ((_, payload),) = enc.encode(m)
                if m.malformed:
                    with pytest.raises(ValueError):
                        json.loads(payload)
                else:
                    json.loads(payload)


def test_duplicates_are_the_same_bytes_twice_in_a_row(faulty_run: Run, fleet: Fleet) -> None:
    encoders = [get_encoder(name, fleet) for name in FORMATS]
    delivered = faulty_run.messages
    position = defaultdict(list)
    for i, m in enumerate(delivered):
        position[m.message_id].append(i)
    for e in episodes(faulty_run, "duplicate"):
        assert e.messages
        for mid in e.messages:
            first, second = position[mid]
            assert second == first + 1
            a, b = delivered[first], delivered[second]
            assert not a.duplicate and b.duplicate
            assert all(enc.encode(a) == enc.encode(b) for enc in encoders)
    others = [ids for mid, ids in position.items() if len(ids) > 1]
    assert len(others) == sum(len(e.messages or []) for e in faulty_run.truth.by_kind("duplicate"))


def test_out_of_order_messages_arrive_after_later_ones(faulty_run: Run) -> None:
    order = {id(m): i for i, m in enumerate(faulty_run.messages)}
    newest_before = []  # newest true time delivered before each position
    newest = 0
    for m in faulty_run.messages:
        newest_before.append(newest)
        newest = max(newest, m.true_time_ms)
    for e in episodes(faulty_run, "out_of_order"):
        (sensor,) = e.sensors
        assert e.messages
        delivered = [m for m in faulty_run.by_sensor[sensor] if not m.duplicate]
        overtaken = 0
        for i, m in enumerate(delivered):
            if m.message_id in e.messages:
                steps = e.params["delay_steps"]
                assert m.delayed_steps == steps
                # Delivered after reports taken (steps - 1) steps later than it, by any sensor ...
                assert newest_before[order[id(m)]] > m.true_time_ms + (steps - 1) * STEP_MS
                # ... and, usually, after a newer report of its own sensor.
                overtaken += any(earlier.true_time_ms > m.true_time_ms for earlier in delivered[:i])
            else:
                assert all(
                    earlier.true_time_ms < m.true_time_ms or earlier.delayed_steps
                    for earlier in delivered[:i]
                )
        assert overtaken


def test_clock_skew_shifts_the_carried_time(faulty_run: Run, fleet: Fleet) -> None:
    encoder = get_encoder("json", fleet)
    for e in episodes(faulty_run, "clock_skew"):
        (sensor,) = e.sensors
        skew_ms = e.params["skew_s"] * 1000
        listed = set(e.messages or [])
        assert listed == {m.message_id for m in inside(faulty_run, e, sensor)}
        for m in faulty_run.series(sensor):
            expected = skew_ms if m.message_id in listed else 0
            assert m.time_ms - m.true_time_ms == expected
        m = next(m for m in faulty_run.series(sensor) if m.message_id in listed)
        ((_, skewed),) = encoder.encode(m)
        ((_, true),) = encoder.encode(replace(m, time_ms=m.true_time_ms))
        assert json.loads(skewed)["ts"] != json.loads(true)["ts"]
