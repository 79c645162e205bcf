"""Settings: a YAML or TOML file plus ``SENSE311_*`` environment variables (pydantic-settings).

Precedence, highest first: values passed in code, environment variables, the config file,
defaults. The file is named by ``--config`` or ``SENSE311_CONFIG``. Nested settings are
reachable from the environment with ``__`` (``SENSE311_INGEST__BATCH_ROWS=5000``).

Secrets (passwords inside ``database_url`` and ``mqtt_url``, API keys) come only from the
environment: a config file that carries one is refused, and ``SecretStr`` keeps them out of
reprs and logs. ``redact_url`` is what every log line and CLI message uses to show a URL.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sense311.durations import Duration
from sense311.errors import ConfigError

__all__ = [
    "IngestSettings",
    "MqttSettings",
    "Route",
    "Settings",
    "StorageSettings",
    "load_settings",
    "redact_url",
]

_file_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sense311_file", default=None
)


def redact_url(url: str | SecretStr | None) -> str:
    """``mqtt://ingest:secret@host:1883`` → ``mqtt://ingest:***@host:1883``."""
    if url is None:
        return "(unset)"
    text = url.get_secret_value() if isinstance(url, SecretStr) else url
    try:
        parts = urlsplit(text)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return text
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class Route(_Section):
    """Which decoder reads which topics.

    ``pattern`` is an MQTT filter whose levels may name captures: ``{sensor_id}`` (one level),
    ``{sensor_id...}`` (the rest of the topic) and ``{gateway}``. The first matching route wins;
    ``ignore: true`` routes swallow topics that carry no measurements (bridge logs, …).
    """

    pattern: str
    decoder: str | None = None
    ignore: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    #: Extra field-map entries for this route only; they take precedence over ``ingest.field_map``.
    field_map: dict[str, Any] = Field(default_factory=dict)
    #: When devices are known by another name than their sensor id (a Zigbee2MQTT friendly name),
    #: the registry metadata key holding that name: the decoded id is looked up there.
    sensor_alias: str | None = None

    @field_validator("decoder")
    @classmethod
    def _decoder_named(cls, value: str | None) -> str | None:
        return value.strip() if value else value


def _default_routes() -> list[Route]:
    return [
        Route(pattern="gateways/{gateway}/json", decoder="json"),
        Route(pattern="gateways/{gateway}/senml", decoder="senml"),
        Route(pattern="gateways/{gateway}/sensors/{sensor_id}/json", decoder="json"),
        # Device codecs commonly say "on"/"off" for relays and lamps.
        Route(
            pattern="application/+/device/{sensor_id}/event/+",
            decoder="chirpstack_v4",
            options={"on_off": True},
        ),
        Route(pattern="v3/+/devices/+/+", decoder="ttn_v3", options={"on_off": True}),
        Route(pattern="zigbee2mqtt/bridge/#", ignore=True),
        Route(
            pattern="zigbee2mqtt/{sensor_id...}",
            decoder="flat_json",
            sensor_alias="zigbee_name",
            # Zigbee2MQTT's own units: brightness 0..254, energy in kWh; linkquality is radio, not a reading.
            field_map={
                "brightness": {"metric": "dim_level", "scale": 1 / 254},
                "energy": {"metric": "energy_wh", "scale": 1000},
                "occupancy": "occupied",
                "linkquality": None,
            },
        ),
        Route(pattern="tele/{sensor_id}/SENSOR", decoder="flat_json"),
    ]


class MqttSettings(_Section):
    """The MQTT session ingest holds. The URL itself is ``Settings.mqtt_url`` (it may hold a password)."""

    client_id: str = "sense311-ingest"
    protocol: Literal["3.1.1", "5"] = "5"
    keepalive: int = Field(30, ge=5, le=3600, description="seconds")
    connect_timeout: float = Field(10.0, gt=0, description="seconds")
    #: A persistent session is what lets the broker keep (and redeliver) messages while ingest is down.
    session_expiry: Duration = Field(default="7d")
    #: ``$share/<group>/…`` is used when this is set or when several workers run.
    shared_group: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False


class IngestSettings(_Section):
    routes: list[Route] = Field(default_factory=_default_routes)
    #: Flush when this many readings are buffered (see FLUSH_ROWS in ingest/writer.py for the figure).
    batch_rows: int = Field(5000, ge=1, le=1_000_000)
    #: …or when the oldest buffered message has waited this long.
    flush_interval: Duration = Field(default="200ms")
    #: Messages received but not yet acknowledged. Bounds memory: past it the broker stops sending
    #: (MQTT 5 receive maximum; for 3.1.1 set max_inflight_messages in the broker).
    max_unacked: int = Field(10000, ge=1, le=65535)
    max_payload_bytes: int = Field(65536, ge=64)
    #: Event times further ahead than this are clock errors and are dead-lettered.
    max_future: Duration = Field(default="5m")
    unknown_sensors: Literal["dead_letter", "auto_register"] = "dead_letter"
    #: Refuse readings for a sensor bound to another gateway than the one the topic names.
    enforce_gateway: bool = False
    #: Keep radio metadata (rssi, snr) as readings of their own.
    store_radio: bool = False
    #: device field → canonical metric (a name, or {metric, scale, offset, transform}, or a list).
    field_map: dict[str, Any] = Field(default_factory=dict)
    #: Fields the map does not name: keep them under their own (sanitised) name, drop them, or
    #: dead-letter them.
    unmapped_fields: Literal["keep", "drop", "dead_letter"] = "keep"
    #: metric → [min, max]; a value outside is dead-lettered (the other values of the message stay).
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    #: How many retries before a batch that keeps failing to commit is reported (it is never dropped).
    retry_max_delay: Duration = Field(default="30s")


class StorageSettings(_Section):
    #: Where sense311's tables live (search_path); one database can hold several deployments.
    db_schema: str = Field("public", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    retention: Duration = Field(default="365d")
    #: Plain PostgreSQL partition width (TimescaleDB chunks are 7 days).
    partition_width: Duration = Field(default="7d")
    #: How far ahead of now partitions are created by maintenance.
    partitions_ahead: Duration = Field(default="14d")
    compress_after: Duration = Field(default="7d")
    pool_min: int = Field(1, ge=0)
    pool_max: int = Field(8, ge=1)
    #: Seconds to wait for a pooled connection before giving up with a clear error.
    pool_timeout: float = Field(30.0, gt=0)
    #: Seconds every statement may run; a hung server does not hang sense311.
    statement_timeout: float = Field(60.0, gt=0)
    #: ``auto`` uses TimescaleDB when the extension can be created, plain partitions otherwise.
    mode: Literal["auto", "timescaledb", "postgres"] = "auto"


class _FileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_data.get() or {})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SENSE311_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    mqtt_url: SecretStr = SecretStr("mqtt://127.0.0.1:1883")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    #: Prometheus metrics port (0 = off).
    metrics_port: int = Field(9311, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Sections owned by the packages: kept raw here, because the core never imports them; each
    # package validates its own (``TicketingSettings.from_settings(settings)``, …), so a mistake
    # is still reported with the section's name before anything starts.
    rules: dict[str, Any] = Field(default_factory=dict)
    detectors: dict[str, Any] = Field(default_factory=dict)
    ticketing: dict[str, Any] = Field(default_factory=dict)
    api: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(f"expected a postgresql:// URL, got scheme {scheme!r}")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"expected mqtt://host:port or mqtts://host:port, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("expected mqtt://host:port, the host is missing")
        return value


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path}: expected a .yaml, .yml or .toml file")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    for key in ("database_url", "mqtt_url"):
        url = data.get(key)
        if isinstance(url, str) and urlsplit(url).password:
            raise ConfigError(
                f"{path}: {key} holds a password; secrets come only from the environment "
                f"(set SENSE311_{key.upper()} instead)"
            )
    return data


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from the config file, the environment and ``overrides``.

    Raises ``ConfigError`` with one line naming the setting and the problem.
    """
    path = config or os.environ.get("SENSE311_CONFIG")
    data = _read_file(Path(path)) if path else {}
    token = _file_data.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        source = f" in {path}" if path else ""
        raise ConfigError(f"invalid setting {where}{source}: {first['msg']}{more}") from None
    finally:
        _file_data.reset(token)
