"""Who is asking, may they, and how often: the dependency every /api/v1 operation starts with.

``require("write")`` answers 401 without a valid token (none, unknown, expired, revoked), 403
when the token's scope is too low, and 429 when the client's bucket is empty. Reads need a
token only when ``api.read_requires_token`` is set; a token presented on an open read is still
checked, so a revoked token never passes silently. Every request charges one bucket: the
token's when it is valid, else the client address's — so bad tokens cannot dodge the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import PoolTimeout

from sense311.api.context import AppContext, get_context
from sense311.api.errors import Forbidden, RateLimited, Unauthorized, Unavailable
from sense311.api.metrics import RATE_LIMITED
from sense311.api.tokens import SCOPES, Scope, TokenInfo, has_scope, verify_token

__all__ = ["SCHEME_PREFIX", "Principal", "rate_limited", "require"]

#: One scheme per scope, so the OpenAPI document can tell which scope each operation needs;
#: ``app._document`` merges them into one ``bearer`` scheme with ``x-required-scope``.
SCHEME_PREFIX = "sense311-"
_BEARERS = {scope: HTTPBearer(auto_error=False, scheme_name=f"{SCHEME_PREFIX}{scope}") for scope in SCOPES}


@dataclass(frozen=True, slots=True)
class Principal:
    """The client of one request: a verified token, or an anonymous address."""

    client: str
    token: TokenInfo | None = None


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _charge(ctx: AppContext, key: str) -> None:
    wait = ctx.limiter.take(key)
    if wait > 0:
        RATE_LIMITED.inc()
        per_minute = ctx.api.rate_limit_per_minute
        raise RateLimited(f"rate limit of {per_minute:g} requests per minute exceeded", wait)


def _verify(ctx: AppContext, presented: str) -> TokenInfo | None:
    try:
        with ctx.connection() as conn:
            return verify_token(conn, presented, now=ctx.clock())
    except PoolTimeout as exc:
        raise Unavailable(f"database unavailable: cannot check the API token ({str(exc).strip()})") from exc


def rate_limited(request: Request) -> None:
    """A dependency charging the client address's bucket, for pages that need no token."""
    _charge(get_context(request), f"ip:{_address(request)}")


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency admitting clients allowed ``scope``."""

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_BEARERS[scope]),  # noqa: B008
    ) -> Principal:
        ctx = get_context(request)
        address = f"ip:{_address(request)}"
        if credentials is None:
            if request.headers.get("authorization"):
                _charge(ctx, address)
                raise Unauthorized("the Authorization header must be 'Bearer <token>'")
            if scope == "read" and not ctx.api.read_requires_token:
                _charge(ctx, address)
                return Principal(address)
            _charge(ctx, address)
            raise Unauthorized(f"this operation needs an API token with the '{scope}' scope")
        token = _verify(ctx, credentials.credentials)
        if token is None:
            _charge(ctx, address)
            raise Unauthorized("the API token is unknown, expired or revoked")
        _charge(ctx, f"token:{token.prefix}")
        if not has_scope(token.scope, scope):
            raise Forbidden(f"this operation needs the '{scope}' scope; the token has '{token.scope}'")
        return Principal(f"token:{token.prefix}", token)

    dependency.__name__ = f"require_{scope}"
    return dependency
