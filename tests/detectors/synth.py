"""Synthetic series with known anomalies, shared by the detector tests."""

from __future__ import annotations

import numpy as np

__all__ = ["DAY", "clean_series", "fill_level", "input_for", "peer_rows"]

DAY = 86400.0
#: 2026-03-02 00:00 UTC, a Monday.
T0 = 1772409600.0


def clean_series(seed: int, days: float = 6.0, step: float = 600.0) -> tuple[np.ndarray, np.ndarray]:
    """A daily cycle with noise: the kind of series every detector must leave quiet."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0, days * DAY, step)
    x = 50 + 10 * np.sin(2 * np.pi * (t - T0) / DAY) + rng.normal(0, 1.0, len(t))
    return t, np.round(x, 2)


def peer_rows(
    seed: int, days: float = 6.0, step: float = 600.0, peers: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Rows [own, neighbours…] that share one daily cycle."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0, days * DAY, step)
    common = 50 + 10 * np.sin(2 * np.pi * (t - T0) / DAY)
    rows = common[:, None] + rng.normal(0, 1.0, (len(t), peers + 1))
    return t, np.round(rows, 2)


def fill_level(
    seed: int, days: float = 6.0, step: float = 600.0, bags_per_h: float = 1.0, bag: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """A bin's fill level: bags dropped in at random, emptied every morning at 06:00."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0, days * DAY, step)
    deposits = rng.poisson(bags_per_h * step / 3600, len(t)) * bag
    level = np.zeros(len(t))
    for i in range(1, len(t)):
        emptied = (t[i] - T0) % DAY < step * 0.5 + 6 * 3600 and (t[i] - T0) % DAY >= 6 * 3600
        level[i] = 0.03 if emptied else min(level[i - 1] + deposits[i], 0.92)
    return t, np.round(level, 4)


def input_for(detector: object, seed: int, days: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """A clean input shaped for ``detector`` (one value per time, or rows with neighbours)."""
    if getattr(detector, "inputs", "value") == "peers":
        return peer_rows(seed, days)
    if getattr(detector, "name", "") == "rise_rate":
        return fill_level(seed, days)
    return clean_series(seed, days)
