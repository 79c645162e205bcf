"""The fleet: ids valid in every format, registry rows, placement on streets and circuits."""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict

import pytest

from sense311.errors import ConfigError
from sense311.types import Sensor
from simulators import CityConfig, build_fleet
from simulators.fleet import DEFAULT_COUNTS, Fleet
from simulators.kinds import KINDS

HEX16 = re.compile(r"^[0-9a-f]{16}$")


def test_ids_are_unique_lower_case_deveuis(fleet: Fleet) -> None:
    assert len(fleet) == sum(DEFAULT_COUNTS.values())
    assert all(HEX16.match(i) for i in fleet.ids)
    assert len(set(fleet.ids)) == len(fleet)


def test_the_same_seed_gives_the_same_fleet() -> None:
    a, b = build_fleet(5), build_fleet(5)
    assert a.ids == b.ids
    assert [s.address for s in a.sensors()] == [s.address for s in b.sensors()]
    assert build_fleet(6).ids != a.ids


def test_ids_of_a_kind_do_not_move_when_another_kind_changes() -> None:
    small = build_fleet(5, {"bin": 10, "light": 10, "parking": 3, "air": 2})
    more_lights = build_fleet(5, {"bin": 10, "light": 40, "parking": 3, "air": 2})
    assert small.groups["bin"].ids == more_lights.groups["bin"].ids
    assert small.groups["air"].ids == more_lights.groups["air"].ids
    # Intrinsic attributes come from the sensor's own key, not from its neighbours (where it
    # stands, and so its district's habits, may move as the street grid grows).
    for attr in ("battery0", "bag", "temp_offset"):
        assert list(small.groups["bin"].attrs[attr]) == list(more_lights.groups["bin"].attrs[attr])


def test_registry_rows_are_complete(fleet: Fleet) -> None:
    sensors = fleet.sensors()
    assert all(isinstance(s, Sensor) for s in sensors)
    centre = fleet.city
    districts = {name for name, _ in centre.districts}
    for s in sensors:
        assert s.kind in KINDS
        # Within a few kilometres of the centre.
        assert abs(s.lat - centre.lat) < 0.05 and abs(s.lon - centre.lon) < 0.08
        assert s.address and re.search(r"\d+$", s.address)
        assert s.district in districts
        assert s.tags[0] == s.kind and len(s.tags) == 2
        assert s.gateway is not None and HEX16.match(s.gateway)
        assert s.metadata["ttn_device_id"] == f"eui-{s.id}"
        assert "/" in s.metadata["zigbee_name"]
        if s.kind == "bin":
            assert s.metadata["depth_mm"] in (800, 1000, 1200, 1500)
            assert s.metadata["collection"]["days"]
        if s.kind == "light":
            assert s.metadata["circuit"]
            assert s.metadata["rated_power_w"] > 0
    assert len({s.metadata["zigbee_name"] for s in sensors}) == len(sensors)


def test_lamps_of_a_circuit_stand_on_one_street(fleet: Fleet) -> None:
    streets = defaultdict(set)
    for s in fleet.sensors():
        if s.kind == "light":
            streets[s.metadata["circuit"]].add(s.metadata["street"])
    assert len(streets) >= 2
    assert all(len(v) == 1 for v in streets.values())
    circuits = fleet.circuits()
    assert sum(len(members) for _, members in circuits) == fleet.counts["light"]


def test_lamps_are_spaced_along_their_street(fleet: Fleet) -> None:
    by_street = defaultdict(list)
    for s in fleet.sensors():
        if s.kind == "light":
            by_street[s.metadata["street"]].append((s.lat, s.lon))
    for points in by_street.values():
        points.sort()
        for (a_lat, a_lon), (b_lat, b_lon) in itertools.pairwise(points):
            dy = (b_lat - a_lat) * 111_320
            dx = (b_lon - a_lon) * 111_320 * math.cos(math.radians(52.37))
            assert math.hypot(dx, dy) == pytest.approx(35.0, abs=0.5)


def test_a_big_fleet_builds_quickly_and_spreads_over_gateways() -> None:
    big = build_fleet(1, {"bin": 4000, "light": 4000, "parking": 1200, "air": 800})
    assert len(big) == 10_000
    assert len(set(big.ids)) == 10_000
    assert len(big.gateways) > 4


def test_another_city() -> None:
    fleet = build_fleet(
        1, {"light": 5}, CityConfig(name="Wellington", lat=-41.29, lon=174.78, tz="Pacific/Auckland")
    )
    assert all(abs(s.lat + 41.29) < 0.05 for s in fleet.sensors())


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"bin": -1}, "number of bin sensors must be a whole number >= 0, got -1"),
        ({"bins": 3}, "unknown sensor kind 'bins'"),
        ({"bin": 0}, "a fleet needs at least one sensor"),
    ],
)
def test_bad_counts_are_config_errors(counts: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_fleet(1, counts)


def test_bad_city_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        CityConfig(tz="Mars/Olympus")
