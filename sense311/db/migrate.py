"""Versioned SQL migrations: ``sense311 db migrate``.

Files are ``NNNN_name.sql``, or a pair ``NNNN_name.timescaledb.sql`` / ``NNNN_name.postgres.sql``
when the storage mode changes the DDL. The mode is decided once, when the first variant
migration runs, and recorded in ``sense311_meta`` so later migrations follow it.

Running it twice is a no-op; running it from two processes at once is safe: a session advisory
lock keyed by the schema serialises them, and the second finds everything applied. Each
migration runs in its own transaction, so a failure leaves the previous ones applied and
names the file that failed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from sense311.db.capabilities import has_timescaledb, timescaledb_version
from sense311.errors import ConfigError, DatabaseError, NotSupportedError
from sense311.settings import Settings

__all__ = ["Migration", "MigrationResult", "applied_versions", "discover", "migrate", "storage_mode"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<variant>timescaledb|postgres))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    variant: str | None
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def filename(self) -> str:
        suffix = f".{self.variant}" if self.variant else ""
        return f"{self.version:04d}_{self.name}{suffix}.sql"


@dataclass(frozen=True, slots=True)
class MigrationResult:
    mode: str
    applied: list[str]
    already: int


def discover() -> dict[int, dict[str | None, Migration]]:
    """All migrations shipped with sense311, by version and variant."""
    found: dict[int, dict[str | None, Migration]] = {}
    for entry in resources.files("sense311.db.migrations").iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        m = Migration(int(match["version"]), match["name"], match["variant"], entry.read_text("utf-8"))
        found.setdefault(m.version, {})[m.variant] = m
    return dict(sorted(found.items()))


def _lock_key(schema: str) -> int:
    # Signed 64-bit key derived from the schema, so deployments in separate schemas don't wait on each other.
    return int.from_bytes(
        hashlib.sha256(f"sense311.migrate.{schema}".encode()).digest()[:8], "big", signed=True
    )


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
        return {}
    return dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def storage_mode(conn: psycopg.Connection) -> str | None:
    """``timescaledb`` or ``postgres`` once migrated, else None."""
    if conn.execute("SELECT to_regclass('sense311_meta')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT value FROM sense311_meta WHERE key = 'storage_mode'").fetchone()
    return row[0] if row else None


def _choose_mode(conn: psycopg.Connection, wanted: str) -> str:
    if wanted == "postgres":
        return "postgres"
    if wanted == "timescaledb":
        has_timescaledb(conn, check=True)
    elif not has_timescaledb(conn):
        return "postgres"
    if timescaledb_version(conn) is None:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            # Installable but not loadable (not in shared_preload_libraries): fall back unless insisted.
            if wanted == "timescaledb":
                raise NotSupportedError(f"cannot create the timescaledb extension: {exc}") from exc
            log.warning("TimescaleDB is available but cannot be enabled (%s); using plain partitioning", exc)
            return "postgres"
    return "timescaledb"


def migrate(conn: psycopg.Connection, settings: Settings) -> MigrationResult:
    """Apply the missing migrations to ``settings.storage.db_schema``. ``conn`` must be autocommit."""
    if not conn.autocommit:
        raise ConfigError("migrate() needs an autocommit connection: each migration is its own transaction")
    schema = settings.storage.db_schema
    key = _lock_key(schema)
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   variant text,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        conn.execute("CREATE TABLE IF NOT EXISTS sense311_meta (key text PRIMARY KEY, value text NOT NULL)")
        done = applied_versions(conn)
        mode = storage_mode(conn)
        applied: list[str] = []
        for version, variants in discover().items():
            if version in done:
                continue
            if None in variants:
                migration = variants[None]
            else:
                if mode is None:
                    mode = _choose_mode(conn, settings.storage.mode)
                migration = variants.get(mode)
                if migration is None:
                    raise DatabaseError(f"migration {version:04d} has no variant for storage mode {mode!r}")
            try:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, variant, checksum) "
                        "VALUES (%s, %s, %s, %s)",
                        (migration.version, migration.name, migration.variant, migration.checksum),
                    )
                    if migration.variant is not None:
                        conn.execute(
                            "INSERT INTO sense311_meta (key, value) VALUES ('storage_mode', %s) "
                            "ON CONFLICT (key) DO NOTHING",
                            (mode,),
                        )
            except psycopg.Error as exc:
                first = str(exc).strip().splitlines()[0]
                raise DatabaseError(f"migration {migration.filename} failed: {first}") from exc
            applied.append(migration.filename)
            log.info("applied migration %s", migration.filename)
        # A freshly migrated database takes readings at once: partitions around now exist.
        from sense311.db.storage import maintain

        maintain(conn, settings)
        return MigrationResult(
            mode=mode or storage_mode(conn) or "postgres", applied=applied, already=len(done)
        )
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
