"""Helpers the simulator tests share: a finished run with its messages indexed."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from astral import Observer
from astral.sun import elevation

from simulators import FaultRates, Simulation
from simulators.fleet import Fleet
from simulators.ground_truth import GroundTruth
from simulators.messages import SimMessage

__all__ = ["END", "SEED", "START", "STEP_S", "Run", "run", "sun_elevation"]

SEED = 11
#: A Monday in March, away from the DST change (Europe switches on the last Sunday).
START = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
END = START + dt.timedelta(days=2)
STEP_S = 300.0


@dataclass
class Run:
    sim: Simulation
    messages: list[SimMessage]
    truth: GroundTruth
    by_sensor: dict[str, list[SimMessage]] = field(default_factory=dict)

    def series(self, sensor_id: str) -> list[SimMessage]:
        """First deliveries of one sensor in event order (no duplicates)."""
        return sorted(
            (m for m in self.by_sensor.get(sensor_id, []) if not m.duplicate), key=lambda m: m.true_time_ms
        )

    def at(self, sensor_id: str) -> dict[int, SimMessage]:
        """First deliveries of one sensor keyed by true time (ms)."""
        return {m.true_time_ms: m for m in self.series(sensor_id)}


def run(fleet: Fleet, faults: FaultRates | None, start: dt.datetime, end: dt.datetime, step: float) -> Run:
    sim = Simulation(fleet, faults, start, end, step)
    messages = list(sim.messages())
    by_sensor: dict[str, list[SimMessage]] = defaultdict(list)
    for m in messages:
        by_sensor[m.sensor_id].append(m)
    return Run(sim, messages, sim.ground_truth(), dict(by_sensor))


def sun_elevation(fleet: Fleet, t_ms: int) -> float:
    """Geometric degrees above the horizon of the sun's centre over the city centre at ``t_ms``
    (no refraction: sunrise and sunset are at -0.833°)."""
    observer = Observer(latitude=fleet.city.lat, longitude=fleet.city.lon)
    return elevation(observer, dt.datetime.fromtimestamp(t_ms / 1000, tz=dt.UTC), with_refraction=False)
