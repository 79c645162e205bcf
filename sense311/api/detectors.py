"""/api/v1/detectors: detector kinds, trained model versions per job, and a sensor's latest scores."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query
from psycopg.rows import dict_row
from pydantic import BaseModel

from detectors.registry import available_detectors
from detectors.store import list_models
from sense311.api.auth import require
from sense311.api.context import get_db
from sense311.api.errors import ERROR_RESPONSES
from sense311.api.models import Text

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1", tags=["detectors"], responses=ERROR_RESPONSES, dependencies=[Depends(require("read"))]
)
Db = Annotated[psycopg.Connection[Any], Depends(get_db)]


class ModelVersion(BaseModel):
    version: int
    kind: str
    status: str
    pinned: bool
    trained_from: datetime | None
    trained_to: datetime | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    error: str | None
    created_at: datetime


class DetectorJob(BaseModel):
    name: str
    #: The version scoring uses (None: no trained version is pinned).
    pinned_version: int | None
    #: Newest first.
    versions: list[ModelVersion]


class Detectors(BaseModel):
    #: Detector kinds this installation can train and run (``get_detector(name)``).
    available: list[str]
    jobs: list[DetectorJob]


class Score(BaseModel):
    detector: str
    time: datetime
    score: float | None
    model_version: str | None
    evidence: dict[str, Any]


class SensorScores(BaseModel):
    sensor_id: str
    #: The latest score of each detector job that has scored the sensor.
    scores: list[Score]


@router.get("/detectors", summary="Detector kinds and trained model versions")
def list_detectors(
    db: Db, name: Annotated[Text | None, Query(max_length=200, description="Only this job.")] = None
) -> Detectors:
    jobs: dict[str, DetectorJob] = {}
    for row in list_models(db, name):
        job = jobs.setdefault(row.name, DetectorJob(name=row.name, pinned_version=None, versions=[]))
        job.versions.append(
            ModelVersion(
                version=row.version,
                kind=row.kind,
                status=row.status,
                pinned=row.pinned,
                trained_from=row.trained_from,
                trained_to=row.trained_to,
                metrics=row.metrics,
                params=row.params,
                error=row.error,
                created_at=row.created_at,
            )
        )
        if row.pinned:
            job.pinned_version = row.version
    return Detectors(available=available_detectors(), jobs=list(jobs.values()))


@router.get("/detectors/scores", summary="A sensor's latest detector scores")
def latest_scores(db: Db, sensor_id: Annotated[Text, Query(min_length=1, max_length=200)]) -> SensorScores:
    # One index probe per job on detector_scores' key (detector, sensor_id, time): the table is
    # large, the number of jobs small, and no index leads with the sensor.
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT s.*
               FROM (SELECT detector FROM detector_watermarks UNION SELECT name FROM detector_models) j
               CROSS JOIN LATERAL (
                   SELECT detector, time, score, model_version, evidence FROM detector_scores
                   WHERE detector = j.detector AND sensor_id = %s ORDER BY time DESC LIMIT 1) s
               ORDER BY s.detector""",
            (sensor_id,),
        ).fetchall()
    return SensorScores(sensor_id=sensor_id, scores=[Score(**r) for r in rows])
