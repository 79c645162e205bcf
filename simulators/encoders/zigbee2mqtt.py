"""Zigbee2MQTT device state: flat JSON on ``zigbee2mqtt/<friendly name>``.

Friendly names are ``<district>/<kind>-<serial>`` (they contain ``/``; the registry holds them
as ``metadata.zigbee_name``). The payload carries **no time**: a decoder must use the time it
received the message, so this format is only time-faithful in real time — a backfill or a
time-warped run published in it lands at receive time, and ``clock_skew`` has nothing to shift.
Sample::

    zigbee2mqtt/zuidwest/light-0006
    {"state":"ON","brightness":127,"power":39.4,"energy":67.3267,"voltage":227.6,"linkquality":148}
"""

from __future__ import annotations

from typing import ClassVar

from simulators.encoders.base import Encoder, dumps
from simulators.encoders.devices import zigbee_fields
from simulators.messages import SimMessage

__all__ = ["NAME", "TOPIC_FILTER", "Zigbee2MqttEncoder", "link_quality"]

NAME = "zigbee2mqtt"
TOPIC_FILTER = "zigbee2mqtt/#"


def link_quality(rssi: int) -> int:
    """Zigbee LQI (0–255) for a received signal strength (dBm): linear from -100 to -40 dBm."""
    return max(0, min(255, round((rssi + 100) * 255 / 60)))


class Zigbee2MqttEncoder(Encoder):
    NAME: ClassVar[str] = NAME
    TOPIC_FILTER: ClassVar[str] = TOPIC_FILTER

    def payload(self, row: int, message: SimMessage) -> tuple[str, bytes]:
        body = zigbee_fields(message.kind, message.values, link_quality(message.rssi))
        return f"zigbee2mqtt/{self.fleet.zigbee_names[row]}", dumps(body)
