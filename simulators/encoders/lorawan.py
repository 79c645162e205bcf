"""Radio and network details shared by the LoRaWAN formats (ChirpStack v3/v4, The Things Stack).

Everything is derived from the fleet seed, the sensor and the message id, so it is the same on
every run: device addresses, application ids, the channel and data rate an uplink used, gateway
uplink ids and the airtime of the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

from simulators.encoders.base import APPLICATION_NAMES
from simulators.encoders.devices import lorawan_fields, lorawan_frame
from simulators.fleet import Fleet
from simulators.ids import digest, stable_uuid
from simulators.messages import SimMessage

__all__ = ["Uplink", "airtime_s", "data_rate", "dev_addr"]

#: EU868 uplink channels (Hz): the three default ones and the five a network usually adds.
EU868_CHANNELS = (
    868_100_000,
    868_300_000,
    868_500_000,
    867_100_000,
    867_300_000,
    867_500_000,
    867_700_000,
    867_900_000,
)
#: LoRaWAN adds 13 bytes (MHDR, FHDR without options, FPort, MIC) around the application payload.
LORAWAN_OVERHEAD_BYTES = 13
BANDWIDTH_HZ = 125_000


def data_rate(rssi: float) -> int:
    """The EU868 data rate ADR settles on for a link this strong (DR5 = SF7 … DR0 = SF12)."""
    if rssi > -95:
        return 5
    if rssi > -105:
        return 4
    if rssi > -112:
        return 3
    return 2


def airtime_s(payload_len: int, spreading_factor: int) -> float:
    """LoRa time on air (s) for an application payload, 125 kHz, CR 4/5, 8-symbol preamble."""
    symbol = (2**spreading_factor) / BANDWIDTH_HZ
    low_rate = 1 if spreading_factor >= 11 else 0
    phy = payload_len + LORAWAN_OVERHEAD_BYTES
    numerator = 8 * phy - 4 * spreading_factor + 28 + 16
    symbols = 8 + max(math.ceil(numerator / (4 * (spreading_factor - 2 * low_rate))) * 5, 0)
    return (8 + 4.25) * symbol + symbols * symbol


@lru_cache(maxsize=65_536)
def dev_addr(sensor_id: str) -> str:
    """The device's network address (hex); ``26`` is the block European public networks use."""
    return "26" + digest("devaddr", sensor_id, size=3).hex()


@dataclass(frozen=True)
class Uplink:
    """One uplink of one device as the network saw it."""

    fleet: Fleet
    row: int
    message: SimMessage

    @property
    def kind(self) -> str:
        return self.message.kind

    @cached_property
    def fields(self) -> dict:
        return lorawan_fields(self.kind, self.message.values)

    @cached_property
    def frame(self) -> bytes:
        return lorawan_frame(self.fields)

    @cached_property
    def _hash(self) -> bytes:
        return digest("uplink", self.message.message_id, size=16)

    @property
    def dr(self) -> int:
        return data_rate(self.message.rssi)

    @property
    def spreading_factor(self) -> int:
        return 12 - self.dr

    @property
    def channel(self) -> int:
        return self._hash[0] % len(EU868_CHANNELS)

    @property
    def frequency(self) -> int:
        return EU868_CHANNELS[self.channel]

    @property
    def uplink_id(self) -> int:
        return int.from_bytes(self._hash[1:5], "big")

    @property
    def context(self) -> bytes:
        return self._hash[5:9]

    @property
    def gateway_timestamp_us(self) -> int:
        """The gateway's free-running 32-bit microsecond counter at reception."""
        return int.from_bytes(self._hash[9:13], "big")

    @property
    def deduplication_id(self) -> str:
        return stable_uuid("dedup", self.message.message_id)

    @property
    def dev_addr(self) -> str:
        return dev_addr(self.message.sensor_id)

    @property
    def airtime(self) -> float:
        return airtime_s(len(self.frame), self.spreading_factor)

    @property
    def gateway_id(self) -> str:
        return self.message.gateway_id

    @property
    def gateway_location(self) -> tuple[float, float]:
        return self.fleet.gateway_lat_lon[int(self.fleet.gateway_of[self.row])]

    def application_uuid(self) -> str:
        return stable_uuid("application", self.fleet.seed, self.kind)

    def application_name(self) -> str:
        return APPLICATION_NAMES.get(self.kind, self.kind)
