"""ChirpStack Application Server v3 uplinks, protobuf-JSON marshaler (3.11+).

Same topic as ``json_v3``; ids are base64 of their bytes (``devEUI``, ``gatewayID``), the
decoded payload is ``objectJSON``, a JSON *string* to be parsed again, times are proto3
timestamps. Sample (shortened)::

    {"applicationID":"1","applicationName":"waste-bins","deviceName":"bin-0001",
     "devEUI":"JOEkTtVg6UE=","rxInfo":[{"gatewayID":"cnb/…","time":"2024-03-01T00:00:00.328Z",
       "timeSinceGPSEpoch":null,"rssi":-65,"loRaSNR":13.5,"channel":2,"rfChain":0,"board":0,
       "antenna":0,"location":{…},"fineTimestampType":"NONE","context":"…","uplinkID":"…"}],
     "txInfo":{"frequency":868500000,"modulation":"LORA","loRaModulationInfo":{"bandwidth":125,
       "spreadingFactor":7,"codeRate":"4/5","polarizationInversion":false}},
     "adr":true,"dr":5,"fCnt":348,"fPort":85,"data":"AXVE…",
     "objectJSON":"{\\"battery\\":68,\\"distance\\":795,…}","tags":{…},
     "confirmedUplink":false,"devAddr":"JgAAAA==","publishedAt":"2024-03-01T00:00:00.328Z"}
"""

from __future__ import annotations

from typing import ClassVar

from simulators.encoders.base import Encoder, b64, dumps, proto_time
from simulators.encoders.chirpstack_v3 import GATEWAY_ALTITUDE_M, common
from simulators.encoders.devices import F_PORT
from simulators.encoders.lorawan import Uplink
from simulators.ids import digest
from simulators.messages import SimMessage

__all__ = ["NAME", "TOPIC_FILTER", "ChirpstackV3PbjsonEncoder"]

NAME = "chirpstack_v3_pbjson"
TOPIC_FILTER = "application/+/device/+/event/up"


def _b64hex(hex_id: str) -> str:
    return b64(bytes.fromhex(hex_id))


class ChirpstackV3PbjsonEncoder(Encoder):
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
            "devEUI": _b64hex(message.sensor_id),
            "rxInfo": [
                {
                    "gatewayID": _b64hex(up.gateway_id),
                    "time": proto_time(message.time_ms),
                    "timeSinceGPSEpoch": None,
                    "rssi": message.rssi,
                    "loRaSNR": message.snr,
                    "channel": up.channel,
                    "rfChain": 0,
                    "board": 0,
                    "antenna": 0,
                    "location": {"latitude": lat, "longitude": lon, "altitude": GATEWAY_ALTITUDE_M},
                    "fineTimestampType": "NONE",
                    "context": b64(up.context),
                    "uplinkID": b64(digest("uplink-id", message.message_id, size=16)),
                }
            ],
            "txInfo": {
                "frequency": up.frequency,
                "modulation": "LORA",
                "loRaModulationInfo": {
                    "bandwidth": 125,
                    "spreadingFactor": up.spreading_factor,
                    "codeRate": "4/5",
                    "polarizationInversion": False,
                },
            },
            "adr": True,
            "dr": up.dr,
            "fCnt": message.fcnt,
            "fPort": F_PORT,
            "data": b64(up.frame),
            "objectJSON": dumps(up.fields).decode(),
            "tags": base["tags"],
            "confirmedUplink": False,
            "devAddr": _b64hex(up.dev_addr),
            "publishedAt": proto_time(message.time_ms),
        }
        topic = f"application/{base['applicationID']}/device/{message.sensor_id}/event/up"
        return topic, dumps(body)
