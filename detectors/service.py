"""The detector service: APScheduler ticks, the jobs do the work.

Two APScheduler 3 jobs, both ``coalesce=True`` and ``max_instances=1`` (missed ticks collapse
into one, ticks never overlap): **scoring** every ``tick`` writes the instants that became due
(``detectors.jobs.score_instants``, which catches up by itself after downtime), and
**retraining** every ``settings.detectors.retrain_every`` fits new model versions
(``train_models``; a job that fails keeps its previous pinned model and logs why). A database
outage skips a tick and is logged; the next tick finds the same instants due. ``_now`` is the
one place the detectors package reads the wall clock.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from detectors.jobs import Scorer, ScoreReport, TrainResult, score_instants, train_models
from detectors.settings import DetectorSettings, detector_settings
from sense311.errors import DatabaseError

__all__ = ["DEFAULT_TICK", "SCORE_JOB_ID", "TRAIN_JOB_ID", "DetectorService"]

log = logging.getLogger(__name__)

#: How often scoring looks for due instants: an instant is scored at most this long after it is
#: due (t + lateness). A tick with nothing due costs one query per job.
DEFAULT_TICK = timedelta(seconds=30)
SCORE_JOB_ID = "sense311-detectors-score"
TRAIN_JOB_ID = "sense311-detectors-train"


class DetectorService:
    """Scores and retrains the detector jobs of ``settings.detectors`` against the database."""

    def __init__(
        self, settings: Any, detectors: DetectorSettings | None = None, *, tick: timedelta = DEFAULT_TICK
    ) -> None:
        if tick <= timedelta(0):
            raise ValueError(f"tick must be > 0, got {tick}")
        self.settings = settings
        self.detectors = detectors if detectors is not None else detector_settings(settings)
        self.tick_interval = tick
        self.scorer = Scorer(self.detectors)
        self.last_scores: ScoreReport | None = None
        self.last_training: list[TrainResult] | None = None

    def _connect(self) -> Any:
        from sense311.db import connect

        return connect(self.settings, "sense311-detectors", autocommit=True)

    def score_tick(self, now: datetime) -> ScoreReport | None:
        """Write every due instant of every job at ``now`` (UTC)."""
        try:
            with self._connect() as conn:
                report = score_instants(conn, self.detectors, now, scorer=self.scorer)
        except DatabaseError as exc:
            log.error("detector scoring at %s skipped: %s", now.isoformat(), exc)
            return None
        self.last_scores = report
        return report

    def train_tick(self, now: datetime) -> list[TrainResult] | None:
        """Train a new version of every job on the window ending at ``now`` (UTC)."""
        try:
            with self._connect() as conn:
                results = train_models(conn, self.detectors, now)
        except DatabaseError as exc:
            log.error("detector training at %s skipped, the pinned models stay: %s", now.isoformat(), exc)
            return None
        self.last_training = results
        return results

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    def schedule(self, scheduler: Any, *, train_now: bool = False) -> list[Any]:
        """Add the scoring and retraining jobs to an APScheduler 3 scheduler; returns them."""
        first_training = self._now() if train_now else self._now() + self.detectors.retrain_every
        return [
            scheduler.add_job(
                lambda: self.score_tick(self._now()),
                "interval",
                seconds=self.tick_interval.total_seconds(),
                id=SCORE_JOB_ID,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
                next_run_time=self._now(),
            ),
            scheduler.add_job(
                lambda: self.train_tick(self._now()),
                "interval",
                seconds=self.detectors.retrain_every.total_seconds(),
                id=TRAIN_JOB_ID,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
                next_run_time=first_training,
            ),
        ]
