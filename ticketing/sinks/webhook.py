"""A generic JSON webhook, HMAC-signed.

Each ticket is POSTed once as JSON. Headers::

    Content-Type: application/json
    Idempotency-Key: S311-9f2c4e1a7b3d5f60          (the ticket's reference: receivers dedupe on it)
    X-Sense311-Signature: t=1717171717,v1=<hex>     (HMAC-SHA256 of "<t>.<body>" with the shared secret)

Sample body::

    {"reference": "S311-9f2c…", "problem": "lamp_out", "opened_at": "2024-06-01T21:15:00Z",
     "location": {"lat": 52.37, "lon": 4.89, "address": "Lindenstraat 3"},
     "follows": null, "members": [{"sensor_id": "lamp-001", …}], "description": "…"}

The secret comes from SENSE311_WEBHOOK_SECRET. ``verify_signature`` is what a receiver runs.
Retries after an ambiguous failure simply post again: the Idempotency-Key makes that safe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from ticketing.describe import describe
from ticketing.errors import TicketingConfigError
from ticketing.open311.client import format_datetime
from ticketing.open311.http import call
from ticketing.settings import WEBHOOK_SECRET_ENV, TicketingSettings
from ticketing.sinks import Delivery, Sink
from ticketing.tickets import TicketView

__all__ = ["NAME", "SIGNATURE_TOLERANCE", "WebhookSink", "create", "sign", "ticket_json", "verify_signature"]

NAME = "webhook"
#: Seconds a signature's timestamp may differ from the receiver's clock (replay window).
SIGNATURE_TOLERANCE = 300
#: Characters of the receiver's answer kept on the outbox row.
RESPONSE_SNIPPET = 500


def ticket_json(ticket: TicketView) -> dict[str, Any]:
    """A ticket as plain JSON: what the webhook posts and the dry-run sink records."""
    first = ticket.primary
    follows = None
    if ticket.follows is not None:
        f = ticket.follows
        follows = {
            "reference": f.reference,
            "service_request_id": f.service_request_id,
            "closed_at": format_datetime(f.closed_at) if f.closed_at else None,
            "status_notes": f.status_notes,
            "outcome": f.outcome,
        }
    return {
        "reference": ticket.reference,
        "problem": ticket.problem,
        "opened_at": format_datetime(ticket.opened_at),
        "location": {
            "lat": ticket.lat if ticket.lat is not None else first.lat,
            "lon": ticket.lon if ticket.lon is not None else first.lon,
            "address": first.address,
        },
        "follows": follows,
        "members": [
            {
                "incident_id": m.incident_id,
                "sensor_id": m.sensor_id,
                "kind": m.kind,
                "lat": m.lat,
                "lon": m.lon,
                "address": m.address,
                "first_seen": format_datetime(m.first_seen),
                "last_seen": format_datetime(m.last_seen),
                "detections": m.detections,
                "severity": m.severity,
                "value": m.value,
                "sensor_state": m.sensor_state,
            }
            for m in ticket.members
        ],
        "description": describe(ticket),
    }


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, now: datetime, tolerance: int = SIGNATURE_TOLERANCE
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within ``tolerance`` s."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now.timestamp() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={parts.get('v1', '')}")


class WebhookSink(Sink):
    name = NAME

    def __init__(self, settings: TicketingSettings, http: httpx.Client | None = None) -> None:
        w = settings.webhook
        if not w.url:
            raise TicketingConfigError("sink 'webhook' needs ticketing.webhook.url")
        if w.secret is None:
            raise TicketingConfigError(f"sink 'webhook' signs every body: set {WEBHOOK_SECRET_ENV}")
        self._url = w.url
        self._secret = w.secret.get_secret_value()
        self._header = w.signature_header
        self._timeout = httpx.Timeout(w.timeout)
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=self._timeout)

    def render(self, ticket: TicketView) -> dict[str, Any]:
        return ticket_json(ticket)

    def deliver(
        self, ticket: TicketView, payload: dict[str, Any], *, in_doubt: bool, now: datetime
    ) -> Delivery:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        stamp = int(now.astimezone(UTC).timestamp())
        headers = {
            "content-type": "application/json",
            "idempotency-key": ticket.reference,
            self._header: sign(self._secret, body, stamp),
        }
        response = call(
            self._http,
            "POST",
            self._url,
            content=body,
            headers=headers,
            timeout=self._timeout,
            reference=ticket.reference,
        )
        return Delivery(response={"status": response.status_code, "body": response.text[:RESPONSE_SNIPPET]})

    def close(self) -> None:
        if self._own_http:
            self._http.close()


def create(settings: TicketingSettings, http: httpx.Client | None = None) -> Sink:
    return WebhookSink(settings, http)
