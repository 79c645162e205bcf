"""Settings of the HTTP API (``settings.api``): where it listens, who may read, how fast.

Durations are written like every other sense311 duration (``"30s"``, ``"24h"``, ``"31d"``);
plain numbers of seconds are floats and say so in their name.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sense311.durations import Duration
from sense311.errors import ConfigError

__all__ = ["ApiSettings"]


class ApiSettings(BaseModel):
    """The API's section of the settings; every field has a working default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    @classmethod
    def from_settings(cls, settings: Any) -> ApiSettings:
        """The ``api:`` section of the sense311 settings, validated; ``ConfigError`` names the field."""
        section = getattr(settings, "api", None)
        if isinstance(section, ApiSettings):
            return section
        try:
            return cls.model_validate(section or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid setting api.{where}: {first['msg']}") from None

    #: Loopback by default: exposing the API is a decision, not an accident.
    host: str = "127.0.0.1"
    port: int = Field(8311, ge=0, le=65535)
    #: True: every read needs a token with the ``read`` scope (or higher). Writes always need one.
    read_requires_token: bool = False
    #: Requests per minute a client may make under /api/v1 (0 = no limit). A client is its token
    #: when it presents a valid one, else its IP address.
    rate_limit_per_minute: float = Field(600.0, ge=0)
    #: Requests a client may make at once before the per-minute rate applies.
    rate_limit_burst: int = Field(60, ge=1)
    #: Origins allowed by CORS; empty (the default) turns CORS off.
    cors_origins: list[str] = Field(default_factory=list)
    #: Seconds a request waits for a pooled database connection before answering 503.
    db_timeout: float = Field(5.0, gt=0)
    #: Seconds one SQL statement of the API may run (the service's own jobs keep theirs).
    statement_timeout: float = Field(30.0, gt=0)
    #: Connections the API's own pool keeps at most (a pool passed to create_app is used as is).
    pool_max: int = Field(4, ge=1)
    #: Seconds /readyz gives the database to answer ``SELECT 1``.
    readiness_timeout: float = Field(2.0, gt=0)
    #: Bytes a posted file (sensor import, rule file) may have.
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    #: Rows a raw readings query returns at most; more is reported as ``truncated``.
    max_readings: int = Field(10_000, ge=1)
    #: Items a listing returns at most per page.
    max_page_size: int = Field(1000, ge=1)
    #: Rule files or directories the API lists and backtests (``builtin:<pack>`` works).
    rules: list[str] = Field(default_factory=lambda: ["builtin:city"])
    #: The longest period one backtest request may cover: it runs every rule over every instant.
    backtest_max_range: Duration = Field(default=timedelta(days=31))
    #: A sensor without a reading for this long is shown as ``stale`` on the dashboard.
    stale_after: Duration = Field(default=timedelta(hours=1))
    #: Serve the dashboard at ``/``.
    dashboard: bool = True
