"""Every encoder writes what its gateway writes (structure, ids, times), and the field map
turns the device fields back into the canonical values."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sense311.errors import ConfigError
from simulators import FIELD_MAP, FORMATS, get_encoder
from simulators.encoders import TIME_FAITHFUL
from simulators.encoders.base import break_payload
from simulators.fieldmap import IGNORED, INGEST_FIELD_MAP, apply_field_map
from simulators.fleet import Fleet
from simulators.messages import SimMessage
from tests.simulators.simhelp import Run

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "formats"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
HEX16 = r"[0-9a-f]{16}"


def one_of_each_kind(run: Run) -> list[SimMessage]:
    found: dict[str, SimMessage] = {}
    for m in run.messages:
        if m.kind not in found and not m.malformed:
            # A lit lamp says more than a dark one.
            if m.kind == "light" and not m.values["lamp_on"]:
                continue
            found[m.kind] = m
    return list(found.values())


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_time(text: str) -> datetime:
    # Python parses at most 6 fractional digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def matches(topic_filter: str, topic: str) -> bool:
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


@pytest.mark.parametrize("fmt", FORMATS)
def test_topics_match_the_encoders_filter_with_and_without_prefix(
    clean_run: Run, fleet: Fleet, fmt: str
) -> None:
    for prefix in ("", "t/abc123/"):
        enc = get_encoder(fmt, fleet, prefix)
        for m in one_of_each_kind(clean_run):
            ((topic, _),) = enc.encode(m)
            assert topic.startswith(prefix)
            assert matches(enc.topic_filter, topic), (enc.topic_filter, topic)


def test_plain_json(clean_run: Run, fleet: Fleet) -> None:
    enc = get_encoder("json", fleet)
    for m in one_of_each_kind(clean_run):
        ((topic, payload),) = enc.encode(m)
        body = json.loads(payload)
        assert topic == f"sensors/json/{m.sensor_id}"
        assert set(body) == {"sensor_id", "ts", "metrics"}
        assert body["sensor_id"] == m.sensor_id
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["ts"])
        assert parse_time(body["ts"]) == when(m.time_ms)
        assert body["metrics"] == m.values


def test_senml_pack(clean_run: Run, fleet: Fleet) -> None:
    enc = get_encoder("senml", fleet)
    for m in one_of_each_kind(clean_run):
        ((topic, payload),) = enc.encode(m)
        pack = json.loads(payload)
        assert topic == f"sensors/senml/{m.sensor_id}"
        assert isinstance(pack, list) and pack
        base = pack[0]
        assert base["bn"] == f"{m.sensor_id}/"
        assert base["bt"] == pytest.approx(m.time_ms / 1000, abs=1e-6)
        # Resolved per RFC 8428: name = bn + n, time = bt + t, value = v.
        resolved = {f"{base['bn']}{r['n']}": r["v"] for r in pack}
        assert resolved == {f"{m.sensor_id}/{k}": v for k, v in m.values.items()}
        assert all(set(r) <= {"bn", "bt", "n", "u", "v"} and "t" not in r for r in pack)
        units = {r["n"]: r.get("u") for r in pack}
        if m.kind == "bin":
            assert units["fill_level"] == "/" and units["battery"] == "%EL" and units["temperature"] == "Cel"
        if m.kind == "light":
            assert units["power_w"] == "W" and units["voltage"] == "V"


def test_chirpstack_v4_uplink(clean_run: Run, fleet: Fleet) -> None:
    enc = get_encoder("chirpstack_v4", fleet)
    reference = sample("chirpstack_v4/docs-event-up.json")
    for m in one_of_each_kind(clean_run):
        ((topic, payload),) = enc.encode(m)
        body = json.loads(payload)
        assert re.fullmatch(rf"application/{UUID}/device/{m.sensor_id}/event/up", topic)
        assert set(reference) <= set(body)
        assert set(reference["deviceInfo"]) - {"tags"} <= set(body["deviceInfo"])
        assert body["deviceInfo"]["devEui"] == m.sensor_id
        assert topic.split("/")[1] == body["deviceInfo"]["applicationId"]
        assert re.fullmatch(UUID, body["deduplicationId"])
        assert re.fullmatch(r"\S+T\S+\.\d{9}\+00:00", body["time"])
        assert parse_time(body["time"]) == when(m.time_ms)
        assert body["fCnt"] == m.fcnt and body["fPort"] == 85
        assert base64.b64decode(body["data"])
        assert all(isinstance(v, float) for v in body["object"].values() if not isinstance(v, str | bool))
        (rx,) = body["rxInfo"]
        assert re.fullmatch(HEX16, rx["gatewayId"]) and rx["gatewayId"] == m.gateway_id
        assert rx["rssi"] == m.rssi
        assert "snr" not in rx or rx["snr"] == m.snr
        assert body["txInfo"]["modulation"]["lora"]["spreadingFactor"] in range(7, 13)


def test_chirpstack_v4_omits_zero_values_in_rx_info(clean_run: Run, fleet: Fleet) -> None:
    m = one_of_each_kind(clean_run)[0]
    zero = SimMessage(**{**{f: getattr(m, f) for f in SimMessage.__dataclass_fields__}, "snr": 0.0})
    ((_, payload),) = get_encoder("chirpstack_v4", fleet).encode(zero)
    assert "snr" not in json.loads(payload)["rxInfo"][0]


def test_chirpstack_v3_json(clean_run: Run, fleet: Fleet) -> None:
    enc = get_encoder("chirpstack_v3", fleet)
    reference = sample("chirpstack_v3/docs-json_v3-up.json")
    for m in one_of_each_kind(clean_run):
        ((topic, payload),) = enc.encode(m)
        body = json.loads(payload)
        assert re.fullmatch(rf"application/\d+/device/{m.sensor_id}/event/up", topic)
        assert set(reference) <= set(body)
        assert "time" not in body and "deviceInfo" not in body
        assert body["devEUI"] == m.sensor_id
        (rx,) = body["rxInfo"]
        assert parse_time(rx["time"]) == when(m.time_ms)
        assert rx["gatewayID"] == m.gateway_id and rx["loRaSNR"] == m.snr
        assert isinstance(body["object"], dict)


def test_chirpstack_v3_protobuf_json(clean_run: Run, fleet: Fleet) -> None:
    enc = get_encoder("chirpstack_v3_pbjson", fleet)
    reference = sample("chirpstack_v3/docs-pbjson-up.json")
    for m in one_of_each_kind(clean_run):
        ((_topic, payload),) = enc.encode(m)
        body = json.loads(payload)
        assert set(reference) <= set(body)
        assert base64.b64decode(body["devEUI"]) == bytes.fromhex(m.sensor_id)
        (rx,) = body["rxInfo"]
        assert set(reference["rxInfo"][0]) <= set(rx)
        assert base64.b64decode(rx["gatewayID"]) == bytes.fromhex(m.gateway_id)
        assert parse_time(rx["time"]) == when(m.time_ms)
        assert isinstance(body["objectJSON"], str)
        assert isinstance(json.loads(body["objectJSON"]), dict)


def test_the_things_stack_uplink(clean_run: Run, fleet: Fleet) -> None:
    enc = get_encoder("ttn_v3", fleet)
    reference = sample("ttn_v3/docs-data-formats-uplink-decoded-payload.json")
    for m in one_of_each_kind(clean_run):
        ((topic, payload),) = enc.encode(m)
        body = json.loads(payload)
        ids = body["end_device_ids"]
        assert topic == f"v3/{ids['application_ids']['application_id']}@sense311/devices/eui-{m.sensor_id}/up"
        assert set(reference) <= set(body)
        assert ids["dev_eui"] == m.sensor_id.upper() and ids["device_id"] == f"eui-{m.sensor_id}"
        up = body["uplink_message"]
        assert {"f_port", "f_cnt", "frm_payload", "decoded_payload", "rx_metadata", "settings"} <= set(up)
        assert isinstance(up["settings"]["frequency"], str)
        assert re.fullmatch(r"\S+T\S+\.\d{9}Z", body["received_at"])
        assert parse_time(body["received_at"]) == when(m.time_ms)
        (rx,) = up["rx_metadata"]
        assert rx["rssi"] == m.rssi and rx["gateway_ids"]["eui"] == m.gateway_id.upper()
        assert all(
            c.split(":")[-1].isalnum() and len(c.split(":")[-1]) == 26 for c in body["correlation_ids"]
        )


def test_the_things_stack_omits_a_zero_frame_counter(clean_run: Run, fleet: Fleet) -> None:
    m = one_of_each_kind(clean_run)[0]
    first = SimMessage(**{**{f: getattr(m, f) for f in SimMessage.__dataclass_fields__}, "fcnt": 0})
    ((_, payload),) = get_encoder("ttn_v3", fleet).encode(first)
    assert "f_cnt" not in json.loads(payload)["uplink_message"]


def test_zigbee2mqtt_flat_state_without_time(clean_run: Run, fleet: Fleet) -> None:
    enc = get_encoder("zigbee2mqtt", fleet)
    names = {s.id: s.metadata["zigbee_name"] for s in fleet.sensors()}
    for m in one_of_each_kind(clean_run):
        ((topic, payload),) = enc.encode(m)
        body = json.loads(payload)
        assert topic == f"zigbee2mqtt/{names[m.sensor_id]}"
        assert all(not isinstance(v, dict | list) for v in body.values())
        assert not {"time", "ts", "timestamp", "last_seen"} & set(body)
        assert 0 <= body["linkquality"] <= 255
    assert "zigbee2mqtt" not in TIME_FAITHFUL


def _device_fields(fmt: str, payload: bytes) -> dict:
    body = json.loads(payload)
    if fmt == "chirpstack_v4" or fmt == "chirpstack_v3":
        return body["object"]
    if fmt == "chirpstack_v3_pbjson":
        return json.loads(body["objectJSON"])
    if fmt == "ttn_v3":
        return body["uplink_message"]["decoded_payload"]
    if fmt == "json":
        return body["metrics"]
    if fmt == "senml":
        return {r["n"]: r["v"] for r in body}
    return body


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_field_map_gives_back_the_canonical_values(clean_run: Run, fleet: Fleet, fmt: str) -> None:
    enc = get_encoder(fmt, fleet)
    assert set(FIELD_MAP[fmt]) == set(fleet.counts)
    for m in clean_run.messages[:2000]:
        ((_, payload),) = enc.encode(m)
        fields = _device_fields(fmt, payload)
        assert set(fields) - set(IGNORED[fmt]) <= set(FIELD_MAP[fmt][m.kind])
        metrics = apply_field_map(fmt, m.kind, fields, fleet.sensor(m.sensor_id).metadata)
        assert set(metrics) == set(m.values)
        for name, value in m.values.items():
            assert metrics[name] == pytest.approx(value, abs=2e-4 if name == "fill_level" else 1e-6)


def _ingest_style(fmt: str, fields: dict, metadata: dict) -> dict[str, float]:
    """What ingest's field-map syntax means: rename, scale, fill_from_distance; on/off and
    booleans read as 1/0; fields without an entry are not measurements."""
    out: dict[str, float] = {}
    for name, raw in fields.items():
        entry = INGEST_FIELD_MAP[fmt].get(name)
        if entry is None:
            assert name in IGNORED[fmt]
            continue
        value = {"on": 1.0, "off": 0.0}[raw.lower()] if isinstance(raw, str) else float(raw)
        for target in entry if isinstance(entry, list) else [entry]:
            if isinstance(target, str):
                out[target] = value
            elif target.get("transform") == "fill_from_distance":
                out[target["metric"]] = min(1.0, max(0.0, 1.0 - value / metadata["depth_mm"]))
            else:
                out[target["metric"]] = value * target.get("scale", 1.0)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_ingest_field_map_gives_back_the_canonical_values(clean_run: Run, fleet: Fleet, fmt: str) -> None:
    enc = get_encoder(fmt, fleet)
    for m in clean_run.messages[:1000]:
        ((_, payload),) = enc.encode(m)
        metrics = _ingest_style(fmt, _device_fields(fmt, payload), fleet.sensor(m.sensor_id).metadata)
        assert set(metrics) == set(m.values)
        for name, value in m.values.items():
            assert metrics[name] == pytest.approx(value, abs=2e-4 if name == "fill_level" else 1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_payloads_do_not_parse(clean_run: Run, fleet: Fleet, fmt: str) -> None:
    enc = get_encoder(fmt, fleet)
    for m in clean_run.messages[:300]:
        broken = SimMessage(
            **{**{f: getattr(m, f) for f in SimMessage.__dataclass_fields__}, "malformed": True}
        )
        ((topic, payload),) = enc.encode(broken)
        ((good_topic, good),) = enc.encode(m)
        assert topic == good_topic and payload != good
        with pytest.raises(ValueError):
            json.loads(payload)


def test_every_way_of_breaking_a_payload_is_used() -> None:
    payload = b'{"a":1,"b":[1,2,3],"c":"text"}'
    outputs = {break_payload(payload, f"id:{i}") for i in range(60)}
    assert any(p.startswith(b"\xff") for p in outputs)
    assert any(payload.startswith(p) for p in outputs)
    assert any(b"\xc3\x28" in p for p in outputs)


def test_an_unknown_format_gets_a_suggestion(fleet: Fleet) -> None:
    with pytest.raises(ConfigError, match="unknown format 'chirpstack4'; did you mean 'chirpstack_v4'"):
        get_encoder("chirpstack4", fleet)
