"""Street lights with smart controllers.

A lamp's photocell switches it on a few minutes after sunset and off a few minutes before
sunrise (sun position from ``astral`` for the city and date, not fixed hours). Between
``DIM_FROM_H`` and ``DIM_TO_H`` local time lamps are dimmed to ``DIM_LEVEL``. A controller
reports whether the lamp is on, its active power (W), its cumulative energy counter (Wh, never
reset), its dim level (0..1, 0 when off) and the mains voltage (V). Lamps along one street are
fed in groups of up to ``LAMPS_PER_CIRCUIT`` from one circuit (registry ``metadata.circuit``);
the circuit sets their voltage, and a circuit outage darkens them all.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from simulators import noise
from simulators.city import StreetGrid
from simulators.faults import FaultPlan
from simulators.kinds.base import KindGroup, KindModel, SimContext, StepClock

__all__ = [
    "DIM_FROM_H",
    "DIM_LEVEL",
    "DIM_TO_H",
    "DRIVER_FLOOR",
    "LAMPS_PER_CIRCUIT",
    "LightModel",
    "describe",
]

DIM_LEVEL = 0.5
DIM_FROM_H = 0
DIM_TO_H = 5
LAMPS_PER_CIRCUIT = 20
#: Photocells differ: each lamp switches within this many minutes after sunset / before sunrise.
PHOTOCELL_SPREAD_MIN = 12.0
MAINS_V = 230.0
#: An LED driver draws about this share of rated power even at the lowest dim level.
DRIVER_FLOOR = 0.08


def describe(group: KindGroup, grid: StreetGrid, seed: int) -> None:
    """Rated power, photocell delays, energy counters and circuits of the lamps."""
    keys = group.keys
    main = np.array([grid.streets[s].main for s in group.street])
    # Main roads get brighter luminaires; residential streets the common 36 W LED.
    rated = np.where(main, 75.0, np.where(noise.uniform(keys, 0, 201) < 0.5, 36.0, 56.0))
    rated = np.round(rated * (0.98 + 0.04 * noise.uniform(keys, 0, 202)), 1)
    circuit = np.zeros(group.n, dtype=np.int64)
    names: list[str] = []
    for s in np.unique(group.street):
        rows = np.nonzero(group.street == s)[0]
        rows = rows[np.argsort(group.along[rows], kind="stable")]
        for c, lo in enumerate(range(0, len(rows), LAMPS_PER_CIRCUIT)):
            circuit[rows[lo : lo + LAMPS_PER_CIRCUIT]] = len(names)
            names.append(f"{grid.streets[int(s)].slug}-c{c + 1}")
    circuit_keys = np.array([noise.key_of(seed, "circuit", n) for n in names], dtype=np.uint64)
    spread_ms = PHOTOCELL_SPREAD_MIN * 60_000
    group.attrs.update(
        rated_w=rated,
        on_delay_ms=np.round(spread_ms * noise.uniform(keys, 0, 203)).astype(np.int64),
        off_advance_ms=np.round(spread_ms * noise.uniform(keys, 0, 204)).astype(np.int64),
        energy0_wh=np.round(50_000.0 + 450_000.0 * noise.uniform(keys, 0, 205), 1),
        circuit=circuit,
        circuit_names=names,
        circuit_volt_offset=-4.0 + 6.0 * noise.uniform(circuit_keys, 0, 206),
    )
    dimming = {"level": DIM_LEVEL, "from": f"{DIM_FROM_H:02d}:00", "to": f"{DIM_TO_H:02d}:00"}
    group.metadata = [
        {
            "circuit": names[circuit[i]],
            "rated_power_w": float(rated[i]),
            "dimming": dict(dimming),
            "model": "Milesight WS558 controller",
            "power": "mains",
        }
        for i in range(group.n)
    ]


class LightModel(KindModel):
    kind: ClassVar[str] = "light"
    metrics: ClassVar[tuple[str, ...]] = ("lamp_on", "power_w", "energy_wh", "dim_level", "voltage")
    stream_base: ClassVar[int] = 2000
    uniform_streams: ClassVar[tuple[int, ...]] = (1,)
    normal_streams: ClassVar[tuple[int, ...]] = (2, 3)

    def __init__(self, group: KindGroup, ctx: SimContext, plan: FaultPlan) -> None:
        super().__init__(group, ctx, plan)
        a = group.attrs
        self.rated = a["rated_w"]
        self.on_delay = a["on_delay_ms"]
        self.off_advance = a["off_advance_ms"]
        self.energy = a["energy0_wh"].astype(np.float64).copy()
        self.volt_offset = a["circuit_volt_offset"][a["circuit"]]

    def step(self, clock: StepClock, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dark = self.ctx.nights.is_dark(times, self.on_delay, self.off_advance)
        lit = dark & ~self.track("lamp_out").mask(times, self.n)
        lit |= self.track("day_burner").mask(times, self.n)
        flicker = self.track("flicker")
        if len(flicker):
            idx = flicker.active(times)
            rows = flicker.row[idx]
            lit[rows] = dark[rows] & (self.u(clock, 1)[rows] < flicker.params["on_probability"][idx])
        outage = self.track("circuit_outage").mask(times, self.n)
        lit &= ~outage

        local_s = (times // 1000 + clock.offset_s) % 86_400
        dimmed = (local_s >= DIM_FROM_H * 3600) & (local_s < DIM_TO_H * 3600)
        dim = np.where(dimmed, DIM_LEVEL, 1.0)
        power = self.rated * (DRIVER_FLOOR + (1.0 - DRIVER_FLOOR) * dim) * (1.0 + 0.01 * self.z(clock, 2))
        partial = self.track("partial_lamp_failure")
        if len(partial):
            idx = partial.active(times)
            power[partial.row[idx]] *= partial.params["power_factor"][idx]
        power = np.where(lit, np.round(power, 1), 0.0)
        # The meter integrates the power it reports over the report interval.
        self.energy += power * clock.dt_h

        values = np.empty((self.n, len(self.metrics)))
        values[:, 0] = lit
        values[:, 1] = power
        values[:, 2] = np.round(self.energy, 1)
        values[:, 3] = np.where(lit, dim, 0.0)
        voltage = MAINS_V + self.volt_offset + 0.4 * self.z(clock, 3)
        values[:, 4] = np.where(outage, 0.0, np.round(voltage, 1))
        return values, ~self.silent(times)
