"""Fault kinds, their rates, and the plan of labelled fault episodes for one simulated period.

A **fault episode** is one fault of one kind on one sensor (or on every lamp of one circuit),
from ``start`` to ``end`` (UTC epoch ms, end exclusive). Rates are *episodes per sensor-day* of
the sensors the fault can affect (*per circuit-day* for ``circuit_outage``); every rate is 0 by
default, so a fleet is clean unless asked otherwise. ``default_faults()`` gives rates that put
several episodes of every kind into one simulated day of the default 200-sensor fleet.

Device faults (what the physical thing does or reports):

==========================  ======================  =============================================
kind                        sensors                 effect while active
==========================  ======================  =============================================
``bin_overflow``            bin                     fill pinned at 1.0; collections skipped
``abnormal_fill_rate``      bin                     fill rate × ``factor`` (3)
``lamp_out``                light                   dark when it should be lit
``day_burner``              light                   lit by day as well
``flicker``                 light                   on/off at random while it should be lit
``partial_lamp_failure``    light                   lit but power × ``power_factor`` (~0.5)
``circuit_outage``          all lamps of a circuit  dark, voltage 0
``stuck``                   bin, parking, air       ``metric`` frozen at its value at ``start``
``drift``                   bin, air                ``metric`` + ``per_hour`` × hours since start
``spikes``                  bin, air                some readings of ``metric`` are wild
``dropout``                 any                     no messages
``dead_battery``            bin, parking            battery falls ``drain_per_hour`` %/h, then silent
==========================  ======================  =============================================

Transport faults (what happens to the messages): ``malformed`` (payload bytes broken),
``duplicate`` (the same message delivered twice), ``out_of_order`` (delivered ``delay_steps``
steps late), ``clock_skew`` (the time the message carries is off by ``skew_s`` seconds). The
first three hit each report in the episode with ``probability`` (0.5), the first report always.

Episode timing follows how things fail: lamps fail at switch-on and are repaired by a day crew
1–3 nights later; a day-burner's photocell fails at dawn; circuits drop out at night for 2–10 h;
an overflowing bin is full before its collection and stays full 2–8 h past it; the other faults
start at any time and last hours (each kind's range is in ``Planner._timing``).

Episodes of device faults never overlap on one sensor, and transport faults never overlap each
other or a silent episode (``dropout``, ``dead_battery``) on one sensor, so every reading has at
most one explanation of each category.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sense311.errors import ConfigError

__all__ = [
    "DEVICE_FAULTS",
    "FAULT_KINDS",
    "TRANSPORT_FAULTS",
    "Episode",
    "FaultPlan",
    "FaultRates",
    "FaultTrack",
    "Planner",
    "default_faults",
    "format_time",
]

_ALL = ("bin", "light", "parking", "air")

#: Device fault kinds and the sensor kinds they can affect.
DEVICE_FAULTS: dict[str, tuple[str, ...]] = {
    "bin_overflow": ("bin",),
    "abnormal_fill_rate": ("bin",),
    "lamp_out": ("light",),
    "day_burner": ("light",),
    "flicker": ("light",),
    "partial_lamp_failure": ("light",),
    "circuit_outage": ("light",),
    "stuck": ("bin", "parking", "air"),
    "drift": ("bin", "air"),
    "spikes": ("bin", "air"),
    "dropout": _ALL,
    "dead_battery": ("bin", "parking"),
}
#: Transport fault kinds (any sensor kind).
TRANSPORT_FAULTS: dict[str, tuple[str, ...]] = {
    "malformed": _ALL,
    "duplicate": _ALL,
    "out_of_order": _ALL,
    "clock_skew": _ALL,
}
#: Every fault kind, in planning order (the order never changes, so seeds stay meaningful).
FAULT_KINDS: tuple[str, ...] = (*DEVICE_FAULTS, *TRANSPORT_FAULTS)

#: Faults that make a sensor silent: transport faults never overlap them.
_SILENT = frozenset({"dropout", "dead_battery"})

_HOUR = 3_600_000
_MINUTE = 60_000
_DAY = 24 * _HOUR
#: Shortest episode in report steps: a fault seen in fewer readings is not a fair test of anything.
MIN_EPISODE_STEPS = 3
#: Tries to place one episode on a free sensor and time before giving it up (the fleet is busy).
PLACEMENT_ATTEMPTS = 40


def format_time(ms: int) -> str:
    """UTC epoch milliseconds as ISO 8601 with milliseconds and ``Z``."""
    text = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(slots=True)
class Episode:
    """One labelled fault: ``kind`` on ``sensors`` from ``start_ms`` to ``end_ms`` (UTC ms, end
    exclusive). ``messages`` lists the ids of the affected messages for transport faults and spikes
    (``"<sensor id>:<frame counter>"``); ``params`` hold the fault's numbers (units in their names).
    """

    id: str
    kind: str
    sensors: list[str]
    start_ms: int
    end_ms: int
    params: dict[str, Any] = field(default_factory=dict)
    messages: list[str] | None = None

    @property
    def category(self) -> str:
        return "transport" if self.kind in TRANSPORT_FAULTS else "device"

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, tz=UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_ms / 1000, tz=UTC)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "category": self.category,
            "sensors": list(self.sensors),
            "start": format_time(self.start_ms),
            "end": format_time(self.end_ms),
            "params": dict(self.params),
        }
        if self.messages is not None:
            out["count"] = len(self.messages)
            out["messages"] = list(self.messages)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Episode:
        def ms(text: str) -> int:
            return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

        return cls(
            id=str(obj["id"]),
            kind=str(obj["kind"]),
            sensors=[str(s) for s in obj["sensors"]],
            start_ms=ms(obj["start"]),
            end_ms=ms(obj["end"]),
            params=dict(obj.get("params") or {}),
            messages=list(obj["messages"]) if "messages" in obj else None,
        )


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Episodes per sensor-day for each fault kind (per circuit-day for ``circuit_outage``).

    Kinds not named have rate 0. ``FaultRates()`` is a clean fleet.
    """

    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, rate in self.rates.items():
            if name not in FAULT_KINDS:
                hint = difflib.get_close_matches(name, FAULT_KINDS, n=1)
                tip = f"; did you mean {hint[0]!r}?" if hint else f"; known kinds: {', '.join(FAULT_KINDS)}"
                raise ConfigError(f"unknown fault kind {name!r}{tip}")
            if not (isinstance(rate, int | float) and math.isfinite(rate) and rate >= 0):
                raise ConfigError(
                    f"fault rate for {name!r} must be a number >= 0 episodes/sensor-day, got {rate!r}"
                )

    def rate(self, kind: str) -> float:
        return float(self.rates.get(kind, 0.0))

    def with_rates(self, **overrides: float) -> FaultRates:
        """A copy with some rates replaced."""
        return FaultRates({**self.rates, **overrides})

    def to_json(self) -> dict[str, float]:
        return {k: float(self.rates[k]) for k in FAULT_KINDS if self.rates.get(k)}

    @property
    def clean(self) -> bool:
        return not any(self.rates.values())


def default_faults() -> FaultRates:
    """Rates for demos and benchmarks: several episodes of every kind per day of 200 sensors.

    With the default fleet (80 bins, 80 lights, 24 parking bays, 16 air sensors) one day holds
    about 3–4 episodes of each kind; detection quality "at the simulator's default fault rates"
    means these numbers.
    """
    return FaultRates(
        {
            "bin_overflow": 0.05,
            "abnormal_fill_rate": 0.04,
            "lamp_out": 0.05,
            "day_burner": 0.04,
            "flicker": 0.04,
            "partial_lamp_failure": 0.04,
            "circuit_outage": 0.4,
            "stuck": 0.03,
            "drift": 0.035,
            "spikes": 0.035,
            "dropout": 0.02,
            "dead_battery": 0.03,
            "malformed": 0.02,
            "duplicate": 0.02,
            "out_of_order": 0.02,
            "clock_skew": 0.02,
        }
    )


@dataclass(slots=True)
class FaultTrack:
    """The episodes of one fault kind as arrays, for vectorised look-up per step.

    Entry ``e`` puts episode ``episode[e]`` on sensor row ``row[e]`` (an index into one kind's
    sensors for device faults, into the whole fleet for transport faults); a circuit outage has
    one entry per lamp. ``params`` holds the numeric parameters per entry.
    """

    kind: str
    episode: np.ndarray
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    params: dict[str, np.ndarray]

    @classmethod
    def empty(cls, kind: str) -> FaultTrack:
        z = np.zeros(0, dtype=np.int64)
        return cls(kind, z, z, z, z, {})

    def __len__(self) -> int:
        return len(self.row)

    def active(self, times: np.ndarray) -> np.ndarray:
        """Entries whose episode covers the time of their row (``times`` indexed by row)."""
        if not len(self.row):
            return self.row
        t = times[self.row]
        return np.nonzero((self.start <= t) & (t < self.end))[0]

    def mask(self, times: np.ndarray, n: int) -> np.ndarray:
        """Boolean per row: some episode of this kind is active for it."""
        out = np.zeros(n, dtype=bool)
        out[self.row[self.active(times)]] = True
        return out


@dataclass(slots=True)
class FaultPlan:
    """All episodes of a run, and per fault kind the tracks the models read."""

    episodes: list[Episode]
    device: dict[tuple[str, str], FaultTrack]  # (fault kind, sensor kind) → track over that kind's rows
    transport: dict[str, FaultTrack]  # fault kind → track over global rows

    def track(self, fault: str, sensor_kind: str) -> FaultTrack:
        return self.device.get((fault, sensor_kind)) or FaultTrack.empty(fault)


# --- planning -------------------------------------------------------------------------------------

#: How a planner asks the simulation about the things episodes are timed by.
TimingHooks = Mapping[str, Callable[..., Any]]


@dataclass(slots=True)
class _Draft:
    kind: str
    members: list[int]  # global sensor indices
    start_ms: int
    end_ms: int
    params: dict[str, Any]


def _uniform_ms(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(lo + rng.random() * max(hi - lo, 0))


class Planner:
    """Draws episodes for every fault kind with a positive rate.

    ``hooks`` gives what timing needs: ``nights()`` → (sunset ms array, sunrise ms array),
    ``lamp_delays(g)`` → (on delay ms, off advance ms) of light ``g``, ``collections(g)`` →
    collection times (ms) of bin ``g``, ``circuits()`` → list of (name, member global indices),
    ``measured(g)`` → metrics of sensor ``g`` that stuck/drift/spikes may affect,
    ``drift_rate(metric)`` → (low, high) drift magnitude per hour.
    """

    def __init__(
        self,
        *,
        seed: int,
        rates: FaultRates,
        kinds: list[str],
        ids: list[str],
        start_ms: int,
        end_ms: int,
        step_ms: int,
        hooks: TimingHooks,
    ) -> None:
        self.seed = seed
        self.rates = rates
        self.kinds = kinds
        self.ids = ids
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.step_ms = step_ms
        self.hooks = hooks
        self.min_ms = MIN_EPISODE_STEPS * step_ms
        self._device_busy: dict[int, list[tuple[int, int]]] = {}
        self._silent_busy: dict[int, list[tuple[int, int]]] = {}
        self._transport_busy: dict[int, list[tuple[int, int]]] = {}

    def plan(self) -> list[_Draft]:
        drafts: list[_Draft] = []
        days = (self.end_ms - self.start_ms) / _DAY
        # Circuit outages go first: they need a whole circuit free, which single-lamp faults
        # placed before them would rarely leave. Each kind keeps its own random stream.
        order = sorted(FAULT_KINDS, key=lambda kind: kind != "circuit_outage")
        for fault in order:
            index = FAULT_KINDS.index(fault)
            rate = self.rates.rate(fault)
            if rate <= 0:
                continue
            rng = np.random.default_rng([self.seed, 0xFA17, index])
            units = self._units(fault)
            if not units:
                continue
            mean = rate * len(units) * days
            # Stratified rounding, not Poisson: a day at default rates always holds the expected
            # handful of episodes of each kind, so short runs and tests see every kind.
            count = int(mean) + int(rng.random() < mean - int(mean))
            for _ in range(count):
                draft = self._place(fault, units, rng)
                if draft is not None:
                    drafts.append(draft)
        drafts.sort(key=lambda d: (d.start_ms, FAULT_KINDS.index(d.kind), d.members[0]))
        return drafts

    def _units(self, fault: str) -> list[tuple[str | None, list[int]]]:
        if fault == "circuit_outage":
            return [(name, members) for name, members in self.hooks["circuits"]()]
        allowed = {**DEVICE_FAULTS, **TRANSPORT_FAULTS}[fault]
        units: list[tuple[str | None, list[int]]] = []
        for g, kind in enumerate(self.kinds):
            if kind not in allowed:
                continue
            if fault in ("stuck", "drift", "spikes") and not self.hooks["measured"](g):
                continue
            units.append((None, [g]))
        return units

    @staticmethod
    def _overlaps(busy: dict[int, list[tuple[int, int]]], members: list[int], lo: int, hi: int) -> bool:
        return any(s < hi and lo < e for g in members for s, e in busy.get(g, ()))

    def _place(
        self, fault: str, units: list[tuple[str | None, list[int]]], rng: np.random.Generator
    ) -> _Draft | None:
        transport = fault in TRANSPORT_FAULTS
        for _ in range(PLACEMENT_ATTEMPTS):
            name, members = units[int(rng.integers(len(units)))]
            timed = self._timing(fault, members[0], rng)
            if timed is None:
                continue
            start, end, params = timed
            end = min(end, self.end_ms)
            if start < self.start_ms or start >= self.end_ms or end - start < self.min_ms:
                continue
            if transport:
                if self._overlaps(self._transport_busy, members, start, end) or self._overlaps(
                    self._silent_busy, members, start, end
                ):
                    continue
                book = [self._transport_busy]
            else:
                if self._overlaps(self._device_busy, members, start, end):
                    continue
                if fault in _SILENT and self._overlaps(self._transport_busy, members, start, end):
                    continue
                book = [self._device_busy] + ([self._silent_busy] if fault in _SILENT else [])
            for table in book:
                for g in members:
                    table.setdefault(g, []).append((start, end))
            if name is not None:
                params = {"circuit": name, **params}
            return _Draft(fault, list(members), start, end, params)
        return None

    # Each timing returns (start ms, end ms, params) or None when this sensor has no fitting moment.
    def _timing(self, fault: str, g: int, rng: np.random.Generator) -> tuple[int, int, dict[str, Any]] | None:
        s0, s1 = self.start_ms, self.end_ms
        h = _HOUR

        def anytime(lo_ms: int, hi_ms: int) -> tuple[int, int]:
            dur = max(_uniform_ms(rng, lo_ms, hi_ms), self.min_ms)
            latest = s1 - min(dur, (s1 - s0) // 2)
            start = _uniform_ms(rng, s0, max(latest, s0 + 1))
            return start, start + dur

        if fault in ("lamp_out", "flicker", "partial_lamp_failure"):
            # Lamps mostly fail when switched on: the episode begins at this lamp's switch-on.
            sunsets, sunrises = self.hooks["nights"]()
            on_delay, _ = self.hooks["lamp_delays"](g)
            ons = sunsets + on_delay
            choices = np.nonzero((ons >= s0) & (ons < s1))[0]
            if not len(choices):
                return None
            j = int(choices[int(rng.integers(len(choices)))])
            start = int(ons[j])
            if fault == "flicker":
                return start, start + _uniform_ms(rng, 4 * h, 30 * h), {"on_probability": 0.5}
            # Repaired by a day crew 1–3 nights later, between 3 and 7 hours after sunrise.
            nights = int(rng.integers(1, 4))
            k = min(j + nights - 1, len(sunrises) - 1)
            end = int(sunrises[k]) + _uniform_ms(rng, 3 * h, 7 * h)
            params: dict[str, Any] = {}
            if fault == "partial_lamp_failure":
                params["power_factor"] = round(0.4 + 0.2 * rng.random(), 2)
            return start, end, params
        if fault == "day_burner":
            # A photocell that fails to switch the lamp off at dawn.
            _, sunrises = self.hooks["nights"]()
            _, off_adv = self.hooks["lamp_delays"](g)
            offs = sunrises - off_adv
            choices = np.nonzero((offs >= s0) & (offs < s1))[0]
            if not len(choices):
                return None
            start = int(offs[int(choices[int(rng.integers(len(choices)))])])
            return start, start + _uniform_ms(rng, 8 * h, 30 * h), {}
        if fault == "circuit_outage":
            sunsets, sunrises = self.hooks["nights"]()
            choices = np.nonzero((sunsets + 30 * _MINUTE < s1) & (sunrises > s0))[0]
            if not len(choices):
                return None
            j = int(choices[int(rng.integers(len(choices)))])
            lo = max(int(sunsets[j]) + 30 * _MINUTE, s0)
            hi = max(int(sunrises[j]) - 2 * h, lo + 1)
            start = _uniform_ms(rng, lo, hi)
            return start, start + _uniform_ms(rng, 2 * h, 10 * h), {}
        if fault == "bin_overflow":
            # The bin fills up shortly before its collection and the crew cannot empty it (blocked,
            # bulky waste): it stays full past the collection until an extra pick-up.
            times = self.hooks["collections"](g)
            choices = times[(times > s0 + h) & (times < s1)]
            if not len(choices):
                return None
            c = int(choices[int(rng.integers(len(choices)))])
            start = max(c - _uniform_ms(rng, 1 * h, 4 * h), s0)
            return start, c + _uniform_ms(rng, 2 * h, 8 * h), {"skipped_collection": format_time(c)}
        if fault == "abnormal_fill_rate":
            start, end = anytime(12 * h, 36 * h)
            return start, end, {"factor": 3.0}
        if fault in ("stuck", "drift", "spikes"):
            metrics = self.hooks["measured"](g)
            metric = metrics[int(rng.integers(len(metrics)))]
            if fault == "stuck":
                start, end = anytime(6 * h, 24 * h)
                return start, end, {"metric": metric}
            if fault == "drift":
                start, end = anytime(12 * h, 48 * h)
                lo, hi = self.hooks["drift_rate"](metric)
                sign = -1.0 if (metric == "distance_mm" and rng.random() < 0.5) else 1.0
                return (
                    start,
                    end,
                    {"metric": metric, "per_hour": round(sign * (lo + (hi - lo) * rng.random()), 3)},
                )
            start, end = anytime(2 * h, 8 * h)
            return start, end, {"metric": metric, "probability": 0.15}
        if fault == "dropout":
            start, end = anytime(1 * h, 6 * h)
            return start, end, {}
        if fault == "dead_battery":
            start, end = anytime(12 * h, 36 * h)
            return start, end, {"drain_per_hour": round(8.0 + 12.0 * rng.random(), 2)}
        if fault in ("malformed", "duplicate"):
            start, end = anytime(10 * _MINUTE, 60 * _MINUTE)
            return start, max(end, start + 5 * self.step_ms), {"probability": 0.5}
        if fault == "out_of_order":
            start, end = anytime(10 * _MINUTE, 60 * _MINUTE)
            delay = int(rng.integers(2, 11))
            return start, max(end, start + 5 * self.step_ms), {"probability": 0.5, "delay_steps": delay}
        if fault == "clock_skew":
            start, end = anytime(1 * h, 8 * h)
            skew = int(120 + rng.random() * 3480) * (1 if rng.random() < 0.5 else -1)
            return start, end, {"skew_s": skew}
        raise AssertionError(f"no timing for fault kind {fault!r}")
