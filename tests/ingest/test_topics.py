from __future__ import annotations

import dataclasses

import pytest

import ingest.topics as topics_module
from ingest.topics import InvalidTopicError, Route, RoutePattern, Router, TopicFilter
from sense311.errors import ConfigError


@pytest.mark.parametrize(
    ("flt", "topic", "matches"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/b/c", "a/b", False),
        ("a/b/c", "a/b/c/d", False),
        ("a/+/c", "a/x/c", True),
        ("a/+/c", "a//c", True),  # '+' matches an empty level
        ("a/+/c", "a/x/y/c", False),
        ("a/#", "a", True),  # '#' includes the parent level
        ("a/#", "a/", True),
        ("a/#", "a/b/c", True),
        ("a/#", "ab", False),
        ("#", "anything/at/all", True),
        ("+", "a", True),
        ("+", "a/b", False),
        ("+/+", "/x", True),
        ("/+", "/x", True),
        ("#", "$SYS/broker/load", False),  # wildcards at the start skip $ topics
        ("+/broker/load", "$SYS/broker/load", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("a/b.c/(d)", "a/b.c/(d)", True),  # regex characters are literal
        ("a/b.c", "a/bxc", False),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("$share/grp/a/+", "a/b", True),
        ("$share/grp/#", "x/y", True),
    ],
)
def test_filter_matching(flt: str, topic: str, matches: bool) -> None:
    assert TopicFilter(flt).matches(topic) is matches


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/#/b",
        "a#",
        "a/b#",
        "a/+b",
        "a+/b",
        "#/a",
        "a/\x00",
        "$share/",
        "$share/grp",
        "$share/grp/",
        "$share//a",
        "$share/g+/a",
        "$share/g#/a",
        "a/" * 40000,
    ],
)
def test_invalid_filters(bad: str) -> None:
    with pytest.raises(InvalidTopicError, match=r"^Invalid topic filter: "):
        TopicFilter(bad)


def test_invalid_filter_is_a_config_and_value_error() -> None:
    with pytest.raises(ConfigError):
        TopicFilter("a/#/b")
    with pytest.raises(ValueError, match="'#' must be the last level"):
        TopicFilter("a/#/b")


def test_shared_subscription_is_split() -> None:
    shared = TopicFilter("$share/ingest/application/+/device/+/event/up")
    assert shared.group == "ingest"
    assert shared.filter == "application/+/device/+/event/up"
    assert str(shared) == shared.value == "$share/ingest/application/+/device/+/event/up"
    assert shared.has_wildcards
    plain = TopicFilter("a/b")
    assert plain.group is None and plain.filter == "a/b" and not plain.has_wildcards


def test_filter_is_frozen_and_comparable() -> None:
    f = TopicFilter("a/+")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.value = "b"  # type: ignore[misc]
    assert f == TopicFilter("a/+") and hash(f) == hash(TopicFilter("a/+"))


@pytest.mark.parametrize(
    ("pattern", "flt", "names"),
    [
        ("application/+/device/{sensor_id}/event/up", "application/+/device/+/event/up", ("sensor_id",)),
        ("zigbee2mqtt/{sensor_id...}", "zigbee2mqtt/#", ("sensor_id",)),
        ("gateways/{gateway}/{sensor_id}/json", "gateways/+/+/json", ("gateway", "sensor_id")),
        ("tele/{sensor_id}/SENSOR", "tele/+/SENSOR", ("sensor_id",)),
        ("a/#", "a/#", ()),
        ("$share/g/x/{sensor_id}", "$share/g/x/+", ("sensor_id",)),
    ],
)
def test_pattern_filter(pattern: str, flt: str, names: tuple[str, ...]) -> None:
    p = RoutePattern(pattern)
    assert p.filter == flt
    assert p.names == names
    assert p.topic_filter == TopicFilter(flt)


@pytest.mark.parametrize(
    ("pattern", "topic", "captures"),
    [
        (
            "application/+/device/{sensor_id}/event/up",
            "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up",
            {"sensor_id": "0101010101010101"},
        ),
        ("application/+/device/{sensor_id}/event/up", "application/1/device/0101/event/join", None),
        # captures are non-empty
        ("application/+/device/{sensor_id}/event/up", "application/1/device//event/up", None),
        ("zigbee2mqtt/{sensor_id...}", "zigbee2mqtt/garden/bin 3", {"sensor_id": "garden/bin 3"}),
        ("zigbee2mqtt/{sensor_id...}", "zigbee2mqtt/lamp", {"sensor_id": "lamp"}),
        ("zigbee2mqtt/{sensor_id...}", "zigbee2mqtt", None),
        ("zigbee2mqtt/{sensor_id...}", "zigbee2mqttx/lamp", None),
        ("gw/{gateway}/{sensor_id}/json", "gw/gw-1/bin-7/json", {"gateway": "gw-1", "sensor_id": "bin-7"}),
        ("a/b", "a/b", {}),
        ("a/#", "a", {}),
        ("{sensor_id}/x", "$SYS/x", None),
        ("$share/g/x/{sensor_id}", "x/42", {"sensor_id": "42"}),
        ("dev/{sensor_id}", "dev/with.dots+plus(paren)", {"sensor_id": "with.dots+plus(paren)"}),
    ],
)
def test_pattern_match(pattern: str, topic: str, captures: dict[str, str] | None) -> None:
    assert RoutePattern(pattern).match(topic) == captures


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("a/{sensor_id...}/b", "must be the last level"),
        ("a/x{sensor_id}", "must fill a whole level"),
        ("a/{sensor_id}x", "must fill a whole level"),
        ("a/{sensor id}", "not an identifier"),
        ("a/{}", "not an identifier"),
        ("a/{9}", "not an identifier"),
        ("a/{x}/{x}", "used twice"),
        ("a/#/b", "'#' must be the last level"),
        ("a/b+", "must fill a whole level"),
        ("a/{b", "must fill a whole level"),
        ("", "non-empty"),
    ],
)
def test_invalid_patterns(bad: str, why: str) -> None:
    with pytest.raises(InvalidTopicError, match="^Invalid route pattern: .*" + why):
        RoutePattern(bad)


def test_route_needs_a_decoder_unless_ignored() -> None:
    with pytest.raises(ConfigError, match="needs a decoder"):
        Route("a/b")
    route = Route("a/b", ignore=True)
    assert route.decoder is None and isinstance(route.pattern, RoutePattern)


def test_route_options_are_read_only_copies() -> None:
    options = {"timezone": "Europe/Berlin"}
    route = Route("tele/{sensor_id}/SENSOR", "flat_json", options)
    options["timezone"] = "UTC"
    assert route.options["timezone"] == "Europe/Berlin"
    with pytest.raises(TypeError):
        route.options["x"] = 1  # type: ignore[index]


def make_router(**kwargs: int) -> Router:
    return Router(
        [
            Route("zigbee2mqtt/bridge/#", ignore=True),
            Route("zigbee2mqtt/{sensor_id...}", "flat_json"),
            Route("application/+/device/{sensor_id}/event/+", "chirpstack_v4"),
            Route("application/+/device/{sensor_id}/event/+", "chirpstack_v3"),  # shadowed: never chosen
            Route("v3/+/devices/{sensor_id}/up", "ttn_v3"),
            Route("gateways/{gateway}/json", "json"),
            Route("gateways/{gateway}/{sensor_id}/senml", "senml"),
            Route("city/#", "json", {"on_off": True}),
        ],
        **kwargs,
    )


@pytest.mark.parametrize("cache_size", [0, 2, 4096])
def test_router_first_match_wins(cache_size: int) -> None:
    router = make_router(cache_size=cache_size)
    for _ in range(2):  # the second round may come from the cache
        bridge = router.route("zigbee2mqtt/bridge/state")
        assert bridge is not None and bridge.route.ignore and dict(bridge.captures) == {}
        lamp = router.route("zigbee2mqtt/living/lamp")
        assert lamp is not None and lamp.route.decoder == "flat_json" and lamp.sensor_id == "living/lamp"
        cs = router.route("application/1/device/0101010101010101/event/up")
        assert cs is not None and cs.route.decoder == "chirpstack_v4" and cs.sensor_id == "0101010101010101"
        gw = router.route("gateways/gw-a/json")
        assert gw is not None and gw.route.decoder == "json" and gw.sensor_id is None
        assert dict(gw.captures) == {"gateway": "gw-a"}
        senml = router.route("gateways/gw-a/bin-7/senml")
        assert senml is not None and dict(senml.captures) == {"gateway": "gw-a", "sensor_id": "bin-7"}
        city = router.route("city/anything/here")
        assert city is not None and city.route.options["on_off"] is True
        assert router.route("nowhere/x") is None
        assert router.route("$SYS/broker/load") is None


def test_router_captures_are_read_only() -> None:
    match = make_router().route("zigbee2mqtt/living/lamp")
    assert match is not None
    with pytest.raises(TypeError):
        match.captures["sensor_id"] = "x"  # type: ignore[index]


def test_router_cache_is_bounded() -> None:
    router = make_router(cache_size=16)
    for i in range(1000):
        assert router.route(f"zigbee2mqtt/lamp-{i}") is not None
    info = router._lookup.cache_info()  # type: ignore[attr-defined]
    assert info.currsize <= 16


def test_router_filters_skip_ignored_and_duplicates() -> None:
    assert make_router().filters == [
        "zigbee2mqtt/#",
        "application/+/device/+/event/+",
        "v3/+/devices/+/up",
        "gateways/+/json",
        "gateways/+/+/senml",
        "city/#",
    ]


def test_router_without_routes() -> None:
    assert Router([]).route("a") is None


def test_router_with_many_routes_keeps_order() -> None:
    routes = [Route(f"site/{i}/{{sensor_id}}", "json") for i in range(150)] + [Route("site/#", "senml")]
    router = Router(routes, cache_size=0)
    match = router.route("site/149/s-1")
    assert match is not None and match.route is routes[149] and match.sensor_id == "s-1"
    fallback = router.route("site/150/s-1")
    assert fallback is not None and fallback.route is routes[-1]


def test_all_is_the_public_surface() -> None:
    assert set(topics_module.__all__) == {
        "DEFAULT_CACHE_SIZE",
        "MAX_TOPIC_BYTES",
        "InvalidTopicError",
        "Route",
        "RouteMatch",
        "RoutePattern",
        "Router",
        "TopicFilter",
    }
    for name in topics_module.__all__:
        assert hasattr(topics_module, name)
