"""Peer comparison: a sensor against the median of its nearest neighbours of the same kind.

Every observation is a row ``[own value, neighbour 1, …, neighbour k]`` taken at the same
instant (``detectors.peers`` picks the neighbours — lamps on one street, bins in one block — and
lines their readings up). Whatever moves the whole neighbourhood (weather, regional pollution,
dusk) cancels in the residual

* ``mode="difference"``: own − median(neighbours), or
* ``mode="ratio"``: own / median(neighbours), only while that median exceeds ``active_above``
  (a ratio to a dark street means nothing),

optionally averaged over the last ``smooth`` observations. The residual is then judged by the
sensor's own history of residuals: ``method="seasonal"`` (robust z by hour, see
``detectors.seasonal``) for sudden departures, or ``method="level_shift"`` (CUSUM, see
``detectors.level_shift``) for slow drift. ``baseline`` holds that detector's parameters.

>>> import numpy as np
>>> from detectors import get_detector
>>> rng = np.random.default_rng(11)
>>> t = np.arange(0, 5 * 86400, 900.0)
>>> city = 10 + 4 * np.sin(2 * np.pi * t / 86400 / 3)             # a regional swing all share
>>> rows = city[:, None] + rng.normal(0, 0.5, (len(t), 5))
>>> rows[-16:, 0] += np.linspace(0, 8, 16)                         # sensor 0 drifts for 4 hours
>>> d = get_detector("peer", method="level_shift", baseline={"period": "none"})
>>> s = d.score_series(t, rows)
>>> float(s.score[:-16].max()) < 0.3, bool(s.score[-1] > 0.7)
(True, True)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import DEFAULT_PROTECT, Detector
from detectors.registry import detector_class, get_detector, register
from sense311.errors import ConfigError

__all__ = ["PeerDeviation"]


@register
class PeerDeviation(Detector):
    """Residual against the neighbours' median, judged by the sensor's own residual history."""

    name = "peer"
    inputs = "peers"
    evidence_keys = (
        "own", "peer_median", "peers", "residual", "expected", "scale", "z", "cusum_up", "cusum_down",
    )  # fmt: skip

    def __init__(
        self,
        *,
        mode: Literal["difference", "ratio"] = "difference",
        method: Literal["seasonal", "level_shift"] = "seasonal",
        baseline: dict[str, Any] | None = None,
        min_peers: int = 2,
        active_above: float | None = None,
        smooth: int = 1,
        grace_period: int = 0,
        protect: float = DEFAULT_PROTECT,
        seed: int = 0,
    ) -> None:
        super().__init__(grace_period=grace_period, protect=protect, seed=seed)
        if mode not in ("difference", "ratio"):
            raise ConfigError(f"detector 'peer': mode must be 'difference' or 'ratio', got {mode!r}")
        if method not in ("seasonal", "level_shift"):
            raise ConfigError(f"detector 'peer': method must be 'seasonal' or 'level_shift', got {method!r}")
        if min_peers < 1 or smooth < 1:
            raise ConfigError(
                f"detector 'peer': need min_peers >= 1 and smooth >= 1, got {min_peers} and {smooth}"
            )
        self.mode = mode
        self.method = method
        self.baseline = dict(baseline or {})
        self.min_peers = min_peers
        self.active_above = active_above
        self.smooth = smooth
        detector_class(method)
        self._inner = get_detector(method, protect=protect, **self.baseline)
        self._buf = np.zeros(0)  # the last smooth - 1 residuals

    def _run(
        self, t: np.ndarray, x: np.ndarray, learn: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = len(t)
        scores = np.zeros(n)
        ev = self._nan_evidence(n)
        warming = self._warming(n)
        own = x[:, 0]
        peers = x[:, 1:]
        count = np.sum(np.isfinite(peers), axis=1)
        with np.errstate(all="ignore"):
            ref = np.nanmedian(peers, axis=1) if peers.shape[1] else np.full(n, np.nan)
        usable = np.isfinite(own) & (count >= self.min_peers) & np.isfinite(ref)
        if self.active_above is not None:
            usable &= ref > self.active_above
        with np.errstate(all="ignore"):
            residual = own / ref if self.mode == "ratio" else own - ref
        usable &= np.isfinite(residual)
        ev["own"] = np.where(np.isfinite(own), own, np.nan)
        ev["peer_median"] = ref
        ev["peers"] = count.astype(np.float64)
        ok = np.flatnonzero(usable)
        if not len(ok):
            return scores, ev
        r = residual[ok]
        if self.smooth > 1:
            w = self.smooth
            allr = np.concatenate([self._buf, r])
            pad = np.concatenate([np.full(max(w - 1 - len(self._buf), 0), np.nan), allr])
            r = np.nanmean(sliding_window_view(pad, w), axis=1)
            self._buf = allr[-(w - 1) :]
        inner = self._inner.score_series(t[ok], r, learn=learn[ok])
        s = inner.score.copy()
        s[warming[ok]] = 0.0
        scores[ok] = s
        ev["residual"][ok] = r
        for key, column in inner.evidence.items():
            if key in ev:
                ev[key][ok] = column
        return scores, ev
