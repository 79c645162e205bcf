"""Run a fleet through a period: step the kind models, apply faults, emit batches and messages.

::

    fleet = build_fleet(seed=7)
    sim = Simulation(fleet, default_faults(), start, end, step=60)
    for message in sim.messages():        # SimMessage objects, in delivery order
        ...
    truth = sim.ground_truth()            # labelled episodes + summary

Every sensor reports once per ``step`` seconds, at its own offset within the step (a fixed
fraction of the step per sensor, so reports spread like real traffic). Nothing here reads the
clock: the period is given, and the same fleet, faults and period give the same output.
``batches()`` is the fast, vectorised form used by backfill and the benchmark; ``messages()``
turns batches into ``SimMessage`` objects and applies delivery faults (duplicates, delays).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from itertools import compress, repeat
from typing import Any

import numpy as np

from sense311.errors import ConfigError
from simulators import noise
from simulators.faults import (
    FAULT_KINDS,
    TRANSPORT_FAULTS,
    Episode,
    FaultPlan,
    FaultRates,
    FaultTrack,
    Planner,
    format_time,
)
from simulators.fleet import Fleet
from simulators.ground_truth import FORMAT, GroundTruth
from simulators.kinds import KINDS, METRICS, MODELS
from simulators.kinds.base import KindModel, SimContext, StepClock
from simulators.kinds.bins import collection_times
from simulators.messages import SimMessage, StepBatch
from simulators.sun import NightTable

__all__ = ["Simulation"]

#: Noise streams of the transport layer (distinct from every kind model's).
_TRANSPORT_STREAM = {"malformed": 9001, "duplicate": 9002, "out_of_order": 9003}
_RSSI_STREAM = 9100
#: What the ground truth's summary counts: reports taken, and those hit by each message fault.
_COUNTS = ("reports", "duplicate", "malformed", "out_of_order", "clock_skew")


def _row_dicts(metrics: tuple[str, ...], values: np.ndarray) -> Iterator[dict[str, float]]:
    """``{metric: value}`` per row, built by C iterators (pairs of zipped columns) for speed."""
    columns = values.T.tolist()
    pairs = [zip(repeat(m), col) for m, col in zip(metrics, columns, strict=True)]
    return map(dict, zip(*pairs, strict=True))


def _to_ms(value: dt.datetime, name: str) -> int:
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"{name} must carry a time zone (e.g. 2024-03-01T00:00Z), got {value.isoformat()}")
    return round(value.timestamp() * 1000)


def _step_ms(step: float | dt.timedelta) -> int:
    seconds = step.total_seconds() if isinstance(step, dt.timedelta) else float(step)
    if not seconds >= 1.0:
        raise ConfigError(f"step must be at least 1 second, got {seconds:g} s")
    return round(seconds * 1000)


class Simulation:
    """A fleet over ``[start, end)`` (aware datetimes) with one report per ``step`` seconds.

    ``faults`` gives fault rates (``None`` or ``FaultRates()`` is a clean fleet). The fault plan
    is drawn when the simulation is made; each ``batches()`` / ``messages()`` call replays the
    whole period from the start with fresh state, so results never depend on call order.
    """

    def __init__(
        self,
        fleet: Fleet,
        faults: FaultRates | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        step: float | dt.timedelta = 60.0,
    ) -> None:
        if start is None or end is None:
            raise ConfigError("a simulation needs a start and an end time")
        self.fleet = fleet
        self.rates = faults or FaultRates()
        self.start_ms = _to_ms(start, "start")
        self.end_ms = _to_ms(end, "end")
        self.step_ms = _step_ms(step)
        if self.end_ms <= self.start_ms:
            raise ConfigError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
        self.n_steps = -(-(self.end_ms - self.start_ms) // self.step_ms)
        city = fleet.city
        self.ctx = SimContext(
            seed=fleet.seed,
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            step_ms=self.step_ms,
            nights=NightTable(city, self.start_ms, self.end_ms),
            zone=city.zone,
            mean_temp_c=city.mean_temp_c,
            seasonal_amp_c=city.seasonal_amp_c,
            diurnal_amp_c=city.diurnal_amp_c,
            southern=city.lat < 0,
        )
        self.phase_ms = np.floor(fleet.phase * self.step_ms).astype(np.int64)
        # Within each kind, reports go out in the order of their offset in the step.
        self._order = {
            kind: np.argsort(self.phase_ms[g.start : g.stop], kind="stable")
            for kind, g in fleet.groups.items()
        }
        self.plan = self._plan()
        self._truth: GroundTruth | None = None
        self._live: tuple[dict[str, KindModel], dict[int, list[tuple[int, int]]], dict[str, int]] | None = (
            None
        )

    # --- planning ---------------------------------------------------------------------------------

    def _plan(self) -> FaultPlan:
        fleet = self.fleet
        bins = fleet.groups.get("bin")
        lights = fleet.groups.get("light")
        bin_times = collection_times(bins, self.ctx) if bins is not None and bins.n else None
        nights = self.ctx.nights

        def lamp_delays(g: int) -> tuple[int, int]:
            assert lights is not None
            r = g - lights.start
            return int(lights.attrs["on_delay_ms"][r]), int(lights.attrs["off_advance_ms"][r])

        def collections(g: int) -> np.ndarray:
            assert bins is not None and bin_times is not None
            row = bin_times[g - bins.start]
            return row[row < np.iinfo(np.int64).max]

        hooks = {
            "nights": lambda: (nights.starts, nights.ends),
            "lamp_delays": lamp_delays,
            "collections": collections,
            "circuits": fleet.circuits,
            "measured": lambda g: MODELS[fleet.kinds[g]].measured,
            "drift_rate": lambda metric: next(
                m.drift_rates[metric] for m in MODELS.values() if metric in m.drift_rates
            ),
        }
        drafts = Planner(
            seed=fleet.seed,
            rates=self.rates,
            kinds=fleet.kinds,
            ids=fleet.ids,
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            step_ms=self.step_ms,
            hooks=hooks,
        ).plan()
        episodes: list[Episode] = []
        entries: dict[tuple[str, str], list[tuple[int, int, int, int, dict[str, Any]]]] = {}
        for number, draft in enumerate(drafts):
            episodes.append(
                Episode(
                    id=f"ep-{number + 1:05d}",
                    kind=draft.kind,
                    sensors=[fleet.ids[g] for g in draft.members],
                    start_ms=draft.start_ms,
                    end_ms=draft.end_ms,
                    params=draft.params,
                    messages=[] if draft.kind in TRANSPORT_FAULTS or draft.kind == "spikes" else None,
                )
            )
            for g in draft.members:
                kind = fleet.kinds[g]
                if draft.kind in TRANSPORT_FAULTS:
                    key, row = (draft.kind, "*"), g
                else:
                    key, row = (draft.kind, kind), g - fleet.groups[kind].start
                entries.setdefault(key, []).append((number, row, draft.start_ms, draft.end_ms, draft.params))
        device: dict[tuple[str, str], FaultTrack] = {}
        transport: dict[str, FaultTrack] = {}
        for (fault, kind), rows in entries.items():
            params: dict[str, list[float]] = {}
            for *_, p in rows:
                for name, value in p.items():
                    if name == "metric":
                        params.setdefault(name, []).append(METRICS[kind].index(value))
                    elif isinstance(value, int | float):
                        params.setdefault(name, []).append(value)
            track = FaultTrack(
                kind=fault,
                episode=np.array([r[0] for r in rows], dtype=np.int64),
                row=np.array([r[1] for r in rows], dtype=np.int64),
                start=np.array([r[2] for r in rows], dtype=np.int64),
                end=np.array([r[3] for r in rows], dtype=np.int64),
                params={k: np.array(v) for k, v in params.items()},
            )
            if "metric" in track.params:
                track.params["metric"] = track.params["metric"].astype(np.int64)
            if fault in TRANSPORT_FAULTS:
                transport[fault] = track
            else:
                device[(fault, kind)] = track
        return FaultPlan(episodes=episodes, device=device, transport=transport)

    # --- running ----------------------------------------------------------------------------------

    def _clock(self, k: int) -> StepClock:
        t_ms = self.start_ms + k * self.step_ms
        local = dt.datetime.fromtimestamp(t_ms / 1000, tz=self.ctx.zone)
        offset = local.utcoffset()
        return StepClock(
            k=k,
            t_ms=t_ms,
            counter=t_ms // 1000,
            dt_h=self.step_ms / 3_600_000,
            offset_s=int(offset.total_seconds()) if offset is not None else 0,
            local_hour=local.hour + local.minute / 60 + local.second / 3600,
            weekday=local.weekday(),
            day_of_year=local.timetuple().tm_yday,
        )

    def batches(self) -> Iterator[StepBatch]:
        """Every step of the period as a ``StepBatch``, from fresh state."""
        fleet = self.fleet
        models: dict[str, KindModel] = {
            kind: MODELS[kind](group, self.ctx, self.plan) for kind, group in fleet.groups.items()
        }
        n = len(fleet)
        affected: dict[int, list[tuple[int, int]]] = {}  # episode → (fleet row, step)
        counts = dict.fromkeys(_COUNTS, 0)
        tally = {fault: np.zeros(len(track), dtype=np.int64) for fault, track in self.plan.transport.items()}
        # Kept so a run stopped half-way can still write what happened so far.
        self._live = (models, affected, counts)
        for k in range(self.n_steps):
            clock = self._clock(k)
            true_time = clock.t_ms + self.phase_ms
            present = np.empty(n, dtype=bool)
            values: dict[str, np.ndarray] = {}
            for kind in KINDS:
                group = fleet.groups[kind]
                if not group.n:
                    values[kind] = np.zeros((0, len(METRICS[kind])))
                    continue
                values[kind], present[group.start : group.stop] = models[kind].step(
                    clock, true_time[group.start : group.stop]
                )
            present &= true_time < self.end_ms
            carried = true_time.copy()
            flags = {name: np.zeros(n, dtype=bool) for name in ("malformed", "duplicate")}
            delay = np.zeros(n, dtype=np.int64)
            for fault, track in self.plan.transport.items():
                idx = track.active(true_time)
                if not len(idx):
                    continue
                rows = track.row[idx]
                if fault == "clock_skew":
                    carried[rows] += track.params["skew_s"][idx].astype(np.int64) * 1000
                    hit = present[rows]
                else:
                    u = noise.uniform(fleet.keys[rows], clock.counter, _TRANSPORT_STREAM[fault])
                    # An episode's first report is always hit, so no label is left without a message.
                    first = tally[fault][idx] == 0
                    hit = ((u < track.params["probability"][idx]) | first) & present[rows]
                    tally[fault][idx] += hit
                    if fault == "out_of_order":
                        delay[rows[hit]] = track.params["delay_steps"][idx][hit].astype(np.int64)
                    else:
                        flags[fault][rows[hit]] = True
                counts[fault] += int(hit.sum())
                for e, g in zip(track.episode[idx][hit].tolist(), rows[hit].tolist(), strict=True):
                    affected.setdefault(e, []).append((g, k))
            counts["reports"] += int(present.sum())
            link, snr_noise = noise.normals(fleet.keys, clock.counter, (_RSSI_STREAM, _RSSI_STREAM + 2))
            rssi = np.round(fleet.rssi_mean + 3.0 * link)
            # SNR falls with signal strength and saturates near 10 dB on strong links.
            snr = np.round(np.clip(0.35 * (rssi + 120.0) - 10.0 + snr_noise, -20.0, 13.5), 1)
            yield StepBatch(
                k=k,
                t_ms=clock.t_ms,
                present=present,
                time_ms=carried,
                true_time_ms=true_time,
                values=values,
                fcnt=fleet.fcnt0 + k,
                rssi=rssi,
                snr=snr,
                malformed=flags["malformed"],
                duplicate=flags["duplicate"],
                delay=delay,
            )
        self._truth = self._finish(models, affected, counts)

    def messages(self) -> Iterator[SimMessage]:
        """Every message in delivery order: a duplicate right after its original, a delayed
        message at the end of the step it is released in (leftovers after the last step)."""
        fleet = self.fleet
        # Per kind, in emission order: the static columns, selected per step with a mask.
        static = {}
        for kind, group in fleet.groups.items():
            rows = group.start + self._order[kind]
            static[kind] = (
                rows,
                [fleet.ids[g] for g in rows],
                [fleet.gateway(g) for g in rows],
            )
        pending: dict[int, list[SimMessage]] = {}
        for batch in self.batches():
            for kind, group in fleet.groups.items():
                if not group.n:
                    continue
                rows, ids, gateways = static[kind]
                keep = batch.present[rows]
                sel = rows[keep]
                keep_list = keep.tolist()
                # One constructor call per message through map(): the hot path of the simulator.
                made = map(
                    SimMessage,
                    batch.time_ms[sel].tolist(),
                    compress(ids, keep_list),
                    repeat(kind),
                    _row_dicts(METRICS[kind], batch.values[kind][self._order[kind][keep]]),
                    batch.fcnt[sel].tolist(),
                    compress(gateways, keep_list),
                    batch.rssi[sel].astype(np.int64).tolist(),
                    batch.snr[sel].tolist(),
                    batch.true_time_ms[sel].tolist(),
                    batch.malformed[sel].tolist(),
                )
                late = batch.delay[sel]
                dup = batch.duplicate[sel]
                if not (late.any() or dup.any()):
                    yield from made
                    continue
                for msg, steps, twice in zip(made, late.tolist(), dup.tolist(), strict=True):
                    if steps:
                        msg.delayed_steps = steps
                        pending.setdefault(batch.k + steps, []).append(msg)
                        continue
                    yield msg
                    if twice:
                        yield replace(msg, duplicate=True)
            yield from pending.pop(batch.k, ())
        for k in sorted(pending):
            yield from pending[k]

    def ground_truth(self, until_ms: int | None = None) -> GroundTruth:
        """Episodes with their affected messages, and the run summary (runs the period if needed).

        ``until_ms`` (UTC ms) describes a run stopped early: the state of the run in progress,
        only the episodes that began before ``until_ms``, their ends cut there, and the summary
        marked ``"completed": false``.
        """
        if until_ms is not None:
            # Stopped before the first step: nothing was sent, nothing happened.
            live = self._live or ({}, {}, dict.fromkeys(_COUNTS, 0))
            return self._finish(*live, until_ms=until_ms)
        if self._truth is None:
            for _ in self.batches():
                pass
        assert self._truth is not None
        return self._truth

    def _finish(
        self,
        models: dict[str, KindModel],
        affected: dict[int, list[tuple[int, int]]],
        counts: dict[str, int],
        until_ms: int | None = None,
    ) -> GroundTruth:
        fleet = self.fleet
        episodes = [
            Episode(e.id, e.kind, list(e.sensors), e.start_ms, e.end_ms, dict(e.params), None)
            for e in self.plan.episodes
        ]
        for number, hits in affected.items():
            episodes[number].messages = [f"{fleet.ids[g]}:{int(fleet.fcnt0[g]) + k}" for g, k in hits]
        for kind, model in models.items():
            start = fleet.groups[kind].start
            for e, row, k in model.faults.spiked:
                g = start + row
                episodes[e].messages = episodes[e].messages or []
                episodes[e].messages.append(f"{fleet.ids[g]}:{int(fleet.fcnt0[g]) + k}")
            for key, value in model.recorded().items():
                number, name = key.split(":")
                episodes[int(number)].params[name] = value
        for e in episodes:
            if e.messages is None and (e.kind in TRANSPORT_FAULTS or e.kind == "spikes"):
                e.messages = []
        if until_ms is not None:
            episodes = [e for e in episodes if e.start_ms < until_ms]
            for e in episodes:
                e.end_ms = min(e.end_ms, until_ms)
        per_kind = {k: 0 for k in FAULT_KINDS}
        for e in episodes:
            per_kind[e.kind] += 1
        city = fleet.city
        summary: dict[str, Any] = {
            "format": FORMAT,
            "seed": fleet.seed,
            "start": format_time(self.start_ms),
            "end": format_time(self.end_ms),
            "step_s": self.step_ms / 1000,
            "city": {"name": city.name, "lat": city.lat, "lon": city.lon, "tz": city.tz},
            "sensors": dict(fleet.counts),
            "sensor_total": len(fleet),
            "episodes": per_kind,
            "episode_total": len(episodes),
            "messages": counts,
            "fault_rates": self.rates.to_json(),
            "completed": until_ms is None,
        }
        if until_ms is not None:
            summary["stopped_at"] = format_time(until_ms)
        return GroundTruth(episodes, summary)
