"""The registry's shapes on the wire: what a client sends for a sensor and what it gets back."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from sense311.api.models import StrictBody, Text, check_json, check_text

__all__ = [
    "MAX_METADATA_BYTES",
    "LatestReading",
    "SensorDetail",
    "SensorFields",
    "SensorIn",
    "SensorOut",
    "SensorPatch",
    "SensorState",
    "check_sensor_id",
]

#: Serialised metadata per sensor: room for a few dozen attributes, not for documents.
MAX_METADATA_BYTES = 16 * 1024
#: The registry's own limit (CHECK in 0001_registry.sql).
MAX_ID_LENGTH = 200
MAX_TAGS = 50


def check_sensor_id(value: str) -> str:
    """Sensor ids are 1–200 characters without whitespace or control characters ('/' is fine)."""
    if not value or len(value) > MAX_ID_LENGTH:
        raise ValueError(f"a sensor id has 1 to {MAX_ID_LENGTH} characters, got {len(value)}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"a sensor id has no spaces or control characters, got {value!r}")
    return value


def _check_tag(value: str) -> str:
    check_text(value)
    if not value.strip() or ";" in value or value != value.strip():
        raise ValueError(f"a tag is a non-empty word without ';' or surrounding spaces, got {value!r}")
    return value


SensorId = Annotated[str, AfterValidator(check_sensor_id)]
Tag = Annotated[str, Field(max_length=100), AfterValidator(_check_tag)]


class SensorFields(StrictBody):
    """A sensor's registry fields; ``lat`` and ``lon`` (WGS 84 degrees) come together or not at all."""

    kind: Annotated[Text, Field(min_length=1, max_length=100)]
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    address: Annotated[Text, Field(max_length=500)] | None = None
    district: Annotated[Text, Field(max_length=200)] | None = None
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = Field(default_factory=list)
    #: The gateway the sensor is bound to (ingest may refuse readings through another one).
    gateway: Annotated[Text, Field(max_length=200)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json(value)
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
        return value

    @model_validator(mode="after")
    def _location(self) -> SensorFields:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both 'lat' and 'lon', or neither")
        return self


class SensorIn(SensorFields):
    id: SensorId


class SensorPatch(StrictBody):
    """The fields to change; a field sent as null is cleared (``kind`` cannot be)."""

    kind: Annotated[Text, Field(min_length=1, max_length=100)] | None = None
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    address: Annotated[Text, Field(max_length=500)] | None = None
    district: Annotated[Text, Field(max_length=200)] | None = None
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = None
    gateway: Annotated[Text, Field(max_length=200)] | None = None
    metadata: dict[str, Any] | None = None


class SensorOut(BaseModel):
    id: str
    kind: str
    lat: float | None
    lon: float | None
    address: str | None
    district: str | None
    tags: list[str]
    gateway: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class LatestReading(BaseModel):
    metric: str
    time: datetime
    value: float
    received_at: datetime


class SensorDetail(SensorOut):
    """A sensor with its latest value per metric and its open incidents' problems."""

    latest: list[LatestReading]
    open_problems: list[str]


class SensorState(BaseModel):
    """One sensor as the map shows it.

    ``state``: ``firing`` (an open incident whose rules still fire), ``resolved`` (open at the city,
    but the rules see the sensor normal again), ``ok``, ``stale`` (no reading for
    ``api.stale_after``) or ``unknown`` (no reading at all).
    """

    id: str
    kind: str
    lat: float | None
    lon: float | None
    address: str | None
    district: str | None
    state: str
    problems: list[str]
    last_reading_at: datetime | None
