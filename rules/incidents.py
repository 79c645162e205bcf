"""Would-be incidents and tickets from a list of detections (for backtests and rule diffs).

The same de-duplication ticketing applies: one open incident per (problem, sensor); a detection
for a pair whose incident is open (from another rule, or the same rule's silent machine) joins
it instead of opening another; the incident closes when every machine that joined it has
resolved. Incidents then group into tickets as ticketing groups them by default: an incident
joins an open ticket of the same problem when one of the ticket's members lies within
``distance_m`` (single linkage: a street of lamps chains into one ticket) and the ticket's first
incident opened within ``window`` before it. A ticket counts as open while one of its incidents
is (a backtest cannot know when the city would close it). Reopen policy is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sense311.types import Detection

__all__ = [
    "GROUP_DISTANCE_M",
    "GROUP_WINDOW",
    "Incident",
    "Ticket",
    "build_incidents",
    "group_tickets",
    "match_incidents",
]

#: Ticketing's default grouping: about one block, the span of a street-light circuit…
GROUP_DISTANCE_M = 150.0
#: …detected within two hours of the ticket's first incident.
GROUP_WINDOW = timedelta(hours=2)
_EARTH_RADIUS_M = 6_371_008.8

_SEVERITY_ORDER = ("low", "medium", "high", "critical")


@dataclass
class Incident:
    """An open-to-close problem on one sensor, and the ticket it would file."""

    problem: str
    sensor_id: str
    opened_at: datetime
    closed_at: datetime | None = None
    severity: str = "medium"
    rules: list[str] = field(default_factory=list)
    detections: int = 0
    value: float | None = None

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.problem, self.sensor_id, self.opened_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "sensor_id": self.sensor_id,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "severity": self.severity,
            "rules": list(self.rules),
            "detections": self.detections,
            "value": self.value,
        }


def build_incidents(detections: list[Detection]) -> list[Incident]:
    """Incidents in opening order; ``detections`` in any order (they are sorted by time here)."""
    ordered = sorted(detections, key=lambda d: (d.fired_at, d.kind != "resolution", d.rule_id, d.sensor_id))
    open_: dict[tuple[str, str], tuple[Incident, set[str]]] = {}
    out: list[Incident] = []
    for d in ordered:
        key = (d.problem, d.sensor_id)
        if d.kind == "detection":
            if key in open_:
                incident, firing = open_[key]
            else:
                incident = Incident(d.problem, d.sensor_id, d.fired_at, severity=d.severity, value=d.value)
                firing = set()
                open_[key] = (incident, firing)
                out.append(incident)
            firing.add(d.rule_id)
            incident.detections += 1
            if d.rule_id not in incident.rules:
                incident.rules.append(d.rule_id)
            if _SEVERITY_ORDER.index(d.severity) > _SEVERITY_ORDER.index(incident.severity):
                incident.severity = d.severity
        elif key in open_:
            incident, firing = open_[key]
            firing.discard(d.rule_id)
            if not firing:
                incident.closed_at = d.fired_at
                del open_[key]
    return out


def match_incidents(
    old: list[Incident], new: list[Incident]
) -> tuple[list[Incident], list[Incident], list[tuple[Incident, Incident]]]:
    """``(gone, appeared, kept)`` between two versions' incidents.

    Incidents of the same problem and sensor whose open spans overlap are the same ticket (a
    shorter ``for`` opens it earlier, it is still one ticket); each pairs at most once.
    """

    def overlaps(a: Incident, b: Incident) -> bool:
        a_end = a.closed_at or datetime.max.replace(tzinfo=a.opened_at.tzinfo)
        b_end = b.closed_at or datetime.max.replace(tzinfo=b.opened_at.tzinfo)
        return a.opened_at <= b_end and b.opened_at <= a_end

    used: set[int] = set()
    kept: list[tuple[Incident, Incident]] = []
    gone: list[Incident] = []
    for a in old:
        partner = None
        for j, b in enumerate(new):
            if j in used or b.problem != a.problem or b.sensor_id != a.sensor_id:
                continue
            if overlaps(a, b):
                partner = j
                break
        if partner is None:
            gone.append(a)
        else:
            used.add(partner)
            kept.append((a, new[partner]))
    appeared = [b for j, b in enumerate(new) if j not in used]
    return gone, appeared, kept


@dataclass
class Ticket:
    """The 311 request a group of incidents of one problem would file."""

    problem: str
    opened_at: datetime
    incidents: list[Incident] = field(default_factory=list)

    @property
    def sensors(self) -> list[str]:
        return [i.sensor_id for i in self.incidents]

    @property
    def closed_at(self) -> datetime | None:
        ends = [i.closed_at for i in self.incidents]
        return None if any(e is None for e in ends) else max(e for e in ends if e is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "sensors": self.sensors,
            "severity": max((i.severity for i in self.incidents), key=_SEVERITY_ORDER.index),
        }


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dl = math.radians(b[1] - a[1])
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def group_tickets(
    incidents: list[Incident],
    locations: dict[str, tuple[float, float]],
    *,
    distance_m: float = GROUP_DISTANCE_M,
    window: timedelta = GROUP_WINDOW,
) -> list[Ticket]:
    """Tickets for ``incidents`` (in opening order); ``locations`` maps sensor id → (lat, lon).

    An incident without a location never groups. Incidents are visited in opening order, so a
    ticket older than ``window`` can take no more members and leaves the candidates for good.
    """
    tickets: list[Ticket] = []
    # problem → tickets still within the window, oldest first
    recent: dict[str, list[Ticket]] = {}
    # A degree of latitude is about 111 km everywhere: a cheap bound before the exact distance.
    reach_deg = distance_m / 111_000.0
    for incident in sorted(incidents, key=lambda i: (i.opened_at, i.problem, i.sensor_id)):
        here = locations.get(incident.sensor_id)
        candidates = recent.setdefault(incident.problem, [])
        while candidates and incident.opened_at - candidates[0].opened_at > window:
            candidates.pop(0)
        best: tuple[float, Ticket] | None = None
        if here is not None and distance_m > 0:
            for ticket in candidates:
                if all(
                    m.closed_at is not None and m.closed_at <= incident.opened_at for m in ticket.incidents
                ):
                    continue  # every member resolved: that ticket is done
                for member in ticket.incidents:
                    there = locations.get(member.sensor_id)
                    if there is None or abs(there[0] - here[0]) > reach_deg:
                        continue
                    d = _distance_m(here, there)
                    if d <= distance_m and (best is None or d < best[0]):
                        best = (d, ticket)
        if best is None:
            ticket = Ticket(incident.problem, incident.opened_at, [incident])
            tickets.append(ticket)
            candidates.append(ticket)
        else:
            best[1].incidents.append(incident)
    return tickets
