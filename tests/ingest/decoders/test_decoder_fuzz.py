"""Property: whatever arrives, a decoder returns ``Decoded`` or raises ``DecodeError``, nothing else.

Three kinds of input per decoder: arbitrary bytes, arbitrary JSON, and each
format's envelope with arbitrary JSON in the places the decoder reads.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decoders import available_decoders, get_decoder
from ingest.decoders.base import DecodeContext, Decoded
from ingest.errors import DecodeError
from ingest.values import MAX_ABS_VALUE

RECEIVED_AT = datetime(2024, 5, 1, 12, tzinfo=UTC)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOPICS = {
    "chirpstack_v3": [
        "application/1/device/0202020202020202/event/up",
        "application/1/device/x/rx",
        "application/1/device/x/event/status",
        "application/1/device/x/event/error",
        "x",
    ],
    "chirpstack_v4": [
        "application/a/device/0101010101010101/event/up",
        "application/a/device/x/event/status",
        "application/a/device/x/event/log",
        "x/y",
    ],
    "flat_json": [
        "zigbee2mqtt/lamp",
        "zigbee2mqtt/bridge/state",
        "tele/t/SENSOR",
        "stat/t/POWER",
        "cmnd/t/POWER",
        "/",
    ],
    "json": ["city/gw/json", "v1/devices/me/telemetry", "v1/gateway/telemetry", "v1/gateway/connect"],
    "senml": ["senml/dev", "x"],
    "ttn_v3": ["v3/app@t/devices/dev1/up", "v3/app@t/devices/dev1/join", "v3/x/up/normalized"],
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["ON", "off", "3.384 V", "No Sensor", "2024-05-01T10:00:00Z", "1714557600000", "AgICAgICAgI="]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
contexts = st.builds(
    DecodeContext,
    received_at=st.just(RECEIVED_AT),
    sensor_id=st.none() | st.sampled_from(["0101010101010101", "lamp", "tasmota", "a/b"]),
)


def envelope(keys: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the format's own keys (nested where listed) holding arbitrary JSON."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for key, inner in keys.items():
        if inner:
            fields[key] = st.fixed_dictionaries({}, optional={k: json_values for k in inner}) | json_values
        else:
            fields[key] = json_values
    return st.fixed_dictionaries({}, optional=fields)


numbers = st.integers(-(2**40), 2**40) | st.floats(-1e12, 1e12)
# Mostly well-typed SenML fields, sometimes anything, so resolution itself is exercised.
senml_record = st.fixed_dictionaries(
    {},
    optional={
        **{k: st.text(max_size=6) | json_values for k in ("bn", "n", "u", "bu", "vs", "vd")},
        **{k: numbers | json_values for k in ("bt", "bv", "bs", "t", "v", "s")},
        "vb": st.booleans() | json_values,
        "bver": st.integers(0, 12) | json_values,
    },
)

ENVELOPES: dict[str, st.SearchStrategy[Any]] = {
    "chirpstack_v4": envelope(
        {
            "deviceInfo": ["devEui"],
            "time": [],
            "object": [],
            "rxInfo": [],
            "fCnt": [],
            "deduplicationId": [],
            "batteryLevel": [],
            "margin": [],
            "externalPowerSource": [],
            "code": [],
            "description": [],
        }
    ),
    "chirpstack_v3": envelope(
        {
            "devEUI": [],
            "object": [],
            "objectJSON": [],
            "rxInfo": [],
            "fCnt": [],
            "batteryLevel": [],
            "type": [],
        }
    ),
    "ttn_v3": envelope(
        {
            "end_device_ids": ["dev_eui", "device_id"],
            "uplink_message": ["decoded_payload", "rx_metadata", "received_at", "f_cnt"],
            "received_at": [],
            "correlation_ids": [],
            "simulated": [],
        }
    ),
    "senml": st.lists(senml_record, max_size=6) | envelope({"bn": [], "bt": [], "e": []}),
    "json": envelope(
        {"sensor_id": [], "ts": [], "time": [], "values": [], "metrics": [], "metric": [], "value": []}
    )
    | st.lists(envelope({"sensor_id": [], "ts": [], "values": []}), max_size=4)
    | st.dictionaries(
        st.text(max_size=5), st.lists(envelope({"ts": [], "values": []}), max_size=3), max_size=3
    ),
    "flat_json": envelope(
        {"Time": [], "last_seen": [], "state": [], "POWER": [], "DS18B20": ["Temperature"]}
    ),
}


def check(name: str, topic: str, payload: bytes, ctx: DecodeContext) -> None:
    try:
        got = get_decoder(name).decode(topic, payload, ctx)
    except DecodeError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        assert "\n" not in str(exc)
        return
    assert isinstance(got, Decoded)
    for reading in got.readings:
        assert type(reading.value) is float and math.isfinite(reading.value)
        assert abs(reading.value) <= MAX_ABS_VALUE
        assert reading.time.utcoffset() is not None and not reading.time.utcoffset()
        assert isinstance(reading.sensor_id, str) and reading.sensor_id
        assert isinstance(reading.metric, str)
    for reject in got.rejects:
        assert reject.reason and reject.detail


def dumps(value: Any) -> bytes:
    # NaN and Infinity go out as the literals some devices really send.
    return json.dumps(value).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("name", available_decoders())
@FUZZ
@given(data=st.data(), payload=st.binary(max_size=200), ctx=contexts)
def test_arbitrary_bytes(name: str, data: st.DataObject, payload: bytes, ctx: DecodeContext) -> None:
    topic = data.draw(st.sampled_from(TOPICS[name]) | st.text(max_size=30))
    check(name, topic, payload, ctx)


@pytest.mark.parametrize("name", available_decoders())
@FUZZ
@given(data=st.data(), value=json_values, ctx=contexts)
def test_arbitrary_json(name: str, data: st.DataObject, value: Any, ctx: DecodeContext) -> None:
    check(name, data.draw(st.sampled_from(TOPICS[name])), dumps(value), ctx)


@pytest.mark.parametrize("name", available_decoders())
@FUZZ
@given(data=st.data(), ctx=contexts)
def test_arbitrary_json_in_the_format_envelope(name: str, data: st.DataObject, ctx: DecodeContext) -> None:
    value = data.draw(ENVELOPES[name])
    check(name, data.draw(st.sampled_from(TOPICS[name])), dumps(value), ctx)
