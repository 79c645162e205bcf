"""Detector settings: which detector jobs run, on which sensors and metrics, and how they train.

Attached to the application settings as ``settings.detectors`` (so ``SENSE311_DETECTORS__…``
and the ``detectors:`` section of the config file reach it). A **job** is one named use of a
detector — the name is what a rule reads as ``metric: detector.<name>`` and what
``detector_scores.detector`` holds::

    detectors:
      timezone: Europe/Amsterdam
      jobs:
        - name: lamp_power_low
          detector: seasonal
          kind: [light]
          metrics: [power_w]
          params: {direction: low, active_above: 1.0}
          interval: 5m

The defaults are the jobs measured on the simulated city (``detectors/README.md``): thresholds
and ``for`` durations below are what ``sense311 detectors evaluate`` found, and what the
example rules use. They inform rules; detectors never decide.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detectors.registry import detector_class, get_detector
from detectors.timebase import check_timezone
from sense311.durations import Duration
from sense311.errors import ConfigError

__all__ = [
    "ANY_METRIC",
    "DetectorJob",
    "DetectorSettings",
    "PeerSettings",
    "default_jobs",
    "detector_settings",
]

#: ``metrics: ["*"]`` reads the times of every metric of a sensor (for the silent detector).
ANY_METRIC = "*"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class PeerSettings(_Section):
    """How a peer detector's neighbours are chosen and lined up."""

    k: int = Field(6, ge=1, le=50)
    max_distance_m: float = Field(250.0, gt=0)
    #: Registry metadata keys whose values a neighbour must share (e.g. ``street``).
    same: list[str] = Field(default_factory=list)
    #: A neighbour's reading older than this at the sensor's own reading time counts as missing.
    max_age: Duration = Field(default="10m")


class DetectorJob(_Section):
    """One named detector over one selection of sensors and metrics."""

    name: str
    detector: str
    #: Sensor kinds the job reads (empty: every kind).
    kind: list[str] = Field(default_factory=list)
    metrics: list[str]
    params: dict[str, Any] = Field(default_factory=dict)
    peers: PeerSettings | None = None
    #: Scores are written for instants k · interval (UTC); each is the highest score of the
    #: readings in (t − interval, t].
    interval: Duration = Field(default="5m")
    #: An instant is scored once the clock passed it by this much (readings still in flight).
    lateness: Duration = Field(default="2m")
    #: Evaluation only: the simulator's fault kinds this job is meant to find, and the rule
    #: threshold / ``for`` / clear level its detections are counted with.
    targets: list[str] = Field(default_factory=list)
    threshold: float = Field(0.9, gt=0, le=1)
    for_: Duration = Field(default="0s", alias="for")
    clear_below: float | None = Field(None, ge=0, le=1)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"expected a lower-case name like 'lamp_power_low', got {value!r}")
        return value

    @field_validator("detector")
    @classmethod
    def _detector(cls, value: str) -> str:
        try:
            detector_class(value)
        except ConfigError as exc:  # reported by pydantic with the setting's location
            raise ValueError(str(exc)) from None
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a job needs at least one metric (or '*')")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 1 or (value.total_seconds() * 1e6) % 1e6:
            raise ValueError(f"interval must be whole seconds >= 1s, got {value}")
        return value

    @model_validator(mode="after")
    def _peers(self) -> DetectorJob:
        cls = detector_class(self.detector)
        if cls.inputs == "peers" and self.peers is None:
            self.peers = PeerSettings()
        if cls.inputs != "peers" and self.peers is not None:
            raise ValueError(f"detector {self.detector!r} reads no neighbours; remove 'peers'")
        try:
            get_detector(self.detector, **self.params)  # refuses unknown or bad parameters now
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def clear_level(self) -> float:
        return self.threshold / 2 if self.clear_below is None else self.clear_below

    def build(self, timezone: str) -> Any:
        """A new detector for one sensor and metric (the job's timezone unless params set one)."""
        params = dict(self.params)
        cls = detector_class(self.detector)
        if "timezone" in _parameters(cls) and "timezone" not in params:
            params["timezone"] = timezone
        if self.detector == "peer" and "timezone" not in params.get("baseline", {}):
            params["baseline"] = {**params.get("baseline", {}), "timezone": timezone}
        return get_detector(self.detector, **params)


def _parameters(cls: type) -> set[str]:
    import inspect

    return {
        p.name
        for klass in cls.__mro__
        if "__init__" in vars(klass) and klass is not object
        for p in inspect.signature(klass.__init__).parameters.values()
    }


def default_jobs() -> list[DetectorJob]:
    """The jobs measured on the simulated city (see ``detectors/README.md``)."""
    jobs: list[dict[str, Any]] = [
        {
            "name": "bin_fill_rate",
            "detector": "rise_rate",
            "kind": ["bin"],
            "metrics": ["fill_level"],
            "params": {"window": 21600, "period": "day", "filter_width": 7, "abs_floor": 0.004},
            "targets": ["abnormal_fill_rate"],
            "threshold": 0.9,
            "for": "30m",
        },
        {
            "name": "lamp_power_low",
            "detector": "seasonal",
            "kind": ["light"],
            "metrics": ["power_w"],
            "params": {"direction": "low", "active_above": 1.0, "period": "day"},
            "targets": ["partial_lamp_failure"],
            "threshold": 0.9,
            "for": "15m",
        },
        {
            "name": "peer_dark",
            "detector": "peer_dark",
            "kind": ["light"],
            "metrics": ["power_w"],
            "peers": {"k": 6, "max_distance_m": 250.0, "same": ["street"]},
            "targets": ["lamp_out", "flicker"],
            "threshold": 0.8,
            "for": "15m",
        },
        {
            "name": "stuck",
            "detector": "stuck",
            "kind": ["bin", "parking", "air"],
            "metrics": ["distance_mm", "occupied", "pm25", "no2", "noise_db"],
            "targets": ["stuck"],
            "threshold": 0.9,
            "for": "0s",
        },
        {
            "name": "air_drift",
            "detector": "peer",
            "kind": ["air"],
            "metrics": ["pm25", "no2", "noise_db"],
            "params": {"method": "level_shift", "baseline": {"period": "day"}, "smooth": 10},
            "peers": {"k": 8, "max_distance_m": 5000.0},
            "targets": ["drift"],
            "threshold": 0.9,
            "for": "30m",
            # Off until it is good enough: on the simulated city it finds 18 % of drifts and files
            # 45 false tickets per 1,000 sensor-days (weekend traffic shifts the peer residual).
            "enabled": False,
        },
        {
            "name": "level_drift",
            "detector": "forest",
            "kind": ["bin"],
            "metrics": ["distance_mm"],
            "params": {"window": 60, "stride": 5},
            "targets": ["drift"],
            "threshold": 0.5,
            "for": "30m",
            # Off until it is good enough: the forest has not isolated a bin's drift yet.
            "enabled": False,
        },
        {
            "name": "spikes",
            "detector": "spike",
            "kind": ["bin", "air"],
            "metrics": ["distance_mm", "pm25", "no2", "noise_db"],
            "targets": ["spikes"],
            "threshold": 0.9,
            "for": "0s",
        },
        {
            "name": "silent",
            "detector": "silent",
            "metrics": [ANY_METRIC],
            "targets": ["dropout", "dead_battery"],
            "threshold": 0.5,
            "for": "0s",
        },
    ]
    return [DetectorJob.model_validate(j) for j in jobs]


class DetectorSettings(_Section):
    """Everything the detector jobs need (``settings.detectors``)."""

    #: The city's time zone: hour-of-day and hour-of-week buckets are local.
    timezone: str = "UTC"
    jobs: list[DetectorJob] = Field(default_factory=default_jobs)
    #: History a training run learns from, ending at the run's ``now``.
    train_window: Duration = Field(default="28d")
    #: How often the service retrains every job.
    retrain_every: Duration = Field(default="1d")
    #: The most instants one scoring run catches up per job after downtime (older ones are skipped,
    #: and the skip is logged): bounded work after an outage.
    max_catchup_instants: int = Field(2016, ge=1)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            check_timezone(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _unique(self) -> DetectorSettings:
        names = [j.name for j in self.jobs]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"detector job names must be unique, {', '.join(doubled)} appears twice")
        return self

    def job(self, name: str) -> DetectorJob:
        """The job called ``name``; ``ConfigError`` with a suggestion when there is none."""
        from detectors.registry import _suggest

        for job in self.jobs:
            if job.name == name:
                return job
        names = [j.name for j in self.jobs]
        raise ConfigError(f"no detector job named {name!r}{_suggest(name, names, 'jobs')}")


def detector_settings(settings: Any) -> DetectorSettings:
    """``settings.detectors`` as ``DetectorSettings`` (validated from a plain mapping if need be)."""
    section = getattr(settings, "detectors", None)
    if isinstance(section, DetectorSettings):
        return section
    try:
        return DetectorSettings.model_validate(section or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting detectors.{where}: {first['msg']}") from None
