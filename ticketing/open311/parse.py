"""Reading GeoReport v2 responses, XML or JSON, into the typed values of ``models``.

Both formats are first turned into the same plain structure (the spec's JSON is a mapping of its
XML, the "Spark convention"), then one builder per resource reads it. Anything unexpected — not
XML or JSON, a list where an object belongs, a request without its id — is a ``ResponseError``
naming the resource, the element and what was found; nothing here raises anything else.

Identifiers stay strings: JSON numbers are read as their literal text, and the unquoted,
zero-padded numbers of the spec's own examples (``"service_code":001``) are accepted as ``"001"``.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ticketing.errors import ResponseError
from ticketing.open311.models import (
    Attribute,
    AttributeValue,
    Discovery,
    Endpoint,
    PostResult,
    Service,
    ServiceDefinition,
    ServiceRequest,
)

__all__ = [
    "body_format",
    "parse_datetime",
    "parse_discovery",
    "parse_errors",
    "parse_post",
    "parse_requests",
    "parse_service_definition",
    "parse_services",
    "parse_tokens",
    "to_plain",
]

T = TypeVar("T")

#: Characters of a bad body quoted in an error message: enough to recognise an HTML error page.
SNIPPET = 120

#: Elements whose children always form a list, even with one child (Spark convention).
_LIST_CONTAINERS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
    "notes": "note",
}
#: ``"key": 001`` is not JSON; these keys hold identifiers, so their bare numbers become strings.
_BARE_ID = re.compile(
    r'("(?:service_code|service_request_id|token|zipcode|address_id|account_id|key|code)"\s*:\s*)'
    r"(-?\d[\d.eE+-]*)"
)


def _snippet(content: bytes) -> str:
    text = content[:SNIPPET].decode("utf-8", "replace")
    return " ".join(text.split()) + ("…" if len(content) > SNIPPET else "")


def body_format(content: bytes, content_type: str | None) -> str | None:
    """'json', 'xml' or None, by the body itself first (servers mislabel), then the header."""
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"[", b"{"):
        return "json"
    if head == b"<":
        return "xml"
    ctype = (content_type or "").lower()
    if "json" in ctype:
        return "json"
    if "xml" in ctype:
        return "xml"
    return None


class _XmlDocument(dict[str, Any]):
    """``{root tag: content}`` of an XML body, so readers can check the root element."""

    @property
    def root(self) -> str:
        return next(iter(self))


def _unwrap(plain: Any, root: str, resource: str) -> Any:
    """The content under the expected root element (XML) or the JSON value itself."""
    if isinstance(plain, _XmlDocument):
        if plain.root != root:
            raise _bad(resource, f"expected a <{root}> document, got <{plain.root}>")
        return plain[root]
    return plain


def _xml_plain(element: ET.Element) -> Any:
    children = list(element)
    tag = element.tag.rsplit("}", 1)[-1]  # a default namespace (the spec allows its own URL) is noise here
    if tag in _LIST_CONTAINERS:
        return [_xml_plain(c) for c in children]
    if not children:
        text = (element.text or "").strip()
        return text if text else None
    result: dict[str, Any] = {}
    for child in children:
        key = child.tag.rsplit("}", 1)[-1]
        value = _xml_plain(child)
        if key in result:
            previous = result[key]
            result[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[key] = value
    return result


def to_plain(content: bytes, content_type: str | None, resource: str) -> Any:
    """The body as plain lists/dicts/strings, whatever its format. Raises ``ResponseError``."""
    fmt = body_format(content, content_type)
    if fmt == "json":
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _bad(resource, f"JSON that is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
        try:
            return json.loads(text, parse_int=str, parse_float=str)
        except json.JSONDecodeError:
            pass
        try:
            return json.loads(_BARE_ID.sub(r'\1"\2"', text), parse_int=str, parse_float=str)
        except json.JSONDecodeError as exc:
            raise _bad(
                resource,
                f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {_snippet(content)!r}",
            ) from exc
    if fmt == "xml":
        if b"<!DOCTYPE" in content[:2048].upper() or b"<!ENTITY" in content.upper():
            # Entity declarations are how XML bombs and external-entity reads start; the spec uses none.
            raise _bad(resource, "XML with a DOCTYPE or entity declarations, which GeoReport v2 never uses")
        try:
            root = ET.fromstring(content)
        except ET.ParseError as exc:
            raise _bad(resource, f"malformed XML ({exc}): {_snippet(content)!r}") from exc
        return _XmlDocument({root.tag.rsplit("}", 1)[-1]: _xml_plain(root)})
    raise _bad(resource, f"a body that is neither XML nor JSON: {_snippet(content)!r}")


def _bad(resource: str, what: str) -> ResponseError:
    # The HTTP adapter re-raises with the method and URL filled in.
    return ResponseError(f"{resource} response: {what}", method="", url="", description=what)


# -- field readers -------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def _float(value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 datetime; one without a zone (the spec forbids it, some servers send it) is UTC."""
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _items(plain: Any, container: str, resource: str) -> list[Any]:
    """The list of objects a response holds: a JSON array, or the XML root's children."""
    plain = _unwrap(plain, container, resource)
    if plain is None:
        return []
    if isinstance(plain, dict):
        # Some servers answer a one-element list as the bare object.
        return [plain]
    if not isinstance(plain, list):
        raise _bad(resource, f"expected a list of {container}, got {type(plain).__name__}")
    return plain


def _each(plain: Any, container: str, resource: str, build: Callable[[dict[str, Any]], T]) -> list[T]:
    out: list[T] = []
    for index, item in enumerate(_items(plain, container, resource)):
        if not isinstance(item, dict):
            raise _bad(resource, f"item {index} of {container} is {type(item).__name__}, not an object")
        out.append(build(item))
    return out


def _required(item: dict[str, Any], key: str, resource: str) -> str:
    value = _text(item.get(key))
    if value is None:
        raise _bad(resource, f"an item has no {key}: {json.dumps(item, default=str)[:SNIPPET]}")
    return value


# -- resources ------------------------------------------------------------------------------------


def parse_discovery(content: bytes, content_type: str | None = None) -> Discovery:
    plain = _unwrap(to_plain(content, content_type, "discovery"), "discovery", "discovery")
    if not isinstance(plain, dict):
        raise _bad("discovery", f"expected an object, got {type(plain).__name__}")
    endpoints = []
    raw_endpoints = plain.get("endpoints") or []
    if isinstance(raw_endpoints, dict):
        raw_endpoints = raw_endpoints.get("endpoint", [])
        raw_endpoints = raw_endpoints if isinstance(raw_endpoints, list) else [raw_endpoints]
    for e in raw_endpoints:
        if not isinstance(e, dict):
            continue
        formats = e.get("formats") or []
        if isinstance(formats, dict):
            formats = formats.get("format", [])
        if isinstance(formats, str):
            formats = [formats]
        endpoints.append(
            Endpoint(
                specification=_text(e.get("specification")) or "",
                url=_text(e.get("url")) or "",
                changeset=_text(e.get("changeset")),
                type=_text(e.get("type")),
                formats=[f for f in (_text(x) for x in formats) if f],
            )
        )
    return Discovery(
        changeset=_text(plain.get("changeset")),
        contact=_text(plain.get("contact")),
        key_service=_text(plain.get("key_service")),
        endpoints=endpoints,
    )


def parse_services(content: bytes, content_type: str | None = None) -> list[Service]:
    plain = to_plain(content, content_type, "services")
    return _each(
        plain,
        "services",
        "services",
        lambda s: Service(
            service_code=_required(s, "service_code", "services"),
            service_name=_text(s.get("service_name")),
            description=_text(s.get("description")),
            metadata=_bool(s.get("metadata")),
            type=_text(s.get("type")),
            keywords=_text(s.get("keywords")),
            group=_text(s.get("group")),
        ),
    )


def _attribute(a: dict[str, Any]) -> Attribute:
    values = a.get("values") or []
    if isinstance(values, dict):
        values = values.get("value", [])
        values = values if isinstance(values, list) else [values]
    return Attribute(
        code=_required(a, "code", "service definition"),
        datatype=(_text(a.get("datatype")) or "string").lower(),
        required=_bool(a.get("required")),
        variable=_bool(a.get("variable", True)),
        datatype_description=_text(a.get("datatype_description")),
        order=_int(a.get("order")),
        description=_text(a.get("description")),
        values=[
            AttributeValue(key=_required(v, "key", "service definition"), name=_text(v.get("name")))
            for v in values
            if isinstance(v, dict)
        ],
    )


def parse_service_definition(content: bytes, content_type: str | None = None) -> ServiceDefinition:
    plain = _unwrap(
        to_plain(content, content_type, "service definition"), "service_definition", "service definition"
    )
    if isinstance(plain, list) and len(plain) == 1:
        plain = plain[0]
    if not isinstance(plain, dict):
        raise _bad("service definition", f"expected an object, got {type(plain).__name__}")
    attributes = plain.get("attributes") or []
    if isinstance(attributes, dict):
        attributes = attributes.get("attribute", [])
        attributes = attributes if isinstance(attributes, list) else [attributes]
    return ServiceDefinition(
        service_code=_required(plain, "service_code", "service definition"),
        attributes=[_attribute(a) for a in attributes if isinstance(a, dict)],
    )


def _request(r: dict[str, Any]) -> ServiceRequest:
    duplicate = _text(r.get("parent_service_request_id")) or _text(r.get("duplicate_of"))
    if (
        duplicate is None
        and isinstance(r.get("duplicate"), str | int)
        and not isinstance(r.get("duplicate"), bool)
    ):
        dup = _text(r.get("duplicate"))
        duplicate = dup if dup not in (None, "false", "true") else None
    return ServiceRequest(
        service_request_id=_text(r.get("service_request_id")),
        status=(_text(r.get("status")) or "").lower() or None,
        status_notes=_text(r.get("status_notes")),
        service_name=_text(r.get("service_name")),
        service_code=_text(r.get("service_code")),
        description=_text(r.get("description")),
        agency_responsible=_text(r.get("agency_responsible")),
        service_notice=_text(r.get("service_notice")),
        requested_datetime=parse_datetime(r.get("requested_datetime")),
        updated_datetime=parse_datetime(r.get("updated_datetime")),
        expected_datetime=parse_datetime(r.get("expected_datetime")),
        address=_text(r.get("address")),
        address_id=_text(r.get("address_id")),
        zipcode=_text(r.get("zipcode")),
        lat=_float(r.get("lat")),
        long=_float(r.get("long")),
        media_url=_text(r.get("media_url")),
        token=_text(r.get("token")),
        duplicate_of=duplicate,
    )


def parse_requests(content: bytes, content_type: str | None = None) -> list[ServiceRequest]:
    """GET requests and GET requests/{id}: both answer a list."""
    plain = to_plain(content, content_type, "requests")
    requests = _each(plain, "service_requests", "requests", _request)
    for index, r in enumerate(requests):
        if r.service_request_id is None:
            raise _bad("requests", f"item {index} has no service_request_id")
    return requests


def parse_post(content: bytes, content_type: str | None = None) -> PostResult:
    """POST requests: one object with ``service_request_id`` or ``token``.

    A blackbox service answers neither, only ``service_notice``/``account_id``: that is a success
    the client cannot follow.
    """
    plain = to_plain(content, content_type, "POST requests")
    items = _each(plain, "service_requests", "POST requests", lambda r: r)
    if not items:
        raise _bad("POST requests", "an empty list: neither service_request_id nor token")
    first = items[0]
    result = PostResult(
        service_request_id=_text(first.get("service_request_id")),
        token=_text(first.get("token")),
        service_notice=_text(first.get("service_notice")),
        account_id=_text(first.get("account_id")),
    )
    blackbox = "service_notice" in first or "account_id" in first
    if result.service_request_id is None and result.token is None and not blackbox:
        raise _bad(
            "POST requests",
            f"neither service_request_id nor token in {json.dumps(first, default=str)[:SNIPPET]}",
        )
    return result


def parse_tokens(content: bytes, content_type: str | None = None) -> str | None:
    """The service_request_id a token stands for, or None while the server has not assigned one."""
    plain = to_plain(content, content_type, "tokens")
    items = _each(plain, "service_requests", "tokens", lambda r: r)
    for item in items:
        found = _text(item.get("service_request_id"))
        if found:
            return found
    return None


def parse_errors(content: bytes, content_type: str | None = None) -> list[tuple[str | None, str]]:
    """``[(code, description)]`` of an error body; never raises (a bad body becomes its snippet)."""
    if not content.strip():
        return []
    try:
        plain = to_plain(content, content_type, "errors")
    except ResponseError:
        return [(None, _snippet(content))]
    try:
        items = _items(plain, "errors", "errors")
    except ResponseError:
        return [(None, _snippet(content))]
    out: list[tuple[str | None, str]] = []
    for item in items:
        if isinstance(item, dict):
            description = (
                _text(item.get("description")) or _text(item.get("message")) or json.dumps(item)[:SNIPPET]
            )
            out.append((_text(item.get("code")), description))
        elif item is not None:
            out.append((None, str(item)[:SNIPPET]))
    return out
