"""What every request handler shares: settings, the pool, the clock, the rules, the limiter.

``create_app`` builds one ``AppContext`` and keeps it on ``app.state``; handlers reach it
through the ``get_context`` and ``get_db`` dependencies. Database failures are translated
here, once: a pool that cannot hand out a connection in ``db_timeout`` seconds is a 503.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from fastapi import Request
from psycopg_pool import ConnectionPool, PoolTimeout

from rules.errors import RuleFileError
from rules.loader import RuleSet, RuleSource
from sense311.api.errors import Unavailable
from sense311.api.ratelimit import RateLimiter
from sense311.api.settings import ApiSettings
from sense311.settings import Settings

__all__ = ["AppContext", "get_context", "get_db"]


@dataclass
class AppContext:
    settings: Settings
    api: ApiSettings
    limiter: RateLimiter
    clock: Callable[[], datetime]
    rules: RuleSource
    broker_ready: Callable[[], bool] | None = None
    pool: ConnectionPool | None = None
    _rules_lock: threading.Lock = field(default_factory=threading.Lock)

    def connection(self, timeout: float | None = None) -> Any:
        """A pooled connection (context manager); 503 when none comes within the timeout."""
        if self.pool is None:
            raise Unavailable("database unavailable: the API's connection pool is not open")
        return self.pool.connection(timeout=timeout if timeout is not None else self.api.db_timeout)

    def ruleset(self) -> RuleSet:
        """The current rule set, reloaded when its files changed (the last good one is kept)."""
        with self._rules_lock:
            if self.rules.current is None:
                try:
                    return self.rules.load()
                except RuleFileError as exc:
                    raise Unavailable(f"no rule set loaded: {exc}") from exc
            self.rules.reload()
            return self.rules.current


def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.sense311
    return ctx


def get_db(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection for one request, committed when the handler returns."""
    ctx = get_context(request)
    try:
        with ctx.connection() as conn:
            yield conn
    except PoolTimeout as exc:
        raise Unavailable(
            f"database unavailable: no connection within {ctx.api.db_timeout:g} s ({str(exc).strip()})",
            headers={"Retry-After": "5"},
        ) from exc
