"""sense311's own GeoReport v2 server: FastAPI over PostgreSQL, in a schema of its own.

Faithful to the spec (``wiki.open311.org/GeoReport_v2``): discovery, services, service definitions
with attributes, POST and GET requests, tokens for batch services, XML (mandatory) and JSON chosen
by the path's suffix, the spec's error list with 400/403/404, the api_key on POST (or
``Authorization: Bearer``), and the common extensions ``updated_after``/``updated_before``,
``page``/``page_size`` and ``extensions=true`` (notes history, ``parent_service_request_id``).
Staff update and close requests with ``POST /staff/requests/{id}.{fmt}`` and a staff key.

It is the demo's default target, the tests' server, and a real option for a town without a 311
back end. ``misbehave`` makes it fail like real back ends do, deterministically (see misbehave.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import Response
from psycopg import conninfo as pg_conninfo
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sense311.errors import ConfigError
from sense311.serving import ServerThread as CoreServerThread
from sense311.settings import Settings
from ticketing.errors import RequestRejected
from ticketing.open311 import store
from ticketing.open311.client import format_datetime
from ticketing.open311.misbehave import Misbehaviour
from ticketing.open311.models import DESCRIPTION_LIMIT, ServiceDefinition, validate_attributes
from ticketing.open311.parse import parse_datetime
from ticketing.open311.render import CONTENT_TYPES, render
from ticketing.settings import Open311ServerSettings

__all__ = ["SPECIFICATION", "ServerThread", "create_app", "misbehaviour_of"]

log = logging.getLogger(__name__)

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
#: The spec: a GET requests date range may not span more than 90 days, and that is the default.
MAX_RANGE = timedelta(days=90)
#: Seconds any statement of the server may run.
STATEMENT_TIMEOUT = 30.0

_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]+)\](\[\])?$")
#: "No HTML or code" (spec): a tag-like sequence is refused rather than stored and re-served.
_MARKUP = re.compile(r"<\s*[A-Za-z/!?]")


class _Throttled(RequestRejected):
    def __init__(self, retry_after: float | None, status: int = 429, description: str | None = None) -> None:
        super().__init__(status, description or "Too many requests; retry later.")
        self.retry_after = retry_after


@dataclass
class _State:
    conninfo: str
    schema: str
    settings: Open311ServerSettings
    services: list[store.Offering]
    misbehave: Misbehaviour
    clock: Callable[[], datetime]
    pool: ConnectionPool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _conninfo(dsn: str, schema: str, statement_timeout: float) -> str:
    params = pg_conninfo.conninfo_to_dict(dsn)
    extra = f"-c search_path={schema} -c statement_timeout={int(statement_timeout * 1000)}"
    params["options"] = f"{params.get('options', '')} {extra}".strip()
    params.setdefault("application_name", "sense311-open311-server")
    params.setdefault("connect_timeout", 10)
    return pg_conninfo.make_conninfo(**params)


def misbehaviour_of(app: FastAPI) -> Misbehaviour:
    """The fault switchboard of a running app."""
    state: _State = app.state.open311
    return state.misbehave


def create_app(
    source: Settings | str,
    schema: str | None = None,
    *,
    misbehave: Misbehaviour | None = None,
    settings: Open311ServerSettings | None = None,
    services: list[store.Offering] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The server app. ``source``: sense311 settings (their database_url) or a PostgreSQL DSN.

    ``schema`` (default ``settings.schema``) holds the server's tables; it is created at start-up.
    """
    server = settings or Open311ServerSettings()
    if isinstance(source, Settings):
        dsn = source.database_url.get_secret_value()
        timeout = source.storage.statement_timeout
    else:
        dsn, timeout = source, STATEMENT_TIMEOUT
    state = _State(
        conninfo=_conninfo(dsn, schema or server.db_schema, timeout),
        schema=schema or server.db_schema,
        settings=server,
        services=services if services is not None else store.DEFAULT_SERVICES,
        misbehave=misbehave or Misbehaviour(),
        clock=clock or (lambda: datetime.now(UTC)),
    )

    def _start() -> ConnectionPool:
        try:
            with psycopg.connect(state.conninfo, autocommit=True) as conn:
                store.install(conn, state.schema, state.services, state.clock())
        except psycopg.Error as exc:
            raise ConfigError(f"Open311 server: cannot prepare schema {state.schema}: {exc}") from exc
        pool = ConnectionPool(
            state.conninfo,
            min_size=1,
            max_size=server.pool_max,
            kwargs={"autocommit": True},
            name="open311-server",
            open=False,
        )
        pool.open(wait=True, timeout=STATEMENT_TIMEOUT)
        return pool

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool = await run_in_threadpool(_start)
        try:
            yield
        finally:
            pool, state.pool = state.pool, None
            await run_in_threadpool(pool.close)

    app = FastAPI(
        title="sense311 Open311 GeoReport v2",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.open311 = state
    _routes(app, state)
    return app


# -- helpers ----------------------------------------------------------------------------------------


def _fmt(state: _State, fmt: str) -> str:
    if fmt not in ("xml", "json"):
        raise RequestRejected(404, f"format {fmt!r} is not served; use .xml or .json")
    if fmt == "json" and state.misbehave.xml_only:
        raise RequestRejected(404, "this endpoint serves XML only; use .xml")
    return fmt


def _error_format(request: Request) -> str:
    fmt = request.path_params.get("fmt") or request.url.path.rsplit(".", 1)[-1]
    state: _State = request.app.state.open311
    return "json" if fmt == "json" and not state.misbehave.xml_only else "xml"


def _errors(
    fmt: str, status: int, errors: list[tuple[int, str]], headers: dict[str, str] | None = None
) -> Response:
    body = render(fmt, "errors", [{"code": code, "description": text} for code, text in errors])
    return Response(body, status_code=status, media_type=CONTENT_TYPES[fmt], headers=headers)


def _reply(state: _State, method: str, fmt: str, root: str, data: Any, status: int = 200) -> Response:
    body = render(fmt, root, data)
    if state.misbehave.take("garbage", method):
        body = body[: max(1, len(body) // 2)]
    return Response(body, status_code=status, media_type=CONTENT_TYPES[fmt])


def _gate(state: _State, method: str) -> None:
    fault = state.misbehave.take("rate_limit", method)
    if fault is not None:
        raise _Throttled(fault.retry_after)


def _jurisdiction(state: _State, given: str | None) -> str | None:
    served = state.settings.jurisdictions
    if not served:
        return None
    if given is None or given == "":
        if len(served) > 1:
            raise RequestRejected(
                400, f"jurisdiction_id was not provided; this endpoint serves {', '.join(served)}"
            )
        return served[0]
    if given not in served:
        raise RequestRejected(404, f"jurisdiction_id {given!r} was not found; served: {', '.join(served)}")
    return given


def _list_param(request: Request, name: str) -> list[str]:
    values = []
    for raw in request.query_params.getlist(name):
        values += [v.strip() for v in raw.split(",") if v.strip()]
    return values


def _date_param(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        raise RequestRejected(400, f"{name} {value!r} is not a W3C datetime like 2010-01-01T00:00:00Z")
    return parsed


def _int_param(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise RequestRejected(400, f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise RequestRejected(400, f"{name} must be between {low} and {high}, got {number}")
    return number


def _request_item(row: dict[str, Any], notes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for column in store.REQUEST_COLUMNS:
        value = row.get(column)
        item[column] = format_datetime(value) if isinstance(value, datetime) else value
    if notes is not None:
        item["parent_service_request_id"] = row.get("duplicate_of")
        item["notes"] = [
            {
                "datetime": format_datetime(n["datetime"]),
                "status": n["status"],
                "description": n["description"],
            }
            for n in notes
        ]
    return item


def _service_item(o: store.Offering) -> dict[str, Any]:
    s = o.service()
    return {
        "service_code": s.service_code,
        "service_name": s.service_name,
        "description": s.description,
        "metadata": s.metadata,
        "type": s.type,
        "keywords": s.keywords,
        "group": s.group,
    }


def _definition_item(o: store.Offering) -> dict[str, Any]:
    return {
        "service_code": o.service_code,
        "attributes": [
            {
                "variable": a.variable,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": a.datatype_description,
                "order": a.order,
                "description": a.description,
                "values": [{"key": v.key, "name": v.name} for v in a.values],
            }
            for a in o.attributes
        ],
    }


def _api_role(state: _State, request: Request, form: dict[str, Any]) -> str | None:
    presented = form.get("api_key")
    auth = request.headers.get("authorization", "")
    if not presented and auth.lower().startswith("bearer "):
        presented = auth[7:].strip()
    if not presented:
        return None
    assert state.pool is not None
    with state.pool.connection() as conn:
        return store.check_api_key(conn, presented)


async def _form(request: Request) -> tuple[dict[str, Any], dict[str, str | list[str]]]:
    ctype = (
        request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip().lower()
    )
    if ctype != "application/x-www-form-urlencoded":
        raise RequestRejected(400, f"expected Content-Type application/x-www-form-urlencoded, got {ctype!r}")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise RequestRejected(400, "the form is not UTF-8 encoded") from None
    fields: dict[str, Any] = {}
    attributes: dict[str, str | list[str]] = {}
    for key, value in pairs:
        match = _ATTRIBUTE.match(key)
        if match:
            code, many = match.group(1), match.group(2)
            if many:
                existing = attributes.get(code)
                attributes[code] = [*(existing if isinstance(existing, list) else []), value]
            else:
                attributes[code] = value
        else:
            fields[key] = value
    return fields, attributes


def _location(fields: dict[str, Any]) -> None:
    lat, lon = fields.get("lat") or None, fields.get("long") or None
    if (lat is None) != (lon is None):
        raise RequestRejected(400, "lat and long must be sent together")
    if lat is not None:
        try:
            fields["lat"], fields["long"] = float(lat), float(lon)
        except ValueError:
            raise RequestRejected(400, f"lat/long must be numbers, got {lat!r}/{lon!r}") from None
        if not (-90 <= fields["lat"] <= 90 and -180 <= fields["long"] <= 180):
            raise RequestRejected(400, f"lat/long {lat}/{lon} lie outside WGS84 bounds")
    else:
        fields["lat"] = fields["long"] = None
    if fields["lat"] is None and not fields.get("address_string") and not fields.get("address_id"):
        raise RequestRejected(400, "a location is required: lat and long, address_string or address_id")


# -- routes -------------------------------------------------------------------------------------------


def _routes(app: FastAPI, state: _State) -> None:
    def db() -> Any:
        assert state.pool is not None, "the server has not started"
        return state.pool.connection()

    @app.exception_handler(RequestRejected)
    async def _rejected(request: Request, exc: RequestRejected) -> Response:
        headers = None
        if isinstance(exc, _Throttled) and exc.retry_after is not None:
            headers = {"Retry-After": f"{exc.retry_after:g}"}
        return _errors(_error_format(request), exc.status, [(exc.code, exc.description)], headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        text = "no such resource" if exc.status_code == 404 else str(exc.detail)
        return _errors(
            _error_format(request), exc.status_code, [(exc.status_code, f"{request.url.path}: {text}")]
        )

    @app.exception_handler(psycopg.Error)
    async def _db_error(request: Request, exc: psycopg.Error) -> Response:
        log.error("Open311 server: database error on %s %s: %s", request.method, request.url.path, exc)
        return _errors(
            _error_format(request),
            503,
            [(503, "the service request database is unavailable")],
            {"Retry-After": "30"},
        )

    @app.get("/discovery.{fmt}")
    async def discovery(request: Request, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        _gate(state, "GET")

        def work() -> str:
            with db() as conn:
                return store.changeset(conn)

        changeset = await run_in_threadpool(work)
        formats = ["text/xml"] if state.misbehave.xml_only else ["text/xml", "application/json"]
        data = {
            "changeset": changeset,
            "contact": state.settings.contact,
            "key_service": "Ask the operator for a key (sense311 open311-server --create-key NAME).",
            "endpoints": [
                {
                    "specification": SPECIFICATION,
                    "url": str(request.base_url).rstrip("/"),
                    "changeset": changeset,
                    "type": state.settings.endpoint_type,
                    "formats": formats,
                }
            ],
        }
        return _reply(state, "GET", fmt, "discovery", data)

    @app.get("/services.{fmt}")
    async def services(request: Request, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        _gate(state, "GET")
        _jurisdiction(state, request.query_params.get("jurisdiction_id"))

        def work() -> list[store.Offering]:
            with db() as conn:
                return store.list_services(conn)

        found = await run_in_threadpool(work)
        return _reply(state, "GET", fmt, "services", [_service_item(o) for o in found])

    @app.get("/services/{service_code}.{fmt}")
    async def service_definition(request: Request, service_code: str, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        _gate(state, "GET")
        _jurisdiction(state, request.query_params.get("jurisdiction_id"))

        def work() -> store.Offering | None:
            with db() as conn:
                return store.get_service(conn, service_code)

        found = await run_in_threadpool(work)
        if found is None:
            raise RequestRejected(404, f"service_code {service_code!r} was not found")
        if not found.attributes:
            raise RequestRejected(
                404, f"service_code {service_code!r} has no service definition (metadata is false)"
            )
        return _reply(state, "GET", fmt, "service_definition", _definition_item(found))

    @app.post("/requests.{fmt}")
    async def post_request(request: Request, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        state.misbehave.count("posts_received")
        _gate(state, "POST")
        fields, attributes = await _form(request)
        role = await run_in_threadpool(_api_role, state, request, fields)
        if role is None:
            reason = (
                "api_key was not provided"
                if not fields.get("api_key") and "authorization" not in request.headers
                else "Invalid api_key received -- can't proceed with create_request."
            )
            raise RequestRejected(403, reason)
        jurisdiction = _jurisdiction(state, fields.get("jurisdiction_id"))
        before = state.misbehave.take("before_create", "POST")
        if before is not None:
            raise _Throttled(before.retry_after, before.status, "the service request system is unavailable")
        code = fields.get("service_code")
        if not code:
            raise RequestRejected(400, "service_code was not provided")
        description = fields.get("description") or ""
        if len(description) > DESCRIPTION_LIMIT:
            raise RequestRejected(
                400, f"description has {len(description)} characters; the limit is {DESCRIPTION_LIMIT}"
            )
        if _MARKUP.search(description):
            raise RequestRejected(400, "description may not contain HTML or code")
        _location(fields)

        def work() -> dict[str, str | None]:
            with db() as conn:
                service = store.get_service(conn, code)
                if service is None:
                    raise RequestRejected(404, f"service_code {code!r} was not found")
                values: dict[str, str | list[str]] = {}
                if service.attributes:
                    values, problems = validate_attributes(
                        ServiceDefinition(code, service.attributes), attributes
                    )
                    if problems:
                        raise RequestRejected(400, "; ".join(problems))
                return store.create_request(
                    conn,
                    service,
                    fields,
                    values,
                    state.clock(),
                    jurisdiction_id=jurisdiction,
                    token_only=state.misbehave.token_only,
                    token_ready_after=state.misbehave.token_lookups_before_ready,
                )

        created = await run_in_threadpool(work)
        state.misbehave.count("requests_created")
        after = state.misbehave.take("after_create", "POST")
        if after is not None:
            raise RequestRejected(after.status, "internal error while confirming the request")
        delay = state.misbehave.take("delay", "POST")
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        item = {k: created.get(k) for k in ("service_request_id", "token") if created.get(k)}
        item["service_notice"] = created.get("service_notice")
        item["account_id"] = fields.get("account_id") or None
        return _reply(state, "POST", fmt, "service_requests", [item])

    @app.get("/requests.{fmt}")
    async def get_requests(request: Request, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        _gate(state, "GET")
        q = request.query_params
        jurisdiction = _jurisdiction(state, q.get("jurisdiction_id"))
        ids = _list_param(request, "service_request_id") or None
        statuses = _list_param(request, "status")
        for s in statuses:
            if s not in ("open", "closed"):
                raise RequestRejected(400, f"status {s!r} is not one of: open, closed")
        start, end = (
            _date_param("start_date", q.get("start_date")),
            _date_param("end_date", q.get("end_date")),
        )
        after, before = (
            _date_param("updated_after", q.get("updated_after")),
            _date_param("updated_before", q.get("updated_before")),
        )
        if start and end:
            if end < start:
                raise RequestRejected(400, "end_date lies before start_date")
            if end - start > MAX_RANGE:
                raise RequestRejected(
                    400, f"start_date to end_date spans {(end - start).days} days; the limit is 90"
                )
        elif start:
            end = start + MAX_RANGE
        elif end:
            start = end - MAX_RANGE
        elif after is None and before is None:
            end = state.clock()
            start = end - MAX_RANGE
        page = _int_param("page", q.get("page"), 1, 1, 1_000_000)
        size = _int_param("page_size", q.get("page_size"), state.settings.page_size, 1, 1000)
        extensions = (q.get("extensions") or "").lower() == "true"

        def work() -> list[dict[str, Any]]:
            with db() as conn:
                rows = store.find_requests(
                    conn,
                    ids=ids,
                    service_codes=_list_param(request, "service_code") or None,
                    start=start,
                    end=end,
                    statuses=statuses or None,
                    updated_after=after,
                    updated_before=before,
                    jurisdiction_id=jurisdiction,
                    page=page,
                    page_size=size,
                )
                notes = store.notes_for(conn, [r["service_request_id"] for r in rows]) if extensions else {}
            return [
                _request_item(r, notes.get(r["service_request_id"]) if extensions else None) for r in rows
            ]

        items = await run_in_threadpool(work)
        return _reply(state, "GET", fmt, "service_requests", items)

    @app.get("/requests/{service_request_id}.{fmt}")
    async def get_request(request: Request, service_request_id: str, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        _gate(state, "GET")
        _jurisdiction(state, request.query_params.get("jurisdiction_id"))
        extensions = (request.query_params.get("extensions") or "").lower() == "true"

        def work() -> dict[str, Any] | None:
            with db() as conn:
                row = store.get_request(conn, service_request_id)
                if row is None:
                    return None
                notes = (
                    store.notes_for(conn, [service_request_id])[service_request_id] if extensions else None
                )
            return _request_item(row, notes)

        item = await run_in_threadpool(work)
        if item is None:
            raise RequestRejected(404, f"service_request_id {service_request_id!r} was not found")
        return _reply(state, "GET", fmt, "service_requests", [item])

    @app.get("/tokens/{token}.{fmt}")
    async def token(request: Request, token: str, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        _gate(state, "GET")
        _jurisdiction(state, request.query_params.get("jurisdiction_id"))

        def work() -> tuple[bool, str | None]:
            with db() as conn:
                return store.lookup_token(conn, token)

        known, request_id = await run_in_threadpool(work)
        if not known:
            raise RequestRejected(404, f"token {token!r} was not found")
        item: dict[str, Any] = {"service_request_id": request_id, "token": token}
        return _reply(state, "GET", fmt, "service_requests", [item])

    @app.post("/staff/requests/{service_request_id}.{fmt}")
    async def staff_update(request: Request, service_request_id: str, fmt: str) -> Response:
        fmt = _fmt(state, fmt)
        fields, _ = await _form(request)
        role = await run_in_threadpool(_api_role, state, request, fields)
        if role != "staff":
            raise RequestRejected(403, "a staff api_key is required to update requests")
        expected = _date_param("expected_datetime", fields.get("expected_datetime"))

        def work() -> dict[str, Any]:
            with db() as conn:
                row = store.update_request(
                    conn,
                    service_request_id,
                    state.clock(),
                    status=fields.get("status") or None,
                    status_notes=fields.get("status_notes") or None,
                    agency_responsible=fields.get("agency_responsible") or None,
                    expected_datetime=expected,
                    duplicate_of=fields.get("duplicate_of") or None,
                )
            return _request_item(row)

        item = await run_in_threadpool(work)
        return _reply(state, "POST", fmt, "service_requests", [item])


# -- running it -----------------------------------------------------------------------------------------


class ServerThread(CoreServerThread):
    """The Open311 app served by uvicorn in a background thread (tests, bench, demo); ``url`` ends
    with ``/``, the form GeoReport endpoints are joined to."""

    label = "the Open311 server"

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, host, port, name="open311-server")

    def start(self) -> ServerThread:
        super().start()
        self.url += "/"
        return self
