"""Waste bins with ultrasonic level sensors (Milesight EM400-MUD-like).

Fill level (0..1 of the bin's depth) rises as people drop bags in, faster by day, on busy
weekdays and in busy districts; collection crews empty each bin on its route's days, usually
almost completely, sometimes only partly. The device measures the distance (mm) from the lid
to the waste surface, so the reported fill level is ``1 - distance_mm / depth_mm`` with the
depth from the registry. It also reports its battery (%) and the air temperature (°C).

A clean bin never reads fuller than ``CLEAN_FILL_CAP``: with a bin that full, people take their
bag to the next one. Only a labelled ``bin_overflow`` pushes it to the brim.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import numpy as np

from simulators import noise
from simulators.city import StreetGrid, slugify
from simulators.faults import FaultPlan
from simulators.kinds.base import AR1, BatteryModel, KindGroup, KindModel, SimContext, StepClock

__all__ = ["CLEAN_FILL_CAP", "BinModel", "collection_times", "describe"]

CLEAN_FILL_CAP = 0.92
#: Ultrasonic sensors cannot see closer than this (mm): a brim-full bin reads this distance.
DEAD_ZONE_MM = 30.0
#: The sensor's longest range (mm); a drifting reading stops here.
MAX_RANGE_MM = 4500.0
#: A crew empties about 20 bins an hour along a route.
MINUTES_PER_BIN = 3
BINS_PER_ROUTE = 60
#: Share of collections that leave waste behind (stuck bags, a half-emptied container).
PARTIAL_EMPTYING = 0.08

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Collection days and start (local minutes) per district type; residential routes alternate pairs.
_SCHEDULES = {
    "centre": [((0, 1, 2, 3, 4, 5, 6), 5 * 60 + 30)],
    "commercial": [((0, 2, 4), 6 * 60)],
    "residential": [((0, 3), 7 * 60), ((1, 4), 7 * 60), ((2, 5), 7 * 60)],
}
_DEPTHS = {"centre": (1200, 1500), "commercial": (1000, 1200), "residential": (800, 1000, 1200)}
#: Container volume (litres) by depth: wheelie bins, 4-wheel containers, underground containers.
_CAPACITY_L = {800: 240, 1000: 660, 1200: 1100, 1500: 3000}

# Waste thrown in per hour of the local day and per weekday, relative to the weekly mean.
_HOURLY = np.array(
    [0.15] * 6 + [0.4, 0.9, 1.2, 1.1, 1.2, 1.2, 1.2, 1.3, 1.3, 1.3, 1.3, 1.6, 1.6, 1.6, 1.6, 1.0, 0.6, 0.3]
)
_WEEKLY = {
    "centre": (1.0, 1.0, 1.0, 1.0, 1.2, 1.4, 1.2),
    "commercial": (1.15, 1.15, 1.15, 1.15, 1.15, 0.8, 0.5),
    "residential": (0.95, 0.95, 0.95, 0.95, 0.95, 1.15, 1.2),
}
_TYPES = ("centre", "commercial", "residential")


def _profile() -> np.ndarray:
    table = np.stack([np.outer(_WEEKLY[t], _HOURLY) for t in _TYPES])
    return table / table.mean(axis=(1, 2), keepdims=True)


_PROFILE = _profile()  # [type, weekday, hour] → relative deposit rate, weekly mean 1


def _max_gap_days(days: tuple[int, ...]) -> int:
    ordered = sorted(days)
    return max((b - a) % 7 or 7 for a, b in zip(ordered, ordered[1:] + ordered[:1], strict=True))


def describe(group: KindGroup, grid: StreetGrid, seed: int) -> None:
    """Static attributes and registry metadata of the bins: depth, routes, collection days."""
    keys = group.keys
    types = [_TYPES[t] for t in group.district_type]
    pick = noise.uniform(keys, 0, 101)
    depth = np.array([_DEPTHS[t][int(p * len(_DEPTHS[t]))] for t, p in zip(types, pick, strict=True)], float)
    # Routes: per district, bins in street order, cut into routes of BINS_PER_ROUTE.
    route = np.zeros(group.n, dtype=np.int64)
    position = np.zeros(group.n, dtype=np.int64)
    route_names: list[str] = []
    route_sched: list[tuple[tuple[int, ...], int]] = []
    for d in np.unique(group.district):
        rows = np.nonzero(group.district == d)[0]
        rows = rows[np.lexsort((group.along[rows], group.street[rows]))]
        dtype = _TYPES[int(group.district_type[rows[0]])]
        dname = slugify(grid.city.districts[int(d)][0])
        for r, lo in enumerate(range(0, len(rows), BINS_PER_ROUTE)):
            members = rows[lo : lo + BINS_PER_ROUTE]
            route[members] = len(route_names)
            position[members] = np.arange(len(members))
            route_names.append(f"{dname}-r{r + 1}")
            options = _SCHEDULES[dtype]
            route_sched.append(options[r % len(options)])
    days_mask = np.zeros((group.n, 7), dtype=bool)
    minute = np.zeros(group.n, dtype=np.int64)
    gap_days = np.zeros(group.n)
    for i in range(group.n):
        days, start_min = route_sched[route[i]]
        days_mask[i, list(days)] = True
        minute[i] = start_min + MINUTES_PER_BIN * position[i]
        gap_days[i] = _max_gap_days(days)
    # Cities size collection to the need: the longest gap fills a bin to 40–70 %.
    target = 0.40 + 0.30 * noise.uniform(keys, 0, 102)
    group.attrs.update(
        depth_mm=depth,
        days=days_mask,
        minute=minute,
        rate_per_h=target / (gap_days * 24.0),
        bag=0.015 + 0.015 * noise.uniform(keys, 0, 103),
        battery0=35.0 + 65.0 * noise.uniform(keys, 0, 104),
        drain_per_day=0.02 + 0.04 * noise.uniform(keys, 0, 105),
        temp_offset=-1.0 + 3.0 * noise.uniform(keys, 0, 106),
        type_code=group.district_type.astype(np.int64),
    )
    group.metadata = [
        {
            "depth_mm": int(depth[i]),
            "capacity_l": _CAPACITY_L[int(depth[i])],
            "route": route_names[route[i]],
            "collection": {
                "days": [_DAY_NAMES[d] for d in np.nonzero(days_mask[i])[0]],
                "from": f"{minute[i] // 60:02d}:{minute[i] % 60:02d}",
            },
            "model": "Milesight EM400-MUD",
            "power": "battery",
        }
        for i in range(group.n)
    ]


def collection_times(group: KindGroup, ctx: SimContext) -> np.ndarray:
    """Scheduled collections (UTC ms) of each bin from two days before the start to one day
    after the end, as a ``(n, m)`` array padded with the largest int64."""
    zone = ctx.zone
    first = dt.datetime.fromtimestamp(ctx.start_ms / 1000, tz=zone).date() - dt.timedelta(days=2)
    last = dt.datetime.fromtimestamp(ctx.end_ms / 1000, tz=zone).date() + dt.timedelta(days=1)
    days = group.attrs["days"]
    minute = group.attrs["minute"]
    columns: list[np.ndarray] = []
    day = first
    while day <= last:
        # Local midnight via the offset at noon: collections start after any 02:00/03:00 switch.
        noon = dt.datetime.combine(day, dt.time(12), tzinfo=zone)
        offset_ms = int(noon.utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
        midnight_ms = int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC).timestamp() * 1000) - offset_ms
        col = np.where(days[:, day.weekday()], midnight_ms + minute * 60_000, np.iinfo(np.int64).max)
        columns.append(col)
        day += dt.timedelta(days=1)
    table = np.stack(columns, axis=1) if columns else np.zeros((group.n, 0), dtype=np.int64)
    return np.sort(table, axis=1)


class BinModel(KindModel):
    kind: ClassVar[str] = "bin"
    metrics: ClassVar[tuple[str, ...]] = ("fill_level", "distance_mm", "battery", "temperature")
    measured: ClassVar[tuple[str, ...]] = ("distance_mm",)
    drift_rates: ClassVar[dict[str, tuple[float, float]]] = {"distance_mm": (15.0, 40.0)}
    stream_base: ClassVar[int] = 1000
    uniform_streams: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)
    normal_streams: ClassVar[tuple[int, ...]] = (5,)

    def __init__(self, group: KindGroup, ctx: SimContext, plan: FaultPlan) -> None:
        super().__init__(group, ctx, plan)
        a = group.attrs
        self.depth = a["depth_mm"]
        self.rate = a["rate_per_h"]
        self.bag = a["bag"]
        self.type_code = a["type_code"]
        self.temp_offset = a["temp_offset"]
        self.collections = collection_times(group, ctx)
        self.rows = np.arange(self.n)
        self.battery = BatteryModel(self, a["battery0"], a["drain_per_day"])
        counter0 = ctx.start_ms // 1000
        self.weather = AR1(
            noise.key_of(ctx.seed, "weather"), tau_h=12.0, sigma=2.0, stream=77, clock_counter=counter0
        )
        # Start where the schedule left the bin: filled since its last collection before the start.
        after = self.collections >= ctx.start_ms
        self.ptr = np.where(after.any(axis=1), after.argmax(axis=1), self.collections.shape[1])
        prev = self.collections[self.rows, np.maximum(self.ptr - 1, 0)]
        hours = np.where(self.ptr > 0, (ctx.start_ms - prev) / 3_600_000, 24.0)
        # Streams of their own: the first step's draws must not repeat the start's.
        jitter_u, residual_u = noise.uniforms(
            self.keys, counter0, (self.stream_base + 11, self.stream_base + 12)
        )
        jitter = 0.8 + 0.4 * jitter_u
        residual = 0.04 * residual_u
        self.fill = np.minimum(self.rate * hours * jitter + residual, CLEAN_FILL_CAP)
        self.was_overflowing = np.zeros(self.n, dtype=bool)

    def collection_times_of(self, row: int) -> np.ndarray:
        times = self.collections[row]
        return times[times < np.iinfo(np.int64).max]

    def step(self, clock: StepClock, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hour = int(clock.local_hour) % 24
        rate = self.rate * _PROFILE[self.type_code, clock.weekday, hour]
        abnormal = self.track("abnormal_fill_rate")
        if len(abnormal):
            idx = abnormal.active(times)
            rate[abnormal.row[idx]] *= abnormal.params["factor"][idx]
        # Waste arrives in bags: a whole number of bags per step, with the expected volume.
        bags = np.floor(rate * clock.dt_h / self.bag + self.u(clock, 1))
        deposit = bags * self.bag * (0.6 + 0.8 * self.u(clock, 2))
        self.fill = np.where(
            self.fill < CLEAN_FILL_CAP, np.minimum(self.fill + deposit, CLEAN_FILL_CAP), self.fill
        )

        overflowing = self.track("bin_overflow").mask(times, self.n)
        residual = np.where(
            self.u(clock, 3) < PARTIAL_EMPTYING, 0.10 + 0.15 * self.u(clock, 4), 0.04 * self.u(clock, 4)
        )
        width = self.collections.shape[1]
        due = (self.ptr < width) & (self.collections[self.rows, np.minimum(self.ptr, width - 1)] <= times)
        emptied = (due & ~overflowing) | (self.was_overflowing & ~overflowing)
        self.fill[emptied] = residual[emptied]
        self.ptr[due] += 1
        self.fill[overflowing] = 1.0
        self.was_overflowing = overflowing

        values = np.empty((self.n, len(self.metrics)))
        values[:, 1] = np.round(self.depth * (1.0 - self.fill))
        battery, powered = self.battery.step(clock, times)
        present = powered & ~self.silent(times)
        self.faults.apply(clock, times, values, present)
        distance = np.clip(np.round(values[:, 1]), DEAD_ZONE_MM, MAX_RANGE_MM)
        values[:, 0] = np.round(np.clip(1.0 - distance / self.depth, 0.0, 1.0), 4)
        values[:, 1] = distance
        values[:, 2] = battery
        values[:, 3] = np.round(self._temperature(clock) + self.temp_offset + 0.2 * self.z(clock, 5), 1)
        return values, present

    def _temperature(self, clock: StepClock) -> float:
        ctx = self.ctx
        peak_day = 21 if ctx.southern else 202  # late January / late July
        seasonal = ctx.seasonal_amp_c * np.cos(2 * np.pi * (clock.day_of_year - peak_day) / 365.25)
        diurnal = ctx.diurnal_amp_c * np.cos(2 * np.pi * (clock.local_hour - 15.0) / 24.0)
        return float(ctx.mean_temp_c + seasonal + diurnal + self.weather.step(clock))

    def spike_values(self, col: int, rows: np.ndarray, values: np.ndarray, u: np.ndarray) -> np.ndarray:
        # A false echo (a bag on the lid, an insect, condensation) reads far closer than the waste.
        return DEAD_ZONE_MM + u * 0.3 * self.depth[rows]
