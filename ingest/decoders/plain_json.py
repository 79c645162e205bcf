"""Decoder ``json``: readings as plain JSON objects, in the forms ThingsBoard accepts and a few simple ones.

Route::

    - topic: "city/{sensor_id}/telemetry"
      decoder: json
      options:
        # gateway_form: true     # force (true) or forbid (false) the gateway form; default: detect it
        # sensor_key: sensor_id  # payload key holding the sensor id (wins over the topic's)
        # time_key: ts           # payload key holding the time; default "ts", then "time"
        # skip_keys: [id, type]  # dotted keys left out without a reject
        # on_off: false          # "ON"/"OFF" strings count as 1/0

Payloads, topic ``city/bin-17/telemetry``::

    {"temperature": 42, "battery": "87 %"}                          # receive time, sensor bin-17
    {"ts": 1451649600512, "values": {"temperature": 42}}             # ts in epoch s, ms, µs or ns
    {"sensor_id": "bin-18", "ts": 1451649600, "metrics": {"distance": 2116}}
    {"sensor_id": "bin-18", "time": "2024-05-01T10:00:00Z", "metric": "distance", "value": 2116, "unit": "mm"}
    [{"temperature": 42}, {"ts": 1451649601000, "values": {"temperature": 43}}]
    {"Device A": [{"ts": 1483228800000, "values": {"temperature": 42}}]}   # gateway form: sensor "Device A"

Keys read: ``sensor_id`` (or ``sensor_key``), ``ts``/``time`` (or ``time_key``),
``metric`` + ``value`` (+ ``unit``), ``values``, ``metrics``; in the flat form
every other key is a metric. The gateway form is detected when every top-level
value is a list of ``{"ts", "values"}`` objects, and always used on the topic
``v1/gateway/telemetry``.

Nested objects become dotted metrics (``jsonKey.someNumber``), list items
indexed ones (``jsonKey.someArray.0``); ``null`` is no value; text that is not a
number is rejected per field. ThingsBoard topics that never carry telemetry
(``v1/devices/me/attributes``, ``v1/gateway/connect`` …) decode as ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from ingest.decoders._common import (
    OnOff,
    OptionCache,
    add_fields,
    always,
    finish,
    load_json,
    never,
    option_bool,
    option_str,
    option_str_list,
    read_time,
)
from ingest.decoders._common import (
    check_options as _check,
)
from ingest.decoders.base import DecodeContext, Decoded, FieldReject
from ingest.errors import DecodeError
from ingest.values import BadValue, parse_value
from sense311.types import Reading

__all__ = ["NAME", "check_options", "decode"]

NAME = "json"

_OPTIONS = {
    "gateway_form": option_bool,
    "sensor_key": option_str,
    "time_key": option_str,
    "skip_keys": option_str_list,
    "on_off": option_bool,
}

_DEFAULT_TIME_KEYS = ("ts", "time")
_THINGSBOARD_PREFIXES = ("v1/devices/me/", "v1/gateway/")
_THINGSBOARD_TELEMETRY = ("v1/devices/me/telemetry", "v1/gateway/telemetry")


class _Options(NamedTuple):
    gateway_form: bool | None
    sensor_key: str
    time_keys: tuple[str, ...]
    skip: frozenset[str]
    flat_skip: frozenset[str]
    on_off: OnOff


def _build(options: Mapping[str, Any]) -> _Options:
    check_options(options)
    sensor_key = options.get("sensor_key", "sensor_id")
    time_key = options.get("time_key")
    time_keys = (time_key,) if time_key else _DEFAULT_TIME_KEYS
    skip = frozenset(options.get("skip_keys", ()))
    return _Options(
        gateway_form=options.get("gateway_form"),
        sensor_key=sensor_key,
        time_keys=time_keys,
        skip=skip,
        flat_skip=skip | {sensor_key, *time_keys},
        on_off=always if options.get("on_off") else never,
    )


_cache = OptionCache(_build)


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` if the route options are not usable by this decoder."""
    _check(NAME, options, _OPTIONS)


def decode(topic: str, payload: bytes, ctx: DecodeContext) -> Decoded:
    opts: _Options = _cache.get(ctx.options)
    if topic.startswith(_THINGSBOARD_PREFIXES) and not topic.startswith(_THINGSBOARD_TELEMETRY):
        return Decoded(ignored=True)
    data = load_json(payload)
    out = Decoded()
    what = f"json payload on {topic!r}"
    if type(data) is list:
        for i, item in enumerate(data):
            if type(item) is dict:
                _decode_object(item, out, ctx, opts, ctx.sensor_id, what)
            else:
                detail = f"array item is a {type(item).__name__}, not an object"
                out.rejects.append(FieldReject(ctx.sensor_id, f"[{i}]", item, "bad_value", detail))
        return finish(out, what)
    if type(data) is not dict:
        raise DecodeError(
            f"{what} is a JSON {type(data).__name__}, not an object or array", reason="wrong_shape"
        )
    gateway = opts.gateway_form
    if gateway is None:
        gateway = topic == "v1/gateway/telemetry" or _looks_like_gateway_form(data)
    if gateway:
        _decode_gateway(data, out, ctx, opts, what)
    else:
        _decode_object(data, out, ctx, opts, ctx.sensor_id, what)
    return finish(out, what)


def _looks_like_gateway_form(data: Mapping[str, Any]) -> bool:
    if not data:
        return False
    for items in data.values():
        if type(items) is not list or not items:
            return False
        for item in items:
            if type(item) is not dict or "ts" not in item or "values" not in item:
                return False
    return True


def _decode_gateway(
    data: Mapping[str, Any], out: Decoded, ctx: DecodeContext, opts: _Options, what: str
) -> None:
    for device, items in data.items():
        if type(items) is not list:
            detail = f"gateway form: the value of a device is a {type(items).__name__}, not a list"
            out.rejects.append(FieldReject(device, device, items, "bad_value", detail))
            continue
        for i, item in enumerate(items):
            if type(item) is dict:
                _decode_object(item, out, ctx, opts, device, what)
            else:
                detail = f"gateway form: item is a {type(item).__name__}, not an object"
                out.rejects.append(FieldReject(device, f"{device}[{i}]", item, "bad_value", detail))


def _decode_object(
    obj: Mapping[str, Any],
    out: Decoded,
    ctx: DecodeContext,
    opts: _Options,
    default_sensor: str | None,
    what: str,
) -> None:
    sensor_id = _sensor_id(obj, opts, default_sensor, what)
    time = _time(obj, opts, ctx, what)
    values = obj.get("values")
    if type(values) is not dict:
        values = obj.get("metrics")
    if type(values) is dict:
        add_fields(out, values, time, sensor_id, on_off=opts.on_off, skip=opts.skip)
    elif "metric" in obj and "value" in obj:
        _single(obj, out, time, sensor_id, opts)
    else:
        add_fields(out, obj, time, sensor_id, on_off=opts.on_off, skip=opts.flat_skip)


def _sensor_id(obj: Mapping[str, Any], opts: _Options, default: str | None, what: str) -> str:
    value = obj.get(opts.sensor_key)
    if type(value) is str and value:
        return value
    if type(value) is int:
        return str(value)
    if value is not None:
        raise DecodeError(
            f'{what}: "{opts.sensor_key}" is {type(value).__name__} {value!r:.40}, not a string',
            reason="bad_sensor_id",
        )
    if default is None:
        raise DecodeError(
            f'{what} names no sensor: no "{opts.sensor_key}" key and the route captured no sensor_id',
            reason="no_sensor_id",
        )
    return default


def _time(obj: Mapping[str, Any], opts: _Options, ctx: DecodeContext, what: str) -> datetime:
    for key in opts.time_keys:
        value = obj.get(key)
        if value is not None:
            return read_time(value, what, key)
    return ctx.received_at


def _single(obj: Mapping[str, Any], out: Decoded, time: datetime, sensor_id: str, opts: _Options) -> None:
    metric = obj["metric"]
    value = obj["value"]
    if type(metric) is not str or not metric:
        detail = f'"metric" is {type(metric).__name__} {metric!r:.40}, not a name'
        out.rejects.append(FieldReject(sensor_id, "metric", metric, "bad_value", detail))
        return
    if value is None:
        return
    try:
        number, unit = parse_value(value, on_off=opts.on_off(metric))
    except BadValue as exc:
        out.rejects.append(FieldReject(sensor_id, metric, value, exc.reason, exc.detail))
        return
    stated = obj.get("unit")
    if type(stated) is str and stated:
        unit = stated
    out.readings.append(Reading(time, sensor_id, metric, number, metric, unit))
