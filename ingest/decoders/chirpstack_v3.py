"""Decoder ``chirpstack_v3``: ChirpStack Application Server v3 MQTT events, both JSON marshalers.

Route::

    - topic: "application/+/device/{sensor_id}/event/+"   # ".../device/{sensor_id}/rx" before 3.11
      decoder: chirpstack_v3
      options:
        # on_off: false     # "on"/"off" strings in the decoded object count as 1/0
        # skip_keys: []     # dotted keys of the decoded object left out without a reject

Payloads, topic ``application/123/device/0202020202020202/event/up``::

    json_v3:        {"devEUI": "0202020202020202", "fCnt": 10,
                     "rxInfo": [{"gatewayID": "0303030303030303", "time": "2016-11-25T16:24:37.295915988Z",
                                 "rssi": -57, "loRaSNR": 10}],
                     "object": {"temperatureSensor": {"1": 25}}}
    protobuf JSON:  {"devEUI": "AgICAgICAgI=", "fCnt": 10,
                     "rxInfo": [{"gatewayID": "AwMDAwMDAwM=", "time": "2019-11-08T13:59:25.048445Z",
                                 "rssi": -48, "loRaSNR": 9}],
                     "objectJSON": "{\\"temperatureSensor\\":25}"}

give ``temperatureSensor.1`` 25 (json_v3) and ``temperatureSensor`` 25 (protobuf
JSON) for sensor ``0202020202020202``, at the gateway's time.

Keys read: ``devEUI`` (hex, or base64 of the 8 bytes; lower-case hex either
way; else the topic's ``sensor_id``), ``object`` or ``objectJSON`` (a JSON
string parsed again), ``rxInfo[]`` (the entry with the highest ``rssi`` gives
``gatewayID``, ``rssi``, ``loRaSNR`` and ``time``; else the first entry with a
time; else the receive time), ``fCnt``. v3 has no deduplication id, so no
message id. A payload with ``deviceInfo`` is ChirpStack v4: ``DecodeError``
``wrong_format``.

Events, by the topic's last level (``rx`` is ``up``):

``up``       readings; neither ``object`` nor ``objectJSON``: ``no_decoded_payload``
``status``   ``battery`` (%, from ``batteryLevel``; the legacy 0..255 ``battery``
             field is not read) and ``margin`` (dB)
``error``    type ``UPLINK_CODEC``: ``DecodeError`` ``codec_error``; others ignored
others       ``join ack txack location`` and unknown ones: ignored
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ingest.decoders._common import (
    LorawanOptions,
    add_fields,
    best_rx,
    counter,
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

NAME = "chirpstack_v3"


check_options, _cache = lorawan_options(NAME)


def _event(topic: str, data: Mapping[str, Any]) -> str | None:
    parts = topic.rsplit("/", 2)
    if parts[-1] == "rx":
        return "up"
    if len(parts) == 3 and parts[1] == "event":
        return parts[2]
    if "object" in data or "objectJSON" in data or "rxInfo" in data or "fPort" in data:
        return "up"
    if "batteryLevel" in data or "margin" in data:
        return "status"
    return None


def _eui_from(value: Any) -> str | None:
    """An EUI from json_v3 hex or protobuf-JSON base64 (8 bytes), as lower-case hex."""
    eui = normalize_eui(value)
    if eui is not None or type(value) is not str or len(value) != 12:
        return eui
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 8 else None


def decode(topic: str, payload: bytes, ctx: DecodeContext) -> Decoded:
    opts: LorawanOptions = _cache.get(ctx.options)
    data = load_json(payload)
    if type(data) is not dict:
        raise DecodeError(
            f"ChirpStack v3 payload on {topic!r} is a JSON {type(data).__name__}, not an object",
            reason="wrong_shape",
        )
    event = _event(topic, data)
    what = f"ChirpStack v3 {event or 'message'} on {topic!r}"
    if "deviceInfo" in data:
        raise DecodeError(
            f"{what} has deviceInfo: it is ChirpStack v4; use decoder chirpstack_v4", reason="wrong_format"
        )
    if event == "up":
        return _uplink(data, ctx, opts, what)
    if event == "status":
        out = Decoded()
        status_readings(data, out, ctx.received_at, _sensor_id(data, ctx, what))
        return finish(out, what)
    if event == "error" and data.get("type") == "UPLINK_CODEC":
        error = text(data.get("error")) or "no description"
        raise DecodeError(
            f"{what}: the codec failed for {_sensor_id(data, ctx, what)}: {error!r:.200}",
            reason="codec_error",
        )
    if event is None:
        raise DecodeError(
            f"{what}: not an event topic and the payload is neither an uplink nor a status",
            reason="wrong_shape",
        )
    return Decoded(ignored=True)


def _sensor_id(data: Mapping[str, Any], ctx: DecodeContext, what: str) -> str:
    eui = data.get("devEUI")
    sensor_id = _eui_from(eui) or text(eui) or sensor_or_eui(ctx.sensor_id)
    if sensor_id is None:
        raise DecodeError(f"{what} has no devEUI and the route captured no sensor_id", reason="no_sensor_id")
    return sensor_id


def _decoded_object(data: Mapping[str, Any], sensor_id: str, what: str) -> dict[str, Any]:
    decoded = data.get("object")
    if decoded is None:
        source = data.get("objectJSON")
        if source is not None and type(source) is not str:
            raise DecodeError(
                f'{what}: "objectJSON" is a {type(source).__name__}, not a JSON string', reason="wrong_shape"
            )
        if not source:
            raise DecodeError(
                f"{what}: uplink from {sensor_id} (fPort {data.get('fPort', 0)!r:.10}) has no object or "
                "objectJSON: the device profile has no codec, or it failed",
                reason="no_decoded_payload",
            )
        try:
            decoded = load_json(source.encode("utf-8", "surrogatepass"))
        except DecodeError as exc:
            raise DecodeError(f"{what}: objectJSON: {exc}", reason=exc.reason) from None
    if type(decoded) is not dict:
        raise DecodeError(
            f"{what}: the decoded object is a {type(decoded).__name__}, not an object", reason="wrong_shape"
        )
    return decoded


def _uplink(data: Mapping[str, Any], ctx: DecodeContext, opts: LorawanOptions, what: str) -> Decoded:
    sensor_id = _sensor_id(data, ctx, what)
    decoded = _decoded_object(data, sensor_id, what)
    rx = data.get("rxInfo")
    best = best_rx(rx)
    found = rx_time(rx, best, ("time",))
    time = ctx.received_at if found is None else read_time(found, what, "rxInfo[].time")
    out = Decoded(frame_counter=counter(data.get("fCnt", 0)))
    if best is not None:
        gateway = best.get("gatewayID")
        out.gateway_id = _eui_from(gateway) or text(gateway)
        out.rssi = finite(best.get("rssi", 0))
        out.snr = finite(best.get("loRaSNR", 0))
    add_fields(out, decoded, time, sensor_id, on_off=opts.on_off, skip=opts.skip)
    return finish(out, what)
