"""ChirpStack v4 uplink events (MQTT integration, JSON mode).

Topic ``application/<application UUID>/device/<devEui>/event/up``. proto3 JSON: camelCase keys,
base64 ``data``, hex ids, every number in ``object`` a double (``795.0``); ``time`` has nine
fractional digits and ``+00:00``; ``rxInfo[]`` omits zero values. Sample (shortened)::

    {"deduplicationId":"…","time":"2024-03-01T00:00:00.328000000+00:00",
     "deviceInfo":{"tenantId":"…","tenantName":"sense311","applicationId":"…",
       "applicationName":"waste-bins","deviceProfileId":"…","deviceProfileName":"Milesight EM400-MUD",
       "deviceName":"bin-0001","devEui":"24e1244ed560e941","deviceClassEnabled":"CLASS_A",
       "tags":{"district":"oost","kind":"bin"}},
     "devAddr":"26…","adr":true,"dr":5,"fCnt":348,"fPort":85,"confirmed":false,"data":"AXVE…",
     "object":{"battery":68.0,"distance":795.0,"temperature":4.9,"position":"normal"},
     "rxInfo":[{"gatewayId":"7276ff…","uplinkId":123,"gwTime":"…","nsTime":"…","rssi":-65,
       "snr":13.5,"channel":2,"location":{"latitude":…,"longitude":…},"context":"…",
       "metadata":{"region_config_id":"eu868","region_common_name":"EU868"},"crcStatus":"CRC_OK"}],
     "txInfo":{"frequency":868500000,"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7,
       "codeRate":"CR_4_5"}}}}
"""

from __future__ import annotations

from typing import Any, ClassVar

from simulators.encoders.base import Encoder, b64, dumps, proto_time, rfc3339_nanos
from simulators.encoders.devices import F_PORT
from simulators.encoders.lorawan import BANDWIDTH_HZ, Uplink
from simulators.fleet import Fleet
from simulators.ids import stable_uuid
from simulators.messages import SimMessage

__all__ = ["NAME", "TOPIC_FILTER", "ChirpstackV4Encoder"]

NAME = "chirpstack_v4"
TOPIC_FILTER = "application/+/device/+/event/up"
TENANT_NAME = "sense311"


def _doubles(obj: dict[str, Any]) -> dict[str, Any]:
    # ChirpStack turns codec output into a protobuf Struct: every number becomes a double.
    return {
        k: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in obj.items()
    }


class ChirpstackV4Encoder(Encoder):
    NAME: ClassVar[str] = NAME
    TOPIC_FILTER: ClassVar[str] = TOPIC_FILTER

    def __init__(self, fleet: Fleet, topic_prefix: str = "") -> None:
        super().__init__(fleet, topic_prefix)
        self._devices: dict[int, tuple[str, dict[str, Any]]] = {}

    def _device(self, row: int, up: Uplink) -> tuple[str, dict[str, Any]]:
        cached = self._devices.get(row)
        if cached is None:
            fleet = self.fleet
            sensor = fleet.sensor_at(row)
            app = up.application_uuid()
            info = {
                "tenantId": stable_uuid("tenant", fleet.seed),
                "tenantName": TENANT_NAME,
                "applicationId": app,
                "applicationName": up.application_name(),
                "deviceProfileId": stable_uuid("device-profile", fleet.seed, sensor.kind),
                "deviceProfileName": sensor.metadata.get("model", sensor.kind),
                "deviceName": fleet.device_names[row],
                "devEui": sensor.id,
                "deviceClassEnabled": "CLASS_A",
                "tags": {"district": sensor.tags[1], "kind": sensor.kind},
            }
            cached = self._devices[row] = (app, info)
        return cached

    def payload(self, row: int, message: SimMessage) -> tuple[str, bytes]:
        up = Uplink(self.fleet, row, message)
        app, device_info = self._device(row, up)
        lat, lon = up.gateway_location
        rx: dict[str, Any] = {
            "gatewayId": up.gateway_id,
            "uplinkId": up.uplink_id,
            "gwTime": proto_time(message.time_ms),
            "nsTime": proto_time(message.time_ms),
            "rssi": message.rssi,
        }
        if message.snr:
            rx["snr"] = message.snr
        if up.channel:
            rx["channel"] = up.channel
        rx.update(
            location={"latitude": lat, "longitude": lon},
            context=b64(up.context),
            metadata={"region_config_id": "eu868", "region_common_name": "EU868"},
            crcStatus="CRC_OK",
        )
        body = {
            "deduplicationId": up.deduplication_id,
            "time": rfc3339_nanos(message.time_ms, zulu=False),
            "deviceInfo": device_info,
            "devAddr": up.dev_addr,
            "adr": True,
            "dr": up.dr,
            "fCnt": message.fcnt,
            "fPort": F_PORT,
            "confirmed": False,
            "data": b64(up.frame),
            "object": _doubles(up.fields),
            "rxInfo": [rx],
            "txInfo": {
                "frequency": up.frequency,
                "modulation": {
                    "lora": {
                        "bandwidth": BANDWIDTH_HZ,
                        "spreadingFactor": up.spreading_factor,
                        "codeRate": "CR_4_5",
                    }
                },
            },
        }
        return f"application/{app}/device/{message.sensor_id}/event/up", dumps(body)
