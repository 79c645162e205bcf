"""/healthz (the process answers), /readyz (it can do its work) and /metrics (Prometheus).

Readiness asks the database for ``SELECT 1`` within ``api.readiness_timeout`` seconds and calls
the injected ``broker_ready`` (the service runner's view of its MQTT connection). These routes
need no token and are not rate limited: orchestrators and Prometheus call them on a schedule.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import psycopg
import psycopg_pool
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from sense311 import __version__
from sense311.api.context import AppContext, get_context

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])
Ctx = Annotated[AppContext, Depends(get_context)]


class Health(BaseModel):
    status: str
    version: str


class Check(BaseModel):
    ok: bool
    #: Seconds the check took (None when it was not run).
    seconds: float | None
    detail: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, Check]


class NotReady(Readiness):
    error: str


@router.get("/healthz", summary="Liveness")
def healthz() -> Health:
    """200 while the process serves requests; it checks nothing else."""
    return Health(status="ok", version=__version__)


def _database(ctx: AppContext) -> Check:
    timeout = ctx.api.readiness_timeout
    began = time.perf_counter()
    try:
        with ctx.connection(timeout=timeout) as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout * 1000)}ms",))
            conn.execute("SELECT 1")
    except psycopg_pool.PoolTimeout:
        return Check(
            ok=False,
            seconds=round(time.perf_counter() - began, 3),
            detail=f"no connection within {timeout:g} s",
        )
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Check(ok=False, seconds=round(time.perf_counter() - began, 3), detail=first)
    return Check(ok=True, seconds=round(time.perf_counter() - began, 3), detail="SELECT 1 answered")


def _broker(ctx: AppContext) -> Check:
    if ctx.broker_ready is None:
        return Check(ok=True, seconds=None, detail="not checked: this process has no broker connection")
    try:
        ok = bool(ctx.broker_ready())
    except Exception as exc:  # an injected callable: whatever it raises means "not ready"
        log.warning("broker readiness check raised %s: %s", type(exc).__name__, exc)
        return Check(ok=False, seconds=None, detail=f"the check raised {type(exc).__name__}: {exc}")
    return Check(ok=ok, seconds=None, detail="connected" if ok else "not connected to the MQTT broker")


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Readiness,
    responses={503: {"model": NotReady, "description": "The database or the broker is not usable"}},
)
def readyz(ctx: Ctx) -> Any:
    """200 when the database answers within api.readiness_timeout and the broker is connected."""
    checks = {"database": _database(ctx), "broker": _broker(ctx)}
    failed = [name for name, check in checks.items() if not check.ok]
    if not failed:
        return Readiness(status="ready", checks=checks)
    error = "not ready: " + "; ".join(f"{name}: {checks[name].detail}" for name in failed)
    body = NotReady(status="not ready", checks=checks, error=error)
    return JSONResponse(body.model_dump(mode="json"), status_code=503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)
def metrics() -> Response:
    """Every metric of this process (ingest, rules, API requests …) in the text exposition format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
