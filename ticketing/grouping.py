"""Which open ticket a new incident joins: one problem, close in space and in time.

A dark street is one circuit fault, not twelve lamps: an incident joins an open ticket of the same
problem when one of the ticket's members lies within ``distance_m`` of it (single linkage, so a
street of lamps 30 m apart chains into one ticket) and the ticket's first incident was detected
within ``window`` of it (which bounds how far a chain can grow). Single linkage depends on the
order incidents arrive in — lamps 1 and 12 first make two tickets — so an incident that reaches
several tickets tells the caller to merge those not yet sent (see incidents.py). Pure functions:
the caller holds the per-problem lock and passes the candidates it read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["EARTH_RADIUS_M", "Candidate", "choose_ticket", "distance_m", "tickets_in_reach"]

#: Mean Earth radius (IUGG); haversine distances over a city are good to a fraction of a metre.
EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One member of an open ticket: its location and the ticket's first detection time (UTC)."""

    ticket_id: int
    opened_at: datetime
    lat: float | None
    lon: float | None


def tickets_in_reach(
    candidates: Iterable[Candidate],
    lat: float | None,
    lon: float | None,
    at: datetime,
    *,
    distance: float,
    window: timedelta,
) -> list[int]:
    """Tickets with a member within ``distance`` of (lat, lon), opened within ``window`` of ``at``.

    Nearest first (ties: the older ticket). An incident without a location reaches none: there is
    no way to say it is the same fault.
    """
    if lat is None or lon is None or distance <= 0:
        return []
    best: dict[int, tuple[float, datetime, int]] = {}
    for c in candidates:
        if c.lat is None or c.lon is None or abs(at - c.opened_at) > window:
            continue
        d = distance_m(lat, lon, c.lat, c.lon)
        key = (d, c.opened_at, c.ticket_id)
        if d <= distance and (c.ticket_id not in best or key < best[c.ticket_id]):
            best[c.ticket_id] = key
    return [ticket for ticket, _ in sorted(best.items(), key=lambda item: item[1])]


def choose_ticket(
    candidates: Iterable[Candidate],
    lat: float | None,
    lon: float | None,
    at: datetime,
    *,
    distance: float,
    window: timedelta,
) -> int | None:
    """The nearest ticket in reach, or None for a new one."""
    found = tickets_in_reach(candidates, lat, lon, at, distance=distance, window=window)
    return found[0] if found else None
