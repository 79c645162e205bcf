"""Golden cases: ``tests/ingest/cases/<decoder>/<case>/`` walked by one test.

A case folder holds:

``topic``          the MQTT topic, one line
``payload``        the message body, byte for byte; or, when absent,
``source``         a path under ``tests/fixtures/formats`` whose file is the body. With
                   both, ``source`` names the codec output (``"decoded"``) the payload embeds.
``context.json``   optional ``received_at`` (default 2024-05-01T12:00:00Z), ``sensor_id``
                   (what the route would capture) and decoder ``options``
``expected.json``  ``{"error": reason}``, or ``{"ignored": true}``, or ``readings`` (time,
                   sensor_id, metric, value, optional unit and key; key defaults to metric)
                   and ``rejects`` (sensor_id, key, reason) in order, plus any of
                   gateway_id, rssi, snr, frame_counter, message_id to check.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.decoders import _common, available_decoders, get_decoder
from ingest.decoders.base import DecodeContext, Decoded
from ingest.errors import DecodeError

TESTS = Path(__file__).resolve().parents[2]
CASES = TESTS / "ingest" / "cases"
FIXTURES = TESTS / "fixtures" / "formats"
DEFAULT_RECEIVED_AT = "2024-05-01T12:00:00Z"
PROVENANCE = ("gateway_id", "rssi", "snr", "frame_counter", "message_id")

CASE_DIRS = sorted(p.parent for p in CASES.glob("*/*/expected.json"))


def _time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, f"expected times must carry a zone: {text}"
    return parsed.astimezone(UTC)


def load_case(folder: Path) -> tuple[str, str, bytes, DecodeContext, dict[str, Any]]:
    topic = (folder / "topic").read_text().strip()
    source = folder / "source"
    payload_file = folder / "payload"
    if payload_file.exists():
        payload = payload_file.read_bytes()
    else:
        payload = (FIXTURES / source.read_text().strip()).read_bytes()
    context_file = folder / "context.json"
    context = json.loads(context_file.read_text()) if context_file.exists() else {}
    ctx = DecodeContext(
        received_at=_time(context.get("received_at", DEFAULT_RECEIVED_AT)),
        sensor_id=context.get("sensor_id"),
        options=context.get("options", {}),
    )
    expected = json.loads((folder / "expected.json").read_text())
    return folder.parent.name, topic, payload, ctx, expected


def _reading(r: Any) -> dict[str, Any]:
    return {
        "time": r.time,
        "sensor_id": r.sensor_id,
        "metric": r.metric,
        "value": r.value,
        "unit": r.unit,
        "key": r.key,
    }


def _expected_reading(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": _time(r["time"]),
        "sensor_id": r["sensor_id"],
        "metric": r["metric"],
        "value": float(r["value"]),
        "unit": r.get("unit"),
        "key": r.get("key", r["metric"]),
    }


@pytest.fixture(params=["orjson", "stdlib"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each case with orjson (when installed) and with the standard library parser."""
    if request.param == "orjson":
        if _common.orjson is None:
            pytest.skip("orjson is not installed")
    else:
        monkeypatch.setattr(_common, "orjson", None)
    return str(request.param)


@pytest.mark.parametrize("folder", CASE_DIRS, ids=[f"{p.parent.name}/{p.name}" for p in CASE_DIRS])
def test_case(folder: Path, json_backend: str) -> None:
    decoder_name, topic, payload, ctx, expected = load_case(folder)
    decoder = get_decoder(decoder_name)
    if "error" in expected:
        with pytest.raises(DecodeError) as info:
            decoder.decode(topic, payload, ctx)
        assert info.value.reason == expected["error"], str(info.value)
        message = str(info.value)
        assert message and "\n" not in message and len(message) < 500
        return
    got = decoder.decode(topic, payload, ctx)
    assert isinstance(got, Decoded)
    if expected.get("ignored"):
        assert got.ignored and not got.readings and not got.rejects
        return
    assert not got.ignored
    assert [_reading(r) for r in got.readings] == [_expected_reading(r) for r in expected["readings"]]
    assert [(x.sensor_id, x.key, x.reason) for x in got.rejects] == [
        (x["sensor_id"], x["key"], x["reason"]) for x in expected["rejects"]
    ]
    for reject in got.rejects:
        assert reject.detail and "\n" not in reject.detail
    for reading in got.readings:
        assert reading.time.utcoffset() is not None and reading.time.utcoffset().total_seconds() == 0
        assert type(reading.value) is float
    for name in PROVENANCE:
        if name in expected:
            assert getattr(got, name) == expected[name], name


def test_every_fixture_is_covered() -> None:
    sources = {(p / "source").read_text().strip() for p in CASE_DIRS if (p / "source").exists()}
    files = [p for p in FIXTURES.rglob("*") if p.is_file() and p.name != "MANIFEST.md"]
    fixtures = {p.relative_to(FIXTURES).as_posix() for p in files}
    assert fixtures - sources == set(), "fixtures without a golden case"
    assert sources - fixtures == set(), "golden cases naming missing fixtures"


def test_every_fixture_is_attributed() -> None:
    manifest = (FIXTURES / "MANIFEST.md").read_text()
    for path in FIXTURES.rglob("*"):
        if path.is_file() and path.name != "MANIFEST.md":
            assert f"| {path.parent.name} | {path.name} |" in manifest, path


def test_every_decoder_has_cases() -> None:
    assert {p.parent.name for p in CASE_DIRS} == set(available_decoders())


@pytest.mark.parametrize(
    "folder",
    [p for p in CASE_DIRS if (p / "source").exists() and (p / "payload").exists()],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_embedded_codec_output_matches_its_fixture(folder: Path) -> None:
    fixture = json.loads((FIXTURES / (folder / "source").read_text().strip()).read_text())
    payload = json.loads((folder / "payload").read_bytes())
    embedded = payload.get("object") or payload.get("uplink_message", {}).get("decoded_payload")
    assert embedded == fixture["decoded"]
