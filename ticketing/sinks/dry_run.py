"""The dry-run sink: records what would have been sent, sends nothing.

The outbox row keeps the payload (the ticket as the webhook would post it, plus the Open311
request its mapping would produce, when one is mapped) and ends ``sent`` with
``{"dry_run": true}`` as its response; the ticket ends ``sent``, untracked. Useful to tune
grouping and mappings against a real city before filing anything there.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx

from ticketing.describe import describe
from ticketing.settings import TicketingSettings
from ticketing.sinks import Delivery, Sink
from ticketing.sinks.open311 import resolve_source
from ticketing.sinks.webhook import ticket_json
from ticketing.tickets import TicketView

__all__ = ["NAME", "DryRunSink", "create"]

NAME = "dry_run"
log = logging.getLogger(__name__)


class DryRunSink(Sink):
    name = NAME

    def __init__(self, settings: TicketingSettings) -> None:
        self._settings = settings

    def render(self, ticket: TicketView) -> dict[str, Any]:
        payload = ticket_json(ticket)
        mapping = self._settings.services.get(ticket.problem)
        if mapping is not None:
            payload["open311"] = {
                "service_code": mapping.service_code,
                "description": describe(ticket, mapping.title),
                "attributes": {
                    code: resolve_source(ticket, src)[0] for code, src in mapping.attributes.items()
                },
            }
        return payload

    def deliver(
        self, ticket: TicketView, payload: dict[str, Any], *, in_doubt: bool, now: datetime
    ) -> Delivery:
        log.info(
            "dry run: ticket %s (%s, %d incidents) would have been sent",
            ticket.reference,
            ticket.problem,
            len(ticket.members),
        )
        return Delivery(response={"dry_run": True})


def create(settings: TicketingSettings, http: httpx.Client | None = None) -> Sink:
    return DryRunSink(settings)
