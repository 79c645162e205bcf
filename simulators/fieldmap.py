"""Device fields → canonical metrics, per gateway format and sensor kind (a plain dict).

This is configuration, meant to be copied into ingest's settings: it says how the fields the
simulated devices send (see ``simulators.encoders.devices``) become sense311's canonical
metrics. ``FIELD_MAP[format][kind][field]`` is a spec dict:

* ``metric`` — the canonical metric name;
* ``scale`` (optional) — multiply the number by this (``dim`` 0–100 % → ``dim_level`` 0..1);
* ``map`` (optional) — string values to numbers (``"on"`` → 1.0); JSON booleans are looked up
  as ``"true"`` / ``"false"``.

``IGNORED[format]`` lists fields that carry no measurement (``position``, ``linkquality``).
``DERIVED[kind]`` are metrics computed from another one and a registry value when the message
lacks them: a bin's ``fill_level = 1 - distance_mm / metadata.depth_mm``, clipped to 0..1.

``apply_field_map`` is the reference reading of these rules (used by the tests).

``INGEST_FIELD_MAP[format]`` is the same knowledge in ingest's field-map syntax (one flat map
per route: ``field: metric``, ``{metric, scale}``, or a list of targets; a bin's ``distance``
also yields ``fill_level`` by the ``fill_from_distance`` transform). String states (``"on"``,
``"OFF"``) and booleans are left to ingest's value parsing, which reads them as 1 / 0. Copy it
into the route of each format: the scales matter (``dim`` is a percentage, Zigbee ``energy``
is in kWh), so the global defaults alone would store wrong numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulators.kinds import METRICS

__all__ = ["DERIVED", "FIELD_MAP", "IGNORED", "INGEST_FIELD_MAP", "apply_field_map", "ingest_field_map"]

_BOOL = {"true": 1.0, "false": 0.0}

_CANONICAL: dict[str, dict[str, dict[str, Any]]] = {
    kind: {metric: {"metric": metric} for metric in metrics} for kind, metrics in METRICS.items()
}

_LORAWAN: dict[str, dict[str, dict[str, Any]]] = {
    "bin": {
        "distance": {"metric": "distance_mm"},
        "battery": {"metric": "battery"},
        "temperature": {"metric": "temperature"},
    },
    "light": {
        "lamp": {"metric": "lamp_on", "map": {"on": 1.0, "off": 0.0}},
        "power": {"metric": "power_w"},
        "energy": {"metric": "energy_wh"},
        "dim": {"metric": "dim_level", "scale": 0.01},
        "voltage": {"metric": "voltage"},
    },
    "parking": {
        "occupied": {"metric": "occupied", "map": dict(_BOOL)},
        "battery": {"metric": "battery"},
    },
    "air": {
        "pm2_5": {"metric": "pm25"},
        "no2": {"metric": "no2"},
        "laeq": {"metric": "noise_db"},
    },
}

_ZIGBEE: dict[str, dict[str, dict[str, Any]]] = {
    "bin": {
        "distance": {"metric": "distance_mm"},
        "battery": {"metric": "battery"},
        "temperature": {"metric": "temperature"},
    },
    "light": {
        "state": {"metric": "lamp_on", "map": {"ON": 1.0, "OFF": 0.0}},
        "brightness": {"metric": "dim_level", "scale": 1.0 / 254.0},
        "power": {"metric": "power_w"},
        "energy": {"metric": "energy_wh", "scale": 1000.0},
        "voltage": {"metric": "voltage"},
    },
    "parking": {
        "occupancy": {"metric": "occupied", "map": dict(_BOOL)},
        "battery": {"metric": "battery"},
    },
    "air": {
        "pm25": {"metric": "pm25"},
        "no2": {"metric": "no2"},
        "noise": {"metric": "noise_db"},
    },
}

FIELD_MAP: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "json": _CANONICAL,
    "senml": _CANONICAL,
    "chirpstack_v4": _LORAWAN,
    "chirpstack_v3": _LORAWAN,
    "chirpstack_v3_pbjson": _LORAWAN,
    "ttn_v3": _LORAWAN,
    "zigbee2mqtt": _ZIGBEE,
}

IGNORED: dict[str, list[str]] = {
    "json": [],
    "senml": [],
    "chirpstack_v4": ["position"],
    "chirpstack_v3": ["position"],
    "chirpstack_v3_pbjson": ["position"],
    "ttn_v3": ["position"],
    "zigbee2mqtt": ["linkquality"],
}

DERIVED: dict[str, dict[str, dict[str, Any]]] = {
    "bin": {
        "fill_level": {
            "from": "distance_mm",
            "formula": "1 - value / depth_mm",
            "registry": "metadata.depth_mm",
            "clip": [0.0, 1.0],
            "when": "absent",
        }
    }
}


def apply_field_map(
    fmt: str, kind: str, fields: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """Canonical metrics from a decoded device payload, following the rules above.

    Unknown fields raise ``KeyError`` (a real decoder would reject just that field).
    """
    specs = FIELD_MAP[fmt][kind]
    out: dict[str, float] = {}
    for name, raw in fields.items():
        if name in IGNORED[fmt]:
            continue
        spec = specs[name]
        if "map" in spec:
            key = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
            value = float(spec["map"][key])
        else:
            value = float(raw)
        out[spec["metric"]] = value * spec.get("scale", 1.0)
    for metric, rule in DERIVED.get(kind, {}).items():
        if metric in out or rule["from"] not in out or not metadata:
            continue
        depth = float(metadata[rule["registry"].split(".", 1)[1]])
        lo, hi = rule["clip"]
        out[metric] = min(max(1.0 - out[rule["from"]] / depth, lo), hi)
    return out


def ingest_field_map(fmt: str) -> dict[str, Any]:
    """One route's field map in ingest's syntax, built from ``FIELD_MAP`` and ``DERIVED``."""
    out: dict[str, Any] = {}
    for kind, fields in FIELD_MAP[fmt].items():
        sent = {spec["metric"] for spec in fields.values()}
        for name, spec in fields.items():
            target: Any = (
                spec["metric"] if "scale" not in spec else {"metric": spec["metric"], "scale": spec["scale"]}
            )
            derived = [
                {"metric": metric, "transform": "fill_from_distance"}
                for metric, rule in DERIVED.get(kind, {}).items()
                if rule["from"] == spec["metric"] and metric not in sent
            ]
            entry = [target, *derived] if derived else target
            # One flat map serves every kind on a route: a field must mean the same for all.
            assert out.setdefault(name, entry) == entry, f"{fmt}: field {name!r} means two things"
    return out


INGEST_FIELD_MAP: dict[str, dict[str, Any]] = {fmt: ingest_field_map(fmt) for fmt in FIELD_MAP}
