"""The Things Stack v3 uplink messages (MQTT server).

Topic ``v3/<application id>@<tenant>/devices/<device id>/up``; device id ``eui-<deveui>``,
``end_device_ids.dev_eui`` upper-case hex, ``uplink_message.decoded_payload`` the codec output,
``rx_metadata[]`` per gateway, ``received_at`` with nanoseconds. Empty fields are omitted
(``f_cnt`` 0, ``snr`` 0); ``frequency`` is a string. Sample (shortened)::

    {"end_device_ids":{"device_id":"eui-24e1244ed560e941",
       "application_ids":{"application_id":"waste-bins"},"dev_eui":"24E1244ED560E941",
       "join_eui":"24E124C0002A0001","dev_addr":"26…"},
     "correlation_ids":["as:up:01HQ…","gs:uplink:01HQ…","ns:uplink:01HQ…"],
     "received_at":"2024-03-01T00:00:00.328000000Z",
     "uplink_message":{"session_key_id":"…","f_port":85,"f_cnt":348,"frm_payload":"AXVE…",
       "decoded_payload":{"battery":68,"distance":795,"temperature":4.9,"position":"normal"},
       "rx_metadata":[{"gateway_ids":{"gateway_id":"gw-7276ff…","eui":"7276FF…"},
         "time":"…","timestamp":123456789,"rssi":-65,"channel_rssi":-65,"snr":13.5,
         "uplink_token":"…","channel_index":2,"received_at":"…","location":{…}}],
       "settings":{"data_rate":{"lora":{"bandwidth":125000,"spreading_factor":7,
         "coding_rate":"4/5"}},"frequency":"868500000","timestamp":123456789,"time":"…"},
       "received_at":"…","consumed_airtime":"0.061696s",
       "network_ids":{"net_id":"000013","tenant_id":"sense311","cluster_id":"eu1"}}}

Every time field carries the event time, so a ``clock_skew`` fault shows in all of them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from simulators.encoders.base import Encoder, b64, dumps, rfc3339_nanos
from simulators.encoders.devices import F_PORT
from simulators.encoders.lorawan import BANDWIDTH_HZ, Uplink
from simulators.ids import VENDOR_OUI, digest
from simulators.messages import SimMessage

__all__ = ["NAME", "TENANT", "TOPIC_FILTER", "TtnV3Encoder", "ulid"]

NAME = "ttn_v3"
TOPIC_FILTER = "v3/+/devices/+/up"
TENANT = "sense311"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(ms: int, *parts: object) -> str:
    """A ULID (as in TTS correlation ids): 48-bit time in ms, then 80 bits from the parts."""
    value = (ms << 80) | int.from_bytes(digest("ulid", *parts, size=10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class TtnV3Encoder(Encoder):
    NAME: ClassVar[str] = NAME
    TOPIC_FILTER: ClassVar[str] = TOPIC_FILTER

    def payload(self, row: int, message: SimMessage) -> tuple[str, bytes]:
        fleet = self.fleet
        up = Uplink(fleet, row, message)
        app = up.application_name()
        device_id = fleet.ttn_ids[row]
        when = rfc3339_nanos(message.time_ms)
        lat, lon = up.gateway_location
        mid = message.message_id
        rx: dict[str, Any] = {
            "gateway_ids": {"gateway_id": f"gw-{up.gateway_id}", "eui": up.gateway_id.upper()},
            "time": when,
            "timestamp": up.gateway_timestamp_us,
            "rssi": message.rssi,
            "channel_rssi": message.rssi,
        }
        if message.snr:
            rx["snr"] = message.snr
        rx["uplink_token"] = b64(digest("uplink-token", mid, size=24))
        if up.channel:
            rx["channel_index"] = up.channel
        rx["received_at"] = when
        rx["location"] = {"latitude": lat, "longitude": lon, "altitude": 12, "source": "SOURCE_REGISTRY"}
        uplink: dict[str, Any] = {
            "session_key_id": b64(digest("session", message.sensor_id, size=16)),
            "f_port": F_PORT,
        }
        if message.fcnt:
            uplink["f_cnt"] = message.fcnt
        uplink.update(
            frm_payload=b64(up.frame),
            decoded_payload=up.fields,
            rx_metadata=[rx],
            settings={
                "data_rate": {
                    "lora": {
                        "bandwidth": BANDWIDTH_HZ,
                        "spreading_factor": up.spreading_factor,
                        "coding_rate": "4/5",
                    }
                },
                "frequency": str(up.frequency),
                "timestamp": up.gateway_timestamp_us,
                "time": when,
            },
            received_at=when,
            consumed_airtime=f"{up.airtime:.6f}s",
            network_ids={"net_id": "000013", "tenant_id": TENANT, "cluster_id": "eu1"},
        )
        body = {
            "end_device_ids": {
                "device_id": device_id,
                "application_ids": {"application_id": app},
                "dev_eui": message.sensor_id.upper(),
                "join_eui": (VENDOR_OUI.get(message.kind, "ac1f09") + "c0002a0001").upper(),
                "dev_addr": up.dev_addr.upper(),
            },
            "correlation_ids": [
                f"as:up:{ulid(message.time_ms, 'as', mid)}",
                f"gs:uplink:{ulid(message.time_ms, 'gs', mid)}",
                f"ns:uplink:{ulid(message.time_ms, 'ns', mid)}",
            ],
            "received_at": when,
            "uplink_message": uplink,
        }
        return f"v3/{app}@{TENANT}/devices/{device_id}/up", dumps(body)
