"""Ticketing settings: what a problem becomes at the city, when tickets group, reopen and retry.

``TicketingSettings`` is the ``ticketing`` section of the sense311 settings. Secrets never come
from a file or from code: the Open311 api_key is read from ``SENSE311_OPEN311_API_KEY``, the
webhook's signing secret from ``SENSE311_WEBHOOK_SECRET``; a settings source that carries either
is refused with the variable to set instead.

Example (YAML)::

    ticketing:
      sink: open311
      group_distance_m: 150
      group_window: 2h
      cooldown: 7d
      reopen: follow_up
      services:
        lamp_out:
          service_code: streetlight
          title: Street light out
          attributes:
            pole_id: sensor.metadata.pole_id
            fault: {value: out}
      open311:
        url: https://311.example.org/open311/v2/
        jurisdiction_id: example.org
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sense311.durations import Duration
from sense311.errors import ConfigError

__all__ = [
    "API_KEY_ENV",
    "WEBHOOK_SECRET_ENV",
    "AttributeSource",
    "Open311ServerSettings",
    "Open311Settings",
    "RateLimit",
    "ServiceMapping",
    "TicketingSettings",
    "WebhookSettings",
]

API_KEY_ENV = "SENSE311_OPEN311_API_KEY"
WEBHOOK_SECRET_ENV = "SENSE311_WEBHOOK_SECRET"

#: Where an attribute value may come from: the sensor registry row, the incident, the ticket, or
#: the evidence of the latest detection.
SOURCE_ROOTS = ("sensor", "incident", "ticket", "evidence")
#: Endpoints of an Open311 server, each with its own rate limit.
ENDPOINTS = (
    "discovery",
    "services",
    "service_definition",
    "post_request",
    "get_requests",
    "get_request",
    "token",
    "default",
)
#: The sinks shipped with sense311; ``ticketing.sinks.register_sink`` adds more at run time.
BUILTIN_SINKS = ("dry_run", "open311", "webhook")


def _suggest(value: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}choices: {', '.join(sorted(choices))}"


def _env_secret(name: str) -> str | None:
    # A plain string: the field validates it into a SecretStr, in Python and JSON mode alike.
    return os.environ.get(name) or None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class AttributeSource(_Section):
    """One attribute value: ``from`` a dotted path (``sensor.metadata.pole_id``) or a literal ``value``.

    A plain string in the settings is shorthand for ``{from: <string>}``.
    """

    source: str | None = Field(None, alias="from")
    value: str | float | int | bool | list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"from": data}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> AttributeSource:
        if (self.source is None) == (self.value is None):
            raise ValueError("give exactly one of 'from' (a path like sensor.metadata.pole_id) or 'value'")
        if self.source is not None:
            root = self.source.split(".", 1)[0]
            if root not in SOURCE_ROOTS:
                raise ValueError(f"'from: {self.source}' must start with one of: {', '.join(SOURCE_ROOTS)}")
        return self


class ServiceMapping(_Section):
    """How tickets for one problem become Open311 requests."""

    service_code: str = Field(min_length=1)
    #: Attribute code → where its value comes from. Required attributes of the service definition
    #: that are not mapped here make the ticket fail with a MappingError naming them.
    attributes: dict[str, AttributeSource] = Field(default_factory=dict)
    #: First line of the request's description ("Street light out").
    title: str | None = None


class RateLimit(_Section):
    """A token bucket: ``per_minute`` requests on average, ``burst`` at once."""

    per_minute: float = Field(gt=0)
    burst: int = Field(1, ge=1)


def _default_rate_limits() -> dict[str, RateLimit]:
    # Real 311 back ends answer 429 past about 10 POSTs a minute (OPEN311.md); reads are cheaper.
    return {"post_request": RateLimit(per_minute=10), "default": RateLimit(per_minute=60, burst=5)}


class Open311Settings(_Section):
    """The GeoReport v2 endpoint tickets are filed with."""

    #: The endpoint's base URL; ``requests.json`` etc. are resolved against it.
    url: str = "http://127.0.0.1:8311/"
    #: Where ``discovery.{fmt}`` lives when it is not under ``url``.
    discovery_url: str | None = None
    #: ``auto`` uses JSON when discovery lists it, XML otherwise (XML is the spec's mandatory format).
    format: Literal["auto", "json", "xml"] = "auto"
    jurisdiction_id: str | None = None
    #: Read from SENSE311_OPEN311_API_KEY only.
    api_key: SecretStr | None = Field(default_factory=lambda: _env_secret(API_KEY_ENV), exclude=True)
    #: Seconds. The read timeout bounds how long a POST may stay unanswered before it is ambiguous.
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(15.0, gt=0)
    write_timeout: float = Field(15.0, gt=0)
    pool_timeout: float = Field(5.0, gt=0)
    rate_limits: dict[str, RateLimit] = Field(default_factory=_default_rate_limits)
    #: Seconds a call may wait for our own rate limiter before it is rescheduled instead.
    max_rate_wait: float = Field(5.0, ge=0)
    #: Service list and definitions are refreshed after this, or when discovery's changeset changes.
    cache_ttl: Duration = Field(default="1h")
    #: Reconciliation searches requests filed this long before the ticket's first attempt.
    search_slack: Duration = Field(default="1h")
    #: A request found by its marker must lie this close to the ticket (metres) when both have lat/long.
    search_radius_m: float = Field(100.0, gt=0)
    #: Ids per ``GET requests?service_request_id=a,b,c`` (keeps URLs short of common 8 KB limits).
    status_batch: int = Field(50, ge=1, le=500)
    #: Poll with ``updated_after`` (an extension) instead of listing ids.
    use_updated_after: bool = False
    #: Page size asked for when the server pages (``page``/``page_size`` extension).
    page_size: int = Field(500, ge=1, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _no_secret_here(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("api_key") is not None:
            raise ValueError(f"the api_key is a secret: set {API_KEY_ENV} in the environment instead")
        return data

    @field_validator("url", "discovery_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        # The endpoint is a directory that requests.json etc. resolve against; discovery may name a file.
        if info.field_name == "url" and not value.endswith("/"):
            return value + "/"
        return value

    @field_validator("rate_limits")
    @classmethod
    def _known_endpoints(cls, value: dict[str, RateLimit]) -> dict[str, RateLimit]:
        for name in value:
            if name not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {name!r} in rate_limits; {_suggest(name, ENDPOINTS)}")
        return value


class WebhookSettings(_Section):
    """A generic JSON webhook; the body is HMAC-SHA256 signed with SENSE311_WEBHOOK_SECRET."""

    url: str | None = None
    secret: SecretStr | None = Field(default_factory=lambda: _env_secret(WEBHOOK_SECRET_ENV), exclude=True)
    #: Seconds, for every phase of the call.
    timeout: float = Field(10.0, gt=0)
    signature_header: str = "X-Sense311-Signature"

    @model_validator(mode="before")
    @classmethod
    def _no_secret_here(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("secret") is not None:
            raise ValueError(
                f"the webhook secret is a secret: set {WEBHOOK_SECRET_ENV} in the environment instead"
            )
        return data


class Open311ServerSettings(_Section):
    """sense311's own GeoReport v2 server (``sense311 open311-server``)."""

    host: str = "127.0.0.1"
    port: int = Field(8311, ge=0, le=65535)
    #: The server's tables live in this schema, apart from sense311's own.
    db_schema: str = Field("open311", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    #: Jurisdictions served; with more than one, requests must name theirs.
    jurisdictions: list[str] = Field(default_factory=list)
    #: Rows per page of GET requests when the client does not ask (the spec's default cap is 1000).
    page_size: int = Field(1000, ge=1, le=1000)
    endpoint_type: Literal["production", "test"] = "production"
    contact: str = "sense311 Open311 server"
    pool_max: int = Field(8, ge=1)


class TicketingSettings(_Section):
    """Incidents, grouping, reopen policy, the outbox and the sink that files tickets."""

    @classmethod
    def from_settings(cls, settings: Any) -> TicketingSettings:
        """The ``ticketing:`` section of the sense311 settings, validated; ``ConfigError`` names the field."""
        try:
            return cls.model_validate(settings.ticketing or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid setting ticketing.{where}: {first['msg']}") from None

    #: The sink tickets go to, by registered name: open311, webhook, dry_run.
    sink: str = "open311"
    #: problem → Open311 service and attribute mapping.
    services: dict[str, ServiceMapping] = Field(default_factory=dict)
    #: Incidents of one problem closer than this (metres) join one ticket: about one block, the span
    #: of a street-light circuit.
    group_distance_m: float = Field(150.0, ge=0)
    #: …and detected within this of the ticket's first incident.
    group_window: Duration = Field(default="2h")
    #: A new ticket waits this long in the outbox so incidents of one fault detected at the same
    #: evaluation join it before it is sent.
    group_hold: Duration = Field(default="2m")
    #: A problem that returns within this after the city closed its ticket is a reopen.
    cooldown: Duration = Field(default="7d")
    #: What a reopen does: file a follow-up that references the closed request, file an unrelated
    #: new ticket, or record the incident without filing (it closes when the rules resolve it).
    reopen: Literal["follow_up", "new", "ignore"] = "follow_up"
    #: Outbox retries: exponential backoff with jitter from retry_base up to retry_cap…
    retry_base: Duration = Field(default="5s")
    retry_cap: Duration = Field(default="30m")
    #: …until the row is this old; then it is dead-lettered (and can still be retried by hand).
    give_up_after: Duration = Field(default="7d")
    #: A claimed row is someone else's until this passes (a crashed worker's row is retried after it).
    send_lease: Duration = Field(default="5m")
    #: Detections handled per consumer transaction.
    consume_batch: int = Field(500, ge=1, le=100_000)
    #: How often an open ticket's status is asked for.
    poll_interval: Duration = Field(default="10m")
    #: Prefix of every ticket's reference marker (distinguishes deployments sharing a 311 endpoint).
    reference_prefix: str = Field("S311", pattern=r"^[A-Za-z0-9]{1,12}$")
    open311: Open311Settings = Field(default_factory=Open311Settings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    server: Open311ServerSettings = Field(default_factory=Open311ServerSettings)

    @field_validator("sink")
    @classmethod
    def _known_sink(cls, value: str) -> str:
        from ticketing.sinks import sink_names

        names = sink_names()
        if value not in names:
            raise ValueError(f"no sink named {value!r}; {_suggest(value, names)}")
        return value

    @model_validator(mode="after")
    def _lease_covers_a_call(self) -> TicketingSettings:
        o = self.open311
        # A lease shorter than one slow call plus its reconciliation would let a second worker
        # claim a row whose POST is still in flight.
        worst = 2 * (o.connect_timeout + o.write_timeout + o.read_timeout) + o.max_rate_wait
        if self.send_lease.total_seconds() < worst:
            raise ValueError(
                f"send_lease {self.send_lease.total_seconds():.0f} s is shorter than one POST and its "
                f"reconciliation may take ({worst:.0f} s with these timeouts); raise send_lease"
            )
        return self
