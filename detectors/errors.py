"""Errors the detectors package raises, under ``sense311.errors.Sense311Error``.

::

    Sense311Error
     ├── ConfigError                 unknown detector, bad parameter (CLI exit code 2)
     └── DetectorError               a detector could not do its work (CLI exit code 1)
          ├── TrainingError          a model failed to train; the previous version stays pinned
          └── NoModelError           scoring asked for a job that has no pinned model yet
"""

from __future__ import annotations

from sense311.errors import Sense311Error

__all__ = ["DetectorError", "NoModelError", "TrainingError"]


class DetectorError(Sense311Error):
    """A detector, a training run or a scoring run failed."""


class TrainingError(DetectorError):
    """A model failed to train. ``job`` names the detector job; the message says why."""

    def __init__(self, message: str, *, job: str) -> None:
        super().__init__(message)
        self.job = job


class NoModelError(DetectorError):
    """A job has no pinned model: run ``sense311 detectors train`` first."""
