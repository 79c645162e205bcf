"""Prometheus metrics of the API, in the default registry beside ingest's and the others'.

Requests are labelled by route template (``/api/v1/sensors/{sensor_id}``), never by raw path,
so a crawler cannot create a series per URL.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RATE_LIMITED", "REQUESTS", "REQUEST_SECONDS", "MetricsMiddleware"]

REQUESTS = Counter(
    "sense311_api_requests", "HTTP requests answered by the API", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "sense311_api_request_duration_seconds",
    "Time from receiving a request to the end of its response",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RATE_LIMITED = Counter("sense311_api_rate_limited", "Requests refused with 429 by the rate limit")

#: The route label of requests no route matched (scanners, typos).
UNMATCHED = "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            label = getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "")
            REQUESTS.labels(method, label, str(status)).inc()
            REQUEST_SECONDS.labels(method, label).observe(time.perf_counter() - began)
