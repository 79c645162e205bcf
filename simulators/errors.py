"""Simulator errors.

::

    Sense311Error
     ├── ConfigError             bad options (sense311.errors; CLI exit code 2)
     └── SimulatorError
          └── PublishError       the broker refused, vanished, or did not acknowledge in time
"""

from __future__ import annotations

from sense311.errors import Sense311Error

__all__ = ["PublishError", "SimulatorError"]


class SimulatorError(Sense311Error):
    """Base of errors raised while running a simulation."""


class PublishError(SimulatorError):
    """Publishing to the MQTT broker failed; the message says how many messages were affected."""
