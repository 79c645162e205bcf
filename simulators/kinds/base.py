"""What every kind model shares: the step clock, the contract, battery and measurement faults.

A kind model holds the state of all sensors of one kind as arrays and advances them one report
step at a time: ``step(clock, times)`` returns a ``(n, len(metrics))`` array of the values each
sensor reports at ``times`` (its own report time, UTC ms) and a boolean array of which sensors
report at all. Randomness comes from ``simulators.noise`` keyed by sensor, so a sensor's
readings do not depend on the rest of the fleet.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from simulators import noise
from simulators.faults import FaultPlan, FaultTrack
from simulators.sun import NightTable

__all__ = ["AR1", "BatteryModel", "KindGroup", "KindModel", "MeasurementFaults", "SimContext", "StepClock"]

_HOUR_MS = 3_600_000


@dataclass(slots=True)
class KindGroup:
    """The sensors of one kind in a fleet: rows ``start..stop`` of the fleet's arrays.

    ``attrs`` holds the kind's static per-sensor arrays (e.g. ``depth_mm``), ``metadata`` the
    kind-specific part of each registry row.
    """

    kind: str
    start: int
    stop: int
    ids: list[str]
    keys: np.ndarray
    x: np.ndarray
    y: np.ndarray
    district: np.ndarray
    district_type: np.ndarray
    street: np.ndarray
    along: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    metadata: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class SimContext:
    """What a model needs besides its sensors: the period, the step, the city's nights."""

    seed: int
    start_ms: int
    end_ms: int
    step_ms: int
    nights: NightTable
    zone: Any
    mean_temp_c: float
    seasonal_amp_c: float
    diurnal_amp_c: float
    southern: bool


@dataclass(frozen=True, slots=True)
class StepClock:
    """The step being simulated: ``t_ms`` (UTC ms), its local hour (fractional) and weekday
    (0 = Monday), day of year, the step length in hours, and ``counter``, the noise counter
    (the step time in whole seconds)."""

    k: int
    t_ms: int
    counter: int
    dt_h: float
    offset_s: int
    local_hour: float
    weekday: int
    day_of_year: int


class KindModel(ABC):
    """A vectorised model of every sensor of one kind."""

    kind: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    #: Metrics that stuck / drift / spikes faults may act on.
    measured: ClassVar[tuple[str, ...]] = ()
    #: (low, high) magnitude of drift per hour, in the metric's unit, per measured metric.
    drift_rates: ClassVar[dict[str, tuple[float, float]]] = {}
    #: The stream ids this model draws noise from start here (distinct per model).
    stream_base: ClassVar[int] = 0
    #: Streams (relative to ``stream_base``) of the uniforms and normals ``step`` uses.
    uniform_streams: ClassVar[tuple[int, ...]] = ()
    normal_streams: ClassVar[tuple[int, ...]] = ()

    def __init__(self, group: KindGroup, ctx: SimContext, plan: FaultPlan) -> None:
        self.group = group
        self.ctx = ctx
        self.plan = plan
        self.n = group.n
        self.keys = group.keys
        self.faults = MeasurementFaults(self, plan)
        self._tracks: dict[str, FaultTrack] = {}
        self._drawn_at: int | None = None
        self._drawn: tuple[dict[int, np.ndarray], dict[int, np.ndarray]] = ({}, {})

    def track(self, fault: str) -> FaultTrack:
        found = self._tracks.get(fault)
        if found is None:
            found = self._tracks[fault] = self.plan.track(fault, self.kind)
        return found

    def u(self, clock: StepClock, stream: int) -> np.ndarray:
        """Per-sensor uniforms for this step and stream (one of ``uniform_streams``)."""
        return self._draws(clock)[0][stream]

    def z(self, clock: StepClock, stream: int) -> np.ndarray:
        """Per-sensor standard normals for this step and stream (one of ``normal_streams``)."""
        return self._draws(clock)[1][stream]

    def _draws(self, clock: StepClock) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        # Every stream of the step in two vectorised calls, drawn on the step's first request.
        if self._drawn_at != clock.counter:
            base = self.stream_base
            us = noise.uniforms(self.keys, clock.counter, [base + s for s in self.uniform_streams])
            zs = noise.normals(self.keys, clock.counter, [base + s for s in self.normal_streams])
            self._drawn = (
                dict(zip(self.uniform_streams, us, strict=True)),
                dict(zip(self.normal_streams, zs, strict=True)),
            )
            self._drawn_at = clock.counter
        return self._drawn

    def silent(self, times: np.ndarray) -> np.ndarray:
        """Sensors in a dropout episode."""
        return self.track("dropout").mask(times, self.n)

    @abstractmethod
    def step(self, clock: StepClock, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(n, len(metrics))`` at ``times`` and which sensors report."""

    def spike_values(self, col: int, rows: np.ndarray, values: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Wild values for a spikes fault: by default ×3..×8 the true value."""
        return values[rows, col] * (3.0 + 5.0 * u)

    def recorded(self) -> dict[str, Any]:
        """Episode parameters learnt while running (e.g. the value a stuck sensor froze at)."""
        return self.faults.recorded


class MeasurementFaults:
    """Stuck, drift and spikes on a model's measured metrics (shared by every kind).

    ``apply`` edits the value array in place; it records the frozen value of each stuck episode
    and the rows hit by spikes so the ground truth can name them.
    """

    def __init__(self, model: KindModel, plan: FaultPlan) -> None:
        self.model = model
        self.plan = plan
        self.frozen = np.full((model.n, len(model.metrics)), np.nan)
        self.recorded: dict[str, Any] = {}
        self.spiked: list[tuple[int, int, int]] = []  # (episode index, local row, step) per spiked message

    def apply(self, clock: StepClock, times: np.ndarray, values: np.ndarray, present: np.ndarray) -> None:
        model = self.model
        stuck = model.track("stuck")
        if len(stuck):
            idx = stuck.active(times)
            rows, cols = stuck.row[idx], stuck.params["metric"][idx]
            live = np.zeros_like(self.frozen, dtype=bool)
            live[rows, cols] = True
            self.frozen[~live] = np.nan  # an episode that ended lets go of its value
            fresh = np.isnan(self.frozen[rows, cols])
            self.frozen[rows[fresh], cols[fresh]] = values[rows[fresh], cols[fresh]]
            for e, r, c in zip(stuck.episode[idx][fresh], rows[fresh], cols[fresh], strict=True):
                self.recorded.setdefault(f"{int(e)}:value", float(values[r, c]))
            values[rows, cols] = self.frozen[rows, cols]
        drift = model.track("drift")
        if len(drift):
            idx = drift.active(times)
            rows, cols = drift.row[idx], drift.params["metric"][idx]
            hours = (times[rows] - drift.start[idx]) / _HOUR_MS
            values[rows, cols] += drift.params["per_hour"][idx] * hours
        spikes = model.track("spikes")
        if len(spikes):
            idx = spikes.active(times)
            if len(idx):
                # A report past the end of the period is never emitted: it cannot be a labelled spike.
                present = present & (times < model.ctx.end_ms)
                rows, cols = spikes.row[idx], spikes.params["metric"][idx]
                u, u2 = noise.uniforms(
                    model.keys[rows], clock.counter, (model.stream_base + 900, model.stream_base + 901)
                )
                hit = (u < spikes.params["probability"][idx]) & present[rows]
                for col in np.unique(cols[hit]):
                    sel = hit & (cols == col)
                    values[rows[sel], col] = model.spike_values(int(col), rows[sel], values, u2[sel])
                for e, r in zip(spikes.episode[idx][hit].tolist(), rows[hit].tolist(), strict=True):
                    self.spiked.append((e, r, clock.k))


class BatteryModel:
    """Battery percentage: a slow drain, a fast one during ``dead_battery``, replaced afterwards.

    ``level`` starts at the fleet's per-sensor value and falls ``drain_per_day`` %/day. A
    dead-battery episode drains ``drain_per_hour`` %/h; below ``CUTOFF`` % the device is silent
    until the episode ends, when a fresh battery (100 %) goes in.
    """

    CUTOFF = 3.0

    def __init__(self, model: KindModel, level: np.ndarray, drain_per_day: np.ndarray) -> None:
        self.model = model
        self.level = level.astype(np.float64).copy()
        self.drain_per_day = drain_per_day
        self.was_dying = np.zeros(model.n, dtype=bool)

    def step(self, clock: StepClock, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reported battery (whole %) and which sensors are powered."""
        self.level -= self.drain_per_day * (clock.dt_h / 24.0)
        track = self.model.track("dead_battery")
        dying = np.zeros(self.model.n, dtype=bool)
        if len(track):
            idx = track.active(times)
            rows = track.row[idx]
            dying[rows] = True
            self.level[rows] -= track.params["drain_per_hour"][idx] * clock.dt_h
        replaced = self.was_dying & ~dying
        self.level[replaced] = 100.0
        self.was_dying = dying
        np.clip(self.level, 0.0, 100.0, out=self.level)
        powered = ~(dying & (self.level <= self.CUTOFF))
        return np.round(self.level), powered


class AR1:
    """A city-wide slowly varying quantity (weather, regional pollution): a stationary AR(1)
    process with correlation time ``tau_h`` hours and standard deviation ``sigma``, one value per
    step, the same for every sensor. Its noise is keyed by ``key`` so it is reproducible."""

    def __init__(self, key: int, tau_h: float, sigma: float, stream: int, clock_counter: int) -> None:
        self.key = np.array([key], dtype=np.uint64)
        self.tau_h = tau_h
        self.sigma = sigma
        self.stream = stream
        self.value = sigma * float(noise.normal(self.key, clock_counter, stream - 1)[0])

    def step(self, clock: StepClock) -> float:
        rho = float(np.exp(-clock.dt_h / self.tau_h))
        shock = float(noise.normal(self.key, clock.counter, self.stream)[0])
        self.value = rho * self.value + self.sigma * np.sqrt(1.0 - rho * rho) * shock
        return self.value
