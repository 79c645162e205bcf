"""Helpers the decoders share: JSON loading, flattening, EUIs, options, the final check.

Not a decoder (no ``NAME``): the registry skips modules starting with ``_``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any, NamedTuple

from ingest.decoders.base import Decoded, FieldReject
from ingest.errors import DecodeError
from ingest.values import MAX_ABS_VALUE, BadValue, NonFinite, get_zone, parse_time, parse_value
from sense311.errors import ConfigError
from sense311.types import Reading

# Optional. On a 1 kB ChirpStack v4 uplink orjson.loads takes 3-5 µs against 12-16 µs
# for json.loads (same machine, best of 3 runs); the whole decode drops by about a
# third. Anything orjson refuses (NaN literals, huge integers) goes to json.
try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

__all__ = [
    "LORAWAN_OPTIONS",
    "MAX_DEPTH",
    "MAX_LIST_ITEMS",
    "LorawanOptions",
    "OnOff",
    "OptionCache",
    "add_fields",
    "always",
    "best_rx",
    "check_options",
    "counter",
    "dict_at",
    "excerpt",
    "finish",
    "finite",
    "load_json",
    "lorawan_options",
    "never",
    "normalize_eui",
    "on_off_keys",
    "option_bool",
    "option_choice",
    "option_str",
    "option_str_list",
    "option_zone",
    "read_time",
    "rx_time",
    "sensor_or_eui",
    "status_readings",
    "text",
]

#: Nesting levels flattened into ``a.b.c`` metric names; deeper parts are
#: rejected as one field. The deepest codec output among the samples (a NAS
#: street-light controller's per-driver list) uses 3.
MAX_DEPTH = 8

#: Lists longer than this are rejected as one field instead of becoming one
#: reading per item: a long list is a waveform or a log, not a set of metrics.
MAX_LIST_ITEMS = 32

#: Decides whether a key's "ON"/"OFF" means 1/0 (see ``parse_value``).
OnOff = Callable[[str], bool]


def always(key: str) -> bool:
    return True


def never(key: str) -> bool:
    return False


_SWITCH_KEY_RE = re.compile(r"state(?:_\w+)?|power\d*", re.IGNORECASE)


def on_off_keys(key: str) -> bool:
    """True for keys that name a switch by their last segment.

    Zigbee2MQTT: ``state``, ``state_l1``, ``state_left``; Tasmota: ``POWER``, ``POWER2``.
    """
    return _SWITCH_KEY_RE.fullmatch(key.rpartition(".")[2]) is not None


# --- JSON -------------------------------------------------------------------


def _non_finite(literal: str) -> NonFinite:
    return NonFinite(literal)


#: Python refuses to convert integers of more than 4300 digits (CVE-2020-10735);
#: such a number is out of range for a reading anyway, so it is replaced by one
#: that ``parse_value`` rejects as ``out_of_range`` instead of failing the message.
_HUGE_INT = 10**400


def _parse_int(text: str) -> int:
    if len(text) < 400:
        return int(text)
    return -_HUGE_INT if text.startswith("-") else _HUGE_INT


_DECODER = json.JSONDecoder(parse_constant=_non_finite)
_LONG_INT_DECODER = json.JSONDecoder(parse_constant=_non_finite, parse_int=_parse_int)
# Escaped UTF-16 surrogates: a lone one would yield a str that cannot be encoded
# to UTF-8 later (in the database), so such payloads get a closer look.
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def excerpt(data: bytes | str, limit: int = 40) -> str:
    """A short, one-line, printable excerpt of a payload for error messages."""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    if len(text) > limit:
        text = text[:limit] + "…"
    return repr(text)


def load_json(payload: bytes) -> Any:
    """Parse a JSON payload; raise ``DecodeError`` (``invalid_utf8``, ``invalid_json``) if it is not JSON.

    ``NaN``/``Infinity`` literals become ``NonFinite`` markers that are rejected
    per field, as are numbers too large for a float.
    """
    if orjson is not None:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass  # the standard parser decides, and accepts NaN literals and huge integers
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"payload is not UTF-8 (byte {exc.start}): {excerpt(payload)}", reason="invalid_utf8"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError:
            raise
        except ValueError:  # int() refusing 4300+ digits: rare, so only then the slower parser
            value = _LONG_INT_DECODER.decode(text)
    except RecursionError:
        raise DecodeError("payload is JSON nested too deeply to read", reason="invalid_json") from None
    except ValueError as exc:
        raise DecodeError(
            f"payload is not JSON ({_first_line(exc)}): {excerpt(text)}", reason="invalid_json"
        ) from None
    if _SURROGATE_ESCAPE_RE.search(text) is not None:
        _check_encodable(value)
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).partition("\n")[0]


def _check_encodable(value: Any) -> None:
    try:
        json.dumps(value, ensure_ascii=False, default=repr).encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("payload has a lone UTF-16 surrogate escape", reason="invalid_json") from None
    except (RecursionError, ValueError):
        raise DecodeError("payload is JSON nested too deeply to read", reason="invalid_json") from None


def dict_at(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``obj[key]`` if it is an object, else an empty mapping (metadata of the wrong type is ignored)."""
    value = obj.get(key)
    return value if type(value) is dict else _EMPTY


_EMPTY: Mapping[str, Any] = {}


# --- readings -----------------------------------------------------------------


def add_fields(
    out: Decoded,
    fields: Mapping[str, Any],
    time: datetime,
    sensor_id: str,
    *,
    prefix: str = "",
    on_off: OnOff = never,
    skip: frozenset[str] = frozenset(),
    depth: int = 0,
) -> None:
    """Append a reading per numeric field of ``fields`` to ``out``, a reject per unusable one.

    Nested objects become ``parent.child`` metrics, list items ``parent.0``;
    ``null`` means "no value" and is skipped; keys in ``skip`` (full dotted
    names) are left out with everything under them.
    """
    readings = out.readings
    for name, value in fields.items():
        key = prefix + name if prefix else name
        if skip and key in skip:
            continue
        kind = type(value)
        # Plain numbers are most fields: handle them without a call.
        if (kind is float or kind is int) and -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            readings.append(Reading(time, sensor_id, key, float(value), key))
        elif value is None:
            continue
        elif kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                out.rejects.append(
                    FieldReject(sensor_id, key, value, "too_deep", f"nested more than {MAX_DEPTH} levels")
                )
            elif kind is dict:
                add_fields(
                    out, value, time, sensor_id, prefix=key + ".", on_off=on_off, skip=skip, depth=depth + 1
                )
            elif len(value) > MAX_LIST_ITEMS:
                detail = f"a list of {len(value)} items (more than {MAX_LIST_ITEMS})"
                out.rejects.append(FieldReject(sensor_id, key, value, "bad_value", detail))
            else:
                items = {str(i): item for i, item in enumerate(value)}
                add_fields(
                    out, items, time, sensor_id, prefix=key + ".", on_off=on_off, skip=skip, depth=depth + 1
                )
        else:
            try:
                number, unit = parse_value(value, on_off=on_off(key))
            except BadValue as exc:
                out.rejects.append(FieldReject(sensor_id, key, value, exc.reason, exc.detail))
            else:
                readings.append(Reading(time, sensor_id, key, number, key, unit))


def read_time(value: Any, what: str, key: str, tz: tzinfo | None = None) -> datetime:
    """``parse_time`` for a message's own time: a bad one rejects the message (``bad_time``).

    ``what`` and ``key`` name the message and field in the error; they are
    joined only then, not for every message.
    """
    try:
        return parse_time(value, tz=tz)
    except BadValue as exc:
        raise DecodeError(f"{what}: {key}: {exc.detail}", reason="bad_time") from None


def finish(out: Decoded, what: str) -> Decoded:
    """Return ``out``, or raise ``no_readings`` if it has neither readings nor rejects."""
    if out.readings or out.rejects or out.ignored:
        return out
    raise DecodeError(f"{what} carries no readings", reason="no_readings")


_HEX16_RE = re.compile(r"[0-9a-fA-F]{16}")


def normalize_eui(value: Any) -> str | None:
    """A LoRaWAN EUI in the one canonical form, 16 lower-case hex digits; ``None`` if not one.

    ChirpStack sends lower case, The Things Stack upper case; ``-`` and ``:``
    separators are dropped.
    """
    if type(value) is not str:
        return None
    text = value.strip()
    if len(text) != 16:
        text = text.replace("-", "").replace(":", "")
    return text.lower() if _HEX16_RE.fullmatch(text) else None


def sensor_or_eui(value: str | None) -> str | None:
    """A topic-captured id, as an EUI in canonical form when it is one."""
    if not value:
        return None
    return normalize_eui(value) or value


# --- options ------------------------------------------------------------------

OptionCheck = Callable[[str, str, Any], None]


def check_options(decoder: str, options: Mapping[str, Any], known: Mapping[str, OptionCheck]) -> None:
    """Raise ``ConfigError`` naming the decoder, option and value if ``options`` are not usable."""
    if not isinstance(options, Mapping):
        raise ConfigError(f'Options of decoder "{decoder}" must be a mapping, got {type(options).__name__}')
    for name, value in options.items():
        check = known.get(name)
        if check is None:
            close = difflib.get_close_matches(str(name), list(known), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            names = ", ".join(sorted(known)) or "none"
            raise ConfigError(f'Unknown option "{name}" for decoder "{decoder}"{hint} Known: {names}')
        check(decoder, name, value)


def _bad_option(decoder: str, name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(
        f'Invalid value for option "{name}" of decoder "{decoder}": expected {expected}, got {value!r}'
    )


def option_bool(decoder: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad_option(decoder, name, value, "true or false")


def option_str(decoder: str, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise _bad_option(decoder, name, value, "a non-empty string")


def option_str_list(decoder: str, name: str, value: Any) -> None:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _bad_option(decoder, name, value, "a list of strings")


def option_zone(decoder: str, name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _bad_option(decoder, name, value, 'an IANA zone name like "Europe/Berlin"')
    get_zone(value)


def option_choice(*choices: Any) -> OptionCheck:
    def check(decoder: str, name: str, value: Any) -> None:
        if value not in choices:
            raise _bad_option(decoder, name, value, "one of " + ", ".join(repr(c) for c in choices))

    return check


class OptionCache:
    """What a decoder derives from a route's options, computed once per options object.

    Routes hand the same read-only mapping to every message, so identity is a
    valid key; the strong reference kept with each entry stops the id from being
    reused. Bounded: cleared when it holds ``size`` entries.
    """

    def __init__(self, build: Callable[[Mapping[str, Any]], Any], size: int = 64) -> None:
        self._build = build
        self._size = size
        self._entries: dict[int, tuple[Mapping[str, Any], Any]] = {}

    def get(self, options: Mapping[str, Any]) -> Any:
        entry = self._entries.get(id(options))
        if entry is not None and entry[0] is options:
            return entry[1]
        derived = self._build(options)
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[id(options)] = (options, derived)
        return derived


# --- LoRaWAN network servers ----------------------------------------------------

#: The route options every network-server decoder takes (ChirpStack v3 and v4, The Things Stack).
LORAWAN_OPTIONS: Mapping[str, OptionCheck] = {"on_off": option_bool, "skip_keys": option_str_list}


class LorawanOptions(NamedTuple):
    on_off: OnOff
    skip: frozenset[str]


def lorawan_options(decoder: str) -> tuple[Callable[[Mapping[str, Any]], None], OptionCache]:
    """The ``check_options`` function and the options cache of a network-server decoder."""

    def check(options: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` if the route options are not usable by this decoder."""
        check_options(decoder, options, LORAWAN_OPTIONS)

    def build(options: Mapping[str, Any]) -> LorawanOptions:
        check(options)
        return LorawanOptions(
            always if options.get("on_off") else never, frozenset(options.get("skip_keys", ()))
        )

    return check, OptionCache(build)


def finite(value: Any) -> float | None:
    """A metadata number (rssi, snr) as a float; ``None`` if it is not a finite number."""
    kind = type(value)
    if (kind is int or kind is float) and -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
        return float(value)
    return None


def text(value: Any) -> str | None:
    """A metadata string; ``None`` if absent, empty or not a string."""
    return value if type(value) is str and value else None


def counter(value: Any) -> int | None:
    """A frame counter: an integer 0..2**32-1, else ``None``."""
    return value if type(value) is int and 0 <= value < 2**32 else None


def best_rx(entries: Any, rssi_keys: tuple[str, ...] = ("rssi",)) -> Mapping[str, Any] | None:
    """The reception with the strongest signal among ``entries`` (a list of objects).

    A missing rssi counts as 0, the protobuf default that ChirpStack omits;
    a value that is not a number ranks last.
    """
    if type(entries) is not list:
        return None
    best: Mapping[str, Any] | None = None
    best_rssi = -float("inf")
    for entry in entries:
        if type(entry) is not dict:
            continue
        rssi: float | None = 0.0
        for key in rssi_keys:
            if key in entry:
                rssi = finite(entry[key])
                break
        ranked = -float("inf") if rssi is None else rssi
        if best is None or ranked > best_rssi:
            best, best_rssi = entry, ranked
    return best


def rx_time(entries: Any, best: Mapping[str, Any] | None, keys: tuple[str, ...]) -> Any:
    """The first of ``keys`` found in the best reception, else in any reception, else ``None``."""
    candidates: list[Any] = [best] if best is not None else []
    if type(entries) is list:
        candidates.extend(entries)
    for entry in candidates:
        if type(entry) is dict:
            for key in keys:
                value = entry.get(key)
                if value is not None:
                    return value
    return None


def status_readings(data: Mapping[str, Any], out: Decoded, time: datetime, sensor_id: str) -> None:
    """Readings of a ChirpStack device-status event: ``battery`` (%) and ``margin`` (dB).

    No battery reading when the device says it is on external power or cannot
    tell its level: a 0 there means "unknown", not "empty". A missing
    ``batteryLevel`` or ``margin`` is the protobuf default 0.
    """
    if data.get("batteryLevelUnavailable") is not True and data.get("externalPowerSource") is not True:
        _status_field(data, out, time, sensor_id, "batteryLevel", "battery", "%")
    _status_field(data, out, time, sensor_id, "margin", "margin", "dB")


def _status_field(
    data: Mapping[str, Any], out: Decoded, time: datetime, sensor_id: str, key: str, metric: str, unit: str
) -> None:
    value = data.get(key, 0)
    if value is None:
        value = 0
    try:
        number, _ = parse_value(value)
    except BadValue as exc:
        out.rejects.append(FieldReject(sensor_id, key, value, exc.reason, exc.detail))
    else:
        out.readings.append(Reading(time, sensor_id, metric, number, key, unit))
