"""Decoders, looked up by name (``decoder: chirpstack_v4`` in a route).

Each decoder is a module of this package with ``NAME``, ``decode(topic,
payload, ctx) -> Decoded`` (the contract is in ``base.py``) and
``check_options(options)``, which raises ``ConfigError`` for route options it
cannot use; call it when settings load, before the first message.

==================  ==============================================================
name                payloads
==================  ==============================================================
``chirpstack_v3``   ChirpStack v3 events, json_v3 and protobuf-JSON marshalers
``chirpstack_v4``   ChirpStack v4 events (JSON)
``flat_json``       Zigbee2MQTT and Tasmota device state
``json``            plain JSON and ThingsBoard forms (module ``plain_json``)
``senml``           SenML (RFC 8428) and legacy LwM2M ``e`` arrays
``ttn_v3``          The Things Stack v3 uplinks
==================  ==============================================================
"""

from __future__ import annotations

import difflib
from importlib import import_module

from ingest.decoders.base import Decoder
from sense311.errors import ConfigError

__all__ = ["available_decoders", "get_decoder"]

#: Modules of this package that are decoders; ``tests/ingest/decoders`` checks
#: that every module file is listed here.
_MODULES = ("chirpstack_v3", "chirpstack_v4", "flat_json", "plain_json", "senml", "ttn_v3")

_REGISTRY: dict[str, Decoder] = {}
for _module_name in _MODULES:
    _module = import_module(f"{__name__}.{_module_name}")
    _REGISTRY[_module.NAME] = _module  # type: ignore[assignment]
del _module_name, _module


def available_decoders() -> tuple[str, ...]:
    """Names of the decoders, sorted."""
    return tuple(sorted(_REGISTRY))


def get_decoder(name: str) -> Decoder:
    """The decoder module registered as ``name``; ``ConfigError`` naming the close ones if none is."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    known = available_decoders()
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else "."
    raise ConfigError(f'No decoder by the name "{name}" was found{hint} Known: {", ".join(known)}') from None
