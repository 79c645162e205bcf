"""Where tickets go, looked up by name: ``open311``, ``webhook``, ``dry_run`` (and any registered).

A sink turns a ticket into a payload (``render``), delivers it (``deliver``), and, when it can
follow the request at the other end (``tracks_status``), exchanges tokens and reports statuses.
Sinks raise ticketing errors only: ``MappingError`` and ``PermanentError`` dead-letter the outbox
row, ``RateLimited``, ``TransientError`` and ``AmbiguousError`` retry it.
"""

from __future__ import annotations

import difflib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ticketing.errors import TicketingConfigError

if TYPE_CHECKING:
    from ticketing.settings import TicketingSettings
    from ticketing.tickets import TicketView

__all__ = [
    "Delivery",
    "RemoteStatus",
    "Sink",
    "SinkFactory",
    "create_sink",
    "register_sink",
    "sink_names",
]

#: Built-in sinks: name → module holding ``create(settings, http)``; imported on first use.
_BUILTIN = {
    "dry_run": "ticketing.sinks.dry_run",
    "open311": "ticketing.sinks.open311",
    "webhook": "ticketing.sinks.webhook",
}


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a delivery achieved. ``remote_id``/``token`` when the other end tracks the request."""

    remote_id: str | None = None
    token: str | None = None
    response: dict[str, Any] = field(default_factory=dict)
    reconciled: bool = False


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    """A request's state at the other end (UTC times)."""

    remote_id: str
    status: str
    notes: str | None
    updated_at: datetime | None
    duplicate_of: str | None = None


class Sink(ABC):
    name: ClassVar[str]
    #: True when the sink can exchange tokens and report statuses (the poller asks it).
    tracks_status: ClassVar[bool] = False

    @abstractmethod
    def render(self, ticket: TicketView) -> dict[str, Any]:
        """The JSON-able payload this ticket becomes (stored on the outbox row)."""

    @abstractmethod
    def deliver(
        self, ticket: TicketView, payload: dict[str, Any], *, in_doubt: bool, now: datetime
    ) -> Delivery:
        """Send it. ``in_doubt``: an earlier attempt may have arrived; do not create it twice."""

    def exchange_token(self, token: str) -> str | None:
        raise NotImplementedError(f"sink {self.name!r} does not track requests")

    def statuses(self, remote_ids: list[str]) -> list[RemoteStatus]:
        raise NotImplementedError(f"sink {self.name!r} does not track requests")

    def changed_since(self, after: datetime) -> list[RemoteStatus] | None:
        """Requests changed after ``after``, or None when the sink cannot ask that way."""
        return None

    def close(self) -> None:  # noqa: B027 - most sinks hold nothing; overriding is optional
        """Release what the sink opened itself (not what it was given)."""


SinkFactory = Callable[["TicketingSettings", "httpx.Client | None"], Sink]
_registered: dict[str, SinkFactory] = {}


def register_sink(name: str, factory: SinkFactory) -> None:
    """Make ``factory(settings, http)`` available as ``ticketing.sink: <name>``."""
    if name in _BUILTIN:
        raise TicketingConfigError(f"sink name {name!r} is taken by a built-in sink")
    _registered[name] = factory


def sink_names() -> list[str]:
    return sorted({*_BUILTIN, *_registered})


def create_sink(name: str, settings: TicketingSettings, http: httpx.Client | None = None) -> Sink:
    """The sink called ``name``; a misspelt name gets a suggestion and the list of names."""
    if name in _registered:
        return _registered[name](settings, http)
    module = _BUILTIN.get(name)
    if module is None:
        names = sink_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TicketingConfigError(f"no sink named {name!r}; {hint}choices: {', '.join(names)}")
    factory: SinkFactory = importlib.import_module(module).create
    return factory(settings, http)
