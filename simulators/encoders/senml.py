"""SenML JSON (RFC 8428): one pack per message, canonical metric names.

Topic ``sensors/senml/<sensor id>``. The first record carries the base name ``<sensor id>/``
and the base time (UTC epoch seconds, millisecond precision); every record has ``n`` (the
metric) and ``v``, and ``u`` where the metric has a SenML unit. Sensor id = ``bn`` without the
trailing ``/``; time = ``bt`` (+ ``t``, absent here). Sample::

    [{"bn":"70b3d59ccd09502f/","bt":1709251212.999,"n":"lamp_on","v":1.0},
     {"n":"power_w","u":"W","v":39.4},{"n":"energy_wh","u":"Wh","v":67326.7},
     {"n":"dim_level","u":"/","v":0.5},{"n":"voltage","u":"V","v":227.6}]
"""

from __future__ import annotations

from typing import Any, ClassVar

from simulators.encoders.base import Encoder, dumps
from simulators.messages import SimMessage

__all__ = ["NAME", "TOPIC_FILTER", "UNITS", "SenmlEncoder"]

NAME = "senml"
TOPIC_FILTER = "sensors/senml/+"

#: SenML units (RFC 8428 registry; ``Wh`` from RFC 8798) of the metrics that have one.
UNITS = {
    "fill_level": "/",
    "dim_level": "/",
    "battery": "%EL",
    "temperature": "Cel",
    "power_w": "W",
    "energy_wh": "Wh",
    "voltage": "V",
    "noise_db": "dB",
}


class SenmlEncoder(Encoder):
    NAME: ClassVar[str] = NAME
    TOPIC_FILTER: ClassVar[str] = TOPIC_FILTER

    def payload(self, row: int, message: SimMessage) -> tuple[str, bytes]:
        records: list[dict[str, Any]] = []
        for name, value in message.values.items():
            record: dict[str, Any] = {"n": name}
            if name in UNITS:
                record["u"] = UNITS[name]
            record["v"] = value
            records.append(record)
        if records:
            records[0] = {"bn": f"{message.sensor_id}/", "bt": message.time_ms / 1000, **records[0]}
        return f"sensors/senml/{message.sensor_id}", dumps(records)
