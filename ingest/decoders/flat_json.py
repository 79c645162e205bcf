"""Decoder ``flat_json``: one device's flat JSON state, as Zigbee2MQTT and Tasmota publish it.

Routes::

    - topic: "zigbee2mqtt/bridge/#"
      ignore: true
    - topic: "zigbee2mqtt/{sensor_id...}"       # friendly names may contain '/'
      decoder: flat_json
    - topic: "tele/{sensor_id}/SENSOR"
      decoder: flat_json
      options:
        # timezone: Europe/Berlin   # zone of Tasmota's "Time" (local, without offset); default UTC
        # time_keys: [Time, last_seen]
        # skip_keys: []             # dotted keys left out without a reject (added to TempUnit,
        #                           # PressureUnit, SpeedUnit, which hold units, not values)
        # on_off: true              # "ON"/"OFF" as 1/0: true in every key, false in none;
        #                           # default: in switch keys only

Payloads::

    zigbee2mqtt/kitchen/lamp {"state": "ON", "brightness": 215, "linkquality": 96}
    tele/pump-3/SENSOR       {"Time": "2017-02-16T10:13:52", "DS18B20": {"Temperature": 20.6},
                             "TempUnit": "C"}
    stat/pump-3/POWER        ON

give ``state`` 1, ``brightness`` 215, ``linkquality`` 96 for ``kitchen/lamp``
at the receive time; ``DS18B20.Temperature`` 20.6 for ``pump-3`` at
2017-02-16T10:13:52 in ``timezone``; ``POWER`` 1 for ``pump-3``.

The sensor id is the route's ``sensor_id`` (``DecodeError`` ``no_sensor_id``
without one). Keys read: every key, nested ones flattened (``DS18B20.Temperature``);
``Time``/``last_seen`` give the time (else the receive time). "ON"/"OFF" mean
1/0 in switch keys (``state``, ``state_l1``, ``state_left``, ``POWER``,
``POWER2``); other text is rejected per field (``"action": "single"``).

A payload that is not a JSON object or array is a plain value named by the
topic's last level (``POWER``); the availability words ``online``/``offline``
and an empty payload (clearing a retained message) are ignored. Also ignored:
``<base>/bridge/…`` (Zigbee2MQTT's own messages), topics ending in
``/availability``, ``/set``, ``/get``, ``/LWT``, and ``cmnd/…``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import Any, NamedTuple

from ingest.decoders._common import (
    OnOff,
    OptionCache,
    add_fields,
    always,
    finish,
    load_json,
    never,
    on_off_keys,
    option_bool,
    option_str_list,
    option_zone,
    read_time,
)
from ingest.decoders._common import (
    check_options as _check,
)
from ingest.decoders.base import DecodeContext, Decoded, FieldReject
from ingest.errors import DecodeError
from ingest.values import BadValue, get_zone, parse_value
from sense311.types import Reading

__all__ = ["NAME", "check_options", "decode"]

NAME = "flat_json"

_OPTIONS = {
    "timezone": option_zone,
    "time_keys": option_str_list,
    "skip_keys": option_str_list,
    "on_off": option_bool,
}

_DEFAULT_TIME_KEYS = ("Time", "last_seen")
#: Tasmota states the units of its readings in these keys.
_UNIT_KEYS = frozenset({"TempUnit", "PressureUnit", "SpeedUnit"})
_IGNORED_LAST_LEVELS = frozenset({"availability", "set", "get", "LWT"})
_TASMOTA_PREFIXES = frozenset({"tele", "stat", "cmnd"})
_AVAILABILITY_WORDS = frozenset({"online", "offline"})


class _Options(NamedTuple):
    zone: tzinfo
    time_keys: tuple[str, ...]
    skip: frozenset[str]
    on_off: OnOff


def _build(options: Mapping[str, Any]) -> _Options:
    check_options(options)
    time_keys = tuple(options.get("time_keys", _DEFAULT_TIME_KEYS))
    on_off = options.get("on_off")
    return _Options(
        zone=get_zone(options.get("timezone")),
        time_keys=time_keys,
        skip=_UNIT_KEYS | frozenset(options.get("skip_keys", ())) | frozenset(time_keys),
        on_off=on_off_keys if on_off is None else (always if on_off else never),
    )


_cache = OptionCache(_build)


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` if the route options are not usable by this decoder."""
    _check(NAME, options, _OPTIONS)


def _ignored_topic(topic: str) -> bool:
    levels = topic.split("/")
    if levels[-1] in _IGNORED_LAST_LEVELS or levels[0] == "cmnd":
        return True
    return len(levels) > 1 and levels[1] == "bridge" and levels[0] not in _TASMOTA_PREFIXES


def decode(topic: str, payload: bytes, ctx: DecodeContext) -> Decoded:
    opts: _Options = _cache.get(ctx.options)
    if _ignored_topic(topic):
        return Decoded(ignored=True)
    what = f"flat JSON on {topic!r}"
    sensor_id = ctx.sensor_id
    if not sensor_id:
        raise DecodeError(f"{what}: the route captured no sensor_id", reason="no_sensor_id")
    head = payload.lstrip()[:1]
    if not head:
        return Decoded(ignored=True)  # an empty message clears a retained one; nothing was measured
    data = load_json(payload) if head in (b"{", b"[") else _plain(payload, what)
    if type(data) is dict:
        out = Decoded()
        time = ctx.received_at
        for key in opts.time_keys:
            value = data.get(key)
            if value is not None:
                time = read_time(value, what, key, opts.zone)
                break
        add_fields(out, data, time, sensor_id, on_off=opts.on_off, skip=opts.skip)
        return finish(out, what)
    if type(data) is list:
        raise DecodeError(f"{what} is a JSON array, not an object", reason="wrong_shape")
    return _plain_value(data, topic, sensor_id, ctx, opts, what)


def _plain(payload: bytes, what: str) -> Any:
    """A payload that is not an object: a JSON scalar, else the text itself."""
    try:
        return load_json(payload)
    except DecodeError as exc:
        if exc.reason != "invalid_json":
            raise
    return payload.decode("utf-8")  # load_json has shown it is UTF-8


def _plain_value(
    value: Any, topic: str, sensor_id: str, ctx: DecodeContext, opts: _Options, what: str
) -> Decoded:
    metric = topic.rpartition("/")[2] or "value"
    if value is None:
        raise DecodeError(f"{what} is null", reason="no_readings")
    try:
        number, unit = parse_value(value, on_off=opts.on_off(metric))
    except BadValue as exc:
        if type(value) is str and value.strip().casefold() in _AVAILABILITY_WORDS:
            return Decoded(ignored=True)
        return Decoded(rejects=[FieldReject(sensor_id, metric, value, exc.reason, exc.detail)])
    return Decoded(readings=[Reading(ctx.received_at, sensor_id, metric, number, metric, unit)])
