"""Classify database failures in one place: retry the transient ones, report the rest.

Policy: a lost or refused connection, a server shutting down, a serialization failure or a
deadlock is transient — the same statement may succeed on a new attempt, and ingest keeps the
batch and its unacknowledged messages meanwhile. Anything else (constraint, type, syntax,
permission) is permanent: retrying would fail forever, so the caller dead-letters or reports.
"""

from __future__ import annotations

import psycopg
import psycopg_pool

from sense311.errors import DatabaseError, TransientDatabaseError

__all__ = ["is_transient", "translate"]

_TRANSIENT_CLASSES = (
    "08",  # connection exception: the server went away mid-transaction
    "53",  # insufficient resources: too many connections, disk full (may clear), out of memory
    "57",  # operator intervention: admin shutdown, crash shutdown, cannot connect now (starting up)
    "58",  # system error: I/O error on the server
)
_TRANSIENT_CODES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled: statement_timeout fired; worth one more try under load
}


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same work may succeed."""
    if isinstance(exc, TransientDatabaseError):
        return True
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        code = getattr(getattr(exc, "diag", None), "sqlstate", None)
        return code is None or code.startswith(_TRANSIENT_CLASSES) or code in _TRANSIENT_CODES
    if isinstance(exc, psycopg.Error):
        code = exc.sqlstate or ""
        return code.startswith(_TRANSIENT_CLASSES) or code in _TRANSIENT_CODES
    return isinstance(exc, ConnectionError | TimeoutError)


def translate(exc: BaseException, what: str) -> DatabaseError:
    """The sense311 error for a psycopg failure; the caller raises it ``from exc``."""
    message = f"{what}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    if is_transient(exc):
        return TransientDatabaseError(message)
    return DatabaseError(message)
