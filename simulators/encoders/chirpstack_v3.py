"""ChirpStack Application Server v3 uplinks, ``json_v3`` marshaler.

Topic ``application/<numeric application id>/device/<devEUI>/event/up``. Hex ids, a nested
``object``, no top-level time: the event time is ``rxInfo[].time`` (nanoseconds, ``Z``).
Sample (shortened)::

    {"applicationID":"1","applicationName":"waste-bins","deviceName":"bin-0001",
     "devEUI":"24e1244ed560e941","rxInfo":[{"gatewayID":"7276ff…","name":"gw-…",
       "time":"2024-03-01T00:00:00.328000000Z","rssi":-65,"loRaSNR":13.5,
       "location":{"latitude":…,"longitude":…,"altitude":12.0}}],
     "txInfo":{"frequency":868500000,"dr":5},"adr":true,"fCnt":348,"fPort":85,"data":"AXVE…",
     "object":{"battery":68,"distance":795,"temperature":4.9,"position":"normal"},
     "tags":{"district":"oost","kind":"bin"}}
"""

from __future__ import annotations

from typing import Any, ClassVar

from simulators.encoders.base import Encoder, b64, dumps, rfc3339_nanos
from simulators.encoders.devices import F_PORT
from simulators.encoders.lorawan import Uplink
from simulators.messages import SimMessage

__all__ = ["APPLICATION_IDS", "GATEWAY_ALTITUDE_M", "NAME", "TOPIC_FILTER", "ChirpstackV3Encoder", "common"]

NAME = "chirpstack_v3"
TOPIC_FILTER = "application/+/device/+/event/up"
#: ChirpStack v3 numbers its applications; one per kind.
APPLICATION_IDS = {"bin": 1, "light": 2, "parking": 3, "air": 4}
#: Gateways sit on rooftops.
GATEWAY_ALTITUDE_M = 12.0


def common(encoder: Encoder, row: int, message: SimMessage, up: Uplink) -> dict[str, Any]:
    """The fields both v3 marshalers share, in their order."""
    return {
        "applicationID": str(APPLICATION_IDS.get(message.kind, 0)),
        "applicationName": up.application_name(),
        "deviceName": encoder.fleet.device_names[row],
        "tags": {"district": encoder.fleet.district_slugs[row], "kind": message.kind},
    }


class ChirpstackV3Encoder(Encoder):
    NAME: ClassVar[str] = NAME
    TOPIC_FILTER: ClassVar[str] = TOPIC_FILTER

    def payload(self, row: int, message: SimMessage) -> tuple[str, bytes]:
        up = Uplink(self.fleet, row, message)
        lat, lon = up.gateway_location
        base = common(self, row, message, up)
        body = {
            "applicationID": base["applicationID"],
            "applicationName": base["applicationName"],
            "deviceName": base["deviceName"],
            "devEUI": message.sensor_id,
            "rxInfo": [
                {
                    "gatewayID": up.gateway_id,
                    "name": f"gw-{up.gateway_id[-6:]}",
                    "time": rfc3339_nanos(message.time_ms),
                    "rssi": message.rssi,
                    "loRaSNR": message.snr,
                    "location": {"latitude": lat, "longitude": lon, "altitude": GATEWAY_ALTITUDE_M},
                }
            ],
            "txInfo": {"frequency": up.frequency, "dr": up.dr},
            "adr": True,
            "fCnt": message.fcnt,
            "fPort": F_PORT,
            "data": b64(up.frame),
            "object": up.fields,
            "tags": base["tags"],
        }
        topic = f"application/{base['applicationID']}/device/{message.sensor_id}/event/up"
        return topic, dumps(body)
