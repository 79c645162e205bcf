"""Gateway formats the simulator can publish in, by name (``--format chirpstack_v4``).

Each module holds one format: ``NAME``, ``TOPIC_FILTER`` and an ``Encoder`` subclass whose
``encode(message)`` returns ``[(topic, payload bytes)]``. Nothing here imports ``ingest``: the
decoders are tested against this independent encoder.
"""

from __future__ import annotations

import difflib

from sense311.errors import ConfigError
from simulators.encoders.base import Encoder
from simulators.encoders.chirpstack_v3 import ChirpstackV3Encoder
from simulators.encoders.chirpstack_v3_pbjson import ChirpstackV3PbjsonEncoder
from simulators.encoders.chirpstack_v4 import ChirpstackV4Encoder
from simulators.encoders.plain_json import PlainJsonEncoder
from simulators.encoders.senml import SenmlEncoder
from simulators.encoders.ttn_v3 import TtnV3Encoder
from simulators.encoders.zigbee2mqtt import Zigbee2MqttEncoder
from simulators.fleet import Fleet

__all__ = ["ENCODERS", "FORMATS", "TIME_FAITHFUL", "Encoder", "get_encoder"]

ENCODERS: dict[str, type[Encoder]] = {
    cls.NAME: cls
    for cls in (
        PlainJsonEncoder,
        SenmlEncoder,
        ChirpstackV4Encoder,
        ChirpstackV3Encoder,
        ChirpstackV3PbjsonEncoder,
        TtnV3Encoder,
        Zigbee2MqttEncoder,
    )
}
FORMATS: tuple[str, ...] = tuple(ENCODERS)
#: Formats whose payload carries the event time (Zigbee2MQTT does not: receive time applies).
TIME_FAITHFUL: frozenset[str] = frozenset(FORMATS) - {"zigbee2mqtt"}


def get_encoder(name: str, fleet: Fleet, topic_prefix: str = "") -> Encoder:
    """The encoder called ``name`` for ``fleet``; an unknown name gets a suggestion."""
    cls = ENCODERS.get(name)
    if cls is None:
        hint = difflib.get_close_matches(name, FORMATS, n=1)
        tip = f"did you mean {hint[0]!r}? " if hint else ""
        raise ConfigError(f"unknown format {name!r}; {tip}known formats: {', '.join(FORMATS)}")
    return cls(fleet, topic_prefix)
