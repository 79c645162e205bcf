"""What the devices themselves send: codec field names, units and raw frame bytes.

Gateways forward what a device's codec decoded, with the device maker's field names and units,
not sense311's canonical metrics; ``simulators.fieldmap`` holds the way back. LoRaWAN devices
(ChirpStack, The Things Stack) and Zigbee devices (Zigbee2MQTT) name things differently:

=========  =====================================================  ==========================================
kind       LoRaWAN codec output                                   Zigbee2MQTT state
=========  =====================================================  ==========================================
bin        ``distance`` mm, ``battery`` %, ``temperature`` °C,    ``distance`` mm, ``battery`` %,
           ``position`` ``"normal"``                              ``temperature`` °C
light      ``lamp`` ``"on"``/``"off"``, ``power`` W, ``energy``   ``state`` ``"ON"``/``"OFF"``, ``brightness``
           Wh, ``dim`` % (0–100), ``voltage`` V                   0–254, ``power`` W, ``energy`` kWh,
                                                                  ``voltage`` V
parking    ``occupied`` true/false, ``battery`` %                 ``occupancy`` true/false, ``battery`` %
air        ``pm2_5`` µg/m³, ``no2`` µg/m³, ``laeq`` dB            ``pm25`` µg/m³, ``no2`` µg/m³, ``noise`` dB
=========  =====================================================  ==========================================

Every Zigbee2MQTT message also has ``linkquality`` (0–255). The raw LoRaWAN frame (``data`` /
``frm_payload``) is a Milesight-style sequence of (channel, type, little-endian value) records
of the same fields; sense311 reads the decoded object and never these bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["F_PORT", "lorawan_fields", "lorawan_frame", "zigbee_fields"]

#: The application port Milesight-style devices send measurements on.
F_PORT = 85


def lorawan_fields(kind: str, values: Mapping[str, float]) -> dict[str, Any]:
    """The decoded payload a LoRaWAN device codec produces for these canonical values."""
    if kind == "bin":
        return {
            "battery": int(values["battery"]),
            "distance": int(values["distance_mm"]),
            "temperature": values["temperature"],
            "position": "normal",
        }
    if kind == "light":
        return {
            "lamp": "on" if values["lamp_on"] >= 0.5 else "off",
            "power": values["power_w"],
            "energy": values["energy_wh"],
            "dim": round(values["dim_level"] * 100),
            "voltage": values["voltage"],
        }
    if kind == "parking":
        return {"occupied": values["occupied"] >= 0.5, "battery": int(values["battery"])}
    if kind == "air":
        return {"pm2_5": values["pm25"], "no2": values["no2"], "laeq": values["noise_db"]}
    return dict(values)


def zigbee_fields(kind: str, values: Mapping[str, float], linkquality: int) -> dict[str, Any]:
    """The flat state a Zigbee2MQTT converter publishes for these canonical values."""
    if kind == "bin":
        out: dict[str, Any] = {
            "battery": int(values["battery"]),
            "distance": int(values["distance_mm"]),
            "temperature": values["temperature"],
        }
    elif kind == "light":
        out = {
            "state": "ON" if values["lamp_on"] >= 0.5 else "OFF",
            "brightness": round(values["dim_level"] * 254),
            "power": values["power_w"],
            "energy": round(values["energy_wh"] / 1000.0, 4),
            "voltage": values["voltage"],
        }
    elif kind == "parking":
        out = {"occupancy": values["occupied"] >= 0.5, "battery": int(values["battery"])}
    elif kind == "air":
        out = {"pm25": values["pm25"], "no2": values["no2"], "noise": values["noise_db"]}
    else:
        out = dict(values)
    out["linkquality"] = linkquality
    return out


# (channel, type, struct format, scale) per codec field.
_FIELDS = {
    "battery": (0x01, 0x75, "<B", 1),
    "temperature": (0x03, 0x67, "<h", 10),
    "distance": (0x04, 0x82, "<H", 1),
    "position": (0x05, 0x00, "<B", 1),
    "lamp": (0x06, 0x01, "<B", 1),
    "power": (0x07, 0x80, "<I", 10),
    "energy": (0x08, 0x83, "<I", 1),
    "dim": (0x09, 0x02, "<B", 1),
    "voltage": (0x0A, 0x74, "<H", 10),
    "occupied": (0x0B, 0x00, "<B", 1),
    "pm2_5": (0x0C, 0x7D, "<H", 10),
    "no2": (0x0D, 0x7D, "<H", 10),
    "laeq": (0x0E, 0x5B, "<H", 10),
}


def _spec(channel: int, type_id: int, fmt: str, scale: int) -> tuple[bytes, struct.Struct, int, int, int]:
    packer = struct.Struct(fmt)
    bits = 8 * packer.size
    signed = fmt[-1].islower()
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return bytes((channel, type_id)), packer, scale, lo, hi


_FRAME = {name: _spec(*spec) for name, spec in _FIELDS.items()}
_ENUMS = {"on": 1, "off": 0, "normal": 0, "tilt": 1}


def lorawan_frame(fields: Mapping[str, Any]) -> bytes:
    """The raw application payload carrying ``fields`` (as from ``lorawan_fields``)."""
    out = bytearray()
    for name, value in fields.items():
        spec = _FRAME.get(name)
        if spec is None:
            continue
        head, packer, scale, lo, hi = spec
        number = _ENUMS[value] if isinstance(value, str) else round(float(value) * scale)
        # Saturate rather than fail: a frame field has a fixed width on the device too.
        out += head + packer.pack(min(max(number, lo), hi))
    return bytes(out)
