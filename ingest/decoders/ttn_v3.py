"""Decoder ``ttn_v3``: The Things Stack v3 (The Things Network) MQTT messages.

Route::

    - topic: "v3/+/devices/{sensor_id}/up"
      decoder: ttn_v3
      options:
        # on_off: false     # "on"/"off" strings in the decoded payload count as 1/0
        # skip_keys: []     # dotted keys of the decoded payload left out without a reject

Payload, topic ``v3/app1@tenant1/devices/dev1/up``::

    {"end_device_ids": {"device_id": "dev1", "dev_eui": "0004A30B001C0530", …},
     "correlation_ids": ["as:up:01E0WZGT6Y7657CPFPE5WEYDSQ", …],
     "received_at": "2020-02-12T15:15:46.014773143Z",
     "uplink_message": {"f_cnt": 1, "frm_payload": "gkHe",
                        "decoded_payload": {"temperature": 1.0, "voltage": "3.384 V"},
                        "rx_metadata": [{"gateway_ids": {"gateway_id": "gtw1"}, "rssi": -35, "snr": 5, …}],
                        "received_at": "2020-02-12T15:15:45.789585559Z"}}

gives ``temperature`` 1.0 and ``voltage`` 3.384 (unit V) for sensor
``0004a30b001c0530`` at 2020-02-12T15:15:45.789585Z.

Keys read: ``end_device_ids.dev_eui`` (sensor id; EUIs are lower-case hex in
every decoder), else ``end_device_ids.device_id``, else the topic's
``sensor_id``; ``uplink_message.decoded_payload`` (flattened: ``a.b``,
``list.0``; keys with spaces kept as they are); time from
``uplink_message.received_at``, else ``rx_metadata[].time``, else the top-level
``received_at``, else the receive time; the ``rx_metadata`` entry with the
highest ``rssi`` (or ``channel_rssi``) gives ``gateway_ids.gateway_id``,
``rssi``, ``snr``; ``f_cnt`` (omitted when 0); the ``as:up:…`` correlation id is
the message id.

Not read: ``normalized_payload`` repeats decoded values under other names and
would count them twice (the field map does the renaming), and
``decoded_payload_warnings``.

Outcomes: an uplink without ``decoded_payload`` (no formatter) is
``DecodeError`` ``no_decoded_payload``; a simulated uplink
(``"simulated": true``, sent from the console) and every other message (join,
downlink events, ``location_solved``, service data) are ignored.
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
    text,
)
from ingest.decoders.base import DecodeContext, Decoded
from ingest.errors import DecodeError

__all__ = ["NAME", "check_options", "decode"]

NAME = "ttn_v3"

_MESSAGE_ID_PREFIX = "as:up:"


check_options, _cache = lorawan_options(NAME)


def decode(topic: str, payload: bytes, ctx: DecodeContext) -> Decoded:
    opts: LorawanOptions = _cache.get(ctx.options)
    data = load_json(payload)
    what = f"The Things Stack message on {topic!r}"
    if type(data) is not dict:
        raise DecodeError(f"{what} is a JSON {type(data).__name__}, not an object", reason="wrong_shape")
    uplink = data.get("uplink_message")
    if type(uplink) is not dict:
        if uplink is not None or topic.endswith("/up"):
            raise DecodeError(f"{what} has no uplink_message object", reason="wrong_shape")
        return Decoded(ignored=True)
    if data.get("simulated") is True:
        return Decoded(ignored=True)
    ids = dict_at(data, "end_device_ids")
    eui = ids.get("dev_eui")
    sensor_id = normalize_eui(eui) or text(eui) or text(ids.get("device_id")) or sensor_or_eui(ctx.sensor_id)
    if sensor_id is None:
        raise DecodeError(
            f"{what} has no end_device_ids and the route captured no sensor_id", reason="no_sensor_id"
        )
    decoded = uplink.get("decoded_payload")
    if decoded is None:
        raise DecodeError(
            f"{what}: uplink from {sensor_id} (f_port {uplink.get('f_port', 0)!r:.10}) has no "
            "decoded_payload: the application or device has no uplink payload formatter",
            reason="no_decoded_payload",
        )
    if type(decoded) is not dict:
        raise DecodeError(
            f"{what}: decoded_payload is a {type(decoded).__name__}, not an object", reason="wrong_shape"
        )
    rx = uplink.get("rx_metadata")
    best = best_rx(rx, ("rssi", "channel_rssi"))
    if uplink.get("received_at") is not None:
        time = read_time(uplink["received_at"], what, "uplink_message.received_at")
    elif (found := rx_time(rx, best, ("time",))) is not None:
        time = read_time(found, what, "rx_metadata[].time")
    elif data.get("received_at") is not None:
        time = read_time(data["received_at"], what, "received_at")
    else:
        time = ctx.received_at
    out = Decoded(frame_counter=counter(uplink.get("f_cnt", 0)), message_id=_message_id(data))
    if best is not None:
        gateway = dict_at(best, "gateway_ids")
        out.gateway_id = text(gateway.get("gateway_id")) or normalize_eui(gateway.get("eui"))
        out.rssi = finite(best.get("rssi", best.get("channel_rssi")))
        out.snr = finite(best.get("snr", 0))
    add_fields(out, decoded, time, sensor_id, on_off=opts.on_off, skip=opts.skip)
    return finish(out, what)


def _message_id(data: Mapping[str, Any]) -> str | None:
    ids = data.get("correlation_ids")
    if type(ids) is list:
        for value in ids:
            if type(value) is str and value.startswith(_MESSAGE_ID_PREFIX):
                return value
    return None
