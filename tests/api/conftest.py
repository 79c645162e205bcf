"""Fixtures for API tests: a migrated schema, the API on a real socket, tokens, rows to read.

The app runs with uvicorn in a thread on 127.0.0.1 port 0 (``ApiServer``) and opens its own
pool, as in production; tests talk to it with httpx. ``api`` is a server shared by the session
with default settings and no rate limit; ``api_server(**overrides)`` starts one with other
``ApiSettings``. Every test starts from empty tables and its own tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from sense311.api import ApiServer, ApiSettings, create_app, create_token
from sense311.db import connect, migrate
from sense311.settings import Settings, load_settings
from tests.fix_db import CONNECT_TIMEOUT, DROP_LOCK_TIMEOUT, KEPT_ENVIRON, schema_name

#: Seconds an HTTP call of a test may take: generous for a loaded CI machine, finite.
HTTP_TIMEOUT = 15.0
#: A fixed instant for rows the tests write, so expectations do not depend on the clock.
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Api:
    """A running API: its URL, an open client, a connection to its schema and a token per scope."""

    url: str
    http: httpx.Client
    db: psycopg.Connection[Any]
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}


@pytest.fixture(scope="session")
def api_schema(database_url: str) -> Iterator[str]:
    """One migrated schema for the API tests; ``db`` empties it before each test.

    Migrating takes longer than a whole API test, so the schema is made once and its tables are
    truncated per test instead: still nothing one test writes is seen by the next.
    """
    name = schema_name("api")
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def settings(database_url: str, api_schema: str) -> Settings:
    # Built before the per-test environment cleanup runs, so clear SENSE311_* here too.
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("SENSE311_") and name not in KEPT_ENVIRON:
                mp.delenv(name)
        settings = load_settings(database_url=database_url, storage={"schema": api_schema, "pool_min": 0})
    with connect(settings, "sense311-test-api", autocommit=True) as conn:
        migrate(conn, settings)
    return settings


def _empty_tables(conn: psycopg.Connection[Any]) -> None:
    """Delete every row of the schema's tables, referencing tables first.

    DELETE, not TRUNCATE: for a few rows it takes milliseconds where TRUNCATE of every table
    takes half a second (new files for each), which would dominate the suite.
    """
    tables = [
        t
        for (t,) in conn.execute(
            """SELECT c.relname FROM pg_class c
               WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
                 AND NOT c.relispartition AND c.relname NOT IN ('schema_migrations', 'sense311_meta')"""
        ).fetchall()
    ]
    refs = conn.execute(
        """SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
           WHERE contype = 'f' AND connamespace = current_schema()::regnamespace AND conrelid <> confrelid"""
    ).fetchall()
    order: list[str] = []
    pending = set(tables)
    while pending:
        # A table goes once nothing still pending references it.
        ready = sorted(
            t for t in pending if not any(parent == t and child in pending for child, parent in refs)
        )
        if not ready:
            raise AssertionError(f"foreign keys form a cycle among {sorted(pending)}; empty them another way")
        order.extend(ready)
        pending -= set(ready)
    with conn.transaction():
        for table in order:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection on the API tests' schema, every table emptied first."""
    with connect(settings, "sense311-test-api", autocommit=True) as conn:
        _empty_tables(conn)
        yield conn


def _tokens(db: psycopg.Connection[Any]) -> dict[str, str]:
    tokens = {}
    with db.transaction():
        for scope in ("read", "write", "admin"):
            tokens[scope] = create_token(db, scope=scope, name=f"test {scope}", now=datetime.now(UTC)).token
    return tokens


def _start(settings: Settings, app_kwargs: dict[str, Any] | None, overrides: dict[str, Any]) -> ApiServer:
    options: dict[str, Any] = {"rate_limit_per_minute": 0, "pool_max": 4, **overrides}
    return ApiServer(create_app(settings, api=ApiSettings(**options), **(app_kwargs or {}))).start()


@pytest.fixture(scope="session")
def shared_server(settings: Settings) -> Iterator[tuple[ApiServer, httpx.Client]]:
    server = _start(settings, None, {})
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        yield server, http
    server.stop()


@pytest.fixture
def api(shared_server: tuple[ApiServer, httpx.Client], db: psycopg.Connection[Any]) -> Api:
    """The API with default settings (no rate limit) on an empty schema."""
    server, http = shared_server
    return Api(server.url, http, db, _tokens(db))


@pytest.fixture
def api_server(settings: Settings, db: psycopg.Connection[Any]) -> Iterator[Callable[..., Api]]:
    """Start an API with these ``ApiSettings`` overrides (and ``create_app`` keyword arguments)."""
    started: list[tuple[ApiServer, httpx.Client]] = []

    def start(app_kwargs: dict[str, Any] | None = None, **overrides: Any) -> Api:
        server = _start(settings, app_kwargs, overrides)
        http = httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT)
        started.append((server, http))
        return Api(server.url, http, db, _tokens(db))

    yield start
    for server, http in started:
        http.close()
        server.stop()


def add_sensors(db: psycopg.Connection[Any], *sensors: dict[str, Any]) -> None:
    for s in sensors:
        values = {"lat": None, "lon": None, "district": None, "tags": [], "metadata": {}, **s}
        db.execute(
            """INSERT INTO sensors (id, kind, lat, lon, district, tags, metadata)
               VALUES (%(id)s, %(kind)s, %(lat)s, %(lon)s, %(district)s, %(tags)s, %(metadata)s)""",
            {**values, "metadata": Jsonb(values["metadata"])},
        )


def add_readings(db: psycopg.Connection[Any], rows: list[tuple[datetime, str, str, float]]) -> None:
    """Readings (time, sensor, metric, value), with latest_readings kept current as ingest does."""
    lo = min(r[0] for r in rows) - timedelta(days=1)
    hi = max(r[0] for r in rows) + timedelta(days=1)
    db.execute("SELECT ensure_readings_partitions(%s, %s, '7 days')", (lo, hi))
    with db.cursor() as cur:
        cur.executemany("INSERT INTO readings (time, sensor_id, metric, value) VALUES (%s, %s, %s, %s)", rows)
        cur.executemany(
            """INSERT INTO latest_readings (sensor_id, metric, time, value, received_at)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (sensor_id, metric) DO UPDATE SET time = EXCLUDED.time, value = EXCLUDED.value
               WHERE latest_readings.time < EXCLUDED.time""",
            [(s, m, t, v, t) for t, s, m, v in rows],
        )


def add_incident(
    db: psycopg.Connection[Any],
    sensor_id: str,
    problem: str = "bin_overflow",
    *,
    status: str = "open",
    sensor_state: str = "firing",
    first_seen: datetime = T0,
    evidence: dict[str, Any] | None = None,
    severity: str = "medium",
) -> int:
    row = db.execute(
        """INSERT INTO incidents (problem, sensor_id, status, sensor_state, rule_id, rule_version, severity,
                                  onset, first_seen, last_seen, detections, value, evidence, created_at,
                                  updated_at)
           VALUES (%s, %s, %s, %s, 'bin-overflow', 'v1', %s, %s, %s, %s, 2, 0.97, %s, %s, %s)
           RETURNING id""",
        (
            problem,
            sensor_id,
            status,
            sensor_state,
            severity,
            first_seen - timedelta(minutes=5),
            first_seen,
            first_seen + timedelta(minutes=10),
            Jsonb(evidence or {"aggregate": "min", "window": "1m", "value": 0.97}),
            first_seen,
            first_seen,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_ticket(
    db: psycopg.Connection[Any],
    incident_ids: list[int],
    problem: str = "bin_overflow",
    status: str = "open",
    request_id: str | None = "REQ-77",
) -> int:
    row = db.execute(
        """INSERT INTO tickets (problem, reference, status, opened_at, sink, service_request_id, created_at,
                               updated_at, token)
           VALUES (%s, %s, %s, %s, 'open311', %s, %s, %s, 'secret-batch-token') RETURNING id""",
        (problem, f"S311-{len(incident_ids)}-{problem}", status, T0, request_id, T0, T0),
    ).fetchone()
    assert row is not None
    ticket_id = int(row[0])
    for incident_id in incident_ids:
        db.execute(
            "INSERT INTO ticket_members (ticket_id, incident_id, joined_at) VALUES (%s, %s, %s)",
            (ticket_id, incident_id, T0),
        )
    db.execute(
        """INSERT INTO outbox (ticket_id, sink, state, attempts, available_at, created_at, updated_at,
                              sent_at)
           VALUES (%s, 'open311', 'sent', 1, %s, %s, %s, %s)""",
        (ticket_id, T0, T0, T0, T0),
    )
    db.execute(
        """INSERT INTO ticket_status_history (ticket_id, observed_at, status, source)
           VALUES (%s, %s, 'pending', 'outbox'), (%s, %s, 'open', 'poll')""",
        (ticket_id, T0, ticket_id, T0 + timedelta(minutes=3)),
    )
    return ticket_id


def add_detection(
    db: psycopg.Connection[Any],
    sensor_id: str,
    fired_at: datetime,
    kind: str = "detection",
    value: float = 0.97,
) -> int:
    row = db.execute(
        """INSERT INTO detections (rule_id, rule_version, sensor_id, problem, kind, fired_at, onset, value,
                                   evidence)
           VALUES ('bin-overflow', 'v1', %s, 'bin_overflow', %s, %s, %s, %s, %s) RETURNING id""",
        (sensor_id, kind, fired_at, fired_at - timedelta(minutes=5), value, Jsonb({"value": value})),
    ).fetchone()
    assert row is not None
    return int(row[0])
