"""The one place httpx errors and HTTP statuses become ticketing errors.

Policy (OPEN311.md): a call that never reached the server (connection refused, connect timeout,
pool exhausted) is transient and created nothing. A POST that was sent and then timed out, lost
its connection or got a 5xx is *ambiguous*: the request may exist, so the caller reconciles
before posting again. 429 and 503 carry Retry-After, which is honoured. 400, 403, 404 and the
other 4xx are permanent, with the server's own error description kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

import httpx

from ticketing.errors import AmbiguousError, Open311Error, PermanentError, RateLimited, TransientError
from ticketing.open311.parse import parse_errors

__all__ = ["MAX_RETRY_AFTER", "call", "parse_retry_after", "status_error", "timeout_of"]

#: A Retry-After beyond a day is a misconfigured server, not a plan; it is capped so the row still moves.
MAX_RETRY_AFTER = 86_400.0
#: Retry-After assumed on a 429 without the header: long enough not to hammer a throttled server.
DEFAULT_RATE_LIMIT_WAIT = 60.0

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_OUR_MISTAKE = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.TooManyRedirects, httpx.InvalidURL)


def timeout_of(connect: float, read: float, write: float, pool: float) -> httpx.Timeout:
    return httpx.Timeout(connect=connect, read=read, write=write, pool=pool)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _describe(response: httpx.Response) -> str | None:
    errors = parse_errors(response.content, response.headers.get("content-type"))
    if not errors:
        return response.reason_phrase or None
    return "; ".join(
        f"{code}: {text}" if code and code != str(response.status_code) else text for code, text in errors
    )


def status_error(
    response: httpx.Response, *, method: str, url: str, reference: str | None, post: bool
) -> Open311Error:
    """The error for a non-2xx response."""
    status = response.status_code
    description = _describe(response)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    ref = f" [ref {reference}]" if reference else ""
    message = f"{method} {url} → {status}: {description or 'no description'}{ref}"
    context = {
        "method": method,
        "url": url,
        "status": status,
        "description": description,
        "reference": reference,
    }
    if status == 429:
        wait = retry_after if retry_after is not None else DEFAULT_RATE_LIMIT_WAIT
        return RateLimited(f"{message}; retry in {wait:.0f} s", retry_after=wait, **context)
    if status >= 500 or status == 408:
        if post:
            return AmbiguousError(
                f"{message}; the request may have been created", retry_after=retry_after, **context
            )
        if retry_after is not None:
            return RateLimited(f"{message}; retry in {retry_after:.0f} s", retry_after=retry_after, **context)
        return TransientError(message, **context)
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        return PermanentError(
            f"{method} {url} → {status} redirect to {location}: fix the URL in the settings{ref}", **context
        )
    return PermanentError(message, **context)


def call(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    timeout: httpx.Timeout,
    params: list[tuple[str, str]] | dict[str, str] | None = None,
    data: list[tuple[str, str]] | None = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    reference: str | None = None,
) -> httpx.Response:
    """Send one request; a 2xx response is returned, everything else raised as an ``Open311Error``."""
    post = method.upper() == "POST"
    try:
        if data is not None:
            # Encoded here: repeated keys (attribute[x][]) must keep their order, and the spec asks
            # for the charset in the content type.
            content = urlencode(data).encode("utf-8")
            headers = {**(headers or {}), "content-type": "application/x-www-form-urlencoded; charset=utf-8"}
        response = http.request(method, url, params=params, content=content, headers=headers, timeout=timeout)
    except _OUR_MISTAKE as exc:
        raise PermanentError(
            f"{method} {url}: {type(exc).__name__}: {exc}", method=method, url=url, reference=reference
        ) from exc
    except _NOT_SENT as exc:
        raise TransientError(
            f"{method} {url}: not sent ({type(exc).__name__}: {exc or 'no detail'})",
            method=method,
            url=url,
            reference=reference,
        ) from exc
    except httpx.HTTPError as exc:
        what = f"{method} {url}: {type(exc).__name__} after sending ({exc or 'no detail'})"
        if post:
            raise AmbiguousError(
                f"{what}; the request may have been created", method=method, url=url, reference=reference
            ) from exc
        raise TransientError(what, method=method, url=url, reference=reference) from exc
    if response.is_success:
        return response
    raise status_error(response, method=method, url=str(response.url), reference=reference, post=post)
