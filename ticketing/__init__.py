"""Incidents, the outbox and the Open311 GeoReport v2 client and server.

Entry points::

    from ticketing import TicketingSettings, apply_detection, consume_detections, run_cycle
    from ticketing import OutboxWorker, poll_tickets, create_sink, register_sink
    from ticketing import Open311Client, create_app

Names are imported on first use, so importing the package (e.g. for its settings) does not load
the HTTP server stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticketing.incidents import apply_detection, consume_detections
    from ticketing.open311.client import Open311Client
    from ticketing.open311.server import create_app
    from ticketing.outbox import OutboxWorker
    from ticketing.pipeline import run_cycle
    from ticketing.poller import poll_tickets
    from ticketing.settings import TicketingSettings
    from ticketing.sinks import create_sink, register_sink

__all__ = [
    "Open311Client",
    "OutboxWorker",
    "TicketingSettings",
    "apply_detection",
    "consume_detections",
    "create_app",
    "create_sink",
    "poll_tickets",
    "register_sink",
    "run_cycle",
]

_WHERE = {
    "Open311Client": "ticketing.open311.client",
    "OutboxWorker": "ticketing.outbox",
    "TicketingSettings": "ticketing.settings",
    "apply_detection": "ticketing.incidents",
    "consume_detections": "ticketing.incidents",
    "create_app": "ticketing.open311.server",
    "create_sink": "ticketing.sinks",
    "poll_tickets": "ticketing.poller",
    "register_sink": "ticketing.sinks",
    "run_cycle": "ticketing.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ticketing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
