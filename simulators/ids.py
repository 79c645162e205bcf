"""Deterministic identifiers: DevEUIs, gateway EUIs, UUIDs and LoRaWAN addresses.

Every identifier is a hash of the seed and what it names, so the same seed gives the same
fleet and the same message ids on every run and platform.
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["VENDOR_OUI", "dev_eui", "digest", "gateway_eui", "stable_uuid"]

#: The first three bytes of a DevEUI name the vendor (an IEEE OUI), as on real devices; distinct
#: prefixes per kind also keep ids of different kinds from ever colliding.
VENDOR_OUI: dict[str, str] = {
    "bin": "24e124",  # Milesight (EM400-MUD ultrasonic bin sensors)
    "light": "70b3d5",  # IEEE OUI-36 block used by many street-light controller makers
    "parking": "0004a3",  # Microchip-based parking sensors
    "air": "a84041",  # Dragino
}
_DEFAULT_OUI = "ac1f09"  # RAKwireless, for kinds without a vendor above


def digest(*parts: object, size: int = 8) -> bytes:
    """``size`` bytes of BLAKE2b over the parts; the one hash every identifier comes from."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return hashlib.blake2b(text, digest_size=size).digest()


def dev_eui(seed: int, kind: str, index: int, salt: int = 0) -> str:
    """The 16 lower-case hex digit DevEUI of sensor ``index`` of ``kind``; ``salt`` resolves clashes."""
    oui = VENDOR_OUI.get(kind, _DEFAULT_OUI)
    return oui + digest("deveui", seed, kind, index, salt, size=5).hex()


def gateway_eui(seed: int, cell: int) -> str:
    """The 16 hex digit EUI of the gateway serving grid ``cell`` (Kerlink-style prefix ``7276ff``)."""
    return "7276ff" + digest("gateway", seed, cell, size=5).hex()


def stable_uuid(*parts: object) -> str:
    """A version-4-shaped UUID derived from the parts (for ChirpStack ids and deduplication ids)."""
    return str(uuid.UUID(bytes=digest("uuid", *parts, size=16), version=4))
