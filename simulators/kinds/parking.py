"""On-street parking bay sensors (magnetometer/radar in the road surface).

Each bay is a two-state chain: a car leaves with rate ``1 / stay`` (mean stay by district type)
and arrives with the rate that makes the bay's long-run occupancy follow the hour's target for
its district (busy by day in the centre and in commercial streets, by night in residential
ones). The sensor reports ``occupied`` (0/1) and its battery (%).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from simulators import noise
from simulators.city import StreetGrid
from simulators.faults import FaultPlan
from simulators.kinds.base import BatteryModel, KindGroup, KindModel, SimContext, StepClock

__all__ = ["ParkingModel", "describe"]

#: Mean stay (h) per district type: centre, commercial, residential.
_STAY_H = np.array([1.5, 3.0, 8.0])


def _hours(night: float, morning: float, day: float, evening: float) -> list[float]:
    return [night] * 7 + [morning] * 3 + [day] * 9 + [evening] * 5


# Target occupancy [district type, weekend?, local hour].
_TARGET = np.array(
    [
        [_hours(0.45, 0.70, 0.90, 0.75), _hours(0.50, 0.60, 0.90, 0.90)],
        [_hours(0.15, 0.60, 0.85, 0.30), _hours(0.20, 0.30, 0.45, 0.25)],
        [_hours(0.90, 0.70, 0.55, 0.85), _hours(0.90, 0.85, 0.70, 0.85)],
    ]
)


def describe(group: KindGroup, grid: StreetGrid, seed: int) -> None:
    """Battery state and bay numbers of the parking sensors."""
    keys = group.keys
    group.attrs.update(
        type_code=group.district_type.astype(np.int64),
        battery0=40.0 + 60.0 * noise.uniform(keys, 0, 301),
        drain_per_day=0.01 + 0.03 * noise.uniform(keys, 0, 302),
    )
    group.metadata = [
        {"bay": f"P{i + 1:04d}", "model": "Nwave NPS-C", "power": "battery"} for i in range(group.n)
    ]


class ParkingModel(KindModel):
    kind: ClassVar[str] = "parking"
    metrics: ClassVar[tuple[str, ...]] = ("occupied", "battery")
    measured: ClassVar[tuple[str, ...]] = ("occupied",)
    stream_base: ClassVar[int] = 3000
    uniform_streams: ClassVar[tuple[int, ...]] = (1, 2, 3)
    normal_streams: ClassVar[tuple[int, ...]] = ()

    def __init__(self, group: KindGroup, ctx: SimContext, plan: FaultPlan) -> None:
        super().__init__(group, ctx, plan)
        a = group.attrs
        self.type_code = a["type_code"]
        self.battery = BatteryModel(self, a["battery0"], a["drain_per_day"])
        self.occupied: np.ndarray | None = None

    def _target(self, clock: StepClock) -> np.ndarray:
        weekend = int(clock.weekday >= 5)
        return _TARGET[self.type_code, weekend, int(clock.local_hour) % 24]

    def step(self, clock: StepClock, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        target = np.minimum(self._target(clock), 0.97)
        if self.occupied is None:
            self.occupied = self.u(clock, 1) < target
        else:
            leave_rate = 1.0 / _STAY_H[self.type_code]
            arrive_rate = leave_rate * target / (1.0 - target)
            leaves = self.u(clock, 2) < -np.expm1(-leave_rate * clock.dt_h)
            arrives = self.u(clock, 3) < -np.expm1(-arrive_rate * clock.dt_h)
            self.occupied = np.where(self.occupied, ~leaves, arrives)
        values = np.empty((self.n, len(self.metrics)))
        values[:, 0] = self.occupied
        battery, powered = self.battery.step(clock, times)
        present = powered & ~self.silent(times)
        self.faults.apply(clock, times, values, present)
        values[:, 1] = battery
        return values, present
