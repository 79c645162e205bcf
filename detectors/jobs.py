"""The detector jobs against the database: training models and writing ``detector_scores``.

``train_models(conn, settings, now)`` fits every job on the readings of ``(now − train_window,
now]``: each (sensor, metric) gets its own detector, fed the history in order (a forest job
first fits its shared forest on all of them). The states are pickled into ``detector_models`` as
the job's next version and pinned. A job that fails to train records why, keeps its previous
pinned version, and does not stop the other jobs.

``score_instants(conn, settings, now)`` scores the instants that are due for every job — aligned
to the job's ``interval`` after its watermark (or after the model's training end), up to
``floor((now − lateness) / interval) · interval`` — with the pinned model: the detectors continue
from their trained state through the readings since ``trained_to``, and each instant gets, per
sensor, the highest score of its readings in ``(t − interval, t]`` (the silent detector also
scores instants without readings). Rows go into ``detector_scores``, which rules read as
``metric: detector.<job>``. Passing ``start``/``end`` scores a past period instead (for
backtests); instants before the model's training end are refused, since the model has seen
what came after them.

Nothing here reads the clock: ``now`` is an argument (``DetectorService._tick_now`` is the one
place that does).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from detectors.base import Detector
from detectors.errors import DetectorError, NoModelError, TrainingError
from detectors.forest import WindowForest
from detectors.peers import align_peers, nearest_peers
from detectors.readings import Series, fetch_series, select_sensors
from detectors.settings import DetectorJob, DetectorSettings
from detectors.store import load_pinned, save_failed, save_trained
from sense311.errors import ConfigError, DatabaseError, Sense311Error

__all__ = ["ScoreReport", "Scorer", "TrainResult", "score_instants", "train_models"]

log = logging.getLogger(__name__)

#: Rows per INSERT batch into detector_scores.
WRITE_BATCH = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _seconds(t: datetime) -> float:
    if t.tzinfo is None:
        raise ConfigError(f"expected a timezone-aware time, got naive {t.isoformat()}")
    return (t - _EPOCH).total_seconds()


def _time(seconds: float) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


@dataclass(slots=True)
class TrainResult:
    job: str
    status: str  # "trained" | "failed"
    version: int | None
    sensors: int = 0
    series: int = 0
    readings: int = 0
    seconds: float = 0.0
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def _selection(conn: psycopg.Connection, job: DetectorJob) -> tuple[list[Any], dict[str, list[str]]]:
    sensors = select_sensors(conn, job.kind)
    neighbours = (
        nearest_peers(sensors, job.peers.k, job.peers.max_distance_m, job.peers.same) if job.peers else {}
    )
    return sensors, neighbours


def _inputs(
    job: DetectorJob, data: Series, sensor_id: str, metric: str, neighbours: dict[str, list[str]]
) -> tuple[np.ndarray, np.ndarray] | None:
    series = data.get((sensor_id, metric))
    if series is None or not len(series[0]):
        return None
    t, x = series
    if job.peers is not None:
        peers = [data.get((p, metric), (np.zeros(0), np.zeros(0))) for p in neighbours.get(sensor_id, [])]
        x = align_peers(t, x, peers, job.peers.max_age.total_seconds())
    return t, x


def _learn_mask(t: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    learn = np.ones(len(t), dtype=bool)
    for lo, hi in spans:
        learn &= ~((t >= lo) & (t <= hi))
    return learn


def _train_one(
    conn: psycopg.Connection,
    job: DetectorJob,
    settings: DetectorSettings,
    lo: datetime,
    hi: datetime,
    exclude: Mapping[str, Sequence[tuple[float, float]]],
) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
    sensors, neighbours = _selection(conn, job)
    if not sensors:
        raise TrainingError(f"no sensors of kind {job.kind or 'any'} in the registry", job=job.name)
    ids = sorted({s.id for s in sensors} | {p for ps in neighbours.values() for p in ps})
    margin = job.peers.max_age if job.peers else timedelta(0)
    data = fetch_series(conn, ids, job.metrics, lo - margin, hi)
    selected = [s.id for s in sensors]
    keys = [(sid, m) for sid in selected for m in job.metrics if (sid, m) in data and len(data[(sid, m)][0])]
    if not keys:
        raise TrainingError(
            f"no readings of {', '.join(job.metrics)} for {len(selected)} sensors between "
            f"{lo.isoformat()} and {hi.isoformat()}",
            job=job.name,
        )
    inputs = {key: _inputs(job, data, key[0], key[1], neighbours) for key in keys}
    template = job.build(settings.timezone)
    if isinstance(template, WindowForest):
        series = [(inp[0], inp[1]) for inp in inputs.values() if inp is not None]
        masks = [
            _learn_mask(inp[0], exclude.get(key[0], ())) for key, inp in inputs.items() if inp is not None
        ]
        try:
            template.fit(series, masks)
        except ConfigError as exc:
            raise TrainingError(str(exc), job=job.name) from exc
    states: dict[tuple[str, str], Any] = {}
    scores: list[np.ndarray] = []
    readings = 0
    for key, inp in inputs.items():
        if inp is None:
            continue
        t, x = inp
        detector = _fresh(template)
        learn = _learn_mask(t, exclude.get(key[0], ()))
        result = detector.score_series(t, x, learn=learn)
        scores.append(result.score)
        states[key] = detector
        readings += len(t)
    every = np.concatenate(scores) if scores else np.zeros(0)
    if len(every) and not np.isfinite(every).all():
        raise TrainingError("training produced scores that are not finite numbers", job=job.name)
    metrics = {
        "sensors": len({k[0] for k in states}),
        "series": len(states),
        "readings": readings,
        "score_p50": float(np.quantile(every, 0.5)) if len(every) else None,
        "score_p99": float(np.quantile(every, 0.99)) if len(every) else None,
        "score_p999": float(np.quantile(every, 0.999)) if len(every) else None,
        "share_at_threshold": float(np.mean(every >= job.threshold)) if len(every) else None,
    }
    return states, metrics


def _fresh(template: Any) -> Any:
    """A new detector like ``template``; a fitted forest is shared, not copied."""
    detector = template.clone()
    if isinstance(template, WindowForest) and template.fitted:
        detector._model = template._model
        detector._calibration = template._calibration
    return detector


def train_models(
    conn: psycopg.Connection,
    settings: DetectorSettings,
    now: datetime,
    *,
    jobs: Sequence[str] | None = None,
    exclude: Mapping[str, Sequence[tuple[datetime, datetime]]] | None = None,
    pin: bool = True,
) -> list[TrainResult]:
    """Train every enabled job (or those named) on ``(now − train_window, now]``.

    ``exclude`` maps sensor ids to labelled fault spans (aware datetimes) never learned from.
    ``conn`` must be in autocommit mode: each job's model is saved in its own transaction.
    """
    selected = [settings.job(n) for n in jobs] if jobs else [j for j in settings.jobs if j.enabled]
    hi = now
    lo = now - settings.train_window
    spans = {k: [(_seconds(a), _seconds(b)) for a, b in v] for k, v in (exclude or {}).items()}
    results = []
    for job in selected:
        began = time.perf_counter()
        params = job.model_dump(mode="json", by_alias=True)
        try:
            states, metrics = _train_one(conn, job, settings, lo, hi, spans)
            metrics["seconds"] = round(time.perf_counter() - began, 3)
            version = save_trained(
                conn, name=job.name, kind=job.detector, params=params, trained_from=lo, trained_to=hi,
                metrics=metrics, model={"states": states, "timezone": settings.timezone}, now=now, pin_it=pin,
            )  # fmt: skip
            results.append(
                TrainResult(job.name, "trained", version, metrics["sensors"], metrics["series"],
                            metrics["readings"], metrics["seconds"], None, metrics)
            )  # fmt: skip
            log.info("detector job %s: trained version %d on %d series", job.name, version, metrics["series"])
        except (TrainingError, DetectorError, ValueError, MemoryError) as exc:
            reason = str(exc) or type(exc).__name__
            try:
                version = save_failed(
                    conn, name=job.name, kind=job.detector, params=params, trained_from=lo, trained_to=hi,
                    error=reason, now=now,
                )  # fmt: skip
            except DatabaseError as db_exc:
                log.error("detector job %s: could not record the failed training: %s", job.name, db_exc)
                version = None
            log.error(
                "detector job %s: training failed, the previous model stays pinned: %s", job.name, reason
            )
            results.append(
                TrainResult(job.name, "failed", version, seconds=time.perf_counter() - began, error=reason)
            )
    return results


# -- scoring ------------------------------------------------------------------------------------


@dataclass(slots=True)
class ScoreReport:
    """What one scoring run did, per job: instants scored, rows written, or why it was skipped."""

    instants: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(slots=True)
class _JobState:
    version: int
    trained_to: float
    states: dict[tuple[str, str], Any]
    advanced_to: float  # readings up to here (UTC s) have been fed


class Scorer:
    """Keeps each job's detector states between scoring runs, so a live service feeds every
    reading once; a new pinned version (or a fresh process) starts again from its trained state."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self._jobs: dict[str, _JobState] = {}

    def _state(self, conn: psycopg.Connection, job: DetectorJob) -> tuple[_JobState, datetime]:
        row = load_pinned(conn, job.name)
        current = self._jobs.get(job.name)
        if current is None or current.version != row.version:
            assert row.trained_to is not None
            current = _JobState(
                row.version, _seconds(row.trained_to), row.model["states"], _seconds(row.trained_to)
            )
            self._jobs[job.name] = current
        assert row.trained_to is not None
        return current, row.trained_to

    def due(
        self, conn: psycopg.Connection, job: DetectorJob, now: datetime, trained_to: datetime
    ) -> np.ndarray:
        """The instants (UTC s) live scoring should write now."""
        step = job.interval.total_seconds()
        row = conn.execute(
            "SELECT watermark FROM detector_watermarks WHERE detector = %s", (job.name,)
        ).fetchone()
        after = max(_seconds(row[0]) if row else -math.inf, _seconds(trained_to))
        last = math.floor((_seconds(now) - job.lateness.total_seconds()) / step) * step
        first = math.floor(after / step) * step + step
        if last < first:
            return np.zeros(0)
        count = round((last - first) / step) + 1
        limit = self.settings.max_catchup_instants
        if count > limit:
            log.warning(
                "detector job %s: %d instants due, scoring the last %d (max_catchup_instants)",
                job.name,
                count,
                limit,
            )
            first = last - (limit - 1) * step
            count = limit
        return first + step * np.arange(count)

    def score(
        self, conn: psycopg.Connection, job: DetectorJob, instants: np.ndarray, *, overwrite: bool = False
    ) -> int:
        """Score ``instants`` (UTC s, ascending, after the model's training end); returns rows written."""
        if not len(instants):
            return 0
        state, trained_to = self._state(conn, job)
        step = job.interval.total_seconds()
        if instants[0] - step < state.trained_to - 1e-6:
            raise DetectorError(
                f"detector job {job.name!r}: instant {_time(instants[0] - step).isoformat()} is before its "
                f"model's training end {trained_to.isoformat()}; "
                "train with an earlier --now to score the past"
            )
        if instants[0] - step < state.advanced_to - 1e-6:
            # Re-scoring instants already fed (an overwrite of a past period): start from the model again.
            self._jobs.pop(job.name, None)
            state, _ = self._state(conn, job)
        sensors, neighbours = _selection(conn, job)
        ids = sorted({s.id for s in sensors} | {p for ps in neighbours.values() for p in ps})
        margin = job.peers.max_age.total_seconds() if job.peers else 0.0
        lo, hi = state.advanced_to, float(instants[-1])
        data = fetch_series(conn, ids, job.metrics, _time(lo - margin), _time(hi))
        template = None
        rows: list[tuple[datetime, str, str, float, dict[str, float], str]] = []
        version = str(state.version)
        for sensor in sensors:
            best = np.full(len(instants), -1.0)
            best_ev: list[dict[str, float] | None] = [None] * len(instants)
            for metric in job.metrics:
                key = (sensor.id, metric)
                detector = state.states.get(key)
                if detector is None:
                    template = template or _template(job, self.settings, state)
                    detector = _fresh(template)
                    state.states[key] = detector
                inp = _inputs(job, data, sensor.id, metric, neighbours)
                if inp is not None:
                    t, x = inp
                    fresh = t > max(lo, detector.last_time)
                    t, x = t[fresh], x[fresh]
                else:
                    t, x = np.zeros(0), np.zeros((0, 1)) if job.peers else np.zeros(0)
                _score_into(detector, t, x, instants, step, metric, best, best_ev)
            for i in np.flatnonzero(best >= 0):
                rows.append(
                    (
                        _time(float(instants[i])),
                        sensor.id,
                        job.name,
                        float(best[i]),
                        best_ev[i] or {},
                        version,
                    )
                )
        state.advanced_to = hi
        written = _write(conn, rows, overwrite)
        _watermark(conn, job.name, _time(hi), version)
        return written


def _template(job: DetectorJob, settings: DetectorSettings, state: _JobState) -> Any:
    """A detector for a (sensor, metric) the model has not seen, sharing a trained forest."""
    detector = job.build(settings.timezone)
    if isinstance(detector, WindowForest):
        for other in state.states.values():
            if isinstance(other, WindowForest) and other.fitted:
                detector._model, detector._calibration = other._model, other._calibration
                break
    return detector


def _score_into(
    detector: Any,
    t: np.ndarray,
    x: np.ndarray,
    instants: np.ndarray,
    step: float,
    metric: str,
    best: np.ndarray,
    best_ev: list[dict[str, float] | None],
) -> None:
    """Feed the readings, keep each instant's highest score; idle scores where nothing came."""
    heard = np.zeros(len(instants), dtype=bool)
    if len(t):
        result = detector.score_series(t, x)
        col = np.ceil((t - instants[0]) / step - 1e-9).astype(np.int64)
        for i in np.unique(col):
            if not 0 <= i < len(instants):
                continue
            sel = np.flatnonzero(col == i)
            j = sel[int(np.argmax(result.score[sel]))]
            heard[i] = True
            if result.score[j] > best[i]:
                best[i] = result.score[j]
                best_ev[i] = {"metric": metric, **result.at(int(j)).evidence}  # type: ignore[dict-item]
    quiet = np.flatnonzero(~heard)
    if len(quiet) and type(detector).score_idle is not Detector.score_idle:
        for i in quiet:
            idle = detector.score_idle(float(instants[i]))
            if idle is not None and idle.score > best[i]:
                best[i] = idle.score
                best_ev[i] = {"metric": metric, **idle.evidence}  # type: ignore[dict-item]


def _write(conn: psycopg.Connection, rows: list[tuple[Any, ...]], overwrite: bool) -> int:
    from psycopg.types.json import Jsonb

    if not rows:
        return 0
    action = (
        "DO UPDATE SET score = EXCLUDED.score, evidence = EXCLUDED.evidence, "
        "model_version = EXCLUDED.model_version"
        if overwrite
        else "DO NOTHING"
    )
    written = 0
    try:
        with conn.transaction(), conn.cursor() as cur:
            for lo in range(0, len(rows), WRITE_BATCH):
                chunk = rows[lo : lo + WRITE_BATCH]
                cur.execute(
                    "INSERT INTO detector_scores (time, sensor_id, detector, score, evidence, model_version) "
                    "SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::float8[], "
                    "%s::jsonb[], "
                    f"%s::text[]) ON CONFLICT (detector, sensor_id, time) {action}",
                    (
                        [r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk],
                        [min(max(r[3], 0.0), 1.0) for r in chunk], [Jsonb(_clean(r[4])) for r in chunk],
                        [r[5] for r in chunk],
                    ),
                )  # fmt: skip
                written += cur.rowcount
    except psycopg.Error as exc:
        from sense311.db.errors import translate

        raise translate(exc, f"cannot write {len(rows)} detector scores") from exc
    return written


def _clean(evidence: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in evidence.items()}


def _watermark(conn: psycopg.Connection, name: str, at: datetime, version: str) -> None:
    conn.execute(
        "INSERT INTO detector_watermarks (detector, watermark, model_version, updated_at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (detector) DO UPDATE SET "
        "watermark = greatest(detector_watermarks.watermark, EXCLUDED.watermark), "
        "model_version = EXCLUDED.model_version, updated_at = EXCLUDED.updated_at",
        (name, at, version, at),
    )


def score_instants(
    conn: psycopg.Connection,
    settings: DetectorSettings,
    now: datetime,
    *,
    jobs: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    overwrite: bool = False,
    scorer: Scorer | None = None,
) -> ScoreReport:
    """Score the due instants of every enabled job (or ``[start, end]`` when given).

    A job without a pinned model, or whose scoring fails, is reported in ``skipped`` with the
    reason and the others go on. ``conn`` must be in autocommit mode.
    """
    scorer = scorer or Scorer(settings)
    selected = [settings.job(n) for n in jobs] if jobs else [j for j in settings.jobs if j.enabled]
    report = ScoreReport()
    began = time.perf_counter()
    for job in selected:
        try:
            if start is not None or end is not None:
                if start is None or end is None or end < start:
                    raise ConfigError("scoring a period needs --from and --to with --to after --from")
                step = job.interval.total_seconds()
                first = math.ceil(_seconds(start) / step) * step
                last = math.floor(_seconds(end) / step) * step
                instants = first + step * np.arange(max(round((last - first) / step) + 1, 0))
            else:
                _, trained_to = scorer._state(conn, job)
                instants = scorer.due(conn, job, now, trained_to)
            report.rows[job.name] = scorer.score(conn, job, instants, overwrite=overwrite)
            report.instants[job.name] = len(instants)
        except (NoModelError, DetectorError, DatabaseError) as exc:
            report.skipped[job.name] = str(exc)
            log.error("detector job %s: not scored at %s: %s", job.name, now.isoformat(), exc)
        except Sense311Error:
            raise
    report.seconds = time.perf_counter() - began
    return report
