"""Plain JSON: ``{"sensor_id": …, "ts": …, "metrics": {…}}`` with canonical metric names.

Topic ``sensors/json/<sensor id>``; ``ts`` is ISO 8601 UTC with milliseconds. Sample::

    sensors/json/24e1244ed560e941
    {"sensor_id":"24e1244ed560e941","ts":"2024-03-01T00:00:17.123Z",
     "metrics":{"fill_level":0.47,"distance_mm":795.0,"battery":68.0,"temperature":4.9}}
"""

from __future__ import annotations

from typing import ClassVar

from simulators.encoders.base import Encoder, dumps, iso_ms
from simulators.messages import SimMessage

__all__ = ["NAME", "TOPIC_FILTER", "PlainJsonEncoder"]

NAME = "json"
TOPIC_FILTER = "sensors/json/+"


class PlainJsonEncoder(Encoder):
    NAME: ClassVar[str] = NAME
    TOPIC_FILTER: ClassVar[str] = TOPIC_FILTER

    def payload(self, row: int, message: SimMessage) -> tuple[str, bytes]:
        body = {"sensor_id": message.sensor_id, "ts": iso_ms(message.time_ms), "metrics": message.values}
        return f"sensors/json/{message.sensor_id}", dumps(body)
