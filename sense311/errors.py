"""The root of every error sense311 raises.

::

    Sense311Error
     ├── ConfigError            bad settings or options (CLI exit code 2)
     ├── DatabaseError          sense311/db: a database operation failed
     │    ├── TransientDatabaseError   worth retrying (connection lost, deadlock, …)
     │    └── NotSupportedError        a feature the server lacks (e.g. TimescaleDB)
     ├── RetryError             retries ran out (sense311/retry.py)
     ├── ingest.errors.IngestError      rejected messages, each with a dead-letter reason
     └── ticketing.errors.…             (added by the ticketing package)

Foreign exceptions (psycopg, paho, httpx) are translated once, at the adapter
that talks to them, and chained with ``from``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseError",
    "NotSupportedError",
    "RetryError",
    "Sense311Error",
    "TransientDatabaseError",
]


class Sense311Error(Exception):
    """Base class of every error sense311 raises on purpose."""

    exit_code = 1


class ConfigError(Sense311Error):
    """A setting, option or file the user gave is not usable."""

    exit_code = 2


class DatabaseError(Sense311Error):
    """A database operation failed."""


class TransientDatabaseError(DatabaseError):
    """A database failure that a retry may cure (connection lost, serialization failure, …)."""


class NotSupportedError(DatabaseError):
    """The server lacks a feature: names the feature, the version found and the one needed."""


class RetryError(Sense311Error):
    """An operation kept failing until its attempts or its deadline ran out."""

    def __init__(self, message: str, *, attempts: int, elapsed: float) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.elapsed = elapsed
