"""The Open311 client against the server on a socket: formats, caches, validation, tokens, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.ticketing.conftest import Open311Server, ticketing_settings
from ticketing.errors import (
    AmbiguousError,
    MappingError,
    PermanentError,
    RateLimited,
    ResponseError,
    TransientError,
)
from ticketing.open311 import store
from ticketing.open311.client import Open311Client, marker_for
from ticketing.open311.models import Attribute, NewRequest
from ticketing.open311.ratelimit import RateLimiter
from ticketing.settings import RateLimit


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Every request the client actually sent (an httpx event hook: real HTTP, observed)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.sent.append((request.method, request.url.path))

    def paths(self, prefix: str = "") -> list[str]:
        return [p for _, p in self.sent if p.startswith(prefix)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def http(recorder: Recorder) -> Iterator[httpx.Client]:
    with httpx.Client(event_hooks={"request": [recorder]}) as client:
        yield client


def client_for(
    open311: Open311Server, http: httpx.Client, clock: Clock | None = None, **open311_settings: object
) -> Open311Client:
    settings = ticketing_settings(open311.url, open311=open311_settings).open311
    return Open311Client(http, settings, api_key=open311.api_key, clock=clock or Clock())


def lamp_request(reference: str = "S311-test0000000001", **kw: object) -> NewRequest:
    values: dict[str, object] = {
        "service_code": "streetlight",
        "description": f"Street light out\n{marker_for(reference)}",
        "lat": 52.37,
        "long": 4.89,
        "attributes": {"pole_id": "P-1", "fault": "out"},
        "reference": reference,
    }
    values.update(kw)
    return NewRequest(**values)  # type: ignore[arg-type]


def test_auto_format_follows_discovery(
    open311: Open311Server, http: httpx.Client, recorder: Recorder
) -> None:
    client = client_for(open311, http)
    assert client.format == "json"
    open311.misbehave.xml_only = True
    xml_client = client_for(open311, http)
    assert xml_client.format == "xml"
    assert recorder.paths("/discovery") == ["/discovery.json", "/discovery.json", "/discovery.xml"]
    result = xml_client.submit(lamp_request(), in_doubt=False, since=datetime.now(UTC), now=datetime.now(UTC))
    assert result.service_request_id is not None
    (found,) = xml_client.requests([result.service_request_id])
    assert found.status == "open"
    assert all(p.endswith(".xml") for p in recorder.paths("/requests"))


def test_forced_json_against_an_xml_only_server_is_permanent(
    open311: Open311Server, http: httpx.Client
) -> None:
    open311.misbehave.xml_only = True
    client = client_for(open311, http, format="json")
    with pytest.raises(PermanentError) as info:
        client.services()
    assert info.value.status == 404 and "serves XML only" in (info.value.description or "")


def test_services_and_definitions_are_cached_until_ttl_or_changeset(
    open311: Open311Server, http: httpx.Client, recorder: Recorder
) -> None:
    clock = Clock()
    client = client_for(open311, http, clock, cache_ttl="10m")
    client.validate(lamp_request())
    client.validate(lamp_request())
    assert recorder.paths("/services") == ["/services.json", "/services/streetlight.json"]

    clock.now += 601  # past the TTL with the same changeset: discovery says the caches still hold
    client.validate(lamp_request())
    assert recorder.paths("/services") == ["/services.json", "/services/streetlight.json"]
    assert recorder.paths("/discovery") == ["/discovery.json"] * 2

    changed = [
        *store.DEFAULT_SERVICES[1:],
        store.Offering(
            "streetlight",
            "Street light out",
            attributes=[
                Attribute("pole_id", "string", True),
                Attribute("fault", "string", True),
                Attribute("photo", "string", True),
            ],
        ),
    ]
    with open311.db() as c:
        store.install(c, open311.schema, changed, datetime.now(UTC))
    clock.now += 601
    with pytest.raises(MappingError, match="attribute 'photo' of service 'streetlight' is required"):
        client.validate(lamp_request())


def test_validation_names_the_problem(open311: Open311Server, http: httpx.Client) -> None:
    client = client_for(open311, http)
    with pytest.raises(MappingError, match=r"'streetlite' is not offered by .*did you mean 'streetlight'"):
        client.validate(lamp_request(service_code="streetlite"))
    with pytest.raises(MappingError, match="attribute 'pole_id' of service 'streetlight' is required"):
        client.validate(lamp_request(attributes={"fault": "out"}))
    with pytest.raises(MappingError, match="has no location"):
        client.validate(lamp_request(lat=None, long=None))
    with pytest.raises(MappingError, match="4001 characters; the limit is 4000"):
        client.validate(lamp_request(description="x" * 4001))
    normalised = client.validate(lamp_request(attributes={"pole_id": "P-1", "fault": "On during the day"}))
    assert normalised.attributes == {"pole_id": "P-1", "fault": "day_burning"}
    # A service without metadata takes no attributes: they are dropped, not posted.
    plain = client.validate(lamp_request(service_code="sensor_fault"))
    assert plain.attributes == {}


def test_submit_and_status_keep_ids_opaque(open311: Open311Server, http: httpx.Client) -> None:
    client = client_for(open311, http, status_batch=2)
    now = datetime.now(UTC)
    ids = []
    for n in range(5):
        result = client.submit(lamp_request(f"S311-test000000000{n}"), in_doubt=False, since=now, now=now)
        assert result.service_request_id is not None and not result.reconciled
        ids.append(result.service_request_id)
    assert all(i.startswith("0000") for i in ids)
    found = client.requests(ids)
    assert sorted(r.service_request_id for r in found) == sorted(ids)  # type: ignore[type-var]
    assert client.request(ids[0]) is not None and client.request("99999999") is None


def test_status_is_asked_in_batches(open311: Open311Server, http: httpx.Client, recorder: Recorder) -> None:
    client = client_for(open311, http, status_batch=2)
    now = datetime.now(UTC)
    ids = [
        client.submit(
            lamp_request(f"S311-batch00000000{n}"), in_doubt=False, since=now, now=now
        ).service_request_id
        for n in range(5)
    ]
    recorder.sent.clear()
    client.requests([i for i in ids if i])
    assert recorder.paths("/requests") == ["/requests.json"] * 3


def test_updated_after(open311: Open311Server, http: httpx.Client) -> None:
    client = client_for(open311, http)
    now = datetime.now(UTC)
    first = client.submit(lamp_request("S311-upd0000000000a"), in_doubt=False, since=now, now=now)
    client.submit(lamp_request("S311-upd0000000000b"), in_doubt=False, since=now, now=now)
    assert first.service_request_id is not None
    open311.staff(first.service_request_id, status="closed", status_notes="Done.")
    changed = client.updated_after(now - timedelta(seconds=1))
    # Oldest change first, so a poller can page forward; the closure is the newest change.
    assert [(r.service_request_id, r.status) for r in changed][-1] == (first.service_request_id, "closed")
    assert client.updated_after(datetime.now(UTC) + timedelta(minutes=1)) == []


def test_tokens_are_exchanged(open311: Open311Server, http: httpx.Client) -> None:
    open311.misbehave.token_only = True
    open311.misbehave.token_lookups_before_ready = 2
    client = client_for(open311, http)
    now = datetime.now(UTC)
    result = client.submit(lamp_request(), in_doubt=False, since=now, now=now)
    assert result.service_request_id is None and result.token
    assert client.token(result.token) is None
    assert client.token(result.token) is None
    assert client.token(result.token) == open311.requests()[0]["service_request_id"]
    with pytest.raises(PermanentError) as info:
        client.token("no-such-token")
    assert info.value.status == 404


def test_errors_keep_their_context(open311: Open311Server, http: httpx.Client) -> None:
    client = Open311Client(http, ticketing_settings(open311.url).open311, api_key="wrong")
    with pytest.raises(PermanentError) as info:
        client.submit(
            lamp_request("S311-ctx00000000000"),
            in_doubt=False,
            since=datetime.now(UTC),
            now=datetime.now(UTC),
        )
    error = info.value
    assert (error.method, error.status, error.reference) == ("POST", 403, "S311-ctx00000000000")
    assert error.url == f"{open311.url}requests.json"
    assert error.description == "Invalid api_key received -- can't proceed with create_request."
    assert str(error) == (
        f"POST {open311.url}requests.json → 403: Invalid api_key received -- can't proceed "
        "with create_request. [ref S311-ctx00000000000]"
    )
    assert isinstance(error.__cause__, type(None))


def test_refused_connection_is_transient_even_for_post(http: httpx.Client) -> None:
    settings = ticketing_settings("http://127.0.0.1:9/", open311={"format": "json"}).open311
    client = Open311Client(http, settings, api_key="k")
    with pytest.raises(TransientError, match="not sent") as info:
        client.post_request(lamp_request())
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_garbage_answers(open311: Open311Server, http: httpx.Client) -> None:
    client = client_for(open311, http)
    client.services()
    open311.misbehave.garbage(1, scope="get")
    with pytest.raises(ResponseError, match="malformed JSON") as info:
        client.services(refresh=True)
    assert info.value.method == "GET" and info.value.status == 200
    open311.misbehave.garbage(1, scope="post")
    with pytest.raises(AmbiguousError, match="unreadable body"):
        client.post_request(client.validate(lamp_request()))
    assert len(open311.requests()) == 1


def test_ambiguous_post_is_reconciled_not_repeated(open311: Open311Server, http: httpx.Client) -> None:
    client = client_for(open311, http)
    open311.misbehave.fail_after_create(1, status=500)
    now = datetime.now(UTC)
    result = client.submit(lamp_request(), in_doubt=False, since=now, now=now)
    assert result.reconciled and result.service_request_id == open311.requests()[0]["service_request_id"]
    assert (open311.misbehave.posts_received, open311.misbehave.requests_created) == (1, 1)
    # In doubt from an earlier attempt: found before posting, nothing new is created.
    again = client.submit(lamp_request(), in_doubt=True, since=now, now=now)
    assert again.reconciled and again.service_request_id == result.service_request_id
    assert open311.misbehave.posts_received == 1


def test_reconciliation_ignores_a_marker_far_from_the_ticket(
    open311: Open311Server, http: httpx.Client
) -> None:
    client = client_for(open311, http, search_radius_m=50)
    now = datetime.now(UTC)
    client.submit(lamp_request(), in_doubt=False, since=now, now=now)
    assert client.find(lamp_request(lat=52.38), since=now - timedelta(hours=1), now=now) is None
    assert client.find(lamp_request(), since=now - timedelta(hours=1), now=now) is not None


def test_our_own_rate_limit_reschedules_instead_of_sending(
    open311: Open311Server, http: httpx.Client, recorder: Recorder
) -> None:
    clock = Clock()
    settings = ticketing_settings(
        open311.url,
        open311={
            "rate_limits": {"post_request": {"per_minute": 6}, "default": {"per_minute": 6000, "burst": 100}},
            "max_rate_wait": 0,
        },
    ).open311
    client = Open311Client(http, settings, api_key=open311.api_key, clock=clock)
    now = datetime.now(UTC)
    client.submit(lamp_request("S311-rate0000000001"), in_doubt=False, since=now, now=now)
    with pytest.raises(RateLimited, match="our own limit of 6/min for post_request") as info:
        client.submit(lamp_request("S311-rate0000000002"), in_doubt=False, since=now, now=now)
    assert info.value.retry_after == 10 and info.value.status is None
    assert recorder.paths("/requests") == ["/requests.json"]
    clock.now += 10
    client.submit(lamp_request("S311-rate0000000002"), in_doubt=False, since=now, now=now)
    assert len(open311.requests()) == 2


def test_rate_limiter_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(
        {"post_request": RateLimit(per_minute=60, burst=2), "default": RateLimit(per_minute=120)}, clock
    )
    assert limiter.reserve("post_request", 0) == 0
    assert limiter.reserve("post_request", 0) == 0
    assert limiter.reserve("post_request", 0) is None  # nothing reserved on refusal
    assert limiter.reserve("post_request", 5) == pytest.approx(1.0)
    assert limiter.reserve("post_request", 5) == pytest.approx(2.0)
    clock.now += 3
    assert limiter.reserve("post_request", 0) == 0
    assert limiter.reserve("token", 0) == 0 and limiter.reserve("token", 1) == pytest.approx(0.5)
    assert RateLimiter({}, clock).reserve("anything", 0) == 0
