"""The options of ``sense311 simulate``, validated before anything starts.

``SimulationOptions`` is a pydantic model; ``parse_options(**values)`` builds one and turns a
validation failure into a one-line ``ConfigError`` that names the option the way the CLI
spells it: ``--speed must be > 0, got -1``.

Times: ``start`` / ``end`` are ISO 8601 (``2024-03-01``, ``2024-03-01T06:00Z``); without a zone
they are UTC. Durations (``duration``, ``step``) are seconds or ``30s``, ``15m``, ``6h``,
``1d``, ``1w`` and sums like ``1h30m``. ``speed`` is simulated seconds per wall-clock second:
1 is real time, 3600 an hour per second, unset as fast as possible (backfill).
"""

from __future__ import annotations

import difflib
import math
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sense311.durations import parse_duration as core_parse_duration
from sense311.errors import ConfigError
from simulators.encoders import FORMATS
from simulators.faults import FAULT_KINDS, FaultRates, default_faults
from simulators.fleet import DEFAULT_COUNTS
from simulators.publisher import DEFAULT_MAX_INFLIGHT, parse_mqtt_url

__all__ = ["FAULT_PRESETS", "OUTPUTS", "SimulationOptions", "parse_duration", "parse_options"]

OUTPUTS = ("mqtt", "db", "file", "none")
FAULT_PRESETS = ("none", "default")
_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1, "ms": 0.001}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")


def parse_duration(value: Any) -> timedelta:
    """A ``timedelta`` from seconds, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"1d"``, ``"1w"``."""
    try:
        return core_parse_duration(value)
    except ValueError:
        raise ValueError("must be a duration like 90s, 15m, 6h, 1d or 1h30m") from None


def _parse_time(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError("must be an ISO 8601 time like 2024-03-01 or 2024-03-01T06:00Z") from None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Time = Annotated[datetime | None, BeforeValidator(_parse_time)]


class SimulationOptions(BaseModel):
    """Everything a simulation run needs; field names are the CLI's option names with ``_``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    seed: int = Field(0, description="random seed: same seed and options, same messages and ground truth")
    bins: int = Field(DEFAULT_COUNTS["bin"], description="number of waste bins")
    lights: int = Field(DEFAULT_COUNTS["light"], description="number of street lights")
    parking: int = Field(DEFAULT_COUNTS["parking"], description="number of parking bay sensors")
    air: int = Field(DEFAULT_COUNTS["air"], description="number of air quality / noise monitors")
    city: str = Field("Amsterdam", description="city name (labels only)")
    lat: float = Field(52.37, description="city centre latitude, degrees")
    lon: float = Field(4.89, description="city centre longitude, degrees")
    tz: str = Field("Europe/Amsterdam", description="city time zone (IANA name)")
    start: Time = Field(
        None, description="first simulated instant; default: now with --speed, else --end - --duration"
    )
    end: Time = Field(None, description="end of the period (exclusive); default: now without --speed")
    duration: Duration | None = Field(
        None, description="length of the period if --end is not given; default 1d"
    )
    step: Duration = Field(timedelta(minutes=1), description="report interval of every sensor")
    speed: float | None = Field(
        None, description="simulated seconds per real second; unset = as fast as possible"
    )
    format: str = Field("json", description=f"gateway format: {', '.join(FORMATS)}")
    faults: str = Field("none", description="fault preset: none (clean fleet) or default")
    fault_rates: dict[str, float] = Field(
        default_factory=dict, description="per-kind rates, episodes/sensor-day"
    )
    ground_truth: Path | None = Field(None, description="write the labelled fault episodes here (JSON Lines)")
    output: Literal["mqtt", "db", "file", "none"] = Field("mqtt", description="where messages go")
    out_file: Path | None = Field(None, description="with --output file: JSON Lines of topic and payload")
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="broker for --output mqtt")
    topic_prefix: str = Field("", description="prepended to every topic, e.g. a test's own prefix")
    max_inflight: int = Field(
        DEFAULT_MAX_INFLIGHT, description="messages awaiting PUBACK before publishing waits"
    )
    connect_timeout: float = Field(10.0, description="seconds to wait for the broker's CONNACK")
    ack_timeout: float = Field(30.0, description="seconds to wait for outstanding PUBACKs")
    database_url: str | None = Field(None, description="PostgreSQL URL for --register and --output db")
    # "register" would shadow BaseModel.register: the field has another name and the CLI's as alias.
    register_sensors: bool = Field(
        False, alias="register", description="write the fleet into the registry first"
    )

    @field_validator("bins", "lights", "parking", "air")
    @classmethod
    def _count(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("lat")
    @classmethod
    def _lat(cls, v: float) -> float:
        if not -80.0 <= v <= 80.0:
            raise ValueError("must be within -80..80 degrees")
        return v

    @field_validator("lon")
    @classmethod
    def _lon(cls, v: float) -> float:
        if not -180.0 <= v <= 180.0:
            raise ValueError("must be within -180..180 degrees")
        return v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("must be > 0")
        return v

    @field_validator("step")
    @classmethod
    def _step(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return v

    @field_validator("speed")
    @classmethod
    def _speed(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError("must be > 0")
        return v

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v not in FORMATS:
            hint = difflib.get_close_matches(v, FORMATS, n=1)
            tip = f"did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(
                f"must be one of {', '.join(FORMATS)}, got {v!r}{'; ' + tip if tip else ''}".strip()
            )
        return v

    @field_validator("faults")
    @classmethod
    def _faults(cls, v: str) -> str:
        if v not in FAULT_PRESETS:
            raise ValueError(f"must be one of {', '.join(FAULT_PRESETS)}")
        return v

    @field_validator("fault_rates")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for name, rate in v.items():
            if name not in FAULT_KINDS:
                hint = difflib.get_close_matches(name, FAULT_KINDS, n=1)
                tip = f"; did you mean {hint[0]!r}?" if hint else f"; known kinds: {', '.join(FAULT_KINDS)}"
                raise ValueError(f"unknown fault kind {name!r}{tip}")
            if not (math.isfinite(rate) and rate >= 0):
                raise ValueError(f"rate for {name!r} must be >= 0 episodes/sensor-day, got {rate:g}")
        return v

    @field_validator("max_inflight")
    @classmethod
    def _inflight(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("connect_timeout", "ack_timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            raise ValueError("must be > 0 seconds")
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

    @model_validator(mode="after")
    def _together(self) -> SimulationOptions:
        if not (self.bins or self.lights or self.parking or self.air):
            raise ValueError("the fleet is empty: give --bins, --lights, --parking or --air a count > 0")
        if self.end is not None and self.duration is not None:
            raise ValueError("give --end or --duration, not both")
        if self.end is not None and self.start is not None and self.end <= self.start:
            raise ValueError(
                f"--end ({self.end.isoformat()}) must be after --start ({self.start.isoformat()})"
            )
        if self.output == "db":
            if self.database_url is None:
                raise ValueError("--output db needs --database-url")
            if self.speed is not None:
                raise ValueError("--output db writes as fast as possible: drop --speed")
        if self.register_sensors and self.database_url is None:
            raise ValueError("--register needs --database-url")
        if self.output == "file" and self.out_file is None:
            raise ValueError("--output file needs --out-file")
        return self

    def counts(self) -> dict[str, int]:
        return {"bin": self.bins, "light": self.lights, "parking": self.parking, "air": self.air}

    def rates(self) -> FaultRates:
        base = default_faults() if self.faults == "default" else FaultRates()
        return base.with_rates(**self.fault_rates)

    def summary(self) -> dict[str, Any]:
        """The options worth keeping in the ground truth (no URLs: they may hold credentials)."""
        out = self.model_dump(mode="json", exclude={"mqtt_url", "database_url", "ground_truth", "out_file"})
        return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_options(**values: Any) -> SimulationOptions:
    """``SimulationOptions(**values)``, or a ``ConfigError`` naming the first bad option."""
    try:
        return SimulationOptions(**values)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = str(err["msg"]).removeprefix("Value error, ").strip().rstrip(";").strip()
        loc = [str(part) for part in err.get("loc", ()) if not isinstance(part, int)]
        if not loc:
            raise ConfigError(msg) from None
        option = "--" + loc[0].replace("_", "-")
        if err["type"] == "extra_forbidden":
            known = [f"--{n.replace('_', '-')}" for n in SimulationOptions.model_fields]
            hint = difflib.get_close_matches(option, known, n=1)
            tip = f"; did you mean {hint[0]}?" if hint else ""
            raise ConfigError(f"unknown option {option}{tip}") from None
        got = f", got {_show(err['input'])}" if "input" in err and " got " not in msg else ""
        if msg.startswith("must"):
            raise ConfigError(f"{option} {msg}{got}") from None
        if err["type"] != "value_error":
            # pydantic's own wording ("Input should be a valid integer"): show what was given.
            raise ConfigError(f"{option}: {msg[:1].lower()}{msg[1:]}{got}") from None
        raise ConfigError(f"{option}: {msg}") from None
