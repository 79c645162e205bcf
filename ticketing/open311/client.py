"""A GeoReport v2 client that never files a ticket twice and never loses one.

It receives its ``httpx.Client`` from the caller (who owns connections and transport) and sets an
explicit timeout from the settings on every call. Calls go through a per-endpoint rate limiter;
HTTP failures become ticketing errors in one adapter (``http.call``).

Duplicates: every request carries its ticket's reference marker in the description (the only free
text GET gives back). After an ambiguous POST (timeout, 5xx) ``submit`` first searches recent
requests of that service for the marker, near the ticket's location, and only reports failure —
so the outbox posts again later — when none is found; an attempt that follows an ambiguous one
(``in_doubt``) searches before it posts.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import quote, urljoin

import httpx
from pydantic import SecretStr

from ticketing.errors import (
    AmbiguousError,
    MappingError,
    Open311Error,
    PermanentError,
    RateLimited,
    ResponseError,
)
from ticketing.grouping import distance_m
from ticketing.open311.http import call, timeout_of
from ticketing.open311.models import (
    DESCRIPTION_LIMIT,
    Discovery,
    NewRequest,
    PostResult,
    Service,
    ServiceDefinition,
    ServiceRequest,
    validate_attributes,
)
from ticketing.open311.parse import (
    parse_discovery,
    parse_post,
    parse_requests,
    parse_service_definition,
    parse_services,
    parse_tokens,
)
from ticketing.open311.ratelimit import RateLimiter
from ticketing.settings import Open311Settings

__all__ = ["MARKER_PREFIX", "MAX_SEARCH_PAGES", "Open311Client", "format_datetime", "marker_for"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What precedes a ticket's reference in the description; searched for verbatim.
MARKER_PREFIX = "sense311-ref:"
#: Pages of GET requests a reconciliation search reads at most; beyond that the window is too busy
#: to search and the caller retries later.
MAX_SEARCH_PAGES = 20
#: The spec caps a GET requests date range at 90 days.
MAX_RANGE = timedelta(days=90)
#: Search a little past now: the server's clock may run ahead of ours.
CLOCK_SKEW = timedelta(minutes=15)


def marker_for(reference: str) -> str:
    return f"{MARKER_PREFIX}{reference}"


def format_datetime(value: datetime) -> str:
    """W3C datetime in UTC with ``Z``, as the spec's examples write it."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Open311Client:
    """Discovery, services, definitions, POST with reconciliation, tokens and status polling.

    ``clock`` (monotonic seconds) drives the service caches; ``sleep`` the short waits the rate
    limiter allows (``max_rate_wait``); both are injectable for tests.
    """

    def __init__(
        self,
        http: httpx.Client,
        settings: Open311Settings,
        *,
        api_key: SecretStr | str | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._http = http
        self._settings = settings
        key = api_key if api_key is not None else settings.api_key
        self._api_key = key.get_secret_value() if isinstance(key, SecretStr) else key
        self._timeout = timeout_of(
            settings.connect_timeout, settings.read_timeout, settings.write_timeout, settings.pool_timeout
        )
        self._limiter = limiter or RateLimiter(settings.rate_limits, clock)
        self._clock = clock
        self._sleep = sleep
        self._format: str | None = None if settings.format == "auto" else settings.format
        self._changeset: str | None = None
        self._checked_at: float | None = None
        self._discovery: Discovery | None = None
        self._services: tuple[float, list[Service]] | None = None
        self._definitions: dict[str, tuple[float, ServiceDefinition]] = {}

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._settings.url

    def _url(self, path: str) -> str:
        return urljoin(self._settings.url, path)

    def _params(self, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        params = list(extra or [])
        if self._settings.jurisdiction_id:
            params.append(("jurisdiction_id", self._settings.jurisdiction_id))
        return params

    def _throttle(self, endpoint: str, method: str, url: str, reference: str | None = None) -> None:
        wait = self._limiter.reserve(endpoint, self._settings.max_rate_wait)
        if wait is None:
            limit = self._limiter.limit_of(endpoint)
            per_minute = limit.per_minute if limit else 0
            raise RateLimited(
                f"{method} {url}: our own limit of {per_minute:g}/min for {endpoint} would make this call "
                f"wait more than {self._settings.max_rate_wait:g} s; rescheduled",
                method=method,
                url=url,
                reference=reference,
                retry_after=60.0 / per_minute if per_minute else self._settings.max_rate_wait,
            )
        if wait > 0:
            self._sleep(wait)

    def _get(
        self,
        endpoint: str,
        path: str,
        parse: Callable[[bytes, str | None], T],
        params: list[tuple[str, str]] | None = None,
    ) -> T:
        url = self._url(path)
        self._throttle(endpoint, "GET", url)
        response = call(self._http, "GET", url, params=self._params(params), timeout=self._timeout)
        try:
            return parse(response.content, response.headers.get("content-type"))
        except ResponseError as exc:
            raise ResponseError(
                f"GET {response.url}: {exc}",
                method="GET",
                url=str(response.url),
                status=response.status_code,
                description=exc.description,
            ) from exc

    @property
    def format(self) -> str:
        """'json' or 'xml': the setting, else what discovery lists (XML, the mandatory one, when the
        server has no usable discovery). A transient discovery failure is raised, not guessed around."""
        if self._format is None:
            formats: list[str] = []
            try:
                formats = self.discovery().formats_for(self._settings.url)
            except (PermanentError, ResponseError) as exc:
                log.warning(
                    "Open311 discovery at %s is unusable (%s); using XML, which every server speaks",
                    self._settings.url,
                    exc,
                )
            self._format = "json" if "json" in formats else "xml"
        return self._format

    # -- discovery and services --------------------------------------------------------------------

    def discovery(self, *, refresh: bool = False) -> Discovery:
        """The discovery document (``discovery.json``, else ``discovery.xml``)."""
        if self._discovery is not None and not refresh:
            return self._discovery
        base = self._settings.discovery_url or self._url("discovery.json")
        if base.endswith((".json", ".xml")):
            stem = base.rsplit(".", 1)[0]
        else:
            stem = urljoin(base if base.endswith("/") else base + "/", "discovery")
        order = [self._format] if self._format else ["json", "xml"]
        last: Open311Error | None = None
        for fmt in order:
            url = f"{stem}.{fmt}"
            try:
                self._throttle("discovery", "GET", url)
                response = call(self._http, "GET", url, params=self._params(), timeout=self._timeout)
                self._discovery = parse_discovery(response.content, response.headers.get("content-type"))
                return self._discovery
            except (PermanentError, ResponseError) as exc:
                last = exc
        assert last is not None
        raise last

    def _revalidate(self) -> None:
        """At most every cache_ttl, ask discovery: the same changeset renews the service caches, a
        new one empties them (without discovery they simply expire)."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._settings.cache_ttl.total_seconds():
            return
        self._checked_at = now
        try:
            changeset = self.discovery(refresh=True).changeset
        except Open311Error as exc:
            log.info("Open311 discovery unavailable (%s); service caches kept until they expire", exc)
            return
        if changeset is not None and changeset == self._changeset:
            # The changeset is the spec's signal that services and definitions are unchanged.
            if self._services is not None:
                self._services = (now, self._services[1])
            self._definitions = {code: (now, d) for code, (_, d) in self._definitions.items()}
            return
        if self._changeset is not None:
            log.info(
                "Open311 changeset %s → %s: services and definitions refreshed", self._changeset, changeset
            )
        self._services = None
        self._definitions.clear()
        self._changeset = changeset

    def _fresh(self, stamp: float) -> bool:
        return self._clock() - stamp < self._settings.cache_ttl.total_seconds()

    def services(self, *, refresh: bool = False) -> list[Service]:
        self._revalidate()
        if refresh or self._services is None or not self._fresh(self._services[0]):
            found = self._get("services", f"services.{self.format}", parse_services)
            self._services = (self._clock(), found)
        return self._services[1]

    def service(self, service_code: str) -> Service:
        services = self.services()
        for s in services:
            if s.service_code == service_code:
                return s
        codes = [s.service_code for s in services]
        close = difflib.get_close_matches(service_code, codes, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MappingError(
            f"service_code {service_code!r} is not offered by {self._settings.url}; {hint}"
            f"offered: {', '.join(codes) or 'none'}"
        )

    def service_definition(self, service_code: str) -> ServiceDefinition:
        self._revalidate()
        cached = self._definitions.get(service_code)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        path = f"services/{quote(service_code, safe='')}.{self.format}"
        definition = self._get("service_definition", path, parse_service_definition)
        self._definitions[service_code] = (self._clock(), definition)
        return definition

    def validate(self, request: NewRequest) -> NewRequest:
        """The request with its attributes checked and normalised against the service definition."""
        service = self.service(request.service_code)
        if len(request.description) > DESCRIPTION_LIMIT:
            raise MappingError(
                f"description of {request.reference or 'a request'} has {len(request.description)} "
                "characters; "
                f"the limit is {DESCRIPTION_LIMIT}"
            )
        if request.lat is None and not request.address_string and not request.address_id:
            raise MappingError(
                f"request {request.reference or ''} has no location: give the sensor lat/lon or an "
                "address in the registry"
            )
        if not service.metadata:
            if request.attributes:
                log.info(
                    "service %s takes no attributes; %s dropped",
                    service.service_code,
                    ", ".join(request.attributes),
                )
            return _replace_attributes(request, {})
        definition = self.service_definition(request.service_code)
        normalised, problems = validate_attributes(definition, request.attributes)
        if problems:
            raise MappingError(f"{request.reference or 'request'}: " + "; ".join(problems))
        return _replace_attributes(request, normalised)

    # -- requests ----------------------------------------------------------------------------------

    def post_request(self, request: NewRequest) -> PostResult:
        """One POST, no reconciliation. Ambiguous outcomes raise ``AmbiguousError``."""
        url = self._url(f"requests.{self.format}")
        self._throttle("post_request", "POST", url, request.reference)
        form = request.form(api_key=self._api_key, jurisdiction_id=self._settings.jurisdiction_id)
        response = call(
            self._http, "POST", url, data=form, timeout=self._timeout, reference=request.reference
        )
        try:
            return parse_post(response.content, response.headers.get("content-type"))
        except ResponseError as exc:
            # 2xx with a body we cannot read: the request probably exists; treat it as unknown.
            raise AmbiguousError(
                f"POST {url} → {response.status_code} with an unreadable body ({exc.description}); "
                f"the request may have been created [ref {request.reference}]",
                method="POST",
                url=url,
                status=response.status_code,
                description=exc.description,
                reference=request.reference,
            ) from exc

    def find(self, request: NewRequest, *, since: datetime, now: datetime) -> ServiceRequest | None:
        """A request of this service, filed since ``since``, whose description carries the marker."""
        if not request.reference:
            return None
        marker = marker_for(request.reference)
        until = now + CLOCK_SKEW
        since = max(since, until - MAX_RANGE + timedelta(minutes=1))
        size = self._settings.page_size
        params = [
            ("service_code", request.service_code),
            ("start_date", format_datetime(since)),
            ("end_date", format_datetime(until)),
        ]
        first_id: str | None = None
        for page in range(1, MAX_SEARCH_PAGES + 1):
            found = self._get(
                "get_requests",
                f"requests.{self.format}",
                parse_requests,
                [*params, ("page", str(page)), ("page_size", str(size))],
            )
            for r in found:
                if self._matches(r, request, marker):
                    return r
            if len(found) < size or not found:
                return None
            if page > 1 and found[0].service_request_id == first_id:
                return None  # the server ignores paging: we have seen everything it will show
            first_id = first_id or found[0].service_request_id
        raise RateLimited(
            f"reconciliation of {request.reference}: more than {MAX_SEARCH_PAGES} pages of "
            f"{request.service_code} requests since {format_datetime(since)}; retrying later",
            method="GET",
            url=self._url(f"requests.{self.format}"),
            reference=request.reference,
            retry_after=self._settings.cache_ttl.total_seconds(),
        )

    def _matches(self, found: ServiceRequest, request: NewRequest, marker: str) -> bool:
        if marker not in (found.description or ""):
            return False
        if found.service_code is not None and found.service_code != request.service_code:
            return False
        if None not in (found.lat, found.long, request.lat, request.long):
            assert found.lat is not None and found.long is not None
            assert request.lat is not None and request.long is not None
            if distance_m(found.lat, found.long, request.lat, request.long) > self._settings.search_radius_m:
                log.warning(
                    "request %s carries marker %s but lies too far from the ticket; not taken as ours",
                    found.service_request_id,
                    marker,
                )
                return False
        return True

    def submit(self, request: NewRequest, *, in_doubt: bool, since: datetime, now: datetime) -> PostResult:
        """Validate, then POST exactly once from the city's point of view.

        ``in_doubt``: an earlier attempt may have reached the server; search before posting.
        ``since``: when the first attempt could have happened (the ticket's creation).
        """
        request = self.validate(request)
        search_from = since - self._settings.search_slack
        if in_doubt:
            found = self.find(request, since=search_from, now=now)
            if found is not None:
                log.info(
                    "%s was already filed as request %s; not posting again",
                    request.reference,
                    found.service_request_id,
                )
                return PostResult(found.service_request_id, None, found.service_notice, reconciled=True)
        try:
            return self.post_request(request)
        except AmbiguousError as exc:
            if exc.retry_after is not None:
                raise  # the server asked for time; the next attempt searches first
            try:
                found = self.find(request, since=search_from, now=now)
            except Open311Error as search_error:
                log.info("reconciliation search for %s failed: %s", request.reference, search_error)
                raise exc from exc.__cause__  # still ambiguous: the next attempt searches first
            if found is None:
                raise
            log.info(
                "ambiguous POST for %s had created request %s", request.reference, found.service_request_id
            )
            return PostResult(found.service_request_id, None, found.service_notice, reconciled=True)

    def token(self, token: str) -> str | None:
        """The service_request_id a token stands for, or None while the server has not assigned one."""
        return self._get("token", f"tokens/{quote(token, safe='')}.{self.format}", parse_tokens)

    def request(self, service_request_id: str) -> ServiceRequest | None:
        try:
            found = self._get(
                "get_request", f"requests/{quote(service_request_id, safe='')}.{self.format}", parse_requests
            )
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        return found[0] if found else None

    def requests(self, ids: list[str]) -> list[ServiceRequest]:
        """Status of many requests, ``status_batch`` ids per call (``service_request_id=a,b,c``)."""
        out: list[ServiceRequest] = []
        listable = [i for i in ids if "," not in i]
        for start in range(0, len(listable), self._settings.status_batch):
            chunk = listable[start : start + self._settings.status_batch]
            out += self._get(
                "get_requests",
                f"requests.{self.format}",
                parse_requests,
                [("service_request_id", ",".join(chunk))],
            )
        # An id with a comma cannot go in a list; ask for it alone.
        for odd in (i for i in ids if "," in i):
            found = self.request(odd)
            if found is not None:
                out.append(found)
        return out

    def updated_after(self, after: datetime) -> list[ServiceRequest]:
        """Requests changed after ``after`` (the ``updated_after`` extension), all pages."""
        out: list[ServiceRequest] = []
        size = self._settings.page_size
        first_id: str | None = None
        for page in range(1, MAX_SEARCH_PAGES + 1):
            found = self._get(
                "get_requests",
                f"requests.{self.format}",
                parse_requests,
                [("updated_after", format_datetime(after)), ("page", str(page)), ("page_size", str(size))],
            )
            if page > 1 and found and found[0].service_request_id == first_id:
                break
            out += found
            if len(found) < size:
                break
            first_id = first_id or (found[0].service_request_id if found else None)
        return out


def _replace_attributes(request: NewRequest, attributes: dict[str, str | list[str]]) -> NewRequest:
    return replace(request, attributes=attributes)
