"""What the simulator emits: one step of the whole fleet as arrays, and single messages.

``StepBatch`` is the fast form (numpy arrays over every sensor, for backfill and benchmarks);
``SimMessage`` is one device report as Python values, what the encoders take.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

__all__ = ["SimMessage", "StepBatch"]


@dataclass(slots=True)
class SimMessage:
    """One report of one sensor.

    ``time_ms`` is the event time the message carries (UTC epoch ms), which differs from
    ``true_time_ms`` (when the reading was really taken) only under a ``clock_skew`` fault.
    ``values`` maps canonical metric names to floats. ``fcnt`` is the device's frame counter;
    ``gateway_id``, ``rssi`` (dBm) and ``snr`` (dB) describe the radio link. ``malformed`` asks
    the encoder for deliberately broken bytes; ``duplicate`` marks the second delivery of a
    message (its bytes are identical); ``delayed_steps`` > 0 means it is delivered that many
    steps late.
    """

    time_ms: int
    sensor_id: str
    kind: str
    values: dict[str, float]
    fcnt: int
    gateway_id: str
    rssi: int
    snr: float
    true_time_ms: int
    malformed: bool = False
    duplicate: bool = False
    delayed_steps: int = 0

    @property
    def time(self) -> datetime:
        """The carried event time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time_ms / 1000, tz=UTC)

    @property
    def message_id(self) -> str:
        """``"<sensor id>:<frame counter>"``: unique per report, shared by a duplicate."""
        return f"{self.sensor_id}:{self.fcnt}"


@dataclass(slots=True)
class StepBatch:
    """Step ``k`` (starting at ``t_ms``, UTC ms) of the whole fleet, indexed by fleet row.

    ``present`` says which sensors report in this step; ``values[kind]`` holds that kind's
    ``(n, len(metrics))`` values in the kind's own row order (fleet rows ``start..stop``).
    Transport faults show as ``malformed``, ``duplicate``, ``delay`` (steps) and the difference
    between ``time_ms`` (carried) and ``true_time_ms``.
    """

    k: int
    t_ms: int
    present: np.ndarray
    time_ms: np.ndarray
    true_time_ms: np.ndarray
    values: dict[str, np.ndarray]
    fcnt: np.ndarray
    rssi: np.ndarray
    snr: np.ndarray
    malformed: np.ndarray
    duplicate: np.ndarray
    delay: np.ndarray

    @property
    def count(self) -> int:
        """Messages this step produces (reports plus duplicate deliveries)."""
        return int(self.present.sum() + (self.duplicate & self.present).sum())
