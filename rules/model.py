"""The rule file schema (pydantic). ``rules/loader.py`` reads the YAML and reports errors by line.

A rule file::

    city:                       # once per rule set: where schedules by the sun and local time apply
      lat: 52.37
      lon: 4.89
      timezone: Europe/Amsterdam
    defaults:                   # optional: fields every rule of this file starts from
      interval: 1m
    rules:
      - id: bin-overflow
        problem: bin_overflow   # what ticketing maps to a 311 service
        select: {kind: bin}     # kind, district, tags (all of), ids; each a name or a list
        metric: fill_level      # or detector.<name> for a detector's score
        aggregate: mean         # last first min max mean sum count stddev delta rate
                                # fraction_above(x) fraction_below(x) changes(x)
        window: 30m             # readings in (t − window, t], by event time
        condition: "> 0.9"
        for: 30m
        clear: "< 0.6"          # default: the condition fails
        clear_for: 10m
        no_data: keep_last      # ok | alerting | keep_last | silent
        active: {sun: night}    # and/or times: [{from: "22:00", to: "06:00", days: [mon, tue]}]
                                # sun_elevation: -6, or [dusk, dawn] like [-0.833, -4]
        unless:                 # nothing new starts while this holds (another metric, or the same)
          {metric: voltage, aggregate: max, window: 3m, condition: "< 100"}
        timestamp: event        # or received: windows by arrival time
        severity: medium        # low | medium | high | critical
        interval: 1m            # instants are k · interval in UTC
        lateness: 2m            # instant t is evaluated once the clock reaches t + lateness

Durations need a unit (``90s``, ``15m``, ``2h``, ``1d``) or are ``0``: a bare ``15`` is refused
rather than guessed as seconds.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from datetime import time, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from rules.aggregates import AGGREGATES, AggregateSpec
from rules.conditions import Condition, parse_condition
from rules.schedule import DAYS, STANDARD_SUNSET_ELEVATION, City, Schedule, TimeWindow
from sense311.durations import format_duration, parse_duration

__all__ = [
    "ANY_METRIC",
    "DETECTOR_PREFIX",
    "NO_DATA_MODES",
    "SEVERITIES",
    "TIMESTAMPS",
    "CityModel",
    "GuardModel",
    "Rule",
    "RuleDefaults",
    "RuleDuration",
    "RuleFile",
    "ScheduleModel",
    "Selector",
    "SilentModel",
    "TimeWindowModel",
    "did_you_mean",
    "rule_version",
]

SEVERITIES = ("low", "medium", "high", "critical")
NO_DATA_MODES = ("ok", "alerting", "keep_last", "silent")
TIMESTAMPS = ("event", "received")
#: Prefix of a metric that reads a detector's score instead of readings.
DETECTOR_PREFIX = "detector."
#: A metric named ``*`` reads every metric of the sensor (for "anything heard?" rules).
ANY_METRIC = "*"
#: Sun elevations a schedule may use (degrees): astronomical twilight to a low sun.
MIN_SUN_ELEVATION, MAX_SUN_ELEVATION = -18.0, 10.0
#: Instants are whole seconds: an interval finer than this is refused.
MIN_INTERVAL = timedelta(seconds=1)

_DURATION_EXAMPLE = "a duration like '15m'"
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
_PROBLEM = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_METRIC = re.compile(r"^(\*|[A-Za-z_][A-Za-z0-9_.:/-]{0,127})$")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_FULL_DAYS = {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
    "friday": "fri", "saturday": "sat", "sunday": "sun",
}  # fmt: skip
_AGG_CALL = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([-+]?[\d.eE+-]+)\s*\))?\s*$")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'mean'?"`` when a close choice exists, else the list of choices."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (expected one of: {', '.join(choices)})"


def _choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        text = str(value)
        raise ValueError(f"unknown {what} '{text}'{did_you_mean(text, choices)}")
    return value


def _strict_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    bare = isinstance(value, int | float) and not isinstance(value, bool)
    if bare and value == 0:
        return timedelta(0)
    text = str(value).strip() if isinstance(value, str) else None
    if bare or text is None or text == "" or re.fullmatch(r"[-+]?[\d.]+", text):
        if text == "0":
            return timedelta(0)
        raise ValueError(f"expected {_DURATION_EXAMPLE}, got '{value}'")
    try:
        parsed = parse_duration(text)
    except ValueError:
        raise ValueError(f"expected {_DURATION_EXAMPLE}, got '{value}'") from None
    return parsed


#: A rule file's duration: a unit is required (``0`` excepted).
RuleDuration = Annotated[
    timedelta,
    BeforeValidator(_strict_duration),
    PlainSerializer(format_duration, return_type=str),
]


def _as_list(value: Any) -> Any:
    if value is None or isinstance(value, list):
        return value
    return [value]


NameList = Annotated[list[str] | None, BeforeValidator(_as_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Selector(_Strict):
    """Which sensors a rule reads: every given criterion must match (an empty selector: all)."""

    kind: NameList = None
    district: NameList = None
    #: The sensor must carry all of these tags.
    tags: NameList = None
    ids: NameList = None


class TimeWindowModel(_Strict):
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    days: NameList = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> str:
        # YAML 1.1 reads an unquoted 22:00 as a sexagesimal integer (1320): take it back.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            value = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str) or not _HHMM.match(value.strip()):
            raise ValueError(f"expected a local time like '22:00', got '{value}'")
        return value.strip()

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [_choice(_FULL_DAYS.get(str(d).lower(), str(d).lower()), DAYS, "day") for d in value]

    def to_window(self) -> TimeWindow:
        def parse(text: str) -> time:
            hours, minutes = _HHMM.match(text).groups()  # type: ignore[union-attr]
            return time(int(hours), int(minutes))

        days = frozenset(DAYS.index(d) for d in self.days) if self.days else frozenset(range(7))
        return TimeWindow(parse(self.start), parse(self.end), days)


class ScheduleModel(_Strict):
    """When the rule is active: ``sun`` (night/day) and/or local ``times`` windows.

    ``sun_elevation`` (degrees) is where night begins and ends: one number for both, or
    ``[dusk, dawn]`` — e.g. ``[-0.833, -4]``: from sunset until the sun is 4° below the horizon
    before dawn.
    """

    sun: str | None = None
    sun_elevation: float | tuple[float, float] = STANDARD_SUNSET_ELEVATION
    times: list[TimeWindowModel] = Field(default_factory=list)

    @field_validator("sun_elevation", mode="before")
    @classmethod
    def _elevation(cls, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        if len(values) not in (1, 2) or any(
            isinstance(v, bool) or not isinstance(v, int | float) for v in values
        ):
            raise ValueError(f"expected degrees like -6 or [dusk, dawn] like [-0.833, -4], got '{value}'")
        for v in values:
            if not MIN_SUN_ELEVATION <= v <= MAX_SUN_ELEVATION:
                raise ValueError(
                    f"expected an elevation within {MIN_SUN_ELEVATION:g}..{MAX_SUN_ELEVATION:g} degrees, "
                    f"got {v:g}"
                )
        return float(values[0]) if len(values) == 1 else (float(values[0]), float(values[1]))

    @field_validator("sun")
    @classmethod
    def _sun(cls, value: Any) -> str | None:
        return None if value is None else _choice(value, ("night", "day"), "sun phase")

    def to_schedule(self) -> Schedule:
        elev = self.sun_elevation
        dusk, dawn = elev if isinstance(elev, tuple) else (elev, elev)
        return Schedule(self.sun, dusk, dawn, tuple(w.to_window() for w in self.times))


class SilentModel(_Strict):
    """What a ``no_data: silent`` rule reports when a sensor stops sending."""

    problem: str = "sensor_silent"
    for_: RuleDuration = Field(default=timedelta(hours=1), alias="for")
    severity: str = "low"

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: Any) -> str:
        return _choice(value, SEVERITIES, "severity")

    @field_validator("problem")
    @classmethod
    def _problem(cls, value: str) -> str:
        if not _PROBLEM.match(value):
            raise ValueError(f"expected a problem name like 'sensor_silent' (a-z, 0-9, _), got '{value}'")
        return value


def _parse_aggregate(value: Any) -> AggregateSpec:
    if isinstance(value, AggregateSpec):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"fn", "level"}
        if unknown or "fn" not in value:
            raise ValueError(f"expected {{fn, level}}, got keys {sorted(value)}")
        name, level = value["fn"], value.get("level")
    elif isinstance(value, str):
        match = _AGG_CALL.match(value)
        if not match:
            raise ValueError(f"expected an aggregate like 'mean' or 'fraction_above(0.5)', got '{value}'")
        name, level = match[1], match[2]
    else:
        raise ValueError(f"expected an aggregate like 'mean' or 'fraction_above(0.5)', got '{value}'")
    name = _choice(name, tuple(AGGREGATES), "aggregate")
    takes_level = AGGREGATES[name][0]
    if takes_level and level is None:
        raise ValueError(f"'{name}' needs a level, e.g. '{name}(0.5)'")
    if not takes_level and level is not None:
        raise ValueError(f"'{name}' takes no level, got '{value}'")
    try:
        number = None if level is None else float(level)
    except (TypeError, ValueError):
        raise ValueError(f"the level of '{name}' must be a number, got '{level}'") from None
    return AggregateSpec(name, number)


AggregateField = Annotated[
    AggregateSpec, BeforeValidator(_parse_aggregate), PlainSerializer(str, return_type=str)
]
ConditionField = Annotated[Condition, BeforeValidator(parse_condition), PlainSerializer(str, return_type=str)]


class GuardModel(_Strict):
    """``unless``: while this holds for a sensor (with data), the rule starts nothing for it: a
    normal sensor stays normal, a pending one returns to normal, a firing or recovering one stays
    as it is (an inhibition: it suppresses new problems, it does not resolve old ones).

    A lamp-out rule ``unless`` the mains voltage is gone leaves a circuit outage to the circuit
    rule. ``metric`` and ``window`` default to the rule's own.
    """

    metric: str | None = None
    aggregate: AggregateField = AggregateSpec("last")
    window: RuleDuration | None = None
    condition: ConditionField

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        if value is not None and not _METRIC.match(value):
            raise ValueError(f"expected a metric name like 'voltage' or 'detector.<name>', got '{value}'")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError(f"expected a window > 0, got '{format_duration(value)}'")
        return value


class RuleDefaults(_Strict):
    """File-level defaults; a rule's own fields win."""

    interval: RuleDuration | None = None
    lateness: RuleDuration | None = None
    window: RuleDuration | None = None
    severity: str | None = None
    no_data: str | None = None
    select: Selector | None = None
    active: ScheduleModel | None = None

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: Any) -> str | None:
        return None if value is None else _choice(value, SEVERITIES, "severity")

    @field_validator("no_data")
    @classmethod
    def _no_data(cls, value: Any) -> str | None:
        return None if value is None else _choice(value, NO_DATA_MODES, "no_data mode")


class Rule(_Strict):
    """One rule; see the module docstring for an example. Durations are ``timedelta``s."""

    id: str
    problem: str
    description: str = ""
    #: Explicit version; by default a hash of the rule's normalised definition (set by the loader).
    version: str | None = None
    enabled: bool = True
    select: Selector = Field(default_factory=Selector)
    metric: str
    aggregate: AggregateField = AggregateSpec("last")
    window: RuleDuration
    condition: ConditionField
    for_: RuleDuration = Field(default=timedelta(0), alias="for")
    clear: ConditionField | None = None
    clear_for: RuleDuration = timedelta(0)
    no_data: str = "ok"
    silent: SilentModel | None = None
    active: ScheduleModel | None = None
    unless: GuardModel | None = None
    #: Which time windows read: ``event`` (the time a reading carries, the default) or
    #: ``received`` (when it arrived: silence checks that a sensor's wrong clock must not fool).
    timestamp: str = "event"
    severity: str = "medium"
    interval: RuleDuration = timedelta(minutes=1)
    lateness: RuleDuration = timedelta(minutes=1)
    #: Fault kinds of a simulator's ground truth this rule is meant to find (scoring only).
    targets: NameList = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"expected an id like 'bin-overflow' (a-z, 0-9, '-', '_', '.'), got '{value}'")
        return value

    @field_validator("problem")
    @classmethod
    def _problem(cls, value: str) -> str:
        if not _PROBLEM.match(value):
            raise ValueError(f"expected a problem name like 'bin_overflow' (a-z, 0-9, _), got '{value}'")
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not _METRIC.match(value):
            raise ValueError(f"expected a metric name like 'fill_level' or 'detector.<name>', got '{value}'")
        if value.startswith(DETECTOR_PREFIX) and len(value) == len(DETECTOR_PREFIX):
            raise ValueError("expected 'detector.<name>': the detector's name is missing")
        return value

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: Any) -> str:
        return _choice(value, SEVERITIES, "severity")

    @field_validator("no_data")
    @classmethod
    def _no_data(cls, value: Any) -> str:
        return _choice(value, NO_DATA_MODES, "no_data mode")

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: Any) -> str:
        return _choice(value, TIMESTAMPS, "timestamp")

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"expected a window > 0, got '{format_duration(value)}'")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < MIN_INTERVAL or value.microseconds:
            raise ValueError(f"expected a whole number of seconds >= 1s, got '{format_duration(value)}'")
        return value

    @model_validator(mode="after")
    def _silent(self) -> Rule:
        if self.silent is not None and self.no_data != "silent":
            raise ValueError("'silent' settings need 'no_data: silent'")
        if self.timestamp == "received" and (
            self.metric.startswith(DETECTOR_PREFIX)
            or (self.unless and (self.unless.metric or "").startswith(DETECTOR_PREFIX))
        ):
            raise ValueError(
                "'timestamp: received' reads when readings arrived; detector scores have no such time"
            )
        return self

    @property
    def guard_metric(self) -> str | None:
        """The metric the ``unless`` guard reads (None without a guard)."""
        if self.unless is None:
            return None
        return self.unless.metric or self.metric

    @property
    def guard_window(self) -> timedelta | None:
        if self.unless is None:
            return None
        return self.unless.window or self.window

    @property
    def detector(self) -> str | None:
        """The detector's name when the metric is ``detector.<name>``."""
        return self.metric[len(DETECTOR_PREFIX) :] if self.metric.startswith(DETECTOR_PREFIX) else None

    @property
    def clear_condition(self) -> Condition | None:
        return self.clear

    @property
    def silent_settings(self) -> SilentModel | None:
        if self.no_data != "silent":
            return None
        return self.silent or SilentModel()

    @property
    def schedule(self) -> Schedule:
        return self.active.to_schedule() if self.active is not None else Schedule()

    def definition(self) -> dict[str, Any]:
        """The normalised definition the version hash covers (not the id, version or description)."""
        data = self.model_dump(
            mode="json", by_alias=True, exclude={"version", "description", "id", "targets"}
        )
        if self.no_data == "silent" and data.get("silent") is None:
            data["silent"] = SilentModel().model_dump(mode="json", by_alias=True)
        return data


class CityModel(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    timezone: str

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{value}'; use an IANA name like 'Europe/Amsterdam'"
            ) from None
        return value

    def to_city(self) -> City:
        return City(self.lat, self.lon, self.timezone)


class RuleFile(_Strict):
    """The top level of a rule file."""

    city: CityModel | None = None
    defaults: RuleDefaults | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list)


def rule_version(rule: Rule, city: City | None) -> str:
    """12 hex digits of SHA-256 over the normalised definition (and the city, when a schedule uses it)."""
    data = rule.definition()
    if rule.active is not None and city is not None:
        data["city"] = {"lat": city.lat, "lon": city.lon, "timezone": city.timezone}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
