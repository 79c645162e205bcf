"""Fixtures for ticketing tests: a migrated schema with a registry, the Open311 server on a socket.

The server runs with uvicorn in a thread on 127.0.0.1 port 0 (like httpx's TestServer), its tables
in a schema of its own per test; ``open311.misbehave`` arms its faults. ``tsettings`` points the
ticketing settings at it with short timeouts and no grouping hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from sense311.db import connect, migrate
from sense311.settings import Settings, load_settings
from sense311.types import Detection
from tests.fix_db import CONNECT_TIMEOUT, DROP_LOCK_TIMEOUT, schema_name, with_search_path
from ticketing.open311 import store
from ticketing.open311.misbehave import Misbehaviour
from ticketing.open311.server import ServerThread, create_app
from ticketing.settings import API_KEY_ENV, TicketingSettings
from ticketing.sinks import Sink, create_sink

#: The street of the dark-street tests: 12 lamps ~30 m apart going east from this point.
STREET_LAT, STREET_LON = 52.3700, 4.8900
#: Degrees of longitude for ~30 m at this latitude.
LAMP_SPACING = 0.00044
#: Seconds the client waits for an answer in tests: short, so the delay fault times out fast.
TEST_READ_TIMEOUT = 1.0


def street_lamps() -> list[tuple[str, str, float, float, str, dict[str, Any]]]:
    lamps = []
    for i in range(12):
        lamps.append(
            (
                f"lamp-{i + 1:03d}",
                "streetlight",
                STREET_LAT,
                STREET_LON + i * LAMP_SPACING,
                f"Lindenstraat {i + 1}",
                {"pole_id": f"P-{1000 + i}"},
            )
        )
    # Far from the street (about 2 km north) and on the next street over (300 m south).
    lamps.append(
        ("lamp-far", "streetlight", STREET_LAT + 0.018, STREET_LON, "Molenweg 7", {"pole_id": "P-2000"})
    )
    lamps.append(
        ("lamp-south", "streetlight", STREET_LAT - 0.0027, STREET_LON, "Kerkstraat 2", {"pole_id": "P-3000"})
    )
    lamps.append(("lamp-nopole", "streetlight", STREET_LAT + 0.03, STREET_LON, "Havenkade 1", {}))
    lamps.append(("bin-001", "bin", STREET_LAT + 0.01, STREET_LON + 0.01, "Markt 1", {"bin_id": "B-001"}))
    return lamps


def register(
    conn: psycopg.Connection[Any], sensors: Iterable[tuple[str, str, float, float, str, dict[str, Any]]]
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO sensors (id, kind, lat, lon, address, district, metadata)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (sid, kind, lat, lon, address, "Centrum", json.dumps(meta))
                for sid, kind, lat, lon, address, meta in sensors
            ],
        )


def make_settings(database_url: str, schema: str) -> Settings:
    return load_settings(database_url=database_url, storage={"schema": schema}, metrics_port=0)


@pytest.fixture
def settings(database_url: str, db_schema: str) -> Settings:
    """sense311 settings on this test's schema, migrated, with the street's sensors registered."""
    s = make_settings(database_url, db_schema)
    with connect(s, autocommit=True) as conn:
        migrate(conn, s)
        register(conn, street_lamps())
    return s


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with connect(settings, "test-ticketing", autocommit=True) as c:
        yield c


@pytest.fixture
def server_schema(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A schema name for the Open311 server's own tables (created by the server), dropped afterwards."""
    name = schema_name(f"o311_{request.node.name}")
    yield name
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as c:
        c.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@dataclass
class Open311Server:
    url: str
    schema: str
    database_url: str
    misbehave: Misbehaviour
    api_key: str
    staff_key: str

    def db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            with_search_path(self.database_url, self.schema), autocommit=True, connect_timeout=CONNECT_TIMEOUT
        )

    def requests(self) -> list[dict[str, Any]]:
        """Every stored request, straight from the server's tables."""
        with self.db() as c, c.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute("SELECT * FROM requests ORDER BY service_request_id").fetchall()

    def staff(self, request_id: str, **form: str) -> httpx.Response:
        """A staff update through the HTTP endpoint (status, status_notes, duplicate_of, …)."""
        fmt = "xml" if self.misbehave.xml_only else "json"
        with httpx.Client(timeout=5.0) as http:
            response = http.post(
                f"{self.url}staff/requests/{request_id}.{fmt}", data={"api_key": self.staff_key, **form}
            )
        response.raise_for_status()
        return response


@pytest.fixture
def open311(database_url: str, server_schema: str) -> Iterator[Open311Server]:
    misbehave = Misbehaviour()
    app = create_app(database_url, server_schema, misbehave=misbehave)
    with ServerThread(app) as thread:
        now = datetime.now(UTC)
        with psycopg.connect(with_search_path(database_url, server_schema), autocommit=True) as c:
            api_key = store.add_api_key(c, "tests", now)
            staff_key = store.add_api_key(c, "staff", now, role="staff")
        yield Open311Server(thread.url, server_schema, database_url, misbehave, api_key, staff_key)


SERVICES = {
    "lamp_out": {
        "service_code": "streetlight",
        "title": "Street light out",
        "attributes": {
            "pole_id": "sensor.metadata.pole_id",
            "fault": {"value": "Light out"},
            "lamps": "ticket.members",
        },
    },
    "bin_overflow": {
        "service_code": "bin_overflow",
        "attributes": {"bin_id": "sensor.metadata.bin_id", "fill_level": "incident.value"},
    },
}


def ticketing_settings(url: str, **overrides: Any) -> TicketingSettings:
    open311 = {
        "url": url,
        "read_timeout": TEST_READ_TIMEOUT,
        "connect_timeout": 2.0,
        "write_timeout": 2.0,
        # Generous: rate-limit behaviour has its own tests; here it would only slow things down.
        "rate_limits": {"default": {"per_minute": 600_000, "burst": 10_000}},
        **overrides.pop("open311", {}),
    }
    values: dict[str, Any] = {
        "services": SERVICES,
        "group_hold": "0s",
        "retry_base": "1s",
        "retry_cap": "1m",
        "send_lease": "1m",
        "open311": open311,
    }
    values.update(overrides)
    return TicketingSettings(**values)


@pytest.fixture
def tsettings(open311: Open311Server, monkeypatch: pytest.MonkeyPatch) -> TicketingSettings:
    monkeypatch.setenv(API_KEY_ENV, open311.api_key)
    return ticketing_settings(open311.url)


@pytest.fixture
def sink(tsettings: TicketingSettings) -> Iterator[Sink]:
    s = create_sink("open311", tsettings)
    yield s
    s.close()


def det(
    sensor_id: str,
    at: datetime,
    *,
    kind: str = "detection",
    problem: str = "lamp_out",
    rule_id: str = "lamp_dark",
    value: float | None = 0.0,
    evidence: dict[str, Any] | None = None,
) -> Detection:
    return Detection(
        rule_id=rule_id,
        rule_version="1",
        sensor_id=sensor_id,
        problem=problem,
        kind=kind,
        fired_at=at,
        onset=at - timedelta(minutes=15),
        severity="medium",
        value=value,
        evidence=evidence if evidence is not None else {"lux": 0.0},
    )


def insert_detections(conn: psycopg.Connection[Any], detections: Iterable[Detection]) -> int:
    """Insert into the hand-over table the way the rule evaluator does; duplicates are no-ops."""
    rows = [
        (
            d.rule_id,
            d.rule_version,
            d.sensor_id,
            d.problem,
            d.kind,
            d.fired_at,
            d.onset,
            d.severity,
            d.value,
            json.dumps(d.evidence),
        )
        for d in detections
    ]
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO detections (rule_id, rule_version, sensor_id, problem, kind, fired_at, onset,
                                       severity,
                                       value, evidence)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            rows,
        )
    return len(rows)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
