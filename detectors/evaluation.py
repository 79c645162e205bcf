"""Measure detector jobs on a simulated city whose faults are known.

``evaluate(jobs, seed=7, days=14, train_days=7)`` simulates the default fleet through
``train_days + days`` with the simulator's default fault rates, feeds every job's detector the
stored readings (sorted by event time, duplicates dropped, malformed messages lost — what the
database would hold), lets it learn during the first ``train_days`` without the labelled fault
episodes (baselines never learn from ground truth faults), and scores the rest. Scores become
detections the way a rule on ``detector.<job>`` would decide (``detectors.decide``, with each
job's ``threshold``, ``for`` and clear level), and detections are matched to episodes by
``simulators.scoring``. The same fleet is then run clean: every detection there is a false ticket.

The report gives, per fault kind and per job: precision, recall, F1, median time to detection,
and per job the threshold with the best F1 that keeps the clean fleet within its false-ticket
budget. This module is an evaluation harness: it is the one place the detectors package imports
the simulator (lazily), as the CLI wires packages together.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.decide import firing_instants
from detectors.peers import align_peers, nearest_peers
from detectors.settings import ANY_METRIC, DetectorJob
from sense311.errors import ConfigError

__all__ = ["EvaluationReport", "JobResult", "KindResult", "evaluate"]

#: Thresholds tried when looking for each job's best one.
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
#: The false-ticket budget of the whole job set on a clean fleet (per 1,000 sensor-days).
FALSE_TICKET_BUDGET = 1.0
#: How long after an episode's end a detection still matches it (simulators.scoring's default).
GRACE_S = 3600.0
#: A Monday at midnight UTC: weekly patterns start with the period.
DEFAULT_START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


@dataclass(slots=True)
class KindResult:
    kind: str
    episodes: int
    detected: int
    true_positives: int
    false_positives: int
    median_ttd_s: float | None

    @property
    def recall(self) -> float | None:
        return self.detected / self.episodes if self.episodes else None

    @property
    def precision(self) -> float | None:
        judged = self.true_positives + self.false_positives
        return self.true_positives / judged if judged else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None or p + r == 0:
            return None if p is None or r is None else 0.0
        return 2 * p * r / (p + r)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "episodes": self.episodes, "detected": self.detected,
            "true_positives": self.true_positives, "false_positives": self.false_positives,
            "precision": self.precision, "recall": self.recall, "f1": self.f1,
            "median_ttd_s": self.median_ttd_s,
        }  # fmt: skip


@dataclass(slots=True)
class JobResult:
    job: str
    detector: str
    targets: list[str]
    threshold: float
    detections: int
    kinds: list[KindResult]
    clean_detections: int
    clean_sensor_days: float
    best_threshold: float | None
    best_f1: float | None
    seconds: float

    @property
    def clean_rate(self) -> float:
        """False tickets per 1,000 sensor-days on the clean fleet."""
        return 1000.0 * self.clean_detections / self.clean_sensor_days if self.clean_sensor_days else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job, "detector": self.detector, "targets": self.targets, "threshold": self.threshold,
            "detections": self.detections, "kinds": [k.to_json() for k in self.kinds],
            "clean_detections": self.clean_detections, "clean_per_1000_sensor_days": self.clean_rate,
            "best_threshold": self.best_threshold, "best_f1": self.best_f1, "seconds": round(self.seconds, 2),
        }  # fmt: skip


@dataclass(slots=True)
class EvaluationReport:
    seed: int
    start: dt.datetime
    train_days: float
    days: float
    sensors: int
    kinds: list[KindResult] = field(default_factory=list)
    jobs: list[JobResult] = field(default_factory=list)
    clean_detections: int = 0
    clean_sensor_days: float = 0.0
    seconds: float = 0.0

    @property
    def clean_rate(self) -> float:
        return 1000.0 * self.clean_detections / self.clean_sensor_days if self.clean_sensor_days else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "start": self.start.isoformat(), "train_days": self.train_days,
            "days": self.days, "sensors": self.sensors, "kinds": [k.to_json() for k in self.kinds],
            "jobs": [j.to_json() for j in self.jobs],
            "clean_detections": self.clean_detections, "clean_per_1000_sensor_days": self.clean_rate,
            "seconds": round(self.seconds, 1),
        }  # fmt: skip


class _Stored:
    """What the database would hold after a simulated period: each sensor's series per metric."""

    def __init__(self, sim: Any) -> None:
        from simulators.kinds import METRICS

        fleet = sim.fleet
        self.fleet = fleet
        self.sensors = fleet.sensors()
        self.kind_of = {s.id: s.kind for s in self.sensors}
        self.metrics = METRICS
        steps = sim.n_steps
        times: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        for kind, group in fleet.groups.items():
            times[kind] = np.full((steps, group.n), np.nan)
            values[kind] = np.full((steps, group.n, len(METRICS[kind])), np.nan)
        for batch in sim.batches():
            for kind, group in fleet.groups.items():
                if not group.n:
                    continue
                rows = slice(group.start, group.stop)
                keep = batch.present[rows] & ~batch.malformed[rows]
                times[kind][batch.k] = np.where(keep, batch.time_ms[rows] / 1000.0, np.nan)
                values[kind][batch.k] = np.where(keep[:, None], batch.values[kind], np.nan)
        self._times, self._values = times, values
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def series(self, sensor_id: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Event times (UTC s, sorted, unique) and values; empty when the kind lacks the metric."""
        key = (sensor_id, metric)
        if key in self._cache:
            return self._cache[key]
        kind = self.kind_of[sensor_id]
        group = self.fleet.groups[kind]
        col = self.fleet.index[sensor_id] - group.start
        t = self._times[kind][:, col]
        if metric == ANY_METRIC:
            x = np.where(np.isfinite(t), 1.0, np.nan)
        elif metric in self.metrics[kind]:
            x = self._values[kind][:, col, self.metrics[kind].index(metric)]
        else:
            return np.zeros(0), np.zeros(0)
        ok = np.isfinite(t) & np.isfinite(x)
        t, x = t[ok], x[ok]
        order = np.argsort(t, kind="stable")
        t, x = t[order], x[order]
        first = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.zeros(0, dtype=bool)
        out = (t[first], x[first])
        self._cache[key] = out
        return out


def _episode_mask(t: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    bad = np.zeros(len(t), dtype=bool)
    for lo, hi in spans:
        bad |= (t >= lo) & (t <= hi)
    return bad


def _scores_at_instants(
    job: DetectorJob,
    stored: _Stored,
    tz: str,
    instants: np.ndarray,
    train_end: float,
    spans: dict[str, list[tuple[float, float]]],
) -> tuple[list[str], np.ndarray]:
    """The job's instant scores: rows are the selected sensors, columns ``instants``."""
    selected = [s for s in stored.sensors if not job.kind or s.kind in job.kind]
    ids = [s.id for s in selected]
    interval = job.interval.total_seconds()
    values = np.zeros((len(ids), len(instants)))
    neighbours = (
        nearest_peers(selected, job.peers.k, job.peers.max_distance_m, job.peers.same) if job.peers else {}
    )
    first = instants[0]
    for row, sensor_id in enumerate(ids):
        for metric in job.metrics:
            t, x = stored.series(sensor_id, metric)
            if not len(t):
                continue
            learn = ~(_episode_mask(t, spans.get(sensor_id, ())) & (t < train_end))
            if job.peers is not None:
                peers = [stored.series(p, metric) for p in neighbours.get(sensor_id, [])]
                x = align_peers(t, x, peers, job.peers.max_age.total_seconds())
            detector = job.build(tz)
            scored = detector.score_series(t, x, learn=learn)
            col = np.ceil((t - first) / interval - 1e-9).astype(np.int64)
            inside = (col >= 0) & (col < len(instants))
            np.maximum.at(values[row], col[inside], scored.score[inside])
            if job.detector == "silent":
                values[row] = np.maximum(values[row], _idle_scores(detector, t, scored, instants))
    return ids, values


def _idle_scores(detector: Any, t: np.ndarray, scored: Any, instants: np.ndarray) -> np.ndarray:
    """What ``score_idle`` gives at each instant, from the last reading and its cadence."""
    i = np.searchsorted(t, instants, side="right") - 1
    has = i >= 0
    cadence = np.where(has, scored.evidence["cadence_s"][np.maximum(i, 0)], np.nan)
    gap = instants - np.where(has, t[np.maximum(i, 0)], np.nan)
    return np.where(has, detector._score_gaps(gap, cadence), 0.0)


def _raw_detections(
    job: DetectorJob, ids: list[str], values: np.ndarray, instants: np.ndarray, threshold: float, since: float
) -> list[tuple[str, str, dt.datetime]]:
    fired = firing_instants(
        values, instants, threshold, job.for_.total_seconds(), min(job.clear_level, threshold)
    )
    return [
        (ids[row], job.name, dt.datetime.fromtimestamp(at, tz=dt.UTC)) for row, at in fired if at >= since
    ]


def _kind_rows(report: Any) -> list[KindResult]:
    rows = []
    for kind, s in sorted(report.by_kind.items()):
        rows.append(
            KindResult(kind, s.episodes, s.detected, s.true_positives, s.false_positives, s.median_ttd_s)
        )
    return rows


def evaluate(
    jobs: Sequence[DetectorJob],
    *,
    seed: int = 7,
    days: float = 14.0,
    train_days: float = 7.0,
    start: dt.datetime = DEFAULT_START,
    step: float = 60.0,
    counts: dict[str, int] | None = None,
    clean: bool = True,
    progress: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Run ``jobs`` over a simulated period with faults (and a clean twin); see the module doc."""
    from simulators import FaultRates, Simulation, build_fleet, default_faults, score

    if days <= 0 or train_days < 0:
        raise ConfigError(f"evaluation needs days > 0 and train_days >= 0, got {days} and {train_days}")
    jobs = [j for j in jobs if j.enabled]
    if not jobs:
        raise ConfigError("no enabled detector job to evaluate")
    say = progress or (lambda message: None)
    began = time.perf_counter()
    fleet = build_fleet(seed=seed, counts=counts)
    tz = fleet.city.tz
    end = start + dt.timedelta(days=train_days + days)
    train_end = (start + dt.timedelta(days=train_days)).timestamp()
    result = EvaluationReport(seed, start, train_days, days, len(fleet))
    runs = [("faults", default_faults())] + ([("clean", FaultRates())] if clean else [])
    instant_scores: dict[tuple[str, str], tuple[list[str], np.ndarray, np.ndarray]] = {}
    truth = None
    for label, rates in runs:
        say(f"simulating {len(fleet)} sensors for {train_days + days:g} days ({label})")
        sim = Simulation(fleet, rates, start, end, step=step)
        stored = _Stored(sim)
        gt = sim.ground_truth()
        if label == "faults":
            truth = gt
        spans: dict[str, list[tuple[float, float]]] = {}
        for e in gt.episodes:
            for sensor in e.sensors:
                spans.setdefault(sensor, []).append((e.start_ms / 1000, e.end_ms / 1000))
        for job in jobs:
            job_began = time.perf_counter()
            step_s = job.interval.total_seconds()
            instants = np.arange(np.ceil(start.timestamp() / step_s) * step_s, end.timestamp() + 1e-9, step_s)
            ids, values = _scores_at_instants(job, stored, tz, instants, train_end, spans)
            instant_scores[(label, job.name)] = (ids, values, instants)
            say(f"  {label}: {job.name} ({job.detector}) scored in {time.perf_counter() - job_began:.1f} s")
    assert truth is not None
    episodes = [e for e in truth.episodes if e.start_ms / 1000 >= train_end]
    # Episodes that began while training are not scored; detections of them are neither hits nor misses.
    carried = [e for e in truth.episodes if e.start_ms / 1000 < train_end < e.end_ms / 1000 + GRACE_S]
    carried_spans: dict[str, list[tuple[float, float]]] = {}
    for e in carried:
        for sensor in e.sensors:
            carried_spans.setdefault(sensor, []).append((e.start_ms / 1000, e.end_ms / 1000 + GRACE_S))

    def _detections(*args: Any) -> list[tuple[str, str, dt.datetime]]:
        return [
            d
            for d in _raw_detections(*args)
            if not any(lo <= d[2].timestamp() <= hi for lo, hi in carried_spans.get(d[0], ()))
        ]

    test_days = days
    mapping = {job.name: job.targets for job in jobs if job.targets}
    all_detections = []
    for job in jobs:
        job_began = time.perf_counter()
        ids, values, instants = instant_scores[("faults", job.name)]
        detections = _detections(job, ids, values, instants, job.threshold, train_end)
        all_detections.extend(detections)
        kinds = (
            _kind_rows(score(episodes, detections, mapping={job.name: job.targets})) if job.targets else []
        )
        clean_count, sensor_days = 0, len(ids) * test_days
        clean_by_threshold: dict[float, int] = {}
        if clean:
            c_ids, c_values, c_instants = instant_scores[("clean", job.name)]
            clean_count = len(_raw_detections(job, c_ids, c_values, c_instants, job.threshold, train_end))
            for thr in THRESHOLDS:
                clean_by_threshold[thr] = len(
                    _raw_detections(job, c_ids, c_values, c_instants, thr, train_end)
                )
        best_thr, best_f1 = None, None
        if job.targets:
            budget = FALSE_TICKET_BUDGET / len(jobs) * sensor_days / 1000.0
            for thr in THRESHOLDS:
                if clean and clean_by_threshold[thr] > budget:
                    continue
                dets = _detections(job, ids, values, instants, thr, train_end)
                rows = _kind_rows(score(episodes, dets, mapping={job.name: job.targets}))
                f1 = _micro_f1([r for r in rows if r.kind in job.targets])
                if f1 is not None and (best_f1 is None or f1 > best_f1):
                    best_thr, best_f1 = thr, f1
        result.jobs.append(
            JobResult(job.name, job.detector, list(job.targets), job.threshold, len(detections), kinds,
                      clean_count, sensor_days, best_thr, best_f1, time.perf_counter() - job_began)
        )  # fmt: skip
        result.clean_detections += clean_count
    result.kinds = _kind_rows(score(episodes, all_detections, mapping=mapping))
    result.clean_sensor_days = len(fleet) * test_days if clean else 0.0
    result.seconds = time.perf_counter() - began
    return result


def _micro_f1(rows: Sequence[KindResult]) -> float | None:
    episodes = sum(r.episodes for r in rows)
    tp = sum(r.true_positives for r in rows)
    fp = sum(r.false_positives for r in rows)
    if not episodes or tp + fp == 0:
        return 0.0 if episodes else None
    recall = sum(r.detected for r in rows) / episodes
    precision = tp / (tp + fp)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
