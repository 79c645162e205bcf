"""Settings: file + environment, precedence, validation messages, secrets kept out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sense311.durations import format_duration, parse_duration
from sense311.errors import ConfigError
from sense311.logs import setup_logging
from sense311.settings import load_settings, redact_url


def test_yaml_file_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sense311.yaml"
    cfg.write_text("storage:\n  schema: city\n  retention: 30d\ningest:\n  batch_rows: 1234\n")
    monkeypatch.setenv("SENSE311_INGEST__BATCH_ROWS", "777")
    settings = load_settings(cfg)
    assert settings.storage.db_schema == "city"
    assert settings.storage.retention == timedelta(days=30)
    assert settings.ingest.batch_rows == 777


def test_toml_file_named_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "sense311.toml"
    cfg.write_text('[mqtt]\nclient_id = "east"\n[ingest]\nflush_interval = "1s"\n')
    monkeypatch.setenv("SENSE311_CONFIG", str(cfg))
    settings = load_settings()
    assert settings.mqtt.client_id == "east"
    assert settings.ingest.flush_interval == timedelta(seconds=1)


def test_password_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("mqtt_url: mqtt://ingest:hunter2@broker:1883\n")
    with pytest.raises(ConfigError, match="SENSE311_MQTT_URL") as info:
        load_settings(cfg)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("ingest:\n  batch_rows: -3\n", "ingest.batch_rows"),
        ("ingest:\n  flush_interval: soon\n", "ingest.flush_interval"),
        ("storage:\n  schema: 'Bad Schema'\n", "storage.schema"),
        ("ingest:\n  bogus: 1\n", "ingest.bogus"),
    ],
)
def test_invalid_values_name_the_setting(tmp_path: Path, text: str, where: str) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=rf"invalid setting {where} in .*s\.yaml"):
        load_settings(cfg)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("ingest:\n  batch_rows: 5\n   oops: [\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:\d+: invalid YAML"):
        load_settings(cfg)


def test_url_schemes_are_checked() -> None:
    with pytest.raises(ConfigError, match="mqtt_url"):
        load_settings(mqtt_url="http://broker")
    with pytest.raises(ConfigError, match="database_url"):
        load_settings(database_url="mysql://db")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging() replaces the root handlers; later tests must not log into this test's stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secrets_never_in_repr_or_logs(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    settings = load_settings(mqtt_url="mqtts://gw:s3cret@broker:8883", database_url="postgresql://u:pw9@db/x")
    assert "s3cret" not in repr(settings) and "pw9" not in repr(settings)
    assert redact_url(settings.mqtt_url) == "mqtts://gw:***@broker:8883"
    setup_logging("INFO", "json")
    logging.getLogger("t").warning("connecting to %s", settings.mqtt_url.get_secret_value())
    err = capsys.readouterr().err
    assert "s3cret" not in err and "gw:***@broker" in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("1h30m", 5400), ("7d", 604800), ("200ms", 0.2), (90, 90), ("2.5s", 2.5)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_a_bare_number_is_seconds() -> None:
    assert parse_duration("15") == timedelta(seconds=15)


@pytest.mark.parametrize("bad", ["fast", "-5m", "5 parsecs", -1, True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)
