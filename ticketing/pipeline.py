"""One ticketing round: consume detections, send the due outbox rows, poll open tickets.

What ``sense311 tickets run`` repeats, the demo drives, and the end-to-end tests call with their
own ``now``. Each step is safe to run from several processes at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ticketing.incidents import consume_detections
from ticketing.outbox import OutboxWorker
from ticketing.poller import poll_tickets
from ticketing.settings import TicketingSettings
from ticketing.sinks import Sink

__all__ = ["CycleResult", "run_cycle"]


@dataclass(slots=True)
class CycleResult:
    consumed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    polled: int = 0
    closed: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.consumed or self.sent or self.retried or self.dead or self.closed)


def run_cycle(
    conn: psycopg.Connection[Any],
    settings: TicketingSettings,
    sinks: Mapping[str, Sink],
    now: datetime,
    *,
    poll: bool = True,
    force_poll: bool = False,
) -> CycleResult:
    result = CycleResult()
    while True:
        consumed = consume_detections(conn, settings, now)
        result.consumed += consumed.processed
        if consumed.processed < settings.consume_batch:
            break
    work = OutboxWorker(conn, settings, sinks).drain(now)
    result.sent, result.retried, result.dead = work.sent, work.retried, work.dead
    if poll:
        for sink in sinks.values():
            polled = poll_tickets(conn, sink, settings, now, force=force_poll)
            result.polled += polled.checked
            result.closed += polled.closed
    return result
