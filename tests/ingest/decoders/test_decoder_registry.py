"""The decoder registry and the contract every decoder module keeps."""

from __future__ import annotations

import pkgutil
from datetime import UTC, datetime
from importlib import import_module
from types import ModuleType

import pytest

import ingest.decoders as decoders_package
from ingest.decoders import available_decoders, get_decoder
from ingest.decoders.base import DecodeContext
from sense311.errors import ConfigError

NOT_DECODERS = {"base"}


def decoder_modules() -> list[ModuleType]:
    names = [
        info.name
        for info in pkgutil.iter_modules(decoders_package.__path__)
        if not info.name.startswith("_") and info.name not in NOT_DECODERS
    ]
    return [import_module(f"ingest.decoders.{name}") for name in sorted(names)]


MODULES = decoder_modules()


def test_registry_names_equal_the_modules_present() -> None:
    assert sorted(m.NAME for m in MODULES) == list(available_decoders())
    for module in MODULES:
        assert get_decoder(module.NAME) is module


def test_package_all_is_its_public_surface() -> None:
    assert decoders_package.__all__ == ["available_decoders", "get_decoder"]
    for name in decoders_package.__all__:
        assert callable(getattr(decoders_package, name))


def test_expected_decoders_are_registered() -> None:
    assert available_decoders() == ("chirpstack_v3", "chirpstack_v4", "flat_json", "json", "senml", "ttn_v3")


def test_unknown_decoder_names_a_close_match() -> None:
    with pytest.raises(ConfigError) as info:
        get_decoder("chirpstak_v4")
    assert str(info.value) == (
        'No decoder by the name "chirpstak_v4" was found; did you mean "chirpstack_v4"? '
        "Known: chirpstack_v3, chirpstack_v4, flat_json, json, senml, ttn_v3"
    )
    assert info.value.exit_code == 2


def test_unknown_decoder_without_close_match() -> None:
    with pytest.raises(
        ConfigError, match=r'^No decoder by the name "protobuf" was found\. Known: chirpstack_v3, '
    ):
        get_decoder("protobuf")


def test_plain_json_module_is_registered_as_json() -> None:
    with pytest.raises(ConfigError, match='did you mean "json"'):
        get_decoder("jsn")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_module_contract(module: ModuleType) -> None:
    assert {"NAME", "check_options", "decode"} <= set(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name)
    doc = module.__doc__ or ""
    assert f"Decoder ``{module.NAME}``" in doc
    assert "Route" in doc and "Payload" in doc and "Keys read" in doc
    module.check_options({})


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_unknown_option_is_refused_with_the_known_ones(module: ModuleType) -> None:
    with pytest.raises(ConfigError, match=f'^Unknown option "bogus" for decoder "{module.NAME}"(.*) Known: '):
        module.check_options({"bogus": 1})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("flat_json", {"timezon": "UTC"}, 'did you mean "timezone"?'),
        ("flat_json", {"timezone": "Mars/Base"}, "Invalid timezone 'Mars/Base'"),
        (
            "flat_json",
            {"timezone": 1},
            'option "timezone" of decoder "flat_json": expected an IANA zone name',
        ),
        ("flat_json", {"on_off": "yes"}, "expected true or false, got 'yes'"),
        ("json", {"skip_keys": "id"}, "expected a list of strings, got 'id'"),
        ("json", {"sensor_key": ""}, "expected a non-empty string"),
        ("senml", {"sensor_from": "payload"}, "expected one of 'bn', 'topic', got 'payload'"),
        ("chirpstack_v4", {"skip_keys": [1]}, "expected a list of strings"),
        ("ttn_v3", ["on_off"], "must be a mapping"),
    ],
)
def test_bad_option_values(name: str, options: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_decoder(name).check_options(options)  # type: ignore[attr-defined]
    assert message in str(info.value)


def test_bad_options_at_decode_time_are_config_errors() -> None:
    # Settings should call check_options first; a route that skipped it fails loudly, not per message.
    ctx = DecodeContext(datetime(2024, 5, 1, tzinfo=UTC), "lamp", {"timezone": "Nowhere/Land"})
    with pytest.raises(ConfigError):
        get_decoder("flat_json").decode("tele/lamp/SENSOR", b'{"a": 1}', ctx)
