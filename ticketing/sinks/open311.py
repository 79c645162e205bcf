"""The Open311 GeoReport v2 sink: a ticket becomes a service request of the mapped service.

Sample mapping (settings)::

    services:
      lamp_out:
        service_code: streetlight
        title: Street light out
        attributes:
          pole_id: sensor.metadata.pole_id      # registry row of the ticket's first sensor
          fault: {value: out}                   # a literal (a list value's key or its name)
          lamps: ticket.members                 # how many incidents the ticket groups

Sources: ``sensor.<id|kind|lat|lon|address|district|metadata.KEY>``, ``incident.<first_seen|
last_seen|detections|severity|value|rule_id|sensor_id|problem>``, ``ticket.<reference|members|
problem|opened_at>``, ``evidence.KEY``. Required attributes the mapping leaves empty fail the
ticket with a MappingError that names the attribute and where it was looked for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from ticketing.describe import describe
from ticketing.errors import MappingError
from ticketing.open311.client import Open311Client, format_datetime
from ticketing.open311.http import timeout_of
from ticketing.open311.models import NewRequest
from ticketing.settings import AttributeSource, TicketingSettings
from ticketing.sinks import Delivery, RemoteStatus, Sink
from ticketing.tickets import TicketView

__all__ = ["NAME", "Open311Sink", "create", "resolve_source"]

NAME = "open311"


def _scalar(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)


def resolve_source(ticket: TicketView, source: AttributeSource) -> tuple[str | list[str] | None, str]:
    """(value, where it was looked for) for one attribute source."""
    if source.value is not None:
        return _scalar(source.value), "a literal"
    assert source.source is not None
    root, _, rest = source.source.partition(".")
    first = ticket.primary
    where = f"{source.source} of sensor {first.sensor_id}"
    value: Any = None
    if root == "sensor":
        if rest.startswith("metadata."):
            value = first.metadata.get(rest.split(".", 1)[1])
        else:
            value = {
                "id": first.sensor_id,
                "kind": first.kind,
                "lat": first.lat,
                "lon": first.lon,
                "address": first.address,
                "district": first.district,
            }.get(rest)
    elif root == "incident":
        value = {
            "first_seen": first.first_seen,
            "last_seen": first.last_seen,
            "detections": first.detections,
            "severity": first.severity,
            "value": first.value,
            "rule_id": first.rule_id,
            "sensor_id": first.sensor_id,
            "problem": ticket.problem,
        }.get(rest)
    elif root == "ticket":
        value = {
            "reference": ticket.reference,
            "members": len(ticket.members),
            "problem": ticket.problem,
            "opened_at": ticket.opened_at,
        }.get(rest)
        where = f"{source.source} of ticket {ticket.reference}"
    elif root == "evidence":
        value = first.evidence.get(rest)
    return _scalar(value), where


class Open311Sink(Sink):
    name = NAME
    tracks_status = True

    def __init__(
        self,
        settings: TicketingSettings,
        http: httpx.Client | None = None,
        client: Open311Client | None = None,
    ) -> None:
        o = settings.open311
        self._settings = settings
        self._own_http = http is None and client is None
        self._http = http or httpx.Client(
            timeout=timeout_of(o.connect_timeout, o.read_timeout, o.write_timeout, o.pool_timeout)
        )
        self.client = client or Open311Client(self._http, o)

    def render(self, ticket: TicketView) -> dict[str, Any]:
        mapping = self._settings.services.get(ticket.problem)
        if mapping is None:
            mapped = ", ".join(sorted(self._settings.services)) or "none"
            raise MappingError(
                f"no Open311 service is mapped for problem {ticket.problem!r} (ticket {ticket.reference}); "
                f"add ticketing.services.{ticket.problem}.service_code (mapped: {mapped})"
            )
        attributes: dict[str, str | list[str]] = {}
        missing: dict[str, str] = {}
        for code, source in mapping.attributes.items():
            value, where = resolve_source(ticket, source)
            if value is None or value == "":
                missing[code] = where
            else:
                attributes[code] = value
        first = ticket.primary
        lat = ticket.lat if ticket.lat is not None else first.lat
        lon = ticket.lon if ticket.lon is not None else first.lon
        return {
            "service_code": mapping.service_code,
            "description": describe(ticket, mapping.title),
            "lat": lat,
            "long": lon,
            "address_string": first.address,
            "attributes": attributes,
            "unresolved": missing,
            "reference": ticket.reference,
        }

    def deliver(
        self, ticket: TicketView, payload: dict[str, Any], *, in_doubt: bool, now: datetime
    ) -> Delivery:
        request = NewRequest(
            service_code=payload["service_code"],
            description=payload["description"],
            lat=payload.get("lat"),
            long=payload.get("long"),
            address_string=payload.get("address_string"),
            attributes=payload.get("attributes") or {},
            reference=payload.get("reference"),
        )
        try:
            result = self.client.submit(request, in_doubt=in_doubt, since=ticket.created_at, now=now)
        except MappingError as exc:
            unresolved = payload.get("unresolved") or {}
            if unresolved:
                looked = "; ".join(f"{code} from {where}: empty" for code, where in unresolved.items())
                raise MappingError(f"{exc} ({looked})") from exc
            raise
        return Delivery(
            remote_id=result.service_request_id,
            token=result.token,
            response={
                k: v
                for k, v in (
                    ("service_request_id", result.service_request_id),
                    ("token", result.token),
                    ("service_notice", result.service_notice),
                    ("reconciled", result.reconciled),
                    ("endpoint", self.client.base_url),
                )
                if v is not None
            },
            reconciled=result.reconciled,
        )

    def exchange_token(self, token: str) -> str | None:
        return self.client.token(token)

    def statuses(self, remote_ids: list[str]) -> list[RemoteStatus]:
        return [_status(r) for r in self.client.requests(remote_ids) if r.service_request_id]

    def changed_since(self, after: datetime) -> list[RemoteStatus] | None:
        if not self._settings.open311.use_updated_after:
            return None
        return [_status(r) for r in self.client.updated_after(after) if r.service_request_id]

    def close(self) -> None:
        if self._own_http:
            self._http.close()


def _status(r: Any) -> RemoteStatus:
    return RemoteStatus(
        remote_id=r.service_request_id,
        status=r.status or "open",
        notes=r.status_notes,
        updated_at=r.updated_datetime,
        duplicate_of=r.duplicate_of,
    )


def create(settings: TicketingSettings, http: httpx.Client | None = None) -> Sink:
    return Open311Sink(settings, http)
