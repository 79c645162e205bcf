"""Sensor kinds the simulator models, by name: bins, street lights, parking bays, air monitors.

Each kind module has a ``describe(group, grid, seed)`` that fills the fleet's static attributes
and registry metadata, and a ``KindModel`` subclass that advances every sensor of the kind one
report step at a time.
"""

from __future__ import annotations

from collections.abc import Callable

from simulators.city import StreetGrid
from simulators.kinds import air, bins, lights, parking
from simulators.kinds.base import KindGroup, KindModel

__all__ = ["DESCRIBE", "KINDS", "METRICS", "MODELS"]

#: Kind names in fleet order (the order sensors are numbered and messages are emitted).
KINDS: tuple[str, ...] = ("bin", "light", "parking", "air")

MODELS: dict[str, type[KindModel]] = {
    "bin": bins.BinModel,
    "light": lights.LightModel,
    "parking": parking.ParkingModel,
    "air": air.AirModel,
}

DESCRIBE: dict[str, Callable[[KindGroup, StreetGrid, int], None]] = {
    "bin": bins.describe,
    "light": lights.describe,
    "parking": parking.describe,
    "air": air.describe,
}

#: Canonical metrics each kind reports, in the column order of its value arrays.
METRICS: dict[str, tuple[str, ...]] = {kind: model.metrics for kind, model in MODELS.items()}
