"""Helpers shared by the decoders: JSON loading with and without orjson, EUIs, switch keys, options."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ingest.decoders import _common
from ingest.decoders._common import (
    OptionCache,
    best_rx,
    load_json,
    normalize_eui,
    on_off_keys,
)
from ingest.errors import DecodeError
from ingest.values import MAX_ABS_VALUE, NonFinite


@pytest.fixture(params=["orjson", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "orjson" and _common.orjson is None:
        pytest.skip("orjson is not installed")
    if request.param == "stdlib":
        monkeypatch.setattr(_common, "orjson", None)
    yield request.param


def test_plain_json(backend: str) -> None:
    assert load_json(b'{"a": [1, 2.5, "x", true, null]}') == {"a": [1, 2.5, "x", True, None]}


def test_non_finite_literals_become_markers(backend: str) -> None:
    value = load_json(b'{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1}')
    assert [type(value[k]) for k in "abc"] == [NonFinite] * 3
    assert [value[k].literal for k in "abc"] == ["NaN", "Infinity", "-Infinity"]
    assert value["d"] == 1


def test_byte_order_mark_is_skipped(backend: str) -> None:
    assert load_json(b"\xef\xbb\xbf[1]") == [1]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b"{'a': 1}", "invalid_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"a": "\xc3"}', "invalid_utf8"),
        (b'"\\ud800"', "invalid_json"),  # a lone surrogate could not be stored as UTF-8
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    ],
)
def test_unreadable_payloads(backend: str, payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        load_json(payload)
    assert info.value.reason == reason
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_surrogate_pairs_are_fine(backend: str) -> None:
    assert load_json(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_integers_beyond_python_digit_limit_stay_out_of_range(backend: str) -> None:
    value = load_json(b'{"a": ' + b"9" * 5000 + b', "b": -' + b"9" * 5000 + b', "c": 1}')
    assert abs(value["a"]) > MAX_ABS_VALUE and value["a"] > 0
    assert abs(value["b"]) > MAX_ABS_VALUE and value["b"] < 0
    assert value["c"] == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0101010101010101", "0101010101010101"),
        ("0004A30B001C0530", "0004a30b001c0530"),
        (" 0004A30B001C0530 ", "0004a30b001c0530"),
        ("00-04-A3-0B-00-1C-05-30", "0004a30b001c0530"),
        ("00:04:a3:0b:00:1c:05:30", "0004a30b001c0530"),
        ("0004A30B001C053", None),
        ("0004A30B001C0530FF", None),
        ("zz04a30b001c0530", None),
        ("AgICAgICAgI=", None),
        (None, None),
        (1234, None),
    ],
)
def test_normalize_eui(raw: Any, expected: str | None) -> None:
    assert normalize_eui(raw) == expected


@pytest.mark.parametrize(
    ("key", "switch"),
    [
        ("state", True),
        ("STATE", True),
        ("state_l1", True),
        ("state_left", True),
        ("POWER", True),
        ("POWER2", True),
        ("update.state", True),
        ("power_factor", False),
        ("power_on_behavior", False),
        ("statement", False),
        ("brightness", False),
        ("switch_1", False),
    ],
)
def test_switch_keys(key: str, switch: bool) -> None:
    assert on_off_keys(key) is switch


def test_best_reception() -> None:
    a, b = {"id": "a", "rssi": -120}, {"id": "b"}  # b: rssi omitted as the protobuf default 0
    assert best_rx([a, b]) is b
    assert best_rx([a, {"id": "c", "rssi": "loud"}]) is a
    assert best_rx([{"id": "x", "channel_rssi": -50}, a], ("rssi", "channel_rssi"))["id"] == "x"  # type: ignore[index]
    assert best_rx("nope") is None and best_rx([]) is None and best_rx([1, "x"]) is None


def test_option_cache_is_keyed_by_identity_and_bounded() -> None:
    built: list[dict[str, Any]] = []

    def build(options: Any) -> int:
        built.append(options)
        return len(built)

    cache = OptionCache(build, size=4)
    first, second = {"a": 1}, {"a": 1}
    assert cache.get(first) == 1 and cache.get(first) == 1
    assert cache.get(second) == 2  # equal but not the same route: built again
    for i in range(10):
        cache.get({"i": i})
    assert len(cache._entries) <= 4
