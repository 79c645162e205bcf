"""Value types shared by every package: readings, provenance and registry entries.

Times are timezone-aware UTC ``datetime`` objects everywhere; a naive datetime is
a bug, not a local time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Detection", "Provenance", "Reading", "Sensor", "SensorKind"]

#: Sensor kinds the built-in fleet and rule pack know. The registry accepts any
#: string; these are the ones with canonical metrics.
SensorKind = str


@dataclass(slots=True)
class Reading:
    """One canonical measurement: ``value`` of ``metric`` for ``sensor_id`` at ``time`` (UTC).

    ``key`` is the field the value came from in the device payload (before the
    field map renamed it), ``unit`` the unit the payload stated, if any. Not frozen: decoders
    build hundreds of thousands per second and a frozen dataclass costs twice as much to create.
    """

    time: datetime
    sensor_id: str
    metric: str
    value: float
    key: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a message came from: kept with every dead letter and in ingest metrics."""

    topic: str
    format: str
    received_at: datetime
    gateway_id: str | None = None
    rssi: float | None = None
    snr: float | None = None
    frame_counter: int | None = None
    message_id: str | None = None


@dataclass(slots=True)
class Sensor:
    """An entry of the device registry (table ``sensors``)."""

    id: str
    kind: SensorKind
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    district: str | None = None
    tags: list[str] = field(default_factory=list)
    gateway: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Detection:
    """A rule (or a detector-score rule) entering firing (``kind="detection"``) or returning to
    normal (``kind="resolution"``) for one sensor.

    Identified by (rule_id, rule_version, sensor_id, fired_at, kind): the live evaluator and the
    backtest produce the same identities for the same data. ``fired_at`` is the evaluation
    instant at which the transition happened (UTC); ``onset`` is when the condition started
    holding (the start of pending). ``problem`` names what the ticketing module maps to a 311
    service (e.g. ``bin_overflow``, ``lamp_out``).
    """

    rule_id: str
    rule_version: str
    sensor_id: str
    problem: str
    kind: str  # "detection" | "resolution"
    fired_at: datetime
    onset: datetime | None = None
    severity: str = "medium"
    value: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
