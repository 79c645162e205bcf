"""Decoder ``senml``: SenML packs (RFC 8428, JSON) and the legacy LwM2M ``{"bn": …, "e": […]}`` form.

Route::

    - topic: "senml/{sensor_id}"
      decoder: senml
      options:
        # sensor_from: bn   # "bn": sensor = base name without one trailing ':' or '/', metric = n
                            # "topic": sensor = the route's sensor_id, metric = bn + n

Payload, topic ``senml/any``::

    [{"bn": "urn:dev:ow:10e2073a0108006:", "bt": 1276020076.001, "bu": "A",
      "n": "voltage", "u": "V", "v": 120.1},
     {"n": "current", "t": -5, "v": 1.2},
     {"n": "current", "v": 1.7}]

gives, for sensor ``urn:dev:ow:10e2073a0108006``: ``voltage`` 120.1 V at
1276020076.001 s, ``current`` 1.2 A at 1276020071.001 s, ``current`` 1.7 A at
1276020076.001 s (times in epoch seconds, UTC).

Keys read: base fields ``bn bt bu bv bs bver`` (they hold for the following
records until redefined), ``n u t v vs vb vd s``. Resolution follows RFC 8428
("Resolved Records"): name ``bn + n``, time ``bt + t`` (a result below 2**28 is relative to the
receive time), unit ``u`` else ``bu``, value ``bv + v``, sum ``bs + s``.

* ``v`` must be a number; ``vb`` gives 1/0; ``vs`` gives a number only when the
  text is one (``"21.5"``), else a reject; ``vd`` (data) is always a reject.
* ``s`` gives a reading ``<metric>.sum``.
* A record without ``n`` takes its unit as metric name (the RFC's "Multiple
  Measurements" example tells latitude from longitude only by unit), or
  ``value`` without a unit.
* The reading's ``key`` is the full resolved name ``bn + n``.
* With ``sensor_from: bn`` and no base name, the sensor is the route's
  ``sensor_id``; a record with neither is rejected (``no_sensor_id``).
* A record with only base fields is not a measurement and is skipped.
* ``bver`` above 10 or a field ending in ``_`` (must-understand) is refused:
  ``DecodeError`` ``unsupported_senml``.
* Legacy ``e`` entries use ``sv`` for text and ``bv`` for a boolean; the
  top-level ``bn``/``bt``/``bu`` are their base.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from ingest.decoders._common import OptionCache, finish, load_json, option_choice
from ingest.decoders._common import check_options as _check
from ingest.decoders.base import DecodeContext, Decoded, FieldReject
from ingest.errors import DecodeError
from ingest.values import MAX_ABS_VALUE, SECONDS_BELOW, BadValue, NonFinite, epoch_seconds, parse_value
from sense311.types import Reading

__all__ = ["NAME", "RELATIVE_TIME_BELOW", "check_options", "decode"]

NAME = "senml"

#: RFC 8428: a resolved time below 2**28 s (about 8.5 years) is relative to now.
RELATIVE_TIME_BELOW = 2**28

#: The SenML version this decoder reads (RFC 8428 defines version 10).
SUPPORTED_VERSION = 10

_OPTIONS = {"sensor_from": option_choice("bn", "topic")}
_VALUE_FIELDS = ("v", "vs", "vb", "vd")
_LEGACY_BASE = ("bn", "bt", "bu")


class _Options(NamedTuple):
    from_topic: bool


def _build(options: Mapping[str, Any]) -> _Options:
    check_options(options)
    return _Options(from_topic=options.get("sensor_from", "bn") == "topic")


_cache = OptionCache(_build)


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` if the route options are not usable by this decoder."""
    _check(NAME, options, _OPTIONS)


def decode(topic: str, payload: bytes, ctx: DecodeContext) -> Decoded:
    opts: _Options = _cache.get(ctx.options)
    what = f"SenML pack on {topic!r}"
    data = load_json(payload)
    if type(data) is list:
        records: list[Any] = data
    elif type(data) is dict:
        records = _legacy_records(data, what) if "e" in data else [data]
    else:
        raise DecodeError(
            f"{what} is a JSON {type(data).__name__}, not an array of records", reason="wrong_shape"
        )
    if opts.from_topic and not ctx.sensor_id:
        raise DecodeError(
            f"{what}: sensor_from is topic but the route captured no sensor_id", reason="no_sensor_id"
        )
    out = Decoded()
    base = _Base()
    for index, record in enumerate(records):
        if type(record) is not dict:
            detail = f"record is a {type(record).__name__}, not an object"
            out.rejects.append(FieldReject(ctx.sensor_id, f"[{index}]", record, "bad_value", detail))
            continue
        base.update(record, index, what)
        _record(record, index, base, out, ctx, opts)
    return finish(out, what)


def _legacy_records(data: Mapping[str, Any], what: str) -> list[Any]:
    entries = data["e"]
    if type(entries) is not list:
        raise DecodeError(f'{what}: "e" is a {type(entries).__name__}, not an array', reason="wrong_shape")
    records: list[Any] = [{key: data[key] for key in _LEGACY_BASE if key in data}]
    for entry in entries:
        if type(entry) is dict:
            # LwM2M 1.0 JSON: "sv" string, "bv" boolean (not a base value), "ov" object link.
            entry = {key: value for key, value in entry.items() if not key.startswith("b")} | {
                new: entry[old] for old, new in (("sv", "vs"), ("bv", "vb"), ("ov", "vd")) if old in entry
            }
            entry.pop("sv", None)
            entry.pop("ov", None)
        records.append(entry)
    return records


class _Base:
    """Base fields in force: each holds until a later record redefines it."""

    __slots__ = ("name", "sensor", "sum", "time", "unit", "value")

    def __init__(self) -> None:
        self.name = ""
        self.sensor: str | None = None
        self.time: float = 0.0
        self.unit: str | None = None
        self.value: float | None = None
        self.sum: float | None = None

    def update(self, record: Mapping[str, Any], index: int, what: str) -> None:
        if "bver" in record:
            version = record["bver"]
            if type(version) is not int or version > SUPPORTED_VERSION:
                raise DecodeError(
                    f"{what}: record {index} has bver {version!r:.20}; this decoder reads SenML up to "
                    f"version {SUPPORTED_VERSION}",
                    reason="unsupported_senml",
                )
        for key in record:
            if key.endswith("_"):
                raise DecodeError(
                    f"{what}: record {index} has the must-understand field {key!r:.40}, which this decoder "
                    "does not know",
                    reason="unsupported_senml",
                )
        if "bn" in record:
            name = record["bn"]
            if type(name) is not str:
                raise _bad_base(what, index, "bn", name, "a string")
            self.name = name
            stripped = name[:-1] if name.endswith((":", "/")) else name
            self.sensor = stripped or None
        if "bt" in record:
            self.time = _base_number(record["bt"], "bt", index, what, SECONDS_BELOW)
        if "bu" in record:
            unit = record["bu"]
            if type(unit) is not str:
                raise _bad_base(what, index, "bu", unit, "a string")
            self.unit = unit or None
        if "bv" in record:
            self.value = _base_number(record["bv"], "bv", index, what, MAX_ABS_VALUE)
        if "bs" in record:
            self.sum = _base_number(record["bs"], "bs", index, what, MAX_ABS_VALUE)


def _bad_base(what: str, index: int, key: str, value: Any, expected: str) -> DecodeError:
    # A bad base field would skew every following record, so the pack is refused.
    return DecodeError(
        f"{what}: record {index} has {key} {value!r:.40}, expected {expected}", reason="wrong_shape"
    )


def _base_number(value: Any, key: str, index: int, what: str, limit: float) -> float:
    kind = type(value)
    if (kind is int or kind is float) and -limit <= value <= limit:
        return float(value)
    raise _bad_base(what, index, key, value, f"a number within ±{limit:g}")


def _record(
    record: Mapping[str, Any], index: int, base: _Base, out: Decoded, ctx: DecodeContext, opts: _Options
) -> None:
    present = [key for key in _VALUE_FIELDS if key in record]
    has_sum = "s" in record
    if not present and not has_sum:
        return  # base fields only
    n = record.get("n", "")
    unit = record.get("u", base.unit)
    if type(unit) is not str or not unit:
        unit = None
    if opts.from_topic:
        sensor_id = ctx.sensor_id
        metric = base.name + n if type(n) is str else ""
    else:
        sensor_id = base.sensor or ctx.sensor_id
        metric = n if type(n) is str else ""
    name = base.name + n if type(n) is str else base.name
    key = name or f"[{index}]"
    if type(n) is not str:
        out.rejects.append(
            FieldReject(sensor_id, key, n, "bad_value", f'"n" is {type(n).__name__}, not a string')
        )
        return
    if not sensor_id:
        detail = "no base name and the route captured no sensor_id"
        out.rejects.append(FieldReject(None, key, record, "no_sensor_id", detail))
        return
    if not metric:
        metric = unit or "value"
    if len(present) > 1:
        detail = "more than one value field: " + ", ".join(present)
        out.rejects.append(FieldReject(sensor_id, key, record, "bad_value", detail))
        return
    try:
        time = _time(record.get("t", 0), base.time, ctx.received_at)
        if present:
            number = _value(present[0], record[present[0]], base)
            out.readings.append(Reading(time, sensor_id, metric, number, name or metric, unit))
        if has_sum:
            number = _sum(record["s"], base)
            out.readings.append(
                Reading(time, sensor_id, metric + ".sum", number, (name or metric) + ".sum", unit)
            )
    except BadValue as exc:
        out.rejects.append(FieldReject(sensor_id, key, record, exc.reason, exc.detail))


def _time(offset: Any, base_time: float, received_at: datetime) -> datetime:
    kind = type(offset)
    if not (kind is int or kind is float) or not -SECONDS_BELOW < offset < SECONDS_BELOW:
        raise BadValue("bad_time", f"t is {offset!r:.40}, expected seconds as a number")
    resolved = base_time + offset
    if resolved >= RELATIVE_TIME_BELOW:
        return epoch_seconds(resolved)
    try:
        return received_at + timedelta(seconds=resolved)
    except OverflowError:
        raise BadValue("out_of_range", f"relative time {resolved!r} s is out of range") from None


def _value(field: str, value: Any, base: _Base) -> float:
    kind = type(value)
    if field == "v":
        if kind is not int and kind is not float:
            if kind is NonFinite:
                parse_value(value)  # raises "non_finite" naming the literal
            raise BadValue("bad_value", f"v is {kind.__name__} {value!r:.40}, expected a number")
        number, _ = parse_value(value)
        return number if base.value is None else _checked(base.value + number)
    if field == "vb":
        if kind is not bool:
            raise BadValue("bad_value", f"vb is {kind.__name__} {value!r:.40}, expected true or false")
        return 1.0 if value else 0.0
    if field == "vs":
        if kind is not str:
            raise BadValue("bad_value", f"vs is {kind.__name__} {value!r:.40}, expected a string")
        number, _ = parse_value(value)
        return number
    raise BadValue("non_numeric", "vd is a data value, not a measurement")


def _sum(value: Any, base: _Base) -> float:
    kind = type(value)
    if kind is not int and kind is not float:
        raise BadValue("bad_value", f"s is {kind.__name__} {value!r:.40}, expected a number")
    number, _ = parse_value(value)
    return number if base.sum is None else _checked(base.sum + number)


def _checked(number: float) -> float:
    value, _ = parse_value(number)
    return value
