"""Peer dark: a lamp that is off while its neighbours are on.

Each observation is a row ``[own value, neighbour 1, …]`` of an on/off-ish metric (power in
watts, ``lamp_on``) at one instant. When the sensor's own value is at or below ``on_level`` and
at least ``min_peers`` neighbours reported, the score is the share of those neighbours above
``on_level``: 1.0 when every neighbour is lit. A lit sensor, or a whole street that is dark
(dusk, a circuit outage — a problem of its own), scores 0. Photocells differ by minutes, so a
rule on this score wants a ``for`` of a quarter of an hour.

There is nothing to learn: a neighbourhood is its own baseline at every instant.

>>> import numpy as np
>>> from detectors import get_detector
>>> rows = np.array([[36.0, 35.8, 56.1, 36.2],    # lit like its neighbours
...                  [0.0, 35.9, 56.0, 36.1],     # dark, neighbours lit
...                  [0.0, 0.0, 0.0, 0.0]])       # daytime: all dark
>>> s = get_detector("peer_dark").score_series([0.0, 60.0, 120.0], rows)
>>> s.score.tolist()
[0.0, 1.0, 0.0]
>>> s.at(1).evidence
{'own': 0.0, 'peers': 3.0, 'peers_on': 3.0}
"""

from __future__ import annotations

import numpy as np

from detectors.base import DEFAULT_PROTECT, Detector
from detectors.registry import register
from sense311.errors import ConfigError

__all__ = ["PeerDark"]


@register
class PeerDark(Detector):
    """Share of lit neighbours while the sensor itself is dark."""

    name = "peer_dark"
    inputs = "peers"
    evidence_keys = ("own", "peers", "peers_on")

    def __init__(
        self,
        *,
        on_level: float = 1.0,
        min_peers: int = 2,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if min_peers < 1:
            raise ConfigError(f"detector 'peer_dark': min_peers must be >= 1, got {min_peers}")
        self.on_level = on_level
        self.min_peers = min_peers

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        del t, learn
        own = x[:, 0]
        peers = x[:, 1:]
        count = np.sum(np.isfinite(peers), axis=1)
        lit = np.sum(np.nan_to_num(peers, nan=-np.inf) > self.on_level, axis=1)
        dark = np.isfinite(own) & (own <= self.on_level) & (count >= self.min_peers)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(dark, lit / np.maximum(count, 1), 0.0)
        share[self._warming(len(own))] = 0.0
        ev = {
            "own": np.where(np.isfinite(own), own, np.nan),
            "peers": count.astype(np.float64),
            "peers_on": lit.astype(np.float64),
        }
        return share, ev
