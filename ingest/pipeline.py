"""From raw MQTT messages to rows and dead letters: route, decode, map, validate.

Two steps, so the database is asked once per batch, not once per message:

* ``Pipeline.decode(message)`` runs as each message arrives: size check, routing, decoding.
* ``Pipeline.finalize(batch, registry)`` runs at flush time, after the registry view has
  resolved every sensor of the batch: field map, unknown sensors, gateway binding, time and
  value checks. It returns the rows to store and the dead letters, one per (message, reason).

Nothing here touches MQTT or the database; ``ingest/worker.py`` wires them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.decoders import get_decoder
from ingest.decoders.base import DecodeContext, Decoded
from ingest.errors import DecodeError, IngestError
from ingest.fieldmap import DEFAULT_FIELD_MAP, FieldMap, MapTarget, sanitize_metric
from ingest.registry import Registry, SensorInfo
from ingest.topics import Route as TopicRoute
from ingest.topics import Router
from sense311.settings import IngestSettings, Route

__all__ = ["Batch", "DeadLetter", "Message", "Pipeline", "Processed"]

#: Default value ranges per canonical metric: physically impossible values are sensor faults,
#: not readings (a fill level of 7 would fire every overflow rule in town).
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "fill_level": (0.0, 1.0),
    "battery": (0.0, 100.0),
    "temperature": (-60.0, 100.0),
    "humidity": (0.0, 100.0),
    "lamp_on": (0.0, 1.0),
    "dim_level": (0.0, 1.0),
    "occupied": (0.0, 1.0),
    "power_w": (0.0, 100_000.0),
    "voltage": (0.0, 1_000.0),
    "pm25": (0.0, 2_000.0),
    "no2": (0.0, 5_000.0),
    "noise_db": (0.0, 200.0),
    "rssi": (-200.0, 20.0),
    "snr": (-50.0, 50.0),
}


@dataclass(slots=True)
class Message:
    """A message as received; ``token`` is the transport's ack handle, opaque here."""

    topic: str
    payload: bytes
    received_at: float  # epoch seconds
    token: Any = None


@dataclass(slots=True)
class Processed:
    message: Message
    format: str | None = None
    route_index: int = -1
    gateway: str | None = None
    decoded: Decoded | None = None
    error: IngestError | None = None
    ignored: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    detail: str
    format: str | None = None
    sensor_id: str | None = None
    gateway_id: str | None = None


@dataclass(slots=True)
class Batch:
    """What one flush writes: rows ``(time, sensor_id, metric, value, received_at)``."""

    rows: list[tuple[datetime, str, str, float, datetime]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    auto_register: dict[str, str | None] = field(default_factory=dict)  # sensor_id → gateway


_MISSING = object()
#: No range configured: every finite value passes (the comparisons reject NaN and ±inf).
_UNBOUNDED = (-sys.float_info.max, sys.float_info.max)
#: Distinct device keys remembered per route (see Pipeline._plan).
PLAN_CACHE_SIZE = 10_000


class _Problems:
    """Rejections of one message by reason: details and the first sensor named. Cheap when empty."""

    __slots__ = ("_by_reason",)

    def __init__(self) -> None:
        self._by_reason: dict[str, tuple[list[str], str | None]] | None = None

    def add(self, reason: str, detail: str, sensor_id: str | None) -> None:
        if self._by_reason is None:
            self._by_reason = {}
        entry = self._by_reason.get(reason)
        if entry is None:
            self._by_reason[reason] = ([detail], sensor_id)
        else:
            entry[0].append(detail)

    def __bool__(self) -> bool:
        return bool(self._by_reason)

    def items(self) -> Iterable[tuple[str, tuple[list[str], str | None]]]:
        return (self._by_reason or {}).items()


class Pipeline:
    def __init__(self, settings: IngestSettings, retention: timedelta) -> None:
        self.settings = settings
        self.retention = retention
        topic_routes = [TopicRoute(r.pattern, r.decoder, r.options, r.ignore) for r in settings.routes]
        self.router = Router(topic_routes)
        self._index = {id(r): i for i, r in enumerate(self.router.routes)}
        self._decoders = [
            get_decoder(r.decoder) if r.decoder and not r.ignore else None for r in settings.routes
        ]
        # Bad route options fail at start-up, naming the option, not at the first message.
        for route, decoder in zip(settings.routes, self._decoders, strict=True):
            if decoder is not None:
                decoder.check_options(route.options)
        self._field_maps = [
            FieldMap(DEFAULT_FIELD_MAP, settings.field_map, r.field_map) for r in settings.routes
        ]
        self._ranges = {**DEFAULT_RANGES, **settings.ranges}
        self._plans: list[dict[str, Any]] = [{} for _ in settings.routes]
        self._max_payload = settings.max_payload_bytes

    # -- step 1: per message --------------------------------------------------------------

    def decode(self, message: Message) -> Processed:
        """Route and decode one message; never raises for bad input."""
        out = Processed(message)
        payload = message.payload
        if len(payload) > self._max_payload:
            out.error = IngestError(
                f"payload of {len(payload)} bytes exceeds the limit of {self._max_payload} bytes",
                reason="payload_too_large",
            )
            return out
        match = self.router.route(message.topic)
        if match is None:
            out.error = IngestError(f"no route matches topic {message.topic!r}", reason="no_route")
            return out
        index = self._index[id(match.route)]
        route: Route = self.settings.routes[index]
        out.route_index = index
        out.gateway = match.captures.get("gateway")
        if route.ignore:
            out.ignored = True
            return out
        decoder = self._decoders[index]
        out.format = decoder.NAME
        ctx = DecodeContext(
            received_at=datetime.fromtimestamp(message.received_at, UTC),
            sensor_id=match.captures.get("sensor_id"),
            options=route.options,
        )
        try:
            decoded = decoder.decode(message.topic, payload, ctx)
        except IngestError as exc:
            out.error = exc
            return out
        except Exception as exc:  # a decoder bug must cost one message, not the worker
            out.error = DecodeError(
                f"decoder {decoder.NAME} failed: {type(exc).__name__}: {exc}", reason="decoder_crash"
            )
            return out
        out.decoded = decoded
        out.ignored = decoded.ignored
        if decoded.gateway_id and not out.gateway:
            out.gateway = decoded.gateway_id
        return out

    # -- step 2: per batch ----------------------------------------------------------------

    @property
    def alias_keys(self) -> set[str]:
        return {r.sensor_alias for r in self.settings.routes if r.sensor_alias}

    def sensor_ids(self, processed: Iterable[Processed]) -> tuple[set[str], dict[str, set[str]]]:
        """The sensor ids, and the aliases by metadata key, that a batch names."""
        ids: set[str] = set()
        aliases: dict[str, set[str]] = {}
        routes = self.settings.routes
        for p in processed:
            if p.decoded is None:
                continue
            key = routes[p.route_index].sensor_alias
            target = aliases.setdefault(key, set()) if key else ids
            target.update(r.sensor_id for r in p.decoded.readings)
        return ids, aliases

    def finalize(self, processed: Iterable[Processed], registry: Registry, now: datetime) -> Batch:
        batch = Batch()
        latest = now + self.settings.max_future
        oldest = now - self.retention
        for p in processed:
            self._finalize_one(p, registry, batch, oldest, latest)
        return batch

    def _plan(
        self, route_index: int, key: str
    ) -> tuple[tuple[str, MapTarget | None, float, float], ...] | None:
        """How a device key becomes rows: (metric, target or None for a plain copy, min, max).

        Cached per route and key, because the same few keys arrive in every message; the cache
        is bounded so a gateway inventing keys cannot grow it without limit.
        """
        cache = self._plans[route_index]
        plan = cache.get(key, _MISSING)
        if plan is not _MISSING:
            return plan  # type: ignore[return-value]
        targets = self._field_maps[route_index].targets(key)
        if targets is None:
            if self.settings.unmapped_fields != "keep":
                plan = None
            else:
                metric = sanitize_metric(key)
                lo, hi = self._ranges.get(metric, _UNBOUNDED)
                plan = ((metric, None, lo, hi),)
        else:
            steps = []
            for tg in targets:
                lo, hi = self._ranges.get(tg.metric, _UNBOUNDED)
                plain = tg.scale == 1.0 and tg.offset == 0.0 and tg.transform is None
                steps.append((tg.metric, None if plain else tg, lo, hi))
            plan = tuple(steps)
        if len(cache) < PLAN_CACHE_SIZE:
            cache[key] = plan
        return plan

    def _finalize_one(
        self, p: Processed, registry: Registry, batch: Batch, oldest: datetime, latest: datetime
    ) -> None:
        msg = p.message
        if p.error is not None:
            batch.dead_letters.append(self._dead(p, p.error.reason, p.error.detail))
            return
        if p.ignored or p.decoded is None:
            return
        decoded = p.decoded
        received = datetime.fromtimestamp(msg.received_at, UTC)
        problems = _Problems()
        for reject in decoded.rejects:
            if self._plan(p.route_index, reject.key) == ():
                continue  # the field map says this field is deliberately not stored
            problems.add(reject.reason, f"{reject.key}={reject.value!r}: {reject.detail}", reject.sensor_id)
        settings = self.settings
        auto_register = settings.unknown_sensors == "auto_register"
        enforce_gateway = settings.enforce_gateway and p.gateway is not None
        unmapped = settings.unmapped_fields
        sensors = registry.get
        alias_key = settings.routes[p.route_index].sensor_alias
        if alias_key:

            def sensors(name: str) -> SensorInfo | None:
                sid = registry.alias(alias_key, name)
                return registry.get(sid) if sid is not None else None

        plan_of = self._plan
        route_index = p.route_index
        append = batch.rows.append
        last_name: str | None = None
        info: SensorInfo | None = None
        sid = ""
        for reading in decoded.readings:
            name = reading.sensor_id
            if name != last_name:
                last_name = name
                info = sensors(name)
                if info is None and auto_register:
                    # Added to the registry view only after the batch commits (the worker does it).
                    batch.auto_register.setdefault(name, p.gateway)
                    info = SensorInfo(name, "unknown", p.gateway)
                # An alias (a friendly name) is stored under the sensor id it stands for.
                sid = info.id if info is not None else name
            if info is None:
                problems.add("unknown_sensor", name, name)
                continue
            if enforce_gateway and info.gateway and info.gateway != p.gateway:
                problems.add("wrong_gateway", f"{sid} is bound to {info.gateway}, not {p.gateway}", sid)
                continue
            t = reading.time
            if t > latest:
                problems.add("future_timestamp", f"{reading.metric} at {t.isoformat()}", sid)
                continue
            if t < oldest:
                problems.add("too_old", f"{reading.metric} at {t.isoformat()}", sid)
                continue
            plan = plan_of(route_index, reading.metric)
            if plan is None:
                if unmapped == "dead_letter":
                    problems.add("unmapped_field", reading.metric, sid)
                continue
            for metric, target, lo, hi in plan:
                value = reading.value if target is None else target.apply(reading.value, info.metadata)
                if value is None:
                    problems.add(
                        "missing_metadata", f"{metric} from {reading.metric} needs registry metadata", sid
                    )
                elif not lo <= value <= hi:
                    if math.isfinite(value):
                        problems.add("out_of_range", f"{metric}={value:g} outside [{lo:g}, {hi:g}]", sid)
                    else:
                        problems.add("non_finite", f"{metric}={value!r}", sid)
                else:
                    append((t, sid, metric, value, received))
        if self.settings.store_radio and decoded.readings:
            sid = decoded.readings[0].sensor_id
            t = decoded.readings[0].time
            if registry.get(sid) is not None and oldest <= t <= latest:
                for metric, value in (("rssi", decoded.rssi), ("snr", decoded.snr)):
                    if value is not None and math.isfinite(value):
                        batch.rows.append((t, sid, metric, float(value), received))
        for reason, (details, sensor_id) in problems.items():
            shown = "; ".join(details[:10]) + (f"; … {len(details) - 10} more" if len(details) > 10 else "")
            batch.dead_letters.append(self._dead(p, reason, shown, sensor_id))
        if not problems and not decoded.readings:
            batch.dead_letters.append(self._dead(p, "no_readings", "the message decoded to no readings"))

    def _dead(self, p: Processed, reason: str, detail: str, sensor_id: str | None = None) -> DeadLetter:
        msg = p.message
        payload = msg.payload
        if len(payload) > self._max_payload:
            detail = f"{detail} (payload truncated to the first {self._max_payload} bytes)"
            payload = payload[: self._max_payload]
        return DeadLetter(
            received_at=datetime.fromtimestamp(msg.received_at, UTC),
            topic=msg.topic,
            payload=payload,
            reason=reason,
            detail=detail,
            format=p.format,
            sensor_id=sensor_id,
            gateway_id=p.gateway,
        )
