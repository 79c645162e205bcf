"""Response parsing: the spec's own examples in both formats, and garbage that must not crash."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketing.errors import ResponseError
from ticketing.open311.http import MAX_RETRY_AFTER, parse_retry_after
from ticketing.open311.parse import (
    parse_discovery,
    parse_errors,
    parse_post,
    parse_requests,
    parse_service_definition,
    parse_services,
    parse_tokens,
)

SPEC = Path(__file__).parent / "spec"
FORMATS = ("xml", "json")


def example(name: str, fmt: str) -> bytes:
    return (SPEC / f"{name}.{fmt}").read_bytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_services_example(fmt: str) -> None:
    services = parse_services(example("services", fmt))
    assert [s.service_code for s in services] == ["001", "002", "003"]
    first = services[0]
    assert (first.service_name, first.metadata, first.type, first.group) == (
        "Cans left out 24x7",
        True,
        "realtime",
        "sanitation",
    )
    assert first.keywords == "lorem, ipsum, dolor"


@pytest.mark.parametrize("fmt", FORMATS)
def test_service_definition_example(fmt: str) -> None:
    definition = parse_service_definition(example("service_definition", fmt))
    assert definition.service_code == "DMV66"
    (attribute,) = definition.attributes
    assert (attribute.code, attribute.datatype, attribute.required, attribute.variable, attribute.order) == (
        "WHISHETN",
        "singlevaluelist",
        True,
        True,
        1,
    )
    assert attribute.datatype_description is None
    assert [(v.key, v.name) for v in attribute.values] == [("123", "Ford"), ("124", "Chrysler")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_post_response_example(fmt: str) -> None:
    result = parse_post(example("post_response", fmt))
    assert result.service_request_id == "293944"
    assert result.token is None and result.account_id is None
    assert result.service_notice is not None and result.service_notice.startswith("The City will inspect")


@pytest.mark.parametrize("fmt", FORMATS)
def test_token_example(fmt: str) -> None:
    assert parse_tokens(example("token", fmt)) == "638344"


@pytest.mark.parametrize("fmt", FORMATS)
def test_requests_example(fmt: str) -> None:
    closed, still_open = parse_requests(example("requests", fmt))
    assert closed.service_request_id == "638344"
    assert (closed.status, closed.status_notes, closed.service_code) == (
        "closed",
        "Duplicate request.",
        "006",
    )
    assert (closed.address_id, closed.zipcode) == ("545483", "94122")
    assert closed.lat == pytest.approx(37.762221815) and closed.long == pytest.approx(-122.4651145)
    pacific = timezone(timedelta(hours=-8))
    assert closed.requested_datetime == datetime(2010, 4, 14, 6, 37, 38, tzinfo=pacific)
    assert closed.expected_datetime == datetime(2010, 4, 15, 6, 37, 38, tzinfo=pacific)
    assert closed.description is None and closed.agency_responsible is None
    assert still_open.status == "open" and still_open.status_notes is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_errors_example(fmt: str) -> None:
    assert parse_errors(example("errors", fmt)) == [
        ("403", "Invalid api_key received -- can't proceed with create_request.")
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_discovery_example(fmt: str) -> None:
    discovery = parse_discovery(example("discovery", fmt))
    assert discovery.changeset == "2011-02-03 14:18"
    assert len(discovery.endpoints) == 3
    assert discovery.formats_for("http://open311.mycity.gov/test/v2") == ["xml", "json"]
    assert discovery.formats_for("http://open311.mycity.gov/v2") == ["xml"]


def test_xml_with_the_spec_namespace_reads_the_same() -> None:
    body = example("token", "xml").replace(
        b"<service_requests>", b'<service_requests xmlns="http://wiki.open311.org/GeoReport_v2">'
    )
    assert parse_tokens(body) == "638344"


def test_a_single_request_element_is_still_a_list() -> None:
    body = b"<service_requests><request><service_request_id>0042</service_request_id></request>"
    body += b"</service_requests>"
    (only,) = parse_requests(body)
    assert only.service_request_id == "0042"


def test_blackbox_post_answers_neither_id_nor_token() -> None:
    result = parse_post(b'[{"service_notice": "Thanks", "account_id": null}]')
    assert (result.service_request_id, result.token, result.service_notice) == (None, None, "Thanks")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "expected a <service_requests> document, got <html>"),
        (b"Service temporarily unavailable", "neither XML nor JSON: 'Service temporarily unavailable'"),
        (b'[{"service_request_id": "0001", "status"', "malformed JSON"),
        (b'{"error": "nope"}', "has no service_request_id"),
        (b"[1, 2]", "item 0 of service_requests is str"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><service_requests/>', "DOCTYPE"),
        (b"[{}]", "has no service_request_id"),
    ],
)
def test_garbage_is_a_clear_response_error(body: bytes, message: str) -> None:
    with pytest.raises(ResponseError, match=message):
        parse_requests(body)


def test_post_without_id_or_token_is_an_error() -> None:
    with pytest.raises(ResponseError, match="neither service_request_id nor token"):
        parse_post(b'[{"foo": "bar"}]')
    with pytest.raises(ResponseError, match="an empty list"):
        parse_post(b"[]")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_with_response_error(body: bytes) -> None:
    for parse in (
        parse_requests,
        parse_services,
        parse_post,
        parse_tokens,
        parse_service_definition,
        parse_discovery,
    ):
        with contextlib.suppress(ResponseError):
            parse(body)
    parse_errors(body)  # never raises


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["service_request_id", "status", "lat", "attributes", "values", "code", "x"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_any_json_shape_parses_or_fails_with_response_error(value: object) -> None:
    import json

    body = json.dumps(value).encode()
    for parse in (
        parse_requests,
        parse_services,
        parse_post,
        parse_tokens,
        parse_service_definition,
        parse_discovery,
    ):
        with contextlib.suppress(ResponseError):
            parse(body)


def test_retry_after_forms() -> None:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Sat, 01 Jun 2024 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sat, 01 Jun 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("999999999", now) == MAX_RETRY_AFTER
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
