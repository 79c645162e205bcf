"""The decoder contract.

A decoder is a module in ``ingest/decoders/`` exposing ``NAME: str`` and
``decode(topic: str, payload: bytes, ctx: DecodeContext) -> Decoded``. It sees
bytes and a topic, never paho objects. It returns readings whose ``metric`` is
the device's own field name (nested keys joined with ``.``); the field map in
``ingest/fieldmap.py`` turns those into canonical metrics afterwards.

Rules every decoder follows:

* a payload it cannot read at all raises ``DecodeError`` with a one-line message
  (the message is dead-lettered, ingest goes on);
* a single field it cannot read (``"No Sensor"``, a nested object, a non-finite
  number) becomes a ``FieldReject`` and the other fields are kept;
* a message that is valid but by its kind carries no measurement (a join event,
  a bridge log, an attribute update) returns ``Decoded(ignored=True)``; a
  measurement message that yields nothing raises ``DecodeError`` with
  ``reason="no_readings"``;
* times without a zone are UTC unless the decoder documents otherwise; a message
  without any time uses ``ctx.received_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sense311.types import Reading

__all__ = ["DecodeContext", "Decoded", "Decoder", "FieldReject"]


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What a decoder may know besides the payload.

    ``sensor_id`` is the id the route extracted from the topic, if its pattern
    names one; ``options`` are the route's decoder options from settings.
    """

    received_at: datetime
    sensor_id: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FieldReject:
    """One field that was refused while the rest of the message was kept."""

    sensor_id: str | None
    key: str
    value: Any
    reason: str
    detail: str


@dataclass(slots=True)
class Decoded:
    """The outcome of decoding one message."""

    readings: list[Reading] = field(default_factory=list)
    rejects: list[FieldReject] = field(default_factory=list)
    gateway_id: str | None = None
    rssi: float | None = None
    snr: float | None = None
    frame_counter: int | None = None
    message_id: str | None = None
    ignored: bool = False


class Decoder(Protocol):
    NAME: str

    def decode(self, topic: str, payload: bytes, ctx: DecodeContext) -> Decoded: ...

    def check_options(self, options: Mapping[str, Any]) -> None: ...
