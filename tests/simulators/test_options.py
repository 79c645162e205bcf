"""Options are checked before anything runs; a bad one is one clear line naming it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from sense311.errors import ConfigError
from simulators import parse_options
from simulators.cli_options import parse_duration


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"speed": -1}, "--speed must be > 0, got -1"),
        ({"speed": 0}, "--speed must be > 0, got 0"),
        ({"step": "500ms"}, "--step must be at least 1s, got '500ms'"),
        ({"duration": "soon"}, "--duration must be a duration like 90s, 15m, 6h, 1d or 1h30m, got 'soon'"),
        ({"format": "chirpstack"}, "--format must be one of json, senml, chirpstack_v4"),
        ({"faults": "many"}, "--faults must be one of none, default, got 'many'"),
        (
            {"fault_rates": {"lampout": 1.0}},
            "--fault-rates: unknown fault kind 'lampout'; did you mean 'lamp_out'?",
        ),
        (
            {"fault_rates": {"lamp_out": -1}},
            "--fault-rates: rate for 'lamp_out' must be >= 0 episodes/sensor-day",
        ),
        ({"bins": -3}, "--bins must be >= 0, got -3"),
        ({"bins": "many"}, "--bins: input should be a valid integer"),
        ({"start": "yesterday"}, "--start must be an ISO 8601 time"),
        ({"mqtt_url": "http://broker"}, "--mqtt-url must look like mqtt://host:1883"),
        ({"output": "kafka"}, "--output: input should be 'mqtt', 'db', 'file' or 'none', got 'kafka'"),
        ({"spede": 2}, "unknown option --spede; did you mean --speed?"),
        ({"end": "2024-03-02", "duration": "1d"}, "give --end or --duration, not both"),
        (
            {"start": "2024-03-02", "end": "2024-03-01"},
            "--end (2024-03-01T00:00:00+00:00) must be after --start",
        ),
        ({"output": "db"}, "--output db needs --database-url"),
        (
            {"output": "db", "database_url": "postgresql://x", "speed": 60},
            "--output db writes as fast as possible",
        ),
        ({"register": True}, "--register needs --database-url"),
        ({"output": "file"}, "--output file needs --out-file"),
        ({"bins": 0, "lights": 0, "parking": 0, "air": 0}, "the fleet is empty"),
        ({"tz": "Nowhere/City", "output": "none"}, None),
    ],
)
def test_bad_options_are_one_line(values: dict, message: str | None) -> None:
    if message is None:
        parse_options(**values)  # checked when the city is built, see test_runner
        return
    with pytest.raises(ConfigError) as info:
        parse_options(**values)
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text
    assert info.value.exit_code == 2


def test_defaults_and_parsing() -> None:
    opts = parse_options(
        start="2024-03-01", duration="1h30m", step=60, faults="default", fault_rates={"lamp_out": 0.5}
    )
    assert opts.start == datetime(2024, 3, 1, tzinfo=UTC)
    assert opts.duration == timedelta(minutes=90)
    assert opts.step == timedelta(minutes=1)
    assert opts.rates().rate("lamp_out") == 0.5 and opts.rates().rate("dropout") > 0
    assert parse_options().rates().clean
    assert opts.counts() == {"bin": 80, "light": 80, "parking": 24, "air": 16}
    assert parse_options(register=True, database_url="postgresql://h/db").register_sensors
    summary = parse_options(mqtt_url="mqtt://user:secret@h", database_url="postgresql://u:pw@h/db").summary()
    assert "secret" not in repr(summary) and "pw@" not in repr(summary)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("6h", 21600),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        (2.5, 2.5),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_a_naive_start_is_utc() -> None:
    assert parse_options(start="2024-03-01T06:00").start == datetime(2024, 3, 1, 6, tzinfo=UTC)
    assert re.search(
        r"\+00:00$", parse_options(start="2024-03-01T07:00+01:00").start.astimezone(UTC).isoformat()
    )
