"""What the database server can do: ask (``check=False``) or insist with a reason (``check=True``)."""

from __future__ import annotations

import psycopg

from sense311.errors import NotSupportedError

__all__ = ["TIMESCALEDB_NEEDED", "has_timescaledb", "timescaledb_version"]

#: Continuous aggregates with ``WITH NO DATA`` and the policy functions used here are 2.x API.
TIMESCALEDB_NEEDED = "2.0"


def timescaledb_version(conn: psycopg.Connection) -> str | None:
    """The installed extension's version, or None when it is not installed in this database."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row[0] if row else None


def timescaledb_available(conn: psycopg.Connection) -> str | None:
    """The version the server could install (``pg_available_extensions``), or None."""
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row[0] if row else None


def has_timescaledb(conn: psycopg.Connection, *, check: bool = False) -> bool:
    """True when TimescaleDB ≥ 2 is installed or installable on this server.

    With ``check=True`` a missing extension raises ``NotSupportedError`` naming what was found
    and what is needed; the plain-PostgreSQL fallback and the skipped tests reuse that message.
    """
    version = timescaledb_version(conn) or timescaledb_available(conn)
    ok = version is not None and int(version.split(".")[0]) >= int(TIMESCALEDB_NEEDED.split(".")[0])
    if not ok and check:
        server = conn.info.parameter_status("server_version") or "?"
        found = f"version {version}" if version else "not installed"
        raise NotSupportedError(
            f"TimescaleDB is {found} on PostgreSQL {server}; sense311 needs TimescaleDB "
            f">= {TIMESCALEDB_NEEDED} for hypertables (plain partitioning is used otherwise)"
        )
    return ok
