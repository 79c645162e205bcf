"""Errors of the HTTP API: every failure answers ``{"error": "<one line>"}`` with its status.

::

    Sense311Error
     └── ApiError               an HTTP status, a one-line message, optional headers and details
          ├── Unauthorized      401: no token, an unknown one, or a revoked one
          ├── Forbidden         403: a valid token without the scope
          ├── NotFound          404
          ├── Conflict          409
          ├── TooLarge          413: a posted file over api.max_upload_bytes
          ├── UnsupportedMedia  415: a body of a type the operation does not read
          ├── Invalid           422: the request's content is wrong (details list every row)
          ├── RateLimited       429 with Retry-After
          └── Unavailable       503: the database (or another dependency) does not answer

FastAPI's own validation errors, Starlette's HTTP errors and sense311 errors raised deeper in
are turned into the same shape here, once, by the handlers ``install_handlers`` adds.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sense311.errors import ConfigError, DatabaseError, Sense311Error, TransientDatabaseError

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "Conflict",
    "ErrorBody",
    "Forbidden",
    "Invalid",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMedia",
    "install_handlers",
]

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What every error answers: one line saying what is wrong, and sometimes a list of details."""

    error: str
    details: list[dict[str, Any]] | None = None


class ApiError(Sense311Error):
    status = 500

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class TooLarge(ApiError):
    status = 413


class UnsupportedMedia(ApiError):
    status = 415


class Invalid(ApiError):
    status = 422


class RateLimited(ApiError):
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        # Whole seconds, rounded up: retrying at the advertised time must succeed.
        seconds = max(1, math.ceil(retry_after))
        super().__init__(f"{message}; retry in {seconds} s", headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class Unavailable(ApiError):
    status = 503


def _response(
    status: int, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    kind = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body field"}
    if not loc:
        return "request"
    where, rest = loc[0], [str(p) for p in loc[1:]]
    if where in kind:
        return f"{kind[where]} '{'.'.join(rest)}'" if rest else "request body"
    return f"'{'.'.join(str(p) for p in loc)}'"


def _validation_message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if error.get("type") == "missing":
        message = "required"
    return f"{_location(tuple(error.get('loc', ())))}: {message}"


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _response(exc.status, exc.message, exc.details, exc.headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return _response(422, "invalid request")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    details = [
        {"location": _location(tuple(e.get("loc", ()))), "message": _validation_message(e)} for e in errors
    ]
    return _response(422, _validation_message(errors[0]) + more, details if len(errors) > 1 else None)


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def _allowed(request: Request) -> str:
    # Each method of a path is its own route, so the 405 of the first one would name only its
    # method; the answer must list every method the path supports: ask the router for each.
    allowed = [
        method
        for method in _METHODS
        if any(
            r.matches({**request.scope, "method": method})[0] == Match.FULL for r in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed(request)
        headers["Allow"] = allowed
        return _response(405, f"method {request.method} not allowed here; allowed: {allowed}", None, headers)
    if exc.status_code == 404:
        return _response(404, f"no such path: {request.url.path}", None, headers)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to a JSON body it cannot decode (not UTF-8).
        return _response(400, "the request body cannot be read: send UTF-8 JSON", None, headers)
    if exc.status_code == 400:
        return _response(400, f"the request body cannot be read: {exc.detail}", None, headers)
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    return _response(exc.status_code, message, None, headers)


async def _on_sense311(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, TransientDatabaseError):
        return _response(503, str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, ConfigError):
        return _response(422, str(exc))
    if isinstance(exc, DatabaseError):
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        return _response(500, str(exc))
    return _response(500, str(exc) or type(exc).__name__)


async def _on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    return _response(
        503, f"database unavailable: {str(exc).strip() or 'no connection'}", headers={"Retry-After": "5"}
    )


async def _on_psycopg(request: Request, exc: Exception) -> JSONResponse:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.OperationalError):
        return _response(503, f"database unavailable: {first}", headers={"Retry-After": "5"})
    if isinstance(exc, psycopg.DataError):
        # Values psycopg or the server refuse (a NUL character, a date out of range) are the client's.
        return _response(422, f"invalid value: {first}")
    log.error("database error on %s %s: %s", request.method, request.url.path, first)
    return _response(500, f"database error: {first}")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _response(500, f"internal error ({type(exc).__name__}); see the service log")


def install_handlers(app: FastAPI) -> None:
    """Make every failure of ``app`` answer ``{"error": …}``."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Sense311Error, _on_sense311)
    app.add_exception_handler(psycopg_pool.PoolTimeout, _on_pool_timeout)
    app.add_exception_handler(psycopg.Error, _on_psycopg)
    app.add_exception_handler(Exception, _on_unexpected)


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: Documented on every /api/v1 operation, so clients (and the contract test) know the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("The body cannot be read (not UTF-8, a broken form)"),
    401: _doc("No token, or an unknown, expired or revoked one"),
    403: _doc("The token lacks the scope"),
    404: _doc("Not found"),
    422: _doc("The request is invalid; the message names the parameter or row"),
    429: _doc("Too many requests; see Retry-After"),
    503: _doc("The database does not answer"),
}
