"""Connections and pools configured the same way everywhere.

Every connection sets ``search_path`` to the deployment's schema (then ``public``, where
extensions such as TimescaleDB live), a ``statement_timeout`` so a hung server cannot hang
sense311, and an ``application_name`` that shows which part of sense311 holds it.
"""

from __future__ import annotations

import psycopg
from psycopg import conninfo as _conninfo
from psycopg_pool import ConnectionPool

from sense311.db.errors import translate
from sense311.settings import Settings, redact_url

__all__ = ["connect", "make_conninfo", "open_pool"]

#: Seconds to wait for a TCP connection to the server.
CONNECT_TIMEOUT = 10


def make_conninfo(settings: Settings, application: str = "sense311") -> str:
    url = settings.database_url.get_secret_value()
    params = _conninfo.conninfo_to_dict(url)
    schema = settings.storage.db_schema
    timeout_ms = int(settings.storage.statement_timeout * 1000)
    extra = f"-c search_path={schema},public -c statement_timeout={timeout_ms}"
    options = f"{params.get('options', '')} {extra}".strip()
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", application)
    params["options"] = options
    return _conninfo.make_conninfo(**params)


def connect(
    settings: Settings, application: str = "sense311", autocommit: bool = False
) -> psycopg.Connection:
    """One connection; errors become ``DatabaseError`` naming the (redacted) URL."""
    try:
        return psycopg.connect(make_conninfo(settings, application), autocommit=autocommit)
    except psycopg.Error as exc:
        where = redact_url(settings.database_url)
        raise translate(exc, f"cannot connect to the database at {where}") from exc


def open_pool(settings: Settings, application: str = "sense311", *, wait: bool = True) -> ConnectionPool:
    """A pool sized by ``storage.pool_min/pool_max``; ``wait`` blocks until it is usable."""
    pool = ConnectionPool(
        make_conninfo(settings, application),
        min_size=settings.storage.pool_min,
        max_size=settings.storage.pool_max,
        timeout=settings.storage.pool_timeout,
        name=application,
        open=False,
    )
    pool.open(wait=wait, timeout=settings.storage.pool_timeout) if wait else pool.open(wait=False)
    return pool
