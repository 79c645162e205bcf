"""MQTT topic filters, route patterns with named captures, and the router.

``TopicFilter`` is a subscription filter as MQTT defines it (``+`` one level,
``#`` the rest, ``$share/<group>/<filter>`` for shared subscriptions).

``RoutePattern`` is a filter whose levels may also name what they capture::

    application/+/device/{sensor_id}/event/up   ->  application/+/device/+/event/up
    zigbee2mqtt/{sensor_id...}                  ->  zigbee2mqtt/#

``{name}`` captures one non-empty level, ``{name...}`` the rest of the topic
(Zigbee2MQTT friendly names may contain ``/``) and must come last.

``Router`` takes routes in order and gives the first that matches a topic; a
route with ``ignore=True`` (``zigbee2mqtt/bridge/#`` before ``zigbee2mqtt/{sensor_id...}``)
says "received on purpose, not a measurement".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple

from sense311.errors import ConfigError

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "MAX_TOPIC_BYTES",
    "InvalidTopicError",
    "Route",
    "RouteMatch",
    "RoutePattern",
    "Router",
    "TopicFilter",
]

#: MQTT strings are length-prefixed with two bytes (MQTT 5 §1.5.4).
MAX_TOPIC_BYTES = 65535

#: Routed topics remembered by ``Router``. A ChirpStack fleet has one topic per
#: device and event type, so the cache only spares the regular expressions for
#: the busiest topics; a miss costs about a microsecond per route tried.
DEFAULT_CACHE_SIZE = 4096

_SHARE_PREFIX = "$share/"
_CAPTURE_RE = re.compile(r"\{([^{}]*)\}")
_GROUP_RE = re.compile(r"\(\?P<(\w+)>")


class InvalidTopicError(ConfigError, ValueError):
    """A topic filter or route pattern breaks the MQTT rules (a ``ValueError`` for validators)."""


def _invalid(kind: str, value: str, why: str) -> InvalidTopicError:
    return InvalidTopicError(f"Invalid {kind}: {value!r}: {why}")


def _split_share(kind: str, value: str) -> tuple[str | None, str]:
    if not value.startswith(_SHARE_PREFIX):
        return None, value
    group, sep, rest = value[len(_SHARE_PREFIX) :].partition("/")
    if not sep or not group:
        raise _invalid(kind, value, "a shared subscription is $share/<group>/<filter>")
    if "+" in group or "#" in group:
        raise _invalid(kind, value, f"the share group {group!r} must not contain '+' or '#'")
    if not rest:
        raise _invalid(kind, value, "the filter after $share/<group>/ is empty")
    return group, rest


def _check_string(kind: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise _invalid(kind, str(value), "it must be a non-empty string")
    if "\x00" in value:
        raise _invalid(kind, value, "it contains the character U+0000")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise _invalid(kind, value[:40] + "…", f"longer than {MAX_TOPIC_BYTES} bytes")


def _level_regex(levels: list[str]) -> str:
    """Regex source for filter levels; captures were already turned into named groups."""
    parts: list[str] = []
    tail = ""
    for level in levels:
        if level == "#":
            tail = "(?:/.*)?" if parts else ".*"
            break
        parts.append(level)
    source = "/".join(parts) + tail
    # MQTT 5 §4.7.2: a filter starting with a wildcard does not match $SYS/… topics.
    first = levels[0]
    if first == "#" or first.startswith("[^/]") or first.startswith("(?P<"):
        source = r"(?!\$)" + source
    return source


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """An MQTT subscription filter, validated on creation.

    ``value`` is what to subscribe with; for ``$share/<group>/<filter>`` the
    ``group`` is split off and ``filter`` (what topics are matched against) is
    the part after it.
    """

    value: str
    group: str | None = field(init=False, default=None)
    filter: str = field(init=False, default="")
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False, default=re.compile(""))

    def __post_init__(self) -> None:
        kind = "topic filter"
        _check_string(kind, self.value)
        group, flt = _split_share(kind, self.value)
        levels = flt.split("/")
        pieces: list[str] = []
        for i, level in enumerate(levels):
            if level == "#":
                if i != len(levels) - 1:
                    raise _invalid(kind, self.value, "'#' must be the last level")
                pieces.append("#")
            elif level == "+":
                pieces.append("[^/]*")
            elif "#" in level or "+" in level:
                raise _invalid(kind, self.value, f"a wildcard must fill a whole level, got {level!r}")
            else:
                pieces.append(re.escape(level))
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "filter", flt)
        object.__setattr__(self, "_regex", re.compile(_level_regex(pieces), re.DOTALL))

    @property
    def has_wildcards(self) -> bool:
        return "+" in self.filter or "#" in self.filter

    def matches(self, topic: str) -> bool:
        """True when the topic name ``topic`` matches this filter (MQTT rules, share group ignored)."""
        return self._regex.fullmatch(topic) is not None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class RoutePattern:
    """A topic filter whose levels may be named captures: ``tele/{sensor_id}/SENSOR``.

    ``filter`` is the MQTT subscription filter, ``names`` the capture names in
    order, ``match(topic)`` the captures as a dict or ``None`` when the topic does
    not match (a pattern without captures gives ``{}``: test ``is not None``).
    """

    pattern: str
    filter: str = field(init=False, default="")
    names: tuple[str, ...] = field(init=False, default=())
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False, default=re.compile(""))

    def __post_init__(self) -> None:
        kind = "route pattern"
        _check_string(kind, self.pattern)
        group, body = _split_share(kind, self.pattern)
        levels = body.split("/")
        pieces: list[str] = []
        filter_levels: list[str] = []
        names: list[str] = []
        last = len(levels) - 1
        for i, level in enumerate(levels):
            if level == "#" or level == "+":
                if level == "#" and i != last:
                    raise _invalid(kind, self.pattern, "'#' must be the last level")
                pieces.append("#" if level == "#" else "[^/]*")
                filter_levels.append(level)
            elif "{" in level or "}" in level:
                capture = _CAPTURE_RE.fullmatch(level)
                if capture is None:
                    raise _invalid(kind, self.pattern, f"a capture must fill a whole level, got {level!r}")
                name = capture.group(1)
                multi = name.endswith("...")
                if multi:
                    name = name[:-3]
                    if i != last:
                        raise _invalid(kind, self.pattern, f"'{{{name}...}}' must be the last level")
                if not name.isidentifier():
                    raise _invalid(kind, self.pattern, f"capture name {name!r} is not an identifier")
                if name in names:
                    raise _invalid(kind, self.pattern, f"capture name {name!r} is used twice")
                names.append(name)
                pieces.append(f"(?P<{name}>.+)" if multi else f"(?P<{name}>[^/]+)")
                filter_levels.append("#" if multi else "+")
            elif "#" in level or "+" in level:
                raise _invalid(kind, self.pattern, f"a wildcard must fill a whole level, got {level!r}")
            else:
                pieces.append(re.escape(level))
                filter_levels.append(level)
        flt = "/".join(filter_levels)
        if group is not None:
            flt = f"{_SHARE_PREFIX}{group}/{flt}"
        object.__setattr__(self, "filter", flt)
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "_regex", re.compile(_level_regex(pieces), re.DOTALL))

    @property
    def topic_filter(self) -> TopicFilter:
        return TopicFilter(self.filter)

    def match(self, topic: str) -> dict[str, str] | None:
        """Captures of ``topic`` by name, or ``None`` if the topic does not match."""
        found = self._regex.fullmatch(topic)
        return None if found is None else found.groupdict()

    def __str__(self) -> str:
        return self.pattern


@dataclass(frozen=True, slots=True)
class Route:
    """One routing rule: topics matching ``pattern`` go to ``decoder`` with ``options``.

    ``ignore=True`` marks topics that are received but carry no measurements;
    such a route needs no decoder.
    """

    pattern: RoutePattern
    decoder: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    ignore: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.pattern, str):
            object.__setattr__(self, "pattern", RoutePattern(self.pattern))
        if not self.ignore and not self.decoder:
            raise ConfigError(f"Route {self.pattern.pattern!r} needs a decoder or ignore: true")
        # A read-only copy: the same object goes into every DecodeContext of the
        # route, so decoders may cache what they derive from it by identity.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


class RouteMatch(NamedTuple):
    """The route a topic took and what its pattern captured (read-only).

    A named tuple rather than a frozen dataclass: one is built per routed
    message and a tuple is several times cheaper to create.
    """

    route: Route
    captures: Mapping[str, str]

    @property
    def sensor_id(self) -> str | None:
        return self.captures.get("sensor_id")


class Router:
    """First-match routing of topics over an ordered list of routes.

    Results are kept in an LRU cache of ``cache_size`` topics (0 disables it),
    so memory stays bounded however many distinct topics arrive.
    """

    def __init__(self, routes: Iterable[Route], *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        # All patterns in one alternation: the regex engine tries them in order
        # (first match wins, as in a loop) five times faster than a Python loop
        # over ten patterns. Capture groups are renamed per route to stay unique.
        alternatives: list[str] = []
        self._groups: dict[str, tuple[Route, tuple[tuple[str, str], ...]]] = {}
        for i, route in enumerate(self.routes):
            source = _GROUP_RE.sub(lambda m, i=i: f"(?P<r{i}_{m.group(1)}>", route.pattern._regex.pattern)
            alternatives.append(f"(?P<_r{i}>{source})")
            names = tuple((name, f"r{i}_{name}") for name in route.pattern.names)
            self._groups[f"_r{i}"] = (route, names)
        self._fullmatch = re.compile("|".join(alternatives) or "(?!)", re.DOTALL).fullmatch
        self._lookup = lru_cache(maxsize=cache_size)(self._route) if cache_size > 0 else self._route

    def _route(self, topic: str) -> RouteMatch | None:
        found = self._fullmatch(topic)
        if found is None:
            return None
        # The route's own group closes after its captures, so it is the last group.
        route, names = self._groups[found.lastgroup]  # type: ignore[index]
        return RouteMatch(route, MappingProxyType({name: found.group(group) for name, group in names}))

    def route(self, topic: str) -> RouteMatch | None:
        """The first route matching ``topic`` and its captures, or ``None``."""
        return self._lookup(topic)

    @property
    def filters(self) -> list[str]:
        """Subscription filters of the routes that decode, in order, without duplicates."""
        seen: dict[str, None] = {}
        for route in self.routes:
            if not route.ignore:
                seen.setdefault(route.pattern.filter, None)
        return list(seen)
