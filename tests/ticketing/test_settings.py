"""Ticketing settings: defaults, secrets from the environment only, errors that name the setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ticketing import sinks
from ticketing.errors import TicketingConfigError
from ticketing.settings import API_KEY_ENV, WEBHOOK_SECRET_ENV, TicketingSettings
from ticketing.sinks import create_sink, register_sink, sink_names


def test_defaults_are_valid_and_explicit() -> None:
    s = TicketingSettings()
    assert s.sink == "open311"
    assert s.reopen == "follow_up"
    assert s.cooldown.days == 7
    assert s.open311.format == "auto"
    assert s.open311.rate_limits["post_request"].per_minute == 10
    assert s.open311.api_key is None


def test_api_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "k-123")
    s = TicketingSettings()
    assert s.open311.api_key is not None and s.open311.api_key.get_secret_value() == "k-123"
    assert "k-123" not in repr(s)
    assert "api_key" not in s.open311.model_dump()


def test_a_secret_in_the_settings_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match=API_KEY_ENV):
        TicketingSettings(open311={"api_key": "in-a-file"})
    with pytest.raises(ValidationError, match=WEBHOOK_SECRET_ENV):
        TicketingSettings(webhook={"secret": "in-a-file"})


def test_a_misspelt_sink_gets_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="no sink named 'open31'; did you mean 'open311'"):
        TicketingSettings(sink="open31")
    with pytest.raises(TicketingConfigError, match="did you mean 'webhook'") as info:
        create_sink("webhok", TicketingSettings())
    assert info.value.exit_code == 2


def test_registered_sinks_are_found_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks, "_registered", {})

    class Custom:  # a stand-in only the registry sees
        name = "custom"

    register_sink("custom_sink", lambda settings, http: Custom())  # type: ignore[arg-type,return-value]
    assert "custom_sink" in sink_names()
    assert isinstance(create_sink("custom_sink", TicketingSettings()), Custom)
    assert TicketingSettings(sink="custom_sink").sink == "custom_sink"
    with pytest.raises(TicketingConfigError, match="taken by a built-in"):
        register_sink("open311", lambda settings, http: Custom())  # type: ignore[arg-type,return-value]


def test_attribute_sources_are_checked() -> None:
    s = TicketingSettings(
        services={
            "lamp_out": {
                "service_code": "x",
                "attributes": {"pole": "sensor.metadata.pole_id", "fault": {"value": "out"}},
            }
        }
    )
    attrs = s.services["lamp_out"].attributes
    assert attrs["pole"].source == "sensor.metadata.pole_id"
    assert attrs["fault"].value == "out"
    with pytest.raises(ValidationError, match="must start with one of: sensor, incident, ticket, evidence"):
        TicketingSettings(services={"p": {"service_code": "x", "attributes": {"a": "registry.pole"}}})
    with pytest.raises(ValidationError, match="exactly one of 'from'"):
        TicketingSettings(
            services={"p": {"service_code": "x", "attributes": {"a": {"from": "sensor.id", "value": 1}}}}
        )


def test_rate_limit_endpoints_are_named() -> None:
    with pytest.raises(
        ValidationError, match=r"unknown endpoint 'post_requests'.*did you mean 'post_request'"
    ):
        TicketingSettings(open311={"rate_limits": {"post_requests": {"per_minute": 5}}})


def test_a_lease_shorter_than_one_call_is_refused() -> None:
    with pytest.raises(ValidationError, match="send_lease 10 s is shorter than one POST"):
        TicketingSettings(send_lease="10s")


def test_durations_read_like_the_rest_of_sense311() -> None:
    s = TicketingSettings(group_window="90m", cooldown="2d", group_hold=30)
    assert s.group_window.total_seconds() == 5400
    assert s.cooldown.days == 2
    assert s.group_hold.total_seconds() == 30
    with pytest.raises(ValidationError, match="expected a duration"):
        TicketingSettings(cooldown="soon")


def test_endpoint_urls() -> None:
    s = TicketingSettings(
        open311={"url": "https://311.example.org/v2", "discovery_url": "https://x.org/discovery.xml"}
    )
    assert s.open311.url == "https://311.example.org/v2/"
    assert s.open311.discovery_url == "https://x.org/discovery.xml"
    with pytest.raises(ValidationError, match="expected an http:// or https:// URL, got 'ftp://x'"):
        TicketingSettings(open311={"url": "ftp://x"})
