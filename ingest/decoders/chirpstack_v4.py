"""Decoder ``chirpstack_v4``: ChirpStack v4 MQTT integration events (JSON mode).

Route::

    - topic: "application/+/device/{sensor_id}/event/+"
      decoder: chirpstack_v4
      options:
        # on_off: false     # "on"/"off" strings in the decoded object count as 1/0 (switch_1: "on")
        # skip_keys: []     # dotted keys of the decoded object left out without a reject

Payload, topic ``application/17c82e96-…/device/24e124713c041190/event/up``::

    {"deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
     "time": "2022-07-18T09:34:15.775023242+00:00",
     "deviceInfo": {"devEui": "24e124713c041190", "deviceName": "bin-17", …},
     "fCnt": 10, "fPort": 85, "data": "AXVcA4JECAQAAQ==",
     "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -36, "snr": 10.5, …}],
     "object": {"battery": 92.0, "distance": 2116.0, "position": "tilt"}}

gives ``battery`` 92 and ``distance`` 2116 for sensor ``24e124713c041190`` at
2022-07-18T09:34:15.775023Z, and a reject for ``position`` (text).

Keys read: ``deviceInfo.devEui`` (sensor id, lower-case hex; else the topic's
``sensor_id``), ``time`` (else ``rxInfo[].gwTime``/``time``, else the receive
time), ``object`` (flattened: ``a.b``, ``list.0``), ``rxInfo[]`` (the entry with
the highest ``rssi`` gives ``gatewayId``, ``rssi``, ``snr``), ``fCnt``,
``deduplicationId`` (message id). Missing keys are the protobuf defaults;
unknown keys are ignored.

Events, by the topic's last level (or, off the standard topic, by the payload):

``up``       readings from ``object``; no ``object`` (no codec, or it failed) is
             ``DecodeError`` ``no_decoded_payload``
``status``   ``battery`` (%, from ``batteryLevel``; none on external power or when
             unavailable) and ``margin`` (dB)
``log``      code ``UPLINK_CODEC``: ``DecodeError`` ``codec_error`` with the
             codec's description, so the failure is dead-lettered with its cause;
             other codes are ignored
others       ``join ack txack location integration`` and unknown ones: ignored
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.decoders._common import (
    LorawanOptions,
    add_fields,
    best_rx,
    counter,
    dict_at,
    finish,
    finite,
    load_json,
    lorawan_options,
    normalize_eui,
    read_time,
    rx_time,
    sensor_or_eui,
    status_readings,
    text,
)
from ingest.decoders.base import DecodeContext, Decoded
from ingest.errors import DecodeError

__all__ = ["NAME", "check_options", "decode"]

NAME = "chirpstack_v4"


check_options, _cache = lorawan_options(NAME)


def _event(topic: str, data: Mapping[str, Any]) -> str | None:
    parts = topic.rsplit("/", 2)
    if len(parts) == 3 and parts[1] == "event":
        return parts[2]
    if "object" in data or "rxInfo" in data or "fPort" in data:
        return "up"
    if "batteryLevel" in data or "margin" in data:
        return "status"
    if "code" in data and "level" in data:
        return "log"
    return None


def decode(topic: str, payload: bytes, ctx: DecodeContext) -> Decoded:
    opts: LorawanOptions = _cache.get(ctx.options)
    data = load_json(payload)
    if type(data) is not dict:
        raise DecodeError(
            f"ChirpStack v4 payload on {topic!r} is a JSON {type(data).__name__}, not an object",
            reason="wrong_shape",
        )
    event = _event(topic, data)
    what = f"ChirpStack v4 {event or 'message'} on {topic!r}"
    device = dict_at(data, "deviceInfo")
    if not device and ("devEUI" in data or "applicationID" in data):
        raise DecodeError(
            f"{what} has devEUI/applicationID and no deviceInfo: it is ChirpStack v3; "
            "use decoder chirpstack_v3",
            reason="wrong_format",
        )
    if event == "up":
        return _uplink(data, device, ctx, opts, what)
    if event == "status":
        out = Decoded(message_id=text(data.get("deduplicationId")))
        time = ctx.received_at if data.get("time") is None else read_time(data["time"], what, "time")
        status_readings(data, out, time, _sensor_id(device, ctx, what))
        return finish(out, what)
    if event == "log" and data.get("code") == "UPLINK_CODEC":
        description = text(data.get("description")) or "no description"
        raise DecodeError(
            f"{what}: the device profile codec failed for {_sensor_id(device, ctx, what)}: "
            f"{description!r:.200}",
            reason="codec_error",
        )
    if event is None:
        raise DecodeError(
            f"{what}: not an event topic and the payload is neither an uplink nor a status",
            reason="wrong_shape",
        )
    return Decoded(ignored=True)


def _sensor_id(device: Mapping[str, Any], ctx: DecodeContext, what: str) -> str:
    eui = device.get("devEui")
    sensor_id = normalize_eui(eui) or text(eui) or sensor_or_eui(ctx.sensor_id)
    if sensor_id is None:
        raise DecodeError(
            f"{what} has no deviceInfo.devEui and the route captured no sensor_id", reason="no_sensor_id"
        )
    return sensor_id


def _uplink(
    data: Mapping[str, Any], device: Mapping[str, Any], ctx: DecodeContext, opts: LorawanOptions, what: str
) -> Decoded:
    sensor_id = _sensor_id(device, ctx, what)
    decoded = data.get("object")
    if decoded is None:
        raise DecodeError(
            f'{what}: uplink from {sensor_id} (fPort {data.get("fPort", 0)!r:.10}) has no "object": '
            "the device profile has no codec, or it failed (see the log event)",
            reason="no_decoded_payload",
        )
    if type(decoded) is not dict:
        raise DecodeError(
            f'{what}: "object" is a {type(decoded).__name__}, not an object', reason="wrong_shape"
        )
    rx = data.get("rxInfo")
    best = best_rx(rx)
    if data.get("time") is not None:
        time = read_time(data["time"], what, "time")
    else:
        found = rx_time(rx, best, ("gwTime", "time", "nsTime"))
        time = ctx.received_at if found is None else read_time(found, what, "rxInfo[].gwTime")
    out = Decoded(frame_counter=counter(data.get("fCnt", 0)), message_id=text(data.get("deduplicationId")))
    if best is not None:
        gateway = best.get("gatewayId")
        out.gateway_id = normalize_eui(gateway) or text(gateway)
        out.rssi = finite(best.get("rssi", 0))
        out.snr = finite(best.get("snr", 0))
    add_fields(out, decoded, time, sensor_id, on_off=opts.on_off, skip=opts.skip)
    return finish(out, what)
