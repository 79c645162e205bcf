"""The text of a ticket: a headline, why it was filed, its members, and the reference marker.

The description is the only free text a GeoReport v2 server gives back, so the marker that lets
an ambiguous POST be found again lives here, on the last line. The spec allows 4,000 characters
and no HTML: member lines are dropped (and counted) before the marker would be, and angle
brackets from registry text are replaced.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ticketing.open311.client import marker_for
from ticketing.open311.models import DESCRIPTION_LIMIT
from ticketing.tickets import Member, TicketView

__all__ = ["describe", "headline"]

#: Characters of the city's closing notes quoted in a follow-up: enough for "Duplicate of 123, fixed".
QUOTED_NOTES = 300


def _clean(text: str) -> str:
    return text.replace("<", "‹").replace(">", "›")


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def headline(ticket: TicketView, title: str | None) -> str:
    name = title or ticket.problem.replace("_", " ").capitalize()
    first = ticket.primary
    where = first.address or (
        f"{first.lat:.5f}, {first.lon:.5f}"
        if first.lat is not None and first.lon is not None
        else f"sensor {first.sensor_id}"
    )
    district = f" ({first.district})" if first.district else ""
    count = len(ticket.members)
    scope = f"{count} sensors near " if count > 1 else ""
    return _clean(f"{name}: {scope}{where}{district}")


def _member_line(m: Member) -> str:
    where = m.address or (
        f"{m.lat:.5f}, {m.lon:.5f}" if m.lat is not None and m.lon is not None else "no location"
    )
    value = f", value {m.value:g}" if m.value is not None else ""
    seen = f", {m.detections} detections" if m.detections > 1 else ""
    state = ", back to normal" if m.sensor_state == "resolved" else ""
    return _clean(f"- {m.sensor_id} ({where}): since {_when(m.first_seen)}{value}{seen}{state}")


def describe(ticket: TicketView, title: str | None = None, *, limit: int = DESCRIPTION_LIMIT) -> str:
    """The description to file; at most ``limit`` characters, always ending with the marker."""
    head = [headline(ticket, title)]
    rules = sorted({m.rule_id for m in ticket.members})
    head.append(
        f"Detected automatically by city sensors since {_when(ticket.opened_at)} (rule {', '.join(rules)})."
    )
    if ticket.follows is not None:
        f = ticket.follows
        ref = f"request {f.service_request_id}" if f.service_request_id else f"our ticket {f.reference}"
        closed = f" closed {_when(f.closed_at)}" if f.closed_at else ""
        notes = f' with notes "{_clean(f.status_notes)[:QUOTED_NOTES]}"' if f.status_notes else ""
        head.append(f"Follow-up to {ref}{closed}{notes}: the problem has returned.")
    if len(ticket.members) > 1:
        head.append(f"Affected sensors ({len(ticket.members)}):")
    tail = marker_for(ticket.reference)
    lines = list(head)
    budget = limit - len("\n".join(lines)) - len(tail) - 2
    members = [_member_line(m) for m in ticket.members]
    shown = 0
    for index, line in enumerate(members):
        rest = len(members) - index - 1
        reserve = len(f"- … and {rest} more") + 1 if rest else 0
        if len(line) + 1 + reserve > budget:
            break
        lines.append(line)
        budget -= len(line) + 1
        shown += 1
    if shown < len(members):
        lines.append(f"- … and {len(members) - shown} more")
    body = "\n".join(lines)
    if len(body) + 1 + len(tail) > limit:
        # Only a very long title or quoted note gets here; the marker must survive whole.
        body = body[: limit - len(tail) - 2] + "…"
    return f"{body}\n{tail}"
