"""Neighbours for peer detectors, and their readings lined up with a sensor's own.

``nearest_peers`` picks, for every sensor, the ``k`` closest sensors of the same kind within
``max_distance_m`` (great-circle distance from the registry's lat/lon), optionally only those
sharing some metadata values (``same=["street"]``: lamps on one street). ``align_peers`` builds
the rows peer detectors read: at each of the sensor's own reading times, each neighbour's latest
value at or before that time, or NaN when it is older than ``max_age`` seconds — only the past,
so the rows stay causal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sense311.types import Sensor

__all__ = ["EARTH_RADIUS_M", "align_peers", "nearest_peers"]

#: Mean Earth radius (m): the haversine distance is exact enough for a few hundred metres.
EARTH_RADIUS_M = 6_371_000.0


def nearest_peers(
    sensors: Sequence[Sensor], k: int, max_distance_m: float, same: Sequence[str] = ()
) -> dict[str, list[str]]:
    """``{sensor id: [neighbour ids, nearest first]}``; sensors without a position get none."""
    located = [s for s in sensors if s.lat is not None and s.lon is not None]
    out: dict[str, list[str]] = {s.id: [] for s in sensors}
    if not located:
        return out
    lat = np.radians([s.lat for s in located])
    lon = np.radians([s.lon for s in located])
    kinds = np.array([s.kind for s in located])
    keys = [tuple(str(s.metadata.get(name, "")) for name in same) for s in located]
    for i, sensor in enumerate(located):
        dlat = lat - lat[i]
        dlon = lon - lon[i]
        a = np.sin(dlat / 2) ** 2 + np.cos(lat[i]) * np.cos(lat) * np.sin(dlon / 2) ** 2
        dist = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
        ok = (kinds == kinds[i]) & (dist <= max_distance_m)
        ok[i] = False
        if same:
            ok &= np.array([key == keys[i] for key in keys])
        idx = np.flatnonzero(ok)
        idx = idx[np.lexsort((np.array([located[j].id for j in idx]), dist[idx]))][:k]
        out[sensor.id] = [located[j].id for j in idx]
    return out


def align_peers(
    own_t: np.ndarray,
    own_x: np.ndarray,
    peers: Sequence[tuple[np.ndarray, np.ndarray]],
    max_age: float,
) -> np.ndarray:
    """Rows ``[own, peer 1, …]`` at ``own_t`` (UTC seconds): each peer's latest value at or
    before that time, NaN when none is younger than ``max_age`` seconds."""
    rows = np.full((len(own_t), 1 + len(peers)), np.nan)
    rows[:, 0] = own_x
    for j, (pt, px) in enumerate(peers):
        if not len(pt):
            continue
        i = np.searchsorted(pt, own_t, side="right") - 1
        fresh = (i >= 0) & (own_t - pt[np.maximum(i, 0)] <= max_age)
        rows[:, j + 1] = np.where(fresh, px[np.maximum(i, 0)], np.nan)
    return rows
