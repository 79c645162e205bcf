"""A city fleet: which sensors exist, where they stand and how each gateway format names them.

``build_fleet(seed, counts, city)`` places ``counts[kind]`` sensors of each kind on a generated
street grid around the city centre: street lights every ``LAMP_SPACING_M`` metres along whole
streets (a street's lamps share circuits), bins anywhere along streets, parking bays mostly in
the centre and commercial districts, air monitors at crossings. Each sensor gets:

* an id that is its LoRaWAN DevEUI: 16 lower-case hex digits, a vendor prefix per kind and a
  hash of (seed, kind, index) — valid in every format, and stable when other kinds change;
* a gateway (the LoRaWAN gateway covering its part of town, a 16-hex EUI) and a mean signal
  strength from its distance to that gateway;
* per-format device names: The Things Stack ``device_id`` ``eui-<id>``, Zigbee2MQTT friendly
  name ``<district>/<kind>-<serial>`` (both also in the registry's metadata);
* the registry row of ``sense311.types.Sensor``, from ``fleet.sensors()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sense311.errors import ConfigError
from sense311.types import Sensor
from simulators import ids as idgen
from simulators import noise
from simulators.city import DISTRICT_TYPES, CityConfig, StreetGrid, build_grid, slugify
from simulators.kinds import DESCRIBE, KINDS
from simulators.kinds.base import KindGroup

__all__ = ["DEFAULT_COUNTS", "LAMP_SPACING_M", "Fleet", "build_fleet"]

#: The demo fleet: 200 sensors.
DEFAULT_COUNTS: dict[str, int] = {"bin": 80, "light": 80, "parking": 24, "air": 16}
#: Distance between street lamps (m), typical for residential LED lighting.
LAMP_SPACING_M = 35.0
#: Lamps fill at most this share of the street length, so the grid grows with the fleet.
_LAMP_OCCUPANCY = 0.8
#: Street length (m) reserved per non-lamp sensor when sizing the grid.
_OTHER_SPACING_M = 15.0
#: Side of the square each LoRaWAN gateway covers (m).
GATEWAY_CELL_M = 1000.0
#: Relative chance of a parking bay per district type (centre, commercial, residential).
_PARKING_WEIGHT = {"centre": 1.0, "commercial": 0.6, "residential": 0.35}


class Fleet:
    """The sensors of one simulated city, as parallel arrays indexed by global sensor row.

    Rows are grouped by kind in ``KINDS`` order; ``groups[kind]`` gives each kind's rows and
    static attributes.
    """

    def __init__(
        self,
        *,
        seed: int,
        city: CityConfig,
        grid: StreetGrid,
        groups: dict[str, KindGroup],
        gateways: list[str],
        gateway_of: np.ndarray,
        gateway_lat_lon: list[tuple[float, float]],
        rssi_mean: np.ndarray,
        lat: np.ndarray,
        lon: np.ndarray,
        addresses: list[str],
    ) -> None:
        self.seed = seed
        self.city = city
        self.grid = grid
        self.groups = groups
        self.counts = {kind: g.n for kind, g in groups.items()}
        self.ids: list[str] = [i for g in groups.values() for i in g.ids]
        self.kinds: list[str] = [g.kind for g in groups.values() for _ in range(g.n)]
        self.index: dict[str, int] = {sensor_id: i for i, sensor_id in enumerate(self.ids)}
        self.keys = np.concatenate([g.keys for g in groups.values()]) if groups else np.zeros(0, np.uint64)
        self.gateways = gateways
        self.gateway_of = gateway_of
        #: (lat, lon) of each gateway, degrees: LoRaWAN uplinks carry the gateway's location.
        self.gateway_lat_lon = gateway_lat_lon
        self.rssi_mean = rssi_mean
        self.lat = lat
        self.lon = lon
        self.addresses = addresses
        districts = np.concatenate([g.district for g in groups.values()])
        self.district_names: list[str] = [city.districts[int(d)][0] for d in districts]
        self.district_slugs: list[str] = [slugify(name) for name in self.district_names]
        #: Where in its report step each sensor reports (fraction of the step), so reports spread.
        self.phase = noise.uniform(self.keys, 0, 7)
        #: The frame counter of each device at the start of a simulation.
        self.fcnt0 = np.floor(noise.uniform(self.keys, 0, 8) * 1000).astype(np.int64)
        #: The Things Stack device ids (the console's default for a device: ``eui-<deveui>``).
        self.ttn_ids: list[str] = [f"eui-{i}" for i in self.ids]
        #: Short human names (``bin-0042``): ChirpStack ``deviceName``.
        self.device_names: list[str] = [
            f"{g.kind}-{row + 1:04d}" for g in groups.values() for row in range(g.n)
        ]
        #: Zigbee2MQTT friendly names ``<district>/<kind>-<serial>`` (they may contain ``/``).
        self.zigbee_names: list[str] = [
            f"{slugify(city.districts[int(g.district[row])][0])}/{g.kind}-{row + 1:04d}"
            for g in groups.values()
            for row in range(g.n)
        ]

    def __len__(self) -> int:
        return len(self.ids)

    def gateway(self, row: int) -> str:
        return self.gateways[int(self.gateway_of[row])]

    def sensors(self) -> list[Sensor]:
        """Registry entries of every sensor, in fleet order."""
        return [self.sensor_at(row) for row in range(len(self.ids))]

    def sensor(self, sensor_id: str) -> Sensor:
        return self.sensor_at(self.index[sensor_id])

    def sensor_at(self, row: int) -> Sensor:
        kind = self.kinds[row]
        group = self.groups[kind]
        local = row - group.start
        street = self.grid.streets[int(group.street[local])]
        district = self.district_names[row]
        metadata: dict[str, Any] = {
            **group.metadata[local],
            "street": street.name,
            "device_name": self.device_names[row],
            "ttn_device_id": self.ttn_ids[row],
            "zigbee_name": self.zigbee_names[row],
        }
        return Sensor(
            id=self.ids[row],
            kind=kind,
            lat=round(float(self.lat[row]), 6),
            lon=round(float(self.lon[row]), 6),
            address=self.addresses[row],
            district=district,
            tags=[kind, self.district_slugs[row]],
            gateway=self.gateway(row),
            metadata=metadata,
        )

    def circuits(self) -> list[tuple[str, list[int]]]:
        """Every lighting circuit: its name and the global rows of its lamps."""
        group = self.groups.get("light")
        if group is None or not group.n:
            return []
        names = group.attrs["circuit_names"]
        circuit = group.attrs["circuit"]
        return [(name, (np.nonzero(circuit == c)[0] + group.start).tolist()) for c, name in enumerate(names)]


def _check_counts(counts: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for kind, n in counts.items():
        if kind not in KINDS:
            raise ConfigError(f"unknown sensor kind {kind!r}; known kinds: {', '.join(KINDS)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"number of {kind} sensors must be a whole number >= 0, got {n!r}")
        out[kind] = n
    if not sum(out.values()):
        raise ConfigError("a fleet needs at least one sensor; give a count > 0 for some kind")
    return {kind: out.get(kind, 0) for kind in KINDS}


def _grid_size(counts: Mapping[str, int], block_m: float) -> int:
    need = counts["light"] * LAMP_SPACING_M / _LAMP_OCCUPANCY
    need += sum(n for kind, n in counts.items() if kind != "light") * _OTHER_SPACING_M
    # A grid of k streets per axis holds 2·k·(k-1)·block metres of street.
    k = 3
    while 2 * k * (k - 1) * block_m < need:
        k += 1
    return k


def _device_ids(seed: int, counts: Mapping[str, int]) -> dict[str, list[str]]:
    taken: set[str] = set()
    out: dict[str, list[str]] = {}
    for kind in KINDS:
        ids = []
        for index in range(counts[kind]):
            salt = 0
            eui = idgen.dev_eui(seed, kind, index)
            # 40 hash bits: clashes are rare but possible in big fleets; re-salt deterministically.
            while eui in taken:
                salt += 1
                eui = idgen.dev_eui(seed, kind, index, salt)
            taken.add(eui)
            ids.append(eui)
        out[kind] = ids
    return out


def _place(kind: str, n: int, grid: StreetGrid, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Street index, distance along it (m) and side (0/1) of ``n`` sensors of ``kind``."""
    streets = grid.streets
    length = streets[0].length if streets else 0.0
    if kind == "light":
        street_idx, along = [], []
        per_street = int((length - 12.0) // LAMP_SPACING_M) + 1
        for s in rng.permutation(len(streets)):
            take = min(per_street, n - len(along))
            street_idx.extend([int(s)] * take)
            along.extend(12.0 + LAMP_SPACING_M * np.arange(take))
            if len(along) >= n:
                break
        return np.array(street_idx, dtype=np.int64), np.array(along, dtype=float), np.zeros(n, dtype=np.int64)
    if kind == "air":
        per_axis = len(streets) // 2
        cells = rng.permutation(per_axis * per_axis)
        cells = np.resize(cells, n)  # more monitors than crossings: a second one on the same corner
        ew, ns = cells // per_axis, cells % per_axis
        along = np.array([streets[per_axis + j].fixed for j in ns]) - streets[0].lo
        return ew.astype(np.int64), np.clip(along + 5.0, 0.0, length), np.zeros(n, dtype=np.int64)
    street_idx = np.zeros(0, dtype=np.int64)
    along = np.zeros(0)
    while len(street_idx) < n:
        batch = max(2 * (n - len(street_idx)), 16)
        s = rng.integers(len(streets), size=batch)
        a = rng.random(batch) * length
        if kind == "parking":
            x, y = _xy(grid, s, a, np.zeros(batch, dtype=np.int64))
            types = [grid.city.districts[int(d)][1] for d in grid.district_of(x, y)]
            keep = rng.random(batch) < np.array([_PARKING_WEIGHT[t] for t in types])
            s, a = s[keep], a[keep]
        street_idx = np.concatenate([street_idx, s])
        along = np.concatenate([along, a])
    return street_idx[:n], along[:n], rng.integers(2, size=n)


def _xy(
    grid: StreetGrid, street: np.ndarray, along: np.ndarray, side: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty(len(street))
    y = np.empty(len(street))
    for s in np.unique(street):
        rows = street == s
        x[rows], y[rows] = grid.streets[int(s)].point(along[rows], side[rows])
    return x, y


def build_fleet(
    seed: int = 0,
    counts: Mapping[str, int] | None = None,
    city: CityConfig | None = None,
) -> Fleet:
    """A fleet of ``counts[kind]`` sensors per kind (default ``DEFAULT_COUNTS``) in ``city``.

    The same seed and counts give the same fleet. A sensor's id and its intrinsic attributes
    (bin depth, lamp power, battery) depend only on (seed, kind, index); where it stands depends
    on the whole fleet, since the street grid grows with it.
    """
    city = city or CityConfig()
    counts = _check_counts(DEFAULT_COUNTS if counts is None else counts)
    grid = build_grid(city, _grid_size(counts, city.block_m), seed)
    device_ids = _device_ids(seed, counts)
    groups: dict[str, KindGroup] = {}
    xs, ys, addresses = [], [], []
    start = 0
    for kind_no, kind in enumerate(KINDS):
        n = counts[kind]
        rng = np.random.default_rng([seed, 0x91ACE, kind_no])
        street, along, side = _place(kind, n, grid, rng)
        x, y = _xy(grid, street, along, side)
        district = grid.district_of(x, y)
        district_type = np.array(
            [DISTRICT_TYPES.index(city.districts[int(d)][1]) for d in district], dtype=np.int64
        )
        keys = np.array([noise.key_of(seed, sensor_id) for sensor_id in device_ids[kind]], dtype=np.uint64)
        group = KindGroup(
            kind=kind,
            start=start,
            stop=start + n,
            ids=device_ids[kind],
            keys=keys,
            x=x,
            y=y,
            district=district,
            district_type=district_type,
            street=street,
            along=along,
        )
        DESCRIBE[kind](group, grid, seed)
        groups[kind] = group
        xs.append(x)
        ys.append(y)
        addresses.extend(
            grid.address(grid.streets[int(s)], float(a), int(d))
            for s, a, d in zip(street, along, side, strict=True)
        )
        start += n
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    lat, lon = city.to_lat_lon(x, y)
    # Gateways on a square grid of cells; each sensor talks to its cell's gateway.
    cells_per_axis = max(1, math.ceil(2.0 * grid.half / GATEWAY_CELL_M))
    cell_m = max(2.0 * grid.half / cells_per_axis, 1.0)
    col = np.clip(((x + grid.half) // cell_m).astype(np.int64), 0, cells_per_axis - 1)
    row = np.clip(((y + grid.half) // cell_m).astype(np.int64), 0, cells_per_axis - 1)
    cell = row * cells_per_axis + col
    used = sorted(set(cell.tolist()))
    gateways = [idgen.gateway_eui(seed, c) for c in used]
    gateway_of = np.searchsorted(np.array(used), cell)
    gx = -grid.half + (col + 0.5) * cell_m
    gy = -grid.half + (row + 0.5) * cell_m
    used_col = np.array(used) % cells_per_axis
    used_row = np.array(used) // cells_per_axis
    glat, glon = city.to_lat_lon(
        -grid.half + (used_col + 0.5) * cell_m, -grid.half + (used_row + 0.5) * cell_m
    )
    gateway_lat_lon = [(round(float(a), 6), round(float(b), 6)) for a, b in zip(glat, glon, strict=True)]
    distance = np.hypot(x - gx, y - gy)
    keys = np.concatenate([g.keys for g in groups.values()])
    # Log-distance path loss from a rooftop gateway plus per-device shadowing (walls, bin lids).
    shadow = 15.0 * noise.uniform(keys, 0, 9)
    rssi_mean = np.clip(-40.0 - 28.0 * np.log10(np.maximum(distance, 20.0) / 20.0) - shadow, -120.0, -40.0)
    return Fleet(
        seed=seed,
        city=city,
        grid=grid,
        groups=groups,
        gateways=gateways,
        gateway_of=gateway_of,
        gateway_lat_lon=gateway_lat_lon,
        rssi_mean=rssi_mean,
        lat=lat,
        lon=lon,
        addresses=addresses,
    )
