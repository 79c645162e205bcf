"""Device field names → canonical metrics, from configuration.

Devices name the same quantity in many ways (``batteryLevel``, ``battery``, ``bat``); rules
and detectors read canonical metrics (``battery``). A field map entry is one of::

    battery: battery                      # rename
    active_power__W: power_w              # rename (units in the key)
    voltage_mv: {metric: voltage, scale: 0.001}
    distance:                             # one field, two metrics
      - distance_mm
      - {metric: fill_level, transform: fill_from_distance}
    linkquality: null                     # known, deliberately not stored

``fill_from_distance`` turns an ultrasonic distance (mm) into a fill level 0..1 with the bin's
depth from the registry (``metadata.depth_mm``): ``fill = 1 − distance / depth``, clamped to
[0, 1] because the sensor's blind zone and a lid ajar both read slightly beyond the ends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sense311.errors import ConfigError

__all__ = ["DEFAULT_FIELD_MAP", "FieldMap", "MapTarget", "sanitize_metric"]

_BAD_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_.:\-]+")
#: Longest metric name stored; longer device keys are almost always a decoder bug.
MAX_METRIC_LENGTH = 100

#: Names the built-in rule pack and detectors read, for fields common in city devices
#: (FIWARE Smart Data Models, Milesight and NAS codecs, the simulator's devices).
DEFAULT_FIELD_MAP: dict[str, Any] = {
    "battery": "battery",
    "batteryLevel": "battery",
    "battery_level": "battery",
    "temperature": "temperature",
    "Temperature": "temperature",
    "humidity": "humidity",
    "fillingLevel": "fill_level",
    "fill_level": "fill_level",
    "distance": ["distance_mm", {"metric": "fill_level", "transform": "fill_from_distance"}],
    "distance_mm": ["distance_mm", {"metric": "fill_level", "transform": "fill_from_distance"}],
    "power": "power_w",
    "active_power": "power_w",
    "active_power__W": "power_w",
    "powerConsumption": "power_w",
    "energy": "energy_wh",
    "energy__Wh": "energy_wh",
    "voltage": "voltage",
    "current": "current",
    "powerFactor": "power_factor",
    "power_factor": "power_factor",
    # Codecs report dimming in percent; dim_level is 0..1 like FIWARE's illuminanceLevel.
    "dim": {"metric": "dim_level", "scale": 0.01},
    "dim_level": "dim_level",
    "illuminanceLevel": "dim_level",
    "lamp": "lamp_on",
    "lamp_on": "lamp_on",
    "state": "lamp_on",
    "occupied": "occupied",
    "pm25": "pm25",
    "pm2_5": "pm25",
    "no2": "no2",
    "noise": "noise_db",
    "noise_db": "noise_db",
    "leak": "leak",
    "water_leak": "leak",
}


def sanitize_metric(key: str) -> str:
    """A storable metric name from a device key: odd characters become ``_``, length capped."""
    name = _BAD_METRIC_CHARS.sub("_", key.strip()).strip("_")
    return name[:MAX_METRIC_LENGTH] or "_"


def _fill_from_distance(value: float, metadata: Mapping[str, Any]) -> float | None:
    depth = metadata.get("depth_mm")
    if not isinstance(depth, int | float) or depth <= 0:
        return None
    return min(1.0, max(0.0, 1.0 - value / float(depth)))


TRANSFORMS: dict[str, Callable[[float, Mapping[str, Any]], float | None]] = {
    "fill_from_distance": _fill_from_distance,
}


@dataclass(frozen=True, slots=True)
class MapTarget:
    metric: str
    scale: float = 1.0
    offset: float = 0.0
    transform: str | None = None

    def apply(self, value: float, metadata: Mapping[str, Any]) -> float | None:
        """The canonical value, or None when a transform lacks what it needs (e.g. bin depth)."""
        value = value * self.scale + self.offset
        if self.transform is not None:
            return TRANSFORMS[self.transform](value, metadata)
        return value


def _target(key: str, spec: Any) -> MapTarget:
    if isinstance(spec, str):
        return MapTarget(sanitize_metric(spec))
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"metric", "scale", "offset", "transform"}
        if unknown or "metric" not in spec:
            raise ConfigError(
                f"field_map.{key}: expected a metric name or {{metric, scale, offset, transform}}, "
                f"got {dict(spec)!r}"
            )
        transform = spec.get("transform")
        if transform is not None and transform not in TRANSFORMS:
            raise ConfigError(
                f"field_map.{key}: unknown transform {transform!r}; known: {', '.join(sorted(TRANSFORMS))}"
            )
        try:
            return MapTarget(
                sanitize_metric(str(spec["metric"])),
                float(spec.get("scale", 1.0)),
                float(spec.get("offset", 0.0)),
                transform,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"field_map.{key}: scale and offset must be numbers ({exc})") from None
    raise ConfigError(f"field_map.{key}: expected a metric name, a mapping or a list, got {spec!r}")


class FieldMap:
    """Resolves a device key to its targets; built once per route, looked up per reading."""

    __slots__ = ("_map",)

    def __init__(self, *layers: Mapping[str, Any]) -> None:
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        self._map: dict[str, tuple[MapTarget, ...]] = {}
        for key, spec in merged.items():
            if spec is None:
                self._map[key] = ()
                continue
            specs = spec if isinstance(spec, list) else [spec]
            self._map[key] = tuple(_target(key, s) for s in specs)

    def targets(self, key: str) -> tuple[MapTarget, ...] | None:
        """The targets for ``key``; tries the last dotted part too (``DS18B20.Temperature``)."""
        found = self._map.get(key)
        if found is None and "." in key:
            found = self._map.get(key.rsplit(".", 1)[1])
        return found
