"""The HTTP API's application: ``create_app(settings)`` wires the routers, the pool and the limits.

::

    app = create_app(settings, api=settings.api, broker_ready=subscriber.is_connected)
    ApiServer(app, host=settings.api.host, port=settings.api.port).start()

The API reads every package's tables but owns only its tokens; it is one of the places (with the
CLI and the service runner) allowed to import ``rules``, ``ticketing`` and ``detectors``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from psycopg_pool import ConnectionPool

from rules.loader import RuleSource
from sense311 import __version__
from sense311.api import admin, dashboard, deadletters, detectors, health, incidents, readings, rules, sensors
from sense311.api.auth import SCHEME_PREFIX
from sense311.api.context import AppContext
from sense311.api.errors import install_handlers
from sense311.api.metrics import MetricsMiddleware
from sense311.api.ratelimit import RateLimiter
from sense311.api.settings import ApiSettings
from sense311.db import open_pool
from sense311.settings import Settings

__all__ = ["POOL_CLOSE_TIMEOUT", "create_app"]

log = logging.getLogger(__name__)

#: Seconds shutdown waits for requests still holding a connection before closing the pool anyway.
POOL_CLOSE_TIMEOUT = 5.0

_DESCRIPTION = """City sensor telemetry, rules, detectors, incidents and Open311 tickets.

Reads are open unless `api.read_requires_token` is set; writes need a token
(`Authorization: Bearer s311_…`, made with `sense311 api token create --scope write`).
Errors answer `{"error": "<one line>"}`. Times are ISO 8601; a time without a zone is UTC.
"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _open_pool(settings: Settings, api: ApiSettings) -> ConnectionPool:
    # The API's own statement timeout and size, so a slow query from a client cannot hold
    # a connection as long as a service job may, and the API cannot take every connection.
    storage = settings.storage.model_copy(
        update={
            "statement_timeout": api.statement_timeout,
            "pool_max": api.pool_max,
            "pool_min": min(settings.storage.pool_min, api.pool_max),
        }
    )
    # wait=False: the API starts (and /readyz says why it is not ready) while the database is down.
    return open_pool(settings.model_copy(update={"storage": storage}), "sense311-api", wait=False)


def create_app(
    settings: Settings,
    *,
    api: ApiSettings | None = None,
    pool: ConnectionPool | None = None,
    broker_ready: Callable[[], bool] | None = None,
    rules_source: RuleSource | None = None,
    extra_routers: Sequence[APIRouter] = (),
    clock: Callable[[], datetime] = _utcnow,
) -> FastAPI:
    """The API as an ASGI application.

    ``api`` defaults to the settings' ``api:`` section (``ApiSettings.from_settings``). ``pool`` is used as
    given and left open at shutdown; without one, the app opens its own at start-up and closes
    it at shutdown. ``broker_ready`` reports the MQTT connection to /readyz (None: not
    checked). ``rules_source`` is the rule set to list and backtest (default: ``api.rules``).
    ``clock`` returns the current UTC time (injectable for tests).
    """
    api = api if api is not None else ApiSettings.from_settings(settings)
    ctx = AppContext(
        settings=settings,
        api=api,
        limiter=RateLimiter(api.rate_limit_per_minute, api.rate_limit_burst),
        clock=clock,
        rules=rules_source or RuleSource(*api.rules),
        broker_ready=broker_ready,
        pool=pool,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = ctx.pool is None
        if owned:
            ctx.pool = _open_pool(settings, api)
        try:
            yield
        finally:
            if owned and ctx.pool is not None:
                ctx.pool.close(timeout=POOL_CLOSE_TIMEOUT)
                ctx.pool = None

    app = FastAPI(
        title="sense311",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.sense311 = ctx
    install_handlers(app)
    if api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=api.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware)
    for module in (health, sensors, readings, incidents, rules, detectors, deadletters, admin):
        app.include_router(module.router)
    if api.dashboard:
        app.include_router(dashboard.router)
    for router in extra_routers:
        app.include_router(router)
    app.openapi = lambda: _document(app, api)  # type: ignore[method-assign]
    return app


def _document(app: FastAPI, api: ApiSettings) -> dict[str, Any]:
    """FastAPI's OpenAPI document with one ``bearer`` scheme and each operation's scope stated.

    Open reads take a token but do not need one, which OpenAPI says with an empty alternative
    (``{}``) in the operation's security list.
    """
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    for name in [n for n in schemes if n.startswith(SCHEME_PREFIX)]:
        del schemes[name]
    schemes["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`sense311 api token create`): `Authorization: Bearer s311_…`.",
    }
    for operation in _operations(document):
        scope = next(
            (
                n[len(SCHEME_PREFIX) :]
                for req in operation["security"]
                for n in req
                if n.startswith(SCHEME_PREFIX)
            ),
            None,
        )
        if scope is None:
            continue
        operation["x-required-scope"] = scope
        if scope == "read" and not api.read_requires_token:
            operation["security"] = [{}, {"bearer": []}]
            note = "Open to everyone; a token, when sent, must be valid."
        else:
            operation["security"] = [{"bearer": []}]
            note = f"Needs a token with the `{scope}` scope."
        operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
    app.openapi_schema = document
    return document


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in document.get("paths", {}).values():
        for operation in path.values():
            if isinstance(operation, dict) and operation.get("security"):
                yield operation
