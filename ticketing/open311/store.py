"""The Open311 server's PostgreSQL store, in a schema of its own.

``install`` creates the tables (idempotent, serialised by an advisory lock so several server
processes may start at once) and loads the service catalogue; its changeset changes when the
catalogue does, which tells clients to refresh their caches. Request ids are opaque, zero-padded
strings (``"00000042"``), so a client that turns them into numbers is caught by the tests.

API keys are stored as SHA-256 digests and compared in constant time; a key is 32 random bytes,
so a slow password hash adds nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ticketing.errors import RequestRejected
from ticketing.open311.models import Attribute, AttributeValue, Service

__all__ = [
    "DEFAULT_SERVICES",
    "REQUEST_COLUMNS",
    "Offering",
    "add_api_key",
    "changeset",
    "check_api_key",
    "create_request",
    "find_requests",
    "get_request",
    "get_service",
    "hash_key",
    "install",
    "list_services",
    "lookup_token",
    "notes_for",
    "update_request",
]

#: Bytes of randomness in a generated API key (256 bits).
KEY_BYTES = 32
#: Bytes of randomness in a batch token.
TOKEN_BYTES = 8
#: Width of the zero-padded request ids.
ID_WIDTH = 8

REQUEST_COLUMNS = (
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS services (
    service_code text PRIMARY KEY,
    service_name text NOT NULL,
    description  text,
    metadata     boolean NOT NULL,
    type         text NOT NULL CHECK (type IN ('realtime', 'batch', 'blackbox')),
    keywords     text,
    "group"      text,
    attributes   jsonb NOT NULL DEFAULT '[]'::jsonb,
    service_notice text
);
CREATE SEQUENCE IF NOT EXISTS request_numbers;
CREATE TABLE IF NOT EXISTS requests (
    service_request_id text PRIMARY KEY,
    jurisdiction_id    text,
    service_code       text NOT NULL REFERENCES services (service_code),
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    status_notes       text,
    description        text,
    agency_responsible text,
    service_notice     text,
    requested_datetime timestamptz NOT NULL,
    updated_datetime   timestamptz NOT NULL,
    expected_datetime  timestamptz,
    address            text,
    address_id         text,
    zipcode            text,
    lat                double precision,
    long               double precision,
    media_url          text,
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    email              text,
    device_id          text,
    account_id         text,
    first_name         text,
    last_name          text,
    phone              text,
    duplicate_of       text
);
CREATE INDEX IF NOT EXISTS requests_requested_idx ON requests (requested_datetime);
CREATE INDEX IF NOT EXISTS requests_updated_idx ON requests (updated_datetime);
CREATE TABLE IF NOT EXISTS tokens (
    token              text PRIMARY KEY,
    service_request_id text NOT NULL REFERENCES requests (service_request_id),
    lookups            integer NOT NULL DEFAULT 0,
    ready_after        integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_request_id text NOT NULL REFERENCES requests (service_request_id),
    datetime           timestamptz NOT NULL,
    status             text NOT NULL,
    description        text
);
CREATE INDEX IF NOT EXISTS notes_request_idx ON notes (service_request_id, datetime);
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash   text PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('client', 'staff')),
    created_at timestamptz NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Offering:
    """A service the server offers, with its attribute definitions (``metadata`` is derived)."""

    service_code: str
    service_name: str
    description: str | None = None
    type: Literal["realtime", "batch", "blackbox"] = "realtime"
    keywords: str | None = None
    group: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    service_notice: str | None = None

    def service(self) -> Service:
        return Service(
            self.service_code,
            self.service_name,
            self.description,
            bool(self.attributes),
            self.type,
            self.keywords,
            self.group,
        )


#: The demo catalogue: what a town's street-light, waste and sensor teams would offer.
DEFAULT_SERVICES = [
    Offering(
        "streetlight",
        "Street light out",
        "A street light is dark at night, burns by day or flickers.",
        keywords="lamp, lighting, dark street",
        group="street",
        attributes=[
            Attribute("pole_id", "string", True, order=1, description="Number on the pole"),
            Attribute(
                "fault",
                "singlevaluelist",
                True,
                order=2,
                description="What is wrong",
                values=[
                    AttributeValue("out", "Light out"),
                    AttributeValue("day_burning", "On during the day"),
                    AttributeValue("flicker", "Flickering"),
                ],
            ),
            Attribute("lamps", "number", False, order=3, description="How many lamps are affected"),
        ],
        service_notice="The lighting crew inspects reported lights within 5 working days.",
    ),
    Offering(
        "bin_overflow",
        "Overflowing litter bin",
        "A public litter bin is full or overflowing.",
        keywords="bin, litter, waste",
        group="sanitation",
        attributes=[
            Attribute("bin_id", "string", True, order=1, description="Number on the bin"),
            Attribute("fill_level", "number", False, order=2, description="Fill level in percent"),
        ],
    ),
    Offering(
        "sensor_fault", "City sensor fault", "A city sensor reports nothing or nonsense.", group="assets"
    ),
    Offering("graffiti", "Graffiti", "Graffiti on public property.", type="batch", group="street"),
]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _attributes_json(attributes: list[Attribute]) -> list[dict[str, Any]]:
    return [asdict(a) for a in attributes]


def _attributes_from(data: list[dict[str, Any]]) -> list[Attribute]:
    return [Attribute(**{**a, "values": [AttributeValue(**v) for v in a.get("values", [])]}) for a in data]


def install(conn: psycopg.Connection[Any], schema: str, services: list[Offering], now: datetime) -> None:
    """Create the schema and tables and load the catalogue. ``conn`` is autocommit."""
    lock = int.from_bytes(
        hashlib.sha256(f"sense311.open311.{schema}".encode()).digest()[:8], "big", signed=True
    )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(_DDL)
        before = conn.execute(
            "SELECT md5(coalesce(string_agg(services::text, ',' ORDER BY service_code), '')) FROM services"
        ).fetchone()
        for o in services:
            conn.execute(
                """INSERT INTO services (service_code, service_name, description, metadata, type, keywords,
                                         "group", attributes, service_notice)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (service_code) DO UPDATE SET service_name = EXCLUDED.service_name,
                       description = EXCLUDED.description, metadata = EXCLUDED.metadata, type = EXCLUDED.type,
                       keywords = EXCLUDED.keywords, "group" = EXCLUDED."group",
                       attributes = EXCLUDED.attributes, service_notice = EXCLUDED.service_notice""",
                (
                    o.service_code,
                    o.service_name,
                    o.description,
                    bool(o.attributes),
                    o.type,
                    o.keywords,
                    o.group,
                    Jsonb(_attributes_json(o.attributes)),
                    o.service_notice,
                ),
            )
        after = conn.execute(
            "SELECT md5(coalesce(string_agg(services::text, ',' ORDER BY service_code), '')) FROM services"
        ).fetchone()
        if before != after:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('changeset', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (now.strftime("%Y-%m-%d %H:%M:%S.%f"),),
            )


def changeset(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'changeset'").fetchone()
    return row[0] if row else "0"


def add_api_key(
    conn: psycopg.Connection[Any], name: str, now: datetime, *, role: str = "client", key: str | None = None
) -> str:
    """Store a key (generated when not given) under ``name``; returns the key, shown only now."""
    key = key or secrets.token_urlsafe(KEY_BYTES)
    conn.execute(
        "INSERT INTO api_keys (key_hash, name, role, created_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET key_hash = EXCLUDED.key_hash, role = EXCLUDED.role",
        (hash_key(key), name, role, now),
    )
    return key


def check_api_key(conn: psycopg.Connection[Any], presented: str | None) -> str | None:
    """The role of the key, or None. Every stored digest is compared, in constant time each."""
    if not presented:
        return None
    digest = hash_key(presented)
    role = None
    for stored, stored_role in conn.execute("SELECT key_hash, role FROM api_keys").fetchall():
        if hmac.compare_digest(stored, digest):
            role = stored_role
    return role


def _service_row(row: dict[str, Any]) -> Offering:
    return Offering(
        service_code=row["service_code"],
        service_name=row["service_name"],
        description=row["description"],
        type=row["type"],
        keywords=row["keywords"],
        group=row["group"],
        attributes=_attributes_from(row["attributes"]),
        service_notice=row["service_notice"],
    )


def list_services(conn: psycopg.Connection[Any]) -> list[Offering]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [
            _service_row(r) for r in cur.execute("SELECT * FROM services ORDER BY service_code").fetchall()
        ]


def get_service(conn: psycopg.Connection[Any], service_code: str) -> Offering | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM services WHERE service_code = %s", (service_code,)).fetchone()
    return _service_row(row) if row else None


def create_request(
    conn: psycopg.Connection[Any],
    service: Offering,
    fields: dict[str, Any],
    attributes: dict[str, Any],
    now: datetime,
    *,
    jurisdiction_id: str | None,
    token_only: bool = False,
    token_ready_after: int = 0,
) -> dict[str, str | None]:
    """Store a new request; returns ``service_request_id`` and/or ``token`` and ``service_notice``."""
    with conn.transaction():
        number = conn.execute("SELECT nextval('request_numbers')").fetchone()
        assert number is not None
        request_id = str(number[0]).zfill(ID_WIDTH)
        conn.execute(
            """INSERT INTO requests (service_request_id, jurisdiction_id, service_code, description,
                   service_notice, requested_datetime, updated_datetime, address, address_id, zipcode,
                   lat, long,
                   media_url, attributes, email, device_id, account_id, first_name, last_name, phone)
               VALUES (%(id)s, %(jurisdiction_id)s, %(service_code)s, %(description)s, %(notice)s,
                   %(now)s, %(now)s,
                   %(address_string)s, %(address_id)s, %(zipcode)s, %(lat)s, %(long)s, %(media_url)s,
                   %(attributes)s, %(email)s, %(device_id)s, %(account_id)s, %(first_name)s, %(last_name)s,
                   %(phone)s)""",
            {
                "id": request_id,
                "jurisdiction_id": jurisdiction_id,
                "service_code": service.service_code,
                "notice": service.service_notice,
                "now": now,
                "attributes": Jsonb(attributes),
                **{
                    k: fields.get(k)
                    for k in (
                        "description",
                        "address_string",
                        "address_id",
                        "zipcode",
                        "lat",
                        "long",
                        "media_url",
                        "email",
                        "device_id",
                        "account_id",
                        "first_name",
                        "last_name",
                        "phone",
                    )
                },
            },
        )
        conn.execute(
            "INSERT INTO notes (service_request_id, datetime, status, description)"
            " VALUES (%s, %s, 'open', %s)",
            (request_id, now, "Request received."),
        )
        if service.type == "batch" or token_only:
            token = secrets.token_hex(TOKEN_BYTES)
            conn.execute(
                "INSERT INTO tokens (token, service_request_id, ready_after, created_at)"
                " VALUES (%s, %s, %s, %s)",
                (token, request_id, token_ready_after, now),
            )
            return {"token": token, "service_notice": service.service_notice}
        if service.type == "blackbox":
            return {"service_notice": service.service_notice}
        return {"service_request_id": request_id, "service_notice": service.service_notice}


def lookup_token(conn: psycopg.Connection[Any], token: str) -> tuple[bool, str | None]:
    """(known, service_request_id); the id shows once the token has been asked for ``ready_after`` times."""
    row = conn.execute(
        "UPDATE tokens SET lookups = lookups + 1 WHERE token = %s"
        " RETURNING service_request_id, lookups, ready_after",
        (token,),
    ).fetchone()
    if row is None:
        return False, None
    request_id, lookups, ready_after = row
    return True, (request_id if lookups > ready_after else None)


_SELECT = """SELECT r.service_request_id, r.status, r.status_notes, s.service_name, r.service_code,
                    r.description,
                    r.agency_responsible, r.service_notice, r.requested_datetime, r.updated_datetime,
                    r.expected_datetime, r.address, r.address_id, r.zipcode, r.lat, r.long, r.media_url,
                    r.duplicate_of, r.jurisdiction_id
             FROM requests r JOIN services s ON s.service_code = r.service_code"""


def find_requests(
    conn: psycopg.Connection[Any],
    *,
    ids: list[str] | None = None,
    service_codes: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    statuses: list[str] | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    jurisdiction_id: str | None = None,
    page: int = 1,
    page_size: int = 1000,
) -> list[dict[str, Any]]:
    where: list[sql.Composable] = []
    args: list[Any] = []
    if ids is not None:
        # The spec: a list of ids overrides every other filter.
        where.append(sql.SQL("r.service_request_id = ANY(%s)"))
        args.append(ids)
    else:
        for column, op, value in (
            ("requested_datetime", ">=", start),
            ("requested_datetime", "<=", end),
            ("updated_datetime", ">", updated_after),
            ("updated_datetime", "<", updated_before),
        ):
            if value is not None:
                where.append(sql.SQL("r.{} " + op + " %s").format(sql.Identifier(column)))
                args.append(value)
        if service_codes:
            where.append(sql.SQL("r.service_code = ANY(%s)"))
            args.append(service_codes)
        if statuses:
            where.append(sql.SQL("r.status = ANY(%s)"))
            args.append(statuses)
        if jurisdiction_id is not None:
            where.append(sql.SQL("r.jurisdiction_id IS NOT DISTINCT FROM %s"))
            args.append(jurisdiction_id)
    order = (
        "r.updated_datetime, r.service_request_id"
        if updated_after
        else "r.requested_datetime DESC, r.service_request_id DESC"
    )
    query = sql.SQL("{} {} ORDER BY {} LIMIT %s OFFSET %s").format(
        sql.SQL(_SELECT),
        sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        sql.SQL(order),
    )
    args += [page_size, (page - 1) * page_size]
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, args).fetchall()


def get_request(conn: psycopg.Connection[Any], service_request_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SELECT + " WHERE r.service_request_id = %s", (service_request_id,)).fetchone()


def notes_for(conn: psycopg.Connection[Any], ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(
            "SELECT service_request_id, datetime, status, description FROM notes "
            "WHERE service_request_id = ANY(%s) ORDER BY datetime, id",
            (ids,),
        ).fetchall():
            out[row.pop("service_request_id")].append(row)
    return out


def update_request(
    conn: psycopg.Connection[Any],
    service_request_id: str,
    now: datetime,
    *,
    status: str | None = None,
    status_notes: str | None = None,
    agency_responsible: str | None = None,
    expected_datetime: datetime | None = None,
    duplicate_of: str | None = None,
) -> dict[str, Any]:
    """A staff update. Closing as a duplicate keeps the parent id and says so in the notes."""
    if status not in (None, "open", "closed"):
        raise RequestRejected(400, f"status must be open or closed, got {status!r}")
    with conn.transaction():
        current = conn.execute(
            "SELECT status FROM requests WHERE service_request_id = %s FOR UPDATE", (service_request_id,)
        ).fetchone()
        if current is None:
            raise RequestRejected(404, f"service_request_id {service_request_id!r} was not found")
        if duplicate_of is not None:
            if duplicate_of == service_request_id:
                raise RequestRejected(400, "a request cannot be a duplicate of itself")
            if get_request(conn, duplicate_of) is None:
                raise RequestRejected(400, f"duplicate_of {duplicate_of!r} is not a known service_request_id")
            status = "closed"
            status_notes = status_notes or f"Duplicate request. See request {duplicate_of}."
        new_status = status or current[0]
        conn.execute(
            """UPDATE requests SET status = %s, status_notes = coalesce(%s, status_notes),
                   agency_responsible = coalesce(%s, agency_responsible),
                   expected_datetime = coalesce(%s, expected_datetime),
                   duplicate_of = coalesce(%s, duplicate_of), updated_datetime = %s
               WHERE service_request_id = %s""",
            (
                new_status,
                status_notes,
                agency_responsible,
                expected_datetime,
                duplicate_of,
                now,
                service_request_id,
            ),
        )
        conn.execute(
            "INSERT INTO notes (service_request_id, datetime, status, description) VALUES (%s, %s, %s, %s)",
            (service_request_id, now, new_status, status_notes),
        )
    found = get_request(conn, service_request_id)
    assert found is not None
    return found
