"""What every encoder shares: topics with a prefix, time formats, and deliberately broken bytes.

An encoder is made for one fleet (it needs device names, applications, gateways) and turns a
``SimMessage`` into ``[(topic, payload bytes)]``. Payloads are compact JSON. A message marked
``malformed`` gets bytes no JSON parser accepts, chosen by a hash of the message id so runs
stay reproducible: a truncated payload, binary garbage, or invalid UTF-8 in the middle.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar

from simulators.fleet import Fleet
from simulators.ids import digest
from simulators.messages import SimMessage

__all__ = [
    "APPLICATION_NAMES",
    "Encoder",
    "b64",
    "break_payload",
    "dumps",
    "iso_ms",
    "proto_time",
    "rfc3339_nanos",
]

#: Names of the ChirpStack / The Things Stack application of each kind.
APPLICATION_NAMES = {
    "bin": "waste-bins",
    "light": "street-lights",
    "parking": "parking",
    "air": "air-quality",
}


def dumps(obj: Any) -> bytes:
    """Compact JSON, as gateways publish it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@lru_cache(maxsize=8192)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def iso_ms(ms: int) -> str:
    """``2024-03-01T17:05:09.123Z``."""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


def rfc3339_nanos(ms: int, zulu: bool = True) -> str:
    """Nine fractional digits, ``Z`` or ``+00:00`` (ChirpStack v4 writes ``+00:00``)."""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}000000{'Z' if zulu else '+00:00'}"


def proto_time(ms: int) -> str:
    """proto3 JSON Timestamp: 0, 3, 6 or 9 fractional digits as needed, always ``Z``."""
    frac = ms % 1000
    return f"{_second(ms // 1000)}{f'.{frac:03d}' if frac else ''}Z"


def break_payload(payload: bytes, message_id: str) -> bytes:
    """Bytes no JSON parser accepts, derived from a valid ``payload`` (an object or array)."""
    h = digest("malformed", message_id, size=4)
    mode = h[0] % 3
    if mode == 0 or len(payload) < 4:
        # Cut short (an MTU limit, a dropped connection): any proper prefix of an object is open.
        cut = 1 + int.from_bytes(h[1:3], "big") % max(len(payload) - 1, 1)
        return payload[:cut]
    if mode == 1:
        # Binary garbage: 0xFF can never start UTF-8, so even the decode fails.
        return b"\xff\xfe" + digest("garbage", message_id, size=14)
    middle = len(payload) // 2
    return payload[:middle] + b"\xc3\x28" + payload[middle:]


class Encoder(ABC):
    """Encodes messages of ``fleet`` into one gateway format.

    ``topic_prefix`` (e.g. a per-test prefix) is prepended to every topic with a ``/``.
    Subclasses set ``NAME`` and ``TOPIC_FILTER`` (the MQTT filter their topics match, before
    the prefix) and implement ``payload``.
    """

    NAME: ClassVar[str]
    TOPIC_FILTER: ClassVar[str]

    def __init__(self, fleet: Fleet, topic_prefix: str = "") -> None:
        self.fleet = fleet
        self.prefix = topic_prefix.strip("/") + "/" if topic_prefix.strip("/") else ""

    @property
    def topic_filter(self) -> str:
        """The MQTT subscription filter that matches this encoder's topics, prefix included."""
        return self.prefix + self.TOPIC_FILTER

    def encode(self, message: SimMessage) -> list[tuple[str, bytes]]:
        """``[(topic, payload)]`` for one message (broken bytes if it is ``malformed``)."""
        row = self.fleet.index[message.sensor_id]
        topic, payload = self.payload(row, message)
        if message.malformed:
            payload = break_payload(payload, message.message_id)
        return [(self.prefix + topic, payload)]

    @abstractmethod
    def payload(self, row: int, message: SimMessage) -> tuple[str, bytes]:
        """The topic (without prefix) and the valid payload for fleet row ``row``."""
