"""The simulated city: its centre, time zone, climate and a generated street grid with districts.

Streets form a square grid around the centre, ``block_m`` metres apart, half running east–west
and half north–south. The square is cut into 3 × 3 districts; each district has a type
(``centre``, ``commercial`` or ``residential``) that sets how busy its bins, parking bays and air
are. Positions are metres east (``x``) and north (``y``) of the centre; ``to_lat_lon`` turns them
into degrees with a local flat-earth approximation, which is exact enough for a few kilometres.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from sense311.errors import ConfigError

__all__ = ["DISTRICT_TYPES", "CityConfig", "Street", "StreetGrid", "build_grid", "slugify"]

#: Metres per degree of latitude (mean Earth radius); longitude degrees shrink with cos(latitude).
METRES_PER_DEGREE = 111_320.0

_PREFIXES = (
    "Linden", "Eiken", "Beuken", "Molen", "Kerk", "Haven", "Tulp", "Roos", "Berken", "Iepen",
    "Kastanje", "Wilgen", "Populier", "Esdoorn", "Hazel", "Vlier", "Lijster", "Merel", "Zwaluw",
    "Reiger", "Kievit", "Spreeuw", "Valk", "Zon", "Maan", "Ster", "Brug", "Sluis", "Dijk", "Veld",
    "Bloem", "Koren", "Tarwe", "Hop", "Vlas", "Pauw", "Zwanen", "Ganzen", "Eenden", "Duiven",
)  # fmt: skip
_SUFFIXES = ("straat", "laan", "weg", "gracht", "kade", "singel")

_DISTRICTS = (
    ("Noordwest", "residential"), ("Noord", "residential"), ("Noordoost", "residential"),
    ("West", "commercial"), ("Centrum", "centre"), ("Oost", "commercial"),
    ("Zuidwest", "residential"), ("Zuid", "residential"), ("Zuidoost", "residential"),
)  # fmt: skip

#: District types and how their activity compares (used by the kind models).
DISTRICT_TYPES = ("centre", "commercial", "residential")


def slugify(text: str) -> str:
    """Lower-case ASCII with dashes: ``"Oude Kerkstraat"`` → ``"oude-kerkstraat"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@dataclass(frozen=True, slots=True)
class CityConfig:
    """Where the city is and what it is like.

    ``lat``/``lon`` in degrees (the grid's centre), ``tz`` an IANA zone name (local time sets
    schedules and daily profiles), ``block_m`` the street spacing in metres. The climate numbers
    (°C) drive the bins' temperature readings: a yearly cosine peaking late July (late January
    south of the equator) plus a daily cosine peaking at 15:00 local.
    """

    name: str = "Amsterdam"
    lat: float = 52.37
    lon: float = 4.89
    tz: str = "Europe/Amsterdam"
    block_m: float = 160.0
    mean_temp_c: float = 10.5
    seasonal_amp_c: float = 7.0
    diurnal_amp_c: float = 4.0
    districts: tuple[tuple[str, str], ...] = field(default=_DISTRICTS)

    def __post_init__(self) -> None:
        if not -80.0 <= self.lat <= 80.0:
            raise ConfigError(f"city latitude must be within -80..80 degrees, got {self.lat}")
        if not -180.0 <= self.lon <= 180.0:
            raise ConfigError(f"city longitude must be within -180..180 degrees, got {self.lon}")
        if not self.block_m > 0:
            raise ConfigError(f"city block size must be > 0 m, got {self.block_m}")
        if len(self.districts) != 9:
            raise ConfigError(f"a city needs 9 districts (3 x 3), got {len(self.districts)}")
        for name, kind in self.districts:
            if kind not in DISTRICT_TYPES:
                raise ConfigError(f"district {name!r} has type {kind!r}; expected one of {DISTRICT_TYPES}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"unknown time zone {self.tz!r}; use an IANA name like 'Europe/Amsterdam'"
            ) from exc

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def to_lat_lon(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Degrees for positions ``x`` metres east and ``y`` metres north of the centre."""
        lat = self.lat + y / METRES_PER_DEGREE
        lon = self.lon + x / (METRES_PER_DEGREE * math.cos(math.radians(self.lat)))
        return lat, lon


@dataclass(frozen=True, slots=True)
class Street:
    """One straight street of the grid; ``fixed`` is its y (east–west) or x (north–south), in m."""

    index: int
    name: str
    slug: str
    east_west: bool
    fixed: float
    lo: float
    hi: float
    main: bool

    @property
    def length(self) -> float:
        return self.hi - self.lo

    def point(self, along: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x, y (m) of points ``along`` metres from the street's start, on ``side`` 0 or 1."""
        across = self.fixed + np.where(side == 0, -SIDEWALK_M, SIDEWALK_M)
        pos = self.lo + along
        return (pos, across) if self.east_west else (across, pos)


#: Sensors stand on the pavement, this far from the street's centre line (m).
SIDEWALK_M = 7.0
#: Metres of frontage per house number: numbers give each sensor a believable address.
HOUSE_FRONTAGE_M = 12.0


@dataclass(frozen=True, slots=True)
class StreetGrid:
    """A square grid of ``2 * per_axis`` streets spanning ``[-half, half]`` m in x and y."""

    city: CityConfig
    streets: tuple[Street, ...]
    half: float

    def district_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """District index (0..8, row-major from the north-west) of each position."""
        third = (2.0 * self.half) / 3.0
        col = np.clip(((x + self.half) // third).astype(np.int64), 0, 2)
        row = np.clip(((self.half - y) // third).astype(np.int64), 0, 2)
        return row * 3 + col

    def address(self, street: Street, along: float, side: int) -> str:
        """``"Lindenstraat 17"``: odd numbers on side 0, even on side 1."""
        number = 2 * int(along // HOUSE_FRONTAGE_M) + (1 if side == 0 else 2)
        return f"{street.name} {number}"


def build_grid(city: CityConfig, per_axis: int, seed: int) -> StreetGrid:
    """A grid of ``per_axis`` streets in each direction with names drawn by ``seed``.

    Every fourth street is a main road (brighter lamps, more traffic).
    """
    per_axis = max(per_axis, 2)
    half = (per_axis - 1) * city.block_m / 2.0
    rng = np.random.default_rng([seed, 0x57EE7])
    names = [p + s for p in _PREFIXES for s in _SUFFIXES]
    order = rng.permutation(len(names))
    needed = 2 * per_axis
    chosen = [names[i] for i in order[:needed]]
    # Past the name list, repeat names with a suffix number, as cities do ("Molenweg 2e").
    for extra in range(needed - len(chosen)):
        chosen.append(f"{names[order[extra % len(names)]]} {extra // len(names) + 2}e")
    streets = []
    for i in range(needed):
        east_west = i < per_axis
        j = i if east_west else i - per_axis
        fixed = -half + j * city.block_m
        streets.append(
            Street(
                index=i,
                name=chosen[i],
                slug=slugify(chosen[i]),
                east_west=east_west,
                fixed=fixed,
                lo=-half,
                hi=half,
                main=(j % 4 == 0),
            )
        )
    return StreetGrid(city=city, streets=tuple(streets), half=half)
