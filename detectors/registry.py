"""Detectors by name: ``get_detector("seasonal", period="day")``.

Every detector module registers its class with ``@register``; the modules listed in
``_MODULES`` are imported on first use. A misspelt name or parameter is a ``ConfigError`` that
suggests the closest name (difflib), as misspelt rule fields and decoders do.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, TypeVar

from sense311.errors import ConfigError

__all__ = ["available_detectors", "detector_class", "get_detector", "register"]

_REGISTRY: dict[str, type] = {}
#: One module per detector.
_MODULES = (
    "detectors.seasonal",
    "detectors.forest",
    "detectors.peer",
    "detectors.peer_dark",
    "detectors.stuck",
    "detectors.spike",
    "detectors.level_shift",
    "detectors.rise_rate",
    "detectors.silent",
)
_loaded = False

T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator: make ``cls`` reachable as ``get_detector(cls.name)``."""
    name = cls.name  # type: ignore[attr-defined]
    existing = _REGISTRY.get(name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ConfigError(f"two detectors are named {name!r}: {existing.__qualname__} and {cls.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(module)
        _loaded = True


def available_detectors() -> list[str]:
    """The registered detector names, sorted."""
    _load()
    return sorted(_REGISTRY)


def _suggest(word: str, choices: list[str], what: str) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known {what}: {', '.join(choices)}"


def detector_class(name: str) -> type:
    """The class registered as ``name``; ``ConfigError`` with a suggestion when unknown."""
    _load()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown detector {name!r}{_suggest(name, sorted(_REGISTRY), 'detectors')}")
    return cls


def get_detector(name: str, **params: Any) -> Any:
    """A new detector ``name`` with ``params``; unknown parameters are refused by name."""
    cls = detector_class(name)
    accepted = sorted(
        p.name
        for klass in cls.__mro__
        if "__init__" in vars(klass) and klass is not object
        for p in inspect.signature(klass.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )
    for key in params:
        if key not in accepted:
            raise ConfigError(
                f"detector {name!r} has no parameter {key!r}{_suggest(key, accepted, 'parameters')}"
            )
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"detector {name!r}: {exc}") from None
