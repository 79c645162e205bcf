"""The Open311 server against the spec: its examples, fields, formats and error cases, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.ticketing.conftest import Open311Server
from ticketing.open311 import store
from ticketing.open311.models import Attribute, AttributeValue
from ticketing.open311.parse import (
    parse_discovery,
    parse_errors,
    parse_post,
    parse_requests,
    parse_service_definition,
    parse_services,
)
from ticketing.open311.server import ServerThread, create_app
from ticketing.settings import Open311ServerSettings

SPEC = Path(__file__).parent / "spec"
LOCATION = {"lat": "52.37", "long": "4.89"}


@pytest.fixture
def http(open311: Open311Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open311.url, timeout=5.0) as client:
        yield client


def post(http: httpx.Client, open311: Open311Server, fmt: str = "json", **form: str) -> httpx.Response:
    data = {
        "api_key": open311.api_key,
        "service_code": "sensor_fault",
        **LOCATION,
        "description": "x",
        **form,
    }
    return http.post(f"requests.{fmt}", data={k: v for k, v in data.items() if v is not None})


def errors_of(response: httpx.Response) -> list[tuple[str | None, str]]:
    return parse_errors(response.content, response.headers["content-type"])


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_discovery(http: httpx.Client, open311: Open311Server, fmt: str) -> None:
    response = http.get(f"discovery.{fmt}")
    assert response.status_code == 200
    assert response.headers["content-type"] == (
        "application/json; charset=utf-8" if fmt == "json" else "text/xml; charset=utf-8"
    )
    discovery = parse_discovery(response.content)
    (endpoint,) = discovery.endpoints
    assert endpoint.specification == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint.url == open311.url.rstrip("/")
    assert endpoint.formats == ["text/xml", "application/json"]
    assert discovery.changeset and discovery.contact and discovery.key_service


def test_xml_documents_carry_the_declaration(http: httpx.Client) -> None:
    body = http.get("services.xml").text
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?><services><service><service_code>')


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_services_and_definitions(http: httpx.Client, fmt: str) -> None:
    services = {s.service_code: s for s in parse_services(http.get(f"services.{fmt}").content)}
    assert set(services) == {o.service_code for o in store.DEFAULT_SERVICES}
    assert services["streetlight"].metadata is True and services["streetlight"].type == "realtime"
    assert services["graffiti"].type == "batch" and services["graffiti"].metadata is False
    definition = parse_service_definition(http.get(f"services/streetlight.{fmt}").content)
    assert [a.code for a in definition.attributes] == ["pole_id", "fault", "lamps"]
    fault = definition.attributes[1]
    assert fault.datatype == "singlevaluelist" and fault.required
    assert [v.key for v in fault.values] == ["out", "day_burning", "flicker"]
    missing = http.get(f"services/nope.{fmt}")
    assert missing.status_code == 404
    assert errors_of(missing) == [("404", "service_code 'nope' was not found")]
    assert http.get(f"services/sensor_fault.{fmt}").status_code == 404  # metadata false: no definition


def test_json_identifiers_are_strings(http: httpx.Client, open311: Open311Server) -> None:
    created = post(http, open311).json()
    assert isinstance(created[0]["service_request_id"], str) and created[0]["service_request_id"].startswith(
        "0"
    )
    (item,) = http.get(f"requests/{created[0]['service_request_id']}.json").json()
    assert isinstance(item["service_request_id"], str) and isinstance(item["lat"], float)
    assert list(item) == list(store.REQUEST_COLUMNS)


def test_the_spec_example_post(open311: Open311Server, http: httpx.Client, database_url: str) -> None:
    # The spec's POST example names service 001 with attributes WHISPAWN and WHISDORN.
    example = store.Offering(
        "001",
        "Cans left out 24x7",
        attributes=[
            Attribute("WHISPAWN", "string", True, order=1),
            Attribute("WHISDORN", "string", False, order=2),
        ],
    )
    with open311.db() as c:
        store.install(c, open311.schema, [example], datetime.now(UTC))
    body = (
        (SPEC / "post_request.txt").read_text().strip().replace("api_key=xyz", f"api_key={open311.api_key}")
    )
    response = http.post(
        "requests.xml",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    result = parse_post(response.content)
    assert result.service_request_id and result.account_id == "123456"
    stored = next(r for r in open311.requests() if r["service_request_id"] == result.service_request_id)
    assert stored["attributes"] == {"WHISPAWN": "123456", "WHISDORN": "COISL001"}
    assert (stored["email"], stored["device_id"], stored["first_name"]) == (
        "smit333@sfgov.edu",
        "tt222111",
        "john",
    )
    assert stored["description"] == "A large sinkhole is destroying the street"
    # GET never returns personal fields.
    item = http.get(f"requests/{result.service_request_id}.json").json()[0]
    assert not {"email", "device_id", "first_name", "last_name", "phone", "account_id"} & set(item)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_api_key_errors_are_403_in_the_spec_format(
    http: httpx.Client, open311: Open311Server, fmt: str
) -> None:
    missing = post(http, open311, fmt, api_key=None)
    assert missing.status_code == 403
    assert errors_of(missing) == [("403", "api_key was not provided")]
    wrong = post(http, open311, fmt, api_key="not-a-key")
    assert wrong.status_code == 403
    assert errors_of(wrong) == [("403", "Invalid api_key received -- can't proceed with create_request.")]
    if fmt == "xml":
        assert wrong.text.startswith('<?xml version="1.0" encoding="UTF-8"?><errors><error><code>403</code>')
    else:
        assert wrong.json() == [
            {"code": 403, "description": "Invalid api_key received -- can't proceed with create_request."}
        ]


def test_bearer_authorization_is_accepted(http: httpx.Client, open311: Open311Server) -> None:
    response = http.post(
        "requests.json",
        data={"service_code": "sensor_fault", **LOCATION},
        headers={"authorization": f"Bearer {open311.api_key}"},
    )
    assert response.status_code == 200


def test_keys_are_stored_hashed(open311: Open311Server) -> None:
    with open311.db() as c:
        stored = [row[0] for row in c.execute("SELECT key_hash FROM api_keys").fetchall()]
    assert open311.api_key not in stored and store.hash_key(open311.api_key) in stored


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"service_code": ""}, 400, "service_code was not provided"),
        ({"service_code": "nope"}, 404, "service_code 'nope' was not found"),
        ({"lat": None, "long": None}, 400, "a location is required"),
        ({"long": None}, 400, "lat and long must be sent together"),
        ({"lat": "north"}, 400, "lat/long must be numbers"),
        ({"lat": "95"}, 400, "outside WGS84 bounds"),
        ({"description": "x" * 4001}, 400, "description has 4001 characters; the limit is 4000"),
        ({"description": "<script>alert(1)</script>"}, 400, "may not contain HTML"),
        ({"service_code": "streetlight"}, 400, "attribute 'pole_id' of service 'streetlight' is required"),
        (
            {"service_code": "streetlight", "attribute[pole_id]": "P1", "attribute[fault]": "smoke"},
            400,
            "'smoke' is not one of its values (out, day_burning, flicker)",
        ),
        (
            {
                "service_code": "streetlight",
                "attribute[pole_id]": "P1",
                "attribute[fault]": "out",
                "attribute[lamps]": "many",
            },
            400,
            "expected a number, got 'many'",
        ),
        (
            {
                "service_code": "streetlight",
                "attribute[pole_id]": "P1",
                "attribute[fault]": "out",
                "attribute[colour]": "red",
            },
            400,
            "attribute 'colour' is not defined",
        ),
    ],
)
def test_post_errors(
    http: httpx.Client, open311: Open311Server, form: dict[str, str | None], status: int, message: str
) -> None:
    response = post(http, open311, **form)  # type: ignore[arg-type]
    assert response.status_code == status
    (error,) = errors_of(response)
    assert message in error[1]
    assert open311.requests() == []


def test_post_with_attributes_and_address_only(http: httpx.Client, open311: Open311Server) -> None:
    response = post(
        http,
        open311,
        service_code="streetlight",
        lat=None,
        long=None,
        address_string="Dam 1",
        **{"attribute[pole_id]": "P1", "attribute[fault]": "Light out"},
    )
    assert response.status_code == 200, response.text
    (stored,) = open311.requests()
    assert stored["attributes"] == {"pole_id": "P1", "fault": "out"}
    assert stored["address"] == "Dam 1" and stored["lat"] is None


def test_form_encoding_is_required(http: httpx.Client, open311: Open311Server) -> None:
    response = http.post("requests.json", json={"api_key": open311.api_key})
    assert response.status_code == 400
    assert "application/x-www-form-urlencoded" in errors_of(response)[0][1]


def test_get_requests_filters_and_limits(http: httpx.Client, open311: Open311Server) -> None:
    ids = [post(http, open311).json()[0]["service_request_id"] for _ in range(5)]
    open311.staff(ids[0], status="closed", status_notes="Fixed.")

    everything = parse_requests(http.get("requests.json").content)
    assert [r.service_request_id for r in everything] == ids[::-1]
    assert [
        r.service_request_id for r in parse_requests(http.get("requests.xml?status=closed").content)
    ] == ids[:1]
    listed = http.get(
        "requests.json", params={"service_request_id": f"{ids[1]},{ids[3]}", "status": "closed"}
    )
    assert sorted(r["service_request_id"] for r in listed.json()) == [
        ids[1],
        ids[3],
    ]  # the list overrides status
    page = http.get("requests.json", params={"page": "2", "page_size": "2"}).json()
    assert [r["service_request_id"] for r in page] == [ids[2], ids[1]]
    assert http.get("requests.json", params={"service_code": "streetlight"}).json() == []

    far = datetime.now(UTC) + timedelta(days=30)
    assert http.get("requests.json", params={"start_date": far.isoformat()}).json() == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "pending"}, "status 'pending' is not one of: open, closed"),
        (
            {"start_date": "2010-01-01T00:00:00Z", "end_date": "2010-06-01T00:00:00Z"},
            "spans 151 days; the limit is 90",
        ),
        ({"start_date": "yesterday"}, "start_date 'yesterday' is not a W3C datetime"),
        ({"start_date": "2010-02-01T00:00:00Z", "end_date": "2010-01-01T00:00:00Z"}, "end_date lies before"),
        ({"page_size": "5000"}, "page_size must be between 1 and 1000"),
        ({"page": "first"}, "page must be a whole number"),
    ],
)
def test_get_requests_errors(http: httpx.Client, params: dict[str, str], message: str) -> None:
    response = http.get("requests.json", params=params)
    assert response.status_code == 400
    assert message in errors_of(response)[0][1]


def test_updated_after_and_extensions(http: httpx.Client, open311: Open311Server) -> None:
    first = post(http, open311).json()[0]["service_request_id"]
    second = post(http, open311).json()[0]["service_request_id"]
    mark = datetime.now(UTC)
    open311.staff(second, duplicate_of=first)
    changed = http.get(
        "requests.json", params={"updated_after": mark.isoformat(), "extensions": "true"}
    ).json()
    assert [r["service_request_id"] for r in changed] == [second]
    item = changed[0]
    assert item["status"] == "closed" and item["status_notes"] == f"Duplicate request. See request {first}."
    assert item["parent_service_request_id"] == first
    assert [n["status"] for n in item["notes"]] == ["open", "closed"]
    single = http.get(f"requests/{second}.xml", params={"extensions": "true"})
    assert b"<parent_service_request_id>" in single.content and b"<notes><note>" in single.content


def test_get_one_request(http: httpx.Client, open311: Open311Server) -> None:
    created = post(http, open311).json()[0]["service_request_id"]
    (found,) = parse_requests(http.get(f"requests/{created}.xml").content)
    assert (
        found.service_request_id == created
        and found.status == "open"
        and found.service_code == "sensor_fault"
    )
    assert found.service_name == "City sensor fault" and found.requested_datetime is not None
    missing = http.get("requests/99999999.json")
    assert missing.status_code == 404
    assert errors_of(missing) == [("404", "service_request_id '99999999' was not found")]


def test_tokens_for_batch_services(http: httpx.Client, open311: Open311Server) -> None:
    open311.misbehave.token_lookups_before_ready = 1
    created = post(http, open311, service_code="graffiti").json()[0]
    assert set(created) >= {"token"} and "service_request_id" not in created
    token = created["token"]
    pending = http.get(f"tokens/{token}.json").json()
    assert pending == [{"service_request_id": None, "token": token}]
    ready = http.get(f"tokens/{token}.xml")
    assert f"<token>{token}</token>".encode() in ready.content
    assert b"<service_request_id>0" in ready.content
    assert http.get("tokens/unknown.json").status_code == 404


def test_unknown_formats_and_paths(http: httpx.Client) -> None:
    response = http.get("services.yaml")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/xml")
    assert "format 'yaml' is not served" in errors_of(response)[0][1]
    nowhere = http.get("nowhere.json")
    assert nowhere.status_code == 404 and nowhere.json()[0]["code"] == 404


def test_staff_endpoint_needs_a_staff_key(http: httpx.Client, open311: Open311Server) -> None:
    created = post(http, open311).json()[0]["service_request_id"]
    refused = http.post(
        f"staff/requests/{created}.json", data={"api_key": open311.api_key, "status": "closed"}
    )
    assert refused.status_code == 403
    bad = http.post(f"staff/requests/{created}.json", data={"api_key": open311.staff_key, "status": "done"})
    assert bad.status_code == 400 and "status must be open or closed" in errors_of(bad)[0][1]
    missing = http.post("staff/requests/404.json", data={"api_key": open311.staff_key, "status": "closed"})
    assert missing.status_code == 404
    closed = open311.staff(
        created, status="closed", status_notes="Sensor replaced.", agency_responsible="Public Works"
    ).json()[0]
    assert (closed["status"], closed["status_notes"], closed["agency_responsible"]) == (
        "closed",
        "Sensor replaced.",
        "Public Works",
    )


def test_misbehaviour_xml_only(http: httpx.Client, open311: Open311Server) -> None:
    open311.misbehave.xml_only = True
    assert http.get("services.json").status_code == 404
    assert http.get("services.xml").status_code == 200
    discovery = parse_discovery(http.get("discovery.xml").content)
    assert discovery.endpoints[0].formats == ["text/xml"]


def test_misbehaviour_faults_fire_exactly_as_armed(http: httpx.Client, open311: Open311Server) -> None:
    m = open311.misbehave
    m.rate_limit(1, retry_after=7, scope="post")
    limited = post(http, open311)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    m.fail_before_create(1, status=503, retry_after=30)
    unavailable = post(http, open311)
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "30"
    assert open311.requests() == []
    m.fail_after_create(1, status=502)
    assert post(http, open311).status_code == 502
    assert len(open311.requests()) == 1
    m.garbage(1)
    cut = post(http, open311)
    assert cut.status_code == 200 and not cut.text.endswith("]")
    assert post(http, open311).status_code == 200
    assert (m.posts_received, m.requests_created, m.armed()) == (
        5,
        3,
        {"rate_limit": 0, "before_create": 0, "after_create": 0, "garbage": 0},
    )


def test_jurisdictions(database_url: str, server_schema: str) -> None:
    settings = Open311ServerSettings(jurisdictions=["north.example.org", "south.example.org"])
    with (
        ServerThread(create_app(database_url, server_schema, settings=settings)) as thread,
        httpx.Client(base_url=thread.url, timeout=5.0) as http,
    ):
        missing = http.get("services.json")
        assert (
            missing.status_code == 400
            and "jurisdiction_id was not provided" in missing.json()[0]["description"]
        )
        unknown = http.get("services.json", params={"jurisdiction_id": "east.example.org"})
        assert unknown.status_code == 404
        assert http.get("services.json", params={"jurisdiction_id": "north.example.org"}).status_code == 200


def test_catalogue_changes_move_the_changeset(http: httpx.Client, open311: Open311Server) -> None:
    before = http.get("discovery.json").json()["changeset"]
    extra = store.Offering(
        "pothole",
        "Pothole",
        attributes=[Attribute("depth", "singlevaluelist", True, values=[AttributeValue("deep", "Deep")])],
    )
    with open311.db() as c:
        store.install(c, open311.schema, [*store.DEFAULT_SERVICES, extra], datetime.now(UTC))
        store.install(c, open311.schema, [*store.DEFAULT_SERVICES, extra], datetime.now(UTC))
    after = http.get("discovery.json").json()["changeset"]
    assert after != before
    assert "pothole" in json.dumps(http.get("services.json").json())
