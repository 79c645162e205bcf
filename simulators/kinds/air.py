"""Air quality and noise monitors on lamp posts (mains powered).

PM2.5 (µg/m³) is mostly regional (a slowly varying city-wide level) plus local traffic; NO₂
(µg/m³) follows traffic closely; noise (LAeq over the report interval, dB) is quiet at night and
loud in rush hours, louder on main roads and in the centre. Traffic follows a weekday double
peak (08:00, 17:00 local) and a flatter weekend day.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from simulators import noise
from simulators.city import StreetGrid
from simulators.faults import FaultPlan
from simulators.kinds.base import AR1, KindGroup, KindModel, SimContext, StepClock

__all__ = ["AirModel", "describe"]

_WEEKDAY_TRAFFIC = np.array(
    [0.10, 0.08, 0.08, 0.08, 0.10, 0.25, 0.45, 0.80, 1.00, 0.80, 0.60, 0.60,
     0.65, 0.60, 0.60, 0.70, 0.85, 1.00, 0.90, 0.60, 0.45, 0.40, 0.30, 0.20]
)  # fmt: skip
_WEEKEND_TRAFFIC = np.array(
    [0.20, 0.15, 0.12, 0.10, 0.08, 0.10, 0.15, 0.25, 0.35, 0.45, 0.55, 0.60,
     0.60, 0.60, 0.55, 0.55, 0.55, 0.55, 0.50, 0.45, 0.40, 0.35, 0.30, 0.25]
)  # fmt: skip


def describe(group: KindGroup, grid: StreetGrid, seed: int) -> None:
    """Traffic exposure of each monitor (main road, centre)."""
    main = np.array([grid.streets[s].main for s in group.street])
    centre = group.district_type == 0
    group.attrs.update(traffic=np.where(main, 1.6, 1.0) * np.where(centre, 1.2, 1.0))
    group.metadata = [
        {"model": "Dragino air/noise monitor", "power": "mains", "mounted_on": "lamp post"}
        for _ in range(group.n)
    ]


class AirModel(KindModel):
    kind: ClassVar[str] = "air"
    metrics: ClassVar[tuple[str, ...]] = ("pm25", "no2", "noise_db")
    measured: ClassVar[tuple[str, ...]] = ("pm25", "no2", "noise_db")
    drift_rates: ClassVar[dict[str, tuple[float, float]]] = {
        "pm25": (0.5, 2.0),
        "no2": (1.0, 3.0),
        "noise_db": (0.2, 0.8),
    }
    stream_base: ClassVar[int] = 4000
    uniform_streams: ClassVar[tuple[int, ...]] = ()
    normal_streams: ClassVar[tuple[int, ...]] = (1, 2, 3)

    def __init__(self, group: KindGroup, ctx: SimContext, plan: FaultPlan) -> None:
        super().__init__(group, ctx, plan)
        self.traffic = group.attrs["traffic"]
        self.regional = AR1(
            noise.key_of(ctx.seed, "pm-regional"),
            tau_h=24.0,
            sigma=4.0,
            stream=78,
            clock_counter=ctx.start_ms // 1000,
        )

    def step(self, clock: StepClock, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        table = _WEEKEND_TRAFFIC if clock.weekday >= 5 else _WEEKDAY_TRAFFIC
        hour = clock.local_hour % 24.0
        h0 = int(hour)
        # Interpolate between hours so rush hour does not arrive as a step.
        level = table[h0] + (table[(h0 + 1) % 24] - table[h0]) * (hour - h0)
        exposure = level * self.traffic
        regional = max(9.0 + self.regional.step(clock), 2.0)
        values = np.empty((self.n, len(self.metrics)))
        values[:, 0] = regional + 5.0 * exposure + 1.5 * self.z(clock, 1)
        values[:, 1] = 10.0 + 30.0 * exposure + 0.3 * (regional - 9.0) + 3.0 * self.z(clock, 2)
        values[:, 2] = 44.0 + 16.0 * level * np.sqrt(self.traffic) + 2.0 * self.z(clock, 3)
        # Round first, so a stuck sensor freezes at a value it really reported.
        np.round(values, 1, out=values)
        present = ~self.silent(times)
        self.faults.apply(clock, times, values, present)
        values[:, 0] = np.round(np.maximum(values[:, 0], 1.0), 1)
        values[:, 1] = np.round(np.maximum(values[:, 1], 1.0), 1)
        values[:, 2] = np.round(np.clip(values[:, 2], 30.0, 120.0), 1)
        return values, present

    def spike_values(self, col: int, rows: np.ndarray, values: np.ndarray, u: np.ndarray) -> np.ndarray:
        if self.metrics[col] == "noise_db":
            return values[rows, col] + 20.0 + 20.0 * u  # a siren or a motorbike by the microphone
        return super().spike_values(col, rows, values, u)
