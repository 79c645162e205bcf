"""Same seed and options, same bytes: messages in every format and the ground truth."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from simulators import FORMATS, FaultRates, Simulation, build_fleet, get_encoder
from simulators.faults import FAULT_KINDS, TRANSPORT_FAULTS
from simulators.fleet import Fleet

pytestmark = pytest.mark.slow

#: From before sunset to after the morning collections, so every kind of fault can occur.
START = dt.datetime(2024, 3, 14, 16, tzinfo=dt.UTC)
END = START + dt.timedelta(hours=16)
#: Rates high enough that 16 hours of 52 sensors hold nearly every kind of fault.
BUSY = FaultRates({**{k: 0.3 for k in FAULT_KINDS}, "circuit_outage": 1.0})
COUNTS = {"bin": 12, "light": 24, "parking": 8, "air": 8}


def fingerprint(seed: int) -> tuple[dict[str, str], bytes]:
    fleet = build_fleet(seed, COUNTS)
    sim = Simulation(fleet, BUSY, START, END, 300)
    encoders = {name: get_encoder(name, fleet, "t/x") for name in FORMATS}
    digests = {name: hashlib.sha256() for name in FORMATS}
    for message in sim.messages():
        for name, enc in encoders.items():
            for topic, payload in enc.encode(message):
                digests[name].update(topic.encode() + b"\0" + payload + b"\0")
    return {k: d.hexdigest() for k, d in digests.items()}, sim.ground_truth().to_jsonl()


@pytest.fixture(scope="module")
def first() -> tuple[dict[str, str], bytes]:
    return fingerprint(3)


def test_same_seed_same_bytes(first: tuple[dict[str, str], bytes]) -> None:
    again = fingerprint(3)
    assert again[0] == first[0]
    assert again[1] == first[1]
    # The run was not trivially quiet: every transport fault and most device faults are in it
    # (16 hours hold one night, too little for every lamp fault at once; test_faults has all).
    present = [k for k in FAULT_KINDS if f'"kind":"{k}"'.encode() in first[1]]
    assert set(TRANSPORT_FAULTS) <= set(present) and len(present) >= 13


def test_another_seed_other_bytes(first: tuple[dict[str, str], bytes]) -> None:
    other = fingerprint(4)
    assert all(other[0][name] != first[0][name] for name in FORMATS)
    assert other[1] != first[1]


def test_replaying_a_simulation_gives_the_same_messages() -> None:
    fleet = build_fleet(3, COUNTS)
    sim = Simulation(fleet, BUSY, START, END, 300)
    assert list(sim.messages()) == list(sim.messages())
    truth = sim.ground_truth().to_jsonl()
    list(sim.batches())
    assert sim.ground_truth().to_jsonl() == truth


def test_a_sensors_readings_do_not_depend_on_the_rest_of_the_fleet() -> None:
    """Noise is keyed by sensor: with many more lamps and monitors in town (which moves the
    bins to other streets), a bin's thermometer still reads the same."""
    small = build_fleet(3, {"bin": 5})
    large = build_fleet(3, {"bin": 5, "light": 60, "air": 10})
    assert small.groups["bin"].ids == large.groups["bin"].ids

    def temperatures(fleet: Fleet) -> list[tuple[str, float]]:
        sim = Simulation(fleet, None, START, START + dt.timedelta(hours=2), 300)
        return [(m.sensor_id, m.values["temperature"]) for m in sim.messages() if m.kind == "bin"]

    assert temperatures(small) == temperatures(large)
