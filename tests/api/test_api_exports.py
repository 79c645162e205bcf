"""The API package's public surface is its ``__all__``; the dashboard's files ship with it."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources

import pytest

import sense311.api
from sense311.errors import ConfigError
from sense311.settings import load_settings

PUBLIC = {
    "ApiServer", "ApiSettings", "NewToken", "TokenError", "TokenInfo", "create_app", "create_token",
    "list_tokens", "revoke_token", "verify_token",
}  # fmt: skip


def test_all_is_the_public_surface() -> None:
    assert set(sense311.api.__all__) == PUBLIC
    for name in sense311.api.__all__:
        assert getattr(sense311.api, name) is not None


def test_dashboard_files_are_package_data() -> None:
    for name in ("app.js", "app.css"):
        assert resources.files("sense311.api").joinpath("static", name).read_bytes()


def test_settings_defaults_are_safe() -> None:
    settings = sense311.api.ApiSettings()
    assert settings.host == "127.0.0.1" and settings.cors_origins == []
    assert settings.read_requires_token is False and settings.rate_limit_per_minute > 0


def test_settings_come_from_the_api_section() -> None:
    settings = load_settings(api={"port": 9000, "read_requires_token": True, "stale_after": "2h"})
    api = sense311.api.ApiSettings.from_settings(settings)
    assert api.port == 9000 and api.read_requires_token and api.stale_after == timedelta(hours=2)
    with pytest.raises(ConfigError, match=r"invalid setting api\.rate_limit_burst"):
        sense311.api.ApiSettings.from_settings(load_settings(api={"rate_limit_burst": 0}))
    with pytest.raises(ConfigError, match=r"invalid setting api\.colour"):
        sense311.api.ApiSettings.from_settings(load_settings(api={"colour": "red"}))
