"""PostgreSQL for the tests: one server per session, one schema per test.

``SENSE311_TEST_DATABASE_URL`` names the server to use (checked with one
connection at the start; unreachable ends the run with one message). Unset, an
embedded PostgreSQL (sense311.embedded) runs for the session instead.

Every test that asks for ``db_url`` or ``db_conn`` gets a new schema first on
its search_path, dropped with everything in it afterwards, so tests never see
each other's tables and may run against a shared server.

Also here: ``clean_environ``, which keeps the caller's ``SENSE311_*`` settings
out of every test.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sense311.embedded import start_postgres

__all__ = [
    "DATABASE_URL_ENV",
    "clean_environ",
    "database_url",
    "db_conn",
    "db_schema",
    "db_url",
    "describe_conninfo",
    "schema_name",
    "with_search_path",
]

DATABASE_URL_ENV = "SENSE311_TEST_DATABASE_URL"
#: The environment variables a test may see; all other SENSE311_* are removed.
KEPT_ENVIRON = frozenset({DATABASE_URL_ENV, "SENSE311_TEST_MQTT_URL"})

#: libpq connect_timeout for the fixtures' own connections, in whole seconds.
CONNECT_TIMEOUT = 5
#: How long dropping a test's schema waits for locks a leaked connection holds.
DROP_LOCK_TIMEOUT = "10s"
#: PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
MAX_IDENTIFIER_LENGTH = 63


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ``SENSE311_*`` variable except the two test service URLs, for one test.

    A developer's shell settings must not change what a test sees.
    """
    for name in list(os.environ):
        if name.startswith("SENSE311_") and name not in KEPT_ENVIRON:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's PostgreSQL server, superuser access (session scope)."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        _warm_up(url)
        yield url
        return
    with start_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server.url


def _warm_up(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())
        pytest.exit(f"{DATABASE_URL_ENV}: cannot connect to {describe_conninfo(url)}: {message}")


def describe_conninfo(conninfo: str) -> str:
    """``host:port/dbname`` of a connection string, without its password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "an unparsable connection string"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


def schema_name(test_name: str) -> str:
    """A new schema name for ``test_name``: ``t_<name sanitised>_<8 hex digits>``, at most 63 bytes."""
    suffix = secrets.token_hex(4)
    slug = re.sub(r"[^a-z0-9]+", "_", test_name.lower()).strip("_")
    room = MAX_IDENTIFIER_LENGTH - len("t__") - len(suffix)
    return f"t_{slug[:room].rstrip('_')}_{suffix}"


def with_search_path(conninfo: str, schema: str) -> str:
    """``conninfo`` with ``options=-csearch_path=<schema>,public`` added.

    A URL stays a URL (the option percent-encoded in its query); a
    ``key=value`` string stays one. Options already there are kept.
    """
    option = f"-csearch_path={schema},public"
    existing = conninfo_to_dict(conninfo).get("options")
    options = f"{existing} {option}" if existing else option
    if not conninfo.startswith(("postgresql://", "postgres://")):
        return make_conninfo(conninfo, options=options)
    parts = urlsplit(conninfo)
    query = [
        (key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "options"
    ]
    query.append(("options", options))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture
def db_schema(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a new, empty schema for this test, dropped CASCADE afterwards."""
    name = schema_name(request.node.name)
    identifier = sql.Identifier(name)
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(identifier))
    yield name
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        # A connection the test leaked in a transaction would make DROP wait
        # forever; fail the teardown with PostgreSQL's lock timeout instead.
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(identifier))


@pytest.fixture
def db_url(database_url: str, db_schema: str) -> str:
    """Connection string of the session's server with this test's schema first on the search_path."""
    return with_search_path(database_url, db_schema)


@pytest.fixture
def db_conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit psycopg connection whose new tables land in this test's schema."""
    with psycopg.connect(db_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        yield conn
